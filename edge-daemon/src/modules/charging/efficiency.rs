//! Energy per km per bus over the last days: the energy its charging sessions metered,
//! corrected by the change in its battery's charge over the window (telemetry's first
//! and last state of charge), divided by the distance its odometer counted (fleet's
//! `TravelLog`, which telemetry provides). Next to it, the kWh/km dispatch assumes for
//! the bus, so a planner sees when the assumption is off.

use serde::Serialize;
use serde_json::{json, Value};

use super::service::ChargingApi;
use crate::http::ApiError;
use crate::modules::fleet::service::{FleetApi, Travel, TravelSource};
use crate::modules::framework::Services;

/// Less distance than this says nothing about a bus's consumption.
const MIN_KM: f64 = 5.0;
/// More than this in the window is an odometer glitch, not a journey.
const MAX_KM_PER_DAY: f64 = 2_000.0;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusEfficiency {
    pub vehicle: String,
    pub km: Option<f64>,
    pub charged_wh: i64,
    /// Charged plus what the battery gave up over the window (None without both charges).
    pub used_wh: Option<i64>,
    pub kwh_per_km: Option<f64>,
    pub assumed_kwh_per_km: Option<f64>,
}

/// One bus's figures (pure).
pub fn figure(
    vehicle: &str,
    charged_wh: i64,
    travel: Option<&Travel>,
    battery_kwh: f64,
    days: f64,
) -> BusEfficiency {
    let km = travel
        .map(|t| t.last_km - t.first_km)
        .filter(|km| km.is_finite() && *km >= 0.0 && *km <= MAX_KM_PER_DAY * days);
    let used_wh = travel.and_then(|t| {
        let (a, b) = (t.first_soc_pct?, t.last_soc_pct?);
        let given_up = (a - b) / 100.0 * battery_kwh * 1000.0;
        given_up
            .is_finite()
            .then(|| (charged_wh as f64 + given_up).round() as i64)
    });
    let kwh_per_km = match (km, used_wh) {
        (Some(km), Some(wh)) if km >= MIN_KM && wh >= 0 => {
            Some(((wh as f64 / 1000.0 / km) * 1000.0).round() / 1000.0)
        }
        _ => None,
    };
    BusEfficiency {
        vehicle: vehicle.to_string(),
        km: km.map(|k| (k * 10.0).round() / 10.0),
        charged_wh,
        used_wh,
        kwh_per_km,
        assumed_kwh_per_km: None,
    }
}

/// Every bus of the fleet over the last `days` days.
pub(super) async fn efficiency_json(
    api: &ChargingApi,
    services: &Services,
    days: i64,
) -> Result<Value, ApiError> {
    if !(1..=31).contains(&days) {
        return Err(ApiError::bad_request("days is 1 to 31"));
    }
    let now = crate::util::now_ms();
    let from = now - days * 86_400_000;
    let mut charged: std::collections::HashMap<String, i64> = Default::default();
    for s in api.sessions(from).await.map_err(ApiError::internal)? {
        let (Some(v), Some(start)) = (s.vehicle_id.clone(), s.start_ms) else {
            continue;
        };
        if start < from {
            continue;
        }
        let wh = s
            .energy_wh
            .or_else(|| Some(s.last_wh? - s.meter_start_wh?))
            .unwrap_or(0);
        *charged.entry(v).or_default() += wh.max(0);
    }
    let (fleet, travel) = (services.get::<FleetApi>(), services.get::<TravelSource>());
    let buses = tokio::task::spawn_blocking(move || {
        let Some(fleet) = fleet else {
            return Vec::new();
        };
        fleet
            .list()
            .into_iter()
            .map(|v| {
                let t = travel.as_ref().and_then(|t| t.0.travel(&v.id, from, now));
                let wh = charged.get(&v.id).copied().unwrap_or(0);
                let mut f = figure(&v.id, wh, t.as_ref(), v.battery_kwh, days as f64);
                f.assumed_kwh_per_km = v.kwh_per_km;
                f
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(json!({"days": days, "from_ms": from, "to_ms": now, "buses": buses}))
}

#[cfg(test)]
#[path = "efficiency_tests.rs"]
mod tests;
