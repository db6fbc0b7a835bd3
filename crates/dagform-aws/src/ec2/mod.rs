//! EC2 networking kinds: VPC, subnets, gateways, routing and security groups, plus the
//! default-VPC data source.

mod gateway;
mod route;
mod security_group;
mod subnet;
mod vpc;

use crate::AwsClients;
use crate::error::{classify, is_not_found};
use crate::ownership;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use dagform_core::kind::Owner;
use dagform_core::{Current, KindOutputs, Kinds, Observed, OpContext, ResourceError};
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use gateway::{Eip, InternetGateway, NatGateway};
pub use route::{RouteTable, RouteTableAssociation};
pub use security_group::{SecurityGroup, SecurityGroupRule};
pub use subnet::Subnet;
pub use vpc::{DefaultVpc, Vpc};

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    let c = || clients.clone();
    kinds.add(Vpc::new(c()));
    kinds.add(DefaultVpc::new(c()));
    kinds.add(Subnet::new(c()));
    kinds.add(InternetGateway::new(c()));
    kinds.add(Eip::new(c()));
    kinds.add(NatGateway::new(c()));
    kinds.add(RouteTable::new(c()));
    kinds.add(RouteTableAssociation::new(c()));
    kinds.add(SecurityGroup::new(c()));
    kinds.add(SecurityGroupRule::new(c()));
}

/// The tags of an object created for `ctx`: the dagform tags, plus `Name` when given.
fn tag_spec(resource: ResourceType, ctx: &OpContext, name: Option<&str>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(ownership::tags_for::<Tag>(ctx, name)))
        .build()
}

fn filter(name: &str, value: impl Into<String>) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// How many ids a batched read puts in one filter; EC2 caps the values of a filter at 200.
const FILTER_BATCH: usize = 100;

/// A filter matching the ids of `items`. Batched reads filter rather than list ids, since a
/// describe by ids fails as a whole when one of them no longer exists.
fn filter_ids(name: &str, items: &[Current<'_>]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(items.iter().map(|c| c.id.to_owned()).collect()))
        .build()
}

/// Filters narrowing a describe to the objects tagged for `ctx`'s stack and address (used by
/// `find`; what they return is checked again with [`adoptable`]).
fn tagged_for(ctx: &OpContext) -> Vec<Filter> {
    ctx.tag_pairs()
        .into_iter()
        .map(|(k, v)| filter(&format!("tag:{k}"), v))
        .collect()
}

/// An EC2 object as `find` sees it: its id and its tags.
trait Ec2Object {
    fn object_id(&self) -> Option<&str>;
    fn object_tags(&self) -> &[Tag];
}

macro_rules! ec2_object {
    ($($t:ty => $id:ident),+ $(,)?) => {$(
        impl Ec2Object for $t {
            fn object_id(&self) -> Option<&str> {
                self.$id()
            }
            fn object_tags(&self) -> &[Tag] {
                self.tags()
            }
        }
    )+};
}

ec2_object!(
    aws_sdk_ec2::types::Vpc => vpc_id,
    aws_sdk_ec2::types::Subnet => subnet_id,
    aws_sdk_ec2::types::InternetGateway => internet_gateway_id,
    aws_sdk_ec2::types::Address => allocation_id,
    aws_sdk_ec2::types::NatGateway => nat_gateway_id,
    aws_sdk_ec2::types::RouteTable => route_table_id,
    aws_sdk_ec2::types::SecurityGroup => group_id,
    aws_sdk_ec2::types::SecurityGroupRule => security_group_rule_id,
);

/// Whether `ctx` may adopt `object`: tagged for this very stack and address (checked here even
/// after a tag filter, as the emulator ignores some) and not an older object of this address
/// that awaits deletion.
fn adoptable(ctx: &OpContext, object: &impl Ec2Object) -> bool {
    object
        .object_id()
        .is_some_and(|id| !ctx.superseded.iter().any(|s| s == id))
        && ctx.owner(ownership::pairs(object.object_tags())) == Owner::Ours
}

/// The object `find` adopts among those it listed. Several can only be left by duplicated
/// creates, and EC2 reports no creation time for most objects: the lowest id is taken, so every
/// run adopts the same one.
fn pick_adoptable<'a, T: Ec2Object>(
    ctx: &OpContext,
    objects: impl IntoIterator<Item = &'a T>,
) -> Option<&'a T> {
    objects
        .into_iter()
        .filter(|o| adoptable(ctx, *o))
        .min_by_key(|o| o.object_id())
}

/// The `Name` tag of an object.
fn name_tag(tags: &[Tag]) -> Option<&str> {
    ownership::pairs(tags).find_map(|(k, v)| (k == "Name").then_some(v))
}

/// A live object of a kind named by its `Name` tag, in the shape of its properties: `name` is
/// null when the tag is missing, so that the object shows the difference and gets it.
fn observed_named(
    properties: &impl Serialize,
    outputs: impl KindOutputs,
    tags: &[Tag],
) -> Observed {
    let mut observed = Observed::of(properties, outputs);
    if name_tag(tags).is_none() {
        observed
            .properties
            .insert("name".into(), serde_json::Value::Null);
    }
    observed
}

/// Fails unless the object with `id` may be changed or deleted by `ctx`: it must not carry
/// another stack's or resource's tags. For kinds that do not describe the object anyway; an
/// object already gone has no tags and passes (its delete then succeeds as already gone).
async fn require_not_foreign(
    clients: &AwsClients,
    ctx: &OpContext,
    what: &str,
    id: &str,
) -> Result<(), ResourceError> {
    let tags: Vec<_> = clients
        .ec2
        .describe_tags()
        .filters(filter("resource-id", id))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify("DescribeTags", e))?;
    ctx.require_not_foreign(
        &format!("{what} `{id}`"),
        tags.iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
    )
}

/// Sets the `Name` tag of an existing object (a rename is an in-place update).
async fn set_name(clients: &AwsClients, id: &str, name: &str) -> Result<(), ResourceError> {
    clients
        .ec2
        .create_tags()
        .resources(id)
        .tags(Tag::builder().key("Name").value(name).build())
        .send()
        .await
        .map_err(|e| classify("CreateTags", e))?;
    Ok(())
}

/// Turns `*.NotFound` into Transient: right after an object is created, EC2 may not know it
/// yet in calls that reference it (eventual consistency).
fn not_yet_visible<E, R>(operation: &str, err: SdkError<E, R>) -> ResourceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let missing = is_not_found(&err);
    match classify(operation, err) {
        ResourceError::Failed(m) if missing => ResourceError::Transient(m),
        other => other,
    }
}

/// Runs `call` until the objects it names are visible (it stops answering `*.NotFound`),
/// polling for at most two minutes: long enough for EC2's eventual consistency, short enough
/// that a wrong id fails soon.
async fn until_visible<T, E, R, F, Fut>(
    ctx: &OpContext,
    operation: &str,
    mut call: F,
) -> Result<T, ResourceError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
{
    let mut bounded = ctx.clone();
    bounded.poll.timeout = bounded.poll.timeout.min(Duration::from_secs(120));
    bounded
        .wait_for(operation, || {
            let attempt = call();
            async move {
                attempt
                    .await
                    .map(Some)
                    .map_err(|e| not_yet_visible(operation, e))
            }
        })
        .await
}
