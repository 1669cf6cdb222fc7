#![no_main]
//! Fuzz target `dkim_verify`: see `petrel_tests::fuzzing::dkim_verify`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::dkim_verify(data));
