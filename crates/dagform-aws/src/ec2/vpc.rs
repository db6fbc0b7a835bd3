//! `aws_vpc` and the `data_default_vpc` data source.

use super::{
    FILTER_BATCH, filter, filter_ids, name_tag, observed_named, pick_adoptable,
    require_not_foreign, set_name, tag_spec, tagged_for, until_visible,
};
use crate::AwsClients;
use crate::clients::{by_id, fail_all};
use crate::error::classify;
use crate::ownership::{found, gone, single_attempt};
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, VpcAttributeName};
use dagform_core::{
    Applied, Changes, Current, Kind, Observed, OpContext, Properties, ResourceError,
};
use dagform_resources::ec2::{DefaultVpcOutputs, DefaultVpcProps, VpcField, VpcOutputs, VpcProps};
use std::collections::BTreeMap;
use std::sync::Arc;

fn applied(id: &str) -> Applied {
    Applied::of(VpcOutputs { id: id.to_owned() })
}

/// `aws_vpc`: a VPC; its CIDR block is fixed, its DNS attributes change in place.
pub struct Vpc {
    clients: Arc<AwsClients>,
}

impl Vpc {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    /// Sets the DNS attributes given (`None` leaves one alone), one per call as AWS requires,
    /// in an order valid at every step: hostnames need DNS support.
    async fn set_dns(
        &self,
        ctx: &OpContext,
        id: &str,
        support: Option<bool>,
        hostnames: Option<bool>,
    ) -> Result<(), ResourceError> {
        let ec2 = &self.clients.ec2;
        let on = |v: bool| AttributeBooleanValue::builder().value(v).build();
        let set_support = |v: bool| {
            let req = ec2
                .modify_vpc_attribute()
                .vpc_id(id)
                .enable_dns_support(on(v));
            until_visible(ctx, "ModifyVpcAttribute", move || req.clone().send())
        };
        let set_hostnames = |v: bool| {
            let req = ec2
                .modify_vpc_attribute()
                .vpc_id(id)
                .enable_dns_hostnames(on(v));
            until_visible(ctx, "ModifyVpcAttribute", move || req.clone().send())
        };
        if support == Some(true) {
            set_support(true).await?;
        }
        if let Some(v) = hostnames {
            set_hostnames(v).await?;
        }
        if support == Some(false) {
            set_support(false).await?;
        }
        Ok(())
    }

    /// A live VPC in the shape of the desired properties, with its DNS attributes.
    async fn observe(
        &self,
        vpc: &aws_sdk_ec2::types::Vpc,
        current: Current<'_>,
    ) -> Result<Observed, ResourceError> {
        let props = VpcProps {
            name: name_tag(vpc.tags()).unwrap_or_default().to_owned(),
            cidr_block: vpc.cidr_block().unwrap_or_default().to_owned(),
            enable_dns_hostnames: self
                .dns_attribute(current.id, VpcAttributeName::EnableDnsHostnames)
                .await?,
            enable_dns_support: self
                .dns_attribute(current.id, VpcAttributeName::EnableDnsSupport)
                .await?,
        };
        let outputs = VpcOutputs {
            id: current.id.to_owned(),
        };
        Ok(observed_named(&props, outputs, vpc.tags()))
    }

    async fn dns_attribute(&self, id: &str, attr: VpcAttributeName) -> Result<bool, ResourceError> {
        let out = self
            .clients
            .ec2
            .describe_vpc_attribute()
            .vpc_id(id)
            .attribute(attr.clone())
            .send()
            .await
            .map_err(|e| classify("DescribeVpcAttribute", e))?;
        let value = match attr {
            VpcAttributeName::EnableDnsSupport => out.enable_dns_support(),
            _ => out.enable_dns_hostnames(),
        };
        Ok(value.and_then(|v| v.value()).unwrap_or(false))
    }
}

#[async_trait::async_trait]
impl Kind for Vpc {
    type Props = VpcProps;

    async fn create(&self, ctx: &OpContext, p: &VpcProps) -> Result<Applied, ResourceError> {
        let out = self
            .clients
            .ec2
            .create_vpc()
            .cidr_block(&p.cidr_block)
            .tag_specifications(tag_spec(ResourceType::Vpc, ctx, Some(&p.name)))
            // No idempotency token: a lost answer must reach `find`, not a blind re-send.
            .customize()
            .config_override(single_attempt::ec2())
            .send()
            .await
            .map_err(|e| classify("CreateVpc", e))?;
        let id = out
            .vpc()
            .and_then(|v| v.vpc_id())
            .ok_or_else(|| ResourceError::failed("CreateVpc returned no VPC id"))?
            .to_string();
        // A new VPC has DNS support on and DNS hostnames off. A run killed before this is
        // finished on adoption: `read` reports the live attributes, and `update` sets them.
        self.set_dns(
            ctx,
            &id,
            (!p.enable_dns_support).then_some(false),
            p.enable_dns_hostnames.then_some(true),
        )
        .await?;
        Ok(applied(&id))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let result = self
            .clients
            .ec2
            .describe_vpcs()
            .vpc_ids(current.id)
            .send()
            .await;
        let Some(out) = found("DescribeVpcs", result)? else {
            return Ok(None);
        };
        match out.vpcs().first() {
            Some(vpc) => self.observe(vpc, current).await.map(Some),
            None => Ok(None),
        }
    }

    /// One DescribeVpcs per batch, by a `vpc-id` filter (which skips gone VPCs); the DNS
    /// attributes still take two calls per VPC, as AWS has no batched form of them.
    async fn read_many(
        &self,
        _ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let found = self
            .clients
            .ec2
            .describe_vpcs()
            .filters(filter_ids("vpc-id", items))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeVpcs", e))
            .map(|vpcs| by_id(vpcs, |v| v.vpc_id()));
        let found = match found {
            Ok(found) => found,
            Err(e) => return fail_all(items, e),
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(match found.get(item.id) {
                Some(vpc) => self.observe(vpc, *item).await.map(Some),
                None => Ok(None),
            });
        }
        out
    }

    fn read_batch_size(&self) -> usize {
        FILTER_BATCH
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &VpcProps,
        changed: &Changes<VpcProps>,
    ) -> Result<Applied, ResourceError> {
        require_not_foreign(&self.clients, ctx, "VPC", current.id).await?;
        if changed.contains(VpcField::Name) {
            set_name(&self.clients, current.id, &p.name).await?;
        }
        self.set_dns(
            ctx,
            current.id,
            changed
                .contains(VpcField::EnableDnsSupport)
                .then_some(p.enable_dns_support),
            changed
                .contains(VpcField::EnableDnsHostnames)
                .then_some(p.enable_dns_hostnames),
        )
        .await?;
        Ok(applied(current.id))
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        require_not_foreign(&self.clients, ctx, "VPC", current.id).await?;
        let result = self
            .clients
            .ec2
            .delete_vpc()
            .vpc_id(current.id)
            .send()
            .await;
        gone("DeleteVpc", result)
    }

    /// A VPC tagged for this address. VPCs have no unique name, so another stack's VPC can
    /// never be mistaken for ours: only the tags tell.
    async fn find(
        &self,
        ctx: &OpContext,
        _props: &VpcProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let vpcs: Vec<_> = self
            .clients
            .ec2
            .describe_vpcs()
            .set_filters(Some(tagged_for(ctx)))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeVpcs", e))?;
        Ok(pick_adoptable(ctx, &vpcs)
            .and_then(|v| v.vpc_id())
            .map(applied))
    }
}

/// `data_default_vpc`: the region's default VPC (or the VPC given by `vpc_id`) and its
/// subnets, for stacks that deploy into an existing network instead of building one.
pub struct DefaultVpc {
    clients: Arc<AwsClients>,
}

impl DefaultVpc {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    /// Looks the VPC up; `None` when the given VPC does not exist. Subnets are the default
    /// subnets (one per AZ) of a default VPC, or all subnets of another VPC, sorted by AZ.
    async fn lookup(
        &self,
        vpc_id: Option<&str>,
        vpc_tags: Option<&BTreeMap<String, String>>,
    ) -> Result<Option<DefaultVpcOutputs>, ResourceError> {
        let ec2 = &self.clients.ec2;
        let req = match (vpc_id, vpc_tags) {
            (Some(id), _) => ec2.describe_vpcs().vpc_ids(id),
            (None, Some(tags)) => tags.iter().fold(ec2.describe_vpcs(), |req, (k, v)| {
                req.filters(filter(&format!("tag:{k}"), v))
            }),
            (None, None) => ec2.describe_vpcs().filters(filter("is-default", "true")),
        };
        let Some(out) = found("DescribeVpcs", req.send().await)? else {
            return Ok(None);
        };
        if vpc_id.is_none() && vpc_tags.is_some() && out.vpcs().len() != 1 {
            return Err(ResourceError::failed(format!(
                "{} VPCs carry the tags {:?}; exactly one must",
                out.vpcs().len(),
                vpc_tags.unwrap_or(&Default::default())
            )));
        }
        let Some(vpc) = out.vpcs().first() else {
            return match vpc_id {
                Some(_) => Ok(None),
                None => Err(ResourceError::failed(
                    "this region has no default VPC; pass vpc_id or create a VPC",
                )),
            };
        };
        let id = vpc
            .vpc_id()
            .ok_or_else(|| ResourceError::failed("DescribeVpcs returned a VPC without id"))?;
        let is_default = vpc.is_default().unwrap_or(false);
        let mut subnets = Vec::new();
        let mut pages = ec2
            .describe_subnets()
            .filters(filter("vpc-id", id))
            .into_paginator()
            .items()
            .send();
        while let Some(subnet) = pages.next().await {
            let subnet = subnet.map_err(|e| classify("DescribeSubnets", e))?;
            if is_default && !subnet.default_for_az().unwrap_or(false) {
                continue;
            }
            if let Some(sid) = subnet.subnet_id() {
                subnets.push((
                    subnet.availability_zone().unwrap_or_default().to_string(),
                    sid.to_string(),
                ));
            }
        }
        subnets.sort();
        Ok(Some(DefaultVpcOutputs {
            id: id.to_owned(),
            cidr_block: vpc.cidr_block().unwrap_or_default().to_owned(),
            subnet_ids: subnets.into_iter().map(|(_, s)| s).collect(),
        }))
    }
}

#[async_trait::async_trait]
impl Kind for DefaultVpc {
    type Props = DefaultVpcProps;

    fn is_data_source(&self) -> bool {
        true
    }

    async fn create(
        &self,
        _ctx: &OpContext,
        p: &DefaultVpcProps,
    ) -> Result<Applied, ResourceError> {
        let outputs = self
            .lookup(p.vpc_id.as_deref(), p.vpc_tags.as_ref())
            .await?
            .ok_or_else(|| {
                ResourceError::failed(format!(
                    "VPC `{}` does not exist",
                    p.vpc_id.as_deref().unwrap_or_default()
                ))
            })?;
        Ok(Applied::of(outputs))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some(found) = self.lookup(Some(current.id), None).await? else {
            return Ok(None);
        };
        // Only the properties the lookup was given: a lookup by default or by tags has no
        // `vpc_id` to compare.
        let mut properties = Properties::new();
        if current.properties.contains_key("vpc_id") {
            properties.insert("vpc_id".into(), current.id.into());
        }
        if let Some(tags) = current.properties.get("vpc_tags") {
            // How the VPC was picked, not a property of it.
            properties.insert("vpc_tags".into(), tags.clone());
        }
        Ok(Some(Observed::of(&properties, found)))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        _current: Current<'_>,
        desired: &DefaultVpcProps,
        _changed: &Changes<DefaultVpcProps>,
    ) -> Result<Applied, ResourceError> {
        self.create(ctx, desired).await
    }

    /// Forgets the lookup; the VPC is not ours.
    async fn delete(&self, _ctx: &OpContext, _current: Current<'_>) -> Result<(), ResourceError> {
        Ok(())
    }
}
