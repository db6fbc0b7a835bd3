//! `aws_db_parameter_group`.

use super::{adopt_existing, as_recorded, is_superseded, rds_error, rds_gone, tags_of};
use crate::AwsClients;
use crate::error::{classify, code};
use crate::ownership::{found, pairs, single_attempt, tags_for};
use aws_sdk_rds::types::{ApplyMethod, DbParameterGroup, Parameter};
use dagform_core::{
    Applied, Changes, Current, Kind, Observed, OpContext, Properties, ResourceError,
};
use dagform_resources::rds::{
    DbParameterGroupField, DbParameterGroupOutputs, DbParameterGroupProps,
};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// At most this many parameters per ModifyDBParameterGroup or ResetDBParameterGroup call.
const PARAMETERS_PER_CALL: usize = 20;

/// `aws_db_parameter_group`: engine parameters (such as `rds.force_ssl`) a database uses.
///
/// Each parameter is applied `immediate` when AWS reports it dynamic, and `pending-reboot`
/// otherwise (static parameters only accept that, and it is the safe choice for one whose
/// type is unknown).
#[derive(Clone)]
pub struct ParameterGroup {
    clients: Arc<AwsClients>,
}

fn object(name: &str) -> String {
    format!("DB parameter group `{name}`")
}

fn outputs(group: &DbParameterGroup) -> DbParameterGroupOutputs {
    let name = group.db_parameter_group_name().unwrap_or_default();
    DbParameterGroupOutputs {
        id: name.to_owned(),
        name: name.to_owned(),
        arn: group
            .db_parameter_group_arn()
            .unwrap_or_default()
            .to_owned(),
    }
}

impl ParameterGroup {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    async fn describe(&self, name: &str) -> Result<Option<DbParameterGroup>, ResourceError> {
        let described = self
            .clients
            .rds
            .describe_db_parameter_groups()
            .db_parameter_group_name(name)
            .send()
            .await;
        Ok(
            found("DescribeDBParameterGroups", described)?.and_then(|out| {
                out.db_parameter_groups()
                    .iter()
                    .find(|g| {
                        g.db_parameter_group_name()
                            .is_some_and(|n| n.eq_ignore_ascii_case(name))
                    })
                    .cloned()
            }),
        )
    }

    /// The live group `name` a recorded resource may change or delete: `None` when it is
    /// gone, `NotOwned` when it carries another stack's or resource's tags.
    async fn not_foreign(
        &self,
        ctx: &OpContext,
        name: &str,
    ) -> Result<Option<DbParameterGroup>, ResourceError> {
        let Some(group) = self.describe(name).await? else {
            return Ok(None);
        };
        let arn = group.db_parameter_group_arn().unwrap_or_default();
        let Some(tags) = tags_of(&self.clients, arn).await? else {
            return Ok(None);
        };
        ctx.require_not_foreign(&object(name), pairs(&tags))?;
        Ok(Some(group))
    }

    /// The group's parameters, all of them or only those set by the user (`source = user`).
    async fn parameters(
        &self,
        group: &str,
        user_only: bool,
    ) -> Result<Vec<Parameter>, ResourceError> {
        self.clients
            .rds
            .describe_db_parameters()
            .db_parameter_group_name(group)
            .set_source(user_only.then(|| "user".to_string()))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeDBParameters", e))
    }

    /// The user-set values of the group.
    async fn user_values(&self, group: &str) -> Result<HashMap<String, String>, ResourceError> {
        Ok(self
            .parameters(group, true)
            .await?
            .into_iter()
            .filter_map(|p| {
                Some((
                    p.parameter_name()?.to_owned(),
                    p.parameter_value().unwrap_or_default().to_owned(),
                ))
            })
            .collect())
    }

    /// How each of `names` is applied: `immediate` for dynamic parameters, `pending-reboot`
    /// for static ones and any AWS does not describe.
    async fn apply_methods(
        &self,
        group: &str,
        names: &HashSet<&str>,
    ) -> Result<HashMap<String, ApplyMethod>, ResourceError> {
        let described = self.parameters(group, false).await?;
        Ok(names
            .iter()
            .map(|name| {
                let dynamic = described.iter().any(|p| {
                    p.parameter_name() == Some(*name) && p.apply_type() == Some("dynamic")
                });
                let method = if dynamic {
                    ApplyMethod::Immediate
                } else {
                    ApplyMethod::PendingReboot
                };
                (name.to_string(), method)
            })
            .collect())
    }

    /// Sets `set` and resets `reset` to the engine default.
    async fn apply(
        &self,
        group: &str,
        set: &BTreeMap<&str, &str>,
        reset: &[&str],
    ) -> Result<(), ResourceError> {
        if set.is_empty() && reset.is_empty() {
            return Ok(());
        }
        let names: HashSet<&str> = set.keys().copied().chain(reset.iter().copied()).collect();
        let methods = self.apply_methods(group, &names).await?;
        let method = |name: &str| {
            methods
                .get(name)
                .cloned()
                .unwrap_or(ApplyMethod::PendingReboot)
        };
        let set: Vec<Parameter> = set
            .iter()
            .map(|(name, value)| {
                Parameter::builder()
                    .parameter_name(*name)
                    .parameter_value(*value)
                    .apply_method(method(name))
                    .build()
            })
            .collect();
        for chunk in set.chunks(PARAMETERS_PER_CALL) {
            self.clients
                .rds
                .modify_db_parameter_group()
                .db_parameter_group_name(group)
                .set_parameters(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| rds_error("ModifyDBParameterGroup", e))?;
        }
        let reset: Vec<Parameter> = reset
            .iter()
            .map(|name| {
                Parameter::builder()
                    .parameter_name(*name)
                    .apply_method(method(name))
                    .build()
            })
            .collect();
        for chunk in reset.chunks(PARAMETERS_PER_CALL) {
            self.clients
                .rds
                .reset_db_parameter_group()
                .db_parameter_group_name(group)
                .reset_all_parameters(false)
                .set_parameters(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| rds_error("ResetDBParameterGroup", e))?;
        }
        Ok(())
    }

    /// Brings the live parameters to `desired`, resetting those of `previous` no longer
    /// desired.
    async fn reconcile(
        &self,
        group: &str,
        desired: &BTreeMap<String, String>,
        previous: &[&str],
    ) -> Result<(), ResourceError> {
        let live = self.user_values(group).await?;
        let (set, reset) = parameter_changes(desired, previous, &live);
        self.apply(group, &set, &reset).await
    }

    async fn described(&self, name: &str) -> Result<Applied, ResourceError> {
        let group = self.describe(name).await?.ok_or_else(|| {
            ResourceError::Transient(format!("DB parameter group `{name}` is not visible yet"))
        })?;
        Ok(Applied::of(outputs(&group)))
    }
}

/// The parameters to set (desired values not live yet, so nothing is sent twice) and those to
/// reset (recorded before, no longer desired, still set).
fn parameter_changes<'a>(
    desired: &'a BTreeMap<String, String>,
    previous: &[&'a str],
    live: &HashMap<String, String>,
) -> (BTreeMap<&'a str, &'a str>, Vec<&'a str>) {
    let set = desired
        .iter()
        .filter(|(k, v)| live.get(*k) != Some(*v))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let reset = previous
        .iter()
        .copied()
        .filter(|k| !desired.contains_key(*k) && live.contains_key(*k))
        .collect();
    (set, reset)
}

/// The parameter names of recorded properties.
fn recorded_parameters(recorded: &Properties) -> Vec<&str> {
    recorded
        .get(DbParameterGroupField::Parameters.as_str())
        .and_then(Json::as_object)
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Kind for ParameterGroup {
    type Props = DbParameterGroupProps;

    async fn create(
        &self,
        ctx: &OpContext,
        p: &DbParameterGroupProps,
    ) -> Result<Applied, ResourceError> {
        let result = self
            .clients
            .rds
            .create_db_parameter_group()
            .db_parameter_group_name(&p.name)
            .db_parameter_group_family(&p.family)
            .description(&p.description)
            .set_tags(Some(tags_for(ctx, None)))
            .customize()
            .config_override(single_attempt::rds())
            .send()
            .await;
        let applied = match result {
            Ok(out) => match out.db_parameter_group() {
                Some(group) => Applied::of(outputs(group)),
                None => self.described(&p.name).await?,
            },
            Err(e) if code(&e) == Some("DBParameterGroupAlreadyExists") => {
                return adopt_existing(self, ctx, &object(&p.name), p).await;
            }
            Err(e) => return Err(rds_error("CreateDBParameterGroup", e)),
        };
        self.reconcile(&applied.id, &p.parameters, &[]).await?;
        Ok(applied)
    }

    /// Only the parameters the recorded properties name are reported: the others are the
    /// engine's defaults (or set by hand) and none of this resource's business.
    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some(group) = self.describe(current.id).await? else {
            return Ok(None);
        };
        let recorded = current.properties;
        let live = self.user_values(current.id).await?;
        let parameters = recorded_parameters(recorded)
            .into_iter()
            .filter_map(|name| live.get(name).map(|v| (name.to_owned(), v.clone())))
            .collect();
        let props = DbParameterGroupProps {
            name: as_recorded(
                recorded.get(DbParameterGroupField::Name.as_str()),
                group.db_parameter_group_name().unwrap_or_default(),
            ),
            family: group
                .db_parameter_group_family()
                .unwrap_or_default()
                .to_owned(),
            description: group.description().unwrap_or_default().to_owned(),
            parameters,
        };
        Ok(Some(Observed::of(&props, outputs(&group))))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &DbParameterGroupProps,
        changed: &Changes<DbParameterGroupProps>,
    ) -> Result<Applied, ResourceError> {
        if self.not_foreign(ctx, current.id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "{} is gone",
                object(current.id)
            )));
        }
        if changed.contains(DbParameterGroupField::Parameters) {
            let previous = recorded_parameters(current.properties);
            self.reconcile(current.id, &p.parameters, &previous).await?;
        }
        self.described(current.id).await
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        if self.not_foreign(ctx, current.id).await?.is_none() {
            return Ok(());
        }
        let deleted = self
            .clients
            .rds
            .delete_db_parameter_group()
            .db_parameter_group_name(current.id)
            .send()
            .await;
        rds_gone("DeleteDBParameterGroup", deleted)
    }

    /// The group of this name, if its tags say it is this node's; a group of this name that
    /// is anyone else's is an error, since the name cannot be had.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &DbParameterGroupProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let Some(group) = self.describe(&p.name).await? else {
            return Ok(None);
        };
        let arn = group.db_parameter_group_arn().unwrap_or_default();
        let Some(tags) = tags_of(&self.clients, arn).await? else {
            return Ok(None);
        };
        ctx.require_ours(&object(&p.name), pairs(&tags))?;
        if is_superseded(ctx, &p.name) {
            return Ok(None);
        }
        Ok(Some(Applied::of(outputs(&group))))
    }
}

#[cfg(test)]
mod tests {
    use super::parameter_changes;
    use std::collections::{BTreeMap, HashMap};

    #[test]
    fn parameters_set_only_what_differs_and_reset_what_was_removed() {
        let desired: BTreeMap<String, String> = [("rds.force_ssl", "1"), ("work_mem", "8192")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let live: HashMap<String, String> = [
            ("rds.force_ssl", "0"),
            ("work_mem", "8192"),
            ("log_min_duration_statement", "500"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        let previous = ["work_mem", "log_min_duration_statement", "timezone"];
        let (set, reset) = parameter_changes(&desired, &previous, &live);
        assert_eq!(set, BTreeMap::from([("rds.force_ssl", "1")]));
        // `timezone` was recorded but is no longer set live: nothing to reset.
        assert_eq!(reset, ["log_min_duration_statement"]);
    }
}
