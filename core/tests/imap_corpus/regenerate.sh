#!/bin/sh
# Regenerates the *.dovecot files: Dovecot's own answers to the FETCH items listed in
# commands.txt, for every *.eml here. Each message goes alone into a fresh Maildir, and each
# command runs in its own `imap` process (Dovecot's IMAP binary in PREAUTH mode over
# stdin/stdout: no daemon, no network, no login), so a .dovecot file is, command after command,
# exactly the untagged FETCH response(s) and the tagged reply, with the timings Dovecot appends
# to tagged replies removed. Needs dovecot-imapd (Debian: apt-get install dovecot-imapd) and
# python3. Usage: sh core/tests/imap_corpus/regenerate.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export IMAP_BIN="${DOVECOT_IMAP:-/usr/lib/dovecot/imap}"
export CORPUS="$here"
python3 - <<'PY'
import glob, os, re, shutil, subprocess, tempfile

corpus = os.environ["CORPUS"]
imap = os.environ["IMAP_BIN"]
items = [l.rstrip("\n") for l in open(os.path.join(corpus, "commands.txt")) if l.strip()]
work = tempfile.mkdtemp()
os.chmod(work, 0o755)
root = os.getuid() == 0
# Dovecot refuses to serve mail as root: run as nobody when we are root.
prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if root else []
user = "nobody" if root else os.environ.get("USER", "user")
conf = os.path.join(work, "dovecot.conf")
with open(conf, "w") as f:
    f.write("mail_location = maildir:%s/Maildir\nlog_path = /dev/null\n" % work)
try:
    for eml in sorted(glob.glob(os.path.join(corpus, "*.eml"))):
        out = b""
        for n, item in enumerate(items, 1):
            md = os.path.join(work, "Maildir")
            shutil.rmtree(md, ignore_errors=True)
            for d in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(md, d))
            shutil.copy(eml, os.path.join(md, "cur", "1.petrel:2,S"))
            if root:
                subprocess.run(["chown", "-R", "nobody:nogroup", md, conf], check=True)
            script = b"s SELECT INBOX\r\nt%d FETCH 1 (%s)\r\nz LOGOUT\r\n" % (n, item.encode())
            data = subprocess.run(
                prefix + ["env", "-i", "HOME=" + work, "USER=" + user, imap, "-c", conf],
                input=script, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True,
            ).stdout
            start = data.index(b"\r\ns OK ") + 2
            start = data.index(b"\r\n", start) + 2
            end = data.index(b"* BYE ")
            out += re.sub(rb" \([0-9.]+ \+ [0-9.]+(?: \+ [0-9.]+)? secs\)\.\r\n", b".\r\n", data[start:end])
        name = os.path.splitext(eml)[0] + ".dovecot"
        with open(name, "wb") as f:
            f.write(out)
    version = subprocess.run(["dovecot", "--version"], stdout=subprocess.PIPE, check=True).stdout
    with open(os.path.join(corpus, "DOVECOT_VERSION"), "wb") as f:
        f.write(version)
finally:
    shutil.rmtree(work, ignore_errors=True)
PY
