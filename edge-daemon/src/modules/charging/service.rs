//! charging's public API (`ChargingApi`, in `Services`): the chargers, their connectors
//! and sessions, and CALLs to a connected charger (one outstanding per charger, as
//! OCPP-J requires, with a timeout). The OCPP door and its connections use the rest.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::config::ChargingConfig;
use super::metrics::ChargingMetrics;
use super::ocpp::schema::Schemas;
use super::sessions::{self, Session};
use super::store::{self, Charger, ConnectorStatus};
use crate::bus::{Bus, Event};
use crate::modules::auth::service::DeviceAuth;
use crate::modules::fleet::service::FleetApi;
use crate::store::{Store, StoreCallError};

pub use super::sessions::Session as ChargingSession;

/// Why a CALL to a charger got no answer to use.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CallFailure {
    #[error("charger {0} is not connected: check its network and its central system URL")]
    Offline(String),
    #[error("charger {0} has too many requests waiting: try again in a minute")]
    Busy(String),
    #[error("the charger did not answer within {0} s")]
    Timeout(u64),
    #[error("the charger refused: {code} {description}")]
    CallError { code: String, description: String },
    #[error("the charger's answer does not meet the OCPP 1.6 schema: {0}")]
    BadAnswer(String),
    #[error("the charger disconnected before answering")]
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum AddChargerError {
    #[error("charger id {0:?} is invalid: use 1-64 letters, digits, '-' or '_'")]
    BadId(String),
    #[error("connectors must be 1 to 16")]
    BadConnectors,
    #[error("the maximum power must be 1 to 1000 kW")]
    BadPower,
    #[error("charger {0} already exists")]
    Exists(String),
    #[error("{0} is a device of another kind: choose another id for the charger")]
    NotACharger(String),
    #[error(transparent)]
    Device(#[from] crate::modules::auth::service::DeviceError),
    #[error(transparent)]
    Store(#[from] StoreCallError),
}

/// Registers a charger: its connectors and power, and its credential. Returns the new
/// password (shown once), or None when the device already exists as a charger (an
/// enrolled depot's credential comes from the cloud; its password is left as it is).
pub fn add_charger(
    store: &Store,
    id: &str,
    connectors: i64,
    max_w: i64,
) -> Result<Option<String>, AddChargerError> {
    use crate::modules::auth::service::{add_device, device_kind, valid_id, DeviceKind};
    if !valid_id(id) {
        return Err(AddChargerError::BadId(id.chars().take(64).collect()));
    }
    // The same rules as the cloud's charger records.
    use garasi_sync_protocol::records::charger::{CONNECTORS, MAX_POWER_W};
    if !CONNECTORS.contains(&connectors) {
        return Err(AddChargerError::BadConnectors);
    }
    if !MAX_POWER_W.contains(&max_w) {
        return Err(AddChargerError::BadPower);
    }
    if store.read_blocking(|c| store::charger(c, id))?.is_some() {
        return Err(AddChargerError::Exists(id.into()));
    }
    let password = match device_kind(store, id)? {
        Some(DeviceKind::Charger) => None,
        Some(_) => return Err(AddChargerError::NotACharger(id.into())),
        None => Some(add_device(store, id, "charger")?),
    };
    store.write_blocking(|c| store::add_charger(c, id, connectors, max_w))?;
    Ok(password)
}

/// A CALL waiting for its turn on a charger's connection.
pub(super) struct Outgoing {
    pub action: &'static str,
    pub payload: Value,
    pub reply: oneshot::Sender<Result<Value, CallFailure>>,
}

/// CALLs that may wait behind the one outstanding, per charger.
const QUEUE: usize = 16;

struct Conn {
    generation: u64,
    calls: mpsc::Sender<Outgoing>,
    cancel: CancellationToken,
}

pub struct ChargingApi {
    pub(super) store: Store,
    pub(super) schemas: Schemas,
    pub(super) metrics: ChargingMetrics,
    pub(super) cfg: ChargingConfig,
    pub(super) devices: Arc<DeviceAuth>,
    /// This process's automerge actor for the session records it writes.
    pub(super) actor: garasi_sync_protocol::actor::ActorId,
    fleet: Option<Arc<FleetApi>>,
    bus: Bus,
    conns: Mutex<HashMap<String, Conn>>,
    generations: AtomicU64,
    /// The smart charging plan and the limits chargers accepted.
    pub board: Arc<super::planner::PlanBoard>,
}

/// What a new connection gets: its generation, its CALL queue, and its cancel token
/// (cancelled when a newer connection of the same charger replaces it).
pub(super) struct Registered {
    pub generation: u64,
    pub calls: mpsc::Receiver<Outgoing>,
    pub cancel: CancellationToken,
}

impl ChargingApi {
    pub(super) fn new(
        store: Store,
        metrics: ChargingMetrics,
        cfg: ChargingConfig,
        devices: Arc<DeviceAuth>,
        fleet: Option<Arc<FleetApi>>,
        bus: Bus,
    ) -> Result<Self, String> {
        Ok(ChargingApi {
            store,
            schemas: Schemas::load()?,
            metrics,
            cfg,
            devices,
            actor: garasi_sync_protocol::actor::new_actor(garasi_sync_protocol::actor::Side::Depot),
            fleet,
            bus,
            conns: Mutex::new(HashMap::new()),
            generations: AtomicU64::new(1),
            board: Arc::default(),
        })
    }

    pub async fn chargers(&self) -> Result<Vec<Charger>, StoreCallError> {
        self.store.read(store::chargers).await
    }

    pub async fn charger(&self, id: &str) -> Result<Option<Charger>, StoreCallError> {
        let id = id.to_string();
        self.store.read(move |c| store::charger(c, &id)).await
    }

    pub async fn connectors(&self) -> Result<Vec<ConnectorStatus>, StoreCallError> {
        self.store.read(store::connectors).await
    }

    /// Open sessions and those stopped since `since_ms`.
    pub async fn sessions(&self, since_ms: i64) -> Result<Vec<Session>, StoreCallError> {
        self.store
            .read(move |c| sessions::sessions(c, since_ms))
            .await
    }

    pub async fn session(&self, id: i64) -> Result<Option<Session>, StoreCallError> {
        self.store.read(move |c| sessions::session(c, id)).await
    }

    /// Alarms raised since `since_ms` (chargers drawing more than their profile).
    pub async fn alarms(&self, since_ms: i64) -> Result<Vec<store::Alarm>, StoreCallError> {
        self.store.read(move |c| store::alarms(c, since_ms)).await
    }

    pub fn online(&self, charger: &str) -> bool {
        self.conns.lock().contains_key(charger)
    }

    /// Binds a card (id tag) to a bus; `by` is the person who did it.
    pub async fn bind_tag(&self, tag: &str, vehicle: &str, by: &str) -> Result<(), StoreCallError> {
        let (t, v, b) = (tag.to_string(), vehicle.to_string(), by.to_string());
        self.store
            .write(move |c| store::bind_tag(c, &t, &v, &b))
            .await
    }

    /// Binds a bus to (or, with None, unbinds it from) the transaction running on a
    /// connector; the planner re-plans for it.
    pub async fn bind_vehicle(
        &self,
        b: super::binding::Bind<'_>,
    ) -> Result<Result<(), super::binding::Refused>, StoreCallError> {
        let actor = self.actor.clone();
        let (charger, vehicle, by) = (
            b.charger.to_string(),
            b.vehicle.map(str::to_string),
            b.by.to_string(),
        );
        let (connector, tx) = (b.connector, b.tx);
        let r = self
            .store
            .write(move |c| {
                let t = c.transaction()?;
                let b = super::binding::Bind {
                    charger: &charger,
                    connector,
                    tx,
                    vehicle: vehicle.as_deref(),
                    by: &by,
                };
                let r = super::binding::bind(&t, &actor, &b)?;
                t.commit()?;
                Ok(r)
            })
            .await?;
        if r.is_ok() {
            self.session_changed(tx);
        }
        Ok(r)
    }

    /// Ends the transactions left open on a charger known to be gone (see
    /// `sessions::close_open`), with their records for the cloud.
    pub async fn close_lost_sessions(&self, charger: &str) -> Result<usize, StoreCallError> {
        let (actor, c) = (self.actor.clone(), charger.to_string());
        self.store
            .write(move |db| {
                let t = db.transaction()?;
                let closed = sessions::close_open(&t, &c)?;
                for tx in &closed {
                    super::records::publish(&t, &actor, *tx)?;
                }
                t.commit()?;
                Ok(closed.len())
            })
            .await
    }

    /// The bus an id tag stands for: a card bound to it, or the bus's own id.
    pub async fn vehicle_of_tag(&self, tag: &str) -> Result<Option<String>, StoreCallError> {
        let t = tag.to_string();
        if let Some(v) = self
            .store
            .read(move |c| store::vehicle_of_tag(c, &t))
            .await?
        {
            return Ok(Some(v));
        }
        Ok(self.is_bus(tag).await.then(|| tag.to_string()))
    }

    /// The fleet's bus ids, sorted (none without a fleet module).
    pub async fn bus_ids(&self) -> Vec<String> {
        let Some(fleet) = self.fleet.clone() else {
            return Vec::new();
        };
        tokio::task::spawn_blocking(move || fleet.list().into_iter().map(|v| v.id).collect())
            .await
            .unwrap_or_default()
    }

    /// Whether the fleet knows this bus (no fleet module: none is known).
    pub async fn is_bus(&self, id: &str) -> bool {
        let Some(fleet) = self.fleet.clone() else {
            return false;
        };
        let id = id.to_string();
        // A registry miss costs one query: off the async threads.
        tokio::task::spawn_blocking(move || fleet.is_known(&id))
            .await
            .unwrap_or(false)
    }

    pub(super) fn status_for(&self, known: bool) -> &'static str {
        if known || self.cfg.accept_unknown_tags {
            "Accepted"
        } else {
            "Invalid"
        }
    }

    pub(super) async fn tag_status(&self, tag: &str) -> Result<&'static str, StoreCallError> {
        Ok(self.status_for(self.vehicle_of_tag(tag).await?.is_some()))
    }

    pub(super) fn bus_subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.bus.subscribe()
    }

    /// The newest state of charge the charger reported in this transaction in the last
    /// 15 minutes (DC chargers read it from the bus), %, within 0-100.
    pub async fn latest_soc(&self, charger: &str, tx: i64) -> Option<f64> {
        let c = charger.to_string();
        let since = crate::util::now_ms() - 15 * 60_000;
        self.store
            .read(move |db| sessions::latest(db, &c, tx, "SoC", since))
            .await
            .ok()
            .flatten()
            .filter(|p| p.is_finite())
            .map(|p| p.clamp(0.0, 100.0))
    }

    /// What the chargers may share of the site's cap now (less the other load the
    /// configured panels read).
    pub(super) async fn charging_cap(
        &self,
        site_w: i64,
    ) -> Result<super::site_cap::SiteCap, StoreCallError> {
        let panels = self.cfg.other_load_panels.clone();
        let unknown_w = self
            .cfg
            .other_load_max_kw
            .map_or(0, |kw| (kw * 1000.0) as i64);
        let now = crate::util::now_ms();
        self.store
            .read(move |c| super::site_cap::charging_cap(c, site_w, &panels, unknown_w, now))
            .await
    }

    /// The tariff in force: the cloud's once one has arrived, else the config file's.
    pub async fn tariff(&self) -> super::energy::Tariff {
        match self.store.read(super::master::cloud_tariff).await {
            Ok(Some(t)) => t,
            Ok(None) => self.cfg.tariff.clone(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the cloud's tariff failed; using the config's");
                self.cfg.tariff.clone()
            }
        }
    }

    /// The power the charger last reported drawing in this transaction in the last 2
    /// minutes, W (None: no recent reading, so the page shows no figure, not a 0).
    pub async fn latest_power(&self, charger: &str, tx: i64) -> Option<f64> {
        let c = charger.to_string();
        let since = crate::util::now_ms() - 2 * 60_000;
        self.store
            .read(move |db| sessions::latest_power(db, &c, tx, since))
            .await
            .ok()
            .flatten()
            .filter(|w| w.is_finite())
    }

    /// A charger refused a charging profile: alarmed (stored once) and counted.
    pub(super) async fn profile_rejected(
        &self,
        charger: &str,
        connector: i64,
        tx: Option<i64>,
        limit_w: Option<i64>,
    ) {
        let a = super::profiles::rejected_alarm(charger, connector, tx, limit_w);
        self.metrics.profiles_rejected.inc();
        if let Err(e) = self.store.write(move |c| store::raise_hourly(c, &a)).await {
            tracing::warn!(error = %e, "could not store a charging alarm");
        }
    }

    pub(super) fn session_changed(&self, transaction_id: i64) {
        self.bus
            .publish(Event::ChargingSessionChanged { transaction_id });
    }

    /// Registers a new connection of `charger`, ending the one it replaces (a charger
    /// that reconnects before the edge saw its old socket close).
    pub(super) fn connect(&self, charger: &str) -> Registered {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE);
        let cancel = CancellationToken::new();
        let old = self.conns.lock().insert(
            charger.to_string(),
            Conn {
                generation,
                calls: tx,
                cancel: cancel.clone(),
            },
        );
        match old {
            Some(o) => o.cancel.cancel(),
            None => self.metrics.connected.inc(),
        }
        // A charger that (re)connects may have lost its profiles: the next round sends
        // it everything again.
        self.board.forget(charger);
        self.bus.publish(Event::ChargerConnection {
            charger_id: charger.to_string(),
            online: true,
        });
        Registered {
            generation,
            calls: rx,
            cancel,
        }
    }

    /// Forgets the connection if it is still `generation` (not replaced).
    pub(super) fn disconnect(&self, charger: &str, generation: u64) {
        let mut conns = self.conns.lock();
        if conns
            .get(charger)
            .is_some_and(|c| c.generation == generation)
        {
            conns.remove(charger);
            drop(conns);
            self.metrics.connected.dec();
            self.bus.publish(Event::ChargerConnection {
                charger_id: charger.to_string(),
                online: false,
            });
        }
    }

    pub(super) fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.call_timeout_s)
    }

    /// Sends a CALL to a connected charger and waits for its answer (schema-checked).
    /// Calls to one charger go one at a time, in order; a few may wait their turn.
    pub async fn call(
        &self,
        charger: &str,
        action: &'static str,
        payload: Value,
    ) -> Result<Value, CallFailure> {
        let sender = self.conns.lock().get(charger).map(|c| c.calls.clone());
        let Some(sender) = sender else {
            self.metrics.calls_out.with_label_values(&["offline"]).inc();
            return Err(CallFailure::Offline(charger.to_string()));
        };
        let (reply, answer) = oneshot::channel();
        let out = Outgoing {
            action,
            payload,
            reply,
        };
        if sender.try_send(out).is_err() {
            self.metrics.calls_out.with_label_values(&["busy"]).inc();
            return Err(CallFailure::Busy(charger.to_string()));
        }
        // The connection answers every CALL it took (timeout included); a dropped reply
        // means the connection ended first.
        // Bounded even if the connection stalls: every CALL ahead of this one and this
        // one each get the call timeout, and sends give up after 10 s.
        let most = self.call_timeout() * (QUEUE as u32 + 1) + Duration::from_secs(10);
        let r = match tokio::time::timeout(most, answer).await {
            Ok(r) => r.unwrap_or(Err(CallFailure::Closed)),
            Err(_) => Err(CallFailure::Timeout(most.as_secs())),
        };
        let outcome = match &r {
            Ok(_) => "answered",
            Err(CallFailure::CallError { .. }) => "callerror",
            Err(CallFailure::Timeout(_)) => "timeout",
            Err(CallFailure::BadAnswer(_)) => "bad_answer",
            Err(_) => "closed",
        };
        self.metrics.calls_out.with_label_values(&[outcome]).inc();
        r
    }
}
