#![no_main]
//! Fuzz target `pop3_encoder`: see `petrel_tests::fuzzing::pop3_encoder`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::pop3_encoder(data));
