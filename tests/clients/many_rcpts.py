#!/usr/bin/env python3
"""The recipient limit on submission: 100 RCPTs accepted, the 101st -> 452 4.5.3.

usage: many_rcpts.py --mode starttls|ssl --port P --cafile F --user U --password PW
                     [--limit N]
"""

import argparse

from petrel_common import auth_plain, connect, expect


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["starttls", "ssl"], required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--limit", type=int, default=100)
    a = p.parse_args()

    s = connect(a.mode, a.host, a.port, a.cafile)
    expect(auth_plain(s, a.user, a.password), "235", "AUTH")
    expect(s.mail(a.user), "250", "MAIL")
    for i in range(1, a.limit + 1):
        expect(s.rcpt("r%d@remote.example" % i), "250", "RCPT number %d" % i)
    expect(s.rcpt("r%d@remote.example" % (a.limit + 1)), "452 4.5.3",
           "RCPT number %d (one over the limit)" % (a.limit + 1))
    expect(s.docmd("RSET"), "250", "RSET")
    expect(s.docmd("QUIT"), "221", "QUIT")
    s.close()
    print("OK")


if __name__ == "__main__":
    main()
