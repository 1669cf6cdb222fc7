#![no_main]
//! Fuzz target `imap_parser`: see `petrel_tests::fuzzing::imap_parser`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| petrel_tests::fuzzing::imap_parser(data));
