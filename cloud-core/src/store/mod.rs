//! The cloud store: depots and their credentials, replicated record changes, and stream
//! rows. Everything a depot pushes is stored under that depot, so a depot can never
//! write another depot's records (isolation by construction); uploads are idempotent
//! (changes by content hash, stream rows by (depot, stream, seq), batches by
//! (depot, batch_seq)).

pub mod postgres;
pub mod sqlite;

use std::future::Future;

use blake2::{Blake2b512, Digest};
use rand::RngCore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("enrolment token is unknown or already used: ask the fleet admin for a new one")]
    BadToken,
    #[error("depot {0} does not exist")]
    NoSuchDepot(String),
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("store task failed: {0}")]
    Task(String),
}

/// A depot just created by an admin; the token is shown once.
#[derive(Debug, Clone)]
pub struct NewDepot {
    pub id: String,
    pub enrolment_token: String,
}

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

/// One storage backend. Both implementations must pass `tests/conformance.rs`.
pub trait CloudStore: Send + Sync {
    /// Creates or upgrades the schema.
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn create_depot(&self, name: &str)
        -> impl Future<Output = Result<NewDepot, StoreError>> + Send;
    /// Trades a one-time enrolment token for the depot's credentials.
    fn enroll(
        &self,
        token: &str,
    ) -> impl Future<Output = Result<DepotCredentials, StoreError>> + Send;
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
    /// Every stored change of one record, oldest first (to rebuild its document).
    fn record_changes(
        &self,
        depot: &str,
        record_type: &str,
        record_id: &str,
    ) -> impl Future<Output = Result<Vec<Vec<u8>>, StoreError>> + Send;
    /// Number of stored rows of one stream of one depot.
    fn stream_len(
        &self,
        depot: &str,
        stream: &str,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;
}

/// Tokens and secrets are 256-bit random values; only their hashes are stored. A fast
/// hash is right for random secrets (there is nothing to guess); it must be one-way.
pub(crate) fn hash_secret(secret: &str) -> String {
    let mut h = Blake2b512::new();
    h.update(b"garasi-cloud-secret-v1");
    h.update(secret.as_bytes());
    hex::encode(&h.finalize()[..32])
}

pub(crate) fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Content hash of a change: identical bytes are the same change.
pub(crate) fn change_key(change: &[u8]) -> Vec<u8> {
    let mut h = Blake2b512::new();
    h.update(change);
    h.finalize()[..32].to_vec()
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
