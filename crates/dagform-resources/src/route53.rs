//! Route 53: looking up a hosted zone, and the record sets dagform writes into it.

use dagform_core::ResourceError;
use dagform_derive::{Outputs, Properties};
use serde::{Deserialize, Serialize};

/// Record types Route 53 accepts.
pub const RECORD_TYPES: &[&str] = &[
    "A", "AAAA", "CAA", "CNAME", "DS", "HTTPS", "MX", "NAPTR", "NS", "PTR", "SOA", "SPF", "SRV",
    "SSHFP", "SVCB", "TLSA", "TXT",
];

/// `data_route53_zone`: an existing hosted zone, looked up by name; dagform never changes it. A
/// changed name is simply looked up again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "data_route53_zone", outputs = ZoneOutputs)]
pub struct ZoneProps {
    pub name: String,
    /// Whether to look for a private zone rather than a public one (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_zone: Option<bool>,
}

/// The zone id, without the `/hostedzone/` prefix, is the id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct ZoneOutputs {
    pub id: String,
    /// Lowercase, with the final dot.
    pub name: String,
    /// The delegation set's servers (private zones have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_servers: Option<Vec<String>>,
}

/// `aws_route53_record`: one record set (name and type) in a hosted zone, holding either
/// `records` with a `ttl` or an `alias`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_route53_record", outputs = RecordOutputs, check = RecordProps::check)]
pub struct RecordProps {
    #[kind(replace)]
    pub zone_id: String,
    /// Fully qualified, or relative to the zone when it has no final dot and lies outside it
    /// (`www` → `www.example.com.`).
    #[kind(replace)]
    pub name: String,
    #[kind(replace)]
    pub r#type: String,
    /// The record may already stand, identical, for another owner: certificate validation
    /// records are the same for every certificate of one name in an account, so two stacks'
    /// certificates for one domain need the very same record. It is then used as it is and
    /// never changed or deleted by this stack.
    #[serde(default)]
    pub share_identical: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// Values as the user writes them: TXT values need no quotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<Alias>,
}

/// Where an alias record points: a load balancer, say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(nested)]
pub struct Alias {
    pub dns_name: String,
    pub hosted_zone_id: String,
    pub evaluate_target_health: bool,
}

impl RecordProps {
    fn check(&self) -> Result<(), ResourceError> {
        if !RECORD_TYPES.contains(&self.r#type.as_str()) {
            return Err(ResourceError::invalid(format!(
                "`{}` is not a Route 53 record type",
                self.r#type
            )));
        }
        if self.name.is_empty() || self.name.len() > 255 {
            return Err(ResourceError::invalid(format!(
                "record name `{}` must be 1 to 255 characters long",
                self.name
            )));
        }
        match (&self.records, &self.alias) {
            (Some(_), Some(_)) | (None, None) => Err(ResourceError::invalid(
                "a record needs exactly one of `records` and `alias`",
            )),
            (Some(records), None) => {
                if records.is_empty() {
                    return Err(ResourceError::invalid("`records` must not be empty"));
                }
                if self.r#type == "CNAME" && records.len() != 1 {
                    return Err(ResourceError::invalid(
                        "a CNAME record holds exactly one value",
                    ));
                }
                match self.ttl {
                    Some(ttl) if (0..=i64::from(i32::MAX)).contains(&ttl) => Ok(()),
                    Some(ttl) => Err(ResourceError::invalid(format!(
                        "ttl must be between 0 and {}, got {ttl}",
                        i32::MAX
                    ))),
                    None => Err(ResourceError::invalid(
                        "a record with `records` needs a ttl",
                    )),
                }
            }
            (None, Some(_)) if self.ttl.is_some() => Err(ResourceError::invalid(
                "an alias record takes no ttl (Route 53 uses the target's)",
            )),
            (None, Some(_)) => Ok(()),
        }
    }
}

/// The id is `<zone>_<fqdn without the final dot>_<type>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct RecordOutputs {
    pub id: String,
    /// The fully qualified name, without the final dot.
    pub fqdn: String,
    /// Set when an identical record set of another owner is used as it stands (see
    /// `share_identical`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
}
