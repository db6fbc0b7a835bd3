//! `data_route53_zone`.

use super::{bare_zone_id, get_zone, normalize_name};
use crate::AwsClients;
use crate::error::classify;
use aws_sdk_route53::operation::get_hosted_zone::GetHostedZoneOutput;
use aws_sdk_route53::types::HostedZone;
use dagform_core::{Applied, Changes, Current, Kind, Observed, OpContext, ResourceError};
use dagform_resources::route53::{ZoneField, ZoneOutputs, ZoneProps};
use serde_json::Value as Json;
use std::sync::Arc;

/// `data_route53_zone`: an existing hosted zone, looked up by name; dagform never changes it.
pub struct ZoneLookup {
    clients: Arc<AwsClients>,
}

fn is_private(zone: &HostedZone) -> bool {
    zone.config().is_some_and(|c| c.private_zone())
}

impl ZoneLookup {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    async fn lookup(&self, p: &ZoneProps) -> Result<Applied, ResourceError> {
        let wanted = normalize_name(&p.name);
        let private = p.private_zone.unwrap_or(false);
        let visibility = if private { "private" } else { "public" };
        let mut found: Vec<String> = vec![];
        let mut dns_name = Some(wanted.clone());
        let mut marker = None;
        loop {
            let out = self
                .clients
                .route53
                .list_hosted_zones_by_name()
                .set_dns_name(dns_name)
                .set_hosted_zone_id(marker)
                .send()
                .await
                .map_err(|e| classify("ListHostedZonesByName", e))?;
            let zones = out.hosted_zones();
            found.extend(
                zones
                    .iter()
                    .filter(|z| normalize_name(z.name()) == wanted && is_private(z) == private)
                    .map(|z| bare_zone_id(z.id()).to_owned()),
            );
            // Zones come sorted by name: past the wanted name there is nothing more to find.
            let past = zones
                .last()
                .is_some_and(|z| normalize_name(z.name()) != wanted);
            if past || !out.is_truncated() {
                break;
            }
            dns_name = out.next_dns_name().map(str::to_owned);
            marker = out.next_hosted_zone_id().map(str::to_owned);
        }
        let id = match found.as_slice() {
            [id] => id.clone(),
            [] => {
                return Err(ResourceError::failed(format!(
                    "no {visibility} hosted zone named `{wanted}` exists in this account"
                )));
            }
            many => {
                return Err(ResourceError::failed(format!(
                    "{} {visibility} hosted zones are named `{wanted}` ({}); dagform cannot tell which to use",
                    many.len(),
                    many.join(", ")
                )));
            }
        };
        let zone = get_zone(&self.clients, &id).await?.ok_or_else(|| {
            ResourceError::Transient(format!("hosted zone {id} is not visible yet"))
        })?;
        Ok(Applied::of(outputs(&id, &zone)))
    }
}

fn outputs(id: &str, zone: &GetHostedZoneOutput) -> ZoneOutputs {
    let servers = zone.delegation_set().map(|d| d.name_servers());
    ZoneOutputs {
        id: id.to_owned(),
        name: zone
            .hosted_zone()
            .map(|z| normalize_name(z.name()))
            .unwrap_or_default(),
        name_servers: servers.filter(|s| !s.is_empty()).map(<[String]>::to_vec),
    }
}

#[async_trait::async_trait]
impl Kind for ZoneLookup {
    type Props = ZoneProps;

    fn is_data_source(&self) -> bool {
        true
    }

    async fn create(&self, _ctx: &OpContext, p: &ZoneProps) -> Result<Applied, ResourceError> {
        self.lookup(p).await
    }

    /// Reports the name as recorded when only its spelling differs, and whether the zone is
    /// private only when the recorded properties say which was wanted.
    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some(zone) = get_zone(&self.clients, current.id).await? else {
            return Ok(None);
        };
        let Some(hosted) = zone.hosted_zone() else {
            return Ok(None);
        };
        let recorded = current.properties;
        let live_name = normalize_name(hosted.name());
        let name = match recorded
            .get(ZoneField::Name.as_str())
            .and_then(Json::as_str)
        {
            Some(r) if normalize_name(r) == live_name => r.to_owned(),
            _ => live_name,
        };
        let props = ZoneProps {
            name,
            private_zone: recorded
                .contains_key(ZoneField::PrivateZone.as_str())
                .then(|| is_private(hosted)),
        };
        Ok(Some(Observed::of(&props, outputs(current.id, &zone))))
    }

    /// Another name is simply looked up again.
    async fn update(
        &self,
        _ctx: &OpContext,
        _current: Current<'_>,
        desired: &ZoneProps,
        _changed: &Changes<ZoneProps>,
    ) -> Result<Applied, ResourceError> {
        self.lookup(desired).await
    }

    async fn delete(&self, _ctx: &OpContext, _current: Current<'_>) -> Result<(), ResourceError> {
        Ok(())
    }
}
