//! Sending the plan to the chargers: per charger a ChargePointMaxProfile (its full power
//! now, its safe share of the site cap from FALLBACK_AFTER_S on: the edge keeps pushing
//! that step ahead while it lives), a TxDefaultProfile (a transaction the plan has not
//! reached yet draws at most its share), and a TxProfile per planned transaction.
//! Chargers are served concurrently, each within one round deadline; a charger that
//! does not answer loses the rest of its round, never anyone else's. A rejected profile
//! is an alarm.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::plan::Schedule;
use super::planner::{Sent, FALLBACK_AFTER_S};
use super::service::ChargingApi;
use super::store;

/// Profiles are sent again at least this often (well before the fallback starts).
const RESEND_MS: i64 = 10 * 60_000;
/// Most periods one profile carries (chargers' ChargingScheduleMaxPeriods is often 24).
const MAX_PERIODS: usize = 24;

fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// A SetChargingProfile payload: `periods` (absolute ms, watts) from `start_ms` on.
pub fn profile(
    connector: i64,
    id: i64,
    purpose: &str,
    tx: Option<i64>,
    start_ms: i64,
    periods: &[(i64, i64)],
) -> Value {
    let list: Vec<Value> = periods
        .iter()
        .take(MAX_PERIODS)
        .map(
            // Rounded: the send comes a moment after the plan (1199.7 s is 1200).
            |(from, w)| json!({"startPeriod": ((from - start_ms).max(0) + 500) / 1000, "limit": *w as f64}),
        )
        .collect();
    let mut p = json!({
        "chargingProfileId": id, "stackLevel": if tx.is_some() { 1 } else { 0 },
        "chargingProfilePurpose": purpose, "chargingProfileKind": "Absolute",
        "chargingSchedule": {"chargingRateUnit": "W", "startSchedule": iso(start_ms),
                             "chargingSchedulePeriod": list}});
    if let Some(t) = tx {
        p["transactionId"] = json!(t);
    }
    json!({"connectorId": connector, "csChargingProfiles": p})
}

/// The periods from the one in force at `now` on (that one starting at `now`).
fn from_now(periods: &[(i64, i64)], now: i64) -> Vec<(i64, i64)> {
    let first = periods
        .iter()
        .rposition(|(from, _)| *from <= now)
        .unwrap_or(0);
    let out: Vec<(i64, i64)> = periods[first..]
        .iter()
        .map(|(from, w)| ((*from).max(now), *w))
        .take(MAX_PERIODS)
        .collect();
    // OCPP wants at least one period: a bus that needs nothing gets 0 W.
    if out.is_empty() {
        return vec![(now, 0)];
    }
    out
}

/// One profile to send: the connector (0: the charger), the transaction, how.
pub(super) struct Job {
    pub connector: i64,
    pub id: i64,
    pub purpose: &'static str,
    pub tx: Option<i64>,
    pub periods: Vec<(i64, i64)>,
}

impl Job {
    /// The SetChargingProfile payload, as sent at `now`.
    pub fn payload(&self, now: i64) -> Value {
        profile(
            self.connector,
            self.id,
            self.purpose,
            self.tx,
            now,
            &self.periods,
        )
    }

    /// Where what was sent is kept: the ChargePointMaxProfile and TxDefaultProfile share
    /// connector 0, so they are keyed apart (below zero).
    pub fn key(&self, charger: &str) -> (String, i64) {
        let k = if self.connector == 0 {
            -self.id
        } else {
            self.connector
        };
        (charger.to_string(), k)
    }

    /// Whether it must go out: never sent, sent for another transaction, long enough
    /// ago that the charger's fallback must be pushed ahead, or with other limits
    /// before it would go again anyway (RESEND_MS). A limit that went down always goes
    /// (the cap depends on it); one that went up by less than a kilowatt or 2 % waits (a
    /// charger is not sent a profile a minute for the planner's rounding, and drawing a
    /// little less is safe).
    pub fn due(&self, last: Option<&Sent>, now: i64) -> bool {
        let Some(last) = last else { return true };
        if now - last.at_ms >= RESEND_MS || last.tx != self.tx {
            return true;
        }
        let horizon = now + RESEND_MS;
        let steps = self.periods.iter().chain(&last.periods).map(|p| p.0);
        std::iter::once(now)
            .chain(steps.filter(|t| *t > now && *t < horizon))
            .any(
                |t| match (limit_at(&self.periods, t), limit_at(&last.periods, t)) {
                    (Some(new), Some(old)) => new < old || new > old + (old / 50).max(1000),
                    (new, old) => new != old,
                },
            )
    }
}

/// The limit in force at `t` of periods `(from_ms, watts)` (None before the first).
fn limit_at(periods: &[(i64, i64)], t: i64) -> Option<i64> {
    periods.iter().take_while(|p| p.0 <= t).last().map(|p| p.1)
}

/// What every online charger is due this round: its ChargePointMaxProfile (full power
/// now, its safe share of `fallback_w` from FALLBACK_AFTER_S on), its TxDefaultProfile,
/// and a TxProfile per planned transaction (`txs` beside `plan`).
pub(super) fn jobs<'a>(
    plan: &[Schedule],
    txs: &[i64],
    chargers: &'a HashMap<String, (i64, i64)>,
    online: &dyn Fn(&str) -> bool,
    fallback_w: i64,
    now: i64,
) -> HashMap<&'a str, Vec<Job>> {
    // Every charger at its share at once stays under the cap (less the other load's
    // peak: nobody lowers it once the edge is gone).
    let safe_w = fallback_w / (chargers.len().max(1) as i64);
    let mut jobs: HashMap<&str, Vec<Job>> = HashMap::new();
    for (c, (max_w, per_connector)) in chargers.iter().filter(|(c, _)| online(c)) {
        let share = safe_w.min(*max_w);
        let list = jobs.entry(c.as_str()).or_default();
        list.push(Job {
            connector: 0,
            id: 1,
            purpose: "ChargePointMaxProfile",
            tx: None,
            periods: vec![(now, *max_w), (now + FALLBACK_AFTER_S * 1000, share)],
        });
        let connectors = (max_w / (*per_connector).max(1)).max(1);
        list.push(Job {
            connector: 0,
            id: 2,
            purpose: "TxDefaultProfile",
            tx: None,
            periods: vec![(now, share / connectors)],
        });
    }
    for (s, tx) in plan.iter().zip(txs) {
        let Some(list) = jobs.get_mut(s.charger.as_str()) else {
            continue;
        };
        list.push(Job {
            connector: s.connector,
            id: 100 + s.connector,
            purpose: "TxProfile",
            tx: Some(*tx),
            periods: from_now(&s.periods, now),
        });
    }
    jobs
}

/// Sends what is due to every connected charger, concurrently.
pub(super) async fn send(
    api: &Arc<ChargingApi>,
    plan: &[Schedule],
    txs: &[i64],
    chargers: &HashMap<String, (i64, i64)>,
    fallback_w: i64,
) {
    let now = crate::util::now_ms();
    let jobs = jobs(plan, txs, chargers, &|c| api.online(c), fallback_w, now);
    // Each charger gets its jobs in order within the round's deadline: a CALL's
    // timeout for each, at most three.
    let round = api.call_timeout() * 3 + Duration::from_secs(1);
    let rounds = jobs.into_iter().map(|(charger, list)| async move {
        let done = tokio::time::timeout(round, async {
            for job in list {
                if !send_if_due(api, charger, job).await {
                    break;
                }
            }
        })
        .await;
        if done.is_err() {
            // A CALL may still be queued and taken later: what the edge thinks this
            // charger has is unsure, so the next round sends it everything again.
            api.board.forget(charger);
        }
    });
    futures::future::join_all(rounds).await;
}

/// Sends one profile unless the charger has it already; false when the charger did not
/// answer (the rest of its round is skipped).
async fn send_if_due(api: &Arc<ChargingApi>, charger: &str, job: Job) -> bool {
    let now = crate::util::now_ms();
    let key = job.key(charger);
    if !job.due(api.board.sent.read().get(&key), now) {
        return true;
    }
    let body = job.payload(now);
    match api.call(charger, "SetChargingProfile", body).await {
        Ok(a) if a["status"] == "Accepted" => {
            let sent = Sent {
                tx: job.tx,
                periods: job.periods.clone(),
                at_ms: now,
            };
            api.board.sent.write().insert(key.clone(), sent);
            if job.connector > 0 {
                api.board.accepted.write().insert(key, job.periods.clone());
            }
            true
        }
        Ok(a) => {
            // Not retried until the plan changes or RESEND_MS passes; an alarm says so.
            let sent = Sent {
                tx: job.tx,
                periods: job.periods.clone(),
                at_ms: now,
            };
            api.board.sent.write().insert(key, sent);
            api.profile_rejected(
                charger,
                job.connector.max(0),
                job.tx,
                job.periods.first().map(|p| p.1),
            )
            .await;
            tracing::warn!(charger, connector = job.connector, purpose = job.purpose,
                status = ?a["status"], "charger did not accept the charging profile");
            true
        }
        Err(e) => {
            tracing::warn!(charger, connector = job.connector, error = %e, "charging profile not sent");
            false
        }
    }
}

/// The alarm row of a rejected profile.
pub(super) fn rejected_alarm(
    charger: &str,
    connector: i64,
    tx: Option<i64>,
    limit_w: Option<i64>,
) -> store::Alarm {
    store::Alarm {
        charger_id: charger.to_string(),
        connector_id: connector,
        ts_ms: crate::util::now_ms(),
        kind: "profile_rejected".into(),
        limit_w,
        drawn_w: None,
        transaction_id: tx,
    }
}

#[cfg(test)]
#[path = "night_tests.rs"]
mod night_tests;
