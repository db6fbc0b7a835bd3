//! What every kind shares: the tags that mark an object as a stack's, reading them back from
//! each service's own tag type, and mapping "not found" to `None`.
//!
//! The ownership rule itself lives in [`dagform_core::OpContext`]: an object is adopted only
//! when both its stack and address tags are this node's ([`OpContext::require_ours`]), and
//! changed or deleted only when it carries no other stack's tags
//! ([`OpContext::require_not_foreign`]). This module adapts the SDKs' tag types to it.

use crate::error::{classify, is_not_found};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use dagform_core::typed::{KindProperties, PropertyName};
use dagform_core::{Applied, Changes, Current, Kind, OpContext, ResourceError};
use std::collections::HashMap;

/// One service's tag type, read as a key and a value.
pub(crate) trait TagPair {
    fn pair(&self) -> (&str, &str);
}

/// One service's tag type, built from a key and a value.
pub(crate) trait NewTag: Sized {
    fn new_tag(key: &str, value: &str) -> Self;
}

/// The tags of `ctx`'s node in a service's own type, plus `Name` when the object has one.
pub(crate) fn tags_for<T: NewTag>(ctx: &OpContext, name: Option<&str>) -> Vec<T> {
    ctx.tag_pairs()
        .iter()
        .map(|(k, v)| T::new_tag(k, v))
        .chain(name.map(|n| T::new_tag("Name", n)))
        .collect()
}

/// A service's tags as key/value pairs, for [`OpContext::owner`] and friends.
pub(crate) fn pairs<T: TagPair>(tags: &[T]) -> impl Iterator<Item = (&str, &str)> {
    tags.iter().map(TagPair::pair)
}

/// Tags given as a map (CloudWatch Logs), as key/value pairs.
pub(crate) fn map_pairs(
    tags: Option<&HashMap<String, String>>,
) -> impl Iterator<Item = (&str, &str)> {
    tags.into_iter()
        .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// The result of a describe or get call, with "no such object" as `None`.
pub(crate) fn found<T, E, R>(
    operation: &str,
    result: Result<T, SdkError<E, R>>,
) -> Result<Option<T>, ResourceError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(classify(operation, e)),
    }
}

/// The result of a delete call, with "already gone" as success.
pub(crate) fn gone<T, E, R>(
    operation: &str,
    result: Result<T, SdkError<E, R>>,
) -> Result<(), ResourceError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    found(operation, result).map(|_| ())
}

/// Configuration overrides that make one call a single attempt. A create that carries no
/// idempotency token must not be retried by the SDK after a reset connection (the first
/// attempt may have gone through): its transient failure reaches the reconciler instead,
/// which looks for the object ([`dagform_core::ResourceKind::find`]) before trying again.
/// Use as `.customize().config_override(single_attempt::ec2())`.
pub(crate) mod single_attempt {
    use aws_config::retry::RetryConfig;

    macro_rules! single_attempt {
        ($($f:ident => $sdk:ident),+) => {$(
            pub(crate) fn $f() -> $sdk::config::Builder {
                $sdk::config::Builder::default().retry_config(RetryConfig::disabled())
            }
        )+};
    }

    single_attempt!(
        ec2 => aws_sdk_ec2,
        elbv2 => aws_sdk_elasticloadbalancingv2,
        ecs => aws_sdk_ecs,
        iam => aws_sdk_iam,
        logs => aws_sdk_cloudwatchlogs,
        ecr => aws_sdk_ecr,
        rds => aws_sdk_rds,
        autoscaling => aws_sdk_applicationautoscaling,
        sns => aws_sdk_sns
    );
}

macro_rules! tag_type {
    // Services whose tag key and value are optional strings.
    (optional $($t:ty),+) => {$(
        impl TagPair for $t {
            fn pair(&self) -> (&str, &str) {
                (self.key().unwrap_or_default(), self.value().unwrap_or_default())
            }
        }
    )+};
    // Services whose tag key and value are required strings.
    (required $($t:ty),+) => {$(
        impl TagPair for $t {
            fn pair(&self) -> (&str, &str) {
                (self.key(), self.value())
            }
        }
    )+};
    // Tag builders that cannot fail.
    (builds $($t:ty),+) => {$(
        impl NewTag for $t {
            fn new_tag(key: &str, value: &str) -> Self {
                <$t>::builder().key(key).value(value).build()
            }
        }
    )+};
    // Tag builders that check their required fields (always given here).
    (checked $($t:ty),+) => {$(
        impl NewTag for $t {
            fn new_tag(key: &str, value: &str) -> Self {
                <$t>::builder()
                    .key(key)
                    .value(value)
                    .build()
                    .expect("key and value are set")
            }
        }
    )+};
}

tag_type!(optional
    aws_sdk_ec2::types::Tag,
    aws_sdk_elasticloadbalancingv2::types::Tag,
    aws_sdk_ecs::types::Tag,
    aws_sdk_rds::types::Tag,
    aws_sdk_secretsmanager::types::Tag
);
tag_type!(required aws_sdk_ecr::types::Tag, aws_sdk_iam::types::Tag, aws_sdk_sns::types::Tag);
tag_type!(optional aws_sdk_cloudwatch::types::Tag);
tag_type!(builds aws_sdk_cloudwatch::types::Tag);
tag_type!(builds
    aws_sdk_ec2::types::Tag,
    aws_sdk_elasticloadbalancingv2::types::Tag,
    aws_sdk_ecs::types::Tag,
    aws_sdk_rds::types::Tag,
    aws_sdk_secretsmanager::types::Tag
);
tag_type!(checked aws_sdk_ecr::types::Tag, aws_sdk_iam::types::Tag, aws_sdk_sns::types::Tag);

impl TagPair for aws_sdk_acm::types::Tag {
    fn pair(&self) -> (&str, &str) {
        (self.key(), self.value().unwrap_or_default())
    }
}

impl NewTag for aws_sdk_acm::types::Tag {
    fn new_tag(key: &str, value: &str) -> Self {
        aws_sdk_acm::types::Tag::builder()
            .key(key)
            .value(value)
            .build()
            .expect("key is set")
    }
}

// --- Elastic Load Balancing and ACM ---

/// `live` in the order of the recorded list when both hold the same items, so that AWS
/// reporting a list in another order is not taken for drift.
pub(crate) fn in_recorded_order(
    live: Vec<String>,
    recorded: Option<&serde_json::Value>,
) -> Vec<String> {
    let Some(recorded) = recorded.and_then(serde_json::Value::as_array) else {
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

/// Brings an object of this node's that a create met under its unique name (port, priority)
/// to the desired properties, the way the reconciler finishes an adopted object: its tags say
/// it is this resource's, but no state records it (a lost record, or a create retried without
/// a `find`). A difference in a property that cannot change in place is an error rather than
/// a replacement: deleting an object is not a create's decision to make.
pub(crate) async fn finish_existing<K: Kind>(
    kind: &K,
    ctx: &OpContext,
    object: &str,
    found: Applied,
    props: &K::Props,
) -> Result<Applied, ResourceError> {
    let wanted = props.to_properties();
    let as_wanted = Current {
        id: &found.id,
        properties: &wanted,
        outputs: &found.outputs,
    };
    let Some(observed) = kind.read(ctx, as_wanted).await? else {
        return Err(ResourceError::Transient(format!(
            "{object} disappeared while being adopted"
        )));
    };
    let unmatched = dagform_core::plan::unmatched_properties(
        &wanted,
        &observed.properties,
        K::Props::SENSITIVE,
    );
    let changes = Changes::<K::Props>::new(&unmatched);
    if let Some(fixed) = changes
        .fields()
        .iter()
        .find(|f| K::Props::forces_replacement(**f))
    {
        let fixed = fixed.property();
        return Err(ResourceError::failed(format!(
            "{object} already exists for this resource with another `{fixed}` ({}); delete it \
             or change the configuration to match",
            observed.properties.get(fixed).cloned().unwrap_or_default()
        )));
    }
    if unmatched.is_empty() {
        let mut applied = found;
        applied.outputs.extend(observed.outputs);
        return Ok(applied);
    }
    let current = Current {
        id: &found.id,
        properties: &observed.properties,
        outputs: &observed.outputs,
    };
    kind.update(ctx, current, props, &changes).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagform_core::kind::{Owner, PollSettings};

    fn ctx() -> OpContext {
        OpContext::new("dev-app", "shared.vpc", PollSettings::default())
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

    #[test]
    fn tags_round_trip_through_each_service_type() {
        let ec2: Vec<aws_sdk_ec2::types::Tag> = tags_for(&ctx(), Some("dev-vpc"));
        assert_eq!(ctx().owner(pairs(&ec2)), Owner::Ours);
        assert!(pairs(&ec2).any(|p| p == ("Name", "dev-vpc")));
        let iam: Vec<aws_sdk_iam::types::Tag> = tags_for(&ctx(), None);
        assert_eq!(iam.len(), 2);
        assert_eq!(ctx().owner(pairs(&iam)), Owner::Ours);
        let acm: Vec<aws_sdk_acm::types::Tag> = tags_for(&ctx(), None);
        assert_eq!(ctx().owner(pairs(&acm)), Owner::Ours);
    }

    #[test]
    fn another_environment_is_not_ours() {
        let prod = OpContext::new("prod-app", "shared.vpc", PollSettings::default());
        let tags: Vec<aws_sdk_ecr::types::Tag> = tags_for(&prod, None);
        let owner = ctx().owner(pairs(&tags));
        assert_eq!(
            owner,
            Owner::OtherStack {
                stack: "prod-app".into(),
                address: Some("shared.vpc".into())
            }
        );
        let err = ctx()
            .require_ours("repository `app`", pairs(&tags))
            .unwrap_err();
        assert!(matches!(err, ResourceError::NotOwned(_)));
        assert!(err.to_string().contains("stack `prod-app`"), "{err}");
        assert!(
            ctx()
                .require_not_foreign("repository `app`", pairs(&tags))
                .is_err()
        );
        let untagged: Vec<aws_sdk_ecr::types::Tag> = Vec::new();
        assert_eq!(ctx().owner(pairs(&untagged)), Owner::Nobody);
        assert!(ctx().require_ours("x", pairs(&untagged)).is_err());
        assert!(ctx().require_not_foreign("x", pairs(&untagged)).is_ok());
    }
}
