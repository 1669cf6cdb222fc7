"""Times SELECT, NOOP, FETCH of all flags and two SEARCHes on INBOX with imaplib: the IMAP
figures of tests/tests/e2e/dovecot.rs imap_figures_beside_dovecot. Args: PORT USER PASSWORD
[CAFILE (implicit TLS)]."""
import imaplib, ssl, sys, time
port, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
tls = len(sys.argv) > 4
if tls:
    ctx = ssl.create_default_context(cafile=sys.argv[4]); ctx.check_hostname = False
    c = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
else:
    c = imaplib.IMAP4("127.0.0.1", port)
c.login(user, pw)
def t(name, f):
    s = time.monotonic(); r = f(); e = time.monotonic() - s
    print("%-28s %.3f s" % (name, e)); return r
t("SELECT (first)", lambda: c.select("INBOX"))
t("NOOP", lambda: c.noop())
t("SELECT (again)", lambda: c.select("INBOX"))
t("FETCH 1:* (FLAGS)", lambda: c.fetch("1:*", "(FLAGS)"))
t("UID FETCH 1:* (UID FLAGS)", lambda: c.uid("FETCH", "1:*", "(FLAGS)"))
t("SEARCH UNSEEN", lambda: c.search(None, "UNSEEN"))
t("SEARCH FROM user5", lambda: c.search(None, "FROM", "user5"))
t("NOOP", lambda: c.noop())
# Once the folder has been quiet for a few seconds, NOOP needs no look at the messages.
time.sleep(3)
t("NOOP (quiet folder)", lambda: c.noop())
t("NOOP (quiet folder, again)", lambda: c.noop())
c.logout()
