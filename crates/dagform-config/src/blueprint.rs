//! Expands a configuration into the resource graph: shared infrastructure once, and one set of
//! log groups, target groups, listener rules, task definitions, services and a DNS record per
//! customer.

use crate::error::ConfigError;
use crate::model::{Config, NatGateways, Service};
use crate::naming::{PRIORITY_BLOCK, allocate_priority_blocks, elb_name};
use dagform_core::{Address, GraphBuilder, NodeSpec, ResourceGraph, State, Value, props};
use serde_json::json;
use std::collections::BTreeMap;

/// A named value the stack reports after a run (`dagform output`).
#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub name: String,
    pub description: String,
    pub value: Value,
}

/// The desired resources of one stack.
#[derive(Debug, Clone)]
pub struct Blueprint {
    pub stack: String,
    pub region: String,
    pub graph: ResourceGraph,
    pub outputs: Vec<OutputSpec>,
}

/// The ECS task execution policy AWS manages: pull images, write logs.
pub const TASK_EXECUTION_POLICY: &str =
    "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";

const ALB_SG: &str = "shared.security_group.alb";

fn sg(service: &str) -> String {
    format!("shared.security_group.{service}")
}

/// Expands `config`; `state` supplies listener rule priorities already allocated, so they
/// never move.
pub fn blueprint(config: &Config, state: Option<&State>) -> Result<Blueprint, ConfigError> {
    let env = config.stack.environment.get_ref().as_str();
    let app = config.stack.app.get_ref().as_str();
    let region = config.region().to_owned();
    let prefix = format!("{env}-{app}");
    let mut b = GraphBuilder::new();
    let mut outputs = Vec::new();

    // Registry.
    let repo_name = config
        .registry
        .name
        .as_ref()
        .map_or_else(|| app.to_owned(), |n| n.get_ref().clone());
    let mut ecr = props! {
        "name" => repo_name,
        "image_tag_mutability" => if config.registry.immutable_tags { "IMMUTABLE" } else { "MUTABLE" },
        "scan_on_push" => true,
        "force_delete" => true,
    };
    if let Some(n) = &config.registry.keep_last_images {
        ecr.insert("keep_last_images".into(), Value::from(*n.get_ref()));
    }
    b.add(NodeSpec::new("shared.ecr", "aws_ecr_repository", ecr));

    // Network: a VPC across the zones, public subnets behind an internet gateway, private
    // subnets behind NAT gateways.
    let net = &config.network;
    b.add(NodeSpec::new(
        "shared.vpc",
        "aws_vpc",
        props! {
            "name" => format!("{env}-vpc"),
            "cidr_block" => net.cidr.get_ref().as_str(),
            "enable_dns_hostnames" => true,
            "enable_dns_support" => true,
        },
    ));
    let vpc_id = || Value::reference("shared.vpc", "id");
    b.add(NodeSpec::new(
        "shared.internet_gateway",
        "aws_internet_gateway",
        props! { "name" => format!("{env}-igw"), "vpc_id" => vpc_id() },
    ));
    b.add(NodeSpec::new(
        "shared.route_table.public",
        "aws_route_table",
        props! {
            "name" => format!("{env}-public-rt"),
            "vpc_id" => vpc_id(),
            "routes" => Value::List(vec![Value::Map(BTreeMap::from([
                ("destination_cidr_block".to_string(), Value::from("0.0.0.0/0")),
                ("gateway_id".to_string(), Value::reference("shared.internet_gateway", "id")),
            ]))]),
        },
    ));
    let zones = net.availability_zones.get_ref();
    let mut public_subnets = Vec::new();
    let mut private_subnets = Vec::new();
    for (i, zone) in zones.iter().enumerate() {
        let n = i + 1;
        let public = format!("shared.subnet.public_{n}");
        let private = format!("shared.subnet.private_{n}");
        b.add(NodeSpec::new(
            public.as_str(),
            "aws_subnet",
            props! {
                "name" => format!("{env}-public-subnet-{n}"),
                "vpc_id" => vpc_id(),
                "cidr_block" => net.public_subnets.get_ref().get(i).cloned().unwrap_or_default(),
                "availability_zone" => zone.as_str(),
                "map_public_ip_on_launch" => true,
            },
        ));
        b.add(NodeSpec::new(
            private.as_str(),
            "aws_subnet",
            props! {
                "name" => format!("{env}-private-subnet-{n}"),
                "vpc_id" => vpc_id(),
                "cidr_block" => net.private_subnets.get_ref().get(i).cloned().unwrap_or_default(),
                "availability_zone" => zone.as_str(),
                "map_public_ip_on_launch" => false,
            },
        ));
        b.add(NodeSpec::new(
            format!("shared.route_table_association.public_{n}"),
            "aws_route_table_association",
            props! {
                "route_table_id" => Value::reference("shared.route_table.public", "id"),
                "subnet_id" => Value::reference(public.as_str(), "id"),
            },
        ));
        // With a single NAT gateway every zone routes through the first one.
        let nat_zone = match net.nat_gateways {
            NatGateways::PerAz => n,
            NatGateways::Single => 1,
        };
        if nat_zone == n {
            b.add(NodeSpec::new(
                format!("shared.eip.nat_{n}"),
                "aws_eip",
                props! { "name" => format!("{env}-nat-eip-{n}") },
            ));
            // A NAT gateway only works once the VPC has its internet gateway.
            b.add(
                NodeSpec::new(
                    format!("shared.nat_gateway.{n}"),
                    "aws_nat_gateway",
                    props! {
                        "name" => format!("{env}-nat-{n}"),
                        "subnet_id" => Value::reference(public.as_str(), "id"),
                        "allocation_id" => Value::reference(format!("shared.eip.nat_{n}"), "id"),
                    },
                )
                .after("shared.internet_gateway"),
            );
        }
        b.add(NodeSpec::new(
            format!("shared.route_table.private_{n}"),
            "aws_route_table",
            props! {
                "name" => format!("{env}-private-rt-{n}"),
                "vpc_id" => vpc_id(),
                "routes" => Value::List(vec![Value::Map(BTreeMap::from([
                    ("destination_cidr_block".to_string(), Value::from("0.0.0.0/0")),
                    ("nat_gateway_id".to_string(), Value::reference(format!("shared.nat_gateway.{nat_zone}"), "id")),
                ]))]),
            },
        ));
        b.add(NodeSpec::new(
            format!("shared.route_table_association.private_{n}"),
            "aws_route_table_association",
            props! {
                "route_table_id" => Value::reference(format!("shared.route_table.private_{n}"), "id"),
                "subnet_id" => Value::reference(private.as_str(), "id"),
            },
        ));
        public_subnets.push(Value::reference(public, "id"));
        private_subnets.push(Value::reference(private, "id"));
    }

    // Security groups: the load balancer takes 80/443 from anywhere and may only reach the
    // services' ports; each routed service takes its port from the load balancer only; a
    // service without a port (the worker) takes nothing at all.
    b.add(NodeSpec::new(
        ALB_SG,
        "aws_security_group",
        props! {
            "name" => format!("{prefix}-alb-sg"),
            "description" => format!("{prefix} load balancer: HTTP and HTTPS from the internet"),
            "vpc_id" => vpc_id(),
            "revoke_default_egress" => true,
        },
    ));
    for port in [80u32, 443] {
        b.add(NodeSpec::new(
            format!("shared.security_group_rule.alb_ingress_{port}"),
            "aws_security_group_rule",
            props! {
                "security_group_id" => Value::reference(ALB_SG, "id"),
                "direction" => "ingress",
                "protocol" => "tcp",
                "from_port" => port,
                "to_port" => port,
                "cidr_ipv4" => "0.0.0.0/0",
                "description" => if port == 80 { "HTTP from anywhere" } else { "HTTPS from anywhere" },
            },
        ));
    }
    for (name, svc) in &config.services {
        let name = name.get_ref().as_str();
        let s = svc.get_ref();
        let group = sg(name);
        b.add(NodeSpec::new(
            group.as_str(),
            "aws_security_group",
            props! {
                "name" => format!("{prefix}-{name}-sg"),
                "description" => match s.port() {
                    Some(p) => format!("{prefix} {name}: port {p} from the load balancer only"),
                    None => format!("{prefix} {name}: no inbound traffic"),
                },
                "vpc_id" => vpc_id(),
                "revoke_default_egress" => false,
            },
        ));
        if let Some(port) = s.port() {
            b.add(NodeSpec::new(
                format!("shared.security_group_rule.{name}_ingress"),
                "aws_security_group_rule",
                props! {
                    "security_group_id" => Value::reference(group.as_str(), "id"),
                    "direction" => "ingress",
                    "protocol" => "tcp",
                    "from_port" => port,
                    "to_port" => port,
                    "peer_security_group_id" => Value::reference(ALB_SG, "id"),
                    "description" => format!("{name} from the load balancer"),
                },
            ));
            b.add(NodeSpec::new(
                format!("shared.security_group_rule.alb_egress_{name}"),
                "aws_security_group_rule",
                props! {
                    "security_group_id" => Value::reference(ALB_SG, "id"),
                    "direction" => "egress",
                    "protocol" => "tcp",
                    "from_port" => port,
                    "to_port" => port,
                    "peer_security_group_id" => Value::reference(group.as_str(), "id"),
                    "description" => format!("load balancer to {name}"),
                },
            ));
        }
    }

    // Cluster, shared log groups, roles.
    let cluster_name = format!("{prefix}-cluster");
    b.add(NodeSpec::new(
        "shared.cluster",
        "aws_ecs_cluster",
        props! { "name" => cluster_name.as_str(), "container_insights" => false },
    ));
    let retention = config.logs.retention_days.as_ref().map(|r| *r.get_ref());
    let log_group = |name: String| {
        let mut p = props! { "name" => name };
        if let Some(r) = retention {
            p.insert("retention_in_days".into(), Value::from(r));
        }
        p
    };
    for name in config.service_names() {
        b.add(NodeSpec::new(
            format!("shared.log_group.{name}"),
            "aws_cloudwatch_log_group",
            log_group(format!("/ecs/{prefix}-{name}")),
        ));
    }
    b.add(NodeSpec::new(
        "shared.role.task_execution",
        "aws_iam_role",
        props! {
            "name" => format!("{prefix}-task-execution-role"),
            "description" => "Lets ECS pull images and write logs for the stack's tasks",
            "trusted_service" => "ecs-tasks.amazonaws.com",
            "managed_policy_arns" => vec![TASK_EXECUTION_POLICY],
            "inline_policies" => json!({}),
        },
    ));
    b.add(NodeSpec::new(
        "shared.role.task",
        "aws_iam_role",
        props! {
            "name" => format!("{prefix}-task-role"),
            "description" => "The identity of the stack's application containers",
            "trusted_service" => "ecs-tasks.amazonaws.com",
            "managed_policy_arns" => Vec::<Value>::new(),
            "inline_policies" => json!({}),
        },
    ));

    // DNS zone and the wildcard certificate, validated through records in that zone.
    b.add(NodeSpec::new(
        "shared.zone",
        "data_route53_zone",
        props! { "name" => config.dns.zone.get_ref().trim_end_matches('.'), "private_zone" => false },
    ));
    let cert = &config.certificate;
    b.add(NodeSpec::new(
        "shared.certificate",
        "aws_acm_certificate",
        props! {
            "domain_name" => cert.domain.get_ref().as_str(),
            "subject_alternative_names" => cert.alternative_names.iter().map(|n| Value::from(n.get_ref().as_str())).collect::<Vec<_>>(),
            "validation_method" => "DNS",
        },
    ));
    // A wildcard and its apex share one validation record.
    let mut bases: Vec<String> = std::iter::once(&cert.domain)
        .chain(&cert.alternative_names)
        .map(|n| n.get_ref().trim_start_matches("*.").to_ascii_lowercase())
        .collect();
    bases.sort();
    bases.dedup();
    let mut validation = NodeSpec::new(
        "shared.certificate_validation",
        "aws_acm_certificate_validation",
        props! { "certificate_arn" => Value::reference("shared.certificate", "arn") },
    );
    for i in 0..bases.len() {
        let address = format!("shared.certificate_record.{}", i + 1);
        let record = |field: &str| {
            Value::reference(
                "shared.certificate",
                format!("validation_records.{i}.{field}"),
            )
        };
        b.add(NodeSpec::new(
            address.as_str(),
            "aws_route53_record",
            props! {
                "zone_id" => Value::reference("shared.zone", "id"),
                "name" => record("name"),
                "type" => record("type"),
                "ttl" => 300u32,
                "records" => Value::List(vec![record("value")]),
            },
        ));
        validation = validation.after(address);
    }
    b.add(validation);

    // The shared load balancer.
    let mut alb = props! {
        "name" => elb_name(&format!("{prefix}-alb")),
        "scheme" => "internet-facing",
        "subnet_ids" => public_subnets.clone(),
        "security_group_ids" => vec![Value::reference(ALB_SG, "id")],
    };
    if let Some(t) = &config.load_balancer.idle_timeout_seconds {
        alb.insert("idle_timeout_seconds".into(), Value::from(*t.get_ref()));
    }
    // The load balancer's subnets need the internet gateway's route to be reachable.
    b.add(
        NodeSpec::new("shared.alb", "aws_lb", alb).after("shared.route_table_association.public_1"),
    );
    b.add(NodeSpec::new(
        "shared.target_group.default",
        "aws_lb_target_group",
        target_group(&elb_name(&format!("{prefix}-default-tg")), 80, "/"),
    ));
    b.add(NodeSpec::new(
        "shared.listener.http",
        "aws_lb_listener",
        props! {
            "load_balancer_arn" => Value::reference("shared.alb", "arn"),
            "port" => 80u32,
            "protocol" => "HTTP",
            "default_action" => json!({"type": "redirect", "protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"}),
        },
    ));
    let https = props! {
        "load_balancer_arn" => Value::reference("shared.alb", "arn"),
        "port" => 443u32,
        "protocol" => "HTTPS",
        // Taken from the validation node, so the listener waits until the certificate is issued.
        "certificate_arn" => Value::reference("shared.certificate_validation", "certificate_arn"),
        "ssl_policy" => config.load_balancer.ssl_policy.as_ref().map_or("ELBSecurityPolicy-TLS13-1-2-2021-06", |p| p.get_ref().as_str()),
        "default_action" => Value::Map(BTreeMap::from([
            ("type".to_string(), Value::from("forward")),
            ("target_group_arn".to_string(), Value::reference("shared.target_group.default", "arn")),
        ])),
    };
    b.add(NodeSpec::new(
        "shared.listener.https",
        "aws_lb_listener",
        https,
    ));

    outputs.push(output(
        "alb_dns_name",
        "the load balancer's DNS name",
        Value::reference("shared.alb", "dns_name"),
    ));
    outputs.push(output(
        "ecr_repository_uri",
        "where to push images",
        Value::reference("shared.ecr", "repository_uri"),
    ));
    outputs.push(output(
        "cluster_name",
        "the ECS cluster",
        Value::reference("shared.cluster", "name"),
    ));
    outputs.push(output(
        "certificate_arn",
        "the wildcard certificate",
        Value::reference("shared.certificate", "arn"),
    ));

    // Per customer.
    let customers: Vec<&str> = config.customer_names().collect();
    let blocks = allocate_priority_blocks(&customers, &existing_blocks(state, &customers))
        .map_err(|m| {
            ConfigError::Graph(dagform_core::Error::Plan {
                address: Address::new("customers"),
                message: m,
            })
        })?;
    // Rules with a path are evaluated before the host's catch-all.
    let mut routed: Vec<(&str, &Service)> = config
        .services
        .iter()
        .map(|(n, s)| (n.get_ref().as_str(), s.get_ref()))
        .filter(|(_, s)| s.is_routed())
        .collect();
    routed.sort_by_key(|(_, s)| s.is_catch_all());

    for (cname, cust) in &config.customers {
        let c = cname.get_ref().as_str();
        let cu = cust.get_ref();
        let domain = cu
            .domain
            .get_ref()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let base = format!("customer.{c}");
        for (sname, svc) in &config.services {
            let s = sname.get_ref().as_str();
            let sv = svc.get_ref();
            b.add(NodeSpec::new(
                format!("{base}.log_group.{s}"),
                "aws_cloudwatch_log_group",
                log_group(format!("/ecs/{c}-{s}")),
            ));
            let mut environment: BTreeMap<String, Value> = sv
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            environment.extend(
                cu.environment
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.as_str()))),
            );
            environment.insert("CUSTOMER_NAME".into(), Value::from(c));
            environment.insert("CUSTOMER_DOMAIN".into(), Value::from(domain.as_str()));
            environment.insert(
                "INSTANCE_DISPLAY_NAME".into(),
                Value::from(cu.display_name.get_ref().as_str()),
            );
            environment.insert(
                "PUBLIC_URL".into(),
                Value::from(format!("https://{domain}")),
            );
            let mut container = BTreeMap::from([
                ("name".to_string(), Value::from(s)),
                (
                    "image".to_string(),
                    Value::concat(vec![
                        Value::reference("shared.ecr", "repository_uri"),
                        Value::from(format!(":{}", sv.image_tag.get_ref())),
                    ]),
                ),
                ("essential".to_string(), Value::from(true)),
                (
                    "environment".to_string(),
                    Value::Map(environment).partially_resolve(&|_| None),
                ),
                ("secrets".to_string(), Value::from(json!({}))),
                (
                    "log".to_string(),
                    Value::Map(BTreeMap::from([
                        (
                            "group".to_string(),
                            Value::reference(format!("{base}.log_group.{s}"), "name"),
                        ),
                        ("region".to_string(), Value::from(region.as_str())),
                        ("stream_prefix".to_string(), Value::from(s)),
                    ])),
                ),
            ]);
            container.insert(
                "port_mappings".into(),
                Value::from(match sv.port() {
                    Some(p) => json!([{"container_port": p, "protocol": "tcp"}]),
                    None => json!([]),
                }),
            );
            b.add(NodeSpec::new(
                format!("{base}.task_definition.{s}"),
                "aws_ecs_task_definition",
                props! {
                    "family" => format!("{env}-{c}-{s}"),
                    "cpu" => sv.cpu.get_ref().to_string(),
                    "memory" => sv.memory.get_ref().to_string(),
                    "network_mode" => "awsvpc",
                    "requires_compatibilities" => vec!["FARGATE"],
                    "execution_role_arn" => Value::reference("shared.role.task_execution", "arn"),
                    "task_role_arn" => Value::reference("shared.role.task", "arn"),
                    "containers" => Value::List(vec![Value::Map(container)]),
                },
            ));
            let mut load_balancers = Vec::new();
            let mut service_after = Vec::new();
            if let Some(port) = sv.port() {
                let tg = format!("{base}.target_group.{s}");
                b.add(NodeSpec::new(
                    tg.as_str(),
                    "aws_lb_target_group",
                    target_group(
                        &elb_name(&format!("{env}-{c}-{s}-tg")),
                        port,
                        sv.health_check_path
                            .as_ref()
                            .map_or("/", |p| p.get_ref().as_str()),
                    ),
                ));
                let offset = routed.iter().position(|(n, _)| *n == s).expect("routed") as u32;
                let rule = format!("{base}.listener_rule.{s}");
                b.add(NodeSpec::new(
                    rule.as_str(),
                    "aws_lb_listener_rule",
                    props! {
                        "listener_arn" => Value::reference("shared.listener.https", "arn"),
                        "priority" => blocks[c] * PRIORITY_BLOCK + offset,
                        "host_headers" => vec![domain.as_str()],
                        "path_patterns" => match (&sv.path, sv.is_catch_all()) {
                            (Some(p), false) => vec![p.get_ref().as_str()],
                            _ => Vec::new(),
                        },
                        "target_group_arn" => Value::reference(tg.as_str(), "arn"),
                    },
                ));
                load_balancers.push(Value::Map(BTreeMap::from([
                    ("target_group_arn".to_string(), Value::reference(tg, "arn")),
                    ("container_name".to_string(), Value::from(s)),
                    ("container_port".to_string(), Value::from(port)),
                ])));
                // ECS refuses a target group no listener uses yet.
                service_after.push(rule);
            }
            let mut service = NodeSpec::new(
                format!("{base}.service.{s}"),
                "aws_ecs_service",
                props! {
                    "name" => format!("{c}-{s}"),
                    "cluster" => Value::reference("shared.cluster", "arn"),
                    "task_definition_arn" => Value::reference(format!("{base}.task_definition.{s}"), "arn"),
                    "desired_count" => *sv.desired_count.get_ref(),
                    "launch_type" => "FARGATE",
                    "subnet_ids" => private_subnets.clone(),
                    "security_group_ids" => vec![Value::reference(sg(s), "id")],
                    "assign_public_ip" => false,
                    "load_balancers" => Value::from(load_balancers.clone()),
                    "deployment_minimum_healthy_percent" => 100u32,
                    "deployment_maximum_percent" => 200u32,
                },
            );
            if !load_balancers.is_empty() {
                service.properties.insert(
                    "health_check_grace_period_seconds".into(),
                    Value::from(60u32),
                );
            }
            // Private tasks need their NAT route to pull images.
            for i in 1..=zones.len() {
                service = service.after(format!("shared.route_table_association.private_{i}"));
            }
            for a in service_after {
                service = service.after(a);
            }
            b.add(service);
        }
        b.add(NodeSpec::new(
            format!("{base}.dns_record"),
            "aws_route53_record",
            props! {
                "zone_id" => Value::reference("shared.zone", "id"),
                "name" => domain.as_str(),
                "type" => "A",
                "alias" => Value::Map(BTreeMap::from([
                    ("dns_name".to_string(), Value::reference("shared.alb", "dns_name")),
                    ("hosted_zone_id".to_string(), Value::reference("shared.alb", "canonical_hosted_zone_id")),
                    ("evaluate_target_health".to_string(), Value::from(true)),
                ])),
            },
        ));
        outputs.push(output(
            &format!("url.{c}"),
            &format!("{}'s address", cu.display_name.get_ref()),
            Value::from(format!("https://{domain}")),
        ));
    }

    Ok(Blueprint {
        stack: config.stack_name(),
        region,
        graph: b.build()?,
        outputs,
    })
}

fn output(name: &str, description: &str, value: Value) -> OutputSpec {
    OutputSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        value,
    }
}

fn target_group(name: &str, port: u32, health_check_path: &str) -> BTreeMap<String, Value> {
    props! {
        "name" => name,
        "protocol" => "HTTP",
        "port" => port,
        "vpc_id" => Value::reference("shared.vpc", "id"),
        "target_type" => "ip",
        "health_check" => json!({
            "path": health_check_path,
            "protocol": "HTTP",
            "interval_seconds": 30,
            "timeout_seconds": 5,
            "healthy_threshold": 2,
            "unhealthy_threshold": 3,
            "matcher": "200",
        }),
        "deregistration_delay_seconds" => 30u32,
    }
}

/// Priority blocks customers already hold, read from their recorded listener rules.
fn existing_blocks(state: Option<&State>, customers: &[&str]) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    let Some(state) = state else { return out };
    for c in customers {
        let prefix = format!("customer.{c}.listener_rule");
        let block = state
            .resources
            .iter()
            .filter(|(a, _)| a.is_within(&prefix))
            .filter_map(|(_, r)| r.properties.get("priority").and_then(|p| p.as_u64()))
            .map(|p| p as u32 / PRIORITY_BLOCK)
            .min();
        if let Some(b) = block {
            out.insert((*c).to_owned(), b);
        }
    }
    out
}
