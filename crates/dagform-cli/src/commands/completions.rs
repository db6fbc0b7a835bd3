//! `dagform completions SHELL`: a completion script for the shell, on stdout.

use crate::exit;
use anyhow::Result;
use clap::Args;
use clap_complete::Shell;

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Writes the script for `cli`, the whole command line definition.
pub fn run(args: CompletionsArgs, mut cli: clap::Command) -> Result<u8> {
    let name = cli.get_name().to_owned();
    clap_complete::generate(args.shell, &mut cli, name, &mut std::io::stdout());
    Ok(exit::OK)
}
