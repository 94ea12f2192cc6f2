//! Reading a GTFS zip: CSV files with tolerant headers (BOM, stray spaces, quotes),
//! times past 24:00, and the checks that decide what is usable.

use std::collections::{BTreeMap, HashMap, HashSet};
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

    if let Some(t) = table(files, "agency.txt", &["agency_name"], &mut report) {
        feed.agency_names = t
            .rows
            .iter()
            .filter_map(|(_, r)| t.get(r, "agency_name").map(String::from))
            .collect();
        // Every agency of a feed must share one timezone (GTFS rule); times are local to it.
        feed.timezone = t
            .rows
            .iter()
            .find_map(|(_, r)| t.get(r, "agency_timezone").map(String::from));
        match &feed.timezone {
            None => report.warning(
                t.name,
                None,
                Some("agency_timezone"),
                "no agency_timezone: times cannot be placed on a clock until the depot plan names one".into(),
            ),
            Some(tz) if jiff::tz::TimeZone::get(tz).is_err() => report.warning(
                t.name,
                None,
                Some("agency_timezone"),
                format!("agency_timezone {tz:?} is not a known IANA time zone"),
            ),
            Some(_) => {}
        }
    }

    // Stops.
    let mut stop_ids = HashSet::new();
    if let Some(t) = table(files, "stops.txt", &["stop_id"], &mut report) {
        for (line, r) in &t.rows {
            let Some(id) = t.get(r, "stop_id") else {
                report.error(t.name, Some(*line), Some("stop_id"), "empty stop_id".into());
                continue;
            };
            let coord = |c: &str| t.get(r, c).and_then(|v| v.parse::<f64>().ok());
            let (lat, lon) = (coord("stop_lat"), coord("stop_lon"));
            let (lat, lon) = match (lat, lon) {
                (Some(a), Some(o))
                    if (-90.0..=90.0).contains(&a) && (-180.0..=180.0).contains(&o) =>
                {
                    (a, o)
                }
                _ => {
                    // Stations' children may lack coordinates; keep the stop, say so.
                    report.warning(
                        t.name,
                        Some(*line),
                        Some("stop_lat/stop_lon"),
                        format!("stop \"{id}\" has no valid coordinates"),
                    );
                    (f64::NAN, f64::NAN)
                }
            };
            if !stop_ids.insert(id.to_string()) {
                let same = feed.stops.iter().any(|s| {
                    s.id == id
                        && s.name == t.get(r, "stop_name").unwrap_or(id)
                        && (s.lat == lat || (s.lat.is_nan() && lat.is_nan()))
                        && (s.lon == lon || (s.lon.is_nan() && lon.is_nan()))
                });
                if same {
                    report.warning(t.name, Some(*line), Some("stop_id"), format!("stop \"{id}\" is listed twice with the same values; second copy ignored"));
                } else {
                    report.error(t.name, Some(*line), Some("stop_id"), format!("duplicate stop_id \"{id}\" with different values; the first one is kept"));
                }
                continue;
            }
            feed.stops.push(Stop {
                id: id.into(),
                name: t.get(r, "stop_name").unwrap_or(id).into(),
                lat,
                lon,
            });
        }
    }

    // Routes.
    let mut route_ids = HashSet::new();
    if let Some(t) = table(
        files,
        "routes.txt",
        &["route_id", "route_type"],
        &mut report,
    ) {
        for (line, r) in &t.rows {
            let Some(id) = t.get(r, "route_id") else {
                report.error(
                    t.name,
                    Some(*line),
                    Some("route_id"),
                    "empty route_id".into(),
                );
                continue;
            };
            let Some(rt) = t.get(r, "route_type").and_then(|v| v.parse().ok()) else {
                report.error(
                    t.name,
                    Some(*line),
                    Some("route_type"),
                    format!("route \"{id}\": route_type is not a number"),
                );
                continue;
            };
            if !route_ids.insert(id.to_string()) {
                report.error(
                    t.name,
                    Some(*line),
                    Some("route_id"),
                    format!("duplicate route_id \"{id}\""),
                );
                continue;
            }
            feed.routes.push(Route {
                id: id.into(),
                short_name: t.get(r, "route_short_name").unwrap_or("").into(),
                long_name: t.get(r, "route_long_name").unwrap_or("").into(),
                route_type: rt,
            });
        }
    }

    // Services.
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
        &mut report,
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
    if let Some(t) = table(
        files,
        "calendar_dates.txt",
        &["service_id", "date", "exception_type"],
        &mut report,
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

    // Trips.
    let mut trips: BTreeMap<String, Trip> = BTreeMap::new();
    if let Some(t) = table(
        files,
        "trips.txt",
        &["route_id", "service_id", "trip_id"],
        &mut report,
    ) {
        for (line, r) in &t.rows {
            let (Some(id), Some(route), Some(service)) = (
                t.get(r, "trip_id"),
                t.get(r, "route_id"),
                t.get(r, "service_id"),
            ) else {
                report.error(
                    t.name,
                    Some(*line),
                    None,
                    "trip_id, route_id and service_id are required".into(),
                );
                continue;
            };
            if !route_ids.contains(route) {
                report.error(
                    t.name,
                    Some(*line),
                    Some("route_id"),
                    format!("trip \"{id}\": route \"{route}\" is not in routes.txt"),
                );
                continue;
            }
            if !feed.services.contains_key(service) {
                report.error(t.name, Some(*line), Some("service_id"), format!("trip \"{id}\": service \"{service}\" is not in calendar.txt or calendar_dates.txt"));
                continue;
            }
            if trips.contains_key(id) {
                report.error(
                    t.name,
                    Some(*line),
                    Some("trip_id"),
                    format!("duplicate trip_id \"{id}\""),
                );
                continue;
            }
            trips.insert(
                id.into(),
                Trip {
                    id: id.into(),
                    route_id: route.into(),
                    service_id: service.into(),
                    block_id: t.get(r, "block_id").map(String::from),
                    shape_id: t.get(r, "shape_id").map(String::from),
                    direction_id: t.get(r, "direction_id").and_then(|v| v.parse().ok()),
                    headsign: t.get(r, "trip_headsign").map(String::from),
                    stop_times: Vec::new(),
                    from_frequency: None,
                },
            );
        }
    }

    // Stop times, grouped per trip with their sequence and line.
    let mut raw: HashMap<String, Vec<RawStopTime>> = HashMap::new();
    let mut rows_total = 0u64;
    let mut rows_untimed = 0u64;
    if let Some(t) = table(
        files,
        "stop_times.txt",
        &["trip_id", "stop_id", "stop_sequence"],
        &mut report,
    ) {
        if !t.has("arrival_time") && !t.has("departure_time") {
            report.error(
                t.name,
                Some(1),
                Some("arrival_time/departure_time"),
                "no time columns at all".into(),
            );
        }
        for (line, r) in &t.rows {
            rows_total += 1;
            if t.get(r, "arrival_time").is_none() && t.get(r, "departure_time").is_none() {
                rows_untimed += 1;
            }
            let (Some(trip), Some(stop)) = (t.get(r, "trip_id"), t.get(r, "stop_id")) else {
                report.error(
                    t.name,
                    Some(*line),
                    None,
                    "trip_id and stop_id are required".into(),
                );
                continue;
            };
            if !trips.contains_key(trip) {
                report.error(
                    t.name,
                    Some(*line),
                    Some("trip_id"),
                    format!("trip \"{trip}\" is not in trips.txt (or was rejected)"),
                );
                continue;
            }
            if !stop_ids.contains(stop) {
                report.error(
                    t.name,
                    Some(*line),
                    Some("stop_id"),
                    format!("stop \"{stop}\" is not in stops.txt"),
                );
                continue;
            }
            let Some(seq) = t
                .get(r, "stop_sequence")
                .and_then(|v| v.parse::<u32>().ok())
            else {
                report.error(
                    t.name,
                    Some(*line),
                    Some("stop_sequence"),
                    "not a non-negative integer".into(),
                );
                continue;
            };
            let time = |c: &str, report: &mut Report| -> Option<u32> {
                let v = t.get(r, c)?;
                let parsed = parse_time(v);
                if parsed.is_none() {
                    report.error(
                        t.name,
                        Some(*line),
                        Some(c),
                        format!("{v:?} is not a time (H:MM:SS, hours may pass 24)"),
                    );
                }
                parsed
            };
            let (arr, dep) = (
                time("arrival_time", &mut report),
                time("departure_time", &mut report),
            );
            raw.entry(trip.into()).or_default().push((
                seq,
                *line,
                stop.into(),
                arr.or(dep),
                dep.or(arr),
            ));
        }
    }
    if rows_total > 0 && rows_untimed == rows_total {
        report.error(
            "stop_times.txt",
            None,
            Some("arrival_time/departure_time"),
            format!("none of the {rows_total} rows has an arrival or departure time: a trip needs at least its first and last stop timed, so no trip can be scheduled"),
        );
    }
    let had_rows: HashSet<String> = raw.keys().cloned().collect();
    for (id, mut rows) in raw {
        rows.sort_by_key(|r| r.0);
        let Some(trip) = trips.get_mut(&id) else {
            continue;
        };
        match build_stop_times(&rows) {
            Ok(st) => trip.stop_times = st,
            Err((line, msg)) => {
                report.error(
                    "stop_times.txt",
                    Some(line),
                    Some("arrival_time/departure_time"),
                    format!("trip \"{id}\" rejected: {msg}"),
                );
            }
        }
    }
    let untimed: Vec<String> = trips
        .values()
        .filter(|t| t.stop_times.is_empty())
        .map(|t| t.id.clone())
        .collect();
    for id in untimed {
        trips.remove(&id);
        // Trips rejected for their stop times were reported with the line above.
        if !had_rows.contains(&id) {
            report.error(
                "trips.txt",
                None,
                Some("trip_id"),
                format!("trip \"{id}\" has no stop times; not imported"),
            );
        }
    }

    // Frequencies: expand template trips into concrete ones.
    if let Some(t) = table(
        files,
        "frequencies.txt",
        &["trip_id", "start_time", "end_time", "headway_secs"],
        &mut report,
    ) {
        let mut expanded: Vec<Trip> = Vec::new();
        let mut templates = HashSet::new();
        for (line, r) in &t.rows {
            let Some(id) = t.get(r, "trip_id") else {
                continue;
            };
            let Some(template) = trips.get(id) else {
                report.error(
                    t.name,
                    Some(*line),
                    Some("trip_id"),
                    format!("trip \"{id}\" is not an imported trip"),
                );
                continue;
            };
            let (start, end, headway) = (
                t.get(r, "start_time").and_then(parse_time),
                t.get(r, "end_time").and_then(parse_time),
                t.get(r, "headway_secs").and_then(|v| v.parse::<u32>().ok()),
            );
            let (Some(start), Some(end), Some(headway)) = (start, end, headway) else {
                report.error(t.name, Some(*line), None, format!("trip \"{id}\": start_time, end_time (H:MM:SS) and headway_secs (seconds) are required"));
                continue;
            };
            if headway == 0 || end <= start {
                report.error(
                    t.name,
                    Some(*line),
                    Some("headway_secs"),
                    format!("trip \"{id}\": needs headway_secs > 0 and end_time after start_time"),
                );
                continue;
            }
            templates.insert(id.to_string());
            let base = template.start_s();
            let mut dep = start;
            while dep < end {
                let shift = dep as i64 - base as i64;
                let mut trip = template.clone();
                trip.id = format!("{id}@{}", format_time(dep));
                trip.from_frequency = Some(id.to_string());
                for st in &mut trip.stop_times {
                    st.arrival_s = (st.arrival_s as i64 + shift).max(0) as u32;
                    st.departure_s = (st.departure_s as i64 + shift).max(0) as u32;
                }
                expanded.push(trip);
                dep += headway;
            }
        }
        for id in templates {
            trips.remove(&id);
        }
        for trip in expanded {
            trips.insert(trip.id.clone(), trip);
        }
    }

    // Shapes (optional).
    if let Some(t) = table(
        files,
        "shapes.txt",
        &[
            "shape_id",
            "shape_pt_lat",
            "shape_pt_lon",
            "shape_pt_sequence",
        ],
        &mut report,
    ) {
        let mut pts: HashMap<String, Vec<(u32, f64, f64)>> = HashMap::new();
        for (line, r) in &t.rows {
            let p = (
                t.get(r, "shape_id"),
                t.get(r, "shape_pt_sequence")
                    .and_then(|v| v.parse::<u32>().ok()),
                t.get(r, "shape_pt_lat").and_then(|v| v.parse::<f64>().ok()),
                t.get(r, "shape_pt_lon").and_then(|v| v.parse::<f64>().ok()),
            );
            match p {
                (Some(id), Some(seq), Some(lat), Some(lon)) => {
                    pts.entry(id.into()).or_default().push((seq, lat, lon))
                }
                _ => report.error(
                    t.name,
                    Some(*line),
                    None,
                    "shape point needs shape_id, numeric sequence, lat and lon".into(),
                ),
            }
        }
        for (id, mut v) in pts {
            v.sort_by_key(|p| p.0);
            feed.shapes
                .insert(id, v.into_iter().map(|(_, a, o)| (a, o)).collect());
        }
    }

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

/// One stop_times row: (stop_sequence, line, stop_id, arrival, departure).
type RawStopTime = (u32, u64, String, Option<u32>, Option<u32>);

/// Orders a trip's stops, checks its times and interpolates untimed stops between timed
/// ones. Err((line, why)) rejects the trip.
fn build_stop_times(rows: &[RawStopTime]) -> Result<Vec<StopTime>, (u64, String)> {
    let (first, last) = match (rows.first(), rows.last()) {
        (Some(f), Some(l)) if rows.len() >= 2 => (f, l),
        (Some(f), _) => return Err((f.1, "a trip needs at least two stops".into())),
        _ => return Err((0, "no stops".into())),
    };
    if first.3.is_none() {
        return Err((first.1, "its first stop has no time".into()));
    }
    if last.3.is_none() {
        return Err((last.1, "its last stop has no time".into()));
    }
    for w in rows.windows(2) {
        if w[0].0 == w[1].0 {
            return Err((w[1].1, format!("stop_sequence {} appears twice", w[1].0)));
        }
    }
    let mut out: Vec<StopTime> = Vec::with_capacity(rows.len());
    let mut prev_timed: Option<(usize, u32)> = None;
    for (i, r) in rows.iter().enumerate() {
        if let (Some(arr), Some(dep)) = (r.3, r.4) {
            if dep < arr {
                return Err((r.1, "departure before arrival".into()));
            }
            if let Some((_, prev)) = prev_timed {
                if arr < prev {
                    return Err((r.1, "time goes backwards along the trip".into()));
                }
            }
            // Interpolate the untimed stops since the previous timed one.
            if let Some((pi, pt)) = prev_timed {
                let gap = (i - pi) as u32;
                for (k, st) in out.iter_mut().enumerate().skip(pi + 1) {
                    let t = pt + (arr - pt) * (k - pi) as u32 / gap;
                    st.arrival_s = t;
                    st.departure_s = t;
                }
            }
            prev_timed = Some((i, dep));
            out.push(StopTime {
                stop_id: r.2.clone(),
                arrival_s: arr,
                departure_s: dep,
                timed: true,
            });
        } else {
            out.push(StopTime {
                stop_id: r.2.clone(),
                arrival_s: 0,
                departure_s: 0,
                timed: false,
            });
        }
    }
    Ok(out)
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

    #[test]
    fn untimed_intermediate_stops_are_interpolated() {
        let rows = vec![
            (1, 2, "A".to_string(), Some(100), Some(100)),
            (2, 3, "B".to_string(), None, None),
            (3, 4, "C".to_string(), None, None),
            (4, 5, "D".to_string(), Some(400), Some(410)),
        ];
        let st = build_stop_times(&rows).unwrap();
        let t: Vec<u32> = st.iter().map(|s| s.arrival_s).collect();
        assert_eq!(t, vec![100, 200, 300, 400]);
        assert!(!st[1].timed && st[3].timed);
        let mut no_end = rows.clone();
        no_end[3].3 = None;
        no_end[3].4 = None;
        assert_eq!(build_stop_times(&no_end).unwrap_err().0, 5);
    }
}
