//! Simulated OCPP 1.6J charge points for the demo and the tests: each is a separate
//! WebSocket client of the edge's `/ocpp/{id}` door (Basic auth, subprotocol
//! `ocpp1.6`), boots, reports its connectors, authorizes the plugged-in bus's card,
//! starts a transaction and meters energy, power and state of charge every
//! `meter_every`, drawing exactly what its charging profiles allow (`charge_profile.rs`)
//! until the bus is full. It answers the edge's requests, reconnects after a drop and
//! keeps its transactions across reconnects, as a real charger does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::charge_profile::{Profile, Profiles};
use crate::util::now_ms;

/// A bus on a connector: its card, battery and charge.
#[derive(Debug, Clone)]
pub struct SimPlug {
    pub connector: i64,
    pub vehicle: String,
    pub id_tag: String,
    pub battery_wh: f64,
    pub soc_pct: f64,
    /// When the bus drives off (its pull-out): the charge stops and the connector frees.
    pub leave_ms: Option<i64>,
}

/// One charge point and its credentials.
#[derive(Debug, Clone)]
pub struct SimCharger {
    pub id: String,
    pub password: String,
    pub connectors: i64,
    /// Most one connector draws, W.
    pub connector_max_w: f64,
    pub plugs: Vec<SimPlug>,
}

/// What the other simulators read: each plugged-in bus's charge and draw.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlugState {
    pub soc_pct: f64,
    pub watts: f64,
}

pub type Plugged = Arc<Mutex<HashMap<String, PlugState>>>;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A plug's transaction, kept across reconnects.
struct Live {
    plug: SimPlug,
    tx: Option<i64>,
    meter_wh: f64,
    /// A stop to send (why): kept until the edge has it, so a drop mid-stop resends
    /// it after reconnecting, as a real charger's queue does.
    pending_stop: Option<&'static str>,
    /// The connector status last reported while charging.
    status: &'static str,
    /// Stopped (full, or by the edge): not started again.
    done: bool,
    /// The bus has driven off.
    left: bool,
}

struct Point {
    cfg: SimCharger,
    live: Vec<Live>,
    profiles: Profiles,
    plugged: Plugged,
    next_id: u64,
    heartbeat_s: u64,
}

/// Starts one task per charger on `tracker`; they stop when `cancel` fires.
pub fn spawn_chargers(
    http: SocketAddr,
    chargers: Vec<SimCharger>,
    meter_every: Duration,
    plugged: Plugged,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    for cfg in chargers {
        let live = cfg
            .plugs
            .iter()
            .map(|p| Live {
                plug: p.clone(),
                tx: None,
                meter_wh: 1_000_000.0,
                pending_stop: None,
                status: "Preparing",
                done: false,
                left: false,
            })
            .collect();
        let mut point = Point {
            cfg,
            live,
            profiles: Profiles::default(),
            plugged: plugged.clone(),
            next_id: 0,
            heartbeat_s: 300,
        };
        let cancel = cancel.clone();
        tracker.spawn(async move {
            while !cancel.is_cancelled() {
                match point.connect(http).await {
                    Ok(ws) => {
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            r = point.session(ws, meter_every) => {
                                tracing::info!(charger = %point.cfg.id, why = %r, "simulated charger disconnected");
                            }
                        }
                    }
                    Err(e) => tracing::debug!(charger = %point.cfg.id, error = %e, "simulated charger cannot connect"),
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(3)) => {}
                }
            }
        });
    }
}

fn stamp() -> String {
    crate::util::rfc3339(now_ms())
}

impl Point {
    async fn connect(&self, http: SocketAddr) -> Result<Ws, String> {
        let url = format!("ws://{http}/ocpp/{}", self.cfg.id);
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.cfg.id, self.cfg.password));
        let h = req.headers_mut();
        h.insert(
            "Authorization",
            format!("Basic {auth}")
                .parse()
                .map_err(|_| "bad credential")?,
        );
        h.insert(
            "Sec-WebSocket-Protocol",
            "ocpp1.6".parse().map_err(|_| "bad protocol")?,
        );
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ws)
    }

    /// One connection: boot, statuses, transactions, then meter until it drops.
    async fn session(&mut self, mut ws: Ws, meter_every: Duration) -> String {
        let boot = json!({"chargePointVendor": "Garasi", "chargePointModel": "SimCharger-150",
                          "firmwareVersion": "sim-1.0"});
        match self.call(&mut ws, "BootNotification", boot).await {
            Ok(a) => self.heartbeat_s = a["interval"].as_u64().unwrap_or(300).clamp(10, 3600),
            Err(e) => return e,
        }
        for c in 1..=self.cfg.connectors {
            let status = self.status_of(c);
            let body = json!({"connectorId": c, "errorCode": "NoError", "status": status});
            if let Err(e) = self.call(&mut ws, "StatusNotification", body).await {
                return e;
            }
        }
        // The first reading one period after connecting, as MeterValueSampleInterval
        // does; by then the edge has sent its profiles.
        let mut meter =
            tokio::time::interval_at(tokio::time::Instant::now() + meter_every, meter_every);
        let mut heartbeat = tokio::time::interval(Duration::from_secs(self.heartbeat_s));
        let mut last = now_ms();
        loop {
            if let Err(e) = self.start_waiting(&mut ws).await {
                return e;
            }
            tokio::select! {
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        if let Err(e) = self.on_frame(&mut ws, t.as_str()).await { return e; }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return e.to_string(),
                    None => return "closed".into(),
                },
                _ = meter.tick() => {
                    let now = now_ms();
                    let dt_h = (now - last) as f64 / 3_600_000.0;
                    last = now;
                    if let Err(e) = self.meter(&mut ws, dt_h).await { return e; }
                }
                _ = heartbeat.tick() => {
                    if let Err(e) = self.call(&mut ws, "Heartbeat", json!({})).await { return e; }
                }
            }
        }
    }

    fn status_of(&self, connector: i64) -> &'static str {
        match self
            .live
            .iter()
            .find(|l| l.plug.connector == connector && !l.left)
        {
            Some(l) if l.tx.is_some() => "Charging",
            Some(l) if l.done => "Finishing",
            Some(_) => "Preparing",
            None => "Available",
        }
    }

    /// Authorizes and starts every plugged bus without a transaction; stops those the
    /// edge asked to stop.
    async fn start_waiting(&mut self, ws: &mut Ws) -> Result<(), String> {
        for i in 0..self.live.len() {
            if self.live[i].left {
                continue;
            }
            if self.live[i].plug.leave_ms.is_some_and(|t| t <= now_ms()) {
                let had_tx = self.live[i].tx.is_some();
                self.stop(ws, i, "EVDisconnected").await?;
                let l = &mut self.live[i];
                l.left = true;
                self.plugged.lock().remove(&l.plug.vehicle);
                if !had_tx {
                    let body = json!({"connectorId": l.plug.connector, "errorCode": "NoError", "status": "Available"});
                    self.call(ws, "StatusNotification", body).await?;
                }
                continue;
            }
            if let Some(reason) = self.live[i].pending_stop {
                self.stop(ws, i, reason).await?;
                continue;
            }
            if self.live[i].tx.is_some() || self.live[i].done || self.live[i].plug.soc_pct >= 100.0
            {
                continue;
            }
            let tag = self.live[i].plug.id_tag.clone();
            let auth = self.call(ws, "Authorize", json!({"idTag": tag})).await?;
            if auth["idTagInfo"]["status"] != "Accepted" {
                continue;
            }
            let body = json!({"connectorId": self.live[i].plug.connector, "idTag": tag,
                              "meterStart": self.live[i].meter_wh as i64, "timestamp": stamp()});
            let a = self.call(ws, "StartTransaction", body).await?;
            if a["idTagInfo"]["status"] == "Accepted" {
                self.live[i].tx = a["transactionId"].as_i64();
                let state = PlugState {
                    soc_pct: self.live[i].plug.soc_pct,
                    watts: 0.0,
                };
                self.plugged
                    .lock()
                    .insert(self.live[i].plug.vehicle.clone(), state);
                let body = json!({"connectorId": self.live[i].plug.connector, "errorCode": "NoError", "status": "Charging"});
                self.call(ws, "StatusNotification", body).await?;
            }
        }
        Ok(())
    }

    async fn stop(&mut self, ws: &mut Ws, i: usize, reason: &'static str) -> Result<(), String> {
        let l = &mut self.live[i];
        let Some(tx) = l.tx else {
            l.pending_stop = None;
            return Ok(());
        };
        l.pending_stop = Some(reason);
        let (connector, wh, vehicle) =
            (l.plug.connector, l.meter_wh as i64, l.plug.vehicle.clone());
        let body =
            json!({"transactionId": tx, "meterStop": wh, "timestamp": stamp(), "reason": reason});
        self.call(ws, "StopTransaction", body).await?;
        let l = &mut self.live[i];
        (l.tx, l.done, l.pending_stop) = (None, true, None);
        self.plugged.lock().entry(vehicle).or_default().watts = 0.0;
        for status in ["Finishing", "Available"] {
            let body = json!({"connectorId": connector, "errorCode": "NoError", "status": status});
            self.call(ws, "StatusNotification", body).await?;
        }
        Ok(())
    }

    /// Draws what the profiles allow for `dt_h` hours, then sends MeterValues.
    async fn meter(&mut self, ws: &mut Ws, dt_h: f64) -> Result<(), String> {
        let now = now_ms();
        let want: Vec<(i64, Option<i64>, f64)> = self
            .live
            .iter()
            .map(|l| {
                let room = (100.0 - l.plug.soc_pct) / 100.0 * l.plug.battery_wh;
                // Batteries take less as they fill: full power below 80 %.
                let taper = if l.plug.soc_pct < 80.0 {
                    1.0
                } else {
                    ((100.0 - l.plug.soc_pct) / 20.0).max(0.1)
                };
                let w = if l.tx.is_some() && room > 0.0 {
                    self.cfg.connector_max_w * taper
                } else {
                    0.0
                };
                (l.plug.connector, l.tx, w)
            })
            .collect();
        let draw = self.profiles.share(&want, now);
        for (i, w) in draw.into_iter().enumerate() {
            let Some(tx) = self.live[i].tx else { continue };
            let l = &mut self.live[i];
            let wh = w * dt_h;
            l.meter_wh += wh;
            l.plug.soc_pct = (l.plug.soc_pct + wh / l.plug.battery_wh * 100.0).min(100.0);
            self.plugged.lock().insert(
                l.plug.vehicle.clone(),
                PlugState {
                    soc_pct: l.plug.soc_pct,
                    watts: w,
                },
            );
            let body = json!({"connectorId": l.plug.connector, "transactionId": tx, "meterValue": [{
                "timestamp": stamp(), "sampledValue": [
                    {"value": format!("{:.0}", l.meter_wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh", "context": "Sample.Periodic"},
                    {"value": format!("{w:.0}"), "measurand": "Power.Active.Import", "unit": "W", "context": "Sample.Periodic"},
                    {"value": format!("{:.1}", l.plug.soc_pct), "measurand": "SoC", "unit": "Percent", "location": "EV", "context": "Sample.Periodic"}]}]});
            let full = l.plug.soc_pct >= 100.0;
            // Held at 0 W by its limit: SuspendedEVSE, as chargers report it.
            let status = if w > 0.0 || full {
                "Charging"
            } else {
                "SuspendedEVSE"
            };
            let changed = std::mem::replace(&mut l.status, status) != status;
            let connector = l.plug.connector;
            self.call(ws, "MeterValues", body).await?;
            if full {
                self.stop(ws, i, "EVDisconnected").await?;
            } else if changed {
                let body =
                    json!({"connectorId": connector, "errorCode": "NoError", "status": status});
                self.call(ws, "StatusNotification", body).await?;
            }
        }
        Ok(())
    }

    /// Sends a CALL and waits for its answer, answering the edge's CALLs meanwhile (one
    /// outstanding CALL each way, as OCPP-J requires).
    async fn call(&mut self, ws: &mut Ws, action: &str, payload: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = format!("sim{}", self.next_id);
        let frame = json!([2, id, action, payload]).to_string();
        ws.send(Message::Text(frame.into()))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .map_err(|_| format!("no answer to {action}"))?;
            let t = match m {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("closed".into()),
            };
            let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
            match v[0].as_i64() {
                Some(2) => self.on_frame(ws, t.as_str()).await?,
                Some(3) if v[1] == id.as_str() => return Ok(v[2].clone()),
                Some(4) if v[1] == id.as_str() => {
                    return Err(format!("{action} refused: {}", v[2]))
                }
                _ => {}
            }
        }
    }

    /// Answers one CALL from the edge.
    async fn on_frame(&mut self, ws: &mut Ws, text: &str) -> Result<(), String> {
        let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        if v[0] != 2 {
            return Ok(());
        }
        let (id, action, p) = (v[1].clone(), v[2].as_str().unwrap_or(""), &v[3]);
        let answer = match self.answer(action, p) {
            Some(a) => json!([3, id, a]),
            None => json!([
                4,
                id,
                "NotImplemented",
                format!("{action} is not simulated"),
                {}
            ]),
        };
        ws.send(Message::Text(answer.to_string().into()))
            .await
            .map_err(|e| e.to_string())
    }

    fn answer(&mut self, action: &str, p: &Value) -> Option<Value> {
        let now = now_ms();
        let accepted = json!({"status": "Accepted"});
        Some(match action {
            "SetChargingProfile" => match Profile::parse(&p["csChargingProfiles"], now) {
                Some(profile) => {
                    self.profiles
                        .set(p["connectorId"].as_i64().unwrap_or(0), profile);
                    accepted
                }
                None => json!({"status": "Rejected"}),
            },
            "ClearChargingProfile" => {
                let hit = self.profiles.clear(p);
                json!({"status": if hit { "Accepted" } else { "Unknown" }})
            }
            "GetCompositeSchedule" => {
                let c = p["connectorId"].as_i64().unwrap_or(0);
                let tx = self
                    .live
                    .iter()
                    .find(|l| l.plug.connector == c)
                    .and_then(|l| l.tx);
                self.profiles
                    .composite(c, tx, now, p["duration"].as_i64().unwrap_or(3600))
            }
            "RemoteStopTransaction" => {
                let want = p["transactionId"].as_i64();
                match self
                    .live
                    .iter_mut()
                    .find(|l| l.tx.is_some() && l.tx == want)
                {
                    Some(l) => {
                        l.pending_stop = Some("Remote");
                        accepted
                    }
                    None => json!({"status": "Rejected"}),
                }
            }
            "UnlockConnector" => json!({"status": "Unlocked"}),
            "GetConfiguration" => json!({"configurationKey": [
                {"key": "HeartbeatInterval", "readonly": false, "value": self.heartbeat_s.to_string()},
                {"key": "ChargeProfileMaxStackLevel", "readonly": true, "value": "8"}], "unknownKey": []}),
            "DataTransfer" => json!({"status": "UnknownVendorId"}),
            "RemoteStartTransaction" => json!({"status": "Rejected"}),
            "ChangeAvailability" | "ChangeConfiguration" | "Reset" | "TriggerMessage" => accepted,
            _ => return None,
        })
    }
}
