//! Conformance case (issue 14): pushes and cloud edits of several depots committing
//! concurrently, while each depot's puller and the materialiser follow the per-depot
//! cursors. The classic gap of a cursor given before commit: a transaction that got
//! cursor 10 commits after one that got 11, a reader that already moved past 11 never
//! sees 10. Every change here is a new record with one change, so a change skipped by
//! the materialiser is a record missing at the end, and one skipped by a pull is a
//! change missing from that puller's list (the final catch-up and pull start from where
//! they were, so they cannot mend a skip).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use garasi_cloud::materialise::Materialiser;
use garasi_cloud::store::{ChangeIn, CloudStore};
use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::record::{FieldValue, Record};

const DEPOTS: usize = 4;
const ROUNDS: usize = 30;
const PER_BATCH: usize = 4;

/// A new record's first change: record `id`, status `id` (so the fold is checkable).
fn new_record(id: &str) -> ChangeIn {
    let change = Record::new(new_actor(Side::Cloud))
        .set(&[("status", FieldValue::Text(id.into()))])
        .unwrap()
        .unwrap();
    ChangeIn {
        record_type: "vehicle_status".into(),
        record_id: id.into(),
        change,
    }
}

pub async fn concurrent_writers_never_hide_a_change_behind_a_cursor<S: CloudStore + 'static>(
    s: &Arc<S>,
) {
    let mut depots = Vec::new();
    for i in 0..DEPOTS {
        depots.push(s.create_depot(&format!("D{i}")).await.unwrap().id);
    }
    let done = Arc::new(AtomicBool::new(false));
    let m = Arc::new(Materialiser::new(s.clone()));
    let folding = {
        let (m, done) = (m.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                m.catch_up().await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    // Each depot: its edge pushing batches, the cloud editing, and the edge pulling.
    let mut writers = Vec::new();
    let mut pullers = Vec::new();
    for d in &depots {
        let (s1, d1) = (s.clone(), d.clone());
        writers.push(tokio::spawn(async move {
            for r in 0..ROUNDS {
                let batch: Vec<ChangeIn> = (0..PER_BATCH)
                    .map(|k| new_record(&format!("edge-{r}-{k}")))
                    .collect();
                s1.push(&d1, r as i64 + 1, &batch, &[]).await.unwrap();
            }
        }));
        let (s2, d2) = (s.clone(), d.clone());
        writers.push(tokio::spawn(async move {
            for r in 0..ROUNDS {
                let edit = [new_record(&format!("cloud-{r}"))];
                assert_eq!(s2.add_changes(&d2, &edit).await.unwrap(), 1);
            }
        }));
        let (s3, d3, done3) = (s.clone(), d.clone(), done.clone());
        pullers.push(tokio::spawn(async move {
            let (mut cursor, mut seen) = (0i64, Vec::new());
            loop {
                let last_round = done3.load(Ordering::SeqCst);
                loop {
                    let page = s3.pull(&d3, cursor, 7).await.unwrap();
                    let Some(end) = page.last().map(|c| c.cursor) else {
                        break;
                    };
                    for c in page {
                        assert!(c.cursor > cursor, "cursors increase");
                        cursor = c.cursor;
                        seen.push(c.record_id);
                    }
                    assert_eq!(cursor, end);
                }
                if last_round {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    folding.await.unwrap();
    m.catch_up().await.unwrap();
    let want: BTreeSet<String> = (0..ROUNDS)
        .flat_map(|r| {
            (0..PER_BATCH)
                .map(move |k| format!("edge-{r}-{k}"))
                .chain([format!("cloud-{r}")])
        })
        .collect();
    for (d, p) in depots.iter().zip(pullers) {
        let seen = p.await.unwrap();
        let distinct: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(seen.len(), distinct.len(), "{d}: a change pulled twice");
        assert_eq!(distinct, want, "{d}: the pull skipped changes");
        let shown: BTreeSet<String> = s
            .list_records(d, "vehicle_status")
            .await
            .unwrap()
            .into_iter()
            .map(|(id, fields)| {
                let f: serde_json::Value = serde_json::from_str(&fields).unwrap();
                assert_eq!(f["status"], id.as_str(), "{d}: record folded wrong");
                id
            })
            .collect();
        assert_eq!(shown, want, "{d}: the materialiser skipped changes");
    }
    for p in s.change_positions(None).await.unwrap() {
        assert_eq!(p.materialised, p.last, "{p:?}");
    }
}
