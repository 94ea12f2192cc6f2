//! dispatch's subcommands: `garasi-edge dispatch import-blocks` (blocks for a depot
//! without a cloud).

use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgMatches, Command, FromArgMatches, Subcommand};

use super::service::{import_local_blocks, LocalBlock};
use crate::modules::auth::service::valid_id;
use crate::modules::framework::{CliContext, StoreArgs};

#[derive(Subcommand)]
enum DispatchCmd {
    /// Import blocks from a JSON file (an array of blocks, see README "Dispatch").
    ImportBlocks {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        file: PathBuf,
    },
}

pub(super) fn commands() -> Vec<Command> {
    vec![DispatchCmd::augment_subcommands(
        Command::new("dispatch")
            .about("Dispatch data for a depot without a cloud")
            .subcommand_required(true)
            .arg_required_else_help(true),
    )]
}

pub(super) fn run(args: &ArgMatches, ctx: &CliContext<'_>) -> anyhow::Result<()> {
    let DispatchCmd::ImportBlocks { store, file } = DispatchCmd::from_arg_matches(args)?;
    let store = (ctx.open)(&store)?;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let blocks: Vec<LocalBlock> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON array of blocks", file.display()))?;
    for b in &blocks {
        anyhow::ensure!(
            valid_id(&b.id) && b.service_date.parse::<jiff::civil::Date>().is_ok(),
            "block {:?}: id must be 1-64 letters, digits, '-' or '_' and service_date YYYY-MM-DD",
            b.id
        );
    }
    let n = import_local_blocks(&store, &blocks)?;
    println!("{n} blocks imported");
    Ok(())
}
