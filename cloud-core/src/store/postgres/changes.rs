//! Per-depot change sequences in PostgreSQL. A depot's changes are numbered from its
//! `depot_seq` row, which each transaction adding changes locks until it commits: the
//! depot's cursors therefore become visible in the order they were given, and a pull or
//! the materialiser that has read up to `n` never sees a change below `n` commit later
//! (the gap a global BIGSERIAL has under concurrent writers). Different depots never
//! wait for each other, and the transaction stays inside one depot.

use std::collections::HashSet;

use super::*;

/// Inserts the changes of `changes` not stored before (idempotent by record and content
/// per depot), numbered after the depot's last cursor without gaps. Returns how many.
pub(super) async fn insert(
    tx: &tokio_postgres::Transaction<'_>,
    depot: &str,
    changes: &[ChangeIn],
    now: i64,
) -> Result<u64, StoreError> {
    if changes.is_empty() {
        return Ok(0);
    }
    // Takes (or creates) the depot's row lock for the rest of the transaction.
    let last: i64 = tx
        .query_one(
            "INSERT INTO depot_seq (depot, last) VALUES ($1, 0)
             ON CONFLICT (depot) DO UPDATE SET last = depot_seq.last RETURNING last",
            &[&depot],
        )
        .await?
        .get(0);
    let keys: Vec<Vec<u8>> = changes.iter().map(change_key).collect();
    let stored: HashSet<Vec<u8>> = tx
        .query(
            "SELECT key FROM changes WHERE depot = $1 AND key = ANY($2)",
            &[&depot, &keys],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut seen = HashSet::new();
    let fresh: Vec<(&ChangeIn, &Vec<u8>)> = changes
        .iter()
        .zip(&keys)
        .filter(|(_, k)| !stored.contains(*k) && seen.insert(*k))
        .collect();
    if fresh.is_empty() {
        return Ok(0);
    }
    let n = fresh.len() as i64;
    let cursors: Vec<i64> = (1..=n).map(|i| last + i).collect();
    let types: Vec<&str> = fresh.iter().map(|(c, _)| c.record_type.as_str()).collect();
    let ids: Vec<&str> = fresh.iter().map(|(c, _)| c.record_id.as_str()).collect();
    let fresh_keys: Vec<&[u8]> = fresh.iter().map(|(_, k)| k.as_slice()).collect();
    let bodies: Vec<&[u8]> = fresh.iter().map(|(c, _)| c.change.as_slice()).collect();
    tx.execute(
        "INSERT INTO changes (depot, cursor, record_type, record_id, key, change, received_ms)
         SELECT $1, c, t, i, k, b, $7
         FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bytea[], $6::bytea[]) AS u(c, t, i, k, b)",
        &[&depot, &cursors, &types, &ids, &fresh_keys, &bodies, &now],
    )
    .await?;
    tx.execute(
        "UPDATE depot_seq SET last = $2 WHERE depot = $1",
        &[&depot, &(last + n)],
    )
    .await?;
    Ok(n as u64)
}

/// `depot`'s changes with `after < cursor <= upto`, oldest first.
pub(super) async fn after(
    client: &tokio_postgres::Client,
    depot: &str,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<ChangeOut>, StoreError> {
    let rows = client
        .query(
            "SELECT cursor, record_type, record_id, change FROM changes
             WHERE depot = $1 AND cursor > $2 AND cursor <= $3 ORDER BY cursor LIMIT $4",
            &[&depot, &after, &upto, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ChangeOut {
            cursor: r.get(0),
            record_type: r.get(1),
            record_id: r.get(2),
            change: r.get(3),
        })
        .collect())
}

/// Where each depot's changes stand (or one depot's).
pub(super) async fn positions(
    client: &deadpool_postgres::ClientWrapper,
    depot: Option<&str>,
) -> Result<Vec<ChangePosition>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT s.depot, coalesce(p.cursor, 0), s.last FROM depot_seq s
             LEFT JOIN materialiser_pos p ON p.depot = s.depot
             WHERE $1::text IS NULL OR s.depot = $1 ORDER BY s.depot",
        )
        .await?;
    let rows = client.query(&statement, &[&depot]).await?;
    Ok(rows
        .iter()
        .map(|r| ChangePosition {
            depot: r.get(0),
            materialised: r.get(1),
            last: r.get(2),
        })
        .collect())
}

/// Whether a PostgreSQL error is worth running the transaction again for: a
/// serialization failure or a deadlock (the other transaction went through).
pub(super) fn retryable(e: &StoreError) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(e, StoreError::Postgres(pe) if pe.code().is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    }))
}

/// A short, growing, jittered wait before running a failed transaction again.
pub(super) async fn back_off(attempt: usize) {
    use rand::Rng;
    let ms = 5 * (1u64 << attempt.min(6)) + rand::rng().random_range(0..10);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// Stream rows by binary COPY, for a batch whose rows are new (see `PgStore::push_once`).
pub(super) async fn copy_rows(
    tx: &tokio_postgres::Transaction<'_>,
    depot: &str,
    rows: &[StreamRowIn],
) -> Result<u64, StoreError> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    let sink = tx
        .copy_in("COPY stream_rows (depot, stream, seq, ts_ms, payload) FROM STDIN (FORMAT binary)")
        .await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[Type::TEXT, Type::TEXT, Type::INT8, Type::INT8, Type::BYTEA],
    );
    tokio::pin!(writer);
    for r in rows {
        writer
            .as_mut()
            .write(&[&depot, &r.stream, &r.seq, &r.ts_ms, &r.payload])
            .await?;
    }
    Ok(writer.finish().await?)
}

/// Whether the error is a unique violation (a row stored before).
pub(super) fn duplicate(e: &StoreError) -> bool {
    matches!(e, StoreError::Postgres(pe)
        if pe.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION))
}
