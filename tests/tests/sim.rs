//! Deterministic simulation entry point (issue 3).
//!
//! `PETREL_SEED=S cargo test -p petrel-tests --test sim -- --nocapture` replays seed S and prints
//! `seed S trace-hash H`; `PETREL_SEEDS=N` runs N consecutive seeds from S (defaults: S=0, N=200).
//! Other knobs: `PETREL_MAX_OPS` (steps per run), `PETREL_TRACE` (print whole traces),
//! `PETREL_PLANTED` (run on a disk that ignores directory fsyncs, to see a failure report),
//! `PETREL_FRESH_MAILDIRS` (no Maildirs at the start: the store creates them under faults),
//! `PETREL_KEEP_GOING` (run every seed, list all failures; `scripts/sim-campaign` sets it).
//! The world has SMTP senders and POP3 readers (`tests/src/dst/pop.rs`); the planted POP3 bug is
//! only reachable from `planted_pop3_false_ack_is_found`. Some users have Sieve scripts
//! (`tests/src/dst/sieve.rs`) that file, discard, reject or redirect by the `X-Sim-Sort` header.

#[path = "../src/dst/mod.rs"]
#[allow(dead_code)]
mod dst;

use dst::{Outcome, RunOptions, run_seed};

const DEFAULT_SEEDS: u64 = 200;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn options(seed: u64) -> RunOptions {
    let mut o = RunOptions::new(seed);
    if let Some(n) = env_u64("PETREL_MAX_OPS") {
        o.max_steps = n as usize;
    }
    // Demonstrates a failure report: the disk ignores directory fsyncs.
    o.planted_bug = std::env::var("PETREL_PLANTED").is_ok();
    // Let the store create the Maildirs under faults (exposes the directory-durability bug).
    o.fresh_maildirs = std::env::var("PETREL_FRESH_MAILDIRS").is_ok();
    o
}

fn report_failure(out: &Outcome) -> ! {
    let from = out.trace.len().saturating_sub(30);
    for line in &out.trace[from..] {
        eprintln!("  {line}");
    }
    eprintln!("PETREL_SEED={}", out.seed);
    panic!(
        "seed {} failed: {}",
        out.seed,
        out.failure.as_deref().unwrap_or("?")
    );
}

#[test]
fn seeds() {
    let start = env_u64("PETREL_SEED").unwrap_or(0);
    let count = env_u64("PETREL_SEEDS").unwrap_or(if std::env::var("PETREL_SEED").is_ok() {
        1
    } else {
        DEFAULT_SEEDS
    });
    let t0 = std::time::Instant::now();
    let (mut acked, mut crashes, mut faults, mut stuck) = (0, 0, 0, Vec::new());
    let (mut parked, mut stalls, mut peak) = (0, 0, 0);
    let (mut retrieved, mut pop_deleted) = (0, 0);
    let (mut filed, mut dropped, mut notices) = (0, 0, 0);
    // Campaigns run every seed and report all failures at the end.
    let keep_going = std::env::var("PETREL_KEEP_GOING").is_ok();
    let mut failed = Vec::new();
    for seed in start..start + count {
        let out = run_seed(options(seed));
        if std::env::var("PETREL_TRACE").is_ok() {
            out.trace.iter().for_each(|l| println!("  {l}"));
        }
        println!("seed {seed} trace-hash {:016x}", out.trace_hash);
        if let Some(f) = &out.failure {
            if !keep_going {
                report_failure(&out);
            }
            eprintln!("PETREL_SEED={seed} failed: {f}");
            failed.push(seed);
        }
        acked += out.acked;
        crashes += out.crashes;
        faults += out.faults;
        parked += out.parked;
        stalls += out.stalls;
        peak = peak.max(out.peak_buffered);
        retrieved += out.retrieved;
        pop_deleted += out.pop_deleted;
        filed += out.sieve_filed;
        dropped += out.sieve_dropped;
        notices += out.notices;
        if out.unfinished > 0 {
            stuck.push(seed);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{count} seeds in {secs:.2}s ({:.1} seeds/s): {acked} messages acknowledged, {crashes} crashes, {faults} disk faults, {parked} late store answers, {stalls} reader stalls, {retrieved} POP3 retrievals, {pop_deleted} acknowledged POP3 deletions, Sieve: {filed} copies filed into folders, {dropped} discarded/rejected/redirected, {notices} rejection notices; peak buffered {peak} of {}; seeds out of steps with clients unfinished: {stuck:?}",
        count as f64 / secs,
        petrel_core::Pump::MAX_BUFFERED
    );
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}

#[test]
fn replay_is_identical() {
    let seed = env_u64("PETREL_SEED").unwrap_or(7);
    let a = run_seed(options(seed));
    let b = run_seed(options(seed));
    assert_eq!(a.trace, b.trace, "seed {seed} is not deterministic");
    assert_eq!(a.trace_hash, b.trace_hash);
}

/// Runs the default seeds with a planted bug; returns the failing seeds and the first failure.
fn hunt(plant: impl Fn(&mut RunOptions)) -> (Vec<u64>, Option<String>) {
    let mut failing = Vec::new();
    let mut first = None;
    for seed in 0..DEFAULT_SEEDS {
        let mut o = options(seed);
        plant(&mut o);
        if let Some(f) = run_seed(o).failure {
            failing.push(seed);
            first.get_or_insert(format!("seed {seed}: {f}"));
        }
    }
    (failing, first)
}

#[test]
fn planted_bug_is_found() {
    // The store is correct; the disk lies about directory fsyncs, which is the same as the store
    // acknowledging before the directory fsync. The default seeds must catch it.
    let (failing, first) = hunt(|o| o.planted_bug = true);
    println!(
        "planted bug (no directory fsync) found by {} of {DEFAULT_SEEDS} seeds; first {first:?}",
        failing.len()
    );
    let first = first.expect("the planted bug was not found in the default seeds");
    assert!(first.contains("acknowledged"), "{first}");
}

#[test]
fn planted_torn_file_is_found() {
    // The disk lies about file fsyncs: after a crash, acknowledged files may be torn.
    let (failing, first) = hunt(|o| o.planted_torn = true);
    println!(
        "planted bug (no file fsync) found by {} of {DEFAULT_SEEDS} seeds; first {first:?}",
        failing.len()
    );
    assert!(!failing.is_empty(), "the torn-file bug was not found");
}

#[test]
fn planted_lost_completion_is_found() {
    // The runtime never answers slow store requests: the liveness phase must report a client
    // that waits forever.
    let found = (0..40).find_map(|seed| {
        let mut o = options(seed);
        o.planted_lost = true;
        o.max_steps = 3000;
        run_seed(o).failure.map(|f| (seed, f))
    });
    println!("planted bug (lost completion) found: {found:?}");
    let (_, f) = found.expect("a lost completion was not found");
    assert!(f.contains("liveness"), "{f}");
}

#[test]
fn maildir_created_under_faults_survives_crash() {
    // Seed 42 with no Maildirs at the start: a commit creates mail/example.test, its parent's
    // fsync fails (EIO), a later commit finds the directory and never fsyncs mail/ again, and
    // the crash loses the whole domain directory with acknowledged mail in it.
    let mut o = options(42);
    o.fresh_maildirs = true;
    let out = run_seed(o);
    if out.failure.is_some() {
        report_failure(&out);
    }
}

#[test]
fn planted_pop3_false_ack_is_found() {
    // The world tells the checker that a POP3 session the reader dropped after DELEs had its
    // QUIT acknowledged: the server rightly kept the messages, and the checker must see them.
    let found = (0..DEFAULT_SEEDS).find_map(|seed| {
        let mut o = options(seed);
        o.planted_pop_ack = true;
        run_seed(o).failure.map(|f| (seed, f))
    });
    println!("planted bug (dropped POP3 session counted as QUIT) found: {found:?}");
    let (_, f) = found.expect("a falsely acknowledged POP3 deletion was not found");
    assert!(f.contains("acknowledged its deletion"), "{f}");
}

#[test]
fn uidl_survives_failed_pop3_deletion() {
    // Seed 102813: a QUIT's `remove_file` is followed by a failed fsync of `new/` (QUIT gets
    // `-ERR [SYS/TEMP]`); the next open's sync sees the file gone and durably drops its UID from
    // dovecot-uidlist; the crash brings the file back, and it gets the next UID (1 -> 3) under
    // the same UIDVALIDITY, so its POP3 UIDL changes.
    let out = run_seed(options(102_813));
    if out.failure.is_some() {
        report_failure(&out);
    }
}
