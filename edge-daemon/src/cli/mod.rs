//! The `garasi-edge` command line (in the library so fleet tests can build the same
//! program as a test binary). `main` only parses, then hands over:
//! parse config (all errors at once, no side effects) -> bind -> start -> wait for a
//! signal -> drain within the grace period.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Settings, EXIT_CONFIG};
use crate::modules::framework::{CliContext, StoreArgs};
use crate::node::{self, Node};
use crate::store::{self, DataDir, Store};
use anyhow::Context;

mod demo;
mod demo_charging;
mod demo_day;
mod demo_run;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Parser)]
#[command(name = "garasi-edge", version, about = "Garasi depot edge node")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a data directory: a random 256-bit key (DIR/db.key, mode 0600), the encrypted
    /// database and a self-signed HTTPS certificate (DIR/https-cert.pem, its key 0600).
    Init {
        #[arg(long, env = "GARASI_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, env = "GARASI_DB_KEY_FILE")]
        key_file: Option<PathBuf>,
        /// A host name or IP address tablets use for this node, put in the HTTPS
        /// certificate (repeatable; localhost, 127.0.0.1 and ::1 are always in it).
        #[arg(long = "https-host", value_delimiter = ',')]
        https_host: Vec<String>,
        /// Make no HTTPS certificate (e.g. a certificate from your own CA is used).
        #[arg(long)]
        no_https_cert: bool,
    },
    /// Run the node.
    Run {
        #[arg(long, env = "GARASI_DATA_DIR")]
        data_dir: PathBuf,
        #[command(flatten)]
        settings: Settings,
    },
    /// Run a demo depot: init if needed, run the node, and drive simulated buses through the real broker.
    Demo {
        #[arg(long, env = "GARASI_DATA_DIR", default_value = "garasi-demo")]
        data_dir: PathBuf,
        /// Number of simulated buses.
        #[arg(long, default_value_t = 30)]
        buses: usize,
        /// Samples per second per bus.
        #[arg(long, default_value_t = 1.0)]
        rate_hz: f64,
        #[command(flatten)]
        settings: Settings,
    },
    /// Enrol this depot with the cloud (one-time token from the fleet admin); the
    /// credentials are stored in the encrypted database.
    Enroll {
        #[arg(long, env = "GARASI_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, env = "GARASI_DB_KEY_FILE")]
        key_file: Option<PathBuf>,
        /// The cloud's base URL, https://...
        #[arg(long)]
        cloud: String,
        /// One-time enrolment token.
        #[arg(long)]
        token: String,
        /// PEM file of a CA to trust for the cloud (self-hosted clouds).
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Database maintenance.
    Db {
        #[command(subcommand)]
        cmd: DbCmd,
    },
}

#[derive(Subcommand)]
enum DbCmd {
    /// Re-encrypt the database with a new random key (crash-safe; the old key stops working).
    Rekey {
        #[arg(long, env = "GARASI_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, env = "GARASI_DB_KEY_FILE")]
        key_file: Option<PathBuf>,
    },
}

fn init_logging() {
    crate::lograte::set_every_line(
        std::env::var("GARASI_LOG_EVERY_LINE").is_ok_and(|v| v == "1" || v == "true"),
    );
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,rumqttd=warn,rumqttd::server::broker=off,rumqttc=warn",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colours only on a terminal: journald and log files get plain key=value.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
}

pub fn main() -> ExitCode {
    // Modules add their own subcommands (e.g. `dispatch`, `person`); the node's own are
    // the `Cmd` enum.
    let modules = node::all_modules();
    let mut command = Cli::command();
    for m in &modules {
        for c in m.commands() {
            command = command.subcommand(c);
        }
    }
    let matches = command.get_matches();
    init_logging();
    if let Some((name, args)) = matches.subcommand() {
        let owner = modules
            .iter()
            .find(|m| m.commands().iter().any(|c| c.get_name() == name));
        if let Some(m) = owner {
            let open = |s: &StoreArgs| open_migrated(&s.data_dir, s.key_file.as_deref());
            return exit_code(m.run_command(name, args, &CliContext { open: &open }));
        }
    }
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.cmd {
        Cmd::Init {
            data_dir,
            key_file,
            https_host,
            no_https_cert,
        } => cmd_init(
            &data_dir,
            key_file.as_deref(),
            (!no_https_cert).then_some(&https_host[..]),
        ),
        Cmd::Run { data_dir, settings } => return cmd_run(&data_dir, &settings, None),
        Cmd::Demo {
            data_dir,
            buses,
            rate_hz,
            mut settings,
        } => {
            if settings.config.is_none() {
                match demo::demo_config(&data_dir) {
                    Ok(path) => settings.config = Some(path),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            return cmd_run(&data_dir, &settings, Some((buses, rate_hz)));
        }
        Cmd::Enroll {
            data_dir,
            key_file,
            cloud,
            token,
            ca_file,
        } => cmd_enroll(
            &data_dir,
            key_file.as_deref(),
            &cloud,
            &token,
            ca_file.as_deref(),
        ),
        Cmd::Db {
            cmd: DbCmd::Rekey { data_dir, key_file },
        } => DataDir::new(&data_dir, key_file.as_deref())
            .rekey()
            .map(|()| println!("database re-encrypted; the new key is in the key file"))
            .map_err(Into::into),
    };
    exit_code(result)
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `https_hosts`: make a self-signed HTTPS certificate for these names (None: none).
fn cmd_init(
    dir: &Path,
    key_file: Option<&Path>,
    https_hosts: Option<&[String]>,
) -> anyhow::Result<()> {
    let dd = DataDir::new(dir, key_file);
    dd.init()?;
    println!(
        "initialised {} (key in {}; back it up: without it the data cannot be read)",
        dd.db.display(),
        dd.key.display()
    );
    if let Some(hosts) = https_hosts {
        let made = crate::http::tls::make_self_signed(dir, hosts)?;
        println!(
            "HTTPS certificate {} for {} (key {}); serve it with --https-listen. \
             Check on each tablet that the certificate's SHA-256 fingerprint is\n  {}",
            made.cert.display(),
            made.names.join(", "),
            made.key.display(),
            made.fingerprint
        );
        tracing::info!(cert = %made.cert.display(), fingerprint = %made.fingerprint, "HTTPS certificate made");
    }
    Ok(())
}

/// Opens the store and brings every module's schema up to date (for CLI writes).
fn open_migrated(dir: &Path, key_file: Option<&Path>) -> anyhow::Result<Store> {
    let store = Store::open(&DataDir::new(dir, key_file))?;
    node::migrate_all(&store)?;
    Ok(store)
}

fn cmd_enroll(
    dir: &Path,
    key_file: Option<&Path>,
    cloud: &str,
    token: &str,
    ca_file: Option<&Path>,
) -> anyhow::Result<()> {
    let ca_pem = match ca_file {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    let store = open_migrated(dir, key_file)?;
    let rt = tokio::runtime::Runtime::new()?;
    let depot = rt
        .block_on(crate::modules::sync::service::enroll(
            &store, cloud, token, ca_pem,
        ))
        .map_err(anyhow::Error::msg)?;
    println!("enrolled as depot {depot}; the node syncs with the cloud from its next start");
    Ok(())
}

fn cmd_run(data_dir: &Path, settings: &Settings, demo: Option<(usize, f64)>) -> ExitCode {
    let cfg = match settings.resolve(data_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    if demo.is_some() && !cfg.data_dir.join(store::DB_FILE).exists() {
        if let Err(e) = cmd_init(&cfg.data_dir, cfg.key_file.as_deref(), Some(&[])) {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cfg, demo)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: crate::config::Config, demo: Option<(usize, f64)>) -> anyhow::Result<()> {
    let grace = Duration::from_secs(cfg.shutdown_grace_secs);
    let stop = shutdown_signal()?;
    let bound = node::bind(&cfg)?;
    let node = Node::start(cfg, bound).await?;
    let sim_cancel = CancellationToken::new();
    let sim_tasks = TaskTracker::new();
    if let Some((n, rate_hz)) = demo {
        match demo_run::start_demo(&node, n, rate_hz, sim_cancel.clone(), &sim_tasks).await {
            Ok(banner) => println!("{banner}"),
            Err(e) => {
                // Stop what started (simulators, the node) before saying why: an early
                // return would leave the broker's threads running and the process hung.
                sim_cancel.cancel();
                sim_tasks.close();
                let _ = tokio::time::timeout(Duration::from_secs(2), sim_tasks.wait()).await;
                node.stop(grace).await;
                return Err(e.context("the demo could not set itself up"));
            }
        }
    }
    stop.cancelled().await;
    sim_cancel.cancel();
    sim_tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), sim_tasks.wait()).await;
    if node.stop(grace).await {
        tracing::info!("stopped cleanly");
    } else {
        tracing::warn!("grace period ran out; some work may not have been committed");
    }
    Ok(())
}

/// Registers SIGTERM and SIGINT handlers now (before anything starts, so a signal that
/// arrives during start-up is not fatal) and returns a token cancelled on the first one.
fn shutdown_signal() -> anyhow::Result<CancellationToken> {
    let token = CancellationToken::new();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let t = token.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
                _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
            }
            t.cancel();
        });
    }
    #[cfg(not(unix))]
    {
        let t = token.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            t.cancel();
        });
    }
    Ok(token)
}
