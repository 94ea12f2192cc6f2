//! Tests of the feed block overlap check (`block_check.rs`): against trying every day
//! and every pair of trips, its work bound, and the publish-time guard behind it.

use super::*;
use crate::gtfs::blocks::{blocks_for, BlockOptions};
use crate::gtfs::StopTime;
use proptest::prelude::*;

fn day(n: u16) -> jiff::civil::Date {
    jiff::civil::date(2026, 1, 1)
        .checked_add(jiff::Span::new().days(i64::from(n)))
        .unwrap()
}

fn trip(id: String, service: String, block: &str, start: u32, end: u32) -> Trip {
    let st = |t: u32| StopTime {
        stop_id: "A".into(),
        arrival_s: t,
        departure_s: t,
        timed: true,
    };
    Trip {
        id,
        route_id: "R".into(),
        service_id: service,
        block_id: Some(block.into()),
        shape_id: None,
        direction_id: None,
        headsign: None,
        stop_times: vec![st(start), st(end)],
        from_frequency: None,
    }
}

prop_compose! {
    fn service()(
        weekdays in proptest::array::uniform7(any::<bool>()),
        range in proptest::option::of((0u16..60, 0u16..60)),
        added in proptest::collection::vec(0u16..60, 0..3),
        removed in proptest::collection::vec(0u16..60, 0..10),
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

/// Whether two trips of `block` overlap (each starts before the other ends) on a day
/// both run, trying every day and every pair.
fn brute_overlaps(feed: &Feed, block: &str) -> bool {
    let trips: Vec<&Trip> = feed
        .trips
        .iter()
        .filter(|t| t.block_id.as_deref() == Some(block))
        .collect();
    (0..60).map(day).any(|d| {
        let runs = |t: &Trip| {
            feed.services
                .get(&t.service_id)
                .is_some_and(|s| s.runs_on(d))
        };
        trips.iter().enumerate().any(|(i, a)| {
            trips[i + 1..]
                .iter()
                .any(|b| runs(a) && runs(b) && a.start_s() < b.end_s() && b.start_s() < a.end_s())
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]
    /// Exactly the blocks with two trips overlapping on a common day are rejected, and
    /// `blocks_for` never gives a feed block with overlapping trips on any day.
    #[test]
    fn rejects_exactly_the_blocks_that_overlap_on_a_day(
        services in proptest::collection::vec(service(), 1..4),
        raw in proptest::collection::vec((0usize..4, 0usize..3, 0u32..20, 0u32..6), 1..12),
    ) {
        let mut feed = Feed::default();
        for (i, s) in services.iter().enumerate() {
            feed.services.insert(format!("S{i}"), s.clone());
        }
        let blocks = ["B0", "B1", "B2"];
        feed.trips = raw.iter().enumerate().map(|(i, (s, b, start, len))| {
            let svc = format!("S{}", s % services.len());
            // Times in minutes; zero-length trips included.
            trip(format!("t{i}"), svc, blocks[*b], start * 600, (start + len) * 600)
        }).collect();
        let mut report = Report::default();
        check(&mut feed, &mut report);
        for b in blocks {
            prop_assert_eq!(feed.rejected_blocks.contains(b), brute_overlaps(&feed, b), "block {}", b);
        }
        for d in (0..60).map(day) {
            for blk in blocks_for(&feed, d, BlockOptions::default()) {
                let mut spans: Vec<(u32, u32)> = blk.trip_ids.iter()
                    .map(|id| feed.trips.iter().find(|t| &t.id == id).map(|t| (t.start_s(), t.end_s())).unwrap())
                    .collect();
                spans.sort_unstable();
                for (i, a) in spans.iter().enumerate() {
                    for b in &spans[i + 1..] {
                        prop_assert!(!(a.0 < b.1 && b.0 < a.1), "block {} on {} overlaps", blk.id, d);
                    }
                }
            }
        }
    }
}

/// Past the work budget the check stops with a warning naming the first block left
/// unchecked; that block is then not rejected, but `blocks_for` still leaves it out on
/// the day its trips overlap (the publish-time guard), and publishes it on other days.
#[test]
fn past_the_budget_a_warning_and_the_publish_time_guard() {
    let mut feed = Feed::default();
    let weekdays = Service {
        weekdays: [true, true, true, true, true, false, false],
        start: Some(day(0)),
        end: Some(day(59)),
        ..Default::default()
    };
    // A: two trips that overlap on a day when HOL runs too (2026-01-07, a Wednesday).
    let hol = Service {
        added: [day(6)].into_iter().collect(),
        ..Default::default()
    };
    feed.services.insert("WK".into(), weekdays);
    feed.services.insert("HOL".into(), hol);
    feed.trips = vec![
        trip("a1".into(), "WK".into(), "A", 3600, 7200),
        trip("a2".into(), "HOL".into(), "A", 5400, 9000),
    ];
    let mut report = Report::default();
    // A budget of 30 steps: A's overlap is found on its 7th day (2 services looked up a
    // day, plus two sweeps of its 2 trips: 18 steps); B, next, runs out on its 6th day.
    check_within(&mut feed, &mut report, 30);
    // The first block is checked: rejected.
    assert!(feed.rejected_blocks.contains("A"));

    feed.trips
        .push(trip("b1".into(), "WK".into(), "B", 3600, 7200));
    feed.trips
        .push(trip("b2".into(), "HOL".into(), "B", 5400, 9000));
    let mut report = Report::default();
    check_within(&mut feed, &mut report, 30);
    assert!(feed.rejected_blocks.contains("A"));
    assert!(!feed.rejected_blocks.contains("B"), "not checked");
    let warning = report
        .issues
        .iter()
        .find(|i| i.severity == crate::gtfs::Severity::Warning)
        .expect("a warning");
    assert!(
        warning
            .message
            .starts_with("blocks from \"B\" on (in id order) were not checked"),
        "{}",
        warning.message
    );
    let ids = |d| -> Vec<String> {
        blocks_for(&feed, d, BlockOptions::default())
            .into_iter()
            .map(|b| b.id)
            .collect()
    };
    assert_eq!(ids(day(6)), Vec::<String>::new(), "B overlaps on HOL's day");
    assert_eq!(
        ids(day(7)),
        ["B"],
        "B is fine on a plain weekday (a rejected block, A, never is)"
    );
}

/// The report's example: 365 one-day services, five blocks of ten hourly trips a day;
/// the last block has one pair overlapping on one day. Found, and cheaply.
#[test]
fn many_one_day_services_are_checked_in_full() {
    let mut feed = Feed::default();
    for n in 0..365u16 {
        let s = Service {
            added: [day(n)].into_iter().collect(),
            ..Default::default()
        };
        feed.services.insert(format!("D{n}"), s);
    }
    for b in 0..5 {
        for n in 0..365u16 {
            for h in 0..10u32 {
                let start = (6 + h) * 3600;
                let end = if b == 4 && n == 61 && h == 3 {
                    start + 3700
                } else {
                    start + 3000
                };
                feed.trips.push(trip(
                    format!("B{b}-{n}-{h}"),
                    format!("D{n}"),
                    &format!("B{b}"),
                    start,
                    end,
                ));
            }
        }
    }
    let mut report = Report::default();
    let t = std::time::Instant::now();
    check(&mut feed, &mut report);
    let mut rejected: Vec<&String> = feed.rejected_blocks.iter().collect();
    rejected.sort();
    assert_eq!(rejected, ["B4"]);
    let msg = &report.issues[0].message;
    assert!(
        msg.contains("\"B4-61-3\" (09:00:00-10:01:40) and \"B4-61-4\" (10:00:00-10:50:00) overlap in time on 2026-03-03"),
        "{msg}"
    );
    println!(
        "checked 18,250 trips on 365 one-day services in {:?}",
        t.elapsed()
    );
}

/// The review's hostile feed: one block of 3,000 trips all 06:00-20:00, each on its own
/// one-day service (they never meet). Before, every pair was compared (26 s, 938 MB);
/// now days x services plus one sweep per distinct day, and nothing is rejected.
#[test]
fn one_huge_block_of_never_meeting_trips_is_cheap() {
    let mut feed = Feed::default();
    for n in 0..3000u16 {
        let s = Service {
            added: [day(0)
                .checked_add(jiff::Span::new().days(i64::from(n)))
                .unwrap()]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        feed.services.insert(format!("D{n}"), s);
        feed.trips.push(trip(
            format!("t{n}"),
            format!("D{n}"),
            "BIG",
            6 * 3600,
            20 * 3600,
        ));
    }
    let mut report = Report::default();
    let t = std::time::Instant::now();
    check(&mut feed, &mut report);
    assert!(feed.rejected_blocks.is_empty());
    println!(
        "one block, 3,000 trips on 3,000 one-day services: {:?}",
        t.elapsed()
    );
}
