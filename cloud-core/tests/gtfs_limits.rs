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
