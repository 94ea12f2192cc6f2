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
/// Smallest encoding of one entry (variant tag and empty fields): a claimed entry count
/// larger than the body's remaining bytes / this is a lie, refused before decoding.
pub const MIN_ENTRY_BYTES: usize = 4;
/// Per-entry caps, checked on every decoded entry.
pub const MAX_NAME_BYTES: usize = 64;
pub const MAX_CHANGE_BYTES: usize = 1024 * 1024;
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
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
    #[error("batch claims {count} entries in {bytes} bytes: it is malformed")]
    ImpossibleCount { count: usize, bytes: usize },
    #[error("entry {index}: {what} is {len} bytes; the limit is {max}")]
    EntryTooLarge {
        index: usize,
        what: &'static str,
        len: usize,
        max: usize,
    },
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
        // Unreachable after the prefix check; kept for any future version's decoder.
        return Err(WireError::TooManyEntries {
            count: batch.entries.len(),
            max: MAX_ENTRIES,
        });
    }
    check_entries(&batch.entries)?;
    Ok(batch)
}

/// Checks the claimed entry count of a postcard body before anything is allocated for
/// the entries: `(depot, batch_seq, count)` is the body's prefix in every version so far.
fn check_claimed_count(body: &[u8]) -> Result<(), WireError> {
    let ((_, _, count), rest) = postcard::take_from_bytes::<(&str, u64, usize)>(body)
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    if count > MAX_ENTRIES {
        return Err(WireError::TooManyEntries {
            count,
            max: MAX_ENTRIES,
        });
    }
    if count.saturating_mul(MIN_ENTRY_BYTES) > rest.len() {
        return Err(WireError::ImpossibleCount {
            count,
            bytes: rest.len(),
        });
    }
    Ok(())
}

fn check_entries(entries: &[Entry]) -> Result<(), WireError> {
    let cap = |index, what, len, max| {
        if len > max {
            Err(WireError::EntryTooLarge {
                index,
                what,
                len,
                max,
            })
        } else {
            Ok(())
        }
    };
    for (i, e) in entries.iter().enumerate() {
        match e {
            Entry::Change {
                record_type,
                record_id,
                change,
            } => {
                cap(i, "record type", record_type.len(), MAX_NAME_BYTES)?;
                cap(
                    i,
                    "record id",
                    record_id.len(),
                    crate::records::MAX_RECORD_ID,
                )?;
                cap(i, "change", change.len(), MAX_CHANGE_BYTES)?;
            }
            Entry::Stream {
                stream, payload, ..
            } => {
                cap(i, "stream name", stream.len(), MAX_NAME_BYTES)?;
                cap(i, "payload", payload.len(), MAX_PAYLOAD_BYTES)?;
            }
        }
    }
    Ok(())
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
        super::check_claimed_count(&body)?;
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

    /// A body of `count` claimed entries followed by `filler` bytes, framed as v1.
    fn framed(count: usize, filler: &[u8]) -> Vec<u8> {
        let mut body = postcard::to_stdvec(&("depot-a", 1u64, count)).unwrap();
        body.extend_from_slice(filler);
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend(zstd::bulk::compress(&body, 3).unwrap());
        out
    }

    /// Regression (issue 9, defect 7): a 2 KB batch of empty entries made the decoder
    /// build millions of entries (1.2 GiB) before it looked at the count.
    #[test]
    fn claimed_counts_are_checked_before_anything_is_allocated() {
        // 16 Mi empty Change entries (tag 0, three empty fields): 64 MiB of body that
        // compresses to a few KB.
        let empty_change = [0u8; 4];
        let n = MAX_BODY_BYTES / 4 - 8;
        let bomb = framed(n, &empty_change.repeat(n));
        assert!(
            bomb.len() < 16 * 1024,
            "the attack batch is {} bytes",
            bomb.len()
        );
        assert_eq!(
            decode(&bomb),
            Err(WireError::TooManyEntries {
                count: n,
                max: MAX_ENTRIES
            })
        );
        // A count the body cannot hold.
        assert!(matches!(
            decode(&framed(1000, &[0u8; 40])),
            Err(WireError::ImpossibleCount { count: 1000, .. })
        ));
        // An honest small batch of empty entries still decodes.
        let ok = framed(10, &empty_change.repeat(10));
        assert_eq!(decode(&ok).unwrap().entries.len(), 10);
    }

    #[test]
    fn oversized_entries_are_refused() {
        let mut b = sample();
        b.entries.push(Entry::Change {
            record_type: "vehicle_status".into(),
            record_id: "x".repeat(crate::records::MAX_RECORD_ID + 1),
            change: vec![],
        });
        assert!(matches!(
            decode(&encode(&b).unwrap()),
            Err(WireError::EntryTooLarge {
                index: 2,
                what: "record id",
                ..
            })
        ));
    }
}
