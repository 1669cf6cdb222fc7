"""Shared helpers for Petrel's POP3 client scripts (standard library only)."""

import os
import poplib
import re
import socket
import ssl
import sys

from petrel_common import TLS_NAME, TIMEOUT, fail, tls_context

UIDL_RE = re.compile(rb"^[0-9A-F]{16}$")


class VerifiedPOP3_SSL(poplib.POP3_SSL):
    """POP3_SSL that connects to an IP but verifies the certificate for TLS_NAME."""

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout)
        return self.context.wrap_socket(sock, server_hostname=TLS_NAME)


def connect(mode, host, port, cafile):
    """A poplib connection in `stls` (plain + STLS) or `ssl` mode, verified as localhost."""
    if mode == "ssl":
        p = VerifiedPOP3_SSL(host, port, timeout=TIMEOUT, context=tls_context(cafile))
    else:
        p = poplib.POP3(host, port, timeout=TIMEOUT)
        p.host = TLS_NAME  # used as server_hostname by stls()
        if mode == "stls":
            p.stls(tls_context(cafile))
    p.set_debuglevel(1)
    return p


def login(p, user, password):
    r = p.user(user)
    if not r.startswith(b"+OK"):
        fail("USER: %r" % r)
    r = p.pass_(password)
    if not r.startswith(b"+OK"):
        fail("PASS: %r" % r)


def err_of(fn, *args):
    """Runs a poplib call that must fail with -ERR; returns the -ERR line as bytes."""
    try:
        r = fn(*args)
    except poplib.error_proto as e:
        text = e.args[0]
        if isinstance(text, str):
            text = text.encode()
        if not text.startswith(b"-ERR"):
            fail("expected -ERR, got error %r" % (text,))
        return text
    fail("expected -ERR from %s%r, got %r" % (getattr(fn, "__name__", fn), args, r))


def maildir_files(maildir):
    """{base name: (path, bytes)} of every file in new/ and cur/."""
    out = {}
    for sub in ("new", "cur"):
        d = os.path.join(maildir, sub)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            path = os.path.join(d, name)
            with open(path, "rb") as f:
                out[name.split(":", 1)[0]] = (path, f.read())
    return out


def read_uidlist(maildir):
    """(uidvalidity, {uid: base name}) from DIR/dovecot-uidlist."""
    path = os.path.join(maildir, "dovecot-uidlist")
    if not os.path.isfile(path):
        fail("no dovecot-uidlist in %s: %r" % (maildir, os.listdir(maildir)))
    with open(path) as f:
        lines = f.read().splitlines()
    header = lines[0].split(" ")
    if header[0] != "3":
        fail("dovecot-uidlist header is not version 3: %r" % lines[0])
    validity = None
    for field in header[1:]:
        if field.startswith("V"):
            validity = int(field[1:])
    if validity is None:
        fail("dovecot-uidlist header without V: %r" % lines[0])
    uids = {}
    for line in lines[1:]:
        m = re.match(r"^(\d+)(?: [^:]*)?:(.*)$", line)
        if not m:
            fail("bad dovecot-uidlist line %r" % line)
        uids[int(m.group(1))] = m.group(2).split(":", 1)[0]
    return validity, uids


def joined(lines):
    """The message as poplib returned it (lines without CRLF, dot-unstuffed) with CRLFs."""
    return b"".join(l + b"\r\n" for l in lines)


def out(*words):
    print(" ".join(str(w) for w in words))
    sys.stdout.flush()
