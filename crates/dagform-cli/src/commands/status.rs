//! `dagform status`: the live health of a provisioned stack on one screen — ECS services and
//! their rollouts, target health, the certificate, the HTTPS listener's rules and the load
//! balancer — read from AWS with the ids recorded in the state.

use crate::context::Context;
use crate::{Common, exit};
use anyhow::{Result, anyhow, bail};
use clap::Args;
use dagform_aws::AwsClients;
use dagform_aws::error::{classify, is_not_found};
use dagform_config::Config;
use dagform_core::{Address, ResourceState, State};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

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

/// The customer a node belongs to (`customer.<name>.…`).
fn customer_of(address: &Address) -> Option<String> {
    let rest = address.as_str().strip_prefix("customer.")?;
    rest.split('.').next().map(str::to_owned)
}

fn output<'s>(resource: &'s ResourceState, name: &str) -> Option<&'s str> {
    resource.outputs.get(name).and_then(|v| v.as_str())
}

/// Recorded resources of `kind` that have the output `id_output`, as (address, that output).
fn recorded<'s>(
    state: &'s State,
    kind: &'s str,
    id_output: &'s str,
) -> impl Iterator<Item = (&'s Address, &'s ResourceState, String)> + 's {
    state
        .resources
        .iter()
        .filter(move |(_, r)| r.kind == kind)
        .filter_map(move |(a, r)| output(r, id_output).map(|id| (a, r, id.to_owned())))
}

#[derive(Serialize)]
struct Report {
    stack: String,
    region: String,
    customer: Option<String>,
    load_balancers: Vec<LoadBalancerStatus>,
    certificates: Vec<CertificateStatus>,
    services: Vec<ServiceStatus>,
    target_groups: Vec<TargetGroupStatus>,
    listener_rules: Vec<RuleStatus>,
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
    service: String,
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
struct ServiceEvent {
    at: Option<String>,
    message: String,
}

#[derive(Serialize, Default)]
struct TargetGroupStatus {
    address: String,
    customer: Option<String>,
    name: String,
    status: String,
    port: Option<i32>,
    health_check_path: Option<String>,
    /// How many load balancers route to it (0: no listener rule uses it).
    load_balancers: usize,
    healthy: u32,
    unhealthy: u32,
    initial: u32,
    unused: u32,
    draining: u32,
    unavailable: u32,
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

/// How many describe calls run at once, to stay clear of API throttling.
const CONCURRENT_CALLS: usize = 8;

/// Runs `tasks` concurrently (at most [`CONCURRENT_CALLS`] at once) and returns their results
/// in order.
async fn concurrently<T, F>(tasks: impl IntoIterator<Item = F>) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(CONCURRENT_CALLS));
    let mut set = JoinSet::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            task.await.map(|t| (i, t))
        });
    }
    let mut out = Vec::with_capacity(set.len());
    while let Some(joined) = set.join_next().await {
        out.push(joined??);
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, t)| t).collect())
}

pub async fn run(args: StatusArgs) -> Result<u8> {
    let ctx = Context::load(&args.common)?;
    let state = ctx.read_state()?;
    if state.resources.is_empty() {
        bail!(
            "nothing is provisioned for stack {} (no resources in {}): run `dagform provision` first",
            ctx.stack(),
            ctx.state_path.display()
        );
    }
    let prefix = match &args.customer {
        Some(name) => Some(customer_prefix(&ctx.config, name)?),
        None => None,
    };
    let clients = ctx.clients().await;
    let report = gather(&ctx, &state, prefix.as_deref(), &clients).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&report));
    }
    Ok(exit::OK)
}

async fn gather(
    ctx: &Context,
    state: &State,
    prefix: Option<&str>,
    clients: &Arc<AwsClients>,
) -> Result<Report> {
    let selected = |a: &Address| prefix.is_none_or(|p| a.is_within(p));
    let (load_balancers, certificates, services, target_groups, listener_rules) = tokio::try_join!(
        load_balancers(clients, state),
        certificates(clients, state),
        services(clients, state, &selected),
        target_groups(clients, state, &selected),
        listener_rules(clients, state, prefix),
    )?;
    let mut report = Report {
        stack: ctx.stack(),
        region: clients.region.clone(),
        customer: prefix.and_then(|p| p.strip_prefix("customer.").map(str::to_owned)),
        load_balancers,
        certificates,
        services,
        target_groups,
        listener_rules,
        attention: Vec::new(),
    };
    report.attention = attention(&report);
    Ok(report)
}

async fn load_balancers(clients: &AwsClients, state: &State) -> Result<Vec<LoadBalancerStatus>> {
    let recorded: Vec<(String, String, String)> = recorded(state, "aws_lb", "arn")
        .map(|(a, r, arn)| {
            let name = output(r, "name").unwrap_or_default().to_owned();
            (a.to_string(), name, arn)
        })
        .collect();
    if recorded.is_empty() {
        return Ok(Vec::new());
    }
    let arns: Vec<String> = recorded.iter().map(|(_, _, arn)| arn.clone()).collect();
    // One call for all of them; when one is gone AWS fails the whole call, so ask one by one.
    let found = match clients
        .elbv2
        .describe_load_balancers()
        .set_load_balancer_arns(Some(arns.clone()))
        .send()
        .await
    {
        Ok(out) => out.load_balancers().to_vec(),
        Err(e) if is_not_found(&e) => {
            let tasks = arns.into_iter().map(|arn| {
                let elbv2 = clients.elbv2.clone();
                async move {
                    match elbv2
                        .describe_load_balancers()
                        .load_balancer_arns(arn)
                        .send()
                        .await
                    {
                        Ok(out) => Ok(out.load_balancers().to_vec()),
                        Err(e) if is_not_found(&e) => Ok(Vec::new()),
                        Err(e) => Err(anyhow!(classify("DescribeLoadBalancers", e))),
                    }
                }
            });
            concurrently(tasks).await?.into_iter().flatten().collect()
        }
        Err(e) => return Err(anyhow!(classify("DescribeLoadBalancers", e))),
    };
    Ok(recorded
        .into_iter()
        .map(|(address, name, arn)| {
            match found.iter().find(|lb| lb.load_balancer_arn() == Some(&arn)) {
                Some(lb) => LoadBalancerStatus {
                    address,
                    name: lb.load_balancer_name().unwrap_or(&name).to_owned(),
                    state: lb
                        .state()
                        .and_then(|s| s.code())
                        .map_or("unknown", |c| c.as_str())
                        .to_owned(),
                    reason: lb.state().and_then(|s| s.reason()).map(str::to_owned),
                    scheme: lb.scheme().map(|s| s.as_str().to_owned()),
                    dns_name: lb.dns_name().map(str::to_owned),
                },
                None => LoadBalancerStatus {
                    address,
                    name,
                    state: MISSING.to_owned(),
                    reason: None,
                    scheme: None,
                    dns_name: None,
                },
            }
        })
        .collect())
}

async fn certificates(clients: &AwsClients, state: &State) -> Result<Vec<CertificateStatus>> {
    let tasks = recorded(state, "aws_acm_certificate", "arn").map(|(address, _, arn)| {
        let acm = clients.acm.clone();
        let address = address.to_string();
        async move {
            let cert = match acm
                .describe_certificate()
                .certificate_arn(&arn)
                .send()
                .await
            {
                Ok(out) => out.certificate().cloned(),
                Err(e) if is_not_found(&e) => None,
                Err(e) => return Err(anyhow!(classify("DescribeCertificate", e))),
            };
            let Some(c) = cert else {
                return Ok(CertificateStatus {
                    address,
                    domain: None,
                    status: MISSING.to_owned(),
                    names: Vec::new(),
                    pending_validation: Vec::new(),
                    in_use_by: 0,
                    not_after: None,
                });
            };
            Ok(CertificateStatus {
                address,
                domain: c.domain_name().map(str::to_owned),
                status: c.status().map_or("unknown", |s| s.as_str()).to_owned(),
                names: c.subject_alternative_names().to_vec(),
                pending_validation: c
                    .domain_validation_options()
                    .iter()
                    .filter(|v| {
                        v.validation_status()
                            .is_none_or(|s| s.as_str() != "SUCCESS")
                    })
                    .map(|v| v.domain_name().to_owned())
                    .collect(),
                in_use_by: c.in_use_by().len(),
                not_after: c.not_after().map(|t| t.to_string()),
            })
        }
    });
    concurrently(tasks.collect::<Vec<_>>()).await
}

/// The part of a task definition ARN after `task-definition/`: `family:revision`.
fn task_definition_name(arn: &str) -> &str {
    arn.rsplit_once(":task-definition/").map_or(arn, |(_, n)| n)
}

async fn services(
    clients: &AwsClients,
    state: &State,
    selected: &(dyn Fn(&Address) -> bool + Sync),
) -> Result<Vec<ServiceStatus>> {
    // describe_services takes one cluster and up to 10 services per call.
    let mut by_cluster: BTreeMap<String, Vec<(&Address, &ResourceState, String)>> = BTreeMap::new();
    for (address, r, arn) in recorded(state, "aws_ecs_service", "arn") {
        if selected(address) {
            let cluster = output(r, "cluster").unwrap_or_default().to_owned();
            by_cluster
                .entry(cluster)
                .or_default()
                .push((address, r, arn));
        }
    }
    let mut tasks = Vec::new();
    for (cluster, services) in &by_cluster {
        for chunk in services.chunks(10) {
            let ecs = clients.ecs.clone();
            let cluster = cluster.clone();
            let arns: Vec<String> = chunk.iter().map(|(_, _, arn)| arn.clone()).collect();
            tasks.push(async move {
                ecs.describe_services()
                    .cluster(cluster)
                    .set_services(Some(arns))
                    .send()
                    .await
                    .map(|out| out.services().to_vec())
                    .map_err(|e| anyhow!(classify("DescribeServices", e)))
            });
        }
    }
    let found: Vec<_> = concurrently(tasks).await?.into_iter().flatten().collect();
    let mut out = Vec::new();
    for (cluster, services) in by_cluster {
        for (address, r, arn) in services {
            let name = output(r, "name").unwrap_or_default().to_owned();
            let live = found
                .iter()
                .find(|s| s.service_arn() == Some(&arn))
                .filter(|s| s.status() != Some("INACTIVE"));
            let mut status = ServiceStatus {
                address: address.to_string(),
                customer: customer_of(address),
                service: address
                    .as_str()
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                name,
                cluster: cluster.rsplit('/').next().unwrap_or_default().to_owned(),
                status: MISSING.to_owned(),
                desired: None,
                running: None,
                pending: None,
                rollout: None,
                rollout_reason: None,
                deployments: 0,
                failed_tasks: 0,
                task_definition: None,
                revision: None,
                last_event: None,
            };
            if let Some(s) = live {
                let primary = s
                    .deployments()
                    .iter()
                    .find(|d| d.status() == Some("PRIMARY"));
                let task_definition = s.task_definition().map(task_definition_name);
                status.status = s.status().unwrap_or("unknown").to_owned();
                status.desired = Some(s.desired_count());
                status.running = Some(s.running_count());
                status.pending = Some(s.pending_count());
                status.rollout = primary
                    .and_then(|d| d.rollout_state())
                    .map(|r| r.as_str().to_owned());
                status.rollout_reason = primary
                    .and_then(|d| d.rollout_state_reason())
                    .map(str::to_owned);
                status.deployments = s.deployments().len();
                status.failed_tasks = primary.map_or(0, |d| d.failed_tasks());
                status.revision = task_definition
                    .and_then(|t| t.rsplit_once(':'))
                    .and_then(|(_, rev)| rev.parse().ok());
                status.task_definition = task_definition.map(str::to_owned);
                status.last_event = s.events().first().map(|e| ServiceEvent {
                    at: e.created_at().map(|t| t.to_string()),
                    message: e.message().unwrap_or_default().to_owned(),
                });
            }
            out.push(status);
        }
    }
    Ok(out)
}

async fn target_groups(
    clients: &AwsClients,
    state: &State,
    selected: &(dyn Fn(&Address) -> bool + Sync),
) -> Result<Vec<TargetGroupStatus>> {
    let mut groups: Vec<(TargetGroupStatus, String)> =
        recorded(state, "aws_lb_target_group", "arn")
            .filter(|(a, _, _)| selected(a))
            .map(|(address, r, arn)| {
                let status = TargetGroupStatus {
                    address: address.to_string(),
                    customer: customer_of(address),
                    name: output(r, "name").unwrap_or_default().to_owned(),
                    status: "OK".to_owned(),
                    ..TargetGroupStatus::default()
                };
                (status, arn)
            })
            .collect();
    let arns: Vec<String> = groups.iter().map(|(_, arn)| arn.clone()).collect();
    // Details in batches of 20 ARNs; a batch with a deleted group fails whole, so that batch
    // is asked again one by one.
    let details = arns.chunks(20).map(|chunk| {
        let elbv2 = clients.elbv2.clone();
        let chunk = chunk.to_vec();
        async move {
            match elbv2
                .describe_target_groups()
                .set_target_group_arns(Some(chunk.clone()))
                .send()
                .await
            {
                Ok(out) => return Ok(out.target_groups().to_vec()),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(anyhow!(classify("DescribeTargetGroups", e))),
            }
            let mut found = Vec::new();
            for arn in chunk {
                match elbv2
                    .describe_target_groups()
                    .target_group_arns(arn)
                    .send()
                    .await
                {
                    Ok(out) => found.extend(out.target_groups().iter().cloned()),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(anyhow!(classify("DescribeTargetGroups", e))),
                }
            }
            Ok(found)
        }
    });
    let health = arns.iter().map(|arn| {
        let elbv2 = clients.elbv2.clone();
        let arn = arn.clone();
        async move {
            match elbv2
                .describe_target_health()
                .target_group_arn(arn)
                .send()
                .await
            {
                Ok(out) => Ok(Some(
                    out.target_health_descriptions()
                        .iter()
                        .map(|d| {
                            d.target_health()
                                .and_then(|h| h.state())
                                .map_or("unknown", |s| s.as_str())
                                .to_owned()
                        })
                        .collect::<Vec<_>>(),
                )),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(anyhow!(classify("DescribeTargetHealth", e))),
            }
        }
    });
    let (details, health) = tokio::try_join!(
        concurrently(details.collect::<Vec<_>>()),
        concurrently(health.collect::<Vec<_>>())
    )?;
    let details: Vec<_> = details.into_iter().flatten().collect();
    for ((group, arn), states) in groups.iter_mut().zip(health) {
        let Some(states) = states else {
            group.status = MISSING.to_owned();
            continue;
        };
        if let Some(tg) = details.iter().find(|t| t.target_group_arn() == Some(arn)) {
            group.port = tg.port();
            group.health_check_path = tg.health_check_path().map(str::to_owned);
            group.load_balancers = tg.load_balancer_arns().len();
        }
        for s in states {
            match s.as_str() {
                "healthy" => group.healthy += 1,
                "unhealthy" => group.unhealthy += 1,
                "initial" => group.initial += 1,
                "unused" => group.unused += 1,
                "draining" | "unhealthy.draining" => group.draining += 1,
                _ => group.unavailable += 1,
            }
        }
    }
    Ok(groups.into_iter().map(|(g, _)| g).collect())
}

/// The target group's name from its ARN (`…:targetgroup/<name>/<id>`).
fn target_group_name(arn: &str) -> &str {
    arn.split_once(":targetgroup/")
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or(arn)
}

async fn listener_rules(
    clients: &AwsClients,
    state: &State,
    prefix: Option<&str>,
) -> Result<Vec<RuleStatus>> {
    let managed: BTreeMap<String, &Address> = recorded(state, "aws_lb_listener_rule", "arn")
        .map(|(a, _, arn)| (arn, a))
        .collect();
    let https: Vec<(String, String)> = recorded(state, "aws_lb_listener", "arn")
        .filter(|(_, r, _)| r.properties.get("protocol").and_then(|p| p.as_str()) == Some("HTTPS"))
        .map(|(a, _, arn)| (a.to_string(), arn))
        .collect();
    let tasks = https.into_iter().map(|(listener, arn)| {
        let elbv2 = clients.elbv2.clone();
        async move {
            let mut rules = Vec::new();
            let mut marker = None;
            loop {
                let out = match elbv2
                    .describe_rules()
                    .listener_arn(&arn)
                    .set_marker(marker)
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(e) if is_not_found(&e) => break,
                    Err(e) => return Err(anyhow!(classify("DescribeRules", e))),
                };
                rules.extend(out.rules().iter().cloned().map(|r| (listener.clone(), r)));
                marker = out.next_marker().map(str::to_owned);
                if marker.is_none() {
                    break;
                }
            }
            Ok(rules)
        }
    });
    let mut out = Vec::new();
    for (listener, rule) in concurrently(tasks.collect::<Vec<_>>())
        .await?
        .into_iter()
        .flatten()
    {
        let address = rule.rule_arn().and_then(|arn| managed.get(arn).copied());
        if let Some(p) = prefix
            && !address.is_some_and(|a| a.is_within(p))
        {
            continue;
        }
        let values = |field: &str| -> Vec<String> {
            rule.conditions()
                .iter()
                .filter(|c| c.field() == Some(field))
                .flat_map(|c| {
                    let typed = match field {
                        "host-header" => c.host_header_config().map(|h| h.values()),
                        _ => c.path_pattern_config().map(|p| p.values()),
                    };
                    typed
                        .filter(|v| !v.is_empty())
                        .unwrap_or(c.values())
                        .to_vec()
                })
                .collect()
        };
        let action = rule.actions().iter().find(|a| a.r#type().is_some());
        let mut target_groups: Vec<String> = action
            .map(|a| {
                let forward = a
                    .forward_config()
                    .map(|f| f.target_groups())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|t| t.target_group_arn());
                a.target_group_arn()
                    .into_iter()
                    .chain(forward)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .map(|arn| target_group_name(arn).to_owned())
            .collect();
        target_groups.sort();
        target_groups.dedup();
        out.push(RuleStatus {
            listener,
            priority: rule.priority().and_then(|p| p.parse().ok()),
            customer: address.and_then(customer_of),
            address: address.map(Address::to_string),
            hosts: values("host-header"),
            paths: values("path-pattern"),
            action: action
                .and_then(|a| a.r#type())
                .map_or("none", |t| t.as_str())
                .to_owned(),
            target_groups,
        });
    }
    // Numbered rules by priority, the default (evaluated last) at the end.
    out.sort_by_key(|r| (r.listener.clone(), r.priority.is_none(), r.priority));
    Ok(out)
}

fn attention(report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for lb in &report.load_balancers {
        if lb.state != "active" {
            let reason = lb
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            out.push(format!("load balancer {} is {}{reason}", lb.name, lb.state));
        }
    }
    for c in &report.certificates {
        if c.status != "ISSUED" {
            let pending = if c.pending_validation.is_empty() {
                String::new()
            } else {
                format!(
                    " (DNS validation pending for {})",
                    c.pending_validation.join(", ")
                )
            };
            let domain = c.domain.as_deref().unwrap_or(&c.address);
            out.push(format!("certificate {domain} is {}{pending}", c.status));
        }
    }
    for s in &report.services {
        if s.status != "ACTIVE" {
            out.push(format!("service {} is {}", s.name, s.status));
            continue;
        }
        if let (Some(desired), Some(running)) = (s.desired, s.running)
            && running < desired
        {
            out.push(format!(
                "service {}: {running} of {desired} task(s) running, {} pending",
                s.name,
                s.pending.unwrap_or(0)
            ));
        }
        if s.rollout.as_deref() == Some("FAILED") {
            out.push(format!(
                "service {}: rollout failed: {}",
                s.name,
                s.rollout_reason.as_deref().unwrap_or("no reason given")
            ));
        }
    }
    for g in &report.target_groups {
        if g.status != "OK" {
            out.push(format!("target group {} is {}", g.name, g.status));
        } else if g.unhealthy > 0 {
            out.push(format!(
                "target group {}: {} unhealthy target(s) (health check {})",
                g.name,
                g.unhealthy,
                g.health_check_path.as_deref().unwrap_or("?")
            ));
        }
    }
    out
}

/// Left-aligned columns, two spaces apart, indented by two.
fn table(out: &mut String, headers: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        out.push_str("  none recorded in the state\n");
        return;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(format!("  {}", cells.join("  ")).trim_end());
        out.push('\n');
    }
}

fn dash(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(",")
    }
}

fn human(r: &Report) -> String {
    let mut out = format!("Stack {} ({})", r.stack, r.region);
    if let Some(c) = &r.customer {
        out.push_str(&format!(", customer {c}"));
    }
    out.push('\n');

    out.push_str("\nLoad balancer\n");
    let rows: Vec<Vec<String>> = r
        .load_balancers
        .iter()
        .map(|lb| {
            vec![
                lb.name.clone(),
                lb.state.clone(),
                dash(lb.scheme.as_ref()),
                dash(lb.dns_name.as_ref()),
            ]
        })
        .collect();
    table(&mut out, &["NAME", "STATE", "SCHEME", "DNS NAME"], &rows);

    out.push_str("\nCertificate\n");
    let rows: Vec<Vec<String>> = r
        .certificates
        .iter()
        .map(|c| {
            vec![
                dash(c.domain.as_ref()),
                c.status.clone(),
                list(&c.names),
                c.in_use_by.to_string(),
                dash(c.not_after.as_ref()),
            ]
        })
        .collect();
    table(
        &mut out,
        &["DOMAIN", "STATUS", "NAMES", "IN USE BY", "EXPIRES"],
        &rows,
    );

    out.push_str("\nServices\n");
    let rows: Vec<Vec<String>> = r
        .services
        .iter()
        .map(|s| {
            let rollout = match (&s.rollout, s.deployments) {
                (Some(state), n) if n > 1 => format!("{state} ({n} deployments)"),
                (state, _) => dash(state.as_ref()),
            };
            vec![
                dash(s.customer.as_ref()),
                s.service.clone(),
                s.name.clone(),
                s.status.clone(),
                dash(s.desired),
                dash(s.running),
                dash(s.pending),
                rollout,
                dash(s.task_definition.as_ref()),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "CUSTOMER",
            "SERVICE",
            "ECS SERVICE",
            "STATUS",
            "DESIRED",
            "RUNNING",
            "PENDING",
            "ROLLOUT",
            "TASK DEFINITION",
        ],
        &rows,
    );

    out.push_str("\nTarget health\n");
    let rows: Vec<Vec<String>> = r
        .target_groups
        .iter()
        .map(|g| {
            let count = |n: u32| {
                if g.status == "OK" {
                    n.to_string()
                } else {
                    "-".into()
                }
            };
            vec![
                dash(g.customer.as_ref()),
                g.name.clone(),
                g.status.clone(),
                count(g.healthy),
                count(g.unhealthy),
                count(g.initial),
                count(g.unused),
                count(g.draining),
                dash(g.health_check_path.as_ref()),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "CUSTOMER",
            "TARGET GROUP",
            "STATUS",
            "HEALTHY",
            "UNHEALTHY",
            "INITIAL",
            "UNUSED",
            "DRAINING",
            "HEALTH CHECK",
        ],
        &rows,
    );

    out.push_str("\nHTTPS listener rules\n");
    let rows: Vec<Vec<String>> = r
        .listener_rules
        .iter()
        .map(|rule| {
            vec![
                rule.priority
                    .map_or_else(|| "default".to_owned(), |p| p.to_string()),
                dash(rule.customer.as_ref()),
                list(&rule.hosts),
                list(&rule.paths),
                match rule.action.as_str() {
                    "forward" => list(&rule.target_groups),
                    other => other.to_owned(),
                },
            ]
        })
        .collect();
    table(
        &mut out,
        &["PRIORITY", "CUSTOMER", "HOST", "PATH", "TARGET GROUP"],
        &rows,
    );

    let events: Vec<&ServiceStatus> = r
        .services
        .iter()
        .filter(|s| s.last_event.is_some())
        .collect();
    if !events.is_empty() {
        out.push_str("\nLatest service events\n");
        for s in events {
            let e = s.last_event.as_ref().expect("filtered");
            out.push_str(&format!(
                "  {} {}: {}\n",
                e.at.as_deref().unwrap_or("-"),
                s.name,
                e.message
            ));
        }
    }

    if r.attention.is_empty() {
        out.push_str("\nEverything looks healthy.\n");
    } else {
        out.push_str("\nNeeds attention\n");
        for line in &r.attention {
            out.push_str(&format!("  - {line}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_arns() {
        assert_eq!(
            task_definition_name("arn:aws:ecs:us-east-1:123:task-definition/dev-a-web:7"),
            "dev-a-web:7"
        );
        assert_eq!(
            target_group_name(
                "arn:aws:elasticloadbalancing:us-east-1:123:targetgroup/dev-a-web-tg/50dc6c495c0c9188"
            ),
            "dev-a-web-tg"
        );
        assert_eq!(
            customer_of(&"customer.a.service.web".into()).as_deref(),
            Some("a")
        );
        assert_eq!(customer_of(&"shared.alb".into()), None);
    }

    #[test]
    fn tables_align_columns() {
        let mut out = String::new();
        table(
            &mut out,
            &["A", "LONG HEADER", "C"],
            &[vec!["wide cell".into(), "x".into(), "y".into()]],
        );
        assert_eq!(
            out,
            "  A          LONG HEADER  C\n  wide cell  x            y\n"
        );
    }
}
