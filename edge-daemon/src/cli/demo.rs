//! The demo depot of `garasi-edge run --demo`: vehicles with fresh device credentials,
//! a dispatcher and drivers with fresh secrets (printed once on the terminal, never
//! logged), and today's and tomorrow's blocks.

use anyhow::Context;

use crate::modules::{auth, dispatch, fleet};
use crate::sim;
use crate::store::Store;

/// The demo's people and blocks: a dispatcher with a fresh random password and drivers
/// with fresh PINs (printed once, on the terminal, never logged), and today's and
/// tomorrow's blocks for half the buses.
pub(super) async fn demo_dispatch(
    store: &Store,
    d: &dispatch::service::Dispatch,
    buses: usize,
) -> anyhow::Result<String> {
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
    let now = crate::util::now_ms();
    let mut blocks = Vec::new();
    for day in 0..2 {
        let date = d.date_at(now + day * 86_400_000);
        let midnight = date
            .parse::<jiff::civil::Date>()
            .ok()
            .and_then(|dt| dt.to_zoned(d.timezone()).ok())
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or(now);
        for b in 0..drivers {
            let start = midnight + (5 * 60 + (b as i64 % 12) * 15) * 60_000;
            let trips: Vec<dispatch::plan::Trip> = (0..4)
                .map(|k| {
                    let s = start + 10 * 60_000 + k * 70 * 60_000;
                    let fmt = |ms: i64| {
                        let m = (ms - midnight) / 60_000;
                        format!("{:02}:{:02}:00", m / 60, m % 60)
                    };
                    dispatch::plan::Trip {
                        trip: format!("T{}-{}", b + 1, k + 1),
                        route: format!("D{}", b % 3 + 1),
                        headsign: None,
                        start: fmt(s),
                        end: fmt(s + 60 * 60_000),
                        start_ms: s,
                        end_ms: s + 60 * 60_000,
                        from: if k % 2 == 0 {
                            "Depot Gate"
                        } else {
                            "Terminal Kota"
                        }
                        .into(),
                        to: if k % 2 == 0 {
                            "Terminal Kota"
                        } else {
                            "Depot Gate"
                        }
                        .into(),
                        km: 25.0 + (b % 4) as f64 * 8.0,
                    }
                })
                .collect();
            let end = trips.last().map_or(start, |t| t.end_ms) + 10 * 60_000;
            blocks.push(dispatch::service::LocalBlock {
                id: format!("{}-B{:02}", date.replace('-', ""), b + 1),
                service_date: date.clone(),
                block: format!("B{:02}", b + 1),
                routes: format!("D{}", b % 3 + 1),
                pull_out_ms: start,
                pull_in_ms: end,
                distance_km: trips.iter().map(|t| t.km).sum(),
                vehicle_type: (b % 5 == 4).then(|| "18m".to_string()),
                trips,
            });
        }
    }
    let store2 = store.clone();
    tokio::task::spawn_blocking(move || dispatch::service::import_local_blocks(&store2, &blocks))
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
