#!/usr/bin/env python3
"""Authentication rules of the `pop3` (STLS) listener.

usage: pop3_security.py --port P --cafile F

Checks, each failure exits 1:
  before STLS: CAPA lists STLS and neither USER nor SASL; USER -> -ERR [AUTH];
               AUTH PLAIN with initial response -> -ERR [AUTH]
  after STLS:  CAPA lists USER and SASL PLAIN and not STLS; STLS again -> -ERR;
               wrong password -> -ERR [AUTH] after >= 0.5 s; USER/PASS right -> +OK
  AUTH PLAIN with initial response -> +OK; AUTH PLAIN without it (`+ `, then the
  response) -> +OK; three wrong passwords -> three -ERR [AUTH], then the server closes.
Prints `WRONG-PASSWORD-DELAY <seconds>`.
"""

import argparse
import poplib
import time

from petrel_common import plain_ir, tls_context
from pop3_common import connect, err_of, fail, out


def capa(c):
    return {k.upper(): [x.upper() for x in v] for k, v in c.capa().items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--user", default="alice@example.test")
    p.add_argument("--password", default="alice-pw")
    a = p.parse_args()
    user, pw = a.user, a.password

    c = connect("plain", a.host, a.port, a.cafile)
    caps = capa(c)
    if "STLS" not in caps:
        fail("CAPA before STLS lacks STLS: %r" % caps)
    if "USER" in caps or "SASL" in caps:
        fail("CAPA before STLS offers USER or SASL: %r" % caps)
    e = err_of(c.user, user)
    if not e.startswith(b"-ERR [AUTH]"):
        fail("USER before STLS: %r" % e)
    e = err_of(c._shortcmd, "AUTH PLAIN " + plain_ir(user, pw))
    if not e.startswith(b"-ERR [AUTH]"):
        fail("AUTH PLAIN before STLS: %r" % e)
    e = err_of(c.pass_, pw)
    c.stls(tls_context(a.cafile))
    caps = capa(c)
    if "USER" not in caps or "PLAIN" not in caps.get("SASL", []):
        fail("CAPA after STLS lacks USER or SASL PLAIN: %r" % caps)
    if "STLS" in caps:
        fail("CAPA after STLS still offers STLS: %r" % caps)
    err_of(c._shortcmd, "STLS")
    c.user(user)
    t0 = time.monotonic()
    e = err_of(c.pass_, "wrong-" + pw)
    delay = time.monotonic() - t0
    if not e.startswith(b"-ERR [AUTH]"):
        fail("wrong password: %r" % e)
    if delay < 0.5:
        fail("wrong password answered after %.3f s, expected a delay" % delay)
    out("WRONG-PASSWORD-DELAY", "%.3f" % delay)
    c.user(user)
    r = c.pass_(pw)
    if not r.startswith(b"+OK"):
        fail("right password after a wrong one: %r" % r)
    c.stat()
    c.quit()

    # AUTH PLAIN with an initial response.
    c = connect("stls", a.host, a.port, a.cafile)
    r = c._shortcmd("AUTH PLAIN " + plain_ir(user, pw))
    if not r.startswith(b"+OK"):
        fail("AUTH PLAIN with initial response: %r" % r)
    c.stat()
    c.quit()

    # AUTH PLAIN without: the server asks with `+ `.
    c = connect("stls", a.host, a.port, a.cafile)
    c._putcmd("AUTH PLAIN")
    line, _ = c._getline()
    if not line.startswith(b"+"):
        fail("AUTH PLAIN without initial response answered %r, expected `+ `" % line)
    r = c._shortcmd(plain_ir(user, pw))
    if not r.startswith(b"+OK"):
        fail("AUTH PLAIN response: %r" % r)
    c.stat()
    c.quit()

    # Three failures end the session.
    c = connect("stls", a.host, a.port, a.cafile)
    for i in range(3):
        c.user(user)
        e = err_of(c.pass_, "bad-%d" % i)
        if not e.startswith(b"-ERR [AUTH]"):
            fail("failure %d: %r" % (i + 1, e))
    try:
        c.sock.settimeout(5)
        rest = c.file.readline()
        while rest.startswith(b"-ERR"):
            rest = c.file.readline()
        if rest:
            c._putcmd("CAPA")
            more = c.file.readline()
            if more:
                fail("the connection stays open after 3 failed logins: %r %r" % (rest, more))
    except (OSError, poplib.error_proto):
        pass
    out("CLOSED-AFTER-3")


if __name__ == "__main__":
    main()
