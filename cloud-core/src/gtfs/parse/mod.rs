//! Reading a GTFS feed: CSV files with tolerant headers (BOM, stray spaces, quotes),
//! times past 24:00, and the checks that decide what is usable. One file per group of
//! GTFS files (`places`, `services`, `trips`, `stop_times`, `extras`); `source` streams
//! the files out of the zip within the import's limits, `table` reads one file's rows;
//! this one runs them in order.

mod extras;
mod lines;
mod places;
mod services;
mod source;
mod stop_times;
mod supplement;
mod table;
mod tods;
mod trips;

pub(super) use source::Files;
pub use source::ReadSeek;
use table::table;

use super::*;

/// Every GTFS file name this importer knows (others are reported and ignored).
const KNOWN: &[&str] = &[
    "agency.txt",
    "stops.txt",
    "routes.txt",
    "trips.txt",
    "stop_times.txt",
    "calendar.txt",
    "calendar_dates.txt",
    "fare_attributes.txt",
    "fare_rules.txt",
    "shapes.txt",
    "frequencies.txt",
    "transfers.txt",
    "pathways.txt",
    "levels.txt",
    "feed_info.txt",
    "translations.txt",
    "attributions.txt",
    "areas.txt",
    "stop_areas.txt",
    "networks.txt",
    "route_networks.txt",
    "timeframes.txt",
    "fare_media.txt",
    "fare_products.txt",
    "fare_leg_rules.txt",
    "fare_transfer_rules.txt",
    "location_groups.txt",
    "location_group_stops.txt",
    "booking_rules.txt",
];

/// Estimated heap bytes of a kept string (its buffer and the allocator's overhead).
pub(super) fn heap(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        s.len().next_multiple_of(8) + 16
    }
}

/// Estimated bytes of a hash map or set entry besides its key and value.
pub(super) const MAP_ENTRY: usize = 16;

/// "HH:MM:SS" (hours may be one digit and may exceed 23) -> seconds.
pub fn parse_time(s: &str) -> Option<u32> {
    let mut it = s.trim().split(':');
    let (h, m, sec) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || h.is_empty() || m.len() != 2 || sec.len() != 2 {
        return None;
    }
    let (h, m, sec): (u32, u32, u32) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    // Lazily: `then_some` would compute h * 3600 first and overflow on a huge hour
    // (a debug-build panic; found by tests/fuzz_gtfs.rs).
    (h < 200 && m < 60 && sec < 60).then(|| h * 3600 + m * 60 + sec)
}

pub fn format_time(s: u32) -> String {
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

fn parse_date(s: &str) -> Option<jiff::civil::Date> {
    let s = s.trim();
    if s.len() != 8 {
        return None;
    }
    let (y, m, d) = (
        s[..4].parse().ok()?,
        s[4..6].parse().ok()?,
        s[6..].parse().ok()?,
    );
    jiff::civil::Date::new(y, m, d).ok()
}

fn closest_known(name: &str) -> Option<&'static str> {
    KNOWN
        .iter()
        .copied()
        .find(|k| name.ends_with(*k) || name.contains(k.trim_end_matches(".txt")))
}

pub(super) fn import(files: &mut Files<'_>) -> Result<(Feed, Report), GtfsError> {
    let mut report = Report::default();
    let unusable = |reason: String, report: Report| GtfsError::Unusable {
        reason,
        report: Box::new(report),
    };
    for name in files.keys() {
        let tods = supplement::NAMES.contains(&name.as_str())
            || tods::READ.contains(&name.as_str())
            || tods::NOT_READ.contains(&name.as_str());
        if !KNOWN.contains(&name.as_str()) && !tods {
            let hint = closest_known(name)
                .map(|k| format!("; did you mean {k}?"))
                .unwrap_or_default();
            report.warning(
                name,
                None,
                None,
                format!("not a GTFS file name, ignored{hint}"),
            );
        }
    }
    // A TODS supplement stands in for a missing GTFS file (its rows are all added).
    let has = |f: &str| {
        files.contains_key(f) || supplement::spec(f).is_some_and(|(s, _)| files.contains_key(s))
    };
    let mut missing: Vec<&str> = REQUIRED.iter().copied().filter(|f| !has(f)).collect();
    if !has("calendar.txt") && !has("calendar_dates.txt") {
        missing.push("calendar.txt or calendar_dates.txt");
    }
    if !missing.is_empty() {
        for m in &missing {
            report.error(m, None, None, "required file is missing".into());
        }
        return Err(unusable(
            format!(
                "required file(s) missing: {}. Nothing was imported",
                missing.join(", ")
            ),
            report,
        ));
    }
    let mut feed = Feed::default();
    // In dependency order: each file is checked against what the ones before it kept.
    places::agency(files, &mut feed, &mut report)?;
    let stop_ids = places::stops(files, &mut feed, &mut report)?;
    let route_ids = places::routes(files, &mut feed, &mut report)?;
    services::calendar(files, &mut feed, &mut report)?;
    services::calendar_dates(files, &mut feed, &mut report)?;
    let mut trips = trips::trips(files, &feed, &route_ids, &mut report)?;
    stop_times::stop_times(files, &mut trips, &stop_ids, &feed.stops, &mut report)?;
    extras::frequencies(files, &mut trips, &mut report)?;
    extras::shapes(files, &mut feed, &mut report)?;

    if trips.is_empty() {
        return Err(unusable(
            "no trip could be imported (see the report); nothing was imported".into(),
            report,
        ));
    }
    feed.trips = trips.into_values().collect();
    super::block_check::check(&mut feed, &mut report);
    tods::read(files, &mut feed, &mut report)?;
    report.imported.insert("routes", feed.routes.len() as u64);
    report.imported.insert("stops", feed.stops.len() as u64);
    report.imported.insert("trips", feed.trips.len() as u64);
    report
        .imported
        .insert("services", feed.services.len() as u64);
    report.imported.insert("shapes", feed.shapes.len() as u64);
    Ok((feed, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_past_midnight_and_bad_times() {
        assert_eq!(parse_time("6:00:00"), Some(6 * 3600));
        assert_eq!(parse_time("24:00:00"), Some(86_400));
        assert_eq!(parse_time("25:35:10"), Some(25 * 3600 + 35 * 60 + 10));
        assert_eq!(parse_time(" 07:01:04 "), Some(7 * 3600 + 64));
        for bad in ["", "7:0:00", "07:60:00", "ab:00:00", "07:00", "07:00:00:00"] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
        assert_eq!(format_time(25 * 3600 + 5), "25:00:05");
    }
}
