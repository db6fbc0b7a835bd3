//! `aws_lb_target_group`: where a load balancer sends traffic, and how it checks health.

use super::{
    ARN_BATCH, Claim, adopt_holder, adoptable, arn_suffix, arns, check_range, claim,
    held_by_superseded, int_attribute, require_not_foreign, taken_and_freed, validate_name,
};
use crate::AwsClients;
use crate::clients::{by_id, fail_all, read_each};
use crate::error::{classify, code, is_not_found, parse};
use crate::ownership::{found, gone, single_attempt, tags_for};
use aws_sdk_elasticloadbalancingv2::types::{
    Matcher, ProtocolEnum, TargetGroupAttribute, TargetTypeEnum,
};
use dagform_core::{
    Applied, Current, Observed, OpContext, Properties, ResourceError, ResourceKind,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use std::sync::Arc;

const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";
/// AWS's deregistration delay when none is set, restored when the property is removed.
const DEFAULT_DEREGISTRATION_DELAY: i32 = 300;
const DEFAULT_HEALTH_PROTOCOL: &str = "HTTP";
const DEFAULT_MATCHER: &str = "200";

pub(super) struct TargetGroup {
    pub(super) clients: Arc<AwsClients>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Props {
    name: String,
    protocol: String,
    port: i32,
    vpc_id: String,
    target_type: String,
    health_check: HealthCheck,
    #[serde(default)]
    deregistration_delay_seconds: Option<i32>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct HealthCheck {
    path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    protocol: Option<String>,
    interval_seconds: i32,
    timeout_seconds: i32,
    healthy_threshold: i32,
    unhealthy_threshold: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    matcher: Option<String>,
}

impl HealthCheck {
    fn protocol(&self) -> ProtocolEnum {
        ProtocolEnum::from(self.protocol.as_deref().unwrap_or(DEFAULT_HEALTH_PROTOCOL))
    }

    fn matcher(&self) -> Matcher {
        Matcher::builder()
            .http_code(self.matcher.as_deref().unwrap_or(DEFAULT_MATCHER))
            .build()
    }
}

fn is_http(protocol: &str) -> bool {
    matches!(protocol, "HTTP" | "HTTPS")
}

impl Props {
    fn parse(props: &Properties) -> Result<Self, ResourceError> {
        let p: Self = parse(props)?;
        validate_name("target group", &p.name)?;
        if !is_http(&p.protocol) {
            return Err(ResourceError::invalid(format!(
                "protocol must be HTTP or HTTPS for an application load balancer, got `{}`",
                p.protocol
            )));
        }
        check_range("port", p.port, 1..=65535)?;
        if !matches!(p.target_type.as_str(), "ip" | "instance") {
            return Err(ResourceError::invalid(format!(
                "target_type must be `ip` or `instance`, got `{}`",
                p.target_type
            )));
        }
        let hc = &p.health_check;
        if !hc.path.starts_with('/') || hc.path.len() > 1024 {
            return Err(ResourceError::invalid(format!(
                "health_check.path must start with `/` and be at most 1024 characters, got `{}`",
                hc.path
            )));
        }
        if let Some(proto) = &hc.protocol
            && !is_http(proto)
        {
            return Err(ResourceError::invalid(format!(
                "health_check.protocol must be HTTP or HTTPS, got `{proto}`"
            )));
        }
        check_range(
            "health_check.interval_seconds",
            hc.interval_seconds,
            5..=300,
        )?;
        check_range("health_check.timeout_seconds", hc.timeout_seconds, 2..=120)?;
        if hc.timeout_seconds >= hc.interval_seconds {
            return Err(ResourceError::invalid(format!(
                "health_check.timeout_seconds ({}) must be smaller than interval_seconds ({})",
                hc.timeout_seconds, hc.interval_seconds
            )));
        }
        check_range(
            "health_check.healthy_threshold",
            hc.healthy_threshold,
            2..=10,
        )?;
        check_range(
            "health_check.unhealthy_threshold",
            hc.unhealthy_threshold,
            2..=10,
        )?;
        if hc.matcher.as_deref() == Some("") {
            return Err(ResourceError::invalid(
                "health_check.matcher must not be empty",
            ));
        }
        if let Some(d) = p.deregistration_delay_seconds {
            check_range("deregistration_delay_seconds", d, 0..=3600)?;
        }
        Ok(p)
    }
}

type Tg = aws_sdk_elasticloadbalancingv2::types::TargetGroup;

fn applied(tg: &Tg) -> Result<Applied, ResourceError> {
    let arn = tg
        .target_group_arn()
        .ok_or_else(|| ResourceError::failed("DescribeTargetGroups: target group without ARN"))?;
    Ok(Applied::new(arn)
        .output("arn", arn)
        .output("name", tg.target_group_name().unwrap_or_default())
        .output("arn_suffix", arn_suffix(arn)))
}

impl TargetGroup {
    async fn describe(&self, arn: &str) -> Result<Option<Tg>, ResourceError> {
        match self
            .clients
            .elbv2
            .describe_target_groups()
            .target_group_arns(arn)
            .send()
            .await
        {
            Ok(out) => Ok(out.target_groups().first().cloned()),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(classify("DescribeTargetGroups", e)),
        }
    }

    /// A live target group in the shape of the desired properties.
    async fn observe(&self, tg: &Tg, current: Current<'_>) -> Result<Observed, ResourceError> {
        let recorded = current.properties;
        let mut properties = Properties::new();
        properties.insert("name".into(), json!(tg.target_group_name()));
        properties.insert("protocol".into(), json!(tg.protocol().map(|p| p.as_str())));
        properties.insert("port".into(), json!(tg.port()));
        properties.insert("vpc_id".into(), json!(tg.vpc_id()));
        properties.insert(
            "target_type".into(),
            json!(tg.target_type().map(|t| t.as_str())),
        );
        properties.insert(
            "health_check".into(),
            observed_health_check(tg, recorded.get("health_check")),
        );
        if recorded.contains_key("deregistration_delay_seconds")
            && let Some(d) = self.deregistration_delay(current.id).await?
        {
            properties.insert("deregistration_delay_seconds".into(), Json::from(d));
        }
        Ok(Observed {
            properties,
            outputs: applied(tg)?.outputs,
        })
    }

    /// Who holds the wanted name (unique in the region).
    async fn claim(&self, ctx: &OpContext, p: &Props) -> Result<Claim, ResourceError> {
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

    async fn deregistration_delay(&self, arn: &str) -> Result<Option<i64>, ResourceError> {
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
fn observed_health_check(tg: &Tg, recorded: Option<&Json>) -> Json {
    let has = |key: &str| recorded.and_then(|r| r.get(key)).is_some();
    let mut hc = serde_json::Map::new();
    hc.insert("path".into(), json!(tg.health_check_path()));
    if has("protocol") {
        hc.insert(
            "protocol".into(),
            json!(tg.health_check_protocol().map(|p| p.as_str())),
        );
    }
    hc.insert(
        "interval_seconds".into(),
        json!(tg.health_check_interval_seconds()),
    );
    hc.insert(
        "timeout_seconds".into(),
        json!(tg.health_check_timeout_seconds()),
    );
    hc.insert(
        "healthy_threshold".into(),
        json!(tg.healthy_threshold_count()),
    );
    hc.insert(
        "unhealthy_threshold".into(),
        json!(tg.unhealthy_threshold_count()),
    );
    if has("matcher") {
        hc.insert(
            "matcher".into(),
            json!(tg.matcher().and_then(|m| m.http_code())),
        );
    }
    Json::Object(hc)
}

#[async_trait::async_trait]
impl ResourceKind for TargetGroup {
    fn name(&self) -> &'static str {
        "aws_lb_target_group"
    }

    fn forces_replacement(&self, property: &str) -> bool {
        matches!(
            property,
            "name" | "protocol" | "port" | "vpc_id" | "target_type"
        )
    }

    /// The name is unique in the region, and AWS answers a create of an existing name with
    /// the same settings with that target group: whatever holds the name is checked first, and
    /// what the create returns is checked again, so another stack's is never taken.
    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = Props::parse(props)?;
        let object = object(&p.name);
        let holder = self.claim(ctx, &p).await?;
        if let Some(adopted) = adopt_holder(self, ctx, &object, holder, props).await? {
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
            .health_check_protocol(hc.protocol())
            .health_check_path(&hc.path)
            .health_check_interval_seconds(hc.interval_seconds)
            .health_check_timeout_seconds(hc.timeout_seconds)
            .healthy_threshold_count(hc.healthy_threshold)
            .unhealthy_threshold_count(hc.unhealthy_threshold)
            .matcher(hc.matcher())
            .set_tags(Some(tags_for(ctx, Some(&p.name))))
            .customize()
            .config_override(single_attempt::elbv2())
            .send()
            .await;
        let out = match created {
            Ok(out) => out,
            Err(e) if code(&e) == Some("DuplicateTargetGroupName") => {
                let holder = self.claim(ctx, &p).await?;
                return adopt_holder(self, ctx, &object, holder, props)
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
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(match found.get(item.id) {
                Some(tg) => self.observe(tg, *item).await.map(Some),
                None => Ok(None),
            });
        }
        out
    }

    fn read_batch_size(&self) -> usize {
        ARN_BATCH
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p = Props::parse(desired)?;
        let arn = current.id;
        require_not_foreign(&self.clients, ctx, &object(&p.name), arn).await?;
        if changed.iter().any(|c| c == "health_check") {
            let hc = &p.health_check;
            self.clients
                .elbv2
                .modify_target_group()
                .target_group_arn(arn)
                .health_check_enabled(true)
                .health_check_protocol(hc.protocol())
                .health_check_path(&hc.path)
                .health_check_interval_seconds(hc.interval_seconds)
                .health_check_timeout_seconds(hc.timeout_seconds)
                .healthy_threshold_count(hc.healthy_threshold)
                .unhealthy_threshold_count(hc.unhealthy_threshold)
                .matcher(hc.matcher())
                .send()
                .await
                .map_err(|e| classify("ModifyTargetGroup", e))?;
        }
        if changed.iter().any(|c| c == "deregistration_delay_seconds") {
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
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = Props::parse(props)?;
        Ok(self.claim(ctx, &p).await?.adopted())
    }
}

/// How errors name a target group.
fn object(name: &str) -> String {
    format!("target group `{name}`")
}
