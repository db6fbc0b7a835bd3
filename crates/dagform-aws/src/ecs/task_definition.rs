//! `aws_ecs_task_definition`: immutable revisions, replaced create-before-destroy.

use crate::AwsClients;
use crate::clients::{Scan, each_concurrently, fail_all};
use crate::error::{classify, code};
use crate::ownership::{pairs, single_attempt, tags_for};
use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, HealthCheck, KeyValuePair, LogConfiguration, LogDriver,
    NetworkMode, PortMapping, Secret, SortOrder, Tag, TaskDefinition,
    TaskDefinitionField as Include, TaskDefinitionStatus, TransportProtocol,
};
use dagform_core::kind::Owner;
use dagform_core::{
    Applied, Changes, Current, Kind, KindOutputs, Observed, OpContext, Properties, ResourceError,
};
use dagform_resources::ecs::{
    ContainerProps, TaskDefinitionField, TaskDefinitionOutputs, TaskDefinitionProps,
};
use serde_json::{Map, Value as Json, json};
use std::sync::Arc;

/// The most revisions ListTaskDefinitions returns in one call.
const ACTIVE_REVISIONS_PER_PAGE: i32 = 100;

/// Revisions a refresh confirms from one listing of the account's ACTIVE revisions.
const REFRESH_BATCH: usize = 1000;

/// `aws_ecs_task_definition`: one revision of a task family.
pub struct EcsTaskDefinition {
    clients: Arc<AwsClients>,
}

/// A container as ECS takes it.
fn definition(c: &ContainerProps) -> Result<ContainerDefinition, ResourceError> {
    let build_err =
        |e: aws_smithy_types::error::operation::BuildError| ResourceError::failed(e.to_string());
    let ports = c
        .port_mappings
        .iter()
        .map(|m| {
            PortMapping::builder()
                .container_port(m.container_port)
                .protocol(TransportProtocol::from(m.protocol.as_str()))
                .build()
        })
        .collect();
    let environment = c
        .environment_vars()
        .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
        .collect();
    let secrets = c
        .secret_refs()
        .map(|(k, v)| Secret::builder().name(k).value_from(v).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(build_err)?;
    let log = LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options("awslogs-group", &c.log.group)
        .options("awslogs-region", &c.log.region)
        .options("awslogs-stream-prefix", &c.log.stream_prefix)
        .build()
        .map_err(build_err)?;
    let health_check = match &c.health_check {
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
        .name(&c.name)
        .image(&c.image)
        .essential(c.essential)
        .set_port_mappings(Some(ports))
        .set_environment(Some(environment))
        .set_secrets(Some(secrets))
        .log_configuration(log)
        .set_health_check(health_check)
        .build())
}

/// A container definition as read back, in the shape of [`ContainerProps`]; another log
/// driver than `awslogs` shows as its name.
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

fn outputs(td: &TaskDefinition) -> TaskDefinitionOutputs {
    let arn = td.task_definition_arn().unwrap_or_default();
    TaskDefinitionOutputs {
        id: arn.to_owned(),
        arn: arn.to_owned(),
        family: td.family().unwrap_or_default().to_owned(),
        revision: td.revision(),
    }
}

fn applied(td: &TaskDefinition) -> Applied {
    Applied::of(outputs(td))
}

/// A live revision in the shape of the desired properties: what ECS leaves out stays out,
/// and a task role asked for but missing is null.
fn observe(td: &TaskDefinition, current: Current<'_>) -> Observed {
    use TaskDefinitionField as F;
    let mut properties = Properties::new();
    let mut set = |field: F, value: Json| {
        properties.insert(field.as_str().into(), value);
    };
    set(F::Family, td.family().unwrap_or_default().into());
    if let Some(cpu) = td.cpu() {
        set(F::Cpu, cpu.into());
    }
    if let Some(memory) = td.memory() {
        set(F::Memory, memory.into());
    }
    if let Some(mode) = td.network_mode() {
        set(F::NetworkMode, mode.as_str().into());
    }
    let compat: Vec<Json> = td
        .requires_compatibilities()
        .iter()
        .map(|c| c.as_str().into())
        .collect();
    set(F::RequiresCompatibilities, compat.into());
    if let Some(arn) = td.execution_role_arn() {
        set(F::ExecutionRoleArn, arn.into());
    }
    match td.task_role_arn() {
        Some(arn) => set(F::TaskRoleArn, arn.into()),
        None if current.properties.contains_key(F::TaskRoleArn.as_str()) => {
            set(F::TaskRoleArn, Json::Null);
        }
        None => {}
    }
    let recorded = current
        .properties
        .get(F::Containers.as_str())
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
    set(F::Containers, containers.into());
    Observed {
        properties,
        outputs: outputs(td).into_outputs(),
    }
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
            .include(Include::Tags)
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
impl Kind for EcsTaskDefinition {
    type Props = TaskDefinitionProps;

    /// The new revision must exist before the service moves to it and the old one goes.
    fn create_before_destroy(&self) -> bool {
        true
    }

    async fn create(
        &self,
        ctx: &OpContext,
        p: &TaskDefinitionProps,
    ) -> Result<Applied, ResourceError> {
        let containers = p
            .containers
            .iter()
            .map(definition)
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
        Ok(self
            .describe(current.id)
            .await?
            .map(|(td, _)| observe(&td, current)))
    }

    /// A revision's contents never change once registered, so what a refresh must learn is
    /// whether it is still ACTIVE. The account's ACTIVE revisions are listed 100 to a call
    /// (ECS has no describe of many revisions) for as long as that is cheaper than describing
    /// each one still missing; a listed revision is what was registered, and one not listed is
    /// described on its own (deregistered, deleted, or beyond the pages worth reading).
    async fn read_many(
        &self,
        ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let mut scan = Scan::new(items.iter().map(|c| c.id));
        let mut pages = self
            .clients
            .ecs
            .list_task_definitions()
            .status(TaskDefinitionStatus::Active)
            .max_results(ACTIVE_REVISIONS_PER_PAGE)
            .into_paginator()
            .send();
        while scan.worth_another_page() {
            match pages.next().await {
                Some(Ok(page)) => scan.page(page.task_definition_arns().iter().map(String::as_str)),
                Some(Err(e)) => return fail_all(items, classify("ListTaskDefinitions", e)),
                None => break,
            }
        }
        let scan = &scan;
        each_concurrently(items.iter().map(|item| async move {
            if scan.still_wanted(item.id) {
                self.read(ctx, *item).await
            } else {
                Ok(Some(Observed {
                    properties: item.properties.clone(),
                    outputs: item.outputs.clone(),
                }))
            }
        }))
        .await
    }

    fn read_batch_size(&self) -> usize {
        REFRESH_BATCH
    }

    /// Every property forces a new revision, so there is nothing to change in place.
    async fn update(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
        _desired: &TaskDefinitionProps,
        changed: &Changes<TaskDefinitionProps>,
    ) -> Result<Applied, ResourceError> {
        Err(ResourceError::failed(format!(
            "task definition {} is immutable; changing {} needs a new revision",
            current.id,
            changed.names().join(", ")
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
        p: &TaskDefinitionProps,
    ) -> Result<Option<Applied>, ResourceError> {
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
}
