#![no_main]
//! Fuzz target `sasl`: see `petrel_tests::fuzzing::sasl`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::sasl(data));
