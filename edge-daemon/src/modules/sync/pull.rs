//! One pull: the cloud's changes after the durable cursor, applied by their owning
//! modules and the cursor advanced in one transaction.

use garasi_sync_protocol::wire;

use super::enrol::Enrolment;
use super::service::Appliers;
use super::store::{state_get, state_set};
use crate::store::Store;
use std::collections::HashMap;

use garasi_sync_protocol::wire::Entry;

use super::dead_letters;
use super::error::SyncError;
use super::outbox::{backlog_estimate, Backlog};
use super::push::backlog_header;

pub(super) const PULL_LIMIT: i64 = 1000;

/// What one pull did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pulled {
    /// Entries in the batch (a full batch means: pull again).
    pub(super) entries: u64,
    pub(super) applied: u64,
    /// Refused by their module: kept in `sync_dead_letters`.
    pub(super) dead: u64,
    /// Of a record type this build does not know (also kept there).
    pub(super) unknown: u64,
}

/// One pull: changes after the durable cursor, applied and the cursor advanced in one
/// transaction. A change that cannot be applied is set aside, never allowed to stop it.
pub(super) async fn pull_once(
    store: &Store,
    http: &reqwest::Client,
    e: &Enrolment,
    appliers: &Appliers,
) -> Result<Pulled, SyncError> {
    let (cursor, backlog_now): (i64, Backlog) = store
        .read(|c| {
            let cursor = state_get(c, "pull_cursor")?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            Ok((cursor, backlog_estimate(c)?))
        })
        .await?;
    let r = http
        .get(format!(
            "{}/api/v1/sync/pull?cursor={cursor}&limit={PULL_LIMIT}",
            e.cloud_url
        ))
        .header("x-garasi-depot", &e.depot_id)
        .header("x-garasi-backlog", backlog_header(&backlog_now))
        .bearer_auth(&e.secret)
        .send()
        .await
        .map_err(|source| SyncError::Http { op: "pull", source })?;
    if !r.status().is_success() {
        return Err(SyncError::Refused {
            op: "pull",
            status: r.status(),
            body: r.text().await.unwrap_or_default(),
        });
    }
    let bytes = r
        .bytes()
        .await
        .map_err(|source| SyncError::Http { op: "pull", source })?;
    let batch = wire::decode(&bytes).map_err(SyncError::Decode)?;
    if batch.entries.is_empty() {
        return Ok(Pulled::default());
    }
    let entries = batch.entries.len() as u64;
    let next = i64::try_from(batch.batch_seq).map_err(|_| SyncError::Cursor)?;
    // Changes grouped per record, in pull order.
    let mut order: Vec<(String, String)> = Vec::new();
    let mut by_record: HashMap<(String, String), Vec<Vec<u8>>> = HashMap::new();
    for entry in batch.entries {
        if let Entry::Change {
            record_type,
            record_id,
            change,
        } = entry
        {
            by_record
                .entry((record_type, record_id))
                .or_insert_with_key(|k| {
                    order.push(k.clone());
                    Vec::new()
                })
                .push(change);
        }
    }
    let plan: Vec<_> = order
        .into_iter()
        .filter_map(|k| {
            let changes = by_record.remove(&k)?;
            Some((appliers.get(&k.0), k, changes))
        })
        .collect();
    store
        .write(move |c| {
            let tx = c.transaction()?;
            let mut out = Pulled {
                entries,
                ..Pulled::default()
            };
            for (f, (record_type, id), changes) in &plan {
                match f {
                    Some(f) => {
                        let a = dead_letters::apply_or_set_aside(
                            &tx,
                            f,
                            record_type,
                            id,
                            changes,
                            next,
                        )?;
                        out.applied += a.applied;
                        out.dead += a.dead;
                    }
                    None => {
                        let reason = format!(
                            "record type {record_type:?} is not known to this build: upgrade garasi-edge"
                        );
                        for ch in changes {
                            dead_letters::set_aside(&tx, record_type, id, ch, &reason, next)?;
                        }
                        out.unknown += changes.len() as u64;
                    }
                }
            }
            state_set(&tx, "pull_cursor", &next.to_string())?;
            tx.commit()?;
            Ok(out)
        })
        .await
        .map_err(SyncError::from)
}
