//! Reading a GTFS zip: CSV files with tolerant headers (BOM, stray spaces, quotes),
//! times past 24:00, and the checks that decide what is usable. One file per group of
//! GTFS files (`places`, `services`, `trips`, `stop_times`, `extras`); this one reads
//! the zip and the CSV and runs them in order.

mod extras;
mod places;
mod services;
mod stop_times;
mod trips;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

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

pub(super) fn read_zip(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, GtfsError> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| GtfsError::NotZip(e.to_string()))?;
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut f = zip
            .by_index(i)
            .map_err(|e| GtfsError::NotZip(e.to_string()))?;
        if f.is_dir() {
            continue;
        }
        // Feeds zipped from a folder keep the folder in the name: use the file name.
        let name = f.name().rsplit('/').next().unwrap_or_default().to_string();
        if name.starts_with('.') || name.is_empty() {
            continue;
        }
        let mut buf = Vec::new();
        let limit = MAX_FEED_BYTES.saturating_sub(total) + 1;
        (&mut f)
            .take(limit)
            .read_to_end(&mut buf)
            .map_err(|e| GtfsError::NotZip(format!("{name}: {e}")))?;
        total += buf.len() as u64;
        if total > MAX_FEED_BYTES {
            return Err(GtfsError::NotZip(format!(
                "the feed unpacks to more than {MAX_FEED_BYTES} bytes"
            )));
        }
        files.insert(name, buf);
    }
    Ok(files)
}

/// "HH:MM:SS" (hours may be one digit and may exceed 23) -> seconds.
pub fn parse_time(s: &str) -> Option<u32> {
    let mut it = s.trim().split(':');
    let (h, m, sec) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || h.is_empty() || m.len() != 2 || sec.len() != 2 {
        return None;
    }
    let (h, m, sec): (u32, u32, u32) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    (h < 200 && m < 60 && sec < 60).then_some(h * 3600 + m * 60 + sec)
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

/// One CSV file: header -> column index, rows with their line numbers.
struct Table {
    name: &'static str,
    cols: HashMap<String, usize>,
    rows: Vec<(u64, csv::StringRecord)>,
}

impl Table {
    fn get<'a>(&self, row: &'a csv::StringRecord, col: &str) -> Option<&'a str> {
        let v = row.get(*self.cols.get(col)?)?.trim();
        (!v.is_empty()).then_some(v)
    }
    fn has(&self, col: &str) -> bool {
        self.cols.contains_key(col)
    }
}

/// The feed's files and where to report progress as each one is parsed.
pub(super) struct Files<'a> {
    pub map: &'a BTreeMap<String, Vec<u8>>,
    pub progress: Option<&'a Progress>,
}

impl std::ops::Deref for Files<'_> {
    type Target = BTreeMap<String, Vec<u8>>;
    fn deref(&self) -> &Self::Target {
        self.map
    }
}

fn table(
    files: &Files<'_>,
    name: &'static str,
    required_cols: &[&str],
    report: &mut Report,
) -> Option<Table> {
    let bytes = files.get(name)?;
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let cols: HashMap<String, usize> = match r.headers() {
        Ok(h) => h
            .iter()
            .enumerate()
            .map(|(i, c)| (c.trim().to_ascii_lowercase(), i))
            .collect(),
        Err(e) => {
            report.error(name, Some(1), None, format!("header is not CSV: {e}"));
            return None;
        }
    };
    let missing: Vec<&str> = required_cols
        .iter()
        .copied()
        .filter(|c| !cols.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        report.error(
            name,
            Some(1),
            None,
            format!("required column(s) missing: {}", missing.join(", ")),
        );
        return None;
    }
    let mut rows = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let line = i as u64 + 2;
        match rec {
            Ok(rec) => rows.push((rec.position().map_or(line, |p| p.line()), rec)),
            Err(e) => report.error(name, Some(line), None, format!("not valid CSV: {e}")),
        }
    }
    if let Some(p) = files.progress {
        p.parsed(name, bytes.len() as u64);
    }
    Some(Table { name, cols, rows })
}

fn closest_known(name: &str) -> Option<&'static str> {
    KNOWN
        .iter()
        .copied()
        .find(|k| name.ends_with(*k) || name.contains(k.trim_end_matches(".txt")))
}

pub(super) fn import(files: &Files<'_>) -> Result<(Feed, Report), GtfsError> {
    let mut report = Report::default();
    let unusable = |reason: String, report: Report| GtfsError::Unusable {
        reason,
        report: Box::new(report),
    };
    for name in files.keys() {
        if !KNOWN.contains(&name.as_str()) {
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
    let mut missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|f| !files.contains_key(*f))
        .collect();
    if !files.contains_key("calendar.txt") && !files.contains_key("calendar_dates.txt") {
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
    places::agency(files, &mut feed, &mut report);
    let stop_ids = places::stops(files, &mut feed, &mut report);
    let route_ids = places::routes(files, &mut feed, &mut report);
    services::calendar(files, &mut feed, &mut report);
    services::calendar_dates(files, &mut feed, &mut report);
    let mut trips = trips::trips(files, &feed, &route_ids, &mut report);
    stop_times::stop_times(files, &mut trips, &stop_ids, &mut report);
    extras::frequencies(files, &mut trips, &mut report);
    extras::shapes(files, &mut feed, &mut report);

    if trips.is_empty() {
        return Err(unusable(
            "no trip could be imported (see the report); nothing was imported".into(),
            report,
        ));
    }
    feed.trips = trips.into_values().collect();
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
