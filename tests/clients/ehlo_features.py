#!/usr/bin/env python3
"""Print the EHLO keywords a listener advertises after TLS, then try STARTTLS again.

usage: ehlo_features.py --mode starttls|ssl --port P --cafile F

Prints `FEATURE <KEYWORD> <params>` per keyword (upper-cased keyword), `TLS <version>`, and
`STARTTLS-AGAIN <reply>` for a STARTTLS sent inside TLS.
"""

import argparse

from petrel_common import connect, reply_text


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["starttls", "ssl"], required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    a = p.parse_args()

    s = connect(a.mode, a.host, a.port, a.cafile)
    for name, params in sorted(s.esmtp_features.items()):
        print("FEATURE %s %s" % (name.upper(), params.strip()))
    print("TLS %s" % s.sock.version())
    print("STARTTLS-AGAIN %s" % reply_text(s.docmd("STARTTLS")).replace("\n", " "))
    s.close()


if __name__ == "__main__":
    main()
