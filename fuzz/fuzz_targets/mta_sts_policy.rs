#![no_main]
//! Fuzz target `mta_sts_policy`: see `petrel_tests::fuzzing::mta_sts_policy`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::mta_sts_policy(data));
