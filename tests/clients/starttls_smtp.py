#!/usr/bin/env python3
"""STARTTLS on the inbound `smtp` listener: state reset, no AUTH ever, delivery inside TLS.

usage: starttls_smtp.py --port P --cafile F --message-file M

Before TLS: EHLO offers STARTTLS, not AUTH; AUTH -> 5xx. After STARTTLS: MAIL before a new
EHLO -> 503; EHLO offers neither STARTTLS nor AUTH; STARTTLS again -> 5xx; AUTH -> 5xx;
then MAIL FROM:<sender@remote.example> RCPT TO:<alice@example.test> DATA -> 250.
Prints `DATA-REPLY <reply>`.
"""

import argparse

from petrel_common import connect, expect, fail, plain_ir, tls_context


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--message-file", required=True)
    a = p.parse_args()
    with open(a.message_file, "rb") as f:
        message = f.read()

    s = connect("plain", a.host, a.port, a.cafile)
    if not s.has_extn("starttls"):
        fail("smtp EHLO does not offer STARTTLS: %r" % s.esmtp_features)
    if s.has_extn("auth"):
        fail("smtp EHLO offers AUTH: %r" % s.esmtp_features)
    expect(s.docmd("AUTH", "PLAIN " + plain_ir("alice@example.test", "alice-pw")), "5",
           "AUTH on the smtp listener before TLS")
    code, msg = s.starttls(context=tls_context(a.cafile))
    if code != 220:
        fail("STARTTLS answered %d %r" % (code, msg))
    # smtplib forgot the EHLO state after starttls(); the server must have too.
    expect(s.docmd("MAIL", "FROM:<sender@remote.example>"), "503",
           "MAIL right after STARTTLS without a new EHLO")
    s.ehlo()
    if s.has_extn("starttls"):
        fail("STARTTLS offered again inside TLS: %r" % s.esmtp_features)
    if s.has_extn("auth"):
        fail("smtp EHLO offers AUTH inside TLS: %r" % s.esmtp_features)
    expect(s.docmd("STARTTLS"), "5", "a second STARTTLS")
    expect(s.docmd("AUTH", "PLAIN " + plain_ir("alice@example.test", "alice-pw")), "5",
           "AUTH on the smtp listener inside TLS")
    expect(s.mail("sender@remote.example"), "250", "MAIL")
    expect(s.rcpt("alice@example.test"), "250", "RCPT")
    text = expect(s.data(message), "250", "end of DATA")
    print("DATA-REPLY %s" % text.replace("\n", " "))
    expect(s.docmd("QUIT"), "221", "QUIT")
    s.close()


if __name__ == "__main__":
    main()
