#![no_main]
//! Fuzz target `managesieve_session`: see `petrel_tests::fuzzing::managesieve_session`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::managesieve_session(data));
