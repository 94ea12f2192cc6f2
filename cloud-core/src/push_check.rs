//! What the cloud checks in a pushed batch before it stores anything: the wire format
//! and its bounds, that the batch is the authenticated depot's, and that every change is
//! one a depot may write (an operational record type, a valid id, a change its own
//! depot-tagged actor made holding only scalar fields) and every stream row decodes.
//! Runs in the blocking pool under the push semaphore (see `api::sync`).

use axum::http::StatusCode;
use garasi_sync_protocol::actor::Side;
use garasi_sync_protocol::wire::{self, Entry, WireError};
use garasi_sync_protocol::{records, rules, streams};

use crate::store::{ChangeIn, StreamRowIn};

/// A batch that may be stored.
pub struct Checked {
    pub batch_seq: i64,
    pub changes: Vec<ChangeIn>,
    pub rows: Vec<StreamRowIn>,
}

/// Why a batch was refused; `reason` labels the refusal metric (None: not counted, e.g.
/// a batch for another depot, which is an authorisation matter).
pub struct Refused {
    pub status: StatusCode,
    pub reason: Option<&'static str>,
    pub message: String,
}

fn refused(reason: &'static str, message: String) -> Refused {
    Refused {
        status: StatusCode::BAD_REQUEST,
        reason: Some(reason),
        message: format!("sync batch rejected: {message}"),
    }
}

/// Most bytes the changes of one batch may inflate to: compressed changes cost CPU to
/// inflate (twice: here and when stored changes are folded), so a batch gets a budget.
pub const MAX_BATCH_INFLATED_BYTES: usize = 64 * 1024 * 1024;

/// The status a batch that does not decode (or encode) is answered with: too big is 413,
/// anything else malformed is 400.
pub fn wire_status(e: &WireError) -> StatusCode {
    match e {
        WireError::TooLarge { .. }
        | WireError::BodyTooLarge { .. }
        | WireError::TooManyEntries { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// What the client reads about a batch that does not decode (or encode).
pub fn wire_message(e: &WireError) -> String {
    format!("sync batch rejected: {e}")
}

pub fn check(body: &[u8], depot: &str) -> Result<Checked, Refused> {
    let batch = wire::decode(body).map_err(|e| Refused {
        status: wire_status(&e),
        reason: Some("wire"),
        message: wire_message(&e),
    })?;
    if batch.depot != depot {
        return Err(Refused {
            status: StatusCode::FORBIDDEN,
            reason: None,
            message: format!(
                "batch is for depot {:?}; you are authenticated as {depot}",
                batch.depot
            ),
        });
    }
    let batch_seq = i64::try_from(batch.batch_seq)
        .map_err(|_| refused("wire", "batch sequence out of range".into()))?;
    let (mut changes, mut rows) = (Vec::new(), Vec::new());
    let mut inflated = 0usize;
    for (i, e) in batch.entries.into_iter().enumerate() {
        match e {
            Entry::Change {
                record_type,
                record_id,
                change,
            } => {
                inflated += check_change(i, &record_type, &record_id, &change)?;
                if inflated > MAX_BATCH_INFLATED_BYTES {
                    return Err(refused(
                        "change",
                        format!("the batch's changes inflate to more than {MAX_BATCH_INFLATED_BYTES} bytes: send smaller batches"),
                    ));
                }
                changes.push(ChangeIn {
                    record_type,
                    record_id,
                    change,
                });
            }
            Entry::Stream {
                stream,
                seq,
                ts_ms,
                payload,
            } => {
                let seq = i64::try_from(seq)
                    .map_err(|_| refused("stream_row", "stream sequence out of range".into()))?;
                streams::validate(&stream, &payload)
                    .map_err(|e| refused("stream_row", format!("stream row {seq}: {e}")))?;
                rows.push(StreamRowIn {
                    stream,
                    seq,
                    ts_ms,
                    payload,
                });
            }
        }
    }
    Ok(Checked {
        batch_seq,
        changes,
        rows,
    })
}

/// Returns the change's inflated size.
fn check_change(
    i: usize,
    record_type: &str,
    record_id: &str,
    change: &[u8],
) -> Result<usize, Refused> {
    if !records::is_operational(record_type) {
        return Err(refused(
            "record_type",
            format!(
                "change {i}: record type {:?} is not one a depot may write (operational types: {:?})",
                record_type.escape_debug().to_string(),
                records::OPERATIONAL
            ),
        ));
    }
    if !records::valid_record_id(record_id) {
        return Err(refused(
            "record_id",
            format!(
                "change {i}: record id {:?} is not 1-{} letters, digits, '-', '_' or '.'",
                record_id.chars().take(80).collect::<String>(),
                records::MAX_RECORD_ID
            ),
        ));
    }
    rules::check_authored(change, Side::Depot)
        .map(|c| c.inflated)
        .map_err(|e| {
            refused(
                "change",
                format!("change {i}: {record_type} {record_id}: {e}"),
            )
        })
}
