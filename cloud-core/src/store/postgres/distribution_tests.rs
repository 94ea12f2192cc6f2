//! Checks that the PostgreSQL schema stays distributable by depot (ARCHITECTURE.md,
//! "Scaling the cloud"), and that migration 6 keeps what a database held before it.
//! They need `GARASI_TEST_POSTGRES` (required in CI, like the conformance suite).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::schema::{SCHEMA, SCHEMA_2, SCHEMA_3, SCHEMA_4, SCHEMA_5, SCHEMA_5_COLUMN};
use super::*;

/// Cloud-wide tables: small, copied to every node of a distributed database.
const REFERENCE: &[&str] = &["depots", "timetables", "schema_version"];

async fn fresh(name: &str) -> Option<(PgStore, String)> {
    let Ok(conn) = std::env::var("GARASI_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "GARASI_TEST_POSTGRES must be set in CI (.ci/run sets it)"
        );
        eprintln!("SKIPPED: set GARASI_TEST_POSTGRES");
        return None;
    };
    let schema = format!("garasi_test_{name}_{}", std::process::id());
    let s = PgStore::connect(&conn, Some(&schema)).await.unwrap();
    s.drop_schema(&schema).await.unwrap();
    let s = PgStore::connect(&conn, Some(&schema)).await.unwrap();
    Some((s, schema))
}

/// Every table is either a small reference table or holds depot data; every primary key
/// and unique constraint of depot data starts with the depot, and so does every index.
#[tokio::test]
async fn every_key_of_depot_data_starts_with_the_depot() {
    let Some((s, schema)) = fresh("dist").await else {
        return;
    };
    s.migrate().await.unwrap();
    let c = s.w().await.unwrap();
    let tables: Vec<String> = c
        .query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() >= 10, "{tables:?}");
    for t in tables.iter().filter(|t| !REFERENCE.contains(&t.as_str())) {
        let first: Vec<(String, String)> = c
            .query(
                "SELECT i.relname::text, a.attname::text FROM pg_index x
                 JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class r ON r.oid = x.indrelid
                 JOIN pg_namespace n ON n.oid = r.relnamespace
                 JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum = x.indkey[0]
                 WHERE n.nspname = $1 AND r.relname = $2",
                &[&schema, t],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert!(!first.is_empty(), "{t}: depot data without a primary key");
        for (index, column) in &first {
            assert_eq!(
                column, "depot",
                "{t}: index or key {index} does not start with the depot, so it cannot be distributed by depot"
            );
        }
    }
    drop(c);
    s.drop_schema(&schema).await.unwrap();
}

/// Two cloud processes starting at once on a fresh database: the schema is made once,
/// steps 6 and 7 run once, and nothing of the old schema comes back.
#[tokio::test]
async fn two_start_ups_at_once_migrate_once() {
    let Some((s, schema)) = fresh("twostart").await else {
        return;
    };
    let conn = std::env::var("GARASI_TEST_POSTGRES").unwrap();
    let other = PgStore::connect(&conn, Some(&schema)).await.unwrap();
    let (a, b) = tokio::join!(s.migrate(), other.migrate());
    a.unwrap();
    b.unwrap();
    s.migrate().await.unwrap();
    let c = s.w().await.unwrap();
    let versions: Vec<i32> = c
        .query("SELECT version FROM schema_version ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [6, 7], "each step once");
    let old = c
        .query_one("SELECT to_regclass('materialiser') IS NULL", &[])
        .await
        .unwrap();
    assert!(old.get::<_, bool>(0), "the old materialiser table is gone");
    drop(c);
    s.drop_schema(&schema).await.unwrap();
}

/// No query uses the server's clock, and nothing on the store's paths needs what a
/// distributed database does not give (advisory locks, LISTEN/NOTIFY, triggers).
#[test]
fn queries_keep_to_the_distribution_rules() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/postgres");
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path
            .file_name()
            .is_some_and(|n| n == "distribution_tests.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap().to_lowercase();
        for banned in [
            "now()",
            "current_timestamp",
            "pg_advisory",
            "listen ",
            "notify ",
            "create trigger",
            "bigserial primary key",
        ] {
            let hits: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(banned) && !l.trim_start().starts_with("//"))
                .collect();
            let allowed = banned == "bigserial primary key" && path.ends_with("schema.rs");
            assert!(
                hits.is_empty() || allowed,
                "{}: {banned:?} in {hits:?}",
                path.display()
            );
        }
    }
}

/// A database from before migration 6 (cursors from the global BIGSERIAL, the
/// materialiser's single cursor, records keyed by `rkey`) keeps its cursors (edges' pull
/// cursors stay valid), its records and how far each depot was folded.
#[tokio::test]
async fn migration_6_keeps_cursors_records_and_the_materialiser_position() {
    let Some((s, schema)) = fresh("mig6").await else {
        return;
    };
    {
        let c = s.w().await.unwrap();
        for step in [SCHEMA, SCHEMA_2, SCHEMA_3, SCHEMA_4, SCHEMA_5_COLUMN] {
            c.batch_execute(step).await.unwrap();
        }
        c.execute(SCHEMA_5, &[&DEFAULT_ENROLMENT_TTL_MS])
            .await
            .unwrap();
        c.batch_execute(
            "INSERT INTO changes (depot, record_type, record_id, key, change, received_ms) VALUES
               ('a', 't', '1', '\\x01', '\\x01', 0), ('b', 't', '1', '\\x02', '\\x02', 0),
               ('a', 't', '2', '\\x03', '\\x03', 0);
             INSERT INTO materialiser (id, cursor) VALUES (1, 2);
             INSERT INTO stream_rows (depot, stream, seq, ts_ms, payload) VALUES
               ('a', 'telemetry.v1', 1, 1768435200000, '\\x01'),
               ('a', 'telemetry.v1', 2, 0, '\\x02');
             INSERT INTO records (rkey, depot, record_type, record_id, doc, fields, updated_ms)
               VALUES (E'a\\x1ft\\x1f1', 'a', 't', '1', '\\x00aa', '{}', 0);",
        )
        .await
        .unwrap();
    }
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    let cursors = |v: Vec<ChangeOut>| v.iter().map(|c| c.cursor).collect::<Vec<_>>();
    assert_eq!(cursors(s.pull("a", 0, 10).await.unwrap()), [1, 3]);
    assert_eq!(cursors(s.pull("b", 0, 10).await.unwrap()), [2]);
    let pos = |d: &str, m: i64, l: i64| ChangePosition {
        depot: d.into(),
        materialised: m,
        last: l,
    };
    assert_eq!(
        s.change_positions(None).await.unwrap(),
        [pos("a", 1, 3), pos("b", 2, 2)],
        "a was folded up to 1 (its newest change at or below the old cursor 2)"
    );
    let new = ChangeIn {
        record_type: "t".into(),
        record_id: "3".into(),
        change: vec![4],
    };
    assert_eq!(s.add_changes("a", &[new]).await.unwrap(), 1);
    assert_eq!(
        cursors(s.pull("a", 3, 10).await.unwrap()),
        [4],
        "a's sequence goes on"
    );
    let key = RecordKey {
        depot: "a".into(),
        record_type: "t".into(),
        record_id: "1".into(),
    };
    assert_eq!(s.load_records(&[key]).await.unwrap(), [Some(vec![0, 0xaa])]);
    // Step 7 moved the stream rows into their months (2026-01 and the early partition).
    let rows = s.stream_rows("a", "telemetry.v1", 0, 10).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    let c = s.w().await.unwrap();
    let held = |t: &'static str| {
        let c = &c;
        async move {
            c.query_one(&format!("SELECT count(*) FROM {t}"), &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(held("stream_rows_y2026m01").await, 1);
    assert_eq!(held("stream_rows_early").await, 1);
    drop(c);
    s.drop_schema(&schema).await.unwrap();
}

/// Stream rows land in their month's partition (made on first use), rows from a clock
/// gone wrong in the early or late one; retention drops whole months and nothing else; a
/// month dropped behind this process's back is made again on the next push.
#[tokio::test]
async fn stream_rows_are_kept_by_month_and_dropped_a_month_at_a_time() {
    let Some((s, schema)) = fresh("months").await else {
        return;
    };
    s.migrate().await.unwrap();
    // 2026-01-15, 2026-02-15, 2026-03-15 (UTC), 1970 and 2100.
    let (jan, feb, mar) = (1_768_435_200_000, 1_771_113_600_000, 1_773_532_800_000);
    let row = |seq: i64, ts_ms: i64| StreamRowIn {
        stream: "telemetry.v1".into(),
        seq,
        ts_ms,
        payload: vec![seq as u8],
    };
    let rows = [
        row(1, jan),
        row(2, feb),
        row(3, mar),
        row(4, 0),
        row(5, 4_102_444_800_001),
    ];
    assert_eq!(s.push("d", 1, &[], &rows).await.unwrap().new_rows, 5);
    assert_eq!(
        s.push("d", 1, &[], &rows).await.unwrap().new_rows,
        0,
        "a replay"
    );
    // 2026-03-01 00:00 UTC: January and February end at or before it.
    let dropped = s
        .drop_stream_months_before(1_772_323_200_000)
        .await
        .unwrap();
    assert_eq!(dropped, ["stream_rows_y2026m01", "stream_rows_y2026m02"]);
    let seqs = |v: Vec<StreamRowIn>| v.iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(s.stream_rows("d", "telemetry.v1", 0, 10).await.unwrap()),
        [3, 4, 5]
    );
    // A late January row (a depot back from a long outage) makes its month again.
    s.push("d", 2, &[], &[row(6, jan)]).await.unwrap();
    // March dropped by someone else while this store thinks it exists.
    s.w()
        .await
        .unwrap()
        .batch_execute("DROP TABLE stream_rows_y2026m03")
        .await
        .unwrap();
    assert_eq!(
        s.push("d", 3, &[], &[row(7, mar + 1)])
            .await
            .unwrap()
            .new_rows,
        1
    );
    assert_eq!(
        seqs(s.stream_rows("d", "telemetry.v1", 0, 10).await.unwrap()),
        [4, 5, 6, 7]
    );
    // A month detached to be archived: a push of that month says what to do, once,
    // rather than failing without a word (CREATE ... IF NOT EXISTS skips a plain table).
    s.w()
        .await
        .unwrap()
        .batch_execute("ALTER TABLE stream_rows DETACH PARTITION stream_rows_y2026m03")
        .await
        .unwrap();
    let e = s.push("d", 4, &[], &[row(8, mar + 2)]).await.unwrap_err();
    assert!(
        e.to_string().contains("is not a partition of stream_rows"),
        "{e}"
    );
    s.drop_schema(&schema).await.unwrap();
}
