//! CloudWatch Logs: the log groups ECS tasks write to through the `awslogs` driver.

use crate::AwsClients;
use crate::clients::{by_id, each_item};
use crate::error::{classify, code};
use crate::ownership::{finish_existing, found, gone, map_pairs, single_attempt};
use dagform_core::{Applied, Changes, Current, Kind, Kinds, Observed, OpContext, ResourceError};
use dagform_resources::logs::{LogGroupField, LogGroupOutputs, LogGroupProps};
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    kinds.add(LogGroup::new(clients.clone()));
}

/// `aws_cloudwatch_log_group`: a log group with an optional retention period.
#[derive(Clone)]
pub struct LogGroup {
    clients: Arc<AwsClients>,
}

impl LogGroup {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

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

    /// The group named `name` with its tags, which DescribeLogGroups does not report: `None`
    /// when it is gone, by either call.
    async fn tagged(
        &self,
        name: &str,
    ) -> Result<Option<(aws_sdk_cloudwatchlogs::types::LogGroup, Tags)>, ResourceError> {
        let Some(group) = self.describe(name).await? else {
            return Ok(None);
        };
        let listed = self
            .clients
            .logs
            .list_tags_for_resource()
            .resource_arn(group_arn(&group))
            .send()
            .await;
        Ok(found("ListTagsForResource", listed)?.map(|out| (group, out.tags.unwrap_or_default())))
    }

    /// The live group `name` a recorded resource may change or delete: `None` when it is
    /// gone, `NotOwned` when it carries another stack's or resource's tags.
    async fn not_foreign(
        &self,
        ctx: &OpContext,
        name: &str,
    ) -> Result<Option<aws_sdk_cloudwatchlogs::types::LogGroup>, ResourceError> {
        let Some((group, tags)) = self.tagged(name).await? else {
            return Ok(None);
        };
        ctx.require_not_foreign(&object(name), map_pairs(Some(&tags)))?;
        Ok(Some(group))
    }
}

/// Tags as CloudWatch Logs gives them.
type Tags = HashMap<String, String>;

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
    let props = LogGroupProps {
        name: current.id.to_owned(),
        retention_in_days: group.retention_in_days(),
    };
    let mut observed = Observed::of(&props, outputs(current.id, group_arn(group)));
    // Never expires: shown as null only when a retention was asked for, so the difference is
    // visible without inventing a key the desired side lacks.
    let retention = LogGroupField::RetentionInDays.as_str();
    if props.retention_in_days.is_none() && current.properties.contains_key(retention) {
        observed.properties.insert(retention.into(), Json::Null);
    }
    observed
}

fn outputs(name: &str, arn: String) -> LogGroupOutputs {
    LogGroupOutputs {
        id: name.to_owned(),
        name: name.to_owned(),
        arn,
    }
}

fn applied(name: &str, arn: String) -> Applied {
    Applied::of(outputs(name, arn))
}

#[async_trait::async_trait]
impl Kind for LogGroup {
    type Props = LogGroupProps;

    /// Log group names are unique in the region: a name already taken is adopted only when
    /// its tags say it is this node's.
    async fn create(&self, ctx: &OpContext, p: &LogGroupProps) -> Result<Applied, ResourceError> {
        let tags: Tags = ctx
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
                return match self.find(ctx, p).await? {
                    Some(existing) => {
                        finish_existing(self, ctx, &object(&p.name), existing, p).await
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
            return crate::clients::read_each(self, ctx, items).await;
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
        p: &LogGroupProps,
        changed: &Changes<LogGroupProps>,
    ) -> Result<Applied, ResourceError> {
        let group = self
            .not_foreign(ctx, current.id)
            .await?
            .ok_or_else(|| ResourceError::failed(format!("log group {} is gone", current.id)))?;
        if changed.contains(LogGroupField::RetentionInDays) {
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
        p: &LogGroupProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let Some((group, tags)) = self.tagged(&p.name).await? else {
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
