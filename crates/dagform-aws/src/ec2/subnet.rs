//! `aws_subnet`.

use super::{
    FILTER_BATCH, check_cidr, check_name, filter_ids, not_yet_visible, owned_by, set_name,
    tag_spec, tag_value, until_visible,
};
use crate::AwsClients;
use crate::clients::{by_id, each_item};
use crate::error::{classify, is_not_found, parse};
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType};
use dagform_core::{
    Applied, Current, Observed, OpContext, Properties, ResourceError, ResourceKind,
};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubnetProps {
    name: String,
    vpc_id: String,
    cidr_block: String,
    availability_zone: String,
    map_public_ip_on_launch: bool,
}

impl SubnetProps {
    fn parse(props: &Properties) -> Result<Self, ResourceError> {
        let p: Self = parse(props)?;
        check_name(&p.name)?;
        check_cidr("cidr_block", &p.cidr_block, 16..=28)?;
        if p.availability_zone.is_empty() {
            return Err(ResourceError::invalid(
                "availability_zone must not be empty",
            ));
        }
        Ok(p)
    }
}

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
}

fn applied(id: &str, availability_zone: &str) -> Applied {
    Applied::new(id).output("availability_zone", availability_zone)
}

/// A live subnet in the shape of the desired properties.
fn observe(s: &aws_sdk_ec2::types::Subnet, current: Current<'_>) -> Observed {
    let mut properties = Properties::new();
    if let Some(name) = tag_value(s.tags(), "Name") {
        properties.insert("name".into(), json!(name));
    }
    let fields = [
        ("vpc_id", s.vpc_id()),
        ("cidr_block", s.cidr_block()),
        ("availability_zone", s.availability_zone()),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            properties.insert(key.into(), json!(v));
        }
    }
    properties.insert(
        "map_public_ip_on_launch".into(),
        json!(s.map_public_ip_on_launch().unwrap_or(false)),
    );
    Observed {
        properties,
        outputs: applied(current.id, s.availability_zone().unwrap_or_default()).outputs,
    }
}

#[async_trait::async_trait]
impl ResourceKind for Subnet {
    fn name(&self) -> &'static str {
        "aws_subnet"
    }

    fn forces_replacement(&self, property: &str) -> bool {
        matches!(property, "vpc_id" | "cidr_block" | "availability_zone")
    }

    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = SubnetProps::parse(props)?;
        let out = self
            .clients
            .ec2
            .create_subnet()
            .vpc_id(&p.vpc_id)
            .cidr_block(&p.cidr_block)
            .availability_zone(&p.availability_zone)
            .tag_specifications(tag_spec(ResourceType::Subnet, ctx, Some(&p.name)))
            .send()
            .await
            .map_err(|e| not_yet_visible("CreateSubnet", e))?;
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
        let out = match self
            .clients
            .ec2
            .describe_subnets()
            .subnet_ids(current.id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(classify("DescribeSubnets", e)),
        };
        Ok(out.subnets().first().map(|s| observe(s, current)))
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
        desired: &Properties,
        changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p = SubnetProps::parse(desired)?;
        if changed.iter().any(|c| c == "name") {
            set_name(&self.clients, current.id, &p.name).await?;
        }
        if changed.iter().any(|c| c == "map_public_ip_on_launch") {
            self.set_map_public_ip(ctx, current.id, p.map_public_ip_on_launch)
                .await?;
        }
        Ok(applied(current.id, &p.availability_zone))
    }

    async fn delete(&self, _ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        match self
            .clients
            .ec2
            .delete_subnet()
            .subnet_id(current.id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(classify("DeleteSubnet", e)),
        }
    }

    async fn find(
        &self,
        ctx: &OpContext,
        _props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let out = self
            .clients
            .ec2
            .describe_subnets()
            .set_filters(Some(owned_by(ctx)))
            .send()
            .await
            .map_err(|e| classify("DescribeSubnets", e))?;
        Ok(out.subnets().first().and_then(|s| {
            Some(applied(
                s.subnet_id()?,
                s.availability_zone().unwrap_or_default(),
            ))
        }))
    }
}
