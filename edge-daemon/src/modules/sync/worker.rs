//! The sync worker: push then pull on an interval, back off while the cloud is away,
//! run the outbox quota, retry dead letters, keep the link state and gauges.

use crate::modules::framework::{AllStarted, Services};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;

use super::api::LinkState;
use super::dead_letters;
use super::enrol::{cloud_client, load_enrolment, Enrolment};
use super::error::SyncError;
use super::metrics::SyncMetrics;
use super::outbox::{backlog_estimate, enforce_quota};
use super::pull::{pull_once, PULL_LIMIT};
use super::push::push_once;
use super::service::Appliers;
use crate::store::Store;

/// How often the outbox quota is checked (it scans the stream outbox).
pub(super) const QUOTA_CHECK_EVERY: Duration = Duration::from_secs(30);

/// Everything the worker needs.
pub(super) struct Worker {
    pub(super) store: Store,
    pub(super) appliers: Arc<Appliers>,
    pub(super) link: Arc<Mutex<LinkState>>,
    pub(super) metrics: Arc<SyncMetrics>,
    pub(super) interval: Duration,
    pub(super) quota_bytes: i64,
    /// Where [`AllStarted`] appears once every module has registered its applier.
    pub(super) services: Services,
}

impl Worker {
    /// Push then pull, forever, with exponential backoff and jitter while the cloud is
    /// away. The quota policy runs on its own schedule, online or not.
    pub(super) async fn run(self, cancel: tokio_util::sync::CancellationToken) {
        let mut failures: u32 = 0;
        let mut last_quota_check: Option<std::time::Instant> = None;
        // One client (and connection pool) per trusted CA: rebuilding it every cycle would
        // cost a TLS handshake per push and pull.
        let mut client: Option<(Option<String>, reqwest::Client)> = None;
        // Nothing is pulled before every module has started: a change pulled while its
        // module's applier is not registered yet would be set aside as an unknown type,
        // and every later change of that record would wait for it.
        while self.services.get::<AllStarted>().is_none() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        // Set-aside pulled changes are tried again once per start, now that every
        // module's applier is registered (a record's kept changes are also tried again
        // whenever a newer change of it is pulled); if the store failed, after the
        // first good cycle.
        let mut retried_dead_letters = self.retry_dead_letters().await;
        loop {
            if last_quota_check.is_none_or(|t| t.elapsed() >= QUOTA_CHECK_EVERY) {
                last_quota_check = Some(std::time::Instant::now());
                self.check_quota().await;
            }
            let enrolment = self.store.read(load_enrolment).await.ok().flatten();
            let wait = match enrolment {
                None => Duration::from_secs(5),
                Some(e) => {
                    if client.as_ref().is_none_or(|(ca, _)| *ca != e.ca_pem) {
                        client = cloud_client(e.ca_pem.as_deref())
                            .ok()
                            .map(|c| (e.ca_pem.clone(), c));
                    }
                    // Raced against stop: a cloud that accepts and never answers must not
                    // hold the node past its grace period. Dropping a cycle is safe: a pull
                    // applies in one blocking transaction that finishes on its own, and a
                    // push records its batch before sending it.
                    let result = match client.as_ref() {
                        Some((_, http)) => tokio::select! {
                            r = self.cycle(http, &e, &cancel) => r,
                            _ = cancel.cancelled() => return,
                        },
                        None => Err(SyncError::CaCertificate),
                    };
                    if result.is_ok() && !retried_dead_letters {
                        retried_dead_letters = self.retry_dead_letters().await;
                    }
                    let mut l = self.link.lock();
                    match result {
                        Ok(()) => {
                            if !l.online {
                                tracing::info!(depot = %e.depot_id, "cloud link up");
                            }
                            failures = 0;
                            l.online = true;
                            l.last_success_ms = Some(crate::util::now_ms());
                            l.last_error = None;
                            self.interval
                        }
                        Err(err) => {
                            if l.online || failures == 0 {
                                tracing::warn!(error = %err, "cloud link down; retrying with backoff");
                            }
                            failures = failures.saturating_add(1);
                            l.online = false;
                            l.drain_rate = 0.0;
                            l.last_error = Some(err.to_string());
                            let base = Duration::from_millis(500)
                                .saturating_mul(1 << failures.min(7))
                                .min(Duration::from_secs(60));
                            base + Duration::from_millis(
                                rand::rng().random_range(0..=base.as_millis() as u64 / 2),
                            )
                        }
                    }
                }
            };
            self.update_backlog_gauges().await;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Drains the outbox (batch after batch), then pulls until caught up.
    async fn cycle(
        &self,
        http: &reqwest::Client,
        e: &Enrolment,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<(), SyncError> {
        loop {
            let t0 = std::time::Instant::now();
            let p = push_once(&self.store, http, e).await.inspect_err(|_| {
                self.metrics
                    .failures_total
                    .with_label_values(&["push"])
                    .inc();
            })?;
            let n = p.changes + p.stream_rows;
            self.metrics
                .pushed_total
                .with_label_values(&["change"])
                .inc_by(p.changes);
            self.metrics
                .pushed_total
                .with_label_values(&["stream_row"])
                .inc_by(p.stream_rows);
            {
                let mut l = self.link.lock();
                l.pushed_total += n;
                if n > 0 {
                    // Smoothed entries/s of the drain, for the ETA on the board.
                    let rate = n as f64 / t0.elapsed().as_secs_f64().max(1e-3);
                    l.drain_rate = if l.drain_rate == 0.0 {
                        rate
                    } else {
                        0.7 * l.drain_rate + 0.3 * rate
                    };
                    l.online = true;
                }
            }
            if !p.full || cancel.is_cancelled() {
                break;
            }
        }
        loop {
            let p = pull_once(&self.store, http, e, &self.appliers)
                .await
                .inspect_err(|_| {
                    self.metrics
                        .failures_total
                        .with_label_values(&["pull"])
                        .inc();
                })?;
            self.metrics.pulled_total.inc_by(p.applied);
            self.metrics.unknown_record_changes_total.inc_by(p.unknown);
            self.metrics
                .dead_letters_total
                .with_label_values(&["refused"])
                .inc_by(p.dead);
            self.metrics
                .dead_letters_total
                .with_label_values(&["unknown_type"])
                .inc_by(p.unknown);
            {
                let mut l = self.link.lock();
                l.pulled_total += p.applied;
                l.unknown_record_changes += p.unknown;
                l.dead_letters += p.dead + p.unknown;
            }
            if p.entries < PULL_LIMIT as u64 || cancel.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// Whether the retry ran (false: the store failed; try again later).
    async fn retry_dead_letters(&self) -> bool {
        let appliers = self.appliers.clone();
        let r = self
            .store
            .write(move |c| {
                let tx = c.transaction()?;
                let n = dead_letters::retry(&tx, &|t| appliers.get(t))?;
                tx.commit()?;
                Ok(n)
            })
            .await;
        match r {
            Ok(0) => true,
            Ok(n) => {
                tracing::info!(applied = n, "set-aside pulled changes applied on retry");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "retrying set-aside pulled changes failed");
                false
            }
        }
    }

    async fn check_quota(&self) {
        let quota = self.quota_bytes;
        match self.store.write(move |c| enforce_quota(c, quota)).await {
            Ok(q) if q.thinned + q.dropped > 0 => {
                tracing::warn!(
                    thinned = q.thinned,
                    dropped = q.dropped,
                    quota_bytes = quota,
                    "sync outbox over quota: unsent stream rows removed (operational changes kept)"
                );
                let m = &self.metrics.stream_rows_dropped_total;
                m.with_label_values(&["thinned"]).inc_by(q.thinned);
                m.with_label_values(&["dropped"]).inc_by(q.dropped);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sync outbox quota check failed"),
        }
    }

    async fn update_backlog_gauges(&self) {
        if let Ok(b) = self.store.read(backlog_estimate).await {
            let g = &self.metrics.backlog_entries;
            g.with_label_values(&["change"]).set(b.changes);
            g.with_label_values(&["stream_row"]).set(b.stream_rows);
        }
    }
}
