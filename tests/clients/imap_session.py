"""A whole IMAP session with Python's imaplib (a client nobody here wrote), against Petrel:
STARTTLS or implicit TLS, LOGIN, LIST, SELECT, SEARCH, FETCH, STORE, APPEND, CREATE, COPY,
EXPUNGE, LOGOUT. Prints one `KEY value` line per observation for the Rust test to check;
exits 1 with a message on any protocol error."""
import argparse
import imaplib
import re
import ssl
import sys


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def ok(typ, data, what):
    if typ != "OK":
        fail("%s: %s %r" % (what, typ, data))
    return data


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--implicit", action="store_true")
    a = p.parse_args()
    ctx = ssl.create_default_context(cafile=a.cafile)
    ctx.check_hostname = False
    if a.implicit:
        c = imaplib.IMAP4_SSL("127.0.0.1", a.port, ssl_context=ctx)
    else:
        c = imaplib.IMAP4("127.0.0.1", a.port)
        if "LOGINDISABLED" not in c.capabilities:
            fail("LOGINDISABLED not advertised before TLS: %r" % (c.capabilities,))
        ok(*c.starttls(ssl_context=ctx), what="STARTTLS")
    print("CAPS " + " ".join(sorted(c.capabilities)))
    ok(*c.login(a.user, a.password), what="LOGIN")
    typ, folders = c.list()
    ok(typ, folders, "LIST")
    print("FOLDERS " + " ".join(sorted(f.decode().split(' "/" ')[-1] for f in folders)))
    typ, data = c.select("INBOX")
    ok(typ, data, "SELECT")
    print("EXISTS " + data[0].decode())
    typ, data = c.search(None, "ALL")
    ok(typ, data, "SEARCH")
    print("SEARCH " + data[0].decode())
    typ, data = c.uid("SEARCH", None, "SUBJECT", "imap-two")
    ok(typ, data, "UID SEARCH SUBJECT")
    print("SUBJECT-UIDS " + data[0].decode())
    typ, data = c.fetch("1", "(UID FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[])")
    ok(typ, data, "FETCH")
    meta = data[0][0].decode()
    body = data[0][1]
    size = re.search(r"RFC822\.SIZE (\d+)", meta)
    if not size or int(size.group(1)) != len(body):
        fail("RFC822.SIZE %r but %d bytes" % (meta, len(body)))
    if b"Subject: imap-one" not in body:
        fail("message 1 is not imap-one: %r" % body[:200])
    print("FETCH1 " + meta.split(" BODY[]")[0])
    ok(*c.store("1", "+FLAGS", "(\\Flagged $Important)"), what="STORE")
    typ, data = c.fetch("1", "(FLAGS)")
    ok(typ, data, "FETCH FLAGS")
    print("FLAGS1 " + data[0].decode())
    ok(*c.create("Archive/2026"), what="CREATE")
    typ, data = c.uid("COPY", "1:*", "Archive/2026")
    ok(typ, data, "UID COPY")
    # imaplib files the tagged reply's response code under its name.
    _, code = c.response("COPYUID")
    print("COPYUID " + (code[0].decode() if code and code[0] else ""))
    msg = b"From: alice@example.test\r\nSubject: appended\r\n\r\nAppended by imaplib.\r\n"
    typ, data = c.append("Archive/2026", "(\\Seen)", None, msg)
    ok(typ, data, "APPEND")
    print("APPEND " + (data[0].decode() if data and data[0] else ""))
    ok(*c.store("2", "+FLAGS", "(\\Deleted)"), what="STORE Deleted")
    typ, data = c.expunge()
    ok(typ, data, "EXPUNGE")
    print("EXPUNGED " + " ".join(d.decode() for d in data if d))
    typ, data = c.status("Archive/2026", "(MESSAGES UIDNEXT UNSEEN)")
    ok(typ, data, "STATUS")
    print("STATUS " + data[0].decode())
    typ, data = c.logout()
    if typ != "BYE":
        fail("LOGOUT: %s %r" % (typ, data))
    print("DONE")


main()
