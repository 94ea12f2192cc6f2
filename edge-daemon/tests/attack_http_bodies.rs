//! Attacks on the real `garasi-edge` binary found by the review of issue 11: request
//! bodies that never finish (they held every connection place, and over HTTP/2 16 of
//! them per connection grew memory by ~4 MB a connection), HTTP/2 with prior knowledge
//! on the plain port, and live streams filling every place at a 1,024-descriptor limit.
//! Loopback only, each bounded in time; the defence is asserted with its figure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from.into(), 0))?;
    s.connect(to).await
}

fn http_addr(edge: &Edge) -> SocketAddr {
    edge.http.trim_start_matches("http://").parse().unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Starts the node under a 1,024 soft open-files limit (as on a default Linux box).
fn start_at_1024(dir: &std::path::Path, extra: &[&str]) -> Edge {
    let ours = std::fs::read_to_string("/proc/self/limits").unwrap();
    let soft = ours
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap()
        .to_string();
    let set = |n: &str| {
        let st = std::process::Command::new("prlimit")
            .args(["--pid", &std::process::id().to_string()])
            .arg(format!("--nofile={n}:"))
            .status()
            .expect("prlimit (util-linux)");
        assert!(st.success());
    };
    set("1024");
    let edge = Edge::try_start(dir, extra);
    set(&soft);
    edge.unwrap_or_else(|log| panic!("node did not start:\n{log}"))
}

async fn fresh_status(edge: &Edge, from: Ipv4Addr, path: &str) -> (Option<u16>, u128) {
    let c = reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(from))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let t = Instant::now();
    let r = c.get(format!("{}{path}", edge.http)).send().await;
    (r.ok().map(|r| r.status().as_u16()), t.elapsed().as_millis())
}

/// 300 sign-in requests whose JSON body never finishes, from 10 addresses, at a
/// 1,024-descriptor limit (about 190 HTTP places): before, they held every place until
/// the attacker let go and nobody else was served. Now a body still arriving from
/// someone not signed in keeps its connection evictable and must arrive in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_sent_bodies_cannot_hold_the_node() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let edge = start_at_1024(dir.path(), &["--http-body-timeout-secs", "3"]);
    let addr = http_addr(&edge);
    let pid = edge.child.id();
    let rss0 = rss_kib(pid);
    const SLOW: usize = 300;
    let t0 = Instant::now();
    let mut slow = tokio::task::JoinSet::new();
    for i in 0..SLOW {
        let from = Ipv4Addr::new(127, 0, 3, 2 + (i % 10) as u8);
        slow.spawn(async move {
            let mut s = connect_from(from, addr).await.ok()?;
            let head = "POST /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                        Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{";
            s.write_all(head.as_bytes()).await.ok()?;
            let mut buf = [0u8; 512];
            // Ends when the node answers (the body timed out) or closes the connection.
            match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
                Ok(_) => Some(t0.elapsed()),
                Err(_) => None,
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (st, ms) = fresh_status(&edge, Ipv4Addr::new(127, 0, 4, 1), "/readyz").await;
    println!("fresh request while {SLOW} bodies stall: {st:?} in {ms} ms");
    assert_eq!(st, Some(200), "{}", edge.log());
    // A dispatcher signs in with a whole body meanwhile.
    let c = reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 4, 2)))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = c
        .post(format!("{}/api/v1/session", edge.http))
        .json(&serde_json::json!({"person": STAFF_ID, "password": STAFF_PASSWORD}))
        .send()
        .await
        .map(|r| r.status().as_u16());
    println!("sign-in meanwhile: {r:?}");
    assert_eq!(r.ok(), Some(200));
    let mut ended = Vec::new();
    while let Some(r) = slow.join_next().await {
        ended.push(r.unwrap());
    }
    let stuck = ended.iter().filter(|e| e.is_none()).count();
    let last = ended.iter().flatten().max().copied().unwrap_or_default();
    let grown = rss_kib(pid).saturating_sub(rss0);
    println!(
        "{SLOW} stalled bodies: {stuck} still held after 20 s, the last ended at {} ms \
         (body timeout 3 s); RSS +{grown} KiB",
        last.as_millis()
    );
    assert_eq!(stuck, 0, "stalled bodies held their connections");
    assert!(last < Duration::from_secs(12), "{last:?}");
    assert!(!edge.log().contains("panicked"));
}

/// HTTP/2 with prior knowledge on the plain port: refused (HTTP/1.1 only), so one
/// connection cannot carry many half-sent bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_http2_on_the_plain_port() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let edge = Edge::start(dir.path(), &[]);
    let mut s = tokio::net::TcpStream::connect(http_addr(&edge))
        .await
        .unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    // An HTTP/2 server answers with a SETTINGS frame (type 4 in the 4th byte).
    let h2 = n >= 9 && buf[3] == 4;
    println!(
        "answer to an HTTP/2 preface: {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(!h2, "the plain port speaks HTTP/2");
}

/// Live streams at a 1,024-descriptor limit: 200 board streams from 25 addresses get
/// at most half the places, and a fresh request is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_cannot_take_every_place() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let edge = start_at_1024(dir.path(), &[]);
    let addr = http_addr(&edge);
    let mut held = Vec::new();
    let mut ok = 0;
    for i in 0..200 {
        let from = Ipv4Addr::new(127, 0, 5, 2 + (i % 25) as u8);
        let Ok(mut s) = connect_from(from, addr).await else {
            continue;
        };
        let req = "GET /api/v1/telemetry/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        if s.write_all(req.as_bytes()).await.is_err() {
            continue;
        }
        let mut buf = [0u8; 32];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200") {
                ok += 1;
            }
        }
        held.push(s);
    }
    let (st, ms) = fresh_status(&edge, Ipv4Addr::new(127, 0, 6, 1), "/healthz").await;
    println!("{ok} of 200 streams opened; fresh request {st:?} in {ms} ms");
    assert!(ok <= 110, "{ok} streams at about 190 places");
    assert_eq!(st, Some(200));
    drop(held);
}
