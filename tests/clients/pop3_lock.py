#!/usr/bin/env python3
"""The maildrop lock: a second session gets -ERR [IN-USE] while the first is in TRANSACTION.

usage: pop3_lock.py --port P --cafile F   (the pop3s port)

Checks: session 1 logs in; session 2 -> -ERR [IN-USE] (and the state machine stays in
AUTHORIZATION: session 1 still answers STAT); session 1 QUITs; session 3 logs in; session 3
is dropped (socket closed without QUIT); session 4 logs in within 5 s.
"""

import argparse
import socket
import time

from pop3_common import connect, err_of, fail, login, out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--user", default="alice@example.test")
    p.add_argument("--password", default="alice-pw")
    a = p.parse_args()

    one = connect("ssl", a.host, a.port, a.cafile)
    login(one, a.user, a.password)
    two = connect("ssl", a.host, a.port, a.cafile)
    two.user(a.user)
    e = err_of(two.pass_, a.password)
    if not e.startswith(b"-ERR [IN-USE]"):
        fail("second session: %r, expected -ERR [IN-USE]" % e)
    out("SECOND", e.decode())
    one.stat()
    err_of(two.stat)
    two.quit()
    one.quit()

    three = connect("ssl", a.host, a.port, a.cafile)
    login(three, a.user, a.password)
    three.stat()
    three.sock.shutdown(socket.SHUT_RDWR)
    three.sock.close()

    deadline = time.monotonic() + 5
    while True:
        four = connect("ssl", a.host, a.port, a.cafile)
        four.user(a.user)
        try:
            four.pass_(a.password)
            break
        except Exception as e:  # noqa: BLE001
            if time.monotonic() > deadline:
                fail("no login 5 s after a dropped session: %r" % (e,))
            four.close()
            time.sleep(0.1)
    four.stat()
    four.quit()
    out("LOCK-OK")


if __name__ == "__main__":
    main()
