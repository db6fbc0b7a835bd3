//! `aws_subnet`.

use super::{
    FILTER_BATCH, adoptable, filter, filter_ids, name_tag, not_yet_visible, observed_named,
    pick_adoptable, require_not_foreign, set_name, tag_spec, until_visible,
};
use crate::AwsClients;
use crate::clients::{by_id, each_item};
use crate::error::{classify, code};
use crate::ownership::{found, gone, pairs, single_attempt};
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType};
use dagform_core::kind::Owner;
use dagform_core::{Applied, Changes, Current, Kind, Observed, OpContext, ResourceError};
use dagform_resources::ec2::{SubnetField, SubnetOutputs, SubnetProps};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// `aws_subnet`: a subnet in one AZ; only its public-IP mapping changes in place.
pub struct Subnet {
    clients: Arc<AwsClients>,
}

impl Subnet {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    async fn set_map_public_ip(
        &self,
        ctx: &OpContext,
        id: &str,
        on: bool,
    ) -> Result<(), ResourceError> {
        let req = self
            .clients
            .ec2
            .modify_subnet_attribute()
            .subnet_id(id)
            .map_public_ip_on_launch(AttributeBooleanValue::builder().value(on).build());
        until_visible(ctx, "ModifySubnetAttribute", move || req.clone().send()).await?;
        Ok(())
    }

    async fn subnets_of(
        &self,
        vpc_id: &str,
    ) -> Result<Vec<aws_sdk_ec2::types::Subnet>, ResourceError> {
        self.clients
            .ec2
            .describe_subnets()
            .filters(filter("vpc-id", vpc_id))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeSubnets", e))
    }

    /// After `InvalidSubnet.Conflict`: a subnet of ours at exactly this block is what an
    /// earlier attempt made (its answer lost), adopted and brought to the desired properties;
    /// any other subnet overlapping the block is not ours to take.
    async fn resolve_conflict(
        &self,
        ctx: &OpContext,
        p: &SubnetProps,
    ) -> Result<Applied, ResourceError> {
        let subnets = self.subnets_of(&p.vpc_id).await?;
        let ours = subnets
            .iter()
            .find(|s| adoptable(ctx, *s) && s.cidr_block() == Some(p.cidr_block.as_str()));
        let Some(subnet) = ours else {
            return Err(conflict_error(ctx, p, &subnets));
        };
        let id = subnet.subnet_id().unwrap_or_default();
        if name_tag(subnet.tags()) != Some(p.name.as_str()) {
            set_name(&self.clients, id, &p.name).await?;
        }
        if subnet.map_public_ip_on_launch().unwrap_or(false) != p.map_public_ip_on_launch {
            self.set_map_public_ip(ctx, id, p.map_public_ip_on_launch)
                .await?;
        }
        // Another AZ shows in the next read, and the subnet is replaced.
        Ok(applied(id, subnet.availability_zone().unwrap_or_default()))
    }
}

/// The first and last address of a CIDR block.
fn address_range(cidr: &str) -> Option<(u32, u32)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    let first = u32::from(addr) & mask;
    Some((first, first | !mask))
}

fn overlaps(a: &str, b: &str) -> bool {
    match (address_range(a), address_range(b)) {
        (Some((a0, a1)), Some((b0, b1))) => a0 <= b1 && b0 <= a1,
        _ => false,
    }
}

/// The error for a block that overlaps a subnet this node may not adopt, naming that subnet
/// and its owner.
fn conflict_error(
    ctx: &OpContext,
    p: &SubnetProps,
    subnets: &[aws_sdk_ec2::types::Subnet],
) -> ResourceError {
    let Some(other) = subnets
        .iter()
        .find(|s| s.cidr_block().is_some_and(|c| overlaps(c, &p.cidr_block)))
    else {
        // AWS saw a subnet this describe does not show yet.
        return ResourceError::Transient(format!(
            "CreateSubnet: {} conflicts with a subnet of VPC `{}` not visible yet",
            p.cidr_block, p.vpc_id
        ));
    };
    let what = format!(
        "subnet `{}` ({}, overlapping {}) in VPC `{}`",
        other.subnet_id().unwrap_or_default(),
        other.cidr_block().unwrap_or_default(),
        p.cidr_block,
        p.vpc_id
    );
    match ctx.owner(pairs(other.tags())) {
        Owner::Ours => ResourceError::failed(format!(
            "{what} is an older subnet of this resource; it must be deleted first"
        )),
        owner => ctx.not_owned(&what, &owner),
    }
}

fn applied(id: &str, availability_zone: &str) -> Applied {
    Applied::of(SubnetOutputs {
        id: id.to_owned(),
        availability_zone: availability_zone.to_owned(),
    })
}

/// A live subnet in the shape of the desired properties.
fn observe(s: &aws_sdk_ec2::types::Subnet, current: Current<'_>) -> Observed {
    let props = SubnetProps {
        name: name_tag(s.tags()).unwrap_or_default().to_owned(),
        vpc_id: s.vpc_id().unwrap_or_default().to_owned(),
        cidr_block: s.cidr_block().unwrap_or_default().to_owned(),
        availability_zone: s.availability_zone().unwrap_or_default().to_owned(),
        map_public_ip_on_launch: s.map_public_ip_on_launch().unwrap_or(false),
    };
    let outputs = SubnetOutputs {
        id: current.id.to_owned(),
        availability_zone: props.availability_zone.clone(),
    };
    observed_named(&props, outputs, s.tags())
}

#[async_trait::async_trait]
impl Kind for Subnet {
    type Props = SubnetProps;

    async fn create(&self, ctx: &OpContext, p: &SubnetProps) -> Result<Applied, ResourceError> {
        let result = self
            .clients
            .ec2
            .create_subnet()
            .vpc_id(&p.vpc_id)
            .cidr_block(&p.cidr_block)
            .availability_zone(&p.availability_zone)
            .tag_specifications(tag_spec(ResourceType::Subnet, ctx, Some(&p.name)))
            // No idempotency token: a lost answer must reach `find`, not a blind re-send.
            .customize()
            .config_override(single_attempt::ec2())
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) if code(&e) == Some("InvalidSubnet.Conflict") => {
                return self.resolve_conflict(ctx, p).await;
            }
            Err(e) => return Err(not_yet_visible("CreateSubnet", e)),
        };
        let id = out
            .subnet()
            .and_then(|s| s.subnet_id())
            .ok_or_else(|| ResourceError::failed("CreateSubnet returned no subnet id"))?
            .to_string();
        if p.map_public_ip_on_launch {
            self.set_map_public_ip(ctx, &id, true).await?;
        }
        Ok(applied(&id, &p.availability_zone))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let result = self
            .clients
            .ec2
            .describe_subnets()
            .subnet_ids(current.id)
            .send()
            .await;
        Ok(found("DescribeSubnets", result)?
            .and_then(|out| out.subnets().first().map(|s| observe(s, current))))
    }

    /// One DescribeSubnets per batch, by a `subnet-id` filter (which skips gone subnets).
    async fn read_many(
        &self,
        _ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let found = self
            .clients
            .ec2
            .describe_subnets()
            .filters(filter_ids("subnet-id", items))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeSubnets", e))
            .map(|subnets| by_id(subnets, |s| s.subnet_id()));
        each_item(items, found, |s, current| Ok(Some(observe(s, current))))
    }

    fn read_batch_size(&self) -> usize {
        FILTER_BATCH
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &SubnetProps,
        changed: &Changes<SubnetProps>,
    ) -> Result<Applied, ResourceError> {
        require_not_foreign(&self.clients, ctx, "subnet", current.id).await?;
        if changed.contains(SubnetField::Name) {
            set_name(&self.clients, current.id, &p.name).await?;
        }
        if changed.contains(SubnetField::MapPublicIpOnLaunch) {
            self.set_map_public_ip(ctx, current.id, p.map_public_ip_on_launch)
                .await?;
        }
        Ok(applied(current.id, &p.availability_zone))
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        require_not_foreign(&self.clients, ctx, "subnet", current.id).await?;
        let result = self
            .clients
            .ec2
            .delete_subnet()
            .subnet_id(current.id)
            .send()
            .await;
        gone("DeleteSubnet", result)
    }

    /// A subnet of this VPC tagged for this address; failing that, another owner's subnet at
    /// the wanted block (a VPC holds one subnet per block) is reported as not ours.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &SubnetProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let subnets = self.subnets_of(&p.vpc_id).await?;
        if let Some(s) = pick_adoptable(ctx, &subnets) {
            let id = s.subnet_id().unwrap_or_default();
            return Ok(Some(applied(id, s.availability_zone().unwrap_or_default())));
        }
        let at_block = subnets
            .iter()
            .find(|s| s.cidr_block() == Some(p.cidr_block.as_str()));
        match at_block.map(|s| (s, ctx.owner(pairs(s.tags())))) {
            // An older subnet of this address, awaiting deletion: nothing to adopt.
            None | Some((_, Owner::Ours)) => Ok(None),
            Some((s, owner)) => Err(ctx.not_owned(
                &format!(
                    "subnet `{}` ({}) in VPC `{}`",
                    s.subnet_id().unwrap_or_default(),
                    p.cidr_block,
                    p.vpc_id
                ),
                &owner,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::overlaps;

    #[test]
    fn blocks_overlap_when_they_share_an_address() {
        assert!(overlaps("10.0.1.0/24", "10.0.1.0/24"));
        assert!(overlaps("10.0.1.0/24", "10.0.1.128/25"));
        assert!(overlaps("10.0.0.0/16", "10.0.255.240/28"));
        assert!(overlaps("0.0.0.0/0", "192.168.0.0/16"));
        assert!(!overlaps("10.0.1.0/24", "10.0.2.0/24"));
        assert!(!overlaps("10.0.1.0/25", "10.0.1.128/25"));
        assert!(!overlaps("10.0.1.0/24", "not a block"));
    }
}
