//! CloudWatch Logs: the log groups ECS tasks write to through the `awslogs` driver.

use crate::AwsClients;
use crate::clients::{by_id, each_item, read_each};
use crate::error::{classify, code, parse};
use crate::ownership::{finish_existing, found, gone, map_pairs, single_attempt};
use dagform_core::{
    Applied, Current, Kinds, Observed, OpContext, Properties, ResourceError, ResourceKind,
};
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};
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

    /// The group's tags (DescribeLogGroups reports none); `None` when the group is gone.
    async fn tags(
        &self,
        group: &aws_sdk_cloudwatchlogs::types::LogGroup,
    ) -> Result<Option<HashMap<String, String>>, ResourceError> {
        let listed = self
            .clients
            .logs
            .list_tags_for_resource()
            .resource_arn(group_arn(group))
            .send()
            .await;
        Ok(found("ListTagsForResource", listed)?.map(|out| out.tags.unwrap_or_default()))
    }

    /// The live group `id` a recorded resource may change or delete: `None` when it is gone,
    /// `NotOwned` when it carries another stack's or resource's tags.
    async fn not_foreign(
        &self,
        ctx: &OpContext,
        id: &str,
    ) -> Result<Option<aws_sdk_cloudwatchlogs::types::LogGroup>, ResourceError> {
        let Some(group) = self.describe(id).await? else {
            return Ok(None);
        };
        let Some(tags) = self.tags(&group).await? else {
            return Ok(None);
        };
        ctx.require_not_foreign(&object(id), map_pairs(Some(&tags)))?;
        Ok(Some(group))
    }
}

/// How errors name a group.
fn object(name: &str) -> String {
    format!("log group `{name}`")
}

/// The group's ARN without the `:*` suffix `arn` carries (what IAM policies and tags use).
fn group_arn(group: &aws_sdk_cloudwatchlogs::types::LogGroup) -> String {
    group
        .log_group_arn()
        .map(str::to_owned)
        .or_else(|| group.arn().map(|a| a.trim_end_matches(":*").to_owned()))
        .unwrap_or_default()
}

/// DescribeLogGroups returns at most 50 groups per call.
const LOG_GROUPS_PER_PAGE: i32 = 50;

/// The longest prefix every name shares.
fn common_prefix<'a>(mut names: impl Iterator<Item = &'a str>) -> &'a str {
    let Some(first) = names.next() else {
        return "";
    };
    names.fold(first, |prefix, name| {
        let same = prefix
            .char_indices()
            .zip(name.chars())
            .find(|((_, a), b)| a != b)
            .map_or(prefix.len().min(name.len()), |((i, _), _)| i);
        &prefix[..same]
    })
}

/// A live group in the shape of the desired properties.
fn observe(group: &aws_sdk_cloudwatchlogs::types::LogGroup, current: Current<'_>) -> Observed {
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
    Observed {
        properties,
        outputs: applied(current.id, group_arn(group)).outputs,
    }
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

    /// Log group names are unique in the region: a name already taken is adopted only when
    /// its tags say it is this node's.
    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = LogGroupProps::from(props)?;
        let tags: HashMap<String, String> = ctx
            .tag_pairs()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain([("Name".to_owned(), p.name.clone())])
            .collect();
        let created = self
            .clients
            .logs
            .create_log_group()
            .log_group_name(&p.name)
            .set_tags(Some(tags))
            .customize()
            .config_override(single_attempt::logs())
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if code(&e) == Some("ResourceAlreadyExistsException") => {
                return match self.find(ctx, props).await? {
                    Some(existing) => {
                        finish_existing(self, ctx, &object(&p.name), existing, props).await
                    }
                    // Ours, but the replaced group still awaiting deletion.
                    None => Err(classify("CreateLogGroup", e)),
                };
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
        Ok(self
            .describe(current.id)
            .await?
            .map(|group| observe(&group, current)))
    }

    /// Lists the groups under the names' common prefix until every name wanted has been seen:
    /// one call per 50 groups instead of one per group. Names without a common prefix are read
    /// one by one rather than listing the whole account.
    async fn read_many(
        &self,
        ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let prefix = common_prefix(items.iter().map(|c| c.id));
        if prefix.is_empty() {
            return read_each(self, ctx, items).await;
        }
        let mut wanted: HashSet<&str> = items.iter().map(|c| c.id).collect();
        let mut pages = self
            .clients
            .logs
            .describe_log_groups()
            .log_group_name_prefix(prefix)
            .limit(LOG_GROUPS_PER_PAGE)
            .into_paginator()
            .items()
            .send();
        let mut groups = Vec::new();
        let found = loop {
            match pages.next().await {
                Some(Ok(group)) => {
                    if let Some(name) = group.log_group_name() {
                        wanted.remove(name);
                    }
                    groups.push(group);
                    if wanted.is_empty() {
                        break Ok(groups);
                    }
                }
                Some(Err(e)) => break Err(classify("DescribeLogGroups", e)),
                None => break Ok(groups),
            }
        };
        let found = found.map(|groups| by_id(groups, |g| g.log_group_name()));
        each_item(items, found, |group, current| {
            Ok(Some(observe(group, current)))
        })
    }

    fn read_batch_size(&self) -> usize {
        100
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p = LogGroupProps::from(desired)?;
        let group = self
            .not_foreign(ctx, current.id)
            .await?
            .ok_or_else(|| ResourceError::failed(format!("log group {} is gone", current.id)))?;
        if changed.iter().any(|c| c == "retention_in_days") {
            self.set_retention(current.id, p.retention_in_days).await?;
        }
        Ok(applied(current.id, group_arn(&group)))
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        if self.not_foreign(ctx, current.id).await?.is_none() {
            return Ok(());
        }
        let deleted = self
            .clients
            .logs
            .delete_log_group()
            .log_group_name(current.id)
            .send()
            .await;
        gone("DeleteLogGroup", deleted)
    }

    /// The group of this name, if its tags say it is this node's; a group of this name that
    /// is anyone else's is an error, since the name cannot be had.
    async fn find(
        &self,
        ctx: &OpContext,
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = LogGroupProps::from(props)?;
        let Some(group) = self.describe(&p.name).await? else {
            return Ok(None);
        };
        let Some(tags) = self.tags(&group).await? else {
            return Ok(None);
        };
        ctx.require_ours(&object(&p.name), map_pairs(Some(&tags)))?;
        if ctx.superseded.contains(&p.name) {
            return Ok(None);
        }
        Ok(Some(applied(&p.name, group_arn(&group))))
    }
}

#[cfg(test)]
mod tests {
    use super::common_prefix;

    #[test]
    fn common_prefix_of_names() {
        let names = ["/ecs/dev-api", "/ecs/dev-web", "/ecs/global-api"];
        assert_eq!(common_prefix(names.into_iter()), "/ecs/");
        assert_eq!(common_prefix(["/ecs/a"].into_iter()), "/ecs/a");
        assert_eq!(common_prefix(["/ecs/ab", "/ecs/a"].into_iter()), "/ecs/a");
        assert_eq!(common_prefix(["a", "b"].into_iter()), "");
        assert_eq!(common_prefix(["/é/x", "/é/y"].into_iter()), "/é/");
        assert_eq!(common_prefix(std::iter::empty()), "");
    }
}
