//! Feed blocks (`block_id`) one bus can run: a block whose trips overlap in time on a day
//! they both run is reported as an error of that block (the trips, their times and a
//! day it happens) and kept out of what is published until the feed is fixed; the rest
//! of the feed imports. Trips of services that never share a day (a weekday and a
//! weekend trip under one block_id) may overlap: they never meet.
//!
//! Touching is fine (a trip may start the second the previous one ends). The work is
//! bounded for hostile feeds: past [`MAX_COMPARISONS`] trip pairs the remaining blocks
//! are left unchecked with a warning, and `blocks_for` still refuses an overlapping
//! block on the day it would be published.

use std::collections::{BTreeMap, HashMap};

use super::{format_time, Feed, Report, Service, Trip};

/// Trip pairs compared across the whole feed before checking stops.
pub const MAX_COMPARISONS: u64 = 2_000_000;

/// Checks every feed block; records the overlapping ones in `feed.rejected_blocks` and
/// in the report.
pub(super) fn check(feed: &mut Feed, report: &mut Report) {
    let mut blocks: BTreeMap<&str, Vec<&Trip>> = BTreeMap::new();
    for t in &feed.trips {
        if let Some(b) = &t.block_id {
            blocks.entry(b.as_str()).or_default().push(t);
        }
    }
    let mut meet = Meetings::new(&feed.services);
    let mut comparisons = 0u64;
    let mut rejected = BTreeMap::new();
    for (block, mut trips) in blocks {
        if comparisons > MAX_COMPARISONS {
            report.warning(
                "trips.txt",
                None,
                Some("block_id"),
                format!("blocks from {block:?} on were not checked for overlapping trips (more than {MAX_COMPARISONS} trip pairs); they are checked on each day when published"),
            );
            break;
        }
        trips.sort_by(|a, b| (a.start_s(), &a.id).cmp(&(b.start_s(), &b.id)));
        if let Some((x, y, day)) = first_overlap(&trips, &mut meet, &mut comparisons) {
            let when = day.map(|d| format!(" on {d}")).unwrap_or_default();
            let template = if x.from_frequency.is_some() || y.from_frequency.is_some() {
                " (trips expanded from frequencies.txt keep their template's block_id)"
            } else {
                ""
            };
            report.error(
                "trips.txt",
                None,
                Some("block_id"),
                format!(
                    "block {block:?}: trips {:?} ({}-{}) and {:?} ({}-{}) overlap in time{when}{template}; one bus cannot run both. The block's {} trips are not published until the feed gives them different block_ids or times",
                    x.id,
                    format_time(x.start_s()),
                    format_time(x.end_s()),
                    y.id,
                    format_time(y.start_s()),
                    format_time(y.end_s()),
                    trips.len(),
                ),
            );
            rejected.insert(block.to_string(), ());
        }
    }
    if !rejected.is_empty() {
        report
            .imported
            .insert("blocks_rejected", rejected.len() as u64);
    }
    feed.rejected_blocks = rejected.into_keys().collect();
}

/// The first pair of trips (sorted by start) that overlap on a day both run, with such a
/// day where one is known.
fn first_overlap<'t>(
    trips: &[&'t Trip],
    meet: &mut Meetings<'_>,
    comparisons: &mut u64,
) -> Option<(&'t Trip, &'t Trip, Option<jiff::civil::Date>)> {
    // Trips still running when the next one starts.
    let mut running: Vec<&Trip> = Vec::new();
    for &y in trips {
        running.retain(|x| x.end_s() > y.start_s());
        for &x in &running {
            *comparisons += 1;
            if let Some(day) = meet.day(&x.service_id, &y.service_id) {
                return Some((x, y, day));
            }
        }
        running.push(y);
    }
    None
}

/// Whether two services run on a common day (cached per pair).
struct Meetings<'f> {
    services: &'f HashMap<String, Service>,
    known: HashMap<(String, String), Option<Option<jiff::civil::Date>>>,
}

impl<'f> Meetings<'f> {
    fn new(services: &'f HashMap<String, Service>) -> Self {
        Meetings {
            services,
            known: HashMap::new(),
        }
    }

    /// Some(a common day) when the two services share one; Some(None) for the same
    /// service (it runs with itself whenever it runs); None when they never meet.
    fn day(&mut self, a: &str, b: &str) -> Option<Option<jiff::civil::Date>> {
        if a == b {
            return Some(None);
        }
        let key = if a < b { (a, b) } else { (b, a) };
        if let Some(k) = self.known.get(&(key.0.to_string(), key.1.to_string())) {
            return *k;
        }
        let found = match (self.services.get(a), self.services.get(b)) {
            (Some(x), Some(y)) => common_day(x, y).map(Some),
            _ => None,
        };
        self.known
            .insert((key.0.to_string(), key.1.to_string()), found);
        found
    }
}

/// A day both services run, if any. Added days are checked directly; regular days are
/// walked over the overlap of the two ranges, skipping weekdays either lacks, so the walk
/// ends after at most a week per removed day.
pub(super) fn common_day(a: &Service, b: &Service) -> Option<jiff::civil::Date> {
    let mut added: Vec<jiff::civil::Date> = a.added.iter().chain(&b.added).copied().collect();
    added.sort();
    if let Some(d) = added.into_iter().find(|&d| a.runs_on(d) && b.runs_on(d)) {
        return Some(d);
    }
    let shared = (0..7).any(|w| a.weekdays[w] && b.weekdays[w]);
    // Regular days need a range on both sides (a calendar_dates-only service has none).
    let (Some(sa), Some(sb), Some(ea), Some(eb)) = (a.start, b.start, a.end, b.end) else {
        return None;
    };
    let (from, to) = (sa.max(sb), ea.min(eb));
    if !shared || from > to {
        return None;
    }
    let mut d = from;
    let mut tries = 0usize;
    let bound = 7 * (a.removed.len() + b.removed.len() + 1);
    while d <= to && tries <= bound {
        if a.runs_on(d) && b.runs_on(d) {
            return Some(d);
        }
        let w = d.weekday().to_monday_zero_offset() as usize;
        if a.weekdays[w] && b.weekdays[w] {
            tries += 1;
        }
        d = d.tomorrow().ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(n: u16) -> jiff::civil::Date {
        jiff::civil::date(2026, 1, 1)
            .checked_add(jiff::Span::new().days(i64::from(n)))
            .unwrap()
    }

    prop_compose! {
        fn service()(
            weekdays in proptest::array::uniform7(any::<bool>()),
            range in proptest::option::of((0u16..200, 0u16..200)),
            added in proptest::collection::vec(0u16..365, 0..4),
            removed in proptest::collection::vec(0u16..365, 0..30),
        ) -> Service {
            Service {
                weekdays,
                start: range.map(|(a, b)| day(a.min(b))),
                end: range.map(|(a, b)| day(a.max(b))),
                added: added.into_iter().map(day).collect(),
                removed: removed.into_iter().map(day).collect(),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// `common_day` agrees with trying every day of the year.
        #[test]
        fn common_day_is_exact(a in service(), b in service()) {
            let brute = (0..365).map(day).find(|&d| a.runs_on(d) && b.runs_on(d));
            match common_day(&a, &b) {
                Some(d) => prop_assert!(a.runs_on(d) && b.runs_on(d), "{d} is not common"),
                None => prop_assert_eq!(brute, None),
            }
        }
    }
}
