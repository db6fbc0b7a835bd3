//! IAM: the roles ECS tasks run as (execution role, task role) and the role CI deploys with.

use crate::AwsClients;
use crate::error::{classify, code};
use crate::ownership::{finish_existing, found, gone, pairs, single_attempt, tags_for};
use aws_sdk_iam::types::Role;
use dagform_core::{
    Applied, Changes, Current, Kind, KindOutputs, Kinds, Observed, OpContext, Properties,
    ResourceError,
};
use dagform_resources::iam::{RoleField, RoleOutputs, RoleProps, WebIdentityTrust};
use serde_json::{Map, Value as Json, json};
use std::collections::BTreeSet;
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    kinds.add(IamRole::new(clients.clone()));
    kinds.add(crate::iam_oidc::OidcProvider::new(clients.clone()));
}

/// `aws_iam_role`: a role one AWS service may assume, with managed and inline policies.
pub struct IamRole {
    clients: Arc<AwsClients>,
}

/// The trust policy of `p`: the one service, or the web identities, and nothing else.
fn trust_policy(p: &RoleProps) -> String {
    match (&p.trusted_web_identity, &p.trusted_service) {
        (Some(web), _) => web_identity_policy(web),
        (None, service) => service_policy(service.as_deref().unwrap_or_default()),
    }
}

/// `sts:AssumeRoleWithWebIdentity` for tokens of one provider whose audience is `audience` and
/// whose subject matches one of `subjects`.
fn web_identity_policy(web: &WebIdentityTrust) -> String {
    let host = web.provider_host();
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Federated": web.provider_arn },
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": { format!("{host}:aud"): web.audience },
                "StringLike": { format!("{host}:sub"): web.subjects },
            },
        }]
    })
    .to_string()
}

/// The web identity trust of a policy shaped like the one dagform writes, if it is one.
fn trusted_web_identity(doc: &Json) -> Option<Json> {
    let statements = match &doc["Statement"] {
        Json::Array(s) => s.as_slice(),
        s @ Json::Object(_) => std::slice::from_ref(s),
        _ => &[],
    };
    let [s] = statements else { return None };
    if s["Effect"] != "Allow" || single_str(&s["Action"]) != Some("sts:AssumeRoleWithWebIdentity") {
        return None;
    }
    let provider_arn = single_str(&s["Principal"]["Federated"])?;
    let host = provider_arn.split_once(":oidc-provider/")?.1;
    let condition = s["Condition"].as_object()?;
    if condition.len() != 2 {
        return None;
    }
    let audience = single_str(&condition.get("StringEquals")?[format!("{host}:aud")])?;
    let subjects = match &condition.get("StringLike")?[format!("{host}:sub")] {
        Json::String(one) => vec![one.clone()],
        Json::Array(many) => many
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    Some(json!({ "provider_arn": provider_arn, "audience": audience, "subjects": subjects }))
}

/// The trust policy of a service role: `sts:AssumeRole` for the one service principal.
fn service_policy(service: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": service },
            "Action": "sts:AssumeRole",
        }]
    })
    .to_string()
}

/// A policy document as IAM returns it: URL-encoded, or already decoded by some emulators.
fn policy_document(raw: &str) -> Result<Json, ResourceError> {
    serde_json::from_str(raw)
        .or_else(|_| {
            serde_json::from_str(&percent_encoding::percent_decode_str(raw).decode_utf8_lossy())
        })
        .map_err(|e| ResourceError::failed(format!("unreadable policy document: {e}")))
}

/// One value or a list of one value, as policy grammar allows for actions and principals.
fn single_str(v: &Json) -> Option<&str> {
    match v {
        Json::String(s) => Some(s),
        Json::Array(a) if a.len() == 1 => a[0].as_str(),
        _ => None,
    }
}

/// The trusted service of a trust policy shaped like the one dagform writes; any other
/// policy is returned whole so the difference shows up as drift.
fn trusted_service(doc: Json) -> Json {
    let statements = match &doc["Statement"] {
        Json::Array(s) => s.as_slice(),
        s @ Json::Object(_) => std::slice::from_ref(s),
        _ => &[],
    };
    let service = match statements {
        [s] if s["Effect"] == "Allow"
            && single_str(&s["Action"]) == Some("sts:AssumeRole")
            && s.get("Condition").is_none()
            && s["Principal"].as_object().is_some_and(|p| p.len() == 1) =>
        {
            single_str(&s["Principal"]["Service"]).map(str::to_owned)
        }
        _ => None,
    };
    service.map(Json::String).unwrap_or(doc)
}

fn outputs(role: &Role) -> RoleOutputs {
    RoleOutputs {
        id: role.role_name().to_owned(),
        name: role.role_name().to_owned(),
        arn: role.arn().to_owned(),
    }
}

fn applied(role: &Role) -> Applied {
    Applied::of(outputs(role))
}

fn what(name: &str) -> String {
    format!("IAM role `{name}`")
}

impl IamRole {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    /// The role with its tags (GetRole returns them), or `None` when there is none.
    async fn get(&self, name: &str) -> Result<Option<Role>, ResourceError> {
        let out = found(
            "GetRole",
            self.clients.iam.get_role().role_name(name).send().await,
        )?;
        Ok(out.and_then(|out| out.role().cloned()))
    }

    async fn attached_policies(&self, name: &str) -> Result<Vec<String>, ResourceError> {
        let attached = self
            .clients
            .iam
            .list_attached_role_policies()
            .role_name(name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListAttachedRolePolicies", e))?;
        Ok(attached
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_owned))
            .collect())
    }

    async fn inline_policy_names(&self, name: &str) -> Result<Vec<String>, ResourceError> {
        self.clients
            .iam
            .list_role_policies()
            .role_name(name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListRolePolicies", e))
    }

    /// Makes the role's managed and inline policies exactly the desired ones.
    async fn sync_policies(&self, p: &RoleProps) -> Result<(), ResourceError> {
        let iam = &self.clients.iam;
        let live: BTreeSet<String> = self.attached_policies(&p.name).await?.into_iter().collect();
        let desired: BTreeSet<&String> = p.managed_policy_arns.iter().collect();
        for arn in live.iter().filter(|a| !desired.contains(a)) {
            detach(iam, &p.name, arn).await?;
        }
        for arn in desired.into_iter().filter(|a| !live.contains(*a)) {
            iam.attach_role_policy()
                .role_name(&p.name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| classify("AttachRolePolicy", e))?;
        }
        for name in self.inline_policy_names(&p.name).await? {
            if !p.inline_policies.contains_key(&name) {
                delete_inline(iam, &p.name, &name).await?;
            }
        }
        for (name, doc) in &p.inline_policies {
            iam.put_role_policy()
                .role_name(&p.name)
                .policy_name(name)
                .policy_document(doc.to_string())
                .send()
                .await
                .map_err(|e| classify("PutRolePolicy", e))?;
        }
        Ok(())
    }
}

async fn detach(iam: &aws_sdk_iam::Client, role: &str, arn: &str) -> Result<(), ResourceError> {
    gone(
        "DetachRolePolicy",
        iam.detach_role_policy()
            .role_name(role)
            .policy_arn(arn)
            .send()
            .await,
    )
}

async fn delete_inline(
    iam: &aws_sdk_iam::Client,
    role: &str,
    policy: &str,
) -> Result<(), ResourceError> {
    gone(
        "DeleteRolePolicy",
        iam.delete_role_policy()
            .role_name(role)
            .policy_name(policy)
            .send()
            .await,
    )
}

#[async_trait::async_trait]
impl Kind for IamRole {
    type Props = RoleProps;

    /// CreateRole takes no idempotency token, so it is a single attempt: after a lost answer
    /// the reconciler's `find` looks for the role first. A role of this name that this node
    /// tagged is adopted and finished (trust policy, description, policies: a create killed
    /// after CreateRole left them out); anyone else's is refused.
    async fn create(&self, ctx: &OpContext, p: &RoleProps) -> Result<Applied, ResourceError> {
        let created = self
            .clients
            .iam
            .create_role()
            .role_name(&p.name)
            .assume_role_policy_document(trust_policy(p))
            .set_description(p.description.clone())
            .set_tags(Some(tags_for(ctx, Some(&p.name))))
            .customize()
            .config_override(single_attempt::iam())
            .send()
            .await;
        let role = match created {
            Ok(out) => out
                .role()
                .cloned()
                .ok_or_else(|| ResourceError::failed("CreateRole returned no role"))?,
            Err(e) if code(&e) == Some("EntityAlreadyExists") => {
                let Some(existing) = self.get(&p.name).await? else {
                    // Deleted again since: the next attempt creates it.
                    return Err(ResourceError::Transient(
                        classify("CreateRole", e).to_string(),
                    ));
                };
                ctx.require_ours(&what(&p.name), pairs(existing.tags()))?;
                let kind = IamRole::new(self.clients.clone());
                return finish_existing(&kind, ctx, &what(&p.name), applied(&existing), p).await;
            }
            Err(e) => return Err(classify("CreateRole", e)),
        };
        self.sync_policies(p).await?;
        Ok(applied(&role))
    }

    /// The role in the shape of its properties: a description asked for but missing is null,
    /// and a trust policy not shaped like the one dagform writes shows whole.
    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        use RoleField as F;
        let Some(role) = self.get(current.id).await? else {
            return Ok(None);
        };
        let mut properties = Properties::new();
        let mut set = |field: F, value: Json| {
            properties.insert(field.as_str().into(), value);
        };
        set(F::Name, role.role_name().into());
        match role.description().filter(|d| !d.is_empty()) {
            Some(d) => set(F::Description, d.into()),
            None if current.properties.contains_key(F::Description.as_str()) => {
                set(F::Description, Json::Null);
            }
            None => {}
        }
        if let Some(doc) = role.assume_role_policy_document() {
            let doc = policy_document(doc)?;
            let web_recorded = current
                .properties
                .contains_key(F::TrustedWebIdentity.as_str());
            // Whichever shape the live policy has; one dagform does not write shows whole
            // under the field recorded.
            match (trusted_web_identity(&doc), trusted_service(doc)) {
                (Some(web), _) => set(F::TrustedWebIdentity, web),
                (None, service @ Json::String(_)) => set(F::TrustedService, service),
                (None, whole) if web_recorded => set(F::TrustedWebIdentity, whole),
                (None, whole) => set(F::TrustedService, whole),
            }
        }
        let mut managed = self.attached_policies(current.id).await?;
        managed.sort();
        set(F::ManagedPolicyArns, managed.into());
        let mut inline = Map::new();
        for name in self.inline_policy_names(current.id).await? {
            let policy = self
                .clients
                .iam
                .get_role_policy()
                .role_name(current.id)
                .policy_name(&name)
                .send()
                .await;
            // A policy deleted since the listing is not there.
            if let Some(out) = found("GetRolePolicy", policy)? {
                inline.insert(name, policy_document(out.policy_document())?);
            }
        }
        set(F::InlinePolicies, Json::Object(inline));
        Ok(Some(Observed {
            properties,
            outputs: outputs(&role).into_outputs(),
        }))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &RoleProps,
        changed: &Changes<RoleProps>,
    ) -> Result<Applied, ResourceError> {
        let iam = &self.clients.iam;
        let role = self
            .get(current.id)
            .await?
            .ok_or_else(|| ResourceError::failed(format!("role {} is gone", current.id)))?;
        ctx.require_not_foreign(&what(current.id), pairs(role.tags()))?;
        if changed.any(&[RoleField::TrustedService, RoleField::TrustedWebIdentity]) {
            iam.update_assume_role_policy()
                .role_name(current.id)
                .policy_document(trust_policy(p))
                .send()
                .await
                .map_err(|e| classify("UpdateAssumeRolePolicy", e))?;
        }
        if changed.contains(RoleField::Description) {
            iam.update_role()
                .role_name(current.id)
                .description(p.description.clone().unwrap_or_default())
                .send()
                .await
                .map_err(|e| classify("UpdateRole", e))?;
        }
        if changed.any(&[RoleField::ManagedPolicyArns, RoleField::InlinePolicies]) {
            self.sync_policies(p).await?;
        }
        // The outputs (name and ARN) do not change in place.
        Ok(applied(&role))
    }

    /// IAM refuses to delete a role with policies: detach and delete them first.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let iam = &self.clients.iam;
        let name = current.id;
        let Some(role) = self.get(name).await? else {
            return Ok(());
        };
        ctx.require_not_foreign(&what(name), pairs(role.tags()))?;
        for arn in self.attached_policies(name).await? {
            detach(iam, name, &arn).await?;
        }
        for policy in self.inline_policy_names(name).await? {
            delete_inline(iam, name, &policy).await?;
        }
        match iam.delete_role().role_name(name).send().await {
            // A policy attached concurrently (or IAM still catching up): try again.
            Err(e) if code(&e) == Some("DeleteConflict") => Err(ResourceError::Transient(
                classify("DeleteRole", e).to_string(),
            )),
            result => gone("DeleteRole", result),
        }
    }

    /// The role of this name when it is this node's; anyone else's is `NotOwned`. `read`
    /// then shows whatever a create killed after CreateRole left out.
    async fn find(&self, ctx: &OpContext, p: &RoleProps) -> Result<Option<Applied>, ResourceError> {
        let Some(role) = self.get(&p.name).await? else {
            return Ok(None);
        };
        ctx.require_ours(&what(&p.name), pairs(role.tags()))?;
        if ctx.superseded.contains(&p.name) {
            return Ok(None);
        }
        Ok(Some(applied(&role)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_url_encoded_documents() {
        let doc = service_policy("ecs-tasks.amazonaws.com");
        let encoded: String = doc
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        assert_eq!(
            policy_document(&encoded).unwrap(),
            policy_document(&doc).unwrap()
        );
    }

    #[test]
    fn reads_the_trusted_service_of_a_single_service_policy() {
        let doc: Json = serde_json::from_str(&service_policy("ecs-tasks.amazonaws.com")).unwrap();
        assert_eq!(trusted_service(doc), json!("ecs-tasks.amazonaws.com"));
        let two = json!({"Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": ["ecs-tasks.amazonaws.com", "ec2.amazonaws.com"]},
            "Action": "sts:AssumeRole"
        }]});
        assert_eq!(trusted_service(two.clone()), two);
        let account = json!({"Statement": {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com", "AWS": "arn:aws:iam::1:root"},
            "Action": "sts:AssumeRole"
        }});
        assert_eq!(trusted_service(account.clone()), account);
    }

    #[test]
    fn a_web_identity_policy_reads_back_as_its_trust() {
        let web = json!({
            "provider_arn": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com",
            "audience": "sts.amazonaws.com",
            "subjects": ["repo:org/app:ref:refs/heads/main"],
        });
        let trust: WebIdentityTrust = serde_json::from_value(web.clone()).unwrap();
        let doc: Json = serde_json::from_str(&web_identity_policy(&trust)).unwrap();
        assert_eq!(trusted_web_identity(&doc), Some(web));
        assert!(trusted_service(doc).is_object());
        let service: Json =
            serde_json::from_str(&service_policy("ecs-tasks.amazonaws.com")).unwrap();
        assert_eq!(trusted_web_identity(&service), None);
    }
}
