//! Expands a configuration into the resource graph: the shared platform once (network, security
//! groups, cluster, roles, registry, certificate, load balancer, secrets, database), then each
//! service once per customer — or once, for a stack without customers.

use crate::error::{ConfigError, Diagnostic};
use crate::model::{
    Config, Customer, HttpListener, Logs, NatGateways, Secret, Service, Stack, Validation,
};
use crate::naming::{PRIORITY_BLOCK, allocate_priority_blocks, elb_name};
use dagform_core::{Address, GraphBuilder, NodeSpec, ResourceGraph, State, Value, props};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

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
    /// Secret values that could not be read (unset variable, missing file). Planning or applying
    /// needs them; destroying or inspecting does not.
    pub missing_secrets: Vec<Diagnostic>,
}

impl Blueprint {
    /// Fails when a secret value the configuration names could not be read.
    pub fn require_secrets(&self) -> Result<(), ConfigError> {
        if self.missing_secrets.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.missing_secrets.clone()))
        }
    }
}

/// The ECS task execution policy AWS manages: pull images, write logs.
pub const TASK_EXECUTION_POLICY: &str =
    "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";

const ALB_SG: &str = "shared.security_group.alb";
const DB_SG: &str = "shared.security_group.database";
const POSTGRES_PORT: u32 = 5432;

fn sg(service: &str) -> String {
    format!("shared.security_group.{service}")
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
    .partially_resolve(&|_| None)
}

/// Where the network's pieces come from: created here, or looked up.
struct NetworkRefs {
    vpc_id: Value,
    /// Subnets of the load balancer.
    public_subnets: Value,
    /// Subnets of the tasks and the database.
    task_subnets: Value,
    /// What tasks must wait for to reach the internet (their NAT routes).
    task_routes: Vec<String>,
    /// What the load balancer must wait for (the internet gateway's route).
    alb_routes: Vec<String>,
}

/// One deployment of the services: a customer's copy, or the stack's only one.
struct Instance<'a> {
    base: String,
    customer: Option<(&'a str, &'a Customer)>,
    /// The customer's host name, for listener rules and the DNS record.
    domain: Option<String>,
}

impl Instance<'_> {
    fn log_group(&self, logs: &Logs, stack: &Stack, service: &str) -> String {
        let customer = self.customer.map(|(c, _)| c).unwrap_or_default();
        logs.group_name_template(self.customer.is_some())
            .replace("{environment}", stack.environment.get_ref())
            .replace("{app}", stack.app.get_ref())
            .replace("{customer}", customer)
            .replace("{service}", service)
    }

    fn stream_prefix<'s>(&self, service: &'s str) -> &'s str {
        if self.customer.is_some() {
            service
        } else {
            "ecs"
        }
    }

    fn family(&self, prefix: &str, service: &str, svc: &Service) -> String {
        if let Some(f) = &svc.family {
            return f.get_ref().clone();
        }
        match self.customer {
            Some((c, _)) => format!("{prefix}-{c}-{service}"),
            None => format!("{prefix}-{service}"),
        }
    }

    fn service_name(&self, service: &str) -> String {
        match self.customer {
            Some((c, _)) => format!("{c}-{service}"),
            None => service.to_owned(),
        }
    }

    fn target_group_name(&self, prefix: &str, service: &str, svc: &Service) -> String {
        if let Some(n) = &svc.target_group_name {
            return n.get_ref().clone();
        }
        match self.customer {
            Some((c, _)) => elb_name(&format!("{prefix}-{c}-{service}")),
            None => elb_name(&format!("{prefix}-{service}")),
        }
    }
}

/// Expands `config` (read from `config_path`, against which secret files are resolved);
/// `state` supplies listener rule priorities already allocated, so they never move.
pub fn blueprint(
    config: &Config,
    config_path: &Path,
    state: Option<&State>,
) -> Result<Blueprint, ConfigError> {
    let mut x = Expander {
        config,
        config_dir: config_path.parent().unwrap_or(Path::new(".")),
        config_path,
        source: &config.source,
        env: config.stack.environment.get_ref().as_str(),
        prefix: format!(
            "{}-{}",
            config.stack.environment.get_ref(),
            config.stack.app.get_ref()
        ),
        region: config.region().to_owned(),
        b: GraphBuilder::new(),
        outputs: Vec::new(),
        missing_secrets: Vec::new(),
    };
    x.registry();
    if let Some(dns) = &config.dns {
        // An existing public zone, looked up by name and never changed.
        x.add(NodeSpec::new(
            "shared.zone",
            "data_route53_zone",
            props! { "name" => dns.zone.get_ref().trim_end_matches('.'), "private_zone" => false },
        ));
    }
    let net = x.network();
    x.security_groups();
    x.cluster_and_roles();
    let certificate_arn = x.certificate();
    x.load_balancer(&net, certificate_arn.as_ref());
    x.secrets();
    let database_env = x.database(&net);
    x.instances(&net, certificate_arn.is_some(), &database_env, state)?;
    let Expander {
        b,
        outputs,
        missing_secrets,
        region,
        ..
    } = x;
    Ok(Blueprint {
        stack: config.stack_name(),
        region,
        graph: b.build()?,
        outputs,
        missing_secrets,
    })
}

struct Expander<'a> {
    config: &'a Config,
    config_dir: &'a Path,
    config_path: &'a Path,
    /// The configuration's text, to locate errors in it.
    source: &'a str,
    env: &'a str,
    prefix: String,
    region: String,
    b: GraphBuilder,
    outputs: Vec<OutputSpec>,
    missing_secrets: Vec<Diagnostic>,
}

impl Expander<'_> {
    fn add(&mut self, node: NodeSpec) {
        self.b.add(node);
    }

    fn output(&mut self, name: &str, description: &str, value: Value) {
        self.outputs.push(OutputSpec {
            name: name.to_owned(),
            description: description.to_owned(),
            value,
        });
    }

    fn registry(&mut self) {
        let reg = &self.config.registry;
        let mut ecr = props! {
            "name" => reg.name.as_ref().map_or_else(|| self.prefix.clone(), |n| n.get_ref().clone()),
            "image_tag_mutability" => if reg.immutable_tags { "IMMUTABLE" } else { "MUTABLE" },
            "scan_on_push" => true,
            "force_delete" => reg.force_delete,
        };
        if let Some(n) = &reg.keep_last_images {
            ecr.insert("keep_last_images".into(), Value::from(*n.get_ref()));
        }
        self.add(NodeSpec::new("shared.ecr", "aws_ecr_repository", ecr));
        self.output(
            "ecr_repository_uri",
            "where to push images",
            Value::reference("shared.ecr", "repository_uri"),
        );
    }

    /// A VPC across the zones, public subnets behind an internet gateway and private subnets
    /// behind NAT gateways — or an existing VPC, only read.
    fn network(&mut self) -> NetworkRefs {
        let net = self.config.network.get_ref();
        let env = self.env;
        if !net.is_managed() {
            let mut p = props! {};
            if let Some(v) = &net.vpc_id {
                p.insert("vpc_id".into(), Value::from(v.get_ref().as_str()));
            }
            if let Some(tags) = &net.vpc_tags {
                p.insert("vpc_tags".into(), Value::from(json!(tags.get_ref())));
            }
            self.add(NodeSpec::new("shared.network", "data_default_vpc", p));
            let subnets = match &net.subnet_ids {
                Some(ids) => Value::from(
                    ids.get_ref()
                        .iter()
                        .map(|s| Value::from(s.as_str()))
                        .collect::<Vec<_>>(),
                ),
                None => Value::reference("shared.network", "subnet_ids"),
            };
            return NetworkRefs {
                vpc_id: Value::reference("shared.network", "id"),
                public_subnets: subnets.clone(),
                task_subnets: subnets,
                task_routes: Vec::new(),
                alb_routes: Vec::new(),
            };
        }
        let cidr = net
            .cidr
            .as_ref()
            .map(|c| c.get_ref().clone())
            .unwrap_or_default();
        self.add(NodeSpec::new(
            "shared.vpc",
            "aws_vpc",
            props! {
                "name" => format!("{env}-vpc"),
                "cidr_block" => cidr,
                "enable_dns_hostnames" => true,
                "enable_dns_support" => true,
            },
        ));
        let vpc_id = || Value::reference("shared.vpc", "id");
        self.add(NodeSpec::new(
            "shared.internet_gateway",
            "aws_internet_gateway",
            props! { "name" => format!("{env}-igw"), "vpc_id" => vpc_id() },
        ));
        self.add(NodeSpec::new(
            "shared.route_table.public",
            "aws_route_table",
            props! {
                "name" => format!("{env}-public-rt"),
                "vpc_id" => vpc_id(),
                "routes" => Value::List(vec![map(vec![
                    ("destination_cidr_block", Value::from("0.0.0.0/0")),
                    ("gateway_id", Value::reference("shared.internet_gateway", "id")),
                ])]),
            },
        ));
        let subnet = |list: &Option<toml::Spanned<Vec<String>>>, i: usize| {
            list.as_ref()
                .and_then(|l| l.get_ref().get(i).cloned())
                .unwrap_or_default()
        };
        let (mut public, mut private, mut task_routes, mut alb_routes) =
            (vec![], vec![], vec![], vec![]);
        for (i, zone) in net.zones().iter().enumerate() {
            let n = i + 1;
            let public_subnet = format!("shared.subnet.public_{n}");
            let private_subnet = format!("shared.subnet.private_{n}");
            self.add(NodeSpec::new(
                public_subnet.as_str(),
                "aws_subnet",
                props! {
                    "name" => format!("{env}-public-subnet-{n}"),
                    "vpc_id" => vpc_id(),
                    "cidr_block" => subnet(&net.public_subnets, i),
                    "availability_zone" => zone.as_str(),
                    "map_public_ip_on_launch" => true,
                },
            ));
            self.add(NodeSpec::new(
                private_subnet.as_str(),
                "aws_subnet",
                props! {
                    "name" => format!("{env}-private-subnet-{n}"),
                    "vpc_id" => vpc_id(),
                    "cidr_block" => subnet(&net.private_subnets, i),
                    "availability_zone" => zone.as_str(),
                    "map_public_ip_on_launch" => false,
                },
            ));
            let public_assoc = format!("shared.route_table_association.public_{n}");
            self.add(NodeSpec::new(
                public_assoc.as_str(),
                "aws_route_table_association",
                props! {
                    "route_table_id" => Value::reference("shared.route_table.public", "id"),
                    "subnet_id" => Value::reference(public_subnet.as_str(), "id"),
                },
            ));
            // With a single NAT gateway every zone routes through the first one.
            let nat_zone = match net.nat_gateways {
                NatGateways::PerAz => n,
                NatGateways::Single => 1,
            };
            if nat_zone == n {
                self.add(NodeSpec::new(
                    format!("shared.eip.nat_{n}"),
                    "aws_eip",
                    props! { "name" => format!("{env}-nat-eip-{n}") },
                ));
                // A NAT gateway only works once the VPC has its internet gateway.
                self.add(
                    NodeSpec::new(
                        format!("shared.nat_gateway.{n}"),
                        "aws_nat_gateway",
                        props! {
                            "name" => format!("{env}-nat-{n}"),
                            "subnet_id" => Value::reference(public_subnet.as_str(), "id"),
                            "allocation_id" => Value::reference(format!("shared.eip.nat_{n}"), "id"),
                        },
                    )
                    .after("shared.internet_gateway"),
                );
            }
            self.add(NodeSpec::new(
                format!("shared.route_table.private_{n}"),
                "aws_route_table",
                props! {
                    "name" => format!("{env}-private-rt-{n}"),
                    "vpc_id" => vpc_id(),
                    "routes" => Value::List(vec![map(vec![
                        ("destination_cidr_block", Value::from("0.0.0.0/0")),
                        ("nat_gateway_id", Value::reference(format!("shared.nat_gateway.{nat_zone}"), "id")),
                    ])]),
                },
            ));
            let private_assoc = format!("shared.route_table_association.private_{n}");
            self.add(NodeSpec::new(
                private_assoc.as_str(),
                "aws_route_table_association",
                props! {
                    "route_table_id" => Value::reference(format!("shared.route_table.private_{n}"), "id"),
                    "subnet_id" => Value::reference(private_subnet.as_str(), "id"),
                },
            ));
            public.push(Value::reference(public_subnet, "id"));
            private.push(Value::reference(private_subnet, "id"));
            task_routes.push(private_assoc);
            alb_routes.push(public_assoc);
        }
        // Tasks in private subnets reach out through NAT; a stack that asks for public IPs runs
        // them in the public subnets instead.
        let task_subnets = if net.assign_public_ip() {
            public.clone()
        } else {
            private
        };
        NetworkRefs {
            vpc_id: vpc_id(),
            public_subnets: Value::from(public),
            task_subnets: Value::from(task_subnets),
            task_routes,
            alb_routes,
        }
    }

    /// The load balancer takes 80/443 from anywhere and may only reach the services' ports;
    /// each routed service takes its port from the load balancer only; a service without a port
    /// (a worker) takes nothing at all; the database takes 5432 from the services only.
    fn security_groups(&mut self) {
        let prefix = self.prefix.clone();
        let vpc_id = if self.config.network.get_ref().is_managed() {
            Value::reference("shared.vpc", "id")
        } else {
            Value::reference("shared.network", "id")
        };
        self.add(NodeSpec::new(
            ALB_SG,
            "aws_security_group",
            props! {
                "name" => format!("{prefix}-alb-sg"),
                "description" => format!("{prefix} load balancer: HTTP and HTTPS from the internet"),
                "vpc_id" => vpc_id.clone(),
                "revoke_default_egress" => true,
            },
        ));
        for port in [80u32, 443] {
            self.add(NodeSpec::new(
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
        let creates_database = self
            .config
            .database
            .as_ref()
            .is_some_and(|d| d.get_ref().existing.is_none());
        if creates_database {
            self.add(NodeSpec::new(
                DB_SG,
                "aws_security_group",
                props! {
                    "name" => format!("{prefix}-database-sg"),
                    "description" => format!("{prefix} database: PostgreSQL from the services only"),
                    "vpc_id" => vpc_id.clone(),
                    "revoke_default_egress" => false,
                },
            ));
        }
        for (name, svc) in &self.config.services {
            let name = name.get_ref().as_str();
            let s = svc.get_ref();
            let group = sg(name);
            self.add(NodeSpec::new(
                group.as_str(),
                "aws_security_group",
                props! {
                    "name" => format!("{prefix}-{name}-sg"),
                    "description" => match s.port() {
                        Some(p) => format!("{prefix} {name}: port {p} from the load balancer only"),
                        None => format!("{prefix} {name}: no inbound traffic"),
                    },
                    "vpc_id" => vpc_id.clone(),
                    "revoke_default_egress" => false,
                },
            ));
            if let Some(port) = s.port() {
                self.add(NodeSpec::new(
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
                self.add(NodeSpec::new(
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
            if creates_database {
                self.add(NodeSpec::new(
                    format!("shared.security_group_rule.database_from_{name}"),
                    "aws_security_group_rule",
                    props! {
                        "security_group_id" => Value::reference(DB_SG, "id"),
                        "direction" => "ingress",
                        "protocol" => "tcp",
                        "from_port" => POSTGRES_PORT,
                        "to_port" => POSTGRES_PORT,
                        "peer_security_group_id" => Value::reference(group.as_str(), "id"),
                        "description" => format!("PostgreSQL from {name}"),
                    },
                ));
            }
        }
    }

    fn cluster_and_roles(&mut self) {
        let prefix = self.prefix.clone();
        let cluster = &self.config.cluster;
        let name = cluster
            .name
            .as_ref()
            .map_or_else(|| format!("{prefix}-cluster"), |n| n.get_ref().clone());
        self.add(NodeSpec::new(
            "shared.cluster",
            "aws_ecs_cluster",
            props! { "name" => name, "container_insights" => cluster.container_insights },
        ));
        self.output(
            "cluster_name",
            "the ECS cluster",
            Value::reference("shared.cluster", "name"),
        );
        // The execution role reads exactly the stack's secrets, nothing else.
        let secret_arns: Vec<Value> = self
            .config
            .secrets
            .keys()
            .map(|k| Value::reference(format!("shared.secret.{}", k.get_ref()), "arn"))
            .collect();
        let inline = if secret_arns.is_empty() {
            Value::from(json!({}))
        } else {
            map(vec![(
                "read-secrets",
                map(vec![
                    ("Version", Value::from("2012-10-17")),
                    (
                        "Statement",
                        Value::List(vec![map(vec![
                            ("Effect", Value::from("Allow")),
                            ("Action", Value::from(vec!["secretsmanager:GetSecretValue"])),
                            ("Resource", Value::from(secret_arns)),
                        ])]),
                    ),
                ]),
            )])
        };
        self.add(NodeSpec::new(
            "shared.role.task_execution",
            "aws_iam_role",
            props! {
                "name" => format!("{prefix}-task-execution-role"),
                "description" => "Lets ECS pull images, write logs and read the stack's secrets",
                "trusted_service" => "ecs-tasks.amazonaws.com",
                "managed_policy_arns" => vec![TASK_EXECUTION_POLICY],
                "inline_policies" => inline,
            },
        ));
        self.add(NodeSpec::new(
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
        for name in self
            .config
            .service_names()
            .map(str::to_owned)
            .collect::<Vec<_>>()
        {
            if self.config.has_customers() {
                let group = self.log_group(format!("/ecs/{prefix}-{name}"));
                self.add(NodeSpec::new(
                    format!("shared.log_group.{name}"),
                    "aws_cloudwatch_log_group",
                    group,
                ));
            }
        }
    }

    fn log_group(&self, name: String) -> BTreeMap<String, Value> {
        let mut p = props! { "name" => name };
        if let Some(r) = &self.config.logs.retention_days {
            p.insert("retention_in_days".into(), Value::from(*r.get_ref()));
        }
        p
    }

    /// The certificate the HTTPS listener uses, once issued: requested and validated here
    /// (through Route 53, or by records the user adds elsewhere), or an existing one.
    fn certificate(&mut self) -> Option<Value> {
        let cert = self.config.certificate.as_ref()?.get_ref();
        if let Some(arn) = &cert.arn {
            return Some(Value::from(arn.get_ref().as_str()));
        }
        let domain = cert.domain.as_ref()?.get_ref().clone();
        let dns = self.config.dns.as_ref();
        self.add(NodeSpec::new(
            "shared.certificate",
            "aws_acm_certificate",
            props! {
                "domain_name" => domain.as_str(),
                "subject_alternative_names" => cert.alternative_names.iter().map(|n| Value::from(n.get_ref().as_str())).collect::<Vec<_>>(),
                "validation_method" => "DNS",
            },
        ));
        let mut validation = NodeSpec::new(
            "shared.certificate_validation",
            "aws_acm_certificate_validation",
            props! {
                "certificate_arn" => Value::reference("shared.certificate", "arn"),
                "timeout_seconds" => (cert.timeout_minutes(dns) * 60) as i64,
            },
        );
        match cert.validation(dns) {
            Validation::Route53 => {
                // A wildcard and its apex share one validation record.
                let mut bases: Vec<String> = std::iter::once(domain.as_str())
                    .chain(cert.alternative_names.iter().map(|n| n.get_ref().as_str()))
                    .map(|n| n.trim_start_matches("*.").to_ascii_lowercase())
                    .collect();
                bases.sort();
                bases.dedup();
                for i in 0..bases.len() {
                    let address = format!("shared.certificate_record.{}", i + 1);
                    let record = |field: &str| {
                        Value::reference(
                            "shared.certificate",
                            format!("validation_records.{i}.{field}"),
                        )
                    };
                    self.add(NodeSpec::new(
                        address.as_str(),
                        "aws_route53_record",
                        props! {
                            "zone_id" => Value::reference("shared.zone", "id"),
                            "name" => record("name"),
                            "type" => record("type"),
                            "ttl" => 300u32,
                            "records" => Value::List(vec![record("value")]),
                            // Every certificate of this name in the account needs this very
                            // record: another stack's identical one serves as it is.
                            "share_identical" => true,
                        },
                    ));
                    validation = validation.after(address);
                }
            }
            Validation::External => self.output(
                "certificate_validation_records",
                "the DNS records to add at the domain's DNS host",
                Value::reference("shared.certificate", "validation_records"),
            ),
        }
        self.add(validation);
        self.output(
            "certificate_arn",
            "the certificate",
            Value::reference("shared.certificate", "arn"),
        );
        // Taken from the validation node, so the listener waits until the certificate is issued.
        Some(Value::reference(
            "shared.certificate_validation",
            "certificate_arn",
        ))
    }

    fn load_balancer(&mut self, net: &NetworkRefs, certificate_arn: Option<&Value>) {
        let lb = &self.config.load_balancer;
        let mut alb = props! {
            "name" => lb.name.as_ref().map_or_else(|| elb_name(&format!("{}-alb", self.prefix)), |n| n.get_ref().clone()),
            "scheme" => "internet-facing",
            "security_group_ids" => vec![Value::reference(ALB_SG, "id")],
        };
        if let Some(t) = &lb.idle_timeout_seconds {
            alb.insert("idle_timeout_seconds".into(), Value::from(*t.get_ref()));
        }
        alb.insert("subnet_ids".into(), net.public_subnets.clone());
        // The load balancer's subnets need the internet gateway's route to be reachable.
        let mut node = NodeSpec::new("shared.alb", "aws_lb", alb);
        for r in &net.alb_routes {
            node = node.after(r.as_str());
        }
        self.add(node);
        self.output(
            "alb_dns_name",
            "the load balancer's DNS name",
            Value::reference("shared.alb", "dns_name"),
        );

        // Customers share a default target group for hosts no rule matches (as the seed
        // does); a stack without customers sends everything to its catch-all service.
        let default_action = if self.config.has_customers() {
            self.add(NodeSpec::new(
                "shared.target_group.default",
                "aws_lb_target_group",
                target_group(
                    &elb_name(&format!("{}-default-tg", self.prefix)),
                    &Value::reference("shared.vpc", "id"),
                    80,
                    "/",
                    30,
                    3,
                ),
            ));
            forward("shared.target_group.default")
        } else {
            match self
                .config
                .services
                .iter()
                .find(|(_, s)| s.get_ref().is_routed() && s.get_ref().is_catch_all())
            {
                Some((name, _)) => forward(&format!("app.target_group.{}", name.get_ref())),
                None => Value::from(
                    json!({"type": "fixed-response", "status_code": "404", "content_type": "text/plain", "message_body": "not found"}),
                ),
            }
        };
        let http_action = match (certificate_arn.is_some(), lb.http) {
            (true, HttpListener::Redirect) => Value::from(
                json!({"type": "redirect", "protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"}),
            ),
            _ => default_action.clone(),
        };
        self.add(NodeSpec::new(
            "shared.listener.http",
            "aws_lb_listener",
            props! {
                "load_balancer_arn" => Value::reference("shared.alb", "arn"),
                "port" => 80u32,
                "protocol" => "HTTP",
                "default_action" => http_action,
            },
        ));
        if let Some(cert) = certificate_arn {
            self.add(NodeSpec::new(
                "shared.listener.https",
                "aws_lb_listener",
                props! {
                    "load_balancer_arn" => Value::reference("shared.alb", "arn"),
                    "port" => 443u32,
                    "protocol" => "HTTPS",
                    "certificate_arn" => cert.clone(),
                    "ssl_policy" => lb.ssl_policy.as_ref().map_or("ELBSecurityPolicy-TLS13-1-2-2021-06", |p| p.get_ref().as_str()),
                    "default_action" => default_action,
                },
            ));
        }
    }

    /// Secrets Manager secrets, their values read now from the environment or files; or
    /// existing secrets, only read.
    fn secrets(&mut self) {
        for (key, secret) in &self.config.secrets {
            let key = key.get_ref();
            let s: &Secret = secret.get_ref();
            let address = format!("shared.secret.{key}");
            if let Some(arn) = &s.arn {
                self.add(NodeSpec::new(
                    address,
                    "data_secretsmanager_secret",
                    props! { "name_or_arn" => arn.get_ref().as_str() },
                ));
                continue;
            }
            let value = match (&s.from_env, &s.from_file) {
                (Some(var), _) => std::env::var(var.get_ref()).map_err(|_| {
                    (
                        var.span().start,
                        format!("secrets.{key}.from_env"),
                        format!("environment variable `{}` is not set", var.get_ref()),
                    )
                }),
                (None, Some(file)) => {
                    let path = self.config_dir.join(file.get_ref());
                    std::fs::read_to_string(&path)
                        .map(|v| v.trim_end_matches(['\n', '\r']).to_owned())
                        .map_err(|e| {
                            (
                                file.span().start,
                                format!("secrets.{key}.from_file"),
                                format!("cannot read {}: {e}", path.display()),
                            )
                        })
                }
                (None, None) => Err((
                    secret.span().start,
                    format!("secrets.{key}"),
                    "no value source".to_owned(),
                )),
            };
            let value = value.unwrap_or_else(|(offset, field, message)| {
                self.missing_secrets.push(Diagnostic::at(
                    self.config_path,
                    self.source,
                    offset,
                    &field,
                    message,
                ));
                String::new()
            });
            let name = s.name.as_ref().map_or_else(
                || {
                    format!(
                        "{}/{}",
                        self.prefix,
                        key.to_ascii_lowercase().replace('_', "-")
                    )
                },
                |n| n.get_ref().clone(),
            );
            let mut p = props! { "name" => name, "value" => value };
            if let Some(d) = &s.description {
                p.insert("description".into(), Value::from(d.as_str()));
            }
            if let Some(w) = &s.recovery_window_days {
                p.insert("recovery_window_days".into(), Value::from(*w.get_ref()));
            }
            self.add(NodeSpec::new(address, "aws_secretsmanager_secret", p));
        }
    }

    /// A private, encrypted PostgreSQL instance with SSL enforced and its master password kept
    /// by AWS — or an existing instance, only read. Returns the environment that points the
    /// services at it.
    fn database(&mut self, net: &NetworkRefs) -> BTreeMap<String, Value> {
        let Some(db) = &self.config.database else {
            return BTreeMap::new();
        };
        let d = db.get_ref();
        let prefix = self.prefix.clone();
        if let Some(existing) = &d.existing {
            self.add(NodeSpec::new(
                "shared.database",
                "data_db_instance",
                props! { "identifier" => existing.get_ref().as_str() },
            ));
        } else {
            let identifier = d
                .identifier
                .as_ref()
                .map(|i| i.get_ref().clone())
                .unwrap_or_default();
            self.add(NodeSpec::new(
                "shared.database_subnet_group",
                "aws_db_subnet_group",
                props! {
                    "name" => format!("{prefix}-db-subnets"),
                    "description" => format!("{prefix} database subnets"),
                    "subnet_ids" => net.task_subnets.clone(),
                },
            ));
            let major = d
                .engine_version
                .get_ref()
                .split('.')
                .next()
                .unwrap_or("16")
                .to_owned();
            self.add(NodeSpec::new(
                "shared.database_parameters",
                "aws_db_parameter_group",
                props! {
                    "name" => format!("{prefix}-postgres{major}"),
                    "family" => format!("postgres{major}"),
                    "description" => format!("{prefix}: PostgreSQL with SSL enforced"),
                    "parameters" => json!({"rds.force_ssl": "1"}),
                },
            ));
            self.add(NodeSpec::new(
                "shared.database",
                "aws_db_instance",
                props! {
                    "identifier" => identifier,
                    "engine" => "postgres",
                    "engine_version" => d.engine_version.get_ref().as_str(),
                    "instance_class" => d.instance_class.as_str(),
                    "allocated_storage" => *d.allocated_storage.get_ref(),
                    "storage_type" => "gp3",
                    "db_name" => d.name.get_ref().as_str(),
                    "master_username" => d.username.get_ref().as_str(),
                    "manage_master_user_password" => true,
                    "db_subnet_group_name" => Value::reference("shared.database_subnet_group", "name"),
                    "vpc_security_group_ids" => vec![Value::reference(DB_SG, "id")],
                    "parameter_group_name" => Value::reference("shared.database_parameters", "name"),
                    "publicly_accessible" => false,
                    "storage_encrypted" => true,
                    "backup_retention_period" => *d.backup_retention_days.get_ref(),
                    "deletion_protection" => d.deletion_protection,
                    "skip_final_snapshot" => d.skip_final_snapshot,
                    "multi_az" => d.multi_az,
                },
            ));
        }
        self.output(
            "database_endpoint",
            "the database's address",
            Value::reference("shared.database", "endpoint_address"),
        );
        BTreeMap::from([
            (
                "PGHOST".to_owned(),
                Value::reference("shared.database", "endpoint_address"),
            ),
            (
                "PGPORT".to_owned(),
                Value::concat(vec![Value::reference("shared.database", "endpoint_port")]),
            ),
            (
                "PGDATABASE".to_owned(),
                Value::from(d.name.get_ref().as_str()),
            ),
            ("PGSSLMODE".to_owned(), Value::from("require")),
        ])
    }

    fn instances(
        &mut self,
        net: &NetworkRefs,
        https: bool,
        database_env: &BTreeMap<String, Value>,
        state: Option<&State>,
    ) -> Result<(), ConfigError> {
        let config = self.config;
        let customers: Vec<&str> = config.customer_names().collect();
        let blocks = allocate_priority_blocks(&customers, &existing_blocks(state, &customers))
            .map_err(|m| {
                ConfigError::Graph(dagform_core::Error::Plan {
                    address: Address::new("customers"),
                    message: m,
                })
            })?;
        let instances: Vec<(Instance, u32)> = if config.has_customers() {
            config
                .customers
                .iter()
                .map(|(name, c)| {
                    let n = name.get_ref().as_str();
                    let domain = c
                        .get_ref()
                        .domain
                        .get_ref()
                        .trim_end_matches('.')
                        .to_ascii_lowercase();
                    (
                        Instance {
                            base: format!("customer.{n}"),
                            customer: Some((n, c.get_ref())),
                            domain: Some(domain),
                        },
                        blocks[n] * PRIORITY_BLOCK,
                    )
                })
                .collect()
        } else {
            vec![(
                Instance {
                    base: "app".into(),
                    customer: None,
                    domain: None,
                },
                1,
            )]
        };
        for (instance, first_priority) in &instances {
            self.instance(instance, *first_priority, net, https, database_env);
        }
        Ok(())
    }

    fn instance(
        &mut self,
        inst: &Instance,
        first_priority: u32,
        net: &NetworkRefs,
        https: bool,
        database_env: &BTreeMap<String, Value>,
    ) {
        let config = self.config;
        let base = &inst.base;
        let listener = if https {
            "shared.listener.https"
        } else {
            "shared.listener.http"
        };
        // Rules with a path are evaluated before the host's catch-all.
        let mut routed: Vec<(&str, &Service)> = config
            .services
            .iter()
            .map(|(n, s)| (n.get_ref().as_str(), s.get_ref()))
            .filter(|(_, s)| s.is_routed())
            .collect();
        routed.sort_by_key(|(_, s)| s.is_catch_all());

        for (sname, svc) in &config.services {
            let s = sname.get_ref().as_str();
            let sv = svc.get_ref();
            let log_group = format!("{base}.log_group.{s}");
            let group = self.log_group(inst.log_group(&config.logs, &config.stack, s));
            self.add(NodeSpec::new(
                log_group.as_str(),
                "aws_cloudwatch_log_group",
                group,
            ));

            let mut environment: BTreeMap<String, Value> = sv
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            for (k, v) in database_env {
                environment.entry(k.clone()).or_insert_with(|| v.clone());
            }
            if let (Some((c, cu)), Some(domain)) = (inst.customer, &inst.domain) {
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
            }
            let secrets: BTreeMap<String, Value> = sv
                .secrets
                .iter()
                .map(|k| {
                    (
                        k.get_ref().clone(),
                        Value::reference(format!("shared.secret.{}", k.get_ref()), "arn"),
                    )
                })
                .collect();
            let mut container = vec![
                ("name", Value::from(s)),
                (
                    "image",
                    Value::concat(vec![
                        Value::reference("shared.ecr", "repository_uri"),
                        Value::from(format!(":{}", sv.image_tag.get_ref())),
                    ]),
                ),
                ("essential", Value::from(true)),
                (
                    "environment",
                    Value::Map(environment).partially_resolve(&|_| None),
                ),
                ("secrets", Value::Map(secrets).partially_resolve(&|_| None)),
                (
                    "log",
                    map(vec![
                        ("group", Value::reference(log_group.as_str(), "name")),
                        ("region", Value::from(self.region.as_str())),
                        ("stream_prefix", Value::from(inst.stream_prefix(s))),
                    ]),
                ),
                (
                    "port_mappings",
                    Value::from(match sv.port() {
                        Some(p) => json!([{"container_port": p, "protocol": "tcp"}]),
                        None => json!([]),
                    }),
                ),
            ];
            if let Some(h) = &sv.health_check {
                container.push((
                    "health_check",
                    Value::from(json!({
                        "command": ["CMD-SHELL", h.command.get_ref()],
                        "interval": h.interval,
                        "timeout": h.timeout,
                        "retries": h.retries,
                        "start_period": h.start_period,
                    })),
                ));
            }
            self.add(NodeSpec::new(
                format!("{base}.task_definition.{s}"),
                "aws_ecs_task_definition",
                props! {
                    "family" => inst.family(&self.prefix, s, sv),
                    "cpu" => sv.cpu.get_ref().to_string(),
                    "memory" => sv.memory.get_ref().to_string(),
                    "network_mode" => "awsvpc",
                    "requires_compatibilities" => vec!["FARGATE"],
                    "execution_role_arn" => Value::reference("shared.role.task_execution", "arn"),
                    "task_role_arn" => Value::reference("shared.role.task", "arn"),
                    "containers" => Value::List(vec![map(container)]),
                },
            ));

            let mut load_balancers = Vec::new();
            let mut service_after = Vec::new();
            if let Some(port) = sv.port() {
                let tg = format!("{base}.target_group.{s}");
                self.add(NodeSpec::new(
                    tg.as_str(),
                    "aws_lb_target_group",
                    target_group(
                        &inst.target_group_name(&self.prefix, s, sv),
                        &net.vpc_id,
                        port,
                        sv.health_check_path
                            .as_ref()
                            .map_or("/", |p| p.get_ref().as_str()),
                        sv.health_check_interval_seconds,
                        sv.unhealthy_threshold,
                    ),
                ));
                // A stack without customers sends its catch-all service the listener's default
                // traffic; everything else gets a rule.
                let needs_rule = inst.customer.is_some() || !sv.is_catch_all();
                if needs_rule {
                    let offset = routed.iter().position(|(n, _)| *n == s).expect("routed") as u32;
                    let rule = format!("{base}.listener_rule.{s}");
                    self.add(NodeSpec::new(
                        rule.as_str(),
                        "aws_lb_listener_rule",
                        props! {
                            "listener_arn" => Value::reference(listener, "arn"),
                            "priority" => first_priority + offset,
                            "host_headers" => inst.domain.iter().map(|d| Value::from(d.as_str())).collect::<Vec<_>>(),
                            "path_patterns" => match (&sv.path, sv.is_catch_all()) {
                                (Some(p), false) => vec![p.get_ref().as_str()],
                                _ => Vec::new(),
                            },
                            "target_group_arn" => Value::reference(tg.as_str(), "arn"),
                        },
                    ));
                    service_after.push(rule);
                } else {
                    // ECS insists that a listener use the target group before the service
                    // starts: the one that forwards to it.
                    let forwarding = match config.load_balancer.http {
                        HttpListener::Forward => "shared.listener.http",
                        HttpListener::Redirect => listener,
                    };
                    service_after.push(forwarding.to_owned());
                }
                load_balancers.push(map(vec![
                    ("target_group_arn", Value::reference(tg, "arn")),
                    ("container_name", Value::from(s)),
                    ("container_port", Value::from(port)),
                ]));
            }
            let mut service = NodeSpec::new(
                format!("{base}.service.{s}"),
                "aws_ecs_service",
                props! {
                    "name" => inst.service_name(s),
                    "cluster" => Value::reference("shared.cluster", "arn"),
                    "task_definition_arn" => Value::reference(format!("{base}.task_definition.{s}"), "arn"),
                    "desired_count" => *sv.desired_count.get_ref(),
                    "launch_type" => "FARGATE",
                    "subnet_ids" => net.task_subnets.clone(),
                    "security_group_ids" => vec![Value::reference(sg(s), "id")],
                    "assign_public_ip" => config.network.get_ref().assign_public_ip(),
                    "load_balancers" => Value::from(load_balancers.clone()),
                    "deployment_minimum_healthy_percent" => 100u32,
                    "deployment_maximum_percent" => 200u32,
                },
            );
            if !load_balancers.is_empty() {
                let grace = sv
                    .health_check
                    .as_ref()
                    .map_or(60, |h| h.start_period.max(60));
                service.properties.insert(
                    "health_check_grace_period_seconds".into(),
                    Value::from(grace),
                );
            }
            // Tasks need their routes out to pull images; a routed service also needs the rule
            // (or listener) that attaches its target group, which ECS insists on.
            for r in net.task_routes.iter().chain(&service_after) {
                service = service.after(r.as_str());
            }
            self.add(service);
        }
        if let (Some((c, cu)), Some(domain)) = (inst.customer, &inst.domain) {
            self.add(NodeSpec::new(
                format!("{base}.dns_record"),
                "aws_route53_record",
                props! {
                    "zone_id" => Value::reference("shared.zone", "id"),
                    "name" => domain.as_str(),
                    "type" => "A",
                    "alias" => map(vec![
                        ("dns_name", Value::reference("shared.alb", "dns_name")),
                        ("hosted_zone_id", Value::reference("shared.alb", "canonical_hosted_zone_id")),
                        ("evaluate_target_health", Value::from(true)),
                    ]),
                },
            ));
            self.output(
                &format!("url.{c}"),
                &format!("{}'s address", cu.display_name.get_ref()),
                Value::from(format!("https://{domain}")),
            );
        }
    }
}

fn forward(target_group: &str) -> Value {
    map(vec![
        ("type", Value::from("forward")),
        ("target_group_arn", Value::reference(target_group, "arn")),
    ])
}

fn target_group(
    name: &str,
    vpc_id: &Value,
    port: u32,
    health_check_path: &str,
    interval: u32,
    unhealthy: u32,
) -> BTreeMap<String, Value> {
    props! {
        "name" => name,
        "protocol" => "HTTP",
        "port" => port,
        "vpc_id" => vpc_id.clone(),
        "target_type" => "ip",
        "health_check" => json!({
            "path": health_check_path,
            "protocol": "HTTP",
            "interval_seconds": interval,
            "timeout_seconds": 5,
            "healthy_threshold": 2,
            "unhealthy_threshold": unhealthy,
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
