#![no_main]
//! Fuzz target `spf_check`: see `petrel_tests::fuzzing::spf_check`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::spf_check(data));
