//! Prices the resources of a graph (what the stack will be) or of a state (what it is now).
//!
//! Only counts and literal properties matter here, so references still unknown before an
//! apply are no obstacle: a service's task size is read from the task definition node its
//! `task_definition_arn` refers to.
//!
//! Kinds and property names come from the kinds' schema (`dagform-resources`), so a renamed
//! property is a compile error here rather than an estimate that silently drops a line.

use super::prices::{PriceTable, number, rate};
use super::{Group, Usd};
use dagform_core::kind::{Outputs, Properties};
use dagform_core::{Address, KindProperties, PropertyName, ResourceGraph, State, Value, ValueMap};
use dagform_resources::ecs::{
    ContainerField, ContainerLogField, ServiceField, ServiceProps, TaskDefinitionField,
    TaskDefinitionProps,
};
use dagform_resources::elbv2::{LoadBalancerField, LoadBalancerProps};
use dagform_resources::logs::{LogGroupField, LogGroupProps};
use dagform_resources::rds::{DbInstanceField, DbInstanceProps};
use dagform_resources::route53::{RecordField, RecordProps, ZoneProps};
use dagform_resources::{acm, ec2, ecr, elbv2, iam, rds, secretsmanager};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

const LOG_GROUP: &str = LogGroupProps::KIND;
const TASK_DEFINITION: &str = TaskDefinitionProps::KIND;

/// Kinds that cost nothing by themselves. Any kind neither here nor priced below is reported
/// as not priced, so a new kind never lowers an estimate silently.
const FREE: &[&str] = &[
    acm::CertificateProps::KIND,
    acm::CertificateValidationProps::KIND,
    dagform_resources::autoscaling::ScalableTargetProps::KIND,
    dagform_resources::autoscaling::ScalingPolicyProps::KIND,
    rds::DbSubnetGroupProps::KIND,
    rds::DbParameterGroupProps::KIND,
    dagform_resources::ecs::ClusterProps::KIND,
    TaskDefinitionProps::KIND,
    iam::RoleProps::KIND,
    ec2::InternetGatewayProps::KIND,
    elbv2::ListenerProps::KIND,
    elbv2::ListenerRuleProps::KIND,
    elbv2::ListenerCertificateProps::KIND,
    elbv2::TargetGroupProps::KIND,
    dagform_resources::sns::TopicProps::KIND,
    dagform_resources::sns::SubscriptionProps::KIND,
    dagform_resources::wafv2::WebAclAssociationProps::KIND,
    iam::OidcProviderProps::KIND,
    ec2::RouteTableProps::KIND,
    ec2::RouteTableAssociationProps::KIND,
    ec2::SecurityGroupProps::KIND,
    ec2::SecurityGroupRuleProps::KIND,
    ec2::SubnetProps::KIND,
    ec2::VpcProps::KIND,
    ec2::DefaultVpcProps::KIND,
];

/// One priced item: what it is, for which resource, and its monthly cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub address: Address,
    pub what: String,
    /// `None` when the item could not be priced (unknown instance class, unknown kind…).
    pub monthly: Option<Usd>,
}

impl Line {
    pub fn group(&self) -> Group {
        Group::of(&self.address)
    }
}

/// The estimated monthly cost of a stack, item by item.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub lines: Vec<Line>,
    /// The assumptions and the prices' region and date, in one line.
    pub note: String,
}

impl Estimate {
    pub fn total(&self) -> Usd {
        self.lines.iter().filter_map(|l| l.monthly).sum()
    }

    /// What every customer shares: network, load balancer, registry, zone.
    pub fn shared(&self) -> Usd {
        self.lines
            .iter()
            .filter(|l| l.group() == Group::Shared)
            .filter_map(|l| l.monthly)
            .sum()
    }

    /// Each customer's own cost, by name, for every customer with at least one line.
    pub fn customers(&self) -> BTreeMap<String, Usd> {
        let mut out = BTreeMap::new();
        for line in &self.lines {
            if let Group::Customer(name) = line.group() {
                *out.entry(name).or_default() += line.monthly.unwrap_or_default();
            }
        }
        out
    }

    /// Whether any line belongs to everyone rather than to one customer.
    pub fn has_shared(&self) -> bool {
        self.lines.iter().any(|l| l.group() == Group::Shared)
    }

    /// The items left out of the totals.
    pub fn not_priced(&self) -> impl Iterator<Item = &Line> {
        self.lines.iter().filter(|l| l.monthly.is_none())
    }
}

/// The monthly cost of the desired resources.
pub fn estimate(graph: &ResourceGraph, prices: &PriceTable) -> Estimate {
    let mut nodes = graph.topological();
    nodes.sort_by(|a, b| a.address.cmp(&b.address));
    let items: Vec<Item> = nodes
        .into_iter()
        .map(|n| Item {
            address: &n.address,
            kind: &n.kind,
            props: Props::Desired(&n.properties),
        })
        .collect();
    price(&items, prices)
}

/// The monthly cost of the resources a state records, for comparing a plan with today.
pub fn estimate_state(state: &State, prices: &PriceTable) -> Estimate {
    let items: Vec<Item> = state
        .resources
        .iter()
        .map(|(address, r)| Item {
            address,
            kind: &r.kind,
            props: Props::Recorded {
                properties: &r.properties,
                outputs: &r.outputs,
            },
        })
        .collect();
    price(&items, prices)
}

/// A resource as the estimate reads it.
struct Item<'a> {
    address: &'a Address,
    kind: &'a str,
    props: Props<'a>,
}

#[derive(Clone, Copy)]
enum Props<'a> {
    /// Desired properties from the graph; references may still be unknown.
    Desired(&'a ValueMap),
    /// Properties and outputs as recorded after an apply.
    Recorded {
        properties: &'a Properties,
        outputs: &'a Outputs,
    },
}

/// Where a property points: a node of the graph, or an ARN recorded in the state.
enum Target<'a> {
    Node(&'a Address),
    Arn(&'a str),
}

impl<'a> Props<'a> {
    fn data(self, field: impl PropertyName) -> Option<&'a Json> {
        let key = field.property();
        match self {
            Props::Desired(p) => p.get(key)?.as_data(),
            Props::Recorded { properties, .. } => properties.get(key),
        }
        .filter(|j| !j.is_null())
    }

    fn text(self, field: impl PropertyName) -> Option<&'a str> {
        self.data(field)?.as_str()
    }

    /// A number, also when written as a string (`cpu = "256"`).
    fn number(self, field: impl PropertyName) -> Option<f64> {
        match self.data(field)? {
            Json::Number(n) => n.as_f64(),
            Json::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn flag(self, field: impl PropertyName) -> bool {
        self.data(field).and_then(Json::as_bool).unwrap_or(false)
    }

    /// Whether the property is given at all, known or not.
    fn is_set(self, field: impl PropertyName) -> bool {
        let key = field.property();
        match self {
            Props::Desired(p) => p.get(key).is_some_and(|v| v.as_data() != Some(&Json::Null)),
            Props::Recorded { properties, .. } => properties.get(key).is_some_and(|j| !j.is_null()),
        }
    }

    /// How many items a list property holds, known or not.
    fn len(self, field: impl PropertyName) -> Option<usize> {
        let key = field.property();
        match self {
            Props::Desired(p) => match p.get(key)? {
                Value::List(items) => Some(items.len()),
                Value::Data(Json::Array(items)) => Some(items.len()),
                _ => None,
            },
            Props::Recorded { properties, .. } => properties.get(key)?.as_array().map(Vec::len),
        }
    }

    fn target(self, field: impl PropertyName) -> Option<Target<'a>> {
        let key = field.property();
        match self {
            Props::Desired(p) => match p.get(key)? {
                Value::Ref(r) => Some(Target::Node(&r.node)),
                Value::Data(Json::String(arn)) => Some(Target::Arn(arn)),
                _ => None,
            },
            Props::Recorded { properties, .. } => properties.get(key)?.as_str().map(Target::Arn),
        }
    }

    /// The property as plain data, unknown references read as null.
    fn known(self, field: impl PropertyName) -> Option<Json> {
        let key = field.property();
        match self {
            Props::Desired(p) => p
                .get(key)?
                .partially_resolve(&|_| Some(Json::Null))
                .as_data()
                .cloned(),
            Props::Recorded { properties, .. } => properties.get(key).cloned(),
        }
    }

    /// The nodes this property refers to.
    fn referenced_nodes(self, field: impl PropertyName) -> Vec<&'a Address> {
        let key = field.property();
        match self {
            Props::Desired(p) => p
                .get(key)
                .map(|v| v.references().into_iter().map(|r| &r.node).collect())
                .unwrap_or_default(),
            Props::Recorded { .. } => Vec::new(),
        }
    }

    fn arn(self) -> Option<&'a str> {
        match self {
            Props::Desired(_) => None,
            Props::Recorded { outputs, .. } => outputs.get("arn")?.as_str(),
        }
    }
}

/// Finds the resources other resources point at.
struct Index<'a, 'b> {
    by_address: HashMap<&'a Address, &'b Item<'a>>,
    by_arn: HashMap<&'a str, &'b Item<'a>>,
    log_group_by_name: HashMap<&'a str, &'a Address>,
}

impl<'a, 'b> Index<'a, 'b> {
    fn new(items: &'b [Item<'a>]) -> Self {
        Self {
            by_address: items.iter().map(|i| (i.address, i)).collect(),
            by_arn: items
                .iter()
                .filter_map(|i| Some((i.props.arn()?, i)))
                .collect(),
            log_group_by_name: items
                .iter()
                .filter(|i| i.kind == LOG_GROUP)
                .filter_map(|i| Some((i.props.text(LogGroupField::Name)?, i.address)))
                .collect(),
        }
    }

    fn get(&self, target: Target<'_>) -> Option<&'b Item<'a>> {
        match target {
            Target::Node(address) => self.by_address.get(address).copied(),
            Target::Arn(arn) => self.by_arn.get(arn).copied(),
        }
    }

    /// The log groups a task definition's containers write to.
    fn written_log_groups(&self, task_definition: &Item<'a>) -> BTreeSet<&'a Address> {
        let props = task_definition.props;
        let mut out: BTreeSet<&Address> = props
            .referenced_nodes(TaskDefinitionField::Containers)
            .into_iter()
            .filter(|a| self.by_address.get(a).is_some_and(|i| i.kind == LOG_GROUP))
            .collect();
        if let Some(Json::Array(containers)) = props.known(TaskDefinitionField::Containers) {
            for c in &containers {
                let log = c.get(ContainerField::Log.property());
                let name = log
                    .and_then(|l| l.get(ContainerLogField::Group.property()))
                    .and_then(Json::as_str);
                if let Some(address) = name.and_then(|n| self.log_group_by_name.get(n)) {
                    out.insert(address);
                }
            }
        }
        out
    }
}

fn price(items: &[Item], prices: &PriceTable) -> Estimate {
    let index = Index::new(items);
    let mut writers: HashMap<&Address, u32> = HashMap::new();
    for td in items.iter().filter(|i| i.kind == TASK_DEFINITION) {
        for group in index.written_log_groups(td) {
            *writers.entry(group).or_default() += 1;
        }
    }
    let mut lines = Vec::new();
    for item in items {
        let mut add = |what: String, monthly: Option<f64>| {
            lines.push(Line {
                address: item.address.clone(),
                what,
                monthly: monthly.map(Usd::from_dollars),
            })
        };
        let writers = writers.get(item.address).copied().unwrap_or(0);
        price_item(item, &index, writers, prices, &mut add);
    }
    Estimate {
        lines,
        note: prices.note(),
    }
}

fn price_item(
    item: &Item,
    index: &Index,
    log_writers: u32,
    prices: &PriceTable,
    add: &mut dyn FnMut(String, Option<f64>),
) {
    let a = &prices.assumptions;
    let hours = a.hours_per_month;
    let h = number(hours);
    let ipv4 = prices.public_ipv4.hour;
    let props = item.props;
    match item.kind {
        ec2::NatGatewayProps::KIND => {
            let p = &prices.nat_gateway;
            add(
                format!("NAT gateway, {h} h × {}", rate(p.hour)),
                Some(hours * p.hour),
            );
            add(
                format!(
                    "NAT data processed, {} GB × {}",
                    number(a.nat_gb_per_gateway),
                    rate(p.gb_processed)
                ),
                Some(a.nat_gb_per_gateway * p.gb_processed),
            );
        }
        ec2::EipProps::KIND => add(
            format!("public IPv4 address (Elastic IP), {h} h × {}", rate(ipv4)),
            Some(hours * ipv4),
        ),
        // dagform's load balancers are application load balancers.
        LoadBalancerProps::KIND => {
            let p = &prices.load_balancer;
            add(
                format!("application load balancer, {h} h × {}", rate(p.hour)),
                Some(hours * p.hour),
            );
            let lcus = a.lcus_per_load_balancer;
            add(
                format!(
                    "load balancer capacity, {} LCU × {h} h × {}",
                    number(lcus),
                    rate(p.lcu_hour)
                ),
                Some(lcus * hours * p.lcu_hour),
            );
            // An internet-facing load balancer holds one public address in each of its zones.
            if props.text(LoadBalancerField::Scheme) != Some("internal") {
                match props.len(LoadBalancerField::SubnetIds) {
                    Some(n) => add(
                        format!(
                            "public IPv4 addresses, {n} (one per zone) × {h} h × {}",
                            rate(ipv4)
                        ),
                        Some(n as f64 * hours * ipv4),
                    ),
                    None => add(
                        "public IPv4 addresses: not priced, zone count unknown".into(),
                        None,
                    ),
                }
            }
        }
        ServiceProps::KIND => price_service(item, index, prices, add),
        ZoneProps::KIND => add("hosted zone".into(), Some(prices.route53.hosted_zone_month)),
        // Queries to alias records that point at AWS resources are free.
        RecordProps::KIND if !props.is_set(RecordField::Alias) => {
            let q = a.queries_per_record;
            add(
                format!(
                    "DNS queries, {} million × {}",
                    number(q / 1e6),
                    rate(prices.route53.million_queries)
                ),
                Some(q / 1e6 * prices.route53.million_queries),
            )
        }
        RecordProps::KIND => {}
        // A log group nothing in the stack writes to costs next to nothing.
        LOG_GROUP if log_writers > 0 => {
            let p = &prices.logs;
            let gb = a.log_gb_per_service * f64::from(log_writers);
            add(
                format!(
                    "log ingestion, {} GB × {}",
                    number(gb),
                    rate(p.ingestion_gb)
                ),
                Some(gb * p.ingestion_gb),
            );
            let months = props
                .number(LogGroupField::RetentionInDays)
                .map_or(a.log_months_kept_without_retention, |d| d * 12.0 / 365.0);
            add(
                format!(
                    "log storage, {} GB-month × {}",
                    number(gb * months),
                    rate(p.storage_gb_month)
                ),
                Some(gb * months * p.storage_gb_month),
            );
        }
        LOG_GROUP => {}
        secretsmanager::SecretProps::KIND => {
            add("secret".into(), Some(prices.secrets_manager.secret_month))
        }
        dagform_resources::cloudwatch::MetricAlarmProps::KIND => {
            use dagform_resources::cloudwatch::MetricAlarmField;
            // An alarm is charged per metric it reads: a percentage reads two.
            if props.is_set(MetricAlarmField::PercentOf) {
                add(
                    format!(
                        "alarm on 2 metrics, 2 × {}",
                        rate(prices.cloudwatch.alarm_month)
                    ),
                    Some(2.0 * prices.cloudwatch.alarm_month),
                )
            } else {
                add("alarm".into(), Some(prices.cloudwatch.alarm_month))
            }
        }
        dagform_resources::wafv2::WebAclProps::KIND => {
            use dagform_resources::wafv2::WebAclField;
            let p = &prices.waf;
            add("web ACL".into(), Some(p.web_acl_month));
            let rules = props.len(WebAclField::ManagedRuleGroups).unwrap_or(0)
                + usize::from(props.is_set(WebAclField::RateLimit));
            add(
                format!("web ACL rules, {rules} × {}", rate(p.rule_month)),
                Some(rules as f64 * p.rule_month),
            );
        }
        ecr::RepositoryProps::KIND => {
            let gb = a.ecr_gb_per_repository;
            add(
                format!(
                    "image storage, {} GB × {}",
                    number(gb),
                    rate(prices.ecr.storage_gb_month)
                ),
                Some(gb * prices.ecr.storage_gb_month),
            )
        }
        DbInstanceProps::KIND => price_database(item, prices, add),
        kind if FREE.contains(&kind) => {}
        kind => add(
            format!("{kind}: not priced, no price rule for this kind"),
            None,
        ),
    }
}

/// Fargate tasks: desired count × the task definition's size × hours.
fn price_service(
    item: &Item,
    index: &Index,
    prices: &PriceTable,
    add: &mut dyn FnMut(String, Option<f64>),
) {
    let props = item.props;
    let hours = prices.assumptions.hours_per_month;
    let h = number(hours);
    let launch = props.text(ServiceField::LaunchType).unwrap_or("FARGATE");
    if launch != "FARGATE" {
        add(
            format!("tasks on {launch} capacity: not priced, the instances are billed apart"),
            None,
        );
        return;
    }
    let size = props
        .target(ServiceField::TaskDefinitionArn)
        .and_then(|t| index.get(t))
        .and_then(|td| {
            let cpu = td.props.number(TaskDefinitionField::Cpu)?;
            Some((cpu, td.props.number(TaskDefinitionField::Memory)?))
        });
    let count = props.number(ServiceField::DesiredCount);
    let (Some(count), Some((cpu, memory))) = (count, size) else {
        add(
            "Fargate tasks: not priced, desired count or task size unknown".into(),
            None,
        );
        return;
    };
    let (vcpu, gb) = (cpu / 1024.0, memory / 1024.0);
    let p = &prices.fargate;
    add(
        format!(
            "Fargate, {} × ({} vCPU, {} GB) × {h} h",
            number(count),
            number(vcpu),
            number(gb)
        ),
        Some(count * hours * (vcpu * p.vcpu_hour + gb * p.gb_hour)),
    );
    if props.flag(ServiceField::AssignPublicIp) {
        add(
            format!(
                "public IPv4 addresses, {} (one per task) × {h} h",
                number(count)
            ),
            Some(count * hours * prices.public_ipv4.hour),
        );
    }
}

/// An RDS instance: its class per hour and its storage, both doubled for multi-AZ.
fn price_database(item: &Item, prices: &PriceTable, add: &mut dyn FnMut(String, Option<f64>)) {
    let props = item.props;
    let hours = prices.assumptions.hours_per_month;
    let region = &prices.region;
    let engine = props
        .text(DbInstanceField::Engine)
        .unwrap_or("unknown engine");
    let class = props
        .text(DbInstanceField::InstanceClass)
        .unwrap_or("unknown class");
    let (copies, layout) = if props.flag(DbInstanceField::MultiAz) {
        (2.0, " multi-AZ")
    } else {
        (1.0, "")
    };
    let instance_rate = prices
        .rds
        .instance_hour
        .get(engine)
        .and_then(|classes| classes.get(class));
    match instance_rate {
        Some(rate_hour) => add(
            format!(
                "database {class} ({engine}{layout}), {} h × {}",
                number(hours),
                rate(*rate_hour)
            ),
            Some(copies * hours * rate_hour),
        ),
        None => add(
            format!("database {class} ({engine}): not priced, no price in the {region} table"),
            None,
        ),
    }
    // Without a storage type RDS uses gp2.
    let storage = props.text(DbInstanceField::StorageType).unwrap_or("gp2");
    match (
        props.number(DbInstanceField::AllocatedStorage),
        prices.rds.storage_gb_month.get(storage),
    ) {
        (Some(gb), Some(rate_gb)) => add(
            format!(
                "database storage, {} GB {storage}{layout} × {}",
                number(gb),
                rate(*rate_gb)
            ),
            Some(copies * gb * rate_gb),
        ),
        (None, _) => add("database storage: not priced, size unknown".into(), None),
        (Some(_), None) => add(
            format!("database storage ({storage}): not priced, no price in the {region} table"),
            None,
        ),
    }
}
