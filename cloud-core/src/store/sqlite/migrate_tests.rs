//! The per-depot positions step (`schema::depot_cursors`) on databases from before it:
//! one whose materialiser never saved a page, one folded part of the way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::schema::{SCHEMA, SCHEMA_2, SCHEMA_3, SCHEMA_4};
use super::*;

/// A database as the store left it before per-depot positions: a's changes at cursors
/// 1 and 3, b's at 2; `materialiser` holding `folded` if given.
fn old_database(path: &Path, folded: Option<i64>) {
    let c = Connection::open(path).unwrap();
    for step in [SCHEMA, SCHEMA_2, SCHEMA_3, SCHEMA_4] {
        c.execute_batch(step).unwrap();
    }
    c.execute_batch(
        "INSERT INTO changes (depot, record_type, record_id, key, change, received_ms) VALUES
           ('a', 't', '1', x'01', x'01', 0), ('b', 't', '1', x'02', x'02', 0),
           ('a', 't', '2', x'03', x'03', 0);",
    )
    .unwrap();
    if let Some(f) = folded {
        c.execute("INSERT INTO materialiser (id, cursor) VALUES (1, ?1)", [f])
            .unwrap();
    }
}

fn pos(d: &str, m: i64, l: i64) -> ChangePosition {
    ChangePosition {
        depot: d.into(),
        materialised: m,
        last: l,
    }
}

#[tokio::test]
async fn a_database_never_folded_has_every_depot_to_fold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud.db");
    old_database(&path, None);
    let s = SqliteStore::open(&path).unwrap();
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    assert_eq!(
        s.change_positions(None).await.unwrap(),
        [pos("a", 0, 3), pos("b", 0, 2)]
    );
}

#[tokio::test]
async fn a_database_folded_part_of_the_way_keeps_how_far() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud.db");
    old_database(&path, Some(2));
    let s = SqliteStore::open(&path).unwrap();
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    assert_eq!(
        s.change_positions(None).await.unwrap(),
        [pos("a", 1, 3), pos("b", 2, 2)],
        "a folded up to its newest change at or below the old cursor 2"
    );
    // New changes go on numbering after the old ones.
    let new = ChangeIn {
        record_type: "t".into(),
        record_id: "3".into(),
        change: vec![4],
    };
    assert_eq!(s.add_changes("b", &[new]).await.unwrap(), 1);
    assert_eq!(
        s.change_positions(Some("b")).await.unwrap(),
        [pos("b", 2, 4)]
    );
}

#[test]
fn an_in_memory_database_is_refused_with_what_to_do() {
    let e = SqliteStore::open(Path::new(":memory:")).err().unwrap();
    assert!(e.to_string().contains("sqlite://PATH"), "{e}");
}
