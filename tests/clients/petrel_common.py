"""Shared helpers for Petrel's end-to-end client scripts (standard library only).

Every script exits non-zero with a message on the first failed expectation; smtplib's
debug transcript goes to stderr so the Rust side can show it when a script fails.
"""

import base64
import smtplib
import socket
import ssl
import sys

# The name the client verifies the server certificate against (the generated pair has
# SANs for the hostname, localhost and 127.0.0.1).
TLS_NAME = "localhost"
TIMEOUT = 20


def fail(msg):
    """Print a failure message and exit 1."""
    sys.stderr.write("FAIL: %s\n" % msg)
    sys.stderr.flush()
    sys.exit(1)


def tls_context(cafile):
    """A verifying TLS context that trusts only the server's generated certificate."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class VerifiedSMTP_SSL(smtplib.SMTP_SSL):
    """SMTP_SSL that connects to an IP but verifies the certificate for TLS_NAME."""

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), timeout)
        return self.context.wrap_socket(sock, server_hostname=TLS_NAME)


def connect(mode, host, port, cafile, ehlo=True):
    """Connect in `plain`, `starttls` or `ssl` mode; for starttls, EHLO + STARTTLS + EHLO."""
    if mode == "ssl":
        s = VerifiedSMTP_SSL(host, port, timeout=TIMEOUT, context=tls_context(cafile),
                             local_hostname="client.example")
    else:
        s = smtplib.SMTP(host, port, timeout=TIMEOUT, local_hostname="client.example")
        s._host = TLS_NAME  # smtplib uses it as server_hostname for STARTTLS
    s.set_debuglevel(1)
    if mode == "starttls":
        s.ehlo()
        if not s.has_extn("starttls"):
            fail("STARTTLS not advertised before TLS: %r" % s.esmtp_features)
        code, msg = s.starttls(context=tls_context(cafile))
        if code != 220:
            fail("STARTTLS answered %d %r" % (code, msg))
    if ehlo:
        s.ehlo()
    return s


def reply_text(resp):
    """'CODE text' of an smtplib (code, bytes) reply."""
    code, msg = resp
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return "%d %s" % (code, msg)


def expect(resp, prefixes, what):
    """Check a (code, msg) reply starts with one of `prefixes` ('535 5.7.8', '5', ...)."""
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    text = reply_text(resp)
    if not any(text.startswith(p) for p in prefixes):
        fail("%s: expected %s, got %r" % (what, " or ".join(prefixes), text))
    return text


def b64(s):
    """Base64 of a str or bytes, as str."""
    if isinstance(s, str):
        s = s.encode("utf-8")
    return base64.b64encode(s).decode("ascii")


def plain_ir(user, password):
    """The AUTH PLAIN initial response for user/password (empty authorization identity)."""
    return b64("\0%s\0%s" % (user, password))


def auth_plain(s, user, password):
    """AUTH PLAIN with an initial response; returns the (code, msg) reply."""
    return s.docmd("AUTH", "PLAIN " + plain_ir(user, password))
