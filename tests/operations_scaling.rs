//! Auto scaling end to end: the multi-customer example's scaled services, each customer's copy
//! a scalable target of its own with its policies, read back from Application Auto Scaling;
//! a changed target updated in place, a count moved by scaling not reported as drift, and
//! nothing left after `destroy`.

mod support;

use aws_sdk_applicationautoscaling::types::{ScalableTarget, ScalingPolicy, ServiceNamespace};
use std::collections::BTreeMap;
use support::{Emulator, Project, create_zone, run, run_ok};

const CLUSTER: &str = "dev-task-manager-cluster";
const CUSTOMERS: [&str; 2] = ["global", "customer1"];

async fn targets(clients: &dagform_aws::AwsClients) -> BTreeMap<String, ScalableTarget> {
    let out = clients
        .autoscaling
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Ecs)
        .send()
        .await
        .unwrap();
    out.scalable_targets()
        .iter()
        .map(|t| (t.resource_id().to_owned(), t.clone()))
        .collect()
}

/// policy name → policy
async fn policies(clients: &dagform_aws::AwsClients) -> BTreeMap<String, ScalingPolicy> {
    let out = clients
        .autoscaling
        .describe_scaling_policies()
        .service_namespace(ServiceNamespace::Ecs)
        .send()
        .await
        .unwrap();
    let policies = out.scaling_policies();
    let by_name: BTreeMap<String, ScalingPolicy> = policies
        .iter()
        .map(|p| (p.policy_name().to_owned(), p.clone()))
        .collect();
    assert_eq!(by_name.len(), policies.len(), "one policy per name");
    by_name
}

/// (metric, target value, resource label) of a target-tracking policy.
fn tracking(p: &ScalingPolicy) -> (String, f64, Option<String>) {
    let t = p
        .target_tracking_scaling_policy_configuration()
        .expect("target tracking");
    let m = t
        .predefined_metric_specification()
        .expect("predefined metric");
    (
        m.predefined_metric_type().as_str().to_owned(),
        t.target_value(),
        m.resource_label().map(str::to_owned),
    )
}

/// The example without the tables other features add (alarms, firewall, CI identity):
/// this test looks at scaling alone.
fn without_other_tables(text: &str) -> String {
    let mut skipping = false;
    let mut kept = String::new();
    for line in text.lines() {
        if line.starts_with('[') {
            skipping = ["[alarms", "[waf", "[ci"]
                .iter()
                .any(|t| line.starts_with(t));
        }
        if !skipping {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

fn resource_id(customer: &str, service: &str) -> String {
    format!("service/{CLUSTER}/{customer}-{service}")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_customer_copy_scales_on_its_own_and_destroy_leaves_nothing() {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    create_zone(&clients, "freeinterestcal.com").await;
    let project = Project::with_config(&without_other_tables(
        &Project::from_example("multi-customer").config_text(),
    ));
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));

    // A target per customer per scaled service; the worker has none.
    let live = targets(&clients).await;
    assert_eq!(live.len(), 4, "{:?}", live.keys());
    for c in CUSTOMERS {
        let api = &live[&resource_id(c, "backend-api")];
        assert_eq!((api.min_capacity(), api.max_capacity()), (2, 6));
        let web = &live[&resource_id(c, "frontend")];
        assert_eq!((web.min_capacity(), web.max_capacity()), (2, 4));
        assert!(!live.contains_key(&resource_id(c, "backend-worker")));
    }
    let policies_before = policies(&clients).await;
    assert_eq!(policies_before.len(), 8, "{:?}", policies_before.keys());
    for c in CUSTOMERS {
        let policy = |suffix: &str| &policies_before[&format!("dev-task-manager-{c}-{suffix}")];
        let cpu = policy("backend-api-cpu");
        assert_eq!(cpu.resource_id(), resource_id(c, "backend-api"));
        assert_eq!(
            tracking(cpu),
            ("ECSServiceAverageCPUUtilization".into(), 60.0, None)
        );
        let (metric, value, label) = tracking(policy("backend-api-requests"));
        assert_eq!(
            (metric.as_str(), value),
            ("ALBRequestCountPerTarget", 1000.0)
        );
        let label = label.expect("a resource label");
        assert!(
            label.starts_with("app/dev-task-manager-alb/")
                && label.contains(&format!(
                    "/targetgroup/{}/",
                    dagform_config::naming::elb_name(&format!("dev-task-manager-{c}-backend-api"))
                )),
            "{label}"
        );
        assert_eq!(
            tracking(policy("frontend-memory")),
            ("ECSServiceAverageMemoryUtilization".into(), 70.0, None)
        );
        assert_eq!(
            policy("frontend-cpu").resource_id(),
            resource_id(c, "frontend")
        );
    }

    // Scaling moves a count behind dagform's back: not drift.
    clients
        .ecs
        .update_service()
        .cluster(CLUSTER)
        .service("global-backend-api")
        .desired_count(5)
        .send()
        .await
        .unwrap();
    let plan = run(&mut project.dagform(&emu, &["plan", "--detailed-exitcode"]));
    assert_eq!(plan.status.code(), Some(0), "a scaled count is not drift");

    // A changed bound and target: updated in place.
    let text = project.config_text();
    let changed = text.replace(
        "min = 2, max = 6, cpu_target = 60,",
        "min = 2, max = 8, cpu_target = 45,",
    );
    assert_ne!(text, changed);
    project.write_config(&changed);
    let plan = run_ok(&mut project.dagform(&emu, &["plan"]));
    assert!(
        plan.contains("4 to update") && plan.contains("0 to replace"),
        "{plan}"
    );
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));
    let after = targets(&clients).await;
    for c in CUSTOMERS {
        let id = resource_id(c, "backend-api");
        assert_eq!(after[&id].max_capacity(), 8);
        assert_eq!(
            after[&id].scalable_target_arn(),
            live[&id].scalable_target_arn(),
            "the same target"
        );
    }
    let policies_after = policies(&clients).await;
    assert_eq!(
        policies_after.keys().collect::<Vec<_>>(),
        policies_before.keys().collect::<Vec<_>>()
    );
    for c in CUSTOMERS {
        let name = format!("dev-task-manager-{c}-backend-api-cpu");
        assert_eq!(tracking(&policies_after[&name]).1, 45.0);
        // The emulator issues a new ARN on every PutScalingPolicy (AWS keeps it), so the
        // state must follow what it reports.
        let state = project.state_json();
        let recorded = &state["resources"][format!("customer.{c}.scaling_policy.backend-api.cpu")];
        assert_eq!(
            recorded["outputs"]["arn"].as_str(),
            Some(policies_after[&name].policy_arn())
        );
    }
    // The count scaling set survives the update.
    let services = clients
        .ecs
        .describe_services()
        .cluster(CLUSTER)
        .services("global-backend-api")
        .send()
        .await
        .unwrap();
    assert_eq!(services.services()[0].desired_count(), 5);

    run_ok(&mut project.dagform(&emu, &["destroy", "--yes"]));
    assert!(
        targets(&clients).await.is_empty(),
        "no scalable target left"
    );
    assert!(policies(&clients).await.is_empty(), "no policy left");
}
