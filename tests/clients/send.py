#!/usr/bin/env python3
"""Send one message with smtplib and print the final DATA reply.

usage: send.py --mode plain|starttls|ssl --host H --port P [--cafile F]
               [--user U --password PW] --sender S --to R [--to R ...] --message-file F

Exits 1 unless every RCPT and the DATA got a 2xx. Prints `DATA-REPLY <code> <text>`.
"""

import argparse

from petrel_common import auth_plain, connect, expect, fail, reply_text


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["plain", "starttls", "ssl"], required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--sender", required=True)
    p.add_argument("--to", action="append", required=True)
    p.add_argument("--message-file", required=True)
    a = p.parse_args()

    with open(a.message_file, "rb") as f:
        message = f.read()
    s = connect(a.mode, a.host, a.port, a.cafile)
    if a.user:
        expect(auth_plain(s, a.user, a.password), "235", "AUTH PLAIN as %s" % a.user)
    expect(s.mail(a.sender), "250", "MAIL FROM:<%s>" % a.sender)
    for rcpt in a.to:
        expect(s.rcpt(rcpt), "25", "RCPT TO:<%s>" % rcpt)
    resp = s.data(message)
    text = expect(resp, "250", "end of DATA")
    if "queued as " not in text:
        fail("final DATA reply lacks `queued as ID`: %r" % text)
    print("DATA-REPLY %s" % text.replace("\n", " "))
    expect(s.docmd("QUIT"), "221", "QUIT")
    s.close()


if __name__ == "__main__":
    main()
