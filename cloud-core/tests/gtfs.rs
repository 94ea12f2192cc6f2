//! The GTFS importer against real feeds (`tests/fixtures/gtfs/`, provenance there) and
//! small hand-made ones. Expected counts are derived by hand from the feeds' files (the
//! comments show the arithmetic), not from the importer's output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use garasi_cloud::gtfs::blocks::{blocks_for, BlockOptions};
use garasi_cloud::gtfs::{import_files, import_zip, GtfsError, Severity};
use jiff::civil::date;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/gtfs/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn no_overlaps(feed: &garasi_cloud::gtfs::Feed, d: jiff::civil::Date) {
    let trips: BTreeMap<&str, &garasi_cloud::gtfs::Trip> =
        feed.trips.iter().map(|t| (t.id.as_str(), t)).collect();
    for b in blocks_for(feed, d, BlockOptions::default()) {
        if !b.built {
            continue;
        }
        for w in b.trip_ids.windows(2) {
            let (x, y) = (trips[w[0].as_str()], trips[w[1].as_str()]);
            assert!(x.end_s() + 300 <= y.start_s(), "{} overlaps {}", x.id, y.id);
        }
    }
}

#[test]
fn google_sample_feed() {
    let (feed, report) = import_zip(&fixture("google-sample-feed-1.zip")).unwrap();
    assert_eq!(feed.routes.len(), 5);
    assert_eq!(feed.stops.len(), 9);
    // Weekday (FULLW): AB1, AB2, BFC1, BFC2 = 4 timed trips; STBA every 30 min
    // 06:00-22:00 (end exclusive) = 32; CITY1 and CITY2 each 4 + 12 + 12 + 18 + 6 = 52.
    assert_eq!(feed.trips_on(date(2007, 6, 5)).len(), 4 + 32 + 2 * 52);
    // 2007-06-04 is a Monday removed from FULLW by calendar_dates; WE does not run.
    assert_eq!(feed.trips_on(date(2007, 6, 4)).len(), 0);
    // Saturday: FULLW + the four AAMV trips of WE.
    assert_eq!(feed.trips_on(date(2007, 6, 9)).len(), 140 + 4);
    assert!(feed.trips_on(date(2011, 1, 3)).is_empty(), "after end_date");
    let blocks = blocks_for(&feed, date(2007, 6, 5), BlockOptions::default());
    let from_feed: Vec<(&str, Vec<&str>)> = blocks
        .iter()
        .filter(|b| !b.built)
        .map(|b| {
            (
                b.id.as_str(),
                b.trip_ids.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        from_feed,
        vec![("1", vec!["AB1", "BFC1"]), ("2", vec!["BFC2", "AB2"])]
    );
    // STBA runs one way only (Stagecoach -> airport) and never returns to its first stop,
    // so with no deadheads every trip is its own block.
    assert_eq!(
        blocks
            .iter()
            .filter(|b| b.id.starts_with("auto:STBA:"))
            .count(),
        32
    );
    assert_eq!(
        blocks.iter().map(|b| b.trip_ids.len()).sum::<usize>(),
        140,
        "every trip in exactly one block"
    );
    no_overlaps(&feed, date(2007, 6, 5));
    assert_eq!(report.errors(), 0, "{:?}", report.issues);
}

#[test]
fn bull_runner_frequencies_and_service_past_midnight() {
    let (feed, report) = import_zip(&fixture("bullrunner-gtfs.zip")).unwrap();
    assert_eq!(feed.routes.len(), 6);
    // 135 rows in stops.txt; ten stops (101, 102, ...) are listed twice, identically.
    assert_eq!(feed.stops.len(), 125);
    // Mondays (service Mo: trips 1, 3, 5, 8, 11, 13), 07:00 to 24:00 = 61,200 s, end
    // exclusive: headway 600 -> 102 starts, 540 -> 114, 720 -> 85.
    assert_eq!(
        feed.trips_on(date(2016, 3, 7)).len(),
        102 + 114 + 85 + 102 + 102 + 102
    );
    // Fridays (Fr: 2, 4, 6, 9, 12, 14), 07:00-17:30 = 37,800 s: 63, 70, 53, 63, 63, 63.
    assert_eq!(feed.trips_on(date(2016, 3, 11)).len(), 63 * 4 + 70 + 53);
    // Saturdays (Su: 7, 10, 15), 14:30-21:30 = 25,200 s: 35, 42, 42.
    assert_eq!(feed.trips_on(date(2016, 3, 12)).len(), 35 + 42 + 42);
    // The last Monday trip of route A starts 23:50 and ends 24:09:43 (a 19:43 loop).
    let last = feed.trips.iter().find(|t| t.id == "1@23:50:00").unwrap();
    assert_eq!(
        (last.start_s(), last.end_s()),
        (85_800, 85_800 + 19 * 60 + 43)
    );
    assert_eq!(last.from_frequency.as_deref(), Some("1"));
    // Route A: a 19:43 (1,183 s) loop every 10 min with a 5 min layover needs
    // ceil(1,483 s / 600 s) = 3 buses.
    let blocks = blocks_for(&feed, date(2016, 3, 7), BlockOptions::default());
    assert_eq!(
        blocks
            .iter()
            .filter(|b| b.id.starts_with("auto:A:"))
            .count(),
        3
    );
    no_overlaps(&feed, date(2016, 3, 7));
    assert_eq!(report.errors(), 0, "{:?}", report.issues);
}

#[test]
fn test_agency_blocks_and_exact_times() {
    let (feed, _report) = import_zip(&fixture("testagency.zip")).unwrap();
    // 15.1 every hour 06:00-10:00:01 and 14:00-18:00:01: 5 + 5 trips.
    assert_eq!(
        feed.trips
            .iter()
            .filter(|t| t.from_frequency.as_deref() == Some("15.1"))
            .count(),
        10
    );
    let blocks = blocks_for(&feed, date(2026, 6, 2), BlockOptions::default());
    let b2 = blocks.iter().find(|b| b.id == "block.2").unwrap();
    let mut ids = b2.trip_ids.clone();
    ids.sort();
    assert_eq!(ids, ["6.2", "7.2", "8.1"]);
    no_overlaps(&feed, date(2026, 6, 2));
}

#[test]
fn bad_feed_is_refused_with_the_missing_files_named() {
    let Err(GtfsError::Unusable { reason, report }) = import_zip(&fixture("badgtfs.zip")) else {
        panic!("the bad feed must be refused");
    };
    assert!(
        reason.contains("agency.txt") && reason.contains("stops.txt"),
        "{reason}"
    );
    assert!(reason.contains("Nothing was imported"));
    let text: Vec<String> = report.issues.iter().map(|i| i.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("bad_agency.txt") && t.contains("did you mean agency.txt")),
        "{text:?}"
    );
}

#[test]
fn transjakarta_without_times_is_explained_not_imported() {
    let Err(GtfsError::Unusable { reason, report }) =
        import_zip(&fixture("transjakarta-community.zip"))
    else {
        panic!("a feed without stop times must be refused");
    };
    assert!(reason.contains("no trip could be imported"), "{reason}");
    let why = report
        .issues
        .iter()
        .find(|i| i.file == "stop_times.txt" && i.line.is_none())
        .unwrap_or_else(|| {
            panic!(
                "a whole-file finding for stop_times.txt: {:#?}",
                report.summary
            )
        });
    assert_eq!(why.severity, Severity::Error);
    assert!(
        why.message
            .contains("none of the 12845 rows has an arrival or departure time"),
        "{}",
        why.message
    );
    assert!(report.imported.is_empty(), "nothing imported");
}

fn files(list: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    list.iter()
        .map(|(n, c)| (n.to_string(), c.as_bytes().to_vec()))
        .collect()
}

#[test]
fn hand_made_feed_rejects_what_is_unusable_and_says_where() {
    let feed = files(&[
        ("agency.txt", "agency_name,agency_url,agency_timezone\nDepot Co,https://x,Asia/Jakarta\n"),
        ("stops.txt", "\u{feff}stop_id,stop_name,stop_lat,stop_lon\nA,Terminal A,-6.2,106.8\nB,Terminal B,-6.3,106.9\nM,Middle,-6.25,106.85\n"),
        ("routes.txt", "route_id,route_short_name,route_type\nR1,1,3\n"),
        ("calendar.txt", "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nWK,1,1,1,1,1,0,0,20260101,20261231\n"),
        ("calendar_dates.txt", "service_id,date,exception_type\nWK,20260606,1\n"),
        ("trips.txt", "route_id,service_id,trip_id\nR1,WK,late\nR1,WK,notimes\nR9,WK,badroute\nR1,WK,freq\n"),
        ("stop_times.txt", "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n\
late,23:40:00,23:40:00,A,1\nlate,,,M,2\nlate,24:20:00,24:21:00,B,3\n\
notimes,,,A,1\nnotimes,,,B,2\n\
freq,6:00:00,6:00:00,A,1\nfreq,6:30:00,6:30:00,B,2\n"),
        ("frequencies.txt", "trip_id,start_time,end_time,headway_secs,exact_times\nfreq,06:00:00,07:00:00,1200,1\n"),
    ]);
    let (feed, report) = import_files(&feed).unwrap();
    let ids: Vec<&str> = feed.trips.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        ["freq@06:00:00", "freq@06:20:00", "freq@06:40:00", "late"]
    );
    let late = feed.trips.iter().find(|t| t.id == "late").unwrap();
    assert_eq!(late.end_s(), 24 * 3600 + 20 * 60, "past midnight");
    assert_eq!(
        late.stop_times[1].arrival_s,
        24 * 3600,
        "interpolated half way"
    );
    let errors: Vec<String> = report
        .issues
        .iter()
        .filter(|i| i.severity == Severity::Error)
        .map(|i| i.to_string())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("trips.txt:4 [route_id]") && e.contains("\"R9\"")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("stop_times.txt:5")
            && e.contains("trip \"notimes\" rejected: its first stop has no time")),
        "{errors:?}"
    );
    // Saturday 2026-06-06 was added by calendar_dates.
    assert_eq!(feed.trips_on(date(2026, 6, 6)).len(), 4);
    assert_eq!(feed.trips_on(date(2026, 6, 7)).len(), 0);
}

#[test]
fn not_a_zip_is_a_clear_error() {
    let e = import_zip(b"route_id,route_type\n").unwrap_err();
    assert!(e.to_string().contains("not a zip file"), "{e}");
}
