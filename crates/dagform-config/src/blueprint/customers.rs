//! Customers: each gets its own deployment of the services, on its own host name, with its own
//! block of listener rule priorities; hosts no customer has go to a shared default target
//! group.

use super::services::{
    self, CatchAll, Deployment, Platform, Services, StreamPrefix, TargetGroup, target_group,
};
use super::shards::Shard;
use super::{Expansion, StackNames};
use crate::error::ConfigError;
use crate::model::{Customer, Logs};
use crate::naming::{PRIORITY_BLOCK, allocate_priority_blocks, elb_name};
use dagform_core::typed::OutputRef;
use dagform_core::{Address, Value};
use indexmap::IndexMap;
use std::collections::BTreeMap;
use toml::Spanned;

/// The address a customer's deployment lives under.
pub fn deployment_base(customer: &str) -> String {
    format!("customer.{customer}")
}

/// What precedes a service's name in the name of customer `customer`'s ECS service.
pub fn service_prefix(customer: &str) -> String {
    format!("{customer}-")
}

/// The target group load balancer `shard` sends hosts without a customer to; it has no targets.
/// Returns its ARN.
pub fn default_target_group(
    x: &mut Expansion,
    shard: Shard,
    prefix: &str,
    vpc_id: &OutputRef<String>,
) -> OutputRef<String> {
    target_group(
        x,
        shard.default_target_group(),
        &TargetGroup {
            name: elb_name(&shard.name(&format!("{prefix}-default-tg"))),
            vpc_id,
            port: 80,
            health_check_path: "/",
            interval_seconds: 30,
            unhealthy_threshold: 3,
        },
    )
}

/// A stack-wide log group per service, besides each customer's own.
pub fn service_log_groups(x: &mut Expansion, prefix: &str, services: &Services, logs: &Logs) {
    for name in services.keys() {
        let name = name.get_ref();
        services::log_group(
            x,
            Address::new(format!("shared.log_group.{name}")),
            format!("/ecs/{prefix}-{name}"),
            logs.retention_days.as_ref().map(|r| *r.get_ref()),
        );
    }
}

/// The customers' deployments, each on the platform `platforms` gives it, and their addresses
/// as outputs. Customers keep the priority blocks `held_blocks` says they hold; newcomers take
/// free ones.
pub fn customers(
    x: &mut Expansion,
    names: &StackNames,
    customers: &IndexMap<Spanned<String>, Spanned<Customer>>,
    held_blocks: &BTreeMap<String, u32>,
    logs: &Logs,
    services: &Services,
    platforms: &BTreeMap<String, Platform<'_>>,
) -> Result<(), ConfigError> {
    let order: Vec<&str> = customers.keys().map(|k| k.get_ref().as_str()).collect();
    let blocks = allocate_priority_blocks(&order, held_blocks).map_err(|message| {
        ConfigError::Graph(dagform_core::Error::Plan {
            address: Address::new("customers"),
            message,
        })
    })?;
    for (name, customer) in customers {
        let (name, customer) = (name.get_ref().as_str(), customer.get_ref());
        let platform = &platforms[name];
        let host = customer
            .domain
            .get_ref()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let deployment = deployment(names, name, customer, &host, blocks[name], logs);
        let target_groups =
            services::target_groups(x, &deployment, services, &platform.network.vpc_id);
        services::deploy(x, &deployment, services, &target_groups, platform);
        x.output(
            format!("url.{name}"),
            format!("{}'s address", customer.display_name.get_ref()),
            Value::from(format!("https://{host}")),
        );
    }
    Ok(())
}

/// How customer `name`'s deployment, served at `domain`, is named and told whom it serves.
fn deployment(
    names: &StackNames,
    name: &str,
    customer: &Customer,
    domain: &str,
    block: u32,
    logs: &Logs,
) -> Deployment {
    let mut environment: BTreeMap<String, String> = customer
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    environment.insert("CUSTOMER_NAME".into(), name.to_owned());
    environment.insert("CUSTOMER_DOMAIN".into(), domain.to_owned());
    environment.insert(
        "INSTANCE_DISPLAY_NAME".into(),
        customer.display_name.get_ref().clone(),
    );
    environment.insert("PUBLIC_URL".into(), format!("https://{domain}"));
    Deployment {
        base: deployment_base(name),
        name_prefix: format!("{}-{name}", names.prefix),
        service_prefix: service_prefix(name),
        log_group_name: logs
            .group_name_template(true)
            .replace("{environment}", &names.environment)
            .replace("{app}", &names.app)
            .replace("{customer}", name),
        log_retention_days: logs.retention_days.as_ref().map(|r| *r.get_ref()),
        stream_prefix: StreamPrefix::ServiceName,
        environment,
        host: Some(domain.to_owned()),
        first_priority: block * PRIORITY_BLOCK,
        catch_all: CatchAll::OwnRule,
    }
}
