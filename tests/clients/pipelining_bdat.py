#!/usr/bin/env python3
"""PIPELINING and CHUNKING through smtplib's socket, optionally after STARTTLS + AUTH.

usage: pipelining_bdat.py --mode plain|starttls|ssl --port P [--cafile F]
                          [--user U --password PW] --sender S --to R --to R --to R --marker M

1. MAIL, each RCPT and DATA in ONE write; the replies must come back in order
   (250, 250..., 354); then the body -> 250.
2. BDAT: MAIL, RCPT (first recipient), `BDAT n` chunk 1, `BDAT m LAST` chunk 2 -> 250 each;
   the chunks contain `\\r\\n.\\r\\n` and dot-leading lines, which BDAT must not interpret.
3. BDAT with `BDAT 0 LAST` closing it.
Prints `DATA-MESSAGE <hex>` and `BDAT-MESSAGE <hex>` and `BDAT0-MESSAGE <hex>`: what the
server must have stored (after its own two headers).
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
    p.add_argument("--marker", required=True)
    a = p.parse_args()

    s = connect(a.mode, a.host, a.port, a.cafile)
    for ext in ("pipelining", "chunking"):
        if not s.has_extn(ext):
            fail("%s not advertised: %r" % (ext.upper(), s.esmtp_features))
    if a.user:
        expect(auth_plain(s, a.user, a.password), "235", "AUTH")

    # 1. pipelined envelope
    batch = "MAIL FROM:<%s>\r\n" % a.sender
    batch += "".join("RCPT TO:<%s>\r\n" % r for r in a.to)
    batch += "DATA\r\n"
    s.send(batch.encode())
    expect(s.getreply(), "250", "pipelined MAIL")
    for r in a.to:
        expect(s.getreply(), "250", "pipelined RCPT TO:<%s>" % r)
    expect(s.getreply(), "354", "pipelined DATA")
    message = ("Subject: %s pipelined\r\n\r\nbody of %s\r\n..dots\r\n" % (a.marker, a.marker)
               ).encode()
    wire = message.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    s.send(wire)
    text = expect(s.getreply(), "250", "end of pipelined DATA")
    if "queued as " not in text:
        fail("final DATA reply lacks `queued as`: %r" % text)
    print("DATA-MESSAGE %s" % message.hex())

    # 2. BDAT in two chunks
    chunk1 = ("Subject: %s bdat\r\n\r\nfirst chunk\r\n.\r\n" % a.marker).encode()
    chunk2 = b"..not unstuffed\r\n.\r\nQUIT\r\nlast line without CRLF"
    expect(s.mail(a.sender), "250", "MAIL before BDAT")
    expect(s.rcpt(a.to[0]), "250", "RCPT before BDAT")
    s.send(b"BDAT %d\r\n" % len(chunk1) + chunk1)
    expect(s.getreply(), "250", "BDAT chunk 1")
    s.send(b"BDAT %d LAST\r\n" % len(chunk2) + chunk2)
    text = expect(s.getreply(), "250", "BDAT LAST chunk")
    print("BDAT-MESSAGE %s" % (chunk1 + chunk2).hex())

    # 3. BDAT closed by BDAT 0 LAST, both chunks in one write
    chunk = ("Subject: %s bdat0\r\n\r\nclosed by an empty last chunk\r\n" % a.marker).encode()
    expect(s.mail(a.sender), "250", "MAIL before BDAT 0")
    expect(s.rcpt(a.to[0]), "250", "RCPT before BDAT 0")
    s.send(b"BDAT %d\r\n" % len(chunk) + chunk + b"BDAT 0 LAST\r\n")
    expect(s.getreply(), "250", "BDAT chunk")
    expect(s.getreply(), "250", "BDAT 0 LAST")
    print("BDAT0-MESSAGE %s" % chunk.hex())
    expect(s.docmd("QUIT"), "221", "QUIT")
    s.close()


if __name__ == "__main__":
    main()
