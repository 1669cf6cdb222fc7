#![no_main]
//! Fuzz target `smtp_data_any_split`: see `petrel_tests::fuzzing::smtp_data_any_split`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::smtp_data_any_split(data));
