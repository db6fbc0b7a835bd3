//! `aws_iam_openid_connect_provider`: the account's OIDC provider for one URL, shared by every
//! stack that trusts it.

use crate::AwsClients;
use crate::error::{classify, code};
use crate::ownership::{found, gone, pairs, single_attempt, tags_for};
use dagform_core::kind::Owner;
use dagform_core::{
    Applied, Changes, Current, Kind, KindOutputs, Observed, OpContext, Properties, ResourceError,
};
use dagform_resources::iam::{OidcProviderField, OidcProviderOutputs, OidcProviderProps};
use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::sync::Arc;

/// IAM allows one provider per URL in an account: the one there already is used as it stands
/// (never changed, never deleted); one this stack creates is its own.
pub struct OidcProvider {
    clients: Arc<AwsClients>,
}

/// What IAM reports of a provider.
struct Live {
    arn: String,
    url: String,
    client_ids: Vec<String>,
    thumbprints: Vec<String>,
    tags: Vec<aws_sdk_iam::types::Tag>,
}

fn what(host: &str) -> String {
    format!("OpenID Connect provider `{host}`")
}

fn applied(arn: &str, shared: bool) -> Applied {
    Applied::of(OidcProviderOutputs {
        id: arn.to_owned(),
        arn: arn.to_owned(),
        shared: shared.then_some(true),
    })
}

/// Whether the recorded outputs say the provider is the account's, used as it stood.
fn recorded_shared(current: &Current<'_>) -> bool {
    current.outputs.get("shared").and_then(Json::as_bool) == Some(true)
}

impl OidcProvider {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    /// The ARN of the account's provider for `host`, if there is one.
    async fn arn_for(&self, host: &str) -> Result<Option<String>, ResourceError> {
        let out = self
            .clients
            .iam
            .list_open_id_connect_providers()
            .send()
            .await
            .map_err(|e| classify("ListOpenIDConnectProviders", e))?;
        let suffix = format!(":oidc-provider/{host}");
        Ok(out
            .open_id_connect_provider_list()
            .iter()
            .filter_map(|p| p.arn())
            .find(|arn| arn.ends_with(&suffix))
            .map(str::to_owned))
    }

    async fn get(&self, arn: &str) -> Result<Option<Live>, ResourceError> {
        let iam = &self.clients.iam;
        let got = iam
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(arn)
            .send()
            .await;
        let Some(out) = found("GetOpenIDConnectProvider", got)? else {
            return Ok(None);
        };
        let tags = iam
            .list_open_id_connect_provider_tags()
            .open_id_connect_provider_arn(arn)
            .send()
            .await;
        let Some(tags) = found("ListOpenIDConnectProviderTags", tags)? else {
            return Ok(None);
        };
        let url = out.url().unwrap_or_default();
        Ok(Some(Live {
            arn: arn.to_owned(),
            url: if url.starts_with("https://") {
                url.to_owned()
            } else {
                format!("https://{url}")
            },
            client_ids: out.client_id_list().to_vec(),
            thumbprints: out.thumbprint_list().to_vec(),
            tags: tags.tags().to_vec(),
        }))
    }

    /// The existing provider for `p`'s URL: this node's own, or the account's to use as it is
    /// (which must accept `p`'s client ids, or tokens for them would be refused).
    async fn existing(
        &self,
        ctx: &OpContext,
        p: &OidcProviderProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let Some(arn) = self.arn_for(p.host()).await? else {
            return Ok(None);
        };
        let Some(live) = self.get(&arn).await? else {
            return Ok(None);
        };
        if ctx.owner(pairs(&live.tags)) == Owner::Ours {
            if ctx.superseded.contains(&arn) {
                return Ok(None);
            }
            return Ok(Some(applied(&arn, false)));
        }
        if let Some(missing) = p.client_ids.iter().find(|c| !live.client_ids.contains(c)) {
            return Err(ResourceError::failed(format!(
                "{} already exists in this account without the client id (audience) `{missing}`; \
                 add it to the provider, which dagform uses as it is",
                what(p.host())
            )));
        }
        tracing::info!(address = %ctx.address, "{} already exists: using it as it is", what(p.host()));
        Ok(Some(applied(&arn, true)))
    }

    /// Makes an own provider's client ids and thumbprints the desired ones.
    async fn sync(&self, live: &Live, p: &OidcProviderProps) -> Result<(), ResourceError> {
        let iam = &self.clients.iam;
        let have: BTreeSet<&String> = live.client_ids.iter().collect();
        let want: BTreeSet<&String> = p.client_ids.iter().collect();
        for id in want.difference(&have) {
            iam.add_client_id_to_open_id_connect_provider()
                .open_id_connect_provider_arn(&live.arn)
                .client_id(*id)
                .send()
                .await
                .map_err(|e| classify("AddClientIDToOpenIDConnectProvider", e))?;
        }
        for id in have.difference(&want) {
            iam.remove_client_id_from_open_id_connect_provider()
                .open_id_connect_provider_arn(&live.arn)
                .client_id(*id)
                .send()
                .await
                .map_err(|e| classify("RemoveClientIDFromOpenIDConnectProvider", e))?;
        }
        if live.thumbprints != p.thumbprints {
            iam.update_open_id_connect_provider_thumbprint()
                .open_id_connect_provider_arn(&live.arn)
                .set_thumbprint_list(Some(p.thumbprints.clone()))
                .send()
                .await
                .map_err(|e| classify("UpdateOpenIDConnectProviderThumbprint", e))?;
        }
        Ok(())
    }

    /// Roles besides those being deleted with this stack that still trust the provider.
    async fn trusting_roles(&self, arn: &str) -> Result<Vec<String>, ResourceError> {
        let roles = self
            .clients
            .iam
            .list_roles()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListRoles", e))?;
        let encoded_arn = arn.replace(':', "%3A").replace('/', "%2F");
        Ok(roles
            .iter()
            .filter(|r| {
                r.assume_role_policy_document()
                    .is_some_and(|d| d.contains(arn) || d.contains(&encoded_arn))
            })
            .map(|r| r.role_name().to_owned())
            .collect())
    }
}

#[async_trait::async_trait]
impl Kind for OidcProvider {
    type Props = OidcProviderProps;

    async fn create(
        &self,
        ctx: &OpContext,
        p: &OidcProviderProps,
    ) -> Result<Applied, ResourceError> {
        if let Some(existing) = self.existing(ctx, p).await? {
            return Ok(existing);
        }
        let created = self
            .clients
            .iam
            .create_open_id_connect_provider()
            .url(&p.url)
            .set_client_id_list(Some(p.client_ids.clone()))
            .set_thumbprint_list(Some(p.thumbprints.clone()))
            .set_tags(Some(tags_for(ctx, None)))
            .customize()
            .config_override(single_attempt::iam())
            .send()
            .await;
        match created {
            Ok(out) => Ok(applied(
                out.open_id_connect_provider_arn().unwrap_or_default(),
                false,
            )),
            // Created meanwhile by another stack, or by a first attempt whose answer was lost.
            Err(e) if code(&e) == Some("EntityAlreadyExists") => {
                self.existing(ctx, p).await?.ok_or_else(|| {
                    ResourceError::Transient(classify("CreateOpenIDConnectProvider", e).to_string())
                })
            }
            Err(e) => Err(classify("CreateOpenIDConnectProvider", e)),
        }
    }

    /// A shared provider shows as recorded: what it holds is not this stack's to change.
    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some(live) = self.get(current.id).await? else {
            return Ok(None);
        };
        let shared = recorded_shared(&current);
        let outputs = OidcProviderOutputs {
            id: live.arn.clone(),
            arn: live.arn.clone(),
            shared: shared.then_some(true),
        };
        if shared {
            return Ok(Some(Observed {
                properties: current.properties.clone(),
                outputs: outputs.into_outputs(),
            }));
        }
        let mut properties = Properties::new();
        properties.insert(OidcProviderField::Url.as_str().into(), live.url.into());
        properties.insert(
            OidcProviderField::ClientIds.as_str().into(),
            crate::ownership::in_recorded_order(
                live.client_ids,
                current
                    .properties
                    .get(OidcProviderField::ClientIds.as_str()),
            )
            .into(),
        );
        properties.insert(
            OidcProviderField::Thumbprints.as_str().into(),
            live.thumbprints.into(),
        );
        Ok(Some(Observed {
            properties,
            outputs: outputs.into_outputs(),
        }))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &OidcProviderProps,
        _changed: &Changes<OidcProviderProps>,
    ) -> Result<Applied, ResourceError> {
        if recorded_shared(&current) {
            return Ok(applied(current.id, true));
        }
        let live = self
            .get(current.id)
            .await?
            .ok_or_else(|| ResourceError::failed(format!("{} is gone", what(p.host()))))?;
        ctx.require_not_foreign(&what(p.host()), pairs(&live.tags))?;
        self.sync(&live, p).await?;
        Ok(applied(current.id, false))
    }

    /// Only a provider this node created goes, and only once no other role trusts it: every
    /// stack of the account shares it.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let Some(live) = self.get(current.id).await? else {
            return Ok(());
        };
        if recorded_shared(&current) || ctx.owner(pairs(&live.tags)) != Owner::Ours {
            return Ok(());
        }
        let trusting = self.trusting_roles(current.id).await?;
        if !trusting.is_empty() {
            tracing::warn!(
                address = %ctx.address,
                "{} is left in place: roles {} still trust it",
                what(&live.url),
                trusting.join(", ")
            );
            return Ok(());
        }
        gone(
            "DeleteOpenIDConnectProvider",
            self.clients
                .iam
                .delete_open_id_connect_provider()
                .open_id_connect_provider_arn(current.id)
                .send()
                .await,
        )
    }

    async fn find(
        &self,
        ctx: &OpContext,
        p: &OidcProviderProps,
    ) -> Result<Option<Applied>, ResourceError> {
        self.existing(ctx, p).await
    }
}
