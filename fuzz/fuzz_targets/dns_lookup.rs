#![no_main]
//! Fuzz target `dns_lookup`: see `petrel_tests::fuzzing::dns_lookup`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::dns_lookup(data));
