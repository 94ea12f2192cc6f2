//! Timetable imports in flight (each runs in the background and is followed by id) and
//! the parsed feeds publishing uses (a feed is parsed once per process, then reused by
//! every publish run). One feed is parsed at a time (imports and stored feeds alike)
//! within the configured [`gtfs::Limits`], and only a few imports may wait: together
//! they bound what feeds can make the cloud allocate.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use super::{PlanError, Prepared};
use crate::gtfs;
use crate::store::CloudStore;

/// Finished imports kept for inspection; the oldest go beyond this.
const KEPT_IMPORTS: usize = 100;
/// Imports waiting or running at once; more are refused until one finishes.
pub const MAX_QUEUED_IMPORTS: usize = 4;

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
        /// The limit the feed went past (`gtfs::LimitKind::as_str`), if that is why.
        #[serde(skip_serializing_if = "Option::is_none")]
        limit: Option<&'static str>,
        report: serde_json::Value,
    },
    Failed {
        reason: String,
    },
}

/// The zip of an import: an upload kept in a temporary file (removed when the import
/// ends), or bytes.
pub enum ImportZip {
    Temp(tempfile::TempPath),
    Bytes(Vec<u8>),
}

impl ImportZip {
    fn reader(&self) -> std::io::Result<Box<dyn gtfs::ReadSeek + '_>> {
        Ok(match self {
            ImportZip::Temp(p) => Box::new(std::io::BufReader::new(std::fs::File::open(p)?)),
            ImportZip::Bytes(b) => Box::new(std::io::Cursor::new(&b[..])),
        })
    }

    fn bytes(&self) -> std::io::Result<std::borrow::Cow<'_, [u8]>> {
        Ok(match self {
            ImportZip::Temp(p) => std::fs::read(p)?.into(),
            ImportZip::Bytes(b) => b[..].into(),
        })
    }
}

/// A place in the import queue (see [`Timetables::reserve`]); freed when dropped.
pub struct QueueSlot(Arc<Timetables>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Imports in flight and the parsed feeds publishing uses.
pub struct Timetables {
    pub imports: Mutex<BTreeMap<u64, ImportJob>>,
    next_import: AtomicU64,
    feeds: Mutex<HashMap<i64, Arc<Prepared>>>,
    limits: gtfs::Limits,
    /// One parse at a time.
    parsing: tokio::sync::Semaphore,
    queued: AtomicUsize,
    metrics: Option<Arc<crate::metrics::CloudMetrics>>,
}

impl Default for Timetables {
    fn default() -> Self {
        Timetables::new(gtfs::Limits::default(), None)
    }
}

impl Timetables {
    pub fn new(limits: gtfs::Limits, metrics: Option<Arc<crate::metrics::CloudMetrics>>) -> Self {
        Timetables {
            imports: Mutex::default(),
            next_import: AtomicU64::new(0),
            feeds: Mutex::default(),
            limits,
            parsing: tokio::sync::Semaphore::new(1),
            queued: AtomicUsize::new(0),
            metrics,
        }
    }

    pub fn limits(&self) -> &gtfs::Limits {
        &self.limits
    }

    /// A place in the import queue, or None when [`MAX_QUEUED_IMPORTS`] are waiting or
    /// running (take it before reading an upload, so a refused one is not read).
    pub fn reserve(self: &Arc<Self>) -> Option<QueueSlot> {
        let before = self.queued.fetch_add(1, Ordering::AcqRel);
        let slot = QueueSlot(self.clone());
        (before < MAX_QUEUED_IMPORTS).then_some(slot)
    }

    pub fn start_import(&self, name: &str) -> (u64, Arc<gtfs::Progress>) {
        let id = self.next_import.fetch_add(1, Ordering::Relaxed) + 1;
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

    /// Starts importing `zip` in the background (after the imports before it, parsed in
    /// the blocking pool, stored when usable); returns the import's id and the task,
    /// which ends when the outcome is in. `slot` is held until then.
    pub fn run_import<S: CloudStore + 'static>(
        self: Arc<Self>,
        store: Arc<S>,
        name: String,
        zip: ImportZip,
        slot: QueueSlot,
    ) -> (u64, tokio::task::JoinHandle<()>) {
        let (id, progress) = self.start_import(&name);
        progress.set_phase("queued");
        let task = tokio::spawn(async move {
            let outcome = self.import(&*store, &name, zip, progress).await;
            if let ImportOutcome::Refused {
                limit: Some(kind), ..
            } = &outcome
            {
                tracing::warn!(import = id, limit = kind, "timetable refused: past a limit");
            }
            self.finish_import(id, outcome);
            drop(slot);
        });
        (id, task)
    }

    async fn import<S: CloudStore>(
        &self,
        store: &S,
        name: &str,
        zip: ImportZip,
        progress: Arc<gtfs::Progress>,
    ) -> ImportOutcome {
        let Ok(_one_at_a_time) = self.parsing.acquire().await else {
            return ImportOutcome::Failed {
                reason: "the cloud is shutting down".into(),
            };
        };
        let limits = self.limits;
        let parsed = tokio::task::spawn_blocking(move || {
            let r = match zip.reader() {
                Ok(reader) => gtfs::import_reader(reader, &limits, Some(&progress)),
                Err(e) => Err(gtfs::GtfsError::NotZip(e.to_string())),
            };
            // The feed itself is not kept: publishing parses the stored zip when needed.
            (r.map(|(_, report)| report), zip)
        })
        .await;
        match parsed {
            Err(e) => ImportOutcome::Failed {
                reason: format!("the import crashed: {e}"),
            },
            Ok((Err(gtfs::GtfsError::Unusable { reason, report }), _)) => ImportOutcome::Refused {
                reason,
                limit: None,
                report: serde_json::to_value(&*report).unwrap_or_default(),
            },
            Ok((Err(gtfs::GtfsError::Limit(hit)), _)) => {
                if let Some(m) = &self.metrics {
                    m.refused(hit.kind.metric_reason());
                }
                ImportOutcome::Refused {
                    reason: hit.to_string(),
                    limit: Some(hit.kind.as_str()),
                    report: serde_json::json!({}),
                }
            }
            Ok((Err(e), _)) => ImportOutcome::Refused {
                reason: e.to_string(),
                limit: None,
                report: serde_json::json!({}),
            },
            Ok((Ok(report), zip)) => {
                let report = serde_json::to_value(&report).unwrap_or_default();
                let stored = match zip.bytes() {
                    Ok(bytes) => store
                        .save_timetable(name, &bytes, &report.to_string())
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match stored {
                    Ok(timetable) => {
                        tracing::info!(timetable, name = %name, "timetable imported");
                        ImportOutcome::Imported { timetable, report }
                    }
                    Err(e) => ImportOutcome::Failed {
                        reason: format!("storing the timetable failed: {e}"),
                    },
                }
            }
        }
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
        let _one_at_a_time = self
            .parsing
            .acquire()
            .await
            .map_err(|e| PlanError::Broken(id, e.to_string()))?;
        let limits = self.limits;
        let prepared = tokio::task::spawn_blocking(move || {
            gtfs::import_reader(Box::new(std::io::Cursor::new(&zip[..])), &limits, None)
                .map(|(feed, _)| Prepared::new(feed))
        })
        .await
        .map_err(|e| PlanError::Broken(id, e.to_string()))?
        .map_err(|e| PlanError::Broken(id, e.to_string()))?;
        let prepared = Arc::new(prepared);
        self.feeds.lock().insert(id, prepared.clone());
        Ok(prepared)
    }
}
