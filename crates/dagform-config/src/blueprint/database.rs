//! A private, encrypted PostgreSQL instance with SSL enforced, its master password kept by AWS
//! and PostgreSQL open to the services only — or an existing instance, only read.

use super::Expansion;
use super::security_groups::{SecurityGroups, group, peer_rule};
use crate::model::Database as DatabaseConfig;
use dagform_core::typed::{Input, OutputRef, outputs_of};
use dagform_core::{Address, NodeSpec};
use dagform_resources::ec2::Direction;
use dagform_resources::rds::{
    DbInstanceLookupProps, DbInstanceLookupSpec, DbInstanceProps, DbInstanceSpec,
    DbParameterGroupProps, DbParameterGroupSpec, DbSubnetGroupProps, DbSubnetGroupSpec,
};
use std::collections::BTreeMap;

const POSTGRES_PORT: u32 = 5432;

/// What the services are given to reach the database.
pub struct Database {
    /// The `PG…` environment variables that point a client at it.
    pub environment: BTreeMap<String, Input<String>>,
}

/// Where a created database goes: its subnets, and the VPC and services that may reach it.
pub struct Placement<'a> {
    pub vpc_id: &'a OutputRef<String>,
    pub subnets: &'a Input<Vec<String>>,
    pub security_groups: &'a SecurityGroups,
}

/// The database `config` describes; `prefix` starts the names of what is created.
pub fn database(
    x: &mut Expansion,
    prefix: &str,
    config: &DatabaseConfig,
    placement: Placement<'_>,
) -> Database {
    let address = Address::new("shared.database");
    let (endpoint_address, endpoint_port) = match &config.existing {
        Some(existing) => {
            x.add(NodeSpec::of(
                address.clone(),
                DbInstanceLookupSpec {
                    identifier: existing.get_ref().into(),
                },
            ));
            let found = outputs_of::<DbInstanceLookupProps>(&address);
            (found.endpoint_address, found.endpoint_port)
        }
        None => {
            created(x, prefix, config, &address, placement);
            let created = outputs_of::<DbInstanceProps>(&address);
            (created.endpoint_address, created.endpoint_port)
        }
    };
    x.output(
        "database_endpoint",
        "the database's address",
        Input::from(&endpoint_address).into_value(),
    );
    // The port is a number; the variable is its text.
    let port = Input::concat([Input::untyped(Input::from(endpoint_port).into_value())]);
    Database {
        environment: BTreeMap::from([
            ("PGHOST".to_owned(), endpoint_address.into()),
            ("PGPORT".to_owned(), port),
            ("PGDATABASE".to_owned(), config.name.get_ref().into()),
            ("PGSSLMODE".to_owned(), "require".into()),
        ]),
    }
}

fn created(
    x: &mut Expansion,
    prefix: &str,
    config: &DatabaseConfig,
    address: &Address,
    placement: Placement<'_>,
) {
    let security_group = group(
        x,
        Address::new("shared.security_group.database"),
        format!("{prefix}-database-sg"),
        format!("{prefix} database: PostgreSQL from the services only"),
        placement.vpc_id,
        false,
    );
    for (service, service_group) in &placement.security_groups.services {
        x.add(NodeSpec::of(
            format!("shared.security_group_rule.database_from_{service}"),
            peer_rule(
                &security_group,
                Direction::Ingress,
                POSTGRES_PORT,
                service_group,
                format!("PostgreSQL from {service}"),
            ),
        ));
    }
    let subnet_group = Address::new("shared.database_subnet_group");
    x.add(NodeSpec::of(
        subnet_group.clone(),
        DbSubnetGroupSpec {
            name: format!("{prefix}-db-subnets").into(),
            description: format!("{prefix} database subnets").into(),
            subnet_ids: placement.subnets.clone(),
        },
    ));
    let major = config
        .engine_version
        .get_ref()
        .split('.')
        .next()
        .unwrap_or("16")
        .to_owned();
    let parameters = Address::new("shared.database_parameters");
    x.add(NodeSpec::of(
        parameters.clone(),
        DbParameterGroupSpec {
            name: format!("{prefix}-postgres{major}").into(),
            family: format!("postgres{major}").into(),
            description: format!("{prefix}: PostgreSQL with SSL enforced").into(),
            parameters: Some(Input::value(BTreeMap::from([(
                "rds.force_ssl".to_owned(),
                "1".to_owned(),
            )]))),
        },
    ));
    x.add(NodeSpec::of(
        address.clone(),
        DbInstanceSpec {
            identifier: config
                .identifier
                .as_ref()
                .map(|i| i.get_ref().clone())
                .unwrap_or_default()
                .into(),
            engine: "postgres".into(),
            engine_version: Some(config.engine_version.get_ref().into()),
            instance_class: (&config.instance_class).into(),
            allocated_storage: i64::from(*config.allocated_storage.get_ref()).into(),
            storage_type: Some("gp3".into()),
            db_name: config.name.get_ref().into(),
            master_username: config.username.get_ref().into(),
            manage_master_user_password: true.into(),
            db_subnet_group_name: outputs_of::<DbSubnetGroupProps>(&subnet_group).name.into(),
            vpc_security_group_ids: vec![Input::from(security_group)].into(),
            parameter_group_name: outputs_of::<DbParameterGroupProps>(&parameters).name.into(),
            publicly_accessible: false.into(),
            storage_encrypted: true.into(),
            backup_retention_period: i64::from(*config.backup_retention_days.get_ref()).into(),
            deletion_protection: config.deletion_protection.into(),
            skip_final_snapshot: config.skip_final_snapshot.into(),
            multi_az: config.multi_az.into(),
        },
    ));
}
