//! Sync batches on the wire: `GRSB` magic, a format version, the uncompressed body length,
//! then a zstd-compressed postcard body. Decoding checks every bound before allocating,
//! so a malformed, truncated, oversized or unknown-version batch is a clear error.
//!
//! Every version that ever shipped keeps a decoder here (`decode` dispatches on the
//! version and converts to the current types); encoders write only the current version.

use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 4] = b"GRSB";
pub const CURRENT_VERSION: u16 = 1;
/// Versions this build can read.
pub const SUPPORTED_VERSIONS: &[u16] = &[1];
/// Largest batch accepted on the wire (compressed).
pub const MAX_WIRE_BYTES: usize = 16 * 1024 * 1024;
/// Largest body after decompression (zip-bomb guard).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
pub const MAX_ENTRIES: usize = 200_000;
const HEADER: usize = 4 + 2 + 4;

/// One upload or download unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The depot the batch is from (uploads) or for (downloads).
    pub depot: String,
    /// The sender's sequence number of this batch; with `depot`, makes replays detectable.
    pub batch_seq: u64,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    /// An automerge change to a replicated record (operational or master data).
    Change {
        record_type: String,
        record_id: String,
        change: Vec<u8>,
    },
    /// One append-only stream row, identified by (depot, stream, seq).
    Stream {
        stream: String,
        seq: u64,
        ts_ms: i64,
        payload: Vec<u8>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("batch is {len} bytes; the limit is {max}: split it into smaller batches")]
    TooLarge { len: usize, max: usize },
    #[error("not a Garasi sync batch (bad magic)")]
    BadMagic,
    #[error("batch is truncated ({len} bytes)")]
    Truncated { len: usize },
    #[error("batch format version {found} is not supported (this build reads {supported:?}): upgrade this side")]
    UnsupportedVersion {
        found: u16,
        supported: &'static [u16],
    },
    #[error("batch body claims {len} bytes uncompressed; the limit is {max}")]
    BodyTooLarge { len: usize, max: usize },
    #[error("batch body does not decompress: {0}")]
    Decompress(String),
    #[error("batch body is malformed: {0}")]
    Malformed(String),
    #[error("batch has {count} entries; the limit is {max}")]
    TooManyEntries { count: usize, max: usize },
}

/// Encodes in the current version.
pub fn encode(batch: &Batch) -> Result<Vec<u8>, WireError> {
    if batch.entries.len() > MAX_ENTRIES {
        return Err(WireError::TooManyEntries {
            count: batch.entries.len(),
            max: MAX_ENTRIES,
        });
    }
    let body = postcard::to_stdvec(batch).map_err(|e| WireError::Malformed(e.to_string()))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(WireError::BodyTooLarge {
            len: body.len(),
            max: MAX_BODY_BYTES,
        });
    }
    let packed =
        zstd::bulk::compress(&body, 3).map_err(|e| WireError::Decompress(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER + packed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&CURRENT_VERSION.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&packed);
    if out.len() > MAX_WIRE_BYTES {
        return Err(WireError::TooLarge {
            len: out.len(),
            max: MAX_WIRE_BYTES,
        });
    }
    Ok(out)
}

/// Decodes any supported version into the current types.
pub fn decode(bytes: &[u8]) -> Result<Batch, WireError> {
    if bytes.len() > MAX_WIRE_BYTES {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max: MAX_WIRE_BYTES,
        });
    }
    if bytes.len() >= 4 && &bytes[..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if bytes.len() < HEADER {
        return Err(WireError::Truncated { len: bytes.len() });
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    let body_len = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]) as usize;
    if body_len > MAX_BODY_BYTES {
        return Err(WireError::BodyTooLarge {
            len: body_len,
            max: MAX_BODY_BYTES,
        });
    }
    let batch = match version {
        1 => v1::decode_body(&bytes[HEADER..], body_len)?,
        found => {
            return Err(WireError::UnsupportedVersion {
                found,
                supported: SUPPORTED_VERSIONS,
            })
        }
    };
    if batch.entries.len() > MAX_ENTRIES {
        return Err(WireError::TooManyEntries {
            count: batch.entries.len(),
            max: MAX_ENTRIES,
        });
    }
    Ok(batch)
}

/// Version 1 (the first shipped format). Keep this decoder forever.
mod v1 {
    use super::{Batch, WireError};

    pub(super) fn decode_body(packed: &[u8], body_len: usize) -> Result<Batch, WireError> {
        let body = zstd::bulk::decompress(packed, body_len)
            .map_err(|e| WireError::Decompress(e.to_string()))?;
        if body.len() != body_len {
            return Err(WireError::Truncated { len: body.len() });
        }
        postcard::from_bytes(&body).map_err(|e| WireError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Batch {
        Batch {
            depot: "depot-a".into(),
            batch_seq: 7,
            entries: vec![
                Entry::Change {
                    record_type: "vehicle_status".into(),
                    record_id: "bus-1".into(),
                    change: vec![1, 2, 3],
                },
                Entry::Stream {
                    stream: "telemetry".into(),
                    seq: 42,
                    ts_ms: 1_700_000_000_000,
                    payload: b"{\"speed\":3}".to_vec(),
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let b = sample();
        assert_eq!(decode(&encode(&b).unwrap()).unwrap(), b);
    }

    #[test]
    fn bad_input_gets_a_named_error() {
        let good = encode(&sample()).unwrap();
        assert_eq!(decode(b"HTTP/1.1 200 OK"), Err(WireError::BadMagic));
        assert!(matches!(
            decode(&good[..7]),
            Err(WireError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&good[..good.len() - 3]),
            Err(WireError::Decompress(_) | WireError::Truncated { .. })
        ));
        let mut v9 = good.clone();
        v9[4..6].copy_from_slice(&9u16.to_be_bytes());
        assert!(matches!(
            decode(&v9),
            Err(WireError::UnsupportedVersion { found: 9, .. })
        ));
        let mut bomb = good.clone();
        bomb[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(&bomb), Err(WireError::BodyTooLarge { .. })));
        let mut garbage_body = good[..HEADER].to_vec();
        garbage_body.extend(zstd::bulk::compress(&[0xff; 40], 1).unwrap());
        garbage_body[6..10].copy_from_slice(&40u32.to_be_bytes());
        assert!(matches!(
            decode(&garbage_body),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            decode(&vec![b'G'; MAX_WIRE_BYTES + 1]),
            Err(WireError::TooLarge { .. })
        ));
    }
}
