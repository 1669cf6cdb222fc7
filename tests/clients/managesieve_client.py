"""A small hand-written ManageSieve (RFC 5804) client for Petrel's end-to-end tests.

Usage: managesieve_client.py HOST PORT CAFILE USER PASSWORD SCRIPT_NAME SCRIPT_TEXT MAX_SIZE

Speaks to the `managesieve` listener: checks the greeting's capabilities, that plaintext
AUTHENTICATE is refused before TLS, does STARTTLS (verifying the generated certificate as
localhost), checks the capabilities re-issued after the handshake, then AUTHENTICATE PLAIN (a
wrong password with an initial response, then the right one in the continuation form with a
literal), PUTSCRIPT of a bad script (refused with line and column), PUTSCRIPT, SETACTIVE,
LISTSCRIPTS, GETSCRIPT, DELETESCRIPT of the active script (refused), an oversize literal
(refused, the session goes on), and LOGOUT. Exits 1 with a message on the first surprise.
"""

import base64
import re
import socket
import sys

from petrel_common import TIMEOUT, TLS_NAME, fail, tls_context

LITERAL_RE = re.compile(rb"\{(\d+)\+?\}$")


class Conn:
    """One ManageSieve connection; responses are read as lists of token lines."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), TIMEOUT)
        self.file = self.sock.makefile("rb")

    def send(self, data):
        sys.stderr.write("C: %r\n" % data[:200])
        self.sock.sendall(data)

    def read_line(self):
        """One logical line: literals `{N}` are read and kept inline as ("lit", bytes)."""
        parts = []
        while True:
            raw = self.file.readline()
            if not raw:
                fail("connection closed by server; so far %r" % parts)
            sys.stderr.write("S: %r\n" % raw[:200])
            line = raw.rstrip(b"\r\n")
            m = LITERAL_RE.search(line)
            if m:
                parts.extend(tokenize(line[: m.start()]))
                data = self.file.read(int(m.group(1)))
                parts.append(data)
                continue
            parts.extend(tokenize(line))
            return parts

    def response(self):
        """Lines up to and including the final OK/NO/BYE; returns (status, lines, final)."""
        lines = []
        while True:
            line = self.read_line()
            if line and isinstance(line[0], str) and line[0].upper() in ("OK", "NO", "BYE"):
                return line[0].upper(), lines, line
            lines.append(line)

    def command(self, data, expect):
        self.send(data)
        status, lines, final = self.response()
        if status != expect:
            fail("%r answered %r %r, expected %s" % (data[:80], status, final, expect))
        return lines, final

    def starttls(self, cafile):
        self.command(b"STARTTLS\r\n", "OK")
        self.sock = tls_context(cafile).wrap_socket(self.sock, server_hostname=TLS_NAME)
        self.file = self.sock.makefile("rb")


def tokenize(line):
    """Atoms as str, quoted strings as bytes."""
    out = []
    i = 0
    while i < len(line):
        c = line[i : i + 1]
        if c == b" ":
            i += 1
        elif c == b"(":
            j = line.index(b")", i)
            out.append(line[i : j + 1].decode())
            i = j + 1
        elif c == b'"':
            s = bytearray()
            i += 1
            while line[i : i + 1] != b'"':
                if line[i : i + 1] == b"\\":
                    i += 1
                s += line[i : i + 1]
                i += 1
            out.append(bytes(s))
            i += 1
        else:
            j = i
            while j < len(line) and line[j : j + 1] not in (b" ", b'"'):
                j += 1
            out.append(line[i:j].decode())
            i = j
    return out


def capabilities(lines):
    caps = {}
    for line in lines:
        name = line[0].decode().upper()
        caps[name] = line[1].decode() if len(line) > 1 else ""
    return caps


def literal(data):
    return b"{%d+}\r\n" % len(data) + data


def main():
    host, port, cafile, user, password, name, script, max_size = sys.argv[1:9]
    port, max_size = int(port), int(max_size)
    script = script.encode()
    c = Conn(host, port)

    status, lines, final = c.response()
    if status != "OK":
        fail("greeting %r" % final)
    caps = capabilities(lines)
    if caps.get("IMPLEMENTATION") != "Petrel" or caps.get("VERSION") != "1.0":
        fail("greeting capabilities %r" % caps)
    if "STARTTLS" not in caps or caps.get("SASL") != "":
        fail("before TLS: STARTTLS offered and no SASL mechanism expected, got %r" % caps)
    if "fileinto" not in caps.get("SIEVE", "").split():
        fail("SIEVE capability lacks fileinto: %r" % caps)

    plain = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
    _, final = c.command(b'AUTHENTICATE "PLAIN" "' + plain + b'"\r\n', "NO")
    if "(ENCRYPT-NEEDED)" not in final:
        fail("plaintext AUTHENTICATE before TLS: %r" % final)

    c.starttls(cafile)
    status, lines, final = c.response()
    caps = capabilities(lines)
    if status != "OK" or caps.get("SASL") != "PLAIN" or "STARTTLS" in caps:
        fail("capabilities after TLS: %r %r" % (caps, final))

    wrong = base64.b64encode(b"\0" + user.encode() + b"\0wrong-password")
    c.command(b'AUTHENTICATE "PLAIN" "' + wrong + b'"\r\n', "NO")
    c.send(b'AUTHENTICATE "PLAIN"\r\n')
    challenge = c.read_line()
    if challenge != [b""]:
        fail("expected an empty challenge, got %r" % challenge)
    c.command(literal(plain) + b"\r\n", "OK")

    bad = b'require "fileinto";\r\nfileinto "x";\r\nthis_is_no_command;\r\n'
    _, final = c.command(b'PUTSCRIPT "bad" ' + literal(bad) + b"\r\n", "NO")
    if not final[-1].startswith(b"line 3, column 1:"):
        fail("bad script refused without its position: %r" % final)

    c.command(b'PUTSCRIPT "' + name.encode() + b'" ' + literal(script) + b"\r\n", "OK")
    c.command(b'SETACTIVE "' + name.encode() + b'"\r\n', "OK")
    lines, _ = c.command(b"LISTSCRIPTS\r\n", "OK")
    if lines != [[name.encode(), "ACTIVE"]]:
        fail("LISTSCRIPTS %r" % lines)
    lines, _ = c.command(b'GETSCRIPT "' + name.encode() + b'"\r\n', "OK")
    if lines != [[script]]:
        fail("GETSCRIPT returned %r" % lines)
    _, final = c.command(b'DELETESCRIPT "' + name.encode() + b'"\r\n', "NO")
    if "(ACTIVE)" not in final:
        fail("deleting the active script: %r" % final)
    _, final = c.command(b'GETSCRIPT "missing"\r\n', "NO")
    if "(NONEXISTENT)" not in final:
        fail("GETSCRIPT of a missing script: %r" % final)

    big = b"#" * (max_size + 1)
    _, final = c.command(b'PUTSCRIPT "big" ' + literal(big) + b"\r\n", "NO")
    if "(QUOTA/MAXSIZE)" not in final:
        fail("oversize script: %r" % final)
    c.command(b"NOOP\r\n", "OK")
    c.command(b"LOGOUT\r\n", "OK")
    print("ok")


if __name__ == "__main__":
    main()
