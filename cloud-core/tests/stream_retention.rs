//! `garasi-cloud streams drop-before` (issue 14): retention drops whole months of stream
//! rows, as the real binary run from cron would, and nothing else. PostgreSQL only
//! (`GARASI_TEST_POSTGRES`, required in CI); on SQLite it refuses with what it is for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use garasi_cloud::store::{CloudStore, StreamRowIn};

/// Runs `garasi-cloud streams drop-before`: (success, stdout, stderr).
fn drop_before(database: &str, before: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_garasi-cloud"))
        .args([
            "streams",
            "drop-before",
            "--database",
            database,
            "--before",
            before,
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn drop_before_removes_whole_months_and_nothing_else() {
    let Some((s, conn, schema)) = common::fresh_postgres("retention").await else {
        return;
    };
    // 2026-01-31 23:59:59.999, 2026-02-01 00:00 and 2026-03-15 (UTC).
    let row = |seq: i64, ts_ms: i64| StreamRowIn {
        stream: "telemetry.v1".into(),
        seq,
        ts_ms,
        payload: vec![1],
    };
    let rows = [
        row(1, 1_769_903_999_999),
        row(2, 1_769_904_000_000),
        row(3, 1_773_532_800_000),
    ];
    s.push("d", 1, &[], &rows).await.unwrap();
    let database = format!("{conn} options='-c search_path={schema}'");
    // Before 2026-02-01: January only (February starts on it, so it stays).
    let (ok, out, err) = drop_before(&database, "2026-02-01");
    assert!(ok, "{err}");
    assert!(out.contains("dropped stream_rows_y2026m01"), "{out}");
    assert!(!out.contains("m02") && !out.contains("m03"), "{out}");
    let seqs = |v: Vec<StreamRowIn>| v.iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(s.stream_rows("d", "telemetry.v1", 0, 10).await.unwrap()),
        [2, 3]
    );
    // Again: nothing left to drop, said so.
    let (ok, out, _) = drop_before(&database, "2026-02-01");
    assert!(ok);
    assert!(
        out.contains("no month of stream rows ends on or before 2026-02-01"),
        "{out}"
    );
    // A date that is not one, and a SQLite cloud: refused with what to do.
    let (ok, _, err) = drop_before(&database, "2026-13-01");
    assert!(!ok && err.contains("--before"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("c.db").display());
    let (ok, _, err) = drop_before(&sqlite, "2026-02-01");
    assert!(!ok && err.contains("PostgreSQL cloud"), "{err}");
    s.drop_schema(&schema).await.unwrap();
}
