//! `aws_lb`: an application load balancer.

use super::{
    ARN_BATCH, Claim, adopt_holder, adoptable, arns, check_range, held_by_superseded,
    int_attribute, require_not_foreign, taken_and_freed, validate_name,
};
use crate::AwsClients;
use crate::clients::{by_id, fail_all, read_each};
use crate::error::{classify, code, is_not_found, parse};
use crate::ownership::{found, in_recorded_order, single_attempt, tags_for};
use aws_sdk_elasticloadbalancingv2::types::{
    LoadBalancerAttribute, LoadBalancerSchemeEnum, LoadBalancerStateEnum, LoadBalancerTypeEnum,
};
use dagform_core::{
    Applied, Current, Observed, OpContext, Properties, ResourceError, ResourceKind,
};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::sync::Arc;

const IDLE_TIMEOUT: &str = "idle_timeout.timeout_seconds";
/// AWS's idle timeout when none is set, restored when the property is removed.
const DEFAULT_IDLE_TIMEOUT: i32 = 60;

pub(super) struct LoadBalancer {
    pub(super) clients: Arc<AwsClients>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Props {
    name: String,
    scheme: String,
    subnet_ids: Vec<String>,
    security_group_ids: Vec<String>,
    #[serde(default)]
    idle_timeout_seconds: Option<i32>,
}

impl Props {
    fn parse(props: &Properties) -> Result<Self, ResourceError> {
        let p: Self = parse(props)?;
        validate_name("load balancer", &p.name)?;
        if p.name.starts_with("internal-") {
            return Err(ResourceError::invalid(format!(
                "load balancer name `{}` must not begin with `internal-`",
                p.name
            )));
        }
        if !matches!(p.scheme.as_str(), "internet-facing" | "internal") {
            return Err(ResourceError::invalid(format!(
                "scheme must be `internet-facing` or `internal`, got `{}`",
                p.scheme
            )));
        }
        if p.subnet_ids.len() < 2 {
            return Err(ResourceError::invalid(
                "an application load balancer needs subnets in at least two Availability Zones",
            ));
        }
        if let Some(t) = p.idle_timeout_seconds {
            check_range("idle_timeout_seconds", t, 1..=4000)?;
        }
        Ok(p)
    }
}

type Lb = aws_sdk_elasticloadbalancingv2::types::LoadBalancer;

fn applied(lb: &Lb) -> Result<Applied, ResourceError> {
    let arn = lb
        .load_balancer_arn()
        .ok_or_else(|| ResourceError::failed("DescribeLoadBalancers: load balancer without ARN"))?;
    Ok(Applied::new(arn)
        .output("arn", arn)
        .output("dns_name", lb.dns_name().unwrap_or_default())
        .output(
            "canonical_hosted_zone_id",
            lb.canonical_hosted_zone_id().unwrap_or_default(),
        )
        .output("name", lb.load_balancer_name().unwrap_or_default()))
}

impl LoadBalancer {
    async fn describe(&self, arn: &str) -> Result<Option<Lb>, ResourceError> {
        match self
            .clients
            .elbv2
            .describe_load_balancers()
            .load_balancer_arns(arn)
            .send()
            .await
        {
            Ok(out) => Ok(out.load_balancers().first().cloned()),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(classify("DescribeLoadBalancers", e)),
        }
    }

    /// A live load balancer in the shape of the desired properties.
    async fn observe(&self, lb: &Lb, current: Current<'_>) -> Result<Observed, ResourceError> {
        let recorded = current.properties;
        let subnets = lb
            .availability_zones()
            .iter()
            .filter_map(|az| az.subnet_id().map(str::to_owned))
            .collect();
        let mut properties = Properties::new();
        properties.insert("name".into(), json!(lb.load_balancer_name()));
        properties.insert("scheme".into(), json!(lb.scheme().map(|s| s.as_str())));
        properties.insert(
            "subnet_ids".into(),
            json!(in_recorded_order(subnets, recorded.get("subnet_ids"))),
        );
        properties.insert(
            "security_group_ids".into(),
            json!(in_recorded_order(
                lb.security_groups().to_vec(),
                recorded.get("security_group_ids")
            )),
        );
        if recorded.contains_key("idle_timeout_seconds") {
            // An attribute never set may go unreported (the emulator does so): it is then
            // AWS's default, which an adopted half-built load balancer must show to be finished.
            let t = self
                .idle_timeout(current.id)
                .await?
                .unwrap_or(DEFAULT_IDLE_TIMEOUT.into());
            properties.insert("idle_timeout_seconds".into(), Json::from(t));
        }
        Ok(Observed {
            properties,
            outputs: applied(lb)?.outputs,
        })
    }

    /// Waits until the load balancer leaves `provisioning` (about 2.5 minutes on AWS).
    async fn wait_active(&self, ctx: &OpContext, arn: &str) -> Result<Lb, ResourceError> {
        ctx.wait_for(&format!("load balancer {arn} to become active"), || async {
            let Some(lb) = self.describe(arn).await? else {
                return Err(ResourceError::Transient(format!(
                    "load balancer {arn} is not visible yet"
                )));
            };
            let state = lb.state();
            match state.and_then(|s| s.code()) {
                Some(LoadBalancerStateEnum::Active | LoadBalancerStateEnum::ActiveImpaired) => {
                    Ok(Some(lb))
                }
                Some(LoadBalancerStateEnum::Failed) => Err(ResourceError::failed(format!(
                    "load balancer {arn} failed to provision: {}",
                    state.and_then(|s| s.reason()).unwrap_or("no reason given")
                ))),
                _ => Ok(None),
            }
        })
        .await
    }

    /// Who holds the wanted name. AWS keeps one load balancer per name; the emulator may hold
    /// several, and any of them not this node's makes the name not this node's.
    async fn claim(&self, ctx: &OpContext, p: &Props) -> Result<Claim, ResourceError> {
        let Some(out) = found(
            "DescribeLoadBalancers",
            self.clients
                .elbv2
                .describe_load_balancers()
                .names(&p.name)
                .send()
                .await,
        )?
        else {
            return Ok(Claim::Free);
        };
        let mut claim = Claim::Free;
        for lb in out.load_balancers() {
            let holder = applied(lb)?;
            if adoptable(&self.clients, ctx, &object(&p.name), &holder.id).await? {
                if !matches!(claim, Claim::Ours(_)) {
                    claim = Claim::Ours(holder);
                }
            } else if matches!(claim, Claim::Free) {
                claim = Claim::Superseded;
            }
        }
        Ok(claim)
    }

    async fn set_idle_timeout(&self, arn: &str, seconds: i32) -> Result<(), ResourceError> {
        self.clients
            .elbv2
            .modify_load_balancer_attributes()
            .load_balancer_arn(arn)
            .attributes(
                LoadBalancerAttribute::builder()
                    .key(IDLE_TIMEOUT)
                    .value(seconds.to_string())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("ModifyLoadBalancerAttributes", e))?;
        Ok(())
    }

    async fn idle_timeout(&self, arn: &str) -> Result<Option<i64>, ResourceError> {
        let out = self
            .clients
            .elbv2
            .describe_load_balancer_attributes()
            .load_balancer_arn(arn)
            .send()
            .await
            .map_err(|e| classify("DescribeLoadBalancerAttributes", e))?;
        Ok(int_attribute(
            out.attributes().iter().map(|a| (a.key(), a.value())),
            IDLE_TIMEOUT,
        ))
    }
}

#[async_trait::async_trait]
impl ResourceKind for LoadBalancer {
    fn name(&self) -> &'static str {
        "aws_lb"
    }

    fn forces_replacement(&self, property: &str) -> bool {
        matches!(property, "name" | "scheme")
    }

    /// The name is unique in the region, and AWS answers a create of an existing name with
    /// the same settings with that load balancer: whatever holds the name is checked first, and
    /// what the create returns is checked again, so another stack's is never taken.
    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = Props::parse(props)?;
        let object = object(&p.name);
        let holder = self.claim(ctx, &p).await?;
        if let Some(adopted) = adopt_holder(self, ctx, &object, holder, props).await? {
            return Ok(adopted);
        }
        let created = self
            .clients
            .elbv2
            .create_load_balancer()
            .name(&p.name)
            .r#type(LoadBalancerTypeEnum::Application)
            .scheme(LoadBalancerSchemeEnum::from(p.scheme.as_str()))
            .set_subnets(Some(p.subnet_ids.clone()))
            .set_security_groups(Some(p.security_group_ids.clone()))
            .set_tags(Some(tags_for(ctx, Some(&p.name))))
            .customize()
            .config_override(single_attempt::elbv2())
            .send()
            .await;
        let out = match created {
            Ok(out) => out,
            Err(e) if code(&e) == Some("DuplicateLoadBalancerName") => {
                let holder = self.claim(ctx, &p).await?;
                return adopt_holder(self, ctx, &object, holder, props)
                    .await?
                    .ok_or_else(|| taken_and_freed(&object));
            }
            Err(e) => return Err(classify("CreateLoadBalancer", e)),
        };
        let arn = out
            .load_balancers()
            .first()
            .and_then(|lb| lb.load_balancer_arn())
            .ok_or_else(|| ResourceError::failed("CreateLoadBalancer returned no load balancer"))?
            .to_owned();
        if !adoptable(&self.clients, ctx, &object, &arn).await? {
            return Err(held_by_superseded(&object));
        }
        let lb = self.wait_active(ctx, &arn).await?;
        if let Some(t) = p.idle_timeout_seconds {
            self.set_idle_timeout(&arn, t).await?;
        }
        applied(&lb)
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        match self.describe(current.id).await? {
            Some(lb) => self.observe(&lb, current).await.map(Some),
            None => Ok(None),
        }
    }

    /// One DescribeLoadBalancers per batch of up to 20 ARNs; when one of them is gone AWS
    /// fails the call, and the batch is read one by one.
    async fn read_many(
        &self,
        ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let found = match self
            .clients
            .elbv2
            .describe_load_balancers()
            .set_load_balancer_arns(Some(arns(items)))
            .send()
            .await
        {
            Ok(out) => by_id(out.load_balancers().to_vec(), |l| l.load_balancer_arn()),
            Err(e) if is_not_found(&e) => return read_each(self, ctx, items).await,
            Err(e) => return fail_all(items, classify("DescribeLoadBalancers", e)),
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(match found.get(item.id) {
                Some(lb) => self.observe(lb, *item).await.map(Some),
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
        let elbv2 = &self.clients.elbv2;
        for property in changed {
            match property.as_str() {
                "security_group_ids" => {
                    elbv2
                        .set_security_groups()
                        .load_balancer_arn(arn)
                        .set_security_groups(Some(p.security_group_ids.clone()))
                        .send()
                        .await
                        .map_err(|e| classify("SetSecurityGroups", e))?;
                }
                "subnet_ids" => {
                    elbv2
                        .set_subnets()
                        .load_balancer_arn(arn)
                        .set_subnets(Some(p.subnet_ids.clone()))
                        .send()
                        .await
                        .map_err(|e| classify("SetSubnets", e))?;
                }
                "idle_timeout_seconds" => {
                    self.set_idle_timeout(
                        arn,
                        p.idle_timeout_seconds.unwrap_or(DEFAULT_IDLE_TIMEOUT),
                    )
                    .await?;
                }
                _ => {}
            }
        }
        let lb = self.describe(arn).await?.ok_or_else(|| {
            ResourceError::failed(format!("load balancer {arn} disappeared during update"))
        })?;
        applied(&lb)
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let arn = current.id;
        if !require_not_foreign(&self.clients, ctx, &format!("load balancer {arn}"), arn).await? {
            return Ok(());
        }
        match self
            .clients
            .elbv2
            .delete_load_balancer()
            .load_balancer_arn(arn)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(classify("DeleteLoadBalancer", e)),
        }
        // Target groups stay "in use" until the load balancer is really gone.
        ctx.wait_for(&format!("load balancer {arn} to be deleted"), || async {
            Ok(self.describe(arn).await?.is_none().then_some(()))
        })
        .await
    }

    /// The load balancer holding the name, when it carries this node's tags; another stack's
    /// (or nobody's) is `NotOwned`, and the one this node replaces is not returned.
    async fn find(
        &self,
        ctx: &OpContext,
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = Props::parse(props)?;
        match self.claim(ctx, &p).await?.adopted() {
            Some(ours) => applied(&self.wait_active(ctx, &ours.id).await?).map(Some),
            None => Ok(None),
        }
    }
}

/// How errors name a load balancer.
fn object(name: &str) -> String {
    format!("load balancer `{name}`")
}
