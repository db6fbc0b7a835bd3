//! `aws_internet_gateway`, `aws_eip` and `aws_nat_gateway`.

use super::{
    FILTER_BATCH, adoptable, filter_ids, name_tag, observed_named, pick_adoptable, set_name,
    tag_spec, tagged_for, until_visible,
};
use crate::AwsClients;
use crate::clients::{by_id, each_item};
use crate::error::{classify, code};
use crate::ownership::{found, gone, pairs, single_attempt};
use aws_sdk_ec2::types::{DomainType, Filter, NatGatewayState, ResourceType};
use dagform_core::polls::Polls;
use dagform_core::{Applied, Changes, Current, Kind, Observed, OpContext, ResourceError};
use dagform_resources::ec2::{
    EipOutputs, EipProps, InternetGatewayField, InternetGatewayOutputs, InternetGatewayProps,
    NatGatewayField, NatGatewayOutputs, NatGatewayProps,
};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;

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

fn igw_applied(id: &str) -> Applied {
    Applied::of(InternetGatewayOutputs { id: id.to_owned() })
}

/// A live gateway in the shape of the desired properties.
fn observe_igw(igw: &aws_sdk_ec2::types::InternetGateway, current: Current<'_>) -> Observed {
    let vpc_id = attached_vpc(igw);
    let props = InternetGatewayProps {
        name: name_tag(igw.tags()).unwrap_or_default().to_owned(),
        vpc_id: vpc_id.unwrap_or_default().to_owned(),
    };
    let outputs = InternetGatewayOutputs {
        id: current.id.to_owned(),
    };
    let mut observed = observed_named(&props, outputs, igw.tags());
    if vpc_id.is_none() {
        // Detached shows as null, so the planner sees the drift and re-creates the gateway.
        observed
            .properties
            .insert(InternetGatewayField::VpcId.as_str().into(), Json::Null);
    }
    observed
}

#[async_trait::async_trait]
impl Kind for InternetGateway {
    type Props = InternetGatewayProps;

    async fn create(
        &self,
        ctx: &OpContext,
        p: &InternetGatewayProps,
    ) -> Result<Applied, ResourceError> {
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
        Ok(igw_applied(&id))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        Ok(self
            .describe(current.id)
            .await?
            .map(|igw| observe_igw(&igw, current)))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &InternetGatewayProps,
        changed: &Changes<InternetGatewayProps>,
    ) -> Result<Applied, ResourceError> {
        if self.describe_not_foreign(ctx, current.id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "internet gateway {} is gone",
                current.id
            )));
        }
        if changed.contains(InternetGatewayField::Name) {
            set_name(&self.clients, current.id, &p.name).await?;
        }
        Ok(igw_applied(current.id))
    }

    /// Detaches from every VPC (a gateway already detached is fine), then deletes.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let Some(igw) = self.describe_not_foreign(ctx, current.id).await? else {
            return Ok(());
        };
        for vpc in igw.attachments().iter().filter_map(|a| a.vpc_id()) {
            let result = self
                .clients
                .ec2
                .detach_internet_gateway()
                .internet_gateway_id(current.id)
                .vpc_id(vpc)
                .send()
                .await;
            match result {
                Err(e) if code(&e) == Some("Gateway.NotAttached") => {}
                other => gone("DetachInternetGateway", other)?,
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
        p: &InternetGatewayProps,
    ) -> Result<Option<Applied>, ResourceError> {
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
        Ok(Some(igw_applied(id)))
    }
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

fn eip_outputs(address: &aws_sdk_ec2::types::Address) -> Option<EipOutputs> {
    Some(EipOutputs {
        id: address.allocation_id()?.to_owned(),
        public_ip: address.public_ip().unwrap_or_default().to_owned(),
    })
}

fn eip_applied(address: &aws_sdk_ec2::types::Address) -> Option<Applied> {
    eip_outputs(address).map(Applied::of)
}

/// A live address in the shape of the desired properties.
fn observe_eip(address: &aws_sdk_ec2::types::Address) -> Option<Observed> {
    let props = EipProps {
        name: name_tag(address.tags()).unwrap_or_default().to_owned(),
    };
    eip_outputs(address).map(|outputs| observed_named(&props, outputs, address.tags()))
}

#[async_trait::async_trait]
impl Kind for Eip {
    type Props = EipProps;

    async fn create(&self, ctx: &OpContext, p: &EipProps) -> Result<Applied, ResourceError> {
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
        Ok(Applied::of(EipOutputs {
            id: id.to_owned(),
            public_ip: out.public_ip().unwrap_or_default().to_owned(),
        }))
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
        p: &EipProps,
        _changed: &Changes<EipProps>,
    ) -> Result<Applied, ResourceError> {
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
        let result = self
            .clients
            .ec2
            .release_address()
            .allocation_id(current.id)
            .send()
            .await;
        match result {
            Err(e) if code(&e).is_some_and(|c| EIP_STILL_ASSOCIATED.contains(&c)) => {
                match classify("ReleaseAddress", e) {
                    ResourceError::Failed(m) => Err(ResourceError::Transient(m)),
                    other => Err(other),
                }
            }
            other => gone("ReleaseAddress", other),
        }
    }

    async fn find(
        &self,
        ctx: &OpContext,
        _props: &EipProps,
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

/// `aws_nat_gateway`: a public NAT gateway in a subnet, using an Elastic IP. Create and
/// delete wait for the gateway to settle (about two minutes in AWS), so that routes can use
/// it and its Elastic IP can be released after it.
pub struct NatGateway {
    clients: Arc<AwsClients>,
    /// The waits of every gateway being created or deleted, one describe call a round.
    polls: Polls<String, aws_sdk_ec2::types::NatGateway>,
}

impl NatGateway {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        let describe_all = clients.clone();
        let polls = Polls::new(
            FILTER_BATCH,
            Arc::new(move |ids: Vec<String>| {
                let clients = describe_all.clone();
                Box::pin(async move { nats_by_id(&clients, ids).await })
            }),
        );
        Self { clients, polls }
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
            Ok(self.polls.poll(ctx, id.to_owned()).await?.filter(|nat| {
                // Not visible yet right after the create, or still starting.
                !matches!(nat.state(), Some(NatGatewayState::Pending) | None)
            }))
        })
        .await
    }
}

/// The NAT gateways of `ids` that exist, by id: filtered rather than listed by id, since a
/// describe by ids fails as a whole when one of them no longer exists.
async fn nats_by_id(
    clients: &AwsClients,
    ids: Vec<String>,
) -> Result<HashMap<String, aws_sdk_ec2::types::NatGateway>, ResourceError> {
    let nats: Vec<_> = clients
        .ec2
        .describe_nat_gateways()
        .filter(
            Filter::builder()
                .name("nat-gateway-id")
                .set_values(Some(ids))
                .build(),
        )
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify("DescribeNatGateways", e))?;
    Ok(by_id(nats, |n| n.nat_gateway_id()))
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

fn nat_applied(id: &str) -> Applied {
    Applied::of(NatGatewayOutputs { id: id.to_owned() })
}

/// A live NAT gateway in the shape of the desired properties; `None` once it is deleted.
fn observe_nat(nat: &aws_sdk_ec2::types::NatGateway, current: Current<'_>) -> Option<Observed> {
    if nat_gone(nat) {
        return None;
    }
    let allocation_id = nat
        .nat_gateway_addresses()
        .iter()
        .find_map(|a| a.allocation_id());
    let props = NatGatewayProps {
        name: name_tag(nat.tags()).unwrap_or_default().to_owned(),
        subnet_id: nat.subnet_id().unwrap_or_default().to_owned(),
        allocation_id: allocation_id.unwrap_or_default().to_owned(),
    };
    let outputs = NatGatewayOutputs {
        id: current.id.to_owned(),
    };
    let mut observed = observed_named(&props, outputs, nat.tags());
    if allocation_id.is_none() {
        // Not reported: neither drift nor a reason to replace the gateway.
        observed
            .properties
            .remove(NatGatewayField::AllocationId.as_str());
    }
    Some(observed)
}

#[async_trait::async_trait]
impl Kind for NatGateway {
    type Props = NatGatewayProps;

    /// A NAT gateway takes about a minute and a half to become available, and one to go.
    fn typical_wait(&self, deleting: bool) -> std::time::Duration {
        std::time::Duration::from_secs(if deleting { 60 } else { 90 })
    }

    async fn create(&self, ctx: &OpContext, p: &NatGatewayProps) -> Result<Applied, ResourceError> {
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
        Ok(nat_applied(&id))
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
        let ids = items.iter().map(|c| c.id.to_owned()).collect();
        let found = nats_by_id(&self.clients, ids).await;
        each_item(items, found, |nat, current| Ok(observe_nat(nat, current)))
    }

    fn read_batch_size(&self) -> usize {
        FILTER_BATCH
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &NatGatewayProps,
        _changed: &Changes<NatGatewayProps>,
    ) -> Result<Applied, ResourceError> {
        if self.describe_not_foreign(ctx, current.id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "NAT gateway {} is gone",
                current.id
            )));
        }
        // Only the name changes in place.
        set_name(&self.clients, current.id, &p.name).await?;
        Ok(nat_applied(current.id))
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
            Ok(match self.polls.poll(ctx, id.to_owned()).await? {
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
        _props: &NatGatewayProps,
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
        Ok((nat.state() == Some(&NatGatewayState::Available)).then(|| nat_applied(id)))
    }
}
