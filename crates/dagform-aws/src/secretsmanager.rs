//! Secrets Manager: secrets a stack owns, whose value never reaches the state, a plan or a log,
//! and existing secrets a stack only refers to.

use crate::AwsClients;
use crate::error::{classify, code};
use crate::ownership::{found, gone, pairs, tags_for};
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use dagform_core::state::fingerprint;
use dagform_core::{
    Applied, Changes, Current, Kind, Kinds, Observed, OpContext, Properties, ResourceError,
};
use dagform_resources::KindOutputs;
use dagform_resources::secretsmanager::{
    SecretField, SecretLookupField, SecretLookupProps, SecretOutputs, SecretProps,
};
use serde_json::{Value as Json, json};
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    kinds.add(Secret::new(clients.clone()));
    kinds.add(SecretLookup::new(clients.clone()));
}

/// The key Secrets Manager encrypts with when none is named: setting it again is how a removed
/// `kms_key_id` is undone.
const DEFAULT_KMS_KEY: &str = "alias/aws/secretsmanager";

/// `aws_secretsmanager_secret`: a secret and its current value.
pub struct Secret {
    clients: Arc<AwsClients>,
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

fn outputs(secret: &DescribeSecretOutput) -> SecretOutputs {
    let arn = secret.arn().unwrap_or_default();
    SecretOutputs {
        id: arn.to_owned(),
        arn: arn.to_owned(),
        name: secret.name().unwrap_or_default().to_owned(),
        version_id: current_version(secret).unwrap_or_default().to_owned(),
    }
}

/// The version of the secret's value labelled `AWSCURRENT`.
fn current_version(secret: &DescribeSecretOutput) -> Option<&str> {
    secret
        .version_ids_to_stages()?
        .iter()
        .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
        .map(|(version, _)| version.as_str())
}

/// What the read reports as the value of a secret whose current version is not the one
/// dagform recorded: not a fingerprint of any value, so the plan shows drift and puts the
/// configured value back, without reading the value that is there.
fn changed_outside(version: &str) -> Json {
    json!(format!("changed outside dagform (version {version})"))
}

/// Whether `secret` is an older secret of this node, replaced and awaiting deletion.
fn is_superseded(ctx: &OpContext, secret: &DescribeSecretOutput) -> bool {
    secret
        .arn()
        .is_some_and(|arn| ctx.superseded.iter().any(|s| s == arn))
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

/// A live secret in the shape of the recorded properties, with `value` as observed (a
/// fingerprint, never the value); a description or key AWS leaves out is reported as unset
/// (`null`) when one is recorded, and the recovery window (read only on delete) not at all.
fn observed_properties(
    secret: &DescribeSecretOutput,
    value: Json,
    recorded: &Properties,
) -> Properties {
    use SecretField as F;
    let mut properties = Properties::new();
    let recorded_has = |field: F| recorded.contains_key(field.as_str());
    properties.insert(
        F::Name.as_str().into(),
        json!(secret.name().unwrap_or_default()),
    );
    match secret.description().filter(|d| !d.is_empty()) {
        Some(d) => {
            properties.insert(F::Description.as_str().into(), json!(d));
        }
        None if recorded_has(F::Description) => {
            properties.insert(F::Description.as_str().into(), Json::Null);
        }
        None => {}
    }
    properties.insert(F::Value.as_str().into(), value);
    let recorded_key = recorded.get(F::KmsKeyId.as_str()).and_then(Json::as_str);
    let live_key = secret.kms_key_id();
    let key = match live_key {
        _ if recorded_key.is_some() && same_key(live_key, recorded_key) => {
            Some(json!(recorded_key))
        }
        Some(l) if l != DEFAULT_KMS_KEY || recorded_has(F::KmsKeyId) => Some(json!(l)),
        _ if recorded_has(F::KmsKeyId) => Some(Json::Null),
        _ => None,
    };
    if let Some(key) = key {
        properties.insert(F::KmsKeyId.as_str().into(), key);
    }
    properties
}

impl Secret {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

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

    /// Sets the value; returns the version it made current.
    async fn put_value(&self, id: &str, value: &str) -> Result<String, ResourceError> {
        let put = self
            .clients
            .secretsmanager
            .put_secret_value()
            .secret_id(id)
            .secret_string(value)
            .send()
            .await
            .map_err(|e| classify("PutSecretValue", e))?;
        Ok(put.version_id().unwrap_or_default().to_owned())
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
        let mut taken = outputs(existing);
        if self.current_value(arn).await?.as_deref() != Some(p.value.as_str()) {
            taken.version_id = self.put_value(arn, &p.value).await?;
        }
        Ok(Applied::of(taken))
    }
}

#[async_trait::async_trait]
impl Kind for Secret {
    type Props = SecretProps;

    /// Secret names are unique in the region: a name already taken (even by a secret
    /// scheduled for deletion) is taken over only when its tags say it is this node's.
    async fn create(&self, ctx: &OpContext, p: &SecretProps) -> Result<Applied, ResourceError> {
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
                Ok(Applied::of(SecretOutputs {
                    id: arn.to_owned(),
                    arn: arn.to_owned(),
                    name: out.name().unwrap_or(&p.name).to_owned(),
                    version_id: out.version_id().unwrap_or_default().to_owned(),
                }))
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
                if is_superseded(ctx, &existing) {
                    return Err(classify("CreateSecret", e));
                }
                self.take_over(&existing, p).await
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
        // While the version dagform recorded is current, the value is the one it set: it is
        // read only for a state from before versions were recorded, so a deploy identity needs
        // no right to read secret values.
        let recorded_version = current
            .outputs
            .get("version_id")
            .and_then(Json::as_str)
            .filter(|v| !v.is_empty());
        let value = match (recorded_version, current_version(&secret)) {
            (None, _) => self
                .current_value(current.id)
                .await?
                .map_or(Json::Null, |v| fingerprint(&json!(v))),
            (Some(recorded), Some(live)) if live == recorded => current
                .properties
                .get(SecretField::Value.as_str())
                .cloned()
                .unwrap_or(Json::Null),
            (Some(_), Some(live)) => changed_outside(live),
            (Some(_), None) => Json::Null,
        };
        let properties = observed_properties(&secret, value, current.properties);
        Ok(Some(Observed {
            properties,
            outputs: outputs(&secret).into_outputs(),
        }))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &SecretProps,
        changed: &Changes<SecretProps>,
    ) -> Result<Applied, ResourceError> {
        if self.not_foreign(ctx, current.id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "secret `{}` is gone",
                p.name
            )));
        }
        let description = changed
            .contains(SecretField::Description)
            .then(|| p.description.clone().unwrap_or_default());
        let key = changed.contains(SecretField::KmsKeyId).then(|| {
            p.kms_key_id
                .clone()
                .unwrap_or_else(|| DEFAULT_KMS_KEY.into())
        });
        self.update_settings(current.id, description, key).await?;
        if changed.contains(SecretField::Value) {
            self.put_value(current.id, &p.value).await?;
        }
        match describe(&self.clients, current.id).await? {
            Some(secret) if secret.deleted_date().is_none() => Ok(Applied::of(outputs(&secret))),
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
        // Read from the recorded properties as they stand: those lack the (secret) value, so
        // they do not parse as a whole.
        let window = current
            .properties
            .get(SecretField::RecoveryWindowDays.as_str())
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
        p: &SecretProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let Some(secret) = describe(&self.clients, &p.name).await? else {
            return Ok(None);
        };
        ctx.require_ours(&object(&p.name), pairs(secret.tags()))?;
        if is_superseded(ctx, &secret) || secret.deleted_date().is_some() {
            return Ok(None);
        }
        Ok(Some(Applied::of(outputs(&secret))))
    }
}

/// `data_secretsmanager_secret`: an existing secret the stack refers to (for example from a
/// task definition) but never changes or deletes.
pub struct SecretLookup {
    clients: Arc<AwsClients>,
}

impl SecretLookup {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    async fn lookup(&self, p: &SecretLookupProps) -> Result<Applied, ResourceError> {
        match describe(&self.clients, &p.name_or_arn).await? {
            Some(s) if s.deleted_date().is_none() => Ok(Applied::of(outputs(&s))),
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
impl Kind for SecretLookup {
    type Props = SecretLookupProps;

    fn is_data_source(&self) -> bool {
        true
    }

    async fn create(
        &self,
        _ctx: &OpContext,
        p: &SecretLookupProps,
    ) -> Result<Applied, ResourceError> {
        self.lookup(p).await
    }

    /// A name or ARN is what was looked up, not something the secret reports: the recorded
    /// one stands.
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
        let key = SecretLookupField::NameOrArn.as_str();
        if let Some(n) = current.properties.get(key) {
            properties.insert(key.into(), n.clone());
        }
        Ok(Some(Observed {
            properties,
            outputs: outputs(&secret).into_outputs(),
        }))
    }

    /// Another name is simply looked up again.
    async fn update(
        &self,
        _ctx: &OpContext,
        _current: Current<'_>,
        desired: &SecretLookupProps,
        _changed: &Changes<SecretLookupProps>,
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
