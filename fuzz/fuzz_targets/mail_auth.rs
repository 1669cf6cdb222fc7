#![no_main]
//! Fuzz target `mail_auth`: see `petrel_tests::fuzzing::mail_auth`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::mail_auth(data));
