//! The outbox: appending changes and stream rows inside the writer's transaction,
//! measuring what waits, and the quota policy that thins or drops old stream rows.

use rusqlite::{params, Connection, Transaction};

use super::thinned;

/// Appends one automerge change of a replicated record, inside the caller's transaction.
pub fn append_change(
    tx: &Transaction<'_>,
    record_type: &str,
    record_id: &str,
    change: &[u8],
) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO sync_outbox (record_type, record_id, change, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![record_type, record_id, change, crate::util::now_ms()],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Appends one stream row (telemetry sample, scan, meter reading) inside the caller's
/// transaction. Its seq, assigned here, identifies it at the cloud.
pub fn append_stream_row(
    tx: &Transaction<'_>,
    stream: &str,
    ts_ms: i64,
    payload: &[u8],
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO sync_stream_outbox (stream, ts_ms, payload) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![stream, ts_ms, payload])?;
    Ok(())
}

/// What waits for upload.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Backlog {
    pub changes: i64,
    pub change_bytes: i64,
    pub stream_rows: i64,
    pub stream_bytes: i64,
    /// When the oldest waiting operational change was written.
    pub oldest_change_ms: Option<i64>,
}

impl Backlog {
    pub fn entries(&self) -> i64 {
        self.changes + self.stream_rows
    }
    pub fn bytes(&self) -> i64 {
        self.change_bytes + self.stream_bytes
    }
}

/// What waits, cheaply: exact for changes (a small table); for stream rows the seq span
/// corrected for the gaps the quota's thinning left ([`thinned`]: exact until pushes
/// reach the thinned part, then within a row or so), and bytes from the newest 1,000
/// rows' average. Push, pull and the status route call this on every cycle, and a full
/// scan of a million-row outbox would cost more than the push itself.
pub fn backlog_estimate(c: &Connection) -> rusqlite::Result<Backlog> {
    // One snapshot: what a quota pass noted and the seqs it describes must agree.
    if c.is_autocommit() {
        // Deferred: a read, never the write lock (the writer's default is IMMEDIATE).
        let tx = Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Deferred)?;
        return estimate_in(&tx);
    }
    estimate_in(c)
}

fn estimate_in(c: &Connection) -> rusqlite::Result<Backlog> {
    let (changes, change_bytes, oldest_change_ms) = c.query_row(
        "SELECT count(*), coalesce(sum(length(change)), 0), min(created_ms) FROM sync_outbox",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (lo, hi): (Option<i64>, Option<i64>) = c.query_row(
        "SELECT min(seq), max(seq) FROM sync_stream_outbox",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let stream_rows = match (lo, hi) {
        (Some(lo), Some(hi)) => thinned::rows_waiting(c, lo, hi)?,
        _ => 0,
    };
    let avg: f64 = c.query_row(
        "SELECT coalesce(avg(length(payload)), 0) FROM
           (SELECT payload FROM sync_stream_outbox ORDER BY seq DESC LIMIT 1000)",
        [],
        |r| r.get(0),
    )?;
    Ok(Backlog {
        changes,
        change_bytes,
        stream_rows,
        stream_bytes: (avg * stream_rows as f64) as i64,
        oldest_change_ms,
    })
}

/// Entries and bytes waiting for upload, counted exactly (scans the stream outbox).
pub fn backlog(c: &Connection) -> rusqlite::Result<Backlog> {
    let (changes, change_bytes, oldest_change_ms) = c.query_row(
        "SELECT count(*), coalesce(sum(length(change)), 0), min(created_ms) FROM sync_outbox",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (stream_rows, stream_bytes) = c.query_row(
        "SELECT count(*), coalesce(sum(length(payload)), 0) FROM sync_stream_outbox",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(Backlog {
        changes,
        change_bytes,
        stream_rows,
        stream_bytes,
        oldest_change_ms,
    })
}

/// What the quota policy removed from the stream outbox.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct QuotaOutcome {
    pub thinned: u64,
    pub dropped: u64,
}

/// The outbox quota policy (README "Working offline for days"). Operational changes are
/// never removed. When the outbox is over `quota_bytes`, unsent stream rows go first:
/// 1. thin: every other row of the oldest half of the stream outbox is removed (old
///    telemetry at half resolution is still useful for the cloud's history);
/// 2. drop: if still over, the oldest stream rows are removed until it fits.
///
/// Removed rows stay in the local store (telemetry keeps its own tables); they are only
/// never uploaded. Both steps are counted and reported: the totals are kept in
/// `sync_state` in the transaction that removes the rows ([`quota_totals`]), so the
/// sync status reports them exactly across restarts.
pub fn enforce_quota(c: &mut Connection, quota_bytes: i64) -> rusqlite::Result<QuotaOutcome> {
    let mut out = QuotaOutcome::default();
    let b = backlog(c)?;
    if b.bytes() <= quota_bytes || b.stream_rows == 0 {
        return Ok(out);
    }
    let tx = c.transaction()?;
    // Rows of a batch already sent (its answer may have been lost) may be at the cloud:
    // they are neither thinned nor dropped, so the totals count only rows never sent.
    let sent = super::push::load_pending(&tx)?.map_or(0, |p| p.stream_upto);
    let (lo, hi): (i64, i64) = tx.query_row(
        "SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM sync_stream_outbox WHERE seq > ?1",
        params![sent],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mid = lo + (hi - lo) / 2;
    out.thinned = tx.execute(
        "DELETE FROM sync_stream_outbox WHERE seq > ?1 AND seq <= ?2 AND seq % 2 = 1",
        params![sent, mid],
    )? as u64;
    let b = backlog(&tx)?;
    let mut rows_left = b.stream_rows;
    let mut over = b.bytes() - quota_bytes;
    if over > 0 && b.stream_rows > 0 {
        let avg = (b.stream_bytes / b.stream_rows).max(1);
        let n = (over / avg + 1).min(b.stream_rows);
        out.dropped = tx.execute(
            "DELETE FROM sync_stream_outbox WHERE seq IN (SELECT seq FROM sync_stream_outbox WHERE seq > ?2 ORDER BY seq LIMIT ?1)",
            params![n, sent],
        )? as u64;
        rows_left -= out.dropped as i64;
        over -= n * avg;
    }
    if out.thinned + out.dropped > 0 {
        let (thinned, dropped) = quota_totals(&tx)?;
        super::store::state_set(&tx, THINNED, &(thinned + out.thinned).to_string())?;
        super::store::state_set(&tx, DROPPED, &(dropped + out.dropped).to_string())?;
        thinned::note(&tx, sent, rows_left, mid)?;
    }
    tx.commit()?;
    if over > 0 {
        tracing::warn!(
            over_bytes = over,
            "sync outbox is over its quota with operational changes alone; they are never dropped"
        );
    }
    Ok(out)
}

const THINNED: &str = "quota_thinned_total";
const DROPPED: &str = "quota_dropped_total";

/// Unsent stream rows the quota has removed since the depot began: (thinned, dropped).
pub fn quota_totals(c: &Connection) -> rusqlite::Result<(u64, u64)> {
    let get = |k: &str| -> rusqlite::Result<u64> {
        Ok(super::store::state_get(c, k)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    };
    Ok((get(THINNED)?, get(DROPPED)?))
}
