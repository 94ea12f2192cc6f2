//! The cloud's HTTP API over PostgreSQL (`GARASI_TEST_POSTGRES`, required in CI). A push
//! takes the whole path here that the store conformance suite does not: decoded and
//! stored on the bulk threads, whose runtime must give the pool its timers and open its
//! connections. Several depots push at once; every change and row lands once, a replay
//! adds nothing, and each depot pulls only its own changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use garasi_sync_protocol::streams::TELEMETRY_V1;
use garasi_sync_protocol::wire::Entry;

const DEPOTS: usize = 4;
const BATCHES: u64 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_of_several_depots_land_in_postgres() {
    let Some((store, _, schema)) = common::fresh_postgres("http_pg").await else {
        return;
    };
    let cloud = common::start_on(store, tempfile::tempdir().unwrap()).await;
    let mut depots = Vec::new();
    for i in 0..DEPOTS {
        depots.push(cloud.depot(&format!("PG depot {i}")).await);
    }
    // Each depot's batches in order, the depots at once.
    let pushes = depots.iter().map(|(id, secret)| {
        let cloud = &cloud;
        async move {
            let (mut replies, mut sent) = (Vec::new(), Vec::new());
            for seq in 1..=BATCHES {
                let body = common::batch(id, seq);
                sent.push(body.clone());
                let r = cloud.push(id, secret, body).await;
                assert_eq!(r.status(), 200, "{id} batch {seq}");
                replies.push(r.json::<serde_json::Value>().await.unwrap());
            }
            (replies, sent)
        }
    });
    let mut sent = Vec::new();
    for (replies, bodies) in futures::future::join_all(pushes).await {
        sent.push(bodies);
        for r in replies {
            assert_eq!(r["replayed"], false);
            assert_eq!(
                (r["new_changes"].as_u64(), r["new_rows"].as_u64()),
                (Some(1), Some(1))
            );
        }
    }
    // A replay (the depot never saw the answer) adds nothing.
    let (id, secret) = &depots[0];
    let r = cloud.push(id, secret, sent[0][2].clone()).await;
    assert_eq!(r.status(), 200);
    let r: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (
            r["replayed"].as_bool(),
            r["new_changes"].as_u64(),
            r["new_rows"].as_u64()
        ),
        (Some(true), Some(0), Some(0))
    );
    for (id, secret) in &depots {
        assert_eq!(
            cloud.store.stream_len(id, TELEMETRY_V1).await.unwrap(),
            BATCHES as i64,
            "{id}: every row once"
        );
        let pulled = cloud.pull(id, secret).await.unwrap();
        assert_eq!(pulled.depot, *id);
        let statuses = pulled
            .entries
            .iter()
            .filter(|e| matches!(e, Entry::Change { record_type, .. } if record_type == "vehicle_status"))
            .count();
        assert_eq!(statuses, BATCHES as usize, "{id}: its own changes, once");
    }
    cloud.store.drop_schema(&schema).await.unwrap();
}
