//! CloudWatch Logs: the log groups ECS tasks write to through the `awslogs` driver.

use crate::AwsClients;
use crate::error::{classify, code, is_not_found, parse};
use dagform_core::{
    Applied, Current, Kinds, Observed, OpContext, Properties, ResourceError, ResourceKind,
};
use serde::Deserialize;
use serde_json::Value as Json;
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    kinds.register(Arc::new(LogGroup {
        clients: clients.clone(),
    }));
}

/// Retention periods CloudWatch Logs accepts; anything else is rejected by `PutRetentionPolicy`.
const RETENTION_DAYS: &[i32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// `aws_cloudwatch_log_group`: a log group with an optional retention period.
pub struct LogGroup {
    clients: Arc<AwsClients>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogGroupProps {
    name: String,
    #[serde(default)]
    retention_in_days: Option<i32>,
}

impl LogGroupProps {
    fn from(props: &Properties) -> Result<Self, ResourceError> {
        let p: Self = parse(props)?;
        let name_ok = (1..=512).contains(&p.name.len())
            && p.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/#".contains(c));
        if !name_ok {
            return Err(ResourceError::invalid(format!(
                "log group name `{}` must be 1-512 characters of letters, digits and . _ - / #",
                p.name
            )));
        }
        if let Some(days) = p.retention_in_days
            && !RETENTION_DAYS.contains(&days)
        {
            return Err(ResourceError::invalid(format!(
                "retention_in_days {days} is not one CloudWatch Logs accepts ({})",
                RETENTION_DAYS
                    .iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(p)
    }
}

impl LogGroup {
    /// The log group named exactly `name`: a prefix search may also return longer names.
    async fn describe(
        &self,
        name: &str,
    ) -> Result<Option<aws_sdk_cloudwatchlogs::types::LogGroup>, ResourceError> {
        let groups = self
            .clients
            .logs
            .describe_log_groups()
            .log_group_name_prefix(name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeLogGroups", e))?;
        Ok(groups
            .into_iter()
            .find(|g| g.log_group_name() == Some(name)))
    }

    async fn set_retention(&self, name: &str, days: Option<i32>) -> Result<(), ResourceError> {
        let logs = &self.clients.logs;
        match days {
            Some(days) => {
                logs.put_retention_policy()
                    .log_group_name(name)
                    .retention_in_days(days)
                    .send()
                    .await
                    .map_err(|e| classify("PutRetentionPolicy", e))?;
            }
            None => {
                logs.delete_retention_policy()
                    .log_group_name(name)
                    .send()
                    .await
                    .map_err(|e| classify("DeleteRetentionPolicy", e))?;
            }
        }
        Ok(())
    }
}

/// The group's ARN without the `:*` suffix `arn` carries (what IAM policies and tags use).
fn group_arn(group: &aws_sdk_cloudwatchlogs::types::LogGroup) -> String {
    group
        .log_group_arn()
        .map(str::to_owned)
        .or_else(|| group.arn().map(|a| a.trim_end_matches(":*").to_owned()))
        .unwrap_or_default()
}

fn applied(name: &str, arn: String) -> Applied {
    Applied::new(name).output("name", name).output("arn", arn)
}

#[async_trait::async_trait]
impl ResourceKind for LogGroup {
    fn name(&self) -> &'static str {
        "aws_cloudwatch_log_group"
    }

    fn forces_replacement(&self, property: &str) -> bool {
        property == "name"
    }

    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = LogGroupProps::from(props)?;
        let mut req = self
            .clients
            .logs
            .create_log_group()
            .log_group_name(&p.name)
            .tags("Name", &p.name);
        for (k, v) in ctx.tags() {
            req = req.tags(k, v);
        }
        match req.send().await {
            Ok(_) => {}
            // A retried create whose first attempt made the group: carry on with it.
            Err(e) if code(&e) == Some("ResourceAlreadyExistsException") => {
                if self.find(ctx, props).await?.is_none() {
                    return Err(classify("CreateLogGroup", e));
                }
            }
            Err(e) => return Err(classify("CreateLogGroup", e)),
        }
        if p.retention_in_days.is_some() {
            self.set_retention(&p.name, p.retention_in_days).await?;
        }
        let group = self.describe(&p.name).await?.ok_or_else(|| {
            ResourceError::Transient(format!("log group {} not visible yet", p.name))
        })?;
        Ok(applied(&p.name, group_arn(&group)))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some(group) = self.describe(current.id).await? else {
            return Ok(None);
        };
        let mut properties = Properties::new();
        properties.insert("name".into(), current.id.into());
        match group.retention_in_days() {
            Some(days) => {
                properties.insert("retention_in_days".into(), days.into());
            }
            // Never expires: shown as null only when a retention was asked for, so the
            // difference is visible without inventing a key the desired side lacks.
            None if current.properties.contains_key("retention_in_days") => {
                properties.insert("retention_in_days".into(), Json::Null);
            }
            None => {}
        }
        Ok(Some(Observed {
            properties,
            outputs: applied(current.id, group_arn(&group)).outputs,
        }))
    }

    async fn update(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p = LogGroupProps::from(desired)?;
        if changed.iter().any(|c| c == "retention_in_days") {
            self.set_retention(current.id, p.retention_in_days).await?;
        }
        let group = self
            .describe(current.id)
            .await?
            .ok_or_else(|| ResourceError::failed(format!("log group {} is gone", current.id)))?;
        Ok(applied(current.id, group_arn(&group)))
    }

    async fn delete(&self, _ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        match self
            .clients
            .logs
            .delete_log_group()
            .log_group_name(current.id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(classify("DeleteLogGroup", e)),
        }
    }

    /// Adopts a group of this name only if it carries this node's address tag.
    async fn find(
        &self,
        ctx: &OpContext,
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = LogGroupProps::from(props)?;
        let Some(group) = self.describe(&p.name).await? else {
            return Ok(None);
        };
        let arn = group_arn(&group);
        let tags = self
            .clients
            .logs
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .map_err(|e| classify("ListTagsForResource", e))?;
        let ours = tags
            .tags()
            .and_then(|t| t.get("dagform:address"))
            .is_some_and(|a| a == ctx.address.as_str());
        Ok(ours.then(|| applied(&p.name, arn)))
    }
}
