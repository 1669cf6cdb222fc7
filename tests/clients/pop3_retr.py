#!/usr/bin/env python3
"""A full poplib session against the files of the Maildir.

usage: pop3_retr.py --mode stls|ssl --port P --cafile F --maildir DIR
                    [--dele 1,3] [--finish quit|rset|drop] [--retr yes|no]

Checks (each failure exits 1): USER/PASS; STAT = count and total of the Maildir files; LIST
sizes = file sizes; UIDL = 16 upper-case hex digits, %08X uid %08X uidvalidity of the
dovecot-uidlist entry of the very file RETR returns; RETR n joined with CRLF = the file, byte
for byte; TOP n 0 = the header plus the blank line; TOP n 3 = header, blank line and the
first 3 body lines. Then DELEs the given numbers and ends with QUIT, RSET + QUIT, or by
closing the socket without QUIT.
Prints `MSG n size uidl basename` per message and `DELETED basename` per DELE.
"""

import argparse
import socket

from pop3_common import (UIDL_RE, connect, fail, joined, login, maildir_files, out,
                         read_uidlist)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["stls", "ssl"], required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--user", default="alice@example.test")
    p.add_argument("--password", default="alice-pw")
    p.add_argument("--dele", default="")
    p.add_argument("--finish", choices=["quit", "rset", "drop"], default="quit")
    p.add_argument("--retr", choices=["yes", "no"], default="yes")
    a = p.parse_args()

    files = maildir_files(a.maildir)
    c = connect(a.mode, a.host, a.port, a.cafile)
    login(c, a.user, a.password)

    count, total = c.stat()
    if count != len(files):
        fail("STAT says %d messages, the Maildir holds %d" % (count, len(files)))
    want_total = sum(len(b) for _, b in files.values())
    if total != want_total:
        fail("STAT says %d octets, the Maildir files hold %d" % (total, want_total))

    resp, listing, _ = c.list()
    sizes = {}
    for line in listing:
        n, size = line.split()
        sizes[int(n)] = int(size)
    if sorted(sizes) != list(range(1, count + 1)):
        fail("LIST numbers %r for %d messages" % (sorted(sizes), count))
    resp, listing, _ = c.uidl()
    uidls = {}
    for line in listing:
        n, u = line.split()
        if not UIDL_RE.match(u):
            fail("UIDL %r is not 16 upper-case hex digits" % u)
        uidls[int(n)] = u
    if sorted(uidls) != list(range(1, count + 1)):
        fail("UIDL numbers %r for %d messages" % (sorted(uidls), count))
    if len(set(uidls.values())) != count:
        fail("UIDLs are not unique: %r" % uidls)
    for n in uidls:
        single = c.uidl(n)
        if single.split()[1:] != [str(n).encode(), uidls[n]]:
            fail("UIDL %d answered %r, the listing said %r" % (n, single, uidls[n]))
        single = c.list(n)
        if single.split()[1:] != [str(n).encode(), str(sizes[n]).encode()]:
            fail("LIST %d answered %r, the listing said %r" % (n, single, sizes[n]))

    validity, uidlist = read_uidlist(a.maildir)
    bases = {}
    for n in range(1, count + 1):
        uid, v = int(uidls[n][:8], 16), int(uidls[n][8:], 16)
        if v != validity:
            fail("UIDL %s has uidvalidity %d, dovecot-uidlist says %d" % (uidls[n], v, validity))
        if uid not in uidlist:
            fail("UIDL %s: uid %d not in dovecot-uidlist %r" % (uidls[n], uid, uidlist))
        base = uidlist[uid]
        if base not in files:
            fail("uid %d maps to %s, not a file in new/ or cur/ (%r)" % (uid, base, list(files)))
        body = files[base][1]
        if sizes[n] != len(body):
            fail("LIST %d says %d octets, the file %s has %d" % (n, sizes[n], base, len(body)))
        bases[n] = base
        if a.retr == "yes":
            resp, lines, octets = c.retr(n)
            got = joined(lines)
            if got != body:
                i = next((i for i in range(min(len(got), len(body))) if got[i] != body[i]),
                         min(len(got), len(body)))
                fail("RETR %d differs from %s (%d vs %d bytes) at offset %d: got %r want %r"
                     % (n, base, len(got), len(body), i, got[max(0, i - 40):i + 40],
                        body[max(0, i - 40):i + 40]))
            head, sep, rest = body.partition(b"\r\n\r\n")
            resp, lines, _ = c.top(n, 0)
            if joined(lines) != head + b"\r\n\r\n":
                fail("TOP %d 0 = %r, want the header %r" % (n, joined(lines)[:300], head[:300]))
            resp, lines, _ = c.top(n, 3)
            body_lines = rest.split(b"\r\n")[:-1] if rest else []
            want = head + b"\r\n\r\n" + b"".join(l + b"\r\n" for l in body_lines[:3])
            if joined(lines) != want:
                fail("TOP %d 3 = %r, want %r" % (n, joined(lines)[-300:], want[-300:]))
        out("MSG", n, sizes[n], uidls[n].decode(), base)

    for n in [int(x) for x in a.dele.split(",") if x]:
        r = c.dele(n)
        if not r.startswith(b"+OK"):
            fail("DELE %d: %r" % (n, r))
        out("DELETED", bases[n])
    if a.dele:
        count2, _ = c.stat()
        if count2 != count - len(a.dele.split(",")):
            fail("STAT after DELE says %d, expected %d" % (count2, count - len(a.dele.split(","))))
    if a.finish == "rset":
        r = c._shortcmd("RSET")
        if not r.startswith(b"+OK"):
            fail("RSET: %r" % r)
        if c.stat()[0] != count:
            fail("STAT after RSET is not %d" % count)
    if a.finish == "drop":
        c.sock.shutdown(socket.SHUT_RDWR)
        c.sock.close()
        out("DROPPED")
    else:
        r = c.quit()
        if not r.startswith(b"+OK"):
            fail("QUIT: %r" % r)
        out("QUIT", r.decode())


if __name__ == "__main__":
    main()
