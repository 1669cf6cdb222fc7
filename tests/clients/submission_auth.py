#!/usr/bin/env python3
"""The AUTH and envelope rules of the submission listener (STARTTLS port).

usage: submission_auth.py --port P --cafile F

Checks, each failure exits 1:
  before TLS: EHLO offers STARTTLS and no AUTH; AUTH -> 530 5.7.0; MAIL -> 530 5.7.0
  after TLS:  EHLO offers AUTH PLAIN LOGIN and no STARTTLS; MAIL before AUTH -> 530 5.7.0;
              wrong password -> 535 5.7.8 after a delay (>= 0.5 s)
  connection 1b: unknown user -> 535 5.7.8 after the same delay
  second connection: invalid base64 -> 501; AUTH PLAIN then `*` -> 501; AUTH LOGIN then `*`
              -> 501; AUTH PLAIN without initial response (334, then the response) -> 235;
              a second AUTH -> 503; MAIL FROM another user -> 553 5.7.1;
              MAIL FROM alice+tag -> 250; RSET; MAIL FROM alice -> 250
  third connection: AUTH CRAM-MD5 -> 504; AUTH PLAIN with another user as authzid -> 535;
              with authzid = user -> 235; MAIL FROM alice@EXAMPLE.TEST -> 250
  fourth: smtplib's AUTH LOGIN with initial response -> 235
  fifth: AUTH LOGIN (334 user 334 password) -> 235; MAIL FROM alice -> 250
Prints `WRONG-PASSWORD-DELAY <seconds>`.
"""

import argparse
import time

from petrel_common import b64, connect, expect, fail, plain_ir, tls_context


def features(s):
    return {k.lower(): v.strip().upper().split() for k, v in s.esmtp_features.items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--user", default="alice@example.test")
    p.add_argument("--password", default="alice-pw")
    p.add_argument("--other", default="bob@example.test")
    a = p.parse_args()
    user, pw = a.user, a.password
    local, domain = user.split("@")

    # --- connection 1: before and right after TLS
    s = connect("plain", a.host, a.port, a.cafile)
    f = features(s)
    if "starttls" not in f:
        fail("submission EHLO before TLS does not offer STARTTLS: %r" % s.esmtp_features)
    if "auth" in f:
        fail("submission EHLO offers AUTH before TLS: %r" % s.esmtp_features)
    expect(s.docmd("AUTH", "PLAIN " + plain_ir(user, pw)), "530 5.7.0", "AUTH before STARTTLS")
    expect(s.docmd("MAIL", "FROM:<%s>" % user), "530 5.7.0", "MAIL before STARTTLS")
    s.ehlo()
    code, msg = s.starttls(context=tls_context(a.cafile))
    if code != 220:
        fail("STARTTLS answered %d %r" % (code, msg))
    s.ehlo()
    f = features(s)
    if "auth" not in f or not {"PLAIN", "LOGIN"} <= set(f["auth"]):
        fail("submission EHLO after TLS does not offer AUTH PLAIN LOGIN: %r" % s.esmtp_features)
    if "starttls" in f:
        fail("STARTTLS still offered after TLS: %r" % s.esmtp_features)
    expect(s.docmd("MAIL", "FROM:<%s>" % user), "530 5.7.0", "MAIL before AUTH")
    t0 = time.monotonic()
    expect(s.docmd("AUTH", "PLAIN " + plain_ir(user, pw + "-wrong")), "535 5.7.8",
           "AUTH PLAIN with a wrong password")
    delay = time.monotonic() - t0
    print("WRONG-PASSWORD-DELAY %.3f" % delay)
    if delay < 0.5:
        fail("wrong password answered after %.3f s; expected a delay of about 1 s" % delay)
    s.docmd("QUIT")
    s.close()

    # --- connection 1b: an unknown user fails the same way, with the same delay (no user
    # enumeration by reply or timing)
    s = connect("starttls", a.host, a.port, a.cafile)
    t0 = time.monotonic()
    expect(s.docmd("AUTH", "PLAIN " + plain_ir("nobody@" + domain, pw)), "535 5.7.8",
           "AUTH PLAIN as an unknown user")
    delay = time.monotonic() - t0
    print("UNKNOWN-USER-DELAY %.3f" % delay)
    if delay < 0.5:
        fail("unknown user answered after %.3f s; expected the same delay as a wrong password"
             % delay)
    s.docmd("QUIT")
    s.close()

    # --- connection 2: malformed and cancelled exchanges, then success without initial response
    s = connect("starttls", a.host, a.port, a.cafile)
    expect(s.docmd("AUTH", "PLAIN !!!not-base64!!!"), "501", "AUTH PLAIN with invalid base64")
    expect(s.docmd("AUTH", "PLAIN"), "334", "AUTH PLAIN without initial response")
    expect(s.docmd("*"), "501", "cancelling AUTH PLAIN with *")
    expect(s.docmd("AUTH", "LOGIN"), "334", "AUTH LOGIN")
    expect(s.docmd("*"), "501", "cancelling AUTH LOGIN with *")
    expect(s.docmd("AUTH", "PLAIN"), "334", "AUTH PLAIN without initial response")
    expect(s.docmd(plain_ir(user, pw)), "235", "AUTH PLAIN response after 334")
    expect(s.docmd("AUTH", "PLAIN " + plain_ir(user, pw)), "503", "a second AUTH")
    expect(s.docmd("MAIL", "FROM:<%s>" % a.other), "553 5.7.1", "MAIL FROM another user")
    expect(s.docmd("MAIL", "FROM:<%s+tag@%s>" % (local, domain)), "250", "MAIL FROM subaddress")
    expect(s.docmd("RSET"), "250", "RSET")
    expect(s.docmd("MAIL", "FROM:<%s>" % user), "250", "MAIL FROM own address")
    expect(s.docmd("RCPT", "TO:<someone@remote.example>"), "250", "RCPT to a remote domain")
    expect(s.docmd("RSET"), "250", "RSET")
    expect(s.docmd("QUIT"), "221", "QUIT")
    s.close()

    # --- connection 3: mechanisms and identities that must not work; domain case of the sender
    s = connect("starttls", a.host, a.port, a.cafile)
    expect(s.docmd("AUTH", "CRAM-MD5"), "504", "AUTH with an unsupported mechanism")
    expect(s.docmd("AUTH", "PLAIN " + b64("%s\0%s\0%s" % (a.other, user, pw))), "535",
           "AUTH PLAIN asking to act as another user (authzid)")
    expect(s.docmd("AUTH", "PLAIN " + b64("%s\0%s\0%s" % (user, user, pw))), "235",
           "AUTH PLAIN with authzid equal to the user")
    expect(s.docmd("MAIL", "FROM:<%s@%s>" % (local, domain.upper())), "250",
           "MAIL FROM own address with an upper-case domain")
    expect(s.docmd("RSET"), "250", "RSET")
    expect(s.docmd("QUIT"), "221", "QUIT")
    s.close()

    # --- connection 4: AUTH LOGIN with an initial response, as smtplib does it
    s = connect("starttls", a.host, a.port, a.cafile)
    s.user, s.password = user, pw
    expect(s.auth("LOGIN", s.auth_login), "235", "AUTH LOGIN with initial response (smtplib)")
    s.docmd("QUIT")
    s.close()

    # --- connection 5: AUTH LOGIN
    s = connect("starttls", a.host, a.port, a.cafile)
    expect(s.docmd("AUTH", "LOGIN"), "334", "AUTH LOGIN")
    expect(s.docmd(b64(user)), "334", "AUTH LOGIN user name")
    expect(s.docmd(b64(pw)), "235", "AUTH LOGIN password")
    expect(s.docmd("MAIL", "FROM:<%s>" % user), "250", "MAIL FROM after AUTH LOGIN")
    expect(s.docmd("QUIT"), "221", "QUIT")
    s.close()
    print("OK")


if __name__ == "__main__":
    main()
