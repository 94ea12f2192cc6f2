//! The bench's admin: a dashboard asking one admin view again and again during the storm.

use std::time::{Duration, Instant};

use serde_json::json;

/// Asks `urls` in turn, one every 50 ms, until `stop` and returns the latencies in ms
/// (each must be 200) and how many answers said `up_to_date: false` (a record list that
/// showed only the materialised fields because it could not apply the rest: fast, but
/// behind). It runs on its own thread and runtime, as an admin's browser is its own
/// process: on this process's runtime the probe's replies waited for the 16 edges'
/// tasks to yield before it could read them, which the cloud is not to blame for. The
/// first request (TLS handshake, connection) is made and not counted before `ready`
/// is sent: a dashboard's browser holds its connection open. Until `go` the probe keeps
/// asking, uncounted (a dashboard is already open when the storm starts, and its
/// connection stays in use); counting starts at `go`.
pub fn probe(
    ca_pem: String,
    urls: Vec<String>,
    stop: tokio_util::sync::CancellationToken,
    ready: std::sync::mpsc::Sender<()>,
    go: std::sync::mpsc::Receiver<()>,
) -> std::thread::JoinHandle<(Vec<f64>, usize)> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            // A stuck cloud fails the bench instead of hanging it.
            let http = reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap();
            let http = &http;
            let ask = |url: String| async move {
                let t = Instant::now();
                let r = http
                    .get(&url)
                    .bearer_auth(garasi_fleet_tests::ADMIN)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{url}: {}", r.status());
                let body: serde_json::Value = r.json().await.unwrap();
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                (ms, body["up_to_date"] == json!(false))
            };
            ask(urls[0].clone()).await;
            ready.send(()).unwrap();
            let (mut out, mut behind) = (Vec::new(), 0);
            let mut started = None;
            for url in urls.iter().cycle() {
                if stop.is_cancelled() {
                    break;
                }
                // Counted from the moment the links open.
                if started.is_none() && go.try_recv().is_ok() {
                    started = Some(Instant::now());
                }
                let Some(started) = started else {
                    ask(url.clone()).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (ms, stale) = ask(url.clone()).await;
                if ms > 40.0 {
                    // When in the drain the slow answers come, to tell their causes apart.
                    eprintln!(
                        "slow answer: {ms:.1} ms at {:.2} s, {url}",
                        started.elapsed().as_secs_f64()
                    );
                }
                out.push(ms);
                behind += usize::from(stale);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (out, behind)
        })
    })
}
