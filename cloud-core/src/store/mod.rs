//! The cloud store: depots and their credentials, replicated record changes, and stream
//! rows. Everything a depot pushes is stored under that depot, so a depot can never
//! write another depot's records (isolation by construction); uploads are idempotent
//! (changes by (depot, record type, record id, content hash): see
//! `garasi_sync_protocol::records::change_key`; stream rows by (depot, stream, seq),
//! batches by (depot, batch_seq)). Records the materialiser cannot fold are quarantined,
//! never allowed to stop it.
//!
//! [`CloudStore`] is the write side (and the reads sync, the materialiser and publishing
//! need); the read-only queries views need are its supertrait [`ReadModel`] (`read.rs`).
//! Each backend is a folder: the trait impl (`mod.rs`), its reads (`read.rs`) and its
//! schema (`schema.rs`).

pub mod postgres;
mod read;
pub mod sqlite;

use std::future::Future;

use blake2::{Blake2b512, Digest};
use rand::RngCore;

pub use read::ReadModel;

/// `connection`, awaited; logs the wait if it was long (all connections busy, or a new
/// one being opened): the slow-answer log then tells that wait from a slow query
/// (`api/slow.rs`). At most one line a second, saying how many such waits it left out:
/// depots' sign-ins read too, and a flood of them must not become a flood of log lines.
async fn waiting<T>(what: &str, connection: impl Future<Output = T>) -> T {
    let asked = std::time::Instant::now();
    let c = connection.await;
    note_wait(what, asked.elapsed());
    c
}

fn note_wait(what: &str, waited: std::time::Duration) {
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
    // Milliseconds on a monotonic clock (a wall clock stepped back would silence it).
    static SINCE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    static LAST_MS: AtomicI64 = AtomicI64::new(i64::MIN);
    static LEFT_OUT: AtomicU64 = AtomicU64::new(0);
    if waited < std::time::Duration::from_millis(10) {
        return;
    }
    let since = SINCE.get_or_init(std::time::Instant::now);
    let now = i64::try_from(since.elapsed().as_millis()).unwrap_or(i64::MAX);
    let last = LAST_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) < 1_000
        || LAST_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        LEFT_OUT.fetch_add(1, Ordering::Relaxed);
        return;
    }
    tracing::warn!(
        waited_ms = (waited.as_secs_f64() * 10_000.0).round() / 10.0,
        left_out = LEFT_OUT.swap(0, Ordering::Relaxed),
        "slow read: waited for a {what}"
    );
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("enrolment token is unknown or already used: ask the fleet admin for a new one")]
    BadToken,
    #[error("enrolment token has expired: ask the fleet admin for a new one")]
    TokenExpired,
    #[error("depot {0} does not exist")]
    NoSuchDepot(String),
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL connection pool: {0}")]
    Pool(String),
    #[error("store task failed: {0}")]
    Task(String),
}

/// A depot just created by an admin; the token is shown once.
#[derive(Debug, Clone)]
pub struct NewDepot {
    pub id: String,
    pub enrolment_token: String,
    /// When the token stops working (ms since the epoch).
    pub expires_ms: i64,
}

/// How long an enrolment token works unless the caller says otherwise (tokens issued
/// before expiry existed count from their depot's creation).
pub const DEFAULT_ENROLMENT_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// What an enrolled edge keeps (in its encrypted store) to authenticate every request.
#[derive(Debug, Clone)]
pub struct DepotCredentials {
    pub depot_id: String,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChangeIn {
    pub record_type: String,
    pub record_id: String,
    pub change: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamRowIn {
    pub stream: String,
    pub seq: i64,
    pub ts_ms: i64,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChangeOut {
    pub cursor: i64,
    pub record_type: String,
    pub record_id: String,
    pub change: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// The (depot, batch_seq) had been stored before: nothing in it was new.
    pub replayed: bool,
    pub new_changes: u64,
    pub new_rows: u64,
}

/// What an edge reports about itself with every sync request (`x-garasi-backlog`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SyncReport {
    pub backlog_entries: i64,
    pub backlog_bytes: i64,
    /// When the depot's oldest unsent operational change was written (lag anchor).
    pub oldest_change_ms: Option<i64>,
}

/// A depot as the ops view shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DepotInfo {
    pub id: String,
    pub name: String,
    pub enrolled: bool,
    pub last_sync_ms: Option<i64>,
    pub backlog_entries: Option<i64>,
    pub backlog_bytes: Option<i64>,
    pub oldest_change_ms: Option<i64>,
    /// Records of this depot the materialiser could not fold (see [`Quarantined`]).
    pub quarantined: i64,
}

/// A record the materialiser could not fold at one change: it keeps its last folded
/// state, the cursor moves on, and the reason is kept here for the ops view.
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantined {
    pub key: RecordKey,
    /// The cursor of the (first) change that could not be folded.
    pub cursor: i64,
    pub reason: String,
    pub at_ms: i64,
}

/// Where one depot's change sequence stands. Change cursors are per depot: a depot's
/// changes are numbered in the order their transactions commit (each push or cloud edit
/// holds the depot's sequence until it commits), so whoever has read a depot up to `n`
/// can never see a change below `n` appear later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangePosition {
    pub depot: String,
    /// The materialiser has folded this depot's changes up to here (0 = none).
    pub materialised: i64,
    /// The depot's newest stored change (its cursor).
    pub last: i64,
}

/// One depot's records of one type, read at one moment: what the materialiser has
/// folded, and the changes it has not folded yet, so a reader can show every stored
/// change without waiting for it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListSnapshot {
    /// The depot's materialised and newest cursor (0 and 0 if it never stored a change).
    pub materialised: i64,
    pub last: i64,
    /// Materialised records by id: visible fields (JSON text), and the stored
    /// document of those with pending changes.
    pub records: Vec<(String, String, Option<Vec<u8>>)>,
    /// Changes of the type after `materialised`, in cursor order: (record id, change).
    pub pending: Vec<(String, Vec<u8>)>,
    /// The cursor of each of `pending`, in the same order.
    pub pending_cursors: Vec<i64>,
}

/// Decodes the rows of a backend's `LIST_SNAPSHOT` statement: (kind, id, fields,
/// bytes, a, b) with kind 0 the position (a materialised, b last), 1 a record (bytes
/// its document or none), 2 a pending change (bytes the change, a its cursor).
pub(crate) type SnapshotRow = (
    i64,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    Option<i64>,
    Option<i64>,
);

pub(crate) fn snapshot_of(rows: Vec<SnapshotRow>) -> ListSnapshot {
    let mut out = ListSnapshot::default();
    let mut pending = Vec::new();
    for (kind, id, fields, bytes, a, b) in rows {
        match (kind, id) {
            (0, _) => (out.materialised, out.last) = (a.unwrap_or(0), b.unwrap_or(0)),
            (1, Some(id)) => out.records.push((id, fields.unwrap_or_default(), bytes)),
            (2, Some(id)) => pending.push((a.unwrap_or(0), id, bytes.unwrap_or_default())),
            _ => {}
        }
    }
    // Byte order of ids on both stores (PostgreSQL's collation may differ).
    out.records.sort_by(|x, y| x.0.cmp(&y.0));
    pending.sort_by_key(|p| p.0);
    out.pending_cursors = pending.iter().map(|p| p.0).collect();
    out.pending = pending.into_iter().map(|(_, id, c)| (id, c)).collect();
    out
}

/// Identifies one replicated record at the cloud.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    pub depot: String,
    pub record_type: String,
    pub record_id: String,
}

impl RecordKey {
    /// One text key (for `= ANY($1)` look-ups); the separator cannot occur in ids that
    /// passed the API's checks, and the parts are stored separately too.
    pub fn joined(&self) -> String {
        format!(
            "{}\u{1f}{}\u{1f}{}",
            self.depot, self.record_type, self.record_id
        )
    }
}

/// A record's merged document and visible fields (JSON object text), as materialised.
#[derive(Debug, Clone, PartialEq)]
pub struct MaterialRecord {
    pub key: RecordKey,
    pub doc: Vec<u8>,
    pub fields_json: String,
    pub updated_ms: i64,
}

/// An imported timetable (GTFS zip as uploaded, and what the import said about it).
#[derive(Debug, Clone, PartialEq)]
pub struct TimetableInfo {
    pub id: i64,
    pub name: String,
    pub created_ms: i64,
    pub bytes: i64,
    /// The import report (JSON object text).
    pub report_json: String,
}

/// One storage backend: the write side, and the reads that sync, the materialiser and
/// publishing need; the reads pages need are its [`ReadModel`]. Both implementations
/// must pass `tests/conformance.rs`.
pub trait CloudStore: ReadModel {
    /// Creates or upgrades the schema.
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Creates a depot with an enrolment token that works for [`DEFAULT_ENROLMENT_TTL_MS`].
    fn create_depot(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<NewDepot, StoreError>> + Send {
        self.create_depot_until(name, now_ms() + DEFAULT_ENROLMENT_TTL_MS)
    }
    /// Creates a depot with an enrolment token that works until `expires_ms`.
    fn create_depot_until(
        &self,
        name: &str,
        expires_ms: i64,
    ) -> impl Future<Output = Result<NewDepot, StoreError>> + Send;
    /// Trades a one-time enrolment token (before it expires) for the depot's
    /// credentials; a depot that had a secret gets a new one and the old one stops
    /// working (rotation).
    fn enroll(
        &self,
        token: &str,
    ) -> impl Future<Output = Result<DepotCredentials, StoreError>> + Send;
    /// A new one-time enrolment token for an existing depot, working until `expires_ms`;
    /// it replaces any unused one. The depot's secret keeps working until the token is
    /// used.
    fn issue_enrolment_token(
        &self,
        depot: &str,
        expires_ms: i64,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;
    /// Revokes the depot's secret and any unused enrolment token at once (a lost or
    /// stolen depot box): it cannot sync until it enrols with a new token.
    fn revoke_depot(&self, depot: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Whether `secret` is the depot's current secret.
    fn authenticate(
        &self,
        depot_id: &str,
        secret: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Stores one uploaded batch atomically and idempotently, under `depot`.
    fn push(
        &self,
        depot: &str,
        batch_seq: i64,
        changes: &[ChangeIn],
        rows: &[StreamRowIn],
    ) -> impl Future<Output = Result<PushOutcome, StoreError>> + Send;
    /// Changes of `depot`'s records after `cursor` (0 = from the start), oldest first.
    fn pull(
        &self,
        depot: &str,
        cursor: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ChangeOut>, StoreError>> + Send;
    /// Stores changes the cloud itself made to one of `depot`'s records (idempotent by
    /// content); they reach the depot through `pull`. Returns how many were new.
    fn add_changes(
        &self,
        depot: &str,
        changes: &[ChangeIn],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Records that `depot` just synced, with what it reported (ops view).
    fn record_sync(
        &self,
        depot: &str,
        report: Option<SyncReport>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// `depot`'s changes with `after < cursor <= upto`, in cursor order, at most `limit`
    /// (the materialiser's input; `upto` is a `last` it read, so the page is exact).
    fn changes_after(
        &self,
        depot: &str,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ChangeOut>, StoreError>> + Send;
    /// The materialised documents of these records (None where there is none yet), in
    /// the order asked.
    fn load_records(
        &self,
        keys: &[RecordKey],
    ) -> impl Future<Output = Result<Vec<Option<Vec<u8>>>, StoreError>> + Send;
    /// Saves materialised records, the records quarantined on the way, and the per-depot
    /// cursors they are up to date with (`(depot, cursor)`), atomically.
    fn save_records(
        &self,
        records: &[MaterialRecord],
        quarantined: &[Quarantined],
        positions: &[(String, i64)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// One record's changes stored after `cursor`, in cursor order: with the record's
    /// materialised document, its state up to every stored change (what a cloud edit
    /// must build on, however far behind the materialiser is).
    fn record_changes_after(
        &self,
        key: &RecordKey,
        cursor: i64,
    ) -> impl Future<Output = Result<Vec<Vec<u8>>, StoreError>> + Send;
    /// A depot's records of one type as a list shows them, read in one statement (one
    /// snapshot, one round trip: under load every round trip waits for a core): see
    /// [`ListSnapshot`]. At most `limit` pending changes.
    fn list_snapshot(
        &self,
        depot: &str,
        record_type: &str,
        limit: i64,
    ) -> impl Future<Output = Result<ListSnapshot, StoreError>> + Send;
    /// Stores an imported timetable (the zip as uploaded) and returns its id.
    fn save_timetable(
        &self,
        name: &str,
        zip: &[u8],
        report_json: &str,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// One timetable's zip.
    fn timetable_zip(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
    /// Sets what a depot operates (plan JSON object text; replaces the previous one).
    fn set_depot_plan(
        &self,
        depot: &str,
        plan_json: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every depot's plan: (depot, plan JSON), by depot.
    fn depot_plans(&self)
        -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
}

/// Tokens and secrets are 256-bit random values; only their hashes are stored. A fast
/// hash is right for random secrets (there is nothing to guess); it must be one-way.
pub(crate) fn hash_secret(secret: &str) -> String {
    let mut h = Blake2b512::new();
    h.update(b"garasi-cloud-secret-v1");
    h.update(secret.as_bytes());
    hex::encode(&h.finalize()[..32])
}

/// argon2id hash (PHC string) of a device password, with the edge's device parameters
/// (4 MiB, 3 passes: the passwords are 256-bit random values, so cost buys nothing).
pub(crate) fn hash_device_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(4096, 3, 1, None).map_err(|e| e.to_string())?;
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub(crate) fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// What identifies a stored change under its depot: record and content (identical
/// bytes of two records are two changes).
pub(crate) fn change_key(c: &ChangeIn) -> Vec<u8> {
    garasi_sync_protocol::records::change_key(&c.record_type, &c.record_id, &c.change).to_vec()
}

pub(crate) fn new_depot_id() -> String {
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    format!("depot-{}", hex::encode(b))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
