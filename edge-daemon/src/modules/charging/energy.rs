//! Energy and money from panel meters, with no I/O: a time-of-use tariff (bands by hour
//! and day type in the depot's zone, rates in sen (Rupiah x 100) per kWh, integers),
//! and a day's kWh and cost by band from a meter's register readings. Each interval
//! between two readings belongs to the band and day of its midpoint; a register that
//! went down (a meter reset or replaced) adds nothing.

use serde::Serialize;

/// The tariff is part of the edge-cloud contract (cloud master data): its types and
/// rules live in `garasi-sync-protocol`.
pub use garasi_sync_protocol::tariff::{Band, Days, Tariff};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BandTotal {
    pub band: String,
    pub wh: i64,
    pub rate_sen_per_kwh: i64,
    /// Wh x rate / 1000, rounded to the sen.
    pub cost_sen: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Totals {
    pub wh: i64,
    pub cost_sen: i64,
    pub bands: Vec<BandTotal>,
}

/// Most a panel can plausibly draw, W (10 MW): a rise faster than this is a glitch.
const MAX_PANEL_W: i128 = 10_000_000;
/// Readings in a row below the highest register before a drop is taken as a meter
/// replaced (the register starts again from there).
const RESET_AFTER: usize = 3;

/// The register's rises, each at the midpoint of its interval: counted against the
/// highest register seen, so a glitch down and back up adds nothing; a drop that
/// stays for RESET_AFTER readings is a replaced meter; a rise faster than a panel can
/// draw is dropped.
pub fn rises(readings: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let Some(&(mut high_ms, mut high)) = readings.first() else {
        return out;
    };
    let mut low_run: Vec<(i64, i64)> = Vec::new();
    for &(ms, wh) in &readings[1..] {
        if wh < high {
            low_run.push((ms, wh));
            if low_run.len() >= RESET_AFTER && low_run.windows(2).all(|w| w[1].1 >= w[0].1) {
                // Replaced: count what the new meter rose within the run.
                for w in low_run.windows(2) {
                    if w[1].1 > w[0].1 {
                        out.push((w[0].0 + (w[1].0 - w[0].0) / 2, w[1].1 - w[0].1));
                    }
                }
                let last = low_run[low_run.len() - 1];
                (high_ms, high) = last;
                low_run.clear();
            }
            continue;
        }
        low_run.clear();
        let d = wh - high;
        let dt = i128::from(ms.saturating_sub(high_ms).max(0));
        if d > 0 && i128::from(d) * 3_600_000 <= MAX_PANEL_W * dt {
            out.push((high_ms + (ms - high_ms) / 2, d));
        }
        (high_ms, high) = (ms, wh);
    }
    out
}

/// kWh and cost of the intervals whose midpoint is in `[from_ms, to_ms)`; `readings`
/// are (time, register Wh), in time order.
pub fn totals(
    readings: &[(i64, i64)],
    from_ms: i64,
    to_ms: i64,
    tariff: &Tariff,
    tz: &jiff::tz::TimeZone,
) -> Totals {
    let mut t = Totals::default();
    for (mid, d) in rises(readings) {
        if mid < from_ms || mid >= to_ms {
            continue;
        }
        let Some(band) = tariff.band_at(mid, tz) else {
            continue;
        };
        match t.bands.iter_mut().find(|x| x.band == band.name) {
            Some(x) => x.wh += d,
            None => t.bands.push(BandTotal {
                band: band.name.clone(),
                wh: d,
                rate_sen_per_kwh: band.rate_sen_per_kwh,
                cost_sen: 0,
            }),
        }
    }
    for b in &mut t.bands {
        // Integer money: sen, rounded half up once per band.
        let sen = (i128::from(b.wh) * i128::from(b.rate_sen_per_kwh) + 500) / 1000;
        b.cost_sen = i64::try_from(sen).unwrap_or(i64::MAX);
        t.wh = t.wh.saturating_add(b.wh);
        t.cost_sen = t.cost_sen.saturating_add(b.cost_sen);
    }
    t
}

/// Rupiah with thousands dots and two decimals after a comma, as Indonesia writes it.
pub fn rupiah(sen: i64) -> String {
    let (sign, sen) = if sen < 0 { ("-", -sen) } else { ("", sen) };
    let whole = (sen / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push('.');
        }
        grouped.push(c);
    }
    format!("{sign}Rp {grouped},{:02}", sen % 100)
}

#[cfg(test)]
#[path = "energy_tests.rs"]
mod tests;
