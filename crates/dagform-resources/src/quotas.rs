//! The AWS quotas a platform meets, what the planned graph would use of each, and the check
//! that refuses a plan exceeding one before anything is created.
//!
//! Usage is counted from the whole desired graph: what the state already has and the plan
//! keeps, plus what it creates. Objects outside the stack (other stacks' load balancers, roles
//! or records in the same account, region or zone) are not counted, and the messages say so.
//! The limits are AWS's defaults unless the account's applied values could be read
//! (`dagform-aws` reads them through the Service Quotas API).

use crate::ecs::{ServiceField, ServiceProps, TaskDefinitionField, TaskDefinitionProps};
use crate::elbv2::{
    ListenerCertificateField, ListenerCertificateProps, ListenerField, ListenerProps,
    ListenerRuleField, ListenerRuleProps, LoadBalancerProps, TargetGroupProps,
};
use crate::iam::RoleProps;
use crate::route53::{RecordField, RecordProps};
use dagform_core::{Address, KindProperties, NodeSpec, PropertyName, ResourceGraph, Value};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The quotas dagform checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuotaId {
    RulesPerLoadBalancer,
    TargetGroupsPerLoadBalancer,
    CertificatesPerLoadBalancer,
    TargetGroupsPerRegion,
    LoadBalancersPerRegion,
    RecordsPerHostedZone,
    FargateOnDemandVcpu,
    RolesPerAccount,
}

/// What a quota applies to, which decides what counting from one stack's graph misses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One load balancer: the graph holds all of it.
    LoadBalancer,
    /// One hosted zone, which other stacks and people may write to as well.
    HostedZone,
    /// The account in one region.
    Region,
    /// The whole account, every region.
    Account,
}

/// One AWS quota as Service Quotas names it, with AWS's default value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub id: QuotaId,
    /// The Service Quotas service code, e.g. `elasticloadbalancing`.
    pub service_code: &'static str,
    /// The Service Quotas quota code, e.g. `L-7EED9B64`.
    pub quota_code: &'static str,
    /// The quota's name in Service Quotas.
    pub name: &'static str,
    /// AWS's default value, used when the account's applied value cannot be read.
    pub default: f64,
    pub scope: Scope,
    /// What one unit of the quota is, as the messages say it ("listener rules").
    pub counts: &'static str,
    /// Service Quotas keeps the applied value of a global quota in us-east-1.
    pub global: bool,
}

impl Quota {
    pub fn of(id: QuotaId) -> &'static Quota {
        QUOTAS
            .iter()
            .find(|q| q.id == id)
            .expect("every quota id is in the table")
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' ({} {})",
            self.name, self.service_code, self.quota_code
        )
    }
}

/// Every quota checked, with the codes and defaults Service Quotas publishes.
pub const QUOTAS: &[Quota] = &[
    Quota {
        id: QuotaId::RulesPerLoadBalancer,
        service_code: "elasticloadbalancing",
        quota_code: "L-7EED9B64",
        name: "Rules per Application Load Balancer",
        default: 100.0,
        scope: Scope::LoadBalancer,
        // Listeners' default actions are not rules for this quota.
        counts: "listener rules (default rules excluded)",
        global: false,
    },
    Quota {
        id: QuotaId::TargetGroupsPerLoadBalancer,
        service_code: "elasticloadbalancing",
        quota_code: "L-822D1B1B",
        name: "Target Groups per Application Load Balancer",
        default: 100.0,
        scope: Scope::LoadBalancer,
        counts: "target groups",
        global: false,
    },
    Quota {
        id: QuotaId::CertificatesPerLoadBalancer,
        service_code: "elasticloadbalancing",
        quota_code: "L-9365A611",
        name: "Certificates per Application Load Balancer",
        default: 25.0,
        scope: Scope::LoadBalancer,
        counts: "certificates served by SNI (listeners' default ones excluded, as AWS counts)",
        global: false,
    },
    Quota {
        id: QuotaId::TargetGroupsPerRegion,
        service_code: "elasticloadbalancing",
        quota_code: "L-B22855CB",
        name: "Target Groups per Region",
        default: 3000.0,
        scope: Scope::Region,
        counts: "target groups",
        global: false,
    },
    Quota {
        id: QuotaId::LoadBalancersPerRegion,
        service_code: "elasticloadbalancing",
        quota_code: "L-53DA6B97",
        name: "Application Load Balancers per Region",
        default: 50.0,
        scope: Scope::Region,
        counts: "application load balancers",
        global: false,
    },
    Quota {
        id: QuotaId::RecordsPerHostedZone,
        service_code: "route53",
        quota_code: "L-E209CC9F",
        name: "Records per hosted zone",
        default: 10000.0,
        scope: Scope::HostedZone,
        counts: "records",
        global: true,
    },
    Quota {
        id: QuotaId::FargateOnDemandVcpu,
        service_code: "fargate",
        quota_code: "L-3032A538",
        name: "Fargate On-Demand vCPU resource count",
        default: 4000.0,
        scope: Scope::Region,
        counts: "vCPU on Fargate On-Demand",
        global: false,
    },
    Quota {
        id: QuotaId::RolesPerAccount,
        service_code: "iam",
        quota_code: "L-FE177D64",
        name: "Roles per account",
        default: 1000.0,
        scope: Scope::Account,
        counts: "IAM roles",
        global: true,
    },
];

/// How much of one quota one subject of the graph would use.
#[derive(Debug, Clone, PartialEq)]
pub struct Count {
    pub quota: QuotaId,
    /// What uses it: "load balancer shared.alb", "hosted zone shared.zone", "this stack".
    pub subject: String,
    pub amount: f64,
    /// The largest contributors, for quotas summed over many nodes.
    pub detail: Option<String>,
}

/// What the planned graph would use of every quota.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub counts: Vec<Count>,
    /// What could not be counted (a service whose task size is not known before apply).
    pub not_counted: Vec<String>,
}

/// A load balancer, listener, target group or zone a property points at: a node of the graph,
/// or an object outside it named by a literal id or ARN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Node(Address),
    Literal(String),
}

impl Target {
    fn of(value: &Value) -> Option<Target> {
        match value {
            Value::Ref(r) => Some(Target::Node(r.node.clone())),
            Value::Data(Json::String(s)) => Some(Target::Literal(s.clone())),
            _ => None,
        }
    }

    fn describe(&self, what: &str) -> String {
        match self {
            Target::Node(address) => format!("{what} {address}"),
            Target::Literal(id) => format!("{what} {id} (outside this stack)"),
        }
    }
}

fn target(node: &NodeSpec, field: impl PropertyName) -> Option<Target> {
    Target::of(node.properties.get(field.property())?)
}

/// The listener's default forward target group. `DefaultAction` is a tagged enum with no
/// field list of its own; its forward variant names the target group so.
const FORWARD_TARGET_GROUP: &str = "target_group_arn";

fn default_target_group(listener: &NodeSpec) -> Option<Target> {
    match listener
        .properties
        .get(ListenerField::DefaultAction.property())?
    {
        Value::Map(action) => Target::of(action.get(FORWARD_TARGET_GROUP)?),
        Value::Data(Json::Object(action)) => action
            .get(FORWARD_TARGET_GROUP)?
            .as_str()
            .map(|s| Target::Literal(s.to_owned())),
        _ => None,
    }
}

/// A number, also when written as a string (`cpu = "256"`); `None` while unknown.
fn number(node: &NodeSpec, field: impl PropertyName) -> Option<f64> {
    match node.properties.get(field.property())?.as_data()? {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(node: &NodeSpec, field: impl PropertyName) -> Option<&str> {
    node.properties.get(field.property())?.as_data()?.as_str()
}

/// What one load balancer would hold.
struct PerLoadBalancer {
    subject: String,
    rules: usize,
    target_groups: BTreeSet<Target>,
    /// Certificates its listeners serve by SNI, beside their default ones.
    certificates: BTreeSet<Target>,
}

impl PerLoadBalancer {
    fn new(subject: String) -> Self {
        Self {
            subject,
            rules: 0,
            target_groups: BTreeSet::new(),
            certificates: BTreeSet::new(),
        }
    }
}

impl Usage {
    /// Counts what `graph` would use of every quota in [`QUOTAS`].
    pub fn of(graph: &ResourceGraph) -> Usage {
        let mut nodes = graph.topological();
        nodes.sort_by(|a, b| a.address.cmp(&b.address));
        let of_kind = |kind: &'static str| nodes.iter().copied().filter(move |n| n.kind == kind);
        let mut usage = Usage::default();

        // Listeners name their load balancer, rules their listener.
        let mut load_balancers: BTreeMap<Target, PerLoadBalancer> =
            of_kind(LoadBalancerProps::KIND)
                .map(|n| {
                    let lb = Target::Node(n.address.clone());
                    (
                        lb.clone(),
                        PerLoadBalancer::new(lb.describe("load balancer")),
                    )
                })
                .collect();
        let mut listener_lb: BTreeMap<Target, Target> = BTreeMap::new();
        for listener in of_kind(ListenerProps::KIND) {
            let Some(lb) = target(listener, ListenerField::LoadBalancerArn) else {
                continue;
            };
            let per = load_balancers
                .entry(lb.clone())
                .or_insert_with(|| PerLoadBalancer::new(lb.describe("load balancer")));
            per.target_groups.extend(default_target_group(listener));
            listener_lb.insert(Target::Node(listener.address.clone()), lb);
        }
        // A listener certificate counts toward its listener's load balancer; rules that take
        // their listener from one (to wait for the certificate) are on that listener.
        for attachment in of_kind(ListenerCertificateProps::KIND) {
            let Some(listener) = target(attachment, ListenerCertificateField::ListenerArn) else {
                continue;
            };
            let lb = listener_lb
                .get(&listener)
                .cloned()
                .unwrap_or(listener.clone());
            load_balancers
                .entry(lb.clone())
                .or_insert_with(|| {
                    PerLoadBalancer::new(listener.describe("the load balancer of listener"))
                })
                .certificates
                .extend(target(attachment, ListenerCertificateField::CertificateArn));
            listener_lb.insert(Target::Node(attachment.address.clone()), lb);
        }
        for rule in of_kind(ListenerRuleProps::KIND) {
            let Some(listener) = target(rule, ListenerRuleField::ListenerArn) else {
                continue;
            };
            // A rule on a listener outside the graph counts toward that listener's load
            // balancer, whichever it is.
            let lb = listener_lb
                .get(&listener)
                .cloned()
                .unwrap_or(listener.clone());
            let per = load_balancers.entry(lb).or_insert_with(|| {
                PerLoadBalancer::new(listener.describe("the load balancer of listener"))
            });
            per.rules += 1;
            per.target_groups
                .extend(target(rule, ListenerRuleField::TargetGroupArn));
        }
        for per in load_balancers.into_values() {
            usage.push(
                QuotaId::RulesPerLoadBalancer,
                per.subject.clone(),
                per.rules as f64,
                None,
            );
            usage.push(
                QuotaId::TargetGroupsPerLoadBalancer,
                per.subject.clone(),
                per.target_groups.len() as f64,
                None,
            );
            // AWS leaves each listener's default certificate out of this quota.
            usage.push(
                QuotaId::CertificatesPerLoadBalancer,
                per.subject,
                per.certificates.len() as f64,
                None,
            );
        }

        let stack = "this stack".to_owned();
        let region_count = |kind| of_kind(kind).count() as f64;
        usage.push(
            QuotaId::TargetGroupsPerRegion,
            stack.clone(),
            region_count(TargetGroupProps::KIND),
            None,
        );
        usage.push(
            QuotaId::LoadBalancersPerRegion,
            stack.clone(),
            region_count(LoadBalancerProps::KIND),
            None,
        );
        usage.push(
            QuotaId::RolesPerAccount,
            stack.clone(),
            region_count(RoleProps::KIND),
            None,
        );

        let mut records: BTreeMap<Target, usize> = BTreeMap::new();
        for record in of_kind(RecordProps::KIND) {
            if let Some(zone) = target(record, RecordField::ZoneId) {
                *records.entry(zone).or_default() += 1;
            }
        }
        for (zone, count) in records {
            usage.push(
                QuotaId::RecordsPerHostedZone,
                zone.describe("hosted zone"),
                count as f64,
                None,
            );
        }

        let (vcpu, detail) = usage.fargate_vcpu(graph, of_kind(ServiceProps::KIND));
        usage.push(QuotaId::FargateOnDemandVcpu, stack, vcpu, detail);
        usage
    }

    fn push(&mut self, quota: QuotaId, subject: String, amount: f64, detail: Option<String>) {
        self.counts.push(Count {
            quota,
            subject,
            amount,
            detail,
        });
    }

    /// Task cpu / 1024 × desired count over the Fargate services, the largest first in the
    /// detail. A service whose task size is unknown is noted, not guessed.
    fn fargate_vcpu<'a>(
        &mut self,
        graph: &ResourceGraph,
        services: impl Iterator<Item = &'a NodeSpec>,
    ) -> (f64, Option<String>) {
        let mut each: Vec<(f64, String)> = Vec::new();
        for service in services {
            if text(service, ServiceField::LaunchType).is_some_and(|l| l != "FARGATE") {
                continue;
            }
            let task_definition = match target(service, ServiceField::TaskDefinitionArn) {
                Some(Target::Node(address)) => graph.get(&address),
                _ => None,
            }
            .filter(|td| td.kind == TaskDefinitionProps::KIND);
            let cpu = task_definition.and_then(|td| number(td, TaskDefinitionField::Cpu));
            let count = number(service, ServiceField::DesiredCount);
            let (Some(cpu), Some(count)) = (cpu, count) else {
                self.not_counted.push(format!(
                    "{}: desired count or task size unknown before apply, its vCPU not counted",
                    service.address
                ));
                continue;
            };
            let vcpu = cpu / 1024.0;
            each.push((
                count * vcpu,
                format!(
                    "{} {} × {} vCPU",
                    service.address,
                    number_text(count),
                    number_text(vcpu)
                ),
            ));
        }
        let total = each.iter().map(|(v, _)| v).sum();
        each.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        const SHOWN: usize = 3;
        let mut shown: Vec<String> = each.iter().take(SHOWN).map(|(_, s)| s.clone()).collect();
        if each.len() > SHOWN {
            shown.push(format!("{} more", each.len() - SHOWN));
        }
        let detail = (!shown.is_empty()).then(|| shown.join(", "));
        (total, detail)
    }

    /// The highest use of `quota` by any one subject.
    pub fn highest(&self, quota: QuotaId) -> f64 {
        self.counts
            .iter()
            .filter(|c| c.quota == quota)
            .map(|c| c.amount)
            .fold(0.0, f64::max)
    }
}

/// Whole numbers without a fraction, others with up to two decimals.
fn number_text(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        let s = format!("{n:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Where a limit's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The account's applied value, read from Service Quotas.
    Applied,
    /// AWS's default, because the applied value could not be read, and why.
    Default { unread: String },
}

/// The value one quota is checked against.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub value: f64,
    pub source: Source,
}

/// The limit of every quota in [`QUOTAS`].
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    values: BTreeMap<QuotaId, Limit>,
}

impl Limits {
    /// AWS's defaults for every quota, each with `unread` as the reason the account's value is
    /// not known.
    pub fn defaults(unread: &str) -> Limits {
        Limits {
            values: QUOTAS
                .iter()
                .map(|q| {
                    let source = Source::Default {
                        unread: unread.to_owned(),
                    };
                    (
                        q.id,
                        Limit {
                            value: q.default,
                            source,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Records the account's applied value of `quota`.
    pub fn set_applied(&mut self, quota: QuotaId, value: f64) {
        self.values.insert(
            quota,
            Limit {
                value,
                source: Source::Applied,
            },
        );
    }

    /// Falls back to AWS's default for `quota`, saying why the applied value is not known.
    pub fn set_default(&mut self, quota: QuotaId, unread: impl Into<String>) {
        self.values.insert(
            quota,
            Limit {
                value: Quota::of(quota).default,
                source: Source::Default {
                    unread: unread.into(),
                },
            },
        );
    }

    pub fn get(&self, quota: QuotaId) -> &Limit {
        &self.values[&quota]
    }

    /// One line for the plan: how many quotas were checked, against what.
    pub fn summary(&self) -> String {
        let checked = self.values.len();
        let mut unread: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (id, limit) in &self.values {
            if let Source::Default { unread: why } = &limit.source {
                let q = Quota::of(*id);
                unread
                    .entry(why)
                    .or_default()
                    .push(format!("{} {}", q.service_code, q.quota_code));
            }
        }
        let defaults: usize = unread.values().map(Vec::len).sum();
        let reasons = unread
            .iter()
            .map(|(why, codes)| {
                if codes.len() == checked {
                    why.to_string()
                } else {
                    format!("{}: {why}", codes.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        match defaults {
            0 => format!("Quotas: {checked} checked against the account's values."),
            d if d == checked => format!(
                "Quotas: {checked} checked, all against AWS's defaults (could not read the account's values: {reasons})."
            ),
            d => format!(
                "Quotas: {checked} checked against the account's values ({d} defaults: could not read {reasons})."
            ),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static Quota, &Limit)> {
        self.values.iter().map(|(id, l)| (Quota::of(*id), l))
    }
}

/// One quota the plan would exceed, and what would need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    pub quota: &'static Quota,
    pub count: Count,
    pub limit: Limit,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = self.quota;
        write!(
            f,
            "{} would have {} {}",
            self.count.subject,
            number_text(self.count.amount),
            q.counts
        )?;
        if let Some(detail) = &self.count.detail {
            write!(f, " ({detail})")?;
        }
        let outside = match q.scope {
            Scope::LoadBalancer => "",
            Scope::HostedZone => ", not counting the zone's records from elsewhere",
            Scope::Region => ", not counting what else the account holds in the region",
            Scope::Account => ", not counting what else the account holds",
        };
        write!(
            f,
            "{outside}; the quota {q} is {}",
            number_text(self.limit.value)
        )?;
        match &self.limit.source {
            Source::Applied => write!(f, " (the account's applied value)"),
            Source::Default { unread } => write!(
                f,
                " (AWS's default; the account's value could not be read: {unread})"
            ),
        }
    }
}

/// Every quota `usage` would exceed under `limits`.
pub fn check(usage: &Usage, limits: &Limits) -> Vec<Exceeded> {
    usage
        .counts
        .iter()
        .filter_map(|count| {
            let limit = limits.get(count.quota);
            (count.amount > limit.value).then(|| Exceeded {
                quota: Quota::of(count.quota),
                count: count.clone(),
                limit: limit.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecs::{ServiceSpec, TaskDefinitionSpec};
    use crate::elbv2::{
        DefaultAction, HealthCheck, ListenerCertificateSpec, ListenerRuleSpec, ListenerSpec,
        LoadBalancerSpec, TargetGroupSpec,
    };
    use crate::iam::RoleSpec;
    use crate::outputs_of;
    use crate::route53::{RecordSpec, ZoneProps, ZoneSpec};
    use dagform_core::typed::Input;
    use dagform_core::{GraphBuilder, OutputRef};

    /// A graph built by hand, one helper per kind, each returning what others refer to.
    #[derive(Default)]
    struct Graph(GraphBuilder);

    impl Graph {
        fn load_balancer(&mut self, address: &str) -> OutputRef<String> {
            self.0.add(NodeSpec::of(
                address,
                LoadBalancerSpec {
                    name: address.replace('.', "-").into(),
                    scheme: "internet-facing".into(),
                    subnet_ids: vec!["subnet-a", "subnet-b"].into(),
                    security_group_ids: vec!["sg-1"].into(),
                    idle_timeout_seconds: None,
                },
            ));
            outputs_of::<LoadBalancerProps>(&Address::new(address)).arn
        }

        fn target_group(&mut self, address: &str) -> OutputRef<String> {
            self.0.add(NodeSpec::of(
                address,
                TargetGroupSpec {
                    name: address.replace('.', "-").into(),
                    protocol: "HTTP".into(),
                    port: 80.into(),
                    vpc_id: "vpc-1".into(),
                    target_type: "ip".into(),
                    health_check: Input::value(HealthCheck {
                        path: "/".into(),
                        protocol: None,
                        interval_seconds: 30,
                        timeout_seconds: 5,
                        healthy_threshold: 3,
                        unhealthy_threshold: 3,
                        matcher: None,
                    }),
                    deregistration_delay_seconds: None,
                },
            ));
            outputs_of::<TargetGroupProps>(&Address::new(address)).arn
        }

        fn listener(
            &mut self,
            address: &str,
            load_balancer: impl Into<Input<String>>,
            forward_to: Option<&OutputRef<String>>,
        ) -> OutputRef<String> {
            let default_action = match forward_to {
                Some(tg) => DefaultAction::forward_to(tg),
                None => Input::value(DefaultAction::FixedResponse {
                    status_code: "404".into(),
                    content_type: "text/plain".into(),
                    message_body: None,
                }),
            };
            self.0.add(NodeSpec::of(
                address,
                ListenerSpec {
                    load_balancer_arn: load_balancer.into(),
                    port: 443.into(),
                    protocol: "HTTPS".into(),
                    certificate_arn: Some("arn:aws:acm:us-east-1:1:certificate/c".into()),
                    ssl_policy: None,
                    default_action,
                },
            ));
            outputs_of::<ListenerProps>(&Address::new(address)).arn
        }

        /// `count` rules on `listener`, all forwarding to `shared` when given, else each to a
        /// target group of its own.
        fn rules(
            &mut self,
            prefix: &str,
            listener: impl Into<Input<String>> + Clone,
            count: usize,
            shared: Option<&OutputRef<String>>,
        ) {
            for i in 0..count {
                let tg = match shared {
                    Some(tg) => tg.clone(),
                    None => self.target_group(&format!("{prefix}.tg.{i}")),
                };
                self.0.add(NodeSpec::of(
                    format!("{prefix}.rule.{i}"),
                    ListenerRuleSpec {
                        listener_arn: listener.clone().into(),
                        priority: (i as i32 + 1).into(),
                        host_headers: vec![format!("h{i}.example.com")].into(),
                        path_patterns: None,
                        target_group_arn: tg.into(),
                    },
                ));
            }
        }

        fn task_definition(&mut self, address: &str, cpu: &str) -> OutputRef<String> {
            self.0.add(NodeSpec::of(
                address,
                TaskDefinitionSpec {
                    family: address.replace('.', "-").into(),
                    cpu: cpu.into(),
                    memory: "4096".into(),
                    network_mode: "awsvpc".into(),
                    requires_compatibilities: vec!["FARGATE"].into(),
                    execution_role_arn: "arn:aws:iam::1:role/x".into(),
                    task_role_arn: None,
                    containers: Input::value(Vec::new()),
                },
            ));
            outputs_of::<TaskDefinitionProps>(&Address::new(address)).arn
        }

        fn service(
            &mut self,
            address: &str,
            task_definition: impl Into<Input<String>>,
            desired_count: i32,
            launch_type: &str,
        ) {
            self.0.add(NodeSpec::of(
                address,
                ServiceSpec {
                    name: address.replace('.', "-").into(),
                    cluster: "cluster".into(),
                    task_definition_arn: task_definition.into(),
                    desired_count: desired_count.into(),
                    desired_count_scaled: None,
                    launch_type: launch_type.into(),
                    subnet_ids: vec!["subnet-a"].into(),
                    security_group_ids: vec!["sg-1"].into(),
                    assign_public_ip: false.into(),
                    load_balancers: Input::value(Vec::new()),
                    health_check_grace_period_seconds: None,
                    deployment_minimum_healthy_percent: None,
                    deployment_maximum_percent: None,
                    enable_execute_command: None,
                },
            ));
        }

        fn role(&mut self, address: &str) {
            self.0.add(NodeSpec::of(
                address,
                RoleSpec {
                    name: address.replace('.', "-").into(),
                    description: None,
                    trusted_service: Some("ecs-tasks.amazonaws.com".into()),
                    trusted_web_identity: None,
                    managed_policy_arns: Vec::<String>::new().into(),
                    inline_policies: Input::value(BTreeMap::new()),
                },
            ));
        }

        fn zone(&mut self, address: &str) -> OutputRef<String> {
            self.0.add(NodeSpec::of(
                address,
                ZoneSpec {
                    name: "example.com".into(),
                    private_zone: None,
                },
            ));
            outputs_of::<ZoneProps>(&Address::new(address)).id
        }

        fn records(&mut self, prefix: &str, zone: impl Into<Input<String>> + Clone, count: usize) {
            for i in 0..count {
                self.0.add(NodeSpec::of(
                    format!("{prefix}.record.{i}"),
                    RecordSpec {
                        zone_id: zone.clone().into(),
                        name: format!("r{i}.example.com").into(),
                        r#type: "TXT".into(),
                        share_identical: None,
                        ttl: Some(60.into()),
                        records: Some(vec!["x"].into()),
                        alias: None,
                    },
                ));
            }
        }

        fn usage(self) -> Usage {
            Usage::of(&self.0.build().expect("a valid graph"))
        }
    }

    fn amount(usage: &Usage, quota: QuotaId, subject: &str) -> f64 {
        usage
            .counts
            .iter()
            .find(|c| c.quota == quota && c.subject == subject)
            .unwrap_or_else(|| panic!("no count of {quota:?} for {subject}: {usage:#?}"))
            .amount
    }

    fn defaults() -> Limits {
        Limits::defaults("not asked")
    }

    #[test]
    fn the_table_has_one_entry_per_quota_with_distinct_codes() {
        let ids: BTreeSet<QuotaId> = QUOTAS.iter().map(|q| q.id).collect();
        assert_eq!(ids.len(), QUOTAS.len());
        let codes: BTreeSet<(&str, &str)> = QUOTAS
            .iter()
            .map(|q| (q.service_code, q.quota_code))
            .collect();
        assert_eq!(codes.len(), QUOTAS.len());
        assert_eq!(
            Quota::of(QuotaId::RulesPerLoadBalancer).to_string(),
            "'Rules per Application Load Balancer' (elasticloadbalancing L-7EED9B64)"
        );
    }

    #[test]
    fn rules_and_target_groups_count_per_load_balancer_through_their_listeners() {
        let mut g = Graph::default();
        let a = g.load_balancer("shared.alb");
        let b = g.load_balancer("shared.alb.2");
        let fallback = g.target_group("shared.fallback_tg");
        let a_https = g.listener("shared.listener.https", &a, Some(&fallback));
        let a_http = g.listener("shared.listener.http", &a, None);
        let b_https = g.listener("shared.listener.https.2", &b, None);
        g.rules("customer.one", &a_https, 3, None);
        g.rules("customer.two", &a_http, 2, None);
        g.rules("customer.three", &b_https, 4, None);
        let usage = g.usage();
        let (a, b) = ("load balancer shared.alb", "load balancer shared.alb.2");
        assert_eq!(amount(&usage, QuotaId::RulesPerLoadBalancer, a), 5.0);
        assert_eq!(amount(&usage, QuotaId::RulesPerLoadBalancer, b), 4.0);
        // The fallback target group counts too: a listener's default action uses it.
        assert_eq!(amount(&usage, QuotaId::TargetGroupsPerLoadBalancer, a), 6.0);
        assert_eq!(amount(&usage, QuotaId::TargetGroupsPerLoadBalancer, b), 4.0);
        // Default certificates are not counted.
        assert_eq!(amount(&usage, QuotaId::CertificatesPerLoadBalancer, a), 0.0);
        assert_eq!(
            amount(&usage, QuotaId::TargetGroupsPerRegion, "this stack"),
            10.0
        );
        assert_eq!(
            amount(&usage, QuotaId::LoadBalancersPerRegion, "this stack"),
            2.0
        );
    }

    #[test]
    fn sni_certificates_count_toward_their_listeners_load_balancer() {
        let mut g = Graph::default();
        let a = g.load_balancer("shared.alb");
        let b = g.load_balancer("shared.alb.2");
        let a_https = g.listener("shared.listener.https", &a, None);
        let b_https = g.listener("shared.listener.https.2", &b, None);
        for (customer, listener) in [("one", &a_https), ("two", &a_https), ("three", &b_https)] {
            let attachment = format!("customer.{customer}.listener_certificate");
            g.0.add(NodeSpec::of(
                attachment.as_str(),
                ListenerCertificateSpec {
                    listener_arn: listener.into(),
                    certificate_arn: format!("arn:aws:acm:us-east-1:1:certificate/{customer}")
                        .into(),
                },
            ));
            // The customer's rules take their listener from the attachment.
            let through =
                outputs_of::<ListenerCertificateProps>(&Address::new(attachment)).listener_arn;
            g.rules(&format!("customer.{customer}"), &through, 2, None);
        }
        let usage = g.usage();
        let (a, b) = ("load balancer shared.alb", "load balancer shared.alb.2");
        // One per customer on it; the listeners' default ones are not counted.
        assert_eq!(amount(&usage, QuotaId::CertificatesPerLoadBalancer, a), 2.0);
        assert_eq!(amount(&usage, QuotaId::CertificatesPerLoadBalancer, b), 1.0);
        assert_eq!(amount(&usage, QuotaId::RulesPerLoadBalancer, a), 4.0);
        assert_eq!(amount(&usage, QuotaId::RulesPerLoadBalancer, b), 2.0);
        assert!(
            usage
                .counts
                .iter()
                .all(|c| !c.subject.contains("listener_certificate")),
            "{usage:#?}"
        );
    }

    #[test]
    fn a_target_group_used_by_many_rules_counts_once() {
        let mut g = Graph::default();
        let lb = g.load_balancer("shared.alb");
        let tg = g.target_group("shared.tg");
        let listener = g.listener("shared.listener", &lb, Some(&tg));
        g.rules("app", &listener, 7, Some(&tg));
        let usage = g.usage();
        let subject = "load balancer shared.alb";
        assert_eq!(amount(&usage, QuotaId::RulesPerLoadBalancer, subject), 7.0);
        assert_eq!(
            amount(&usage, QuotaId::TargetGroupsPerLoadBalancer, subject),
            1.0
        );
    }

    #[test]
    fn a_load_balancer_with_too_many_rules_is_refused_and_named() {
        let mut g = Graph::default();
        let lb = g.load_balancer("shared.alb");
        let listener = g.listener("shared.listener.https", &lb, None);
        g.rules("customer", &listener, 120, None);
        let usage = g.usage();
        let exceeded = check(&usage, &defaults());
        let rules: Vec<String> = exceeded
            .iter()
            .filter(|e| e.quota.id == QuotaId::RulesPerLoadBalancer)
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            rules,
            vec![
                "load balancer shared.alb would have 120 listener rules (default rules excluded); \
                 the quota 'Rules per Application Load Balancer' (elasticloadbalancing L-7EED9B64) \
                 is 100 (AWS's default; the account's value could not be read: not asked)"
            ]
        );
        // 120 target groups on one load balancer exceed that quota as well; the region's
        // 3000 do not.
        let ids: Vec<QuotaId> = exceeded.iter().map(|e| e.quota.id).collect();
        assert_eq!(
            ids,
            vec![
                QuotaId::RulesPerLoadBalancer,
                QuotaId::TargetGroupsPerLoadBalancer
            ]
        );
    }

    #[test]
    fn exactly_at_the_limit_passes_one_more_fails() {
        for (rules, refused) in [(100, false), (101, true)] {
            let mut g = Graph::default();
            let lb = g.load_balancer("shared.alb");
            let tg = g.target_group("shared.tg");
            let listener = g.listener("shared.listener", &lb, None);
            g.rules("app", &listener, rules, Some(&tg));
            let exceeded = check(&g.usage(), &defaults());
            assert_eq!(!exceeded.is_empty(), refused, "{rules} rules: {exceeded:?}");
        }
    }

    #[test]
    fn rules_on_a_listener_outside_the_graph_count_toward_its_load_balancer() {
        let mut g = Graph::default();
        let arn = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/existing/1/2";
        g.rules("app", arn, 2, None);
        let usage = g.usage();
        let subject = format!("the load balancer of listener {arn} (outside this stack)");
        assert_eq!(amount(&usage, QuotaId::RulesPerLoadBalancer, &subject), 2.0);
    }

    #[test]
    fn an_applied_value_replaces_the_default() {
        let mut g = Graph::default();
        let lb = g.load_balancer("shared.alb");
        let listener = g.listener("shared.listener", &lb, None);
        let tg = g.target_group("shared.tg");
        g.rules("app", &listener, 150, Some(&tg));
        let usage = g.usage();
        let mut limits = defaults();
        limits.set_applied(QuotaId::RulesPerLoadBalancer, 200.0);
        assert!(check(&usage, &limits).is_empty());
        limits.set_applied(QuotaId::RulesPerLoadBalancer, 120.0);
        let exceeded = check(&usage, &limits);
        assert_eq!(exceeded.len(), 1);
        assert!(
            exceeded[0]
                .to_string()
                .ends_with("is 120 (the account's applied value)"),
            "{}",
            exceeded[0]
        );
    }

    #[test]
    fn records_count_per_hosted_zone() {
        let mut g = Graph::default();
        let zone = g.zone("shared.zone");
        g.records("a", &zone, 3);
        g.records("b", "Z0OTHER", 2);
        let usage = g.usage();
        let quota = QuotaId::RecordsPerHostedZone;
        assert_eq!(amount(&usage, quota, "hosted zone shared.zone"), 3.0);
        assert_eq!(
            amount(&usage, quota, "hosted zone Z0OTHER (outside this stack)"),
            2.0
        );
        let mut limits = defaults();
        limits.set_applied(quota, 2.0);
        let exceeded = check(&usage, &limits);
        assert_eq!(exceeded.len(), 1);
        assert!(
            exceeded[0].to_string().starts_with(
                "hosted zone shared.zone would have 3 records, not counting the zone's records from elsewhere; \
                 the quota 'Records per hosted zone' (route53 L-E209CC9F) is 2"
            ),
            "{}",
            exceeded[0]
        );
    }

    #[test]
    fn fargate_vcpu_sums_task_size_times_desired_count() {
        let mut g = Graph::default();
        let small = g.task_definition("app.task.small", "256");
        let big = g.task_definition("app.task.big", "4096");
        g.service("app.service.small", &small, 6, "FARGATE");
        g.service("app.service.big", &big, 1000, "FARGATE");
        // EC2 capacity is not Fargate's quota; a task size unknown is noted, not guessed.
        g.service("app.service.ec2", &big, 50, "EC2");
        g.service(
            "app.service.elsewhere",
            "arn:aws:ecs:us-east-1:1:task-definition/x:1",
            3,
            "FARGATE",
        );
        let usage = g.usage();
        let quota = QuotaId::FargateOnDemandVcpu;
        assert_eq!(amount(&usage, quota, "this stack"), 4001.5);
        assert_eq!(
            usage.not_counted,
            vec![
                "app.service.elsewhere: desired count or task size unknown before apply, its vCPU not counted"
            ]
        );
        let exceeded = check(&usage, &defaults());
        assert_eq!(exceeded.len(), 1);
        assert_eq!(
            exceeded[0].to_string(),
            "this stack would have 4001.5 vCPU on Fargate On-Demand \
             (app.service.big 1000 × 4 vCPU, app.service.small 6 × 0.25 vCPU), \
             not counting what else the account holds in the region; \
             the quota 'Fargate On-Demand vCPU resource count' (fargate L-3032A538) is 4000 \
             (AWS's default; the account's value could not be read: not asked)"
        );
    }

    #[test]
    fn roles_count_for_the_account() {
        let mut g = Graph::default();
        for i in 0..4 {
            g.role(&format!("customer.c{i}.role"));
        }
        let usage = g.usage();
        assert_eq!(amount(&usage, QuotaId::RolesPerAccount, "this stack"), 4.0);
        let mut limits = defaults();
        limits.set_applied(QuotaId::RolesPerAccount, 3.0);
        let exceeded = check(&usage, &limits);
        assert_eq!(exceeded.len(), 1);
        assert!(
            exceeded[0]
                .to_string()
                .contains("4 IAM roles, not counting what else the account holds;"),
            "{}",
            exceeded[0]
        );
    }

    #[test]
    fn an_empty_graph_uses_nothing() {
        let usage = Graph::default().usage();
        assert!(usage.counts.iter().all(|c| c.amount == 0.0), "{usage:#?}");
        assert!(check(&usage, &defaults()).is_empty());
        assert_eq!(usage.highest(QuotaId::FargateOnDemandVcpu), 0.0);
    }

    #[test]
    fn the_summary_says_which_values_are_defaults_and_why() {
        let mut limits = Limits::defaults("emulator");
        assert_eq!(
            limits.summary(),
            "Quotas: 8 checked, all against AWS's defaults (could not read the account's values: emulator)."
        );
        for q in QUOTAS {
            limits.set_applied(q.id, q.default);
        }
        assert_eq!(
            limits.summary(),
            "Quotas: 8 checked against the account's values."
        );
        limits.set_default(QuotaId::RolesPerAccount, "AccessDenied");
        limits.set_default(QuotaId::RecordsPerHostedZone, "AccessDenied");
        assert_eq!(
            limits.summary(),
            "Quotas: 8 checked against the account's values (2 defaults: could not read \
             route53 L-E209CC9F, iam L-FE177D64: AccessDenied)."
        );
    }
}
