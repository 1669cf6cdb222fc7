#![no_main]
//! Fuzz target `smtp_client`: see `petrel_tests::fuzzing::smtp_client`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::smtp_client(data));
