//! IAM: the roles ECS tasks run as (execution role, task role), and the identity CI deploys
//! with: the account's OpenID Connect provider for GitHub and a role its workflows assume.

use dagform_core::ResourceError;
use dagform_derive::{Outputs, Properties};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// `aws_iam_role`: a role one AWS service may assume, with managed and inline policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_iam_role", outputs = RoleOutputs, check = RoleProps::check)]
pub struct RoleProps {
    #[kind(replace)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The service principal allowed to assume the role, e.g. `ecs-tasks.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_service: Option<String>,
    /// Instead of a service: the web identities of an OIDC provider allowed to assume it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_web_identity: Option<WebIdentityTrust>,
    pub managed_policy_arns: Vec<String>,
    /// Policy name → policy document.
    pub inline_policies: BTreeMap<String, Json>,
}

/// IAM's character set for role and policy names.
fn valid_iam_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

impl RoleProps {
    fn check(&self) -> Result<(), ResourceError> {
        if !valid_iam_name(&self.name, 64) {
            return Err(ResourceError::invalid(format!(
                "role name `{}` must be 1-64 characters of letters, digits and + = , . @ _ -",
                self.name
            )));
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 1000)
        {
            return Err(ResourceError::invalid(
                "role description must be at most 1000 characters",
            ));
        }
        match (&self.trusted_service, &self.trusted_web_identity) {
            (Some(service), None) => {
                if service.is_empty()
                    || service.contains(char::is_whitespace)
                    || !(service.ends_with(".amazonaws.com")
                        || service.ends_with(".amazonaws.com.cn"))
                {
                    return Err(ResourceError::invalid(format!(
                        "trusted_service `{service}` must be a service principal such as ecs-tasks.amazonaws.com"
                    )));
                }
            }
            (None, Some(web)) => web.check()?,
            _ => {
                return Err(ResourceError::invalid(
                    "a role trusts exactly one of `trusted_service` and `trusted_web_identity`",
                ));
            }
        }
        if let Some(arn) = self
            .managed_policy_arns
            .iter()
            .find(|a| !a.starts_with("arn:"))
        {
            return Err(ResourceError::invalid(format!(
                "managed policy `{arn}` must be an ARN"
            )));
        }
        for (name, doc) in &self.inline_policies {
            if !valid_iam_name(name, 128) {
                return Err(ResourceError::invalid(format!(
                    "inline policy name `{name}` must be 1-128 characters of letters, digits and + = , . @ _ -"
                )));
            }
            if !doc.is_object() {
                return Err(ResourceError::invalid(format!(
                    "inline policy `{name}` must be a JSON policy document object"
                )));
            }
        }
        Ok(())
    }
}

/// Who may assume a role through `sts:AssumeRoleWithWebIdentity`: tokens of one OIDC provider
/// for one audience, whose subject matches one of `subjects` (`StringLike`, so `*` is a
/// wildcard).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(nested)]
pub struct WebIdentityTrust {
    pub provider_arn: String,
    pub audience: String,
    pub subjects: Vec<String>,
}

impl WebIdentityTrust {
    fn check(&self) -> Result<(), ResourceError> {
        if !self.provider_arn.starts_with("arn:") || !self.provider_arn.contains(":oidc-provider/")
        {
            return Err(ResourceError::invalid(format!(
                "provider_arn `{}` must be the ARN of an OpenID Connect provider",
                self.provider_arn
            )));
        }
        if self.audience.is_empty() || self.subjects.is_empty() {
            return Err(ResourceError::invalid(
                "a web identity trust needs an audience and at least one subject",
            ));
        }
        Ok(())
    }

    /// The host the provider's token claims are keyed by, e.g. `token.actions.githubusercontent.com`.
    pub fn provider_host(&self) -> &str {
        self.provider_arn
            .split_once(":oidc-provider/")
            .map_or("", |(_, host)| host)
    }
}

/// The host of GitHub Actions' OIDC tokens, and the audience AWS's own action asks for.
pub const GITHUB_OIDC_HOST: &str = "token.actions.githubusercontent.com";
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// `aws_iam_openid_connect_provider`: the account's OIDC provider for `url`. An account has at
/// most one per URL, shared by every stack: one that already exists is used as it is and never
/// changed or deleted (output `shared`); otherwise it is created, tagged as this stack's, and
/// deleted with it unless another role still trusts it. Its id is its ARN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_iam_openid_connect_provider", outputs = OidcProviderOutputs, check = OidcProviderProps::check)]
pub struct OidcProviderProps {
    /// `https://` and the host, e.g. `https://token.actions.githubusercontent.com`.
    #[kind(replace)]
    pub url: String,
    pub client_ids: Vec<String>,
    /// Certificate thumbprints; IAM no longer checks them for well-known providers such as
    /// GitHub, but CreateOpenIDConnectProvider may still ask for one.
    pub thumbprints: Vec<String>,
}

impl OidcProviderProps {
    fn check(&self) -> Result<(), ResourceError> {
        let host = self.url.strip_prefix("https://").unwrap_or_default();
        if host.is_empty() || host.contains(char::is_whitespace) || self.url.len() > 255 {
            return Err(ResourceError::invalid(format!(
                "url `{}` must be https:// and a host",
                self.url
            )));
        }
        if self.client_ids.is_empty()
            || self
                .client_ids
                .iter()
                .any(|c| c.is_empty() || c.len() > 255)
        {
            return Err(ResourceError::invalid(
                "client_ids must hold 1 to 255 character client ids",
            ));
        }
        if let Some(t) = self
            .thumbprints
            .iter()
            .find(|t| t.len() != 40 || !t.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(ResourceError::invalid(format!(
                "thumbprint `{t}` must be 40 hexadecimal digits"
            )));
        }
        Ok(())
    }

    /// The host part of the URL, which ends the provider's ARN.
    pub fn host(&self) -> &str {
        self.url
            .trim_start_matches("https://")
            .trim_end_matches('/')
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct OidcProviderOutputs {
    pub id: String,
    pub arn: String,
    /// Set when the account's existing provider is used as it stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
}

/// The role's id is its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct RoleOutputs {
    pub id: String,
    pub name: String,
    pub arn: String,
}
