"""Runs IMAP commands with Python's imaplib and prints their results in a form two servers can
be compared by (Petrel against Dovecot on the same Maildir).

  --append-dir DIR  first APPENDs every file of DIR (sorted by name) to INBOX, the n-th with
                    INTERNALDATE 01-Jan-2021 00:00:00 +0000 plus n hours.
  --commands FILE   one command a line (without tag), run in INBOX after SELECT.
Prints `== COMMAND`, then the command's untagged SORT, THREAD, SEARCH, ESEARCH, FETCH, LIST,
LSUB and STATUS responses
(ESEARCH's TAG left out), then `-> OK|NO|BAD`."""
import argparse
import datetime
import imaplib
import os
import re
import ssl
import sys


SPECIAL_USE = {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--cafile")
    p.add_argument("--append-dir")
    p.add_argument("--commands")
    a = p.parse_args()
    if a.tls:
        ctx = ssl.create_default_context(cafile=a.cafile)
        ctx.check_hostname = False
        c = imaplib.IMAP4_SSL("127.0.0.1", a.port, ssl_context=ctx)
    else:
        c = imaplib.IMAP4("127.0.0.1", a.port)
    c.login(a.user, a.password)
    if a.append_dir:
        base = datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc)
        for n, name in enumerate(sorted(os.listdir(a.append_dir))):
            with open(os.path.join(a.append_dir, name), "rb") as f:
                data = f.read()
            when = imaplib.Time2Internaldate(base + datetime.timedelta(hours=n))
            typ, resp = c.append("INBOX", None, when, data)
            if typ != "OK":
                print("FAIL APPEND %s: %r" % (name, resp))
                sys.exit(1)
    if not a.commands:
        c.logout()
        return
    c.select("INBOX")
    with open(a.commands) as f:
        commands = [l.rstrip("\n") for l in f if l.strip()]
    for command in commands:
        print("== " + command)
        tag = c._new_tag()
        listed = []
        c.send(tag + b" " + command.encode() + b"\r\n")
        while True:
            line = c.readline()
            if not line:
                print("FAIL connection closed")
                sys.exit(1)
            line = line.rstrip(b"\r\n")
            # A literal in a response: read it and go on with the rest of the line.
            while re.search(rb"\{(\d+)\}$", line):
                n = int(re.search(rb"\{(\d+)\}$", line).group(1))
                line += c.read(n) + c.readline().rstrip(b"\r\n")
            if line.startswith(tag + b" "):
                for l in sorted(listed):
                    print(l)
                listed = []
                status = line.split(b" ")[1].decode()
                code = re.match(rb"\S+ \S+ \[((?:COPYUID|APPENDUID)[^\]]*)\]", line)
                print("-> " + status + (" [%s]" % code.group(1).decode() if code else ""))
                break
            text = line.decode("utf-8", "replace")
            lm = re.match(r'\* (LIST|LSUB|STATUS) (\([^)]*\) "/" )?(.*?)( \(.*\))?$', text)
            if lm:
                # Order and quoting are not compared; LSUB's attributes are not either.
                name = lm.group(3)
                if name.startswith('"'):
                    name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
                attrs = ""
                if lm.group(2) and lm.group(1) == "LIST":
                    # Child information is only compared where RETURN (CHILDREN) asks for it
                    # (RFC 5258 and RFC 6154 let servers add it, and special-use attributes,
                    # anyway); \\NonExistent implies \\Noselect.
                    kept = []
                    for x in lm.group(2)[1:-6].split():
                        if x in ("\\HasChildren", "\\HasNoChildren") and "CHILDREN" not in command:
                            continue
                        # Special-use attributes likewise, where SPECIAL-USE is not asked for.
                        if x in SPECIAL_USE and "SPECIAL-USE" not in command:
                            continue
                        kept.append("\\Noselect" if x == "\\NonExistent" else x)
                    attrs = " (%s)" % " ".join(sorted(set(kept)))
                listed.append("* %s%s %s%s" % (lm.group(1), attrs, name, lm.group(4) or ""))
                continue
            # \Recent depends on which session saw a message first: not compared.
            text = re.sub(r" ?\\Recent", "", text).replace("( ", "(")
            m = re.match(r"\* (SORT|THREAD|SEARCH|ESEARCH|\d+ FETCH|\d+ EXPUNGE|\d+ EXISTS|VANISHED)\b(.*)$", text)
            if m:
                rest = re.sub(r'^ \(TAG "[^"]*"\)', "", m.group(2))
                print("* %s%s" % (m.group(1), rest.rstrip()))
    c.logout()


main()
