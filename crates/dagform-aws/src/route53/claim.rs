//! Ownership records. Route 53 record sets carry no tags, so beside every record set it writes
//! dagform keeps a TXT record naming the stack and address that own it (the way external-dns
//! keeps its registry). A record set and its ownership record are created together in one
//! change batch with CREATE, so neither exists without the other and nothing already in the
//! zone is overwritten; afterwards they are changed and deleted only by the stack the record
//! names.

use super::build_error;
use super::record::RecordKey;
use aws_sdk_route53::types::{ResourceRecord, ResourceRecordSet, RrType};
use dagform_core::kind::{ADDRESS_TAG, Owner, STACK_TAG};
use dagform_core::{OpContext, ResourceError};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

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
pub(super) fn claim_name(fqdn: &str, record_type: &str) -> String {
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
pub(super) enum Claim {
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
    pub(super) fn read(set: Option<ResourceRecordSet>) -> Self {
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

    pub(super) fn is_ours(&self, ctx: &OpContext) -> bool {
        matches!(self, Self::Held { tags, .. } if ctx.owner(tag_pairs(tags)) == Owner::Ours)
    }

    /// Refuses unless this ownership record names `ctx`'s node, or there is none and
    /// `absent_is_ours` (the state records the record set). `record_exists` says whether the
    /// record set itself is there, for the message.
    pub(super) fn require(
        &self,
        ctx: &OpContext,
        key: &RecordKey,
        record_exists: bool,
        absent_is_ours: bool,
    ) -> Result<(), ResourceError> {
        let claim_name = key.claim_name();
        let claim_name = claim_name.trim_end_matches('.');
        let object = if record_exists {
            key.describe()
        } else {
            format!("ownership record `{claim_name}` of {}", key.describe())
        };
        match self {
            Claim::Held { tags, .. } => ctx.require_ours(&object, tag_pairs(tags)),
            Claim::Absent if absent_is_ours => Ok(()),
            Claim::Absent => Err(ctx.not_owned(&object, &Owner::Nobody)),
            Claim::Unreadable { value } => Err(ResourceError::NotOwned(format!(
                "{} has an ownership record `{claim_name}` that dagform did not write \
                 ({value}); dagform will not adopt, change or delete it",
                key.describe()
            ))),
        }
    }
}

fn tag_pairs(tags: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// The ownership record naming `ctx`'s node as the owner of the record set `key`.
pub(super) fn claim_set(
    key: &RecordKey,
    ctx: &OpContext,
) -> Result<ResourceRecordSet, ResourceError> {
    let value = ResourceRecord::builder()
        .value(claim_value(ctx)?)
        .build()
        .map_err(|e| build_error("ownership record", e))?;
    ResourceRecordSet::builder()
        .name(key.claim_name())
        .r#type(RrType::Txt)
        .ttl(CLAIM_TTL)
        .resource_records(value)
        .build()
        .map_err(|e| build_error("ownership record set", e))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
