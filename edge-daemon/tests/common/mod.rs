//! Helpers for integration tests: run the real `garasi-edge` binary on free ports, manage
//! its data directory through the CLI, and talk to it over real MQTT and HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

mod attack;
pub use attack::*;
mod ocpp;
// Only the OCPP tests use these.
#[allow(unused_imports)]
pub use ocpp::*;

/// Held while a node is spawned: a test may lower this process's open-files limit for
/// its child (`Edge::start_nofile`), and no other child may inherit that by accident.
static SPAWN: Mutex<()> = parking_lot::const_mutex(());

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_garasi-edge")
}

/// Runs a CLI subcommand to completion.
pub fn cli(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run garasi-edge")
}

pub fn init(dir: &Path) {
    let out = cli(&["init", "--data-dir", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Reads of GPS history, dead letters, sync errors and the day's data need a
    // signed-in member of staff (issue 11); tests read as this one (`Edge::staff_get`).
    add_person(
        dir,
        STAFF_ID,
        "Test Staff",
        "dispatcher,mechanic",
        None,
        None,
        Some(STAFF_PASSWORD),
    );
}

pub const STAFF_ID: &str = "test-staff";
pub const STAFF_PASSWORD: &str = "test staff password";

pub fn add_vehicle(dir: &Path, id: &str) {
    let out = cli(&[
        "vehicle",
        "add",
        "--data-dir",
        dir.to_str().unwrap(),
        "--id",
        id,
        "--battery-kwh",
        "350",
    ]);
    assert!(
        out.status.success(),
        "vehicle add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Adds a device and returns the password the CLI printed once.
pub fn add_device(dir: &Path, id: &str) -> String {
    let out = cli(&[
        "device",
        "add",
        "--data-dir",
        dir.to_str().unwrap(),
        "--id",
        id,
        "--kind",
        "vehicle",
    ]);
    assert!(
        out.status.success(),
        "device add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("MQTT password"))
        .expect("password line");
    line.rsplit(' ').next().unwrap().trim().to_string()
}

/// Adds a person with the CLI; secrets go through the environment, as the CLI requires.
pub fn add_person(
    dir: &Path,
    id: &str,
    name: &str,
    roles: &str,
    badge: Option<&str>,
    pin: Option<&str>,
    password: Option<&str>,
) {
    let mut cmd = Command::new(bin());
    cmd.args(["person", "add", "--data-dir", dir.to_str().unwrap()])
        .args(["--id", id, "--name", name, "--roles", roles]);
    if let Some(b) = badge {
        cmd.args(["--badge", b]);
    }
    if let Some(p) = pin {
        cmd.env("GARASI_PERSON_PIN", p);
    }
    if let Some(p) = password {
        cmd.env("GARASI_PERSON_PASSWORD", p);
    }
    let out = cmd.output().expect("run garasi-edge");
    assert!(
        out.status.success(),
        "person add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A data dir with vehicles and their devices; returns the passwords in order.
pub fn depot(dir: &Path, ids: &[&str]) -> Vec<String> {
    init(dir);
    ids.iter()
        .map(|id| {
            add_vehicle(dir, id);
            add_device(dir, id)
        })
        .collect()
}

pub struct Edge {
    pub child: Child,
    /// The node's "garasi-edge ready" log line (listener addresses).
    pub ready: String,
    pub http: String,
    pub mqtt: SocketAddr,
    pub mqtt5: SocketAddr,
    pub dir: PathBuf,
    pub log: Arc<Mutex<String>>,
    /// The test staff member's session, signed in on first use.
    staff: tokio::sync::OnceCell<Option<String>>,
}

fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .map(|s| s.trim_matches('"').to_string())
}

impl Edge {
    /// Starts `garasi-edge run` on free ports and waits for its ready line.
    pub fn start(dir: &Path, extra: &[&str]) -> Edge {
        Self::try_start(dir, extra)
            .unwrap_or_else(|log| panic!("node did not become ready:\n{log}"))
    }

    /// Like `start`, with these environment variables too.
    pub fn start_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Edge {
        Self::try_start_env(dir, extra, env)
            .unwrap_or_else(|log| panic!("node did not become ready:\n{log}"))
    }

    /// Like `start`, but returns the log if the process exits or never gets ready.
    pub fn try_start(dir: &Path, extra: &[&str]) -> Result<Edge, String> {
        Self::try_start_env(dir, extra, &[])
    }

    fn try_start_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<Edge, String> {
        Self::try_start_with(dir, extra, env, None)
    }

    /// Starts `garasi-edge demo` (its own data, simulators and config) on free ports.
    pub fn start_demo(dir: &Path, extra: &[&str]) -> Edge {
        Self::try_start_cmd("demo", dir, extra, &[], None)
            .unwrap_or_else(|log| panic!("demo did not become ready:\n{log}"))
    }

    fn try_start_with(
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        nofile: Option<usize>,
    ) -> Result<Edge, String> {
        Self::try_start_cmd("run", dir, extra, env, nofile)
    }

    fn try_start_cmd(
        cmd: &str,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        nofile: Option<usize>,
    ) -> Result<Edge, String> {
        let spawning = SPAWN.lock();
        let ours = nofile.map(|n| {
            let ours = soft_nofile(std::process::id());
            attack::set_soft_nofile(n);
            ours
        });
        let child = Command::new(bin())
            .args([cmd, "--data-dir", dir.to_str().unwrap()])
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--mqtt-listen",
                "127.0.0.1:0",
                "--mqtt5-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info,rumqttd=warn,rumqttd::server::broker=off")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        if let Some(n) = ours {
            attack::set_soft_nofile(n);
        }
        drop(spawning);
        let mut child = child.expect("spawn garasi-edge");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (log, tx) = (log.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    // Log first, then signal, so the log always holds the ready line.
                    log.lock().push_str(&format!("{line}\n"));
                    if line.contains("garasi-edge ready") {
                        let _ = tx.send(line);
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                let http = field(&line, "http=").unwrap();
                return Ok(Edge {
                    ready: line.clone(),
                    child,
                    http: format!("http://{http}"),
                    mqtt: field(&line, "mqtt=").unwrap().parse().unwrap(),
                    mqtt5: field(&line, "mqtt5=").unwrap().parse().unwrap(),
                    dir: dir.to_path_buf(),
                    log,
                    staff: tokio::sync::OnceCell::new(),
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                return Err(format!("exited with {status}:\n{}", log.lock()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(log.lock().clone());
            }
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().clone()
    }

    /// The session token of the staff member `init` adds (None if this data dir has
    /// no such person).
    pub async fn staff_token(&self) -> Option<String> {
        self.staff
            .get_or_init(|| async {
                let r = reqwest::Client::new()
                    .post(format!("{}/api/v1/session", self.http))
                    .json(&serde_json::json!({"person": STAFF_ID, "password": STAFF_PASSWORD, "token": true}))
                    .send()
                    .await
                    .ok()?;
                let v: serde_json::Value = r.json().await.ok()?;
                v["token"].as_str().map(String::from)
            })
            .await
            .clone()
    }

    /// A GET as the signed-in staff member.
    pub async fn staff_get(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        let mut r = reqwest::Client::new().get(format!("{}{path}", self.http));
        if let Some(t) = self.staff_token().await {
            r = r.bearer_auth(t);
        }
        r.send().await
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.staff_get(path).await.expect("GET");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("json")
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Value of one metric line (exact name including labels), or 0.
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .map(|v| v.trim().parse().unwrap_or(0.0))
            })
            .unwrap_or(0.0)
    }

    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    pub fn kill9(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// Waits for exit and returns the status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns Some or the timeout passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A connected rumqttc client whose event loop runs in the background; the receiver gets
/// every event (or the error that ended the connection, as a string).
pub async fn mqtt_client(
    addr: SocketAddr,
    client_id: &str,
    user: &str,
    pass: &str,
) -> (
    rumqttc::AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<Result<rumqttc::Event, String>>,
) {
    let mut mo = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    mo.set_credentials(user, pass);
    mo.set_keep_alive(Duration::from_secs(5));
    mo.set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, mut el) = rumqttc::AsyncClient::new(mo, 10_000);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(ev) => {
                    if tx.send(Ok(ev)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });
    (client, rx)
}

/// Waits for CONNACK; Err carries the refusal or connection error.
pub async fn connack(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Result<rumqttc::Event, String>>,
) -> Result<(), String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(c))))) => {
                return if c.code == rumqttc::ConnectReturnCode::Success {
                    Ok(())
                } else {
                    Err(format!("{:?}", c.code))
                };
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) => return Err("event loop ended".into()),
            Err(_) => return Err("no CONNACK within 10 s".into()),
        }
    }
}

pub fn sample(ts: i64, speed: f64) -> String {
    serde_json::json!({"ts": ts, "signals": {"Vehicle.Speed": speed, "Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed": 77.5}}).to_string()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Tools the suite needs that a bare machine may lack. In CI (`CI` set) a missing tool
/// fails the test; elsewhere the test says it was skipped and why.
pub fn require_tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{name} is required in CI (.ci/run installs it)");
        }
        eprintln!("SKIPPED: {name} not installed (run .ci/run, or apt-get install it)");
    }
    found
}

/// Opens the node's database directly (the node must be stopped or tolerate a reader).
pub fn open_db(dir: &Path) -> rusqlite::Connection {
    garasi_edge::store::DataDir::new(dir, None)
        .open(garasi_edge::store::Role::Reader)
        .expect("open db")
}

/// chromedriver, killed when dropped.
pub struct Driver(pub Child);
impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless Debian Chromium session through chromedriver on `port`.
pub async fn chrome(port: u16) -> thirtyfour::WebDriver {
    let mut caps = thirtyfour::DesiredCapabilities::chrome();
    thirtyfour::ChromiumLikeCapabilities::set_binary(&mut caps, "/usr/bin/chromium").unwrap();
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
    ] {
        thirtyfour::ChromiumLikeCapabilities::add_arg(&mut caps, arg).unwrap();
    }
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if let Ok(d) = thirtyfour::WebDriver::new(&url, caps.clone()).await {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

/// Starts chromedriver on a free port and opens a browser session.
pub async fn browser() -> (Driver, thirtyfour::WebDriver) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Driver(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let d = chrome(port).await;
    (driver, d)
}

/// The vehicle's stored samples, as `GET /api/v1/vehicles/{id}/telemetry` returns them.
pub async fn samples_of(edge: &Edge, id: &str) -> Vec<serde_json::Value> {
    let j = edge
        .get_json(&format!("/api/v1/vehicles/{id}/telemetry?from=0"))
        .await;
    j["samples"].as_array().cloned().unwrap_or_default()
}
