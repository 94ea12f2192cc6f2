//! dispatch's configuration section: `[dispatch]` in the TOML file, `--dispatch-*` and
//! `--depot-*` flags (`DispatchFlags`, flattened into `config::Settings`), checked with every problem
//! reported at once through the node's collector.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::Collect;

/// Dispatch: energy figures, time limits, the depot's geofence and badge readers.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub params: super::plan::Params,
    /// Depot yard: centre (lat, lon) and radius in metres. Leaving it is a pull-out,
    /// entering it a pull-in. None: no pull events from telemetry.
    pub geofence: Option<(f64, f64, f64)>,
    /// Serial lines of badge readers (barcode or RFID, one badge per line).
    pub badge_readers: Vec<PathBuf>,
    pub badge_baud: u32,
    /// IANA time zone of the depot (what "today" is); None: the system's.
    pub timezone: Option<String>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            params: Default::default(),
            geofence: None,
            badge_readers: Vec::new(),
            badge_baud: 9600,
            timezone: None,
        }
    }
}

/// dispatch's command-line flags and environment variables; `None` means "not given".
/// Kept as strings so every bad value is reported, not just the first.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct DispatchFlags {
    /// Depot yard geofence "LAT,LON,RADIUS_M": leaving it is a pull-out, entering a pull-in.
    #[arg(long, env = "GARASI_DEPOT_GEOFENCE", allow_hyphen_values = true)]
    pub depot_geofence: Option<String>,
    /// IANA time zone of the depot, e.g. Asia/Jakarta [default: the system's].
    #[arg(long, env = "GARASI_DEPOT_TIMEZONE")]
    pub depot_timezone: Option<String>,
    /// Serial line of a badge reader (repeatable), e.g. /dev/ttyUSB0.
    #[arg(
        long = "badge-reader",
        env = "GARASI_BADGE_READERS",
        value_delimiter = ','
    )]
    pub badge_reader: Vec<PathBuf>,
    /// Battery reserve kept on every block, % of capacity [default: 10].
    #[arg(long, env = "GARASI_DISPATCH_RESERVE_PCT")]
    pub dispatch_reserve_pct: Option<String>,
    /// kWh/km for vehicles without their own figure [default: 1.3].
    #[arg(long, env = "GARASI_DISPATCH_DEFAULT_KWH_PER_KM")]
    pub dispatch_default_kwh_per_km: Option<String>,
    /// Charger power assumed for a charging vehicle's forecast, kW [default: 60].
    #[arg(long, env = "GARASI_DISPATCH_CHARGER_KW")]
    pub dispatch_charger_kw: Option<String>,
    /// Minutes after the pull-out time a pull-out counts as late [default: 5].
    #[arg(long, env = "GARASI_DISPATCH_LATE_GRACE_MIN")]
    pub dispatch_late_grace_min: Option<String>,
    /// Most hours a driver may be assigned in a service day [default: 10].
    #[arg(long, env = "GARASI_DISPATCH_MAX_DRIVER_HOURS")]
    pub dispatch_max_driver_hours: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDispatch {
    geofence: Option<String>,
    timezone: Option<String>,
    badge_readers: Option<Vec<PathBuf>>,
    badge_baud: Option<u32>,
    reserve_pct: Option<f64>,
    default_kwh_per_km: Option<f64>,
    charger_kw: Option<f64>,
    late_grace_min: Option<f64>,
    max_driver_hours: Option<f64>,
    signon_before_min: Option<f64>,
}

/// Resolves the section: flags over the file over defaults.
pub(crate) fn resolve(c: &mut Collect, s: &DispatchFlags, f: &FileDispatch) -> DispatchConfig {
    let d = super::plan::Params::default();
    let reserve_pct = c.pick(
        "--dispatch-reserve-pct",
        &s.dispatch_reserve_pct,
        f.reserve_pct,
        d.reserve_pct,
    );
    let default_kwh_per_km = c.pick(
        "--dispatch-default-kwh-per-km",
        &s.dispatch_default_kwh_per_km,
        f.default_kwh_per_km,
        d.default_kwh_per_km,
    );
    let charger_kw = c.pick(
        "--dispatch-charger-kw",
        &s.dispatch_charger_kw,
        f.charger_kw,
        d.charger_kw,
    );
    let grace_min: f64 = c.pick(
        "--dispatch-late-grace-min",
        &s.dispatch_late_grace_min,
        f.late_grace_min,
        d.late_grace_ms as f64 / 60_000.0,
    );
    let max_hours: f64 = c.pick(
        "--dispatch-max-driver-hours",
        &s.dispatch_max_driver_hours,
        f.max_driver_hours,
        d.max_driver_ms as f64 / 3_600_000.0,
    );
    let signon_min = f
        .signon_before_min
        .unwrap_or(d.signon_before_ms as f64 / 60_000.0);
    if !(0.0..=50.0).contains(&reserve_pct) {
        c.0.push(format!(
            "dispatch reserve {reserve_pct}% is out of range: use 0 to 50"
        ));
    }
    if !garasi_sync_protocol::records::vehicle::valid_kwh_per_km(default_kwh_per_km) {
        c.0.push(format!(
            "dispatch default kWh/km {default_kwh_per_km} is out of range: use 0 to 20"
        ));
    }
    if !(0.0..=1000.0).contains(&charger_kw) {
        c.0.push(format!(
            "dispatch charger power {charger_kw} kW is out of range: use 0 to 1000"
        ));
    }
    if !(0.0..=240.0).contains(&grace_min) || !(0.0..=240.0).contains(&signon_min) {
        c.0.push("dispatch late grace and sign-on lead must be 0 to 240 minutes".into());
    }
    if !(1.0..=24.0).contains(&max_hours) {
        c.0.push(format!(
            "dispatch max driver hours {max_hours} is out of range: use 1 to 24"
        ));
    }
    let geofence = match s.depot_geofence.as_ref().or(f.geofence.as_ref()) {
        None => None,
        Some(raw) => {
            let parts: Vec<Option<f64>> = raw.split(',').map(|p| p.trim().parse().ok()).collect();
            match parts.as_slice() {
                [Some(lat), Some(lon), Some(r)]
                    if (-90.0..=90.0).contains(lat)
                        && (-180.0..=180.0).contains(lon)
                        && *r > 0.0 =>
                {
                    Some((*lat, *lon, *r))
                }
                _ => {
                    c.0.push(format!(
                        "--depot-geofence {raw:?}: write LAT,LON,RADIUS_M, e.g. -6.2,106.8,150"
                    ));
                    None
                }
            }
        }
    };
    let timezone = s.depot_timezone.clone().or(f.timezone.clone());
    if let Some(tz) = &timezone {
        if jiff::tz::TimeZone::get(tz).is_err() {
            c.0.push(format!(
                "--depot-timezone {tz:?} is not a known IANA time zone: e.g. Asia/Jakarta"
            ));
        }
    }
    let mut badge_readers = f.badge_readers.clone().unwrap_or_default();
    badge_readers.extend(
        s.badge_reader
            .iter()
            .filter(|p| !p.as_os_str().is_empty())
            .cloned(),
    );
    DispatchConfig {
        params: super::plan::Params {
            reserve_pct,
            default_kwh_per_km,
            charger_kw,
            late_grace_ms: (grace_min * 60_000.0) as i64,
            max_driver_ms: (max_hours * 3_600_000.0) as i64,
            signon_before_ms: (signon_min * 60_000.0) as i64,
        },
        geofence,
        badge_readers,
        badge_baud: f.badge_baud.unwrap_or(9600),
        timezone,
    }
}
