//! Attack (issue 11, item 10): a leaked secret must not stay good forever. Against the
//! real binary: the admin token file is readable by everyone when the server starts
//! (it must end up 0600); an enrolment token is used after its expiry; a depot's stolen
//! secret is used after the depot re-enrolled and after it was revoked; a device's
//! password is used after it was disabled and after it was rotated; the admin token is
//! used after rotation through the API and after the file changed (SIGHUP). A real
//! depot keeps syncing throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attack;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use attack::{Cloud, Opts, ADMIN};
use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::record::{FieldValue, Record};
use garasi_sync_protocol::wire::{self, Entry};

async fn status(r: reqwest::RequestBuilder) -> u16 {
    r.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// A device record's visible fields as the depot pulls them.
async fn pulled_device(
    cloud: &Cloud,
    depot: &str,
    secret: &str,
    id: &str,
) -> Option<std::collections::BTreeMap<String, FieldValue>> {
    let bytes = cloud
        .client()
        .get(format!(
            "{}/api/v1/sync/pull?cursor=0&limit=10000",
            cloud.base
        ))
        .header("x-garasi-depot", depot)
        .bearer_auth(secret)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut record = Record::new(new_actor(Side::Depot));
    let mut any = false;
    for e in wire::decode(&bytes).unwrap().entries {
        if let Entry::Change {
            record_type,
            record_id,
            change,
        } = e
        {
            if record_type == "device" && record_id == id {
                record.apply(&[change]).unwrap();
                any = true;
            }
        }
    }
    any.then(|| record.visible().unwrap())
}

fn verifies(hash: &FieldValue, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let FieldValue::Text(h) = hash else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &PasswordHash::new(h).unwrap())
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaked_secrets_can_be_rotated_and_revoked() {
    if !attack::have_openssl() {
        return;
    }
    let cloud = Cloud::start(Opts::default());
    let token_file = cloud.dir.path().join("admin.token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    eprintln!("admin token file mode after start: {mode:o} (written 644)");
    let http = cloud.client();
    let (bystander, bystander_secret) = cloud.depot("bystander").await;
    let admin = |token: &str, m: reqwest::Method, path: &str| {
        http.request(m, format!("{}{path}", cloud.base))
            .bearer_auth(token.to_string())
    };

    // An enrolment token used after its expiry.
    let d: serde_json::Value = admin(ADMIN, reqwest::Method::POST, "/api/v1/admin/depots")
        .json(&serde_json::json!({"name": "late", "enrolment_ttl_s": 1}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap_or_default();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late = http
        .post(format!("{}/api/v1/enroll", cloud.base))
        .json(&serde_json::json!({"token": d["enrolment_token"]}))
        .send()
        .await
        .unwrap();
    let late_status = late.status().as_u16();
    let late_text = late.text().await.unwrap();
    eprintln!("enrolment 1.5 s after a 1 s token: {late_status} {late_text}");

    // A stolen depot secret, after the depot re-enrolled with a new token.
    let (depot, stolen) = cloud.depot("rotating").await;
    let t: serde_json::Value = admin(
        ADMIN,
        reqwest::Method::POST,
        &format!("/api/v1/admin/depots/{depot}/enrolment-token"),
    )
    .json(&serde_json::json!({}))
    .send()
    .await
    .unwrap()
    .json::<serde_json::Value>()
    .await
    .unwrap_or_default();
    eprintln!("new enrolment token: {t}");
    let stolen_before_reenrol = cloud.sync_once(&depot, &stolen, 1).await.0;
    let e: serde_json::Value = http
        .post(format!("{}/api/v1/enroll", cloud.base))
        .json(&serde_json::json!({"token": t["enrolment_token"]}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap_or_default();
    let fresh = e["secret"].as_str().unwrap_or_default().to_string();
    let stolen_after = cloud.sync_once(&depot, &stolen, 2).await.0;
    let fresh_after = cloud.sync_once(&depot, &fresh, 3).await.0;
    eprintln!(
        "stolen secret: {stolen_before_reenrol} before re-enrolment, {stolen_after} after; new secret {fresh_after}"
    );
    // Revoked outright (a depot box lost): its secret and any unused token stop working.
    let revoke = status(admin(
        ADMIN,
        reqwest::Method::DELETE,
        &format!("/api/v1/admin/depots/{depot}/secret"),
    ))
    .await;
    let fresh_after_revoke = cloud.sync_once(&depot, &fresh, 4).await.0;
    eprintln!("revoke: {revoke}; the depot's secret after: {fresh_after_revoke}");
    let by1 = cloud.sync_once(&bystander, &bystander_secret, 1).await;

    // A device's password, disabled then rotated.
    let dev: serde_json::Value = admin(
        ADMIN,
        reqwest::Method::POST,
        &format!("/api/v1/admin/depots/{bystander}/devices"),
    )
    .json(&serde_json::json!({"id": "bus-7"}))
    .send()
    .await
    .unwrap()
    .json::<serde_json::Value>()
    .await
    .unwrap_or_default();
    let old_password = dev["password"].as_str().unwrap_or_default().to_string();
    let disable = status(
        admin(
            ADMIN,
            reqwest::Method::PUT,
            &format!("/api/v1/admin/depots/{bystander}/devices/bus-7"),
        )
        .json(&serde_json::json!({"disabled": true})),
    )
    .await;
    let seen = pulled_device(&cloud, &bystander, &bystander_secret, "bus-7")
        .await
        .unwrap_or_default();
    let disabled_at_depot = seen.get("disabled") == Some(&FieldValue::Bool(true));
    let rotate = admin(
        ADMIN,
        reqwest::Method::POST,
        &format!("/api/v1/admin/depots/{bystander}/devices/bus-7/password"),
    )
    .send()
    .await
    .unwrap();
    let rotate_status = rotate.status().as_u16();
    let new_password = rotate
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v["password"].as_str().map(String::from))
        .unwrap_or_default();
    let seen = pulled_device(&cloud, &bystander, &bystander_secret, "bus-7")
        .await
        .unwrap_or_default();
    let hash = seen
        .get("password_hash")
        .cloned()
        .unwrap_or(FieldValue::Null);
    let (old_ok, new_ok) = (
        verifies(&hash, &old_password),
        verifies(&hash, &new_password),
    );
    let unknown_device = status(
        admin(
            ADMIN,
            reqwest::Method::PUT,
            &format!("/api/v1/admin/depots/{bystander}/devices/nope"),
        )
        .json(&serde_json::json!({"disabled": true})),
    )
    .await;
    eprintln!(
        "device: disable {disable} (depot sees disabled: {disabled_at_depot}), rotate {rotate_status}: old password verifies {old_ok}, new {new_ok}; unknown device {unknown_device}"
    );

    // The admin token, rotated through the API, then replaced in the file (SIGHUP).
    let r = admin(ADMIN, reqwest::Method::POST, "/api/v1/admin/admin-token")
        .send()
        .await
        .unwrap();
    let rotate_admin = r.status().as_u16();
    let new_admin = r
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v["token"].as_str().map(String::from))
        .unwrap_or_default();
    let old_admin_after = status(admin(ADMIN, reqwest::Method::GET, "/api/v1/admin/depots")).await;
    let new_admin_after = status(admin(
        &new_admin,
        reqwest::Method::GET,
        "/api/v1/admin/depots",
    ))
    .await;
    let file_now = std::fs::read_to_string(&token_file).unwrap();
    let mode_now = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    eprintln!(
        "admin token rotation: {rotate_admin}; old token {old_admin_after}, new {new_admin_after}; file holds the new one: {}, mode {mode_now:o}",
        file_now.trim() == new_admin
    );
    let third = "a-third-admin-token-written-by-the-operator";
    std::fs::write(&token_file, third).unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &cloud.pid.to_string()])
        .status()
        .unwrap();
    let t0 = Instant::now();
    let mut reloaded = false;
    while t0.elapsed() < Duration::from_secs(3) {
        if status(admin(third, reqwest::Method::GET, "/api/v1/admin/depots")).await == 200 {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second_after_hup = status(admin(
        &new_admin,
        reqwest::Method::GET,
        "/api/v1/admin/depots",
    ))
    .await;
    eprintln!(
        "SIGHUP: file token accepted {reloaded} in {:?}; previous token {second_after_hup}",
        t0.elapsed()
    );
    let by2 = cloud.sync_once(&bystander, &bystander_secret, 2).await;
    eprintln!("bystander depot syncs: {by1:?} {by2:?}");

    assert_eq!(mode, 0o600, "the admin token file must be 0600");
    assert_eq!(
        late_status, 401,
        "an expired enrolment token must be refused"
    );
    assert!(late_text.contains("expired"), "{late_text}");
    assert_eq!(
        stolen_before_reenrol, 200,
        "the old secret works until the depot re-enrols"
    );
    assert_eq!((stolen_after, fresh_after), (401, 200));
    assert_eq!((revoke, fresh_after_revoke), (200, 401));
    assert_eq!((disable, rotate_status, unknown_device), (200, 200, 404));
    assert!(disabled_at_depot, "the depot must see the device disabled");
    assert!(!old_ok && new_ok, "only the new device password may verify");
    assert_eq!(
        (rotate_admin, old_admin_after, new_admin_after),
        (200, 401, 200)
    );
    assert_eq!(file_now.trim(), new_admin);
    assert_eq!(mode_now, 0o600);
    assert!(reloaded, "SIGHUP must reload the admin token file");
    assert_eq!(second_after_hup, 401);
    for (push, pull, took) in [by1, by2] {
        assert_eq!((push, pull), (200, 200));
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
}

/// A push authenticates before its body is read; a depot revoked while its body was
/// still arriving used to land the batch anyway (the secret was not checked again).
/// Now the secret is checked again before the batch is stored: 401. A push without a
/// declared length is refused (411): its budget share must be known up front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_in_flight_when_its_depot_is_revoked_does_not_land() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if !attack::have_openssl() {
        return;
    }
    let cloud = Cloud::start(Opts::default());
    let (depot, secret) = cloud.depot("lost").await;
    let open = || async {
        let tcp = attack::connect_from(std::net::Ipv4Addr::LOCALHOST, cloud.addr)
            .await
            .unwrap();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
        attack::tls_client(&cloud.ca_pem)
            .connect(name, tcp)
            .await
            .unwrap()
    };
    let status_of = |resp: &[u8]| -> u16 {
        String::from_utf8_lossy(resp)
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };

    let body = attack::batch(&depot, 1);
    let mut s = open().await;
    let head = format!(
        "POST /api/v1/sync/push HTTP/1.1\r\nHost: localhost\r\nx-garasi-depot: {depot}\r\nAuthorization: Bearer {secret}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body[..body.len() / 2]).await.unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let revoke = cloud
        .client()
        .delete(format!("{}/api/v1/admin/depots/{depot}/secret", cloud.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    s.write_all(&body[body.len() / 2..]).await.unwrap();
    s.flush().await.unwrap();
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut resp)).await;
    let in_flight = status_of(&resp);

    // Chunked, no Content-Length.
    let (depot2, secret2) = cloud.depot("chunked").await;
    let body = attack::batch(&depot2, 1);
    let mut s = open().await;
    let head = format!(
        "POST /api/v1/sync/push HTTP/1.1\r\nHost: localhost\r\nx-garasi-depot: {depot2}\r\nAuthorization: Bearer {secret2}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    s.write_all(b"\r\n0\r\n\r\n").await.unwrap();
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut resp)).await;
    let chunked = status_of(&resp);
    eprintln!("revoke {revoke} while the push arrived: push {in_flight}; chunked push {chunked}");
    assert_eq!(revoke, 200);
    assert_eq!(in_flight, 401, "a revoked depot's push landed");
    assert_eq!(chunked, 411);
}
