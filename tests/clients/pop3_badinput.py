#!/usr/bin/env python3
"""Bad input and pipelining on the `pop3s` listener, over a raw TLS socket.

usage: pop3_badinput.py --port P --cafile F --case NAME
  session:  STAT before login -> -ERR; 300-byte line -> -ERR and the session goes on;
            login; USER after login -> -ERR; RETR/DELE/LIST/TOP with 0, 99, -1, abc -> -ERR;
            STAT still +OK; QUIT +OK
  longline: 100 KB without a newline -> -ERR (the server may close afterwards); meanwhile a
            second session logs in and gets STAT
  pipeline: login, then `STAT LIST UIDL NOOP RETR 1 TOP 1 0 NOOP QUIT` in one write: the
            replies come in that order (multi-line ones end with `.`)
  halfretr: login, RETR the largest message, read 64 KB of it, hang up
"""

import argparse
import socket
import time

from petrel_common import TLS_NAME, TIMEOUT, fail, tls_context
from pop3_common import out


class Conn:
    def __init__(self, host, port, cafile):
        raw = socket.create_connection((host, port), TIMEOUT)
        self.sock = tls_context(cafile).wrap_socket(raw, server_hostname=TLS_NAME)
        self.buf = b""
        self.log = []
        g = self.line()
        if not g.startswith(b"+OK"):
            fail("greeting %r" % g)

    def send(self, data):
        self.log.append(b"C: " + data[:200])
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                fail("connection closed; transcript %r" % self.log[-20:])
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        self.log.append(b"S: " + line[:200])
        return line

    def multi(self):
        lines = []
        while True:
            l = self.line()
            if l == b".":
                return lines
            lines.append(l)

    def cmd(self, text, want):
        self.send(text.encode() + b"\r\n")
        r = self.line()
        if not r.startswith(want.encode()):
            fail("%r answered %r, expected %s; transcript %r" % (text[:60], r, want, self.log[-20:]))
        return r

    def login(self, user, pw):
        self.cmd("USER " + user, "+OK")
        self.cmd("PASS " + pw, "+OK")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--case", required=True)
    p.add_argument("--user", default="alice@example.test")
    p.add_argument("--password", default="alice-pw")
    a = p.parse_args()
    c = Conn(a.host, a.port, a.cafile)

    if a.case == "session":
        c.cmd("STAT", "-ERR")
        c.cmd("LIST", "-ERR")
        c.cmd("RETR 1", "-ERR")
        c.cmd("NOOP " + "x" * 295, "-ERR")
        c.cmd("X" * 300, "-ERR")
        c.login(a.user, a.password)
        c.cmd("USER " + a.user, "-ERR")
        c.cmd("PASS " + a.password, "-ERR")
        # At most 20 errors end a session (limits.max_errors): 17 in all here.
        for n in ("0", "99", "-1", "abc"):
            c.cmd("RETR " + n, "-ERR")
        for cmd in ("DELE 0", "DELE 99", "LIST -1", "UIDL abc", "TOP 1 -1", "TOP 99 0"):
            c.cmd(cmd, "-ERR")
        c.cmd("NOOP", "+OK")
        r = c.cmd("STAT", "+OK")
        out("STAT", r.decode())
        c.cmd("QUIT", "+OK")
    elif a.case == "longline":
        other = Conn(a.host, a.port, a.cafile)
        try:
            c.send(b"Y" * 100_000)
        except OSError as e:
            fail("sending 100 KB without a newline: %r" % e)
        r = c.line()
        if not r.startswith(b"-ERR"):
            fail("100 KB without a newline answered %r" % r)
        out("LONGLINE", r.decode())
        other.login(a.user, a.password)
        out("OTHER", other.cmd("STAT", "+OK").decode())
        other.cmd("QUIT", "+OK")
    elif a.case == "pipeline":
        c.login(a.user, a.password)
        c.send(b"STAT\r\nLIST\r\nUIDL\r\nNOOP\r\nRETR 1\r\nTOP 1 0\r\nRETR 99\r\nNOOP\r\nQUIT\r\n")
        stat = c.line()
        if not stat.startswith(b"+OK "):
            fail("pipelined STAT: %r" % stat)
        n = int(stat.split()[1])
        for what in ("LIST", "UIDL"):
            if not c.line().startswith(b"+OK"):
                fail("pipelined %s; %r" % (what, c.log[-5:]))
            lines = c.multi()
            if len(lines) != n:
                fail("pipelined %s listed %d lines for %d messages: %r" % (what, len(lines), n, lines))
            if what == "UIDL" and not all(len(l.split()[1]) == 16 for l in lines):
                fail("pipelined UIDL lines %r" % lines)
        if not c.line().startswith(b"+OK"):
            fail("pipelined NOOP; %r" % c.log[-5:])
        if not c.line().startswith(b"+OK"):
            fail("pipelined RETR 1; %r" % c.log[-5:])
        msg = c.multi()
        if not any(l.startswith(b"Subject:") for l in msg):
            fail("pipelined RETR 1 has no Subject: %r" % msg[:20])
        if not c.line().startswith(b"+OK"):
            fail("pipelined TOP; %r" % c.log[-5:])
        top = c.multi()
        if top[-1] != b"" or b"" in top[:-1]:
            fail("pipelined TOP 1 0 is not the header + blank line: %r" % top)
        if not c.line().startswith(b"-ERR"):
            fail("pipelined RETR 99; %r" % c.log[-5:])
        if not c.line().startswith(b"+OK"):
            fail("pipelined NOOP 2; %r" % c.log[-5:])
        if not c.line().startswith(b"+OK"):
            fail("pipelined QUIT; %r" % c.log[-5:])
        out("PIPELINE-OK", n)
    elif a.case == "halfretr":
        c.login(a.user, a.password)
        c.send(b"LIST\r\n")
        c.line()
        sizes = [tuple(map(int, l.split())) for l in c.multi()]
        n, size = max(sizes, key=lambda x: x[1])
        other = next(m for m, _ in sizes if m != n)
        c.send(b"DELE %d\r\nRETR %d\r\n" % (other, n))
        c.line()
        got = len(c.buf)
        while got < 65536:
            chunk = c.sock.recv(65536)
            if not chunk:
                fail("closed mid-RETR")
            got += len(chunk)
        time.sleep(1)  # the server fills its buffers and blocks on the write
        c.sock.close()
        out("HALF", n, size, got)
    else:
        fail("unknown case %s" % a.case)


if __name__ == "__main__":
    main()
