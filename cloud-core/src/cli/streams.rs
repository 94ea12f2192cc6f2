//! `garasi-cloud streams drop-before`: stream retention. On PostgreSQL stream rows are
//! partitioned by month, so whole months are dropped (no row-by-row delete, no bloat);
//! run it from cron or a systemd timer with the retention the fleet keeps.

use anyhow::{bail, Context};

use super::{open, AnyStore};

/// Drops every month of stream rows that ends on or before `before` (a date, UTC).
pub(super) async fn drop_before(database: &str, before: jiff::civil::Date) -> anyhow::Result<()> {
    let before_ms = before
        .to_zoned(jiff::tz::TimeZone::UTC)
        .context("the date is out of range")?
        .timestamp()
        .as_millisecond();
    match open(database).await? {
        AnyStore::Postgres(s) => {
            let dropped = s.drop_stream_months_before(before_ms).await?;
            if dropped.is_empty() {
                outln!("no month of stream rows ends on or before {before}");
            }
            for name in dropped {
                outln!("dropped {name}");
            }
            Ok(())
        }
        AnyStore::Sqlite(_) => bail!(
            "the SQLite store keeps stream rows in one table, not by month: this command is for a PostgreSQL cloud"
        ),
    }
}
