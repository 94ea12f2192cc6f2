//! Timetable imports in flight (each runs in the background and is followed by id) and
//! the parsed feeds publishing uses (a feed is parsed once per process, then reused by
//! every publish run).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use super::{PlanError, Prepared};
use crate::gtfs;
use crate::store::CloudStore;

/// Finished imports kept for inspection; the oldest go beyond this.
const KEPT_IMPORTS: usize = 100;

/// A running or finished import, for `GET /api/v1/admin/imports/{id}`.
pub struct ImportJob {
    pub name: String,
    pub progress: Arc<gtfs::Progress>,
    pub outcome: Option<ImportOutcome>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ImportOutcome {
    Imported {
        timetable: i64,
        report: serde_json::Value,
    },
    Refused {
        reason: String,
        report: serde_json::Value,
    },
    Failed {
        reason: String,
    },
}

/// Imports in flight and the parsed feeds publishing uses.
#[derive(Default)]
pub struct Timetables {
    pub imports: Mutex<BTreeMap<u64, ImportJob>>,
    next_import: std::sync::atomic::AtomicU64,
    feeds: Mutex<HashMap<i64, Arc<Prepared>>>,
}

impl Timetables {
    pub fn start_import(&self, name: &str) -> (u64, Arc<gtfs::Progress>) {
        let id = self
            .next_import
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let progress = Arc::new(gtfs::Progress::default());
        let mut m = self.imports.lock();
        while m.len() >= KEPT_IMPORTS {
            let Some(first) = m.keys().next().copied() else {
                break;
            };
            m.remove(&first);
        }
        m.insert(
            id,
            ImportJob {
                name: name.to_string(),
                progress: progress.clone(),
                outcome: None,
            },
        );
        (id, progress)
    }

    pub fn finish_import(&self, id: u64, outcome: ImportOutcome) {
        if let Some(j) = self.imports.lock().get_mut(&id) {
            j.outcome = Some(outcome);
        }
    }

    /// Starts importing `zip` in the background (parsed in the blocking pool, stored when
    /// usable); returns the import's id and the task, which ends when the outcome is in.
    pub fn run_import<S: CloudStore + 'static>(
        self: Arc<Self>,
        store: Arc<S>,
        name: String,
        zip: impl AsRef<[u8]> + Send + 'static,
    ) -> (u64, tokio::task::JoinHandle<()>) {
        let (id, progress) = self.start_import(&name);
        let task = tokio::spawn(async move {
            let bytes = zip.as_ref().to_vec();
            let p = progress.clone();
            let parsed = tokio::task::spawn_blocking(move || {
                let r = gtfs::import_zip_with(&bytes, Some(&p));
                (r, bytes)
            })
            .await;
            let outcome = match parsed {
                Err(e) => ImportOutcome::Failed {
                    reason: format!("the import crashed: {e}"),
                },
                Ok((Err(gtfs::GtfsError::Unusable { reason, report }), _)) => {
                    ImportOutcome::Refused {
                        reason,
                        report: serde_json::to_value(&*report).unwrap_or_default(),
                    }
                }
                Ok((Err(e), _)) => ImportOutcome::Refused {
                    reason: e.to_string(),
                    report: serde_json::json!({}),
                },
                Ok((Ok((_, report)), bytes)) => {
                    let report = serde_json::to_value(&report).unwrap_or_default();
                    match store
                        .save_timetable(&name, &bytes, &report.to_string())
                        .await
                    {
                        Ok(timetable) => {
                            tracing::info!(timetable, name = %name, "timetable imported");
                            ImportOutcome::Imported { timetable, report }
                        }
                        Err(e) => ImportOutcome::Failed {
                            reason: format!("storing the timetable failed: {e}"),
                        },
                    }
                }
            };
            self.finish_import(id, outcome);
        });
        (id, task)
    }

    /// An import's state as the API shows it (None: no such import kept): name, phase,
    /// progress and, once finished, its outcome.
    pub fn import_status(&self, id: u64) -> Option<serde_json::Value> {
        let m = self.imports.lock();
        let job = m.get(&id)?;
        let (phase, done, total) = job.progress.snapshot();
        let percent = if total > 0 {
            (done as f64 * 100.0 / total as f64).min(100.0).round()
        } else {
            0.0
        };
        let mut v = serde_json::json!({
            "import": id,
            "name": job.name,
            "phase": phase,
            "bytes_parsed": done,
            "bytes_total": total,
            "percent": percent,
        });
        match &job.outcome {
            None => v["state"] = "running".into(),
            Some(o) => {
                if let (Some(obj), Ok(serde_json::Value::Object(extra))) =
                    (v.as_object_mut(), serde_json::to_value(o))
                {
                    obj.extend(extra);
                }
            }
        }
        Some(v)
    }

    /// The parsed timetable `id` (parsed from the stored zip on first use).
    pub async fn feed<S: CloudStore>(
        &self,
        store: &S,
        id: i64,
    ) -> Result<Arc<Prepared>, PlanError> {
        if let Some(f) = self.feeds.lock().get(&id).cloned() {
            return Ok(f);
        }
        let zip = store
            .timetable_zip(id)
            .await?
            .ok_or(PlanError::NoTimetable(id))?;
        let prepared = tokio::task::spawn_blocking(move || {
            gtfs::import_zip(&zip).map(|(feed, _)| Prepared::new(feed))
        })
        .await
        .map_err(|e| PlanError::Broken(id, e.to_string()))?
        .map_err(|e| PlanError::Broken(id, e.to_string()))?;
        let prepared = Arc::new(prepared);
        self.feeds.lock().insert(id, prepared.clone());
        Ok(prepared)
    }
}
