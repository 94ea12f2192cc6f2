//! `garasi-cloud serve`: checks the configuration (every problem reported at once), binds,
//! then serves the API over TLS with the materialiser and the publisher beside it until
//! SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{open, AnyStore};
use crate::api::{router, AppState};
use crate::store::CloudStore;
use crate::tls::{serve_tls, tls_acceptor};

/// The `serve` command's options.
pub(super) struct ServeArgs {
    pub database: String,
    pub listen: String,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub admin_token_file: PathBuf,
}

pub(super) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs {
        database,
        listen,
        tls_cert,
        tls_key,
        admin_token_file,
    } = args;
    // Check everything first and report every problem at once.
    let mut errors = Vec::new();
    let admin = match std::fs::read_to_string(&admin_token_file) {
        Ok(t) if t.trim().len() >= 16 => Some(Arc::<str>::from(t.trim())),
        Ok(_) => {
            errors.push(format!(
                "the admin token in {} is shorter than 16 characters: use a long random token",
                admin_token_file.display()
            ));
            None
        }
        Err(e) => {
            errors.push(format!(
                "--admin-token-file {}: {e}",
                admin_token_file.display()
            ));
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
    match open(&database).await? {
        AnyStore::Sqlite(s) => serve(s, admin, listener, acceptor, cancel).await,
        AnyStore::Postgres(s) => serve(s, admin, listener, acceptor, cancel).await,
    }
}

/// Serves until `cancel`, with the materialiser running beside the API.
async fn serve<S: CloudStore + 'static>(
    store: S,
    admin: Arc<str>,
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let state = AppState::new(Arc::new(store), admin)?;
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
    tracing::info!(listen = %addr, "garasi-cloud ready");
    serve_tls(listener, acceptor, router(state), cancel).await?;
    tracker.close();
    tracker.wait().await;
    Ok(())
}
