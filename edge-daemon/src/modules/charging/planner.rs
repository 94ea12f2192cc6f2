//! The smart charging loop: on every charging event (plug-in, stop, meter values, a
//! charger connecting or dropping) and every minute, it gathers the open transactions,
//! each bus's charge and its next block (dispatch), plans (`plan.rs`), publishes the plan
//! (the page, dispatch's forecast) and sends each charger its TxProfiles and a
//! ChargePointMaxProfile that falls back to a safe share of the site cap 20 minutes
//! after the edge stops refreshing it. Limits the chargers accepted are kept to check
//! their meter values against.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use super::plan::{self, Need, Schedule};
use super::service::ChargingApi;
use super::sessions::Session;
use crate::bus::Event;
use crate::modules::dispatch::service::Dispatch;
use crate::modules::dispatch::service::{ChargePlans, NextBlock};
use crate::modules::fleet::service::{FleetApi, LiveStateSource};
use crate::modules::framework::Services;

pub const SLOT_MS: i64 = 15 * 60_000;
/// After this long without a refresh, a charger's maximum drops to its safe share.
pub const FALLBACK_AFTER_S: i64 = 20 * 60;

/// A connector: (charger, connector id).
pub(super) type Connector = (String, i64);
/// Limits over time: `(from_ms, watts)`, each until the next.
pub(super) type Periods = Vec<(i64, i64)>;

/// What was last sent to a connector: for which transaction, the limits (the first
/// from when it was sent), when.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sent {
    pub tx: Option<i64>,
    pub periods: Periods,
    pub at_ms: i64,
}

/// The latest plan and the limits chargers accepted.
#[derive(Default)]
pub struct PlanBoard {
    pub plan: RwLock<Vec<Schedule>>,
    pub made_ms: RwLock<i64>,
    /// The cap the last plan shared (the site's, less the other load when live).
    pub cap: RwLock<super::site_cap::SiteCap>,
    /// (charger, connector) -> accepted limits `(from_ms, watts)`.
    pub(super) accepted: RwLock<HashMap<Connector, Periods>>,
    /// What was last sent to each connector (0: the charger's max profile), and when.
    pub(super) sent: RwLock<HashMap<Connector, Sent>>,
    /// Chargers that refused or did not answer a profile, since when: for LOOSE_MS the
    /// plan sets their possible draw aside instead of counting on them, then tries them
    /// again.
    pub(super) failing: RwLock<HashMap<String, i64>>,
}

/// How long a failing charger is set aside before it is planned again.
pub(super) const LOOSE_MS: i64 = 10 * 60_000;

impl ChargePlans for PlanBoard {
    fn periods(&self, vehicle: &str) -> Option<Vec<(i64, i64)>> {
        self.plan
            .read()
            .iter()
            .find(|s| s.vehicle.as_deref() == Some(vehicle))
            .map(|s| s.periods.clone())
    }
}

impl PlanBoard {
    /// Whether `charger` is set aside now (it failed its profiles lately).
    pub(super) fn loose(&self, charger: &str, now: i64) -> bool {
        self.failing
            .read()
            .get(charger)
            .is_some_and(|since| now - since < LOOSE_MS)
    }

    /// What a charger holds is unknown now (it reconnected, rebooted, was sent a
    /// profile by a person, or a CALL went unanswered): counted at full power until the
    /// edge's profiles are confirmed again (`held.rs`).
    pub fn forget(&self, charger: &str) {
        for ((c, _), s) in self.sent.write().iter_mut() {
            if c == charger {
                s.periods = super::held::full();
                s.at_ms = 0;
            }
        }
        // Never sent anything: unknown already. The charger-wide ones, for the record.
        for k in [-1, -2] {
            self.sent
                .write()
                .entry((charger.to_string(), k))
                .or_insert_with(|| Sent {
                    tx: None,
                    periods: super::held::full(),
                    at_ms: 0,
                });
        }
        self.accepted.write().retain(|(c, _), _| c != charger);
    }

    /// What every charger holds is unknown (events were missed).
    pub fn forget_all(&self) {
        let chargers: std::collections::HashSet<String> =
            self.sent.read().keys().map(|k| k.0.clone()).collect();
        for c in chargers {
            self.forget(&c);
        }
    }

    /// Forgets connectors no longer in the plan (their transaction ended), except on
    /// chargers the plan set aside (what they hold still counts).
    fn keep_only(&self, planned: &[(String, i64)], aside: &[String]) {
        // Connector 0's profiles (keyed below zero) belong to the charger, not a plan.
        let keep = |k: &Connector| k.1 <= 0 || planned.contains(k) || aside.contains(&k.0);
        self.sent.write().retain(|k, _| keep(k));
        self.accepted.write().retain(|k, _| keep(k));
    }

    /// The limit a charger accepted for this connector at `ms` and since when it
    /// holds, if any.
    pub fn accepted_limit(&self, charger: &str, connector: i64, ms: i64) -> Option<(i64, i64)> {
        let a = self.accepted.read();
        let periods = a.get(&(charger.to_string(), connector))?;
        periods
            .iter()
            .take_while(|(from, _)| *from <= ms)
            .last()
            .map(|(from, w)| (*w, *from))
    }
}

pub(super) async fn run(
    api: Arc<ChargingApi>,
    services: Services,
    cancel: tokio_util::sync::CancellationToken,
) {
    let Some(cap_w) = api.cfg.site_cap_kw.map(|kw| (kw * 1000.0) as i64) else {
        return;
    };
    let mut events = api.bus_subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            ev = events.recv() => match ev {
                Ok(Event::ChargerConnection { .. } | Event::ChargingSessionChanged { .. }) => {
                    // Let a burst of events settle into one plan.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    while events.try_recv().is_ok() {}
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Events were missed (reconnects among them): send everything again.
                    api.board.forget_all();
                }
                Ok(_) => continue,
                Err(_) => return,
            },
        }
        let cap = match api.charging_cap(cap_w).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reading the other load failed; keeping the last plan");
                continue;
            }
        };
        let (charging_w, fallback_w) = (cap.charging_w, cap.fallback_w);
        *api.board.cap.write() = cap;
        if let Err(e) = replan(&api, &services, charging_w, fallback_w).await {
            tracing::warn!(error = %e, "charging plan failed; keeping the last one");
        }
    }
}

/// One planning round.
pub(super) async fn replan(
    api: &Arc<ChargingApi>,
    services: &Services,
    cap_w: i64,
    fallback_w: i64,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let now = crate::util::now_ms();
    let sessions = api.sessions(now).await.map_err(|e| e.to_string())?;
    let list = api.chargers().await.map_err(|e| e.to_string())?;
    // Charger -> (its maximum, each connector's share of it).
    let chargers: HashMap<String, (i64, i64)> = list
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                (c.max_power_w, c.max_power_w / c.connectors.max(1)),
            )
        })
        .collect();
    let next: HashMap<String, NextBlock> = match services.get::<Dispatch>() {
        Some(d) => d
            .next_blocks(now)
            .await
            .map_err(|e| format!("{e:?}"))?
            .into_iter()
            .map(|n| (n.vehicle.clone(), n))
            .collect(),
        None => HashMap::new(),
    };
    let fleet = services.get::<FleetApi>();
    let live = services.get::<LiveStateSource>();
    let open: Vec<&Session> = sessions
        .iter()
        .filter(|s| s.stop_ms.is_none() && s.origin == "start")
        .collect();
    let (aside_w, aside) = set_aside(api, &open, &chargers, fallback_w, now);
    // A bus on two running transactions (a stop that never came) is on the newer one.
    let mut newest: HashMap<&str, i64> = HashMap::new();
    for s in &open {
        if let Some(v) = s.vehicle_id.as_deref() {
            let n = newest.entry(v).or_insert(s.transaction_id);
            *n = (*n).max(s.transaction_id);
        }
    }
    let mut needs = Vec::new();
    let mut txs = Vec::new();
    for s in open.iter().filter(|s| !aside.contains(&s.charger_id)) {
        // A connector may take the whole charger; the plan shares it between them.
        let Some((max_w, _)) = chargers.get(&s.charger_id).copied() else {
            continue;
        };
        let vehicle = s
            .vehicle_id
            .clone()
            .filter(|v| newest.get(v.as_str()) == Some(&s.transaction_id));
        let battery_wh = vehicle
            .as_deref()
            .and_then(|v| fleet.as_ref()?.get(v))
            .map(|v| (v.battery_kwh * 1000.0) as i64);
        let soc = match vehicle.as_deref() {
            Some(v) => api
                .latest_soc(&s.charger_id, s.transaction_id)
                .await
                .or_else(|| live.as_ref()?.0.live(v)?.sample.as_ref()?.soc_pct),
            None => None,
        }
        .filter(|p| p.is_finite())
        .map(|p| p.clamp(0.0, 100.0));
        let have_wh = match (soc, battery_wh) {
            (Some(p), Some(b)) => (p / 100.0 * b as f64) as i64,
            _ => 0,
        };
        let (need_wh, deadline) = match (vehicle.as_deref().and_then(|v| next.get(v)), battery_wh) {
            (Some(n), _) => (
                // Half a kWh over the block's need: the plan's whole-watt slots would
                // otherwise end a few Wh short of it.
                ((n.need_kwh * 1000.0) as i64 + 500 - have_wh).max(0),
                n.pull_out_ms,
            ),
            // No block ahead: fill it, with no hurry.
            (None, Some(b)) => ((b - have_wh).max(0), now + 12 * 3_600_000),
            // An unknown bus: two hours at the connector's power, with no hurry.
            (None, None) => (max_w * 2, now + 12 * 3_600_000),
        };
        // Never more than the battery has room for.
        let need_wh = match battery_wh {
            Some(b) => need_wh.min((b - have_wh).max(0)),
            None => need_wh,
        };
        needs.push(Need {
            charger: s.charger_id.clone(),
            connector: s.connector_id,
            vehicle,
            need_wh,
            deadline_ms: deadline,
            max_w,
            charger_max_w: max_w,
        });
        txs.push(s.transaction_id);
    }
    let schedules = plan::plan(&needs, now, (cap_w - aside_w).max(0), SLOT_MS);
    let planned: Vec<Connector> = schedules
        .iter()
        .map(|s| (s.charger.clone(), s.connector))
        .collect();
    api.board.keep_only(&planned, &aside);
    *api.board.plan.write() = schedules.clone();
    *api.board.made_ms.write() = now;
    api.metrics
        .plan_ms
        .set(started.elapsed().as_millis() as i64);
    api.metrics.planned.set(schedules.len() as i64);
    super::profiles::send(api, &schedules, &txs, &chargers, fallback_w).await;
    Ok(())
}

/// The chargers the plan cannot steer now (offline, or failing their profiles) and what
/// they may draw in all, set aside from the cap: they keep following what they hold.
fn set_aside(
    api: &ChargingApi,
    open: &[&Session],
    chargers: &HashMap<String, (i64, i64)>,
    fallback_w: i64,
    now: i64,
) -> (i64, Vec<String>) {
    // The share each charger falls back to (profiles.rs): what a failing one is held
    // to, and the most an offline one draws once its fallback step has come.
    let share = fallback_w / (chargers.len().max(1) as i64);
    let sent = api.board.sent.read();
    let mut aside: Vec<String> = chargers
        .keys()
        .filter(|c| !api.online(c) || api.board.loose(c, now))
        .cloned()
        .collect();
    aside.sort();
    let mut total = 0i64;
    for c in &aside {
        let (max_w, per) = chargers.get(c).copied().unwrap_or((0, 1));
        let connectors: Vec<(i64, Option<i64>)> = (1..=(max_w / per.max(1)).max(1))
            .map(|k| {
                let tx = open
                    .iter()
                    .find(|s| s.charger_id == *c && s.connector_id == k)
                    .map(|s| s.transaction_id);
                (k, tx)
            })
            .collect();
        let may = super::held::set_aside_w(&sent, c, max_w, &connectors, api.online(c), share, now);
        total = total.saturating_add(may);
    }
    (total, aside)
}
