//! Tenants deployed side by side: a run limited to one customer locks only that customer's
//! part of the state, so two customers are provisioned at once from two processes, while a
//! run that may change shared resources excludes every other. Verified by reading AWS back.

mod support;

use dagform_aws::state_s3::S3Parts;
use dagform_core::{FileParts, StateStore, WriteScope};
use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use support::{Emulator, Project, active_services, create_zone, run, run_ok};

const STACK: &str = "dev-task-manager";
const CLUSTER: &str = "dev-task-manager-cluster";
const BUCKET: &str = "team-state";
const KEY: &str = "dagform/dev.json";

/// The multi-customer example, provisioned, with customers `c3` and `c4` then added to the
/// configuration (not provisioned).
async fn provisioned_with_two_newcomers(emu: &Emulator, extra: &str) -> Project {
    create_zone(&emu.clients().await, "freeinterestcal.com").await;
    let project = Project::from_example("multi-customer");
    let text = format!("{}{extra}", project.config_text());
    project.write_config(&text);
    run_ok(&mut project.dagform(emu, &["provision", "--yes"]));
    let newcomers: String = ["c3", "c4"]
        .iter()
        .map(|c| {
            format!(
                "\n[customers.{c}]\ndomain = \"{c}.freeinterestcal.com\"\ndisplay_name = \"{c}\"\n"
            )
        })
        .collect();
    project.write_config(&format!("{text}{newcomers}"));
    project
}

fn spawn(project: &Project, emu: &Emulator, args: &[&str]) -> Child {
    project
        .dagform(emu, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dagform starts")
}

/// Waits for both runs; each must succeed.
fn both_succeed(first: Child, second: Child) {
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a customer's run failed beside the other: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every listener rule's priority and host, across the stack's listeners.
async fn rules(clients: &dagform_aws::AwsClients, state: &serde_json::Value) -> Vec<(u32, String)> {
    let mut rules = Vec::new();
    for (address, record) in state["resources"].as_object().unwrap() {
        if !address.starts_with("shared.listener") {
            continue;
        }
        let listener = record["id"].as_str().unwrap();
        let out = clients
            .elbv2
            .describe_rules()
            .listener_arn(listener)
            .send()
            .await
            .unwrap();
        for r in out.rules() {
            let Ok(priority) = r.priority().unwrap().parse::<u32>() else {
                continue;
            };
            let host = r
                .conditions()
                .iter()
                .filter_map(|c| c.host_header_config())
                .flat_map(|h| h.values())
                .next()
                .cloned()
                .unwrap_or_default();
            rules.push((priority, host));
        }
    }
    rules.sort();
    rules
}

#[tokio::test(flavor = "multi_thread")]
async fn two_customers_are_provisioned_at_once_and_a_whole_stack_run_excludes_them() {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    let project = provisioned_with_two_newcomers(&emu, "").await;

    // The state keeps each customer in a part of its own; the shared part keeps the rest.
    let shared = support::read_json(&project.state);
    assert!(
        shared["resources"]
            .as_object()
            .unwrap()
            .keys()
            .all(|a| !a.starts_with("customer.")),
        "the shared part holds no customer's resources"
    );
    let parts: Vec<String> = project
        .customer_parts()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(parts, ["customer1.json", "global.json"]);

    // While a run holds customer c3's part (here this test, as another process would), a
    // run limited to c4 goes ahead, and one that may change anything is refused naming it.
    let held = StateStore::open_parts(
        Box::new(FileParts::new(&project.state)),
        STACK,
        &WriteScope::Customer("c3".into()),
    )
    .unwrap();
    let refused = run(&mut project.dagform(&emu, &["provision", "--yes"]));
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("c3.json") && stderr.contains("locked"),
        "{stderr}"
    );
    let refused = run(&mut project.dagform(&emu, &["provision", "--yes", "--customer", "c3"]));
    assert_eq!(refused.status.code(), Some(1));
    run_ok(&mut project.dagform(&emu, &["provision", "--yes", "--customer", "c4"]));
    assert!(
        active_services(&clients, CLUSTER)
            .await
            .contains("c4-frontend")
    );
    assert!(
        !active_services(&clients, CLUSTER)
            .await
            .contains("c3-frontend")
    );
    drop(held);

    // And while a run holds the whole stack, a customer's run is refused, naming the shared
    // part, and creates nothing.
    let everything = StateStore::open_parts(
        Box::new(FileParts::new(&project.state)),
        STACK,
        &WriteScope::Everything { customers: vec![] },
    )
    .unwrap();
    let refused = run(&mut project.dagform(&emu, &["provision", "--yes", "--customer", "c3"]));
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("stack.json") && stderr.contains("locked"),
        "{stderr}"
    );
    assert!(
        !active_services(&clients, CLUSTER)
            .await
            .contains("c3-frontend")
    );
    drop(everything);

    // Two processes at once: c3 created, c4's worker changed (one more task), both succeed.
    let c3 = spawn(&project, &emu, &["provision", "--yes", "--customer", "c3"]);
    let c4 = spawn(
        &project,
        &emu,
        &[
            "provision",
            "--yes",
            "--customer",
            "c4",
            "--set",
            "services.backend-worker.desired_count=3",
        ],
    );
    both_succeed(c3, c4);

    let services = active_services(&clients, CLUSTER).await;
    for service in [
        "c3-frontend",
        "c3-backend-api",
        "c3-backend-worker",
        "c4-frontend",
    ] {
        assert!(
            services.contains(service),
            "{service} missing: {services:?}"
        );
    }
    let c4_worker = clients
        .ecs
        .describe_services()
        .cluster(CLUSTER)
        .services("c4-backend-worker")
        .send()
        .await
        .unwrap();
    assert_eq!(c4_worker.services()[0].desired_count(), 3);
    // Each customer's rules kept their own priorities: no two rules share one.
    let state = project.state_json();
    let rules = rules(&clients, &state).await;
    let priorities: BTreeSet<u32> = rules.iter().map(|(p, _)| *p).collect();
    assert_eq!(priorities.len(), rules.len(), "{rules:?}");
    for host in ["c3.freeinterestcal.com", "c4.freeinterestcal.com"] {
        assert!(rules.iter().any(|(_, h)| h == host), "{host}: {rules:?}");
    }
    let parts: Vec<String> = project
        .customer_parts()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        parts,
        ["c3.json", "c4.json", "customer1.json", "global.json"]
    );

    // Nothing left to do but c4's desired count, which only the --set run asked for.
    let plan =
        run(&mut project.dagform(&emu, &["plan", "--customer", "c3", "--detailed-exitcode"]));
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plan.stdout)
    );

    run_ok(&mut project.dagform(&emu, &["destroy", "--yes"]));
    assert!(active_services(&clients, CLUSTER).await.is_empty());
    assert!(
        project.state_json()["resources"]
            .as_object()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn customers_side_by_side_with_the_state_in_s3() {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&emu.sdk_config().await)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let url = format!("s3://{BUCKET}/{KEY}");
    let project =
        provisioned_with_two_newcomers(&emu, &format!("\n[state]\nlocation = \"{url}\"\n")).await;
    // `Project::dagform` passes a local --state; these runs use the configured location.
    let dagform = |args: &[&str]| {
        let mut cmd = emu.dagform();
        cmd.args(args)
            .arg("-f")
            .arg(&project.config)
            .current_dir(project.dir.path());
        cmd
    };
    // The first provision ran with the local state: move it to S3, where parts follow it.
    run_ok(&mut project.dagform(&emu, &["state", "migrate", "--to", &url]));
    let keys = |prefix: &'static str| {
        let s3 = s3.clone();
        async move {
            s3.list_objects_v2()
                .bucket(BUCKET)
                .prefix(prefix)
                .send()
                .await
                .unwrap()
                .contents()
                .iter()
                .map(|o| o.key().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        keys("dagform/dev.json.customers/").await,
        [
            "dagform/dev.json.customers/customer1",
            "dagform/dev.json.customers/global"
        ]
    );

    let spawn_s3 = |customer: &str| {
        dagform(&["provision", "--yes", "--customer", customer])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    both_succeed(spawn_s3("c3"), spawn_s3("c4"));
    let services = active_services(&clients, CLUSTER).await;
    assert!(services.contains("c3-frontend") && services.contains("c4-frontend"));
    // No lock is left behind, and each newcomer has its part.
    let left: Vec<String> = keys("dagform/")
        .await
        .into_iter()
        .filter(|k| k.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let parts = S3Parts::new(
        s3.clone(),
        dagform_aws::state_s3::S3Location::parse(&url)
            .unwrap()
            .unwrap(),
        "test",
    );
    let state = StateStore::load_parts(&parts, STACK).unwrap().unwrap();
    assert!(state.resources.keys().any(|a| a.is_within("customer.c3")));
    assert!(state.resources.keys().any(|a| a.is_within("customer.c4")));

    // A customer's lock left by a killed run: a whole-stack run is refused naming its id, a
    // run for another customer is not, and force-unlock clears it.
    let lock = serde_json::json!({
        "id": "c3-lock-id", "who": "ci@runner-7", "pid": 4242,
        "operation": "dagform provision --customer c3", "since": "2026-12-06T10:00:00Z"
    });
    s3.put_object()
        .bucket(BUCKET)
        .key("dagform/dev.json.customers/c3.lock")
        .body(aws_sdk_s3::primitives::ByteStream::from(
            lock.to_string().into_bytes(),
        ))
        .send()
        .await
        .unwrap();
    let refused = run(&mut dagform(&["provision", "--yes"]));
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("c3-lock-id") && stderr.contains("ci@runner-7"),
        "{stderr}"
    );
    run_ok(&mut dagform(&["provision", "--yes", "--customer", "c4"]));
    run_ok(&mut dagform(&["force-unlock", "--yes", "c3-lock-id"]));
    assert!(keys("dagform/dev.json.customers/c3.lock").await.is_empty());

    run_ok(&mut dagform(&["destroy", "--yes"]));
    assert!(active_services(&clients, CLUSTER).await.is_empty());
}
