//! Runs every fuzz target's logic ([`petrel_tests::fuzzing`]) without cargo-fuzz: over the seed
//! corpus, over the committed crash reproducers in `fuzz/regressions/<target>/`, and over inputs
//! from a seeded generator. A failure prints the target and the input in hex.
//!
//! `PETREL_FUZZ_CASES=N` sets the generated inputs per target (default 3000; the `*_session`
//! targets get half), `PETREL_FUZZ_SEED=S` the generator's seed, and `PETREL_FUZZ_CORPUS=1` also replays
//! whatever `cargo fuzz` left in `fuzz/corpus/<target>/`. `PETREL_WRITE_SEEDS=1 cargo test -p petrel-tests
//! --test fuzz_regression seed_corpus_for_cargo_fuzz` writes the seed corpus for cargo-fuzz.

use petrel_core::dkim::DkimResult;
use petrel_core::dns::Answer;
use petrel_core::smtp::client::RcptResult;
use petrel_core::spf::SpfResult;
use petrel_tests::fuzzing::{
    SplitMix, TARGETS, generate, run_dkim_verify, run_dns_lookup, run_imap_session, run_mail_auth,
    run_pop3_session, run_session, run_smtp_client, run_spf_check, seeds,
};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).join("fuzz")
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `f` on `data`; on a panic, names the input before passing the panic on.
fn run(name: &str, origin: &str, f: fn(&[u8]), data: &[u8]) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(data))) {
        eprintln!(
            "fuzz target {name} failed on {origin} ({} bytes): {}",
            data.len(),
            hex(data)
        );
        resume_unwind(panic);
    }
}

/// Every file in `dir`, sorted by name; nothing if it does not exist.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            let path = e.path();
            let data = std::fs::read(&path).expect("read corpus file");
            (path.display().to_string(), data)
        })
        .collect();
    out.sort();
    out
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn seed_corpus() {
    for (name, f) in TARGETS {
        let corpus = seeds(name);
        assert!(!corpus.is_empty(), "{name} has no seeds");
        for (i, data) in corpus.iter().enumerate() {
            run(name, &format!("seed {i}"), *f, data);
        }
    }
}

/// The session harness really converses: the first seed delivers its message, with the same
/// replies when read in small pieces.
#[test]
fn session_seed_delivers() {
    let corpus = seeds("smtp_session");
    let first = run_session(&corpus[0]);
    let text = String::from_utf8_lossy(&first.written);
    assert_eq!(first.delivered, 1, "{text}");
    assert!(text.contains("250 2.0.0 Ok: queued as"), "{text}");
    assert!(text.contains("\r\n221 "), "{text}");
    assert_eq!(
        run_session(&corpus[1]),
        first,
        "a split changed the conversation"
    );
}

/// The POP3 session harness really converses: the first seed logs in, lists, retrieves and
/// deletes, with the same responses when read in small pieces from small store reads.
#[test]
fn pop3_session_seed_converses() {
    let corpus = seeds("pop3_session");
    let first = run_pop3_session(&corpus[0]);
    let text = String::from_utf8_lossy(&first);
    assert!(text.contains("+OK Logged in.\r\n+OK 3 "), "{text}");
    assert!(text.contains("\r\n..dot line\r\n.\r\n"), "{text}");
    assert!(
        text.ends_with("+OK Logging out, messages deleted.\r\n"),
        "{text}"
    );
    let mut small = corpus[1].clone();
    small[0] &= !0x04;
    assert_eq!(
        run_pop3_session(&small),
        first,
        "a split changed the conversation"
    );
}

/// The harnesses of the protocols added later reach their interesting ends from the first seed:
/// a delivery reported, an answer with records, a DKIM pass, an SPF pass, and an
/// Authentication-Results field with every method passing.
#[test]
fn protocol_seeds_converse() {
    let reports = run_smtp_client(&seeds("smtp_client")[0]);
    assert_eq!(reports.len(), 3, "{reports:?}");
    assert!(
        matches!(&reports[0].1[..], [(_, RcptResult::Delivered(_))]),
        "{reports:?}"
    );
    let answer = run_dns_lookup(&seeds("dns_lookup")[0]);
    assert!(matches!(answer, Answer::Records { .. }), "{answer:?}");
    let dkim = run_dkim_verify(&seeds("dkim_verify")[0]);
    assert_eq!(dkim.len(), 1, "{dkim:?}");
    assert_eq!(dkim[0].result, DkimResult::Pass, "{dkim:?}");
    let spf = run_spf_check(&seeds("spf_check")[0]);
    assert_eq!(spf.result, SpfResult::Pass, "{spf:?}");
    let auth = run_mail_auth(&seeds("mail_auth")[0]);
    for method in ["spf=pass", "dkim=pass", "dmarc=pass"] {
        assert!(auth.header.contains(method), "{}", auth.header);
    }
}

/// The IMAP session harness really converses: the first seed logs in, selects, fetches the
/// three messages as literals, appends one and logs out, with the same responses when read and
/// written in small pieces from small store reads.
#[test]
fn imap_session_seed_converses() {
    let corpus = seeds("imap_session");
    let first = run_imap_session(&corpus[0]);
    let text = String::from_utf8_lossy(&first);
    for expected in [
        "\r\na0 OK ",
        "\r\n* 3 EXISTS\r\n",
        "\r\na3 OK ",
        "BODY[] {",
        "\r\na6 OK [APPENDUID 1000 4]",
        "\r\n+ idling\r\n",
        "\r\n* BYE ",
        "\r\na9 OK ",
    ] {
        assert!(text.contains(expected), "{expected:?} missing: {text}");
    }
    assert_eq!(
        run_imap_session(&corpus[1]),
        first,
        "a split changed the conversation"
    );
}

#[test]
fn committed_regressions() {
    for (name, f) in TARGETS {
        for (path, data) in files(&fuzz_dir().join("regressions").join(name)) {
            run(name, &path, *f, &data);
        }
    }
}

#[test]
fn fuzz_corpus_if_asked() {
    if std::env::var_os("PETREL_FUZZ_CORPUS").is_none() {
        return;
    }
    for (name, f) in TARGETS {
        for (path, data) in files(&fuzz_dir().join("corpus").join(name)) {
            run(name, &path, *f, &data);
        }
    }
}

#[test]
fn generated_inputs() {
    let cases = env_u64("PETREL_FUZZ_CASES", 3000);
    let seed = env_u64("PETREL_FUZZ_SEED", 0x5045_5452_454c);
    for (t, (name, f)) in TARGETS.iter().enumerate() {
        let n = if name.ends_with("_session") {
            cases / 2
        } else {
            cases
        };
        let mut rng = SplitMix::new(seed ^ (t as u64) << 56);
        for i in 0..n {
            let data = generate(name, &mut rng);
            run(
                name,
                &format!("generated case {i} (seed {seed})"),
                *f,
                &data,
            );
        }
    }
}

/// Every target has seeds; with `PETREL_WRITE_SEEDS=1` (fuzz/seeds.sh) they are also written to
/// `fuzz/corpus/<target>/seed-NNN` for cargo-fuzz.
#[test]
fn seed_corpus_for_cargo_fuzz() {
    let write = std::env::var_os("PETREL_WRITE_SEEDS").is_some();
    for (name, _) in TARGETS {
        let seeds = seeds(name);
        assert!(!seeds.is_empty(), "target {name} has no seeds");
        if !write {
            continue;
        }
        let dir = fuzz_dir().join("corpus").join(name);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        for (i, data) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), data).expect("write seed");
        }
        println!("{}: {} seeds", dir.display(), seeds.len());
    }
}
