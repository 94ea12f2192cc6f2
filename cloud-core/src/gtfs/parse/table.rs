//! One CSV file of the feed, read a row at a time (nothing holds the file's rows): the
//! header with tolerant column names, then each row with its line number, within the
//! import's limits (rows per file, fields per row; bytes per row and unpacked bytes are
//! the reader's). A row that is not valid CSV is reported and skipped; a limit ends the
//! import. Line numbers are physical lines (`lines`), right for LF, CRLF and CR files.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::rc::Rc;

use super::lines::{Counting, Lines};
use super::source::{Budget, Files};
use super::supplement;
use crate::gtfs::limits::{LimitHit, LimitKind};
use crate::gtfs::{GtfsError, Progress, Report};

/// A file's name and columns: header -> column index.
pub(super) struct Table {
    pub name: &'static str,
    /// The header's line (1 unless empty lines come first).
    pub header_line: u64,
    cols: HashMap<String, usize>,
}

impl Table {
    pub fn get<'a>(&self, row: &'a csv::StringRecord, col: &str) -> Option<&'a str> {
        let v = row.get(*self.cols.get(col)?)?.trim();
        (!v.is_empty()).then_some(v)
    }
    pub fn has(&self, col: &str) -> bool {
        self.cols.contains_key(col)
    }
    /// The column names (lower case), in file order.
    pub fn columns(&self) -> Vec<String> {
        let mut cols: Vec<(&String, &usize)> = self.cols.iter().collect();
        cols.sort_by_key(|(_, i)| **i);
        cols.into_iter().map(|(c, _)| c.clone()).collect()
    }
}

/// The rows of one file, read on demand.
pub(super) struct Rows<'f> {
    name: &'static str,
    reader: csv::Reader<Counting<Box<dyn Read + 'f>>>,
    lines: Rc<RefCell<Lines>>,
    record: csv::StringRecord,
    rows: u64,
    budget: Rc<Budget>,
    progress: Option<&'f Progress>,
}

impl Rows<'_> {
    /// The next row and its line (None at the end of the file).
    pub fn next(
        &mut self,
        report: &mut Report,
    ) -> Result<Option<(u64, &csv::StringRecord)>, GtfsError> {
        loop {
            match self.reader.read_record(&mut self.record) {
                Ok(false) => {
                    if let Some(p) = self.progress {
                        p.parsed(self.name, self.budget.file_read());
                    }
                    return Ok(None);
                }
                Ok(true) => {
                    self.budget.mark_row();
                    self.rows += 1;
                    let limits = &self.budget.limits;
                    if self.rows > limits.max_rows_per_file {
                        return Err(self.over(LimitKind::RowsPerFile));
                    }
                    if self.record.len() as u64 > limits.max_fields_per_row {
                        return Err(self.over(LimitKind::FieldsPerRow));
                    }
                    let line = self.line(self.record.position());
                    return Ok(Some((line, &self.record)));
                }
                Err(e) => {
                    read_failure(&self.budget, self.name, &e)?;
                    let line = self.line(e.position());
                    self.budget.mark_row();
                    self.rows += 1;
                    report.error(
                        self.name,
                        Some(line),
                        None,
                        format!("not valid CSV: {}", csv_problem(&e)),
                    );
                }
            }
        }
    }

    fn over(&self, kind: LimitKind) -> GtfsError {
        over(&self.budget, kind, self.name)
    }

    /// The physical line where a record starts (see `lines`); without a position (not
    /// expected), the line after everything read so far.
    fn line(&self, at: Option<&csv::Position>) -> u64 {
        let offset = at.map_or_else(|| self.reader.position().byte(), |p| p.byte());
        self.lines.borrow_mut().line_at(offset)
    }
}

fn over(budget: &Budget, kind: LimitKind, name: &str) -> GtfsError {
    LimitHit::new(kind, name, &budget.limits).into()
}

/// What is wrong with a row that is not CSV, from the error's kind alone: the csv
/// crate's text carries record, line and byte numbers (the line is in the issue already).
fn csv_problem(e: &csv::Error) -> &'static str {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "invalid UTF-8 (save the file as UTF-8)",
        csv::ErrorKind::UnequalLengths { .. } => "the row has a different number of fields",
        csv::ErrorKind::Io(_) => "the file could not be read",
        _ => "the row cannot be read",
    }
}

/// A read error that ends the import (a limit, a damaged zip); Ok for a row that is
/// merely not CSV.
fn read_failure(budget: &Budget, name: &str, e: &csv::Error) -> Result<(), GtfsError> {
    if let Some(kind) = budget.hit.get() {
        return Err(over(budget, kind, name));
    }
    match e.kind() {
        csv::ErrorKind::Io(io) => Err(GtfsError::NotZip(format!("{name}: {io}"))),
        _ => Ok(()),
    }
}

/// Opens `name` and reads its header; None (with the finding in the report) when the
/// feed has no such file or its header is unusable.
pub(super) fn table<'f>(
    files: &'f mut Files<'_>,
    name: &'static str,
    required_cols: &[&str],
    report: &mut Report,
) -> Result<Option<(Table, Rows<'f>)>, GtfsError> {
    let supplement = match supplement::spec(name) {
        Some((sup, pk)) if files.contains_key(sup) => {
            supplement::read(files, sup, pk, report)?.map(|s| (s, pk, sup))
        }
        _ => None,
    };
    let budget = files.budget.clone();
    let progress = files.progress;
    let mut input = match files.open(name)? {
        Some(input) => input,
        // A supplement alone adds its rows (a crew calendar the public feed lacks).
        None if supplement.is_some() => Box::new(std::io::empty()),
        None => return Ok(None),
    };
    if let Some((s, pk, sup)) = supplement {
        report.warning(
            name,
            None,
            None,
            format!(
                "merged with {sup} (TODS): rows it adds are numbered after this file's last line"
            ),
        );
        input = Box::new(supplement::Merged::new(input, s, pk, budget.clone()));
    }
    let (input, lines) = Counting::new(input);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    // The header's own line: empty lines may come before it.
    let line_of =
        |at: Option<&csv::Position>| at.map_or(1, |p| lines.borrow_mut().line_at(p.byte()));
    let (cols, header_line): (HashMap<String, usize>, u64) = match reader.headers() {
        Ok(h) if h.len() as u64 > budget.limits.max_fields_per_row => {
            return Err(over(&budget, LimitKind::FieldsPerRow, name));
        }
        Ok(h) => (
            h.iter()
                .enumerate()
                .map(|(i, c)| (c.trim().to_ascii_lowercase(), i))
                .collect(),
            line_of(h.position()),
        ),
        Err(e) => {
            read_failure(&budget, name, &e)?;
            report.error(
                name,
                Some(line_of(e.position())),
                None,
                format!("header is not CSV: {}", csv_problem(&e)),
            );
            return Ok(None);
        }
    };
    budget.mark_row();
    let missing: Vec<&str> = required_cols
        .iter()
        .copied()
        .filter(|c| !cols.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        report.error(
            name,
            Some(header_line),
            None,
            format!("required column(s) missing: {}", missing.join(", ")),
        );
        return Ok(None);
    }
    let rows = Rows {
        name,
        reader,
        lines,
        record: csv::StringRecord::new(),
        rows: 0,
        budget,
        progress,
    };
    Ok(Some((
        Table {
            name,
            header_line,
            cols,
        },
        rows,
    )))
}
