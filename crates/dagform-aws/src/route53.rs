//! Route 53: looking up a hosted zone, and the record sets dagform writes into it.

use crate::AwsClients;
use crate::elbv2::in_recorded_order;
use crate::error::{classify, is_not_found, parse};
use aws_sdk_route53::error::SdkError;
use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsError;
use aws_sdk_route53::operation::get_hosted_zone::GetHostedZoneOutput;
use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, HostedZone, ResourceRecord, ResourceRecordSet,
    RrType,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use dagform_core::{
    Applied, Current, Kinds, Observed, OpContext, Properties, ResourceError, ResourceKind,
};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    kinds.register(Arc::new(ZoneLookup {
        clients: clients.clone(),
    }));
    kinds.register(Arc::new(Record {
        clients: clients.clone(),
    }));
}

/// A zone id without the `/hostedzone/` prefix AWS puts on it in some answers.
fn bare_zone_id(id: &str) -> &str {
    id.trim_start_matches("/hostedzone/")
}

/// A DNS name the way Route 53 compares them: lowercase, with the trailing dot, and `*`
/// instead of the `\052` Route 53 writes for it.
fn normalize_name(name: &str) -> String {
    let name = name.replace("\\052", "*").to_ascii_lowercase();
    if name.ends_with('.') {
        name
    } else {
        format!("{name}.")
    }
}

fn build_error(what: &str, e: impl std::fmt::Display) -> ResourceError {
    ResourceError::failed(format!("{what}: {e}"))
}

async fn get_zone(
    clients: &AwsClients,
    zone_id: &str,
) -> Result<Option<GetHostedZoneOutput>, ResourceError> {
    match clients
        .route53
        .get_hosted_zone()
        .id(bare_zone_id(zone_id))
        .send()
        .await
    {
        Ok(out) => Ok(Some(out)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(classify("GetHostedZone", e)),
    }
}

/// `data_route53_zone`: an existing hosted zone, looked up by name; dagform never changes it.
struct ZoneLookup {
    clients: Arc<AwsClients>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneProps {
    name: String,
    #[serde(default)]
    private_zone: Option<bool>,
}

fn is_private(zone: &HostedZone) -> bool {
    zone.config().is_some_and(|c| c.private_zone())
}

impl ZoneLookup {
    async fn lookup(&self, props: &Properties) -> Result<Applied, ResourceError> {
        let p: ZoneProps = parse(props)?;
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
        Ok(zone_applied(&id, &zone))
    }
}

fn zone_applied(id: &str, zone: &GetHostedZoneOutput) -> Applied {
    let name = zone
        .hosted_zone()
        .map(|z| normalize_name(z.name()))
        .unwrap_or_default();
    let applied = Applied::new(id).output("name", name);
    match zone.delegation_set().map(|d| d.name_servers()) {
        Some(servers) if !servers.is_empty() => applied.output("name_servers", json!(servers)),
        _ => applied,
    }
}

#[async_trait::async_trait]
impl ResourceKind for ZoneLookup {
    fn name(&self) -> &'static str {
        "data_route53_zone"
    }

    /// A changed name is simply looked up again by `update`.
    fn forces_replacement(&self, _property: &str) -> bool {
        false
    }

    fn is_data_source(&self) -> bool {
        true
    }

    async fn create(&self, _ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        self.lookup(props).await
    }

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
        let name = match recorded.get("name").and_then(Json::as_str) {
            Some(r) if normalize_name(r) == live_name => r.to_owned(),
            _ => live_name,
        };
        let mut properties = Properties::new();
        properties.insert("name".into(), json!(name));
        if recorded.contains_key("private_zone") {
            properties.insert("private_zone".into(), json!(is_private(hosted)));
        }
        Ok(Some(Observed {
            properties,
            outputs: zone_applied(current.id, &zone).outputs,
        }))
    }

    async fn update(
        &self,
        _ctx: &OpContext,
        _current: Current<'_>,
        desired: &Properties,
        _changed: &[String],
    ) -> Result<Applied, ResourceError> {
        self.lookup(desired).await
    }

    async fn delete(&self, _ctx: &OpContext, _current: Current<'_>) -> Result<(), ResourceError> {
        Ok(())
    }
}

/// `aws_route53_record`: one record set (name and type) in a hosted zone.
struct Record {
    clients: Arc<AwsClients>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordProps {
    zone_id: String,
    name: String,
    #[serde(rename = "type")]
    record_type: String,
    #[serde(default)]
    ttl: Option<i64>,
    #[serde(default)]
    records: Option<Vec<String>>,
    #[serde(default)]
    alias: Option<Alias>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Alias {
    dns_name: String,
    hosted_zone_id: String,
    evaluate_target_health: bool,
}

impl RecordProps {
    fn parse(props: &Properties) -> Result<Self, ResourceError> {
        let p: Self = parse(props)?;
        if !RrType::values().contains(&p.record_type.as_str()) {
            return Err(ResourceError::invalid(format!(
                "`{}` is not a Route 53 record type",
                p.record_type
            )));
        }
        if p.name.is_empty() || p.name.len() > 255 {
            return Err(ResourceError::invalid(format!(
                "record name `{}` must be 1 to 255 characters long",
                p.name
            )));
        }
        match (&p.records, &p.alias) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(ResourceError::invalid(
                    "a record needs exactly one of `records` and `alias`",
                ));
            }
            (Some(records), None) => {
                if records.is_empty() {
                    return Err(ResourceError::invalid("`records` must not be empty"));
                }
                if p.record_type == "CNAME" && records.len() != 1 {
                    return Err(ResourceError::invalid(
                        "a CNAME record holds exactly one value",
                    ));
                }
                match p.ttl {
                    Some(ttl) if (0..=i64::from(i32::MAX)).contains(&ttl) => {}
                    Some(ttl) => {
                        return Err(ResourceError::invalid(format!(
                            "ttl must be between 0 and {}, got {ttl}",
                            i32::MAX
                        )));
                    }
                    None => {
                        return Err(ResourceError::invalid(
                            "a record with `records` needs a ttl",
                        ));
                    }
                }
            }
            (None, Some(_)) => {
                if p.ttl.is_some() {
                    return Err(ResourceError::invalid(
                        "an alias record takes no ttl (Route 53 uses the target's)",
                    ));
                }
            }
        }
        Ok(p)
    }

    fn record_set(&self, fqdn: &str) -> Result<ResourceRecordSet, ResourceError> {
        let mut set = ResourceRecordSet::builder()
            .name(fqdn)
            .r#type(RrType::from(self.record_type.as_str()));
        if let Some(alias) = &self.alias {
            set = set.alias_target(
                AliasTarget::builder()
                    .dns_name(&alias.dns_name)
                    .hosted_zone_id(&alias.hosted_zone_id)
                    .evaluate_target_health(alias.evaluate_target_health)
                    .build()
                    .map_err(|e| build_error("alias target", e))?,
            );
        }
        if let Some(records) = &self.records {
            let records = records
                .iter()
                .map(|v| {
                    ResourceRecord::builder()
                        .value(wire_value(&self.record_type, v))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| build_error("resource record", e))?;
            set = set.set_ttl(self.ttl).set_resource_records(Some(records));
        }
        set.build().map_err(|e| build_error("record set", e))
    }
}

/// TXT and SPF values go to Route 53 in double quotes; plain values are quoted for the user.
fn wire_value(record_type: &str, value: &str) -> String {
    if matches!(record_type, "TXT" | "SPF") && !value.starts_with('"') {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        value.to_owned()
    }
}

/// The record set's fully qualified name: a name outside the zone without a trailing dot is
/// taken as relative to the zone (`www` → `www.example.com.`).
fn qualify(name: &str, zone_name: &str) -> Result<String, ResourceError> {
    let zone = normalize_name(zone_name);
    let full = normalize_name(name);
    let inside = full == zone || full.ends_with(&format!(".{zone}"));
    match (inside, name.ends_with('.')) {
        (true, _) => Ok(full),
        (false, false) => Ok(format!("{full}{zone}")),
        (false, true) => Err(ResourceError::invalid(format!(
            "record `{name}` does not belong to zone `{zone}`"
        ))),
    }
}

/// A change batch of one change.
fn batch(action: ChangeAction, set: ResourceRecordSet) -> Result<ChangeBatch, ResourceError> {
    let change = Change::builder()
        .action(action)
        .resource_record_set(set)
        .build()
        .map_err(|e| build_error("change", e))?;
    ChangeBatch::builder()
        .changes(change)
        .build()
        .map_err(|e| build_error("change batch", e))
}

fn record_id(zone_id: &str, fqdn: &str, record_type: &str) -> String {
    format!("{zone_id}_{}_{record_type}", fqdn.trim_end_matches('.'))
}

/// Zone, fully qualified name and type from an id `<zone>_<fqdn>_<type>`; names may hold `_`
/// but zone ids and types never do.
fn parse_record_id(id: &str) -> Result<(&str, String, &str), ResourceError> {
    let bad = || ResourceError::failed(format!("`{id}` is not a record id <zone>_<name>_<type>"));
    let (zone, rest) = id.split_once('_').ok_or_else(bad)?;
    let (name, record_type) = rest.rsplit_once('_').ok_or_else(bad)?;
    Ok((zone, normalize_name(name), record_type))
}

fn record_applied(zone_id: &str, fqdn: &str, record_type: &str) -> Applied {
    Applied::new(record_id(zone_id, fqdn, record_type)).output("fqdn", fqdn.trim_end_matches('.'))
}

impl Record {
    async fn fqdn(&self, p: &RecordProps) -> Result<String, ResourceError> {
        let zone = get_zone(&self.clients, &p.zone_id)
            .await?
            .and_then(|z| z.hosted_zone().map(|h| h.name().to_owned()))
            .ok_or_else(|| {
                ResourceError::failed(format!("hosted zone {} does not exist", p.zone_id))
            })?;
        qualify(&p.name, &zone)
    }

    /// The live record set of this name and type, if any.
    async fn lookup(
        &self,
        zone_id: &str,
        fqdn: &str,
        record_type: &str,
    ) -> Result<Option<ResourceRecordSet>, ResourceError> {
        let out = match self
            .clients
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(fqdn)
            .start_record_type(RrType::from(record_type))
            .max_items(10)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(classify("ListResourceRecordSets", e)),
        };
        Ok(out
            .resource_record_sets()
            .iter()
            .find(|r| {
                normalize_name(r.name()) == fqdn
                    && r.r#type().as_str() == record_type
                    && r.set_identifier().is_none()
            })
            .cloned())
    }

    async fn change(
        &self,
        zone_id: &str,
        batch: ChangeBatch,
    ) -> Result<(), SdkError<ChangeResourceRecordSetsError>> {
        self.clients
            .route53
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(batch)
            .send()
            .await
            .map(|_| ())
    }

    async fn upsert(&self, p: &RecordProps) -> Result<Applied, ResourceError> {
        let zone_id = bare_zone_id(&p.zone_id);
        let fqdn = self.fqdn(p).await?;
        self.change(zone_id, batch(ChangeAction::Upsert, p.record_set(&fqdn)?)?)
            .await
            .map_err(|e| classify("ChangeResourceRecordSets", e))?;
        Ok(record_applied(zone_id, &fqdn, &p.record_type))
    }
}

#[async_trait::async_trait]
impl ResourceKind for Record {
    fn name(&self) -> &'static str {
        "aws_route53_record"
    }

    fn forces_replacement(&self, property: &str) -> bool {
        matches!(property, "zone_id" | "name" | "type")
    }

    async fn create(&self, _ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        self.upsert(&RecordProps::parse(props)?).await
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let (zone_id, fqdn, record_type) = parse_record_id(current.id)?;
        let Some(set) = self.lookup(zone_id, &fqdn, record_type).await? else {
            return Ok(None);
        };
        let recorded = current.properties;
        let recorded_str = |key: &str| recorded.get(key).and_then(Json::as_str);
        let mut properties = Properties::new();
        let zone = match recorded_str("zone_id") {
            Some(z) if bare_zone_id(z) == zone_id => z,
            _ => zone_id,
        };
        properties.insert("zone_id".into(), json!(zone));
        properties.insert(
            "name".into(),
            json!(recorded_str("name").unwrap_or(fqdn.as_str())),
        );
        properties.insert("type".into(), json!(set.r#type().as_str()));
        if let Some(ttl) = set.ttl() {
            properties.insert("ttl".into(), json!(ttl));
        }
        if !set.resource_records().is_empty() {
            // Report values as written when only Route 53's quoting differs.
            let written: Vec<&str> = recorded
                .get("records")
                .and_then(Json::as_array)
                .map(|a| a.iter().filter_map(Json::as_str).collect())
                .unwrap_or_default();
            let live = set
                .resource_records()
                .iter()
                .map(|r| {
                    written
                        .iter()
                        .find(|w| wire_value(record_type, w) == r.value())
                        .map_or_else(|| r.value().to_owned(), |w| (*w).to_owned())
                })
                .collect();
            properties.insert(
                "records".into(),
                json!(in_recorded_order(live, recorded.get("records"))),
            );
        }
        if let Some(alias) = set.alias_target() {
            let recorded_dns = recorded
                .get("alias")
                .and_then(|a| a.get("dns_name"))
                .and_then(Json::as_str);
            let dns_name = match recorded_dns {
                Some(r) if normalize_name(r) == normalize_name(alias.dns_name()) => r,
                _ => alias.dns_name(),
            };
            properties.insert(
                "alias".into(),
                json!({
                    "dns_name": dns_name,
                    "hosted_zone_id": alias.hosted_zone_id(),
                    "evaluate_target_health": alias.evaluate_target_health(),
                }),
            );
        }
        Ok(Some(Observed {
            properties,
            outputs: record_applied(zone_id, &fqdn, record_type).outputs,
        }))
    }

    async fn update(
        &self,
        _ctx: &OpContext,
        _current: Current<'_>,
        desired: &Properties,
        _changed: &[String],
    ) -> Result<Applied, ResourceError> {
        self.upsert(&RecordProps::parse(desired)?).await
    }

    /// Route 53 deletes a record set only when given its exact values, so the live ones are
    /// sent.
    async fn delete(&self, _ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let (zone_id, fqdn, record_type) = parse_record_id(current.id)?;
        let Some(set) = self.lookup(zone_id, &fqdn, record_type).await? else {
            return Ok(());
        };
        match self
            .change(zone_id, batch(ChangeAction::Delete, set)?)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e)
                if e.code() == Some("InvalidChangeBatch")
                    && e.message().is_some_and(|m| m.contains("not found")) =>
            {
                Ok(())
            }
            Err(e) => Err(classify("ChangeResourceRecordSets", e)),
        }
    }

    async fn find(
        &self,
        _ctx: &OpContext,
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = RecordProps::parse(props)?;
        let zone_id = bare_zone_id(&p.zone_id);
        let fqdn = self.fqdn(&p).await?;
        Ok(self
            .lookup(zone_id, &fqdn, &p.record_type)
            .await?
            .map(|_| record_applied(zone_id, &fqdn, &p.record_type)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_qualified_within_the_zone() {
        assert_eq!(qualify("www", "example.com.").unwrap(), "www.example.com.");
        assert_eq!(
            qualify("App.Example.com", "example.com.").unwrap(),
            "app.example.com."
        );
        assert_eq!(
            qualify("example.com.", "example.com").unwrap(),
            "example.com."
        );
        assert!(qualify("www.example.org.", "example.com.").is_err());
        assert_eq!(normalize_name("\\052.example.com."), "*.example.com.");
    }

    #[test]
    fn record_ids_round_trip_with_underscores() {
        let id = record_id("Z1", "_abc.example.com.", "CNAME");
        assert_eq!(id, "Z1__abc.example.com_CNAME");
        let (zone, name, ty) = parse_record_id(&id).unwrap();
        assert_eq!(
            (zone, name.as_str(), ty),
            ("Z1", "_abc.example.com.", "CNAME")
        );
    }

    #[test]
    fn txt_values_are_quoted_once() {
        assert_eq!(wire_value("TXT", "v=spf1 -all"), "\"v=spf1 -all\"");
        assert_eq!(wire_value("TXT", "\"quoted\""), "\"quoted\"");
        assert_eq!(wire_value("A", "1.2.3.4"), "1.2.3.4");
    }
}
