//! charging's Prometheus metrics (`garasi_charging_*`), registered at start. Labels stay
//! low-cardinality: an action name from the fixed OCPP list, an error code, a reason;
//! never a charger id.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub struct ChargingMetrics {
    /// CALLs taken from chargers, by action (`other` for names OCPP 1.6 does not have).
    pub calls_in: IntCounterVec,
    /// CALLERRORs sent to chargers, by error code.
    pub callerrors_sent: IntCounterVec,
    /// WebSocket upgrades refused, by reason.
    pub refused: IntCounterVec,
    /// Chargers connected now.
    pub connected: IntGauge,
    /// CALLs to chargers, by outcome (`answered`, `callerror`, `timeout`, `bad_answer`,
    /// `offline`, `busy`).
    pub calls_out: IntCounterVec,
    /// Meter samples stored (replays not counted).
    pub samples: IntCounter,
    /// Power readings above the charging profile the charger accepted.
    pub over_profile: IntCounter,
    /// Panel meter messages, by what they were (`reading` or a dead letter's reason).
    pub panel_messages: IntCounterVec,
    /// How long the last planning round took to gather and plan (before sending), ms.
    pub plan_ms: IntGauge,
    /// Buses in the last plan.
    pub planned: IntGauge,
    /// Charging profiles a charger answered with other than Accepted.
    pub profiles_rejected: IntCounter,
    /// Charger connections ended, by why (`closed`, `replaced`, `frame_too_big`,
    /// `no_pong`, `edge_stopping`, `send_failed`).
    pub ended: IntCounterVec,
}

impl ChargingMetrics {
    pub fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let vec = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label])
        };
        let m = ChargingMetrics {
            calls_in: vec(
                "charging_ocpp_calls_total",
                "CALLs received from chargers",
                "action",
            )?,
            callerrors_sent: vec(
                "charging_ocpp_callerrors_sent_total",
                "CALLERRORs sent to chargers",
                "code",
            )?,
            refused: vec(
                "charging_ocpp_refused_total",
                "Charger connections refused before the WebSocket opened",
                "reason",
            )?,
            connected: IntGauge::new("charging_ocpp_connected", "Chargers connected now")?,
            calls_out: vec(
                "charging_ocpp_calls_sent_total",
                "CALLs sent to chargers, by outcome",
                "outcome",
            )?,
            samples: IntCounter::new("charging_meter_samples_total", "Meter samples stored")?,
            panel_messages: vec(
                "charging_panel_messages_total",
                "Panel meter messages, by what they were",
                "kind",
            )?,
            plan_ms: IntGauge::new(
                "charging_plan_last_ms",
                "Time the last planning round took to gather and plan, ms",
            )?,
            planned: IntGauge::new("charging_plan_buses", "Buses in the last charging plan")?,
            profiles_rejected: IntCounter::new(
                "charging_profiles_rejected_total",
                "Charging profiles a charger did not accept",
            )?,
            over_profile: IntCounter::new(
                "charging_over_profile_total",
                "Power readings above the charging profile the charger accepted",
            )?,
            ended: vec(
                "charging_ocpp_connections_ended_total",
                "Charger connections ended, by why",
                "why",
            )?,
        };
        r.register(Box::new(m.calls_in.clone()))?;
        r.register(Box::new(m.callerrors_sent.clone()))?;
        r.register(Box::new(m.refused.clone()))?;
        r.register(Box::new(m.connected.clone()))?;
        r.register(Box::new(m.calls_out.clone()))?;
        r.register(Box::new(m.samples.clone()))?;
        r.register(Box::new(m.over_profile.clone()))?;
        r.register(Box::new(m.profiles_rejected.clone()))?;
        r.register(Box::new(m.plan_ms.clone()))?;
        r.register(Box::new(m.panel_messages.clone()))?;
        r.register(Box::new(m.planned.clone()))?;
        r.register(Box::new(m.ended.clone()))?;
        Ok(m)
    }
}
