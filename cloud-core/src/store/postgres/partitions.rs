//! Stream rows partitioned by month of `ts_ms` (issue 14): retention drops whole months
//! instead of deleting rows, and each month is a table a distributed database can place
//! like any other (keys still start with the depot). A month's partition is made before
//! the first row of that month is stored (`ensure`); rows before 2000 or after 2099 (a
//! device clock gone wrong) go to `stream_rows_early` / `stream_rows_late`. There is no
//! default partition, so a row whose month is missing (dropped by another cloud process
//! after this one cached it) is refused, not hidden, and the push makes it and retries.

use std::collections::HashSet;

use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::store::StoreError;

/// Months are made for rows in these years; the rest go to the early and late partitions.
const FIRST_YEAR: i16 = 2000;
const LAST_YEAR: i16 = 2099;

/// A month of UTC time: its partition's name and `[from, to)` in ms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Month {
    pub(super) name: String,
    pub(super) from_ms: i64,
    pub(super) to_ms: i64,
}

/// The month `ts_ms` falls in, if it is one that gets a partition.
pub(super) fn month_of(ts_ms: i64) -> Option<Month> {
    let ts = jiff::Timestamp::from_millisecond(ts_ms).ok()?;
    let d = ts.to_zoned(TimeZone::UTC).date();
    if !(FIRST_YEAR..=LAST_YEAR).contains(&d.year()) {
        return None;
    }
    let first = Date::new(d.year(), d.month(), 1).ok()?;
    let next = first.checked_add(jiff::Span::new().months(1)).ok()?;
    let ms = |day: Date| -> Option<i64> {
        Some(
            day.to_zoned(TimeZone::UTC)
                .ok()?
                .timestamp()
                .as_millisecond(),
        )
    };
    Some(Month {
        name: format!("stream_rows_y{:04}m{:02}", d.year(), d.month()),
        from_ms: ms(first)?,
        to_ms: ms(next)?,
    })
}

/// Makes the partitions the rows' months need and `known` does not hold yet (each
/// statement on its own, outside the push's transaction: a month is made once a month).
pub(super) async fn ensure(
    client: &tokio_postgres::Client,
    known: &parking_lot::Mutex<HashSet<String>>,
    ts: impl Iterator<Item = i64>,
) -> Result<(), StoreError> {
    let mut wanted: Vec<Month> = Vec::new();
    {
        let known = known.lock();
        // A batch's rows are mostly in time order: a row inside the month just seen is
        // skipped with two comparisons instead of a calendar conversion (20,000 rows a
        // batch on the push path).
        let mut last: Option<(i64, i64)> = None;
        for t in ts {
            if last.is_some_and(|(a, b)| (a..b).contains(&t)) {
                continue;
            }
            let Some(m) = month_of(t) else {
                last = None;
                continue;
            };
            last = Some((m.from_ms, m.to_ms));
            if !known.contains(&m.name) && !wanted.contains(&m) {
                wanted.push(m);
            }
        }
    }
    for m in wanted {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF stream_rows FOR VALUES FROM ({}) TO ({})",
            m.name, m.from_ms, m.to_ms
        );
        match client.batch_execute(&sql).await {
            Ok(()) => {}
            // Another push made it at the same moment.
            Err(e)
                if e.code().is_some_and(|c| {
                    *c == tokio_postgres::error::SqlState::DUPLICATE_TABLE
                        || *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
                }) => {}
            Err(e) => return Err(e.into()),
        }
        // IF NOT EXISTS also skips a plain table of that name (a month detached to be
        // archived): rows would then find no partition at every push. Say so instead.
        let attached = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_inherits i
                   JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
                   WHERE c.relname = $1 AND p.relname = 'stream_rows'
                     AND c.relnamespace = current_schema()::regnamespace)",
                &[&m.name],
            )
            .await?
            .get::<_, bool>(0);
        if !attached {
            return Err(StoreError::Task(format!(
                "table {} exists but is not a partition of stream_rows, so rows of that month cannot be stored: attach it again (ALTER TABLE stream_rows ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})) or rename it",
                m.name, m.name, m.from_ms, m.to_ms
            )));
        }
        known.lock().insert(m.name);
    }
    Ok(())
}

/// Drops every month partition that ends at or before `before_ms` (retention): whole
/// tables, no row-by-row delete. Returns the partitions dropped.
pub(super) async fn drop_before(
    client: &tokio_postgres::Client,
    before_ms: i64,
) -> Result<Vec<String>, StoreError> {
    // A search_path naming no schema that holds the store would match nothing and
    // report "nothing to drop" for ever from cron.
    let found: bool = client
        .query_one("SELECT to_regclass('stream_rows') IS NOT NULL", &[])
        .await?
        .get(0);
    if !found {
        return Err(StoreError::Task(
            "no stream_rows table on this connection's search_path: check --database (and its options='-c search_path=...')".into(),
        ));
    }
    let names: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = 'stream_rows' AND p.relnamespace = current_schema()::regnamespace
               AND c.relname ~ '^stream_rows_y[0-9]{4}m[0-9]{2}$' ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut dropped = Vec::new();
    for name in names {
        let (y, m) = (name[13..17].parse::<i16>(), name[18..20].parse::<i8>());
        let (Ok(y), Ok(m)) = (y, m) else { continue };
        let Some(month) = Date::new(y, m, 1)
            .ok()
            .and_then(|d| d.to_zoned(TimeZone::UTC).ok())
            .and_then(|z| month_of(z.timestamp().as_millisecond()))
        else {
            continue;
        };
        if month.to_ms <= before_ms {
            client.batch_execute(&format!("DROP TABLE {name}")).await?;
            dropped.push(name);
        }
    }
    Ok(dropped)
}

/// Step 7: `stream_rows` becomes partitioned by month of `ts_ms`, its rows moved into it
/// (each month's partition made first). The key gains `ts_ms` (a partitioned table's keys
/// must hold the partition key): a depot's edge never stores one seq at two times, so
/// replays still land once.
pub(super) async fn convert(tx: &tokio_postgres::Transaction<'_>) -> Result<(), StoreError> {
    tx.batch_execute(
        "ALTER TABLE stream_rows RENAME TO stream_rows_v6;
         ALTER INDEX stream_rows_pkey RENAME TO stream_rows_v6_pkey;
         ALTER INDEX stream_rows_time RENAME TO stream_rows_v6_time;
         CREATE TABLE stream_rows (
           depot TEXT NOT NULL,
           stream TEXT NOT NULL,
           seq BIGINT NOT NULL,
           ts_ms BIGINT NOT NULL,
           payload BYTEA NOT NULL,
           PRIMARY KEY (depot, stream, seq, ts_ms)
         ) PARTITION BY RANGE (ts_ms);
         CREATE INDEX stream_rows_time ON stream_rows (depot, ts_ms);
         CREATE TABLE stream_rows_early PARTITION OF stream_rows
           FOR VALUES FROM (MINVALUE) TO (946684800000);
         CREATE TABLE stream_rows_late PARTITION OF stream_rows
           FOR VALUES FROM (4102444800000) TO (MAXVALUE);",
    )
    .await?;
    let months: Vec<i64> = tx
        .query(
            "SELECT DISTINCT (ts_ms / 86400000) * 86400000 FROM stream_rows_v6",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let made = parking_lot::Mutex::new(HashSet::new());
    ensure(tx.client(), &made, months.into_iter()).await?;
    tx.batch_execute(
        "INSERT INTO stream_rows SELECT * FROM stream_rows_v6;
         DROP TABLE stream_rows_v6;",
    )
    .await?;
    Ok(())
}

/// Whether an insert failed for want of its month's partition.
pub(super) fn missing(e: &StoreError) -> bool {
    matches!(e, StoreError::Postgres(pe)
        if pe.code() == Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_utc_calendar_months_within_the_window() {
        // 2026-11-30 23:59:59.999 UTC and 2026-12-01 00:00 UTC.
        let nov = month_of(1_796_083_199_999).unwrap();
        assert_eq!(nov.name, "stream_rows_y2026m11");
        assert_eq!(
            (nov.from_ms, nov.to_ms),
            (1_793_491_200_000, 1_796_083_200_000)
        );
        assert_eq!(
            month_of(1_796_083_200_000).unwrap().name,
            "stream_rows_y2026m12"
        );
        // The window's edges match the early and late partitions' bounds.
        assert_eq!(
            month_of(946_684_800_000).unwrap().name,
            "stream_rows_y2000m01"
        );
        assert!(month_of(946_684_799_999).is_none());
        assert_eq!(
            month_of(4_102_444_799_999).unwrap().name,
            "stream_rows_y2099m12"
        );
        assert!(month_of(4_102_444_800_000).is_none());
        assert!(month_of(i64::MIN).is_none() && month_of(i64::MAX).is_none());
    }
}
