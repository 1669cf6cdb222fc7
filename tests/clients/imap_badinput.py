"""Bad input against an IMAP server over implicit TLS, on one session after LOGIN: literal
bombs, a 10,000-element sequence set, deeply nested SEARCH, hostile mailbox names, commands in
the wrong state; then an APPEND cut off midway by a hang-up, and a fresh session afterwards.
Prints `NAME tagged-status text` per case (the server must answer each and carry on)."""
import argparse
import socket
import ssl
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    a = p.parse_args()
    ctx = ssl.create_default_context(cafile=a.cafile)
    ctx.check_hostname = False

    def connect():
        raw = socket.create_connection(("127.0.0.1", a.port), timeout=20)
        s = ctx.wrap_socket(raw)
        f = s.makefile("rb")
        f.readline()
        return s, f

    s, f = connect()
    counter = [0]

    def run(name, command, wait_continuation=False):
        counter[0] += 1
        tag = b"t%d" % counter[0]
        s.sendall(tag + b" " + command + b"\r\n")
        start = time.monotonic()
        while True:
            line = f.readline()
            if not line:
                print("%s CLOSED" % name)
                sys.exit(0)
            if line.startswith(b"+") and wait_continuation:
                print("%s CONTINUATION" % name)
                return
            if line.startswith(tag + b" "):
                parts = line.rstrip(b"\r\n").split(b" ", 2)
                print("%s %s %.3fs %s" % (name, parts[1].decode(), time.monotonic() - start,
                                         parts[2].decode("utf-8", "replace") if len(parts) > 2 else ""))
                return

    run("login", b"LOGIN %s %s" % (a.user.encode(), a.password.encode()))
    run("fetch-unselected", b"FETCH 1 FLAGS")
    run("append-bomb", b"APPEND INBOX {4294967295}")
    run("search-literal-bomb", b"SEARCH TEXT {4294967295}")
    run("select", b"SELECT INBOX")
    run("seqset-10000", b"FETCH " + b",".join(b"%d" % i for i in range(1, 10001)) + b" FLAGS")
    run("uidset-10000", b"UID FETCH " + b",".join(b"%d" % i for i in range(1, 10001)) + b" FLAGS")
    run("uidsearch-10000", b"UID SEARCH UID " + b",".join(b"%d" % (2 * i) for i in range(1, 10001)))
    run("search-nested", b"SEARCH " + b"(" * 2000 + b"ALL" + b")" * 2000)
    run("search-not-chain", b"SEARCH " + b"NOT " * 5000 + b"ALL")
    run("search-or-chain", b"SEARCH " + b"OR ALL " * 3000 + b"ALL")
    run("huge-line", b"NOOP " + b"x" * 200000)
    for name, mailbox in [
        ("create-dotdot", b'"../escape"'),
        ("create-deep-dotdot", b'"a/../../escape"'),
        ("create-slash-lead", b'"/etc"'),
        ("create-dot", b'"."'),
        ("create-dotdir", b'".hidden"'),
        ("create-dotseg", b'"a/./b"'),
        ("create-utf7-open", b'"&abc"'),
        ("create-utf7-bad", b'"&-x&ZZZ-"'),
        ("create-nul", b'{5+}\r\na\x00b/c'),
        ("create-backslash", b'"a\\\\b"'),
    ]:
        run(name, b"CREATE " + mailbox)
    run("rename-inbox-dotdot", b'RENAME INBOX "../x"')
    run("select-dotdot", b'SELECT "../../.."')
    run("list", b'LIST "" "*"')
    run("noop-after", b"NOOP")
    # An APPEND cut off by a hang-up in the middle of its literal.
    counter[0] += 1
    s.sendall(b"t%d APPEND INBOX {100000+}\r\n" % counter[0] + b"partial" * 100)
    time.sleep(0.3)
    s.close()
    s, f = connect()
    run("login-again", b"LOGIN %s %s" % (a.user.encode(), a.password.encode()))
    run("status-after", b"STATUS INBOX (MESSAGES)")
    run("logout", b"LOGOUT")


main()
