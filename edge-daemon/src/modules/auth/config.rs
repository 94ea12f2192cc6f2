//! auth's settings: the `[modules.auth]` section of the config file (how hard guessing
//! a PIN or password is made), checked with every other setting at start (exit 64).

use std::time::Duration;

use serde::Deserialize;

use crate::limit::LimitPolicy;

/// What the section may hold; unknown keys are refused (a typo never keeps a default).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Shortest PIN accepted at sign-on, in digits (4-8). Raise it to 6 once every
    /// driver has a 6-digit PIN: shorter PINs then stop working.
    pub pin_min_digits: u8,
    /// Wrong passwords or PINs one client address may send in a burst (1-1000).
    pub client_failure_burst: u32,
    /// After the burst, one more wrong answer per this many seconds (1-3600).
    pub client_failure_refill_secs: u64,
    /// The topic map of energy panel meters: the one topic a meter device publishes
    /// to, `{id}` being its id (default the seed's `DATA/PM/{id}`).
    pub meter_topic: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            pin_min_digits: 4,
            client_failure_burst: 10,
            client_failure_refill_secs: 6,
            meter_topic: super::devices::METER_TOPIC.into(),
        }
    }
}

impl AuthConfig {
    pub(super) fn client_policy(&self) -> LimitPolicy {
        LimitPolicy {
            burst: self.client_failure_burst,
            refill: Duration::from_secs(self.client_failure_refill_secs),
            ..LimitPolicy::default()
        }
    }
}

/// The section parsed and checked, or every problem in it.
pub(super) fn parse(section: &toml::Table) -> Result<AuthConfig, Vec<String>> {
    let cfg: AuthConfig = toml::Value::Table(section.clone())
        .try_into()
        .map_err(|e: toml::de::Error| vec![e.to_string().trim().replace('\n', " ")])?;
    let mut errors = Vec::new();
    if !(4..=8).contains(&cfg.pin_min_digits) {
        errors.push(format!(
            "pin_min_digits = {} is out of range: use 4 to 8",
            cfg.pin_min_digits
        ));
    }
    if !(1..=1000).contains(&cfg.client_failure_burst) {
        errors.push(format!(
            "client_failure_burst = {} is out of range: use 1 to 1000",
            cfg.client_failure_burst
        ));
    }
    if !(1..=3600).contains(&cfg.client_failure_refill_secs) {
        errors.push(format!(
            "client_failure_refill_secs = {} is out of range: use 1 to 3600",
            cfg.client_failure_refill_secs
        ));
    }
    let t = &cfg.meter_topic;
    // `{id}` is a whole topic level, so the meters' filter is the map with `+` for it.
    let whole_level = t
        .split('/')
        .filter(|l| l.contains("{id}"))
        .all(|l| l == "{id}");
    // The first level is literal, so no meter id can turn the map into another
    // namespace (`{id}/v1/vehicles/...` with a meter called `garasi`).
    let literal_first = t
        .split('/')
        .next()
        .is_some_and(|l| !l.is_empty() && !l.contains("{id}"));
    if t.matches("{id}").count() != 1
        || !whole_level
        || !literal_first
        || t.contains(['+', '#'])
        || t.starts_with('$')
        || t.starts_with("garasi/")
        || t.ends_with('/')
        || t.len() > 200
    {
        errors.push(
            "meter_topic must hold {id} once as a whole level (not the first), no + # or leading $, not end in / and not be under garasi/: e.g. \"DATA/PM/{id}\"".into(),
        );
    }
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_values_and_refusals() {
        let t = |s: &str| s.parse::<toml::Table>().unwrap();
        assert_eq!(parse(&t("")).unwrap(), AuthConfig::default());
        assert_eq!(parse(&t("pin_min_digits = 6")).unwrap().pin_min_digits, 6);
        for bad in [
            "pin_min_digits = 3",
            "pin_min_digits = 9",
            "client_failure_burst = 0",
            "client_failure_refill_secs = 0",
            "pin_min_digit = 6",
        ] {
            assert!(parse(&t(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            parse(&t("pin_min_digits = 2\nclient_failure_burst = 0"))
                .unwrap_err()
                .len(),
            2
        );
    }
}
