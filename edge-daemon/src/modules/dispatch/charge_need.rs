//! What dispatch and charging tell each other, without depending on each other's code:
//! dispatch says, per bus, its next block and the energy that block needs
//! (`Dispatch::next_blocks`, the charging planner's targets); charging publishes its plan
//! as a [`ChargePlanSource`] in `Services`, and dispatch's forecast state of charge
//! follows that plan instead of a constant charger power.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::plan;
use super::service::Dispatch;
use super::store;
use crate::http::ApiError;

/// A bus's next block that has not pulled out yet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NextBlock {
    pub vehicle: String,
    /// The block's record id and its name.
    pub block_id: String,
    pub block: String,
    pub pull_out_ms: i64,
    /// Energy the block needs, reserve included (dispatch's energy rule), kWh.
    pub need_kwh: f64,
}

/// The charging plan as dispatch reads it: for a bus, its connector's limits
/// `(from_ms, watts)`, each until the next.
pub trait ChargePlans: Send + Sync {
    fn periods(&self, vehicle: &str) -> Option<Vec<(i64, i64)>>;
}

/// Wrapper so the trait object can live in `Services` (keyed by concrete type).
pub struct ChargePlanSource(pub Arc<dyn ChargePlans>);

impl Dispatch {
    /// Each bus's next block not yet pulled out, from today's and the next service
    /// day's plans (a bus plugged in at 22:00 charges for tomorrow's pull-out).
    pub async fn next_blocks(&self, now_ms: i64) -> Result<Vec<NextBlock>, ApiError> {
        let today = self.date_at(now_ms);
        let tomorrow = today
            .parse::<jiff::civil::Date>()
            .ok()
            .and_then(|d| d.tomorrow().ok())
            .map(|d| d.to_string())
            .unwrap_or_default();
        let days = self
            .store
            .read(move |c| Ok([store::load_day(c, &today)?, store::load_day(c, &tomorrow)?]))
            .await
            .map_err(ApiError::internal)?;
        let vehicles = self.vehicle_states().await?;
        let by_id: HashMap<&str, &plan::VehicleState> =
            vehicles.iter().map(|v| (v.id.as_str(), v)).collect();
        let mut next: HashMap<String, NextBlock> = HashMap::new();
        for day in &days {
            for b in &day.blocks {
                let Some(a) = day.assignments.get(&b.id) else {
                    continue;
                };
                let Some(v) = a.vehicle.as_deref() else {
                    continue;
                };
                if a.pull_out_actual_ms.is_some() || b.pull_out_ms <= now_ms {
                    continue;
                }
                if next.get(v).is_some_and(|n| n.pull_out_ms <= b.pull_out_ms) {
                    continue;
                }
                let need = plan::energy_kwh(b.distance_km, by_id.get(v).copied(), &self.params);
                next.insert(
                    v.to_string(),
                    NextBlock {
                        vehicle: v.to_string(),
                        block_id: b.id.clone(),
                        block: b.block.clone(),
                        pull_out_ms: b.pull_out_ms,
                        need_kwh: need,
                    },
                );
            }
        }
        let mut out: Vec<NextBlock> = next.into_values().collect();
        out.sort_by(|a, b| {
            a.pull_out_ms
                .cmp(&b.pull_out_ms)
                .then(a.vehicle.cmp(&b.vehicle))
        });
        Ok(out)
    }
}
