//! Why a sync cycle failed: the typed error of push, pull and the worker. Its messages
//! are what `/api/v1/sync/status` shows as `last_error` and the log says, unchanged from
//! when they were strings.

use garasi_sync_protocol::wire::WireError;

use crate::store::StoreCallError;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The local store failed (reading the outbox, writing the cursor).
    #[error(transparent)]
    Store(#[from] StoreCallError),
    /// A batch could not be encoded.
    #[error(transparent)]
    Encode(WireError),
    /// The cloud was not reached, or its answer was cut off (`op`: push or pull).
    #[error("{op}: {source}")]
    Http {
        op: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The cloud answered with an error status.
    #[error("{op} refused: {status} {body}")]
    Refused {
        op: &'static str,
        status: reqwest::StatusCode,
        body: String,
    },
    /// A pulled batch did not decode.
    #[error("pull: {0}")]
    Decode(WireError),
    #[error("pull: cursor out of range")]
    Cursor,
    #[error("the enrolment's CA certificate does not load")]
    CaCertificate,
}
