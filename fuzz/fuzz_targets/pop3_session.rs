#![no_main]
//! Fuzz target `pop3_session`: see `petrel_tests::fuzzing::pop3_session`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::pop3_session(data));
