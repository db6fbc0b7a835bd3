//! `aws_internet_gateway`, `aws_eip` and `aws_nat_gateway`.

use super::{
    FILTER_BATCH, adoptable, check_name, filter_ids, name_property, pick_adoptable, set_name,
    tag_spec, tagged_for, until_visible,
};
use crate::AwsClients;
use crate::clients::{by_id, each_item};
use crate::error::{classify, code, is_not_found, parse};
use crate::ownership::{found, gone, pairs, single_attempt};
use aws_sdk_ec2::types::{DomainType, Filter, NatGatewayState, ResourceType};
use dagform_core::{
    Applied, Current, Observed, OpContext, Properties, ResourceError, ResourceKind,
};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InternetGatewayProps {
    name: String,
    vpc_id: String,
}

/// `aws_internet_gateway`: an internet gateway attached to one VPC.
pub struct InternetGateway {
    clients: Arc<AwsClients>,
}

impl InternetGateway {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    async fn attach(&self, ctx: &OpContext, id: &str, vpc_id: &str) -> Result<(), ResourceError> {
        let req = self
            .clients
            .ec2
            .attach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc_id);
        until_visible(ctx, "AttachInternetGateway", move || req.clone().send()).await?;
        Ok(())
    }

    async fn describe(
        &self,
        id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::InternetGateway>, ResourceError> {
        let result = self
            .clients
            .ec2
            .describe_internet_gateways()
            .internet_gateway_ids(id)
            .send()
            .await;
        Ok(found("DescribeInternetGateways", result)?
            .and_then(|out| out.internet_gateways().first().cloned()))
    }

    /// The gateway, when it may be changed or deleted (it carries no other owner's tags).
    async fn describe_not_foreign(
        &self,
        ctx: &OpContext,
        id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::InternetGateway>, ResourceError> {
        let igw = self.describe(id).await?;
        if let Some(igw) = &igw {
            ctx.require_not_foreign(&format!("internet gateway `{id}`"), pairs(igw.tags()))?;
        }
        Ok(igw)
    }
}

/// The VPC an internet gateway is attached to (attachment state `available` in AWS; detaching
/// ones are ignored).
fn attached_vpc(igw: &aws_sdk_ec2::types::InternetGateway) -> Option<&str> {
    use aws_sdk_ec2::types::AttachmentStatus;
    igw.attachments()
        .iter()
        .find(|a| {
            !matches!(
                a.state(),
                Some(AttachmentStatus::Detaching | AttachmentStatus::Detached)
            )
        })
        .and_then(|a| a.vpc_id())
}

#[async_trait::async_trait]
impl ResourceKind for InternetGateway {
    fn name(&self) -> &'static str {
        "aws_internet_gateway"
    }

    fn forces_replacement(&self, property: &str) -> bool {
        property == "vpc_id"
    }

    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p: InternetGatewayProps = parse(props)?;
        check_name(&p.name)?;
        let out = self
            .clients
            .ec2
            .create_internet_gateway()
            .tag_specifications(tag_spec(ResourceType::InternetGateway, ctx, Some(&p.name)))
            // No idempotency token: a lost answer must reach `find`, not a blind re-send.
            .customize()
            .config_override(single_attempt::ec2())
            .send()
            .await
            .map_err(|e| classify("CreateInternetGateway", e))?;
        let id = out
            .internet_gateway()
            .and_then(|g| g.internet_gateway_id())
            .ok_or_else(|| ResourceError::failed("CreateInternetGateway returned no id"))?
            .to_string();
        if let Err(e) = self.attach(ctx, &id, &p.vpc_id).await {
            // Not leaving a detached gateway behind; the next attempt creates a fresh one.
            let _ = self
                .clients
                .ec2
                .delete_internet_gateway()
                .internet_gateway_id(&id)
                .send()
                .await;
            return Err(e);
        }
        Ok(Applied::new(id))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some(igw) = self.describe(current.id).await? else {
            return Ok(None);
        };
        let mut properties = Properties::new();
        properties.insert("name".into(), name_property(igw.tags()));
        // Detached shows as null, so the planner sees the drift and re-creates the gateway.
        properties.insert(
            "vpc_id".into(),
            attached_vpc(&igw).map_or(Json::Null, |v| json!(v)),
        );
        Ok(Some(Observed {
            properties,
            outputs: Applied::new(current.id).outputs,
        }))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p: InternetGatewayProps = parse(desired)?;
        check_name(&p.name)?;
        if self.describe_not_foreign(ctx, current.id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "internet gateway {} is gone",
                current.id
            )));
        }
        if changed.iter().any(|c| c == "name") {
            set_name(&self.clients, current.id, &p.name).await?;
        }
        Ok(Applied::new(current.id))
    }

    /// Detaches from every VPC (a gateway already detached is fine), then deletes.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let Some(igw) = self.describe_not_foreign(ctx, current.id).await? else {
            return Ok(());
        };
        for vpc in igw.attachments().iter().filter_map(|a| a.vpc_id()) {
            match self
                .clients
                .ec2
                .detach_internet_gateway()
                .internet_gateway_id(current.id)
                .vpc_id(vpc)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if code(&e) == Some("Gateway.NotAttached") || is_not_found(&e) => {}
                Err(e) => return Err(classify("DetachInternetGateway", e)),
            }
        }
        let result = self
            .clients
            .ec2
            .delete_internet_gateway()
            .internet_gateway_id(current.id)
            .send()
            .await;
        gone("DeleteInternetGateway", result)
    }

    /// Adopts a gateway tagged for this address, attaching it if the crash came before that.
    async fn find(
        &self,
        ctx: &OpContext,
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p: InternetGatewayProps = parse(props)?;
        let gateways: Vec<_> = self
            .clients
            .ec2
            .describe_internet_gateways()
            .set_filters(Some(tagged_for(ctx)))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeInternetGateways", e))?;
        let Some(igw) = pick_adoptable(ctx, &gateways) else {
            return Ok(None);
        };
        let id = igw.internet_gateway_id().unwrap_or_default();
        if attached_vpc(igw).is_none() {
            self.attach(ctx, id, &p.vpc_id).await?;
        }
        Ok(Some(Applied::new(id)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EipProps {
    name: String,
}

/// `aws_eip`: an Elastic IP address in the VPC domain; its id is the allocation id.
pub struct Eip {
    clients: Arc<AwsClients>,
}

impl Eip {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    async fn describe(
        &self,
        allocation_id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::Address>, ResourceError> {
        let result = self
            .clients
            .ec2
            .describe_addresses()
            .allocation_ids(allocation_id)
            .send()
            .await;
        Ok(found("DescribeAddresses", result)?.and_then(|out| out.addresses().first().cloned()))
    }

    /// The address, when it may be changed or released (it carries no other owner's tags).
    async fn describe_not_foreign(
        &self,
        ctx: &OpContext,
        allocation_id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::Address>, ResourceError> {
        let address = self.describe(allocation_id).await?;
        if let Some(a) = &address {
            ctx.require_not_foreign(&format!("Elastic IP `{allocation_id}`"), pairs(a.tags()))?;
        }
        Ok(address)
    }
}

/// Release errors that mean the address is still in use by something going away (a NAT
/// gateway being deleted): AWS answers `AuthFailure` or `InvalidIPAddress.InUse` until the
/// association is gone.
const EIP_STILL_ASSOCIATED: &[&str] = &[
    "AuthFailure",
    "InvalidIPAddress.InUse",
    "InvalidAddress.Locked",
];

fn eip_applied(address: &aws_sdk_ec2::types::Address) -> Option<Applied> {
    Some(
        Applied::new(address.allocation_id()?)
            .output("public_ip", address.public_ip().unwrap_or_default()),
    )
}

/// A live address in the shape of the desired properties.
fn observe_eip(address: &aws_sdk_ec2::types::Address) -> Option<Observed> {
    let mut properties = Properties::new();
    properties.insert("name".into(), name_property(address.tags()));
    eip_applied(address).map(|a| Observed {
        properties,
        outputs: a.outputs,
    })
}

#[async_trait::async_trait]
impl ResourceKind for Eip {
    fn name(&self) -> &'static str {
        "aws_eip"
    }

    fn forces_replacement(&self, _property: &str) -> bool {
        false
    }

    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p: EipProps = parse(props)?;
        check_name(&p.name)?;
        let out = self
            .clients
            .ec2
            .allocate_address()
            .domain(DomainType::Vpc)
            .tag_specifications(tag_spec(ResourceType::ElasticIp, ctx, Some(&p.name)))
            // No idempotency token: a lost answer must reach `find`, not a blind re-send.
            .customize()
            .config_override(single_attempt::ec2())
            .send()
            .await
            .map_err(|e| classify("AllocateAddress", e))?;
        let id = out
            .allocation_id()
            .ok_or_else(|| ResourceError::failed("AllocateAddress returned no allocation id"))?;
        Ok(Applied::new(id).output("public_ip", out.public_ip().unwrap_or_default()))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        Ok(self
            .describe(current.id)
            .await?
            .and_then(|address| observe_eip(&address)))
    }

    /// One DescribeAddresses per batch, by an `allocation-id` filter (which skips released
    /// addresses).
    async fn read_many(
        &self,
        _ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let found = self
            .clients
            .ec2
            .describe_addresses()
            .filters(filter_ids("allocation-id", items))
            .send()
            .await
            .map_err(|e| classify("DescribeAddresses", e))
            .map(|out| by_id(out.addresses().to_vec(), |a| a.allocation_id()));
        each_item(items, found, |address, _| Ok(observe_eip(address)))
    }

    fn read_batch_size(&self) -> usize {
        FILTER_BATCH
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        _changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p: EipProps = parse(desired)?;
        check_name(&p.name)?;
        if self.describe_not_foreign(ctx, current.id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "Elastic IP {} is gone",
                current.id
            )));
        }
        set_name(&self.clients, current.id, &p.name).await?;
        self.describe(current.id)
            .await?
            .as_ref()
            .and_then(eip_applied)
            .ok_or_else(|| ResourceError::failed(format!("Elastic IP {} is gone", current.id)))
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        if self.describe_not_foreign(ctx, current.id).await?.is_none() {
            return Ok(());
        }
        match self
            .clients
            .ec2
            .release_address()
            .allocation_id(current.id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) if code(&e).is_some_and(|c| EIP_STILL_ASSOCIATED.contains(&c)) => {
                match classify("ReleaseAddress", e) {
                    ResourceError::Failed(m) => Err(ResourceError::Transient(m)),
                    other => Err(other),
                }
            }
            Err(e) => Err(classify("ReleaseAddress", e)),
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
            .describe_addresses()
            .set_filters(Some(tagged_for(ctx)))
            .send()
            .await
            .map_err(|e| classify("DescribeAddresses", e))?;
        Ok(pick_adoptable(ctx, out.addresses()).and_then(eip_applied))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NatGatewayProps {
    name: String,
    subnet_id: String,
    allocation_id: String,
}

/// `aws_nat_gateway`: a public NAT gateway in a subnet, using an Elastic IP. Create and
/// delete wait for the gateway to settle (about two minutes in AWS), so that routes can use
/// it and its Elastic IP can be released after it.
pub struct NatGateway {
    clients: Arc<AwsClients>,
}

impl NatGateway {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    async fn describe(
        &self,
        id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::NatGateway>, ResourceError> {
        let result = self
            .clients
            .ec2
            .describe_nat_gateways()
            .nat_gateway_ids(id)
            .send()
            .await;
        Ok(found("DescribeNatGateways", result)?
            .and_then(|out| out.nat_gateways().first().cloned()))
    }

    /// The gateway, when it may be changed or deleted (it carries no other owner's tags).
    async fn describe_not_foreign(
        &self,
        ctx: &OpContext,
        id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::NatGateway>, ResourceError> {
        let nat = self.describe(id).await?;
        if let Some(nat) = &nat {
            ctx.require_not_foreign(&format!("NAT gateway `{id}`"), pairs(nat.tags()))?;
        }
        Ok(nat)
    }

    /// Waits while the gateway is pending and returns it once it has settled: available, or
    /// failed. A wait that times out leaves a pending gateway that `find` adopts next time.
    async fn wait_settled(
        &self,
        ctx: &OpContext,
        id: &str,
    ) -> Result<aws_sdk_ec2::types::NatGateway, ResourceError> {
        ctx.wait_for("NAT gateway to become available", || async move {
            Ok(self.describe(id).await?.filter(|nat| {
                // Not visible yet right after the create, or still starting.
                !matches!(nat.state(), Some(NatGatewayState::Pending) | None)
            }))
        })
        .await
    }
}

fn nat_failure(nat: &aws_sdk_ec2::types::NatGateway) -> ResourceError {
    ResourceError::failed(format!(
        "NAT gateway {} is {}: {} {}",
        nat.nat_gateway_id().unwrap_or_default(),
        nat.state().map(|s| s.as_str()).unwrap_or_default(),
        nat.failure_code().unwrap_or_default(),
        nat.failure_message().unwrap_or_default()
    ))
}

/// Whether a NAT gateway is gone or going: AWS lists deleted ones for about an hour.
fn nat_gone(nat: &aws_sdk_ec2::types::NatGateway) -> bool {
    matches!(
        nat.state(),
        Some(NatGatewayState::Deleting | NatGatewayState::Deleted | NatGatewayState::Failed)
    )
}

/// A live NAT gateway in the shape of the desired properties; `None` once it is deleted.
fn observe_nat(nat: &aws_sdk_ec2::types::NatGateway, current: Current<'_>) -> Option<Observed> {
    if nat_gone(nat) {
        return None;
    }
    let mut properties = Properties::new();
    properties.insert("name".into(), name_property(nat.tags()));
    if let Some(subnet) = nat.subnet_id() {
        properties.insert("subnet_id".into(), json!(subnet));
    }
    if let Some(allocation) = nat
        .nat_gateway_addresses()
        .iter()
        .find_map(|a| a.allocation_id())
    {
        properties.insert("allocation_id".into(), json!(allocation));
    }
    Some(Observed {
        properties,
        outputs: Applied::new(current.id).outputs,
    })
}

#[async_trait::async_trait]
impl ResourceKind for NatGateway {
    fn name(&self) -> &'static str {
        "aws_nat_gateway"
    }

    /// The subnet and the address are fixed; only the `Name` tag changes in place.
    fn forces_replacement(&self, property: &str) -> bool {
        property != "name"
    }

    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p: NatGatewayProps = parse(props)?;
        check_name(&p.name)?;
        let req = self
            .clients
            .ec2
            .create_nat_gateway()
            .subnet_id(&p.subnet_id)
            .allocation_id(&p.allocation_id)
            .tag_specifications(tag_spec(ResourceType::Natgateway, ctx, Some(&p.name)))
            // Every retry, and a re-run of this intended create, gets the same gateway back.
            .client_token(ctx.client_token(64));
        let out = until_visible(ctx, "CreateNatGateway", move || req.clone().send()).await?;
        let id = out
            .nat_gateway()
            .and_then(|n| n.nat_gateway_id())
            .ok_or_else(|| ResourceError::failed("CreateNatGateway returned no id"))?
            .to_string();
        let nat = self.wait_settled(ctx, &id).await?;
        if nat.state() != Some(&NatGatewayState::Available) {
            return Err(nat_failure(&nat));
        }
        Ok(Applied::new(id))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        Ok(self
            .describe(current.id)
            .await?
            .and_then(|nat| observe_nat(&nat, current)))
    }

    /// One DescribeNatGateways per batch, by a `nat-gateway-id` filter (which skips gateways
    /// AWS no longer reports).
    async fn read_many(
        &self,
        _ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let found = self
            .clients
            .ec2
            .describe_nat_gateways()
            .filter(filter_ids("nat-gateway-id", items))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeNatGateways", e))
            .map(|nats| by_id(nats, |n| n.nat_gateway_id()));
        each_item(items, found, |nat, current| Ok(observe_nat(nat, current)))
    }

    fn read_batch_size(&self) -> usize {
        FILTER_BATCH
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        _changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p: NatGatewayProps = parse(desired)?;
        check_name(&p.name)?;
        if self.describe_not_foreign(ctx, current.id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "NAT gateway {} is gone",
                current.id
            )));
        }
        set_name(&self.clients, current.id, &p.name).await?;
        Ok(Applied::new(current.id))
    }

    /// Deletes and waits until `deleted`: only then is the Elastic IP free to be released.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let id = current.id;
        match self.describe_not_foreign(ctx, id).await? {
            None => return Ok(()),
            Some(nat) if nat.state() == Some(&NatGatewayState::Deleted) => return Ok(()),
            Some(_) => {}
        }
        let result = self
            .clients
            .ec2
            .delete_nat_gateway()
            .nat_gateway_id(id)
            .send()
            .await;
        if found("DeleteNatGateway", result)?.is_none() {
            return Ok(());
        }
        ctx.wait_for("NAT gateway to be deleted", || async move {
            Ok(match self.describe(id).await? {
                None => Some(()),
                Some(nat) if nat.state() == Some(&NatGatewayState::Deleted) => Some(()),
                Some(_) => None,
            })
        })
        .await
    }

    /// Adopts a live gateway tagged for this address, waiting for it while it is pending (a
    /// create whose wait was cut short left it so). Failed, deleting and deleted gateways,
    /// which AWS lists for about an hour, are not adopted.
    async fn find(
        &self,
        ctx: &OpContext,
        _props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let live = Filter::builder()
            .name("state")
            .values("pending")
            .values("available")
            .build();
        let nats: Vec<_> = self
            .clients
            .ec2
            .describe_nat_gateways()
            .set_filter(Some(tagged_for(ctx)))
            .filter(live)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeNatGateways", e))?;
        // The newest, should there be several: a create makes a new gateway only after the
        // last one failed, so the newest live one is what the latest create made.
        let Some(id) = nats
            .iter()
            .filter(|n| !nat_gone(n) && adoptable(ctx, *n))
            .max_by_key(|n| (n.create_time().copied(), n.nat_gateway_id()))
            .and_then(|n| n.nat_gateway_id())
        else {
            return Ok(None);
        };
        let nat = self.wait_settled(ctx, id).await?;
        // One that failed while we waited is nothing to adopt: the create makes a new one.
        Ok((nat.state() == Some(&NatGatewayState::Available)).then(|| Applied::new(id)))
    }
}
