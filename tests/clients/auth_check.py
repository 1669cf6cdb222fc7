#!/usr/bin/env python3
"""AUTH PLAIN outcomes on submission, one fresh STARTTLS connection per attempt.

usage: auth_check.py --port P --cafile F USER:PASSWORD:EXPECTED_REPLY [...]
(the user name ends at the first colon, the expected reply starts after the last one)
e.g.   auth_check.py --port 2587 --cafile cert.pem alice@example.test:alice-pw:235
"""

import argparse

from petrel_common import auth_plain, connect, expect


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["starttls", "ssl"], default="starttls")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("attempts", nargs="+")
    a = p.parse_args()
    for attempt in a.attempts:
        user, rest = attempt.split(":", 1)
        password, code = rest.rsplit(":", 1)
        s = connect(a.mode, a.host, a.port, a.cafile)
        expect(auth_plain(s, user, password), code, "AUTH PLAIN as %s" % user)
        if code == "235":
            expect(s.mail(user), "250", "MAIL FROM:<%s> after AUTH" % user)
        s.docmd("QUIT")
        s.close()
        print("AUTH %s %s" % (user, code))


if __name__ == "__main__":
    main()
