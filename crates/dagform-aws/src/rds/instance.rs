//! `aws_db_instance`.

use super::{adopt_existing, as_recorded, describe_instance, is_superseded, rds_error, rds_found};
use crate::AwsClients;
use crate::error::{code, parse};
use crate::ownership::{in_recorded_order, pairs, single_attempt, tags_for};
use aws_sdk_rds::types::DbInstance;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use dagform_core::{
    Applied, Changes, Current, Kind, Observed, OpContext, Properties, ResourceError,
};
use dagform_resources::KindOutputs;
use dagform_resources::rds::{DbInstanceField, DbInstanceOutputs, DbInstanceProps};
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// `aws_db_instance`: a database instance whose master password RDS itself keeps in Secrets
/// Manager (dagform never handles it).
#[derive(Clone)]
pub struct Instance {
    clients: Arc<AwsClients>,
}

fn outputs(db: &DbInstance) -> DbInstanceOutputs {
    let endpoint = db.endpoint();
    DbInstanceOutputs {
        id: db.db_instance_identifier().unwrap_or_default().to_owned(),
        arn: db.db_instance_arn().unwrap_or_default().to_owned(),
        endpoint_address: endpoint.and_then(|e| e.address()).map(str::to_owned),
        endpoint_port: endpoint.and_then(|e| e.port()),
        master_user_secret_arn: db
            .master_user_secret()
            .and_then(|s| s.secret_arn())
            .map(str::to_owned),
    }
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

fn object(id: &str) -> String {
    format!("DB instance `{id}`")
}

/// A live instance in the shape of the recorded properties. AWS reports neither
/// `skip_final_snapshot` nor, unless one was asked for, a storage type or version worth
/// comparing: those are left out unless recorded.
fn observed_properties(db: &DbInstance, recorded: &Properties) -> Properties {
    use DbInstanceField as F;
    let mut properties = Properties::new();
    let mut put = |field: F, value: Json| {
        properties.insert(field.as_str().into(), value);
    };
    let named = |field: F, live: &str| json!(as_recorded(recorded.get(field.as_str()), live));
    put(
        F::Identifier,
        named(
            F::Identifier,
            db.db_instance_identifier().unwrap_or_default(),
        ),
    );
    put(F::Engine, json!(db.engine()));
    if recorded.contains_key(F::EngineVersion.as_str()) {
        put(
            F::EngineVersion,
            version_as_recorded(
                recorded
                    .get(F::EngineVersion.as_str())
                    .and_then(Json::as_str),
                db.engine_version().unwrap_or_default(),
            ),
        );
    }
    put(F::InstanceClass, json!(db.db_instance_class()));
    put(F::AllocatedStorage, json!(db.allocated_storage()));
    if recorded.contains_key(F::StorageType.as_str()) {
        put(F::StorageType, json!(db.storage_type()));
    }
    put(F::DbName, json!(db.db_name()));
    put(F::MasterUsername, json!(db.master_username()));
    put(
        F::ManageMasterUserPassword,
        json!(db.master_user_secret().is_some()),
    );
    put(
        F::DbSubnetGroupName,
        named(
            F::DbSubnetGroupName,
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
        F::VpcSecurityGroupIds,
        json!(in_recorded_order(
            groups,
            recorded.get(F::VpcSecurityGroupIds.as_str())
        )),
    );
    put(
        F::ParameterGroupName,
        named(
            F::ParameterGroupName,
            db.db_parameter_groups()
                .first()
                .and_then(|g| g.db_parameter_group_name())
                .unwrap_or_default(),
        ),
    );
    put(F::PubliclyAccessible, json!(db.publicly_accessible()));
    put(F::StorageEncrypted, json!(db.storage_encrypted()));
    put(
        F::BackupRetentionPeriod,
        json!(db.backup_retention_period()),
    );
    put(F::DeletionProtection, json!(db.deletion_protection()));
    put(F::MultiAz, json!(db.multi_az()));
    properties
}

impl Instance {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

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
        ctx.require_not_foreign(&object(id), pairs(db.tag_list()))?;
        Ok(Some(db))
    }
}

#[async_trait::async_trait]
impl Kind for Instance {
    type Props = DbInstanceProps;

    /// A database instance takes about ten minutes to become available, and minutes to go.
    fn typical_wait(&self, deleting: bool) -> std::time::Duration {
        std::time::Duration::from_secs(if deleting { 300 } else { 600 })
    }

    async fn create(&self, ctx: &OpContext, p: &DbInstanceProps) -> Result<Applied, ResourceError> {
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
                let what = object(&p.identifier);
                // This node's instance in a state it does not leave is reported as such.
                if let Some(db) = self.describe(&p.identifier).await? {
                    ctx.require_ours(&what, pairs(db.tag_list()))?;
                    check_not_failed(&db)?;
                }
                return adopt_existing(self, ctx, &what, p).await;
            }
            Err(e) => return Err(rds_error("CreateDBInstance", e)),
        }
        let db = self
            .wait_until(ctx, &p.identifier, "become available", true, settled)
            .await?;
        Ok(Applied::of(outputs(&db)))
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
        Ok(Some(Observed {
            properties: observed_properties(&db, current.properties),
            outputs: outputs(&db).into_outputs(),
        }))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &DbInstanceProps,
        changed: &Changes<DbInstanceProps>,
    ) -> Result<Applied, ResourceError> {
        use DbInstanceField as F;
        let id = current.id;
        if self.not_foreign(ctx, id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "{} no longer exists",
                object(id)
            )));
        }
        let mut req = self
            .clients
            .rds
            .modify_db_instance()
            .db_instance_identifier(id)
            .apply_immediately(true);
        let mut modified = false;
        let mut change = |field: F| {
            let applies = changed.contains(field);
            modified |= applies;
            applies
        };
        if change(F::InstanceClass) {
            req = req.db_instance_class(&p.instance_class);
        }
        if change(F::AllocatedStorage) {
            req = req.allocated_storage(p.allocated_storage as i32);
        }
        if let Some(v) = &p.engine_version
            && change(F::EngineVersion)
        {
            req = req.engine_version(v).allow_major_version_upgrade(true);
        }
        if let Some(t) = &p.storage_type
            && change(F::StorageType)
        {
            req = req.storage_type(t);
        }
        if change(F::VpcSecurityGroupIds) {
            req = req.set_vpc_security_group_ids(Some(p.vpc_security_group_ids.clone()));
        }
        if change(F::ParameterGroupName) {
            req = req.db_parameter_group_name(&p.parameter_group_name);
        }
        if change(F::BackupRetentionPeriod) {
            req = req.backup_retention_period(p.backup_retention_period as i32);
        }
        if change(F::DeletionProtection) {
            req = req.deletion_protection(p.deletion_protection);
        }
        if change(F::MultiAz) {
            req = req.multi_az(p.multi_az);
        }
        if change(F::PubliclyAccessible) {
            req = req.publicly_accessible(p.publicly_accessible);
        }
        // Only ever true (see `DbInstanceProps`): hands the password back to RDS after drift.
        if change(F::ManageMasterUserPassword) {
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
        Ok(Applied::of(outputs(&db)))
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
                parse::<DbInstanceProps>(current.properties).is_ok_and(|p| p.skip_final_snapshot);
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
            let deleted = req.send().await;
            // Protection turned on since the describe above.
            if let Err(e) = &deleted
                && code(e) == Some("InvalidParameterCombination")
                && e.message().is_some_and(|m| m.contains("protect"))
            {
                return Err(protected_message(id));
            }
            if rds_found("DeleteDBInstance", deleted)?.is_none() {
                return Ok(());
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
        p: &DbInstanceProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let Some(db) = self.describe(&p.identifier).await? else {
            return Ok(None);
        };
        ctx.require_ours(&object(&p.identifier), pairs(db.tag_list()))?;
        if is_superseded(ctx, &p.identifier) || check_not_failed(&db).is_err() {
            return Ok(None);
        }
        let db = self
            .wait_until(ctx, &p.identifier, "become available", false, settled)
            .await?;
        Ok(Some(Applied::of(outputs(&db))))
    }
}

#[cfg(test)]
mod tests {
    use super::version_as_recorded;
    use serde_json::json;

    #[test]
    fn a_major_version_matches_the_minor_aws_picked() {
        assert_eq!(version_as_recorded(Some("16"), "16.3"), json!("16"));
        assert_eq!(version_as_recorded(Some("16.3"), "16.3"), json!("16.3"));
        assert_eq!(version_as_recorded(Some("1"), "16.3"), json!("16.3"));
        assert_eq!(version_as_recorded(None, "16.3"), json!("16.3"));
    }
}
