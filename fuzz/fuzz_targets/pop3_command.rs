#![no_main]
//! Fuzz target `pop3_command`: see `petrel_tests::fuzzing::pop3_command`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::pop3_command(data));
