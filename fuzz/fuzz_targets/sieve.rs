#![no_main]
//! Fuzz target `sieve`: see `petrel_tests::fuzzing::sieve`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::sieve(data));
