//! RDS: a database instance with its subnet and parameter groups, and existing databases a
//! stack only refers to.

use crate::AwsClients;
use crate::error::{classify, code, is_not_found, parse};
use crate::ownership::{
    finish_existing, found, in_recorded_order, pairs, single_attempt, tags_for,
};
use aws_sdk_rds::types::{
    ApplyMethod, DbInstance, DbParameterGroup, DbSubnetGroup, Parameter, Tag,
};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use dagform_core::{
    Applied, Current, Kinds, Observed, OpContext, Properties, ResourceError, ResourceKind,
};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    let c = || clients.clone();
    kinds.register(Arc::new(SubnetGroup { clients: c() }));
    kinds.register(Arc::new(ParameterGroup { clients: c() }));
    kinds.register(Arc::new(Instance { clients: c() }));
    kinds.register(Arc::new(InstanceLookup { clients: c() }));
}

/// Codes RDS answers while an object is busy (an instance still modifying or being deleted,
/// a group still used by an instance that is going away): retried, unlike other errors.
const BUSY_CODES: &[&str] = &[
    "InvalidDBInstanceState",
    "InvalidDBSubnetGroupStateFault",
    "InvalidDBParameterGroupState",
];

/// At most this many parameters per ModifyDBParameterGroup or ResetDBParameterGroup call.
const PARAMETERS_PER_CALL: usize = 20;

/// Instance statuses from which an instance does not become available by itself.
const FAILED_STATUSES: &[&str] = &[
    "failed",
    "incompatible-network",
    "incompatible-option-group",
    "incompatible-parameters",
    "incompatible-restore",
    "inaccessible-encryption-credentials",
    "restore-error",
    "deleting",
];

const STORAGE_TYPES: &[&str] = &["standard", "gp2", "gp3", "io1", "io2"];

fn rds_error<E, R>(operation: &str, err: SdkError<E, R>) -> ResourceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let busy = code(&err).is_some_and(|c| BUSY_CODES.contains(&c));
    match classify(operation, err) {
        ResourceError::Failed(m) if busy => ResourceError::Transient(m),
        other => other,
    }
}

/// The tags of the object at `arn` (the group describe calls report none); `None` when it
/// is gone.
async fn tags_of(clients: &AwsClients, arn: &str) -> Result<Option<Vec<Tag>>, ResourceError> {
    let listed = clients
        .rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await;
    Ok(found("ListTagsForResource", listed)?.map(|out| out.tag_list.unwrap_or_default()))
}

/// Whether `id` is an older object of this node, replaced and awaiting deletion.
fn is_superseded(ctx: &OpContext, id: &str) -> bool {
    ctx.superseded.iter().any(|s| s.eq_ignore_ascii_case(id))
}

/// Adopts the object of this node's that holds the name a create asked for, bringing it to
/// the desired properties. Identifiers are unique in the region, so anyone else's object
/// under the name is an error (from `find`).
async fn adopt_existing(
    kind: &dyn ResourceKind,
    ctx: &OpContext,
    object: &str,
    props: &Properties,
) -> Result<Applied, ResourceError> {
    match kind.find(ctx, props).await? {
        Some(existing) => finish_existing(kind, ctx, object, existing, props).await,
        None => Err(ResourceError::failed(format!(
            "{object} is held by an object this resource replaced, which is still to be \
             deleted"
        ))),
    }
}

/// RDS keeps names in lower case: the recorded spelling is reported when it differs only in
/// case, so that it is not taken for drift.
fn as_recorded(recorded: Option<&Json>, live: &str) -> Json {
    match recorded.and_then(Json::as_str) {
        Some(r) if r.eq_ignore_ascii_case(live) => json!(r),
        _ => json!(live),
    }
}

/// RDS's rule for instance identifiers and parameter group names: letters, digits and
/// hyphens, starting with a letter, without a double or a trailing hyphen.
fn check_identifier(what: &str, name: &str, max: usize) -> Result<(), ResourceError> {
    let ok = (1..=max).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.contains("--")
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ResourceError::invalid(format!(
            "{what} `{name}` must be 1-{max} letters, digits or hyphens, start with a letter, \
             and have no double or trailing hyphen"
        )))
    }
}

/// A database or user name: a letter, then letters, digits or underscores.
fn check_sql_name(what: &str, name: &str) -> Result<(), ResourceError> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ResourceError::invalid(format!(
            "{what} `{name}` must be 1-63 letters, digits or underscores, starting with a letter"
        )))
    }
}

/// `aws_db_subnet_group`: the subnets (in at least two availability zones) a database may use.
pub struct SubnetGroup {
    clients: Arc<AwsClients>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubnetGroupProps {
    name: String,
    description: String,
    subnet_ids: Vec<String>,
}

impl SubnetGroupProps {
    fn from(props: &Properties) -> Result<Self, ResourceError> {
        let p: Self = parse(props)?;
        let name_ok = (1..=255).contains(&p.name.len())
            && p.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._- ".contains(c))
            && !p.name.eq_ignore_ascii_case("default");
        if !name_ok {
            return Err(ResourceError::invalid(format!(
                "DB subnet group name `{}` must be 1-255 letters, digits, spaces, periods, \
                 underscores or hyphens, and not `default`",
                p.name
            )));
        }
        if p.description.is_empty() {
            return Err(ResourceError::invalid(format!(
                "DB subnet group `{}` needs a description",
                p.name
            )));
        }
        if p.subnet_ids.is_empty() {
            return Err(ResourceError::invalid(format!(
                "DB subnet group `{}` needs subnets in at least two availability zones",
                p.name
            )));
        }
        Ok(p)
    }
}

fn subnet_group_object(name: &str) -> String {
    format!("DB subnet group `{name}`")
}

fn subnet_group_applied(group: &DbSubnetGroup) -> Applied {
    let name = group.db_subnet_group_name().unwrap_or_default();
    Applied::new(name)
        .output("name", name)
        .output("arn", group.db_subnet_group_arn().unwrap_or_default())
}

impl SubnetGroup {
    async fn describe(&self, name: &str) -> Result<Option<DbSubnetGroup>, ResourceError> {
        let described = self
            .clients
            .rds
            .describe_db_subnet_groups()
            .db_subnet_group_name(name)
            .send()
            .await;
        Ok(found("DescribeDBSubnetGroups", described)?
            .and_then(|out| out.db_subnet_groups().first().cloned()))
    }

    /// The live group `name` a recorded resource may change or delete: `None` when it is
    /// gone, `NotOwned` when it carries another stack's or resource's tags.
    async fn not_foreign(
        &self,
        ctx: &OpContext,
        name: &str,
    ) -> Result<Option<DbSubnetGroup>, ResourceError> {
        let Some(group) = self.describe(name).await? else {
            return Ok(None);
        };
        let arn = group.db_subnet_group_arn().unwrap_or_default();
        let Some(tags) = tags_of(&self.clients, arn).await? else {
            return Ok(None);
        };
        ctx.require_not_foreign(&subnet_group_object(name), pairs(&tags))?;
        Ok(Some(group))
    }

    async fn modify(&self, name: &str, p: &SubnetGroupProps) -> Result<(), ResourceError> {
        self.clients
            .rds
            .modify_db_subnet_group()
            .db_subnet_group_name(name)
            .db_subnet_group_description(&p.description)
            .set_subnet_ids(Some(p.subnet_ids.clone()))
            .send()
            .await
            .map_err(|e| rds_error("ModifyDBSubnetGroup", e))?;
        Ok(())
    }

    async fn described(&self, name: &str) -> Result<Applied, ResourceError> {
        let group = self.describe(name).await?.ok_or_else(|| {
            ResourceError::Transient(format!("DB subnet group `{name}` is not visible yet"))
        })?;
        Ok(subnet_group_applied(&group))
    }
}

#[async_trait::async_trait]
impl ResourceKind for SubnetGroup {
    fn name(&self) -> &'static str {
        "aws_db_subnet_group"
    }

    fn forces_replacement(&self, property: &str) -> bool {
        property == "name"
    }

    /// Whatever holds the name is checked before the create, as well as when the create
    /// answers that it exists: the emulator's CreateDBSubnetGroup replaces an existing group
    /// instead of refusing, and another stack's group must never be replaced.
    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = SubnetGroupProps::from(props)?;
        let object = subnet_group_object(&p.name);
        if self.describe(&p.name).await?.is_some() {
            return adopt_existing(self, ctx, &object, props).await;
        }
        let result = self
            .clients
            .rds
            .create_db_subnet_group()
            .db_subnet_group_name(&p.name)
            .db_subnet_group_description(&p.description)
            .set_subnet_ids(Some(p.subnet_ids.clone()))
            .set_tags(Some(tags_for(ctx, None)))
            .customize()
            .config_override(single_attempt::rds())
            .send()
            .await;
        match result {
            Ok(out) => match out.db_subnet_group() {
                Some(group) => Ok(subnet_group_applied(group)),
                None => self.described(&p.name).await,
            },
            Err(e) if code(&e) == Some("DBSubnetGroupAlreadyExists") => {
                adopt_existing(self, ctx, &object, props).await
            }
            Err(e) => Err(rds_error("CreateDBSubnetGroup", e)),
        }
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some(group) = self.describe(current.id).await? else {
            return Ok(None);
        };
        let recorded = current.properties;
        let live_subnets: Vec<String> = group
            .subnets()
            .iter()
            .filter_map(|s| s.subnet_identifier().map(str::to_owned))
            .collect();
        let mut properties = Properties::new();
        properties.insert(
            "name".into(),
            as_recorded(
                recorded.get("name"),
                group.db_subnet_group_name().unwrap_or_default(),
            ),
        );
        properties.insert(
            "description".into(),
            json!(group.db_subnet_group_description().unwrap_or_default()),
        );
        properties.insert(
            "subnet_ids".into(),
            json!(in_recorded_order(live_subnets, recorded.get("subnet_ids"))),
        );
        Ok(Some(Observed {
            properties,
            outputs: subnet_group_applied(&group).outputs,
        }))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        _changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p = SubnetGroupProps::from(desired)?;
        if self.not_foreign(ctx, current.id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "{} is gone",
                subnet_group_object(current.id)
            )));
        }
        self.modify(current.id, &p).await?;
        self.described(current.id).await
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        if self.not_foreign(ctx, current.id).await?.is_none() {
            return Ok(());
        }
        let deleted = self
            .clients
            .rds
            .delete_db_subnet_group()
            .db_subnet_group_name(current.id)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // Still used by a database that is going away: retried.
            Err(e) => Err(rds_error("DeleteDBSubnetGroup", e)),
        }
    }

    /// The group of this name, if its tags say it is this node's; a group of this name that
    /// is anyone else's is an error, since the name cannot be had.
    async fn find(
        &self,
        ctx: &OpContext,
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = SubnetGroupProps::from(props)?;
        let Some(group) = self.describe(&p.name).await? else {
            return Ok(None);
        };
        let arn = group.db_subnet_group_arn().unwrap_or_default();
        let Some(tags) = tags_of(&self.clients, arn).await? else {
            return Ok(None);
        };
        ctx.require_ours(&subnet_group_object(&p.name), pairs(&tags))?;
        if is_superseded(ctx, &p.name) {
            return Ok(None);
        }
        Ok(Some(subnet_group_applied(&group)))
    }
}

/// `aws_db_parameter_group`: engine parameters (such as `rds.force_ssl`) a database uses.
///
/// Each parameter is applied `immediate` when AWS reports it dynamic, and `pending-reboot`
/// otherwise (static parameters only accept that, and it is the safe choice for one whose
/// type is unknown).
pub struct ParameterGroup {
    clients: Arc<AwsClients>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParameterGroupProps {
    name: String,
    family: String,
    description: String,
    #[serde(default)]
    parameters: BTreeMap<String, String>,
}

impl ParameterGroupProps {
    fn from(props: &Properties) -> Result<Self, ResourceError> {
        let p: Self = parse(props)?;
        check_identifier("DB parameter group name", &p.name, 255)?;
        if p.family.is_empty() {
            return Err(ResourceError::invalid(format!(
                "DB parameter group `{}` needs a family, e.g. `postgres16`",
                p.name
            )));
        }
        if p.description.is_empty() {
            return Err(ResourceError::invalid(format!(
                "DB parameter group `{}` needs a description",
                p.name
            )));
        }
        if let Some(bad) = p.parameters.keys().find(|k| k.is_empty()) {
            return Err(ResourceError::invalid(format!(
                "DB parameter group `{}` has a parameter without a name (`{bad}`)",
                p.name
            )));
        }
        Ok(p)
    }
}

fn parameter_group_object(name: &str) -> String {
    format!("DB parameter group `{name}`")
}

fn parameter_group_applied(group: &DbParameterGroup) -> Applied {
    let name = group.db_parameter_group_name().unwrap_or_default();
    Applied::new(name)
        .output("name", name)
        .output("arn", group.db_parameter_group_arn().unwrap_or_default())
}

impl ParameterGroup {
    async fn describe(&self, name: &str) -> Result<Option<DbParameterGroup>, ResourceError> {
        match self
            .clients
            .rds
            .describe_db_parameter_groups()
            .db_parameter_group_name(name)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .db_parameter_groups()
                .iter()
                .find(|g| {
                    g.db_parameter_group_name()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
                .cloned()),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(classify("DescribeDBParameterGroups", e)),
        }
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
        ctx.require_not_foreign(&parameter_group_object(name), pairs(&tags))?;
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
        Ok(parameter_group_applied(&group))
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
        .get("parameters")
        .and_then(Json::as_object)
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl ResourceKind for ParameterGroup {
    fn name(&self) -> &'static str {
        "aws_db_parameter_group"
    }

    /// RDS cannot change a group's family or description in place.
    fn forces_replacement(&self, property: &str) -> bool {
        matches!(property, "name" | "family" | "description")
    }

    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = ParameterGroupProps::from(props)?;
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
                Some(group) => parameter_group_applied(group),
                None => self.described(&p.name).await?,
            },
            Err(e) if code(&e) == Some("DBParameterGroupAlreadyExists") => {
                let object = parameter_group_object(&p.name);
                return adopt_existing(self, ctx, &object, props).await;
            }
            Err(e) => return Err(rds_error("CreateDBParameterGroup", e)),
        };
        self.reconcile(&applied.id, &p.parameters, &[]).await?;
        Ok(applied)
    }

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
        let parameters: serde_json::Map<String, Json> = recorded_parameters(recorded)
            .into_iter()
            .filter_map(|name| live.get(name).map(|v| (name.to_owned(), json!(v))))
            .collect();
        let mut properties = Properties::new();
        properties.insert(
            "name".into(),
            as_recorded(
                recorded.get("name"),
                group.db_parameter_group_name().unwrap_or_default(),
            ),
        );
        properties.insert(
            "family".into(),
            json!(group.db_parameter_group_family().unwrap_or_default()),
        );
        properties.insert(
            "description".into(),
            json!(group.description().unwrap_or_default()),
        );
        properties.insert("parameters".into(), Json::Object(parameters));
        Ok(Some(Observed {
            properties,
            outputs: parameter_group_applied(&group).outputs,
        }))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p = ParameterGroupProps::from(desired)?;
        if self.not_foreign(ctx, current.id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "{} is gone",
                parameter_group_object(current.id)
            )));
        }
        if changed.iter().any(|c| c == "parameters") {
            let previous = recorded_parameters(current.properties);
            self.reconcile(current.id, &p.parameters, &previous).await?;
        }
        self.described(current.id).await
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        if self.not_foreign(ctx, current.id).await?.is_none() {
            return Ok(());
        }
        match self
            .clients
            .rds
            .delete_db_parameter_group()
            .db_parameter_group_name(current.id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(rds_error("DeleteDBParameterGroup", e)),
        }
    }

    /// The group of this name, if its tags say it is this node's; a group of this name that
    /// is anyone else's is an error, since the name cannot be had.
    async fn find(
        &self,
        ctx: &OpContext,
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = ParameterGroupProps::from(props)?;
        let Some(group) = self.describe(&p.name).await? else {
            return Ok(None);
        };
        let arn = group.db_parameter_group_arn().unwrap_or_default();
        let Some(tags) = tags_of(&self.clients, arn).await? else {
            return Ok(None);
        };
        ctx.require_ours(&parameter_group_object(&p.name), pairs(&tags))?;
        if is_superseded(ctx, &p.name) {
            return Ok(None);
        }
        Ok(Some(parameter_group_applied(&group)))
    }
}

/// `aws_db_instance`: a database instance whose master password RDS itself keeps in Secrets
/// Manager (dagform never handles it).
pub struct Instance {
    clients: Arc<AwsClients>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceProps {
    identifier: String,
    engine: String,
    #[serde(default)]
    engine_version: Option<String>,
    instance_class: String,
    allocated_storage: i64,
    #[serde(default)]
    storage_type: Option<String>,
    db_name: String,
    master_username: String,
    manage_master_user_password: bool,
    db_subnet_group_name: String,
    vpc_security_group_ids: Vec<String>,
    parameter_group_name: String,
    publicly_accessible: bool,
    storage_encrypted: bool,
    backup_retention_period: i64,
    deletion_protection: bool,
    skip_final_snapshot: bool,
    multi_az: bool,
}

impl InstanceProps {
    fn from(props: &Properties) -> Result<Self, ResourceError> {
        let p: Self = parse(props)?;
        check_identifier("DB instance identifier", &p.identifier, 63)?;
        let id = &p.identifier;
        let invalid = |m: String| Err(ResourceError::invalid(format!("DB instance `{id}`: {m}")));
        if p.engine.is_empty()
            || !p
                .engine
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return invalid(format!("engine `{}` is not an RDS engine name", p.engine));
        }
        if !p.instance_class.starts_with("db.") {
            return invalid(format!(
                "instance_class `{}` must be an RDS class such as `db.t4g.micro`",
                p.instance_class
            ));
        }
        if !(20..=65536).contains(&p.allocated_storage) {
            return invalid(format!(
                "allocated_storage {} must be 20 to 65536 GiB",
                p.allocated_storage
            ));
        }
        if let Some(t) = &p.storage_type
            && !STORAGE_TYPES.contains(&t.as_str())
        {
            return invalid(format!(
                "storage_type `{t}` must be one of {}",
                STORAGE_TYPES.join(", ")
            ));
        }
        if !(0..=35).contains(&p.backup_retention_period) {
            return invalid(format!(
                "backup_retention_period {} must be 0 to 35 days",
                p.backup_retention_period
            ));
        }
        check_sql_name("db_name", &p.db_name)?;
        check_sql_name("master_username", &p.master_username)?;
        if !p.manage_master_user_password {
            return invalid(
                "manage_master_user_password must be true: RDS keeps the master password in \
                 Secrets Manager, and dagform never takes a password"
                    .into(),
            );
        }
        if p.vpc_security_group_ids.is_empty() {
            return invalid("vpc_security_group_ids must name at least one security group".into());
        }
        if p.db_subnet_group_name.is_empty() || p.parameter_group_name.is_empty() {
            return invalid("db_subnet_group_name and parameter_group_name must be set".into());
        }
        Ok(p)
    }
}

fn instance_applied(db: &DbInstance) -> Applied {
    let id = db.db_instance_identifier().unwrap_or_default();
    let endpoint = db.endpoint();
    Applied::new(id)
        .output("arn", db.db_instance_arn().unwrap_or_default())
        .output(
            "endpoint_address",
            endpoint.and_then(|e| e.address()).map(str::to_owned),
        )
        .output("endpoint_port", endpoint.and_then(|e| e.port()))
        .output(
            "master_user_secret_arn",
            db.master_user_secret()
                .and_then(|s| s.secret_arn())
                .map(str::to_owned),
        )
}

fn status(db: &DbInstance) -> &str {
    db.db_instance_status().unwrap_or_default()
}

/// Fails when the instance is in a state it does not leave by itself.
fn check_not_failed(db: &DbInstance) -> Result<(), ResourceError> {
    let s = status(db);
    if FAILED_STATUSES.contains(&s) {
        return Err(ResourceError::failed(format!(
            "DB instance `{}` is `{s}`",
            db.db_instance_identifier().unwrap_or_default()
        )));
    }
    Ok(())
}

/// Available with a known endpoint and no modification still pending.
fn settled(db: &DbInstance) -> bool {
    let pending = db.pending_modified_values().is_some_and(|p| {
        p.db_instance_class().is_some()
            || p.allocated_storage().is_some()
            || p.engine_version().is_some()
            || p.multi_az().is_some()
            || p.storage_type().is_some()
            || p.backup_retention_period().is_some()
    });
    status(db) == "available" && db.endpoint().and_then(|e| e.address()).is_some() && !pending
}

/// The live engine version as recorded when the recorded one is its prefix (`16` for
/// `16.3`, where AWS picked the minor version).
fn version_as_recorded(recorded: Option<&str>, live: &str) -> Json {
    match recorded {
        Some(r) if live == r || live.starts_with(&format!("{r}.")) => json!(r),
        _ => json!(live),
    }
}

fn protected_message(id: &str) -> ResourceError {
    ResourceError::failed(format!(
        "DB instance `{id}` has deletion protection on: set deletion_protection = false and \
         apply, then delete it"
    ))
}

impl Instance {
    async fn describe(&self, id: &str) -> Result<Option<DbInstance>, ResourceError> {
        describe_instance(&self.clients, id).await
    }

    /// Polls until `ready` holds; `missing_ok` keeps waiting while the instance is not visible
    /// (right after its create) instead of failing.
    async fn wait_until(
        &self,
        ctx: &OpContext,
        id: &str,
        what: &str,
        missing_ok: bool,
        ready: fn(&DbInstance) -> bool,
    ) -> Result<DbInstance, ResourceError> {
        ctx.wait_for(&format!("DB instance `{id}` to {what}"), || async move {
            match self.describe(id).await? {
                Some(db) if ready(&db) => Ok(Some(db)),
                Some(db) => check_not_failed(&db).map(|()| None),
                None if missing_ok => Ok(None),
                None => Err(ResourceError::failed(format!(
                    "DB instance `{id}` no longer exists"
                ))),
            }
        })
        .await
    }

    /// The live instance `id` a recorded resource may change or delete: `None` when it is
    /// gone, `NotOwned` when it carries another stack's or resource's tags.
    async fn not_foreign(
        &self,
        ctx: &OpContext,
        id: &str,
    ) -> Result<Option<DbInstance>, ResourceError> {
        let Some(db) = self.describe(id).await? else {
            return Ok(None);
        };
        ctx.require_not_foreign(&instance_object(id), pairs(db.tag_list()))?;
        Ok(Some(db))
    }
}

fn instance_object(id: &str) -> String {
    format!("DB instance `{id}`")
}

/// The instance, or `None` when it does not exist.
async fn describe_instance(
    clients: &AwsClients,
    id: &str,
) -> Result<Option<DbInstance>, ResourceError> {
    match clients
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out.db_instances().first().cloned()),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(classify("DescribeDBInstances", e)),
    }
}

#[async_trait::async_trait]
impl ResourceKind for Instance {
    fn name(&self) -> &'static str {
        "aws_db_instance"
    }

    fn forces_replacement(&self, property: &str) -> bool {
        matches!(
            property,
            "identifier"
                | "engine"
                | "db_subnet_group_name"
                | "storage_encrypted"
                | "db_name"
                | "master_username"
        )
    }

    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = InstanceProps::from(props)?;
        let result = self
            .clients
            .rds
            .create_db_instance()
            .db_instance_identifier(&p.identifier)
            .engine(&p.engine)
            .set_engine_version(p.engine_version.clone())
            .db_instance_class(&p.instance_class)
            .allocated_storage(p.allocated_storage as i32)
            .set_storage_type(p.storage_type.clone())
            .db_name(&p.db_name)
            .master_username(&p.master_username)
            .manage_master_user_password(true)
            .db_subnet_group_name(&p.db_subnet_group_name)
            .set_vpc_security_group_ids(Some(p.vpc_security_group_ids.clone()))
            .db_parameter_group_name(&p.parameter_group_name)
            .publicly_accessible(p.publicly_accessible)
            .storage_encrypted(p.storage_encrypted)
            .backup_retention_period(p.backup_retention_period as i32)
            .deletion_protection(p.deletion_protection)
            .multi_az(p.multi_az)
            .set_tags(Some(tags_for(ctx, None)))
            // No idempotency token: a reset connection reaches the reconciler, which looks for
            // the instance before it tries again.
            .customize()
            .config_override(single_attempt::rds())
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(e) if code(&e) == Some("DBInstanceAlreadyExists") => {
                let object = instance_object(&p.identifier);
                // This node's instance in a state it does not leave is reported as such.
                if let Some(db) = self.describe(&p.identifier).await? {
                    ctx.require_ours(&object, pairs(db.tag_list()))?;
                    check_not_failed(&db)?;
                }
                return adopt_existing(self, ctx, &object, props).await;
            }
            Err(e) => return Err(rds_error("CreateDBInstance", e)),
        }
        let db = self
            .wait_until(ctx, &p.identifier, "become available", true, settled)
            .await?;
        Ok(instance_applied(&db))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some(db) = self.describe(current.id).await? else {
            return Ok(None);
        };
        if status(&db) == "deleting" {
            return Ok(None);
        }
        let recorded = current.properties;
        let mut properties = Properties::new();
        let mut put = |key: &str, value: Json| {
            properties.insert(key.into(), value);
        };
        put(
            "identifier",
            as_recorded(
                recorded.get("identifier"),
                db.db_instance_identifier().unwrap_or_default(),
            ),
        );
        put("engine", json!(db.engine()));
        if recorded.contains_key("engine_version") {
            put(
                "engine_version",
                version_as_recorded(
                    recorded.get("engine_version").and_then(Json::as_str),
                    db.engine_version().unwrap_or_default(),
                ),
            );
        }
        put("instance_class", json!(db.db_instance_class()));
        put("allocated_storage", json!(db.allocated_storage()));
        if recorded.contains_key("storage_type") {
            put("storage_type", json!(db.storage_type()));
        }
        put("db_name", json!(db.db_name()));
        put("master_username", json!(db.master_username()));
        put(
            "manage_master_user_password",
            json!(db.master_user_secret().is_some()),
        );
        put(
            "db_subnet_group_name",
            as_recorded(
                recorded.get("db_subnet_group_name"),
                db.db_subnet_group()
                    .and_then(|g| g.db_subnet_group_name())
                    .unwrap_or_default(),
            ),
        );
        let groups: Vec<String> = db
            .vpc_security_groups()
            .iter()
            .filter_map(|g| g.vpc_security_group_id().map(str::to_owned))
            .collect();
        put(
            "vpc_security_group_ids",
            json!(in_recorded_order(
                groups,
                recorded.get("vpc_security_group_ids")
            )),
        );
        put(
            "parameter_group_name",
            as_recorded(
                recorded.get("parameter_group_name"),
                db.db_parameter_groups()
                    .first()
                    .and_then(|g| g.db_parameter_group_name())
                    .unwrap_or_default(),
            ),
        );
        put("publicly_accessible", json!(db.publicly_accessible()));
        put("storage_encrypted", json!(db.storage_encrypted()));
        put(
            "backup_retention_period",
            json!(db.backup_retention_period()),
        );
        put("deletion_protection", json!(db.deletion_protection()));
        put("multi_az", json!(db.multi_az()));
        Ok(Some(Observed {
            properties,
            outputs: instance_applied(&db).outputs,
        }))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p = InstanceProps::from(desired)?;
        let id = current.id;
        if self.not_foreign(ctx, id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "{} no longer exists",
                instance_object(id)
            )));
        }
        let has = |key: &str| changed.iter().any(|c| c == key);
        let mut req = self
            .clients
            .rds
            .modify_db_instance()
            .db_instance_identifier(id)
            .apply_immediately(true);
        let mut modified = false;
        let mut change = |applies: bool| {
            modified |= applies;
            applies
        };
        if change(has("instance_class")) {
            req = req.db_instance_class(&p.instance_class);
        }
        if change(has("allocated_storage")) {
            req = req.allocated_storage(p.allocated_storage as i32);
        }
        if let Some(v) = &p.engine_version
            && change(has("engine_version"))
        {
            req = req.engine_version(v).allow_major_version_upgrade(true);
        }
        if let Some(t) = &p.storage_type
            && change(has("storage_type"))
        {
            req = req.storage_type(t);
        }
        if change(has("vpc_security_group_ids")) {
            req = req.set_vpc_security_group_ids(Some(p.vpc_security_group_ids.clone()));
        }
        if change(has("parameter_group_name")) {
            req = req.db_parameter_group_name(&p.parameter_group_name);
        }
        if change(has("backup_retention_period")) {
            req = req.backup_retention_period(p.backup_retention_period as i32);
        }
        if change(has("deletion_protection")) {
            req = req.deletion_protection(p.deletion_protection);
        }
        if change(has("multi_az")) {
            req = req.multi_az(p.multi_az);
        }
        if change(has("publicly_accessible")) {
            req = req.publicly_accessible(p.publicly_accessible);
        }
        // Only ever true (see `InstanceProps`): hands the password back to RDS after drift.
        if change(has("manage_master_user_password")) {
            req = req.manage_master_user_password(true);
        }
        if modified {
            // RDS refuses changes while the instance is busy (a backup, an earlier change).
            self.wait_until(ctx, id, "accept changes", false, |db| {
                matches!(status(db), "available" | "storage-full")
            })
            .await?;
            req.send()
                .await
                .map_err(|e| rds_error("ModifyDBInstance", e))?;
        }
        let db = self
            .wait_until(ctx, id, "apply its changes", false, settled)
            .await?;
        Ok(instance_applied(&db))
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let id = current.id;
        let Some(db) = self.not_foreign(ctx, id).await? else {
            return Ok(());
        };
        if status(&db) != "deleting" {
            if db.deletion_protection() == Some(true) {
                return Err(protected_message(id));
            }
            // Recorded properties that no longer parse still get a final snapshot.
            let skip =
                parse::<InstanceProps>(current.properties).is_ok_and(|p| p.skip_final_snapshot);
            let mut req = self
                .clients
                .rds
                .delete_db_instance()
                .db_instance_identifier(id)
                .skip_final_snapshot(skip)
                .delete_automated_backups(false);
            if !skip {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                req = req.final_db_snapshot_identifier(format!("{id}-final-{now}"));
            }
            match req.send().await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Ok(()),
                // Protection turned on since the describe above.
                Err(e)
                    if code(&e) == Some("InvalidParameterCombination")
                        && e.message().is_some_and(|m| m.contains("protect")) =>
                {
                    return Err(protected_message(id));
                }
                Err(e) => return Err(rds_error("DeleteDBInstance", e)),
            }
        }
        ctx.wait_for(
            &format!("DB instance `{id}` to be deleted"),
            || async move { Ok(self.describe(id).await?.is_none().then_some(())) },
        )
        .await
    }

    /// The instance of this identifier, if its tags say it is this node's, once it is
    /// available: a create whose wait was cut short left it creating (or backing up), and it
    /// gets there by itself. One that failed or is being deleted is not adopted. An instance
    /// of this identifier that is anyone else's is an error, since the name cannot be had.
    async fn find(
        &self,
        ctx: &OpContext,
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = InstanceProps::from(props)?;
        let Some(db) = self.describe(&p.identifier).await? else {
            return Ok(None);
        };
        ctx.require_ours(&instance_object(&p.identifier), pairs(db.tag_list()))?;
        if is_superseded(ctx, &p.identifier) || check_not_failed(&db).is_err() {
            return Ok(None);
        }
        let db = self
            .wait_until(ctx, &p.identifier, "become available", false, settled)
            .await?;
        Ok(Some(instance_applied(&db)))
    }
}

/// `data_db_instance`: an existing database the stack connects to but never changes.
pub struct InstanceLookup {
    clients: Arc<AwsClients>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupProps {
    identifier: String,
}

fn lookup_applied(db: &DbInstance) -> Applied {
    let endpoint = db.endpoint();
    let groups: Vec<&str> = db
        .vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id())
        .collect();
    Applied::new(db.db_instance_identifier().unwrap_or_default())
        .output("arn", db.db_instance_arn().unwrap_or_default())
        .output(
            "endpoint_address",
            endpoint.and_then(|e| e.address()).map(str::to_owned),
        )
        .output("endpoint_port", endpoint.and_then(|e| e.port()))
        .output("security_group_ids", json!(groups))
}

impl InstanceLookup {
    async fn lookup(&self, props: &Properties) -> Result<Applied, ResourceError> {
        let p: LookupProps = parse(props)?;
        describe_instance(&self.clients, &p.identifier)
            .await?
            .map(|db| lookup_applied(&db))
            .ok_or_else(|| {
                ResourceError::failed(format!("DB instance `{}` does not exist", p.identifier))
            })
    }
}

#[async_trait::async_trait]
impl ResourceKind for InstanceLookup {
    fn name(&self) -> &'static str {
        "data_db_instance"
    }

    /// Another identifier is simply looked up again by `update`.
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
        let Some(db) = describe_instance(&self.clients, current.id).await? else {
            return Ok(None);
        };
        let mut properties = Properties::new();
        properties.insert(
            "identifier".into(),
            as_recorded(
                current.properties.get("identifier"),
                db.db_instance_identifier().unwrap_or_default(),
            ),
        );
        Ok(Some(Observed {
            properties,
            outputs: lookup_applied(&db).outputs,
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

    /// Forgets the lookup; the database is not ours.
    async fn delete(&self, _ctx: &OpContext, _current: Current<'_>) -> Result<(), ResourceError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{check_identifier, parameter_changes, version_as_recorded};
    use serde_json::json;
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

    #[test]
    fn identifiers_follow_the_rds_rule() {
        for ok in ["a", "acme-db", "Acme-DB-2", &"a".repeat(63)] {
            assert!(check_identifier("id", ok, 63).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1acme",
            "-acme",
            "acme-",
            "acme--db",
            "acme_db",
            &"a".repeat(64),
        ] {
            assert!(check_identifier("id", bad, 63).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_major_version_matches_the_minor_aws_picked() {
        assert_eq!(version_as_recorded(Some("16"), "16.3"), json!("16"));
        assert_eq!(version_as_recorded(Some("16.3"), "16.3"), json!("16.3"));
        assert_eq!(version_as_recorded(Some("1"), "16.3"), json!("16.3"));
        assert_eq!(version_as_recorded(None, "16.3"), json!("16.3"));
    }
}
