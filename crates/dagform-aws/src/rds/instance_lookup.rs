//! `data_db_instance`.

use super::{as_recorded, describe_instance};
use crate::AwsClients;
use aws_sdk_rds::types::DbInstance;
use dagform_core::{Applied, Changes, Current, Kind, Observed, OpContext, ResourceError};
use dagform_resources::rds::{
    DbInstanceLookupField, DbInstanceLookupOutputs, DbInstanceLookupProps,
};
use std::sync::Arc;

/// `data_db_instance`: an existing database the stack connects to but never changes.
pub struct InstanceLookup {
    clients: Arc<AwsClients>,
}

fn outputs(db: &DbInstance) -> DbInstanceLookupOutputs {
    let endpoint = db.endpoint();
    DbInstanceLookupOutputs {
        id: db.db_instance_identifier().unwrap_or_default().to_owned(),
        arn: db.db_instance_arn().unwrap_or_default().to_owned(),
        endpoint_address: endpoint.and_then(|e| e.address()).map(str::to_owned),
        endpoint_port: endpoint.and_then(|e| e.port()),
        security_group_ids: db
            .vpc_security_groups()
            .iter()
            .filter_map(|g| g.vpc_security_group_id().map(str::to_owned))
            .collect(),
    }
}

impl InstanceLookup {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    async fn lookup(&self, p: &DbInstanceLookupProps) -> Result<Applied, ResourceError> {
        describe_instance(&self.clients, &p.identifier)
            .await?
            .map(|db| Applied::of(outputs(&db)))
            .ok_or_else(|| {
                ResourceError::failed(format!("DB instance `{}` does not exist", p.identifier))
            })
    }
}

#[async_trait::async_trait]
impl Kind for InstanceLookup {
    type Props = DbInstanceLookupProps;

    fn is_data_source(&self) -> bool {
        true
    }

    async fn create(
        &self,
        _ctx: &OpContext,
        p: &DbInstanceLookupProps,
    ) -> Result<Applied, ResourceError> {
        self.lookup(p).await
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some(db) = describe_instance(&self.clients, current.id).await? else {
            return Ok(None);
        };
        let props = DbInstanceLookupProps {
            identifier: as_recorded(
                current
                    .properties
                    .get(DbInstanceLookupField::Identifier.as_str()),
                db.db_instance_identifier().unwrap_or_default(),
            ),
        };
        Ok(Some(Observed::of(&props, outputs(&db))))
    }

    /// Another identifier is simply looked up again.
    async fn update(
        &self,
        _ctx: &OpContext,
        _current: Current<'_>,
        desired: &DbInstanceLookupProps,
        _changed: &Changes<DbInstanceLookupProps>,
    ) -> Result<Applied, ResourceError> {
        self.lookup(desired).await
    }

    /// Forgets the lookup; the database is not ours.
    async fn delete(&self, _ctx: &OpContext, _current: Current<'_>) -> Result<(), ResourceError> {
        Ok(())
    }
}
