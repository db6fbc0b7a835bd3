//! `dagform`: plan, provision and destroy AWS application platforms described in one
//! `dagform.toml`.

mod commands;
mod context;
mod cost;
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
    /// `provision` did everything it could, but some objects wait on something only the user
    /// can do (DNS records at another DNS host): the instructions are printed, and a later run
    /// carries on once that is done.
    pub const PENDING: u8 = 3;
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
    /// Override a value of the configuration for this run: `image_tag=<sha>` (every service),
    /// `services.NAME.image_tag=<sha>` or `services.NAME.desired_count=N`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// Limits a run to some nodes plus, read-only, whatever they depend on.
#[derive(Args, Clone, Debug, Default)]
pub struct Targets {
    /// Only this customer's resources; shared infrastructure and other customers are left as
    /// they are.
    #[arg(long)]
    pub customer: Option<String>,
    /// Only this node (an address such as `shared.alb`, or a prefix such as
    /// `customer.acme.service`); repeatable.
    #[arg(long = "target", value_name = "ADDRESS")]
    pub targets: Vec<String>,
}

impl Targets {
    /// The address prefixes to limit the run to, or `None` for everything.
    pub fn prefixes(&self) -> Option<Vec<String>> {
        let mut p = self.targets.clone();
        if let Some(c) = &self.customer {
            p.push(format!("customer.{c}"));
        }
        (!p.is_empty()).then_some(p)
    }
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
    /// Live health from AWS: services, rollouts, target health, certificate, listener rules.
    Status(commands::status::StatusArgs),
    /// Print a customer's service logs from CloudWatch Logs, or follow them.
    Logs(commands::logs::LogsArgs),
    /// Print the resource graph (DOT or Mermaid): what waits for what, and why.
    Graph(commands::graph::GraphArgs),
    /// Record in the state what AWS reports now, changing nothing in AWS.
    Refresh(commands::refresh::RefreshArgs),
    /// Adopt an object that already exists in AWS as a node of the configuration.
    Import(commands::import::ImportArgs),
    /// Print a plan saved by `plan --out`, the way `plan` prints it.
    Show(commands::show::ShowArgs),
    /// Inspect or edit the state: list, show, rm, mv, pull.
    State(commands::state::StateArgs),
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
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
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
            Command::Status(a) => commands::status::run(a).await,
            Command::Logs(a) => commands::logs::run(a).await,
            Command::Graph(a) => commands::graph::run(a).await,
            Command::Refresh(a) => commands::refresh::run(a).await,
            Command::Import(a) => commands::import::run(a).await,
            Command::Show(a) => commands::show::run(a),
            Command::State(a) => commands::state::run(a).await,
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
