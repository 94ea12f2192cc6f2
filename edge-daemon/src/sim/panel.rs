//! Simulated energy panel meters for the demo: each connects to the broker with its own
//! meter credentials and publishes the seed's reading (`DATA/PM/<panel>`: voltage,
//! current, power, import register, power factor, frequency, status, ts) every
//! `every`. The charging panel reads what the simulated chargers draw; the others
//! follow a working-day load shape.

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::charger::Plugged;
use crate::util::now_ms;

/// One panel and its credentials.
#[derive(Debug, Clone)]
pub struct SimPanel {
    pub id: String,
    pub password: String,
    /// Reads the chargers' draw (plus `base_kw`); otherwise a daytime load of `base_kw`.
    pub chargers: bool,
    pub base_kw: f64,
}

/// Starts one task per panel; they stop when `cancel` fires.
pub fn spawn_panels(
    mqtt: SocketAddr,
    topic: &str,
    panels: Vec<SimPanel>,
    every: Duration,
    plugged: Plugged,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    for p in panels {
        let (cancel, plugged) = (cancel.clone(), plugged.clone());
        let topic = topic.replace("{id}", &p.id);
        tracker.spawn(async move { run_panel(mqtt, topic, p, every, plugged, cancel).await });
    }
}

async fn run_panel(
    mqtt: SocketAddr,
    topic: String,
    p: SimPanel,
    every: Duration,
    plugged: Plugged,
    cancel: CancellationToken,
) {
    let mut mo = MqttOptions::new(format!("{}-sim", p.id), mqtt.ip().to_string(), mqtt.port());
    mo.set_credentials(p.id.clone(), p.password.clone());
    mo.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(mo, 16);
    let pump = tokio::spawn(async move {
        loop {
            if let Err(e) = eventloop.poll().await {
                tracing::debug!(error = %e, "simulated panel meter connection error");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    // A register that has run for a while, different per panel.
    let mut kwh = 120_000.0 + p.id.len() as f64 * 7_777.0;
    let mut last = now_ms();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = now_ms();
        let kw = if p.chargers {
            p.base_kw + plugged.lock().values().map(|s| s.watts).sum::<f64>() / 1000.0
        } else {
            // Busier from 07:00 to 17:00 in the depot (UTC+7), a quiet floor at night.
            let hour = ((now / 3_600_000) + 7) % 24;
            p.base_kw * if (7..17).contains(&hour) { 1.0 } else { 0.3 }
        };
        kwh += kw * (now - last) as f64 / 3_600_000.0;
        last = now;
        let volts = 230.0;
        let reading = json!({
            "voltage": volts, "current": (kw * 1000.0 / (3.0 * volts * 0.97)).round(),
            "power_kw": (kw * 100.0).round() / 100.0, "energy_kwh": (kwh * 1000.0).round() / 1000.0,
            "pf": 0.97, "frequency": 50.0, "status": "OK", "ts": now / 1000,
        });
        if client
            .try_publish(topic.clone(), QoS::AtLeastOnce, false, reading.to_string())
            .is_err()
        {
            tracing::debug!(panel = %p.id, "simulated panel queue full; reading skipped");
        }
    }
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    pump.abort();
}
