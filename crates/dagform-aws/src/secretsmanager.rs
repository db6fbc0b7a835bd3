//! Secrets Manager: secrets a stack owns, whose value never reaches the state, a plan or a log,
//! and existing secrets a stack only refers to.

use crate::AwsClients;
use crate::error::{classify, code, parse};
use crate::ownership::{found, gone, pairs, tags_for};
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use dagform_core::state::fingerprint;
use dagform_core::{
    Applied, Current, Kinds, Observed, OpContext, Properties, ResourceError, ResourceKind,
};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    kinds.register(Arc::new(Secret {
        clients: clients.clone(),
    }));
    kinds.register(Arc::new(SecretLookup {
        clients: clients.clone(),
    }));
}

/// The key Secrets Manager encrypts with when none is named: setting it again is how a removed
/// `kms_key_id` is undone.
const DEFAULT_KMS_KEY: &str = "alias/aws/secretsmanager";

/// The largest `SecretString` Secrets Manager stores, in bytes.
const MAX_VALUE_BYTES: usize = 65_536;

/// `aws_secretsmanager_secret`: a secret and its current value.
pub struct Secret {
    clients: Arc<AwsClients>,
}

/// No `Debug`: the value must never be printed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretProps {
    name: String,
    #[serde(default)]
    description: Option<String>,
    value: String,
    #[serde(default)]
    kms_key_id: Option<String>,
    #[serde(default)]
    recovery_window_days: Option<i64>,
}

impl SecretProps {
    fn from(props: &Properties) -> Result<Self, ResourceError> {
        // Checked before deserializing: serde's type errors quote the offending value.
        if props.get("value").is_some_and(|v| !v.is_string()) {
            return Err(ResourceError::invalid("secret `value` must be a string"));
        }
        let p: Self = parse(props)?;
        check_name(&p.name)?;
        if p.description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 2048)
        {
            return Err(ResourceError::invalid(format!(
                "description of secret `{}` is longer than 2048 characters",
                p.name
            )));
        }
        if p.value.len() > MAX_VALUE_BYTES {
            return Err(ResourceError::invalid(format!(
                "value of secret `{}` is longer than {MAX_VALUE_BYTES} bytes",
                p.name
            )));
        }
        if let Some(days) = p.recovery_window_days
            && days != 0
            && !(7..=30).contains(&days)
        {
            return Err(ResourceError::invalid(format!(
                "recovery_window_days {days} must be 0 (delete without recovery) or 7 to 30"
            )));
        }
        Ok(p)
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

/// How errors name a secret (never by its value).
fn object(name: &str) -> String {
    format!("secret `{name}`")
}

/// The length of the client request token CreateSecret takes (32 to 64 characters).
const CLIENT_TOKEN_LEN: usize = 64;

/// Whether the live key is the desired one: AWS may report a key id given by the user as its
/// ARN, and leaves the default key out.
fn same_key(live: Option<&str>, desired: Option<&str>) -> bool {
    match (live, desired) {
        (None, None) => true,
        (Some(l), None) => l == DEFAULT_KMS_KEY,
        (None, Some(d)) => d == DEFAULT_KMS_KEY,
        (Some(l), Some(d)) => {
            l == d || l.ends_with(&format!("/{d}")) || l.ends_with(&format!(":{d}"))
        }
    }
}

fn applied(secret: &DescribeSecretOutput) -> Applied {
    let arn = secret.arn().unwrap_or_default();
    Applied::new(arn)
        .output("arn", arn)
        .output("name", secret.name().unwrap_or_default())
}

/// The secret by name or ARN, including one scheduled for deletion; `None` when it is gone.
async fn describe(
    clients: &AwsClients,
    id: &str,
) -> Result<Option<DescribeSecretOutput>, ResourceError> {
    let described = clients
        .secretsmanager
        .describe_secret()
        .secret_id(id)
        .send()
        .await;
    found("DescribeSecret", described)
}

impl Secret {
    /// The current value, or `None` when the secret holds none (or only a binary one).
    async fn current_value(&self, id: &str) -> Result<Option<String>, ResourceError> {
        let got = self
            .clients
            .secretsmanager
            .get_secret_value()
            .secret_id(id)
            .send()
            .await;
        Ok(found("GetSecretValue", got)?.and_then(|out| out.secret_string))
    }

    /// The live secret `id` a recorded resource may change or delete: `None` when it is gone,
    /// `NotOwned` when it carries another stack's or resource's tags.
    async fn not_foreign(
        &self,
        ctx: &OpContext,
        id: &str,
    ) -> Result<Option<DescribeSecretOutput>, ResourceError> {
        let Some(secret) = describe(&self.clients, id).await? else {
            return Ok(None);
        };
        ctx.require_not_foreign(&object(secret.name().unwrap_or(id)), pairs(secret.tags()))?;
        Ok(Some(secret))
    }

    async fn put_value(&self, id: &str, value: &str) -> Result<(), ResourceError> {
        self.clients
            .secretsmanager
            .put_secret_value()
            .secret_id(id)
            .secret_string(value)
            .send()
            .await
            .map_err(|e| classify("PutSecretValue", e))?;
        Ok(())
    }

    /// Sets the description and the key; `None` leaves that setting as it is.
    async fn update_settings(
        &self,
        id: &str,
        description: Option<String>,
        kms_key_id: Option<String>,
    ) -> Result<(), ResourceError> {
        if description.is_none() && kms_key_id.is_none() {
            return Ok(());
        }
        self.clients
            .secretsmanager
            .update_secret()
            .secret_id(id)
            .set_description(description)
            .set_kms_key_id(kms_key_id)
            .send()
            .await
            .map_err(|e| classify("UpdateSecret", e))?;
        Ok(())
    }

    /// Brings a secret this node created earlier to the desired settings and value.
    async fn take_over(
        &self,
        existing: &DescribeSecretOutput,
        p: &SecretProps,
    ) -> Result<Applied, ResourceError> {
        let arn = existing.arn().unwrap_or_default();
        if existing.deleted_date().is_some() {
            // A secret scheduled for deletion keeps its name taken until its recovery window
            // ends, so a secret this node deleted (destroy, then apply again) is restored
            // rather than blocking the create for up to 30 days.
            self.clients
                .secretsmanager
                .restore_secret()
                .secret_id(arn)
                .send()
                .await
                .map_err(|e| classify("RestoreSecret", e))?;
        }
        let description = (existing.description().unwrap_or_default()
            != p.description.as_deref().unwrap_or_default())
        .then(|| p.description.clone().unwrap_or_default());
        let key = (!same_key(existing.kms_key_id(), p.kms_key_id.as_deref())).then(|| {
            p.kms_key_id
                .clone()
                .unwrap_or_else(|| DEFAULT_KMS_KEY.into())
        });
        self.update_settings(arn, description, key).await?;
        if self.current_value(arn).await?.as_deref() != Some(p.value.as_str()) {
            self.put_value(arn, &p.value).await?;
        }
        Ok(applied(existing))
    }
}

#[async_trait::async_trait]
impl ResourceKind for Secret {
    fn name(&self) -> &'static str {
        "aws_secretsmanager_secret"
    }

    fn forces_replacement(&self, property: &str) -> bool {
        property == "name"
    }

    fn sensitive_properties(&self) -> &'static [&'static str] {
        &["value"]
    }

    /// Secret names are unique in the region: a name already taken (even by a secret
    /// scheduled for deletion) is taken over only when its tags say it is this node's.
    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = SecretProps::from(props)?;
        // The token makes a retried create of this attempt answer with the secret its first
        // try made, instead of "already exists".
        let result = self
            .clients
            .secretsmanager
            .create_secret()
            .name(&p.name)
            .client_request_token(ctx.client_token(CLIENT_TOKEN_LEN))
            .secret_string(&p.value)
            .set_description(p.description.clone())
            .set_kms_key_id(p.kms_key_id.clone())
            .set_tags(Some(tags_for(ctx, None)))
            .send()
            .await;
        match result {
            Ok(out) => {
                let arn = out.arn().unwrap_or_default();
                Ok(Applied::new(arn)
                    .output("arn", arn)
                    .output("name", out.name().unwrap_or(&p.name)))
            }
            // The name is taken: by this node's own secret (a lost record, or one scheduled
            // for deletion, when AWS answers InvalidRequestException), or by someone else's,
            // which is never touched.
            Err(e)
                if matches!(
                    code(&e),
                    Some("ResourceExistsException" | "InvalidRequestException")
                ) =>
            {
                let Some(existing) = describe(&self.clients, &p.name).await? else {
                    return Err(classify("CreateSecret", e));
                };
                ctx.require_ours(&object(&p.name), pairs(existing.tags()))?;
                if existing
                    .arn()
                    .is_some_and(|arn| ctx.superseded.iter().any(|s| s == arn))
                {
                    return Err(classify("CreateSecret", e));
                }
                self.take_over(&existing, &p).await
            }
            Err(e) => Err(classify("CreateSecret", e)),
        }
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some(secret) = describe(&self.clients, current.id).await? else {
            return Ok(None);
        };
        if secret.deleted_date().is_some() {
            return Ok(None);
        }
        let recorded = current.properties;
        let mut properties = Properties::new();
        properties.insert("name".into(), json!(secret.name().unwrap_or_default()));
        match secret.description().filter(|d| !d.is_empty()) {
            Some(d) => {
                properties.insert("description".into(), json!(d));
            }
            None if recorded.contains_key("description") => {
                properties.insert("description".into(), Json::Null);
            }
            None => {}
        }
        // Only the fingerprint leaves this function, never the value.
        let value = self
            .current_value(current.id)
            .await?
            .map_or(Json::Null, |v| fingerprint(&json!(v)));
        properties.insert("value".into(), value);
        let recorded_key = recorded.get("kms_key_id").and_then(Json::as_str);
        let live_key = secret.kms_key_id();
        let key = match live_key {
            _ if recorded_key.is_some() && same_key(live_key, recorded_key) => {
                Some(json!(recorded_key))
            }
            Some(l) if l != DEFAULT_KMS_KEY || recorded.contains_key("kms_key_id") => {
                Some(json!(l))
            }
            _ if recorded.contains_key("kms_key_id") => Some(Json::Null),
            _ => None,
        };
        if let Some(key) = key {
            properties.insert("kms_key_id".into(), key);
        }
        Ok(Some(Observed {
            properties,
            outputs: applied(&secret).outputs,
        }))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p = SecretProps::from(desired)?;
        if self.not_foreign(ctx, current.id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "secret `{}` is gone",
                p.name
            )));
        }
        let has = |key: &str| changed.iter().any(|c| c == key);
        let description = has("description").then(|| p.description.clone().unwrap_or_default());
        let key = has("kms_key_id").then(|| {
            p.kms_key_id
                .clone()
                .unwrap_or_else(|| DEFAULT_KMS_KEY.into())
        });
        self.update_settings(current.id, description, key).await?;
        if has("value") {
            self.put_value(current.id, &p.value).await?;
        }
        match describe(&self.clients, current.id).await? {
            Some(secret) if secret.deleted_date().is_none() => Ok(applied(&secret)),
            _ => Err(ResourceError::failed(format!(
                "secret `{}` is gone or scheduled for deletion",
                p.name
            ))),
        }
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        match self.not_foreign(ctx, current.id).await? {
            None => return Ok(()),
            Some(secret) if secret.deleted_date().is_some() => return Ok(()),
            Some(_) => {}
        }
        let window = current
            .properties
            .get("recovery_window_days")
            .and_then(Json::as_i64);
        let req = self
            .clients
            .secretsmanager
            .delete_secret()
            .secret_id(current.id);
        let req = match window {
            Some(0) => req.force_delete_without_recovery(true),
            Some(days) => req.recovery_window_in_days(days),
            None => req,
        };
        match req.send().await {
            // Already scheduled for deletion since the describe above: nothing left to do.
            Err(e) if code(&e) == Some("InvalidRequestException") => {
                match describe(&self.clients, current.id).await? {
                    None => Ok(()),
                    Some(s) if s.deleted_date().is_some() => Ok(()),
                    Some(_) => Err(classify("DeleteSecret", e)),
                }
            }
            other => gone("DeleteSecret", other),
        }
    }

    /// The live secret of this name, if its tags say it is this node's; a secret of this name
    /// that is anyone else's is an error, since the name cannot be had. This node's secret
    /// scheduled for deletion is not returned: `create` restores it.
    async fn find(
        &self,
        ctx: &OpContext,
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = SecretProps::from(props)?;
        let Some(secret) = describe(&self.clients, &p.name).await? else {
            return Ok(None);
        };
        ctx.require_ours(&object(&p.name), pairs(secret.tags()))?;
        let superseded = secret
            .arn()
            .is_some_and(|arn| ctx.superseded.iter().any(|s| s == arn));
        if superseded || secret.deleted_date().is_some() {
            return Ok(None);
        }
        Ok(Some(applied(&secret)))
    }
}

/// `data_secretsmanager_secret`: an existing secret the stack refers to (for example from a
/// task definition) but never changes or deletes.
pub struct SecretLookup {
    clients: Arc<AwsClients>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupProps {
    name_or_arn: String,
}

impl SecretLookup {
    async fn lookup(&self, props: &Properties) -> Result<Applied, ResourceError> {
        let p: LookupProps = parse(props)?;
        match describe(&self.clients, &p.name_or_arn).await? {
            Some(s) if s.deleted_date().is_none() => Ok(applied(&s)),
            Some(_) => Err(ResourceError::failed(format!(
                "secret `{}` is scheduled for deletion",
                p.name_or_arn
            ))),
            None => Err(ResourceError::failed(format!(
                "secret `{}` does not exist",
                p.name_or_arn
            ))),
        }
    }
}

#[async_trait::async_trait]
impl ResourceKind for SecretLookup {
    fn name(&self) -> &'static str {
        "data_secretsmanager_secret"
    }

    /// Another name is simply looked up again by `update`.
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
        let Some(secret) = describe(&self.clients, current.id).await? else {
            return Ok(None);
        };
        if secret.deleted_date().is_some() {
            return Ok(None);
        }
        let mut properties = Properties::new();
        if let Some(n) = current.properties.get("name_or_arn") {
            properties.insert("name_or_arn".into(), n.clone());
        }
        Ok(Some(Observed {
            properties,
            outputs: applied(&secret).outputs,
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

    /// Forgets the lookup; the secret is not ours.
    async fn delete(&self, _ctx: &OpContext, _current: Current<'_>) -> Result<(), ResourceError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{DEFAULT_KMS_KEY, same_key};

    #[test]
    fn keys_match_by_id_alias_or_arn() {
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert!(same_key(Some(arn), Some(arn)));
        assert!(same_key(
            Some(arn),
            Some("1234abcd-12ab-34cd-56ef-1234567890ab")
        ));
        assert!(same_key(
            Some("arn:aws:kms:us-east-1:123456789012:alias/acme"),
            Some("alias/acme")
        ));
        assert!(!same_key(Some(arn), Some("alias/acme")));
        assert!(same_key(None, None));
        assert!(same_key(Some(DEFAULT_KMS_KEY), None));
        assert!(same_key(None, Some(DEFAULT_KMS_KEY)));
        assert!(!same_key(Some(arn), None));
        assert!(!same_key(None, Some("alias/acme")));
    }
}
