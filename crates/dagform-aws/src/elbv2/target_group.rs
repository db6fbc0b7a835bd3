//! `aws_lb_target_group`: where a load balancer sends traffic, and how it checks health.

use super::{
    ARN_BATCH, Claim, adopt_holder, adoptable, arn_suffix, arns, claim, held_by_superseded,
    int_attribute, require_not_foreign, taken_and_freed,
};
use crate::AwsClients;
use crate::clients::{by_id, each_concurrently, fail_all, read_each};
use crate::error::{classify, code, is_not_found};
use crate::ownership::{found, gone, single_attempt, tags_for};
use aws_sdk_elasticloadbalancingv2::types::{
    Matcher, ProtocolEnum, TargetGroupAttribute, TargetTypeEnum,
};
use dagform_core::{Applied, Changes, Current, Kind, Observed, OpContext, ResourceError};
use dagform_resources::elbv2::{
    HealthCheck, TargetGroupField, TargetGroupOutputs, TargetGroupProps,
};
use serde_json::Value as Json;
use std::sync::Arc;

const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";
/// AWS's deregistration delay when none is set, restored when the property is removed.
const DEFAULT_DEREGISTRATION_DELAY: i32 = 300;
const DEFAULT_HEALTH_PROTOCOL: &str = "HTTP";
const DEFAULT_MATCHER: &str = "200";

/// `aws_lb_target_group`: its name, protocol, port, VPC and target type are fixed at creation.
#[derive(Clone)]
pub struct TargetGroup {
    clients: Arc<AwsClients>,
}

fn health_check_protocol(hc: &HealthCheck) -> ProtocolEnum {
    ProtocolEnum::from(hc.protocol.as_deref().unwrap_or(DEFAULT_HEALTH_PROTOCOL))
}

fn matcher(hc: &HealthCheck) -> Matcher {
    Matcher::builder()
        .http_code(hc.matcher.as_deref().unwrap_or(DEFAULT_MATCHER))
        .build()
}

type Tg = aws_sdk_elasticloadbalancingv2::types::TargetGroup;

fn outputs(tg: &Tg) -> Result<TargetGroupOutputs, ResourceError> {
    let arn = tg
        .target_group_arn()
        .ok_or_else(|| ResourceError::failed("DescribeTargetGroups: target group without ARN"))?;
    Ok(TargetGroupOutputs {
        id: arn.to_owned(),
        arn: arn.to_owned(),
        name: tg.target_group_name().unwrap_or_default().to_owned(),
        arn_suffix: arn_suffix(arn).to_owned(),
    })
}

fn applied(tg: &Tg) -> Result<Applied, ResourceError> {
    outputs(tg).map(Applied::of)
}

impl TargetGroup {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    async fn describe(&self, arn: &str) -> Result<Option<Tg>, ResourceError> {
        let result = self
            .clients
            .elbv2
            .describe_target_groups()
            .target_group_arns(arn)
            .send()
            .await;
        Ok(found("DescribeTargetGroups", result)?
            .and_then(|out| out.target_groups().first().cloned()))
    }

    /// A live target group in the shape of the desired properties.
    async fn observe(&self, tg: &Tg, current: Current<'_>) -> Result<Observed, ResourceError> {
        let recorded = current.properties;
        let deregistration_delay_seconds =
            if recorded.contains_key(TargetGroupField::DeregistrationDelaySeconds.as_str()) {
                self.deregistration_delay(current.id).await?
            } else {
                None
            };
        let props = TargetGroupProps {
            name: tg.target_group_name().unwrap_or_default().to_owned(),
            protocol: tg
                .protocol()
                .map(|p| p.as_str())
                .unwrap_or_default()
                .to_owned(),
            port: tg.port().unwrap_or_default(),
            vpc_id: tg.vpc_id().unwrap_or_default().to_owned(),
            target_type: tg
                .target_type()
                .map(|t| t.as_str())
                .unwrap_or_default()
                .to_owned(),
            health_check: observed_health_check(tg, recorded.get("health_check")),
            deregistration_delay_seconds,
        };
        Ok(Observed::of(&props, outputs(tg)?))
    }

    /// Who holds the wanted name (unique in the region).
    async fn claim(&self, ctx: &OpContext, p: &TargetGroupProps) -> Result<Claim, ResourceError> {
        let out = found(
            "DescribeTargetGroups",
            self.clients
                .elbv2
                .describe_target_groups()
                .names(&p.name)
                .send()
                .await,
        )?;
        let holder = out
            .as_ref()
            .and_then(|out| out.target_groups().first())
            .map(applied)
            .transpose()?;
        claim(&self.clients, ctx, &object(&p.name), holder).await
    }

    async fn set_deregistration_delay(&self, arn: &str, seconds: i32) -> Result<(), ResourceError> {
        self.clients
            .elbv2
            .modify_target_group_attributes()
            .target_group_arn(arn)
            .attributes(
                TargetGroupAttribute::builder()
                    .key(DEREGISTRATION_DELAY)
                    .value(seconds.to_string())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("ModifyTargetGroupAttributes", e))?;
        Ok(())
    }

    async fn deregistration_delay(&self, arn: &str) -> Result<Option<i32>, ResourceError> {
        let out = self
            .clients
            .elbv2
            .describe_target_group_attributes()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(|e| classify("DescribeTargetGroupAttributes", e))?;
        Ok(int_attribute(
            out.attributes().iter().map(|a| (a.key(), a.value())),
            DEREGISTRATION_DELAY,
        ))
    }
}

/// The live health check in the shape of the desired one: `protocol` and `matcher` only when
/// the recorded properties set them, since AWS always reports its defaults.
fn observed_health_check(tg: &Tg, recorded: Option<&Json>) -> HealthCheck {
    let has = |key: &str| recorded.and_then(|r| r.get(key)).is_some();
    HealthCheck {
        path: tg.health_check_path().unwrap_or_default().to_owned(),
        protocol: has("protocol")
            .then(|| tg.health_check_protocol().map(|p| p.as_str().to_owned()))
            .flatten(),
        interval_seconds: tg.health_check_interval_seconds().unwrap_or_default(),
        timeout_seconds: tg.health_check_timeout_seconds().unwrap_or_default(),
        healthy_threshold: tg.healthy_threshold_count().unwrap_or_default(),
        unhealthy_threshold: tg.unhealthy_threshold_count().unwrap_or_default(),
        matcher: has("matcher")
            .then(|| tg.matcher().and_then(|m| m.http_code()).map(str::to_owned))
            .flatten(),
    }
}

#[async_trait::async_trait]
impl Kind for TargetGroup {
    type Props = TargetGroupProps;

    /// The name is unique in the region, and AWS answers a create of an existing name with
    /// the same settings with that target group: whatever holds the name is checked first, and
    /// what the create returns is checked again, so another stack's is never taken.
    async fn create(
        &self,
        ctx: &OpContext,
        p: &TargetGroupProps,
    ) -> Result<Applied, ResourceError> {
        let object = object(&p.name);
        let holder = self.claim(ctx, p).await?;
        if let Some(adopted) = adopt_holder(self, ctx, &object, holder, p).await? {
            return Ok(adopted);
        }
        let hc = &p.health_check;
        let created = self
            .clients
            .elbv2
            .create_target_group()
            .name(&p.name)
            .protocol(ProtocolEnum::from(p.protocol.as_str()))
            .port(p.port)
            .vpc_id(&p.vpc_id)
            .target_type(TargetTypeEnum::from(p.target_type.as_str()))
            .health_check_enabled(true)
            .health_check_protocol(health_check_protocol(hc))
            .health_check_path(&hc.path)
            .health_check_interval_seconds(hc.interval_seconds)
            .health_check_timeout_seconds(hc.timeout_seconds)
            .healthy_threshold_count(hc.healthy_threshold)
            .unhealthy_threshold_count(hc.unhealthy_threshold)
            .matcher(matcher(hc))
            .set_tags(Some(tags_for(ctx, Some(&p.name))))
            .customize()
            .config_override(single_attempt::elbv2())
            .send()
            .await;
        let out = match created {
            Ok(out) => out,
            Err(e) if code(&e) == Some("DuplicateTargetGroupName") => {
                let holder = self.claim(ctx, p).await?;
                return adopt_holder(self, ctx, &object, holder, p)
                    .await?
                    .ok_or_else(|| taken_and_freed(&object));
            }
            Err(e) => return Err(classify("CreateTargetGroup", e)),
        };
        let tg = out
            .target_groups()
            .first()
            .ok_or_else(|| ResourceError::failed("CreateTargetGroup returned no target group"))?;
        let result = applied(tg)?;
        if !adoptable(&self.clients, ctx, &object, &result.id).await? {
            return Err(held_by_superseded(&object));
        }
        if let Some(d) = p.deregistration_delay_seconds {
            self.set_deregistration_delay(&result.id, d).await?;
        }
        Ok(result)
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        match self.describe(current.id).await? {
            Some(tg) => self.observe(&tg, current).await.map(Some),
            None => Ok(None),
        }
    }

    /// One DescribeTargetGroups per batch of ARNs. AWS fails it as a whole when one group is
    /// gone; the batch is then read group by group. The deregistration delay, when recorded,
    /// still takes one call per group.
    async fn read_many(
        &self,
        ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let found = match self
            .clients
            .elbv2
            .describe_target_groups()
            .set_target_group_arns(Some(arns(items)))
            .send()
            .await
        {
            Ok(out) => by_id(out.target_groups().to_vec(), |t| t.target_group_arn()),
            Err(e) if is_not_found(&e) => return read_each(self, ctx, items).await,
            Err(e) => return fail_all(items, classify("DescribeTargetGroups", e)),
        };
        let found = &found;
        each_concurrently(items.iter().map(|item| async move {
            match found.get(item.id) {
                Some(tg) => self.observe(tg, *item).await.map(Some),
                None => Ok(None),
            }
        }))
        .await
    }

    fn read_batch_size(&self) -> usize {
        ARN_BATCH
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &TargetGroupProps,
        changed: &Changes<TargetGroupProps>,
    ) -> Result<Applied, ResourceError> {
        let arn = current.id;
        require_not_foreign(&self.clients, ctx, &object(&p.name), arn).await?;
        if changed.contains(TargetGroupField::HealthCheck) {
            let hc = &p.health_check;
            self.clients
                .elbv2
                .modify_target_group()
                .target_group_arn(arn)
                .health_check_enabled(true)
                .health_check_protocol(health_check_protocol(hc))
                .health_check_path(&hc.path)
                .health_check_interval_seconds(hc.interval_seconds)
                .health_check_timeout_seconds(hc.timeout_seconds)
                .healthy_threshold_count(hc.healthy_threshold)
                .unhealthy_threshold_count(hc.unhealthy_threshold)
                .matcher(matcher(hc))
                .send()
                .await
                .map_err(|e| classify("ModifyTargetGroup", e))?;
        }
        if changed.contains(TargetGroupField::DeregistrationDelaySeconds) {
            self.set_deregistration_delay(
                arn,
                p.deregistration_delay_seconds
                    .unwrap_or(DEFAULT_DEREGISTRATION_DELAY),
            )
            .await?;
        }
        let tg = self.describe(arn).await?.ok_or_else(|| {
            ResourceError::failed(format!("target group {arn} disappeared during update"))
        })?;
        applied(&tg)
    }

    /// A target group still used by a listener, a rule or a draining service reports
    /// `ResourceInUse`, which is transient: the reconciler retries it.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let arn = current.id;
        if !require_not_foreign(&self.clients, ctx, &format!("target group {arn}"), arn).await? {
            return Ok(());
        }
        gone(
            "DeleteTargetGroup",
            self.clients
                .elbv2
                .delete_target_group()
                .target_group_arn(arn)
                .send()
                .await,
        )
    }

    /// The target group holding the name, when it carries this node's tags; another stack's
    /// (or nobody's) is `NotOwned`, and the one this node replaces is not returned.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &TargetGroupProps,
    ) -> Result<Option<Applied>, ResourceError> {
        Ok(self.claim(ctx, p).await?.adopted())
    }

    /// What `status` shows of it.
    async fn inspect(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<serde_json::Value>, ResourceError> {
        Ok(Some(
            crate::inspect::target_group(&self.clients, current)
                .await?
                .to_json(),
        ))
    }
}

/// How errors name a target group.
fn object(name: &str) -> String {
    format!("target group `{name}`")
}
