//! ECS: the cluster, the task definitions and the Fargate services that run the applications.

use dagform_core::typed::Input;
use dagform_core::{ResourceError, Value};
use dagform_derive::{Outputs, Properties};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use std::collections::{BTreeMap, HashSet};

/// ECS's rule for cluster, service, family and container names.
fn valid_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn in_range(what: &str, v: i32, min: i32, max: i32) -> Result<(), ResourceError> {
    if (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(ResourceError::invalid(format!(
            "{what} must be between {min} and {max}, not {v}"
        )))
    }
}

// --- aws_ecs_cluster ---

/// `aws_ecs_cluster`: a cluster, with Container Insights on or off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_ecs_cluster", outputs = ClusterOutputs, check = ClusterProps::check)]
pub struct ClusterProps {
    #[kind(replace)]
    pub name: String,
    pub container_insights: bool,
}

impl ClusterProps {
    fn check(&self) -> Result<(), ResourceError> {
        if !valid_name(&self.name) {
            return Err(ResourceError::invalid(format!(
                "cluster name `{}` must be 1-255 letters, digits, hyphens or underscores",
                self.name
            )));
        }
        Ok(())
    }
}

/// The cluster's id is its ARN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct ClusterOutputs {
    pub id: String,
    pub arn: String,
    pub name: String,
}

// --- aws_ecs_task_definition ---

/// `aws_ecs_task_definition`: one revision of a task family. Revisions are immutable: any
/// change registers a new one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(
    name = "aws_ecs_task_definition",
    outputs = TaskDefinitionOutputs,
    check = TaskDefinitionProps::check
)]
pub struct TaskDefinitionProps {
    #[kind(replace)]
    pub family: String,
    /// CPU units, e.g. `"256"`.
    #[kind(replace)]
    pub cpu: String,
    /// MiB, e.g. `"512"`.
    #[kind(replace)]
    pub memory: String,
    #[kind(replace)]
    pub network_mode: String,
    #[kind(replace)]
    pub requires_compatibilities: Vec<String>,
    #[kind(replace)]
    pub execution_role_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[kind(replace)]
    pub task_role_arn: Option<String>,
    #[kind(replace)]
    pub containers: Vec<ContainerProps>,
}

/// One container of a task definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(nested)]
pub struct ContainerProps {
    pub name: String,
    /// The image URI, e.g. a repository URL and a tag joined.
    pub image: String,
    pub essential: bool,
    pub port_mappings: Vec<PortMappingProps>,
    /// Plain variables, name → value, in the given order.
    pub environment: Map<String, Json>,
    /// Variable name → ARN of the secret (or parameter) ECS injects it from, in the given
    /// order.
    pub secrets: Map<String, Json>,
    pub log: ContainerLogProps,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckProps>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(nested)]
pub struct PortMappingProps {
    pub container_port: i32,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// Where a container's output goes: a CloudWatch Logs group, through the `awslogs` driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(nested)]
pub struct ContainerLogProps {
    pub group: String,
    pub region: String,
    pub stream_prefix: String,
}

/// A container's own health check; times in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(nested)]
pub struct HealthCheckProps {
    pub command: Vec<String>,
    pub interval: i32,
    pub timeout: i32,
    pub retries: i32,
    pub start_period: i32,
}

/// The memory sizes (MiB) Fargate allows for a task CPU size (CPU units).
fn fargate_memory_allowed(cpu: u32, memory: u32) -> bool {
    let (min, max, step) = match cpu {
        256 => return matches!(memory, 512 | 1024 | 2048),
        512 => (1024, 4096, 1024),
        1024 => (2048, 8192, 1024),
        2048 => (4096, 16384, 1024),
        4096 => (8192, 30720, 1024),
        8192 => (16384, 61440, 4096),
        16384 => (32768, 122880, 8192),
        _ => return false,
    };
    (min..=max).contains(&memory) && memory.is_multiple_of(step)
}

impl TaskDefinitionProps {
    fn check(&self) -> Result<(), ResourceError> {
        if !valid_name(&self.family) {
            return Err(ResourceError::invalid(format!(
                "family `{}` must be 1-255 letters, digits, hyphens or underscores",
                self.family
            )));
        }
        if !matches!(
            self.network_mode.as_str(),
            "awsvpc" | "bridge" | "host" | "none"
        ) {
            return Err(ResourceError::invalid(format!(
                "network_mode `{}` must be awsvpc, bridge, host or none",
                self.network_mode
            )));
        }
        if let Some(c) = self
            .requires_compatibilities
            .iter()
            .find(|c| !matches!(c.as_str(), "FARGATE" | "EC2" | "EXTERNAL"))
        {
            return Err(ResourceError::invalid(format!(
                "requires_compatibilities: `{c}` must be FARGATE, EC2 or EXTERNAL"
            )));
        }
        if self.requires_compatibilities.iter().any(|c| c == "FARGATE") {
            self.check_fargate()?;
        }
        if self.containers.is_empty() {
            return Err(ResourceError::invalid(
                "a task definition needs a container",
            ));
        }
        if !self.containers.iter().any(|c| c.essential) {
            return Err(ResourceError::invalid(
                "at least one container must be essential",
            ));
        }
        let mut names = HashSet::new();
        for c in &self.containers {
            if !valid_name(&c.name) || !names.insert(c.name.as_str()) {
                return Err(ResourceError::invalid(format!(
                    "container name `{}` must be unique and 1-255 letters, digits, hyphens or underscores",
                    c.name
                )));
            }
            c.check()?;
        }
        Ok(())
    }

    fn check_fargate(&self) -> Result<(), ResourceError> {
        if self.network_mode != "awsvpc" {
            return Err(ResourceError::invalid(
                "Fargate task definitions need network_mode awsvpc",
            ));
        }
        let size = |s: &str| s.parse::<u32>().ok();
        let fits = matches!((size(&self.cpu), size(&self.memory)),
            (Some(cpu), Some(memory)) if fargate_memory_allowed(cpu, memory));
        if !fits {
            return Err(ResourceError::invalid(format!(
                "cpu {} with memory {} is not a Fargate task size (e.g. cpu 256 takes \
                 memory 512, 1024 or 2048; cpu 1024 takes 2048-8192 in steps of 1024)",
                self.cpu, self.memory
            )));
        }
        Ok(())
    }
}

impl ContainerProps {
    /// Everything but the name, which [`TaskDefinitionProps::check`] checks against the
    /// other containers'.
    fn check(&self) -> Result<(), ResourceError> {
        let name = &self.name;
        if self.image.trim().is_empty() {
            return Err(ResourceError::invalid(format!(
                "container `{name}` needs an image"
            )));
        }
        for m in &self.port_mappings {
            in_range(
                &format!("container `{name}` port"),
                m.container_port,
                1,
                65535,
            )?;
            if !matches!(m.protocol.as_str(), "tcp" | "udp") {
                return Err(ResourceError::invalid(format!(
                    "container `{name}` port {}: protocol must be tcp or udp",
                    m.container_port
                )));
            }
        }
        for (what, vars) in [
            ("environment variable", &self.environment),
            ("secret", &self.secrets),
        ] {
            if let Some((k, _)) = vars.iter().find(|(k, v)| k.is_empty() || !v.is_string()) {
                return Err(ResourceError::invalid(format!(
                    "container `{name}`: {what} `{k}` must be a non-empty name with a string value"
                )));
            }
        }
        if let Some(k) = self
            .secrets
            .keys()
            .find(|k| self.environment.contains_key(*k))
        {
            return Err(ResourceError::invalid(format!(
                "container `{name}`: `{k}` is both an environment variable and a secret"
            )));
        }
        let log = &self.log;
        if [&log.group, &log.region, &log.stream_prefix]
            .iter()
            .any(|s| s.is_empty())
        {
            return Err(ResourceError::invalid(format!(
                "container `{name}`: log group, region and stream_prefix are required"
            )));
        }
        if let Some(h) = &self.health_check {
            if h.command.is_empty() {
                return Err(ResourceError::invalid(format!(
                    "container `{name}`: health check needs a command"
                )));
            }
            in_range("health check interval", h.interval, 5, 300)?;
            in_range("health check timeout", h.timeout, 2, 120)?;
            in_range("health check retries", h.retries, 1, 10)?;
            in_range("health check start_period", h.start_period, 0, 300)?;
        }
        Ok(())
    }
}

impl ContainerProps {
    /// The plain variables as name and value, in order.
    pub fn environment_vars(&self) -> impl Iterator<Item = (&str, &str)> {
        string_pairs(&self.environment)
    }

    /// The secret variables as name and the ARN they come from, in order.
    pub fn secret_refs(&self) -> impl Iterator<Item = (&str, &str)> {
        string_pairs(&self.secrets)
    }
}

/// The string entries of an `environment` or `secrets` object (the check allows no others).
fn string_pairs(map: &Map<String, Json>) -> impl Iterator<Item = (&str, &str)> {
    map.iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
}

impl ContainerSpec {
    /// An `environment` or `secrets` object from values that may be other nodes' outputs.
    pub fn variables(vars: BTreeMap<String, Input<String>>) -> Input<Map<String, Json>> {
        Input::untyped(
            Value::Map(vars.into_iter().map(|(k, v)| (k, v.into_value())).collect())
                .partially_resolve(&|_| None),
        )
    }
}

/// The revision's id is its ARN (`…:task-definition/family:revision`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct TaskDefinitionOutputs {
    pub id: String,
    pub arn: String,
    pub family: String,
    pub revision: i32,
}

// --- aws_ecs_service ---

/// `aws_ecs_service`: a replica service in awsvpc mode, optionally behind target groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_ecs_service", outputs = ServiceOutputs, check = ServiceProps::check)]
pub struct ServiceProps {
    #[kind(replace)]
    pub name: String,
    /// Cluster ARN or name.
    #[kind(replace)]
    pub cluster: String,
    pub task_definition_arn: String,
    pub desired_count: i32,
    /// Set while auto scaling moves the task count: `desired_count` is then only the count the
    /// service starts with, never drift and never reset by an update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_count_scaled: Option<bool>,
    /// `FARGATE` or `EC2`.
    #[kind(replace)]
    pub launch_type: String,
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    pub assign_public_ip: bool,
    #[kind(replace)]
    pub load_balancers: Vec<LoadBalancerProps>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_minimum_healthy_percent: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_maximum_percent: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_execute_command: Option<bool>,
}

/// A target group the service registers one container port of its tasks with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(nested)]
pub struct LoadBalancerProps {
    pub target_group_arn: String,
    pub container_name: String,
    pub container_port: i32,
}

impl ServiceProps {
    fn check(&self) -> Result<(), ResourceError> {
        if !valid_name(&self.name) {
            return Err(ResourceError::invalid(format!(
                "service name `{}` must be 1-255 letters, digits, hyphens or underscores",
                self.name
            )));
        }
        if self.cluster.is_empty() {
            return Err(ResourceError::invalid("cluster is required"));
        }
        if self.desired_count < 0 {
            return Err(ResourceError::invalid("desired_count must not be negative"));
        }
        if !matches!(self.launch_type.as_str(), "FARGATE" | "EC2") {
            return Err(ResourceError::invalid(format!(
                "launch_type must be FARGATE or EC2, not `{}`",
                self.launch_type
            )));
        }
        if !(1..=16).contains(&self.subnet_ids.len()) {
            return Err(ResourceError::invalid("subnet_ids needs 1 to 16 subnets"));
        }
        if !(1..=5).contains(&self.security_group_ids.len()) {
            return Err(ResourceError::invalid(
                "security_group_ids needs 1 to 5 security groups",
            ));
        }
        if self.load_balancers.len() > 5 {
            return Err(ResourceError::invalid(
                "a service takes at most 5 load balancers",
            ));
        }
        if let Some(lb) = self
            .load_balancers
            .iter()
            .find(|lb| !(1..=65535).contains(&lb.container_port) || lb.container_name.is_empty())
        {
            return Err(ResourceError::invalid(format!(
                "load balancer {}: needs a container name and a port 1-65535",
                lb.target_group_arn
            )));
        }
        if self
            .health_check_grace_period_seconds
            .is_some_and(|g| g < 0)
        {
            return Err(ResourceError::invalid(
                "health_check_grace_period_seconds must not be negative",
            ));
        }
        if self
            .deployment_minimum_healthy_percent
            .is_some_and(|m| !(0..=100).contains(&m))
        {
            return Err(ResourceError::invalid(
                "deployment_minimum_healthy_percent must be between 0 and 100",
            ));
        }
        if self.deployment_maximum_percent.is_some_and(|m| m < 100) {
            return Err(ResourceError::invalid(
                "deployment_maximum_percent must be at least 100",
            ));
        }
        Ok(())
    }
}

/// The service's id is its ARN; `cluster` is the ARN of the cluster it runs in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct ServiceOutputs {
    pub id: String,
    pub arn: String,
    pub name: String,
    pub cluster: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagform_core::typed::{KindProperties, OutputRef};
    use dagform_core::{Address, Reference};
    use serde_json::json;

    /// What the blueprint builds, references inside nested containers included, parses as
    /// the kind's properties once the references are resolved.
    #[test]
    fn a_spec_with_references_resolves_to_valid_properties() {
        let repository: OutputRef<String> =
            OutputRef::new(Address::new("shared.ecr"), "repository_uri");
        let log_group: OutputRef<String> =
            OutputRef::new(Address::new("app.log_group.api"), "name");
        let secret: OutputRef<String> = OutputRef::new(Address::new("shared.secret.DB"), "arn");
        let container = ContainerSpec {
            name: "api".into(),
            image: Input::concat([repository.into(), ":latest".into()]),
            essential: true.into(),
            port_mappings: vec![Input::from(PortMappingSpec {
                container_port: Input::value(4000),
                protocol: "tcp".into(),
            })]
            .into(),
            environment: ContainerSpec::variables(BTreeMap::from([(
                "PORT".to_owned(),
                Input::from("4000"),
            )])),
            secrets: ContainerSpec::variables(BTreeMap::from([("DB".to_owned(), secret.into())])),
            log: ContainerLogSpec {
                group: log_group.into(),
                region: "us-east-1".into(),
                stream_prefix: "ecs".into(),
            }
            .into(),
            health_check: None,
        };
        let spec = TaskDefinitionSpec {
            family: "api".into(),
            cpu: "256".into(),
            memory: "512".into(),
            network_mode: "awsvpc".into(),
            requires_compatibilities: vec!["FARGATE"].into(),
            execution_role_arn: "arn:aws:iam::1:role/exec".into(),
            task_role_arn: None,
            containers: vec![Input::from(container)].into(),
        };
        let outputs = |r: &Reference| {
            Some(json!(match r.output.as_str() {
                "repository_uri" => "1.dkr.ecr.us-east-1.amazonaws.com/app",
                "name" => "/ecs/api",
                _ => "arn:aws:secretsmanager:us-east-1:1:secret:DB",
            }))
        };
        let resolved: dagform_core::Properties = spec
            .into_properties()
            .into_iter()
            .map(|(k, v)| (k, v.partially_resolve(&outputs).as_data().cloned().unwrap()))
            .collect();
        let p = TaskDefinitionProps::parse(&resolved).unwrap();
        let c = &p.containers[0];
        assert_eq!(c.image, "1.dkr.ecr.us-east-1.amazonaws.com/app:latest");
        assert_eq!(c.log.group, "/ecs/api");
        assert_eq!(
            c.secret_refs().collect::<Vec<_>>(),
            [("DB", "arn:aws:secretsmanager:us-east-1:1:secret:DB")]
        );
        assert_eq!(c.environment_vars().collect::<Vec<_>>(), [("PORT", "4000")]);
        assert!(!resolved.contains_key("task_role_arn"));
    }

    #[test]
    fn fargate_sizes() {
        assert!(fargate_memory_allowed(256, 512));
        assert!(fargate_memory_allowed(256, 2048));
        assert!(!fargate_memory_allowed(256, 4096));
        assert!(fargate_memory_allowed(512, 3072));
        assert!(!fargate_memory_allowed(512, 512));
        assert!(fargate_memory_allowed(4096, 30720));
        assert!(fargate_memory_allowed(8192, 20480));
        assert!(!fargate_memory_allowed(8192, 18432));
        assert!(!fargate_memory_allowed(300, 1024));
    }
}
