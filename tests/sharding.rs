//! Customers spread over several load balancers: with two customers per load balancer, five
//! customers get three, each customer's rules and DNS record on its own, and removing the last
//! customer removes the third load balancer without moving anyone else. Verified by reading
//! AWS back.

mod support;

use aws_sdk_elasticloadbalancingv2::types::LoadBalancer;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use support::{Emulator, Project, create_zone, run_ok};

const ZONE: &str = "example.com";
const CUSTOMERS: [&str; 5] = ["c1", "c2", "c3", "c4", "c5"];

/// A multi-customer stack of one routed service, two customers per load balancer.
fn config(customers: &[&str]) -> String {
    let mut text = format!(
        r#"
[stack]
app = "shard"
environment = "dev"
region = "us-east-1"

[network]
cidr = "10.0.0.0/16"
availability_zones = ["us-east-1a", "us-east-1b"]
public_subnets = ["10.0.1.0/24", "10.0.2.0/24"]
private_subnets = ["10.0.11.0/24", "10.0.12.0/24"]
nat_gateways = "single"

[dns]
zone = "{ZONE}"

[certificate]
domain = "*.{ZONE}"

[load_balancer]
customers_per_load_balancer = 2

[services.web]
image_tag = "web-latest"
port = 3000
health_check_path = "/"
cpu = 256
memory = 512
desired_count = 1
"#
    );
    for c in customers {
        text.push_str(&format!(
            "\n[customers.{c}]\ndomain = \"{c}.{ZONE}\"\ndisplay_name = \"{c}\"\n"
        ));
    }
    text
}

/// What AWS shows of one load balancer: its listeners by port and the hosts its HTTPS
/// listener's rules match.
#[derive(Debug)]
struct Seen {
    dns_name: String,
    listeners: BTreeMap<i32, String>,
    hosts: Vec<String>,
}

struct Stack {
    emu: Emulator,
    clients: dagform_aws::AwsClients,
    project: Project,
    zone_id: String,
}

impl Stack {
    fn dagform(&self, args: &[&str]) -> String {
        run_ok(&mut self.project.dagform(&self.emu, args))
    }

    /// Every load balancer in the emulator, by name.
    async fn load_balancers(&self) -> BTreeMap<String, Seen> {
        let lbs = self
            .clients
            .elbv2
            .describe_load_balancers()
            .send()
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for lb in lbs.load_balancers() {
            out.insert(
                lb.load_balancer_name().unwrap().to_owned(),
                self.seen(lb).await,
            );
        }
        out
    }

    async fn seen(&self, lb: &LoadBalancer) -> Seen {
        let listeners = self
            .clients
            .elbv2
            .describe_listeners()
            .load_balancer_arn(lb.load_balancer_arn().unwrap())
            .send()
            .await
            .unwrap();
        let listeners: BTreeMap<i32, String> = listeners
            .listeners()
            .iter()
            .map(|l| (l.port().unwrap(), l.listener_arn().unwrap().to_owned()))
            .collect();
        let mut hosts = Vec::new();
        if let Some(https) = listeners.get(&443) {
            let rules = self
                .clients
                .elbv2
                .describe_rules()
                .listener_arn(https)
                .send()
                .await
                .unwrap();
            for rule in rules.rules() {
                for c in rule.conditions() {
                    if c.field() == Some("host-header") {
                        let values = c
                            .host_header_config()
                            .map(|h| h.values().to_vec())
                            .filter(|v| !v.is_empty())
                            .unwrap_or_else(|| c.values().to_vec());
                        hosts.extend(values);
                    }
                }
            }
        }
        hosts.sort();
        Seen {
            dns_name: lb
                .dns_name()
                .unwrap()
                .trim_end_matches('.')
                .to_ascii_lowercase(),
            listeners,
            hosts,
        }
    }

    /// The DNS name each customer's A record aliases, by customer.
    async fn aliases(&self) -> BTreeMap<String, String> {
        let records = self
            .clients
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(&self.zone_id)
            .send()
            .await
            .unwrap();
        records
            .resource_record_sets()
            .iter()
            .filter(|r| r.r#type().as_str() == "A")
            .filter_map(|r| {
                let customer = r.name().strip_suffix(&format!(".{ZONE}."))?;
                let alias = r.alias_target()?;
                Some((
                    customer.to_owned(),
                    alias.dns_name().trim_end_matches('.').to_ascii_lowercase(),
                ))
            })
            .collect()
    }
}

/// The load balancer (by name) whose HTTPS listener holds each customer's rule.
fn rule_owners(lbs: &BTreeMap<String, Seen>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, lb) in lbs {
        for host in &lb.hosts {
            let customer = host.strip_suffix(&format!(".{ZONE}")).unwrap().to_owned();
            assert!(
                out.insert(customer, name.clone()).is_none(),
                "{host} has rules on two load balancers"
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn customers_fill_load_balancers_in_turn_and_never_move() {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    let zone_id = create_zone(&clients, ZONE).await;
    let project = Project::with_config(&config(&CUSTOMERS));
    let stack = Stack {
        emu,
        clients,
        project,
        zone_id,
    };
    stack.dagform(&["provision", "--yes"]);

    // Three load balancers, each with its HTTP and HTTPS listener.
    let lbs = stack.load_balancers().await;
    assert_eq!(
        lbs.keys().cloned().collect::<Vec<_>>(),
        ["dev-shard-alb", "dev-shard-alb-2", "dev-shard-alb-3"]
    );
    for (name, lb) in &lbs {
        assert_eq!(
            lb.listeners.keys().copied().collect::<Vec<_>>(),
            [80, 443],
            "{name}"
        );
    }

    // Two customers on each of the first two, the fifth on the third: rules and DNS alike.
    let expected: BTreeMap<String, String> = [
        ("c1", "dev-shard-alb"),
        ("c2", "dev-shard-alb"),
        ("c3", "dev-shard-alb-2"),
        ("c4", "dev-shard-alb-2"),
        ("c5", "dev-shard-alb-3"),
    ]
    .into_iter()
    .map(|(c, lb)| (c.to_owned(), lb.to_owned()))
    .collect();
    assert_eq!(rule_owners(&lbs), expected);
    let aliases = stack.aliases().await;
    for (customer, lb) in &expected {
        assert_eq!(aliases[customer], lbs[lb].dns_name, "{customer}'s record");
    }

    // `output` and `status` say which customer is where.
    let outputs: Json = serde_json::from_str(&stack.dagform(&["output", "--json"])).unwrap();
    assert_eq!(
        outputs["load_balancer.c5"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase(),
        lbs["dev-shard-alb-3"].dns_name
    );
    assert_eq!(
        outputs["alb_dns_name_2"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase(),
        lbs["dev-shard-alb-2"].dns_name
    );
    let status: Json = serde_json::from_str(&stack.dagform(&["status", "--json"])).unwrap();
    let placed: BTreeMap<String, String> = status["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["customer"].as_str().unwrap().to_owned(),
                c["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(placed, expected);

    // The fifth customer leaves: the third load balancer goes, nobody else moves.
    let listeners_before: BTreeMap<String, String> = lbs
        .iter()
        .map(|(name, lb)| (name.clone(), lb.listeners[&443].clone()))
        .collect();
    stack.project.write_config(&config(&CUSTOMERS[..4]));
    stack.dagform(&["provision", "--yes"]);
    let lbs = stack.load_balancers().await;
    assert_eq!(
        lbs.keys().cloned().collect::<Vec<_>>(),
        ["dev-shard-alb", "dev-shard-alb-2"]
    );
    let mut remaining = expected.clone();
    remaining.remove("c5");
    assert_eq!(rule_owners(&lbs), remaining);
    for (name, lb) in &lbs {
        assert_eq!(
            lb.listeners[&443], listeners_before[name],
            "{name}'s listener"
        );
    }
    let aliases = stack.aliases().await;
    assert!(!aliases.contains_key("c5"), "c5's record is left");
    for (customer, lb) in &remaining {
        assert_eq!(aliases[customer], lbs[lb].dns_name, "{customer}'s record");
    }
    let target_groups = stack
        .clients
        .elbv2
        .describe_target_groups()
        .send()
        .await
        .unwrap();
    let default_groups: Vec<&str> = target_groups
        .target_groups()
        .iter()
        .filter_map(|t| t.target_group_name())
        .filter(|n| n.contains("default-tg"))
        .collect();
    assert_eq!(default_groups.len(), 2, "{default_groups:?}");

    stack.dagform(&["destroy", "--yes"]);
    assert!(stack.load_balancers().await.is_empty());
}
