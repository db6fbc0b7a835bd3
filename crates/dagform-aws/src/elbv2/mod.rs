//! Elastic Load Balancing v2: application load balancers, their target groups, listeners,
//! listener rules and listeners' extra (SNI) certificates.

mod lb;
mod listener;
mod listener_certificate;
mod rule;
mod target_group;

use crate::AwsClients;
use crate::ownership::{finish_existing, found, pairs};
use aws_sdk_elasticloadbalancingv2::types::Tag;
use dagform_core::{Applied, Current, Kind, Kinds, OpContext, ResourceError};
use std::sync::Arc;

pub use lb::LoadBalancer;
pub use listener::Listener;
pub use listener_certificate::ListenerCertificate;
pub use rule::ListenerRule;
pub use target_group::TargetGroup;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    let c = || clients.clone();
    kinds.add(LoadBalancer::new(c()));
    kinds.add(TargetGroup::new(c()));
    kinds.add(Listener::new(c()));
    kinds.add(ListenerRule::new(c()));
    kinds.add(ListenerCertificate::new(c()));
}

/// How many ARNs a batched read describes in one call: DescribeLoadBalancers takes at most
/// 20, and the other describes are kept to the same.
const ARN_BATCH: usize = 20;

/// The ids (ARNs) of a batch.
fn arns(items: &[Current<'_>]) -> Vec<String> {
    items.iter().map(|c| c.id.to_owned()).collect()
}

/// The tags of the ELBv2 object `arn`; `None` when it is gone (AWS answers "not found";
/// the emulator answers with no tags, which reads as nobody's).
async fn tags_of(clients: &AwsClients, arn: &str) -> Result<Option<Vec<Tag>>, ResourceError> {
    let out = found(
        "DescribeTags",
        clients
            .elbv2
            .describe_tags()
            .resource_arns(arn)
            .send()
            .await,
    )?;
    Ok(out.map(|out| {
        out.tag_descriptions()
            .iter()
            .filter(|d| d.resource_arn() == Some(arn))
            .flat_map(|d| d.tags().iter().cloned())
            .collect()
    }))
}

/// Whether an object found under the key this node wants (a region-unique name, a port of
/// its load balancer, a priority of its listener) may be adopted: `Ok(true)` when its tags are
/// this node's, `Ok(false)` when it is an older object of this node awaiting deletion (never
/// adopted), `NotOwned` naming the owner otherwise.
async fn adoptable(
    clients: &AwsClients,
    ctx: &OpContext,
    object: &str,
    arn: &str,
) -> Result<bool, ResourceError> {
    if ctx.superseded.iter().any(|s| s == arn) {
        return Ok(false);
    }
    let tags = tags_of(clients, arn).await?.unwrap_or_default();
    ctx.require_ours(object, pairs(&tags))?;
    Ok(true)
}

/// Who holds the key (region-unique name, port of a load balancer, priority of a listener) a
/// node wants, once another stack's or nobody's holder has been refused.
enum Claim {
    /// No object holds the key.
    Free,
    /// This node's object holds it: adopt it.
    Ours(Applied),
    /// The object this node replaces holds it until it is deleted: never adopted.
    Superseded,
}

impl Claim {
    /// What `find` returns for the claim.
    fn adopted(self) -> Option<Applied> {
        match self {
            Claim::Ours(applied) => Some(applied),
            Claim::Free | Claim::Superseded => None,
        }
    }
}

/// The claim on a key held by `holder`, if any: `NotOwned` naming the owner unless it is this
/// node's.
async fn claim(
    clients: &AwsClients,
    ctx: &OpContext,
    object: &str,
    holder: Option<Applied>,
) -> Result<Claim, ResourceError> {
    let Some(holder) = holder else {
        return Ok(Claim::Free);
    };
    Ok(if adoptable(clients, ctx, object, &holder.id).await? {
        Claim::Ours(holder)
    } else {
        Claim::Superseded
    })
}

/// A create's answer to the object holding its key: this node's is finished and adopted, the
/// one it replaces blocks the create; `None` when the key is free.
async fn adopt_holder<K: Kind + Clone>(
    kind: &K,
    ctx: &OpContext,
    object: &str,
    claim: Claim,
    props: &K::Props,
) -> Result<Option<Applied>, ResourceError> {
    match claim {
        Claim::Free => Ok(None),
        Claim::Superseded => Err(held_by_superseded(object)),
        Claim::Ours(existing) => finish_existing(kind, ctx, object, existing, props)
            .await
            .map(Some),
    }
}

/// A create that AWS refused because the key is taken, where the holder is gone by the time
/// it is looked at: retried.
fn taken_and_freed(object: &str) -> ResourceError {
    ResourceError::Transient(format!("{object} was taken when created and is free again"))
}

/// The old object of this node still holds the key the new one wants.
fn held_by_superseded(object: &str) -> ResourceError {
    ResourceError::failed(format!(
        "{object} is still held by the older object this resource replaces, which is never \
         adopted: delete it first, or give the new one another name, port or priority"
    ))
}

/// Refuses to change or delete the object `arn` when it carries another stack's or another
/// resource's tags; an untagged object the state records may be changed. `Ok(false)` when the
/// object is gone.
async fn require_not_foreign(
    clients: &AwsClients,
    ctx: &OpContext,
    object: &str,
    arn: &str,
) -> Result<bool, ResourceError> {
    let Some(tags) = tags_of(clients, arn).await? else {
        return Ok(false);
    };
    ctx.require_not_foreign(object, pairs(&tags))?;
    Ok(true)
}

/// The resource part of an ARN (`targetgroup/name/id`), which CloudWatch metrics name.
fn arn_suffix(arn: &str) -> &str {
    arn.splitn(6, ':').nth(5).unwrap_or(arn)
}

/// The integer value of attribute `key`, if AWS reports it.
fn int_attribute<'a>(
    attributes: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>,
    key: &str,
) -> Option<i32> {
    attributes
        .into_iter()
        .find(|(k, _)| *k == Some(key))
        .and_then(|(_, v)| v?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_is_the_resource_part() {
        assert_eq!(
            arn_suffix("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/abc"),
            "targetgroup/tg/abc"
        );
    }
}
