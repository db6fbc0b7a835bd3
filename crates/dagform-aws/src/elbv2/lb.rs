//! `aws_lb`: an application load balancer.

use super::{
    ARN_BATCH, Claim, adopt_holder, adoptable, arns, held_by_superseded, int_attribute,
    require_not_foreign, taken_and_freed,
};
use crate::AwsClients;
use crate::clients::{by_id, each_concurrently, fail_all, read_each};
use crate::error::{classify, code, is_not_found};
use crate::ownership::{found, in_recorded_order, single_attempt, tags_for};
use aws_sdk_elasticloadbalancingv2::types::{
    LoadBalancerAttribute, LoadBalancerSchemeEnum, LoadBalancerStateEnum, LoadBalancerTypeEnum,
};
use dagform_core::polls::Polls;
use dagform_core::{Applied, Changes, Current, Kind, Observed, OpContext, ResourceError};
use dagform_resources::elbv2::{LoadBalancerField, LoadBalancerOutputs, LoadBalancerProps};
use std::collections::HashMap;
use std::sync::Arc;

const IDLE_TIMEOUT: &str = "idle_timeout.timeout_seconds";
/// AWS's idle timeout when none is set, restored when the property is removed.
const DEFAULT_IDLE_TIMEOUT: i32 = 60;

/// `aws_lb`: an application load balancer; its name and scheme are fixed at creation.
#[derive(Clone)]
pub struct LoadBalancer {
    clients: Arc<AwsClients>,
    /// The waits of every load balancer becoming active or gone, one describe call a round
    /// (shards of a large stack come up together).
    polls: Arc<Polls<String, Lb>>,
}

type Lb = aws_sdk_elasticloadbalancingv2::types::LoadBalancer;

fn outputs(lb: &Lb) -> Result<LoadBalancerOutputs, ResourceError> {
    let arn = lb
        .load_balancer_arn()
        .ok_or_else(|| ResourceError::failed("DescribeLoadBalancers: load balancer without ARN"))?;
    Ok(LoadBalancerOutputs {
        id: arn.to_owned(),
        arn: arn.to_owned(),
        dns_name: lb.dns_name().unwrap_or_default().to_owned(),
        canonical_hosted_zone_id: lb.canonical_hosted_zone_id().unwrap_or_default().to_owned(),
        name: lb.load_balancer_name().unwrap_or_default().to_owned(),
    })
}

fn applied(lb: &Lb) -> Result<Applied, ResourceError> {
    outputs(lb).map(Applied::of)
}

/// The load balancers of `arns` that exist, by ARN. AWS fails a describe by ARNs as a whole
/// when one of them is gone (which is what a deletion wait waits for): the ARNs are then
/// described one by one.
async fn lbs_by_arn(
    clients: &AwsClients,
    arns: Vec<String>,
) -> Result<HashMap<String, Lb>, ResourceError> {
    let describe = |arns: Vec<String>| {
        clients
            .elbv2
            .describe_load_balancers()
            .set_load_balancer_arns(Some(arns))
            .send()
    };
    match describe(arns.clone()).await {
        Ok(out) => Ok(by_id(out.load_balancers().to_vec(), |l| {
            l.load_balancer_arn()
        })),
        Err(e) if is_not_found(&e) && arns.len() > 1 => {
            let mut found = HashMap::new();
            for one in each_concurrently(arns.into_iter().map(|arn| describe(vec![arn]))).await {
                match one {
                    Ok(out) => found.extend(by_id(out.load_balancers().to_vec(), |l| {
                        l.load_balancer_arn()
                    })),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(classify("DescribeLoadBalancers", e)),
                }
            }
            Ok(found)
        }
        Err(e) if is_not_found(&e) => Ok(HashMap::new()),
        Err(e) => Err(classify("DescribeLoadBalancers", e)),
    }
}

impl LoadBalancer {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        let describe_all = clients.clone();
        let polls = Arc::new(Polls::new(
            ARN_BATCH,
            Arc::new(move |arns: Vec<String>| {
                let clients = describe_all.clone();
                Box::pin(async move { lbs_by_arn(&clients, arns).await })
            }),
        ));
        Self { clients, polls }
    }

    async fn describe(&self, arn: &str) -> Result<Option<Lb>, ResourceError> {
        let result = self
            .clients
            .elbv2
            .describe_load_balancers()
            .load_balancer_arns(arn)
            .send()
            .await;
        Ok(found("DescribeLoadBalancers", result)?
            .and_then(|out| out.load_balancers().first().cloned()))
    }

    /// A live load balancer in the shape of the desired properties.
    async fn observe(&self, lb: &Lb, current: Current<'_>) -> Result<Observed, ResourceError> {
        let recorded = current.properties;
        let subnets = lb
            .availability_zones()
            .iter()
            .filter_map(|az| az.subnet_id().map(str::to_owned))
            .collect();
        let idle_timeout_seconds =
            if recorded.contains_key(LoadBalancerField::IdleTimeoutSeconds.as_str()) {
                // An attribute never set may go unreported (the emulator does so): it is then
                // AWS's default, which an adopted half-built load balancer must show to be
                // finished.
                Some(
                    self.idle_timeout(current.id)
                        .await?
                        .unwrap_or(DEFAULT_IDLE_TIMEOUT),
                )
            } else {
                None
            };
        let props = LoadBalancerProps {
            name: lb.load_balancer_name().unwrap_or_default().to_owned(),
            scheme: lb
                .scheme()
                .map(|s| s.as_str())
                .unwrap_or_default()
                .to_owned(),
            subnet_ids: in_recorded_order(subnets, recorded.get("subnet_ids")),
            security_group_ids: in_recorded_order(
                lb.security_groups().to_vec(),
                recorded.get("security_group_ids"),
            ),
            idle_timeout_seconds,
        };
        Ok(Observed::of(&props, outputs(lb)?))
    }

    /// Waits until the load balancer leaves `provisioning` (about 2.5 minutes on AWS).
    async fn wait_active(&self, ctx: &OpContext, arn: &str) -> Result<Lb, ResourceError> {
        ctx.wait_for(&format!("load balancer {arn} to become active"), || async {
            let Some(lb) = self.polls.poll(ctx, arn.to_owned()).await? else {
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
    async fn claim(&self, ctx: &OpContext, p: &LoadBalancerProps) -> Result<Claim, ResourceError> {
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

    async fn idle_timeout(&self, arn: &str) -> Result<Option<i32>, ResourceError> {
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
impl Kind for LoadBalancer {
    type Props = LoadBalancerProps;

    /// A load balancer takes about two and a half minutes to become active.
    fn typical_wait(&self, deleting: bool) -> std::time::Duration {
        std::time::Duration::from_secs(if deleting { 30 } else { 150 })
    }

    /// The name is unique in the region, and AWS answers a create of an existing name with
    /// the same settings with that load balancer: whatever holds the name is checked first, and
    /// what the create returns is checked again, so another stack's is never taken.
    async fn create(
        &self,
        ctx: &OpContext,
        p: &LoadBalancerProps,
    ) -> Result<Applied, ResourceError> {
        let object = object(&p.name);
        let holder = self.claim(ctx, p).await?;
        if let Some(adopted) = adopt_holder(self, ctx, &object, holder, p).await? {
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
                let holder = self.claim(ctx, p).await?;
                return adopt_holder(self, ctx, &object, holder, p)
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
        p: &LoadBalancerProps,
        changed: &Changes<LoadBalancerProps>,
    ) -> Result<Applied, ResourceError> {
        let arn = current.id;
        require_not_foreign(&self.clients, ctx, &object(&p.name), arn).await?;
        let elbv2 = &self.clients.elbv2;
        if changed.contains(LoadBalancerField::SecurityGroupIds) {
            elbv2
                .set_security_groups()
                .load_balancer_arn(arn)
                .set_security_groups(Some(p.security_group_ids.clone()))
                .send()
                .await
                .map_err(|e| classify("SetSecurityGroups", e))?;
        }
        if changed.contains(LoadBalancerField::SubnetIds) {
            elbv2
                .set_subnets()
                .load_balancer_arn(arn)
                .set_subnets(Some(p.subnet_ids.clone()))
                .send()
                .await
                .map_err(|e| classify("SetSubnets", e))?;
        }
        if changed.contains(LoadBalancerField::IdleTimeoutSeconds) {
            self.set_idle_timeout(arn, p.idle_timeout_seconds.unwrap_or(DEFAULT_IDLE_TIMEOUT))
                .await?;
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
        let deleted = self
            .clients
            .elbv2
            .delete_load_balancer()
            .load_balancer_arn(arn)
            .send()
            .await;
        if found("DeleteLoadBalancer", deleted)?.is_none() {
            return Ok(());
        }
        // Target groups stay "in use" until the load balancer is really gone.
        ctx.wait_for(&format!("load balancer {arn} to be deleted"), || async {
            Ok(self
                .polls
                .poll(ctx, arn.to_owned())
                .await?
                .is_none()
                .then_some(()))
        })
        .await
    }

    /// The load balancer holding the name, when it carries this node's tags; another stack's
    /// (or nobody's) is `NotOwned`, and the one this node replaces is not returned.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &LoadBalancerProps,
    ) -> Result<Option<Applied>, ResourceError> {
        match self.claim(ctx, p).await?.adopted() {
            Some(ours) => applied(&self.wait_active(ctx, &ours.id).await?).map(Some),
            None => Ok(None),
        }
    }

    /// What `status` shows of it.
    async fn inspect(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<serde_json::Value>, ResourceError> {
        Ok(Some(
            crate::inspect::load_balancer(&self.clients, current)
                .await?
                .to_json(),
        ))
    }
}

/// How errors name a load balancer.
fn object(name: &str) -> String {
    format!("load balancer `{name}`")
}
