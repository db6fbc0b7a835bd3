//! `dagform status`: the live health of a provisioned stack on one screen — ECS services and
//! their rollouts, target health, the certificate, the HTTPS listener's rules and the load
//! balancer — as each recorded object's kind reports it.
//!
//! [`gather`] asks the kinds for their views and builds the [`Report`]; [`render`] prints it
//! for a person (`--json` prints the report itself).

mod gather;
mod render;

use crate::context::Context;
use crate::{Common, exit};
use anyhow::{Result, bail};
use clap::Args;
use dagform_config::Config;
use dagform_resources::status::{ServiceEvent, TargetCounts};
use serde::Serialize;

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    common: Common,
    /// Only this customer's services, target groups and listener rules.
    #[arg(long, value_name = "NAME")]
    customer: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// `customer.<name>`, the address prefix of a customer's nodes; unknown names are an error
/// listing the configured customers.
pub fn customer_prefix(config: &Config, name: &str) -> Result<String> {
    if config.customer_names().any(|c| c == name) {
        return Ok(format!("customer.{name}"));
    }
    bail!(
        "unknown customer `{name}`; the customers are: {}",
        config.customer_names().collect::<Vec<_>>().join(", ")
    )
}

pub async fn run(args: StatusArgs) -> Result<u8> {
    let ctx = Context::load(&args.common)?;
    let state = ctx.read_state()?;
    if state.resources.is_empty() {
        bail!(
            "nothing is provisioned for stack {} (no resources in {}): run `dagform provision` first",
            ctx.stack(),
            ctx.state
        );
    }
    let prefix = match &args.customer {
        Some(name) => Some(customer_prefix(&ctx.config, name)?),
        None => None,
    };
    let clients = ctx.clients().await;
    let kinds = dagform_aws::kinds(clients.clone());
    let report = gather::report(&ctx, &state, prefix.as_deref(), &kinds, &clients).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render::human(&report));
    }
    Ok(exit::OK)
}

/// Everything `status` shows, as `--json` prints it.
#[derive(Serialize)]
struct Report {
    format_version: u32,
    stack: String,
    region: String,
    customer: Option<String>,
    load_balancers: Vec<LoadBalancerStatus>,
    /// The load balancer each customer is on.
    customers: Vec<CustomerPlacement>,
    certificates: Vec<CertificateStatus>,
    services: Vec<ServiceStatus>,
    target_groups: Vec<TargetGroupStatus>,
    listener_rules: Vec<RuleStatus>,
    /// How many alarms the stack (or the customer) has, and those in ALARM now.
    alarms: usize,
    firing_alarms: Vec<FiringAlarm>,
    /// What looks wrong, one sentence each.
    attention: Vec<String>,
}

/// Marks an object the state records but AWS no longer has.
const MISSING: &str = "MISSING";

#[derive(Serialize)]
struct LoadBalancerStatus {
    address: String,
    name: String,
    state: String,
    reason: Option<String>,
    scheme: Option<String>,
    dns_name: Option<String>,
}

#[derive(Serialize)]
struct CustomerPlacement {
    customer: String,
    /// The state node of its load balancer.
    load_balancer: String,
    /// The load balancer's name, as recorded.
    name: Option<String>,
}

#[derive(Serialize)]
struct CertificateStatus {
    address: String,
    domain: Option<String>,
    status: String,
    names: Vec<String>,
    /// Domains whose DNS validation has not succeeded yet.
    pending_validation: Vec<String>,
    in_use_by: usize,
    not_after: Option<String>,
}

#[derive(Serialize)]
struct ServiceStatus {
    address: String,
    customer: Option<String>,
    /// The service's name in the configuration (the address's last part).
    service: String,
    /// The ECS service's name.
    name: String,
    cluster: String,
    status: String,
    desired: Option<i32>,
    running: Option<i32>,
    pending: Option<i32>,
    /// The primary deployment's rollout state: IN_PROGRESS, COMPLETED or FAILED.
    rollout: Option<String>,
    rollout_reason: Option<String>,
    /// More than one while a rollout replaces old tasks.
    deployments: usize,
    failed_tasks: i32,
    /// `family:revision`.
    task_definition: Option<String>,
    revision: Option<u32>,
    last_event: Option<ServiceEvent>,
}

#[derive(Serialize)]
struct TargetGroupStatus {
    address: String,
    customer: Option<String>,
    name: String,
    /// `OK`, or [`MISSING`].
    status: String,
    port: Option<i32>,
    health_check_path: Option<String>,
    /// How many load balancers route to it (0: no listener rule uses it).
    load_balancers: usize,
    #[serde(flatten)]
    targets: TargetCounts,
}

/// An alarm in the ALARM state.
#[derive(Serialize)]
struct FiringAlarm {
    address: String,
    name: String,
    reason: Option<String>,
    since: Option<String>,
}

#[derive(Serialize)]
struct RuleStatus {
    listener: String,
    /// `None` for the listener's default rule.
    priority: Option<u32>,
    customer: Option<String>,
    /// The state node managing the rule; `None` for rules dagform did not create.
    address: Option<String>,
    hosts: Vec<String>,
    paths: Vec<String>,
    action: String,
    target_groups: Vec<String>,
}
