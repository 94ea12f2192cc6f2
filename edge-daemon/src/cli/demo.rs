//! The demo depot of `garasi-edge demo`: vehicles with fresh device credentials, and a
//! dispatcher and drivers with fresh secrets (printed once on the terminal, never
//! logged). Its day is `demo_day.rs`, its chargers and panels `demo_charging.rs`.

use anyhow::Context;

use crate::modules::{auth, fleet};
use crate::sim;
use crate::store::Store;

/// The demo's people: a dispatcher with a fresh random password and drivers with fresh
/// PINs (printed once, on the terminal, never logged).
pub(super) async fn demo_people(store: &Store, buses: usize) -> anyhow::Result<String> {
    use rand::Rng;
    let password = format!("demo-{:016x}", rand::rng().random::<u64>());
    let drivers = (buses / 2).max(1);
    let pins: Vec<String> = (0..drivers)
        .map(|_| format!("{:04}", rand::rng().random_range(0..10_000)))
        .collect();
    let (store2, pw, pins2) = (store.clone(), password.clone(), pins.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let roles = vec!["dispatcher".to_string(), "depot_manager".to_string()];
        auth::service::upsert_local(
            &store2,
            &auth::service::NewPerson {
                id: "dispatcher",
                name: "Demo Dispatcher",
                roles: &roles,
                password: Some(&pw),
                pin: None,
                badge: None,
            },
        )
        .map_err(anyhow::Error::msg)?;
        let roles = vec!["driver".to_string()];
        for (i, pin) in pins2.iter().enumerate() {
            let (id, badge) = (format!("d-{:03}", i + 1), format!("BADGE{:04}", i + 1));
            auth::service::upsert_local(
                &store2,
                &auth::service::NewPerson {
                    id: &id,
                    name: &format!("Driver {}", i + 1),
                    roles: &roles,
                    password: None,
                    pin: Some(pin),
                    badge: Some(&badge),
                },
            )
            .map_err(anyhow::Error::msg)?;
        }
        Ok(())
    })
    .await??;
    Ok(format!(
        "dispatcher / {password}; drivers d-001.. with PINs {} (badges BADGE0001..)",
        pins.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            + if pins.len() > 3 { ", ..." } else { "" }
    ))
}

/// Registers the demo's vehicles and (re)issues their device credentials.
pub(super) async fn demo_fleet(
    store: &Store,
    fleet: &fleet::service::FleetApi,
    n: usize,
) -> anyhow::Result<Vec<sim::SimBus>> {
    let mut issued = Vec::with_capacity(n);
    for i in 1..=n {
        let id = format!("bus-{i:03}");
        let battery_kwh = if i % 3 == 0 { 280.0 } else { 350.0 };
        let v = fleet::service::Vehicle {
            id: id.clone(),
            label: format!("Bus {i}"),
            plate: Some(format!("B {} GRS", 7000 + i)),
            battery_kwh,
            kwh_per_km: Some(if i % 3 == 0 { 1.1 } else { 1.3 }),
            vehicle_type: Some(if i % 3 == 0 { "12m" } else { "18m" }.into()),
        };
        fleet.upsert(v).await?;
        // Hashing a password is deliberately slow: do them in parallel.
        let (store, id2) = (store.clone(), id.clone());
        let hashing = tokio::task::spawn_blocking(move || {
            auth::service::reset_device(&store, &id2, "vehicle")
        });
        issued.push((id, battery_kwh, hashing));
    }
    let mut buses = Vec::with_capacity(n);
    for (id, battery_kwh, hashing) in issued {
        let password = hashing.await.context("demo setup task failed")??;
        buses.push(sim::SimBus {
            id,
            password,
            battery_kwh,
        });
    }
    Ok(buses)
}

/// Where the demo's buses park and charge: 2 km north of the first route's start, 600 m
/// from every route (so no bus on the road crosses the yard's 150 m geofence).
pub(super) fn depot_point() -> (f64, f64) {
    let shapes = sim::embedded_shapes();
    let (lat, lon, _) = shapes.first().map_or((28.06, -82.41, 0.0), |s| s.at(0.0));
    (lat + 0.02, lon)
}

/// The demo's configuration file in its data directory (written once, so it can be
/// edited): the depot yard's geofence, where parked buses stand, and a site cap below
/// what the plugged-in buses would draw at once, so smart charging has work to do, less
/// the workshop's load its panel meter reads (a live cap).
pub(super) fn demo_config(data_dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let path = data_dir.join("demo.toml");
    if !path.exists() {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let (lat, lon) = depot_point();
        let text = format!(
            "# The demo depot's settings (garasi-edge demo writes this once; edit freely).\n\
             [dispatch]\ngeofence = \"{lat:.6},{lon:.6},150\"\n\n\
             [modules.charging]\nsite_cap_kw = {}\n\
             # The workshop panel's load comes off the cap: charging shares the rest.\n\
             other_load_panels = [\"PANEL-WS\"]\n",
            super::demo_charging::SITE_CAP_KW
        );
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}
