//! RDS: a database instance with its subnet and parameter groups, and existing databases a
//! stack only refers to. One file per kind; what they share is here.

mod instance;
mod instance_lookup;
mod parameter_group;
mod subnet_group;

pub use instance::Instance;
pub use instance_lookup::InstanceLookup;
pub use parameter_group::ParameterGroup;
pub use subnet_group::SubnetGroup;

use crate::AwsClients;
use crate::error::{classify, code};
use crate::ownership::{finish_existing, found};
use aws_sdk_rds::types::{DbInstance, Tag};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use dagform_core::{Applied, Kind, Kinds, OpContext, ResourceError};
use serde_json::Value as Json;
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    let c = || clients.clone();
    kinds.add(SubnetGroup::new(c()));
    kinds.add(ParameterGroup::new(c()));
    kinds.add(Instance::new(c()));
    kinds.add(InstanceLookup::new(c()));
}

/// Codes RDS answers while an object is busy (an instance still modifying or being deleted,
/// a group still used by an instance that is going away): retried, unlike other errors.
const BUSY_CODES: &[&str] = &[
    "InvalidDBInstanceState",
    "InvalidDBSubnetGroupStateFault",
    "InvalidDBParameterGroupState",
];

fn is_busy<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    code(err).is_some_and(|c| BUSY_CODES.contains(&c))
}

/// A busy object's refusal is worth another try, unlike other failures.
fn retried_if_busy(busy: bool, err: ResourceError) -> ResourceError {
    match err {
        ResourceError::Failed(m) if busy => ResourceError::Transient(m),
        other => other,
    }
}

fn rds_error<E, R>(operation: &str, err: SdkError<E, R>) -> ResourceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let busy = is_busy(&err);
    retried_if_busy(busy, classify(operation, err))
}

/// [`found`] for a call that changes an object: "no such object" is `None`, and a busy
/// object's refusal is retried.
fn rds_found<T, E, R>(
    operation: &str,
    result: Result<T, SdkError<E, R>>,
) -> Result<Option<T>, ResourceError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let busy = result.as_ref().err().is_some_and(is_busy);
    found(operation, result).map_err(|e| retried_if_busy(busy, e))
}

/// [`rds_found`] for a delete: an object already gone is success.
fn rds_gone<T, E, R>(
    operation: &str,
    result: Result<T, SdkError<E, R>>,
) -> Result<(), ResourceError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    rds_found(operation, result).map(|_| ())
}

/// The tags of the object at `arn` (the group describe calls report none); `None` when it
/// is gone.
async fn tags_of(clients: &AwsClients, arn: &str) -> Result<Option<Vec<Tag>>, ResourceError> {
    let listed = clients
        .rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await;
    Ok(found("ListTagsForResource", listed)?.map(|out| out.tag_list.unwrap_or_default()))
}

/// Whether `id` is an older object of this node, replaced and awaiting deletion.
fn is_superseded(ctx: &OpContext, id: &str) -> bool {
    ctx.superseded.iter().any(|s| s.eq_ignore_ascii_case(id))
}

/// Adopts the object of this node's that holds the name a create asked for, bringing it to
/// the desired properties. Identifiers are unique in the region, so anyone else's object
/// under the name is an error (from `find`).
async fn adopt_existing<K: Kind>(
    kind: &K,
    ctx: &OpContext,
    object: &str,
    props: &K::Props,
) -> Result<Applied, ResourceError> {
    match kind.find(ctx, props).await? {
        Some(existing) => finish_existing(kind, ctx, object, existing, props).await,
        None => Err(ResourceError::failed(format!(
            "{object} is held by an object this resource replaced, which is still to be \
             deleted"
        ))),
    }
}

/// RDS keeps names in lower case: the recorded spelling is reported when it differs only in
/// case, so that it is not taken for drift.
fn as_recorded(recorded: Option<&Json>, live: &str) -> String {
    match recorded.and_then(Json::as_str) {
        Some(r) if r.eq_ignore_ascii_case(live) => r.to_owned(),
        _ => live.to_owned(),
    }
}

/// The instance, or `None` when it does not exist.
async fn describe_instance(
    clients: &AwsClients,
    id: &str,
) -> Result<Option<DbInstance>, ResourceError> {
    let described = clients
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await;
    Ok(
        found("DescribeDBInstances", described)?
            .and_then(|out| out.db_instances().first().cloned()),
    )
}
