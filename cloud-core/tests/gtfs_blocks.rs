//! Feed blocks (`block_id`) whose trips overlap in time: reported as an error of that
//! block with its trips and times, not published, and the rest of the feed imports.
//! Every expected result is derived by hand in the comments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use garasi_cloud::gtfs::blocks::{blocks_for, BlockOptions};
use garasi_cloud::gtfs::{import_files, Severity};
use jiff::civil::date;

fn files(list: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    list.iter()
        .map(|(n, c)| (n.to_string(), c.as_bytes().to_vec()))
        .collect()
}

/// - B1: t1 06:00-07:30 and t2 07:00-08:00, both weekdays: overlap (07:00 < 07:30).
/// - B2: w1 06:00-07:00 weekdays, s1 06:30-07:30 weekends: they overlap on the clock but
///   never run on the same day, so the block is fine.
/// - B3: a 07:00-08:00 and b 08:00-09:00 (touching): fine.
/// - B4: h1 10:00-11:00 weekdays, h2 10:30-11:30 of HOL, a service with no weekly
///   pattern that runs only on Wednesday 2026-06-03 (calendar_dates): overlap that day.
/// - c1, c2: no block_id, built into blocks as before.
fn feed() -> BTreeMap<String, Vec<u8>> {
    files(&[
        ("agency.txt", "agency_name,agency_url,agency_timezone\nDepot,https://x,Asia/Jakarta\n"),
        ("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\nA,A,-6.2,106.8\nB,B,-6.3,106.9\n"),
        ("routes.txt", "route_id,route_short_name,route_type\nR1,1,3\n"),
        ("calendar.txt", "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n\
WK,1,1,1,1,1,0,0,20260101,20261231\nWE,0,0,0,0,0,1,1,20260101,20261231\n"),
        ("calendar_dates.txt", "service_id,date,exception_type\nHOL,20260603,1\n"),
        ("trips.txt", "route_id,service_id,trip_id,block_id\n\
R1,WK,t1,B1\nR1,WK,t2,B1\nR1,WK,w1,B2\nR1,WE,s1,B2\nR1,WK,a,B3\nR1,WK,b,B3\n\
R1,WK,h1,B4\nR1,HOL,h2,B4\nR1,WK,c1,\nR1,WK,c2,\n"),
        ("stop_times.txt", "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n\
t1,06:00:00,06:00:00,A,1\nt1,07:30:00,07:30:00,B,2\n\
t2,07:00:00,07:00:00,B,1\nt2,08:00:00,08:00:00,A,2\n\
w1,06:00:00,06:00:00,A,1\nw1,07:00:00,07:00:00,B,2\n\
s1,06:30:00,06:30:00,B,1\ns1,07:30:00,07:30:00,A,2\n\
a,07:00:00,07:00:00,A,1\na,08:00:00,08:00:00,B,2\n\
b,08:00:00,08:00:00,B,1\nb,09:00:00,09:00:00,A,2\n\
h1,10:00:00,10:00:00,A,1\nh1,11:00:00,11:00:00,B,2\n\
h2,10:30:00,10:30:00,B,1\nh2,11:30:00,11:30:00,A,2\n\
c1,12:00:00,12:00:00,A,1\nc1,13:00:00,13:00:00,B,2\n\
c2,13:10:00,13:10:00,B,1\nc2,14:00:00,14:00:00,A,2\n"),
    ])
}

fn block_ids(feed: &garasi_cloud::gtfs::Feed, d: jiff::civil::Date) -> Vec<String> {
    let mut ids: Vec<String> = blocks_for(feed, d, BlockOptions::default())
        .into_iter()
        .map(|b| b.id)
        .collect();
    ids.sort();
    ids
}

#[test]
fn overlapping_blocks_are_reported_and_not_published_the_rest_imports() {
    let (feed, report) = import_files(&feed()).unwrap();
    // All ten trips are imported; only two blocks are held back.
    assert_eq!(feed.trips.len(), 10);
    assert_eq!(report.imported.get("blocks_rejected"), Some(&2));
    let mut rejected: Vec<&String> = feed.rejected_blocks.iter().collect();
    rejected.sort();
    assert_eq!(rejected, ["B1", "B4"]);

    let errors: Vec<String> = report
        .issues
        .iter()
        .filter(|i| i.severity == Severity::Error && i.field.as_deref() == Some("block_id"))
        .map(|i| i.to_string())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("error: trips.txt [block_id]: block \"B1\": trips \"t1\" (06:00:00-07:30:00) and \"t2\" (07:00:00-08:00:00) overlap in time on 2026-01-01;"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("not published"), "{}", errors[0]);
    assert!(
        errors[1].contains("block \"B4\": trips \"h1\" (10:00:00-11:00:00) and \"h2\" (10:30:00-11:30:00) overlap in time on 2026-06-03"),
        "{}",
        errors[1]
    );

    // Monday 2026-06-01: B2 (w1), B3 and the built block c1+c2 (c2 starts at B, where
    // c1 ends, 10 min later).
    assert_eq!(
        block_ids(&feed, date(2026, 6, 1)),
        ["B2", "B3", "auto:R1:1"]
    );
    // Wednesday 2026-06-03, HOL's day: the same; B4 stays out on every day.
    assert_eq!(
        block_ids(&feed, date(2026, 6, 3)),
        ["B2", "B3", "auto:R1:1"]
    );
    // Saturday: only s1 of B2 runs.
    assert_eq!(block_ids(&feed, date(2026, 6, 6)), ["B2"]);
}

#[test]
fn a_feed_without_overlaps_has_no_block_findings() {
    let mut f = feed();
    // Move t2 to start when t1 ends, and h2 after h1: nothing overlaps any more.
    let st = String::from_utf8(f["stop_times.txt"].clone())
        .unwrap()
        .replace("t2,07:00:00,07:00:00", "t2,07:30:00,07:30:00")
        .replace("h2,10:30:00,10:30:00", "h2,11:00:00,11:00:00");
    f.insert("stop_times.txt".into(), st.into_bytes());
    let (feed, report) = import_files(&f).unwrap();
    assert!(feed.rejected_blocks.is_empty());
    assert!(
        !report
            .issues
            .iter()
            .any(|i| i.field.as_deref() == Some("block_id")),
        "{:?}",
        report.issues
    );
    assert_eq!(
        block_ids(&feed, date(2026, 6, 3)),
        ["B1", "B2", "B3", "B4", "auto:R1:1"]
    );
}

#[test]
fn the_publisher_writes_no_record_for_an_overlapping_block() {
    use garasi_cloud::timetable::{plan_records, Plan, Prepared, BLOCK_RECORD};
    let (feed, _) = import_files(&feed()).unwrap();
    let plan: Plan = serde_json::from_value(serde_json::json!({
        "timetable": 1,
        "routes": [{"route": "R1"}],
    }))
    .unwrap();
    let tz = jiff::tz::TimeZone::get("Asia/Jakarta").unwrap();
    let edits = plan_records(&plan, &Prepared::new(feed), &tz, &[date(2026, 6, 3)]);
    let mut blocks: Vec<&str> = edits
        .iter()
        .filter(|e| e.record_type == BLOCK_RECORD)
        .map(|e| e.record_id.as_str())
        .collect();
    blocks.sort();
    // Record ids are `{YYYYMMDD}-{block}` (the built block's ':' made safe).
    assert_eq!(blocks.len(), 3, "{blocks:?}");
    assert!(blocks[0].starts_with("20260603-B2"), "{blocks:?}");
    assert!(blocks[1].starts_with("20260603-B3"), "{blocks:?}");
    assert!(blocks[2].starts_with("20260603-auto"), "{blocks:?}");
}
