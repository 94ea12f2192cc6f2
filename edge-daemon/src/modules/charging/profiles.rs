//! Sending the plan to the chargers: per charger a ChargePointMaxProfile (its full power
//! now, its safe share of the site cap from FALLBACK_AFTER_S on: the edge keeps pushing
//! that step ahead while it lives), a TxDefaultProfile (a transaction the plan has not
//! reached yet draws nothing while the edge lives, and the charger's share per
//! connector from the same step on), and a TxProfile per planned transaction.
//! Chargers are served concurrently, each within one round deadline; a charger that
//! does not answer loses the rest of its round, never anyone else's. A rejected profile
//! is an alarm.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::held::{held, limit_at};
use super::plan::Schedule;
use super::planner::{Sent, FALLBACK_AFTER_S};
use super::service::ChargingApi;
use super::store;

/// Profiles are sent again at least this often (well before the fallback starts).
const RESEND_MS: i64 = 10 * 60_000;
/// How far before the send a schedule starts (see `profile`).
const CLOCK_SLACK_MS: i64 = 60_000;
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
    // The schedule starts on the whole second (OCPP's times are whole seconds), so the
    // plan's steps, on whole quarter hours, land exactly where they are, whenever the
    // profile is sent. Steps already passed (the charger's earlier CALLs took a while)
    // fold into the first period, the later one in force: OCPP wants the periods
    // strictly increasing.
    // And it starts a minute early: a charger whose clock is behind the edge's takes
    // the first period at once, not when its clock reaches the send.
    let start_ms = start_ms.div_euclid(1000) * 1000 - CLOCK_SLACK_MS;
    let mut list: Vec<(i64, i64)> = Vec::new();
    for (from, w) in periods.iter().take(MAX_PERIODS) {
        let at = (from - start_ms).max(0) / 1000;
        match list.last_mut() {
            Some(last) if last.0 >= at => *last = (last.0, *w),
            _ => list.push((at, *w)),
        }
    }
    if let Some(first) = list.first_mut() {
        first.0 = 0;
    }
    let list: Vec<Value> = list
        .iter()
        .map(|(at, w)| json!({"startPeriod": at, "limit": *w as f64}))
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
/// A rise comes this long after the step it belongs to: chargers' clocks differ by a
/// few seconds, and a charger that rose on time while another cut late would put the
/// site over its cap in between.
pub(super) const RISE_LAG_MS: i64 = 10_000;

fn from_now(periods: &[(i64, i64)], now: i64) -> Vec<(i64, i64)> {
    let first = periods
        .iter()
        .rposition(|(from, _)| *from <= now)
        .unwrap_or(0);
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (from, w) in &periods[first..] {
        let at = match out.last() {
            Some(last) if *w > last.1 => (*from).max(now) + RISE_LAG_MS,
            _ => (*from).max(now),
        };
        out.push((at, *w));
    }
    // OCPP wants at least one period: a bus that needs nothing gets 0 W.
    if out.is_empty() {
        return vec![(now, 0)];
    }
    bounded(out)
}

/// At most MAX_PERIODS periods; a schedule cut short ends at 0 W (the last period of a
/// profile holds for ever; the edge sends the rest long before it is reached).
fn bounded(mut periods: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    if periods.len() > MAX_PERIODS {
        periods.truncate(MAX_PERIODS);
        if let Some(last) = periods.last_mut() {
            last.1 = 0;
        }
    }
    periods
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

    /// Whether any limit, at any step ahead, is lower than what the charger has: such
    /// a profile always goes, and goes first (the cap depends on it).
    pub fn lowers(&self, last: &Sent, now: i64) -> bool {
        self.compare(last, now, i64::MAX, |new, old| new < old)
    }

    /// The same profile, never above what the charger has (`last`) at any moment: what
    /// goes first when the new profile lowers some limits and raises others.
    pub fn no_higher_than(&self, last: &Sent, now: i64) -> Job {
        let mut steps: Vec<i64> = std::iter::once(now)
            .chain(
                self.periods
                    .iter()
                    .chain(&last.periods)
                    .map(|p| p.0)
                    .filter(|t| *t > now),
            )
            .collect();
        steps.sort_unstable();
        steps.dedup();
        let mut periods: Vec<(i64, i64)> = Vec::new();
        for t in steps {
            let new = limit_at(&self.periods, t).unwrap_or(0);
            let w = limit_at(&last.periods, t).map_or(new, |old| old.min(new));
            if periods.last().map(|p| p.1) != Some(w) {
                periods.push((t, w));
            }
        }
        Job {
            periods: bounded(periods),
            ..*self
        }
    }

    /// Whether it must go out: never sent (`held` makes that full power), sent for
    /// another transaction, long enough ago that the charger's fallback must be pushed
    /// ahead, a limit lowered anywhere,
    /// or raised before it would go again anyway (RESEND_MS) by more than a kilowatt or
    /// 2 % (a charger is not sent a profile a minute for the planner's rounding, and
    /// drawing a little less for a while is safe).
    pub fn due(&self, last: &Sent, now: i64) -> bool {
        now - last.at_ms >= RESEND_MS
            || last.tx != self.tx
            || self.lowers(last, now)
            || self.compare(last, now, now + RESEND_MS, |new, old| {
                new > old + (old / 50).max(1000)
            })
    }

    /// Whether `differs(new, old)` at now or at any step of either before `until`. The
    /// charger-wide profiles' steps are reckoned from their send (the fallback step the
    /// edge keeps pushing ahead), so only their watts, step by step, count.
    fn compare(
        &self,
        last: &Sent,
        now: i64,
        until: i64,
        differs: impl Fn(i64, i64) -> bool,
    ) -> bool {
        if self.connector == 0 {
            return self.periods.len() != last.periods.len()
                || self
                    .periods
                    .iter()
                    .zip(&last.periods)
                    .any(|(new, old)| differs(new.1, old.1));
        }
        let steps = self.periods.iter().chain(&last.periods).map(|p| p.0);
        std::iter::once(now)
            .chain(steps.filter(|t| *t > now && *t < until))
            .any(
                |t| match (limit_at(&self.periods, t), limit_at(&last.periods, t)) {
                    (Some(new), Some(old)) => differs(new, old),
                    (new, old) => new != old,
                },
            )
    }
}

/// What every online charger is due this round: its ChargePointMaxProfile (full power
/// now, its safe share of `fallback_w` from FALLBACK_AFTER_S on), its TxDefaultProfile,
/// and a TxProfile per planned transaction (`txs` beside `plan`).
pub(super) fn jobs<'a>(
    plan: &[Schedule],
    txs: &[i64],
    chargers: &'a HashMap<String, (i64, i64)>,
    online: &dyn Fn(&str) -> bool,
    loose: &dyn Fn(&str) -> bool,
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
            // A charger the plan set aside (failing its profiles) is held to its share
            // outright, one plain period: what is set aside for it, and the simplest
            // profile a charger can take.
            periods: if loose(c) {
                vec![(now, share)]
            } else {
                vec![(now, *max_w), (now + FALLBACK_AFTER_S * 1000, share)]
            },
        });
        let connectors = (max_w / (*per_connector).max(1)).max(1);
        list.push(Job {
            connector: 0,
            id: 2,
            purpose: "TxDefaultProfile",
            tx: None,
            // Nothing until the plan reaches it (a second after the plug-in): the plan
            // shares the whole cap among the buses it knows. Once the edge is gone, its
            // share, when the charger-wide fallback also holds. A charger the plan left
            // out (failing its profiles) gets its share now: set aside for it, so its
            // buses still charge.
            periods: if loose(c) {
                vec![(now, share / connectors)]
            } else {
                vec![
                    (now, 0),
                    (now + FALLBACK_AFTER_S * 1000, share / connectors),
                ]
            },
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
    let loose: std::collections::HashSet<String> = chargers
        .keys()
        .filter(|c| api.board.loose(c, now))
        .cloned()
        .collect();
    let all = jobs(
        plan,
        txs,
        chargers,
        &|c| api.online(c),
        &|c| loose.contains(c),
        fallback_w,
        now,
    );
    let (cuts, rest) = phases(all, &api.board.sent.read(), now);
    let failed_cuts = send_all(api, cuts).await;
    // A charger the plan counted on that did not take its cut holds the rises back
    // (they would put the site over its cap); one the plan already set aside does not.
    let held_back = failed_cuts.iter().any(|c| !loose.contains(c));
    let failed = if held_back {
        tracing::warn!(chargers = ?failed_cuts,
            "a lowered charging limit was not taken; raised ones wait for the next round");
        Vec::new()
    } else {
        send_all(api, rest).await
    };
    mark_failing(
        &api.board,
        chargers.keys(),
        &loose,
        &failed_cuts,
        &failed,
        held_back,
        now,
    );
}

/// After a round: a charger that failed is set aside from now (one already set aside
/// keeps its date, so it is tried again LOOSE_MS after it first failed); one the plan
/// counted on that took everything is steered again.
pub(super) fn mark_failing<'a>(
    board: &super::planner::PlanBoard,
    chargers: impl Iterator<Item = &'a String>,
    loose: &std::collections::HashSet<String>,
    failed_cuts: &[String],
    failed: &[String],
    held_back: bool,
    now: i64,
) {
    let mut failing = board.failing.write();
    for c in chargers {
        if failed_cuts.contains(c) || failed.contains(c) {
            if loose.contains(c) {
                failing.entry(c.clone()).or_insert(now);
            } else {
                failing.insert(c.clone(), now);
            }
        } else if !held_back && !loose.contains(c) {
            failing.remove(c);
        }
    }
}

/// The round in two phases: first every lowered limit (a profile that lowers some
/// limits and raises others goes first as its lower envelope, never above what the
/// charger has), then, once those are answered, the rest. A charger that took its rise
/// before another took its cut would put the site over its cap.
pub(super) type Phase<'a> = Vec<(&'a str, Vec<Job>)>;
pub(super) fn phases<'a>(
    all: HashMap<&'a str, Vec<Job>>,
    sent: &HashMap<(String, i64), Sent>,
    now: i64,
) -> (Phase<'a>, Phase<'a>) {
    let (mut cuts, mut rest) = (Vec::new(), Vec::new());
    for (charger, list) in all {
        let (mut down, mut up) = (Vec::new(), Vec::new());
        for mut job in list {
            let last = held(sent, charger, &job);
            let unknown = last.periods == super::held::full();
            // Unknown: nothing first (certainly a cut), then the profile.
            let first = if unknown {
                Some(Job {
                    periods: vec![(now, 0)],
                    ..job
                })
            } else if job.lowers(&last, now) {
                Some(job.no_higher_than(&last, now))
            } else {
                None
            };
            // A transaction's rise now waits RISE_LAG_MS like a later step's: another
            // charger's cut may take effect a few seconds late on its clock.
            let before = first.as_ref().map_or(&last.periods, |f| &f.periods).clone();
            if let (Some(_), Some(was), Some(&(_, w))) =
                (job.tx, limit_at(&before, now), job.periods.first())
            {
                if w > was {
                    job.periods[0].0 = now + RISE_LAG_MS;
                    job.periods.insert(0, (now, was));
                    job.periods = bounded(std::mem::take(&mut job.periods));
                }
            }
            down.extend(first);
            up.push(job);
        }
        cuts.push((charger, down));
        rest.push((charger, up));
    }
    (cuts, rest)
}

/// Sends each charger its jobs in order, chargers concurrently; the chargers that did
/// not answer or did not accept one.
async fn send_all(api: &Arc<ChargingApi>, jobs: Vec<(&str, Vec<Job>)>) -> Vec<String> {
    // Each charger gets its jobs in order within the round's deadline: a CALL's
    // timeout for each, at most three.
    let round = api.call_timeout() * 3 + Duration::from_secs(1);
    let rounds = jobs.into_iter().map(|(charger, list)| async move {
        let done = tokio::time::timeout(round, async {
            for job in list {
                if !send_if_due(api, charger, job).await {
                    return false;
                }
            }
            true
        })
        .await;
        if done.is_err() {
            // A CALL may still be queued and taken later: what this charger holds is
            // unknown, so the next round counts it at full power.
            api.board.forget(charger);
        }
        (!done.unwrap_or(false)).then(|| charger.to_string())
    });
    futures::future::join_all(rounds)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Sends one profile unless the charger has it already; false when the charger did not
/// answer or did not accept it (the rest of its round is skipped).
async fn send_if_due(api: &Arc<ChargingApi>, charger: &str, job: Job) -> bool {
    let now = crate::util::now_ms();
    let key = job.key(charger);
    let last = held(&api.board.sent.read(), charger, &job);
    if !job.due(&last, now) {
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
            // Not recorded as sent: the charger keeps what it had, so the next round
            // tries again (a lowered limit must not be taken as done); an alarm says so.
            api.profile_rejected(
                charger,
                job.connector.max(0),
                job.tx,
                job.periods.first().map(|p| p.1),
            )
            .await;
            tracing::warn!(charger, connector = job.connector, purpose = job.purpose,
                status = ?a["status"], "charger did not accept the charging profile");
            false
        }
        Err(e) => {
            // No answer: the charger may still take it. Unknown, so counted at full
            // power until a profile is confirmed.
            let unknown = Sent {
                tx: job.tx,
                periods: super::held::full(),
                at_ms: 0,
            };
            api.board.sent.write().insert(key, unknown);
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
