//! One push: the next batch of outbox changes and stream rows (or the pending batch
//! again after a crash), acknowledged by the cloud before the cursor moves.

use garasi_sync_protocol::wire::{self, Batch, Entry};
use rusqlite::{params, Connection};

use super::enrol::Enrolment;
use super::error::SyncError;
use super::outbox::backlog_estimate;
use super::outbox::Backlog;
use super::store::{state_get, state_set};
use crate::store::Store;

/// Changes per push batch (automerge changes are ~100 B to a few KiB).
pub(super) const PUSH_LIMIT: i64 = 1000;
/// Stream rows per push batch (~60 B each): big batches amortise the round trip.
pub(super) const STREAM_PUSH_LIMIT: i64 = 20_000;

/// The batch being uploaded, recorded before it is sent: after a crash the same batch
/// (same id, same ranges) is sent again, and the cloud recognises the replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct PendingBatch {
    pub(super) batch_seq: i64,
    pub(super) change_upto: i64,
    pub(super) stream_upto: i64,
}

pub(super) fn load_pending(c: &Connection) -> rusqlite::Result<Option<PendingBatch>> {
    Ok(state_get(c, "push_pending")?.and_then(|v| {
        let mut it = v.split(',').map(|p| p.parse::<i64>().ok());
        Some(PendingBatch {
            batch_seq: it.next()??,
            change_upto: it.next()??,
            stream_upto: it.next()??,
        })
    }))
}

pub(super) type ChangeRow = (i64, String, String, Vec<u8>);
pub(super) type StreamRow = (i64, String, i64, Vec<u8>);

pub(super) fn read_changes(c: &Connection, upto: Option<i64>) -> rusqlite::Result<Vec<ChangeRow>> {
    let mut st = c.prepare_cached(
        "SELECT seq, record_type, record_id, change FROM sync_outbox WHERE seq <= ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = st.query_map(params![upto.unwrap_or(i64::MAX), PUSH_LIMIT], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    rows.collect()
}

pub(super) fn read_stream_rows(
    c: &Connection,
    upto: Option<i64>,
) -> rusqlite::Result<Vec<StreamRow>> {
    let mut st = c.prepare_cached(
        "SELECT seq, stream, ts_ms, payload FROM sync_stream_outbox WHERE seq <= ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = st.query_map(params![upto.unwrap_or(i64::MAX), STREAM_PUSH_LIMIT], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    rows.collect()
}

/// What one push uploaded.
#[derive(Default)]
pub(super) struct Pushed {
    pub(super) changes: u64,
    pub(super) stream_rows: u64,
    /// Whether to push again at once: this batch was full, or it was a batch recorded
    /// earlier (an outage, a restart) and more waits behind it. Not just "the outbox is
    /// not empty": telemetry fills it every second, and the pull must get its turn.
    pub(super) full: bool,
}

/// The batch to send, read and recorded (as pending) in one transaction.
pub(super) struct Taken {
    pub(super) pending: Option<PendingBatch>,
    pub(super) changes: Vec<ChangeRow>,
    pub(super) rows: Vec<StreamRow>,
    pub(super) backlog: Backlog,
    /// Push again at once (see [`Pushed::full`]).
    pub(super) again: bool,
}

/// The pending batch if a previous attempt did not finish, else the next one up to the
/// limits, recorded before it is sent.
pub(super) fn take_batch(c: &mut Connection) -> rusqlite::Result<Taken> {
    let tx = c.transaction()?;
    let pending = load_pending(&tx)?;
    let resumed = pending.is_some();
    let changes = read_changes(&tx, pending.map(|p| p.change_upto))?;
    let rows = read_stream_rows(&tx, pending.map(|p| p.stream_upto))?;
    let pending = match pending {
        Some(p) => Some(p),
        None if changes.is_empty() && rows.is_empty() => None,
        None => {
            let batch_seq = state_get(&tx, "push_batch_seq")?
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
                + 1;
            let p = PendingBatch {
                batch_seq,
                change_upto: changes.last().map_or(0, |r| r.0),
                stream_upto: rows.last().map_or(0, |r| r.0),
            };
            state_set(&tx, "push_batch_seq", &batch_seq.to_string())?;
            state_set(
                &tx,
                "push_pending",
                &format!("{},{},{}", p.batch_seq, p.change_upto, p.stream_upto),
            )?;
            Some(p)
        }
    };
    let backlog = backlog_estimate(&tx)?;
    let more: bool = match pending {
        Some(p) => tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM sync_outbox WHERE seq > ?1)
                 OR EXISTS (SELECT 1 FROM sync_stream_outbox WHERE seq > ?2)",
            params![p.change_upto, p.stream_upto],
            |r| r.get(0),
        )?,
        None => false,
    };
    tx.commit()?;
    let again = changes.len() as i64 == PUSH_LIMIT
        || rows.len() as i64 == STREAM_PUSH_LIMIT
        || (resumed && more);
    Ok(Taken {
        pending,
        changes,
        rows,
        backlog,
        again,
    })
}

/// One push: the pending batch if a previous attempt did not finish, else the next up
/// to `PUSH_LIMIT` changes and `STREAM_PUSH_LIMIT` stream rows.
pub(super) async fn push_once(
    store: &Store,
    http: &reqwest::Client,
    e: &Enrolment,
) -> Result<Pushed, SyncError> {
    let Taken {
        pending,
        changes,
        rows,
        backlog: backlog_now,
        again,
    } = store.write(take_batch).await?;
    let Some(pending) = pending else {
        return Ok(Pushed::default());
    };
    let out = Pushed {
        changes: changes.len() as u64,
        stream_rows: rows.len() as u64,
        full: again,
    };
    let mut entries = Vec::with_capacity(changes.len() + rows.len());
    entries.extend(
        changes
            .into_iter()
            .map(|(_, record_type, record_id, change)| Entry::Change {
                record_type,
                record_id,
                change,
            }),
    );
    entries.extend(
        rows.into_iter()
            .map(|(seq, stream, ts_ms, payload)| Entry::Stream {
                stream,
                seq: seq as u64,
                ts_ms,
                payload,
            }),
    );
    let batch = Batch {
        depot: e.depot_id.clone(),
        batch_seq: pending.batch_seq as u64,
        entries,
    };
    let body = wire::encode(&batch).map_err(SyncError::Encode)?;
    let r = http
        .post(format!("{}/api/v1/sync/push", e.cloud_url))
        .header("x-garasi-depot", &e.depot_id)
        .header("x-garasi-backlog", backlog_header(&backlog_now))
        .bearer_auth(&e.secret)
        .body(body)
        .send()
        .await
        .map_err(|source| SyncError::Http { op: "push", source })?;
    if !r.status().is_success() {
        return Err(SyncError::Refused {
            op: "push",
            status: r.status(),
            body: r.text().await.unwrap_or_default(),
        });
    }
    // Acknowledged: now, and only now, drop what was sent and clear the pending batch.
    store
        .write(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM sync_outbox WHERE seq <= ?1",
                params![pending.change_upto],
            )?;
            tx.execute(
                "DELETE FROM sync_stream_outbox WHERE seq <= ?1",
                params![pending.stream_upto],
            )?;
            tx.execute("DELETE FROM sync_state WHERE key = 'push_pending'", [])?;
            tx.commit()
        })
        .await?;
    Ok(out)
}

/// The backlog as reported to the cloud (its ops view shows each depot's backlog and
/// lag): `entries=N;bytes=N;oldest_change_ms=N`.
pub(super) fn backlog_header(b: &Backlog) -> String {
    format!(
        "entries={};bytes={};oldest_change_ms={}",
        b.entries(),
        b.bytes(),
        b.oldest_change_ms.unwrap_or(0)
    )
}
