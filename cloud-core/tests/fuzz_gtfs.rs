//! Fuzz harness (issue 11, "Keep it attacked") for GTFS import: arbitrary bytes, byte
//! mutations of the small fixture zips, and CSV-level mutations of their files (edited
//! bytes, hostile tokens spliced into rows, dropped files) imported both from a map and
//! re-zipped under small random limits. The importer never panics: it imports, or names
//! why not. A feed that imports also builds blocks for its service days.
//!
//! Uses the three small fixtures of `tests/fixtures/gtfs/` (3 KB each) and keeps cases
//! small, so 64 cases per property run in seconds in `cargo test`; PROPTEST_CASES
//! raises it for long local runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};

use garasi_cloud::gtfs::blocks::{blocks_for, BlockOptions};
use garasi_cloud::gtfs::{
    format_time, import_files_with, import_reader, import_zip, parse_time, GtfsError, Limits,
};
use proptest::prelude::*;

const FIXTURES: &[&str] = &["google-sample-feed-1.zip", "testagency.zip", "badgtfs.zip"];

/// Cases per property: small for CI, PROPTEST_CASES for long runs.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/gtfs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap()
}

/// The fixture's files, unpacked.
fn unzip(name: &str) -> BTreeMap<String, Vec<u8>> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(fixture(name))).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
        out.insert(f.name().to_string(), buf);
    }
    out
}

fn rezip(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        z.start_file(name.as_str(), opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
    out.into_inner()
}

/// Tokens that GTFS parsers trip over: times past 24:00 or malformed, empty and quoted
/// fields, huge and negative numbers, stray separators and line ends, a BOM, non-ASCII.
const TOKENS: &[&str] = &[
    "",
    ",",
    "\"",
    "\"\"",
    "\n",
    "\r\n",
    "\u{feff}",
    "99:99:99",
    "24:00:00",
    "199:59:59",
    "-1",
    "0",
    "4294967296",
    "1e308",
    "NaN",
    "inf",
    "20261301",
    "20260229",
    "99999999",
    "-90.5",
    "181",
    "é\u{202e}",
    "trip_id",
    "stop_id",
    "service_id",
    "block_id",
    "1",
    " ",
];

/// One edit of a file: (kind, file pick, position, value).
fn edit() -> impl Strategy<Value = (u8, usize, usize, u8)> {
    (0u8..6, any::<usize>(), any::<usize>(), any::<u8>())
}

fn apply(files: &mut BTreeMap<String, Vec<u8>>, edits: &[(u8, usize, usize, u8)]) {
    for &(kind, pick, at, v) in edits {
        let names: Vec<String> = files.keys().cloned().collect();
        if names.is_empty() {
            return;
        }
        let name = &names[pick % names.len()];
        if kind == 5 {
            files.remove(name);
            continue;
        }
        let data = files.get_mut(name).unwrap();
        let len = data.len();
        match kind {
            0 if len > 0 => data[at % len] = v,
            1 => {
                let t = TOKENS[v as usize % TOKENS.len()].as_bytes();
                let at = at % (len + 1);
                data.splice(at..at, t.iter().copied());
            }
            2 if len > 0 => {
                // Replace one field-ish run (up to the next comma) with a token.
                let start = at % len;
                let end = data[start..]
                    .iter()
                    .position(|&b| b == b',' || b == b'\n')
                    .map_or(len, |p| start + p);
                let t = TOKENS[v as usize % TOKENS.len()].as_bytes();
                data.splice(start..end, t.iter().copied());
            }
            3 => data.truncate(at % (len + 1)),
            4 if len > 0 => {
                // Duplicate a slice of up to 64 bytes (repeated rows and ids).
                let start = at % len;
                let end = (start + 1 + v as usize % 64).min(len);
                let dup = data[start..end].to_vec();
                data.splice(start..start, dup);
            }
            _ => {}
        }
    }
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        1u64..20_000,
        1u64..12,
        1u64..200,
        1u64..30,
        1u64..400,
        1u64..200_000,
    )
        .prop_map(|(b, f, r, fields, rb, m)| Limits {
            max_unpacked_bytes: b,
            max_files: f,
            max_rows_per_file: r,
            max_fields_per_row: fields,
            max_row_bytes: rb,
            max_memory_bytes: m,
        })
}

/// What an import must satisfy: an error with a message, or a feed whose blocks build on
/// each day its services name (capped to keep cases fast).
fn check(r: Result<(garasi_cloud::gtfs::Feed, garasi_cloud::gtfs::Report), GtfsError>) {
    match r {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok((feed, report)) => {
            let _ = report.errors();
            let mut days: Vec<jiff::civil::Date> = feed
                .services
                .values()
                .flat_map(|s| s.start.into_iter().chain(s.added.iter().copied()))
                .collect();
            days.sort();
            days.dedup();
            for d in days.into_iter().take(3) {
                for b in blocks_for(&feed, d, BlockOptions::default()) {
                    assert!(b.start_s <= b.end_s || b.trip_ids.is_empty());
                }
            }
        }
    }
}

/// Regression (found by `mutated_files`): an hour of 4294967295 overflowed `h * 3600`
/// (computed before the range check) and panicked a debug build.
#[test]
fn huge_hours_are_refused_not_an_overflow() {
    assert_eq!(parse_time("4294967295:00:00"), None);
    assert_eq!(parse_time("1193047:00:00"), None);
    assert_eq!(parse_time("25:30:00"), Some(91_800));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn times_parse_or_refuse(s in "[0-9:]{0,14}|\\PC{0,12}") {
        if let Some(t) = parse_time(&s) {
            prop_assert_eq!(parse_time(&format_time(t)), Some(t));
        }
    }

    #[test]
    fn arbitrary_bytes_are_not_a_feed(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check(import_zip(&bytes));
    }

    /// Byte mutations of the zip itself: headers, directory, deflate streams, CRCs.
    #[test]
    fn mutated_zips(
        pick in 0..FIXTURES.len(),
        muts in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut z = fixture(FIXTURES[pick]);
        for (at, v) in muts {
            let len = z.len();
            z[at % len] = v;
        }
        check(import_zip(&z));
    }

    /// CSV-level edits imported from the file map with the default limits.
    #[test]
    fn mutated_files(
        pick in 0..FIXTURES.len(),
        edits in proptest::collection::vec(edit(), 1..10),
    ) {
        let mut files = unzip(FIXTURES[pick]);
        apply(&mut files, &edits);
        check(import_files_with(&files, &Limits::default()));
    }

    /// CSV-level edits, re-zipped and imported through the streaming path under small
    /// random limits, so every limit is hit somewhere mid-file.
    #[test]
    fn mutated_files_rezipped_under_small_limits(
        pick in 0..FIXTURES.len(),
        edits in proptest::collection::vec(edit(), 0..6),
        limits in limits(),
    ) {
        let mut files = unzip(FIXTURES[pick]);
        apply(&mut files, &edits);
        let z = rezip(&files);
        check(import_reader(Box::new(std::io::Cursor::new(z)), &limits, None));
    }
}
