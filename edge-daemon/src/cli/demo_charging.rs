//! The demo's charging and energy: chargers with fresh credentials (two connectors of a
//! 150 kW charger each), a charging card per plugged-in bus, two panel meters, and the
//! simulators that drive them over the real protocols: OCPP 1.6J charge points as
//! WebSocket clients of the edge's door, panel meters as MQTT devices of its broker.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::demo_day::{DemoDay, DEMO_SOURCE};
use crate::modules::auth;
use crate::modules::charging::service::{add_charger, AddChargerError, ChargingApi};
use crate::sim::charger::{Plugged, SimCharger, SimPlug};
use crate::sim::panel::SimPanel;
use crate::store::Store;

/// The demo's site cap (written to its config): below what its buses would draw at once.
pub(super) const SITE_CAP_KW: f64 = 400.0;
const CHARGER_W: i64 = 150_000;
/// The seed's panel topic (the auth section's default `meter_topic`).
const PANEL_TOPIC: &str = "DATA/PM/{id}";

/// Registers the chargers, cards and panels, and starts their simulators.
#[allow(clippy::too_many_arguments)]
pub(super) async fn demo_charging(
    store: &Store,
    api: &ChargingApi,
    fleet: &crate::modules::fleet::service::FleetApi,
    day: &DemoDay,
    http: SocketAddr,
    mqtt: SocketAddr,
    plugged: Plugged,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<usize> {
    // An earlier run's simulated chargers are gone with it: what they left open ends
    // where it was (else the planner would set their power aside as chargers that are
    // offline mid-charge).
    for c in api.chargers().await? {
        if c.id.starts_with("CP-") {
            api.close_lost_sessions(&c.id).await?;
        }
    }
    let mut chargers = Vec::new();
    for (n, pair) in day.plugged.chunks(2).enumerate() {
        let id = format!("CP-{:02}", n + 1);
        let (store2, id2) = (store.clone(), id.clone());
        let password = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
            match add_charger(&store2, &id2, 2, CHARGER_W) {
                Ok(Some(p)) => Ok(p),
                // Made by an earlier demo run: a fresh password (the old one was never
                // kept, only its hash).
                Ok(None) | Err(AddChargerError::Exists(_)) => {
                    Ok(auth::service::reset_device(&store2, &id2, "charger")?)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await??;
        let mut plugs = Vec::new();
        for (k, p) in pair.iter().enumerate() {
            // The bus reports the charge it has from the start, not a made-up one.
            let state = crate::sim::charger::PlugState {
                soc_pct: p.soc_pct,
                watts: 0.0,
            };
            plugged.lock().insert(p.vehicle.clone(), state);
            let card = format!("CARD-{}", p.vehicle.trim_start_matches("bus-"));
            api.bind_tag(&card, &p.vehicle, DEMO_SOURCE).await?;
            let battery_kwh = fleet.get(&p.vehicle).map_or(350.0, |v| v.battery_kwh);
            plugs.push(SimPlug {
                connector: k as i64 + 1,
                vehicle: p.vehicle.clone(),
                id_tag: card,
                battery_wh: battery_kwh * 1000.0,
                soc_pct: p.soc_pct,
                leave_ms: Some(p.leave_ms),
            });
        }
        chargers.push(SimCharger {
            id,
            password,
            connectors: 2,
            connector_max_w: CHARGER_W as f64,
            plugs,
        });
    }
    // The panels first: the first plan already knows the workshop's load.
    let mut panels = Vec::new();
    for (id, on_chargers, base_kw) in [("PANEL-CHG", true, 3.0), ("PANEL-WS", false, 35.0)] {
        let (store2, id2) = (store.clone(), id.to_string());
        let password = tokio::task::spawn_blocking(move || {
            auth::service::reset_device(&store2, &id2, "meter")
        })
        .await??;
        panels.push(SimPanel {
            id: id.into(),
            password,
            chargers: on_chargers,
            base_kw,
        });
    }
    crate::sim::panel::spawn_panels(
        mqtt,
        PANEL_TOPIC,
        panels,
        Duration::from_secs(10),
        plugged.clone(),
        cancel.clone(),
        tracker,
    );
    let n = chargers.len();
    crate::sim::charger::spawn_chargers(
        http,
        chargers,
        Duration::from_secs(10),
        plugged,
        cancel,
        tracker,
    );
    Ok(n)
}
