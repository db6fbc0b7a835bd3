//! Day two: what changed outside dagform. Drift is made with direct SDK calls against a private
//! AWS emulator, then the real `dagform` binary has to report it (`plan`), put it back
//! (`provision`), record it (`refresh`) or adopt objects (`import`); every result is checked
//! by reading AWS back.

mod support;

use dagform_core::kind::Outputs;
use dagform_core::{Current, Observed, OpContext, Properties};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use support::{Emulator, Project, create_zone, op_context, run, run_ok};

const ZONE: &str = "freeinterestcal.com";
const CLUSTER: &str = "dev-task-manager-cluster";
const RULE: &str = "customer.global.listener_rule.frontend";
// Not scaled: its desired count is the configuration's to keep.
const SERVICE: &str = "customer.global.service.backend-worker";
const LOG_GROUP: &str = "customer.global.log_group.frontend";

struct Platform {
    emu: Emulator,
    clients: dagform_aws::AwsClients,
    project: Project,
}

async fn provisioned() -> Platform {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    create_zone(&clients, ZONE).await;
    let project = Project::from_example("multi-customer");
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));
    Platform {
        emu,
        clients,
        project,
    }
}

impl Platform {
    fn dagform(&self, args: &[&str]) -> std::process::Command {
        self.project.dagform(&self.emu, args)
    }

    fn record(&self, address: &str) -> Json {
        let state = self.project.state_json();
        let record = &state["resources"][address];
        assert!(record.is_object(), "{address} is not in the state");
        record.clone()
    }

    fn id(&self, address: &str) -> String {
        self.record(address)["id"].as_str().unwrap().to_owned()
    }

    fn plan_json(&self) -> Json {
        serde_json::from_str(&run_ok(&mut self.dagform(&["plan", "--json"]))).expect("plan JSON")
    }

    async fn rule_priority(&self, arn: &str) -> String {
        let out = self
            .clients
            .elbv2
            .describe_rules()
            .rule_arns(arn)
            .send()
            .await
            .unwrap();
        out.rules()[0].priority().unwrap().to_owned()
    }

    async fn desired_count(&self, service: &str) -> i32 {
        let out = self
            .clients
            .ecs
            .describe_services()
            .cluster(CLUSTER)
            .services(service)
            .send()
            .await
            .unwrap();
        out.services()[0].desired_count()
    }

    async fn log_group_exists(&self, name: &str) -> bool {
        let out = self
            .clients
            .logs
            .describe_log_groups()
            .log_group_name_prefix(name)
            .send()
            .await
            .unwrap();
        out.log_groups()
            .iter()
            .any(|g| g.log_group_name() == Some(name))
    }

    async fn retention(&self, name: &str) -> Option<i32> {
        let out = self
            .clients
            .logs
            .describe_log_groups()
            .log_group_name_prefix(name)
            .send()
            .await
            .unwrap();
        out.log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name))
            .expect("log group")
            .retention_in_days()
    }

    /// Removes a node from the state file, as if dagform had never recorded it.
    fn forget(&self, address: &str) {
        assert!(
            self.project.forget_in_state(address),
            "{address} was recorded"
        );
    }

    /// Changes the rule's priority, the service's desired count and deletes the log group,
    /// all behind dagform's back. Returns the rule's recorded priority.
    async fn drift(&self) -> i64 {
        let priority = self.record(RULE)["properties"]["priority"]
            .as_i64()
            .unwrap();
        self.clients
            .elbv2
            .set_rule_priorities()
            .rule_priorities(
                aws_sdk_elasticloadbalancingv2::types::RulePriorityPair::builder()
                    .rule_arn(self.id(RULE))
                    .priority(777)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        self.clients
            .ecs
            .update_service()
            .cluster(CLUSTER)
            .service("global-backend-worker")
            .desired_count(5)
            .send()
            .await
            .unwrap();
        self.clients
            .logs
            .delete_log_group()
            .log_group_name(self.id(LOG_GROUP))
            .send()
            .await
            .unwrap();
        priority
    }
}

/// The "Changed outside dagform" section of a text plan.
fn drift_section(plan: &str) -> &str {
    let start = plan
        .find("Changed outside dagform:")
        .unwrap_or_else(|| panic!("no drift section:\n{plan}"));
    let end = plan.find("Stack dev-task-manager:").expect("plan lines");
    assert!(start < end, "the drift section comes first:\n{plan}");
    &plan[start..end]
}

/// The lines of `section` from `address`'s line up to the next resource's.
fn lines_of<'a>(section: &'a str, address: &str) -> Vec<&'a str> {
    let mut lines = section.lines().skip_while(|l| !l.contains(address));
    let Some(first) = lines.next() else {
        panic!("{address} is not in:\n{section}");
    };
    std::iter::once(first)
        .chain(lines.take_while(|l| l.starts_with("      ")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_is_reported_apart_and_provision_puts_it_back() {
    let p = provisioned().await;
    let priority = p.drift().await;
    let rule_arn = p.id(RULE);
    let log_group = p.id(LOG_GROUP);
    assert_eq!(p.rule_priority(&rule_arn).await, "777");
    assert_eq!(p.desired_count("global-backend-worker").await, 5);
    assert!(!p.log_group_exists(&log_group).await);

    // Text: a section of its own, before the plan lines.
    let out = run(&mut p.dagform(&["plan"]));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let section = drift_section(&text);
    assert_eq!(
        lines_of(section, RULE)[1].trim(),
        format!("priority: 777 in AWS, {priority} in the configuration")
    );
    assert_eq!(
        lines_of(section, SERVICE)[1].trim(),
        "desired_count: 5 in AWS, 1 in the configuration"
    );
    let deleted = lines_of(section, LOG_GROUP);
    assert!(
        deleted[0].contains("(deleted outside dagform)"),
        "{section}"
    );
    assert_eq!(deleted.len(), 1, "{section}");
    assert_eq!(
        section.lines().filter(|l| l.contains(" [aws_")).count(),
        3,
        "only what changed outside dagform:\n{section}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refreshed 109 resources with "),
        "the refresh is reported: {stderr}"
    );

    // JSON: a `drift` array.
    let plan = p.plan_json();
    let drift: BTreeMap<&str, &Json> = plan["drift"]
        .as_array()
        .expect("drift array")
        .iter()
        .map(|d| (d["address"].as_str().unwrap(), d))
        .collect();
    assert_eq!(
        drift.keys().copied().collect::<Vec<_>>(),
        [RULE, LOG_GROUP, SERVICE]
    );
    assert_eq!(drift[LOG_GROUP]["deleted"], true);
    assert_eq!(drift[RULE]["deleted"], false);
    let rule_change = &drift[RULE]["properties"][0];
    assert_eq!(rule_change["property"], "priority");
    assert_eq!(rule_change["live"], 777);
    assert_eq!(rule_change["configured"]["value"], priority);
    let service_change = &drift[SERVICE]["properties"][0];
    assert_eq!(service_change["property"], "desired_count");
    assert_eq!(service_change["live"], 5);
    assert_eq!(service_change["configured"]["value"], 1);
    let actions: BTreeMap<&str, &str> = plan["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap(),
                r["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(actions[LOG_GROUP], "create");
    assert_eq!(actions[RULE], "update");
    assert_eq!(actions[SERVICE], "update");

    // Provisioning puts everything back, as AWS now reports.
    run_ok(&mut p.dagform(&["provision", "--yes"]));
    assert_eq!(p.rule_priority(&rule_arn).await, priority.to_string());
    assert_eq!(p.desired_count("global-backend-worker").await, 1);
    assert!(p.log_group_exists(&log_group).await);
    assert_eq!(p.retention(&log_group).await, Some(30));

    let again = p.plan_json();
    assert_eq!(again["has_changes"], false, "{again:#}");
    assert_eq!(again["drift"], serde_json::json!([]));
    // And the repair left nothing behind to delete: the recreated group stays.
    run_ok(&mut p.dagform(&["provision", "--yes"]));
    assert!(p.log_group_exists(&log_group).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_records_what_aws_reports_without_changing_aws() {
    let p = provisioned().await;
    let priority = p.drift().await;
    let rule = "shared.security_group_rule.alb_ingress_80";
    let group = p.record(rule)["properties"]["security_group_id"]
        .as_str()
        .unwrap()
        .to_owned();
    p.clients
        .ec2
        .revoke_security_group_ingress()
        .group_id(group)
        .security_group_rule_ids(p.id(rule))
        .send()
        .await
        .unwrap();
    let rule_arn = p.id(RULE);
    let log_group = p.id(LOG_GROUP);

    // Forgetting the missing objects, so the plan below shows no drift for them.
    let out = run_ok(&mut p.dagform(&["refresh", "--yes", "--forget-missing"]));
    assert!(out.contains(&format!("- {LOG_GROUP}")), "{out}");
    assert!(out.contains(&format!("- {rule}")), "{out}");
    assert!(out.contains("desired_count: 1 → 5"), "{out}");
    assert!(
        out.contains(&format!("priority: {priority} → 777")),
        "{out}"
    );

    // The state holds the live values, and no longer the objects that are gone.
    assert_eq!(p.record(SERVICE)["properties"]["desired_count"], 5);
    assert_eq!(p.record(RULE)["properties"]["priority"], 777);
    let state = p.project.state_json();
    assert!(state["resources"].get(LOG_GROUP).is_none());
    assert!(state["resources"].get(rule).is_none());
    // AWS is as the drift left it.
    assert_eq!(p.rule_priority(&rule_arn).await, "777");
    assert_eq!(p.desired_count("global-backend-worker").await, 5);
    assert!(!p.log_group_exists(&log_group).await);

    // Recorded now, so the plan shows plain changes back to the configuration, not drift.
    let plan = p.plan_json();
    assert_eq!(plan["drift"], serde_json::json!([]));
    let service = plan["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == SERVICE)
        .expect("service planned");
    assert_eq!(service["action"], "update");
    let count = service["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["property"] == "desired_count")
        .unwrap();
    assert_eq!(count["old"], 5);
    assert_eq!(count["new"]["value"], 1);

    let again = run_ok(&mut p.dagform(&["refresh", "--yes"]));
    assert!(again.contains("matches AWS"), "{again}");
}

#[tokio::test(flavor = "multi_thread")]
async fn import_adopts_existing_objects_into_the_state() {
    let p = provisioned().await;
    let group = "shared.security_group.frontend";
    let group_id = p.id(group);

    // An object dagform made but lost track of comes back as it was.
    p.forget(group);
    let plan = p.plan_json();
    assert!(
        plan["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["address"] == group && r["action"] == "create"),
        "forgotten, it would be created again"
    );
    let out = run_ok(&mut p.dagform(&["import", group, &group_id]));
    assert!(out.contains(&group_id), "{out}");
    let record = p.record(group);
    assert_eq!(record["id"], group_id.as_str());
    assert_eq!(record["status"], "ready");
    assert_eq!(record["dependencies"], serde_json::json!(["shared.vpc"]));
    assert_eq!(p.plan_json()["has_changes"], false);

    // An object made by hand is adopted, and the plan shows what differs from the
    // configuration instead of a second create.
    let name = p.id(LOG_GROUP);
    p.forget(LOG_GROUP);
    p.clients
        .logs
        .delete_log_group()
        .log_group_name(&name)
        .send()
        .await
        .unwrap();
    p.clients
        .logs
        .create_log_group()
        .log_group_name(&name)
        .send()
        .await
        .unwrap();
    run_ok(&mut p.dagform(&["import", LOG_GROUP, &name]));
    let plan = p.plan_json();
    let planned: Vec<(&str, &str)> = plan["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap(),
                r["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(planned, [(LOG_GROUP, "update")], "{plan:#}");
    run_ok(&mut p.dagform(&["provision", "--yes"]));
    assert_eq!(p.retention(&name).await, Some(30));
    assert_eq!(p.plan_json()["has_changes"], false);

    // Mistakes are refused with the reason, and nothing is recorded.
    let before = p.project.state_json();
    let out = run(&mut p.dagform(&["import", "shared.security_group.frontnd", &group_id]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("did you mean `shared.security_group.frontend`"),
        "{err}"
    );
    let out = run(&mut p.dagform(&["import", group, &group_id]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already in the state"),
        "{out:?}"
    );
    p.forget(group);
    let out = run(&mut p.dagform(&["import", group, "sg-0123456789abcdef0"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no aws_security_group with id `sg-0123456789abcdef0`"),
        "{err}"
    );
    let mut expected = before;
    expected["resources"].as_object_mut().unwrap().remove(group);
    assert_eq!(p.project.state_json()["resources"], expected["resources"]);
}

/// The `refreshed N resources with M AWS calls` line of a run's stderr.
fn refresh_cost(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("refreshed "))
        .unwrap_or_else(|| panic!("no refresh line in {stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[1].parse().unwrap(), words[4].parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_of_the_example_takes_far_fewer_calls_than_resources() {
    let p = provisioned().await;
    let out = run(&mut p.dagform(&["refresh", "--yes"]));
    assert!(out.status.success());
    let (resources, calls) = refresh_cost(&String::from_utf8_lossy(&out.stderr));
    // Every recorded resource but the hosted zone (a lookup of a zone dagform does not own) is read.
    assert_eq!(resources, 109);
    // Read one by one, the 109 resources would take a call each and more (the VPC's DNS
    // attributes, IAM roles' policies and the target groups' attributes add calls of their
    // own). Batched, they take 40 (measured): one describe per kind for subnets, route tables and associations, security
    // groups and rules, Elastic IPs, NAT gateways, load balancers, listeners, target groups,
    // rules (per listener), services (per cluster), log groups (per name prefix), scalable
    // targets and policies (per namespace) and alarms (100 names per call). The bound leaves a
    // little room, and fails when a kind falls back to a call per resource.
    assert!(
        calls <= 48,
        "{calls} AWS calls to refresh {resources} resources"
    );
    // `plan` refreshes the same way.
    let out = run(&mut p.dagform(&["plan"]));
    assert!(out.status.success());
    assert_eq!(
        refresh_cost(&String::from_utf8_lossy(&out.stderr)),
        (resources, calls)
    );
}

/// Every batched read answers exactly what one read per object answers, including for objects
/// that are gone (which make AWS fail a describe by a list of ARNs as a whole).
#[tokio::test(flavor = "multi_thread")]
async fn batched_reads_answer_what_single_reads_answer() {
    let p = provisioned().await;
    let kinds = dagform_aws::kinds(std::sync::Arc::new(p.emu.clients().await));
    let state = p.project.state_json();
    let mut by_kind: BTreeMap<String, Vec<(String, Properties, Outputs)>> = BTreeMap::new();
    for record in state["resources"].as_object().unwrap().values() {
        let as_map = |v: &Json| v.as_object().cloned().unwrap_or_default();
        by_kind
            .entry(record["kind"].as_str().unwrap().to_owned())
            .or_default()
            .push((
                record["id"].as_str().unwrap().to_owned(),
                as_map(&record["properties"]),
                as_map(&record["outputs"]),
            ));
    }
    // Ids of objects that do not exist, one per batched kind.
    let gone = [
        ("aws_vpc", "vpc-0123456789abcdef0"),
        ("aws_subnet", "subnet-0123456789abcdef0"),
        ("aws_route_table", "rtb-0123456789abcdef0"),
        ("aws_route_table_association", "rtbassoc-0123456789abcdef0"),
        ("aws_security_group", "sg-0123456789abcdef0"),
        ("aws_security_group_rule", "sgr-0123456789abcdef0"),
        ("aws_eip", "eipalloc-0123456789abcdef0"),
        ("aws_nat_gateway", "nat-0123456789abcdef0"),
        (
            "aws_lb",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/gone/0123456789abcdef",
        ),
        (
            "aws_lb_listener",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/gone/0123456789abcdef/0123456789abcdef",
        ),
        (
            "aws_lb_target_group",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/gone/0123456789abcdef",
        ),
        (
            "aws_lb_listener_rule",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/gone/0123456789abcdef/0123456789abcdef/0123456789abcdef",
        ),
        (
            "aws_ecs_service",
            "arn:aws:ecs:us-east-1:123456789012:service/dev-task-manager-cluster/gone",
        ),
        ("aws_cloudwatch_log_group", "/ecs/gone"),
        (
            "aws_ecs_task_definition",
            "arn:aws:ecs:us-east-1:123456789012:task-definition/gone:1",
        ),
    ];
    // A record set that is not there, in the stack's own zone.
    let record_zone = by_kind["aws_route53_record"][0]
        .0
        .split_once('_')
        .expect("a record id")
        .0
        .to_owned();
    let gone_record = format!("{record_zone}_gone.freeinterestcal.com_A");
    let gone: Vec<(&str, &str)> = gone
        .into_iter()
        .chain([("aws_route53_record", gone_record.as_str())])
        .collect();
    for &(kind_name, id) in &gone {
        let cluster = by_kind[kind_name][0].2.get("cluster").cloned();
        let mut outputs = Outputs::new();
        if let Some(c) = cluster {
            outputs.insert("cluster".into(), c);
        }
        by_kind
            .get_mut(kind_name)
            .unwrap_or_else(|| panic!("the example has no {kind_name}"))
            .push((id.to_owned(), Properties::new(), outputs));
    }
    // Kinds read by name from their properties: a record like the first, naming one that
    // is not there.
    let gone_target = "service/dev-task-manager-cluster/gone";
    let named: [(&str, &str, serde_json::Value); 3] = [
        (
            "aws_appautoscaling_target",
            gone_target,
            serde_json::json!({ "resource_id": gone_target }),
        ),
        (
            "aws_appautoscaling_policy",
            "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:gone",
            serde_json::json!({ "name": "gone-cpu", "resource_id": gone_target }),
        ),
        (
            "aws_cloudwatch_metric_alarm",
            "dev-task-manager-gone-cpu-high",
            serde_json::json!({ "name": "dev-task-manager-gone-cpu-high" }),
        ),
    ];
    let named_kinds = named.len();
    for (kind_name, id, overrides) in named {
        let records = by_kind
            .get_mut(kind_name)
            .unwrap_or_else(|| panic!("the example has no {kind_name}"));
        let (_, mut properties, outputs) = records[0].clone();
        properties.extend(overrides.as_object().unwrap().clone());
        records.push((id.to_owned(), properties, outputs));
    }
    let ctx: OpContext = op_context("test.batch");
    let mut batched_kinds = 0;
    for (kind_name, records) in &by_kind {
        let kind = kinds.get(kind_name).unwrap();
        if kind.is_data_source() {
            continue;
        }
        let items: Vec<Current<'_>> = records
            .iter()
            .map(|(id, properties, outputs)| Current {
                id,
                properties,
                outputs,
            })
            .collect();
        let mut single: Vec<Option<Observed>> = Vec::new();
        for item in &items {
            single.push(kind.read(&ctx, *item).await.unwrap());
        }
        let many: Vec<Option<Observed>> = kind
            .read_many(&ctx, &items)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(many, single, "{kind_name}");
        if kind.read_batch_size() > 1 {
            batched_kinds += 1;
            assert!(single.iter().any(Option::is_some), "{kind_name}");
            assert!(
                single.last().unwrap().is_none(),
                "{kind_name}: the gone one"
            );
        }
    }
    assert_eq!(batched_kinds, gone.len() + named_kinds);
}
