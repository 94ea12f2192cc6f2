//! The `garasi-cloud` command line: `serve` runs the sync API over TLS on SQLite (default)
//! or PostgreSQL; `depot add` creates a depot and prints its one-time enrolment token;
//! `admin-token new` writes a new admin token file (0600). It lives in the library so
//! fleet tests can build the same program as a test binary. `serve.rs` runs the server,
//! `gtfs.rs` the timetable commands, `limits.rs` the limit settings.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::CloudStore;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

/// println! that ignores a closed stdout (`| head`) instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

// After the macro: `outln!` is visible in these by textual scope.
mod gtfs;
mod limits;
mod serve;
mod streams;

use limits::{GtfsLimitArgs, ServeLimitArgs};

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
        /// File holding the admin bearer token (never passed on the command line; made
        /// 0600 if others can read it; read again on SIGHUP).
        #[arg(long, env = "GARASI_CLOUD_ADMIN_TOKEN_FILE")]
        admin_token_file: PathBuf,
        #[command(flatten)]
        limits: ServeLimitArgs,
        #[command(flatten)]
        gtfs: GtfsLimitArgs,
    },
    /// The admin token.
    AdminToken {
        #[command(subcommand)]
        cmd: AdminTokenCmd,
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
    /// Stream rows (telemetry, charger meter samples) kept at the cloud.
    Streams {
        #[command(subcommand)]
        cmd: StreamsCmd,
    },
}

#[derive(Subcommand)]
enum StreamsCmd {
    /// Drop every month of stream rows that ends on or before a date (UTC): whole
    /// PostgreSQL partitions, for retention.
    DropBefore {
        #[arg(long, env = "GARASI_CLOUD_DATABASE")]
        database: String,
        /// YYYY-MM-DD: months ending on or before its start are dropped.
        #[arg(long)]
        before: jiff::civil::Date,
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
        #[command(flatten)]
        limits: GtfsLimitArgs,
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
        #[command(flatten)]
        limits: GtfsLimitArgs,
    },
}

#[derive(Subcommand)]
enum AdminTokenCmd {
    /// Write a new random admin token to FILE (0600, replacing it atomically). A running
    /// cloud reads it on SIGHUP; `POST /api/v1/admin/admin-token` does both at once.
    New {
        #[arg(long, env = "GARASI_CLOUD_ADMIN_TOKEN_FILE")]
        file: PathBuf,
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

pub(crate) enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// The PostgreSQL pools' sizes: the store's defaults, or GARASI_CLOUD_PG_WRITE_CONNECTIONS
/// (sync and the materialiser) and GARASI_CLOUD_PG_READ_CONNECTIONS (the read model).
fn pool_sizes() -> anyhow::Result<crate::store::postgres::PoolSizes> {
    let mut sizes = crate::store::postgres::PoolSizes::default();
    for (var, slot) in [
        ("GARASI_CLOUD_PG_WRITE_CONNECTIONS", &mut sizes.write),
        ("GARASI_CLOUD_PG_READ_CONNECTIONS", &mut sizes.read),
    ] {
        if let Some(v) = std::env::var_os(var) {
            let v = v.to_string_lossy();
            *slot = match v.trim().parse::<usize>() {
                Ok(n) if (1..=512).contains(&n) => n,
                _ => bail!("{var}={v:?}: give a number of connections from 1 to 512 (within the server's max_connections)"),
            };
        }
    }
    Ok(sizes)
}

pub(crate) async fn open(database: &str) -> anyhow::Result<AnyStore> {
    let store = if let Some(path) = database.strip_prefix("sqlite://") {
        AnyStore::Sqlite(
            SqliteStore::open(std::path::Path::new(path))
                .with_context(|| format!("opening {path}"))?,
        )
    } else if database.starts_with("postgres") || database.contains("host=") {
        AnyStore::Postgres(
            PgStore::connect_with(database, None, pool_sizes()?)
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
    // Twice the cores in workers: while every core is busy, most workers are inside
    // long polls (a push body's TLS records, a COPY's rows); a spare worker parked in the
    // event loop is woken by the kernel when an admin's request arrives and answers it,
    // where with one worker per core the request waited for a busy one to come back.
    let workers = std::thread::available_parallelism().map_or(4, |n| 2 * n.get());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
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
                    limits,
                },
        } => gtfs::check(&file, date, min_layover_s, limits.limits()),
        Cmd::Gtfs {
            cmd:
                GtfsCmd::Import {
                    database,
                    file,
                    name,
                    limits,
                },
        } => {
            let name = name.unwrap_or_else(|| {
                file.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "timetable".into())
            });
            let id = match open(&database).await? {
                AnyStore::Sqlite(s) => gtfs::import(&s, &file, &name, limits.limits()).await?,
                AnyStore::Postgres(s) => gtfs::import(&s, &file, &name, limits.limits()).await?,
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
            let hours = (d.expires_ms - crate::store::now_ms()) / 3_600_000;
            println!(
                "depot {} created. One-time enrolment token (works for {hours} h): {}",
                d.id, d.enrolment_token
            );
            Ok(())
        }
        Cmd::Streams {
            cmd: StreamsCmd::DropBefore { database, before },
        } => streams::drop_before(&database, before).await,
        Cmd::AdminToken {
            cmd: AdminTokenCmd::New { file },
        } => {
            let token = crate::store::random_token();
            crate::admin_token::write_private(&file, &token)
                .with_context(|| format!("writing {}", file.display()))?;
            outln!(
                "a new admin token is in {} (0600); a running cloud takes it on SIGHUP",
                file.display()
            );
            Ok(())
        }
        Cmd::Serve {
            database,
            listen,
            tls_cert,
            tls_key,
            admin_token_file,
            limits,
            gtfs,
        } => {
            serve::run(serve::ServeArgs {
                database,
                listen,
                tls_cert,
                tls_key,
                admin_token_file,
                limits,
                gtfs: gtfs.limits(),
            })
            .await
        }
    }
}
