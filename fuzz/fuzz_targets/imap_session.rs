#![no_main]
//! Fuzz target `imap_session`: see `petrel_tests::fuzzing::imap_session`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::imap_session(data));
