//! Regression (issue 9, defect 7): a batch of a few KB claiming 16 million empty entries
//! made the wire decoder build every entry (about 1.2 GiB) before it compared the count
//! with `MAX_ENTRIES`. The count is now checked from the body's prefix first. Measured
//! as the peak RSS of a child process that decodes only the attack batch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use garasi_sync_protocol::wire::{self, MAGIC, MAX_BODY_BYTES};

/// The attack: v1 framing, a body of `count` claimed entries, each an empty Change
/// (variant 0 and three empty fields, 4 bytes), compressed by zstd to a few KB.
fn attack() -> Vec<u8> {
    let count = MAX_BODY_BYTES / 4 - 8;
    let mut body = postcard::to_stdvec(&("depot-a", 1u64, count)).unwrap();
    body.resize(body.len() + 4 * count, 0);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend(zstd::bulk::compress(&body, 3).unwrap());
    out
}

/// Runs in a child process (a fresh peak RSS): decodes the batch it is given.
#[test]
fn child_decode() {
    if let Some(batch) = common::child_input("GARASI_WIRE_BOMB") {
        common::child_report(|| wire::decode(&batch).is_err());
    }
}

#[test]
fn a_small_batch_claiming_millions_of_entries_costs_no_memory() {
    let batch = attack();
    assert!(batch.len() < 16 * 1024, "{} bytes", batch.len());
    let (refused, grown_mib) = common::in_child("child_decode", "GARASI_WIRE_BOMB", &batch);
    eprintln!(
        "a {} byte batch claiming {} entries: peak RSS grew by {grown_mib} MiB",
        batch.len(),
        MAX_BODY_BYTES / 4 - 8
    );
    // The body itself is decompressed (64 MiB, the body cap); the entries never are.
    assert!(grown_mib < 100, "decoding grew peak RSS by {grown_mib} MiB");
    assert!(refused, "the batch is refused");
}
