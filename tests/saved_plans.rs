//! Saved plans: `plan --out` writes exactly what a provision would do, `show` prints it for
//! review, and `provision FILE` applies exactly it, or nothing at all once the state, the
//! configuration or a secret value moved. Provisioning without a terminal needs `--yes` or a
//! saved plan. The real binary, against a private emulator, verified by reading AWS back.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use support::{Emulator, Project, create_zone, run, run_ok, stack_vpcs};

const CLUSTER: &str = "dev-task-manager-cluster";
const SERVICES: [&str; 4] = [
    "global-frontend",
    "customer1-frontend",
    "global-backend-worker",
    "customer1-backend-worker",
];

/// Each service's desired count, as ECS reports it.
async fn desired_counts(clients: &dagform_aws::AwsClients) -> BTreeMap<String, i32> {
    let out = clients
        .ecs
        .describe_services()
        .cluster(CLUSTER)
        .set_services(Some(SERVICES.iter().map(|s| s.to_string()).collect()))
        .send()
        .await
        .unwrap();
    out.services()
        .iter()
        .map(|s| (s.service_name().unwrap().to_owned(), s.desired_count()))
        .collect()
}

fn counts(frontend: i32, worker: i32) -> BTreeMap<String, i32> {
    SERVICES
        .iter()
        .map(|s| {
            let n = if s.ends_with("frontend") {
                frontend
            } else {
                worker
            };
            (s.to_string(), n)
        })
        .collect()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The addresses a saved plan would change.
fn planned_addresses(path: &std::path::Path) -> BTreeSet<String> {
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    saved["plan"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] != "no_op" || r.get("deposed").is_some())
        .map(|r| r["address"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_saved_plan_changes_nothing_and_a_fresh_one_is_applied_exactly() {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    create_zone(&clients, "freeinterestcal.com").await;
    let project = Project::from_example("multi-customer");
    // Without auto scaling, a desired count is the configuration's to set.
    let unscaled: String = project
        .config_text()
        .lines()
        .filter(|l| !l.starts_with("autoscaling ="))
        .map(|l| format!("{l}\n"))
        .collect();
    project.write_config(&unscaled);
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));
    assert_eq!(desired_counts(&clients).await, counts(2, 1));
    let scale_frontends = ["--set", "services.frontend.desired_count=3"];

    // Saved, then another run provisions something else: the state moved under the plan.
    let stale = project.dir.path().join("stale.json");
    let stale_arg = stale.to_str().unwrap();
    run_ok(&mut project.dagform(
        &emu,
        &[&["plan", "--out", stale_arg][..], &scale_frontends].concat(),
    ));
    let mode = std::fs::metadata(&stale).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a saved plan is readable by its owner only");
    run_ok(&mut project.dagform(
        &emu,
        &[
            "provision",
            "--yes",
            "--set",
            "services.backend-worker.desired_count=2",
        ],
    ));
    let out = run(&mut project.dagform(&emu, &["provision", stale_arg]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("is stale") && err.contains("serial"), "{err}");
    assert_eq!(
        desired_counts(&clients).await,
        counts(2, 2),
        "nothing applied"
    );

    // Saved, then the configuration is edited: refused until it is as it was.
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));
    let fresh = project.dir.path().join("fresh.json");
    let fresh_arg = fresh.to_str().unwrap();
    run_ok(&mut project.dagform(
        &emu,
        &[&["plan", "--out", fresh_arg][..], &scale_frontends].concat(),
    ));
    let original = project.config_text();
    project.write_config(&original.replacen("desired_count = 1\n", "desired_count = 2\n", 1));
    let out = run(&mut project.dagform(&emu, &["provision", fresh_arg]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("configuration file changed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        desired_counts(&clients).await,
        counts(2, 1),
        "nothing applied"
    );
    // Passing --set again is refused too: the plan carries its own.
    let out = run(&mut project.dagform(
        &emu,
        &[&["provision", fresh_arg][..], &scale_frontends].concat(),
    ));
    assert_eq!(out.status.code(), Some(1));

    // As it was: exactly the saved steps are applied (no terminal, no --yes needed).
    project.write_config(&original);
    let report = run_ok(&mut project.dagform(&emu, &["provision", fresh_arg, "--json"]));
    // One JSON event a line, the report last.
    let report: serde_json::Value =
        serde_json::from_str(report.lines().last().unwrap()).expect("JSON report");
    let applied: BTreeSet<String> = report["succeeded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["address"].as_str().unwrap().to_owned())
        .collect();
    let planned = planned_addresses(&fresh);
    assert!(!planned.is_empty());
    assert_eq!(applied, planned);
    // The frontends, and their running-tasks alarms, whose threshold is the desired count.
    assert!(
        applied
            .iter()
            .all(|a| a.ends_with("service.frontend") || a.ends_with("alarm.frontend.running_tasks")),
        "{applied:?}"
    );
    assert_eq!(applied.len(), 4, "{applied:?}");
    assert_eq!(desired_counts(&clients).await, counts(3, 1));
    let out = run(&mut project.dagform(
        &emu,
        &[&["plan", "--detailed-exitcode"][..], &scale_frontends].concat(),
    ));
    assert_eq!(out.status.code(), Some(0), "the saved plan converged");
    // Applied once, the plan is stale: the state moved.
    let out = run(&mut project.dagform(&emu, &["provision", fresh_arg]));
    assert_eq!(out.status.code(), Some(1));

    // A saved plan of deletions is applied the same way.
    let teardown = project.dir.path().join("destroy.json");
    let teardown_arg = teardown.to_str().unwrap();
    run_ok(&mut project.dagform(&emu, &["plan", "--destroy", "--out", teardown_arg]));
    run_ok(&mut project.dagform(&emu, &["provision", teardown_arg]));
    assert!(stack_vpcs(&clients, "dev-task-manager").await.is_empty());
    let services = clients
        .ecs
        .describe_services()
        .cluster(CLUSTER)
        .set_services(Some(SERVICES.iter().map(|s| s.to_string()).collect()))
        .send()
        .await
        .unwrap();
    assert!(
        services
            .services()
            .iter()
            .all(|s| s.status() != Some("ACTIVE")),
        "every service deleted"
    );
}

const SECRETS: [(&str, &str); 4] = [
    (
        "PRICEGUARD_DATABASE_URL",
        "postgres://priceguard:pw-9f3k2@db.internal:5432/appdb",
    ),
    (
        "PRICEGUARD_ALLOWED_ORIGINS",
        "https://priceguard.netlify.app",
    ),
    ("PRICEGUARD_STRIPE_SECRET_KEY", "sk_live_51Hx2secretvalue"),
    ("PRICEGUARD_STRIPE_WEBHOOK_SECRET", "whsec_4b7secretvalue"),
];

fn assert_no_secret(text: &str, what: &str) {
    for (_, value) in SECRETS {
        assert!(!text.contains(value), "{what} leaks a secret value");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn show_prints_a_saved_plan_as_plan_does_without_secret_values() {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    let project = Project::from_example("priceguard");
    let path = project.dir.path().join("plan.json");
    let path_arg = path.to_str().unwrap();
    run_ok(
        project
            .dagform(&emu, &["plan", "--out", path_arg])
            .envs(SECRETS),
    );
    assert_no_secret(&std::fs::read_to_string(&path).unwrap(), "the saved plan");
    let planned: serde_json::Value = serde_json::from_str(&run_ok(
        project.dagform(&emu, &["plan", "--json"]).envs(SECRETS),
    ))
    .unwrap();

    // Reviewing needs neither the configuration nor the secrets nor AWS.
    let mut show = emu.dagform();
    show.args(["show", path_arg, "--json"])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
    let shown = run_ok(&mut show);
    assert_no_secret(&shown, "show --json");
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("show --json is JSON");
    assert_eq!(shown["resources"], planned["resources"]);
    assert_eq!(shown["summary"], planned["summary"]);
    assert_eq!(shown["saved_plan"]["basis"]["stack"], planned["stack"]);
    assert!(shown["saved_plan"]["basis"]["state"].is_null());
    let secret_changes: Vec<&serde_json::Value> = shown["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "aws_secretsmanager_secret")
        .flat_map(|r| r["changes"].as_array().unwrap())
        .filter(|c| c["property"] == "value")
        .collect();
    assert_eq!(secret_changes.len(), 4, "{shown}");
    for c in secret_changes {
        assert!(
            c["new"]["value"].as_str().unwrap().starts_with("sha256:"),
            "{c}"
        );
    }
    let text = run_ok(emu.dagform().args(["show", path_arg]));
    assert!(
        text.contains(&format!(
            "Saved plan for stack {}",
            planned["stack"].as_str().unwrap()
        )),
        "{text}"
    );
    assert!(text.contains("Plan: "), "{text}");
    assert_no_secret(&text, "show");

    // Applying re-reads the secret values; one that changed since makes the plan stale.
    let mut changed = SECRETS;
    changed[2].1 = "sk_live_rotated";
    let out = run(project
        .dagform(&emu, &["provision", path_arg])
        .envs(changed));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("a secret value"), "{err}");
    assert_no_secret(&err, "the refusal");
    assert!(!project.state.exists(), "no state written");
    let secrets = clients.secretsmanager.list_secrets().send().await.unwrap();
    assert!(secrets.secret_list().is_empty(), "nothing created");
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_without_a_terminal_needs_yes_or_a_saved_plan() {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    create_zone(&clients, "freeinterestcal.com").await;
    let project = Project::from_example("multi-customer");
    let out = run(&mut project.dagform(&emu, &["provision"]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("without --yes") && err.contains("plan --out"),
        "{err}"
    );
    assert!(stack_vpcs(&clients, "dev-task-manager").await.is_empty());
    assert!(!project.state.exists());
}
