//! `calendar.txt` (weekly patterns in a date range) and `calendar_dates.txt` (added and
//! removed days): when each service runs.

use super::{parse_date, table, Files};
use crate::gtfs::{Feed, Report, Service};

/// `calendar.txt`: each service's weekdays and date range.
pub(super) fn calendar(files: &Files<'_>, feed: &mut Feed, report: &mut Report) {
    if let Some(t) = table(
        files,
        "calendar.txt",
        &[
            "service_id",
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
            "start_date",
            "end_date",
        ],
        report,
    ) {
        for (line, r) in &t.rows {
            let Some(id) = t.get(r, "service_id") else {
                report.error(
                    t.name,
                    Some(*line),
                    Some("service_id"),
                    "empty service_id".into(),
                );
                continue;
            };
            let mut s = Service::default();
            let days = [
                "monday",
                "tuesday",
                "wednesday",
                "thursday",
                "friday",
                "saturday",
                "sunday",
            ];
            let mut bad = None;
            for (i, d) in days.iter().enumerate() {
                match t.get(r, d) {
                    Some("1") => s.weekdays[i] = true,
                    Some("0") => {}
                    _ => bad = Some(*d),
                }
            }
            if let Some(d) = bad {
                report.error(
                    t.name,
                    Some(*line),
                    Some(d),
                    format!("service \"{id}\": must be 0 or 1"),
                );
                continue;
            }
            s.start = t.get(r, "start_date").and_then(parse_date);
            s.end = t.get(r, "end_date").and_then(parse_date);
            if s.start.is_none() || s.end.is_none() {
                report.error(
                    t.name,
                    Some(*line),
                    Some("start_date/end_date"),
                    format!("service \"{id}\": dates must be YYYYMMDD"),
                );
                continue;
            }
            feed.services.insert(id.into(), s);
        }
    }
}

/// `calendar_dates.txt`: days added to or removed from a service (a service may be
/// defined by its exceptions alone).
pub(super) fn calendar_dates(files: &Files<'_>, feed: &mut Feed, report: &mut Report) {
    if let Some(t) = table(
        files,
        "calendar_dates.txt",
        &["service_id", "date", "exception_type"],
        report,
    ) {
        for (line, r) in &t.rows {
            let (Some(id), Some(date)) = (
                t.get(r, "service_id"),
                t.get(r, "date").and_then(parse_date),
            ) else {
                report.error(
                    t.name,
                    Some(*line),
                    Some("date"),
                    "needs a service_id and a YYYYMMDD date".into(),
                );
                continue;
            };
            let s = feed.services.entry(id.into()).or_default();
            match t.get(r, "exception_type") {
                Some("1") => {
                    s.added.insert(date);
                }
                Some("2") => {
                    s.removed.insert(date);
                }
                _ => report.error(
                    t.name,
                    Some(*line),
                    Some("exception_type"),
                    "must be 1 (added) or 2 (removed)".into(),
                ),
            }
        }
    }
}
