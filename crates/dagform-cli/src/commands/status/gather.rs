//! Reading each recorded object's view from its kind, and building the [`Report`] of them.

use super::{
    CertificateStatus, CustomerPlacement, LoadBalancerStatus, MISSING, Report, RuleStatus,
    ServiceStatus, TargetGroupStatus,
};
use crate::context::Context;
use anyhow::{Context as _, Result};
use dagform_aws::AwsClients;
use dagform_core::kind::PollSettings;
use dagform_core::typed::KindProperties;
use dagform_core::{Address, Current, Kinds, OpContext, ResourceError, ResourceState, State};
use dagform_resources::acm::CertificateProps;
use dagform_resources::ecs::ServiceProps;
use dagform_resources::elbv2::{
    ListenerField, ListenerProps, ListenerRuleProps, LoadBalancerProps, TargetGroupProps,
};
use dagform_resources::status::{
    CertificateView, Inspected, ListenerView, LoadBalancerView, ServiceView, TargetGroupView,
};
use futures::{StreamExt, TryStreamExt, stream};
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// How many objects of one kind are inspected at once, to stay clear of API throttling.
const CONCURRENT_CALLS: usize = 8;

/// The report of the recorded objects within `prefix` (all of them without one). The load
/// balancer and the certificate are shared, so they are always shown.
pub(super) async fn report(
    ctx: &Context,
    state: &State,
    prefix: Option<&str>,
    kinds: &Kinds,
    clients: &AwsClients,
) -> Result<Report> {
    let views = Views {
        stack: ctx.stack(),
        kinds,
    };
    let selected = |a: &Address, _: &ResourceState| prefix.is_none_or(|p| a.is_within(p));
    let https = |_: &Address, r: &ResourceState| {
        r.properties
            .get(ListenerField::Protocol.as_str())
            .and_then(Json::as_str)
            == Some("HTTPS")
    };
    let (load_balancers, certificates, mut services, target_groups, listeners) = tokio::try_join!(
        views.of::<LoadBalancerView>(state, LoadBalancerProps::KIND, |_, _| true),
        views.of::<CertificateView>(state, CertificateProps::KIND, |_, _| true),
        views.of::<ServiceView>(state, ServiceProps::KIND, selected),
        views.of::<TargetGroupView>(state, TargetGroupProps::KIND, selected),
        views.of::<ListenerView>(state, ListenerProps::KIND, https),
    )?;
    // Services cluster by cluster, each cluster's in the state's order.
    services.sort_by_key(|s| output(s.record, "cluster").unwrap_or_default());
    let mut report = Report {
        format_version: crate::render::JSON_FORMAT_VERSION,
        stack: ctx.stack(),
        region: clients.region.clone(),
        customer: prefix.and_then(|p| p.strip_prefix("customer.").map(str::to_owned)),
        load_balancers: load_balancers.into_iter().map(load_balancer).collect(),
        customers: placements(ctx, state, prefix),
        certificates: certificates.into_iter().map(certificate).collect(),
        services: services.into_iter().map(service).collect(),
        target_groups: target_groups.into_iter().map(target_group).collect(),
        listener_rules: listener_rules(state, prefix, listeners),
        alarms: 0,
        firing_alarms: Vec::new(),
        attention: Vec::new(),
    };
    (report.alarms, report.firing_alarms) = firing_alarms(state, prefix, clients).await?;
    report.attention = attention(&report);
    Ok(report)
}

/// The load balancer each customer within `prefix` (all without one) is on, as recorded.
fn placements(ctx: &Context, state: &State, prefix: Option<&str>) -> Vec<CustomerPlacement> {
    dagform_config::customer_load_balancers(&ctx.config, state)
        .into_iter()
        .filter(|(c, _)| prefix.is_none_or(|p| p == format!("customer.{c}")))
        .map(|(customer, address)| CustomerPlacement {
            customer,
            name: state
                .get(&address)
                .and_then(|r| output(r, "name"))
                .map(str::to_owned),
            load_balancer: address.to_string(),
        })
        .collect()
}

/// The customer a node belongs to (`customer.<name>.…`).
fn customer_of(address: &Address) -> Option<String> {
    let rest = address.as_str().strip_prefix("customer.")?;
    rest.split('.').next().map(str::to_owned)
}

fn output<'s>(record: &'s ResourceState, name: &str) -> Option<&'s str> {
    record.outputs.get(name).and_then(Json::as_str)
}

/// One recorded object and what its kind reported of it.
struct Seen<'s, V> {
    address: &'s Address,
    record: &'s ResourceState,
    view: Inspected<V>,
}

/// Asks the kinds of recorded objects for their views.
struct Views<'a> {
    stack: String,
    kinds: &'a Kinds,
}

impl Views<'_> {
    /// The views of the recorded objects of `kind` (those with an ARN) that `wanted` picks, in
    /// the state's order. Objects whose kind reports no view are left out.
    async fn of<'s, V: DeserializeOwned>(
        &self,
        state: &'s State,
        kind: &str,
        wanted: impl Fn(&Address, &ResourceState) -> bool,
    ) -> Result<Vec<Seen<'s, V>>> {
        let recorded = state.resources.iter().filter(|(address, record)| {
            record.kind == kind && output(record, "arn").is_some() && wanted(address, record)
        });
        stream::iter(recorded)
            .map(|(address, record)| async move {
                let Some(view) = self.view(address, record).await? else {
                    return Ok(None);
                };
                let view = serde_json::from_value(view)
                    .with_context(|| format!("the status of {address} is not a {kind} view"))?;
                Ok::<_, anyhow::Error>(Some(Seen {
                    address,
                    record,
                    view,
                }))
            })
            .buffered(CONCURRENT_CALLS)
            .try_filter_map(|seen| async move { Ok(seen) })
            .try_collect()
            .await
    }

    /// What the kind of one recorded object reports of it, as the JSON of its view.
    async fn view(
        &self,
        address: &Address,
        record: &ResourceState,
    ) -> Result<Option<Json>, ResourceError> {
        let Some(kind) = self.kinds.get(&record.kind) else {
            return Ok(None);
        };
        let current = Current {
            id: record.id.as_deref().unwrap_or_default(),
            properties: &record.properties,
            outputs: &record.outputs,
        };
        let op = OpContext::new(self.stack.clone(), address.clone(), PollSettings::default());
        kind.inspect(&op, current).await
    }
}

fn load_balancer(seen: Seen<LoadBalancerView>) -> LoadBalancerStatus {
    let address = seen.address.to_string();
    match seen.view {
        Inspected::Live(lb) => LoadBalancerStatus {
            address,
            name: lb.name,
            state: lb.state,
            reason: lb.reason,
            scheme: lb.scheme,
            dns_name: lb.dns_name,
        },
        Inspected::Gone => LoadBalancerStatus {
            address,
            name: output(seen.record, "name").unwrap_or_default().to_owned(),
            state: MISSING.to_owned(),
            reason: None,
            scheme: None,
            dns_name: None,
        },
    }
}

fn certificate(seen: Seen<CertificateView>) -> CertificateStatus {
    let address = seen.address.to_string();
    match seen.view {
        Inspected::Live(c) => CertificateStatus {
            address,
            domain: c.domain,
            status: c.status,
            names: c.names,
            pending_validation: c.pending_validation,
            in_use_by: c.in_use_by,
            not_after: c.not_after,
        },
        Inspected::Gone => CertificateStatus {
            address,
            domain: None,
            status: MISSING.to_owned(),
            names: Vec::new(),
            pending_validation: Vec::new(),
            in_use_by: 0,
            not_after: None,
        },
    }
}

fn service(seen: Seen<ServiceView>) -> ServiceStatus {
    let address = seen.address;
    let cluster = output(seen.record, "cluster").unwrap_or_default();
    let mut status = ServiceStatus {
        address: address.to_string(),
        customer: customer_of(address),
        service: address
            .as_str()
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned(),
        name: output(seen.record, "name").unwrap_or_default().to_owned(),
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
    if let Inspected::Live(s) = seen.view {
        status.status = s.status;
        status.desired = Some(s.desired);
        status.running = Some(s.running);
        status.pending = Some(s.pending);
        if let Some(primary) = s.primary {
            status.rollout = primary.rollout;
            status.rollout_reason = primary.rollout_reason;
            status.failed_tasks = primary.failed_tasks;
        }
        status.deployments = s.deployments;
        status.task_definition = s.task_definition;
        status.revision = s.revision;
        status.last_event = s.last_event;
    }
    status
}

fn target_group(seen: Seen<TargetGroupView>) -> TargetGroupStatus {
    let address = seen.address;
    let (status, view) = match seen.view {
        Inspected::Live(view) => ("OK", Some(view)),
        Inspected::Gone => (MISSING, None),
    };
    TargetGroupStatus {
        address: address.to_string(),
        customer: customer_of(address),
        name: output(seen.record, "name").unwrap_or_default().to_owned(),
        status: status.to_owned(),
        port: view.as_ref().and_then(|v| v.port),
        health_check_path: view.as_ref().and_then(|v| v.health_check_path.clone()),
        load_balancers: view.as_ref().map_or(0, |v| v.load_balancers),
        targets: view.map(|v| v.targets).unwrap_or_default(),
    }
}

/// The HTTPS listeners' rules, numbered ones by priority and the default last; with a
/// `prefix`, only the rules of the nodes within it.
fn listener_rules(
    state: &State,
    prefix: Option<&str>,
    listeners: Vec<Seen<ListenerView>>,
) -> Vec<RuleStatus> {
    let managed: BTreeMap<&str, &Address> = state
        .resources
        .iter()
        .filter(|(_, r)| r.kind == ListenerRuleProps::KIND)
        .filter_map(|(a, r)| output(r, "arn").map(|arn| (arn, a)))
        .collect();
    let mut out = Vec::new();
    for seen in listeners {
        let Inspected::Live(listener) = seen.view else {
            continue;
        };
        for rule in listener.rules {
            let address = rule
                .arn
                .as_deref()
                .and_then(|arn| managed.get(arn).copied());
            if let Some(p) = prefix
                && !address.is_some_and(|a| a.is_within(p))
            {
                continue;
            }
            out.push(RuleStatus {
                listener: seen.address.to_string(),
                priority: rule.priority,
                customer: address.and_then(customer_of),
                address: address.map(Address::to_string),
                hosts: rule.hosts,
                paths: rule.paths,
                action: rule.action,
                target_groups: rule.target_groups,
            });
        }
    }
    // The default rule is evaluated last.
    out.sort_by_key(|r| (r.listener.clone(), r.priority.is_none(), r.priority));
    out
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
        } else if g.targets.unhealthy > 0 {
            out.push(format!(
                "target group {}: {} unhealthy target(s) (health check {})",
                g.name,
                g.targets.unhealthy,
                g.health_check_path.as_deref().unwrap_or("?")
            ));
        }
    }
    out
}

/// How many alarms the state records within `prefix`, and those CloudWatch has in ALARM.
async fn firing_alarms(
    state: &State,
    prefix: Option<&str>,
    clients: &AwsClients,
) -> Result<(usize, Vec<super::FiringAlarm>)> {
    let recorded: std::collections::BTreeMap<&str, &Address> = state
        .resources
        .iter()
        .filter(|(a, r)| {
            r.kind == dagform_resources::cloudwatch::MetricAlarmProps::KIND
                && prefix.is_none_or(|p| a.is_within(p))
        })
        .filter_map(|(a, r)| Some((r.id.as_deref()?, a)))
        .collect();
    let names: Vec<&str> = recorded.keys().copied().collect();
    let mut firing = Vec::new();
    // DescribeAlarms takes at most 100 names.
    for chunk in names.chunks(100) {
        let out = clients
            .cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(chunk.iter().map(|n| (*n).to_owned()).collect()))
            .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "DescribeAlarms: {}",
                    aws_sdk_cloudwatch::error::DisplayErrorContext(e)
                )
            })?;
        for alarm in out.metric_alarms() {
            let Some(name) = alarm.alarm_name() else {
                continue;
            };
            let Some(address) = recorded.get(name) else {
                continue;
            };
            firing.push(super::FiringAlarm {
                address: address.to_string(),
                name: name.to_owned(),
                reason: alarm.state_reason().map(str::to_owned),
                since: alarm.state_updated_timestamp().map(|t| t.to_string()),
            });
        }
    }
    Ok((names.len(), firing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_come_from_addresses() {
        assert_eq!(
            customer_of(&"customer.a.service.web".into()).as_deref(),
            Some("a")
        );
        assert_eq!(customer_of(&"shared.alb".into()), None);
    }
}
