//! What a charger's meter values become: numeric samples normalised (kWh to Wh, kW to
//! W, signed and non-numeric values dropped, readings from the future not kept), and
//! power readings above the limit the charger accepted (over-profile alarms).

use ocpp_types::v16 as t;
use ocpp_types::OcppTimestamp;

use super::handle::{ms, name, MAX_WH};
use crate::modules::charging::service::ChargingApi as Core;
use crate::modules::charging::sessions::{self, Sample, ENERGY};
use crate::modules::charging::store;

pub(super) static OVER_PROFILE: crate::lograte::LogRate =
    crate::lograte::LogRate::warn("charging.over_profile", 10);

/// Power readings above the limit the charger accepted for this connector (10 % and
/// 1 kW of tolerance, and `profile_grace_s` for the charger to apply a new limit).
pub(super) fn over_profile(
    core: &Core,
    charger: &str,
    connector: i64,
    tx: Option<i64>,
    samples: &[Sample],
) -> Vec<store::Alarm> {
    samples
        .iter()
        .filter(|s| s.measurand == sessions::POWER && s.phase.is_empty() && s.unit == "W")
        .filter_map(|s| {
            let (limit, since) = core.board.accepted_limit(charger, connector, s.ts_ms)?;
            let drawn = s.value.round() as i64;
            let grace = core.cfg.profile_grace_s as i64 * 1000;
            (s.ts_ms - since >= grace && drawn > limit + (limit / 10).max(1000)).then(|| {
                store::Alarm {
                    charger_id: charger.to_string(),
                    connector_id: connector,
                    ts_ms: s.ts_ms,
                    kind: "over_profile".into(),
                    limit_w: Some(limit),
                    drawn_w: Some(drawn),
                    transaction_id: tx,
                }
            })
        })
        .collect()
}

/// The numeric samples of one MeterValue, normalised (kWh to Wh, kW to W). Signed
/// values and values that are not numbers are skipped.
pub(super) fn samples(ts: &OcppTimestamp, values: &[t::common::SampledValueItem]) -> Vec<Sample> {
    let ts_ms = ms(ts);
    // A reading from more than ten minutes in the future is not kept (see `when`).
    if ts_ms > crate::util::now_ms() + 10 * 60_000 {
        return Vec::new();
    }
    values
        .iter()
        .filter(|v| !matches!(v.format, Some(t::common::Format::SignedData)))
        .filter_map(|v| {
            let raw: f64 = v
                .value
                .trim()
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite())?;
            let measurand = v
                .measurand
                .as_ref()
                .map_or_else(|| ENERGY.to_string(), name);
            let unit = v.unit.as_ref().map_or_else(
                || {
                    if measurand.starts_with("Energy") {
                        "Wh".into()
                    } else {
                        String::new()
                    }
                },
                name,
            );
            let (value, unit) = match unit.as_str() {
                "kWh" => (raw * 1000.0, "Wh".to_string()),
                "kW" => (raw * 1000.0, "W".to_string()),
                "kvarh" => (raw * 1000.0, "varh".to_string()),
                "kvar" => (raw * 1000.0, "var".to_string()),
                _ => (raw, unit),
            };
            // NaN-proof: only a finite value within a terawatt(-hour) is kept, and an
            // energy register is never negative.
            let register = measurand.starts_with("Energy") && measurand.ends_with("Register");
            let in_range =
                value.is_finite() && value.abs() <= MAX_WH as f64 && !(register && value < 0.0);
            if !in_range {
                return None;
            }
            Some(Sample {
                ts_ms,
                location: v.location.as_ref().map(name).unwrap_or_default(),
                measurand,
                phase: v.phase.as_ref().map(name).unwrap_or_default(),
                context: v
                    .context
                    .as_ref()
                    .map_or_else(|| "Sample.Periodic".to_string(), name),
                value,
                unit,
            })
        })
        .collect()
}
