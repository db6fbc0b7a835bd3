//! Route 53: looking up a hosted zone, and the record sets dagform writes into it.

use crate::AwsClients;
use crate::error::{classify, is_not_found, parse};
use crate::ownership::in_recorded_order;
use aws_sdk_route53::error::SdkError;
use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsError;
use aws_sdk_route53::operation::get_hosted_zone::GetHostedZoneOutput;
use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, HostedZone, ResourceRecord, ResourceRecordSet,
    RrType,
};
use dagform_core::kind::{ADDRESS_TAG, Owner, STACK_TAG};
use dagform_core::{
    Applied, Current, Kinds, Observed, OpContext, Properties, ResourceError, ResourceKind,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
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
    /// The record may already stand, identical, for another owner: certificate validation
    /// records are the same for every certificate of one name in an account, so two stacks'
    /// certificates for one domain need the very same record. It is then used as it is and
    /// never changed or deleted by this stack.
    #[serde(default)]
    share_identical: bool,
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
    Ok(same_values(live, &p.record_set(fqdn)?))
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

fn record_applied(zone_id: &str, fqdn: &str, record_type: &str) -> Applied {
    Applied::new(record_id(zone_id, fqdn, record_type)).output("fqdn", fqdn.trim_end_matches('.'))
}

// Route 53 record sets carry no tags, so beside every record set it writes dagform keeps a TXT
// record naming the stack and address that own it (the way external-dns keeps its registry).
// A record set and its ownership record are created together in one change batch with
// CREATE, so neither exists without the other and nothing already in the zone is
// overwritten; afterwards they are changed and deleted only by the stack the record names.

/// Time to live of ownership records: nothing resolves them, so it barely matters.
const CLAIM_TTL: i64 = 300;
/// The longest DNS name Route 53 accepts, without the final dot.
const MAX_NAME_LEN: usize = 253;
/// The longest character string one TXT value holds.
const MAX_TXT_STRING: usize = 255;
/// Characters of a stack or address that an ownership record holds as they are; the others are
/// percent-encoded, so its value never holds the `,` and `=` that separate its fields, nor
/// the quotes, backslashes and non-ASCII characters Route 53 escapes.
const CLAIM_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'/')
    .remove(b':');

/// The name of the ownership record of the record set `fqdn` of type `record_type`: one per
/// name and type (an A and an AAAA record of one name each have an owner), one label below
/// the name rather than at it, since nothing may sit beside a CNAME. A wildcard's stands
/// beside it, as a wildcard label may only come first.
fn claim_name(fqdn: &str, record_type: &str) -> String {
    let ty = record_type.to_ascii_lowercase();
    let (label, parent) = match fqdn.strip_prefix("*.") {
        Some(parent) => (format!("_dagform-{ty}-wildcard"), parent),
        None => (format!("_dagform-{ty}"), fqdn),
    };
    let fits = |label: &str, parent: &str| {
        label.len() + 1 + parent.trim_end_matches('.').len() <= MAX_NAME_LEN
    };
    if fits(&label, parent) {
        return format!("{label}.{parent}");
    }
    // Too long for one more label: name it by a hash of the whole name instead, under as much
    // of the name's parent as fits.
    let label = format!("_dagform-{ty}-{}", stable_hash(fqdn));
    let mut parent = fqdn;
    while !fits(&label, parent) {
        parent = parent.split_once('.').map_or("", |(_, rest)| rest);
    }
    format!("{label}.{parent}")
}

/// 16 hex digits of the name's SHA-256: the same across runs, platforms and versions, as
/// ownership record names must be.
fn stable_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// The value of `ctx`'s ownership records, as sent to Route 53:
/// `"dagform:stack=<stack>,dagform:address=<address>"`.
fn claim_value(ctx: &OpContext) -> Result<String, ResourceError> {
    let text = ctx
        .tag_pairs()
        .iter()
        .map(|(key, value)| format!("{key}={}", utf8_percent_encode(value, CLAIM_ESCAPED)))
        .collect::<Vec<_>>()
        .join(",");
    if text.len() > MAX_TXT_STRING {
        return Err(ResourceError::invalid(format!(
            "stack `{}` and address `{}` are too long to name in a DNS ownership record \
             ({} characters, at most {MAX_TXT_STRING})",
            ctx.stack,
            ctx.address,
            text.len()
        )));
    }
    Ok(format!("\"{text}\""))
}

/// The stack and address tags an ownership record's value names, read as strictly as
/// [`claim_value`] writes them: `None` for any value it would not have written.
fn parse_claim(wire: &str) -> Option<Vec<(String, String)>> {
    let text = wire.strip_prefix('"')?.strip_suffix('"')?;
    let mut fields = text.split(',');
    let mut tags = Vec::with_capacity(2);
    for key in [STACK_TAG, ADDRESS_TAG] {
        let (name, encoded) = fields.next()?.split_once('=')?;
        let value = percent_decode_str(encoded).decode_utf8().ok()?;
        // Only the one encoding dagform writes: this refuses stray quotes, backslashes,
        // separators and needless escapes alike.
        if name != key
            || value.is_empty()
            || utf8_percent_encode(&value, CLAIM_ESCAPED).to_string() != encoded
        {
            return None;
        }
        tags.push((key.to_owned(), value.into_owned()));
    }
    fields.next().is_none().then_some(tags)
}

/// What a record set's ownership record says.
enum Claim {
    /// There is none: the record set was made by hand, by another tool, or by dagform before
    /// it kept ownership records.
    Absent,
    /// dagform's, naming the owner's `tags`; `set` is the live TXT record set, whose exact
    /// values deleting it needs.
    Held {
        tags: Vec<(String, String)>,
        set: Box<ResourceRecordSet>,
    },
    /// A TXT record under the ownership name that dagform did not write.
    Unreadable { value: String },
}

impl Claim {
    fn read(set: Option<ResourceRecordSet>) -> Self {
        let Some(set) = set else {
            return Self::Absent;
        };
        let values: Vec<&str> = set.resource_records().iter().map(|r| r.value()).collect();
        let tags = match values.as_slice() {
            [value] => parse_claim(value),
            _ => None,
        };
        match tags {
            Some(tags) => Self::Held {
                tags,
                set: Box::new(set),
            },
            None => Self::Unreadable {
                value: values.join(" "),
            },
        }
    }

    fn is_ours(&self, ctx: &OpContext) -> bool {
        matches!(self, Self::Held { tags, .. } if ctx.owner(tag_pairs(tags)) == Owner::Ours)
    }
}

fn tag_pairs(tags: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// Where a record set lives: its zone, fully qualified name (lowercase, with the final dot)
/// and type.
struct RecordKey {
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

    fn applied(&self) -> Applied {
        record_applied(&self.zone_id, &self.fqdn, &self.record_type)
    }

    fn claim_name(&self) -> String {
        claim_name(&self.fqdn, &self.record_type)
    }

    /// The record set as messages name it, e.g. "A record `www.example.com`".
    fn describe(&self) -> String {
        format!(
            "{} record `{}`",
            self.record_type,
            self.fqdn.trim_end_matches('.')
        )
    }

    /// The ownership record naming `ctx`'s node as this record set's owner.
    fn claim_set(&self, ctx: &OpContext) -> Result<ResourceRecordSet, ResourceError> {
        let value = ResourceRecord::builder()
            .value(claim_value(ctx)?)
            .build()
            .map_err(|e| build_error("ownership record", e))?;
        ResourceRecordSet::builder()
            .name(self.claim_name())
            .r#type(RrType::Txt)
            .ttl(CLAIM_TTL)
            .resource_records(value)
            .build()
            .map_err(|e| build_error("ownership record set", e))
    }

    /// Refuses unless the ownership record names `ctx`'s node, or there is none and
    /// `absent_is_ours` (the state records the record set). `record_exists` says whether the
    /// record set itself is there, for the message.
    fn require_claim(
        &self,
        ctx: &OpContext,
        claim: &Claim,
        record_exists: bool,
        absent_is_ours: bool,
    ) -> Result<(), ResourceError> {
        let claim_name = self.claim_name();
        let claim_name = claim_name.trim_end_matches('.');
        let object = if record_exists {
            self.describe()
        } else {
            format!("ownership record `{claim_name}` of {}", self.describe())
        };
        match claim {
            Claim::Held { tags, .. } => ctx.require_ours(&object, tag_pairs(tags)),
            Claim::Absent if absent_is_ours => Ok(()),
            Claim::Absent => Err(ctx.not_owned(&object, &Owner::Nobody)),
            Claim::Unreadable { value } => Err(ResourceError::NotOwned(format!(
                "{} has an ownership record `{claim_name}` that dagform did not write \
                 ({value}); dagform will not adopt, change or delete it",
                self.describe()
            ))),
        }
    }
}

impl Record {
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
            record_type: p.record_type.clone(),
        })
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
        key.require_claim(ctx, claim, record_exists, false)?;
        self.write(&key.zone_id, vec![(ChangeAction::Upsert, desired)])
            .await?;
        Ok(key.applied())
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

    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = RecordProps::parse(props)?;
        let key = self.key(&p).await?;
        let desired = p.record_set(&key.fqdn)?;
        let claim = key.claim_set(ctx)?;
        // Route 53 refuses a CREATE over an existing record set, but the emulator appends a
        // second one instead; looking first also answers a record found here plainly.
        let (live, claimed) = self.inspect(&key).await?;
        if shared_as_is(&p, &key.fqdn, ctx, live.as_ref(), &claimed)? {
            tracing::info!(address = %ctx.address, "{} already stands as wanted for another owner: using it as it is", key.describe());
            return Ok(key.applied().output("shared", true));
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
        // A setting of dagform's, not of Route 53's.
        if let Some(share) = recorded.get("share_identical") {
            properties.insert("share_identical".into(), share.clone());
        }
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

    /// Changes the record set only when its ownership record names this node, or when there is
    /// none (a record set the state recorded before dagform kept ownership records), which the
    /// update then claims.
    async fn update(
        &self,
        ctx: &OpContext,
        _current: Current<'_>,
        desired: &Properties,
        _changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p = RecordProps::parse(desired)?;
        let key = self.key(&p).await?;
        let claimed = self.claim(&key).await?;
        if p.share_identical && !claimed.is_ours(ctx) {
            let live = self
                .lookup(&key.zone_id, &key.fqdn, &key.record_type)
                .await?;
            if shared_as_is(&p, &key.fqdn, ctx, live.as_ref(), &claimed)? {
                return Ok(key.applied().output("shared", true));
            }
        }
        key.require_claim(ctx, &claimed, true, true)?;
        // Claiming with CREATE makes the batch fail if another stack claimed it meanwhile.
        let claim_action = if claimed.is_ours(ctx) {
            ChangeAction::Upsert
        } else {
            ChangeAction::Create
        };
        let changes = vec![
            (ChangeAction::Upsert, p.record_set(&key.fqdn)?),
            (claim_action, key.claim_set(ctx)?),
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
            .get("share_identical")
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
                key.require_claim(ctx, &claimed, true, true)?;
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
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = RecordProps::parse(props)?;
        let key = self.key(&p).await?;
        if ctx.superseded.contains(&key.id()) {
            return Ok(None);
        }
        let (live, claimed) = self.inspect(&key).await?;
        let Some(live) = live else {
            return Ok(None);
        };
        if shared_as_is(&p, &key.fqdn, ctx, Some(&live), &claimed)? {
            return Ok(Some(key.applied().output("shared", true)));
        }
        key.require_claim(ctx, &claimed, true, false)?;
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

    fn ctx(stack: &str, address: &str) -> OpContext {
        OpContext::new(stack, address, dagform_core::kind::PollSettings::default())
    }

    #[test]
    fn ownership_records_sit_below_the_name_one_per_type() {
        assert_eq!(
            claim_name("www.example.com.", "A"),
            "_dagform-a.www.example.com."
        );
        assert_eq!(
            claim_name("www.example.com.", "AAAA"),
            "_dagform-aaaa.www.example.com."
        );
        assert_eq!(
            claim_name("_abc.example.com.", "CNAME"),
            "_dagform-cname._abc.example.com."
        );
        assert_eq!(claim_name("example.com.", "A"), "_dagform-a.example.com.");
        // A wildcard label may only come first, so a wildcard's record stands beside it.
        assert_eq!(
            claim_name("*.example.com.", "A"),
            "_dagform-a-wildcard.example.com."
        );
        assert_ne!(
            claim_name("*.example.com.", "A"),
            claim_name("example.com.", "A")
        );
    }

    #[test]
    fn long_names_get_a_hashed_ownership_name_within_limits() {
        let label = "a".repeat(63);
        let long = format!("{label}.{label}.{label}.{}.example.com.", "b".repeat(49));
        assert_eq!(long.trim_end_matches('.').len(), 253);
        let claim = claim_name(&long, "CNAME");
        assert!(claim.trim_end_matches('.').len() <= MAX_NAME_LEN, "{claim}");
        assert!(claim.split('.').all(|l| l.len() <= 63), "{claim}");
        assert!(claim.ends_with(".example.com."), "{claim}");
        assert!(claim.starts_with("_dagform-cname-"), "{claim}");
        assert_eq!(claim, claim_name(&long, "CNAME"), "deterministic");
        let other = format!("{label}.{label}.{label}.{}.example.com.", "c".repeat(49));
        assert_ne!(claim_name(&other, "CNAME"), claim);
        assert_ne!(claim_name(&long, "A"), claim);
        let wildcard = format!("*.{label}.{label}.{label}.{}.example.com.", "b".repeat(47));
        assert_ne!(claim_name(&wildcard, "A"), claim_name(&long, "A"));
        assert!(claim_name(&wildcard, "A").trim_end_matches('.').len() <= MAX_NAME_LEN);
    }

    #[test]
    fn ownership_values_round_trip_and_read_strictly() {
        let value = claim_value(&ctx("dev-app", "customer.acme.dns")).unwrap();
        assert_eq!(
            value,
            "\"dagform:stack=dev-app,dagform:address=customer.acme.dns\""
        );
        let tags = parse_claim(&value).unwrap();
        assert_eq!(
            ctx("dev-app", "customer.acme.dns").owner(tag_pairs(&tags)),
            Owner::Ours
        );
        // Separators, quotes and other characters in a name survive, encoded.
        let odd = ctx("a,b=c \"d\"\\é", "x.y");
        let value = claim_value(&odd).unwrap();
        assert_eq!(value.matches('"').count(), 2, "{value}");
        assert!(!value.contains('\\') && value.is_ascii(), "{value}");
        assert_eq!(
            odd.owner(tag_pairs(&parse_claim(&value).unwrap())),
            Owner::Ours
        );
        for foreign in [
            "dagform:stack=dev-app,dagform:address=customer.acme.dns",
            "\"dagform:address=customer.acme.dns,dagform:stack=dev-app\"",
            "\"dagform:stack=dev-app,dagform:address=customer.acme.dns,extra=1\"",
            "\"dagform:stack=dev-app\"",
            "\"dagform:stack=,dagform:address=x\"",
            "\"dagform:stack=dev%2Dapp,dagform:address=x\"",
            "\"dagform:stack=dev app,dagform:address=x\"",
            "\"dagform:stack=a\" \"b,dagform:address=x\"",
            "\"heritage=external-dns,external-dns/owner=default\"",
        ] {
            assert_eq!(parse_claim(foreign), None, "{foreign}");
        }
        let long = ctx(&"s".repeat(200), &"a".repeat(60));
        assert!(matches!(
            claim_value(&long),
            Err(ResourceError::InvalidProperties(_))
        ));
    }

    #[test]
    fn txt_values_are_quoted_once() {
        assert_eq!(wire_value("TXT", "v=spf1 -all"), "\"v=spf1 -all\"");
        assert_eq!(wire_value("TXT", "\"quoted\""), "\"quoted\"");
        assert_eq!(wire_value("A", "1.2.3.4"), "1.2.3.4");
    }
}
