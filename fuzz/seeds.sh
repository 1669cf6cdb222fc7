#!/bin/sh
# Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/ (gitignored), from the
# transcripts in petrel_tests::fuzzing::seeds. Run from anywhere; needs only stable cargo.
set -eu
cd "$(dirname "$0")/.."
PETREL_WRITE_SEEDS=1 cargo test -p petrel-tests --test fuzz_regression -- --exact seed_corpus_for_cargo_fuzz --nocapture
