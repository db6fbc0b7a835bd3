//! `--customer` and `--target` limit a run to some nodes: verified by reading AWS back that
//! nothing else is touched.

mod support;

use std::collections::BTreeSet;
use support::{Emulator, Project, active_services, create_zone, run, run_ok};

const CLUSTER: &str = "dev-task-manager-cluster";

async fn target_groups(clients: &dagform_aws::AwsClients) -> BTreeSet<String> {
    let out = clients.elbv2.describe_target_groups().send().await.unwrap();
    out.target_groups()
        .iter()
        .map(|t| t.target_group_name().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_customer_is_destroyed_and_recreated_without_touching_anyone_else() {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    create_zone(&clients, "freeinterestcal.com").await;
    let project = Project::from_example("multi-customer");
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));
    let services_before = active_services(&clients, CLUSTER).await;
    let groups_before = target_groups(&clients).await;
    let global_td = clients
        .ecs
        .describe_services()
        .cluster(CLUSTER)
        .services("global-frontend")
        .send()
        .await
        .unwrap()
        .services()[0]
        .task_definition()
        .unwrap()
        .to_owned();

    // The plan for one customer lists only its nodes.
    let plan: serde_json::Value = serde_json::from_str(&run_ok(&mut project.dagform(
        &emu,
        &["plan", "--destroy", "--customer", "customer1", "--json"],
    )))
    .unwrap();
    let planned: Vec<&str> = plan["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert_eq!(planned.len(), 33);
    assert!(
        planned.iter().all(|a| a.starts_with("customer.customer1.")),
        "{planned:?}"
    );

    run_ok(&mut project.dagform(&emu, &["destroy", "--yes", "--customer", "customer1"]));
    // Long target group names are shortened with a hash, so they are computed, not matched.
    let customer1_groups: Vec<String> = ["backend-api", "frontend"]
        .iter()
        .map(|s| dagform_config::naming::elb_name(&format!("dev-task-manager-customer1-{s}")))
        .collect();
    let services = active_services(&clients, CLUSTER).await;
    assert_eq!(
        services,
        services_before
            .iter()
            .filter(|s| !s.starts_with("customer1-"))
            .cloned()
            .collect()
    );
    let groups = target_groups(&clients).await;
    assert_eq!(
        groups,
        groups_before
            .iter()
            .filter(|g| !customer1_groups.contains(g))
            .cloned()
            .collect()
    );
    assert!(
        clients
            .elbv2
            .describe_load_balancers()
            .names("dev-task-manager-alb")
            .send()
            .await
            .is_ok(),
        "shared load balancer untouched"
    );
    let after = clients
        .ecs
        .describe_services()
        .cluster(CLUSTER)
        .services("global-frontend")
        .send()
        .await
        .unwrap()
        .services()[0]
        .task_definition()
        .unwrap()
        .to_owned();
    assert_eq!(after, global_td, "global untouched");

    // Provisioning only customer1 brings back exactly its resources.
    let out =
        run_ok(&mut project.dagform(&emu, &["provision", "--yes", "--customer", "customer1"]));
    assert!(
        out.contains("33 to create") && out.contains("0 to update"),
        "{out}"
    );
    assert_eq!(active_services(&clients, CLUSTER).await, services_before);
    assert_eq!(target_groups(&clients).await, groups_before);
    let again = run_ok(&mut project.dagform(&emu, &["plan"]));
    assert!(again.contains("No changes"), "{again}");

    // --target works on any address; an unknown customer or target is refused.
    let t = run_ok(&mut project.dagform(
        &emu,
        &[
            "plan",
            "--destroy",
            "--target",
            "customer.global.dns_record",
        ],
    ));
    assert!(
        t.contains("customer.global.dns_record") && t.contains("1 to delete"),
        "{t}"
    );
    let bad = run(&mut project.dagform(&emu, &["plan", "--customer", "nobody"]));
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no customer `nobody`"));
}
