//! The time-of-use electricity tariff a depot's energy is costed by: bands by hour and
//! day type (weekday, weekend, public holiday) in the depot's zone, rates in sen (Rupiah
//! x 100) per kWh as integers. Cloud master data (the `tariff` record carries it as
//! JSON) or a standalone depot's config; both sides check it with [`Tariff::problems`].

use serde::{Deserialize, Serialize};

/// Most bands a tariff may have (a real one has two to four).
pub const MAX_BANDS: usize = 48;
/// Most public holidays a tariff may list (a few years of them).
pub const MAX_HOLIDAYS: usize = 400;

/// Which days a band applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Days {
    All,
    /// Monday to Friday, unless a public holiday.
    Weekday,
    /// Saturday, Sunday and public holidays.
    Weekend,
    /// Public holidays only (listed in the tariff): first, when a holiday's rate
    /// differs from a weekend's.
    Holiday,
}

/// What kind of day a date is for the tariff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayType {
    Weekday,
    Weekend,
    Holiday,
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
    /// Public holidays (YYYY-MM-DD, in the tariff's zone): `holiday` bands apply, else
    /// `weekend` ones.
    #[serde(default)]
    pub holidays: Vec<String>,
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
            holidays: Vec::new(),
        }
    }
}

impl Band {
    /// Whether the band applies on this kind of day at this hour.
    pub fn covers(&self, day: DayType, hour: u8) -> bool {
        let day = match self.days {
            Days::All => true,
            Days::Weekday => day == DayType::Weekday,
            Days::Weekend => day != DayType::Weekday,
            Days::Holiday => day == DayType::Holiday,
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
            if b.name.is_empty()
                || b.name.chars().count() > 32
                || b.from_hour > 24
                || b.to_hour > 24
                || b.from_hour == b.to_hour
            {
                out.push(format!(
                    "tariff band {:?}: a name of 1-32 characters and hours 0-24, from_hour and to_hour different",
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
        let mut names: Vec<&str> = self.bands.iter().map(|b| b.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            out.push("tariff: two bands have the same name; give each band its own".into());
        }
        if self.holidays.len() > MAX_HOLIDAYS {
            out.push(format!("tariff: at most {MAX_HOLIDAYS} holidays"));
        }
        for h in &self.holidays {
            // Exactly YYYY-MM-DD: the form a holiday is looked up by (jiff would also
            // read 20261225 or 2026-12-25T00:00, which would then never match).
            if h.parse::<jiff::civil::Date>()
                .ok()
                .map(|d| d.to_string())
                .as_ref()
                != Some(h)
            {
                out.push(format!(
                    "tariff holiday {h:?} is not a date: write YYYY-MM-DD"
                ));
            }
        }
        if self.bands.len() > MAX_BANDS {
            out.push(format!("tariff: at most {MAX_BANDS} bands"));
        }
        let days = [
            (DayType::Weekday, "weekdays"),
            (DayType::Weekend, "weekends"),
            (DayType::Holiday, "holidays"),
        ];
        for (day, what) in days {
            let open: Vec<u8> = (0..24)
                .filter(|h| !self.bands.iter().any(|b| b.covers(day, *h)))
                .collect();
            if !open.is_empty() {
                out.push(format!(
                    "tariff: no band covers these hours on {what}: {open:?}"
                ));
            }
        }
        out
    }

    /// What kind of day `date` is.
    pub fn day_type(&self, date: jiff::civil::Date) -> DayType {
        let text = date.to_string();
        if self.holidays.contains(&text) {
            DayType::Holiday
        } else if matches!(
            date.weekday(),
            jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
        ) {
            DayType::Weekend
        } else {
            DayType::Weekday
        }
    }

    /// The band in force at `ms`.
    pub fn band_at(&self, ms: i64, tz: &jiff::tz::TimeZone) -> Option<&Band> {
        let z = jiff::Timestamp::from_millisecond(ms)
            .ok()?
            .to_zoned(tz.clone());
        let day = self.day_type(z.date());
        let hour = u8::try_from(z.hour()).ok()?;
        self.bands.iter().find(|b| b.covers(day, hour))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn band(name: &str, days: Days, from_hour: u8, to_hour: u8, rate: i64) -> Band {
        Band {
            name: name.into(),
            days,
            from_hour,
            to_hour,
            rate_sen_per_kwh: rate,
        }
    }

    #[test]
    fn a_holiday_takes_its_own_band_first_then_the_weekend_ones() {
        let t = Tariff {
            timezone: "Asia/Jakarta".into(),
            bands: vec![
                band("HOLIDAY", Days::Holiday, 0, 24, 90_000),
                band("WBP", Days::Weekday, 17, 22, 155_367),
                band("LWBP", Days::All, 0, 24, 103_578),
            ],
            holidays: vec!["2026-12-25".into()],
        };
        assert!(t.problems().is_empty(), "{:?}", t.problems());
        let tz = jiff::tz::TimeZone::get("Asia/Jakarta").unwrap();
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        // Friday 25 December 2026, 18:00 WIB: a holiday, not the weekday peak.
        assert_eq!(
            t.band_at(at("2026-12-25T11:00:00Z"), &tz).unwrap().name,
            "HOLIDAY"
        );
        // Thursday 24 December, 18:00 WIB: the weekday peak.
        assert_eq!(
            t.band_at(at("2026-12-24T11:00:00Z"), &tz).unwrap().name,
            "WBP"
        );
        // Saturday 26 December, 18:00 WIB: no peak at weekends here.
        assert_eq!(
            t.band_at(at("2026-12-26T11:00:00Z"), &tz).unwrap().name,
            "LWBP"
        );
        assert_eq!(t.day_type("2026-12-25".parse().unwrap()), DayType::Holiday);
    }

    #[test]
    fn holidays_must_be_dates_and_covered_at_every_hour() {
        let t = Tariff {
            timezone: "Asia/Jakarta".into(),
            bands: vec![
                band("WD", Days::Weekday, 0, 24, 1),
                band("WE", Days::Weekend, 0, 24, 1),
            ],
            holidays: vec!["25-12-2026".into()],
        };
        let p = t.problems();
        assert!(p.iter().any(|x| x.contains("25-12-2026")), "{p:?}");
        for other in ["20261225", "2026-12-25T00:00", "+002026-12-25"] {
            let t = Tariff {
                holidays: vec![other.into()],
                ..t.clone()
            };
            assert!(
                t.problems().iter().any(|x| x.contains(other)),
                "{other} accepted"
            );
        }
        // Weekend bands cover holidays, so no gap is reported for them.
        assert!(!p.iter().any(|x| x.contains("on holidays")), "{p:?}");
        let only_weekdays = Tariff {
            bands: vec![band("WD", Days::Weekday, 0, 24, 1)],
            holidays: vec![],
            ..t
        };
        let p = only_weekdays.problems();
        assert!(
            p.iter().any(|x| x.contains("on weekends"))
                && p.iter().any(|x| x.contains("on holidays")),
            "{p:?}"
        );
    }

    #[test]
    fn the_default_is_valid_and_parses_from_config_without_holidays() {
        assert!(Tariff::default().problems().is_empty());
        let t: Tariff = serde_json::from_str(
            r#"{"bands":[{"name":"ALL","days":"all","from_hour":0,"to_hour":24,"rate_sen_per_kwh":5}]}"#,
        )
        .unwrap();
        assert!(t.holidays.is_empty() && t.problems().is_empty());
    }
}
