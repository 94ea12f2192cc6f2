//! charging's settings: the `[modules.charging]` section of the config file, checked with
//! every other setting at start (all problems at once, exit 64).

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargingConfig {
    /// Heartbeat interval given to chargers at boot, seconds (10-86400).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval_s: u64,
    /// How long a charger has to answer a CALL, seconds (1-600); OCPP-J has one
    /// outstanding CALL per direction, so the next waits for this at most.
    #[serde(default = "default_call_timeout")]
    pub call_timeout_s: u64,
    /// Largest WebSocket message taken from a charger, KiB (4-1024).
    #[serde(default = "default_max_frame")]
    pub max_frame_kib: usize,
    /// Only security profile 2 (Basic auth over TLS, on the HTTPS listener).
    #[serde(default)]
    pub require_tls: bool,
    /// The site's grid limit for charging, kW; the planner shares it among plugged-in
    /// buses. Unset: no smart charging (chargers run as they are configured).
    #[serde(default)]
    pub site_cap_kw: Option<f64>,
    /// Panel meters that read the depot's other load (workshop, offices, lights): the
    /// chargers then share the site cap minus what these read now (a live cap).
    #[serde(default)]
    pub other_load_panels: Vec<String>,
    /// What an other-load panel that has never reported counts as, kW (unset: 0, and
    /// the page names it stale).
    #[serde(default)]
    pub other_load_max_kw: Option<f64>,
    /// Seconds a charger has to apply a new limit before its meter readings above it
    /// raise an alarm (0-600).
    #[serde(default = "default_grace")]
    pub profile_grace_s: u64,
    /// Days of charger meter samples kept at the edge (1-3650; the cloud keeps the
    /// stream).
    #[serde(default = "default_keep")]
    pub keep_samples_days: u64,
    /// The time-of-use tariff for panel meters' cost (`[modules.charging.tariff]`).
    #[serde(default)]
    pub tariff: super::energy::Tariff,
    /// Answer Accepted for id tags that are neither a bound card nor a bus id (the
    /// transaction is recorded either way; Invalid may make a charger stop it).
    #[serde(default)]
    pub accept_unknown_tags: bool,
}

fn default_heartbeat() -> u64 {
    300
}
fn default_call_timeout() -> u64 {
    30
}
fn default_max_frame() -> usize {
    64
}
fn default_grace() -> u64 {
    60
}
fn default_keep() -> u64 {
    35
}

impl Default for ChargingConfig {
    fn default() -> Self {
        ChargingConfig {
            heartbeat_interval_s: default_heartbeat(),
            call_timeout_s: default_call_timeout(),
            max_frame_kib: default_max_frame(),
            require_tls: false,
            site_cap_kw: None,
            other_load_panels: Vec::new(),
            other_load_max_kw: None,
            profile_grace_s: default_grace(),
            keep_samples_days: default_keep(),
            tariff: Default::default(),
            accept_unknown_tags: false,
        }
    }
}

pub(super) fn parse(section: &toml::Table) -> Result<ChargingConfig, Vec<String>> {
    let cfg: ChargingConfig = toml::Value::Table(section.clone())
        .try_into()
        .map_err(|e: toml::de::Error| vec![e.to_string().trim().replace('\n', " ")])?;
    let mut errors = Vec::new();
    let mut range = |key: &str, v: u64, lo: u64, hi: u64| {
        if !(lo..=hi).contains(&v) {
            errors.push(format!("{key} = {v} is out of range: use {lo} to {hi}"));
        }
    };
    range("heartbeat_interval_s", cfg.heartbeat_interval_s, 10, 86_400);
    range("call_timeout_s", cfg.call_timeout_s, 1, 600);
    range("max_frame_kib", cfg.max_frame_kib as u64, 4, 1024);
    range("profile_grace_s", cfg.profile_grace_s, 0, 600);
    range("keep_samples_days", cfg.keep_samples_days, 1, 3650);
    errors.extend(cfg.tariff.problems());
    if cfg.other_load_panels.len() > 32
        || cfg
            .other_load_panels
            .iter()
            .any(|p| !garasi_sync_protocol::ids::valid_id(p))
    {
        errors.push(
            "other_load_panels: at most 32 panel ids of 1-64 letters, digits, '-' or '_'".into(),
        );
    }
    if cfg
        .other_load_max_kw
        .is_some_and(|kw| !(kw.is_finite() && (0.0..=100_000.0).contains(&kw)))
    {
        errors.push("other_load_max_kw is out of range: use 0 to 100000 (kW)".into());
    }
    if !cfg.other_load_panels.is_empty() && cfg.site_cap_kw.is_none() {
        errors.push("other_load_panels needs site_cap_kw: the cap they are taken from".into());
    }
    if let Some(kw) = cfg.site_cap_kw {
        if !(kw.is_finite() && (1.0..=100_000.0).contains(&kw)) {
            errors.push(format!(
                "site_cap_kw = {kw} is out of range: use 1 to 100000 (kW)"
            ));
        }
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
        assert_eq!(parse(&t("")).unwrap(), ChargingConfig::default());
        assert_eq!(parse(&t("call_timeout_s = 5")).unwrap().call_timeout_s, 5);
        let e = parse(&t("call_timeout_s = 0\nmax_frame_kib = 9999")).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(parse(&t("heartbeat = 5")).is_err());
    }
}
