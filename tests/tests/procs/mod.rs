//! Fleet members as real processes: `garasi-cloud` and `garasi-edge` (built in this
//! package as `fleet-cloud` and `fleet-edge`), a TCP proxy per depot link that a test can
//! cut and restore, and MQTT devices publishing through the edge's broker.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

pub const ADMIN: &str = garasi_fleet_tests::ADMIN;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process whose output is collected; waits for a ready line.
pub struct Proc {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(bin: &str, args: &[String], ready: &'static str) -> Proc {
        let mut child = Command::new(bin)
            .args(args)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info,rumqttd=warn,rumqttd::server::broker=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (log, tx) = (log.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.lock().push_str(&format!("{line}\n"));
                    if line.contains(ready) {
                        let _ = tx.send(());
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if rx.recv_timeout(Duration::from_millis(50)).is_ok() {
                return Proc { child, log };
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!("{bin} exited with {status}:\n{}", log.lock());
            }
            assert!(
                Instant::now() < deadline,
                "{bin} not ready:\n{}",
                log.lock()
            );
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
        None
    }

    pub fn log(&self) -> String {
        self.log.lock().clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_cli(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `garasi-cloud` on a fixed port with a SQLite store in `dir`.
pub struct CloudProc {
    pub proc: Option<Proc>,
    pub dir: PathBuf,
    pub port: u16,
    pub ca_pem: String,
    pub https: reqwest::Client,
}

impl CloudProc {
    pub fn bin() -> &'static str {
        env!("CARGO_BIN_EXE_fleet-cloud")
    }

    pub fn start(dir: &Path) -> CloudProc {
        std::fs::create_dir_all(dir).unwrap();
        let (ca, _, _) = garasi_fleet_tests::test_pki(dir).unwrap();
        std::fs::write(dir.join("admin.token"), ADMIN).unwrap();
        let ca_pem = std::fs::read_to_string(ca).unwrap();
        let https = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut c = CloudProc {
            proc: None,
            dir: dir.to_path_buf(),
            port: free_port(),
            ca_pem,
            https,
        };
        c.restart();
        c
    }

    pub fn database(&self) -> String {
        format!("sqlite://{}", self.dir.join("cloud.db").display())
    }

    /// Starts (again) on the same port and store.
    pub fn restart(&mut self) {
        let d = |f: &str| self.dir.join(f).display().to_string();
        let args = vec![
            "serve".into(),
            "--database".into(),
            self.database(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.port),
            "--tls-cert".into(),
            d("cert.pem"),
            "--tls-key".into(),
            d("key.pem"),
            "--admin-token-file".into(),
            d("admin.token"),
        ];
        self.proc = Some(Proc::spawn(Self::bin(), &args, "garasi-cloud ready"));
    }

    pub fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Creates a depot with the CLI; returns (depot id, one-time token).
    pub fn add_depot(&self, name: &str) -> (String, String) {
        let out = run_cli(
            Self::bin(),
            &[
                "depot",
                "add",
                "--database",
                &self.database(),
                "--name",
                name,
            ],
        );
        let id = out.split_whitespace().nth(1).unwrap().to_string();
        let token = out.split_whitespace().last().unwrap().to_string();
        (id, token)
    }

    pub async fn admin_put(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let r = self
            .https
            .put(format!("{}{path}", self.base()))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "PUT {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn admin_post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let r = self
            .https
            .post(format!("{}{path}", self.base()))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "POST {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> Option<serde_json::Value> {
        let r = self
            .https
            .get(format!("{}{path}", self.base()))
            .bearer_auth(ADMIN)
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    /// Every telemetry sample of a depot at the cloud: (vehicle, ts) in seq order.
    pub async fn telemetry(&self, depot: &str) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let Some(page) = self
                .admin_get(&format!(
                    "/api/v1/admin/depots/{depot}/telemetry?after={after}&limit=50000"
                ))
                .await
            else {
                return out;
            };
            let samples = page["samples"].as_array().unwrap();
            if samples.is_empty() {
                return out;
            }
            for s in samples {
                out.push((
                    s["sample"]["vehicle_id"].as_str().unwrap().to_string(),
                    s["sample"]["ts_ms"].as_i64().unwrap(),
                ));
            }
            after = page["next"].as_i64().unwrap();
        }
    }

    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill9();
        }
    }

    pub fn stop(&mut self) -> Option<i32> {
        self.proc.as_mut().and_then(Proc::stop)
    }
}

/// A TCP proxy on a fixed port in front of the cloud: the depot's link, which a test can
/// cut (listener closed, open connections dropped) and restore.
pub struct Link {
    pub port: u16,
    upstream: u16,
    cancel: Mutex<Option<CancellationToken>>,
}

impl Link {
    pub async fn new(upstream: u16) -> Arc<Link> {
        let l = Arc::new(Link {
            port: free_port(),
            upstream,
            cancel: Mutex::new(None),
        });
        l.restore().await;
        l
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn cut(&self) {
        if let Some(c) = self.cancel.lock().take() {
            c.cancel();
        }
    }

    pub async fn restore(&self) {
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let cancel = CancellationToken::new();
        *self.cancel.lock() = Some(cancel.clone());
        let upstream = self.upstream;
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                    }
                });
            }
        });
    }
}

/// `garasi-edge` on fixed ports, enrolled through `link`.
pub struct EdgeProc {
    pub proc: Option<Proc>,
    pub dir: PathBuf,
    pub http_port: u16,
    pub mqtt_port: u16,
    mqtt5_port: u16,
    /// More `run` flags (dispatch settings, badge readers).
    pub extra: Vec<String>,
    /// A dispatcher's session ([`EdgeProc::sign_in`]); sent with every request. Sessions
    /// live in the depot's database, so it survives restarts and kill -9.
    pub token: Option<String>,
}

impl EdgeProc {
    pub fn bin() -> &'static str {
        env!("CARGO_BIN_EXE_fleet-edge")
    }

    /// init + enroll with the CLI, then start.
    pub fn enroll_and_start(dir: &Path, cloud_url: &str, token: &str, ca_pem: &str) -> EdgeProc {
        Self::enroll_and_start_with(dir, cloud_url, token, ca_pem, &[])
    }

    /// [`Self::enroll_and_start`] with more `run` flags.
    pub fn enroll_and_start_with(
        dir: &Path,
        cloud_url: &str,
        token: &str,
        ca_pem: &str,
        extra: &[&str],
    ) -> EdgeProc {
        let d = dir.display().to_string();
        run_cli(Self::bin(), &["init", "--data-dir", &d]);
        let ca = dir.join("cloud-ca.pem");
        std::fs::write(&ca, ca_pem).unwrap();
        run_cli(
            Self::bin(),
            &[
                "enroll",
                "--data-dir",
                &d,
                "--cloud",
                cloud_url,
                "--token",
                token,
                "--ca-file",
                &ca.display().to_string(),
            ],
        );
        let mut e = EdgeProc {
            proc: None,
            dir: dir.to_path_buf(),
            http_port: free_port(),
            mqtt_port: free_port(),
            mqtt5_port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            token: None,
        };
        e.restart();
        e
    }

    pub fn restart(&mut self) {
        let mut args: Vec<String> = [
            "run",
            "--data-dir",
            &self.dir.display().to_string(),
            "--http-listen",
            &format!("127.0.0.1:{}", self.http_port),
            "--mqtt-listen",
            &format!("127.0.0.1:{}", self.mqtt_port),
            "--mqtt5-listen",
            &format!("127.0.0.1:{}", self.mqtt5_port),
            "--sync-interval-ms",
            "200",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.extra.iter().cloned());
        self.proc = Some(Proc::spawn(Self::bin(), &args, "garasi-edge ready"));
    }

    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill9();
        }
    }

    pub fn stop(&mut self) -> Option<i32> {
        self.proc.as_mut().and_then(Proc::stop)
    }

    /// Opens the stopped node's encrypted store (for checks after the run).
    pub fn store(&self) -> garasi_edge::store::Store {
        garasi_edge::store::Store::open(&garasi_edge::store::DataDir::new(&self.dir, None)).unwrap()
    }
}

/// Publishes `n` telemetry samples for `vehicle` (ts = first_ts + i * 1000) with QoS 1,
/// riding out restarts of the edge (rumqttc re-sends unacknowledged publishes after it
/// reconnects). Returns how many acknowledgements arrived.
pub async fn publish_samples(
    mqtt_port: u16,
    vehicle: &str,
    password: &str,
    first_ts: i64,
    n: usize,
) -> usize {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new(format!("{vehicle}-pub"), "127.0.0.1", mqtt_port);
    opts.set_credentials(vehicle, password);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(opts, 64);
    let topic = format!("garasi/v1/vehicles/{vehicle}/telemetry");
    let producer = {
        let client = client.clone();
        async move {
            for i in 0..n {
                let payload = serde_json::json!({"ts": first_ts + i as i64 * 1000, "signals": {"Vehicle.Speed": (i % 80) as f64, "Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed": 80.0}}).to_string();
                if client
                    .publish(&topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    };
    let producer = tokio::spawn(producer);
    let mut acks = 0;
    // Gives up only when acknowledgements stop coming, not at a fixed time: on a loaded
    // 2-core CI machine two debug edges in parallel took more than 120 s for 12,000
    // samples, and the edge's backpressure slows publishers on purpose.
    let mut last_progress = Instant::now();
    while acks < n && last_progress.elapsed() < Duration::from_secs(60) {
        match tokio::time::timeout(Duration::from_secs(5), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                acks += 1;
                last_progress = Instant::now();
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    producer.abort();
    let _ = client.try_disconnect();
    acks
}

/// Whether the edge accepts `vehicle`'s device credentials now (one MQTT CONNECT, up to
/// 5 s). The vehicle record and its device record are separate master records that can
/// arrive in different pulls, so "the vehicle is there" does not mean "it can connect".
pub async fn device_accepted(mqtt_port: u16, vehicle: &str, password: &str) -> bool {
    use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet};
    let mut opts = MqttOptions::new(format!("{vehicle}-probe"), "127.0.0.1", mqtt_port);
    opts.set_credentials(vehicle, password);
    let (client, mut events) = AsyncClient::new(opts, 4);
    let accepted = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => {
                    return a.code == ConnectReturnCode::Success
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    let _ = client.try_disconnect();
    accepted
}

/// Publishes samples for `vehicle` (ts from `first_ts`, 1 s apart) as fast as the edge
/// takes them until `cancel`, reconnecting whenever the edge restarts.
pub fn publish_until(
    mqtt_port: u16,
    vehicle: &str,
    password: &str,
    first_ts: i64,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    use rumqttc::{AsyncClient, MqttOptions, QoS};
    let mut opts = MqttOptions::new(format!("{vehicle}-load"), "127.0.0.1", mqtt_port);
    opts.set_credentials(vehicle, password);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(opts, 64);
    let topic = format!("garasi/v1/vehicles/{vehicle}/telemetry");
    let producer_cancel = cancel.clone();
    tokio::spawn(async move {
        let mut i = 0i64;
        loop {
            let payload = serde_json::json!({"ts": first_ts + i * 1000, "signals": {"Vehicle.Speed": (i % 80) as f64}}).to_string();
            tokio::select! {
                _ = producer_cancel.cancelled() => return,
                r = client.publish(&topic, QoS::AtLeastOnce, false, payload) => if r.is_err() { return },
            }
            i += 1;
        }
    });
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = events.poll() => if r.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                },
            }
        }
    })
}

mod chaos_support;
mod edge_http;
#[allow(unused_imports)] // only chaos.rs uses them
pub use chaos_support::*;
