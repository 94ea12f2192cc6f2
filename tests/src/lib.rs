//! garasi-fleet-tests: tests of the whole fleet (cloud and depots together) live in
//! `tests/`; this library is their shared set-up: a throwaway PKI, a TLS cloud whose
//! depot link can be cut and restored, and enrolled depot nodes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use garasi_cloud::http::{router, serve_tls, tls_acceptor, AppState};
use garasi_cloud::store::sqlite::SqliteStore;
use garasi_cloud::store::CloudStore;
use garasi_edge::config::Settings;
use garasi_edge::modules::{fleet, sync};
use garasi_edge::node::{self, Node};
use garasi_edge::store::{DataDir, Store};
use tokio_util::sync::CancellationToken;

pub const ADMIN: &str = "fleet-admin-token-for-tests";

/// For a bench's helper process (the cloud, the admins' probes): a session of its own,
/// as a service or another machine's program runs (Linux's autogroup shares the CPU
/// between sessions first), and a SIGTERM when the process that started it dies, as the
/// terminal's Ctrl-C no longer reaches it. False if that process is already gone (died
/// before the parent-death signal was set).
#[cfg(target_os = "linux")]
pub fn own_session() -> bool {
    if let Err(e) = rustix::process::setsid() {
        eprintln!("no session of its own: {e}");
    }
    let term = Some(rustix::process::Signal::TERM);
    if let Err(e) = rustix::process::set_parent_process_death_signal(term) {
        eprintln!("no parent-death signal: {e}");
    }
    rustix::process::getppid().is_some_and(|p| p != rustix::process::Pid::INIT)
}

/// True if `openssl` is available; in CI its absence is a failure.
pub fn have_openssl() -> bool {
    let ok = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is required in CI"
        );
        eprintln!("SKIPPED: openssl not installed");
    }
    ok
}

/// A cloud over TLS with two listeners on one store: the depot link (which a test can
/// cut and restore at the same address) and an admin endpoint that stays up.
pub struct Cloud {
    pub state: AppState<SqliteStore>,
    pub tls: tokio_rustls::TlsAcceptor,
    pub ca_pem: String,
    pub link_addr: std::net::SocketAddr,
    pub admin_base: String,
    /// HTTPS client trusting the test CA.
    pub https: reqwest::Client,
    link: parking_lot::Mutex<Option<CancellationToken>>,
    _admin: CancellationToken,
}

fn serve(
    listener: tokio::net::TcpListener,
    state: AppState<SqliteStore>,
    tls: tokio_rustls::TlsAcceptor,
) -> CancellationToken {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move { serve_tls(listener, tls, router(state), c).await.unwrap() });
    cancel
}

impl Cloud {
    pub async fn start(dir: &std::path::Path) -> Cloud {
        let (ca, cert, key) = test_pki(dir).unwrap();
        let tls = tls_acceptor(&cert, &key).unwrap();
        let store = SqliteStore::open(&dir.join("cloud.db")).unwrap();
        store.migrate().await.unwrap();
        let state = AppState::new(Arc::new(store), Arc::from(ADMIN)).unwrap();
        // The materialiser runs beside the API, as `serve` runs it.
        tokio::spawn(state.materialiser.clone().run(CancellationToken::new()));
        let link_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let link_addr = link_listener.local_addr().unwrap();
        let link = serve(link_listener, state.clone(), tls.clone());
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_base = format!("https://{}", admin_listener.local_addr().unwrap());
        let admin = serve(admin_listener, state.clone(), tls.clone());
        let ca_pem = std::fs::read_to_string(&ca).unwrap();
        let https = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        Cloud {
            state,
            tls,
            ca_pem,
            link_addr,
            admin_base,
            https,
            link: parking_lot::Mutex::new(Some(link)),
            _admin: admin,
        }
    }

    pub async fn new_depot_token(&self, name: &str) -> String {
        self.state
            .store
            .create_depot(name)
            .await
            .unwrap()
            .enrolment_token
    }

    pub fn cut_link(&self) {
        if let Some(c) = self.link.lock().take() {
            c.cancel();
        }
    }

    pub async fn restore_link(&self) {
        let listener = tokio::net::TcpListener::bind(self.link_addr).await.unwrap();
        *self.link.lock() = Some(serve(listener, self.state.clone(), self.tls.clone()));
    }
}

/// An enrolled depot node with the given vehicles, syncing every 200 ms.
pub async fn depot(
    dir: &std::path::Path,
    cloud: &Cloud,
    token: &str,
    vehicles: &[&str],
) -> (Node, String) {
    let dd = DataDir::new(dir, None);
    dd.init().unwrap();
    let store = Store::open(&dd).unwrap();
    node::migrate_all(&store).unwrap();
    for id in vehicles {
        fleet::service::upsert_vehicle(
            &store,
            &fleet::service::Vehicle {
                id: (*id).into(),
                label: (*id).into(),
                plate: None,
                battery_kwh: 350.0,
                kwh_per_km: None,
                vehicle_type: None,
            },
        )
        .unwrap();
    }
    let depot_id = sync::service::enroll(
        &store,
        &format!("https://{}", cloud.link_addr),
        token,
        Some(cloud.ca_pem.clone()),
    )
    .await
    .unwrap();
    drop(store);
    (start_node(dir, Some("200")).await, depot_id)
}

/// Starts the node of the data directory `dir` on free ports (syncing every
/// `sync_interval_ms`, or the default 2 s).
pub async fn start_node(dir: &std::path::Path, sync_interval_ms: Option<&str>) -> Node {
    let settings = Settings {
        http_listen: Some("127.0.0.1:0".into()),
        mqtt_listen: Some("127.0.0.1:0".into()),
        mqtt5_listen: Some("127.0.0.1:0".into()),
        sync_interval_ms: sync_interval_ms.map(str::to_string),
        ..Default::default()
    };
    let cfg = settings.resolve(dir).unwrap();
    let bound = node::bind(&cfg).unwrap();
    Node::start(cfg, bound).await.unwrap()
}

/// Polls `f` until true; panics naming `what` after 20 s.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// RSA 2048 keys, as `openssl req -newkey` makes them.
pub const RSA_KEYS: &[&str] = &["-newkey", "rsa:2048"];
/// ECDSA P-256 keys (a TLS handshake's signature costs a fraction of RSA's).
pub const EC_KEYS: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

type Pki = (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf);

/// Makes a throwaway CA and a server certificate for 127.0.0.1/localhost signed by it,
/// with the `openssl` command. Returns (ca.pem, cert.pem, key.pem) paths in `dir`.
pub fn test_pki(dir: &std::path::Path) -> Result<Pki, String> {
    test_pki_with(dir, RSA_KEYS)
}

/// `test_pki` with keys made by `keys` (`RSA_KEYS` or `EC_KEYS`).
pub fn test_pki_with(dir: &std::path::Path, keys: &[&str]) -> Result<Pki, String> {
    let run = |args: &[&str]| -> Result<(), String> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(&[
        ["req", "-x509"].as_slice(),
        keys,
        &[
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=garasi test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    ]
    .concat())?;
    run(&[
        ["req"].as_slice(),
        keys,
        &[
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ],
    ]
    .concat())?;
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n")
        .map_err(|e| e.to_string())?;
    run(&[
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
    ])?;
    Ok((
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ))
}

/// Defines a dispatcher for `depot` through the cloud's admin API (`admin_base`, an HTTPS
/// client trusting the cloud) and signs them in at the depot's HTTP address once the
/// person has arrived by sync: edge writes need a signed-in person. Returns the token.
pub async fn dispatcher_token(
    https: &reqwest::Client,
    admin_base: &str,
    depot: &str,
    edge_http: &str,
    id: &str,
) -> String {
    let password = format!("{id} password for tests");
    let r = https
        .put(format!(
            "{admin_base}/api/v1/admin/depots/{depot}/people/{id}"
        ))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"name": id, "roles": ["dispatcher"], "password": password}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "person {id}: {}", r.status());
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = http
            .post(format!("{edge_http}/api/v1/session"))
            .json(&serde_json::json!({"person": id, "password": password, "token": true}))
            .send()
            .await;
        if let Ok(r) = r {
            if r.status().is_success() {
                let v: serde_json::Value = r.json().await.unwrap();
                return v["token"].as_str().unwrap().to_string();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never reached the depot"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
