//! Elastic Load Balancing v2: application load balancers, their target groups, listeners and
//! listener rules.

mod lb;
mod listener;
mod rule;
mod target_group;

use crate::AwsClients;
use crate::error::classify;
use aws_sdk_elasticloadbalancingv2::types::Tag;
use dagform_core::{Current, Kinds, OpContext, ResourceError};
use serde_json::Value as Json;
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    kinds.register(Arc::new(lb::LoadBalancer {
        clients: clients.clone(),
    }));
    kinds.register(Arc::new(target_group::TargetGroup {
        clients: clients.clone(),
    }));
    kinds.register(Arc::new(listener::Listener {
        clients: clients.clone(),
    }));
    kinds.register(Arc::new(rule::ListenerRule {
        clients: clients.clone(),
    }));
}

/// How many ARNs a batched read describes in one call: DescribeLoadBalancers takes at most
/// 20, and the other describes are kept to the same.
const ARN_BATCH: usize = 20;

/// The ids (ARNs) of a batch.
fn arns(items: &[Current<'_>]) -> Vec<String> {
    items.iter().map(|c| c.id.to_owned()).collect()
}

/// Load balancer and target group names: at most 32 alphanumerics and hyphens, no hyphen at
/// either end. AWS rejects anything else; the emulator does not check all of it.
fn validate_name(what: &str, name: &str) -> Result<(), ResourceError> {
    if name.is_empty() || name.len() > 32 {
        return Err(ResourceError::invalid(format!(
            "{what} name `{name}` must be 1 to 32 characters long (it has {})",
            name.len()
        )));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(ResourceError::invalid(format!(
            "{what} name `{name}` may only contain letters, digits and hyphens"
        )));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(ResourceError::invalid(format!(
            "{what} name `{name}` must not begin or end with a hyphen"
        )));
    }
    Ok(())
}

/// `value` must lie in `range`, or the properties are invalid.
fn check_range(
    what: &str,
    value: i32,
    range: std::ops::RangeInclusive<i32>,
) -> Result<(), ResourceError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ResourceError::invalid(format!(
            "{what} must be between {} and {}, got {value}",
            range.start(),
            range.end()
        )))
    }
}

/// The tags every ELBv2 object carries: dagform's own plus `Name` where the object has one.
fn tags(ctx: &OpContext, name: Option<&str>) -> Vec<Tag> {
    ctx.tags()
        .into_iter()
        .chain(name.map(|n| ("Name".to_string(), n.to_string())))
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Whether tags say dagform created the object for this stack and address, so `find` may adopt
/// it; an object of the same name made by anyone else is left alone.
pub(crate) fn tagged_for<'a>(
    ctx: &OpContext,
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> bool {
    let wanted = ctx.tags();
    let tags: Vec<_> = tags.into_iter().collect();
    wanted
        .iter()
        .all(|(k, v)| tags.iter().any(|(tk, tv)| tk == k && tv == v))
}

/// Whether the ELBv2 object `arn` carries this run's tags for `ctx.address`.
async fn owned(clients: &AwsClients, ctx: &OpContext, arn: &str) -> Result<bool, ResourceError> {
    let out = clients
        .elbv2
        .describe_tags()
        .resource_arns(arn)
        .send()
        .await
        .map_err(|e| classify("DescribeTags", e))?;
    Ok(out.tag_descriptions().iter().any(|d| {
        tagged_for(
            ctx,
            d.tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
        )
    }))
}

/// The resource part of an ARN (`targetgroup/name/id`), which CloudWatch metrics name.
fn arn_suffix(arn: &str) -> &str {
    arn.splitn(6, ':').nth(5).unwrap_or(arn)
}

/// `live` in the order of the recorded list when both hold the same items, so that AWS
/// reporting a list in another order is not taken for drift.
pub(crate) fn in_recorded_order(live: Vec<String>, recorded: Option<&Json>) -> Vec<String> {
    let Some(recorded) = recorded.and_then(Json::as_array) else {
        return live;
    };
    let recorded: Vec<String> = recorded
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let mut a = live.clone();
    let mut b = recorded.clone();
    a.sort();
    b.sort();
    if a == b { recorded } else { live }
}

/// The integer value of attribute `key`, if AWS reports it.
fn int_attribute<'a>(
    attributes: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>,
    key: &str,
) -> Option<i64> {
    attributes
        .into_iter()
        .find(|(k, _)| *k == Some(key))
        .and_then(|(_, v)| v?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_aws_rules() {
        assert!(validate_name("target group", "dev-customer1-backend-api-tg").is_ok());
        assert!(validate_name("target group", &"a".repeat(32)).is_ok());
        assert!(validate_name("target group", &"a".repeat(33)).is_err());
        assert!(validate_name("target group", "-abc").is_err());
        assert!(validate_name("target group", "abc-").is_err());
        assert!(validate_name("target group", "a_b").is_err());
        assert!(validate_name("target group", "").is_err());
    }

    #[test]
    fn suffix_is_the_resource_part() {
        assert_eq!(
            arn_suffix("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/abc"),
            "targetgroup/tg/abc"
        );
    }

    #[test]
    fn recorded_order_wins_for_same_items() {
        let rec = serde_json::json!(["b", "a"]);
        assert_eq!(
            in_recorded_order(vec!["a".into(), "b".into()], Some(&rec)),
            vec!["b", "a"]
        );
        assert_eq!(
            in_recorded_order(vec!["a".into(), "c".into()], Some(&rec)),
            vec!["a", "c"]
        );
    }
}
