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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use garasi_sync_protocol::wire::{self, Batch, Entry};
use rand::Rng;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{Module, ModuleContext, ModuleError, Started};
use crate::http::ApiError;
use crate::store::migrate::Migration;
use crate::store::Store;

const MIGRATIONS: &[Migration] = &[Migration {
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
}];

const PUSH_LIMIT: i64 = 1000;
const PULL_LIMIT: i64 = 1000;

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

/// Entries and bytes waiting for upload.
pub fn backlog(c: &Connection) -> rusqlite::Result<(i64, i64)> {
    c.query_row(
        "SELECT count(*), coalesce(sum(length(change)), 0) FROM sync_outbox",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
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
}

#[derive(Clone)]
struct AppState {
    store: Store,
    link: Arc<Mutex<LinkState>>,
}

async fn status(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let (entries, bytes, enrolled) = s
        .store
        .read(|c| {
            let (e, b) = backlog(c)?;
            Ok((e, b, load_enrolment(c)?.map(|e| e.depot_id)))
        })
        .await
        .map_err(ApiError::internal)?;
    let link = s.link.lock().map(|l| l.clone()).unwrap_or_default();
    let state = match (&enrolled, link.online) {
        (None, _) => "not_enrolled",
        (Some(_), true) => "online",
        (Some(_), false) => "offline",
    };
    Ok(Json(serde_json::json!({
        "link": state,
        "depot_id": enrolled,
        "last_success": link.last_success_ms.map(crate::util::rfc3339),
        "last_error": link.last_error,
        "backlog": { "entries": entries, "bytes": bytes },
        "pushed_total": link.pushed_total,
        "pulled_total": link.pulled_total,
    })))
}

/// One push of up to `PUSH_LIMIT` outbox entries. Returns how many were acknowledged.
async fn push_once(store: &Store, http: &reqwest::Client, e: &Enrolment) -> Result<u64, String> {
    let rows: Vec<(i64, String, String, Vec<u8>)> = store
        .read(|c| {
            let mut st = c.prepare(
                "SELECT seq, record_type, record_id, change FROM sync_outbox ORDER BY seq LIMIT ?1",
            )?;
            let rows = st.query_map([PUSH_LIMIT], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect()
        })
        .await
        .map_err(|e| e.to_string())?;
    let Some(last) = rows.last().map(|r| r.0) else {
        return Ok(0);
    };
    let n = rows.len() as u64;
    let batch = Batch {
        depot: e.depot_id.clone(),
        // The last outbox seq identifies the batch: a re-send after a crash is the same
        // batch, which the cloud recognises as a replay.
        batch_seq: last as u64,
        entries: rows
            .into_iter()
            .map(|(_, record_type, record_id, change)| Entry::Change {
                record_type,
                record_id,
                change,
            })
            .collect(),
    };
    let body = wire::encode(&batch).map_err(|e| e.to_string())?;
    let r = http
        .post(format!("{}/api/v1/sync/push", e.cloud_url))
        .header("x-garasi-depot", &e.depot_id)
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
    // Acknowledged: now, and only now, drop what was sent.
    store
        .write(move |c| c.execute("DELETE FROM sync_outbox WHERE seq <= ?1", params![last]))
        .await
        .map_err(|e| e.to_string())?;
    Ok(n)
}

/// One pull: changes after the durable cursor, applied and the cursor advanced in one
/// transaction. Returns how many changes were applied.
async fn pull_once(
    store: &Store,
    http: &reqwest::Client,
    e: &Enrolment,
    appliers: &Appliers,
    unknown: &mut u64,
) -> Result<u64, String> {
    let cursor: i64 = store
        .read(|c| {
            Ok(state_get(c, "pull_cursor")?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0))
        })
        .await
        .map_err(|e| e.to_string())?;
    let r = http
        .get(format!(
            "{}/api/v1/sync/pull?cursor={cursor}&limit={PULL_LIMIT}",
            e.cloud_url
        ))
        .header("x-garasi-depot", &e.depot_id)
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
        return Ok(0);
    }
    let next =
        i64::try_from(batch.batch_seq).map_err(|_| "pull: cursor out of range".to_string())?;
    // Changes grouped per record, in pull order.
    type RecordKey = (String, String);
    let mut by_record: Vec<(RecordKey, Vec<Vec<u8>>)> = Vec::new();
    for entry in batch.entries {
        if let Entry::Change {
            record_type,
            record_id,
            change,
        } = entry
        {
            match by_record
                .iter_mut()
                .find(|(k, _)| k.0 == record_type && k.1 == record_id)
            {
                Some((_, v)) => v.push(change),
                None => by_record.push(((record_type, record_id), vec![change])),
            }
        }
    }
    let mut plan = Vec::new();
    for ((record_type, record_id), changes) in by_record {
        match appliers.get(&record_type) {
            Some(f) => plan.push((f, record_id, changes)),
            None => {
                // Still in the cloud; a newer edge can re-pull it.
                *unknown += changes.len() as u64;
                tracing::warn!(
                    record_type,
                    "pulled changes of a record type this build does not know; skipped"
                );
            }
        }
    }
    let applied = plan.iter().map(|p| p.2.len() as u64).sum();
    store
        .write(move |c| {
            let tx = c.transaction()?;
            for (f, id, changes) in &plan {
                f(&tx, id, changes)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
            }
            state_set(&tx, "pull_cursor", &next.to_string())?;
            tx.commit()
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(applied)
}

/// Push then pull, forever, with exponential backoff and jitter while the cloud is away.
async fn worker(
    store: Store,
    appliers: Arc<Appliers>,
    link: Arc<Mutex<LinkState>>,
    cancel: tokio_util::sync::CancellationToken,
    interval: Duration,
) {
    let mut failures: u32 = 0;
    let mut unknown = 0u64;
    // One client (and connection pool) per trusted CA: rebuilding it every cycle would
    // cost a TLS handshake per push and pull.
    let mut client: Option<(Option<String>, reqwest::Client)> = None;
    loop {
        let enrolment = store.read(load_enrolment).await.ok().flatten();
        let wait = match enrolment {
            None => Duration::from_secs(5),
            Some(e) => {
                if client.as_ref().is_none_or(|(ca, _)| *ca != e.ca_pem) {
                    client = cloud_client(e.ca_pem.as_deref())
                        .ok()
                        .map(|c| (e.ca_pem.clone(), c));
                }
                let http = client.as_ref().map(|(_, c)| c.clone());
                let result = async {
                    let http = match http {
                        Some(h) => h,
                        None => cloud_client(e.ca_pem.as_deref())?,
                    };
                    let mut pushed = 0;
                    loop {
                        let n = push_once(&store, &http, &e).await?;
                        pushed += n;
                        if n < PUSH_LIMIT as u64 {
                            break;
                        }
                    }
                    let mut pulled = 0;
                    loop {
                        let n = pull_once(&store, &http, &e, &appliers, &mut unknown).await?;
                        pulled += n;
                        if n < PULL_LIMIT as u64 {
                            break;
                        }
                    }
                    Ok::<_, String>((pushed, pulled))
                }
                .await;
                let mut l = link.lock().unwrap_or_else(|p| p.into_inner());
                match result {
                    Ok((pushed, pulled)) => {
                        if !l.online {
                            tracing::info!(depot = %e.depot_id, "cloud link up");
                        }
                        failures = 0;
                        l.online = true;
                        l.last_success_ms = Some(crate::util::now_ms());
                        l.last_error = None;
                        l.pushed_total += pushed;
                        l.pulled_total += pulled;
                        interval
                    }
                    Err(err) => {
                        if l.online || failures == 0 {
                            tracing::warn!(error = %err, "cloud link down; retrying with backoff");
                        }
                        failures = failures.saturating_add(1);
                        l.online = false;
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
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
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
        ctx.tracker.spawn(worker(
            ctx.store.clone(),
            appliers,
            link.clone(),
            ctx.cancel.clone(),
            Duration::from_millis(ctx.config.sync_interval_ms),
        ));
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
}
