//! One deployment of the services — a customer's copy, or a stack's only one: per service a log
//! group, a task definition and an ECS service, and for a routed service a target group and the
//! listener rule sending it its traffic; and the DNS record of the deployment's host.

use super::cluster::Cluster;
use super::ingress::{Ingress, Zone};
use super::network::Network;
use super::registry::Registry;
use super::secrets::Secrets;
use super::security_groups::SecurityGroups;
use super::{Expansion, int};
use crate::model::Service;
use crate::naming::elb_name;
use dagform_core::typed::{Input, OutputRef, outputs_of};
use dagform_core::{Address, NodeSpec};
use dagform_resources::ecs::{
    ContainerLogSpec, ContainerSpec, HealthCheckProps, LoadBalancerSpec, PortMappingSpec,
    ServiceSpec, TaskDefinitionProps, TaskDefinitionSpec,
};
use dagform_resources::elbv2::{HealthCheck, ListenerRuleSpec, TargetGroupProps, TargetGroupSpec};
use dagform_resources::logs::{LogGroupProps, LogGroupSpec};
use dagform_resources::route53::{AliasSpec, RecordSpec};
use indexmap::IndexMap;
use std::collections::BTreeMap;
use toml::Spanned;

/// The services, by name, in the configuration's order.
pub type Services = IndexMap<Spanned<String>, Spanned<Service>>;

/// How one deployment names, configures and routes its copy of the services.
pub struct Deployment {
    /// The address its nodes live under, e.g. `customer.customer1` or `app`.
    pub base: String,
    /// The start of its task definition families and target group names, e.g.
    /// `dev-task-manager-customer1`; a service's own `family` or `target_group_name` wins.
    pub name_prefix: String,
    /// What precedes the service's name in its ECS service's name, e.g. `customer1-`.
    pub service_prefix: String,
    /// Its log group names, `{service}` still to be filled in.
    pub log_group_name: String,
    /// How long its logs are kept; none keeps them for ever.
    pub log_retention_days: Option<u32>,
    pub stream_prefix: StreamPrefix,
    /// Environment variables its containers get over their service's own and the database's.
    pub environment: BTreeMap<String, String>,
    /// The host its rules match and its DNS record names; none matches every host.
    pub host: Option<String>,
    /// The priority of its first listener rule; the others follow.
    pub first_priority: u32,
    pub catch_all: CatchAll,
}

/// The prefix of the log streams each container writes.
pub enum StreamPrefix {
    /// The service's name.
    ServiceName,
    /// `ecs`.
    Ecs,
}

/// How the service without a path (taking everything else) gets its traffic.
pub enum CatchAll {
    /// A rule of its own, after the rules with paths.
    OwnRule,
    /// The listener's fallback forwards to it; it has no rule.
    ListenerFallback,
}

/// The name of a deployment's ECS service for `service`, from its `service_prefix`.
pub fn ecs_service_name(service_prefix: &str, service: &str) -> String {
    format!("{service_prefix}{service}")
}

impl Deployment {
    fn family(&self, service: &str, config: &Service) -> String {
        match &config.family {
            Some(f) => f.get_ref().clone(),
            None => format!("{}-{service}", self.name_prefix),
        }
    }

    fn target_group_name(&self, service: &str, config: &Service) -> String {
        match &config.target_group_name {
            Some(n) => n.get_ref().clone(),
            None => elb_name(&format!("{}-{service}", self.name_prefix)),
        }
    }

    fn stream_prefix<'s>(&self, service: &'s str) -> &'s str {
        match self.stream_prefix {
            StreamPrefix::ServiceName => service,
            StreamPrefix::Ecs => "ecs",
        }
    }
}

/// The prefix of the listener rules' addresses of the deployment at `base`.
pub fn listener_rules_of(base: &str) -> String {
    format!("{base}.listener_rule")
}

/// Each routed service's target group ARN, by service name.
pub struct TargetGroups {
    pub arns: IndexMap<String, OutputRef<String>>,
}

/// A target group per routed service of `deployment`, in the VPC `vpc_id`. Made before the
/// listeners, as a listener may send its fallback traffic to one.
pub fn target_groups(
    x: &mut Expansion,
    deployment: &Deployment,
    services: &Services,
    vpc_id: &OutputRef<String>,
) -> TargetGroups {
    let mut arns = IndexMap::new();
    for (name, service) in services {
        let (name, service) = (name.get_ref().as_str(), service.get_ref());
        let Some(port) = service.port() else { continue };
        let arn = target_group(
            x,
            Address::new(format!("{}.target_group.{name}", deployment.base)),
            &TargetGroup {
                name: deployment.target_group_name(name, service),
                vpc_id,
                port,
                health_check_path: service
                    .health_check_path
                    .as_ref()
                    .map_or("/", |p| p.get_ref().as_str()),
                interval_seconds: service.health_check_interval_seconds,
                unhealthy_threshold: service.unhealthy_threshold,
            },
        );
        arns.insert(name.to_owned(), arn);
    }
    TargetGroups { arns }
}

/// The stack-wide pieces a deployment runs on.
pub struct Platform<'a> {
    pub region: &'a str,
    pub network: &'a Network,
    pub security_groups: &'a SecurityGroups,
    pub cluster: &'a Cluster,
    pub registry: &'a Registry,
    pub secrets: &'a Secrets,
    /// The database's `PG…` variables; empty without a database.
    pub database_environment: &'a BTreeMap<String, Input<String>>,
    pub ingress: &'a Ingress,
    /// Where the deployment's host gets its record.
    pub zone: Option<&'a Zone<'a>>,
}

/// The rest of `deployment`: log groups, task definitions, listener rules, ECS services and the
/// DNS record of its host.
pub fn deploy(
    x: &mut Expansion,
    deployment: &Deployment,
    services: &Services,
    target_groups: &TargetGroups,
    platform: &Platform<'_>,
) {
    let base = &deployment.base;
    // Rules with a path are evaluated before the host's catch-all.
    let mut routed: Vec<(&str, &Service)> = services
        .iter()
        .map(|(n, s)| (n.get_ref().as_str(), s.get_ref()))
        .filter(|(_, s)| s.is_routed())
        .collect();
    routed.sort_by_key(|(_, s)| s.is_catch_all());

    for (name, service) in services {
        let (name, service) = (name.get_ref().as_str(), service.get_ref());
        let log_group = log_group(
            x,
            Address::new(format!("{base}.log_group.{name}")),
            deployment.log_group_name.replace("{service}", name),
            deployment.log_retention_days,
        );
        let task_definition = task_definition(
            x,
            Address::new(format!("{base}.task_definition.{name}")),
            deployment,
            name,
            service,
            &log_group,
            platform,
        );

        let mut load_balancers = Vec::new();
        let mut service_after = Vec::new();
        if let (Some(port), Some(target_group_arn)) = (service.port(), target_groups.arns.get(name))
        {
            let needs_rule =
                matches!(deployment.catch_all, CatchAll::OwnRule) || !service.is_catch_all();
            if needs_rule {
                let offset = routed.iter().position(|(n, _)| *n == name).expect("routed") as u32;
                let rule = Address::new(format!("{}.{name}", listener_rules_of(base)));
                x.add(NodeSpec::of(
                    rule.clone(),
                    ListenerRuleSpec {
                        listener_arn: (&platform.ingress.rules_listener).into(),
                        priority: int(deployment.first_priority + offset).into(),
                        host_headers: deployment.host.iter().cloned().collect::<Vec<_>>().into(),
                        path_patterns: Some(
                            match (&service.path, service.is_catch_all()) {
                                (Some(p), false) => vec![p.get_ref().clone()],
                                _ => Vec::new(),
                            }
                            .into(),
                        ),
                        target_group_arn: target_group_arn.into(),
                    },
                ));
                service_after.push(rule);
            } else {
                service_after.push(platform.ingress.fallback_listener.clone());
            }
            load_balancers.push(Input::from(LoadBalancerSpec {
                target_group_arn: target_group_arn.into(),
                container_name: name.into(),
                container_port: int(port).into(),
            }));
        }
        // A service behind a load balancer has time to start before its health counts.
        let grace_period = (!load_balancers.is_empty()).then(|| {
            let grace = service
                .health_check
                .as_ref()
                .map_or(60, |h| h.start_period.max(60));
            int(grace).into()
        });
        let mut node = NodeSpec::of(
            format!("{base}.service.{name}"),
            ServiceSpec {
                name: ecs_service_name(&deployment.service_prefix, name).into(),
                cluster: (&platform.cluster.arn).into(),
                task_definition_arn: task_definition.into(),
                desired_count: int(*service.desired_count.get_ref()).into(),
                desired_count_scaled: service.autoscaling.is_some().then(|| true.into()),
                launch_type: "FARGATE".into(),
                subnet_ids: platform.network.task_subnets.clone(),
                security_group_ids: vec![Input::from(&platform.security_groups.services[name])]
                    .into(),
                assign_public_ip: platform.network.assign_public_ip.into(),
                load_balancers: load_balancers.into(),
                health_check_grace_period_seconds: grace_period,
                deployment_minimum_healthy_percent: Some(100.into()),
                deployment_maximum_percent: Some(200.into()),
                enable_execute_command: None,
            },
        );
        // Tasks need their routes out to pull images; a routed service also needs the rule
        // (or listener) that attaches its target group, which ECS insists on.
        for r in platform.network.task_routes.iter().chain(&service_after) {
            node = node.after(r.clone());
        }
        x.add(node);
    }
    if let (Some(host), Some(zone)) = (&deployment.host, platform.zone) {
        x.add(NodeSpec::of(
            format!("{base}.dns_record"),
            RecordSpec {
                zone_id: (&zone.id).into(),
                name: host.into(),
                r#type: "A".into(),
                share_identical: None,
                ttl: None,
                records: None,
                alias: Some(
                    AliasSpec {
                        dns_name: (&platform.ingress.dns_name).into(),
                        hosted_zone_id: (&platform.ingress.canonical_hosted_zone_id).into(),
                        evaluate_target_health: true.into(),
                    }
                    .into(),
                ),
            },
        ));
    }
}

/// The task definition of `name` in `deployment`: one container, its image from the registry,
/// its secrets from Secrets Manager, its logs to `log_group`. Returns its ARN.
fn task_definition(
    x: &mut Expansion,
    address: Address,
    deployment: &Deployment,
    name: &str,
    service: &Service,
    log_group: &OutputRef<String>,
    platform: &Platform<'_>,
) -> OutputRef<String> {
    let mut environment: BTreeMap<String, Input<String>> = service
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), v.into()))
        .collect();
    for (k, v) in platform.database_environment {
        environment.entry(k.clone()).or_insert_with(|| v.clone());
    }
    environment.extend(
        deployment
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.into())),
    );
    let secrets: BTreeMap<String, Input<String>> = service
        .secrets
        .iter()
        .filter_map(|k| {
            let arn = platform.secrets.arns.get(k.get_ref())?;
            Some((k.get_ref().clone(), arn.into()))
        })
        .collect();
    let port_mappings: Vec<Input<_>> = service
        .port()
        .map(|p| {
            Input::from(PortMappingSpec {
                container_port: int(p).into(),
                protocol: "tcp".into(),
            })
        })
        .into_iter()
        .collect();
    let container = ContainerSpec {
        name: name.into(),
        image: Input::concat([
            (&platform.registry.repository_uri).into(),
            format!(":{}", service.image_tag.get_ref()).into(),
        ]),
        essential: true.into(),
        port_mappings: port_mappings.into(),
        environment: ContainerSpec::variables(environment),
        secrets: ContainerSpec::variables(secrets),
        log: ContainerLogSpec {
            group: log_group.into(),
            region: platform.region.into(),
            stream_prefix: deployment.stream_prefix(name).into(),
        }
        .into(),
        // Plain data, its fields in the order ECS documents them.
        health_check: service.health_check.as_ref().map(|h| {
            Input::value(HealthCheckProps {
                command: vec!["CMD-SHELL".to_owned(), h.command.get_ref().clone()],
                interval: int(h.interval),
                timeout: int(h.timeout),
                retries: int(h.retries),
                start_period: int(h.start_period),
            })
        }),
    };
    x.add(NodeSpec::of(
        address.clone(),
        TaskDefinitionSpec {
            family: deployment.family(name, service).into(),
            cpu: service.cpu.get_ref().to_string().into(),
            memory: service.memory.get_ref().to_string().into(),
            network_mode: "awsvpc".into(),
            requires_compatibilities: vec!["FARGATE"].into(),
            execution_role_arn: (&platform.cluster.execution_role_arn).into(),
            task_role_arn: Some((&platform.cluster.task_role_arn).into()),
            containers: vec![Input::from(container)].into(),
        },
    ));
    outputs_of::<TaskDefinitionProps>(&address).arn
}

/// A log group named `name`, its events kept `retention_days` (for ever without). Returns its
/// name, as the containers use it.
pub fn log_group(
    x: &mut Expansion,
    address: Address,
    name: String,
    retention_days: Option<u32>,
) -> OutputRef<String> {
    x.add(NodeSpec::of(
        address.clone(),
        LogGroupSpec {
            name: name.into(),
            retention_in_days: retention_days.map(|r| int(r).into()),
        },
    ));
    outputs_of::<LogGroupProps>(&address).name
}

/// A target group of IP targets, health-checked over HTTP.
pub struct TargetGroup<'a> {
    pub name: String,
    pub vpc_id: &'a OutputRef<String>,
    pub port: u32,
    pub health_check_path: &'a str,
    pub interval_seconds: u32,
    pub unhealthy_threshold: u32,
}

/// The target group `spec` describes, at `address`; returns its ARN.
pub fn target_group(
    x: &mut Expansion,
    address: Address,
    spec: &TargetGroup<'_>,
) -> OutputRef<String> {
    x.add(NodeSpec::of(
        address.clone(),
        TargetGroupSpec {
            name: (&spec.name).into(),
            protocol: "HTTP".into(),
            port: int(spec.port).into(),
            vpc_id: spec.vpc_id.into(),
            target_type: "ip".into(),
            // Plain data, its fields in the order the load balancer's API lists them.
            health_check: Input::value(HealthCheck {
                path: spec.health_check_path.to_owned(),
                protocol: Some("HTTP".to_owned()),
                interval_seconds: int(spec.interval_seconds),
                timeout_seconds: 5,
                healthy_threshold: 2,
                unhealthy_threshold: int(spec.unhealthy_threshold),
                matcher: Some("200".to_owned()),
            }),
            deregistration_delay_seconds: Some(30.into()),
        },
    ));
    outputs_of::<TargetGroupProps>(&address).arn
}
