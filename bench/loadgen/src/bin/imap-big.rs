//! Big-folder timings on one connection: LOGIN, SELECT INBOX, FETCH 1:* (FLAGS UID),
//! SEARCH UNSEEN, SEARCH FLAGGED, SEARCH SUBJECT "needle" (reads every message's header; given
//! up after `--subject-timeout` seconds, default 60, and then reported as null; 0 skips it);
//! checks the FETCH returned one line per message. Prints one JSON line (milliseconds).
//!
//! `imap-big --addr 127.0.0.1:143 --user big@example.test --pass PW`

use petrel_loadgen::{Args, Imap, Reply, timed};

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ok(what: &str, r: std::io::Result<Reply>) -> Reply {
    match r {
        Ok(r) if r.ok => r,
        Ok(r) => petrel_loadgen::die(&format!("{what}: {}", r.status)),
        Err(e) => petrel_loadgen::die(&format!("{what}: {e}")),
    }
}

fn hits(r: &Reply) -> usize {
    r.untagged
        .iter()
        .find(|l| l.starts_with("* SEARCH"))
        .map(|l| l.split(' ').count().saturating_sub(2))
        .unwrap_or(0)
}

fn main() {
    let a = Args::parse();
    let addr = a.addr("addr");
    let user = a.req("user");
    let pass = a.req("pass");
    let (t_login, mut c) = timed(|| {
        let mut c = Imap::connect(addr).unwrap_or_else(|e| petrel_loadgen::die(&e.to_string()));
        c.login(&user, &pass)
            .unwrap_or_else(|e| petrel_loadgen::die(&e.to_string()));
        c
    });
    let (t_select, sel) = timed(|| ok("SELECT", c.cmd("SELECT INBOX")));
    let exists: usize = sel
        .untagged
        .iter()
        .find_map(|l| l.strip_suffix(" EXISTS")?.strip_prefix("* ")?.parse().ok())
        .unwrap_or(0);
    let (t_fetch, f) = timed(|| ok("FETCH", c.cmd("FETCH 1:* (FLAGS UID)")));
    let fetched = f.untagged.iter().filter(|l| l.contains(" FETCH ")).count();
    if fetched != exists {
        petrel_loadgen::die(&format!(
            "FETCH 1:* returned {fetched} lines for {exists} messages"
        ));
    }
    let (t_unseen, u) = timed(|| ok("SEARCH UNSEEN", c.cmd("SEARCH UNSEEN")));
    let (t_flagged, fl) = timed(|| ok("SEARCH FLAGGED", c.cmd("SEARCH FLAGGED")));
    // Reads every message's header: bounded, so a slow server gives a figure, not a hang.
    let limit: f64 = a.get("subject-timeout", 60.0);
    let _ = c.set_timeout(std::time::Duration::from_secs_f64(limit));
    let (t_subject, s) = timed(|| {
        if limit > 0.0 {
            c.cmd("SEARCH SUBJECT \"needle\"")
        } else {
            Err(std::io::Error::other("skipped"))
        }
    });
    let (subject_ms, subject_hits) = match s {
        Ok(r) if r.ok => (format!("{:.2}", ms(t_subject)), hits(&r)),
        Ok(r) => petrel_loadgen::die(&format!("SEARCH SUBJECT: {}", r.status)),
        // Timed out: null in the JSON, and the connection is abandoned.
        Err(_) => ("null".to_string(), 0),
    };
    if subject_ms != "null" {
        let _ = c.cmd("LOGOUT");
    }
    println!(
        "{{\"exists\":{exists},\"login_ms\":{:.2},\"select_ms\":{:.2},\"fetch_flags_ms\":{:.2},\"search_unseen_ms\":{:.2},\"unseen\":{},\"search_flagged_ms\":{:.2},\"flagged\":{},\"search_subject_ms\":{subject_ms},\"subject_hits\":{subject_hits},\"subject_timeout_s\":{limit}}}",
        ms(t_login),
        ms(t_select),
        ms(t_fetch),
        ms(t_unseen),
        hits(&u),
        ms(t_flagged),
        hits(&fl),
    );
}
