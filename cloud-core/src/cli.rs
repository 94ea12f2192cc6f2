//! The `garasi-cloud` command line: `serve` runs the sync API over TLS on SQLite (default)
//! or PostgreSQL; `depot add` creates a depot and prints its one-time enrolment token.
//! It lives in the library so fleet tests can build the same program as a test binary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::http::{router, serve_tls, tls_acceptor, AppState};
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::CloudStore;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// println! that ignores a closed stdout (`| head`) instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

#[derive(Parser)]
#[command(name = "garasi-cloud", version, about = "Garasi fleet cloud")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the sync API over TLS.
    Serve {
        /// sqlite://PATH (default store) or postgres://... / a libpq connection string.
        #[arg(long, env = "GARASI_CLOUD_DATABASE")]
        database: String,
        #[arg(long, env = "GARASI_CLOUD_LISTEN", default_value = "127.0.0.1:8443")]
        listen: String,
        #[arg(long, env = "GARASI_CLOUD_TLS_CERT")]
        tls_cert: PathBuf,
        #[arg(long, env = "GARASI_CLOUD_TLS_KEY")]
        tls_key: PathBuf,
        /// File holding the admin bearer token (never passed on the command line).
        #[arg(long, env = "GARASI_CLOUD_ADMIN_TOKEN_FILE")]
        admin_token_file: PathBuf,
    },
    /// Timetables.
    Gtfs {
        #[command(subcommand)]
        cmd: GtfsCmd,
    },
    /// Manage depots.
    Depot {
        #[command(subcommand)]
        cmd: DepotCmd,
    },
}

#[derive(Subcommand)]
enum GtfsCmd {
    /// Validate a GTFS zip: the report (file, line, field, what is wrong), what would be
    /// imported, and the blocks of one service day (built where the feed has none).
    Check {
        #[arg(long)]
        file: PathBuf,
        /// Service day to list trips and blocks for (YYYY-MM-DD).
        #[arg(long)]
        date: Option<jiff::civil::Date>,
        /// Minimum layover at a terminal when building blocks, in seconds.
        #[arg(long, default_value_t = 300)]
        min_layover_s: u32,
    },
    /// Import a GTFS zip into the cloud's store (progress on stderr); prints its id for
    /// a depot plan. The API equivalent is POST /api/v1/admin/timetables.
    Import {
        #[arg(long, env = "GARASI_CLOUD_DATABASE")]
        database: String,
        #[arg(long)]
        file: PathBuf,
        /// Name shown in listings [default: the file name].
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum DepotCmd {
    /// Create a depot and print its one-time enrolment token.
    Add {
        #[arg(long, env = "GARASI_CLOUD_DATABASE")]
        database: String,
        #[arg(long)]
        name: String,
    },
}

enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

async fn open(database: &str) -> anyhow::Result<AnyStore> {
    let store = if let Some(path) = database.strip_prefix("sqlite://") {
        AnyStore::Sqlite(
            SqliteStore::open(std::path::Path::new(path))
                .with_context(|| format!("opening {path}"))?,
        )
    } else if database.starts_with("postgres") || database.contains("host=") {
        AnyStore::Postgres(
            PgStore::connect(database, None)
                .await
                .context("connecting to PostgreSQL")?,
        )
    } else {
        bail!("--database must be sqlite://PATH or a PostgreSQL URL/connection string");
    };
    match &store {
        AnyStore::Sqlite(s) => s.migrate().await?,
        AnyStore::Postgres(s) => s.migrate().await?,
    }
    Ok(store)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Gtfs {
            cmd:
                GtfsCmd::Check {
                    file,
                    date,
                    min_layover_s,
                },
        } => gtfs_check(&file, date, min_layover_s),
        Cmd::Gtfs {
            cmd:
                GtfsCmd::Import {
                    database,
                    file,
                    name,
                },
        } => {
            let name = name.unwrap_or_else(|| {
                file.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "timetable".into())
            });
            let id = match open(&database).await? {
                AnyStore::Sqlite(s) => gtfs_import(&s, &file, &name).await?,
                AnyStore::Postgres(s) => gtfs_import(&s, &file, &name).await?,
            };
            outln!("timetable {id} imported ({name})");
            Ok(())
        }
        Cmd::Depot {
            cmd: DepotCmd::Add { database, name },
        } => {
            let d = match open(&database).await? {
                AnyStore::Sqlite(s) => s.create_depot(&name).await?,
                AnyStore::Postgres(s) => s.create_depot(&name).await?,
            };
            println!(
                "depot {} created. One-time enrolment token: {}",
                d.id, d.enrolment_token
            );
            Ok(())
        }
        Cmd::Serve {
            database,
            listen,
            tls_cert,
            tls_key,
            admin_token_file,
        } => {
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
                errors.push(
                    "--database must be sqlite://PATH or a PostgreSQL URL/connection string".into(),
                );
            }
            let (Some(admin), Some(acceptor), true) = (admin, acceptor, errors.is_empty()) else {
                bail!("cannot start:\n  - {}", errors.join("\n  - "));
            };
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| {
                    format!("cannot listen on {listen}: is it taken? change --listen")
                })?;
            let cancel = CancellationToken::new();
            let c = cancel.clone();
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
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
    tracker.spawn(crate::planning::publisher(
        state.clone(),
        std::time::Duration::from_secs(600),
        cancel.clone(),
    ));
    tracing::info!(listen = %addr, "garasi-cloud ready");
    serve_tls(listener, acceptor, router(state), cancel).await?;
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Imports a GTFS zip with a progress line on stderr; refuses an unusable feed with the
/// report.
async fn gtfs_import<S: CloudStore>(
    store: &S,
    file: &std::path::Path,
    name: &str,
) -> anyhow::Result<i64> {
    use crate::gtfs;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let progress = std::sync::Arc::new(gtfs::Progress::default());
    let p = progress.clone();
    let job = tokio::task::spawn_blocking(move || {
        let r = gtfs::import_zip_with(&bytes, Some(&p));
        (r, bytes)
    });
    tokio::pin!(job);
    let (result, bytes) = loop {
        tokio::select! {
            r = &mut job => break r?,
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                let (phase, done, total) = progress.snapshot();
                eprintln!("importing: {phase} ({}%)", (done * 100).checked_div(total).unwrap_or(0));
            }
        }
    };
    match result {
        Err(gtfs::GtfsError::Unusable { reason, report }) => {
            for i in &report.issues {
                outln!("{i}");
            }
            bail!("{}: {reason}", file.display())
        }
        Err(e) => bail!("{}: {e}", file.display()),
        Ok((_, report)) => {
            for i in &report.issues {
                outln!("{i}");
            }
            let json = serde_json::to_string(&report)?;
            Ok(store.save_timetable(name, &bytes, &json).await?)
        }
    }
}

fn gtfs_check(
    file: &std::path::Path,
    date: Option<jiff::civil::Date>,
    min_layover_s: u32,
) -> anyhow::Result<()> {
    use crate::gtfs::{self, blocks};
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let print = |r: &gtfs::Report| {
        for i in &r.issues {
            outln!("{i}");
        }
        if r.summary.values().sum::<u64>() as usize > r.issues.len() {
            outln!("totals by kind:");
            for (k, n) in &r.summary {
                outln!("  {n:>7}  {k}");
            }
        }
    };
    match gtfs::import_zip(&bytes) {
        Err(gtfs::GtfsError::Unusable { reason, report }) => {
            print(&report);
            bail!("{}: {reason}", file.display())
        }
        Err(e) => bail!("{}: {e}", file.display()),
        Ok((feed, report)) => {
            print(&report);
            let counts: Vec<String> = report
                .imported
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            outln!("importable: {}", counts.join(" "));
            if let Some(d) = date {
                let trips = feed.trips_on(d);
                let bl = blocks::blocks_for(&feed, d, blocks::BlockOptions { min_layover_s });
                outln!(
                    "{d}: {} trips, {} blocks ({} built)",
                    trips.len(),
                    bl.len(),
                    bl.iter().filter(|b| b.built).count()
                );
                for b in bl {
                    outln!(
                        "  {:<24} {}-{} {} trips",
                        b.id,
                        gtfs::format_time(b.start_s),
                        gtfs::format_time(b.end_s),
                        b.trip_ids.len()
                    );
                }
            }
            Ok(())
        }
    }
}
