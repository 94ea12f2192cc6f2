//! Attack (issue 14): one page of a depot's telemetry at `limit=50000` took the cloud
//! from 11 to 323 MiB and kept it there. Against the real binary: 60,000 samples stored,
//! then ten such requests at once; every page holds at most 5,000 samples, paging with
//! `next` lists every sample exactly once, and the server's peak memory grows by a few
//! pages' worth.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attack;

use attack::{Cloud, Opts, ADMIN};
use garasi_cloud::store::{CloudStore, StreamRowIn};
use garasi_sync_protocol::streams::{TelemetrySampleV1, TELEMETRY_V1};

const SAMPLES: i64 = 60_000;

fn sample(seq: i64) -> StreamRowIn {
    let ts_ms = 1_763_700_000_000 + seq * 1000;
    let s = TelemetrySampleV1 {
        vehicle_id: format!("bus-{:03}", seq % 200),
        ts_ms,
        lat: Some(-6.2),
        lon: Some(106.8),
        heading: Some(90.0),
        speed_kmh: Some(30.0),
        soc_pct: Some(80.0),
        odometer_km: Some(1000.0 + seq as f64),
        battery_temp_c: Some(31.5),
        power_w: Some(45_000.0),
        charging: Some(false),
        extra: None,
    };
    StreamRowIn {
        stream: TELEMETRY_V1.into(),
        seq,
        ts_ms,
        payload: s.encode(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_huge_telemetry_page_is_cut_to_a_bounded_one() {
    if !attack::have_openssl() {
        return;
    }
    let cloud = Cloud::start(Opts::default());
    let (depot, _) = cloud.depot("paged").await;
    let store =
        garasi_cloud::store::sqlite::SqliteStore::open(&cloud.dir.path().join("cloud.db")).unwrap();
    for (i, chunk) in (1..=SAMPLES).collect::<Vec<_>>().chunks(10_000).enumerate() {
        let rows: Vec<StreamRowIn> = chunk.iter().map(|&s| sample(s)).collect();
        store.push(&depot, i as i64 + 1, &[], &rows).await.unwrap();
    }
    let http = cloud.client();
    let url = |after: i64, limit: i64| {
        format!(
            "{}/api/v1/admin/depots/{depot}/telemetry?after={after}&limit={limit}",
            cloud.base
        )
    };
    let get = |u: String| {
        let http = http.clone();
        async move {
            let r = http.get(u).bearer_auth(ADMIN).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    // Warm up (TLS, the read connections), then measure.
    get(url(0, 10)).await;
    let (rss0, hwm0) = cloud.mem_kib();
    let pages: Vec<_> = (0..10).map(|_| tokio::spawn(get(url(0, 50_000)))).collect();
    for p in pages {
        let page = p.await.unwrap();
        assert_eq!(
            page["samples"].as_array().unwrap().len(),
            5_000,
            "cut to 5,000"
        );
        assert_eq!(page["next"], 5_000);
        assert_eq!(page["limit"], 5_000, "the client sees its limit was cut");
    }
    let (rss1, hwm1) = cloud.mem_kib();
    println!("ten pages asked at limit=50000: RSS {rss0} -> {rss1} KiB, peak {hwm0} -> {hwm1} KiB");
    assert!(
        hwm1.saturating_sub(hwm0) < 64 * 1024,
        "peak grew by {} KiB",
        hwm1 - hwm0
    );
    // Paging on with `next` lists every sample once, in order.
    let (mut after, mut seen) = (0, 0i64);
    loop {
        let page = get(url(after, 50_000)).await;
        let samples = page["samples"].as_array().unwrap();
        if samples.is_empty() {
            break;
        }
        for s in samples {
            seen += 1;
            assert_eq!(s["seq"], seen, "every sample once, in order");
            assert_eq!(s["sample"]["odometer_km"], 1000.0 + seen as f64);
        }
        after = page["next"].as_i64().unwrap();
    }
    assert_eq!(seen, SAMPLES);
}
