//! MTA-STS (RFC 8461) end to end: dnsmasq publishes `_mta-sts.remote.test` and the MX, a Python
//! HTTPS server serves the policy with a certificate from a CA the test makes with `openssl`,
//! and the receiving Petrel presents a certificate from that CA for `mx.remote.test`. The
//! sender is told to trust that CA (`relay.mta_sts_ca`) and to fetch from the Python server's
//! port (`relay.mta_sts_port`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use petrel_tests::{ALICE, Account, Dnsmasq, Listener, Runtime, Server, ServerOptions, swaks};

use crate::fail;

both_runtimes!(enforce_with_a_verified_mx_delivers);

const DAVE: Account = Account {
    address: "dave@remote.test",
    password: "dave-pw",
};

/// A CA and two leaf certificates (`mta-sts.remote.test`, `mx.remote.test`), as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn make() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            &[
                &["req", "-x509", "-nodes", "-days", "2"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-subj",
                    "/CN=Petrel test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        for host in ["mta-sts.remote.test", "mx.remote.test"] {
            std::fs::write(
                dir.path().join(format!("{host}.ext")),
                format!(
                    "subjectAltName=DNS:{host}\nbasicConstraints=CA:FALSE\n\
                     keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
                ),
            )
            .expect("write extensions");
            let (key, csr, pem, ext) = (
                format!("{host}.key"),
                format!("{host}.csr"),
                format!("{host}.pem"),
                format!("{host}.ext"),
            );
            openssl(
                &[
                    &["req", "-new", "-nodes"][..],
                    &ec,
                    &[
                        "-keyout",
                        &key,
                        "-out",
                        &csr,
                        "-subj",
                        &format!("/CN={host}"),
                    ],
                ]
                .concat(),
            );
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &pem,
                "-extfile",
                &ext,
            ]);
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Python's `http.server` over TLS, serving one policy file; killed on drop.
struct PolicyServer {
    child: Child,
    port: u16,
}

const SERVE_POLICY: &str = r#"
import http.server, ssl, sys
cert, key, policy = sys.argv[1:4]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/.well-known/mta-sts.txt" or self.headers.get("Host") != "mta-sts.remote.test":
            self.send_error(404)
            return
        body = open(policy, "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        sys.stderr.write("policy server: " + (args[0] % args[1:]) + "\n")
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

impl PolicyServer {
    fn start(pki: &Pki, policy: &str) -> PolicyServer {
        let file = pki.path("policy.txt");
        std::fs::write(&file, policy).expect("write policy");
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(SERVE_POLICY)
            .arg(pki.path("mta-sts.remote.test.pem"))
            .arg(pki.path("mta-sts.remote.test.key"))
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the policy server printed {line:?}"));
        PolicyServer { child, port }
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The receiving Petrel for `remote.test`; with `pki`, its certificate is the CA-signed one
/// for `mx.remote.test`, else its own self-signed one.
fn receiver(rt: Runtime, pki: Option<&Pki>) -> Server {
    let extra_config = pki.map_or(String::new(), |pki| {
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            pki.path("mx.remote.test.pem").display(),
            pki.path("mx.remote.test.key").display()
        )
    });
    Server::start(
        rt,
        ServerOptions {
            domains: vec!["remote.test".into()],
            users: vec![DAVE],
            extra_config,
            ..Default::default()
        },
    )
}

/// DNS for `remote.test`: the MTA-STS TXT record, the policy host and the MX.
fn dns() -> Dnsmasq {
    Dnsmasq::start(&[
        "--txt-record=_mta-sts.remote.test,v=STSv1;id=20261125T000000".into(),
        "--host-record=mta-sts.remote.test,127.0.0.1".into(),
        "--mx-host=remote.test,mx.remote.test,10".into(),
        "--host-record=mx.remote.test,127.0.0.1".into(),
    ])
}

/// The sending Petrel, trusting the test CA for MTA-STS.
fn sender(rt: Runtime, dns: &Dnsmasq, b: &Server, policy: &PolicyServer, pki: &Pki) -> Server {
    Server::start(
        rt,
        ServerOptions {
            extra_config: format!(
                "[relay]\nresolver = \"{}\"\nmx_port = {}\nmta_sts_port = {}\nmta_sts_ca = \"{}\"\n",
                dns.addr,
                b.port(Listener::Smtp),
                policy.port,
                pki.path("ca.pem").display()
            ),
            ..Default::default()
        },
    )
}

fn policy(mode: &str, mx: &str) -> String {
    format!("version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: 86400\n")
}

fn submit(s: &Server, subject: &str) {
    let args = sargs![
        "--server",
        "127.0.0.1",
        "--port",
        s.port(Listener::Submission),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        ALICE.address,
        "--auth-password",
        ALICE.password,
        "--from",
        ALICE.address,
        "--to",
        DAVE.address,
        "--header",
        format!("Subject: {subject}"),
        "--body",
        "Hello over MTA-STS.\n",
    ];
    let done = swaks(&args);
    if !done.success() {
        fail(s, format!("submission failed\n{}", done.describe()));
    }
}

fn queue_list(s: &Server) -> String {
    String::from_utf8_lossy(&s.petrel(&["queue", "list"], b"").stdout).into_owned()
}

/// Waits until `f` holds, or fails with `what` and both servers' logs.
fn wait_for(a: &Server, b: &Server, what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !f() {
        if std::time::Instant::now() > deadline {
            panic!(
                "after 30 s: {what}\nqueue: {}\n--- sender ---\n{}\n--- receiver ---\n{}",
                queue_list(a),
                a.log_tail(40),
                b.log_tail(20)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn cached_policy(a: &Server) -> String {
    let path: PathBuf = a.data_dir().join("queue/sts/remote.test");
    String::from_utf8_lossy(&std::fs::read(Path::new(&path)).unwrap_or_default()).into_owned()
}

fn enforce_with_a_verified_mx_delivers(rt: Runtime) {
    let pki = Pki::make();
    let policy_server = PolicyServer::start(&pki, &policy("enforce", "mx.remote.test"));
    let b = receiver(rt, Some(&pki));
    let dns = dns();
    let a = sender(rt, &dns, &b, &policy_server, &pki);
    submit(&a, "enforced");
    wait_for(&a, &b, "dave's copy at the receiver", || {
        b.new_messages(DAVE.address).len() == 1
    });
    let text = String::from_utf8_lossy(&b.new_messages(DAVE.address)[0]).into_owned();
    assert!(text.contains("Subject: enforced"), "{text}");
    let hop = text.split("Received: ").nth(1).unwrap_or_default();
    assert!(hop.contains("with ESMTPS"), "the hop must be TLS: {hop}");
    let cached = cached_policy(&a);
    assert!(
        cached.starts_with("id: 20261125T000000\n") && cached.contains("mode: enforce"),
        "the policy is cached on disk: {cached:?}"
    );
    assert!(
        a.log().contains("MTA-STS policy fetched"),
        "{}",
        a.log_tail(30)
    );
}

#[test]
fn enforce_with_a_foreign_mx_defers() {
    let pki = Pki::make();
    let policy_server = PolicyServer::start(&pki, &policy("enforce", "other.remote.test"));
    let b = receiver(Runtime::Smol, Some(&pki));
    let dns = dns();
    let a = sender(Runtime::Blocking, &dns, &b, &policy_server, &pki);
    submit(&a, "not to that MX");
    wait_for(&a, &b, "a deferral naming MTA-STS", || {
        let list = queue_list(&a);
        list.contains("dave@remote.test: pending")
            && list.contains("MTA-STS: the enforced policy of remote.test allows none of its MX hosts (mx: other.remote.test)")
    });
    assert!(
        b.new_messages(DAVE.address).is_empty(),
        "nothing may reach an MX the policy does not allow"
    );
}

#[test]
fn enforce_with_an_unverifiable_certificate_defers_without_plaintext() {
    let pki = Pki::make();
    let policy_server = PolicyServer::start(&pki, &policy("enforce", "mx.remote.test"));
    // The receiver keeps its self-signed certificate: the policy's MX, but not verifiable.
    let b = receiver(Runtime::Blocking, None);
    let dns = dns();
    let a = sender(Runtime::Smol, &dns, &b, &policy_server, &pki);
    submit(&a, "no plaintext fallback");
    wait_for(&a, &b, "a deferred attempt", || {
        queue_list(&a).contains("1 attempt(s)")
    });
    assert!(
        a.log().contains("TLS handshake failed"),
        "{}",
        a.log_tail(30)
    );
    assert!(
        !a.log().contains("retrying without TLS"),
        "{}",
        a.log_tail(30)
    );
    assert!(
        b.new_messages(DAVE.address).is_empty(),
        "nothing may be sent when the certificate cannot be verified"
    );
}

#[test]
fn testing_mode_delivers_despite_a_mismatch() {
    let pki = Pki::make();
    let policy_server = PolicyServer::start(&pki, &policy("testing", "other.remote.test"));
    // Self-signed receiver too: testing mode changes nothing about delivery.
    let b = receiver(Runtime::Blocking, None);
    let dns = dns();
    let a = sender(Runtime::Smol, &dns, &b, &policy_server, &pki);
    submit(&a, "testing only");
    wait_for(&a, &b, "dave's copy despite the testing policy", || {
        b.new_messages(DAVE.address).len() == 1
    });
    assert!(
        a.log()
            .contains("MTA-STS (testing): the policy does not allow this MX host"),
        "{}",
        a.log_tail(30)
    );
}
