//! `petrel import` and `petrel export`: an mbox written by Python's `mailbox` module goes in with
//! its flags and dates, a second import adds nothing, and the export reads back in `mailbox`.

use petrel_tests::{ALICE, Runtime, Server, ServerOptions};
use std::process::Command;

both_runtimes!(mbox_round_trip_keeps_flags_and_dates);

fn python(script: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mbox_round_trip_keeps_flags_and_dates(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let input = s.root().join("in.mbox");
    let output = s.root().join("out.mbox");
    python(&format!(
        "import mailbox\n\
         mb = mailbox.mbox({input:?})\n\
         for i, flags in enumerate(['', 'RF', 'RA']):\n\
         \x20   m = mailbox.mboxMessage('Subject: m%d\\n\\nbody %d\\n>From inside\\n' % (i, i))\n\
         \x20   m.set_from('x@remote.example', (2025, 1, i + 1, 10, 0, 0, 0, 1, 0))\n\
         \x20   m.set_flags(flags)\n\
         \x20   mb.add(m)\n\
         mb.flush()\n",
    ));
    let run = |args: &[&str]| {
        let out = s.petrel(args, b"");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let input_s = input.to_str().unwrap();
    assert_eq!(
        run(&[
            "import",
            "mbox",
            ALICE.address,
            input_s,
            "--folder",
            "Archive/2025"
        ])
        .trim(),
        "3 added, 0 already present"
    );
    assert_eq!(
        run(&[
            "import",
            "mbox",
            ALICE.address,
            input_s,
            "--folder",
            "Archive/2025"
        ])
        .trim(),
        "0 added, 3 already present"
    );
    let cur = s
        .data_dir()
        .join("mail/example.test/alice/.Archive.2025/cur");
    let mut names: Vec<String> = std::fs::read_dir(&cur)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(
        names[0].ends_with(":2,") && names[1].ends_with(":2,FS") && names[2].ends_with(":2,RS"),
        "{names:?}"
    );
    run(&[
        "export",
        ALICE.address,
        "Archive/2025",
        output.to_str().unwrap(),
    ]);
    let read_back = python(&format!(
        "import mailbox\n\
         for m in mailbox.mbox({output:?}):\n\
         \x20   print(m['Subject'], ''.join(sorted(m.get_flags())), m.get_from().split(' ', 1)[1], repr(m.get_payload()))\n",
    ));
    // Python's mailbox module writes `From ` lines quoted (`>From `) and never unquotes on
    // reading; Petrel stores the unquoted line and quotes it again on export.
    assert_eq!(
        read_back,
        "m0 O Wed Jan  1 10:00:00 2025 'body 0\\n>From inside\\n'\n\
         m1 FOR Thu Jan  2 10:00:00 2025 'body 1\\n>From inside\\n'\n\
         m2 AOR Fri Jan  3 10:00:00 2025 'body 2\\n>From inside\\n'\n"
    );
    let stored = std::fs::read(cur.join(&names[0])).unwrap();
    assert!(
        stored.ends_with(b"\r\n\r\nbody 0\r\nFrom inside\r\n"),
        "{}",
        String::from_utf8_lossy(&stored)
    );
    let out = s.petrel(
        &[
            "import",
            "mbox",
            ALICE.address,
            input_s,
            "--folder",
            "../escape",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
