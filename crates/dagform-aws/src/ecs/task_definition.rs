//! `aws_ecs_task_definition`: immutable revisions, replaced create-before-destroy.

use super::valid_name;
use crate::AwsClients;
use crate::error::{classify, code, parse};
use crate::ownership::{pairs, single_attempt, tags_for};
use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, HealthCheck, KeyValuePair, LogConfiguration, LogDriver,
    NetworkMode, PortMapping, Secret, SortOrder, Tag, TaskDefinition, TaskDefinitionField,
    TaskDefinitionStatus, TransportProtocol,
};
use dagform_core::kind::Owner;
use dagform_core::{
    Applied, Current, Observed, OpContext, Properties, ResourceError, ResourceKind,
};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use std::collections::HashSet;
use std::sync::Arc;

/// `aws_ecs_task_definition`: one revision of a task family.
pub struct EcsTaskDefinition {
    clients: Arc<AwsClients>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskDefinitionProps {
    family: String,
    cpu: String,
    memory: String,
    network_mode: String,
    requires_compatibilities: Vec<String>,
    execution_role_arn: String,
    #[serde(default)]
    task_role_arn: Option<String>,
    containers: Vec<ContainerProps>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerProps {
    name: String,
    image: String,
    essential: bool,
    port_mappings: Vec<PortMappingProps>,
    /// Plain variables, in the user's order.
    environment: Map<String, Json>,
    /// Variable name → ARN of the secret (or parameter) ECS injects it from.
    secrets: Map<String, Json>,
    log: LogProps,
    #[serde(default)]
    health_check: Option<HealthCheckProps>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortMappingProps {
    container_port: i32,
    protocol: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogProps {
    group: String,
    region: String,
    stream_prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthCheckProps {
    command: Vec<String>,
    interval: i32,
    timeout: i32,
    retries: i32,
    start_period: i32,
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

fn in_range(what: &str, v: i32, min: i32, max: i32) -> Result<(), ResourceError> {
    if (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(ResourceError::invalid(format!(
            "{what} must be between {min} and {max}, not {v}"
        )))
    }
}

/// The string values of an `environment` or `secrets` object, in order.
fn string_pairs<'a>(
    container: &str,
    what: &str,
    map: &'a Map<String, Json>,
) -> Result<Vec<(&'a str, &'a str)>, ResourceError> {
    map.iter()
        .map(|(k, v)| match v {
            Json::String(s) if !k.is_empty() => Ok((k.as_str(), s.as_str())),
            _ => Err(ResourceError::invalid(format!(
                "container `{container}`: {what} `{k}` must be a non-empty name with a string value"
            ))),
        })
        .collect()
}

impl TaskDefinitionProps {
    fn from(props: &Properties) -> Result<Self, ResourceError> {
        let p: Self = parse(props)?;
        if !valid_name(&p.family) {
            return Err(ResourceError::invalid(format!(
                "family `{}` must be 1-255 letters, digits, hyphens or underscores",
                p.family
            )));
        }
        if !matches!(
            p.network_mode.as_str(),
            "awsvpc" | "bridge" | "host" | "none"
        ) {
            return Err(ResourceError::invalid(format!(
                "network_mode `{}` must be awsvpc, bridge, host or none",
                p.network_mode
            )));
        }
        if let Some(c) = p
            .requires_compatibilities
            .iter()
            .find(|c| !matches!(c.as_str(), "FARGATE" | "EC2" | "EXTERNAL"))
        {
            return Err(ResourceError::invalid(format!(
                "requires_compatibilities: `{c}` must be FARGATE, EC2 or EXTERNAL"
            )));
        }
        if p.requires_compatibilities.iter().any(|c| c == "FARGATE") {
            if p.network_mode != "awsvpc" {
                return Err(ResourceError::invalid(
                    "Fargate task definitions need network_mode awsvpc",
                ));
            }
            let size = |s: &str| s.parse::<u32>().ok();
            let fits = matches!((size(&p.cpu), size(&p.memory)),
                (Some(cpu), Some(memory)) if fargate_memory_allowed(cpu, memory));
            if !fits {
                return Err(ResourceError::invalid(format!(
                    "cpu {} with memory {} is not a Fargate task size (e.g. cpu 256 takes \
                     memory 512, 1024 or 2048; cpu 1024 takes 2048-8192 in steps of 1024)",
                    p.cpu, p.memory
                )));
            }
        }
        if p.containers.is_empty() {
            return Err(ResourceError::invalid(
                "a task definition needs a container",
            ));
        }
        if !p.containers.iter().any(|c| c.essential) {
            return Err(ResourceError::invalid(
                "at least one container must be essential",
            ));
        }
        let mut names = HashSet::new();
        for c in &p.containers {
            if !valid_name(&c.name) || !names.insert(c.name.as_str()) {
                return Err(ResourceError::invalid(format!(
                    "container name `{}` must be unique and 1-255 letters, digits, hyphens or underscores",
                    c.name
                )));
            }
            if c.image.trim().is_empty() {
                return Err(ResourceError::invalid(format!(
                    "container `{}` needs an image",
                    c.name
                )));
            }
            for m in &c.port_mappings {
                in_range(
                    &format!("container `{}` port", c.name),
                    m.container_port,
                    1,
                    65535,
                )?;
                if !matches!(m.protocol.as_str(), "tcp" | "udp") {
                    return Err(ResourceError::invalid(format!(
                        "container `{}` port {}: protocol must be tcp or udp",
                        c.name, m.container_port
                    )));
                }
            }
            string_pairs(&c.name, "environment variable", &c.environment)?;
            string_pairs(&c.name, "secret", &c.secrets)?;
            if let Some(k) = c.secrets.keys().find(|k| c.environment.contains_key(*k)) {
                return Err(ResourceError::invalid(format!(
                    "container `{}`: `{k}` is both an environment variable and a secret",
                    c.name
                )));
            }
            if [&c.log.group, &c.log.region, &c.log.stream_prefix]
                .iter()
                .any(|s| s.is_empty())
            {
                return Err(ResourceError::invalid(format!(
                    "container `{}`: log group, region and stream_prefix are required",
                    c.name
                )));
            }
            if let Some(h) = &c.health_check {
                if h.command.is_empty() {
                    return Err(ResourceError::invalid(format!(
                        "container `{}`: health check needs a command",
                        c.name
                    )));
                }
                in_range("health check interval", h.interval, 5, 300)?;
                in_range("health check timeout", h.timeout, 2, 120)?;
                in_range("health check retries", h.retries, 1, 10)?;
                in_range("health check start_period", h.start_period, 0, 300)?;
            }
        }
        Ok(p)
    }
}

impl ContainerProps {
    fn definition(&self) -> Result<ContainerDefinition, ResourceError> {
        let build_err = |e: aws_smithy_types::error::operation::BuildError| {
            ResourceError::failed(e.to_string())
        };
        let ports = self
            .port_mappings
            .iter()
            .map(|m| {
                PortMapping::builder()
                    .container_port(m.container_port)
                    .protocol(TransportProtocol::from(m.protocol.as_str()))
                    .build()
            })
            .collect();
        let environment = string_pairs(&self.name, "environment variable", &self.environment)?
            .into_iter()
            .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
            .collect();
        let secrets = string_pairs(&self.name, "secret", &self.secrets)?
            .into_iter()
            .map(|(k, v)| Secret::builder().name(k).value_from(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(build_err)?;
        let log = LogConfiguration::builder()
            .log_driver(LogDriver::Awslogs)
            .options("awslogs-group", &self.log.group)
            .options("awslogs-region", &self.log.region)
            .options("awslogs-stream-prefix", &self.log.stream_prefix)
            .build()
            .map_err(build_err)?;
        let health_check = match &self.health_check {
            Some(h) => Some(
                HealthCheck::builder()
                    .set_command(Some(h.command.clone()))
                    .interval(h.interval)
                    .timeout(h.timeout)
                    .retries(h.retries)
                    .start_period(h.start_period)
                    .build()
                    .map_err(build_err)?,
            ),
            None => None,
        };
        Ok(ContainerDefinition::builder()
            .name(&self.name)
            .image(&self.image)
            .essential(self.essential)
            .set_port_mappings(Some(ports))
            .set_environment(Some(environment))
            .set_secrets(Some(secrets))
            .log_configuration(log)
            .set_health_check(health_check)
            .build())
    }
}

/// A container definition as read back, in the shape of [`ContainerProps`].
fn observed_container(c: &ContainerDefinition, recorded: Option<&Json>) -> Json {
    let mut out = Map::new();
    out.insert("name".into(), c.name().unwrap_or_default().into());
    out.insert("image".into(), c.image().unwrap_or_default().into());
    out.insert("essential".into(), c.essential().unwrap_or(true).into());
    let ports: Vec<Json> = c
        .port_mappings()
        .iter()
        .map(|m| {
            json!({
                "container_port": m.container_port(),
                "protocol": m.protocol().map_or("tcp", |p| p.as_str()),
            })
        })
        .collect();
    out.insert("port_mappings".into(), ports.into());
    let environment: Map<String, Json> = c
        .environment()
        .iter()
        .map(|kv| {
            (
                kv.name().unwrap_or_default().to_owned(),
                kv.value().unwrap_or_default().into(),
            )
        })
        .collect();
    out.insert("environment".into(), environment.into());
    let secrets: Map<String, Json> = c
        .secrets()
        .iter()
        .map(|s| (s.name().to_owned(), s.value_from().into()))
        .collect();
    out.insert("secrets".into(), secrets.into());
    if let Some(log) = c.log_configuration() {
        let option = |k: &str| {
            log.options()
                .and_then(|o| o.get(k))
                .map_or(Json::Null, |v| v.as_str().into())
        };
        // Another driver than awslogs is drift the awslogs options alone would hide.
        let log = if *log.log_driver() == LogDriver::Awslogs {
            json!({
                "group": option("awslogs-group"),
                "region": option("awslogs-region"),
                "stream_prefix": option("awslogs-stream-prefix"),
            })
        } else {
            json!({ "driver": log.log_driver().as_str() })
        };
        out.insert("log".into(), log);
    }
    let asked_health = recorded.is_some_and(|r| r.get("health_check").is_some());
    match c.health_check() {
        Some(h) => {
            out.insert(
                "health_check".into(),
                json!({
                    "command": h.command(),
                    "interval": h.interval(),
                    "timeout": h.timeout(),
                    "retries": h.retries(),
                    "start_period": h.start_period(),
                }),
            );
        }
        None if asked_health => {
            out.insert("health_check".into(), Json::Null);
        }
        None => {}
    }
    Json::Object(out)
}

fn applied(td: &TaskDefinition) -> Applied {
    let arn = td.task_definition_arn().unwrap_or_default();
    Applied::new(arn)
        .output("arn", arn)
        .output("family", td.family().unwrap_or_default())
        .output("revision", td.revision())
}

/// The family and revision of a task definition ARN (`…:task-definition/api:3`).
fn family_revision(arn: &str) -> Option<(&str, i32)> {
    let (family, revision) = arn.rsplit('/').next()?.rsplit_once(':')?;
    Some((family, revision.parse().ok()?))
}

fn what(family: &str) -> String {
    format!("task definition family `{family}`")
}

impl EcsTaskDefinition {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    /// The revision and its tags, or `None` when it does not exist or was deregistered.
    async fn describe(
        &self,
        arn: &str,
    ) -> Result<Option<(TaskDefinition, Vec<Tag>)>, ResourceError> {
        match self
            .clients
            .ecs
            .describe_task_definition()
            .task_definition(arn)
            .include(TaskDefinitionField::Tags)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .task_definition()
                .filter(|td| {
                    td.status()
                        .is_none_or(|s| *s == TaskDefinitionStatus::Active)
                })
                .map(|td| (td.clone(), out.tags().to_vec()))),
            // ECS says "ClientException: Unable to describe task definition." for a
            // revision it does not know.
            Err(e)
                if code(&e) == Some("ClientException")
                    && e.message()
                        .is_some_and(|m| m.contains("Unable to describe")) =>
            {
                Ok(None)
            }
            Err(e) => Err(classify("DescribeTaskDefinition", e)),
        }
    }

    /// The ACTIVE revisions of `family` as (revision, ARN), newest first.
    async fn active_revisions(&self, family: &str) -> Result<Vec<(i32, String)>, ResourceError> {
        let arns: Vec<String> = self
            .clients
            .ecs
            .list_task_definitions()
            .family_prefix(family)
            .status(TaskDefinitionStatus::Active)
            .sort(SortOrder::Desc)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListTaskDefinitions", e))?;
        // Sorted here too: not every implementation honours `sort`.
        let mut revisions: Vec<(i32, String)> = arns
            .into_iter()
            .filter_map(|arn| match family_revision(&arn) {
                Some((f, revision)) if f == family => Some((revision, arn)),
                _ => None,
            })
            .collect();
        revisions.sort_by_key(|(revision, _)| std::cmp::Reverse(*revision));
        Ok(revisions)
    }

    /// Deregisters a revision; one already deregistered or never there is done.
    async fn deregister(&self, arn: &str) -> Result<(), ResourceError> {
        match self
            .clients
            .ecs
            .deregister_task_definition()
            .task_definition(arn)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                if self.describe(arn).await?.is_none() {
                    Ok(())
                } else {
                    Err(classify("DeregisterTaskDefinition", e))
                }
            }
        }
    }

    /// Refuses to register in a family whose ACTIVE revisions are not all this node's:
    /// families are account-wide, and a new revision would become another stack's (or a
    /// hand-made family's) latest. Revisions the state records as replaced are this node's.
    async fn require_family_ours(
        &self,
        ctx: &OpContext,
        family: &str,
    ) -> Result<(), ResourceError> {
        for (_, arn) in self.active_revisions(family).await? {
            if ctx.superseded.contains(&arn) {
                continue;
            }
            let Some((_, tags)) = self.describe(&arn).await? else {
                continue;
            };
            ctx.require_ours(&what(family), pairs(&tags))?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ResourceKind for EcsTaskDefinition {
    fn name(&self) -> &'static str {
        "aws_ecs_task_definition"
    }

    /// Revisions are immutable: any change registers a new one.
    fn forces_replacement(&self, _property: &str) -> bool {
        true
    }

    /// The new revision must exist before the service moves to it and the old one goes.
    fn create_before_destroy(&self) -> bool {
        true
    }

    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = TaskDefinitionProps::from(props)?;
        let containers = p
            .containers
            .iter()
            .map(ContainerProps::definition)
            .collect::<Result<Vec<_>, _>>()?;
        self.require_family_ours(ctx, &p.family).await?;
        let out = self
            .clients
            .ecs
            .register_task_definition()
            .family(&p.family)
            .cpu(&p.cpu)
            .memory(&p.memory)
            .network_mode(NetworkMode::from(p.network_mode.as_str()))
            .set_requires_compatibilities(Some(
                p.requires_compatibilities
                    .iter()
                    .map(|c| Compatibility::from(c.as_str()))
                    .collect(),
            ))
            .execution_role_arn(&p.execution_role_arn)
            .set_task_role_arn(p.task_role_arn.clone())
            .set_container_definitions(Some(containers))
            .set_tags(Some(tags_for(ctx, None)))
            // No idempotency token: a retry after a lost answer would register a second
            // revision, so the reconciler's `find` decides instead.
            .customize()
            .config_override(single_attempt::ecs())
            .send()
            .await
            .map_err(|e| classify("RegisterTaskDefinition", e))?;
        let td = out.task_definition().ok_or_else(|| {
            ResourceError::failed("RegisterTaskDefinition returned no task definition")
        })?;
        Ok(applied(td))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some((td, _)) = self.describe(current.id).await? else {
            return Ok(None);
        };
        let mut properties = Properties::new();
        properties.insert("family".into(), td.family().unwrap_or_default().into());
        if let Some(cpu) = td.cpu() {
            properties.insert("cpu".into(), cpu.into());
        }
        if let Some(memory) = td.memory() {
            properties.insert("memory".into(), memory.into());
        }
        if let Some(mode) = td.network_mode() {
            properties.insert("network_mode".into(), mode.as_str().into());
        }
        let compat: Vec<Json> = td
            .requires_compatibilities()
            .iter()
            .map(|c| c.as_str().into())
            .collect();
        properties.insert("requires_compatibilities".into(), compat.into());
        if let Some(arn) = td.execution_role_arn() {
            properties.insert("execution_role_arn".into(), arn.into());
        }
        match td.task_role_arn() {
            Some(arn) => {
                properties.insert("task_role_arn".into(), arn.into());
            }
            None if current.properties.contains_key("task_role_arn") => {
                properties.insert("task_role_arn".into(), Json::Null);
            }
            None => {}
        }
        let recorded = current
            .properties
            .get("containers")
            .and_then(Json::as_array);
        let containers: Vec<Json> = td
            .container_definitions()
            .iter()
            .map(|c| {
                let mine = recorded.and_then(|r| {
                    r.iter()
                        .find(|rc| rc.get("name").and_then(Json::as_str) == c.name())
                });
                observed_container(c, mine)
            })
            .collect();
        properties.insert("containers".into(), containers.into());
        Ok(Some(Observed {
            properties,
            outputs: applied(&td).outputs,
        }))
    }

    async fn update(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
        _desired: &Properties,
        changed: &[String],
    ) -> Result<Applied, ResourceError> {
        Err(ResourceError::failed(format!(
            "task definition {} is immutable; changing {} needs a new revision",
            current.id,
            changed.join(", ")
        )))
    }

    /// Deregisters the revision, and with it every older ACTIVE revision of the family this
    /// node tagged: the live revision is always the newest, so older ones can only be
    /// leftovers of creates that never reached the state. Revisions of anyone else stay.
    /// (ECS keeps INACTIVE revisions; there is nothing more to delete for services still
    /// draining tasks of it.)
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let Some((family, revision)) = family_revision(current.id) else {
            return Err(ResourceError::failed(format!(
                "`{}` is not a task definition ARN",
                current.id
            )));
        };
        if let Some((_, tags)) = self.describe(current.id).await? {
            ctx.require_not_foreign(
                &format!("task definition `{family}:{revision}`"),
                pairs(&tags),
            )?;
            self.deregister(current.id).await?;
        }
        for (older, arn) in self.active_revisions(family).await? {
            // A replaced revision still recorded (a service may run it until it moves on) is
            // deleted by its own step, not as a leftover.
            if older >= revision || ctx.superseded.contains(&arn) {
                continue;
            }
            let Some((_, tags)) = self.describe(&arn).await? else {
                continue;
            };
            if ctx.owner(pairs(&tags)) == Owner::Ours {
                self.deregister(&arn).await?;
            }
        }
        Ok(())
    }

    /// The newest ACTIVE revision of the family this node tagged, newer than every revision
    /// it replaces: a create may have registered it without its ARN reaching the state.
    /// Older ones are not what this create made (revisions only grow). A family holding only
    /// others' revisions is `NotOwned`, as registering in it would be.
    async fn find(
        &self,
        ctx: &OpContext,
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = TaskDefinitionProps::from(props)?;
        let replaced_up_to = ctx
            .superseded
            .iter()
            .filter_map(|id| family_revision(id))
            .filter(|(f, _)| *f == p.family)
            .map(|(_, revision)| revision)
            .max()
            .unwrap_or(0);
        let mut foreign = None;
        for (revision, arn) in self.active_revisions(&p.family).await? {
            if revision <= replaced_up_to {
                break;
            }
            let Some((td, tags)) = self.describe(&arn).await? else {
                continue;
            };
            match ctx.owner(pairs(&tags)) {
                Owner::Ours => return Ok(Some(applied(&td))),
                other => {
                    foreign.get_or_insert(other);
                }
            }
        }
        match foreign {
            Some(owner) => Err(ctx.not_owned(&what(&p.family), &owner)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_family_and_revision_from_an_arn() {
        let arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/dev-api:12";
        assert_eq!(family_revision(arn), Some(("dev-api", 12)));
        assert_eq!(family_revision("dev-api:3"), Some(("dev-api", 3)));
        assert_eq!(
            family_revision("arn:aws:ecs:us-east-1:1:task-definition/api"),
            None
        );
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
