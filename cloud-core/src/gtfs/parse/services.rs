//! `calendar.txt` (weekly patterns in a date range) and `calendar_dates.txt` (added and
//! removed days): when each service runs.

use super::{heap, parse_date, table, Files, MAP_ENTRY};
use crate::gtfs::{Feed, GtfsError, Report, Service};

/// `calendar.txt`: each service's weekdays and date range.
pub(super) fn calendar(
    files: &mut Files<'_>,
    feed: &mut Feed,
    report: &mut Report,
) -> Result<(), GtfsError> {
    let budget = files.budget();
    if let Some((t, mut rows)) = table(
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
    )? {
        while let Some((line, r)) = rows.next(report)? {
            let Some(id) = t.get(r, "service_id") else {
                report.error(
                    t.name,
                    Some(line),
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
                    Some(line),
                    Some(d),
                    format!("service {id:?}: must be 0 or 1"),
                );
                continue;
            }
            s.start = t.get(r, "start_date").and_then(parse_date);
            s.end = t.get(r, "end_date").and_then(parse_date);
            if s.start.is_none() || s.end.is_none() {
                report.error(
                    t.name,
                    Some(line),
                    Some("start_date/end_date"),
                    format!("service {id:?}: dates must be YYYYMMDD"),
                );
                continue;
            }
            budget.hold(
                size_of::<(String, Service)>() + MAP_ENTRY + heap(id),
                t.name,
            )?;
            feed.services.insert(id.into(), s);
        }
    }
    Ok(())
}

/// `calendar_dates.txt`: days added to or removed from a service (a service may be
/// defined by its exceptions alone).
pub(super) fn calendar_dates(
    files: &mut Files<'_>,
    feed: &mut Feed,
    report: &mut Report,
) -> Result<(), GtfsError> {
    let budget = files.budget();
    if let Some((t, mut rows)) = table(
        files,
        "calendar_dates.txt",
        &["service_id", "date", "exception_type"],
        report,
    )? {
        while let Some((line, r)) = rows.next(report)? {
            let (Some(id), Some(date)) = (
                t.get(r, "service_id"),
                t.get(r, "date").and_then(parse_date),
            ) else {
                report.error(
                    t.name,
                    Some(line),
                    Some("date"),
                    "needs a service_id and a YYYYMMDD date".into(),
                );
                continue;
            };
            if !feed.services.contains_key(id) {
                budget.hold(
                    size_of::<(String, Service)>() + MAP_ENTRY + heap(id),
                    t.name,
                )?;
                feed.services.insert(id.to_string(), Default::default());
            }
            budget.hold(size_of::<jiff::civil::Date>() + MAP_ENTRY, t.name)?;
            let Some(s) = feed.services.get_mut(id) else {
                continue;
            };
            match t.get(r, "exception_type") {
                Some("1") => {
                    s.added.insert(date);
                }
                Some("2") => {
                    s.removed.insert(date);
                }
                _ => report.error(
                    t.name,
                    Some(line),
                    Some("exception_type"),
                    "must be 1 (added) or 2 (removed)".into(),
                ),
            }
        }
    }
    Ok(())
}
