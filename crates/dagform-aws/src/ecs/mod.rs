//! ECS: the cluster, the task definitions and the Fargate services that run the applications.

mod cluster;
mod service;
mod task_definition;

pub use cluster::EcsCluster;
pub use service::{EcsService, Stability, stability, wait_until_stable};
pub use task_definition::EcsTaskDefinition;

use crate::AwsClients;
use dagform_core::{Kinds, Properties};
use serde_json::Value as Json;
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    kinds.add(EcsCluster::new(clients.clone()));
    kinds.add(EcsTaskDefinition::new(clients.clone()));
    kinds.add(EcsService::new(clients.clone()));
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
