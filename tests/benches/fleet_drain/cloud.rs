//! The bench's cloud: the real `garasi-cloud serve` (this package's `fleet-cloud` build)
//! in a process of its own, and in a session of its own unless asked otherwise.

use std::time::Duration;

/// `garasi-cloud serve` on `database`, in its own process; killed on drop.
pub struct CloudProcess {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
    pub ca_pem: String,
}

impl CloudProcess {
    pub fn start(dir: &std::path::Path, database: &str) -> CloudProcess {
        std::fs::create_dir_all(dir).unwrap();
        let (ca, cert, key) = garasi_fleet_tests::test_pki_with(dir, cloud_keys()).unwrap();
        let token = dir.join("admin.token");
        std::fs::write(&token, garasi_fleet_tests::ADMIN).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let binary = env!("CARGO_BIN_EXE_fleet-cloud");
        // The cloud logs to its standard output; its errors go to the same file.
        let log = std::fs::File::create(dir.join("cloud.log")).unwrap();
        let mut command = std::process::Command::new(binary);
        if !shared_session() {
            // A session of its own, as a service runs, ended with the bench (fleet-cloud.rs).
            command.env("GARASI_FLEET_CLOUD_OWN_SESSION", "1");
        }
        command
            .args([
                "serve",
                "--database",
                database,
                "--listen",
                &addr.to_string(),
            ])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--admin-token-file")
            .arg(&token)
            .env("RUST_LOG", "warn")
            // GARASI_BENCH_PG_WRITE_POOL: the cloud's write pool (default: its own).
            .envs(
                std::env::var("GARASI_BENCH_PG_WRITE_POOL")
                    .ok()
                    .map(|n| ("GARASI_CLOUD_PG_WRITE_CONNECTIONS", n)),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = command.spawn().unwrap();
        for _ in 0..400 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return CloudProcess {
                    child,
                    addr,
                    ca_pem: std::fs::read_to_string(ca).unwrap(),
                };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "garasi-cloud did not listen; see {}",
            dir.join("cloud.log").display()
        );
    }

    /// CPU seconds the cloud process has used.
    pub fn cpu_s(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let rest = stat.rsplit_once(')').map_or("", |x| x.1);
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
    }
}

/// The cloud's certificate keys: GARASI_BENCH_CLOUD_KEY=ec for ECDSA P-256, else RSA 2048.
pub fn cloud_keys() -> &'static [&'static str] {
    if std::env::var("GARASI_BENCH_CLOUD_KEY").is_ok_and(|v| v == "ec") {
        garasi_fleet_tests::EC_KEYS
    } else {
        garasi_fleet_tests::RSA_KEYS
    }
}

/// GARASI_BENCH_CLOUD_SESSION=shared runs the cloud in the bench's own session (so in
/// one autogroup with the depots), as runs before 2026-12-01 did.
pub fn shared_session() -> bool {
    std::env::var("GARASI_BENCH_CLOUD_SESSION").is_ok_and(|v| v == "shared")
}

impl Drop for CloudProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
