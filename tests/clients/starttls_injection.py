#!/usr/bin/env python3
"""STARTTLS command injection (CVE-2011-0411 class): commands pipelined behind STARTTLS in
the same packet, before the handshake, must be discarded.

usage: starttls_injection.py --port P --cafile F [--user U --password PW]

Connection 1 sends `STARTTLS\\r\\nRSET\\r\\n` in one write. After the 220 nothing else may
arrive in clear text, the handshake must succeed, and the first reply inside TLS must be the
EHLO reply (not a reply to RSET).
Connection 2 sends `STARTTLS\\r\\nEHLO evil\\r\\nAUTH PLAIN <valid>\\r\\nMAIL FROM:<user>\\r\\n`
(with --user: the injected AUTH must not have authenticated; MAIL after EHLO in TLS must be
refused with 530), or without --user `STARTTLS\\r\\nMAIL FROM:<x@remote.example>\\r\\n`
followed in TLS by EHLO and RCPT, which must get 503 (the injected MAIL was discarded).
Prints `OK`.
"""

import argparse
import socket
import ssl

from petrel_common import TLS_NAME, fail, plain_ir, tls_context


class Lines:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def reply(self, what):
        """Read one complete reply; returns (code, [lines])."""
        lines = []
        while True:
            while b"\n" not in self.buf:
                try:
                    chunk = self.sock.recv(4096)
                except socket.timeout:
                    fail("%s: timed out; so far %r" % (what, lines))
                if not chunk:
                    fail("%s: connection closed; so far %r" % (what, lines))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            line = line.rstrip(b"\r").decode("utf-8", "replace")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), lines


def send(sock, data):
    sock.sendall(data)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--user")
    p.add_argument("--password")
    a = p.parse_args()
    ctx = tls_context(a.cafile)

    for case in (1, 2):
        raw = socket.create_connection((a.host, a.port), timeout=15)
        r = Lines(raw)
        code, lines = r.reply("greeting")
        if code != 220:
            fail("greeting %r" % lines)
        send(raw, b"EHLO client.example\r\n")
        code, lines = r.reply("EHLO")
        if code != 250 or not any("STARTTLS" in l.upper() for l in lines):
            fail("EHLO reply without STARTTLS: %r" % lines)
        if case == 1:
            injected = b"STARTTLS\r\nRSET\r\n"
        elif a.user:
            injected = ("STARTTLS\r\nEHLO evil\r\nAUTH PLAIN %s\r\nMAIL FROM:<%s>\r\n"
                        % (plain_ir(a.user, a.password), a.user)).encode()
        else:
            injected = b"STARTTLS\r\nMAIL FROM:<x@remote.example>\r\n"
        send(raw, injected)
        code, lines = r.reply("STARTTLS")
        if code != 220:
            fail("STARTTLS answered %r" % lines)
        if r.buf:
            fail("clear-text bytes after the STARTTLS 220 (injected commands answered?): %r"
                 % r.buf)
        # Anything the server writes in clear text now would break the handshake.
        try:
            tls = ctx.wrap_socket(raw, server_hostname=TLS_NAME)
        except (ssl.SSLError, OSError) as e:
            fail("TLS handshake after STARTTLS with pipelined commands failed: %r" % e)
        t = Lines(tls)
        send(tls, b"EHLO client.example\r\n")
        code, lines = t.reply("first reply inside TLS")
        if code != 250 or not lines[0][4:].startswith("mail.test.example"):
            fail("first reply inside TLS is not the EHLO reply (injected command answered?): %r"
                 % lines)
        if case == 2 and a.user:
            send(tls, ("MAIL FROM:<%s>\r\n" % a.user).encode())
            code, lines = t.reply("MAIL after TLS")
            if not lines[0].startswith("530"):
                fail("MAIL FROM inside TLS got %r: the AUTH injected before the handshake "
                     "was honoured" % lines)
        elif case == 2:
            send(tls, b"RCPT TO:<alice@example.test>\r\n")
            code, lines = t.reply("RCPT without MAIL inside TLS")
            if code != 503:
                fail("RCPT inside TLS got %r: the MAIL injected before the handshake "
                     "was honoured" % lines)
        send(tls, b"QUIT\r\n")
        code, lines = t.reply("QUIT")
        if code != 221:
            fail("QUIT answered %r" % lines)
        tls.close()
    print("OK")


if __name__ == "__main__":
    main()
