//! `garasi-cloud serve`: checks the configuration (every problem reported at once), binds,
//! then serves the API over TLS with the materialiser and the publisher beside it until
//! SIGTERM or Ctrl-C, within the connection, request and timetable limits; SIGHUP reads
//! the admin token file again.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{open, AnyStore, ServeLimitArgs};
use crate::admin_token::AdminToken;
use crate::api::{router, AppState};
use crate::store::CloudStore;
use crate::tls::tls_acceptor;

/// The `serve` command's options.
pub(super) struct ServeArgs {
    pub database: String,
    pub listen: String,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub admin_token_file: PathBuf,
    pub limits: ServeLimitArgs,
    pub gtfs: crate::gtfs::Limits,
}

/// Everything `serve` runs with once checked.
struct Checked {
    admin: AdminToken,
    acceptor: tokio_rustls::TlsAcceptor,
    limits: ServeLimitArgs,
    gtfs: crate::gtfs::Limits,
}

pub(super) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs {
        database,
        listen,
        tls_cert,
        tls_key,
        admin_token_file,
        limits,
        gtfs,
    } = args;
    // Check everything first and report every problem at once.
    let mut errors = limits.problems();
    let admin = match AdminToken::from_file(&admin_token_file) {
        Ok(t) => Some(t),
        Err(e @ crate::admin_token::AdminTokenError::TooShort { .. }) => {
            errors.push(e.to_string());
            None
        }
        Err(e) => {
            errors.push(format!("--admin-token-file {e}"));
            None
        }
    };
    let acceptor = tls_acceptor(&tls_cert, &tls_key)
        .map_err(|e| errors.push(format!("TLS: {e}")))
        .ok();
    if !(database.starts_with("sqlite://")
        || database.starts_with("postgres")
        || database.contains("host="))
    {
        errors
            .push("--database must be sqlite://PATH or a PostgreSQL URL/connection string".into());
    }
    let (Some(admin), Some(acceptor), true) = (admin, acceptor, errors.is_empty()) else {
        bail!("cannot start:\n  - {}", errors.join("\n  - "));
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}: is it taken? change --listen"))?;
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        c.cancel();
    });
    let checked = Checked {
        admin,
        acceptor,
        limits,
        gtfs,
    };
    match open(&database).await? {
        AnyStore::Sqlite(s) => serve(s, checked, listener, cancel).await,
        AnyStore::Postgres(s) => serve(s, checked, listener, cancel).await,
    }
}

/// Reads the admin token file again on every SIGHUP (a file that cannot be used leaves
/// the token in force, and says why).
fn reload_on_sighup(token: Arc<AdminToken>, cancel: CancellationToken) -> anyhow::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = hup.recv() => if r.is_none() { return },
            }
            match token.reload() {
                Ok(()) => tracing::warn!("SIGHUP: admin token read again from its file"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: the admin token file cannot be used; the token in force is kept")
                }
            }
        }
    });
    Ok(())
}

/// Serves until `cancel`, with the materialiser running beside the API.
async fn serve<S: CloudStore + 'static>(
    store: S,
    checked: Checked,
    listener: tokio::net::TcpListener,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let Checked {
        admin,
        acceptor,
        limits,
        gtfs,
    } = checked;
    let api_limits = limits.api();
    let upload_dir = api_limits
        .upload_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    crate::api::upload_sweep::sweep(&upload_dir, crate::api::upload_sweep::STALE_AFTER);
    let state = AppState::with_limits(Arc::new(store), admin, api_limits, gtfs)?;
    reload_on_sighup(state.admin_token.clone(), cancel.clone())?;
    let tracker = TaskTracker::new();
    tracker.spawn(state.materialiser.clone().run(cancel.clone()));
    // Every 10 minutes: cheap when nothing changed (no change is written), and the window
    // moves on within 10 minutes of midnight.
    tracker.spawn(crate::timetable::publisher(
        state.store.clone(),
        state.materialiser.clone(),
        state.timetables.clone(),
        std::time::Duration::from_secs(600),
        cancel.clone(),
    ));
    let conn = limits.conn();
    tracing::info!(
        listen = %addr,
        max_connections = conn.effective_max(),
        max_per_client = conn.max_per_client,
        "garasi-cloud ready"
    );
    let metrics = Some(state.metrics.clone());
    crate::net::serve(
        listener,
        Some(acceptor),
        router(state),
        cancel,
        conn,
        metrics,
    )
    .await?;
    tracker.close();
    tracker.wait().await;
    Ok(())
}
