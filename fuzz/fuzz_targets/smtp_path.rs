#![no_main]
//! Fuzz target `smtp_path`: see `petrel_tests::fuzzing::smtp_path`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::smtp_path(data));
