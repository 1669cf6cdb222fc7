"""QRESYNC (RFC 7162) against a live server with two sessions over implicit TLS: A enables
QRESYNC and selects INBOX; B expunges UID 1; A's NOOP must report `* VANISHED 1` (not EXPUNGE);
a third session resyncs with SELECT (QRESYNC (uidvalidity modseq 1:*)) and must get
`VANISHED (EARLIER) 1`, then UID FETCH (CHANGEDSINCE modseq VANISHED) the same. Prints the
interesting untagged lines as `KEY line`."""
import argparse
import re
import socket
import ssl
import sys


class Session:
    def __init__(self, a, ctx):
        raw = socket.create_connection(("127.0.0.1", a.port), timeout=20)
        self.s = ctx.wrap_socket(raw)
        self.f = self.s.makefile("rb")
        self.f.readline()
        self.n = 0
        self.run("LOGIN %s %s" % (a.user, a.password))

    def run(self, command):
        self.n += 1
        tag = "q%d" % self.n
        self.s.sendall(("%s %s\r\n" % (tag, command)).encode())
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                print("FAIL closed during %s" % command)
                sys.exit(1)
            line = line.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith(tag + " "):
                if not line.startswith(tag + " OK"):
                    print("FAIL %s: %s" % (command, line))
                    sys.exit(1)
                return lines
            lines.append(line)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    a = p.parse_args()
    ctx = ssl.create_default_context(cafile=a.cafile)
    ctx.check_hostname = False
    first = Session(a, ctx)
    for l in first.run("ENABLE QRESYNC"):
        print("ENABLE " + l)
    lines = first.run("SELECT INBOX")
    text = "\n".join(lines)
    validity = re.search(r"UIDVALIDITY (\d+)", text).group(1)
    modseq = re.search(r"HIGHESTMODSEQ (\d+)", text).group(1)
    other = Session(a, ctx)
    other.run("SELECT INBOX")
    other.run("UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    for l in other.run("EXPUNGE"):
        print("OTHER " + l)
    for l in first.run("NOOP"):
        print("NOOP " + l)
    third = Session(a, ctx)
    third.run("ENABLE QRESYNC")
    for l in third.run("SELECT INBOX (QRESYNC (%s %s 1:*))" % (validity, modseq)):
        print("RESYNC " + l)
    for l in third.run("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %s VANISHED)" % modseq):
        print("FETCH " + l)
    print("DONE")


main()
