//! The typed event bus modules use to tell each other what happened, so that no module
//! reads another's tables. Events are facts after commit; a slow subscriber lags and is
//! told how many it missed (tokio broadcast semantics), it never slows the publisher.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

/// One telemetry sample of a vehicle: what ingest validated, what the writer stores and
/// announces after its commit, what the live view keeps. The edge's one sample type
/// (the sync stream's `TelemetrySampleV1` is the versioned wire form of it).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TelemetryUpdate {
    pub vehicle_id: String,
    pub ts_ms: i64,
    pub received_ms: i64,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub heading: Option<f64>,
    pub speed_kmh: Option<f64>,
    pub soc_pct: Option<f64>,
    pub odometer_km: Option<f64>,
    pub battery_temp_c: Option<f64>,
    pub power_w: Option<f64>,
    pub charging: Option<bool>,
    /// Other VSS signals, as a JSON object text. Stored and synced, not repeated in the
    /// live view or the event stream (so their JSON is what it always was).
    #[serde(skip)]
    pub extra: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Event {
    /// A vehicle was added to or changed in the registry (fleet module).
    VehicleUpserted { vehicle_id: String },
    /// A batch of samples committed; one entry per sample, in commit order.
    TelemetryCommitted(Arc<Vec<TelemetryUpdate>>),
    /// A device announced itself online or its last will said offline.
    VehicleConnection {
        vehicle_id: String,
        online: bool,
        ts_ms: i64,
    },
    /// A vehicle's operational status was set at this depot (fleet module).
    VehicleStatusChanged {
        vehicle_id: String,
        status: Option<String>,
    },
    /// The set of active faults of a vehicle changed.
    FaultsChanged {
        vehicle_id: String,
        active: usize,
        critical: usize,
    },
    /// A charging transaction started, stopped or got meter values (charging module).
    ChargingSessionChanged { transaction_id: i64 },
    /// An OCPP charger connected or its connection ended (charging module).
    ChargerConnection { charger_id: String, online: bool },
}

#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Event>,
}

impl Bus {
    pub fn new(capacity: usize) -> Self {
        Bus {
            tx: broadcast::channel(capacity).0,
        }
    }

    /// Publishes to current subscribers; having none is fine.
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
