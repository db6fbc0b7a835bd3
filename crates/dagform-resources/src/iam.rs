//! IAM: the roles ECS tasks run as (execution role, task role).

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
    pub trusted_service: String,
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
        let service = &self.trusted_service;
        if service.is_empty()
            || service.contains(char::is_whitespace)
            || !(service.ends_with(".amazonaws.com") || service.ends_with(".amazonaws.com.cn"))
        {
            return Err(ResourceError::invalid(format!(
                "trusted_service `{service}` must be a service principal such as ecs-tasks.amazonaws.com"
            )));
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

/// The role's id is its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct RoleOutputs {
    pub id: String,
    pub name: String,
    pub arn: String,
}
