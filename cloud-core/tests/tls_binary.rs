//! The real `garasi-cloud` binary over TLS: create a depot with the CLI, serve with a
//! self-signed certificate, enrol, push and pull over HTTPS; plaintext is refused; SIGTERM
//! stops it cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use garasi_sync_protocol::wire::{self, Batch, Entry};

fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{tool} is required in CI");
        eprintln!("SKIPPED: {tool} not installed");
    }
    ok
}

/// Kills the server if the test fails half-way.
struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn cloud_binary_serves_sync_over_tls() {
    if !have("openssl") {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_garasi-cloud");
    let dir = tempfile::tempdir().unwrap();
    let (ca_key, ca, key, csr, cert, admin) = (
        dir.path().join("ca.key"),
        dir.path().join("ca.pem"),
        dir.path().join("key.pem"),
        dir.path().join("server.csr"),
        dir.path().join("cert.pem"),
        dir.path().join("admin.token"),
    );
    // A throwaway CA and a server certificate it signs (webpki refuses a CA
    // certificate used as the server's own, as it should).
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=garasi test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    let ext = dir.path().join("ext.cnf");
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(&[
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
    ]);
    assert!(ca_key.exists() && csr.exists());
    std::fs::write(&admin, "a-long-random-admin-token-for-tests\n").unwrap();
    let db = format!("sqlite://{}", dir.path().join("cloud.db").display());

    let out = Command::new(bin)
        .args(["depot", "add", "--database", &db, "--name", "Depot A"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let token = text.trim().rsplit(' ').next().unwrap().to_string();

    let mut child = Kill(
        Command::new(bin)
            .args([
                "serve",
                "--database",
                &db,
                "--listen",
                "127.0.0.1:0",
                "--admin-token-file",
            ])
            .arg(&admin)
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("garasi-cloud ready"))
        .expect("ready line");
    std::thread::spawn(move || for _ in lines {});
    let addr = ready
        .split("listen=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let base = format!("https://{addr}");
    let creds: serde_json::Value = https
        .post(format!("{base}/api/v1/enroll"))
        .json(&serde_json::json!({"token": token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (depot, secret) = (
        creds["depot_id"].as_str().unwrap().to_string(),
        creds["secret"].as_str().unwrap().to_string(),
    );
    let batch = wire::encode(&Batch {
        depot: depot.clone(),
        batch_seq: 1,
        entries: vec![Entry::Change {
            record_type: "vehicle_status".into(),
            record_id: "bus-1".into(),
            change: {
                use garasi_sync_protocol::actor::{new_actor, Side};
                use garasi_sync_protocol::record::{FieldValue, Record};
                Record::new(new_actor(Side::Depot))
                    .set(&[("status", FieldValue::Text("in_service".into()))])
                    .unwrap()
                    .unwrap()
            },
        }],
    })
    .unwrap();
    let r = https
        .post(format!("{base}/api/v1/sync/push"))
        .header("x-garasi-depot", &depot)
        .bearer_auth(&secret)
        .body(batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pulled = https
        .get(format!("{base}/api/v1/sync/pull"))
        .header("x-garasi-depot", &depot)
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(wire::decode(&pulled).unwrap().entries.len(), 1);

    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plaintext HTTP must not be served"
    );

    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let mut code = None;
    for _ in 0..100 {
        if let Ok(Some(s)) = child.0.try_wait() {
            code = s.code();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(code, Some(0));
}
