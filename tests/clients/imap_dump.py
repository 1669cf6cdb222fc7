"""Dumps or fills an IMAP account with Python's imaplib, for comparing two servers (Dovecot and
Petrel) over the same Maildir.

  dump: for every folder LIST shows (sorted): `FOLDER name UIDVALIDITY v EXISTS n UIDNEXT u`,
        then per message `MSG folder uid flags size sha256-of-BODY[]` (flags sorted, \\Recent
        left out); read-only (EXAMINE, BODY.PEEK). Fails if RFC822.SIZE is not the length of
        BODY[] or BODY[] holds a bare LF.
  fill: CREATE the folders of --create, APPEND --count messages to --folder with the flags of
        --flags (one `;`-separated flag list per message, cycling), then UID STORE +FLAGS
        each --store `UIDS (FLAGS)`, then STORE +FLAGS (\\Deleted) and EXPUNGE the UIDs of
        --expunge; prints the UIDVALIDITY.
Exits 1 with `FAIL ...` on any protocol error."""
import argparse
import hashlib
import os
import imaplib
import re
import ssl
import sys


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def ok(res, what):
    typ, data = res
    if typ != "OK":
        fail("%s: %s %r" % (what, typ, data))
    return data


def quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def connect(a):
    if a.tls:
        ctx = ssl.create_default_context(cafile=a.cafile)
        ctx.check_hostname = False
        c = imaplib.IMAP4_SSL("127.0.0.1", a.port, ssl_context=ctx)
    else:
        c = imaplib.IMAP4("127.0.0.1", a.port)
    ok(c.login(a.user, a.password), "LOGIN")
    return c


def folders(c):
    names = []
    for line in ok(c.list(), "LIST"):
        if line is None:
            continue
        if isinstance(line, tuple):  # a literal name
            attrs, name = line[0].decode(), line[1].decode()
        else:
            m = re.match(rb'\((.*?)\) (?:"(?:\\.|[^"])*"|NIL) (.*)$', line)
            if not m:
                fail("LIST line %r" % (line,))
            attrs, name = m.group(1).decode(), m.group(2).decode()
            if name.startswith('"'):
                name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        if "\\Noselect" in attrs or "\\NonExistent" in attrs:
            continue
        names.append(name)
    return sorted(names)


def dump(a):
    c = connect(a)
    for name in folders(c):
        data = ok(c.select(quote(name), readonly=True), "EXAMINE " + name)
        exists = int(data[0])
        uidvalidity = c.untagged_responses.get("UIDVALIDITY", [b"?"])[-1].decode()
        uidnext = c.untagged_responses.get("UIDNEXT", [b"?"])[-1].decode()
        print("FOLDER %s UIDVALIDITY %s EXISTS %d UIDNEXT %s" % (name, uidvalidity, exists, uidnext))
        if exists == 0:
            continue
        resp = ok(c.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE BODY.PEEK[])"), "FETCH " + name)
        msgs = []
        for item in resp:
            if not isinstance(item, tuple):
                continue
            meta, body = item[0].decode(), item[1]
            uid = int(re.search(r"UID (\d+)", meta).group(1))
            flags = re.search(r"FLAGS \(([^)]*)\)", meta)
            flags = [f for f in (flags.group(1).split() if flags else []) if f != "\\Recent"]
            size = int(re.search(r"RFC822\.SIZE (\d+)", meta).group(1))
            if size != len(body):
                fail("%s UID %d: RFC822.SIZE %d but BODY[] has %d octets" % (name, uid, size, len(body)))
            if re.search(rb"(?<!\r)\n", body):
                fail("%s UID %d: bare LF in BODY[]" % (name, uid))
            msgs.append((uid, " ".join(sorted(flags)) or "-", size,
                         hashlib.sha256(body).hexdigest()[:16]))
            if os.environ.get("IMAP_DUMP_BODIES"):
                # Debugging aid: the bytes behind each digest, one file per server and message.
                path = os.path.join(os.environ["IMAP_DUMP_BODIES"],
                                    "%d-%s-%d" % (a.port, name.replace("/", "_"), uid))
                with open(path, "wb") as f:
                    f.write(body)
        for uid, flags, size, digest in sorted(msgs):
            print("MSG %s %d %s %d %s" % (name, uid, flags, size, digest))
    c.logout()


def fill(a):
    c = connect(a)
    for name in a.create:
        ok(c.create(quote(name)), "CREATE " + name)
    flag_sets = a.flags.split(";") if a.flags else [""]
    for i in range(a.count):
        flags = flag_sets[i % len(flag_sets)].strip()
        msg = ("From: carol@remote.example\r\nTo: %s\r\nSubject: %s %d\r\n"
               "Message-ID: <fill-%d@remote.example>\r\n\r\nBody %d of %s.\r\n"
               % (a.user, a.folder, i, i, i, a.folder)).encode()
        ok(c.append(quote(a.folder), "(%s)" % flags if flags else None, None, msg), "APPEND")
    ok(c.select(quote(a.folder)), "SELECT")
    print("UIDVALIDITY " + c.untagged_responses["UIDVALIDITY"][-1].decode())
    for spec in a.store:
        uids, flags = spec.split(" ", 1)
        ok(c.uid("STORE", uids, "+FLAGS.SILENT", flags), "STORE " + spec)
    if a.expunge:
        ok(c.uid("STORE", a.expunge, "+FLAGS.SILENT", "(\\Deleted)"), "STORE")
        ok(c.expunge(), "EXPUNGE")
    c.logout()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["dump", "fill"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--cafile")
    p.add_argument("--folder", default="INBOX")
    p.add_argument("--create", action="append", default=[])
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--flags", default="")
    p.add_argument("--expunge", default="")
    p.add_argument("--store", action="append", default=[])
    a = p.parse_args()
    dump(a) if a.command == "dump" else fill(a)


main()
