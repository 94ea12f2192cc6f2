//! sync module: the outbox every replicated write goes through, enrolment with the
//! cloud, and the worker that pushes the outbox and pulls the cloud's changes.
//!
//! Invariants:
//! - A local write and its outbox entry commit in the same SQLite transaction: owning
//!   modules call [`append_change`] with *their* open transaction.
//! - Cursors are durable and advance only after the matching commit: the push cursor
//!   after the cloud acknowledged the batch (a crash before that re-sends it, and the
//!   cloud recognises the replay), the pull cursor in the same transaction that applied
//!   the pulled changes.
//! - Pulled changes are applied by the module that owns the record type, through the
//!   [`Appliers`] it registered; sync never touches another module's tables.
//! - A pulled change that cannot be applied (refused by its module, or of a type this
//!   build lacks) is kept in `sync_dead_letters` and passed over ([`dead_letters`]): the
//!   pull never stalls on it.

pub mod dead_letters;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use garasi_sync_protocol::record::{FieldValue, Record};
use garasi_sync_protocol::wire::{self, Batch, Entry};
use rand::Rng;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{Module, ModuleContext, ModuleError, Started};
use crate::http::ApiError;
use crate::metrics::Metrics;
use crate::store::migrate::Migration;
use crate::store::Store;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "outbox",
        sql: "CREATE TABLE sync_outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            record_type TEXT NOT NULL,
            record_id TEXT NOT NULL,
            change BLOB NOT NULL,
            created_ms INTEGER NOT NULL
          );
          CREATE TABLE sync_state (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
          );",
    },
    Migration {
        version: 2,
        name: "stream outbox",
        // AUTOINCREMENT: a row's seq is its identity at the cloud ((depot, stream, seq)),
        // so a seq must never be reused, even after every row was acknowledged and deleted.
        sql: "CREATE TABLE sync_stream_outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            stream TEXT NOT NULL,
            ts_ms INTEGER NOT NULL,
            payload BLOB NOT NULL
          );",
    },
    Migration {
        version: 3,
        name: "master data documents",
        sql: "CREATE TABLE sync_master_docs (
            record_type TEXT NOT NULL,
            record_id TEXT NOT NULL,
            doc BLOB NOT NULL,
            PRIMARY KEY (record_type, record_id)
          );",
    },
    Migration {
        version: 4,
        name: "dead letters of pulled changes",
        sql: "CREATE TABLE sync_dead_letters (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            record_type TEXT NOT NULL,
            record_id TEXT NOT NULL,
            change BLOB NOT NULL,
            reason TEXT NOT NULL,
            pull_cursor INTEGER NOT NULL,
            at_ms INTEGER NOT NULL
          );",
    },
];

/// Changes per push batch (automerge changes are ~100 B to a few KiB).
const PUSH_LIMIT: i64 = 1000;
/// Stream rows per push batch (~60 B each): big batches amortise the round trip.
const STREAM_PUSH_LIMIT: i64 = 20_000;
const PULL_LIMIT: i64 = 1000;
/// How often the outbox quota is checked (it scans the stream outbox).
const QUOTA_CHECK_EVERY: Duration = Duration::from_secs(30);

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
/// (exact unless the quota thinned the middle, then an upper bound) and bytes from the
/// newest 1,000 rows' average. Push, pull and the status route call this on every cycle,
/// and a full scan of a million-row outbox would cost more than the push itself.
pub fn backlog_estimate(c: &Connection) -> rusqlite::Result<Backlog> {
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
        (Some(lo), Some(hi)) => hi - lo + 1,
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
/// never uploaded. Both steps are counted and reported.
pub fn enforce_quota(c: &mut Connection, quota_bytes: i64) -> rusqlite::Result<QuotaOutcome> {
    let mut out = QuotaOutcome::default();
    let b = backlog(c)?;
    if b.bytes() <= quota_bytes || b.stream_rows == 0 {
        return Ok(out);
    }
    let tx = c.transaction()?;
    let (lo, hi): (i64, i64) = tx.query_row(
        "SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM sync_stream_outbox",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mid = lo + (hi - lo) / 2;
    out.thinned = tx.execute(
        "DELETE FROM sync_stream_outbox WHERE seq <= ?1 AND seq % 2 = 1",
        params![mid],
    )? as u64;
    let b = backlog(&tx)?;
    let mut over = b.bytes() - quota_bytes;
    if over > 0 && b.stream_rows > 0 {
        let avg = (b.stream_bytes / b.stream_rows).max(1);
        let n = (over / avg + 1).min(b.stream_rows);
        out.dropped = tx.execute(
            "DELETE FROM sync_stream_outbox WHERE seq IN (SELECT seq FROM sync_stream_outbox ORDER BY seq LIMIT ?1)",
            params![n],
        )? as u64;
        over -= n * avg;
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

fn state_get(c: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    c.query_row(
        "SELECT value FROM sync_state WHERE key = ?1",
        params![key],
        |r| r.get(0),
    )
    .optional()
}

fn state_set(c: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO sync_state (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// How this depot reaches the cloud; stored in the encrypted database by `enroll`.
#[derive(Clone)]
pub struct Enrolment {
    pub cloud_url: String,
    pub depot_id: String,
    pub secret: String,
    /// PEM of a CA to trust besides the system roots (self-hosted clouds).
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolment")
            .field("cloud_url", &self.cloud_url)
            .field("depot_id", &self.depot_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

pub fn save_enrolment(c: &Connection, e: &Enrolment) -> rusqlite::Result<()> {
    state_set(c, "cloud_url", &e.cloud_url)?;
    state_set(c, "depot_id", &e.depot_id)?;
    state_set(c, "depot_secret", &e.secret)?;
    match &e.ca_pem {
        Some(pem) => state_set(c, "cloud_ca_pem", pem),
        None => c
            .execute("DELETE FROM sync_state WHERE key = 'cloud_ca_pem'", [])
            .map(|_| ()),
    }
}

pub fn load_enrolment(c: &Connection) -> rusqlite::Result<Option<Enrolment>> {
    let (url, id, secret) = (
        state_get(c, "cloud_url")?,
        state_get(c, "depot_id")?,
        state_get(c, "depot_secret")?,
    );
    Ok(match (url, id, secret) {
        (Some(cloud_url), Some(depot_id), Some(secret)) => Some(Enrolment {
            cloud_url,
            depot_id,
            secret,
            ca_pem: state_get(c, "cloud_ca_pem")?,
        }),
        _ => None,
    })
}

/// An HTTPS client for the cloud: rustls, the system roots plus the enrolment's CA.
pub fn cloud_client(ca_pem: Option<&str>) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .https_only(true);
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(
            reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| format!("CA file is not a PEM certificate: {e}"))?,
        );
    }
    b.build().map_err(|e| e.to_string())
}

/// Trades a one-time token for depot credentials and stores them (encrypted database).
/// Returns the depot id.
pub async fn enroll(
    store: &Store,
    cloud: &str,
    token: &str,
    ca_pem: Option<String>,
) -> Result<String, String> {
    let cloud = cloud.trim_end_matches('/').to_string();
    if !cloud.starts_with("https://") {
        return Err(
            "the cloud URL must be https://: depot credentials never travel in clear".into(),
        );
    }
    let http = cloud_client(ca_pem.as_deref())?;
    let r = http
        .post(format!("{cloud}/api/v1/enroll"))
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .map_err(|e| format!("cannot reach the cloud at {cloud}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!(
            "the cloud refused the enrolment ({}): {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ));
    }
    let creds: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
    let (Some(depot_id), Some(secret)) = (creds["depot_id"].as_str(), creds["secret"].as_str())
    else {
        return Err("the cloud's enrolment answer is missing depot_id or secret".into());
    };
    let e = Enrolment {
        cloud_url: cloud,
        depot_id: depot_id.into(),
        secret: secret.into(),
        ca_pem,
    };
    store
        .write(move |c| save_enrolment(c, &e))
        .await
        .map_err(|e| e.to_string())?;
    Ok(depot_id.to_string())
}

/// Applies pulled changes to a master-data record (cloud-authored: vehicles, devices) and
/// returns its visible fields; the owning module then writes its own table from them in
/// the same transaction. The documents are kept here, generically, because master data
/// is never edited at the depot.
pub fn apply_master(
    tx: &Transaction<'_>,
    record_type: &str,
    record_id: &str,
    changes: &[Vec<u8>],
) -> Result<std::collections::BTreeMap<String, FieldValue>, String> {
    let actor = garasi_sync_protocol::actor::new_actor(garasi_sync_protocol::actor::Side::Depot);
    let doc: Option<Vec<u8>> = tx
        .query_row(
            "SELECT doc FROM sync_master_docs WHERE record_type = ?1 AND record_id = ?2",
            params![record_type, record_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| e.to_string())?;
    let mut record = match doc {
        Some(b) => Record::load(&b, actor),
        None => Ok(Record::new(actor)),
    }
    .map_err(|e| e.to_string())?;
    record.apply_in_order(changes).map_err(|e| e.to_string())?;
    tx.execute(
        "INSERT INTO sync_master_docs (record_type, record_id, doc) VALUES (?1, ?2, ?3)
         ON CONFLICT(record_type, record_id) DO UPDATE SET doc = excluded.doc",
        params![record_type, record_id, record.save()],
    )
    .map_err(|e| e.to_string())?;
    record.visible().map_err(|e| e.to_string())
}

/// Applies pulled changes of one record inside the sync transaction.
pub type Applier =
    Arc<dyn Fn(&Transaction<'_>, &str, &[Vec<u8>]) -> Result<(), String> + Send + Sync>;

/// Record type -> the owning module's applier. Modules register at start.
#[derive(Default)]
pub struct Appliers(RwLock<HashMap<String, Applier>>);

impl Appliers {
    pub fn register(&self, record_type: &str, f: Applier) {
        if let Ok(mut m) = self.0.write() {
            m.insert(record_type.to_string(), f);
        }
    }
    fn get(&self, record_type: &str) -> Option<Applier> {
        self.0.read().ok()?.get(record_type).cloned()
    }
}

/// What `/api/v1/sync/status` reports about the link.
#[derive(Default, Clone, serde::Serialize)]
struct LinkState {
    online: bool,
    last_success_ms: Option<i64>,
    last_error: Option<String>,
    pushed_total: u64,
    pulled_total: u64,
    stream_rows_thinned: u64,
    stream_rows_dropped: u64,
    unknown_record_changes: u64,
    dead_letters: u64,
    /// Entries acknowledged per second, smoothed over recent pushes.
    drain_rate: f64,
}

#[derive(Clone)]
struct AppState {
    store: Store,
    link: Arc<Mutex<LinkState>>,
}

async fn status(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let (b, enrolled, (dead_kept, dead_newest)) = s
        .store
        .read(|c| {
            Ok((
                backlog_estimate(c)?,
                load_enrolment(c)?.map(|e| e.depot_id),
                dead_letters::summary(c, 5)?,
            ))
        })
        .await
        .map_err(ApiError::internal)?;
    let link = s.link.lock().map(|l| l.clone()).unwrap_or_default();
    let state = match (&enrolled, link.online) {
        (None, _) => "not_enrolled",
        (Some(_), true) => "online",
        (Some(_), false) => "offline",
    };
    // ETA only while draining: offline, nothing drains.
    let eta_s = (link.online && b.entries() > 0 && link.drain_rate > 0.0)
        .then(|| (b.entries() as f64 / link.drain_rate).ceil());
    Ok(Json(serde_json::json!({
        "link": state,
        "depot_id": enrolled,
        "last_success": link.last_success_ms.map(crate::util::rfc3339),
        "last_error": link.last_error,
        "backlog": {
            "entries": b.entries(),
            "bytes": b.bytes(),
            "changes": b.changes,
            "stream_rows": b.stream_rows,
            "oldest_change": b.oldest_change_ms.map(crate::util::rfc3339),
        },
        "drain_rate_per_s": (link.drain_rate * 10.0).round() / 10.0,
        "eta_s": eta_s,
        "pushed_total": link.pushed_total,
        "pulled_total": link.pulled_total,
        "quota": {
            "stream_rows_thinned": link.stream_rows_thinned,
            "stream_rows_dropped": link.stream_rows_dropped,
        },
        "unknown_record_changes": link.unknown_record_changes,
        "dead_letters": {
            "since_start": link.dead_letters,
            "kept": dead_kept,
            "newest": dead_newest,
        },
    })))
}

/// The batch being uploaded, recorded before it is sent: after a crash the same batch
/// (same id, same ranges) is sent again, and the cloud recognises the replay.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PendingBatch {
    batch_seq: i64,
    change_upto: i64,
    stream_upto: i64,
}

fn load_pending(c: &Connection) -> rusqlite::Result<Option<PendingBatch>> {
    Ok(state_get(c, "push_pending")?.and_then(|v| {
        let mut it = v.split(',').map(|p| p.parse::<i64>().ok());
        Some(PendingBatch {
            batch_seq: it.next()??,
            change_upto: it.next()??,
            stream_upto: it.next()??,
        })
    }))
}

type ChangeRow = (i64, String, String, Vec<u8>);
type StreamRow = (i64, String, i64, Vec<u8>);

fn read_changes(c: &Connection, upto: Option<i64>) -> rusqlite::Result<Vec<ChangeRow>> {
    let mut st = c.prepare_cached(
        "SELECT seq, record_type, record_id, change FROM sync_outbox WHERE seq <= ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = st.query_map(params![upto.unwrap_or(i64::MAX), PUSH_LIMIT], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    rows.collect()
}

fn read_stream_rows(c: &Connection, upto: Option<i64>) -> rusqlite::Result<Vec<StreamRow>> {
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
struct Pushed {
    changes: u64,
    stream_rows: u64,
    /// Whether the outbox had more than one batch's worth.
    full: bool,
}

/// One push: the pending batch if a previous attempt did not finish, else the next up
/// to `PUSH_LIMIT` changes and `STREAM_PUSH_LIMIT` stream rows.
async fn push_once(store: &Store, http: &reqwest::Client, e: &Enrolment) -> Result<Pushed, String> {
    let (pending, changes, rows, backlog_now) = store
        .write(|c| {
            let tx = c.transaction()?;
            let pending = load_pending(&tx)?;
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
            let b = backlog_estimate(&tx)?;
            tx.commit()?;
            Ok((pending, changes, rows, b))
        })
        .await
        .map_err(|e| e.to_string())?;
    let Some(pending) = pending else {
        return Ok(Pushed::default());
    };
    let out = Pushed {
        changes: changes.len() as u64,
        stream_rows: rows.len() as u64,
        full: changes.len() as i64 == PUSH_LIMIT || rows.len() as i64 == STREAM_PUSH_LIMIT,
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
    let body = wire::encode(&batch).map_err(|e| e.to_string())?;
    let r = http
        .post(format!("{}/api/v1/sync/push", e.cloud_url))
        .header("x-garasi-depot", &e.depot_id)
        .header("x-garasi-backlog", backlog_header(&backlog_now))
        .bearer_auth(&e.secret)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("push: {e}"))?;
    if !r.status().is_success() {
        return Err(format!(
            "push refused: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ));
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
        .await
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// The backlog as reported to the cloud (its ops view shows each depot's backlog and
/// lag): `entries=N;bytes=N;oldest_change_ms=N`.
fn backlog_header(b: &Backlog) -> String {
    format!(
        "entries={};bytes={};oldest_change_ms={}",
        b.entries(),
        b.bytes(),
        b.oldest_change_ms.unwrap_or(0)
    )
}

/// What one pull did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Pulled {
    /// Entries in the batch (a full batch means: pull again).
    entries: u64,
    applied: u64,
    /// Refused by their module: kept in `sync_dead_letters`.
    dead: u64,
    /// Of a record type this build does not know (also kept there).
    unknown: u64,
}

/// One pull: changes after the durable cursor, applied and the cursor advanced in one
/// transaction. A change that cannot be applied is set aside, never allowed to stop it.
async fn pull_once(
    store: &Store,
    http: &reqwest::Client,
    e: &Enrolment,
    appliers: &Appliers,
) -> Result<Pulled, String> {
    let (cursor, backlog_now): (i64, Backlog) = store
        .read(|c| {
            let cursor = state_get(c, "pull_cursor")?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            Ok((cursor, backlog_estimate(c)?))
        })
        .await
        .map_err(|e| e.to_string())?;
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
        .map_err(|e| format!("pull: {e}"))?;
    if !r.status().is_success() {
        return Err(format!(
            "pull refused: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ));
    }
    let bytes = r.bytes().await.map_err(|e| format!("pull: {e}"))?;
    let batch = wire::decode(&bytes).map_err(|e| format!("pull: {e}"))?;
    if batch.entries.is_empty() {
        return Ok(Pulled::default());
    }
    let entries = batch.entries.len() as u64;
    let next =
        i64::try_from(batch.batch_seq).map_err(|_| "pull: cursor out of range".to_string())?;
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
        .map_err(|e| e.to_string())
}

/// Everything the worker needs.
struct Worker {
    store: Store,
    appliers: Arc<Appliers>,
    link: Arc<Mutex<LinkState>>,
    metrics: Arc<Metrics>,
    interval: Duration,
    quota_bytes: i64,
}

impl Worker {
    /// Push then pull, forever, with exponential backoff and jitter while the cloud is
    /// away. The quota policy runs on its own schedule, online or not.
    async fn run(self, cancel: tokio_util::sync::CancellationToken) {
        let mut failures: u32 = 0;
        let mut last_quota_check: Option<std::time::Instant> = None;
        // One client (and connection pool) per trusted CA: rebuilding it every cycle would
        // cost a TLS handshake per push and pull.
        let mut client: Option<(Option<String>, reqwest::Client)> = None;
        // Set-aside pulled changes are tried again once per start, after the first good
        // cycle (every module has registered its applier by then).
        let mut retried_dead_letters = false;
        loop {
            if last_quota_check.is_none_or(|t| t.elapsed() >= QUOTA_CHECK_EVERY) {
                last_quota_check = Some(std::time::Instant::now());
                self.check_quota().await;
            }
            let enrolment = self.store.read(load_enrolment).await.ok().flatten();
            let wait = match enrolment {
                None => Duration::from_secs(5),
                Some(e) => {
                    if client.as_ref().is_none_or(|(ca, _)| *ca != e.ca_pem) {
                        client = cloud_client(e.ca_pem.as_deref())
                            .ok()
                            .map(|c| (e.ca_pem.clone(), c));
                    }
                    let result = match client.as_ref() {
                        Some((_, http)) => self.cycle(http, &e, &cancel).await,
                        None => Err("the enrolment's CA certificate does not load".to_string()),
                    };
                    if result.is_ok() && !retried_dead_letters {
                        retried_dead_letters = true;
                        self.retry_dead_letters().await;
                    }
                    let mut l = self.link.lock().unwrap_or_else(|p| p.into_inner());
                    match result {
                        Ok(()) => {
                            if !l.online {
                                tracing::info!(depot = %e.depot_id, "cloud link up");
                            }
                            failures = 0;
                            l.online = true;
                            l.last_success_ms = Some(crate::util::now_ms());
                            l.last_error = None;
                            self.interval
                        }
                        Err(err) => {
                            if l.online || failures == 0 {
                                tracing::warn!(error = %err, "cloud link down; retrying with backoff");
                            }
                            failures = failures.saturating_add(1);
                            l.online = false;
                            l.drain_rate = 0.0;
                            l.last_error = Some(err);
                            let base = Duration::from_millis(500)
                                .saturating_mul(1 << failures.min(7))
                                .min(Duration::from_secs(60));
                            base + Duration::from_millis(
                                rand::rng().random_range(0..=base.as_millis() as u64 / 2),
                            )
                        }
                    }
                }
            };
            self.update_backlog_gauges().await;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Drains the outbox (batch after batch), then pulls until caught up.
    async fn cycle(
        &self,
        http: &reqwest::Client,
        e: &Enrolment,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<(), String> {
        loop {
            let t0 = std::time::Instant::now();
            let p = push_once(&self.store, http, e).await.inspect_err(|_| {
                self.metrics
                    .sync_failures_total
                    .with_label_values(&["push"])
                    .inc();
            })?;
            let n = p.changes + p.stream_rows;
            self.metrics
                .sync_pushed_total
                .with_label_values(&["change"])
                .inc_by(p.changes);
            self.metrics
                .sync_pushed_total
                .with_label_values(&["stream_row"])
                .inc_by(p.stream_rows);
            if let Ok(mut l) = self.link.lock() {
                l.pushed_total += n;
                if n > 0 {
                    // Smoothed entries/s of the drain, for the ETA on the board.
                    let rate = n as f64 / t0.elapsed().as_secs_f64().max(1e-3);
                    l.drain_rate = if l.drain_rate == 0.0 {
                        rate
                    } else {
                        0.7 * l.drain_rate + 0.3 * rate
                    };
                    l.online = true;
                }
            }
            if !p.full || cancel.is_cancelled() {
                break;
            }
        }
        loop {
            let p = pull_once(&self.store, http, e, &self.appliers)
                .await
                .inspect_err(|_| {
                    self.metrics
                        .sync_failures_total
                        .with_label_values(&["pull"])
                        .inc();
                })?;
            self.metrics.sync_pulled_total.inc_by(p.applied);
            self.metrics
                .sync_unknown_record_changes_total
                .inc_by(p.unknown);
            self.metrics
                .sync_dead_letters_total
                .with_label_values(&["refused"])
                .inc_by(p.dead);
            self.metrics
                .sync_dead_letters_total
                .with_label_values(&["unknown_type"])
                .inc_by(p.unknown);
            if let Ok(mut l) = self.link.lock() {
                l.pulled_total += p.applied;
                l.unknown_record_changes += p.unknown;
                l.dead_letters += p.dead + p.unknown;
            }
            if p.entries < PULL_LIMIT as u64 || cancel.is_cancelled() {
                return Ok(());
            }
        }
    }

    async fn retry_dead_letters(&self) {
        let appliers = self.appliers.clone();
        let r = self
            .store
            .write(move |c| {
                let tx = c.transaction()?;
                let n = dead_letters::retry(&tx, &|t| appliers.get(t))?;
                tx.commit()?;
                Ok(n)
            })
            .await;
        match r {
            Ok(0) => {}
            Ok(n) => tracing::info!(applied = n, "set-aside pulled changes applied on retry"),
            Err(e) => tracing::warn!(error = %e, "retrying set-aside pulled changes failed"),
        }
    }

    async fn check_quota(&self) {
        let quota = self.quota_bytes;
        match self.store.write(move |c| enforce_quota(c, quota)).await {
            Ok(q) if q.thinned + q.dropped > 0 => {
                tracing::warn!(
                    thinned = q.thinned,
                    dropped = q.dropped,
                    quota_bytes = quota,
                    "sync outbox over quota: unsent stream rows removed (operational changes kept)"
                );
                let m = &self.metrics.sync_stream_rows_dropped_total;
                m.with_label_values(&["thinned"]).inc_by(q.thinned);
                m.with_label_values(&["dropped"]).inc_by(q.dropped);
                if let Ok(mut l) = self.link.lock() {
                    l.stream_rows_thinned += q.thinned;
                    l.stream_rows_dropped += q.dropped;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sync outbox quota check failed"),
        }
    }

    async fn update_backlog_gauges(&self) {
        if let Ok(b) = self.store.read(backlog_estimate).await {
            let g = &self.metrics.sync_backlog_entries;
            g.with_label_values(&["change"]).set(b.changes);
            g.with_label_values(&["stream_row"]).set(b.stream_rows);
        }
    }
}

pub struct SyncModule;

impl Module for SyncModule {
    fn name(&self) -> &'static str {
        "sync"
    }
    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }
    fn start(&self, ctx: &ModuleContext) -> Result<Started, ModuleError> {
        let appliers = Arc::new(Appliers::default());
        ctx.services.provide(appliers.clone());
        let link = Arc::new(Mutex::new(LinkState::default()));
        let worker = Worker {
            store: ctx.store.clone(),
            appliers,
            link: link.clone(),
            metrics: ctx.metrics.clone(),
            interval: Duration::from_millis(ctx.config.sync_interval_ms),
            quota_bytes: i64::try_from(ctx.config.sync_outbox_quota_mb.saturating_mul(1 << 20))
                .unwrap_or(i64::MAX),
        };
        ctx.tracker.spawn(worker.run(ctx.cancel.clone()));
        let routes = Router::new()
            .route("/api/v1/sync/status", get(status))
            .with_state(AppState {
                store: ctx.store.clone(),
                link,
            });
        Ok(Started {
            routes: Some(routes),
        })
    }
}

#[cfg(test)]
pub(crate) fn test_schema(c: &mut Connection) {
    crate::store::migrate::run(c, "sync", MIGRATIONS).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrolment_round_trip_and_secret_redacted() {
        let mut c = Connection::open_in_memory().unwrap();
        test_schema(&mut c);
        assert!(load_enrolment(&c).unwrap().is_none());
        let e = Enrolment {
            cloud_url: "https://cloud".into(),
            depot_id: "depot-1".into(),
            secret: "s3cr3t-value".into(),
            ca_pem: None,
        };
        save_enrolment(&c, &e).unwrap();
        let back = load_enrolment(&c).unwrap().unwrap();
        assert_eq!(
            (
                back.cloud_url.as_str(),
                back.depot_id.as_str(),
                back.secret.as_str()
            ),
            ("https://cloud", "depot-1", "s3cr3t-value")
        );
        assert!(!format!("{back:?}").contains("s3cr3t"));
    }

    #[test]
    fn quota_thins_then_drops_stream_rows_and_never_changes() {
        let mut c = Connection::open_in_memory().unwrap();
        test_schema(&mut c);
        let tx = c.transaction().unwrap();
        for i in 0..10 {
            append_change(&tx, "vehicle_status", &format!("bus-{i}"), &[7u8; 100]).unwrap();
        }
        for i in 0..1000 {
            append_stream_row(&tx, "telemetry.v1", i, &[1u8; 100]).unwrap();
        }
        tx.commit().unwrap();
        let before = backlog(&c).unwrap();
        assert_eq!((before.changes, before.stream_rows), (10, 1000));
        assert_eq!(before.bytes(), 10 * 100 + 1000 * 100);
        assert_eq!(
            backlog_estimate(&c).unwrap(),
            before,
            "exact while nothing was thinned"
        );

        // Under quota: nothing happens.
        assert_eq!(
            enforce_quota(&mut c, 1 << 30).unwrap(),
            QuotaOutcome::default()
        );
        // Over by a little: thinning the oldest half is enough.
        let q = enforce_quota(&mut c, 90_000).unwrap();
        assert_eq!((q.thinned, q.dropped), (250, 0));
        let after = backlog(&c).unwrap();
        assert_eq!((after.changes, after.stream_rows), (10, 750));
        let est = backlog_estimate(&c).unwrap();
        // Thinning removed seq 1 and the odd seqs up to 500: the span is 2..=1000.
        assert_eq!(
            est.stream_rows, 999,
            "after thinning: the seq span, an upper bound"
        );
        assert!(est.stream_rows >= after.stream_rows);
        // Far over: thin again, then drop the oldest until it fits.
        let q = enforce_quota(&mut c, 20_000).unwrap();
        assert!(q.dropped > 0, "{q:?}");
        let after = backlog(&c).unwrap();
        assert!(after.bytes() <= 20_000, "{after:?}");
        assert_eq!(after.changes, 10, "operational changes are never removed");
        // The newest rows survive.
        let newest: i64 = c
            .query_row("SELECT max(ts_ms) FROM sync_stream_outbox", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(newest, 999);
        // Only changes left and still over quota: they stay.
        c.execute("DELETE FROM sync_stream_outbox", []).unwrap();
        assert_eq!(enforce_quota(&mut c, 10).unwrap(), QuotaOutcome::default());
        assert_eq!(backlog(&c).unwrap().changes, 10);
    }

    #[test]
    fn stream_seq_is_never_reused() {
        let mut c = Connection::open_in_memory().unwrap();
        test_schema(&mut c);
        let tx = c.transaction().unwrap();
        append_stream_row(&tx, "telemetry.v1", 1, b"a").unwrap();
        append_stream_row(&tx, "telemetry.v1", 2, b"b").unwrap();
        tx.commit().unwrap();
        // Everything acknowledged and deleted: the next row still gets a new seq.
        c.execute("DELETE FROM sync_stream_outbox", []).unwrap();
        let tx = c.transaction().unwrap();
        append_stream_row(&tx, "telemetry.v1", 3, b"c").unwrap();
        tx.commit().unwrap();
        let seq: i64 = c
            .query_row("SELECT seq FROM sync_stream_outbox", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seq, 3);
    }
}
