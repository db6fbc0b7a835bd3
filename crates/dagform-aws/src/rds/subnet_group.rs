//! `aws_db_subnet_group`.

use super::{adopt_existing, as_recorded, is_superseded, rds_error, rds_gone, tags_of};
use crate::AwsClients;
use crate::error::code;
use crate::ownership::{found, in_recorded_order, pairs, single_attempt, tags_for};
use aws_sdk_rds::types::DbSubnetGroup;
use dagform_core::{Applied, Changes, Current, Kind, Observed, OpContext, ResourceError};
use dagform_resources::rds::{DbSubnetGroupField, DbSubnetGroupOutputs, DbSubnetGroupProps};
use std::sync::Arc;

/// `aws_db_subnet_group`: the subnets (in at least two availability zones) a database may use.
#[derive(Clone)]
pub struct SubnetGroup {
    clients: Arc<AwsClients>,
}

fn object(name: &str) -> String {
    format!("DB subnet group `{name}`")
}

fn outputs(group: &DbSubnetGroup) -> DbSubnetGroupOutputs {
    let name = group.db_subnet_group_name().unwrap_or_default();
    DbSubnetGroupOutputs {
        id: name.to_owned(),
        name: name.to_owned(),
        arn: group.db_subnet_group_arn().unwrap_or_default().to_owned(),
    }
}

impl SubnetGroup {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

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
        ctx.require_not_foreign(&object(name), pairs(&tags))?;
        Ok(Some(group))
    }

    async fn modify(&self, name: &str, p: &DbSubnetGroupProps) -> Result<(), ResourceError> {
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
        Ok(Applied::of(outputs(&group)))
    }
}

#[async_trait::async_trait]
impl Kind for SubnetGroup {
    type Props = DbSubnetGroupProps;

    /// Whatever holds the name is checked before the create, as well as when the create
    /// answers that it exists: the emulator's CreateDBSubnetGroup replaces an existing group
    /// instead of refusing, and another stack's group must never be replaced.
    async fn create(
        &self,
        ctx: &OpContext,
        p: &DbSubnetGroupProps,
    ) -> Result<Applied, ResourceError> {
        let what = object(&p.name);
        if self.describe(&p.name).await?.is_some() {
            return adopt_existing(self, ctx, &what, p).await;
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
                Some(group) => Ok(Applied::of(outputs(group))),
                None => self.described(&p.name).await,
            },
            Err(e) if code(&e) == Some("DBSubnetGroupAlreadyExists") => {
                adopt_existing(self, ctx, &what, p).await
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
        let props = DbSubnetGroupProps {
            name: as_recorded(
                recorded.get(DbSubnetGroupField::Name.as_str()),
                group.db_subnet_group_name().unwrap_or_default(),
            ),
            description: group
                .db_subnet_group_description()
                .unwrap_or_default()
                .to_owned(),
            subnet_ids: in_recorded_order(
                live_subnets,
                recorded.get(DbSubnetGroupField::SubnetIds.as_str()),
            ),
        };
        Ok(Some(Observed::of(&props, outputs(&group))))
    }

    /// The description and the subnets are all a group can change, and are set together.
    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &DbSubnetGroupProps,
        _changed: &Changes<DbSubnetGroupProps>,
    ) -> Result<Applied, ResourceError> {
        if self.not_foreign(ctx, current.id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "{} is gone",
                object(current.id)
            )));
        }
        self.modify(current.id, p).await?;
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
        // Still used by a database that is going away: retried.
        rds_gone("DeleteDBSubnetGroup", deleted)
    }

    /// The group of this name, if its tags say it is this node's; a group of this name that
    /// is anyone else's is an error, since the name cannot be had.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &DbSubnetGroupProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let Some(group) = self.describe(&p.name).await? else {
            return Ok(None);
        };
        let arn = group.db_subnet_group_arn().unwrap_or_default();
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
