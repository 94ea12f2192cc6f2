//! Fleet simulator: buses that publish telemetry over real MQTT connections with their
//! own device credentials, moving along real route shapes (USF Bull Runner GTFS), with
//! state of charge falling with distance, some parked and charging, occasional faults and
//! abrupt disconnects (the broker then publishes their last will). A bus on a simulated
//! charger (`charger.rs`) stays parked at the depot with the charger's state of charge
//! until it leaves for its block; simulated panel meters are in `panel.rs`.

pub mod charge_profile;
pub mod charger;
pub mod panel;

use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use rumqttc::{AsyncClient, LastWill, MqttOptions, QoS};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const SHAPES: &str = include_str!("data/shapes.txt");

/// One route polyline with cumulative distances in km.
#[derive(Debug, Clone)]
pub struct Shape {
    pub id: String,
    pts: Vec<(f64, f64)>,
    cum_km: Vec<f64>,
}

fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

fn bearing(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, la2, dlo) = (a.0.to_radians(), b.0.to_radians(), (b.1 - a.1).to_radians());
    let y = dlo.sin() * la2.cos();
    let x = la1.cos() * la2.sin() - la1.sin() * la2.cos() * dlo.cos();
    (y.atan2(x).to_degrees() + 360.0) % 360.0
}

impl Shape {
    pub fn length_km(&self) -> f64 {
        self.cum_km.last().copied().unwrap_or(0.0)
    }

    /// Position and heading after `d` km, looping around the shape.
    pub fn at(&self, d: f64) -> (f64, f64, f64) {
        let len = self.length_km();
        if self.pts.len() < 2 || len <= 0.0 {
            let p = self.pts.first().copied().unwrap_or((0.0, 0.0));
            return (p.0, p.1, 0.0);
        }
        let d = d.rem_euclid(len);
        let i = self
            .cum_km
            .partition_point(|c| *c <= d)
            .clamp(1, self.pts.len() - 1);
        let (a, b) = (self.pts[i - 1], self.pts[i]);
        let seg = (self.cum_km[i] - self.cum_km[i - 1]).max(1e-9);
        let f = ((d - self.cum_km[i - 1]) / seg).clamp(0.0, 1.0);
        (a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f, bearing(a, b))
    }
}

/// Parses GTFS `shapes.txt` (the embedded Bull Runner copy by default).
pub fn load_shapes(text: &str) -> Vec<Shape> {
    let mut rows: Vec<(String, u32, f64, f64)> = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.trim().split(',').collect();
        if f.len() < 4 {
            continue;
        }
        if let (Ok(lat), Ok(lon), Ok(seq)) = (f[1].parse(), f[2].parse(), f[3].parse()) {
            rows.push((f[0].to_string(), seq, lat, lon));
        }
    }
    rows.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
    let mut shapes: Vec<Shape> = Vec::new();
    for (id, _, lat, lon) in rows {
        if shapes.last().is_none_or(|s| s.id != id) {
            shapes.push(Shape {
                id: id.clone(),
                pts: vec![],
                cum_km: vec![],
            });
        }
        if let Some(s) = shapes.last_mut() {
            let c = match s.pts.last() {
                Some(p) => s.cum_km.last().copied().unwrap_or(0.0) + haversine_km(*p, (lat, lon)),
                None => 0.0,
            };
            s.pts.push((lat, lon));
            s.cum_km.push(c);
        }
    }
    shapes
}

pub fn embedded_shapes() -> Vec<Shape> {
    load_shapes(SHAPES)
}

/// A simulated bus and its credentials.
#[derive(Debug, Clone)]
pub struct SimBus {
    pub id: String,
    pub password: String,
    pub battery_kwh: f64,
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub mqtt: SocketAddr,
    /// Samples per second per bus.
    pub rate_hz: f64,
    /// Chance per sample of an abrupt disconnect (last will fires), then a reconnect.
    pub disconnect_chance: f64,
    /// Chance per sample of raising a fault.
    pub fault_chance: f64,
    /// Buses on simulated chargers: parked, with the charger's charge.
    pub plugged: Option<charger::Plugged>,
    /// Where parked buses stand (the depot yard); None: their route's start.
    pub depot: Option<(f64, f64)>,
    /// Buses that start parked (not charging) and stay until plugged or told to go.
    pub parked: Vec<String>,
}

/// Starts one task per bus on `tracker`; they stop when `cancel` fires.
pub fn spawn(
    buses: Vec<SimBus>,
    opts: SimOptions,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let shapes = embedded_shapes();
    for (i, bus) in buses.into_iter().enumerate() {
        let shape = shapes[i % shapes.len().max(1)].clone();
        // Every fourth bus starts parked at the depot, charging (unless the demo places
        // buses itself).
        let parked = if opts.plugged.is_some() {
            opts.parked.contains(&bus.id)
        } else {
            i % 4 == 3
        };
        let (opts, cancel) = (opts.clone(), cancel.clone());
        tracker.spawn(async move { run_bus(bus, shape, parked, i, opts, cancel).await });
    }
}

/// A bus on a simulated charger: parked, with the charger's charge; once its charger
/// lets it go (its pull-out), off to its block.
fn follow_charger(
    opts: &SimOptions,
    bus: &str,
    parked: &mut bool,
    was_plugged: &mut bool,
    soc: &mut f64,
) -> Option<charger::PlugState> {
    let plug = opts
        .plugged
        .as_ref()
        .and_then(|p| p.lock().get(bus).copied());
    if let Some(p) = plug {
        *parked = true;
        *was_plugged = true;
        *soc = p.soc_pct;
    } else if *was_plugged {
        *was_plugged = false;
        *parked = false;
    }
    plug
}

async fn run_bus(
    bus: SimBus,
    shape: Shape,
    mut parked: bool,
    index: usize,
    opts: SimOptions,
    cancel: CancellationToken,
) {
    // StdRng, not the thread-local one: the task moves between threads.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
    let base = format!("garasi/v1/vehicles/{}", bus.id);
    let mut dist_km = rng.random_range(0.0..shape.length_km().max(0.1));
    let mut odo = 20_000.0 + index as f64 * 1_234.5;
    let mut soc: f64 = rng.random_range(45.0..98.0);
    let mut temp: f64 = 28.0;
    let mut fault_until: Option<u32> = None;
    let period = Duration::from_secs_f64(1.0 / opts.rate_hz.max(0.01));
    let mut tick: u32 = 0;
    let mut was_plugged = false;
    'connection: while !cancel.is_cancelled() {
        let mut mo = MqttOptions::new(bus.id.clone(), opts.mqtt.ip().to_string(), opts.mqtt.port());
        mo.set_credentials(bus.id.clone(), bus.password.clone());
        mo.set_keep_alive(Duration::from_secs(10));
        mo.set_last_will(LastWill::new(
            format!("{base}/status"),
            json!({"state": "offline"}).to_string(),
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut eventloop) = AsyncClient::new(mo, 64);
        let pump = tokio::spawn(async move {
            loop {
                if let Err(e) = eventloop.poll().await {
                    tracing::debug!(error = %e, "simulated bus connection error");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
        let birth = json!({"state": "online", "ts": crate::util::now_ms(), "firmware": "sim-1.0"})
            .to_string();
        let _ = client
            .publish(format!("{base}/status"), QoS::AtLeastOnce, true, birth)
            .await;
        let mut interval = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = client.publish(format!("{base}/status"), QoS::AtLeastOnce, true, json!({"state": "offline"}).to_string()).await;
                    let _ = client.disconnect().await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    pump.abort();
                    return;
                }
                _ = interval.tick() => {}
            }
            tick = tick.wrapping_add(1);
            let dt_h = period.as_secs_f64() / 3600.0;
            let plug = follow_charger(&opts, &bus.id, &mut parked, &mut was_plugged, &mut soc);
            let (speed, power, charging) = if let Some(p) = plug {
                (0.0, -p.watts, p.watts > 0.0)
            } else if parked && opts.plugged.is_some() {
                (0.0, 0.0, false)
            } else if parked {
                soc = (soc + 150.0 * dt_h / bus.battery_kwh * 100.0 * 20.0).min(100.0); // 150 kW, demo-accelerated
                if soc >= 99.5 && rng.random_bool(0.01) {
                    parked = false;
                }
                (0.0, -150_000.0, true)
            } else {
                let speed: f64 =
                    (25.0 + 10.0 * ((tick as f64) / 20.0 + index as f64).sin()).max(0.0);
                let km = speed * dt_h * 20.0; // demo-accelerated so the board visibly moves
                dist_km += km;
                odo += km;
                soc = (soc - km * 1.2 / bus.battery_kwh * 100.0).max(0.0);
                // Back to the depot to charge (in the demo: to park; its chargers are
                // for the buses of the next blocks).
                if soc < 25.0 {
                    parked = true;
                }
                (speed, 1.2 * speed * 1000.0, false)
            };
            temp +=
                (if charging { 32.0 } else { 30.0 } - temp) * 0.05 + rng.random_range(-0.2..0.2);
            let (lat, lon, heading) = if parked {
                opts.depot
                    .map_or_else(|| shape.at(0.0), |(la, lo)| (la, lo, 0.0))
            } else {
                shape.at(dist_km)
            };
            let sample = json!({
                "ts": crate::util::now_ms(),
                "signals": {
                    "Vehicle.CurrentLocation.Latitude": lat,
                    "Vehicle.CurrentLocation.Longitude": lon,
                    "Vehicle.CurrentLocation.Heading": heading,
                    "Vehicle.Speed": speed,
                    "Vehicle.TraveledDistance": (odo * 10.0).round() / 10.0,
                    "Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed": (soc * 10.0).round() / 10.0,
                    "Vehicle.Powertrain.TractionBattery.Temperature.Average": (temp * 10.0).round() / 10.0,
                    "Vehicle.Powertrain.TractionBattery.CurrentPower": power,
                    "Vehicle.Powertrain.TractionBattery.Charging.IsCharging": charging,
                }
            });
            if client
                .try_publish(
                    format!("{base}/telemetry"),
                    QoS::AtMostOnce,
                    false,
                    sample.to_string(),
                )
                .is_err()
            {
                tracing::debug!(bus = %bus.id, "simulator queue full; sample skipped");
            }
            if fault_until.is_none() && rng.random_bool(opts.fault_chance.clamp(0.0, 1.0)) {
                fault_until = Some(tick + 30 * opts.rate_hz.max(1.0) as u32);
                let f = json!({"ts": crate::util::now_ms(), "faults": [{"spn": 5246, "fmi": 3, "active": true, "occurrences": 1, "severity": "warning", "description": "battery cell voltage high"}]});
                let _ = client
                    .publish(
                        format!("{base}/faults"),
                        QoS::AtLeastOnce,
                        false,
                        f.to_string(),
                    )
                    .await;
            } else if fault_until.is_some_and(|t| tick >= t) {
                fault_until = None;
                let f = json!({"ts": crate::util::now_ms(), "faults": []});
                let _ = client
                    .publish(
                        format!("{base}/faults"),
                        QoS::AtLeastOnce,
                        false,
                        f.to_string(),
                    )
                    .await;
            }
            if rng.random_bool(opts.disconnect_chance.clamp(0.0, 1.0)) {
                // Abrupt: drop the socket without DISCONNECT so the broker fires the will.
                pump.abort();
                let pause = rng.random_range(5..20);
                tracing::info!(bus = %bus.id, pause_secs = pause, "simulated disconnect");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(pause)) => continue 'connection,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_shapes_are_real_loops() {
        let shapes = embedded_shapes();
        assert_eq!(shapes.len(), 6);
        for s in &shapes {
            assert!(
                s.length_km() > 1.0 && s.length_km() < 50.0,
                "{} {}",
                s.id,
                s.length_km()
            );
            let (lat, lon, h) = s.at(s.length_km() / 2.0);
            assert!(
                (27.9..28.2).contains(&lat) && (-82.5..-82.3).contains(&lon),
                "Tampa: {lat},{lon}"
            );
            assert!((0.0..360.0).contains(&h));
        }
    }
}
