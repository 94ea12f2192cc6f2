//! Fuzz harness (issue 11, "Keep it attacked") for the sync wire decoder and stream
//! payloads: arbitrary bytes, arbitrary bytes behind a valid header, arbitrary postcard
//! bodies behind valid framing, and mutated valid encodings never panic and fail with a
//! typed `WireError`; valid batches round-trip, and whatever decodes re-encodes to the
//! same batch and respects the per-entry caps.
//!
//! Runs in `cargo test` with 256 cases per property (a few seconds); set PROPTEST_CASES
//! for long local runs, e.g. `PROPTEST_CASES=200000 cargo test -p garasi-sync-protocol
//! --test fuzz_wire --release`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use garasi_sync_protocol::streams::{validate, TelemetrySampleV1, TELEMETRY_V1};
use garasi_sync_protocol::wire::{
    decode, encode, Batch, Entry, WireError, CURRENT_VERSION, MAGIC, MAX_CHANGE_BYTES,
    MAX_NAME_BYTES, MAX_PAYLOAD_BYTES,
};
use proptest::prelude::*;

/// Cases per property: small for CI, PROPTEST_CASES for long runs.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Short strings that sometimes cross the name caps (64 bytes) and carry non-ASCII.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_.]{0,12}",
        "\\PC{0,70}",
        (60usize..70).prop_map(|n| "n".repeat(n)),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        (
            name(),
            name(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(record_type, record_id, change)| Entry::Change {
                record_type,
                record_id,
                change,
            }),
        (
            name(),
            any::<u64>(),
            any::<i64>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(stream, seq, ts_ms, payload)| Entry::Stream {
                stream,
                seq,
                ts_ms,
                payload,
            }),
    ]
}

fn batch() -> impl Strategy<Value = Batch> {
    (
        name(),
        any::<u64>(),
        proptest::collection::vec(entry(), 0..12),
    )
        .prop_map(|(depot, batch_seq, entries)| Batch {
            depot,
            batch_seq,
            entries,
        })
}

/// Whether every entry is within the caps `decode` enforces.
fn within_caps(b: &Batch) -> bool {
    b.entries.iter().all(|e| match e {
        Entry::Change {
            record_type,
            record_id,
            change,
        } => {
            record_type.len() <= MAX_NAME_BYTES
                && record_id.len() <= garasi_sync_protocol::records::MAX_RECORD_ID
                && change.len() <= MAX_CHANGE_BYTES
        }
        Entry::Stream {
            stream, payload, ..
        } => stream.len() <= MAX_NAME_BYTES && payload.len() <= MAX_PAYLOAD_BYTES,
    })
}

/// A v1 frame around `body` (claimed length `claimed`), compressed as the encoder does.
fn frame(body: &[u8], claimed: u32) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&CURRENT_VERSION.to_be_bytes());
    out.extend_from_slice(&claimed.to_be_bytes());
    out.extend(zstd::bulk::compress(body, 1).unwrap());
    out
}

/// One byte-level edit: (kind, position seed, value).
fn mutation() -> impl Strategy<Value = (u8, usize, u8)> {
    (0u8..5, any::<usize>(), any::<u8>())
}

fn mutate(bytes: &mut Vec<u8>, muts: &[(u8, usize, u8)]) {
    for &(kind, at, v) in muts {
        let len = bytes.len();
        match kind {
            0 if len > 0 => bytes[at % len] = v,
            1 if len > 0 => bytes[at % len] ^= 1 << (v % 8),
            2 => bytes.insert(at % (len + 1), v),
            3 if len > 0 => {
                bytes.remove(at % len);
            }
            4 => bytes.truncate(at % (len + 1)),
            _ => {}
        }
    }
}

/// What a decode must satisfy whatever the input: no panic (the caller got here), an
/// error with a short message, or a batch that re-encodes to itself within the caps.
fn check_outcome(r: Result<Batch, WireError>) {
    match r {
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty() && msg.len() < 1024, "error text: {msg:?}");
        }
        Ok(b) => {
            assert!(within_caps(&b), "decoded a batch past the caps");
            let again = decode(&encode(&b).unwrap()).unwrap();
            assert_eq!(again, b, "a decoded batch does not round-trip");
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_are_refused_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_outcome(decode(&bytes));
    }

    /// Past the magic and version checks, so the length and zstd paths are exercised.
    #[test]
    fn arbitrary_bytes_behind_a_valid_header(
        claimed in prop_oneof![0u32..4096, any::<u32>()],
        rest in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&CURRENT_VERSION.to_be_bytes());
        bytes.extend_from_slice(&claimed.to_be_bytes());
        bytes.extend(rest);
        check_outcome(decode(&bytes));
    }

    /// Arbitrary postcard bodies correctly compressed and framed: the postcard decoder and
    /// the claimed-count check see hostile input directly.
    #[test]
    fn arbitrary_bodies_behind_valid_framing(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        lie in prop_oneof![Just(0i64), -8i64..8],
    ) {
        let claimed = (body.len() as i64 + lie).max(0) as u32;
        check_outcome(decode(&frame(&body, claimed)));
    }

    #[test]
    fn valid_batches_round_trip(b in batch()) {
        let bytes = encode(&b).unwrap();
        match decode(&bytes) {
            Ok(got) => {
                prop_assert!(within_caps(&b));
                prop_assert_eq!(got, b);
            }
            Err(WireError::EntryTooLarge { .. }) => prop_assert!(!within_caps(&b)),
            Err(e) => prop_assert!(false, "a valid batch was refused: {e}"),
        }
    }

    /// Mutations of the whole frame (header, zstd stream) of a valid batch.
    #[test]
    fn mutated_frames_are_refused_cleanly(
        b in batch(),
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let mut bytes = encode(&b).unwrap();
        mutate(&mut bytes, &muts);
        check_outcome(decode(&bytes));
    }

    /// Mutations of a valid postcard body, re-compressed and framed with its true length,
    /// so the edits reach the postcard decoder (varints, tags, string lengths, UTF-8).
    #[test]
    fn mutated_bodies_are_refused_cleanly(
        b in batch(),
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let mut body = postcard::to_stdvec(&b).unwrap();
        mutate(&mut body, &muts);
        check_outcome(decode(&frame(&body, body.len() as u32)));
    }

    /// Stream payloads: arbitrary bytes and mutated valid samples never panic; a payload
    /// that validates decodes and re-encodes to the same bytes.
    #[test]
    fn telemetry_payloads(
        vehicle_id in "\\PC{0,20}",
        ts_ms in any::<i64>(),
        nums in proptest::collection::vec(proptest::option::of(any::<f64>()), 8),
        charging in proptest::option::of(any::<bool>()),
        extra in proptest::option::of("\\PC{0,40}"),
        muts in proptest::collection::vec(mutation(), 0..4),
        stream in prop_oneof![Just(TELEMETRY_V1.to_string()), name()],
    ) {
        let s = TelemetrySampleV1 {
            vehicle_id, ts_ms,
            lat: nums[0], lon: nums[1], heading: nums[2], speed_kmh: nums[3],
            soc_pct: nums[4], odometer_km: nums[5], battery_temp_c: nums[6], power_w: nums[7],
            charging, extra,
        };
        let good = s.encode();
        prop_assert_eq!(TelemetrySampleV1::decode(&good).unwrap().encode(), good.clone());
        let mut bytes = good;
        mutate(&mut bytes, &muts);
        let checked = validate(&stream, &bytes);
        if stream != TELEMETRY_V1 {
            prop_assert!(checked.is_err());
        }
        if let Ok(d) = TelemetrySampleV1::decode(&bytes) {
            // Not byte-equal (postcard ignores trailing bytes), but stable once re-encoded.
            let again = d.encode();
            prop_assert_eq!(TelemetrySampleV1::decode(&again).unwrap().encode(), again);
        }
    }
}
