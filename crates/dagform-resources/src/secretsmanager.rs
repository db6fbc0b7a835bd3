//! Secrets Manager: secrets a stack owns, whose value never reaches the state, a plan or a log,
//! and existing secrets a stack only refers to.

use dagform_core::ResourceError;
use dagform_derive::{Outputs, Properties};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value as Json;
use std::fmt;

/// The largest `SecretString` Secrets Manager stores, in bytes.
pub const MAX_VALUE_BYTES: usize = 65_536;

/// `aws_secretsmanager_secret`: a secret and its current value. The value is secret: shown as
/// a hash in plans, kept out of the state, and never printed (`Debug` leaves it out).
#[derive(Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_secretsmanager_secret", outputs = SecretOutputs, check = SecretProps::check)]
pub struct SecretProps {
    #[kind(replace)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[kind(sensitive)]
    #[serde(deserialize_with = "secret_string")]
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Read only when the secret is deleted: 0 deletes it without recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_window_days: Option<i64>,
}

impl fmt::Debug for SecretProps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretProps")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("value", &"<secret>")
            .field("kms_key_id", &self.kms_key_id)
            .field("recovery_window_days", &self.recovery_window_days)
            .finish()
    }
}

/// The secret's value as a string. A value of another type is refused without quoting it, as
/// serde's own type errors would.
fn secret_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match Json::deserialize(deserializer)? {
        Json::String(s) => Ok(s),
        _ => Err(D::Error::custom("secret `value` must be a string")),
    }
}

impl SecretProps {
    fn check(&self) -> Result<(), ResourceError> {
        check_name(&self.name)?;
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 2048)
        {
            return Err(ResourceError::invalid(format!(
                "description of secret `{}` is longer than 2048 characters",
                self.name
            )));
        }
        if self.value.len() > MAX_VALUE_BYTES {
            return Err(ResourceError::invalid(format!(
                "value of secret `{}` is longer than {MAX_VALUE_BYTES} bytes",
                self.name
            )));
        }
        if let Some(days) = self.recovery_window_days
            && days != 0
            && !(7..=30).contains(&days)
        {
            return Err(ResourceError::invalid(format!(
                "recovery_window_days {days} must be 0 (delete without recovery) or 7 to 30"
            )));
        }
        Ok(())
    }
}

/// Secrets Manager's rule for secret names.
fn check_name(name: &str) -> Result<(), ResourceError> {
    let ok = (1..=512).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ResourceError::invalid(format!(
            "secret name `{name}` must be 1-512 characters of letters, digits and / _ + = . @ -"
        )))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct SecretOutputs {
    /// The secret's ARN.
    pub id: String,
    pub arn: String,
    pub name: String,
    /// The version labelled `AWSCURRENT` when dagform last set or read the value: while it is
    /// still current, the value is the one recorded, and is not read again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version_id: String,
}

/// `data_secretsmanager_secret`: an existing secret the stack refers to (for example from a
/// task definition) but never changes or deletes. Another name is simply looked up again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "data_secretsmanager_secret", outputs = SecretOutputs)]
pub struct SecretLookupProps {
    pub name_or_arn: String,
}

#[cfg(test)]
mod tests {
    use super::SecretProps;
    use dagform_core::{KindProperties, ResourceError};
    use serde_json::json;

    #[test]
    fn a_value_of_another_type_is_refused_without_quoting_it() {
        let props = json!({"name": "acme/db", "value": 12345});
        let err = SecretProps::parse(props.as_object().expect("an object")).err();
        assert!(
            matches!(&err, Some(ResourceError::InvalidProperties(m)) if m == "secret `value` must be a string"),
            "{err:?}"
        );
    }

    #[test]
    fn debug_leaves_the_value_out() {
        let props = json!({"name": "acme/db", "value": "hunter2"});
        let parsed = SecretProps::parse(props.as_object().expect("an object")).expect("parses");
        assert!(!format!("{parsed:?}").contains("hunter2"));
    }
}
