//! charging's subcommands: `garasi-edge charging add` registers a charger at a
//! standalone depot (its OCPP password printed once), `charging list` prints them.
//! An enrolled depot gets its chargers' credentials from the cloud's device records.

use clap::{ArgMatches, Command, FromArgMatches, Subcommand};

use super::store;
use crate::modules::framework::{CliContext, StoreArgs};

#[derive(Subcommand)]
enum ChargingCmd {
    /// Register an OCPP 1.6J charger; prints its Basic auth password once.
    Add {
        #[command(flatten)]
        store: StoreArgs,
        /// The charge box id the charger puts at the end of its central system URL.
        #[arg(long)]
        id: String,
        /// Number of connectors (1-16).
        #[arg(long, default_value_t = 1)]
        connectors: i64,
        /// The charger's maximum power, kW (1-1000).
        #[arg(long)]
        max_kw: f64,
    },
    /// Print every charger: id, connectors, max kW, vendor, model, last seen.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub(super) fn commands() -> Vec<Command> {
    vec![ChargingCmd::augment_subcommands(
        Command::new("charging")
            .about("OCPP chargers of this depot")
            .subcommand_required(true)
            .arg_required_else_help(true),
    )]
}

pub(super) fn run(args: &ArgMatches, ctx: &CliContext<'_>) -> anyhow::Result<()> {
    match ChargingCmd::from_arg_matches(args)? {
        ChargingCmd::Add {
            store: at,
            id,
            connectors,
            max_kw,
        } => {
            anyhow::ensure!(max_kw.is_finite(), "--max-kw must be a number of kW");
            let store = (ctx.open)(&at)?;
            let max_w = (max_kw * 1000.0).round() as i64;
            let password = super::service::add_charger(&store, &id, connectors, max_w)?;
            println!(
                "charger {id} added. Central system URL: ws://<this edge>:<HTTP port>/ocpp/{id} \
                 (wss:// on the HTTPS port for security profile 2)\nBasic auth user: {id}"
            );
            match password {
                Some(p) => println!(
                    "Password (AuthorizationKey; shown once, set it in the charger now): {p}"
                ),
                None => {
                    println!("Password: the one its device record already has (from the cloud)")
                }
            }
        }
        ChargingCmd::List { store: at } => {
            for c in (ctx.open)(&at)?.read_blocking(store::chargers)? {
                println!(
                    "{}\t{}\t{:.1}\t{}\t{}\t{}",
                    c.id,
                    c.connectors,
                    c.max_power_w as f64 / 1000.0,
                    c.vendor.unwrap_or_default(),
                    c.model.unwrap_or_default(),
                    c.seen_ms.map(|m| m.to_string()).unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
