//! What one request may send and how long it may take (the `serve` command's
//! `--max-json-body-bytes`, `--max-upload-bytes`, `--body-timeout-s`, ...), and how long
//! a new enrolment token lasts.

use std::time::Duration;

use garasi_sync_protocol::wire;

/// Largest enrolment body (`{"token": "..."}` is under 100 bytes).
pub const ENROL_BODY_BYTES: usize = 4 * 1024;
/// Largest push: a batch's wire bound (the edge sends at most 1,000 changes and 20,000
/// stream rows a batch, well under it).
pub const PUSH_BODY_BYTES: usize = wire::MAX_WIRE_BYTES;

/// Request limits of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest body of a JSON route.
    pub json_body_bytes: usize,
    /// Largest timetable upload (streamed to a temporary file, never held in memory).
    pub upload_bytes: u64,
    /// How long a body (JSON or push) may take to arrive.
    pub body_timeout: Duration,
    /// How long a timetable upload may take to arrive.
    pub upload_timeout: Duration,
    /// JSON bodies buffered at once, in bytes (each request holds its length, or the
    /// route's limit when it does not say, until it is answered).
    pub json_budget_bytes: usize,
    /// Push bodies buffered at once, in bytes (taken after the depot authenticated).
    pub push_budget_bytes: usize,
    /// How long a new enrolment token can be used.
    pub enrolment_ttl: Duration,
    /// Pushes stored at once (the others wait, their bodies within the push budget).
    pub concurrent_pushes: usize,
    /// Where uploads are kept while they are imported (the system's temporary
    /// directory when None).
    pub upload_dir: Option<std::path::PathBuf>,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            json_body_bytes: 64 * 1024,
            upload_bytes: 512 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(600),
            json_budget_bytes: 32 * 1024 * 1024,
            push_budget_bytes: 4 * PUSH_BODY_BYTES,
            enrolment_ttl: Duration::from_secs(7 * 24 * 3600),
            concurrent_pushes: default_concurrent_pushes(),
            upload_dir: None,
        }
    }
}

/// Twice the cores, at least 4: a store waits on the database's WAL flush and the
/// network for part of its time, so a few more than the cores keep them busy; more only
/// queue for the CPU, and a person's read queues behind each of them.
fn default_concurrent_pushes() -> usize {
    std::thread::available_parallelism().map_or(4, |n| (2 * n.get()).clamp(4, 64))
}

/// Permits (KiB, at least 1) a body of `bytes` takes from a byte budget.
pub(super) fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX)
}

/// A byte budget as a semaphore of KiB permits.
pub(super) fn budget(bytes: usize) -> tokio::sync::Semaphore {
    tokio::sync::Semaphore::new(kib(bytes as u64) as usize)
}
