//! The live view: latest state, connection status and active faults per vehicle, kept in
//! memory (loaded from `telemetry_latest` at start) so the board and API never scan samples.

use std::collections::HashMap;

use parking_lot::RwLock;
use rusqlite::Connection;
use serde::Serialize;

use super::ingest::Fault;
use crate::bus::TelemetryUpdate;
use crate::modules::fleet::service::{ActiveFault, LiveView};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Stale,
    Offline,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Stale => "stale",
            Status::Offline => "offline",
            Status::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct VehicleLive {
    pub last: Option<TelemetryUpdate>,
    /// Last connection announcement: birth (true) or last will / clean offline (false).
    pub announced_online: Option<bool>,
    pub status_ms: Option<i64>,
    pub firmware: Option<String>,
    pub faults: Vec<ActiveFault>,
}

impl VehicleLive {
    /// online / stale / offline from the age of the last data and the last announcement.
    pub fn status(&self, now_ms: i64, stale_after_ms: i64, offline_after_ms: i64) -> Status {
        let data_ms = self.last.as_ref().map(|u| u.received_ms);
        if let (Some(false), Some(at)) = (self.announced_online, self.status_ms) {
            if data_ms.is_none_or(|d| at >= d) {
                return Status::Offline;
            }
        }
        let seen = match (data_ms, self.announced_online, self.status_ms) {
            (Some(d), Some(true), Some(s)) => Some(d.max(s)),
            (Some(d), _, _) => Some(d),
            (None, Some(true), Some(s)) => Some(s),
            _ => None,
        };
        match seen {
            None => Status::Unknown,
            Some(t) if now_ms - t <= stale_after_ms => Status::Online,
            Some(t) if now_ms - t <= offline_after_ms => Status::Stale,
            Some(_) => Status::Offline,
        }
    }

    pub fn last_seen_ms(&self) -> Option<i64> {
        let d = self.last.as_ref().map(|u| u.received_ms);
        let s = if self.announced_online == Some(true) {
            self.status_ms
        } else {
            None
        };
        d.max(s)
    }
}

pub struct Live {
    map: RwLock<HashMap<String, VehicleLive>>,
    pub stale_after_ms: i64,
    pub offline_after_ms: i64,
}

impl Live {
    pub fn new(stale_after_ms: i64, offline_after_ms: i64) -> Self {
        Live {
            map: RwLock::new(HashMap::new()),
            stale_after_ms,
            offline_after_ms,
        }
    }

    /// Loads the persisted latest state and active faults.
    pub fn load(&self, conn: &Connection) -> rusqlite::Result<usize> {
        let mut map = HashMap::new();
        let mut st = conn.prepare(
            "SELECT vehicle_id, ts_ms, received_ms, lat, lon, heading, speed_kmh, soc_pct, odometer_km, battery_temp_c,
                    power_w, charging, online, status_ms, firmware FROM telemetry_latest",
        )?;
        let rows = st.query_map([], |r| {
            let id: String = r.get(0)?;
            let ts: Option<i64> = r.get(1)?;
            let last = match ts {
                None => None,
                Some(ts_ms) => Some(TelemetryUpdate {
                    vehicle_id: id.clone(),
                    ts_ms,
                    received_ms: r.get::<_, Option<i64>>(2)?.unwrap_or(ts_ms),
                    lat: r.get(3)?,
                    lon: r.get(4)?,
                    heading: r.get(5)?,
                    speed_kmh: r.get(6)?,
                    soc_pct: r.get(7)?,
                    odometer_km: r.get(8)?,
                    battery_temp_c: r.get(9)?,
                    power_w: r.get(10)?,
                    charging: r.get(11)?,
                    extra: None,
                }),
            };
            Ok((
                id,
                VehicleLive {
                    last,
                    announced_online: r.get(12)?,
                    status_ms: r.get(13)?,
                    firmware: r.get(14)?,
                    faults: vec![],
                },
            ))
        })?;
        for row in rows {
            let (id, v) = row?;
            map.insert(id, v);
        }
        let mut st = conn.prepare(
            "SELECT vehicle_id, spn, fmi, severity, description FROM telemetry_faults WHERE active = 1 ORDER BY vehicle_id, spn, fmi",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                ActiveFault {
                    spn: r.get(1)?,
                    fmi: r.get(2)?,
                    severity: r.get(3)?,
                    description: r.get(4)?,
                },
            ))
        })?;
        for row in rows {
            let (id, f) = row?;
            map.entry(id).or_default().faults.push(f);
        }
        let n = map.len();
        *self.map.write() = map;
        Ok(n)
    }

    pub fn apply_sample(&self, u: &TelemetryUpdate) {
        let mut m = self.map.write();
        let v = m.entry(u.vehicle_id.clone()).or_default();
        if v.last.as_ref().is_none_or(|l| u.ts_ms >= l.ts_ms) {
            v.last = Some(u.clone());
        }
    }

    pub fn apply_status(&self, id: &str, online: bool, ts_ms: i64, firmware: Option<String>) {
        let mut m = self.map.write();
        let v = m.entry(id.to_string()).or_default();
        v.announced_online = Some(online);
        v.status_ms = Some(ts_ms);
        if firmware.is_some() {
            v.firmware = firmware;
        }
    }

    /// Replaces the active faults; returns (active, critical) counts.
    pub fn apply_faults(&self, id: &str, faults: &[Fault]) -> (usize, usize) {
        let active: Vec<ActiveFault> = faults
            .iter()
            .filter(|f| f.active)
            .map(|f| ActiveFault {
                spn: f.spn,
                fmi: f.fmi,
                severity: f.severity.clone(),
                description: f.description.clone(),
            })
            .collect();
        let critical = active
            .iter()
            .filter(|f| f.severity.as_deref() == Some("critical"))
            .count();
        let n = active.len();
        self.map.write().entry(id.to_string()).or_default().faults = active;
        (n, critical)
    }

    pub fn get(&self, id: &str) -> Option<VehicleLive> {
        self.map.read().get(id).cloned()
    }

    pub fn status_of(&self, v: &VehicleLive, now_ms: i64) -> Status {
        v.status(now_ms, self.stale_after_ms, self.offline_after_ms)
    }

    /// JSON view used by the API and the board.
    pub fn view(&self, id: &str, now_ms: i64) -> LiveView {
        let v = self.get(id).unwrap_or_default();
        let status = self.status_of(&v, now_ms);
        LiveView {
            status: status.as_str(),
            last_seen: v.last_seen_ms().map(crate::util::rfc3339),
            last_seen_ms: v.last_seen_ms(),
            sample: v.last,
            firmware: v.firmware,
            active_faults: v.faults,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_data(received_ms: i64) -> VehicleLive {
        VehicleLive {
            last: Some(TelemetryUpdate {
                vehicle_id: "b".into(),
                ts_ms: received_ms,
                received_ms,
                lat: None,
                lon: None,
                heading: None,
                speed_kmh: None,
                soc_pct: None,
                odometer_km: None,
                battery_temp_c: None,
                power_w: None,
                charging: None,
                extra: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn status_thresholds_and_last_will() {
        let now = 1_000_000;
        assert_eq!(
            VehicleLive::default().status(now, 30_000, 120_000),
            Status::Unknown
        );
        assert_eq!(
            with_data(now - 10_000).status(now, 30_000, 120_000),
            Status::Online
        );
        assert_eq!(
            with_data(now - 60_000).status(now, 30_000, 120_000),
            Status::Stale
        );
        assert_eq!(
            with_data(now - 200_000).status(now, 30_000, 120_000),
            Status::Offline
        );
        let mut died = with_data(now - 5_000);
        died.announced_online = Some(false);
        died.status_ms = Some(now - 1_000);
        assert_eq!(
            died.status(now, 30_000, 120_000),
            Status::Offline,
            "last will beats fresh data"
        );
        died.last = with_data(now).last;
        assert_eq!(
            died.status(now, 30_000, 120_000),
            Status::Online,
            "data after the will means it is back"
        );
    }
}
