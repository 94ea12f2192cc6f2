//! TODS supplement files (`trips_supplement.txt` and the like): rows matched to the GTFS
//! file's rows by its primary key; a match with `TODS_delete=1` removes the row, another
//! match sets the supplement's non-empty values, a row without a match is added. The
//! supplement is read whole (the small side, counted against the import's memory); the
//! GTFS file still streams through, merged row by row, so its parser sees one file.
//!
//! Line numbers: a removed row leaves an empty line and an updated row keeps its line, so
//! findings in the GTFS file keep their lines; added rows come after its last line (a
//! warning says so).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::rc::Rc;

use super::lines::{Counting, Lines};
use super::table::table;
use super::Files;
use crate::gtfs::{GtfsError, Report};

/// GTFS file -> (its supplement, primary key columns).
pub(super) fn spec(name: &str) -> Option<(&'static str, &'static [&'static str])> {
    Some(match name {
        "trips.txt" => ("trips_supplement.txt", &["trip_id"]),
        "stops.txt" => ("stops_supplement.txt", &["stop_id"]),
        "routes.txt" => ("routes_supplement.txt", &["route_id"]),
        "stop_times.txt" => ("stop_times_supplement.txt", &["trip_id", "stop_sequence"]),
        "calendar.txt" => ("calendar_supplement.txt", &["service_id"]),
        "calendar_dates.txt" => ("calendar_dates_supplement.txt", &["service_id", "date"]),
        _ => return None,
    })
}

/// Every supplement file name (known files, not reported as strangers).
pub(super) const NAMES: &[&str] = &[
    "trips_supplement.txt",
    "stops_supplement.txt",
    "routes_supplement.txt",
    "stop_times_supplement.txt",
    "calendar_supplement.txt",
    "calendar_dates_supplement.txt",
];

/// A supplement file, read.
pub(super) struct Supplement {
    /// Its columns (lower case), `tods_delete` excluded.
    cols: Vec<String>,
    rows: Vec<Row>,
    by_key: HashMap<Vec<String>, usize>,
}

struct Row {
    delete: bool,
    /// Values by `cols` (empty: not set).
    values: Vec<String>,
    used: bool,
}

/// A primary key part as compared: trimmed text (ids are text: `01` and `1` are two
/// stops), except `stop_sequence`, a number (`02` is row 2).
fn key_part(col: &str, v: &str) -> String {
    let v = v.trim();
    if col == "stop_sequence" {
        if let Ok(n) = v.parse::<u64>() {
            return n.to_string();
        }
    }
    v.to_string()
}

/// Reads `sup` (the supplement of a file keyed by `pk`); None when it is unusable (the
/// report says why).
pub(super) fn read(
    files: &mut Files<'_>,
    sup: &'static str,
    pk: &[&str],
    report: &mut Report,
) -> Result<Option<Supplement>, GtfsError> {
    let budget = files.budget();
    let Some((t, mut rows)) = table(files, sup, pk, report)? else {
        return Ok(None);
    };
    let cols: Vec<String> = t
        .columns()
        .into_iter()
        .filter(|c| c != "tods_delete")
        .collect();
    let mut s = Supplement {
        cols,
        rows: Vec::new(),
        by_key: HashMap::new(),
    };
    while let Some((line, r)) = rows.next(report)? {
        let key: Option<Vec<String>> = pk
            .iter()
            .map(|c| t.get(r, c).map(|v| key_part(c, v)))
            .collect();
        let Some(key) = key else {
            report.error(
                sup,
                Some(line),
                None,
                format!("{} required", pk.join(" and ")),
            );
            continue;
        };
        if s.by_key.contains_key(&key) {
            report.error(
                sup,
                Some(line),
                None,
                format!("row {key:?} appears twice; the first is used"),
            );
            continue;
        }
        let values: Vec<String> = s
            .cols
            .iter()
            .map(|c| t.get(r, c).unwrap_or_default().to_string())
            .collect();
        budget.hold(values.iter().map(|v| v.len() + 24).sum::<usize>() + 64, sup)?;
        s.by_key.insert(key, s.rows.len());
        s.rows.push(Row {
            delete: match t.get(r, "tods_delete") {
                None => false,
                Some("1") => true,
                Some(other) => {
                    report.warning(
                        sup,
                        Some(line),
                        Some("TODS_delete"),
                        format!("{other:?} is not 1: the row updates, it does not delete"),
                    );
                    false
                }
            },
            values,
            used: false,
        });
    }
    Ok(Some(s))
}

/// The GTFS file merged with its supplement, as CSV text, row by row.
pub(super) struct Merged<'f> {
    base: csv::Reader<Counting<Box<dyn Read + 'f>>>,
    /// The import's budget: bytes the supplement adds count as unpacked (one
    /// supplement row matching many rows of the file would otherwise be free).
    budget: std::rc::Rc<super::source::Budget>,
    /// The file's physical lines, and how many lines were written so far: each row is
    /// written on its own line (empty lines added before it as needed).
    lines: Rc<RefCell<Lines>>,
    written: u64,
    sup: Supplement,
    pk: &'static [&'static str],
    /// Output columns: the file's, then the supplement's it lacks; where each comes from.
    out_cols: Vec<String>,
    /// Columns of the file's own header.
    base_len: usize,
    base_idx: HashMap<String, usize>,
    sup_idx: Vec<Option<usize>>,
    buf: Vec<u8>,
    at: usize,
    /// 0: header not written; 1: base rows; 2: added rows; 3: done.
    stage: u8,
    next_added: usize,
}

impl<'f> Merged<'f> {
    pub fn new(
        input: Box<dyn Read + 'f>,
        sup: Supplement,
        pk: &'static [&'static str],
        budget: std::rc::Rc<super::source::Budget>,
    ) -> Self {
        let (input, lines) = Counting::new(input);
        let base = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(false)
            .from_reader(input);
        Merged {
            base,
            budget,
            lines,
            written: 0,
            sup,
            pk,
            out_cols: Vec::new(),
            base_len: 0,
            base_idx: HashMap::new(),
            sup_idx: Vec::new(),
            buf: Vec::new(),
            at: 0,
            stage: 0,
            next_added: 0,
        }
    }

    /// Appends the next piece of output to `buf`; false at the end.
    fn fill(&mut self) -> std::io::Result<bool> {
        let mut rec = csv::StringRecord::new();
        match self.stage {
            0 => {
                // No GTFS file (or an empty one): the supplement's rows are all added.
                let has_header = self
                    .base
                    .read_record(&mut rec)
                    .map_err(std::io::Error::other)?;
                if has_header {
                    self.pad_to(&rec);
                }
                self.out_cols = rec.iter().map(|c| c.trim().to_ascii_lowercase()).collect();
                self.base_len = self.out_cols.len();
                self.stage = if has_header { 1 } else { 2 };
                for c in &self.sup.cols {
                    if !self.out_cols.contains(c) {
                        self.out_cols.push(c.clone());
                    }
                }
                self.base_idx = self
                    .out_cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.clone(), i))
                    .collect();
                self.sup_idx = self
                    .out_cols
                    .iter()
                    .map(|c| self.sup.cols.iter().position(|s| s == c))
                    .collect();
                let cols = self.out_cols.clone();
                self.write(cols.iter().map(String::as_str));
            }
            1 => {
                if !self
                    .base
                    .read_record(&mut rec)
                    .map_err(std::io::Error::other)?
                {
                    self.stage = 2;
                    return Ok(true);
                }
                self.pad_to(&rec);
                let key: Option<Vec<String>> = self
                    .pk
                    .iter()
                    .map(|c| {
                        self.base_idx
                            .get(*c)
                            .and_then(|&i| rec.get(i))
                            .map(|v| key_part(c, v))
                    })
                    .collect();
                let hit = key.and_then(|k| self.sup.by_key.get(&k).copied());
                let base_len = self.base_len;
                // A field past the file's header is not any column's (not a supplement's).
                let field = |c: usize| {
                    if c < base_len {
                        rec.get(c).unwrap_or_default()
                    } else {
                        ""
                    }
                };
                let Some(i) = hit else {
                    let vals: Vec<String> = (0..self.out_cols.len())
                        .map(|c| field(c).to_string())
                        .collect();
                    self.write(vals.iter().map(String::as_str));
                    return Ok(true);
                };
                self.sup.rows[i].used = true;
                if self.sup.rows[i].delete {
                    // An empty line: the rows after it keep their lines.
                    self.buf.push(b'\n');
                    self.written += 1;
                    return Ok(true);
                }
                let mut added = 0u64;
                let vals: Vec<String> = (0..self.out_cols.len())
                    .map(
                        |c| match self.sup_idx[c].map(|s| &self.sup.rows[i].values[s]) {
                            Some(v) if !v.is_empty() => {
                                added += v.len() as u64;
                                v.clone()
                            }
                            _ => field(c).to_string(),
                        },
                    )
                    .collect();
                if !self.budget.add_unpacked(added) {
                    return Err(std::io::Error::other("unpacked_bytes"));
                }
                self.write(vals.iter().map(String::as_str));
            }
            2 => {
                while self.next_added < self.sup.rows.len() {
                    let i = self.next_added;
                    self.next_added += 1;
                    let row = &self.sup.rows[i];
                    if row.used || row.delete {
                        continue;
                    }
                    let vals: Vec<String> = self
                        .sup_idx
                        .iter()
                        .map(|s| s.map(|s| row.values[s].clone()).unwrap_or_default())
                        .collect();
                    self.write(vals.iter().map(String::as_str));
                    return Ok(true);
                }
                self.stage = 3;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Empty lines up to the line `rec` starts on in the file.
    fn pad_to(&mut self, rec: &csv::StringRecord) {
        let line = rec.position().map_or(self.written + 1, |p| {
            self.lines.borrow_mut().line_at(p.byte())
        });
        while self.written + 1 < line {
            self.buf.push(b'\n');
            self.written += 1;
        }
    }

    fn write<'a>(&mut self, fields: impl Iterator<Item = &'a str>) {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        // Writing to a Vec cannot fail.
        let _ = w.write_record(fields);
        if let Ok(bytes) = w.into_inner() {
            // Line breaks as `lines` counts them (a quoted field may hold some).
            let mut breaks = 0;
            for (i, b) in bytes.iter().enumerate() {
                if *b == b'\n' || (*b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
                    breaks += 1;
                }
            }
            self.written += breaks;
            self.buf.extend_from_slice(&bytes);
        }
    }
}

impl Read for Merged<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.buf.len() {
            self.buf.clear();
            self.at = 0;
            if !self.fill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
