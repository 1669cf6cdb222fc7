"""IMAP IDLE push from every kind of writer, measured with Python's imaplib (a client nobody here
wrote).

One imaplib session SELECTs INBOX and IDLEs. After the folder settled, four changes are made one
after another, each by a different writer, and the time until the idling session reads the
matching untagged response is measured:
  smtp     smtplib delivers to Petrel's SMTP listener           -> `* N EXISTS`
  deliver  `petrel deliver` (another process) delivers           -> `* N EXISTS`
  drop     this script writes a message into tmp/ and renames it into new/, as any Maildir
           delivery agent does (Petrel is not involved)        -> `* N EXISTS`
  flag     a second imaplib session sets \\Flagged on message 1 -> `* 1 FETCH (... \\Flagged ...)`
Prints `NAME seconds` lines, then `DONE`; exits 1 with `FAIL ...` when an update does not arrive
within 5 s."""
import argparse
import imaplib
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import time


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def connect(a, ctx):
    c = imaplib.IMAP4_SSL("127.0.0.1", a.imaps_port, ssl_context=ctx)
    typ, data = c.login(a.user, a.password)
    if typ != "OK":
        fail("LOGIN %r" % (data,))
    return c


def wait_for(c, needle, start, timeout=5.0):
    """Reads untagged lines until one contains `needle`; returns the seconds since `start`."""
    while True:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            fail("no %r within %.1f s" % (needle, timeout))
        c.sock.settimeout(left)
        try:
            line = c.readline()
        except (socket.timeout, TimeoutError):
            fail("no %r within %.1f s" % (needle, timeout))
        if not line:
            fail("connection closed while idling")
        if needle in line:
            return time.monotonic() - start


def message(a, what):
    return ("From: bob@remote.example\r\nTo: %s\r\nSubject: idle push %s\r\n\r\nPushed.\r\n"
            % (a.user, what)).encode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--imaps-port", type=int, required=True)
    p.add_argument("--smtp-port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--petrel", required=True, help="the petrel binary")
    p.add_argument("--config", required=True, help="the server's config file")
    p.add_argument("--maildir", required=True, help="the user's INBOX directory")
    p.add_argument("--settle", type=float, default=2.5)
    a = p.parse_args()
    ctx = ssl.create_default_context(cafile=a.cafile)
    ctx.check_hostname = False

    idler = connect(a, ctx)
    typ, data = idler.select("INBOX")
    if typ != "OK":
        fail("SELECT %r" % (data,))
    exists = int(data[0])
    idler.send(b"i1 IDLE\r\n")
    if not idler.readline().startswith(b"+"):
        fail("IDLE not accepted")

    def smtp():
        s = smtplib.SMTP("127.0.0.1", a.smtp_port, timeout=10)
        s.sendmail("bob@remote.example", [a.user], message(a, "smtp"))
        s.quit()

    def deliver():
        r = subprocess.run([a.petrel, "deliver", "--to", a.user, "--config", a.config],
                           input=message(a, "deliver"), capture_output=True, timeout=30)
        if r.returncode != 0:
            fail("petrel deliver exited %d: %r" % (r.returncode, r.stderr))

    def drop():
        name = "%d.M1P%d.idle-push-test" % (time.time(), os.getpid())
        tmp = os.path.join(a.maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(message(a, "drop"))
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(a.maildir, "new", name))

    for name, act in [("smtp", smtp), ("deliver", deliver), ("drop", drop)]:
        # Let the folder settle first, so that nothing but the change itself can make the
        # session look (a poll would only come from the long safety net).
        time.sleep(a.settle)
        act()
        start = time.monotonic()
        exists += 1
        print("%s %.3f" % (name, wait_for(idler, b"* %d EXISTS" % exists, start)), flush=True)

    other = connect(a, ctx)
    other.select("INBOX")
    time.sleep(a.settle)
    typ, data = other.store("1", "+FLAGS", "(\\Flagged)")
    start = time.monotonic()
    if typ != "OK":
        fail("STORE %r" % (data,))
    print("flag %.3f" % wait_for(idler, b"\\Flagged", start), flush=True)
    other.logout()

    idler.send(b"DONE\r\n")
    while True:
        idler.sock.settimeout(5)
        line = idler.readline()
        if not line:
            fail("closed before the IDLE completion")
        if line.startswith(b"i1 "):
            if not line.startswith(b"i1 OK"):
                fail("IDLE ended with %r" % (line,))
            break
    idler.logout()
    print("DONE")


main()
