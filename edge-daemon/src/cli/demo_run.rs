//! Starts the demo on a running node: the fleet, people, the day around now, the
//! chargers and panels, and the simulators (buses over MQTT, chargers over OCPP, panel
//! meters over MQTT), each a separate client of the node's real listeners.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::demo::{demo_fleet, demo_people, depot_point};
use super::demo_charging::demo_charging;
use super::demo_day::demo_day;
use crate::modules::{charging, dispatch, fleet};
use crate::node::Node;
use crate::sim;

/// Sets the demo up and starts its simulators; returns what to print for the user.
pub(super) async fn start_demo(
    node: &Node,
    n: usize,
    rate_hz: f64,
    cancel: CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<String> {
    let fleet = node
        .services
        .get::<fleet::service::FleetApi>()
        .context("the demo needs the fleet module")?;
    let buses = demo_fleet(&node.store, &fleet, n).await?;
    let dispatch = node
        .services
        .get::<dispatch::service::Dispatch>()
        .context("the demo needs the dispatch module")?;
    let sign_ins = demo_people(&node.store, n).await?;
    let blocks = n / 2;
    let day = demo_day(&node.store, &dispatch, blocks, crate::util::now_ms()).await?;
    let plugged: sim::charger::Plugged = Arc::default();
    let chargers = match node.services.get::<charging::service::ChargingApi>() {
        Some(api) => {
            demo_charging(
                &node.store,
                &api,
                &fleet,
                &day,
                node.http_addr,
                node.mqtt_addr,
                plugged.clone(),
                cancel.clone(),
                tasks,
            )
            .await?
        }
        None => 0,
    };
    sim::spawn(
        buses,
        sim::SimOptions {
            mqtt: node.mqtt_addr,
            rate_hz,
            disconnect_chance: 0.002,
            fault_chance: 0.001,
            plugged: Some(plugged),
            depot: Some(depot_point()),
            // Without the charging module nothing plugs them in: they drive.
            parked: if chargers > 0 {
                day.plugged.iter().map(|p| p.vehicle.clone()).collect()
            } else {
                Vec::new()
            },
        },
        cancel,
        tasks,
    );
    Ok(format!(
        "\n  Garasi demo depot is running: open http://{addr}/  (Ctrl-C to stop)\n  \
         Dispatch board: http://{addr}/dispatch  Charging: http://{addr}/charging  \
         Energy: http://{addr}/energy\n  \
         {chargers} simulated chargers, {plugged} buses plugged in, {out} out on blocks; \
         sign in as {sign_ins}\n",
        addr = node.http_addr,
        plugged = if chargers > 0 { day.plugged.len() } else { 0 },
        out = day.on_road.len(),
    ))
}
