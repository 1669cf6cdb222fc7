"""IMAP IDLE push, measured with Python's imaplib and smtplib (clients nobody here wrote).

One imaplib session SELECTs INBOX and IDLEs; then, `--rounds` times, smtplib delivers a message
to Petrel's SMTP listener and the time until the idling session reads `* N EXISTS` is measured;
then a second imaplib session sets \\Flagged on message 1 and the time until the idling session
reads the `FETCH (... FLAGS (... \\Flagged ...))` is measured. Prints `EXISTS seconds` and
`FLAGS seconds` lines; exits 1 with `FAIL ...` when an update does not arrive within 5 s."""
import argparse
import imaplib
import smtplib
import socket
import ssl
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


def wait_for(c, needle, timeout=5.0):
    """Reads untagged lines until one contains `needle`; returns the seconds it took."""
    start = time.monotonic()
    c.sock.settimeout(timeout)
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--imaps-port", type=int, required=True)
    p.add_argument("--smtp-port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    ctx = ssl.create_default_context(cafile=a.cafile)
    ctx.check_hostname = False

    idler = connect(a, ctx)
    typ, data = idler.select("INBOX")
    if typ != "OK":
        fail("SELECT %r" % (data,))
    exists = int(data[0])
    if "IDLE" not in idler.capabilities:
        fail("IDLE not advertised: %r" % (idler.capabilities,))
    idler.send(b"i1 IDLE\r\n")
    if not idler.readline().startswith(b"+"):
        fail("IDLE not accepted")

    for n in range(a.rounds):
        # Let the folder settle between rounds so that both the "directory just changed" and the
        # "nothing changed for a while" paths of the change check are exercised.
        time.sleep(2.5 if n else 0.2)
        msg = ("From: bob@remote.example\r\nTo: %s\r\nSubject: idle %d\r\n\r\nPushed.\r\n"
               % (a.user, n))
        s = smtplib.SMTP("127.0.0.1", a.smtp_port, timeout=10)
        s.sendmail("bob@remote.example", [a.user], msg)
        s.quit()
        exists += 1
        print("EXISTS %.3f" % wait_for(idler, b"* %d EXISTS" % exists))

    time.sleep(2.5)
    other = connect(a, ctx)
    other.select("INBOX")
    typ, data = other.store("1", "+FLAGS", "(\\Flagged)")
    if typ != "OK":
        fail("STORE %r" % (data,))
    print("FLAGS %.3f" % wait_for(idler, b"\\Flagged"))
    other.logout()

    idler.send(b"DONE\r\n")
    while True:
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
