//! `dagform state list/show/rm/mv/pull`: the state read and edited without touching AWS,
//! verified by reading AWS back (nothing deleted, nothing recreated) and by what `plan` then
//! proposes.

mod support;

use std::collections::BTreeMap;
use support::{Emulator, Project, create_zone, run, run_ok};

const FRONTEND_TG: &str = "customer.customer1.target_group.frontend";
const WORKER_LOGS: &str = "customer.customer1.log_group.backend-worker";

/// Every target group in the account: name → ARN.
async fn target_groups(clients: &dagform_aws::AwsClients) -> BTreeMap<String, String> {
    let out = clients.elbv2.describe_target_groups().send().await.unwrap();
    out.target_groups()
        .iter()
        .map(|t| {
            (
                t.target_group_name().unwrap().to_owned(),
                t.target_group_arn().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn log_group_exists(clients: &dagform_aws::AwsClients, name: &str) -> bool {
    let out = clients
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

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("JSON")
}

/// Each planned resource's action, by address.
fn planned_actions(project: &Project, emu: &Emulator) -> BTreeMap<String, String> {
    let plan = json(&run_ok(&mut project.dagform(emu, &["plan", "--json"])));
    plan["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap().to_owned(),
                r["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn state_edits_forget_and_move_records_without_touching_aws() {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    create_zone(&clients, "freeinterestcal.com").await;
    let project = Project::from_example("multi-customer");
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));
    let groups_before = target_groups(&clients).await;

    // Reading: list (whole, or one customer's), show, pull.
    let all = run_ok(&mut project.dagform(&emu, &["state", "list"]));
    assert!(all.lines().any(|l| l == FRONTEND_TG), "{all}");
    assert!(all.lines().any(|l| l.starts_with("shared.")), "{all}");
    let customer1 =
        run_ok(&mut project.dagform(&emu, &["state", "list", "--customer", "customer1"]));
    assert!(customer1.lines().any(|l| l == FRONTEND_TG));
    assert!(
        customer1
            .lines()
            .all(|l| l.starts_with("customer.customer1.")),
        "{customer1}"
    );
    let shown = json(&run_ok(
        &mut project.dagform(&emu, &["state", "show", FRONTEND_TG]),
    ));
    let tg_arn = shown["id"].as_str().unwrap().to_owned();
    assert!(groups_before.values().any(|a| *a == tg_arn), "{shown}");
    let pulled = json(&run_ok(&mut project.dagform(&emu, &["state", "pull"])));
    let serial = pulled["serial"].as_u64().unwrap();
    assert_eq!(pulled, project.state_json());
    let out = run(&mut project.dagform(&emu, &["state", "show", "shared.nothing"]));
    assert_eq!(out.status.code(), Some(1));

    // Moving the target groups elsewhere: what depended on them follows, and `plan` sees the
    // moved records as existing objects no longer in the configuration.
    run_ok(&mut project.dagform(
        &emu,
        &[
            "state",
            "mv",
            "customer.customer1.target_group",
            "customer.customer1.moved_target_group",
        ],
    ));
    let moved = project.state_json();
    assert!(moved["serial"].as_u64().unwrap() > serial);
    let resources = moved["resources"].as_object().unwrap();
    assert!(!resources.contains_key(FRONTEND_TG));
    let moved_tg = &resources["customer.customer1.moved_target_group.frontend"];
    assert_eq!(moved_tg["id"], tg_arn.as_str());
    let rule_deps = resources["customer.customer1.listener_rule.frontend"]["dependencies"]
        .as_array()
        .unwrap();
    assert!(
        rule_deps
            .iter()
            .any(|d| d == "customer.customer1.moved_target_group.frontend")
    );
    assert!(!rule_deps.iter().any(|d| d == FRONTEND_TG));
    let actions = planned_actions(&project, &emu);
    assert_eq!(
        actions["customer.customer1.moved_target_group.frontend"],
        "delete"
    );
    assert_eq!(actions[FRONTEND_TG], "create");
    // A destination already recorded is refused, changing nothing.
    let out = run(&mut project.dagform(
        &emu,
        &[
            "state",
            "mv",
            "customer.customer1.moved_target_group",
            "customer.global.target_group",
        ],
    ));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(project.state_json(), moved);

    // Moved back: nothing to do, and AWS still has the very same target groups.
    run_ok(&mut project.dagform(
        &emu,
        &[
            "state",
            "mv",
            "customer.customer1.moved_target_group",
            "customer.customer1.target_group",
        ],
    ));
    let out = run(&mut project.dagform(&emu, &["plan", "--detailed-exitcode"]));
    assert_eq!(out.status.code(), Some(0), "no changes after moving back");
    assert_eq!(target_groups(&clients).await, groups_before);

    // Forgetting a log group: it stays in AWS, and `plan` would create it again.
    let logs = json(&run_ok(
        &mut project.dagform(&emu, &["state", "show", WORKER_LOGS]),
    ));
    let log_group = logs["id"].as_str().unwrap().to_owned();
    let serial = project.state_json()["serial"].as_u64().unwrap();
    run_ok(&mut project.dagform(&emu, &["state", "rm", WORKER_LOGS]));
    let after = project.state_json();
    assert!(after["serial"].as_u64().unwrap() > serial);
    assert!(after["resources"].get(WORKER_LOGS).is_none());
    assert!(log_group_exists(&clients, &log_group).await, "still in AWS");
    assert_eq!(planned_actions(&project, &emu)[WORKER_LOGS], "create");
    let out = run(&mut project.dagform(&emu, &["state", "rm", WORKER_LOGS]));
    assert_eq!(out.status.code(), Some(1), "nothing left to forget");
}
