#![no_main]
//! Fuzz target `smtp_session`: see `petrel_tests::fuzzing::smtp_session`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::smtp_session(data));
