//! What a simulated charge point does with the charging profiles it is sent, with no I/O:
//! the OCPP 1.6 stack (a transaction's TxProfile over the connector's TxDefaultProfile
//! over the charger-wide one; the ChargePointMaxProfile caps the whole charger), limits
//! in W or A (three phases at 230 V), each period in force until the next.

use std::collections::HashMap;

use serde_json::{json, Value};

/// Volts per phase times phases: what one ampere of limit is worth in watts.
const W_PER_A: f64 = 230.0 * 3.0;

/// One profile as the charger keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub id: i64,
    pub purpose: String,
    pub transaction: Option<i64>,
    /// When the schedule starts, ms.
    pub start_ms: i64,
    /// `(offset_s, watts)`, each until the next.
    pub periods: Vec<(i64, f64)>,
}

impl Profile {
    /// Reads `csChargingProfiles`; None when it is not one this simulator can follow.
    pub fn parse(p: &Value, now_ms: i64) -> Option<Profile> {
        let s = &p["chargingSchedule"];
        let per = if s["chargingRateUnit"] == "A" {
            W_PER_A
        } else {
            1.0
        };
        let start_ms = s["startSchedule"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map_or(now_ms, |t| t.as_millisecond());
        let periods = s["chargingSchedulePeriod"]
            .as_array()?
            .iter()
            .map(|x| Some((x["startPeriod"].as_i64()?, x["limit"].as_f64()? * per)))
            .collect::<Option<Vec<(i64, f64)>>>()?;
        // As a strict charger reads OCPP 1.6: the first period at 0, each later one after
        // the one before; anything else is rejected.
        let increasing = periods.windows(2).all(|w| w[0].0 < w[1].0);
        if periods.first().map(|p| p.0) != Some(0) || !increasing {
            return None;
        }
        Some(Profile {
            id: p["chargingProfileId"].as_i64()?,
            purpose: p["chargingProfilePurpose"].as_str()?.to_string(),
            transaction: p["transactionId"].as_i64(),
            start_ms,
            periods,
        })
    }

    /// The limit in force at `ms`, W (None before the schedule starts).
    pub fn limit_at(&self, ms: i64) -> Option<f64> {
        self.periods
            .iter()
            .take_while(|(off, _)| self.start_ms.saturating_add(off.saturating_mul(1000)) <= ms)
            .last()
            .map(|(_, w)| *w)
    }
}

/// A charger's profiles: per connector (0: the whole charger) and purpose.
#[derive(Debug, Default, Clone)]
pub struct Profiles {
    by_slot: HashMap<(i64, String), Profile>,
}

impl Profiles {
    /// Installs a profile (a profile of the same connector and purpose replaces it).
    pub fn set(&mut self, connector: i64, p: Profile) {
        self.by_slot.insert((connector, p.purpose.clone()), p);
    }

    /// ClearChargingProfile: by id, or by connector and/or purpose; nothing given
    /// clears all. Returns whether anything was cleared.
    pub fn clear(&mut self, req: &Value) -> bool {
        let before = self.by_slot.len();
        let id = req["id"].as_i64();
        let connector = req["connectorId"].as_i64();
        let purpose = req["chargingProfilePurpose"].as_str();
        self.by_slot.retain(|(c, pur), p| {
            let hit = match id {
                Some(id) => p.id == id,
                None => connector.is_none_or(|k| k == *c) && purpose.is_none_or(|x| x == pur),
            };
            !hit
        });
        self.by_slot.len() != before
    }

    fn get(&self, connector: i64, purpose: &str) -> Option<&Profile> {
        self.by_slot.get(&(connector, purpose.to_string()))
    }

    /// The limit for a connector's transaction at `ms` (None: no profile limits it).
    pub fn connector_limit(&self, connector: i64, tx: Option<i64>, ms: i64) -> Option<f64> {
        // A profile whose schedule has not started yet (the charger's clock a little
        // behind the edge's) leaves the next one down in force.
        let tx_profile = self
            .get(connector, "TxProfile")
            .filter(|p| p.transaction.is_none() || p.transaction == tx);
        [
            tx_profile,
            self.get(connector, "TxDefaultProfile"),
            self.get(0, "TxDefaultProfile"),
        ]
        .into_iter()
        .flatten()
        .find_map(|p| p.limit_at(ms))
    }

    /// The whole charger's limit at `ms`.
    pub fn charger_limit(&self, ms: i64) -> Option<f64> {
        self.get(0, "ChargePointMaxProfile")
            .and_then(|p| p.limit_at(ms))
    }

    /// Draws for each connector wanting `want_w`: each capped by its own limit, then all
    /// scaled down together to the charger's limit.
    pub fn share(&self, want: &[(i64, Option<i64>, f64)], ms: i64) -> Vec<f64> {
        let mut draw: Vec<f64> = want
            .iter()
            .map(|(c, tx, w)| {
                self.connector_limit(*c, *tx, ms)
                    .map_or(*w, |l| w.min(l))
                    .max(0.0)
            })
            .collect();
        let total: f64 = draw.iter().sum();
        if let Some(cap) = self.charger_limit(ms) {
            if total > cap && total > 0.0 {
                let k = cap.max(0.0) / total;
                draw.iter_mut().for_each(|d| *d = (*d * k).floor());
            }
        }
        draw
    }

    /// GetCompositeSchedule's answer for a connector over `duration_s` from `now`.
    pub fn composite(
        &self,
        connector: i64,
        tx: Option<i64>,
        now_ms: i64,
        duration_s: i64,
    ) -> Value {
        let mut cuts: Vec<i64> = vec![now_ms];
        for p in self.by_slot.values() {
            for (off, _) in &p.periods {
                // Hostile offsets and durations saturate instead of overflowing.
                let at = p.start_ms.saturating_add(off.saturating_mul(1000));
                if at > now_ms && at < now_ms.saturating_add(duration_s.saturating_mul(1000)) {
                    cuts.push(at);
                }
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        let periods: Vec<Value> = cuts
            .iter()
            .filter_map(|at| {
                let c = self.connector_limit(connector, tx, *at);
                let m = self.charger_limit(*at);
                let limit = match (c, m) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => a.or(b)?,
                };
                Some(json!({"startPeriod": (at - now_ms) / 1000, "limit": limit.floor()}))
            })
            .collect();
        let start = jiff::Timestamp::from_millisecond(now_ms)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        if periods.is_empty() {
            return json!({"status": "Rejected"});
        }
        json!({"status": "Accepted", "connectorId": connector, "scheduleStart": start,
               "chargingSchedule": {"duration": duration_s, "startSchedule": start,
                                    "chargingRateUnit": "W", "chargingSchedulePeriod": periods}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(id: i64, purpose: &str, tx: Option<i64>, unit: &str, periods: Value) -> Value {
        let mut p = json!({"chargingProfileId": id, "stackLevel": 0, "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {"chargingRateUnit": unit, "startSchedule": "2026-11-30T00:00:00Z",
                                 "chargingSchedulePeriod": periods}});
        if let Some(t) = tx {
            p["transactionId"] = json!(t);
        }
        p
    }

    const T0: i64 = 1_795_996_800_000; // 2026-11-30T00:00:00Z

    #[test]
    fn tx_profile_wins_and_the_charger_cap_scales_everyone() {
        let mut ps = Profiles::default();
        let def = profile(
            1,
            "TxDefaultProfile",
            None,
            "W",
            json!([{"startPeriod": 0, "limit": 50000.0}]),
        );
        ps.set(0, Profile::parse(&def, T0).unwrap());
        let tx = profile(
            2,
            "TxProfile",
            Some(7),
            "W",
            json!([{"startPeriod": 0, "limit": 100000.0}, {"startPeriod": 3600, "limit": 20000.0}]),
        );
        ps.set(1, Profile::parse(&tx, T0).unwrap());
        assert_eq!(ps.connector_limit(1, Some(7), T0 + 10), Some(100_000.0));
        assert_eq!(
            ps.connector_limit(1, Some(7), T0 + 3_600_000),
            Some(20_000.0)
        );
        // Another transaction on the connector falls back to the default.
        assert_eq!(ps.connector_limit(1, Some(8), T0), Some(50_000.0));
        assert_eq!(ps.connector_limit(2, None, T0), Some(50_000.0));
        let max = profile(
            3,
            "ChargePointMaxProfile",
            None,
            "A",
            json!([{"startPeriod": 0, "limit": 100.0}]),
        );
        ps.set(0, Profile::parse(&max, T0).unwrap());
        // 100 A x 690 W/A = 69 kW shared by 100 kW + 50 kW wanted.
        let d = ps.share(&[(1, Some(7), 150_000.0), (2, None, 150_000.0)], T0);
        assert!(d.iter().sum::<f64>() <= 69_000.0, "{d:?}");
        assert!(d[0] > d[1]);
        assert!(ps.clear(&json!({"chargingProfilePurpose": "TxProfile"})));
        assert_eq!(ps.connector_limit(1, Some(7), T0), Some(50_000.0));
        assert!(!ps.clear(&json!({"id": 99})));
    }

    #[test]
    fn composite_schedule_lists_the_limits_ahead() {
        let mut ps = Profiles::default();
        let tx = profile(
            2,
            "TxProfile",
            None,
            "W",
            json!([{"startPeriod": 0, "limit": 100000.0}, {"startPeriod": 1800, "limit": 20000.0}]),
        );
        ps.set(1, Profile::parse(&tx, T0).unwrap());
        // A duration near i64::MAX (schema-valid) is answered, not a panic.
        assert_eq!(
            ps.composite(1, None, T0, i64::MAX / 7)["status"],
            "Accepted"
        );
        let c = ps.composite(1, None, T0 + 600_000, 3600);
        assert_eq!(c["status"], "Accepted");
        let periods = c["chargingSchedule"]["chargingSchedulePeriod"]
            .as_array()
            .unwrap();
        assert_eq!(periods.len(), 2);
        assert_eq!(periods[1]["startPeriod"], 1200);
        assert_eq!(periods[1]["limit"], 20000.0);
        assert_eq!(ps.composite(2, None, T0, 60)["status"], "Rejected");
    }

    #[test]
    fn a_profile_missing_its_schedule_is_not_followed() {
        assert!(Profile::parse(&json!({"chargingProfileId": 1}), T0).is_none());
    }
}
