//! Helpers of the randomized fleet test (`chaos.rs`): fallible requests that report
//! instead of asserting, logs of the current process, bounded polling, a stopped depot's
//! store, and `Fleet` (a cloud and depots as processes behind their links).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// Sample times three hours ago: inside the edge's raw retention, so the edge's own
/// table still holds every sample when a test compares it with the cloud.
pub fn recent_t0() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3 * 3_600_000
}

/// Defines a vehicle and its device in the cloud; returns the device password.
pub async fn define_vehicle(cloud: &CloudProc, depot: &str, id: &str) -> String {
    cloud
        .admin_put(
            &format!("/api/v1/admin/depots/{depot}/vehicles/{id}"),
            serde_json::json!({"label": id, "battery_kwh": 350.0}),
        )
        .await;
    let d = cloud
        .admin_post(
            &format!("/api/v1/admin/depots/{depot}/devices"),
            serde_json::json!({"id": id}),
        )
        .await;
    d["password"].as_str().unwrap().to_string()
}

/// Polls `f` every `every` until it holds or `limit` passes; returns how long it took.
pub async fn poll_until<F, Fut>(limit: Duration, every: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

impl CloudProc {
    /// An admin PUT that reports failure (status and body) instead of asserting.
    pub async fn try_admin_put(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let r = self
            .https
            .put(format!("{}{path}", self.base()))
            .bearer_auth(ADMIN)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("PUT {path}: {e}"))?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("PUT {path} {body}: {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("PUT {path}: {e}: {text}"))
    }

    /// Output of the running (or last) process.
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::log).unwrap_or_default()
    }
}

impl EdgeProc {
    /// A PUT to the edge's API that reports failure (status and body) instead of a bool.
    pub async fn try_put(&self, path: &str, body: &serde_json::Value) -> Result<(), String> {
        let r = self
            .request(reqwest::Method::PUT, path)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("PUT {path}: {e}"))?;
        let status = r.status();
        if status.is_success() {
            return Ok(());
        }
        Err(format!(
            "PUT {path} {body}: {status}: {}",
            r.text().await.unwrap_or_default()
        ))
    }

    /// Output of the running (or last) process.
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::log).unwrap_or_default()
    }
}

/// A stopped depot's store as the checks need it (see [`EdgeProc::dump`]).
pub struct EdgeDump {
    /// Per vehicle, its status document's visible fields (merge rule applied).
    pub statuses: std::collections::BTreeMap<String, serde_json::Value>,
    /// Every stored telemetry sample: (vehicle, ts).
    pub samples: std::collections::BTreeSet<(String, i64)>,
    /// `PRAGMA integrity_check` ("ok" when sound).
    pub integrity: String,
    /// Every vehicle id the store holds anywhere (vehicles, statuses, samples).
    pub vehicle_ids: std::collections::BTreeSet<String>,
}

impl EdgeProc {
    /// Reads the stopped node's store: visible status records, samples, integrity.
    pub fn dump(&self) -> Result<EdgeDump, String> {
        use garasi_sync_protocol::actor::{new_actor, Side};
        use garasi_sync_protocol::record::Record;
        type Rows = (
            Vec<(String, Vec<u8>)>,
            Vec<(String, i64)>,
            String,
            Vec<String>,
        );
        let (docs, samples, integrity, ids): Rows = self
            .store()
            .read_blocking(|c| {
                let docs = c
                    .prepare("SELECT vehicle_id, doc FROM fleet_vehicle_status")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                let samples = c
                    .prepare("SELECT vehicle_id, ts_ms FROM telemetry_samples")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                let integrity = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
                let ids = c
                    .prepare("SELECT id FROM fleet_vehicles")?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                Ok((docs, samples, integrity, ids))
            })
            .map_err(|e| e.to_string())?;
        let mut statuses = std::collections::BTreeMap::new();
        for (id, doc) in docs {
            let visible = Record::load(&doc, new_actor(Side::Depot))
                .and_then(|r| r.visible())
                .map_err(|e| format!("status document of {id}: {e}"))?;
            statuses.insert(id, serde_json::to_value(visible).unwrap());
        }
        let mut vehicle_ids: std::collections::BTreeSet<String> = ids.into_iter().collect();
        vehicle_ids.extend(statuses.keys().cloned());
        vehicle_ids.extend(samples.iter().map(|s| s.0.clone()));
        Ok(EdgeDump {
            statuses,
            samples: samples.into_iter().collect(),
            integrity,
            vehicle_ids,
        })
    }
}

impl CloudProc {
    /// Every record of one type at one depot, as the admin API lists it: id -> fields.
    pub async fn records(
        &self,
        depot: &str,
        record_type: &str,
    ) -> Option<std::collections::BTreeMap<String, serde_json::Value>> {
        let list = self
            .admin_get(&format!(
                "/api/v1/admin/depots/{depot}/records/{record_type}"
            ))
            .await?;
        list["records"]
            .as_array()?
            .iter()
            .map(|r| Some((r["record_id"].as_str()?.to_string(), r["fields"].clone())))
            .collect()
    }

    /// `PRAGMA integrity_check` of the (stopped) cloud's SQLite store.
    pub fn integrity_check(&self) -> String {
        rusqlite::Connection::open(self.dir.join("cloud.db"))
            .and_then(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
            .unwrap_or_else(|e| format!("cannot check: {e}"))
    }
}

impl Proc {
    /// The exit status if the process has ended (by itself or killed).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl EdgeProc {
    /// A vehicle's visible status at this depot (None: none, or unknown vehicle).
    pub async fn vehicle_status(&self, id: &str) -> Option<serde_json::Value> {
        self.get(&format!("/api/v1/vehicles/{id}/status")).await
    }

    /// When the cloud link is up with nothing waiting to be sent: the last sync success.
    pub async fn sync_idle(&self) -> Option<serde_json::Value> {
        let s = self.get("/api/v1/sync/status").await?;
        (s["link"] == "online" && s["backlog"]["entries"] == 0).then(|| s["last_success"].clone())
    }
}

impl CloudProc {
    /// The visible fields of one of a depot's records (None: no such record).
    pub async fn record(
        &self,
        depot: &str,
        record_type: &str,
        id: &str,
    ) -> Option<serde_json::Value> {
        let path = format!("/api/v1/admin/depots/{depot}/records/{record_type}/{id}");
        Some(self.admin_get(&path).await?["fields"].clone())
    }
}

/// Compares what a depot stored with what the cloud holds for it: None when every
/// sample is there exactly once and nothing else, else what differs.
pub fn samples_differ(
    stored: &std::collections::BTreeSet<(String, i64)>,
    at_cloud: &[(String, i64)],
) -> Option<String> {
    let set: std::collections::BTreeSet<(String, i64)> = at_cloud.iter().cloned().collect();
    let twice = at_cloud.len() - set.len();
    let missing: Vec<_> = stored.difference(&set).collect();
    let extra = set.difference(stored).count();
    (twice + missing.len() + extra > 0).then(|| {
        format!(
            "{} stored at the depot, {} at the cloud: {twice} twice, {} missing (first {:?}), {extra} the depot does not have",
            stored.len(),
            at_cloud.len(),
            missing.len(),
            missing.first()
        )
    })
}

/// A cloud and depots as processes, each depot behind its own [`Link`], with vehicles
/// and their devices defined in the cloud and arrived at their depots.
pub struct Fleet {
    pub cloud: CloudProc,
    pub edges: Vec<EdgeProc>,
    pub links: Vec<Arc<Link>>,
    /// Depot ids, in the order given to [`Fleet::start`].
    pub depots: Vec<String>,
    /// Per depot: (vehicle, device password).
    pub vehicles: Vec<Vec<(String, String)>>,
}

/// The dispatcher who edits at depot `d` (the `set_by` of its status edits).
pub fn dispatcher_of(d: usize) -> String {
    format!("disp-{d}")
}

impl Fleet {
    /// Starts the cloud and one enrolled depot per (name, vehicles), defines the
    /// vehicles and devices in the cloud and waits (30 s at most) until they arrive.
    pub async fn start(dir: &Path, depots: &[(&str, &[&str])]) -> Fleet {
        let cloud = CloudProc::start(&dir.join("cloud"));
        let mut f = Fleet {
            cloud,
            edges: vec![],
            links: vec![],
            depots: vec![],
            vehicles: vec![],
        };
        for (name, ids) in depots {
            let (id, token) = f.cloud.add_depot(&format!("Depot {name}"));
            let link = Link::new(f.cloud.port).await;
            let edge_dir = dir.join(name.to_lowercase());
            let ca = &f.cloud.ca_pem;
            f.edges.push(EdgeProc::enroll_and_start(
                &edge_dir,
                &link.url(),
                &token,
                ca,
            ));
            let mut mine = vec![];
            for v in *ids {
                mine.push((v.to_string(), define_vehicle(&f.cloud, &id, v).await));
            }
            f.depots.push(id);
            f.links.push(link);
            f.vehicles.push(mine);
        }
        let arrived = poll_until(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                let mut all = true;
                for (e, mine) in f.edges.iter().zip(&f.vehicles) {
                    for (v, pw) in mine {
                        all &= e.get(&format!("/api/v1/vehicles/{v}")).await.is_some()
                            && super::device_accepted(e.mqtt_port, v, pw).await;
                    }
                }
                all
            },
        );
        assert!(
            arrived.await.is_some(),
            "vehicles did not reach their depots in 30 s"
        );
        // Status edits at the depots are made by a signed-in dispatcher per depot.
        for d in 0..f.edges.len() {
            let (cloud, depot) = (&f.cloud, f.depots[d].clone());
            let person = dispatcher_of(d);
            f.edges[d].sign_in(cloud, &depot, &person).await;
        }
        f
    }

    /// kill -9 of the cloud (`which` 0) or of depot `which - 1`, and a restart after
    /// `pause`; returns the killed process's output.
    pub async fn kill9_and_restart(&mut self, which: usize, pause: Duration) -> String {
        let log = if which == 0 {
            self.cloud.kill9();
            self.cloud.log()
        } else {
            self.edges[which - 1].kill9();
            self.edges[which - 1].log()
        };
        tokio::time::sleep(pause).await;
        match which {
            0 => self.cloud.restart(),
            _ => self.edges[which - 1].restart(),
        }
        log
    }

    /// What every depot and the cloud show of every vehicle's status, if they agree on
    /// status, note and set_by and no depot has anything waiting to be sent:
    /// (the cloud's records, each depot's last sync success).
    pub async fn agreed_view(&self) -> Option<(String, Vec<serde_json::Value>)> {
        let (mut view, mut stamps) = (String::new(), vec![]);
        let shown =
            |x: &serde_json::Value| [x["status"].clone(), x["note"].clone(), x["set_by"].clone()];
        for ((edge, depot), mine) in self.edges.iter().zip(&self.depots).zip(&self.vehicles) {
            stamps.push(edge.sync_idle().await?);
            for (v, _) in mine {
                let at_edge = edge.vehicle_status(v).await;
                let at_cloud = self.cloud.record(depot, "vehicle_status", v).await;
                if at_edge.as_ref().map(shown) != at_cloud.as_ref().map(shown) {
                    return None;
                }
                view += &format!("{depot} {v}: {at_cloud:?}\n");
            }
        }
        Some((view, stamps))
    }

    /// Polls until [`Fleet::agreed_view`] holds and stays the same over two more sync
    /// cycles of every depot; returns how long that took (None: not within `limit`).
    pub async fn quiescence(&self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut base: Option<(String, Vec<serde_json::Value>)> = None;
        let mut cycles = vec![0; self.edges.len()];
        while start.elapsed() < limit {
            match (self.agreed_view().await, &mut base) {
                (Some((view, stamps)), Some((seen, last))) if *seen == view => {
                    for (d, stamp) in stamps.into_iter().enumerate() {
                        if last[d] != stamp {
                            (cycles[d], last[d]) = (cycles[d] + 1, stamp);
                        }
                    }
                    if cycles.iter().all(|n| *n >= 2) {
                        return Some(start.elapsed());
                    }
                }
                (now, _) => (base, cycles) = (now, vec![0; self.edges.len()]),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        None
    }

    /// Through the APIs: records and telemetry the cloud shows under a depot that belong
    /// to another, and other depots' vehicles a depot's API shows. Returns violations
    /// and, per depot, the cloud's `vehicle_status` records and telemetry.
    pub async fn isolation(&self) -> (Vec<String>, Vec<FleetDepotData>) {
        let (mut problems, mut data) = (vec![], vec![]);
        for (d, depot) in self.depots.iter().enumerate() {
            let own = |id: &str| self.vehicles[d].iter().any(|v| v.0 == id);
            let records = self.cloud.records(depot, "vehicle_status").await;
            if records.is_none() {
                problems.push(format!("cloud: listing depot {depot}'s records failed"));
            }
            let records = records.unwrap_or_default();
            let samples = self.cloud.telemetry(depot).await;
            let ids = records.keys().chain(samples.iter().map(|s| &s.0));
            for id in ids
                .filter(|id| !own(id))
                .collect::<std::collections::BTreeSet<_>>()
            {
                problems.push(format!(
                    "isolation: the cloud shows {id} under depot {depot}"
                ));
            }
            for (o, other) in self.vehicles.iter().enumerate().filter(|(o, _)| *o != d) {
                for (v, _) in other {
                    let e = &self.edges[d];
                    let seen = e.get(&format!("/api/v1/vehicles/{v}")).await;
                    if seen.is_some() || e.vehicle_status(v).await.is_some() {
                        problems.push(format!("isolation: depot {depot}'s API shows {v}"));
                    }
                    if self
                        .cloud
                        .record(depot, "vehicle_status", v)
                        .await
                        .is_some()
                    {
                        let of = &self.depots[o];
                        problems.push(format!("isolation: {of}'s record {v} under {depot}"));
                    }
                }
            }
            data.push(FleetDepotData { records, samples });
        }
        (problems, data)
    }
}

/// One depot's data as the cloud's admin API shows it.
pub struct FleetDepotData {
    /// `vehicle_status` records: id -> visible fields.
    pub records: std::collections::BTreeMap<String, serde_json::Value>,
    /// Telemetry samples (vehicle, ts) in arrival order.
    pub samples: Vec<(String, i64)>,
}

impl Fleet {
    /// The processes that exited by themselves (not killed by the test): "name (status)".
    pub fn exited(&mut self) -> Vec<String> {
        let edges = self.edges.iter_mut().enumerate();
        let edges = edges.map(|(d, e)| (format!("depot {}", self.depots[d]), &mut e.proc));
        let all = [("the cloud".to_string(), &mut self.cloud.proc)]
            .into_iter()
            .chain(edges);
        all.filter_map(|(name, p)| {
            Some(format!(
                "{name} exited by itself ({})",
                p.as_mut()?.exited()?
            ))
        })
        .collect()
    }

    /// Lines with "panicked" in the output of every current process and in `earlier`
    /// (the output of processes killed before).
    pub fn panics(&self, earlier: &str) -> Vec<String> {
        let mut logs = vec![earlier.to_string(), self.cloud.log()];
        logs.extend(self.edges.iter().map(EdgeProc::log));
        let lines = logs.iter().flat_map(|l| l.lines());
        lines
            .filter(|l| l.contains("panicked"))
            .map(str::to_string)
            .collect()
    }
}

/// The last line of a process's output that logged an error ("" if none).
pub fn last_error(log: &str) -> String {
    let line = log.lines().rev().find(|l| l.contains("ERROR"));
    line.unwrap_or_default().to_string()
}
