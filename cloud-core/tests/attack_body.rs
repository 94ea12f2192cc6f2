//! Attack (issue 11, item 7): bodies nobody authenticated, or too big for their route,
//! must not be read into the cloud's memory. Against the real binary: unauthenticated
//! 500 MiB uploads to the timetable and push routes, 15 MiB enrolment bodies, an
//! admin's 200 MiB upload (streamed to disk) and an enrolled depot's oversized pushes,
//! all at once; the server's peak memory stays bounded and a real depot still syncs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attack;

use std::time::{Duration, Instant};

use attack::{Cloud, Opts, ADMIN};

const MIB: usize = 1024 * 1024;

/// A body of `total` bytes made on the fly (the test never holds it).
fn streamed(total: usize, byte: u8) -> reqwest::Body {
    let chunk = axum::body::Bytes::from(vec![byte; 256 * 1024]);
    let n = total.div_ceil(chunk.len());
    let s = futures::stream::iter((0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    reqwest::Body::wrap_stream(s)
}

/// Sends and returns the status (0: the server hung up before answering).
async fn send(r: reqwest::RequestBuilder) -> u16 {
    match r.send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_are_refused_before_they_are_read() {
    if !attack::have_openssl() {
        return;
    }
    let cloud = Cloud::start(Opts::default());
    let (depot, secret) = cloud.depot("real").await;
    let (rss0, _) = cloud.mem_kib();
    let fds0 = cloud.fds();
    let started = Instant::now();
    let http = cloud.client();
    let mut attacks = Vec::new();
    // 6 unauthenticated 500 MiB uploads and 6 unauthenticated 500 MiB pushes.
    for i in 0..12 {
        let path = if i % 2 == 0 {
            "/api/v1/admin/timetables"
        } else {
            "/api/v1/sync/push"
        };
        let r = http
            .post(format!("{}{path}", cloud.base))
            .header("x-garasi-depot", &depot)
            .bearer_auth("not-the-token")
            .body(streamed(500 * MIB, 0x50));
        attacks.push(tokio::spawn(async move {
            ("unauthenticated 500 MiB", send(r).await)
        }));
    }
    // 24 enrolment attempts with 15 MiB JSON bodies (no credentials needed to send one).
    for _ in 0..24 {
        let mut body = b"{\"token\":\"".to_vec();
        body.resize(15 * MIB, b'a');
        body.extend_from_slice(b"\"}");
        let r = http
            .post(format!("{}/api/v1/enroll", cloud.base))
            .header("content-type", "application/json")
            .body(body);
        attacks.push(tokio::spawn(
            async move { ("15 MiB enrolment", send(r).await) },
        ));
    }
    // An enrolled depot gone bad: 12 pushes of 15 MiB of junk at once.
    for _ in 0..12 {
        let r = http
            .post(format!("{}/api/v1/sync/push", cloud.base))
            .header("x-garasi-depot", &depot)
            .bearer_auth(&secret)
            .body(vec![0x47u8; 15 * MIB]);
        attacks.push(tokio::spawn(async move {
            ("authenticated 15 MiB junk push", send(r).await)
        }));
    }
    // The admin's 200 MiB upload (not a zip): read to disk, not to memory.
    let r = http
        .post(format!(
            "{}/api/v1/admin/timetables?name=big&wait=true",
            cloud.base
        ))
        .bearer_auth(ADMIN)
        .body(streamed(200 * MIB, 0x5a));
    attacks.push(tokio::spawn(async move {
        ("admin 200 MiB upload", send(r).await)
    }));

    // A real depot syncs during the attack.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (push, pull, took) = cloud.sync_once(&depot, &secret, 1).await;
    eprintln!("real depot during the attack: push {push}, pull {pull} in {took:?}");

    let mut statuses: std::collections::BTreeMap<(&str, u16), usize> = Default::default();
    for a in attacks {
        let (what, status) = a.await.unwrap();
        *statuses.entry((what, status)).or_default() += 1;
    }
    let attack_time = started.elapsed();
    drop(http);
    let (rss1, hwm) = cloud.mem_kib();
    eprintln!("statuses (what, status) -> count: {statuses:?}");
    eprintln!(
        "server memory: RSS {} MiB before, peak {} MiB (+{} MiB), {} MiB after; attack took {attack_time:?}",
        rss0 / 1024,
        hwm / 1024,
        hwm.saturating_sub(rss0) / 1024,
        rss1 / 1024
    );
    let fds_settled = attack::eventually(Duration::from_secs(5), || cloud.fds() <= fds0 + 2).await;
    eprintln!("fds: {fds0} before, {} after", cloud.fds());

    assert_eq!(
        (push, pull),
        (200, 200),
        "the real depot must sync during the attack"
    );
    assert!(
        took < Duration::from_secs(5),
        "the real depot waited {took:?}"
    );
    for ((what, status), n) in &statuses {
        let ok = match *what {
            // Refused before the body is read (0: the server closed the upload early).
            "unauthenticated 500 MiB" => *status == 401 || *status == 0,
            // 413, or the server hung up on the rest of the body after answering it.
            "15 MiB enrolment" => *status == 413 || *status == 0,
            "authenticated 15 MiB junk push" => *status == 400,
            "admin 200 MiB upload" => *status == 200 || *status == 400,
            _ => false,
        };
        assert!(ok, "{what}: {n} answered {status}");
    }
    assert!(
        hwm.saturating_sub(rss0) < 160 * 1024,
        "peak memory grew by {} MiB",
        hwm.saturating_sub(rss0) / 1024
    );
    assert!(
        fds_settled,
        "descriptors did not return to {fds0}: {}",
        cloud.fds()
    );
    let metrics = cloud.metrics().await;
    // Every enrolment body was refused by its declared length, none read.
    assert!(
        metrics.contains("garasi_cloud_refusals_total{reason=\"body_too_large\"} 24"),
        "{metrics}"
    );
    assert!(
        metrics.contains("garasi_cloud_refusals_total{reason=\"unauthenticated\"}"),
        "{metrics}"
    );
}
