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

/// Block B1 runs t1 (A 06:00 -> M 06:30 -> B 07:00) and t2 (B 07:10 -> A 08:10). Run 1
/// signs on at A and drives t1 to M, where run 2 relieves it (mid-trip) and drives the
/// rest of t1 and all of t2: the block is split between two drivers at M, 06:30.
fn with_runs() -> BTreeMap<String, Vec<u8>> {
    let mut list = base();
    list.retain(|(n, _)| !matches!(*n, "stops.txt" | "trips.txt" | "stop_times.txt"));
    list.extend([
        ("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\nA,A,-6.1,106.1\nM,M,-6.2,106.2\nB,B,-6.3,106.3\nX,X,-6.4,106.4\n"),
        ("trips.txt", "route_id,service_id,trip_id,block_id\nR1,WK,t1,B1\nR1,WK,t2,B1\n"),
        ("stop_times.txt", "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n\
t1,06:00:00,06:00:00,A,1\nt1,06:30:00,06:30:00,M,2\nt1,07:00:00,07:00:00,B,3\n\
t2,07:10:00,07:10:00,B,1\nt2,08:10:00,08:10:00,A,2\n"),
        // Lines: 2-3 run 1; 4-5 run 2; 6 run 3 relieves at X (not on t1: error, line 6);
        // 7-8 run 4 on t1 and t2 at once (07:10 < 07:30): the run is refused (line 8);
        // 9 run 5 on service NOPE (error, line 9).
        ("run_events.txt", "service_id,run_id,event_sequence,piece_id,block_id,event_type,trip_id,start_location,start_time,start_mid_trip,end_location,end_time,end_mid_trip\n\
WK,1,10,,,Sign-in,,A,05:45:00,,A,05:50:00,\n\
WK,1,20,p1,,Operator,t1,A,06:00:00,2,M,06:30:00,1\n\
WK,2,10,p2,B1,Operator,t1,M,06:30:00,1,B,07:00:00,2\n\
WK,2,20,p2,,Operator,t2,B,07:10:00,,A,08:10:00,\n\
WK,3,10,,,Operator,t1,X,06:30:00,1,B,07:00:00,\n\
WK,4,10,,,Operator,t1,A,06:00:00,,B,07:30:00,\n\
WK,4,20,,,Operator,t2,B,07:10:00,,A,08:10:00,\n\
NOPE,5,10,,,Operator,t2,B,07:10:00,,A,08:10:00,\n"),
        ("employee_run_dates.txt", "date,service_id,run_id,employee_id\n20260601,WK,1,E100\n20260601,WK,2,E200\n20260601,WK,9,E300\n"),
        ("vehicles.txt", "vehicle_id,vehicle_label,license_plate\nV1,Bus 1,B 1234 XY\nV2,,\nV1,,\n"),
        ("vehicle_assignments.txt", "date,block_id,vehicle_id\n20260601,B1,V1\n"),
    ]);
    files(&list)
}

#[test]
fn runs_split_a_block_at_a_relief_point() {
    let (feed, report) = import_files(&with_runs()).unwrap();
    let runs: Vec<(&str, usize)> = feed
        .tods
        .runs
        .iter()
        .map(|r| (r.run_id.as_str(), r.events.len()))
        .collect();
    assert_eq!(
        runs,
        [("1", 2), ("2", 2)],
        "runs 3 and 4 refused, 5 has no service"
    );
    let r1 = &feed.tods.runs[0];
    assert_eq!(
        (r1.start_s(), r1.end_s()),
        (5 * 3600 + 45 * 60, 6 * 3600 + 30 * 60)
    );
    // Run 1's drive takes its block from the trip; it ends mid-trip at M.
    let drive = &r1.events[1];
    assert_eq!(
        (
            drive.block_id.as_deref(),
            drive.end_location.as_str(),
            drive.end_mid_trip
        ),
        (Some("B1"), "M", true)
    );
    assert!(!r1.events[0].drives(), "signing in is not driving");
    let r2 = &feed.tods.runs[1];
    assert_eq!(
        (r2.events[0].start_location.as_str(), r2.events[0].start_s),
        ("M", 6 * 3600 + 30 * 60)
    );

    let errors: Vec<String> = report
        .issues
        .iter()
        .filter(|i| i.severity == Severity::Error)
        .map(|i| i.to_string())
        .collect();
    for (at, text) in [
        (
            "run_events.txt:6 [start_location]",
            "relief at \"X\", which is not a stop of trip \"t1\"",
        ),
        (
            "run_events.txt:8",
            "trips \"t1\" (06:00:00-07:30:00) and \"t2\" (07:10:00-08:10:00) overlap in time",
        ),
        ("run_events.txt:9 [service_id]", "service \"NOPE\""),
        ("employee_run_dates.txt:4 [run_id]", "run \"9\" (WK)"),
        ("vehicles.txt:4 [vehicle_id]", "duplicate vehicle_id \"V1\""),
    ] {
        assert!(
            errors.iter().any(|e| e.contains(at) && e.contains(text)),
            "{at}: {text}\n{errors:#?}"
        );
    }
    assert_eq!(errors.len(), 5, "{errors:#?}");
    let employees: Vec<(&str, &str)> = feed
        .tods
        .employee_run_dates
        .iter()
        .map(|e| (e.run_id.as_str(), e.employee_id.as_str()))
        .collect();
    assert_eq!(employees, [("1", "E100"), ("2", "E200")]);
    assert_eq!(feed.tods.vehicles.len(), 2);
    assert_eq!(
        feed.tods.vehicles[0].license_plate.as_deref(),
        Some("B 1234 XY")
    );
    assert!(report
        .issues
        .iter()
        .any(|i| i.file == "vehicle_assignments.txt" && i.message.contains("not read yet")));
    assert_eq!(report.imported.get("runs"), Some(&2));
}

#[test]
fn a_feed_without_tods_has_no_runs() {
    let (feed, report) = import_files(&files(&base())).unwrap();
    assert!(feed.tods.runs.is_empty());
    assert_eq!(report.imported.get("runs"), None);
}

/// Runs reach the depot as `run` master records with the blocks they drive, their events
/// on the clock, and the employees on them that day.
#[test]
fn runs_are_published_with_the_blocks_they_drive() {
    use garasi_cloud::timetable::{plan_records, Plan, Prepared, RUN_RECORD, STOP_RECORD};
    let (feed, _) = import_files(&with_runs()).unwrap();
    let plan: Plan = serde_json::from_value(serde_json::json!({
        "timetable": 1,
        "routes": [{"route": "R1"}],
    }))
    .unwrap();
    let tz = jiff::tz::TimeZone::get("Asia/Jakarta").unwrap();
    let day = jiff::civil::date(2026, 6, 1); // a Monday: WK runs
    let edits = plan_records(&plan, &Prepared::new(feed), &tz, &[day]);
    let runs: Vec<&garasi_cloud::timetable::Edit> = edits
        .iter()
        .filter(|e| e.record_type == RUN_RECORD)
        .collect();
    assert_eq!(runs.len(), 2);
    let field = |e: &garasi_cloud::timetable::Edit, name: &str| {
        e.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| match v {
                garasi_sync_protocol::record::FieldValue::Text(t) => t.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default()
    };
    let r1 = runs.iter().find(|e| field(e, "run") == "1").unwrap();
    assert!(
        field(r1, "blocks").contains("20260601-B1"),
        "{}",
        field(r1, "blocks")
    );
    assert!(field(r1, "employees").contains("E100"));
    // 06:30 in Jakarta (UTC+7) on 2026-06-01: 2026-05-31T23:30:00Z.
    let relief_ms = 1_780_270_200_000i64;
    assert!(
        field(r1, "events").contains(&format!("\"end_ms\":{relief_ms}")),
        "{}",
        field(r1, "events")
    );
    assert!(field(r1, "events").contains("\"to\":\"stop-M\""));
    // M, the relief point, is published as a stop too.
    assert!(edits
        .iter()
        .any(|e| e.record_type == STOP_RECORD && e.record_id == "stop-M"));
    // Not on a Sunday: WK does not run.
    let sunday = plan_records(
        &plan,
        &Prepared::new(import_files(&with_runs()).unwrap().0),
        &tz,
        &[jiff::civil::date(2026, 6, 7)],
    );
    assert!(!sunday.iter().any(|e| e.record_type == RUN_RECORD));
}

/// The review's cases: ids are text in primary keys (`01` is not `1`); a supplement for a
/// file the feed lacks adds its rows (a crew calendar); a stray field past a row's header
/// does not fill a column only the supplement has.
#[test]
fn supplement_keys_are_text_and_a_supplement_may_stand_alone() {
    let mut list = base();
    list.retain(|(n, _)| !matches!(*n, "stops.txt" | "calendar.txt" | "trips.txt"));
    list.extend([
        ("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\n1,One,-6.1,106.1\n01,ZeroOne,-6.1,106.1\n3,Three,-6.3,106.3\nA,A,-6.4,106.4\nB,B,-6.5,106.5\n"),
        ("stops_supplement.txt", "stop_id,TODS_delete\n1,1\n"),
        ("calendar_dates.txt", "service_id,date,exception_type\nWK,20260601,1\n"),
        ("calendar_supplement.txt", "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nCREW,1,1,1,1,1,0,0,20260101,20261231\n"),
        ("trips.txt", "route_id,service_id,trip_id\nR1,WK,t1,JUNK\nR1,WK,t2\n"),
        ("trips_supplement.txt", "trip_id,block_id\nt2,B9\n"),
    ]);
    let (feed, report) = import_files(&files(&list)).unwrap();
    let mut stops: Vec<&str> = feed.stops.iter().map(|s| s.id.as_str()).collect();
    stops.sort();
    assert_eq!(stops, ["01", "3", "A", "B"], "only stop 1 deleted");
    assert!(feed.services.contains_key("CREW"), "{:?}", report.issues);
    let t1 = feed.trips.iter().find(|t| t.id == "t1").unwrap();
    assert_eq!(t1.block_id, None, "the stray field is not a block id");
    let t2 = feed.trips.iter().find(|t| t.id == "t2").unwrap();
    assert_eq!(t2.block_id.as_deref(), Some("B9"));
}

/// Runs on trips without a block_id drive the blocks the importer builds: published with
/// them. Run record ids stay apart when service and run ids contain the separator.
#[test]
fn runs_on_built_blocks_are_published_and_run_ids_never_collide() {
    use garasi_cloud::gtfs::tods::Run;
    use garasi_cloud::timetable::{plan_records, run_record_id, Plan, Prepared, RUN_RECORD};
    let mut f = with_runs();
    let trips = "route_id,service_id,trip_id\nR1,WK,t1\nR1,WK,t2\n";
    f.insert("trips.txt".into(), trips.as_bytes().to_vec());
    let (feed, _) = import_files(&f).unwrap();
    let plan: Plan =
        serde_json::from_value(serde_json::json!({"timetable": 1, "routes": [{"route": "R1"}]}))
            .unwrap();
    let tz = jiff::tz::TimeZone::get("Asia/Jakarta").unwrap();
    let day = jiff::civil::date(2026, 6, 1);
    let edits = plan_records(&plan, &Prepared::new(feed), &tz, &[day]);
    let runs: Vec<String> = edits
        .iter()
        .filter(|e| e.record_type == RUN_RECORD)
        .map(|e| format!("{:?}", e.fields))
        .collect();
    assert_eq!(runs.len(), 2, "runs 1 and 2 drive the built block");
    assert!(runs.iter().all(|r| r.contains("20260601-auto")), "{runs:?}");

    let run = |service: &str, run: &str| Run {
        service_id: service.into(),
        run_id: run.into(),
        events: vec![],
    };
    assert_ne!(
        run_record_id(day, &run("a/b", "c")),
        run_record_id(day, &run("a", "b/c"))
    );
}

/// The last review's amplification: one supplement row that matches many rows of the
/// file (duplicate keys) has its values copied into each. Those bytes count as unpacked,
/// so 2,000 copies of a 60 KB value (120 MB, from a few KB of zip) hit the limit instead
/// of running through the parser.
#[test]
fn a_supplement_copied_into_many_rows_counts_against_the_unpacked_limit() {
    use garasi_cloud::gtfs::{import_files_with, GtfsError, LimitKind, Limits};
    let mut list: Vec<(&str, String)> = base()
        .into_iter()
        .map(|(n, t)| (n, t.to_string()))
        .collect();
    list.retain(|(n, _)| *n != "stop_times.txt");
    let mut st = String::from("trip_id,arrival_time,departure_time,stop_id,stop_sequence\n");
    for _ in 0..2_000 {
        st.push_str("t1,06:00:00,06:00:00,A,1\n");
    }
    list.push(("stop_times.txt", st));
    list.push((
        "stop_times_supplement.txt",
        format!(
            "trip_id,stop_sequence,stop_headsign\nt1,1,{}\n",
            "x".repeat(60_000)
        ),
    ));
    let files: BTreeMap<String, Vec<u8>> = list
        .into_iter()
        .map(|(n, t)| (n.to_string(), t.into_bytes()))
        .collect();
    let limits = Limits {
        max_unpacked_bytes: 10 << 20,
        ..Limits::default()
    };
    match import_files_with(&files, &limits) {
        Err(GtfsError::Limit(hit)) => assert_eq!(hit.kind, LimitKind::UnpackedBytes),
        Err(e) => panic!("{e}"),
        Ok((_, report)) => panic!("imported: {:?}", report.imported),
    }
}
