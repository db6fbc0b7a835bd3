//! ECS: the cluster, the task definitions and the Fargate services that run the applications.

mod cluster;
mod service;
mod task_definition;

pub use cluster::EcsCluster;
pub use service::{EcsService, Stability, stability, wait_until_stable};
pub use task_definition::EcsTaskDefinition;

use crate::AwsClients;
use aws_sdk_ecs::types::Tag;
use dagform_core::{Kinds, OpContext, Properties};
use serde_json::Value as Json;
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    kinds.register(Arc::new(EcsCluster::new(clients.clone())));
    kinds.register(Arc::new(EcsTaskDefinition::new(clients.clone())));
    kinds.register(Arc::new(EcsService::new(clients.clone())));
}

/// ECS's rule for cluster, service, family and container names.
fn valid_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The tags every ECS object carries: the node's tags, plus `Name` where it has a name.
fn tags(ctx: &OpContext, name: Option<&str>) -> Vec<Tag> {
    ctx.tags()
        .into_iter()
        .chain(name.map(|n| ("Name".to_string(), n.to_string())))
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn has_address_tag(tags: &[Tag], ctx: &OpContext) -> bool {
    tags.iter()
        .any(|t| t.key() == Some("dagform:address") && t.value() == Some(ctx.address.as_str()))
}

/// Records an optional property as read: shown when it was asked for or when it differs from
/// AWS's default (drift), null when asked for but absent, left out otherwise.
fn observe_optional(
    observed: &mut Properties,
    recorded: &Properties,
    key: &str,
    live: Option<Json>,
    default: Option<Json>,
) {
    let asked = recorded.contains_key(key);
    match live {
        Some(v) if asked || default.as_ref() != Some(&v) => {
            observed.insert(key.into(), v);
        }
        None if asked => {
            observed.insert(key.into(), Json::Null);
        }
        _ => {}
    }
}
