//! auth's subcommands: `garasi-edge device add|rotate|disable|enable` (credentials of a
//! vehicle's unit or a scanner) and `garasi-edge person add` (people of a depot without
//! a cloud).

use clap::{ArgMatches, Command, FromArgMatches, Subcommand};

use super::device_admin;
use super::devices::add_device;
use super::people_store::{upsert_local, NewPerson};
use crate::modules::framework::{CliContext, StoreArgs};

#[derive(Subcommand)]
enum DeviceCmd {
    /// Add a device; prints its generated MQTT password once.
    Add {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        id: String,
        #[arg(long, default_value = "vehicle")]
        kind: String,
    },
    /// Give a device a new password (printed once); the old one stops working at the
    /// device's next connect.
    Rotate {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        id: String,
    },
    /// Refuse every connection with this device's credential.
    Disable {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        id: String,
    },
    /// Allow the device's credential again.
    Enable {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        id: String,
    },
}

/// Said after a local change: on an enrolled depot the cloud's device record is master.
const CLOUD_NOTE: &str = "(on a depot enrolled with a cloud, change devices in the cloud: \
its device record replaces this one at its next change)";

#[derive(Subcommand)]
enum PersonCmd {
    /// Add or update a person. Secrets come from the environment, never the command line.
    Add {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// Comma-separated: dispatcher, driver, mechanic, depot_manager.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Badge number (barcode or RFID UID).
        #[arg(long)]
        badge: Option<String>,
        /// Password (dispatchers, managers), at least 10 characters.
        #[arg(
            long = "password-from-env",
            env = "GARASI_PERSON_PASSWORD",
            hide_env_values = true
        )]
        password: Option<String>,
        /// PIN (drivers), 4-8 digits.
        #[arg(
            long = "pin-from-env",
            env = "GARASI_PERSON_PIN",
            hide_env_values = true
        )]
        pin: Option<String>,
    },
}

pub(super) fn commands() -> Vec<Command> {
    vec![
        DeviceCmd::augment_subcommands(
            Command::new("device")
                .about("Manage device credentials")
                .subcommand_required(true)
            .arg_required_else_help(true),
        ),
        PersonCmd::augment_subcommands(
            Command::new("person")
                .about("Manage people at a depot that is not enrolled with a cloud (an enrolled depot gets its people from the cloud)")
                .subcommand_required(true)
            .arg_required_else_help(true),
        ),
    ]
}

pub(super) fn run(name: &str, args: &ArgMatches, ctx: &CliContext<'_>) -> anyhow::Result<()> {
    if name == "device" {
        match DeviceCmd::from_arg_matches(args)? {
            DeviceCmd::Add { store, id, kind } => {
                let store = (ctx.open)(&store)?;
                let password = add_device(&store, &id, &kind)?;
                println!("device {id} added. MQTT username: {id}\nMQTT password (shown once, store it in the device now): {password}");
            }
            DeviceCmd::Rotate { store, id } => {
                let password = device_admin::rotate(&(ctx.open)(&store)?, &id)?;
                println!("device {id}: new MQTT password (shown once, store it in the device now): {password}\n{CLOUD_NOTE}");
            }
            DeviceCmd::Disable { store, id } => {
                device_admin::set_disabled(&(ctx.open)(&store)?, &id, true)?;
                println!("device {id} disabled: its next connection is refused\n{CLOUD_NOTE}");
            }
            DeviceCmd::Enable { store, id } => {
                device_admin::set_disabled(&(ctx.open)(&store)?, &id, false)?;
                println!("device {id} enabled\n{CLOUD_NOTE}");
            }
        }
        return Ok(());
    }
    let PersonCmd::Add {
        store,
        id,
        name,
        roles,
        badge,
        password,
        pin,
    } = PersonCmd::from_arg_matches(args)?;
    let store = (ctx.open)(&store)?;
    upsert_local(
        &store,
        &NewPerson {
            id: &id,
            name: &name,
            roles: &roles,
            password: password.as_deref(),
            pin: pin.as_deref(),
            badge: badge.as_deref(),
        },
    )
    .map_err(anyhow::Error::msg)?;
    println!("person {id} saved");
    Ok(())
}
