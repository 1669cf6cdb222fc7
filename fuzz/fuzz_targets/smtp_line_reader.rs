#![no_main]
//! Fuzz target `smtp_line_reader`: see `petrel_tests::fuzzing::smtp_line_reader`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::smtp_line_reader(data));
