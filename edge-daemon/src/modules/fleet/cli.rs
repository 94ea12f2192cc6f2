//! fleet's subcommands: `garasi-edge vehicle add` (the registry of a depot without a
//! cloud, and the demo).

use clap::{ArgMatches, Command, FromArgMatches, Subcommand};

use super::service::{upsert_vehicle, Vehicle};
use crate::modules::framework::{CliContext, StoreArgs};

#[derive(Subcommand)]
enum VehicleCmd {
    /// Add or update a vehicle.
    Add {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        id: String,
        #[arg(long)]
        label: Option<String>,
        #[arg(long)]
        plate: Option<String>,
        #[arg(long)]
        battery_kwh: f64,
        /// Energy use in kWh per km (dispatch's default when not given).
        #[arg(long)]
        kwh_per_km: Option<f64>,
        /// Vehicle type a block may require, e.g. 12m.
        #[arg(long)]
        vehicle_type: Option<String>,
    },
}

pub(super) fn commands() -> Vec<Command> {
    vec![VehicleCmd::augment_subcommands(
        Command::new("vehicle")
            .about("Manage the vehicle registry")
            .subcommand_required(true)
            .arg_required_else_help(true),
    )]
}

pub(super) fn run(args: &ArgMatches, ctx: &CliContext<'_>) -> anyhow::Result<()> {
    let VehicleCmd::Add {
        store,
        id,
        label,
        plate,
        battery_kwh,
        kwh_per_km,
        vehicle_type,
    } = VehicleCmd::from_arg_matches(args)?;
    let store = (ctx.open)(&store)?;
    let v = Vehicle {
        label: label.unwrap_or_else(|| id.clone()),
        id,
        plate,
        battery_kwh,
        kwh_per_km,
        vehicle_type,
    };
    upsert_vehicle(&store, &v)?;
    println!("vehicle {} saved", v.id);
    Ok(())
}
