//! `aws_route53_record`.

use super::claim::{Claim, claim_name, claim_set};
use super::{bare_zone_id, build_error, get_zone, normalize_name};
use crate::AwsClients;
use crate::clients::{Scan, each_concurrently, fail_all};
use crate::error::{classify, is_not_found};
use crate::ownership::{found, in_recorded_order};
use aws_sdk_route53::error::SdkError;
use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsError;
use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use dagform_core::{Applied, Changes, Current, Kind, Observed, OpContext, ResourceError};
use dagform_resources::route53::{Alias, RecordField, RecordOutputs, RecordProps};
use serde_json::Value as Json;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// The most record sets ListResourceRecordSets returns in one call.
const RECORD_SETS_PER_PAGE: i32 = 300;

/// Record sets a refresh reads from one listing of their zones.
const REFRESH_BATCH: usize = 1000;

/// `aws_route53_record`: one record set (name and type) in a hosted zone.
pub struct Record {
    clients: Arc<AwsClients>,
}

/// Whether `live` holds exactly the values `desired` would write.
fn same_values(live: &ResourceRecordSet, desired: &ResourceRecordSet) -> bool {
    let values = |s: &ResourceRecordSet| {
        let mut v: Vec<String> = s
            .resource_records()
            .iter()
            .map(|r| r.value().to_owned())
            .collect();
        v.sort();
        v
    };
    live.r#type() == desired.r#type()
        && live.alias_target().is_none()
        && desired.alias_target().is_none()
        && values(live) == values(desired)
}

/// Whether `live`, not this node's, already holds exactly what `p` wants and so serves as it
/// stands (see `share_identical`).
fn shared_as_is(
    p: &RecordProps,
    fqdn: &str,
    ctx: &OpContext,
    live: Option<&ResourceRecordSet>,
    claimed: &Claim,
) -> Result<bool, ResourceError> {
    if !p.share_identical || claimed.is_ours(ctx) {
        return Ok(false);
    }
    let Some(live) = live else {
        return Ok(false);
    };
    Ok(same_values(live, &record_set(p, fqdn)?))
}

/// The record set `p` describes, under its fully qualified name.
fn record_set(p: &RecordProps, fqdn: &str) -> Result<ResourceRecordSet, ResourceError> {
    let mut set = ResourceRecordSet::builder()
        .name(fqdn)
        .r#type(RrType::from(p.r#type.as_str()));
    if let Some(alias) = &p.alias {
        set = set.alias_target(
            AliasTarget::builder()
                .dns_name(&alias.dns_name)
                .hosted_zone_id(&alias.hosted_zone_id)
                .evaluate_target_health(alias.evaluate_target_health)
                .build()
                .map_err(|e| build_error("alias target", e))?,
        );
    }
    if let Some(records) = &p.records {
        let records = records
            .iter()
            .map(|v| {
                ResourceRecord::builder()
                    .value(wire_value(&p.r#type, v))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| build_error("resource record", e))?;
        set = set.set_ttl(p.ttl).set_resource_records(Some(records));
    }
    set.build().map_err(|e| build_error("record set", e))
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

/// One change batch: Route 53 makes all of its changes or none.
fn batch(changes: Vec<(ChangeAction, ResourceRecordSet)>) -> Result<ChangeBatch, ResourceError> {
    let changes = changes
        .into_iter()
        .map(|(action, set)| {
            Change::builder()
                .action(action)
                .resource_record_set(set)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| build_error("change", e))?;
    ChangeBatch::builder()
        .set_changes(Some(changes))
        .build()
        .map_err(|e| build_error("change batch", e))
}

/// Whether Route 53 refused a change batch with a message containing `words` (it gives them
/// as a list; the emulator as the error's message).
fn rejected(e: &SdkError<ChangeResourceRecordSetsError>, words: &str) -> bool {
    let Some(ChangeResourceRecordSetsError::InvalidChangeBatch(invalid)) = e.as_service_error()
    else {
        return false;
    };
    invalid
        .message()
        .into_iter()
        .chain(invalid.messages().iter().map(String::as_str))
        .any(|m| m.contains(words))
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

/// Where a record set lives: its zone, fully qualified name (lowercase, with the final dot)
/// and type.
pub(super) struct RecordKey {
    zone_id: String,
    fqdn: String,
    record_type: String,
}

impl RecordKey {
    fn from_id(id: &str) -> Result<Self, ResourceError> {
        let (zone_id, fqdn, record_type) = parse_record_id(id)?;
        Ok(Self {
            zone_id: zone_id.to_owned(),
            fqdn,
            record_type: record_type.to_owned(),
        })
    }

    fn id(&self) -> String {
        record_id(&self.zone_id, &self.fqdn, &self.record_type)
    }

    fn outputs(&self) -> RecordOutputs {
        RecordOutputs {
            id: self.id(),
            fqdn: self.fqdn.trim_end_matches('.').to_owned(),
            shared: None,
        }
    }

    /// The record set as this node's.
    fn applied(&self) -> Applied {
        Applied::of(self.outputs())
    }

    /// Another owner's identical record set, used as it stands (see `share_identical`).
    fn applied_shared(&self) -> Applied {
        Applied::of(RecordOutputs {
            shared: Some(true),
            ..self.outputs()
        })
    }

    pub(super) fn claim_name(&self) -> String {
        claim_name(&self.fqdn, &self.record_type)
    }

    /// The record set as messages name it, e.g. "A record `www.example.com`".
    pub(super) fn describe(&self) -> String {
        format!(
            "{} record `{}`",
            self.record_type,
            self.fqdn.trim_end_matches('.')
        )
    }
}

impl Record {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    async fn key(&self, p: &RecordProps) -> Result<RecordKey, ResourceError> {
        let zone = get_zone(&self.clients, &p.zone_id)
            .await?
            .and_then(|z| z.hosted_zone().map(|h| h.name().to_owned()))
            .ok_or_else(|| {
                ResourceError::failed(format!("hosted zone {} does not exist", p.zone_id))
            })?;
        Ok(RecordKey {
            zone_id: bare_zone_id(&p.zone_id).to_owned(),
            fqdn: qualify(&p.name, &zone)?,
            record_type: p.r#type.clone(),
        })
    }

    /// The live record set of this name and type, if any.
    async fn lookup(
        &self,
        zone_id: &str,
        fqdn: &str,
        record_type: &str,
    ) -> Result<Option<ResourceRecordSet>, ResourceError> {
        let listed = self
            .clients
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(fqdn)
            .start_record_type(RrType::from(record_type))
            .max_items(10)
            .send()
            .await;
        let Some(out) = found("ListResourceRecordSets", listed)? else {
            return Ok(None);
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

    /// Lists `zone` from its start while `scan` says a page still pays for itself, keeping
    /// the record sets it wants in `listed`. A zone that no longer exists lists nothing.
    async fn list_zone(
        &self,
        zone: &str,
        scan: &mut Scan,
        listed: &mut HashMap<String, ResourceRecordSet>,
    ) -> Result<(), ResourceError> {
        let mut next: Option<(String, RrType, Option<String>)> = None;
        while scan.worth_another_page() {
            let mut call = self
                .clients
                .route53
                .list_resource_record_sets()
                .hosted_zone_id(zone)
                .max_items(RECORD_SETS_PER_PAGE);
            if let Some((name, record_type, identifier)) = next.take() {
                call = call
                    .start_record_name(name)
                    .start_record_type(record_type)
                    .set_start_record_identifier(identifier);
            }
            let Some(page) = found("ListResourceRecordSets", call.send().await)? else {
                return Ok(());
            };
            let sets: Vec<(String, &ResourceRecordSet)> = page
                .resource_record_sets()
                .iter()
                .filter(|set| set.set_identifier().is_none())
                .map(|set| {
                    let id = record_id(zone, &normalize_name(set.name()), set.r#type().as_str());
                    (id, set)
                })
                .collect();
            for (id, set) in &sets {
                if scan.still_wanted(id) {
                    listed.insert(id.clone(), (*set).clone());
                }
            }
            scan.page(sets.iter().map(|(id, _)| id.as_str()));
            match (
                page.is_truncated(),
                page.next_record_name(),
                page.next_record_type(),
            ) {
                (true, Some(name), Some(record_type)) => {
                    next = Some((
                        name.to_owned(),
                        record_type.clone(),
                        page.next_record_identifier().map(str::to_owned),
                    ));
                }
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    async fn claim(&self, key: &RecordKey) -> Result<Claim, ResourceError> {
        let set = self.lookup(&key.zone_id, &key.claim_name(), "TXT").await?;
        Ok(Claim::read(set))
    }

    /// The live record set and what its ownership record says.
    async fn inspect(
        &self,
        key: &RecordKey,
    ) -> Result<(Option<ResourceRecordSet>, Claim), ResourceError> {
        tokio::try_join!(
            self.lookup(&key.zone_id, &key.fqdn, &key.record_type),
            self.claim(key)
        )
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

    async fn write(
        &self,
        zone_id: &str,
        changes: Vec<(ChangeAction, ResourceRecordSet)>,
    ) -> Result<(), ResourceError> {
        self.change(zone_id, batch(changes)?)
            .await
            .map_err(|e| classify("ChangeResourceRecordSets", e))
    }

    /// A create met the record set or its ownership record already in the zone: it goes on
    /// only when the ownership record names this node (a run killed after its change went
    /// through), and then brings the record set to the desired values.
    async fn adopt(
        &self,
        ctx: &OpContext,
        key: &RecordKey,
        record_exists: bool,
        claim: &Claim,
        desired: ResourceRecordSet,
    ) -> Result<Applied, ResourceError> {
        claim.require(ctx, key, record_exists, false)?;
        self.write(&key.zone_id, vec![(ChangeAction::Upsert, desired)])
            .await?;
        Ok(key.applied())
    }
}

/// A live record set in the shape of the desired properties: values, names and the zone id as
/// recorded where only their spelling differs.
fn observe(set: &ResourceRecordSet, key: &RecordKey, current: Current<'_>) -> Observed {
    let recorded = current.properties;
    let recorded_str = |field: RecordField| recorded.get(field.as_str()).and_then(Json::as_str);
    let zone_id = match recorded_str(RecordField::ZoneId) {
        Some(z) if bare_zone_id(z) == key.zone_id => z,
        _ => &key.zone_id,
    };
    // Report values as written when only Route 53's quoting differs.
    let records = (!set.resource_records().is_empty()).then(|| {
        let written: Vec<&str> = recorded
            .get(RecordField::Records.as_str())
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        let live = set
            .resource_records()
            .iter()
            .map(|r| {
                written
                    .iter()
                    .find(|w| wire_value(&key.record_type, w) == r.value())
                    .map_or_else(|| r.value().to_owned(), |w| (*w).to_owned())
            })
            .collect();
        in_recorded_order(live, recorded.get(RecordField::Records.as_str()))
    });
    let alias = set.alias_target().map(|alias| {
        let recorded_dns = recorded
            .get(RecordField::Alias.as_str())
            .and_then(|a| a.get("dns_name"))
            .and_then(Json::as_str);
        let dns_name = match recorded_dns {
            Some(r) if normalize_name(r) == normalize_name(alias.dns_name()) => r,
            _ => alias.dns_name(),
        };
        Alias {
            dns_name: dns_name.to_owned(),
            hosted_zone_id: alias.hosted_zone_id().to_owned(),
            evaluate_target_health: alias.evaluate_target_health(),
        }
    });
    let share_identical = RecordField::ShareIdentical.as_str();
    let props = RecordProps {
        zone_id: zone_id.to_owned(),
        name: recorded_str(RecordField::Name)
            .unwrap_or(&key.fqdn)
            .to_owned(),
        r#type: set.r#type().as_str().to_owned(),
        share_identical: recorded
            .get(share_identical)
            .and_then(Json::as_bool)
            .unwrap_or(false),
        ttl: set.ttl(),
        records,
        alias,
    };
    let mut observed = Observed::of(&props, key.outputs());
    // A setting of dagform's, not of Route 53's: reported only as recorded.
    if !recorded.contains_key(share_identical) {
        observed.properties.shift_remove(share_identical);
    }
    observed
}

#[async_trait::async_trait]
impl Kind for Record {
    type Props = RecordProps;

    async fn create(&self, ctx: &OpContext, p: &RecordProps) -> Result<Applied, ResourceError> {
        let key = self.key(p).await?;
        let desired = record_set(p, &key.fqdn)?;
        let claim = claim_set(&key, ctx)?;
        // Route 53 refuses a CREATE over an existing record set, but the emulator appends a
        // second one instead; looking first also answers a record found here plainly.
        let (live, claimed) = self.inspect(&key).await?;
        if shared_as_is(p, &key.fqdn, ctx, live.as_ref(), &claimed)? {
            tracing::info!(address = %ctx.address, "{} already stands as wanted for another owner: using it as it is", key.describe());
            return Ok(key.applied_shared());
        }
        if live.is_some() || !matches!(claimed, Claim::Absent) {
            return self
                .adopt(ctx, &key, live.is_some(), &claimed, desired)
                .await;
        }
        let both = vec![
            (ChangeAction::Create, desired.clone()),
            (ChangeAction::Create, claim.clone()),
        ];
        match self.change(&key.zone_id, batch(both)?).await {
            Ok(()) => Ok(key.applied()),
            // Written meanwhile, or an SDK retry of this very batch whose first answer was
            // lost (which is why the call may be retried at all): see whose it is.
            Err(e) if rejected(&e, "already exists") => {
                let (live, claimed) = self.inspect(&key).await?;
                if live.is_some() || !matches!(claimed, Claim::Absent) {
                    return self
                        .adopt(ctx, &key, live.is_some(), &claimed, desired)
                        .await;
                }
                // Refused although neither name holds anything: the emulator refuses a CREATE
                // identical to one in its change history, of a record set since deleted. Both
                // names were just seen empty, so writing them is what the CREATE would do.
                let both = vec![
                    (ChangeAction::Upsert, desired),
                    (ChangeAction::Upsert, claim),
                ];
                self.write(&key.zone_id, both).await?;
                Ok(key.applied())
            }
            Err(e) => Err(classify("ChangeResourceRecordSets", e)),
        }
    }

    /// Reports the record set alone: its ownership record is how dagform keeps track, not a
    /// property.
    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let key = RecordKey::from_id(current.id)?;
        let live = self
            .lookup(&key.zone_id, &key.fqdn, &key.record_type)
            .await?;
        Ok(live.map(|set| observe(&set, &key, current)))
    }

    /// Lists each zone's record sets, 300 to a call, for as long as that is cheaper than
    /// looking up each record set still missing (Route 53 has no lookup of many names); one not
    /// listed is looked up on its own, so a big zone shared with others costs no more than
    /// reading record by record.
    async fn read_many(
        &self,
        ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let keys: Vec<Option<RecordKey>> = items
            .iter()
            .map(|c| RecordKey::from_id(c.id).ok())
            .collect();
        let zones: BTreeSet<&str> = keys.iter().flatten().map(|k| k.zone_id.as_str()).collect();
        let mut listed: HashMap<String, ResourceRecordSet> = HashMap::new();
        let mut unread: HashSet<String> = HashSet::new();
        for zone in zones {
            let ids: Vec<String> = keys
                .iter()
                .flatten()
                .filter(|k| k.zone_id == zone)
                .map(RecordKey::id)
                .collect();
            let mut scan = Scan::new(ids.iter().map(String::as_str));
            match self.list_zone(zone, &mut scan, &mut listed).await {
                Ok(()) => {}
                Err(e) => return fail_all(items, e),
            }
            unread.extend(ids.into_iter().filter(|id| scan.still_wanted(id)));
        }
        let (keys, unread, listed) = (&keys, &unread, &listed);
        each_concurrently(items.iter().zip(keys).map(|(item, key)| async move {
            match key {
                Some(key) if !unread.contains(&key.id()) => {
                    Ok(listed.get(&key.id()).map(|set| observe(set, key, *item)))
                }
                _ => self.read(ctx, *item).await,
            }
        }))
        .await
    }

    fn read_batch_size(&self) -> usize {
        REFRESH_BATCH
    }

    /// Changes the record set only when its ownership record names this node, or when there is
    /// none (a record set the state recorded before dagform kept ownership records), which the
    /// update then claims.
    async fn update(
        &self,
        ctx: &OpContext,
        _current: Current<'_>,
        p: &RecordProps,
        _changed: &Changes<RecordProps>,
    ) -> Result<Applied, ResourceError> {
        let key = self.key(p).await?;
        let claimed = self.claim(&key).await?;
        if p.share_identical && !claimed.is_ours(ctx) {
            let live = self
                .lookup(&key.zone_id, &key.fqdn, &key.record_type)
                .await?;
            if shared_as_is(p, &key.fqdn, ctx, live.as_ref(), &claimed)? {
                return Ok(key.applied_shared());
            }
        }
        claimed.require(ctx, &key, true, true)?;
        // Claiming with CREATE makes the batch fail if another stack claimed it meanwhile.
        let claim_action = if claimed.is_ours(ctx) {
            ChangeAction::Upsert
        } else {
            ChangeAction::Create
        };
        let changes = vec![
            (ChangeAction::Upsert, record_set(p, &key.fqdn)?),
            (claim_action, claim_set(&key, ctx)?),
        ];
        self.write(&key.zone_id, changes).await?;
        Ok(key.applied())
    }

    /// Deletes the record set and its ownership record together, only when that names this
    /// node or is absent (the state records the record set). Route 53 deletes a record set
    /// only when given its exact values, so the live ones are sent.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let key = RecordKey::from_id(current.id)?;
        let shared = current
            .properties
            .get(RecordField::ShareIdentical.as_str())
            .and_then(Json::as_bool)
            .unwrap_or(false);
        let mut attempt = 1;
        loop {
            let (live, claimed) = self.inspect(&key).await?;
            // A record used as it stood (another stack's, or added by hand) stays theirs.
            if shared && !claimed.is_ours(ctx) {
                return Ok(());
            }
            let mut changes = Vec::new();
            if let Some(set) = live {
                claimed.require(ctx, &key, true, true)?;
                changes.push((ChangeAction::Delete, set));
            }
            // With the record set gone already, a leftover ownership record of ours goes too;
            // another's stays.
            if claimed.is_ours(ctx)
                && let Claim::Held { set, .. } = claimed
            {
                changes.push((ChangeAction::Delete, *set));
            }
            if changes.is_empty() {
                return Ok(());
            }
            match self.change(&key.zone_id, batch(changes)?).await {
                Ok(()) => return Ok(()),
                // Changed or deleted since it was read (or a retried batch that went through):
                // read it again.
                Err(e)
                    if attempt < 3
                        && (is_not_found(&e)
                            || rejected(&e, "not found")
                            || rejected(&e, "do not match")) =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(classify("ChangeResourceRecordSets", e)),
            }
        }
    }

    /// A record set under the wanted name and type is this node's only when its ownership
    /// record says so.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &RecordProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let key = self.key(p).await?;
        if ctx.superseded.contains(&key.id()) {
            return Ok(None);
        }
        let (live, claimed) = self.inspect(&key).await?;
        let Some(live) = live else {
            return Ok(None);
        };
        if shared_as_is(p, &key.fqdn, ctx, Some(&live), &claimed)? {
            return Ok(Some(key.applied_shared()));
        }
        claimed.require(ctx, &key, true, false)?;
        Ok(Some(key.applied()))
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

    #[test]
    fn the_schema_knows_every_record_type_route53_does() {
        assert_eq!(dagform_resources::route53::RECORD_TYPES, RrType::values());
    }
}
