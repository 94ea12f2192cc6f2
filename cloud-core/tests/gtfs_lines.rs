//! Line numbers in the import report are the physical lines an editor shows, whatever
//! the file's line endings (LF, CRLF, CR only) and with or without a byte order mark:
//! the same feed is imported in each form and must give the same findings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use garasi_cloud::gtfs::{import_files, Severity};

/// The feed, with `\n` between lines. Where the findings are, by hand:
/// - trips.txt: line 1 header; line 2 trip t1 whose headsign is quoted over lines 2-3;
///   line 4 empty; line 5 trip "bad" on route R9 (not in routes.txt) -> trips.txt:5.
/// - stop_times.txt: line 1 header; lines 2-3 t1's stops; line 4 stop "Z" (not in
///   stops.txt) -> stop_times.txt:4; line 5 empty, line 6 empty; line 7 stop_sequence
///   "x" -> stop_times.txt:7; line 8 a time "9:7:00" -> stop_times.txt:8.
fn feed() -> Vec<(&'static str, String)> {
    vec![
        ("agency.txt", "agency_name,agency_url,agency_timezone\nDepot,https://x,Asia/Jakarta\n".into()),
        ("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\nA,A,-6.2,106.8\nB,B,-6.3,106.9\n".into()),
        ("routes.txt", "route_id,route_short_name,route_type\nR1,1,3\n".into()),
        ("calendar.txt", "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nWK,1,1,1,1,1,0,0,20260101,20261231\n".into()),
        ("trips.txt", "route_id,service_id,trip_id,trip_headsign\nR1,WK,t1,\"Terminal\nB\"\n\nR9,WK,bad,x\n".into()),
        ("stop_times.txt", "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n\
t1,06:00:00,06:00:00,A,1\n\
t1,06:30:00,06:30:00,B,3\n\
t1,06:10:00,06:10:00,Z,2\n\
\n\
\n\
t1,06:20:00,06:20:00,A,x\n\
t1,9:7:00,,A,2\n".into()),
    ]
}

fn errors(ending: &str, bom: bool) -> Vec<(String, u64)> {
    let files: BTreeMap<String, Vec<u8>> = feed()
        .into_iter()
        .map(|(name, text)| {
            let mut bytes = if bom {
                b"\xef\xbb\xbf".to_vec()
            } else {
                vec![]
            };
            bytes.extend_from_slice(text.replace('\n', ending).as_bytes());
            (name.to_string(), bytes)
        })
        .collect();
    let (feed, report) = import_files(&files).unwrap();
    assert_eq!(feed.trips.len(), 1, "t1 imports ({ending:?}, bom {bom})");
    assert_eq!(
        feed.trips[0].headsign,
        Some(format!("Terminal{ending}B")),
        "the quoted headsign keeps its line break"
    );
    let mut out: Vec<(String, u64)> = report
        .issues
        .iter()
        .filter(|i| i.severity == Severity::Error)
        .filter_map(|i| Some((i.file.clone(), i.line?)))
        .collect();
    out.sort();
    out
}

#[test]
fn lf_crlf_and_cr_files_report_the_same_physical_lines_with_and_without_a_bom() {
    let want: Vec<(String, u64)> = [
        ("stop_times.txt", 4),
        ("stop_times.txt", 7),
        ("stop_times.txt", 8),
        ("trips.txt", 5),
    ]
    .iter()
    .map(|(f, l)| (f.to_string(), *l))
    .collect();
    for ending in ["\n", "\r\n", "\r"] {
        for bom in [false, true] {
            assert_eq!(
                errors(ending, bom),
                want,
                "line ending {ending:?}, bom {bom}"
            );
        }
    }
}
