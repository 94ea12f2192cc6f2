//! GTFS import: a zip feed in, a validated timetable out, with a report a planner can
//! act on (file, line, field, what is wrong). What cannot be used is rejected and named;
//! what can is imported; a feed with no usable trip is refused as a whole, so nothing
//! half-imported ever reaches a depot.
//!
//! Rules beyond the letter of the spec, chosen for dispatch planning:
//! - Times may pass 24:00:00 (a service day's trips after midnight); they are seconds
//!   from the service day's midnight.
//! - A trip needs its first and last stop timed; untimed stops in between are
//!   interpolated by position. A trip with no times at all cannot be planned.
//! - `frequencies.txt` trips are expanded into concrete trips (`{trip_id}@{HH:MM:SS}`),
//!   start_time inclusive, end_time exclusive, for `exact_times` 0 and 1 alike: a depot
//!   needs concrete trips to assign buses to.
//! - Blocks come from `block_id` where the feed has it; otherwise see [`blocks`]. A feed
//!   block whose trips overlap in time is an error of that block and is not published
//!   (`block_check`).

mod block_check;
pub mod blocks;
pub mod limits;
mod parse;
pub mod tods;

use std::collections::{BTreeMap, HashMap, HashSet};

pub use limits::{LimitHit, LimitKind, Limits};
pub use parse::{format_time, parse_time, ReadSeek};

/// Files a feed must have (plus calendar.txt or calendar_dates.txt).
const REQUIRED: &[&str] = &[
    "agency.txt",
    "stops.txt",
    "routes.txt",
    "trips.txt",
    "stop_times.txt",
];
/// Largest feed accepted by default (uncompressed, all files): a zip bomb guard
/// ([`Limits::max_unpacked_bytes`]).
pub const MAX_FEED_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The row (or file) was not imported.
    Error,
    /// Imported, with a caveat.
    Warning,
}

/// One finding of the import, precise enough to fix the feed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Issue {
    pub severity: Severity,
    pub file: String,
    /// 1-based line in the file (the header is line 1); None for whole-file findings.
    pub line: Option<u64>,
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(field) = &self.field {
            write!(f, " [{field}]")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Everything the import found; `issues` lists row findings up to [`MAX_ISSUES`] and
/// whole-file findings up to [`MAX_FILE_ISSUES`]; `summary` counts all of them per file
/// and kind of finding (at most [`MAX_SUMMARY_KEYS`] kinds, the rest under
/// [`OTHER_FINDINGS`]). The report's size does not depend on the feed's.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    pub issues: Vec<Issue>,
    /// "file: kind of finding" -> how many rows had it (all of them, including listed
    /// ones). The kind is the message with quoted ids and numbers taken out.
    pub summary: BTreeMap<String, u64>,
    pub imported: BTreeMap<&'static str, u64>,
    #[serde(skip)]
    row_issues: usize,
    #[serde(skip)]
    file_issues: usize,
}

/// Row findings listed in full (the rest are only counted in the summary).
pub const MAX_ISSUES: usize = 200;
/// Whole-file findings listed in full (one per unknown file or untimed trip at most).
pub const MAX_FILE_ISSUES: usize = 200;
/// Distinct summary keys; findings of further kinds are counted under [`OTHER_FINDINGS`].
pub const MAX_SUMMARY_KEYS: usize = 1_000;
/// The summary key for findings beyond [`MAX_SUMMARY_KEYS`] kinds.
pub const OTHER_FINDINGS: &str = "other findings";
/// Longest message (bytes) kept in a listed issue, and longest summary key.
const MAX_MESSAGE_BYTES: usize = 512;
const MAX_KEY_BYTES: usize = 160;

impl Report {
    fn push(&mut self, mut i: Issue) {
        let key = truncate(
            format!("{}: {}", i.file, strip_ids(&i.message)),
            MAX_KEY_BYTES,
        );
        let key = if self.summary.len() < MAX_SUMMARY_KEYS || self.summary.contains_key(&key) {
            key
        } else {
            OTHER_FINDINGS.to_string()
        };
        *self.summary.entry(key).or_default() += 1;
        // Whole-file findings explain the most: listed apart from the row findings.
        let listed = if i.line.is_none() {
            &mut self.file_issues
        } else {
            &mut self.row_issues
        };
        let cap = if i.line.is_none() {
            MAX_FILE_ISSUES
        } else {
            MAX_ISSUES
        };
        if *listed < cap {
            *listed += 1;
            i.message = truncate(i.message, MAX_MESSAGE_BYTES);
            i.file = truncate(i.file, MAX_KEY_BYTES);
            self.issues.push(i);
        }
    }
    fn error(&mut self, file: &str, line: Option<u64>, field: Option<&str>, message: String) {
        self.push(Issue {
            severity: Severity::Error,
            file: file.into(),
            line,
            field: field.map(String::from),
            message,
        });
    }
    fn warning(&mut self, file: &str, line: Option<u64>, field: Option<&str>, message: String) {
        self.push(Issue {
            severity: Severity::Warning,
            file: file.into(),
            line,
            field: field.map(String::from),
            message,
        });
    }
    pub fn errors(&self) -> usize {
        self.issues
            .iter()
            .filter(|i| i.severity == Severity::Error)
            .count()
    }
}

/// The kind of a finding: its message with quoted ids (Debug-formatted, so a quote in an
/// id is escaped) and numbers taken out, so that keys come from the message templates and
/// not from the feed's data. An unterminated quote drops the rest of the message.
fn strip_ids(m: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut in_number = false;
    for c in m.chars() {
        if quoted {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
            }
            continue;
        }
        if c == '"' {
            quoted = true;
            in_number = false;
            out.push_str("\"…\"");
        } else if c.is_ascii_digit()
            && (in_number || !out.ends_with(|p: char| p.is_alphanumeric() || p == '-'))
        {
            // A count or position ("none of the 12845 rows"), not part of a word (UTF-8).
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// `s` cut to at most `max` bytes (on a character boundary), marked with an ellipsis.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut at = max.saturating_sub('…'.len_utf8());
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
        s.push('…');
    }
    s
}

#[derive(Debug, thiserror::Error)]
pub enum GtfsError {
    #[error("not a zip file: {0}. Export the feed as a GTFS .zip")]
    NotZip(String),
    #[error("the feed cannot be used: {reason}")]
    Unusable { reason: String, report: Box<Report> },
    #[error("the feed is refused: {0}")]
    Limit(#[from] LimitHit),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Route {
    pub id: String,
    pub short_name: String,
    pub long_name: String,
    pub route_type: i32,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stop {
    pub id: String,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StopTime {
    pub stop_id: String,
    /// Seconds from the service day's midnight (may exceed 86,400).
    pub arrival_s: u32,
    pub departure_s: u32,
    /// Whether the feed gave this time (false: interpolated).
    pub timed: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Trip {
    pub id: String,
    pub route_id: String,
    pub service_id: String,
    pub block_id: Option<String>,
    pub shape_id: Option<String>,
    pub direction_id: Option<u8>,
    pub headsign: Option<String>,
    pub stop_times: Vec<StopTime>,
    /// Expanded from this frequencies.txt template trip.
    pub from_frequency: Option<String>,
}

impl Trip {
    pub fn start_s(&self) -> u32 {
        self.stop_times.first().map_or(0, |s| s.departure_s)
    }
    pub fn end_s(&self) -> u32 {
        self.stop_times.last().map_or(0, |s| s.arrival_s)
    }
    pub fn first_stop(&self) -> &str {
        self.stop_times.first().map_or("", |s| s.stop_id.as_str())
    }
    pub fn last_stop(&self) -> &str {
        self.stop_times.last().map_or("", |s| s.stop_id.as_str())
    }
}

/// When a service runs: weekly pattern in a date range, plus exceptions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Service {
    /// Monday = 0.
    pub weekdays: [bool; 7],
    pub start: Option<jiff::civil::Date>,
    pub end: Option<jiff::civil::Date>,
    pub added: HashSet<jiff::civil::Date>,
    pub removed: HashSet<jiff::civil::Date>,
}

impl Service {
    pub fn runs_on(&self, d: jiff::civil::Date) -> bool {
        if self.removed.contains(&d) {
            return false;
        }
        if self.added.contains(&d) {
            return true;
        }
        let in_range = self.start.is_some_and(|s| d >= s) && self.end.is_some_and(|e| d <= e);
        in_range && self.weekdays[d.weekday().to_monday_zero_offset() as usize]
    }
}

/// A validated timetable.
#[derive(Debug, Default, Clone)]
pub struct Feed {
    pub agency_names: Vec<String>,
    /// `agency_timezone` (IANA name): the clock the feed's times are on.
    pub timezone: Option<String>,
    pub routes: Vec<Route>,
    pub stops: Vec<Stop>,
    pub trips: Vec<Trip>,
    pub services: HashMap<String, Service>,
    /// Shape points per shape id (lat, lon), in sequence.
    pub shapes: HashMap<String, Vec<(f64, f64)>>,
    /// Feed blocks (block_id) whose trips overlap in time: reported, never published.
    pub rejected_blocks: HashSet<String>,
    /// TODS files beside the feed (runs, employees on runs, vehicles), if any.
    pub tods: tods::Tods,
}

impl Feed {
    /// Trips that run on `date`, by start time.
    pub fn trips_on(&self, date: jiff::civil::Date) -> Vec<&Trip> {
        let mut v: Vec<&Trip> = self
            .trips
            .iter()
            .filter(|t| {
                self.services
                    .get(&t.service_id)
                    .is_some_and(|s| s.runs_on(date))
            })
            .collect();
        v.sort_by(|a, b| (a.start_s(), &a.id).cmp(&(b.start_s(), &b.id)));
        v
    }
}

/// How far an import is, for large feeds: the phase, and the bytes of CSV parsed so far
/// out of the feed's total (stop_times.txt dominates, so bytes track time well).
#[derive(Debug, Default)]
pub struct Progress {
    phase: parking_lot::Mutex<String>,
    done_bytes: std::sync::atomic::AtomicU64,
    total_bytes: std::sync::atomic::AtomicU64,
}

impl Progress {
    pub(crate) fn set_phase(&self, p: &str) {
        *self.phase.lock() = p.to_string();
    }
    fn parsed(&self, file: &str, bytes: u64) {
        self.done_bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        self.set_phase(&format!("parsed {file}"));
    }
    /// (phase, bytes parsed, bytes in all).
    pub fn snapshot(&self) -> (String, u64, u64) {
        let phase = self.phase.lock().clone();
        (
            phase,
            self.done_bytes.load(std::sync::atomic::Ordering::Relaxed),
            self.total_bytes.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

/// Imports a GTFS zip with the default [`Limits`]. Returns the usable feed and the
/// report, or why nothing is usable.
pub fn import_zip(bytes: &[u8]) -> Result<(Feed, Report), GtfsError> {
    import_reader(
        Box::new(std::io::Cursor::new(bytes)),
        &Limits::default(),
        None,
    )
}

/// Imports a GTFS zip from a file or memory within `limits`, reporting progress as it
/// goes. Files are streamed out of the zip one at a time, never unpacked whole.
pub fn import_reader<'a>(
    zip: Box<dyn parse::ReadSeek + 'a>,
    limits: &Limits,
    progress: Option<&'a Progress>,
) -> Result<(Feed, Report), GtfsError> {
    if let Some(p) = progress {
        p.set_phase("unzipping");
    }
    let mut files = parse::Files::zip(zip, *limits, progress)?;
    let out = parse::import(&mut files);
    if let Some(p) = progress {
        p.set_phase("done");
    }
    out
}

/// Imports from file name -> contents (the zip's text files), with the default limits.
pub fn import_files(files: &BTreeMap<String, Vec<u8>>) -> Result<(Feed, Report), GtfsError> {
    import_files_with(files, &Limits::default())
}

/// [`import_files`] within `limits`.
pub fn import_files_with(
    files: &BTreeMap<String, Vec<u8>>,
    limits: &Limits,
) -> Result<(Feed, Report), GtfsError> {
    parse::import(&mut parse::Files::map(files, *limits))
}
