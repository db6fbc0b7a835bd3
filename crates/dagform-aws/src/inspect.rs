//! What `status` shows of a recorded object: one describe (or two) per object, turned into the
//! typed views of [`dagform_resources::status`]. Each function backs its kind's `inspect`.

use crate::AwsClients;
use crate::error::classify;
use crate::ownership::found;
use aws_sdk_elasticloadbalancingv2::types::{Action, Rule};
use dagform_core::{Current, ResourceError};
use dagform_resources::status::{
    CertificateView, DeploymentView, Inspected, ListenerView, LoadBalancerView, RuleView,
    ServiceEvent, ServiceView, TargetCounts, TargetGroupView,
};
use serde_json::Value as Json;

/// A recorded output as text.
fn output<'a>(current: &Current<'a>, name: &str) -> Option<&'a str> {
    current.outputs.get(name).and_then(Json::as_str)
}

/// The object's ARN: the recorded `arn` output, which for these kinds is also its id.
fn arn<'a>(current: &Current<'a>) -> &'a str {
    output(current, "arn").unwrap_or(current.id)
}

/// `aws_lb`: state, scheme and DNS name.
pub async fn load_balancer(
    clients: &AwsClients,
    current: Current<'_>,
) -> Result<Inspected<LoadBalancerView>, ResourceError> {
    let arn = arn(&current);
    let described = found(
        "DescribeLoadBalancers",
        clients
            .elbv2
            .describe_load_balancers()
            .load_balancer_arns(arn)
            .send()
            .await,
    )?;
    let Some(lb) = described.as_ref().and_then(|out| {
        out.load_balancers()
            .iter()
            .find(|lb| lb.load_balancer_arn() == Some(arn))
    }) else {
        return Ok(Inspected::Gone);
    };
    let recorded_name = output(&current, "name").unwrap_or_default();
    Ok(Inspected::Live(LoadBalancerView {
        name: lb.load_balancer_name().unwrap_or(recorded_name).to_owned(),
        state: lb
            .state()
            .and_then(|s| s.code())
            .map_or("unknown", |c| c.as_str())
            .to_owned(),
        reason: lb.state().and_then(|s| s.reason()).map(str::to_owned),
        scheme: lb.scheme().map(|s| s.as_str().to_owned()),
        dns_name: lb.dns_name().map(str::to_owned),
    }))
}

/// `aws_acm_certificate`: status, names, validations still pending and use.
pub async fn certificate(
    clients: &AwsClients,
    current: Current<'_>,
) -> Result<Inspected<CertificateView>, ResourceError> {
    let described = found(
        "DescribeCertificate",
        clients
            .acm
            .describe_certificate()
            .certificate_arn(arn(&current))
            .send()
            .await,
    )?;
    let Some(c) = described.as_ref().and_then(|out| out.certificate()) else {
        return Ok(Inspected::Gone);
    };
    Ok(Inspected::Live(CertificateView {
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
    }))
}

/// The part of a task definition ARN after `task-definition/`: `family:revision`.
fn task_definition_name(arn: &str) -> &str {
    arn.rsplit_once(":task-definition/").map_or(arn, |(_, n)| n)
}

/// `aws_ecs_service`: task counts, the primary deployment's rollout and the latest event.
pub async fn service(
    clients: &AwsClients,
    current: Current<'_>,
) -> Result<Inspected<ServiceView>, ResourceError> {
    let arn = arn(&current);
    let out = clients
        .ecs
        .describe_services()
        .cluster(output(&current, "cluster").unwrap_or_default())
        .services(arn)
        .send()
        .await
        .map_err(|e| classify("DescribeServices", e))?;
    // A deleted service stays describable as INACTIVE for a while; one not found at all is
    // listed among the call's failures instead.
    let Some(s) = out
        .services()
        .iter()
        .find(|s| s.service_arn() == Some(arn))
        .filter(|s| s.status() != Some("INACTIVE"))
    else {
        return Ok(Inspected::Gone);
    };
    let primary = s
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"));
    let task_definition = s.task_definition().map(task_definition_name);
    Ok(Inspected::Live(ServiceView {
        status: s.status().unwrap_or("unknown").to_owned(),
        desired: s.desired_count(),
        running: s.running_count(),
        pending: s.pending_count(),
        primary: primary.map(|d| DeploymentView {
            rollout: d.rollout_state().map(|r| r.as_str().to_owned()),
            rollout_reason: d.rollout_state_reason().map(str::to_owned),
            failed_tasks: d.failed_tasks(),
        }),
        deployments: s.deployments().len(),
        task_definition: task_definition.map(str::to_owned),
        revision: task_definition
            .and_then(|t| t.rsplit_once(':'))
            .and_then(|(_, rev)| rev.parse().ok()),
        last_event: s.events().first().map(|e| ServiceEvent {
            at: e.created_at().map(|t| t.to_string()),
            message: e.message().unwrap_or_default().to_owned(),
        }),
    }))
}

/// Counts one target in its health state's column.
fn count(targets: &mut TargetCounts, state: &str) {
    let column = match state {
        "healthy" => &mut targets.healthy,
        "unhealthy" => &mut targets.unhealthy,
        "initial" => &mut targets.initial,
        "unused" => &mut targets.unused,
        "draining" | "unhealthy.draining" => &mut targets.draining,
        _ => &mut targets.unavailable,
    };
    *column += 1;
}

/// `aws_lb_target_group`: its health check and its targets counted by health. The group is
/// gone when its target health cannot be read.
pub async fn target_group(
    clients: &AwsClients,
    current: Current<'_>,
) -> Result<Inspected<TargetGroupView>, ResourceError> {
    let arn = arn(&current);
    let (details, health) = tokio::try_join!(
        async {
            found(
                "DescribeTargetGroups",
                clients
                    .elbv2
                    .describe_target_groups()
                    .target_group_arns(arn)
                    .send()
                    .await,
            )
        },
        async {
            found(
                "DescribeTargetHealth",
                clients
                    .elbv2
                    .describe_target_health()
                    .target_group_arn(arn)
                    .send()
                    .await,
            )
        },
    )?;
    let Some(health) = health else {
        return Ok(Inspected::Gone);
    };
    let group = details.as_ref().and_then(|out| {
        out.target_groups()
            .iter()
            .find(|t| t.target_group_arn() == Some(arn))
    });
    let mut targets = TargetCounts::default();
    for d in health.target_health_descriptions() {
        let state = d.target_health().and_then(|h| h.state());
        count(&mut targets, state.map_or("unknown", |s| s.as_str()));
    }
    Ok(Inspected::Live(TargetGroupView {
        port: group.and_then(|g| g.port()),
        health_check_path: group.and_then(|g| g.health_check_path()).map(str::to_owned),
        load_balancers: group.map_or(0, |g| g.load_balancer_arns().len()),
        targets,
    }))
}

/// The target group's name from its ARN (`…:targetgroup/<name>/<id>`).
fn target_group_name(arn: &str) -> &str {
    arn.split_once(":targetgroup/")
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or(arn)
}

/// The values a rule matches on `field` (`host-header` or `path-pattern`), from the typed
/// condition config or, when that is empty, the legacy `values`.
fn condition_values(rule: &Rule, field: &str) -> Vec<String> {
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
}

/// Names of the target groups an action forwards to, sorted and once each.
fn forwarded_to(action: Option<&Action>) -> Vec<String> {
    let Some(action) = action else {
        return Vec::new();
    };
    let weighted = action
        .forward_config()
        .map(|f| f.target_groups())
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.target_group_arn());
    let mut names: Vec<String> = action
        .target_group_arn()
        .into_iter()
        .chain(weighted)
        .map(|arn| target_group_name(arn).to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn rule_view(rule: &Rule) -> RuleView {
    let action = rule.actions().iter().find(|a| a.r#type().is_some());
    RuleView {
        arn: rule.rule_arn().map(str::to_owned),
        priority: rule.priority().and_then(|p| p.parse().ok()),
        hosts: condition_values(rule, "host-header"),
        paths: condition_values(rule, "path-pattern"),
        action: action
            .and_then(|a| a.r#type())
            .map_or("none", |t| t.as_str())
            .to_owned(),
        target_groups: forwarded_to(action),
    }
}

/// `aws_lb_listener`: every rule of the listener, page by page.
pub async fn listener(
    clients: &AwsClients,
    current: Current<'_>,
) -> Result<Inspected<ListenerView>, ResourceError> {
    let arn = arn(&current);
    let mut rules = Vec::new();
    let mut marker = None;
    loop {
        let page = found(
            "DescribeRules",
            clients
                .elbv2
                .describe_rules()
                .listener_arn(arn)
                .set_marker(marker)
                .send()
                .await,
        )?;
        let Some(page) = page else {
            // Gone before its first page; gone while paging keeps the pages already read.
            if rules.is_empty() {
                return Ok(Inspected::Gone);
            }
            break;
        };
        rules.extend(page.rules().iter().map(rule_view));
        marker = page.next_marker().map(str::to_owned);
        if marker.is_none() {
            break;
        }
    }
    Ok(Inspected::Live(ListenerView { rules }))
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
    }

    #[test]
    fn targets_are_counted_by_health_state() {
        let mut targets = TargetCounts::default();
        for state in [
            "healthy",
            "healthy",
            "unhealthy.draining",
            "draining",
            "unavailable",
            "?",
        ] {
            count(&mut targets, state);
        }
        assert_eq!(
            targets,
            TargetCounts {
                healthy: 2,
                draining: 2,
                unavailable: 2,
                ..TargetCounts::default()
            }
        );
    }
}
