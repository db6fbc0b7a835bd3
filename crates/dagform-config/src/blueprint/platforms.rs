//! The platforms a configuration describes, each a composition of the components:
//!
//! - with `[customers]`: the shared platform once, a default target group for unknown hosts,
//!   and a deployment of the services per customer on its own host;
//! - without: the shared platform once and one deployment of the services, the one without a
//!   path taking the listener's fallback traffic.
//!
//! Another platform is another composition of the same components.

use super::cluster::{self, Cluster};
use super::customers;
use super::database::{self, Placement};
use super::ingress::{self, Fallback, Listeners, Zone};
use super::inputs::Inputs;
use super::network::{self, Network};
use super::registry::{self, Registry};
use super::secrets::{self, Secrets};
use super::security_groups::{self, SecurityGroups};
use super::services::{self, CatchAll, Deployment, Platform, StreamPrefix};
use super::{Expansion, StackNames};
use crate::error::ConfigError;
use crate::model::Config;
use dagform_core::typed::Input;
use std::collections::BTreeMap;

/// Expands `config` as the platform it describes.
pub(super) fn compose(config: &Config, inputs: &Inputs) -> Result<Expansion, ConfigError> {
    if config.has_customers() {
        multi_customer(config, inputs)
    } else {
        Ok(single_deployment(config, inputs))
    }
}

/// Every customer's copy of the services behind one load balancer, each on its own host.
fn multi_customer(config: &Config, inputs: &Inputs) -> Result<Expansion, ConfigError> {
    let mut x = Expansion::default();
    let shared = shared(&mut x, config, inputs);
    let prefix = &shared.names.prefix;
    customers::service_log_groups(&mut x, prefix, &config.services, &config.logs);
    let default_target_group =
        customers::default_target_group(&mut x, prefix, &shared.network.vpc_id);
    let ingress = ingress::load_balancer(
        &mut x,
        prefix,
        &config.load_balancer,
        Listeners {
            network: &shared.network,
            security_group: &shared.security_groups.load_balancer,
            certificate_arn: shared.certificate_arn.clone(),
            fallback: Fallback::Forward(default_target_group),
        },
    );
    let database_environment = database(&mut x, config, &shared);
    customers::customers(
        &mut x,
        &shared.names,
        &config.customers,
        &inputs.priority_blocks,
        &config.logs,
        &config.services,
        &shared.platform(&ingress, &database_environment),
    )?;
    Ok(x)
}

/// The services deployed once; the one without a path answers every request no rule takes.
fn single_deployment(config: &Config, inputs: &Inputs) -> Expansion {
    let mut x = Expansion::default();
    let shared = shared(&mut x, config, inputs);
    let names = &shared.names;
    let deployment = Deployment {
        base: "app".into(),
        name_prefix: names.prefix.clone(),
        service_prefix: String::new(),
        log_group_name: config
            .logs
            .group_name_template(false)
            .replace("{environment}", &names.environment)
            .replace("{app}", &names.app)
            .replace("{customer}", ""),
        log_retention_days: config.logs.retention_days.as_ref().map(|r| *r.get_ref()),
        stream_prefix: StreamPrefix::Ecs,
        environment: BTreeMap::new(),
        host: None,
        first_priority: 1,
        catch_all: CatchAll::ListenerFallback,
    };
    let target_groups = services::target_groups(
        &mut x,
        &deployment,
        &config.services,
        &shared.network.vpc_id,
    );
    let fallback = config
        .services
        .iter()
        .find(|(_, s)| s.get_ref().is_routed() && s.get_ref().is_catch_all())
        .and_then(|(name, _)| target_groups.arns.get(name.get_ref()))
        .map_or(Fallback::NotFound, |arn| Fallback::Forward(arn.clone()));
    let ingress = ingress::load_balancer(
        &mut x,
        &names.prefix,
        &config.load_balancer,
        Listeners {
            network: &shared.network,
            security_group: &shared.security_groups.load_balancer,
            certificate_arn: shared.certificate_arn.clone(),
            fallback,
        },
    );
    let database_environment = database(&mut x, config, &shared);
    services::deploy(
        &mut x,
        &deployment,
        &config.services,
        &target_groups,
        &shared.platform(&ingress, &database_environment),
    );
    x
}

/// The pieces every platform has once: registry, zone, network, security groups, secrets,
/// cluster and roles, certificate.
struct Shared<'a> {
    names: StackNames,
    registry: Registry,
    zone: Option<Zone<'a>>,
    network: Network,
    security_groups: SecurityGroups,
    secrets: Secrets,
    cluster: Cluster,
    certificate_arn: Option<Input<String>>,
}

fn shared<'a>(x: &mut Expansion, config: &'a Config, inputs: &Inputs) -> Shared<'a> {
    let names = StackNames::of(config);
    let prefix = names.prefix.as_str();
    let registry = registry::registry(x, prefix, &config.registry);
    let zone = config.dns.as_ref().map(|dns| ingress::zone(x, dns));
    let network = network::network(x, config.network.get_ref(), &names.environment);
    let security_groups =
        security_groups::security_groups(x, prefix, &network.vpc_id, &config.services);
    let secrets = secrets::secrets(x, prefix, &config.secrets, &inputs.secret_values);
    let cluster = cluster::cluster_and_roles(
        x,
        prefix,
        &config.cluster,
        secrets.arns.values().cloned().collect(),
    );
    let certificate_arn = config
        .certificate
        .as_ref()
        .and_then(|c| ingress::certificate(x, c.get_ref(), zone.as_ref()));
    Shared {
        names,
        registry,
        zone,
        network,
        security_groups,
        secrets,
        cluster,
        certificate_arn,
    }
}

impl Shared<'_> {
    /// What a deployment of the services runs on.
    fn platform<'s>(
        &'s self,
        ingress: &'s ingress::Ingress,
        database_environment: &'s BTreeMap<String, Input<String>>,
    ) -> Platform<'s> {
        Platform {
            region: &self.names.region,
            network: &self.network,
            security_groups: &self.security_groups,
            cluster: &self.cluster,
            registry: &self.registry,
            secrets: &self.secrets,
            database_environment,
            ingress,
            zone: self.zone.as_ref(),
        }
    }
}

/// The database, if the configuration has one; returns the environment that points the
/// services at it (empty without).
fn database(
    x: &mut Expansion,
    config: &Config,
    shared: &Shared<'_>,
) -> BTreeMap<String, Input<String>> {
    let Some(db) = &config.database else {
        return BTreeMap::new();
    };
    database::database(
        x,
        &shared.names.prefix,
        db.get_ref(),
        Placement {
            vpc_id: &shared.network.vpc_id,
            subnets: &shared.network.task_subnets,
            security_groups: &shared.security_groups,
        },
    )
    .environment
}
