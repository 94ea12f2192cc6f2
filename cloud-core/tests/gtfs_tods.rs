//! TODS with a GTFS feed: supplement files (`*_supplement.txt`, rows matched by the
//! GTFS file's primary key; `TODS_delete=1` removes, other values update, unmatched rows
//! are added). Expected results derived by hand in the comments, from the TODS
//! reference's rules (MobilityData/transit-operational-data-standard, spec/index.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use garasi_cloud::gtfs::{import_files, Severity};

fn files(list: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    list.iter()
        .map(|(n, c)| (n.to_string(), c.as_bytes().to_vec()))
        .collect()
}

/// The base feed: stops 1, 2, 3, A, B; trips t1 and t2 (A -> B) on weekdays.
fn base() -> Vec<(&'static str, &'static str)> {
    vec![
        ("agency.txt", "agency_name,agency_url,agency_timezone\nDepot,https://x,Asia/Jakarta\n"),
        ("stops.txt", "stop_id,stop_name,stop_desc,stop_lat,stop_lon\n1,One,Unmodified,-6.1,106.1\n2,Two,Deleted,-6.2,106.2\n3,Three,Modified,-6.3,106.3\nA,Terminal A,,-6.4,106.4\nB,Terminal B,,-6.5,bad\n"),
        ("routes.txt", "route_id,route_short_name,route_type\nR1,1,3\n"),
        ("calendar.txt", "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nWK,1,1,1,1,1,0,0,20260101,20261231\n"),
        ("trips.txt", "route_id,service_id,trip_id\nR1,WK,t1\nR1,WK,t2\n"),
        ("stop_times.txt", "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n\
t1,06:00:00,06:00:00,A,1\nt1,06:30:00,06:30:00,1,2\nt1,07:00:00,07:00:00,3,3\n\
t2,08:00:00,08:00:00,A,1\nt2,09:00:00,09:00:00,3,2\n"),
    ]
}

#[test]
fn supplements_delete_update_and_add_rows_by_primary_key() {
    let mut list = base();
    list.extend([
        // The reference's own example (stop 2 deleted, 3 changed, 4 added); B's bad
        // longitude corrected.
        ("stops_supplement.txt", "stop_id,stop_name,stop_desc,TODS_delete\n2,,,1\n3,Three (new),Has been modified by TODS,\n4,Four,New in TODS,\n"),
        ("trips_supplement.txt", "trip_id,route_id,service_id,TODS_trip_type,TODS_delete\nt2,,,,1\ndh1,R1,CREW,Deadhead,\n"),
        ("stop_times_supplement.txt", "trip_id,stop_sequence,arrival_time,departure_time,stop_id\nt1,02,06:40:00,06:40:00,\ndh1,1,05:30:00,05:30:00,B\ndh1,2,05:50:00,05:50:00,A\n"),
        ("calendar_supplement.txt", "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nCREW,1,1,1,1,1,1,0,20260101,20261231\n"),
    ]);
    // Stop 4 comes without a position (kept, with a warning, like any stop without one);
    // B's bad longitude is fixed by a value.
    let mut f = files(&list);
    f.insert(
        "stops_supplement.txt".into(),
        b"stop_id,stop_name,stop_desc,stop_lat,stop_lon,TODS_delete\n2,,,,,1\n3,Three (new),Has been modified by TODS,,,\n4,Four,New in TODS,,,\nB,,,,106.5,\n"
            .to_vec(),
    );
    let (feed, report) = import_files(&f).unwrap();

    let mut stops: Vec<(&str, &str)> = feed
        .stops
        .iter()
        .map(|s| (s.id.as_str(), s.name.as_str()))
        .collect();
    stops.sort();
    // 2 deleted; 3 renamed; 4 added; B's longitude now set.
    assert_eq!(
        stops,
        [
            ("1", "One"),
            ("3", "Three (new)"),
            ("4", "Four"),
            ("A", "Terminal A"),
            ("B", "Terminal B")
        ]
    );
    let b = feed.stops.iter().find(|s| s.id == "B").unwrap();
    assert_eq!(b.lon, 106.5);

    let mut trips: Vec<&str> = feed.trips.iter().map(|t| t.id.as_str()).collect();
    trips.sort();
    // t2 deleted; dh1 added on the crew service the calendar supplement added.
    assert_eq!(trips, ["dh1", "t1"]);
    let t1 = feed.trips.iter().find(|t| t.id == "t1").unwrap();
    // Sequence "02" matches row 2: its time updated, its stop (blank) kept.
    assert_eq!(t1.stop_times[1].arrival_s, 6 * 3600 + 40 * 60);
    assert_eq!(t1.stop_times[1].stop_id, "1");
    let dh1 = feed.trips.iter().find(|t| t.id == "dh1").unwrap();
    assert_eq!(
        (dh1.service_id.as_str(), dh1.first_stop(), dh1.last_stop()),
        ("CREW", "B", "A")
    );
    assert!(feed.services.contains_key("CREW"));

    // Findings keep the GTFS file's lines; a row the supplement added is numbered after
    // the file's last line (stops.txt has 6 lines, so stop 4 is line 7).
    let found: Vec<String> = report.issues.iter().map(|i| i.to_string()).collect();
    assert!(
        found.iter().any(|e| e.starts_with("warning: stops.txt:7")
            && e.contains("stop \"4\" has no valid coordinates")),
        "{found:?}"
    );
    assert!(
        !found.iter().any(|e| e.contains("stops.txt:6")),
        "B's longitude was fixed: {found:?}"
    );
    // t2's stop times are ignored with it (reported as rows of a trip not imported).
    assert!(
        found
            .iter()
            .any(|e| e.starts_with("error: stop_times.txt:5") && e.contains("\"t2\"")),
        "{found:?}"
    );
    let merged: Vec<&str> = report
        .issues
        .iter()
        .filter(|i| i.severity == Severity::Warning && i.message.starts_with("merged with"))
        .map(|i| i.file.as_str())
        .collect();
    assert_eq!(
        merged.len(),
        4,
        "one note per supplemented file: {merged:?}"
    );
    assert!(
        !report
            .issues
            .iter()
            .any(|i| i.message.contains("not a GTFS file name")),
        "supplement files are known"
    );
}
