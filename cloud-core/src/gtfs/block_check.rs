//! Feed blocks (`block_id`) one bus can run: a block whose trips overlap in time on a day
//! they both run is reported as an error of that block (the trips, their times and the
//! first day it happens) and kept out of what is published until the feed is fixed; the
//! rest of the feed imports. Trips of services that never share a day (a weekday and a
//! weekend trip under one block_id) may overlap on the clock: they never meet.
//!
//! Two trips overlap when each starts before the other ends: touching is fine, and so is
//! a zero-length trip at another's start or end. Trips belong to their service day, so
//! a trip past midnight is compared with its own day's trips only (GTFS blocks are per
//! service day).
//!
//! How: per block, each day of the feed's period gets the set of the block's services
//! running that day; each distinct set is swept once (trips in start order, the latest
//! end so far), so the work is days x services-in-the-block plus distinct sets x trips,
//! never trips squared. Days are taken from [`MAX_DAYS`] days from the feed's first day,
//! and the whole check stops past [`MAX_WORK`] steps, with a warning naming the first
//! block left unchecked; `blocks_for` still refuses an overlapping block on any day it
//! would be published, checked or not.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{format_time, Feed, Report, Service, Trip};

/// Days checked, from the first day any service runs (two years).
pub const MAX_DAYS: i64 = 731;
/// Steps (a service looked up for a day, a trip swept) across the whole feed.
pub const MAX_WORK: u64 = 200_000_000;

/// Checks every feed block; records the overlapping ones in `feed.rejected_blocks` and
/// in the report.
pub(super) fn check(feed: &mut Feed, report: &mut Report) {
    check_within(feed, report, MAX_WORK);
}

/// [`check`] with a work budget (tests use a small one).
pub(super) fn check_within(feed: &mut Feed, report: &mut Report, max_work: u64) {
    let mut blocks: BTreeMap<&str, Vec<&Trip>> = BTreeMap::new();
    for t in &feed.trips {
        if let Some(b) = &t.block_id {
            blocks.entry(b.as_str()).or_default().push(t);
        }
    }
    let days = period(&feed.services);
    let mut work = 0u64;
    let mut rejected = HashSet::new();
    for (block, mut trips) in blocks {
        if work > max_work {
            report.warning(
                "trips.txt",
                None,
                Some("block_id"),
                format!("blocks from {block:?} on (in id order) were not checked for overlapping trips: the check stopped after {max_work} steps. An overlapping block is still never published on a day it overlaps"),
            );
            break;
        }
        trips.sort_by(|a, b| (a.start_s(), a.end_s(), &a.id).cmp(&(b.start_s(), b.end_s(), &b.id)));
        let found = first_overlap(&trips, &feed.services, &days, &mut work, max_work);
        let Some((x, y, day)) = found else {
            if work > max_work {
                // Stopped inside this block: it is the first one left unchecked.
                report.warning(
                    "trips.txt",
                    None,
                    Some("block_id"),
                    format!("blocks from {block:?} on (in id order) were not checked for overlapping trips: the check stopped after {max_work} steps. An overlapping block is still never published on a day it overlaps"),
                );
                break;
            }
            continue;
        };
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
                "block {block:?}: trips {:?} ({}-{}) and {:?} ({}-{}) overlap in time on {day}{template}; one bus cannot run both. The block's {} trips are not published until the feed gives them different block_ids or times",
                x.id,
                format_time(x.start_s()),
                format_time(x.end_s()),
                y.id,
                format_time(y.start_s()),
                format_time(y.end_s()),
                trips.len(),
            ),
        );
        rejected.insert(block.to_string());
    }
    if !rejected.is_empty() {
        report
            .imported
            .insert("blocks_rejected", rejected.len() as u64);
    }
    feed.rejected_blocks = rejected;
}

/// The days checked: from the first day any service could run to the last, at most
/// [`MAX_DAYS`].
fn period(services: &HashMap<String, Service>) -> Vec<jiff::civil::Date> {
    let firsts = services
        .values()
        .flat_map(|s| s.start.into_iter().chain(s.added.iter().copied()));
    let lasts = services
        .values()
        .flat_map(|s| s.end.into_iter().chain(s.added.iter().copied()));
    let (Some(first), Some(last)) = (firsts.min(), lasts.max()) else {
        return Vec::new();
    };
    let mut days = Vec::new();
    let mut d = first;
    while d <= last && (days.len() as i64) < MAX_DAYS {
        days.push(d);
        match d.tomorrow() {
            Ok(next) => d = next,
            Err(_) => break,
        }
    }
    days
}

/// The first two trips (of `trips`, in start order) that overlap on a day both run, with
/// the first such day.
fn first_overlap<'t>(
    trips: &[&'t Trip],
    services: &HashMap<String, Service>,
    days: &[jiff::civil::Date],
    work: &mut u64,
    max_work: u64,
) -> Option<(&'t Trip, &'t Trip, jiff::civil::Date)> {
    let mut ids: Vec<&str> = trips.iter().map(|t| t.service_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let svcs: Vec<Option<&Service>> = ids.iter().map(|id| services.get(*id)).collect();
    let trip_svc: Vec<usize> = trips
        .iter()
        .map(|t| ids.binary_search(&t.service_id.as_str()).unwrap_or(0))
        .collect();
    // Day sets swept, by hash (8 bytes a day, not one byte per service).
    let mut swept: HashSet<u64> = HashSet::new();
    for &day in days {
        *work += svcs.len() as u64;
        let running: Vec<bool> = svcs
            .iter()
            .map(|s| s.is_some_and(|s| s.runs_on(day)))
            .collect();
        if *work > max_work {
            return None;
        }
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            running.hash(&mut h);
            h.finish()
        };
        if !running.contains(&true) || swept.contains(&key) {
            continue;
        }
        // The trips of that day, in start order: one overlaps an earlier one when it
        // starts before the latest end so far.
        let mut latest: Option<&Trip> = None;
        for (t, &s) in trips.iter().zip(&trip_svc) {
            *work += 1;
            if !running[s] {
                continue;
            }
            if let Some(l) = latest {
                if t.start_s() < l.end_s() {
                    return Some((l, t, day));
                }
            }
            if latest.is_none_or(|l| t.end_s() > l.end_s()) {
                latest = Some(t);
            }
        }
        swept.insert(key);
    }
    None
}

#[cfg(test)]
#[path = "block_check_tests.rs"]
mod tests;
