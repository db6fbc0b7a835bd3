//! Application Auto Scaling: scalable targets (an ECS service's task count) and the
//! target-tracking policies attached to them.
//!
//! Targets carry the stack's tags (RegisterScalableTarget takes them); policies cannot be
//! tagged, so a policy is the stack's when the target it is attached to is.

use crate::AwsClients;
use crate::clients::{by_id, each_item};
use crate::error::{classify, code, is_not_found};
use crate::ownership::{finish_existing, gone, map_pairs, single_attempt};
use aws_sdk_applicationautoscaling::error::ProvideErrorMetadata;
use aws_sdk_applicationautoscaling::types::{
    MetricType, PolicyType, PredefinedMetricSpecification, ScalableDimension, ScalableTarget,
    ScalingPolicy, ServiceNamespace, TargetTrackingScalingPolicyConfiguration,
};
use aws_smithy_runtime_api::client::result::SdkError;
use dagform_core::kind::Owner;
use dagform_core::{Applied, Changes, Current, Kind, Kinds, Observed, OpContext, ResourceError};
use dagform_resources::autoscaling::{
    ECS_DESIRED_COUNT, ECS_NAMESPACE, ScalableTargetField, ScalableTargetOutputs,
    ScalableTargetProps, ScalingPolicyField, ScalingPolicyOutputs, ScalingPolicyProps,
    resource_label,
};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    kinds.add(AppScalingTarget {
        clients: clients.clone(),
    });
    kinds.add(AppScalingPolicy {
        clients: clients.clone(),
    });
}

/// DescribeScalableTargets takes at most 50 resource ids, DescribeScalingPolicies 50 names.
const DESCRIBE_BATCH: usize = 50;

/// Where a target lives: its namespace, resource id and dimension.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TargetKey {
    namespace: String,
    resource_id: String,
    dimension: String,
}

impl TargetKey {
    /// The key recorded in `current`'s properties; `resource_id` when none is recorded.
    fn recorded(current: &Current<'_>, resource_id: &str) -> Self {
        let text = |field: &str, default: &str| {
            current
                .properties
                .get(field)
                .and_then(Json::as_str)
                .unwrap_or(default)
                .to_owned()
        };
        Self {
            namespace: text(
                ScalableTargetField::ServiceNamespace.as_str(),
                ECS_NAMESPACE,
            ),
            resource_id: text(ScalableTargetField::ResourceId.as_str(), resource_id),
            dimension: text(
                ScalableTargetField::ScalableDimension.as_str(),
                ECS_DESIRED_COUNT,
            ),
        }
    }

    fn namespace(&self) -> ServiceNamespace {
        ServiceNamespace::from(self.namespace.as_str())
    }

    fn dimension(&self) -> ScalableDimension {
        ScalableDimension::from(self.dimension.as_str())
    }

    fn describe(&self) -> String {
        format!("scalable target `{}`", self.resource_id)
    }
}

/// "No such target or policy": ObjectNotFoundException, or the ValidationException the
/// emulator answers with instead.
fn absent<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    is_not_found(err)
        || (code(err) == Some("ValidationException")
            && err.message().is_some_and(|m| {
                m.starts_with("No scalable target found")
                    || m.starts_with("No scaling policy found")
            }))
}

/// The result of a deregister or delete call, with "already gone" as success.
fn removed<T, E, R>(operation: &str, result: Result<T, SdkError<E, R>>) -> Result<(), ResourceError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Err(e) if absent(&e) => Ok(()),
        other => gone(operation, other),
    }
}

/// The live target at `key`, if registered.
async fn describe_target(
    clients: &AwsClients,
    key: &TargetKey,
) -> Result<Option<ScalableTarget>, ResourceError> {
    let targets = describe_targets(clients, key, vec![key.resource_id.clone()]).await?;
    Ok(targets
        .into_iter()
        .find(|t| t.resource_id() == key.resource_id))
}

/// The targets of `key`'s namespace and dimension among `resource_ids` (at most 50).
async fn describe_targets(
    clients: &AwsClients,
    key: &TargetKey,
    resource_ids: Vec<String>,
) -> Result<Vec<ScalableTarget>, ResourceError> {
    clients
        .autoscaling
        .describe_scalable_targets()
        .service_namespace(key.namespace())
        .scalable_dimension(key.dimension())
        .set_resource_ids(Some(resource_ids))
        .max_results(DESCRIBE_BATCH as i32)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify("DescribeScalableTargets", e))
}

/// A target's tags; none when it has no ARN to ask by.
///
/// The emulator lacks ListTagsForResource and answers with a bare server error that carries
/// no error code (AWS always sends one): such a target reads as untagged. The call is made
/// once, so that answer is not retried for a minute.
async fn target_tags(
    clients: &AwsClients,
    target: &ScalableTarget,
) -> Result<HashMap<String, String>, ResourceError> {
    let Some(arn) = target.scalable_target_arn() else {
        return Ok(HashMap::new());
    };
    let listed = clients
        .autoscaling
        .list_tags_for_resource()
        .resource_arn(arn)
        .customize()
        .config_override(single_attempt::autoscaling())
        .send()
        .await;
    match listed {
        Ok(out) => Ok(out.tags().cloned().unwrap_or_default()),
        Err(SdkError::ServiceError(e)) if e.err().code().is_none() => Ok(HashMap::new()),
        // Gone since it was described: whatever comes next finds it gone.
        Err(e) if is_not_found(&e) => Ok(HashMap::new()),
        Err(e) => Err(classify("ListTagsForResource", e)),
    }
}

/// The live target at `key` with its tags, if registered.
async fn tagged_target(
    clients: &AwsClients,
    key: &TargetKey,
) -> Result<Option<(ScalableTarget, HashMap<String, String>)>, ResourceError> {
    let Some(target) = describe_target(clients, key).await? else {
        return Ok(None);
    };
    let tags = target_tags(clients, &target).await?;
    Ok(Some((target, tags)))
}

// --- aws_appautoscaling_target ---

/// `aws_appautoscaling_target`: a resource's capacity registered with Application Auto
/// Scaling, between a minimum and a maximum.
pub struct AppScalingTarget {
    clients: Arc<AwsClients>,
}

fn props_key(p: &ScalableTargetProps) -> TargetKey {
    TargetKey {
        namespace: p.service_namespace.clone(),
        resource_id: p.resource_id.clone(),
        dimension: p.scalable_dimension.clone(),
    }
}

fn target_outputs(target: &ScalableTarget) -> ScalableTargetOutputs {
    ScalableTargetOutputs {
        id: target.resource_id().to_owned(),
        arn: target.scalable_target_arn().unwrap_or_default().to_owned(),
        resource_id: target.resource_id().to_owned(),
    }
}

fn target_applied(target: &ScalableTarget) -> Applied {
    Applied::of(target_outputs(target))
}

fn observe_target(target: &ScalableTarget) -> Observed {
    let props = ScalableTargetProps {
        service_namespace: target.service_namespace().as_str().to_owned(),
        resource_id: target.resource_id().to_owned(),
        scalable_dimension: target.scalable_dimension().as_str().to_owned(),
        min_capacity: target.min_capacity(),
        max_capacity: target.max_capacity(),
    };
    Observed::of(&props, target_outputs(target))
}

impl AppScalingTarget {
    /// Registers (or re-registers: the call creates or updates) the target as `p` wants it.
    async fn put(&self, ctx: &OpContext, p: &ScalableTargetProps) -> Result<(), ResourceError> {
        let key = props_key(p);
        let tags: HashMap<String, String> = ctx
            .tag_pairs()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        self.clients
            .autoscaling
            .register_scalable_target()
            .service_namespace(key.namespace())
            .resource_id(&key.resource_id)
            .scalable_dimension(key.dimension())
            .min_capacity(p.min_capacity)
            .max_capacity(p.max_capacity)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| classify("RegisterScalableTarget", e))?;
        Ok(())
    }

    /// The live target a recorded resource may change or deregister: `None` when it is gone,
    /// `NotOwned` when it carries another stack's or resource's tags.
    async fn not_foreign(
        &self,
        ctx: &OpContext,
        key: &TargetKey,
    ) -> Result<Option<ScalableTarget>, ResourceError> {
        let Some((target, tags)) = tagged_target(&self.clients, key).await? else {
            return Ok(None);
        };
        ctx.require_not_foreign(&key.describe(), map_pairs(Some(&tags)))?;
        Ok(Some(target))
    }
}

#[async_trait::async_trait]
impl Kind for AppScalingTarget {
    type Props = ScalableTargetProps;

    /// RegisterScalableTarget would silently take over a target already registered for the
    /// resource, so one found there is adopted only when its tags say it is this node's.
    async fn create(
        &self,
        ctx: &OpContext,
        p: &ScalableTargetProps,
    ) -> Result<Applied, ResourceError> {
        let key = props_key(p);
        if let Some(existing) = self.find(ctx, p).await? {
            return finish_existing(self, ctx, &key.describe(), existing, p).await;
        }
        self.put(ctx, p).await?;
        let target = describe_target(&self.clients, &key).await?.ok_or_else(|| {
            ResourceError::Transient(format!("{} not visible yet", key.describe()))
        })?;
        Ok(target_applied(&target))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let key = TargetKey::recorded(&current, current.id);
        Ok(describe_target(&self.clients, &key)
            .await?
            .map(|t| observe_target(&t)))
    }

    /// One DescribeScalableTargets per namespace and dimension for up to 50 targets.
    async fn read_many(
        &self,
        _ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let mut groups: BTreeMap<TargetKey, Vec<usize>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let mut key = TargetKey::recorded(item, item.id);
            key.resource_id = String::new();
            groups.entry(key).or_default().push(i);
        }
        let mut out: Vec<Option<Result<Option<Observed>, ResourceError>>> =
            (0..items.len()).map(|_| None).collect();
        for (key, indices) in groups {
            for chunk in indices.chunks(DESCRIBE_BATCH) {
                let ids = chunk.iter().map(|&i| items[i].id.to_owned()).collect();
                let found = describe_targets(&self.clients, &key, ids)
                    .await
                    .map(|targets| by_id(targets, |t| Some(t.resource_id())));
                let batch: Vec<Current<'_>> = chunk.iter().map(|&i| items[i]).collect();
                let results = each_item(&batch, found, |t, _| Ok(Some(observe_target(t))));
                for (&i, result) in chunk.iter().zip(results) {
                    out[i] = Some(result);
                }
            }
        }
        out.into_iter()
            .map(|r| r.expect("every item is read"))
            .collect()
    }

    fn read_batch_size(&self) -> usize {
        DESCRIBE_BATCH
    }

    /// Only the capacities change in place; RegisterScalableTarget updates them.
    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &ScalableTargetProps,
        _changed: &Changes<ScalableTargetProps>,
    ) -> Result<Applied, ResourceError> {
        let key = TargetKey::recorded(&current, current.id);
        if self.not_foreign(ctx, &key).await?.is_none() {
            return Err(ResourceError::failed(format!("{} is gone", key.describe())));
        }
        self.put(ctx, p).await?;
        let target = describe_target(&self.clients, &key)
            .await?
            .ok_or_else(|| ResourceError::failed(format!("{} is gone", key.describe())))?;
        Ok(target_applied(&target))
    }

    /// Deregistering a target also deletes any policy still attached to it.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let key = TargetKey::recorded(&current, current.id);
        if self.not_foreign(ctx, &key).await?.is_none() {
            return Ok(());
        }
        let deregistered = self
            .clients
            .autoscaling
            .deregister_scalable_target()
            .service_namespace(key.namespace())
            .resource_id(&key.resource_id)
            .scalable_dimension(key.dimension())
            .send()
            .await;
        removed("DeregisterScalableTarget", deregistered)
    }

    /// The target registered for this resource, if its tags say it is this node's; anyone
    /// else's is an error, since a resource has one target per dimension.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &ScalableTargetProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let key = props_key(p);
        let Some((target, tags)) = tagged_target(&self.clients, &key).await? else {
            return Ok(None);
        };
        ctx.require_ours(&key.describe(), map_pairs(Some(&tags)))?;
        if ctx.superseded.contains(&key.resource_id) {
            return Ok(None);
        }
        Ok(Some(target_applied(&target)))
    }
}

// --- aws_appautoscaling_policy ---

/// `aws_appautoscaling_policy`: a target-tracking policy of a scalable target.
pub struct AppScalingPolicy {
    clients: Arc<AwsClients>,
}

fn policy_key(p: &ScalingPolicyProps) -> TargetKey {
    TargetKey {
        namespace: p.service_namespace.clone(),
        resource_id: p.resource_id.clone(),
        dimension: p.scalable_dimension.clone(),
    }
}

/// How errors name a policy.
fn policy_object(name: &str, key: &TargetKey) -> String {
    format!("scaling policy `{name}` of `{}`", key.resource_id)
}

fn policy_outputs(arn: &str, name: &str) -> ScalingPolicyOutputs {
    ScalingPolicyOutputs {
        id: arn.to_owned(),
        arn: arn.to_owned(),
        name: name.to_owned(),
    }
}

fn policy_applied(arn: &str, name: &str) -> Applied {
    Applied::of(policy_outputs(arn, name))
}

/// A live policy in the shape of the desired properties. The load balancer and target group
/// are echoed as recorded while their resource label is the live one; otherwise the live
/// label shows in their place.
fn observe_policy(policy: &ScalingPolicy, current: Current<'_>) -> Observed {
    let tracking = policy.target_tracking_scaling_policy_configuration();
    let metric = tracking.and_then(|t| t.predefined_metric_specification());
    let recorded = |field: ScalingPolicyField| {
        current
            .properties
            .get(field.as_str())
            .and_then(Json::as_str)
            .map(str::to_owned)
    };
    let (lb, tg) = (
        recorded(ScalingPolicyField::LoadBalancerArn),
        recorded(ScalingPolicyField::TargetGroupArn),
    );
    let live_label = metric.and_then(|m| m.resource_label()).map(str::to_owned);
    let recorded_label = match (&lb, &tg) {
        (Some(lb), Some(tg)) => resource_label(lb, tg),
        _ => None,
    };
    let (load_balancer_arn, target_group_arn) = if live_label == recorded_label {
        (lb, tg)
    } else {
        (live_label, None)
    };
    let props = ScalingPolicyProps {
        name: policy.policy_name().to_owned(),
        service_namespace: policy.service_namespace().as_str().to_owned(),
        resource_id: policy.resource_id().to_owned(),
        scalable_dimension: policy.scalable_dimension().as_str().to_owned(),
        predefined_metric: metric
            .map(|m| m.predefined_metric_type().as_str().to_owned())
            .unwrap_or_default(),
        target_value: tracking.map_or(0.0, |t| t.target_value()),
        load_balancer_arn,
        target_group_arn,
    };
    Observed::of(
        &props,
        policy_outputs(policy.policy_arn(), policy.policy_name()),
    )
}

/// The key a batch of policies is described by, and its own.
fn recorded_policy(current: &Current<'_>) -> (TargetKey, String) {
    let name = current
        .properties
        .get(ScalingPolicyField::Name.as_str())
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_owned();
    (TargetKey::recorded(current, ""), name)
}

impl AppScalingPolicy {
    /// The policies named `names` (at most 50) in `key`'s namespace, keyed by resource id
    /// and name (names are unique per target only).
    async fn describe(
        &self,
        key: &TargetKey,
        names: Vec<String>,
    ) -> Result<HashMap<String, ScalingPolicy>, ResourceError> {
        let mut req = self
            .clients
            .autoscaling
            .describe_scaling_policies()
            .service_namespace(key.namespace())
            .set_policy_names(Some(names));
        if !key.resource_id.is_empty() {
            req = req
                .resource_id(&key.resource_id)
                .scalable_dimension(key.dimension());
        }
        let policies: Vec<ScalingPolicy> = req
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeScalingPolicies", e))?;
        Ok(policies
            .into_iter()
            .map(|p| (policy_id(p.resource_id(), p.policy_name()), p))
            .collect())
    }

    async fn describe_one(
        &self,
        key: &TargetKey,
        name: &str,
    ) -> Result<Option<ScalingPolicy>, ResourceError> {
        let mut found = self.describe(key, vec![name.to_owned()]).await?;
        Ok(found.remove(&policy_id(&key.resource_id, name)))
    }

    /// Refuses a policy whose target carries another stack's tags: a policy has none of its
    /// own, and its target is another node of the same stack.
    async fn require_stack_target(
        &self,
        ctx: &OpContext,
        name: &str,
        key: &TargetKey,
    ) -> Result<(), ResourceError> {
        let Some((_, tags)) = tagged_target(&self.clients, key).await? else {
            return Ok(());
        };
        match ctx.owner(map_pairs(Some(&tags))) {
            owner @ Owner::OtherStack { .. } => {
                Err(ctx.not_owned(&policy_object(name, key), &owner))
            }
            _ => Ok(()),
        }
    }

    /// Creates or updates the policy (PutScalingPolicy does either); returns its ARN.
    async fn put(&self, p: &ScalingPolicyProps) -> Result<String, ResourceError> {
        let key = policy_key(p);
        let metric = PredefinedMetricSpecification::builder()
            .predefined_metric_type(MetricType::from(p.predefined_metric.as_str()))
            .set_resource_label(p.resource_label()?)
            .build()
            .map_err(|e| ResourceError::failed(e.to_string()))?;
        let tracking = TargetTrackingScalingPolicyConfiguration::builder()
            .target_value(p.target_value)
            .predefined_metric_specification(metric)
            .build()
            .map_err(|e| ResourceError::failed(e.to_string()))?;
        let out = self
            .clients
            .autoscaling
            .put_scaling_policy()
            .policy_name(&p.name)
            .service_namespace(key.namespace())
            .resource_id(&key.resource_id)
            .scalable_dimension(key.dimension())
            .policy_type(PolicyType::TargetTrackingScaling)
            .target_tracking_scaling_policy_configuration(tracking)
            .send()
            .await
            .map_err(|e| classify("PutScalingPolicy", e))?;
        Ok(out.policy_arn().to_owned())
    }
}

/// A policy's key among the policies of a namespace.
fn policy_id(resource_id: &str, name: &str) -> String {
    format!("{resource_id}\n{name}")
}

#[async_trait::async_trait]
impl Kind for AppScalingPolicy {
    type Props = ScalingPolicyProps;

    /// A policy's name is unique on its target and named after this stack, so one already
    /// there (a create retried) is simply put again.
    async fn create(
        &self,
        ctx: &OpContext,
        p: &ScalingPolicyProps,
    ) -> Result<Applied, ResourceError> {
        let key = policy_key(p);
        self.require_stack_target(ctx, &p.name, &key).await?;
        let arn = self.put(p).await?;
        Ok(policy_applied(&arn, &p.name))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let (key, name) = recorded_policy(&current);
        Ok(self
            .describe_one(&key, &name)
            .await?
            .map(|p| observe_policy(&p, current)))
    }

    /// One DescribeScalingPolicies per namespace for up to 50 policies.
    async fn read_many(
        &self,
        _ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            groups
                .entry(recorded_policy(item).0.namespace)
                .or_default()
                .push(i);
        }
        let mut out: Vec<Option<Result<Option<Observed>, ResourceError>>> =
            (0..items.len()).map(|_| None).collect();
        for (namespace, indices) in groups {
            let key = TargetKey {
                namespace,
                resource_id: String::new(),
                dimension: String::new(),
            };
            for chunk in indices.chunks(DESCRIBE_BATCH) {
                let names = chunk
                    .iter()
                    .map(|&i| recorded_policy(&items[i]).1)
                    .collect();
                let found = self.describe(&key, names).await;
                for &i in chunk {
                    let (key, name) = recorded_policy(&items[i]);
                    out[i] = Some(found.as_ref().map_err(Clone::clone).map(|found| {
                        found
                            .get(&policy_id(&key.resource_id, &name))
                            .map(|p| observe_policy(p, items[i]))
                    }));
                }
            }
        }
        out.into_iter()
            .map(|r| r.expect("every item is read"))
            .collect()
    }

    fn read_batch_size(&self) -> usize {
        DESCRIBE_BATCH
    }

    /// The metric and its target value change in place: PutScalingPolicy overwrites them.
    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &ScalingPolicyProps,
        _changed: &Changes<ScalingPolicyProps>,
    ) -> Result<Applied, ResourceError> {
        let (key, name) = recorded_policy(&current);
        self.require_stack_target(ctx, &name, &key).await?;
        if self.describe_one(&key, &name).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "{} is gone",
                policy_object(&name, &key)
            )));
        }
        let arn = self.put(p).await?;
        Ok(policy_applied(&arn, &p.name))
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let (key, name) = recorded_policy(&current);
        self.require_stack_target(ctx, &name, &key).await?;
        let deleted = self
            .clients
            .autoscaling
            .delete_scaling_policy()
            .policy_name(&name)
            .service_namespace(key.namespace())
            .resource_id(&key.resource_id)
            .scalable_dimension(key.dimension())
            .send()
            .await;
        removed("DeleteScalingPolicy", deleted)
    }

    /// The policy of this name on its target, when the target is this stack's.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &ScalingPolicyProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let key = policy_key(p);
        self.require_stack_target(ctx, &p.name, &key).await?;
        let Some(policy) = self.describe_one(&key, &p.name).await? else {
            return Ok(None);
        };
        if ctx.superseded.iter().any(|s| s == policy.policy_arn()) {
            return Ok(None);
        }
        Ok(Some(policy_applied(policy.policy_arn(), &p.name)))
    }
}
