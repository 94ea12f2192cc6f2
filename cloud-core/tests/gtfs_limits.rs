//! Each GTFS import limit refuses a feed that goes past it, naming the limit and the
//! file, and a feed just within every limit still imports; a zip whose directory claims
//! more entries than allowed is refused before the zip library reads that directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;

use garasi_cloud::gtfs::{import_files_with, import_reader, GtfsError, LimitKind, Limits};

fn feed(stop_times_rows: usize) -> BTreeMap<String, Vec<u8>> {
    let mut st = String::from("trip_id,arrival_time,departure_time,stop_id,stop_sequence\n");
    for i in 0..stop_times_rows {
        st.push_str(&format!(
            "t,6:{:02}:00,6:{:02}:00,{},{}\n",
            i % 60,
            i % 60,
            if i % 2 == 0 { "a" } else { "b" },
            i
        ));
    }
    [
        ("agency.txt", "agency_name,agency_url,agency_timezone\nA,https://a,UTC\n".to_string()),
        ("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\na,A,1,1\nb,B,1,2\n".into()),
        ("routes.txt", "route_id,route_type\nr,3\n".into()),
        ("calendar.txt", "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nw,1,1,1,1,1,1,1,20260101,20261231\n".into()),
        ("trips.txt", "route_id,service_id,trip_id\nr,w,t\n".into()),
        ("stop_times.txt", st),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_bytes()))
    .collect()
}

fn refused(files: &BTreeMap<String, Vec<u8>>, limits: Limits) -> (LimitKind, String, String) {
    match import_files_with(files, &limits) {
        Err(GtfsError::Limit(hit)) => (hit.kind, hit.file.clone(), hit.to_string()),
        other => panic!("expected a limit, got {:?}", other.map(|(_, r)| r.imported)),
    }
}

#[test]
fn every_limit_refuses_and_names_itself() {
    let ok = feed(60);
    let tight = Limits {
        max_rows_per_file: 60,
        max_fields_per_row: 10,
        max_row_bytes: 1024,
        max_unpacked_bytes: 100_000,
        max_files: 10,
        max_memory_bytes: 1 << 20,
    };
    let (feed_ok, _) = import_files_with(&ok, &tight).unwrap();
    assert_eq!(feed_ok.trips.len(), 1);

    let (kind, file, msg) = refused(&feed(61), tight);
    assert_eq!(
        (kind, file.as_str()),
        (LimitKind::RowsPerFile, "stop_times.txt")
    );
    assert!(
        msg.contains("--gtfs-max-rows-per-file") && msg.contains("60"),
        "{msg}"
    );

    let mut wide = ok.clone();
    wide.insert(
        "routes.txt".into(),
        b"route_id,route_type\nr,3,1,2,3,4,5,6,7,8,9\n".to_vec(),
    );
    assert_eq!(refused(&wide, tight).0, LimitKind::FieldsPerRow);

    let mut long = ok.clone();
    long.insert(
        "routes.txt".into(),
        format!("route_id,route_type\nr{},3\n", "x".repeat(64 * 1024)).into_bytes(),
    );
    let (kind, file, _) = refused(&long, tight);
    assert_eq!((kind, file.as_str()), (LimitKind::RowBytes, "routes.txt"));

    let (kind, _, _) = refused(
        &feed(60),
        Limits {
            max_unpacked_bytes: 1_000,
            ..tight
        },
    );
    assert_eq!(kind, LimitKind::UnpackedBytes);

    let (kind, _, msg) = refused(
        &feed(60),
        Limits {
            max_memory_bytes: 2_000,
            ..tight
        },
    );
    assert_eq!(kind, LimitKind::Memory);
    assert!(msg.contains("--gtfs-max-memory-bytes"), "{msg}");

    // Frequencies expanded past the memory limit: refused, not expanded.
    let mut freq = ok.clone();
    freq.insert(
        "frequencies.txt".into(),
        b"trip_id,start_time,end_time,headway_secs\nt,0:00:00,199:00:00,1\n".to_vec(),
    );
    let (kind, file, _) = refused(
        &freq,
        Limits {
            max_rows_per_file: 1_000,
            ..tight
        },
    );
    assert_eq!(
        (kind, file.as_str()),
        (LimitKind::Memory, "frequencies.txt")
    );
}

#[test]
fn a_zip_claiming_too_many_entries_is_refused_first() {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    for i in 0..50 {
        z.start_file(
            format!("f{i}.txt"),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        z.write_all(b"x").unwrap();
    }
    z.finish().unwrap();
    let bytes = out.into_inner();
    let limits = Limits {
        max_files: 49,
        ..Limits::default()
    };
    match import_reader(Box::new(std::io::Cursor::new(&bytes[..])), &limits, None) {
        Err(GtfsError::Limit(hit)) => assert_eq!(hit.kind, LimitKind::Files),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Within the limit it is read (and refused for what it is: no GTFS files).
    let limits = Limits {
        max_files: 50,
        ..Limits::default()
    };
    assert!(matches!(
        import_reader(Box::new(std::io::Cursor::new(&bytes[..])), &limits, None),
        Err(GtfsError::Unusable { .. })
    ));
}

/// A feed's findings cannot grow the report: 200,000 invalid-UTF-8 rows, 20,000 rows
/// whose ids carry quotes and numbers (each a distinct message), 20,000 untimed trips
/// (whole-file findings) give a report of a few hundred KB. Before, the summary had a
/// key per row (csv error text with record/line/byte numbers; ids with a quote broke
/// the id stripping) and every whole-file finding was listed: tens of MB here.
#[test]
fn the_report_stays_small_whatever_the_feed() {
    let mut files = feed(2);
    let st = files.get_mut("stop_times.txt").unwrap();
    for _ in 0..200_000 {
        st.extend_from_slice(b"\xff\n");
    }
    for i in 0..20_000 {
        st.extend_from_slice(
            format!("x\"{i}{}\"z,6:00:00,6:00:00,a,1\n", "y".repeat(200)).as_bytes(),
        );
    }
    let trips = files.get_mut("trips.txt").unwrap();
    for i in 0..20_000 {
        trips.extend_from_slice(format!("r,w,u{i}{}\n", "v".repeat(200)).as_bytes());
    }
    let limits = Limits::default();
    let (feed, report) = import_files_with(&files, &limits).unwrap();
    assert_eq!(feed.trips.len(), 1);
    let bytes = serde_json::to_vec(&report).unwrap().len();
    assert!(bytes < 400_000, "report is {bytes} bytes");
    assert!(
        report.summary.len() <= garasi_cloud::gtfs::MAX_SUMMARY_KEYS + 1,
        "{}",
        report.summary.len()
    );
    let counted: u64 = report.summary.values().sum();
    assert!(counted >= 240_000, "every finding is counted: {counted}");
    let utf8 = report
        .summary
        .iter()
        .find(|(k, _)| k.contains("invalid UTF-8"))
        .map(|(_, n)| *n);
    assert_eq!(
        utf8,
        Some(200_000),
        "{:?}",
        report.summary.keys().take(5).collect::<Vec<_>>()
    );
}

/// The zip library reads as many entries as its end record's "entries on this disk" (or
/// the zip64 record) says; a check of the "total entries" field alone let a zip claiming
/// 1 entry there hand the library 50 (any number, up to the upload size). Entries are
/// now counted in the file itself.
#[test]
fn a_zip_lying_about_its_entry_count_is_still_refused() {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    for i in 0..50 {
        z.start_file(
            format!("f{i}.txt"),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        z.write_all(b"x").unwrap();
    }
    z.finish().unwrap();
    let mut bytes = out.into_inner();
    let at = bytes.windows(4).rposition(|w| w == b"PK\x05\x06").unwrap();
    bytes[at + 10..at + 12].copy_from_slice(&1u16.to_le_bytes());
    let limits = Limits {
        max_files: 49,
        ..Limits::default()
    };
    match import_reader(Box::new(std::io::Cursor::new(&bytes[..])), &limits, None) {
        Err(GtfsError::Limit(hit)) => assert_eq!(hit.kind, LimitKind::Files),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Long names count too: 10 entries of 60,000-byte names against 10 files allowed.
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    for i in 0..10 {
        z.start_file(
            format!("{i}{}.txt", "n".repeat(60_000)),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
    }
    z.finish().unwrap();
    let bytes = out.into_inner();
    let limits = Limits {
        max_files: 10,
        ..Limits::default()
    };
    match import_reader(Box::new(std::io::Cursor::new(&bytes[..])), &limits, None) {
        Err(GtfsError::Limit(hit)) => assert_eq!(hit.kind, LimitKind::Files),
        other => panic!("{:?}", other.map(|_| ())),
    }
}
