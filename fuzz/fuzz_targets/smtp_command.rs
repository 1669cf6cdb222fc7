#![no_main]
//! Fuzz target `smtp_command`: see `petrel_tests::fuzzing::smtp_command`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::smtp_command(data));
