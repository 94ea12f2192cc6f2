//! Publishing: edits written as the cloud's changes to a depot's records (only what
//! changed), a plan's rolling window published, every depot's plan re-published by the
//! background publisher.

use std::sync::Arc;

use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::record::{FieldValue, Record};
use serde::Serialize;

use super::{
    check_plan, plan_records, Edit, Plan, PlanError, Timetables, BLOCK_RECORD, RUN_RECORD,
    SHAPE_RECORD, STOP_RECORD,
};
use crate::materialise::Materialiser;
use crate::store::{ChangeIn, CloudStore, RecordKey, StoreError};

/// Writes edits as the cloud's changes to a depot's records, in one store call; returns
/// how many records changed.
pub async fn apply_edits<S: CloudStore>(
    store: &S,
    materialiser: &Materialiser<S>,
    depot: &str,
    edits: &[Edit],
) -> Result<usize, PlanError> {
    materialiser.catch_up().await?;
    // A fresh cloud actor per edit: two runs at once (the publisher and an admin
    // request), or one record twice in a run, can never produce two changes with one
    // (actor, seq) pair, a fork automerge cannot apply.
    let mut changes = Vec::new();
    for chunk in edits.chunks(1000) {
        let keys: Vec<RecordKey> = chunk
            .iter()
            .map(|e| RecordKey {
                depot: depot.into(),
                record_type: e.record_type.into(),
                record_id: e.record_id.clone(),
            })
            .collect();
        let docs = store.load_records(&keys).await?;
        for (e, doc) in chunk.iter().zip(docs) {
            let mut record = match doc {
                Some(d) => Record::load(&d, new_actor(Side::Cloud)),
                None => Ok(Record::new(new_actor(Side::Cloud))),
            }
            .map_err(|e| PlanError::Record(e.to_string()))?;
            let fields: Vec<(&str, FieldValue)> =
                e.fields.iter().map(|(k, v)| (*k, v.clone())).collect();
            if let Some(change) = record
                .set_changed(&fields)
                .map_err(|e| PlanError::Record(e.to_string()))?
            {
                changes.push(ChangeIn {
                    record_type: e.record_type.into(),
                    record_id: e.record_id.clone(),
                    change,
                });
            }
        }
    }
    for chunk in changes.chunks(5000) {
        store.add_changes(depot, chunk).await?;
    }
    if !changes.is_empty() {
        materialiser.catch_up().await?;
    }
    Ok(changes.len())
}

/// What one publish run did for a depot.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Published {
    pub dates: Vec<String>,
    pub blocks: usize,
    pub stops: usize,
    pub shapes: usize,
    /// TODS runs (0 for a feed without them).
    pub runs: usize,
    /// Records that changed (0 when the depot already has all of it).
    pub changed: usize,
}

/// Publishes `plan` for `depot`: the window starting today in the plan's time zone.
pub async fn publish<S: CloudStore>(
    store: &S,
    materialiser: &Materialiser<S>,
    timetables: &Timetables,
    depot: &str,
    plan: &Plan,
) -> Result<Published, PlanError> {
    let feed = timetables.feed(store, plan.timetable).await?;
    let tz = check_plan(plan, &feed)?;
    let today = jiff::Timestamp::now().to_zoned(tz.clone()).date();
    let dates: Vec<jiff::civil::Date> = (0..=plan.window_days)
        .filter_map(|d| today.checked_add(jiff::Span::new().days(d)).ok())
        .collect();
    let (plan2, feed2, tz2, dates2) = (plan.clone(), feed.clone(), tz.clone(), dates.clone());
    let edits = tokio::task::spawn_blocking(move || plan_records(&plan2, &feed2, &tz2, &dates2))
        .await
        .map_err(|e| PlanError::Record(e.to_string()))?;
    let count = |t: &str| edits.iter().filter(|e| e.record_type == t).count();
    let out = Published {
        dates: dates.iter().map(|d| d.to_string()).collect(),
        blocks: count(BLOCK_RECORD),
        stops: count(STOP_RECORD),
        shapes: count(SHAPE_RECORD),
        runs: count(RUN_RECORD),
        changed: 0,
    };
    let changed = apply_edits(store, materialiser, depot, &edits).await?;
    Ok(Published { changed, ..out })
}

/// Publishes every depot's plan (the rolling window moves at midnight; run it often).
pub async fn publish_all<S: CloudStore>(
    store: &S,
    materialiser: &Materialiser<S>,
    timetables: &Timetables,
) -> Result<(), StoreError> {
    for (depot, plan_json) in store.depot_plans().await? {
        let plan: Plan = match serde_json::from_str(&plan_json) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(depot = %depot, error = %e, "stored depot plan does not parse");
                continue;
            }
        };
        match publish(store, materialiser, timetables, &depot, &plan).await {
            Ok(p) if p.changed > 0 => {
                tracing::info!(depot = %depot, blocks = p.blocks, changed = p.changed, "published the depot's rolling window")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(depot = %depot, error = %e, "publishing the depot's plan failed")
            }
        }
    }
    Ok(())
}

/// Keeps every depot's rolling window published (the day moves on at midnight in each
/// feed's time zone); runs until `cancel`.
pub async fn publisher<S: CloudStore + 'static>(
    store: Arc<S>,
    materialiser: Arc<Materialiser<S>>,
    timetables: Arc<Timetables>,
    every: std::time::Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        if let Err(e) = publish_all(&*store, &materialiser, &timetables).await {
            tracing::error!(error = %e, "publisher: reading depot plans failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
