//! Blocks: the trips one vehicle runs in sequence on a service day.
//!
//! Where the feed has `block_id`, its blocks are used as they are, unless their trips
//! overlap in time: the import reported those (`block_check`) and they are left out, as
//! is any feed block whose trips overlap on the day asked for. Trips without one are
//! chained (many real feeds have no blocks): per route, in start order, a trip joins the
//! block whose last trip ends at this trip's first stop (the terminal) at least
//! `min_layover_s` before it starts, choosing the block that became free last (the
//! tightest fit, which leaves earlier-free buses for earlier trips); otherwise it starts
//! a new block. So a built block never has two trips overlapping in time, and a bus never
//! has to move between terminals without a trip.

use std::collections::BTreeMap;

use super::{Feed, Trip};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BlockOptions {
    /// Minimum time at a terminal between two trips of a built block (default 5 min).
    pub min_layover_s: u32,
}

impl Default for BlockOptions {
    fn default() -> Self {
        BlockOptions { min_layover_s: 300 }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Block {
    /// The feed's block_id, or `auto:{route_id}:{n}` for a built block.
    pub id: String,
    /// Trip ids in running order.
    pub trip_ids: Vec<String>,
    pub start_s: u32,
    pub end_s: u32,
    /// False when the block came from the feed's block_id.
    pub built: bool,
}

/// The blocks of `date`, ordered by start time.
pub fn blocks_for(feed: &Feed, date: jiff::civil::Date, opts: BlockOptions) -> Vec<Block> {
    let trips = feed.trips_on(date);
    let mut from_feed: BTreeMap<&str, Vec<&Trip>> = BTreeMap::new();
    let mut by_route: BTreeMap<&str, Vec<&Trip>> = BTreeMap::new();
    for t in trips {
        match &t.block_id {
            Some(b) => from_feed.entry(b.as_str()).or_default().push(t),
            None => by_route.entry(t.route_id.as_str()).or_default().push(t),
        }
    }
    let mut out: Vec<Block> = from_feed
        .into_iter()
        .filter(|(id, ts)| !feed.rejected_blocks.contains(*id) && !overlapping(ts))
        .map(|(id, ts)| block(id.to_string(), &ts, false))
        .collect();
    for (route, ts) in by_route {
        out.extend(chain(route, &ts, opts));
    }
    out.sort_by(|a, b| (a.start_s, &a.id).cmp(&(b.start_s, &b.id)));
    out
}

/// Whether two of one day's trips overlap (each starts before the other ends), the rule
/// of `block_check`: one bus cannot run them.
fn overlapping(trips: &[&Trip]) -> bool {
    let mut spans: Vec<(u32, u32)> = trips.iter().map(|t| (t.start_s(), t.end_s())).collect();
    spans.sort_unstable();
    let mut latest: Option<u32> = None;
    for (start, end) in spans {
        if latest.is_some_and(|l| start < l) {
            return true;
        }
        latest = Some(latest.map_or(end, |l| l.max(end)));
    }
    false
}

fn block(id: String, trips: &[&Trip], built: bool) -> Block {
    Block {
        id,
        trip_ids: trips.iter().map(|t| t.id.clone()).collect(),
        start_s: trips.iter().map(|t| t.start_s()).min().unwrap_or(0),
        end_s: trips.iter().map(|t| t.end_s()).max().unwrap_or(0),
        built,
    }
}

/// Chains one route's trips (already in start order) into blocks.
fn chain(route: &str, trips: &[&Trip], opts: BlockOptions) -> Vec<Block> {
    // (end time, terminal, trips)
    let mut open: Vec<(u32, &str, Vec<&Trip>)> = Vec::new();
    for &t in trips {
        let fit = open
            .iter()
            .enumerate()
            .filter(|(_, (end, terminal, _))| {
                *terminal == t.first_stop() && end.saturating_add(opts.min_layover_s) <= t.start_s()
            })
            .max_by_key(|(_, (end, _, _))| *end)
            .map(|(i, _)| i);
        match fit {
            Some(i) => {
                let b = &mut open[i];
                b.0 = t.end_s();
                b.1 = t.last_stop();
                b.2.push(t);
            }
            None => open.push((t.end_s(), t.last_stop(), vec![t])),
        }
    }
    open.into_iter()
        .enumerate()
        .map(|(n, (_, _, ts))| block(format!("auto:{route}:{}", n + 1), &ts, true))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gtfs::{Service, StopTime};
    use proptest::prelude::*;

    fn trip(id: &str, from: &str, to: &str, start: u32, end: u32) -> Trip {
        let st = |stop: &str, t: u32| StopTime {
            stop_id: stop.into(),
            arrival_s: t,
            departure_s: t,
            timed: true,
        };
        Trip {
            id: id.into(),
            route_id: "R".into(),
            service_id: "S".into(),
            block_id: None,
            shape_id: None,
            direction_id: None,
            headsign: None,
            stop_times: vec![st(from, start), st(to, end)],
            from_frequency: None,
        }
    }

    fn feed(trips: Vec<Trip>) -> Feed {
        let mut f = Feed::default();
        f.services.insert(
            "S".into(),
            Service {
                weekdays: [true; 7],
                start: Some(jiff::civil::date(2026, 1, 1)),
                end: Some(jiff::civil::date(2026, 12, 31)),
                ..Default::default()
            },
        );
        f.trips = trips;
        f
    }

    #[test]
    fn chains_by_terminal_and_layover() {
        let ids = |t4_start: u32| -> Vec<Vec<String>> {
            let f = feed(vec![
                trip("t1", "A", "B", 3600, 5400),
                trip("t2", "B", "A", 5400 + 300, 7200), // exactly the layover after t1
                trip("t3", "B", "A", 5500, 7300),       // 100 s after t1: a second bus
                trip("t4", "A", "B", t4_start, 9000),
            ]);
            blocks_for(&f, jiff::civil::date(2026, 6, 1), BlockOptions::default())
                .into_iter()
                .map(|b| b.trip_ids)
                .collect()
        };
        // Both buses are free at A (7,500 and 7,600): the tightest fit (free last) takes it.
        assert_eq!(ids(7650), [vec!["t1", "t2"], vec!["t3", "t4"]]);
        // Only the first bus is free 5 min before 7,599.
        assert_eq!(ids(7599), [vec!["t1", "t2", "t4"], vec!["t3"]]);
        // Neither is (7,499 < 7,200 + 300): a third bus.
        assert_eq!(ids(7499).len(), 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Built blocks never overlap in time for one vehicle, respect the layover and
        /// never jump between terminals; every trip is in exactly one block.
        #[test]
        fn built_blocks_never_overlap(
            raw in proptest::collection::vec((0u32..3, 0u32..3, 0u32..80_000, 60u32..7_200), 1..60),
            layover in 0u32..1_800,
        ) {
            let stops = ["A", "B", "C"];
            let trips: Vec<Trip> = raw.iter().enumerate()
                .map(|(i, (f, t, s, d))| trip(&format!("t{i}"), stops[*f as usize], stops[*t as usize], *s, s + d))
                .collect();
            let f = feed(trips);
            let blocks = blocks_for(&f, jiff::civil::date(2026, 6, 1), BlockOptions { min_layover_s: layover });
            let by_id: std::collections::HashMap<&str, &Trip> = f.trips.iter().map(|t| (t.id.as_str(), t)).collect();
            let mut seen = std::collections::HashSet::new();
            for b in &blocks {
                for w in b.trip_ids.windows(2) {
                    let (x, y) = (by_id[w[0].as_str()], by_id[w[1].as_str()]);
                    prop_assert!(x.end_s() + layover <= y.start_s(), "{} then {} overlap", x.id, y.id);
                    prop_assert_eq!(x.last_stop(), y.first_stop());
                }
                for t in &b.trip_ids {
                    prop_assert!(seen.insert(t.clone()), "trip {} in two blocks", t);
                }
            }
            prop_assert_eq!(seen.len(), f.trips.len());
        }
    }
}
