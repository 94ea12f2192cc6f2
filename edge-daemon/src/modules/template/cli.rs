//! template's subcommands: `garasi-edge template list` prints the items (a module's
//! command line lives in its folder and is added to `garasi-edge` by the framework).

use clap::{ArgMatches, Command, FromArgMatches, Subcommand};

use super::store;
use crate::modules::framework::{CliContext, StoreArgs};

#[derive(Subcommand)]
enum TemplateCmd {
    /// Print every item, one per line: id, label, who set it.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub(super) fn commands() -> Vec<Command> {
    vec![TemplateCmd::augment_subcommands(
        Command::new("template")
            .about("The template module's items")
            .subcommand_required(true)
            .arg_required_else_help(true),
    )]
}

pub(super) fn run(args: &ArgMatches, ctx: &CliContext<'_>) -> anyhow::Result<()> {
    let TemplateCmd::List { store: at } = TemplateCmd::from_arg_matches(args)?;
    let items = (ctx.open)(&at)?.read_blocking(store::list)?;
    for i in items {
        println!("{}\t{}\t{}", i.id, i.label, i.set_by);
    }
    Ok(())
}
