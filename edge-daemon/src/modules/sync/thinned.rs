//! What the quota's thinning leaves behind in the stream outbox's seqs, so the cheap
//! backlog estimate counts rows, not the seq span: after a week offline the span was
//! ten times what waited, and the board's banner said so.
//!
//! Thinning removes every odd seq above the batch in flight up to the middle of what
//! waits; dropping takes the oldest rows above the batch in flight; pushes take the
//! oldest rows; seqs are never reused. So after a quota pass the outbox is, from the
//! bottom: the rows of the batch in flight (below `from`, at most one batch, counted
//! when asked; a gap may follow them), the thinned part [`from`, `upto`] holding `rows`
//! rows (counted by the pass, which knows how many rows it left; empty when the pass
//! took everything above the batch), and every seq above `upto`. As pushes take rows
//! off the thinned part, the rows left in it are taken in proportion, which is exact to
//! a row for the evenly spread gaps thinning makes. An outbox thinned by a version
//! before this one is estimated by its span (an upper bound) until the next pass.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

const KEY: &str = "quota_thinned_part";

/// The thinned part of the stream outbox, as the last quota pass left it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Part {
    from: i64,
    upto: i64,
    rows: i64,
}

fn load(c: &Connection) -> rusqlite::Result<Option<Part>> {
    let Some(v) = super::store::state_get(c, KEY)? else {
        return Ok(None);
    };
    let n: Vec<i64> = v.split(',').filter_map(|x| x.parse().ok()).collect();
    Ok(match n[..] {
        [from, upto, rows] => Some(Part { from, upto, rows }),
        _ => None,
    })
}

/// Notes the thinned part after a quota pass: `sent` is the batch in flight's last
/// seq (0 if none), `rows_left` the stream rows the pass left, `mid` how far it thinned.
pub(super) fn note(
    tx: &Transaction<'_>,
    sent: i64,
    rows_left: i64,
    mid: i64,
) -> rusqlite::Result<()> {
    let upto = load(tx)?.map_or(mid, |p| p.upto.max(mid));
    let (in_flight, from, hi): (i64, Option<i64>, Option<i64>) = tx.query_row(
        "SELECT (SELECT count(*) FROM sync_stream_outbox WHERE seq <= ?1),
                (SELECT min(seq) FROM sync_stream_outbox WHERE seq > ?1),
                (SELECT max(seq) FROM sync_stream_outbox)",
        params![sent],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let v = match (from, hi) {
        (Some(from), Some(hi)) => {
            // The part ends where thinning stopped, or just below `from` if it stopped
            // lower (then it is empty, and only the gap below `from` is noted).
            let upto = upto.max(from - 1).min(hi);
            let rows = (rows_left - in_flight - (hi - upto)).max(0);
            format!("{from},{upto},{rows}")
        }
        (None, Some(hi)) => {
            // Everything above the batch in flight went: an empty part ending at the
            // last seq ever given, so rows that come later are counted above the gap.
            let last: i64 = tx
                .query_row(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'sync_stream_outbox'",
                    [],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(hi);
            format!("{},{last},0", last + 1)
        }
        _ => String::new(),
    };
    super::store::state_set(tx, KEY, &v)
}

/// Stream rows waiting, the lowest seq waiting being `lo` and the highest `hi`.
pub(super) fn rows_waiting(c: &Connection, lo: i64, hi: i64) -> rusqlite::Result<i64> {
    let span = hi - lo + 1;
    let Some(p) = load(c)? else {
        return Ok(span);
    };
    if lo > p.upto {
        return Ok(span);
    }
    let below: i64 = if lo < p.from {
        c.query_row(
            "SELECT count(*) FROM sync_stream_outbox WHERE seq < ?1",
            params![p.from],
            |r| r.get(0),
        )?
    } else {
        0
    };
    let part = if lo <= p.from {
        p.rows
    } else if p.upto < p.from {
        0
    } else {
        let whole = (p.upto - p.from + 1).max(1) as i128;
        (p.rows as i128 * (p.upto - lo + 1) as i128 / whole) as i64
    };
    Ok(below + part + (hi - p.upto).max(0))
}
