//! `dagform`: plan, provision and destroy AWS application platforms described in one
//! `dagform.toml`.

mod commands;
mod context;
mod cost;
mod progress;
mod render;

use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// The AWS profile whose credentials and settings to use (as AWS_PROFILE does).
    #[arg(long, global = true, value_name = "NAME")]
    profile: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// The configuration file.
    #[arg(
        short = 'f',
        long = "file",
        env = "DAGFORM_CONFIG",
        default_value = "dagform.toml"
    )]
    pub file: PathBuf,
    /// Where the state is kept: a file, or `s3://BUCKET/KEY` for a state shared by a team
    /// [default: `[state] location` in the configuration, else state/<stack>.json].
    #[arg(long, env = "DAGFORM_STATE", value_name = "PATH|s3://BUCKET/KEY")]
    pub state: Option<String>,
    /// How long to wait for a state another run holds locked before giving up (e.g. 2m).
    #[arg(long, env = "DAGFORM_LOCK_TIMEOUT", default_value = "0s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub lock_timeout: Duration,
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
    /// How many AWS calls may be in flight at once (steps that only wait hold none). Each AWS
    /// service's calls are paced and slowed down when it throttles.
    #[arg(long, env = "DAGFORM_PARALLELISM", default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
    #[command(flatten)]
    pub polling: Polling,
}

/// How the commands that wait on AWS poll it.
#[derive(Args, Clone, Debug)]
pub struct Polling {
    /// How often to ask AWS whether an object is ready (e.g. 5s, 200ms).
    #[arg(long, env = "DAGFORM_POLL_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// How long to wait for one object to become ready before failing it (the certificate's
    /// validation has its own limit).
    #[arg(long, env = "DAGFORM_WAIT_TIMEOUT", default_value = "30m", value_parser = humantime::parse_duration)]
    pub wait_timeout: Duration,
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
    /// Print or follow a service's CloudWatch logs (a customer's copy, when one is named).
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
    /// Check the configuration without AWS: syntax, references, names, sizes, the graph and
    /// the quotas against AWS's defaults.
    Validate(commands::validate::ValidateArgs),
    /// Print a shell completion script.
    Completions(commands::completions::CompletionsArgs),
    /// Remove the lock a killed run left on a state in S3 (its id is printed by the run it
    /// refuses).
    ForceUnlock(commands::force_unlock::ForceUnlockArgs),
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
        .with_writer(progress::LogWriter)
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
    if let Some(profile) = &cli.profile {
        dagform_aws::clients::use_profile(profile);
    }
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
            Command::Validate(a) => commands::validate::run(a),
            Command::Completions(a) => commands::completions::run(a, Cli::command()),
            Command::ForceUnlock(a) => commands::force_unlock::run(a).await,
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
