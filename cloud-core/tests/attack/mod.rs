//! The attack suite's harness: the real `garasi-cloud` binary over TLS on a free
//! loopback port (a throwaway CA and server certificate from `openssl`), its memory and
//! open descriptors read from `/proc`, an enrolled depot that pushes and pulls as the
//! edge does, and raw TLS connections from chosen loopback addresses (127.0.0.0/8 all
//! reaches `lo`, so an attacker can come from 127.0.0.2 while the depot uses 127.0.0.1).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::record::{FieldValue, Record};
use garasi_sync_protocol::wire::{self, Batch, Entry};

pub const ADMIN: &str = "attack-suite-admin-token-0123456789";

/// True if `openssl` is available (required in CI).
pub fn have_openssl() -> bool {
    let ok = Command::new("openssl").arg("version").output().is_ok();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is required in CI"
        );
        eprintln!("SKIPPED: openssl not installed");
    }
    ok
}

/// How to start the server.
#[derive(Default)]
pub struct Opts {
    /// `ulimit -n` for the server process.
    pub nofile: Option<u32>,
    /// Extra environment (settings the old binary ignored, so a run against it measures
    /// the same attack).
    pub env: Vec<(&'static str, String)>,
}

pub struct Cloud {
    child: Child,
    pub pid: u32,
    pub addr: std::net::SocketAddr,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub ca_pem: Vec<u8>,
    log: Arc<parking_lot::Mutex<String>>,
}

impl Drop for Cloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 it signs (EC keys: quick to make).
fn pki(dir: &std::path::Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=attack CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    let mut req = vec!["req", "-subj", "/CN=localhost"];
    req.extend(ec);
    req.extend(["-keyout", "key.pem", "-out", "server.csr"]);
    openssl(dir, &req);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
    );
}

impl Cloud {
    pub fn start(opts: Opts) -> Cloud {
        let bin = env!("CARGO_BIN_EXE_garasi-cloud");
        let dir = tempfile::tempdir().unwrap();
        pki(dir.path());
        // Written as most tools write files (0644 under the usual umask).
        std::fs::write(dir.path().join("admin.token"), format!("{ADMIN}\n")).unwrap();
        let db = format!("sqlite://{}", dir.path().join("cloud.db").display());
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--database".into(),
            db,
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        for (flag, file) in [
            ("--admin-token-file", "admin.token"),
            ("--tls-cert", "cert.pem"),
            ("--tls-key", "key.pem"),
        ] {
            args.push(flag.into());
            args.push(dir.path().join(file).display().to_string());
        }
        let mut cmd = match opts.nofile {
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(bin)
                    .args(&args);
                c
            }
            None => {
                let mut c = Command::new(bin);
                c.args(&args);
                c
            }
        };
        cmd.env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let pid = child.id();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.contains("garasi-cloud ready"))
            .expect("the server printed its ready line");
        let log = Arc::new(parking_lot::Mutex::new(String::new()));
        let l = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut g = l.lock();
                if g.len() < 4 << 20 {
                    g.push_str(&line);
                    g.push('\n');
                }
            }
        });
        let addr: std::net::SocketAddr = ready
            .split("listen=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let ca_pem = std::fs::read(dir.path().join("ca.pem")).unwrap();
        Cloud {
            child,
            pid,
            addr,
            base: format!("https://{addr}"),
            dir,
            ca_pem,
            log,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().clone()
    }

    /// A fresh HTTPS client (its own connections) trusting the test CA.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// Resident and peak resident memory of the server, in KiB.
    pub fn mem_kib(&self) -> (u64, u64) {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let field = |name: &str| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Open file descriptors of the server.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A new depot, enrolled: (id, secret).
    pub async fn depot(&self, name: &str) -> (String, String) {
        let http = self.client();
        let d: serde_json::Value = http
            .post(format!("{}/api/v1/admin/depots", self.base))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = d["enrolment_token"].as_str().unwrap();
        let e: serde_json::Value = http
            .post(format!("{}/api/v1/enroll", self.base))
            .json(&serde_json::json!({ "token": token }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            e["depot_id"].as_str().unwrap().to_string(),
            e["secret"].as_str().unwrap().to_string(),
        )
    }

    /// What a real depot does: push one batch then pull, on a new connection. Returns
    /// the push and pull statuses (0: no answer) and how long both took.
    pub async fn sync_once(&self, depot: &str, secret: &str, seq: u64) -> (u16, u16, Duration) {
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem).unwrap())
            .timeout(Duration::from_secs(8))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let t = Instant::now();
        let push = http
            .post(format!("{}/api/v1/sync/push", self.base))
            .header("x-garasi-depot", depot)
            .bearer_auth(secret)
            .body(batch(depot, seq))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        let pull = http
            .get(format!("{}/api/v1/sync/pull", self.base))
            .header("x-garasi-depot", depot)
            .bearer_auth(secret)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        (push, pull, t.elapsed())
    }

    pub async fn metrics(&self) -> String {
        self.client()
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A one-change batch as a depot pushes it.
pub fn batch(depot: &str, seq: u64) -> Vec<u8> {
    let change = Record::new(new_actor(Side::Depot))
        .set(&[("status", FieldValue::Text(format!("s{seq}")))])
        .unwrap()
        .unwrap();
    wire::encode(&Batch {
        depot: depot.into(),
        batch_seq: seq,
        entries: vec![Entry::Change {
            record_type: "vehicle_status".into(),
            record_id: "bus-1".into(),
            change,
        }],
    })
    .unwrap()
}

/// A TLS client config trusting the test CA.
pub fn tls_client(ca_pem: &[u8]) -> tokio_rustls::TlsConnector {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A TCP connection to `to` from the loopback address `from`.
pub async fn connect_from(
    from: std::net::Ipv4Addr,
    to: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(std::net::SocketAddr::new(from.into(), 0))?;
    tokio::time::timeout(Duration::from_secs(3), s.connect(to))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))?
}

/// Polls `f` every 100 ms until it is true or `within` has passed; true if it held.
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}
