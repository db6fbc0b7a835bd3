//! `dagform`: plan, provision and destroy AWS application platforms described in one
//! `dagform.toml`.

mod commands;
mod context;
mod progress;
mod render;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes, as documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    /// `plan --detailed-exitcode` found changes.
    pub const CHANGES: u8 = 2;
    /// Interrupted (Ctrl-C): steps in flight finished and were recorded, nothing new started.
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Parser)]
#[command(
    name = "dagform",
    version,
    about = "Provision whole application platforms on AWS from one dagform.toml"
)]
struct Cli {
    /// More logs (-v: info, -vv: debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// The configuration file.
    #[arg(short = 'f', long = "file", default_value = "dagform.toml")]
    pub file: PathBuf,
    /// The state file [default: state/<stack>.json].
    #[arg(long)]
    pub state: Option<PathBuf>,
}

/// Options of the commands that walk the graph.
#[derive(Args, Clone, Debug)]
pub struct Walk {
    /// How many AWS operations may run at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
}

#[derive(Subcommand)]
enum Command {
    /// Preview every change, property by property, without touching anything.
    Plan(commands::plan::PlanArgs),
    /// Create or update everything, as fast as the dependencies allow.
    Provision(commands::provision::ProvisionArgs),
    /// Delete everything in reverse dependency order.
    Destroy(commands::destroy::DestroyArgs),
    /// Print the stack's outputs: load balancer DNS name, customers' URLs, registry URI…
    Output(commands::output::OutputArgs),
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info,aws=warn",
        _ => "debug,aws_smithy_runtime=info,aws_config=info,hyper=info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Plan(a) => commands::plan::run(a).await,
            Command::Provision(a) => commands::provision::run(a).await,
            Command::Destroy(a) => commands::destroy::run(a).await,
            Command::Output(a) => commands::output::run(a).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}
