//! Energy and money from panel meters, with no I/O: a time-of-use tariff (bands by hour
//! and day type in the depot's zone, rates in sen (Rupiah x 100) per kWh, integers),
//! and a day's kWh and cost by band from a meter's register readings. Each interval
//! between two readings belongs to the band and day of its midpoint; a register that
//! went down (a meter reset or replaced) adds nothing.

use serde::{Deserialize, Serialize};

/// Which days a band applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Days {
    All,
    Weekday,
    Weekend,
}

/// One band: `from_hour` to `to_hour` (exclusive; wraps past midnight when from > to).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    pub name: String,
    pub days: Days,
    pub from_hour: u8,
    pub to_hour: u8,
    /// Sen (Rupiah x 100) per kWh.
    pub rate_sen_per_kwh: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tariff {
    #[serde(default = "jakarta")]
    pub timezone: String,
    /// The first band that matches an hour applies.
    pub bands: Vec<Band>,
}

fn jakarta() -> String {
    "Asia/Jakarta".into()
}

impl Default for Tariff {
    /// An example in PLN's shape (peak WBP 17:00-22:00, off-peak LWBP otherwise); set
    /// the depot's own rates.
    fn default() -> Self {
        let band = |name: &str, from_hour, to_hour, rate| Band {
            name: name.into(),
            days: Days::All,
            from_hour,
            to_hour,
            rate_sen_per_kwh: rate,
        };
        Tariff {
            timezone: jakarta(),
            bands: vec![band("WBP", 17, 22, 155_367), band("LWBP", 0, 24, 103_578)],
        }
    }
}

impl Band {
    fn covers(&self, weekend: bool, hour: u8) -> bool {
        let day = match self.days {
            Days::All => true,
            Days::Weekday => !weekend,
            Days::Weekend => weekend,
        };
        let hours = if self.from_hour <= self.to_hour {
            (self.from_hour..self.to_hour).contains(&hour)
        } else {
            hour >= self.from_hour || hour < self.to_hour
        };
        day && hours
    }
}

impl Tariff {
    /// Every problem, said so that it can be fixed (hours not covered by any band,
    /// values out of range).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if jiff::tz::TimeZone::get(&self.timezone).is_err() {
            out.push(format!(
                "tariff timezone {:?} is not an IANA zone: e.g. Asia/Jakarta",
                self.timezone
            ));
        }
        for b in &self.bands {
            if b.name.is_empty() || b.name.len() > 32 || b.from_hour > 24 || b.to_hour > 24 {
                out.push(format!(
                    "tariff band {:?}: a name of 1-32 characters and hours 0-24",
                    b.name
                ));
            }
            if !(0..=100_000_000).contains(&b.rate_sen_per_kwh) {
                out.push(format!(
                    "tariff band {:?}: rate_sen_per_kwh must be 0 to 100000000",
                    b.name
                ));
            }
        }
        for (weekend, what) in [(false, "weekdays"), (true, "weekends")] {
            let open: Vec<u8> = (0..24)
                .filter(|h| !self.bands.iter().any(|b| b.covers(weekend, *h)))
                .collect();
            if !open.is_empty() {
                out.push(format!(
                    "tariff: no band covers these hours on {what}: {open:?}"
                ));
            }
        }
        out
    }

    /// The band in force at `ms`.
    pub fn band_at(&self, ms: i64, tz: &jiff::tz::TimeZone) -> Option<&Band> {
        let z = jiff::Timestamp::from_millisecond(ms)
            .ok()?
            .to_zoned(tz.clone());
        let weekend = matches!(
            z.weekday(),
            jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
        );
        let hour = u8::try_from(z.hour()).ok()?;
        self.bands.iter().find(|b| b.covers(weekend, hour))
    }
}

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
    for w in readings.windows(2) {
        let ((a_ms, a_wh), (b_ms, b_wh)) = (w[0], w[1]);
        let d = b_wh - a_wh;
        let mid = a_ms + (b_ms - a_ms) / 2;
        if d <= 0 || mid < from_ms || mid >= to_ms {
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
        b.cost_sen = (b.wh * b.rate_sen_per_kwh + 500) / 1000;
        t.wh += b.wh;
        t.cost_sen += b.cost_sen;
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
