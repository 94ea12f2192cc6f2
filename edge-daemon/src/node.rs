//! Assembles a running node: bind every listener first (so a taken port fails fast with a
//! clear message), open the store, start modules in dependency order, start the broker's
//! internal listeners and the device gate, serve HTTP; and drain it all in order on stop.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{BrokerError, BrokerHandle};
use crate::bus::Bus;
use crate::config::Config;
use crate::front::mqtt::Gate;
use crate::front::tls;
use crate::http::{self, Readiness};
use crate::metrics::Metrics;
use crate::modules;
use crate::modules::auth::service::DeviceAuth;
use crate::modules::framework::{self, Module, ModuleError, Runner, Services, Shared};
use crate::store::{DataDir, Store, StoreCallError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot listen on {addr} for {what}: {source}. Is another program using it? Choose another address with {flag}")]
    Bind {
        what: &'static str,
        flag: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS listener: {0}")]
    Tls(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Module(#[from] Box<ModuleError>),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("the auth module is disabled, but the MQTT gate needs it to check device credentials: enable auth")]
    NoAuth,
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("a start-up task failed: {0}")]
    Task(String),
}

/// Every module of this build, by name (the list is `modules::all`).
pub fn all_modules() -> Vec<Box<dyn Module>> {
    modules::all()
}

/// Brings every module's schema up to date without starting anything: for CLI writes,
/// and for tests and benchmarks that prepare a data directory before a node starts (a
/// starting node migrates each module itself, just before starting it).
pub fn migrate_all(store: &Store) -> Result<(), StoreCallError> {
    for m in all_modules() {
        store
            .write_blocking(|c| Ok(crate::store::migrate::run(c, m.name(), m.migrations())))?
            .map_err(StoreError::from)?;
    }
    Ok(())
}

/// Listeners bound before anything else starts.
pub struct Bound {
    pub http: TcpListener,
    pub mqtt: TcpListener,
    pub mqtt5: TcpListener,
    pub mqtts: Option<(TcpListener, TlsAcceptor)>,
    pub https: Option<(TcpListener, TlsAcceptor)>,
}

fn bind_one(
    addr: SocketAddr,
    what: &'static str,
    flag: &'static str,
) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr).map_err(|source| NodeError::Bind {
        what,
        flag,
        addr,
        source,
    })
}

pub fn bind(cfg: &Config) -> Result<Bound, NodeError> {
    let http = bind_one(cfg.http_listen, "HTTP", "--http-listen")?;
    let mqtt = bind_one(cfg.mqtt_listen, "MQTT 3.1.1", "--mqtt-listen")?;
    let mqtt5 = bind_one(cfg.mqtt5_listen, "MQTT 5", "--mqtt5-listen")?;
    let mqtts = match &cfg.tls {
        None => None,
        Some(t) => {
            let acceptor = tls::tls_acceptor(&t.cert, &t.key).map_err(NodeError::Tls)?;
            Some((
                bind_one(t.listen, "MQTT over TLS", "--mqtts-listen")?,
                acceptor,
            ))
        }
    };
    let https = match &cfg.http.https {
        None => None,
        // The same loading code as MQTT over TLS (often the same files).
        Some(t) => {
            let acceptor = tls::tls_acceptor(&t.cert, &t.key)
                .map_err(|e| NodeError::Tls(format!("HTTPS: {e}")))?;
            Some((bind_one(t.listen, "HTTPS", "--https-listen")?, acceptor))
        }
    };
    Ok(Bound {
        http,
        mqtt,
        mqtt5,
        mqtts,
        https,
    })
}

/// A running node.
pub struct Node {
    pub http_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    pub mqtt5_addr: SocketAddr,
    pub mqtts_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    pub store: Store,
    pub services: Services,
    shutdown: CancellationToken,
    root: CancellationToken,
    runner: Runner,
    front: TaskTracker,
    ready: Readiness,
}

impl Node {
    pub async fn start(cfg: Config, bound: Bound) -> Result<Node, NodeError> {
        Self::start_with(cfg, bound, all_modules()).await
    }

    /// Starts a node with these modules (tests add the template module this way).
    pub async fn start_with(
        cfg: Config,
        bound: Bound,
        modules: Vec<Box<dyn Module>>,
    ) -> Result<Node, NodeError> {
        let t0 = std::time::Instant::now();
        let cfg = Arc::new(cfg);
        let local = |l: &TcpListener, a: SocketAddr| l.local_addr().unwrap_or(a);
        let http_addr = local(&bound.http, cfg.http_listen);
        let mqtt_addr = local(&bound.mqtt, cfg.mqtt_listen);
        let mqtt5_addr = local(&bound.mqtt5, cfg.mqtt5_listen);
        let mqtts_addr = bound.mqtts.as_ref().and_then(|(l, _)| l.local_addr().ok());
        let https_addr = bound.https.as_ref().and_then(|(l, _)| l.local_addr().ok());

        let dd = DataDir::new(&cfg.data_dir, cfg.key_file.as_deref());
        let store = tokio::task::spawn_blocking(move || Store::open(&dd))
            .await
            .map_err(|e| NodeError::Task(e.to_string()))??;
        let metrics = Arc::new(Metrics::new().map_err(|e| NodeError::Metrics(e.to_string()))?);
        let broker = BrokerHandle::new(&cfg.broker)?;
        let shutdown = CancellationToken::new();
        let root = CancellationToken::new();
        let shared = Shared {
            config: cfg.clone(),
            store: store.clone(),
            bus: Bus::new(4096),
            services: Services::default(),
            metrics: metrics.clone(),
            broker: Some(broker.clone()),
            shutdown: shutdown.clone(),
        };
        let ordered = framework::order(modules, &cfg.disabled_modules).map_err(Box::new)?;
        let runner = Runner::start(ordered, &shared, &root).map_err(Box::new)?;
        {
            let (b, m) = (broker.clone(), metrics.clone());
            tokio::task::spawn_blocking(move || b.start(m))
                .await
                .map_err(|e| NodeError::Task(e.to_string()))??;
        }
        let auth = shared
            .services
            .get::<DeviceAuth>()
            .ok_or(NodeError::NoAuth)?;
        let front = TaskTracker::new();
        let gate_caps =
            crate::front::admit::Caps::from_config(&cfg.broker, cfg.http.limits.fd_reserve);
        // HTTP and the gate share the process's descriptors: HTTP leaves the gate what its
        // cap needs (three per device), so neither can starve the other.
        let mut http_limits = cfg.http.limits;
        http_limits.fd_reserve += crate::front::admit::FDS_PER_DEVICE * gate_caps.total;
        let gate = Arc::new(Gate {
            auth,
            broker,
            metrics: metrics.clone(),
            max_packet_bytes: cfg.broker.max_packet_bytes,
            admission: crate::front::admit::Admission::new(gate_caps, &metrics.registry)
                .map_err(|e| NodeError::Metrics(e.to_string()))?,
            shutdown: shutdown.clone(),
            tracker: front.clone(),
            sessions: Default::default(),
        });
        let mut listeners = vec![(bound.mqtt, None), (bound.mqtt5, None)];
        if let Some((l, acc)) = bound.mqtts {
            listeners.push((l, Some(acc)));
        }
        for (l, tls) in listeners {
            let g = gate.clone();
            front.spawn(async move {
                if let Err(e) = g.serve(l, tls).await {
                    tracing::error!(error = %e, "MQTT listener failed");
                }
            });
        }
        let ready = Readiness::default();
        let openapi: Arc<str> = http::merged_openapi(&runner.openapi).into();
        let app = http::router(
            runner.routes.clone(),
            openapi,
            metrics.clone(),
            ready.clone(),
        )
        .layer(axum::middleware::from_fn_with_state(
            http::Hosts(cfg.http_hosts.clone().into()),
            http::guard_check,
        ));
        let http_metrics = http::limits::HttpMetrics::register(&metrics.registry)
            .map_err(|e| NodeError::Metrics(e.to_string()))?;
        // Streams are busy connections, never evicted: at most half the connection cap,
        // so the board's streams cannot take every place a request needs.
        let streams = http::limits::Streams::new(
            cfg.http
                .max_streams
                .min(http_limits.effective_max() / 2)
                .max(1),
            cfg.http.max_streams_per_client,
            http_metrics.clone(),
        );
        let app = http::protect(app, streams, shared.services.get::<http::SessionCheck>());
        {
            let s = shutdown.clone();
            let mut listeners = vec![(bound.http, None)];
            if let Some((l, acc)) = bound.https {
                listeners.push((l, Some(acc)));
            }
            let limits = http_limits;
            front.spawn(async move {
                if let Err(e) = http::serve(listeners, app, s, limits, http_metrics).await {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            });
        }
        ready.set(true);
        tracing::info!(
            http = %http_addr, mqtt = %mqtt_addr, mqtt5 = %mqtt5_addr, mqtts = ?mqtts_addr,
            https = ?https_addr, http_max_connections = http_limits.effective_max(),
            startup_ms = t0.elapsed().as_millis() as u64, "garasi-edge ready"
        );
        Ok(Node {
            http_addr,
            mqtt_addr,
            mqtt5_addr,
            mqtts_addr,
            https_addr,
            store,
            services: shared.services,
            shutdown,
            root,
            runner,
            front,
            ready,
        })
    }

    /// Stops intake (device connections, HTTP), then stops modules in reverse order so
    /// everything accepted is committed. Returns false if the grace period ran out.
    pub async fn stop(self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        self.ready.set(false);
        tracing::info!(
            grace_secs = grace.as_secs(),
            "draining: closing device connections and HTTP"
        );
        self.shutdown.cancel();
        self.front.close();
        let front_ok = tokio::time::timeout_at(deadline, self.front.wait())
            .await
            .is_ok();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let modules_ok = self.runner.stop(left).await;
        self.root.cancel();
        front_ok && modules_ok
    }
}
