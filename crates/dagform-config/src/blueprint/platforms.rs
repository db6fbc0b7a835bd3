//! The platforms a configuration describes, each a composition of the components:
//!
//! - with `[customers]`: the shared platform once, as many load balancers as the customers
//!   need (each with a default target group for unknown hosts), and a deployment of the
//!   services per customer on its own host, behind the load balancer it was placed on;
//! - without: the shared platform once and one deployment of the services, the one without a
//!   path taking the listener's fallback traffic.
//!
//! Another platform is another composition of the same components.

use super::alarms::{self, Watched};
use super::ci;
use super::cluster::{self, Cluster};
use super::customers;
use super::database::{self, Placement};
use super::firewall;
use super::ingress::{self, Fallback, Ingress, Listeners, OwnDomain, Zone};
use super::inputs::Inputs;
use super::network::{self, Network};
use super::registry::{self, Registry};
use super::scaling::{self, Scaled};
use super::secrets::{self, Secrets};
use super::security_groups::{self, SecurityGroups};
use super::services::{self, CatchAll, Deployment, Platform, StreamPrefix};
use super::shards::{self, Shard};
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

/// Every customer's copy of the services, each on its own host, behind as many load balancers
/// as they need: customers stay on the one they were placed on, newcomers fill the lowest with
/// room, and a load balancer besides the first goes once it has no customer left.
fn multi_customer(config: &Config, inputs: &Inputs) -> Result<Expansion, ConfigError> {
    let mut x = Expansion::default();
    let shared = shared(&mut x, config, inputs);
    let prefix = &shared.names.prefix;
    customers::service_log_groups(&mut x, prefix, &config.services, &config.logs);
    let order: Vec<&str> = config.customer_names().collect();
    let own_domains: BTreeMap<&str, String> = config.customers_with_own_domain().collect();
    let placement = shards::place_customers(
        &order,
        &inputs.load_balancers,
        shards::customers_per_load_balancer(config),
        &own_domains.keys().copied().collect(),
    );
    let mut ingresses = BTreeMap::new();
    for shard in shards::shards_in_use(&placement) {
        let default_target_group =
            customers::default_target_group(&mut x, shard, prefix, &shared.network.vpc_id);
        let ingress = ingress::load_balancer(
            &mut x,
            shard,
            prefix,
            &config.load_balancer,
            Listeners {
                network: &shared.network,
                security_group: &shared.security_groups.load_balancer,
                certificate_arn: shared.certificate_arn.clone(),
                fallback: Fallback::Forward(default_target_group),
            },
        );
        ingresses.insert(shard, ingress);
    }
    let database_environment = database(&mut x, config, &shared);
    let own = own_domains_ingress(&mut x, config, inputs, &own_domains, &placement, &ingresses);
    let platforms: BTreeMap<String, Platform<'_>> = placement
        .iter()
        .map(|(c, shard)| {
            let platform = match own.ingresses.get(c) {
                // Its DNS record goes to its own zone, or nowhere when that is elsewhere.
                Some(ingress) => Platform {
                    zone: own.zones.get(c),
                    ..shared.platform(ingress, &database_environment)
                },
                None => shared.platform(&ingresses[shard], &database_environment),
            };
            (c.clone(), platform)
        })
        .collect();
    customers::customers(
        &mut x,
        &shared.names,
        &config.customers,
        &inputs.priority_blocks,
        &config.logs,
        &config.services,
        &platforms,
    )?;
    for (c, shard) in &placement {
        let scaled = Scaled {
            base: &customers::deployment_base(c),
            name_prefix: &format!("{prefix}-{c}"),
            load_balancer: &shard.load_balancer(),
        };
        scaling::scaling(&mut x, &scaled, &config.services);
    }
    let watched: Vec<Watched<'_>> = placement
        .iter()
        .map(|(c, shard)| Watched {
            customer: Some(c.as_str()),
            base: customers::deployment_base(c),
            service_prefix: customers::service_prefix(c),
            shard: *shard,
        })
        .collect();
    alarms::alarms(&mut x, config, prefix, &watched);
    if let Some(waf) = &config.waf {
        let shards: Vec<Shard> = ingresses.keys().copied().collect();
        firewall::firewall(&mut x, prefix, waf.get_ref(), &shards);
    }
    if let Some(ci) = &config.ci {
        let deployed = ci::Deployed {
            bases: order
                .iter()
                .map(|c| (customers::deployment_base(c), format!("{prefix}-{c}")))
                .collect(),
            services: config
                .services
                .keys()
                .map(|s| s.get_ref().as_str())
                .collect(),
            shared_log_groups: true,
        };
        ci::ci(
            &mut x,
            config,
            prefix,
            ci.get_ref().github.get_ref(),
            &deployed,
        );
    }
    // With more than one load balancer, which customer is on which.
    if ingresses.len() > 1 {
        for c in &order {
            let shard = placement[*c];
            x.output(
                format!("load_balancer.{c}"),
                format!("the DNS name of {c}'s load balancer ({})", shard.0),
                Input::from(&ingresses[&shard].dns_name).into_value(),
            );
        }
    }
    Ok(x)
}

/// What customers with domains of their own are served through: the zone holding each
/// domain, when the account has it, and the ingress of their load balancer with their rules
/// attached only once the listener serves their certificate.
struct OwnDomains<'a> {
    zones: BTreeMap<String, Zone<'a>>,
    ingresses: BTreeMap<String, Ingress>,
}

fn own_domains_ingress<'a>(
    x: &mut Expansion,
    config: &Config,
    inputs: &'a Inputs,
    own_domains: &BTreeMap<&str, String>,
    placement: &BTreeMap<String, Shard>,
    ingresses: &BTreeMap<Shard, Ingress>,
) -> OwnDomains<'a> {
    let timeout_minutes = config
        .certificate
        .as_ref()
        .and_then(|c| c.get_ref().validation_timeout_minutes)
        .unwrap_or(45);
    let mut own = OwnDomains {
        zones: BTreeMap::new(),
        ingresses: BTreeMap::new(),
    };
    for (&c, host) in own_domains {
        let base = customers::deployment_base(c);
        if let Some(zone) = inputs.customer_zones.get(c) {
            own.zones
                .insert(c.to_owned(), ingress::customer_zone(x, &base, zone));
        }
        let display_name = config
            .customers
            .iter()
            .find(|(name, _)| name.get_ref() == c)
            .map_or(c, |(_, customer)| customer.get_ref().display_name.get_ref());
        let shared_ingress = &ingresses[&placement[c]];
        let rules_listener = ingress::own_domain_certificate(
            x,
            &OwnDomain {
                customer: c,
                base: &base,
                display_name,
                host,
                zone: own.zones.get(c),
                timeout_minutes,
            },
            &shared_ingress.rules_listener,
        );
        if !own.zones.contains_key(c) {
            x.output(
                format!("dns_target.{c}"),
                format!("where {host} must point (CNAME or alias), at its DNS host"),
                Input::from(&shared_ingress.dns_name).into_value(),
            );
        }
        own.ingresses.insert(
            c.to_owned(),
            Ingress {
                rules_listener,
                ..shared_ingress.clone()
            },
        );
    }
    own
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
        Shard::FIRST,
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
    let scaled = Scaled {
        base: &deployment.base,
        name_prefix: &deployment.name_prefix,
        load_balancer: &Shard::FIRST.load_balancer(),
    };
    scaling::scaling(&mut x, &scaled, &config.services);
    let watched = [Watched {
        customer: None,
        base: deployment.base.clone(),
        service_prefix: deployment.service_prefix.clone(),
        shard: Shard::FIRST,
    }];
    alarms::alarms(&mut x, config, &names.prefix, &watched);
    if let Some(waf) = &config.waf {
        firewall::firewall(&mut x, &names.prefix, waf.get_ref(), &[Shard::FIRST]);
    }
    if let Some(ci) = &config.ci {
        let deployed = ci::Deployed {
            bases: vec![(deployment.base.clone(), deployment.name_prefix.clone())],
            services: config
                .services
                .keys()
                .map(|s| s.get_ref().as_str())
                .collect(),
            shared_log_groups: false,
        };
        ci::ci(
            &mut x,
            config,
            &names.prefix,
            ci.get_ref().github.get_ref(),
            &deployed,
        );
    }
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

#[cfg(test)]
mod tests {
    use crate::blueprint::{Blueprint, blueprint};
    use crate::parse;
    use dagform_core::state::ResourceStatus;
    use dagform_core::{Address, ResourceState, State};
    use std::path::Path;

    /// A multi-customer stack with two routed services and `customers`, each `[customers.<n>]`.
    fn source(customers: &[&str], per_load_balancer: Option<u32>) -> String {
        let mut s = String::from(
            r#"
[stack]
app = "shop"
environment = "dev"
region = "us-east-1"

[network]
cidr = "10.0.0.0/16"
availability_zones = ["us-east-1a", "us-east-1b"]
public_subnets = ["10.0.1.0/24", "10.0.2.0/24"]
private_subnets = ["10.0.11.0/24", "10.0.12.0/24"]

[dns]
zone = "example.com"

[certificate]
domain = "*.example.com"

[services.api]
image_tag = "api"
port = 3001
path = "/api/*"
cpu = 256
memory = 512
desired_count = 1

[services.web]
image_tag = "web"
port = 3000
cpu = 256
memory = 512
desired_count = 1
"#,
        );
        if let Some(n) = per_load_balancer {
            s.push_str(&format!(
                "\n[load_balancer]\ncustomers_per_load_balancer = {n}\n"
            ));
        }
        for c in customers {
            s.push_str(&format!(
                "\n[customers.{c}]\ndomain = \"{c}.example.com\"\ndisplay_name = \"{c}\"\n"
            ));
        }
        s
    }

    fn expand(source: &str, state: Option<&State>) -> Blueprint {
        let config = parse(Path::new("dagform.toml"), source).unwrap();
        blueprint(&config, Path::new("dagform.toml"), state).unwrap()
    }

    /// The load balancer node customer `c`'s DNS record and listener rules refer to.
    fn load_balancer_of(bp: &Blueprint, c: &str) -> String {
        let record = bp
            .graph
            .dependencies(&format!("customer.{c}.dns_record").into());
        let rule = bp
            .graph
            .dependencies(&format!("customer.{c}.listener_rule.api").into());
        let alb = record
            .iter()
            .find(|a| a.as_str().starts_with("shared.alb"))
            .unwrap()
            .to_string();
        let listener = rule
            .iter()
            .find(|a| a.as_str().starts_with("shared.listener"))
            .unwrap()
            .to_string();
        let expected_listener = alb.replace("shared.alb", "shared.listener") + ".https";
        assert_eq!(
            listener, expected_listener,
            "{c}'s rule is on another shard"
        );
        alb
    }

    /// The state after applying `bp`: every node recorded with the dependencies it has.
    fn applied(bp: &Blueprint) -> State {
        let mut state = State::new(&bp.stack);
        for node in bp.graph.topological() {
            let record = ResourceState {
                kind: node.kind.clone(),
                status: ResourceStatus::Ready,
                id: Some(node.address.to_string()),
                properties: Default::default(),
                outputs: Default::default(),
                dependencies: bp
                    .graph
                    .dependencies(&node.address)
                    .into_iter()
                    .cloned()
                    .collect(),
                deposed: vec![],
                intent: None,
            };
            state.resources.insert(node.address.clone(), record);
        }
        state
    }

    fn albs(bp: &Blueprint) -> Vec<String> {
        bp.graph
            .topological()
            .iter()
            .map(|n| n.address.to_string())
            .filter(|a| a.starts_with("shared.alb"))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    #[test]
    fn customers_beyond_a_load_balancers_capacity_get_another() {
        let bp = expand(&source(&["a", "b", "c", "d", "e"], Some(2)), None);
        assert_eq!(albs(&bp), ["shared.alb", "shared.alb_2", "shared.alb_3"]);
        let on: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|c| load_balancer_of(&bp, c))
            .collect();
        assert_eq!(
            on,
            [
                "shared.alb",
                "shared.alb",
                "shared.alb_2",
                "shared.alb_2",
                "shared.alb_3"
            ]
        );
        for shard in ["_2", "_3"] {
            for node in [
                format!("shared.listener{shard}.http"),
                format!("shared.listener{shard}.https"),
                format!("shared.target_group.default{shard}"),
            ] {
                assert!(bp.graph.contains(&Address::new(node.clone())), "{node}");
            }
        }
        let name = |a: &str| {
            bp.graph.get(&a.into()).unwrap().properties["name"]
                .as_data()
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(name("shared.alb"), "dev-shop-alb");
        assert_eq!(name("shared.alb_3"), "dev-shop-alb-3");
        assert_eq!(
            name("shared.target_group.default_2"),
            "dev-shop-default-tg-2"
        );
        let outputs: Vec<&str> = bp.outputs.iter().map(|o| o.name.as_str()).collect();
        for o in [
            "alb_dns_name",
            "alb_dns_name_2",
            "alb_dns_name_3",
            "load_balancer.e",
        ] {
            assert!(outputs.contains(&o), "{o} missing from {outputs:?}");
        }
    }

    #[test]
    fn the_computed_capacity_keeps_a_small_stack_on_one_load_balancer() {
        let bp = expand(&source(&["a", "b", "c", "d", "e"], None), None);
        assert_eq!(albs(&bp), ["shared.alb"]);
        assert!(
            !bp.outputs
                .iter()
                .any(|o| o.name.starts_with("load_balancer."))
        );
    }

    #[test]
    fn placed_customers_stay_where_the_state_has_them() {
        let all = ["a", "b", "c", "d", "e"];
        let state = applied(&expand(&source(&all, Some(2)), None));
        // `b` and `e` leave, `f` arrives first in the file: `f` takes the free seat on the
        // first load balancer, the others stay, and the emptied third goes.
        let bp = expand(&source(&["f", "a", "c", "d"], Some(2)), Some(&state));
        assert_eq!(albs(&bp), ["shared.alb", "shared.alb_2"]);
        for (c, alb) in [
            ("f", "shared.alb"),
            ("a", "shared.alb"),
            ("c", "shared.alb_2"),
            ("d", "shared.alb_2"),
        ] {
            assert_eq!(load_balancer_of(&bp, c), alb, "{c}");
        }
        // A larger capacity later moves nobody: `c` and `d` stay on the second.
        let bp = expand(&source(&["a", "c", "d", "g"], Some(10)), Some(&state));
        assert_eq!(load_balancer_of(&bp, "c"), "shared.alb_2");
        assert_eq!(load_balancer_of(&bp, "g"), "shared.alb");
    }

    #[test]
    fn a_customer_with_its_own_domain_gets_a_certificate_served_by_sni() {
        let text = source(&["a"], None)
            + "\n[customers.acme]\ndomain = \"App.Acme-Corp.com\"\ndisplay_name = \"Acme\"\n"
            + "\n[customers.other]\ndomain = \"shop.other-corp.net\"\ndisplay_name = \"Other\"\n";
        let config = parse(Path::new("dagform.toml"), &text).unwrap();
        let mut inputs = crate::resolve_inputs(&config, Path::new("dagform.toml"), None);
        inputs
            .customer_zones
            .insert("acme".into(), "acme-corp.com".into());
        let bp = crate::expand(&config, &inputs).unwrap();
        let deps = |a: &str| -> Vec<String> {
            bp.graph
                .dependencies(&a.into())
                .iter()
                .map(|d| d.to_string())
                .collect()
        };
        let data = |a: &str, field: &str| {
            bp.graph.get(&a.into()).unwrap().properties[field]
                .as_data()
                .cloned()
        };
        // Acme: its certificate validated in its zone, its record there too.
        assert_eq!(
            data("customer.acme.certificate", "domain_name"),
            Some("app.acme-corp.com".into())
        );
        assert_eq!(
            data("customer.acme.zone", "name"),
            Some("acme-corp.com".into())
        );
        assert!(deps("customer.acme.certificate_record").contains(&"customer.acme.zone".into()));
        assert!(
            deps("customer.acme.certificate_validation")
                .contains(&"customer.acme.certificate_record".into())
        );
        assert!(deps("customer.acme.dns_record").contains(&"customer.acme.zone".into()));
        let attachment = deps("customer.acme.listener_certificate");
        assert!(attachment.contains(&"shared.listener.https".into()));
        assert!(attachment.contains(&"customer.acme.certificate_validation".into()));
        // Its rules wait for the listener to serve its certificate.
        assert!(
            deps("customer.acme.listener_rule.api")
                .contains(&"customer.acme.listener_certificate".into())
        );
        // Other: no zone in the account, so no record; the validation checks once and the
        // records to add are an output.
        assert!(!bp.graph.contains(&"customer.other.zone".into()));
        assert!(!bp.graph.contains(&"customer.other.dns_record".into()));
        assert!(
            !bp.graph
                .contains(&"customer.other.certificate_record".into())
        );
        assert_eq!(
            data("customer.other.certificate_validation", "timeout_seconds"),
            Some(0.into())
        );
        let outputs: Vec<&str> = bp.outputs.iter().map(|o| o.name.as_str()).collect();
        assert!(outputs.contains(&"certificate_validation_records.other"));
        assert!(outputs.contains(&"dns_target.other"));
        // The customer in the zone is served by the shared certificate, as before.
        assert!(!bp.graph.contains(&"customer.a.certificate".into()));
        assert!(deps("customer.a.listener_rule.api").contains(&"shared.listener.https".into()));
    }

    #[test]
    fn a_bad_override_names_file_line_and_field() {
        for (n, wanted) in [
            (0, "must be at least 1"),
            (50, "at most 49 customers fit one load balancer"),
        ] {
            let text = source(&["a"], Some(n));
            let line = text
                .lines()
                .position(|l| l.starts_with("customers_per_load_balancer"))
                .unwrap()
                + 1;
            let Err(crate::ConfigError::Invalid(d)) = parse(Path::new("dagform.toml"), &text)
            else {
                panic!("accepted customers_per_load_balancer = {n}");
            };
            let message = d[0].to_string();
            assert!(
                message.contains(&format!("dagform.toml:{line}"))
                    && message.contains("load_balancer.customers_per_load_balancer")
                    && message.contains(wanted),
                "{message}"
            );
        }
        assert!(parse(Path::new("dagform.toml"), &source(&["a"], Some(49))).is_ok());
    }
}
