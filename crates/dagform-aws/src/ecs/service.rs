//! `aws_ecs_service`, and the opt-in wait for a service to become stable.

use super::observe_optional;
use crate::AwsClients;
use crate::error::{classify, code};
use crate::ownership::{finish_existing, found, pairs, tags_for};
use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DeploymentConfiguration, DeploymentRolloutState,
    LaunchType, LoadBalancer, NetworkConfiguration, Service, ServiceField as Include,
};
use dagform_core::kind::PollSettings;
use dagform_core::polls::Polls;
use dagform_core::{
    Address, Applied, Changes, Current, Kind, KindOutputs, Observed, OpContext, Properties,
    ResourceError,
};
use dagform_resources::ecs::{ServiceField, ServiceOutputs, ServiceProps};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// `aws_ecs_service`: a replica service in awsvpc mode, optionally behind target groups.
pub struct EcsService {
    clients: Arc<AwsClients>,
    /// The waits of every service being deleted, described ten at a time per cluster.
    polls: Polls<(String, String), Service>,
}

/// Describes services given as (cluster, name or ARN), cluster by cluster.
fn services_polls(clients: &Arc<AwsClients>) -> Polls<(String, String), Service> {
    let clients = clients.clone();
    Polls::new(
        DESCRIBE_SERVICES_BATCH,
        Arc::new(move |keys: Vec<(String, String)>| {
            let clients = clients.clone();
            Box::pin(async move {
                let mut by_cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (cluster, service) in &keys {
                    by_cluster
                        .entry(cluster.clone())
                        .or_default()
                        .push(service.clone());
                }
                let mut seen = HashMap::new();
                for (cluster, services) in by_cluster {
                    for live in describe_many(&clients, &cluster, services.clone(), false).await? {
                        let Some(asked) = services.iter().find(|s| {
                            live.service_arn() == Some(s.as_str())
                                || live.service_name() == Some(s.as_str())
                        }) else {
                            continue;
                        };
                        seen.insert((cluster.clone(), asked.clone()), live);
                    }
                }
                Ok(seen)
            })
        }),
    )
}

/// ECS's defaults for a rolling deployment.
const DEFAULT_MIN_HEALTHY: i32 = 100;
const DEFAULT_MAX_PERCENT: i32 = 200;

fn network_configuration(p: &ServiceProps) -> Result<NetworkConfiguration, ResourceError> {
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(p.subnet_ids.clone()))
        .set_security_groups(Some(p.security_group_ids.clone()))
        .assign_public_ip(if p.assign_public_ip {
            AssignPublicIp::Enabled
        } else {
            AssignPublicIp::Disabled
        })
        .build()
        .map_err(|e| ResourceError::failed(e.to_string()))?;
    Ok(NetworkConfiguration::builder()
        .awsvpc_configuration(vpc)
        .build())
}

/// The rollout settings, when the properties give any.
fn deployment_configuration(p: &ServiceProps) -> Option<DeploymentConfiguration> {
    (p.deployment_minimum_healthy_percent.is_some() || p.deployment_maximum_percent.is_some())
        .then(|| full_deployment_configuration(p))
}

/// With unset values back at ECS's defaults, so removing one from the config resets it.
fn full_deployment_configuration(p: &ServiceProps) -> DeploymentConfiguration {
    DeploymentConfiguration::builder()
        .minimum_healthy_percent(
            p.deployment_minimum_healthy_percent
                .unwrap_or(DEFAULT_MIN_HEALTHY),
        )
        .maximum_percent(p.deployment_maximum_percent.unwrap_or(DEFAULT_MAX_PERCENT))
        .build()
}

fn load_balancers(p: &ServiceProps) -> Vec<LoadBalancer> {
    p.load_balancers
        .iter()
        .map(|lb| {
            LoadBalancer::builder()
                .target_group_arn(&lb.target_group_arn)
                .container_name(&lb.container_name)
                .container_port(lb.container_port)
                .build()
        })
        .collect()
}

fn outputs(service: &Service) -> ServiceOutputs {
    let arn = service.service_arn().unwrap_or_default();
    ServiceOutputs {
        id: arn.to_owned(),
        arn: arn.to_owned(),
        name: service.service_name().unwrap_or_default().to_owned(),
        cluster: service.cluster_arn().unwrap_or_default().to_owned(),
    }
}

fn applied(service: &Service) -> Applied {
    Applied::of(outputs(service))
}

/// Whether a cluster given by name or ARN is the cluster with ARN `arn`.
fn same_cluster(given: &str, arn: &str) -> bool {
    given == arn || arn.rsplit('/').next() == Some(given)
}

/// Deleted services stay visible as INACTIVE for a while: they count as gone.
fn is_live(service: &Service) -> bool {
    service.status() != Some("INACTIVE")
}

/// A service being deleted: it still holds its name, but is nothing to adopt.
fn is_draining(service: &Service) -> bool {
    service.status() == Some("DRAINING")
}

/// The service for error messages, e.g. "ECS service `api` in cluster `dev`".
fn what(cluster: &str, name: &str) -> String {
    let cluster = cluster.rsplit('/').next().unwrap_or(cluster);
    format!("ECS service `{name}` in cluster `{cluster}`")
}

/// CreateService's answers for a name its cluster already holds: a live service created with
/// other parameters or another token, or one still draining.
fn name_taken(code: Option<&str>, message: Option<&str>) -> bool {
    code == Some("InvalidParameterException")
        && message.is_some_and(|m| {
            ["not idempotent", "already exists", "still Draining"]
                .iter()
                .any(|taken| m.contains(taken))
        })
}

/// Where the service lives: the cluster ARN recorded at create, else the configured cluster.
fn cluster_of<'a>(current: &Current<'a>) -> &'a str {
    current
        .outputs
        .get("cluster")
        .or_else(|| current.properties.get(ServiceField::Cluster.as_str()))
        .and_then(Json::as_str)
        .unwrap_or_default()
}

/// A live service in the shape of the desired properties; the optional settings as
/// [`observe_optional`] records them.
fn observe(s: &Service, current: Current<'_>) -> Observed {
    use ServiceField as F;
    let recorded = current.properties;
    let mut properties = Properties::new();
    let mut set = |field: F, value: Json| {
        properties.insert(field.as_str().into(), value);
    };
    set(F::Name, s.service_name().unwrap_or_default().into());
    let cluster_arn = s.cluster_arn().unwrap_or_default();
    // Echo the cluster as configured (name or ARN) when it is the same cluster.
    let cluster = recorded
        .get(F::Cluster.as_str())
        .and_then(Json::as_str)
        .filter(|given| same_cluster(given, cluster_arn))
        .unwrap_or(cluster_arn);
    set(F::Cluster, cluster.into());
    if let Some(td) = s.task_definition() {
        set(F::TaskDefinitionArn, td.into());
    }
    // While auto scaling owns the count, the recorded starting count stands for the live one.
    let scaled = recorded.get(F::DesiredCountScaled.as_str());
    let count = match (scaled, recorded.get(F::DesiredCount.as_str())) {
        (Some(Json::Bool(true)), Some(starting)) => starting.clone(),
        _ => s.desired_count().into(),
    };
    set(F::DesiredCount, count);
    if let Some(scaled) = scaled {
        set(F::DesiredCountScaled, scaled.clone());
    }
    if let Some(lt) = s.launch_type() {
        set(F::LaunchType, lt.as_str().into());
    }
    if let Some(vpc) = s
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration())
    {
        set(F::SubnetIds, vpc.subnets().into());
        set(F::SecurityGroupIds, vpc.security_groups().into());
        set(
            F::AssignPublicIp,
            (vpc.assign_public_ip() == Some(&AssignPublicIp::Enabled)).into(),
        );
    }
    let lbs: Vec<Json> = s
        .load_balancers()
        .iter()
        .map(|lb| {
            json!({
                "target_group_arn": lb.target_group_arn(),
                "container_name": lb.container_name(),
                "container_port": lb.container_port(),
            })
        })
        .collect();
    set(F::LoadBalancers, lbs.into());
    let deployment = s.deployment_configuration();
    let optional = [
        (
            F::HealthCheckGracePeriodSeconds,
            s.health_check_grace_period_seconds().map(Json::from),
            json!(0),
        ),
        (
            F::DeploymentMinimumHealthyPercent,
            deployment
                .and_then(|d| d.minimum_healthy_percent())
                .map(Json::from),
            json!(DEFAULT_MIN_HEALTHY),
        ),
        (
            F::DeploymentMaximumPercent,
            deployment.and_then(|d| d.maximum_percent()).map(Json::from),
            json!(DEFAULT_MAX_PERCENT),
        ),
        (
            F::EnableExecuteCommand,
            Some(s.enable_execute_command().into()),
            json!(false),
        ),
    ];
    for (field, live, default) in optional {
        observe_optional(
            &mut properties,
            recorded,
            field.as_str(),
            live,
            Some(default),
        );
    }
    Observed {
        properties,
        outputs: outputs(s).into_outputs(),
    }
}

/// DescribeServices takes at most 10 services per call.
const DESCRIBE_SERVICES_BATCH: usize = 10;

/// The services of `cluster` DescribeServices returns (a service it does not know is listed
/// among its failures); none when the cluster is gone, the services with it.
async fn describe_many(
    clients: &AwsClients,
    cluster: &str,
    services: Vec<String>,
    tags: bool,
) -> Result<Vec<Service>, ResourceError> {
    let mut req = clients
        .ecs
        .describe_services()
        .cluster(cluster)
        .set_services(Some(services));
    if tags {
        req = req.include(Include::Tags);
    }
    let out = found("DescribeServices", req.send().await)?;
    Ok(out.map_or_else(Vec::new, |out| out.services().to_vec()))
}

async fn describe(
    clients: &AwsClients,
    cluster: &str,
    service: &str,
    tags: bool,
) -> Result<Option<Service>, ResourceError> {
    let services = describe_many(clients, cluster, vec![service.to_owned()], tags).await?;
    Ok(services.into_iter().next())
}

impl EcsService {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self {
            polls: services_polls(&clients),
            clients,
        }
    }

    /// Takes over a live service found under the wanted name when it is this node's, and
    /// brings it to the desired properties.
    async fn adopt(
        &self,
        ctx: &OpContext,
        p: &ServiceProps,
        existing: Service,
    ) -> Result<Applied, ResourceError> {
        let object = what(
            existing.cluster_arn().unwrap_or_default(),
            existing.service_name().unwrap_or_default(),
        );
        ctx.require_ours(&object, pairs(existing.tags()))?;
        if is_draining(&existing) {
            return Err(ResourceError::Transient(format!(
                "{object} is still being deleted (DRAINING)"
            )));
        }
        finish_existing(self, ctx, &object, applied(&existing), p).await
    }
}

#[async_trait::async_trait]
impl Kind for EcsService {
    type Props = ServiceProps;

    /// A deleted service drains its targets for the deregistration delay, 300 s by default.
    fn typical_wait(&self, deleting: bool) -> std::time::Duration {
        std::time::Duration::from_secs(if deleting { 300 } else { 0 })
    }

    /// "Unable to assume role" and "does not have an associated load balancer" (IAM or the
    /// listener not yet visible to ECS) come back Transient from `classify` and are retried.
    /// A service name is unique in its cluster (and the emulator replaces a service created
    /// again), so the name is looked up first: this node's service is adopted, anyone else's
    /// refused.
    async fn create(&self, ctx: &OpContext, p: &ServiceProps) -> Result<Applied, ResourceError> {
        if let Some(existing) = describe(&self.clients, &p.cluster, &p.name, true)
            .await?
            .filter(is_live)
        {
            return self.adopt(ctx, p, existing).await;
        }
        let created = self
            .clients
            .ecs
            .create_service()
            .cluster(&p.cluster)
            .service_name(&p.name)
            // The same token for every retry of this create: a retry after a lost answer
            // gets the service the first attempt made.
            .client_token(ctx.client_token(36))
            .task_definition(&p.task_definition_arn)
            .desired_count(p.desired_count)
            .launch_type(LaunchType::from(p.launch_type.as_str()))
            .network_configuration(network_configuration(p)?)
            .set_load_balancers(Some(load_balancers(p)))
            .set_health_check_grace_period_seconds(p.health_check_grace_period_seconds)
            .set_deployment_configuration(deployment_configuration(p))
            .set_enable_execute_command(p.enable_execute_command)
            .set_tags(Some(tags_for(ctx, Some(&p.name))))
            .send()
            .await;
        let out = match created {
            Ok(out) => out,
            // Made by someone between the look-up and the create: whose is it?
            Err(e) if name_taken(code(&e), e.message()) => {
                let existing = describe(&self.clients, &p.cluster, &p.name, true)
                    .await?
                    .filter(is_live);
                return match existing {
                    Some(existing) => self.adopt(ctx, p, existing).await,
                    None => Err(classify("CreateService", e)),
                };
            }
            Err(e) => return Err(classify("CreateService", e)),
        };
        let service = out
            .service()
            .ok_or_else(|| ResourceError::failed("CreateService returned no service"))?;
        // Some ECS implementations drop these settings on create; set them explicitly then, so
        // what exists is what was asked for (on AWS they stick and no call is made). A run
        // killed before this call leaves a service whose `read` shows the difference.
        let grace_dropped = p
            .health_check_grace_period_seconds
            .is_some_and(|g| service.health_check_grace_period_seconds() != Some(g));
        let rollout_dropped = deployment_configuration(p).is_some_and(|want| {
            service
                .deployment_configuration()
                .map(|got| (got.minimum_healthy_percent(), got.maximum_percent()))
                != Some((want.minimum_healthy_percent(), want.maximum_percent()))
        });
        if grace_dropped || rollout_dropped {
            self.clients
                .ecs
                .update_service()
                .cluster(&p.cluster)
                .service(&p.name)
                .set_health_check_grace_period_seconds(p.health_check_grace_period_seconds)
                .set_deployment_configuration(deployment_configuration(p))
                .send()
                .await
                .map_err(|e| classify("UpdateService", e))?;
        }
        Ok(applied(service))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        Ok(
            describe(&self.clients, cluster_of(&current), current.id, false)
                .await?
                .filter(is_live)
                .map(|s| observe(&s, current)),
        )
    }

    /// One DescribeServices per cluster for up to 10 services; services it does not return
    /// are gone.
    async fn read_many(
        &self,
        _ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let mut by_cluster: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            by_cluster.entry(cluster_of(item)).or_default().push(i);
        }
        let mut out: Vec<Option<Result<Option<Observed>, ResourceError>>> = vec![None; items.len()];
        for (cluster, indices) in by_cluster {
            for chunk in indices.chunks(DESCRIBE_SERVICES_BATCH) {
                let ids = chunk.iter().map(|&i| items[i].id.to_owned()).collect();
                let services = describe_many(&self.clients, cluster, ids, false).await;
                for &i in chunk {
                    let item = items[i];
                    out[i] = Some(services.as_ref().map_err(Clone::clone).map(|services| {
                        services
                            .iter()
                            .find(|s| {
                                s.service_arn() == Some(item.id)
                                    || s.service_name() == Some(item.id)
                            })
                            .filter(|s| is_live(s))
                            .map(|s| observe(s, item))
                    }));
                }
            }
        }
        out.into_iter()
            .map(|r| r.expect("every item is read"))
            .collect()
    }

    fn read_batch_size(&self) -> usize {
        DESCRIBE_SERVICES_BATCH
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &ServiceProps,
        changed: &Changes<ServiceProps>,
    ) -> Result<Applied, ResourceError> {
        use ServiceField as F;
        let cluster = cluster_of(&current);
        let live = describe(&self.clients, cluster, current.id, true)
            .await?
            .filter(is_live)
            .ok_or_else(|| ResourceError::failed(format!("service {} is gone", current.id)))?;
        ctx.require_not_foreign(&what(cluster, &p.name), pairs(live.tags()))?;
        let mut req = self
            .clients
            .ecs
            .update_service()
            .cluster(cluster)
            .service(current.id);
        // Only what changed: resending an unchanged network configuration would start a
        // needless deployment.
        let mut any = false;
        if changed.contains(F::TaskDefinitionArn) {
            req = req.task_definition(&p.task_definition_arn);
            any = true;
        }
        if changed.contains(F::DesiredCount) && p.desired_count_scaled != Some(true) {
            req = req.desired_count(p.desired_count);
            any = true;
        }
        if changed.any(&[F::SubnetIds, F::SecurityGroupIds, F::AssignPublicIp]) {
            req = req.network_configuration(network_configuration(p)?);
            any = true;
        }
        if changed.contains(F::HealthCheckGracePeriodSeconds) {
            req = req.health_check_grace_period_seconds(
                p.health_check_grace_period_seconds.unwrap_or(0),
            );
            any = true;
        }
        if changed.any(&[
            F::DeploymentMinimumHealthyPercent,
            F::DeploymentMaximumPercent,
        ]) {
            req = req.deployment_configuration(full_deployment_configuration(p));
            any = true;
        }
        if changed.contains(F::EnableExecuteCommand) {
            req = req.enable_execute_command(p.enable_execute_command.unwrap_or(false));
            any = true;
        }
        let service = if any {
            req.send()
                .await
                .map_err(|e| classify("UpdateService", e))?
                .service()
                .cloned()
        } else {
            Some(live)
        };
        let service = service
            .filter(is_live)
            .ok_or_else(|| ResourceError::failed(format!("service {} is gone", current.id)))?;
        Ok(applied(&service))
    }

    /// Scales to zero, deletes, then waits until ECS reports the service INACTIVE so that its
    /// target groups can be deleted after it.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let ecs = &self.clients.ecs;
        let cluster = cluster_of(&current);
        let Some(live) = describe(&self.clients, cluster, current.id, true)
            .await?
            .filter(is_live)
        else {
            return Ok(());
        };
        ctx.require_not_foreign(
            &what(cluster, live.service_name().unwrap_or(current.id)),
            pairs(live.tags()),
        )?;
        // ServiceNotActiveException: already being deleted; only the wait is left.
        let going = |c: Option<&str>| c == Some("ServiceNotActiveException");
        let scaled = ecs
            .update_service()
            .cluster(cluster)
            .service(current.id)
            .desired_count(0)
            .send()
            .await;
        match scaled {
            Err(e) if going(code(&e)) => {}
            scaled => {
                if found("UpdateService", scaled)?.is_none() {
                    return Ok(());
                }
            }
        }
        let deleted = ecs
            .delete_service()
            .cluster(cluster)
            .service(current.id)
            .force(true)
            .send()
            .await;
        match deleted {
            Err(e) if going(code(&e)) => {}
            deleted => {
                if found("DeleteService", deleted)?.is_none() {
                    return Ok(());
                }
            }
        }
        ctx.wait_for(
            &format!("service {} to become INACTIVE", current.id),
            || async {
                let key = (cluster.to_owned(), current.id.to_owned());
                let live = self.polls.poll(ctx, key).await?;
                Ok(live.filter(is_live).is_none().then_some(()))
            },
        )
        .await
    }

    /// This node's ACTIVE service of this name (one still DRAINING is going away, not
    /// adoptable); a live service of anyone else under the name is `NotOwned`.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &ServiceProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let Some(service) = describe(&self.clients, &p.cluster, &p.name, true)
            .await?
            .filter(is_live)
        else {
            return Ok(None);
        };
        ctx.require_ours(&what(&p.cluster, &p.name), pairs(service.tags()))?;
        let arn = service.service_arn().unwrap_or_default();
        if is_draining(&service) || ctx.superseded.iter().any(|s| s == arn) {
            return Ok(None);
        }
        Ok(Some(applied(&service)))
    }

    /// What `status` shows of it.
    async fn inspect(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<serde_json::Value>, ResourceError> {
        Ok(Some(
            crate::inspect::service(&self.clients, current)
                .await?
                .to_json(),
        ))
    }
}

/// Where a service's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stability {
    /// One deployment, all desired tasks running, none pending.
    Stable,
    /// Still rolling out; the text says how far.
    Rolling(String),
    /// The rollout failed or the service is going away; waiting longer will not help.
    Failed(String),
}

/// Judges a service as ECS describes it (the same rule as the SDK's `services_stable`
/// waiter, plus failed rollouts), so it can be tested without running tasks.
pub fn stability(service: &Service) -> Stability {
    let status = service.status().unwrap_or("UNKNOWN");
    if status != "ACTIVE" {
        return Stability::Failed(format!("service is {status}"));
    }
    let deployments = service.deployments();
    if let Some(failed) = deployments
        .iter()
        .find(|d| d.rollout_state() == Some(&DeploymentRolloutState::Failed))
    {
        return Stability::Failed(format!(
            "deployment {} failed: {}",
            failed.id().unwrap_or("?"),
            failed.rollout_state_reason().unwrap_or("no reason given")
        ));
    }
    let (desired, running, pending) = (
        service.desired_count(),
        service.running_count(),
        service.pending_count(),
    );
    match deployments {
        [only]
            if only.status() == Some("PRIMARY")
                && running == desired
                && pending == 0
                && only.running_count() == only.desired_count() =>
        {
            Stability::Stable
        }
        _ => Stability::Rolling(format!(
            "{} deployment(s), {running} of {desired} tasks running, {pending} pending",
            deployments.len()
        )),
    }
}

/// Waits until the service is stable (for `provision --wait`); fails at once on a failed
/// rollout and after `poll.timeout` otherwise.
pub async fn wait_until_stable(
    clients: &AwsClients,
    cluster: &str,
    service: &str,
    poll: PollSettings,
) -> Result<(), ResourceError> {
    let ctx = OpContext::new(String::new(), Address::new(service), poll);
    ctx.wait_for(&format!("service {service} to become stable"), || async {
        let Some(s) = describe(clients, cluster, service, false).await? else {
            return Err(ResourceError::failed(format!(
                "service {service} not found"
            )));
        };
        match stability(&s) {
            Stability::Stable => Ok(Some(())),
            Stability::Rolling(progress) => {
                tracing::debug!(service, "{progress}");
                Ok(None)
            }
            Stability::Failed(why) => {
                Err(ResourceError::failed(format!("service {service}: {why}")))
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::Deployment;

    fn deployment(status: &str, desired: i32, running: i32) -> Deployment {
        Deployment::builder()
            .id(format!("ecs-svc/{status}"))
            .status(status)
            .desired_count(desired)
            .running_count(running)
            .pending_count(desired - running)
            .rollout_state(if desired == running {
                DeploymentRolloutState::Completed
            } else {
                DeploymentRolloutState::InProgress
            })
            .build()
    }

    fn service(running: i32, deployments: Vec<Deployment>) -> Service {
        Service::builder()
            .status("ACTIVE")
            .desired_count(2)
            .running_count(running)
            .pending_count(2 - running)
            .set_deployments(Some(deployments))
            .build()
    }

    #[test]
    fn one_primary_deployment_fully_running_is_stable() {
        let s = service(2, vec![deployment("PRIMARY", 2, 2)]);
        assert_eq!(stability(&s), Stability::Stable);
    }

    #[test]
    fn old_and_new_deployments_are_still_rolling() {
        let s = service(
            2,
            vec![deployment("PRIMARY", 2, 1), deployment("ACTIVE", 1, 1)],
        );
        assert!(matches!(stability(&s), Stability::Rolling(_)));
        let starting = service(1, vec![deployment("PRIMARY", 2, 1)]);
        assert!(matches!(stability(&starting), Stability::Rolling(_)));
    }

    #[test]
    fn failed_rollout_fails() {
        let failed = Deployment::builder()
            .id("ecs-svc/1")
            .status("PRIMARY")
            .desired_count(2)
            .running_count(0)
            .failed_tasks(4)
            .rollout_state(DeploymentRolloutState::Failed)
            .rollout_state_reason("ECS deployment circuit breaker: tasks failed to start.")
            .build();
        let s = service(0, vec![failed, deployment("ACTIVE", 2, 2)]);
        match stability(&s) {
            Stability::Failed(why) => assert!(why.contains("circuit breaker"), "{why}"),
            other => panic!("expected failure, got {other:?}"),
        }
        let draining = Service::builder().status("DRAINING").build();
        assert!(matches!(stability(&draining), Stability::Failed(_)));
    }

    #[test]
    fn a_taken_name_is_told_apart_from_other_invalid_parameters() {
        let invalid = Some("InvalidParameterException");
        assert!(name_taken(
            invalid,
            Some("Creation of service was not idempotent.")
        ));
        assert!(name_taken(
            invalid,
            Some("Unable to Start a service that is still Draining.")
        ));
        assert!(!name_taken(invalid, Some("Unable to assume role")));
        assert!(!name_taken(
            Some("ClientException"),
            Some("Creation of service was not idempotent.")
        ));
    }

    #[test]
    fn cluster_names_match_their_arns() {
        let arn = "arn:aws:ecs:us-east-1:123456789012:cluster/main";
        assert!(same_cluster("main", arn));
        assert!(same_cluster(arn, arn));
        assert!(!same_cluster("other", arn));
    }
}
