//! Regression (issue 9, defect 7): a batch of a few KB claiming 16 million empty entries
//! made the wire decoder build every entry (about 1.2 GiB) before it compared the count
//! with `MAX_ENTRIES`. The count is now checked from the body's prefix first. Measured
//! as the peak RSS of a child process that decodes only the attack batch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use garasi_sync_protocol::wire::{self, MAGIC, MAX_BODY_BYTES};

fn hwm_kib() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

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

/// Runs in a child process (a fresh peak RSS): decodes the batch in GARASI_WIRE_BOMB.
#[test]
fn child_decode() {
    let Ok(path) = std::env::var("GARASI_WIRE_BOMB") else {
        return;
    };
    let batch = std::fs::read(path).unwrap();
    let before = hwm_kib();
    let verdict = wire::decode(&batch);
    let after = hwm_kib();
    println!(
        "CHILD refused={} hwm_before_kib={before} hwm_after_kib={after}",
        verdict.is_err()
    );
}

#[test]
fn a_small_batch_claiming_millions_of_entries_costs_no_memory() {
    let batch = attack();
    assert!(batch.len() < 16 * 1024, "{} bytes", batch.len());
    let dir = std::env::temp_dir().join(format!("garasi-wire-bomb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("batch.bin");
    std::fs::write(&path, &batch).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_decode", "--nocapture", "--test-threads=1"])
        .env("GARASI_WIRE_BOMB", &path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .find_map(|l| l.find("CHILD").map(|i| l[i..].to_string()))
        .expect(&text);
    let num = |k: &str| -> usize {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap()
            .parse()
            .unwrap()
    };
    let grown_mib = (num("hwm_after_kib=") - num("hwm_before_kib=")) >> 10;
    eprintln!(
        "a {} byte batch claiming {} entries: peak RSS grew by {grown_mib} MiB",
        batch.len(),
        MAX_BODY_BYTES / 4 - 8
    );
    // The body itself is decompressed (64 MiB, the body cap); the entries never are.
    assert!(grown_mib < 100, "decoding grew peak RSS by {grown_mib} MiB");
    assert!(line.contains("refused=true"), "{line}");
}
