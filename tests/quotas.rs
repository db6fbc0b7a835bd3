//! AWS quotas known before anything is created: a configuration that would exceed one is
//! refused by `plan` and by `provision`, naming the quota, and AWS is left untouched; one that
//! fits says what it was checked against. Verified by reading AWS back.

mod support;

use serde_json::Value as Json;
use support::{Emulator, Project, create_zone, run, run_ok, stack_vpcs};

const ZONE: &str = "freeinterestcal.com";
const FARGATE_QUOTA: &str = "'Fargate On-Demand vCPU resource count' (fargate L-3032A538)";

/// The multi-customer example with its frontend at 200 tasks of 16 vCPU per customer: two
/// customers need 6400 vCPU, over AWS's default of 4000, whatever the load balancers.
fn too_many_vcpus() -> String {
    let text = Project::from_example("multi-customer").config_text();
    let frontend = "[services.frontend]\nimage_tag = \"frontend-latest\"\nport = 3000\nhealth_check_path = \"/\"\ncpu = 256\nmemory = 512\ndesired_count = 2\n";
    assert!(text.contains(frontend), "the example's frontend changed");
    text.replace(
        frontend,
        "[services.frontend]\nimage_tag = \"frontend-latest\"\nport = 3000\nhealth_check_path = \"/\"\ncpu = 16384\nmemory = 32768\ndesired_count = 200\n",
    )
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_over_a_quota_is_refused_and_nothing_is_created() {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    create_zone(&clients, ZONE).await;
    let project = Project::with_config(&too_many_vcpus());

    for args in [
        &["plan"][..],
        &["plan", "--json"][..],
        &["provision", "--yes"][..],
    ] {
        let out = run(&mut project.dagform(&emu, args));
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(FARGATE_QUOTA), "{args:?}: {stderr}");
        assert!(
            stderr.contains("would have 6401.5 vCPU on Fargate On-Demand"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("customer.customer1.service.frontend 200 × 16 vCPU"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("is 4000 (AWS's default"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("nothing was changed"), "{args:?}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // Nothing of the stack exists in AWS.
    let vpcs = stack_vpcs(&clients, "dev-task-manager").await;
    assert!(vpcs.is_empty(), "{vpcs:?}");
    let lbs = clients
        .elbv2
        .describe_load_balancers()
        .send()
        .await
        .unwrap();
    assert!(
        lbs.load_balancers().is_empty(),
        "{:?}",
        lbs.load_balancers()
    );
    let clusters = clients.ecs.list_clusters().send().await.unwrap();
    assert!(
        clusters.cluster_arns().is_empty(),
        "{:?}",
        clusters.cluster_arns()
    );
    let roles = clients.iam.list_roles().send().await.unwrap();
    assert!(
        !roles
            .roles()
            .iter()
            .any(|r| r.role_name().starts_with("dev-task-manager")),
        "{:?}",
        roles.roles()
    );

    // The escape hatch plans anyway.
    let plan = run_ok(&mut project.dagform(&emu, &["plan", "--skip-quota-check"]));
    assert!(plan.contains("to create"), "{plan}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_within_the_quotas_says_what_it_was_checked_against() {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    create_zone(&clients, ZONE).await;
    let project = Project::from_example("multi-customer");

    let text = run_ok(&mut project.dagform(&emu, &["plan"]));
    // The emulator's Service Quotas knows only VPC quotas: every value is AWS's default.
    assert!(
        text.contains("Quotas: 8 checked, all against AWS's defaults (could not read"),
        "{text}"
    );

    let json: Json = serde_json::from_str(&run_ok(&mut project.dagform(&emu, &["plan", "--json"])))
        .expect("plan --json stays JSON");
    let quotas = &json["quotas"];
    assert_eq!(quotas["checked"], 8, "{quotas}");
    assert_eq!(quotas["exceeded"], Json::Array(Vec::new()), "{quotas}");
    let limits = quotas["limits"].as_array().expect("limits");
    let fargate = limits
        .iter()
        .find(|l| l["quota_code"] == "L-3032A538")
        .expect("the Fargate quota");
    assert_eq!(fargate["limit"], 4000.0, "{fargate}");
    assert_eq!(fargate["source"], "default", "{fargate}");
    assert!(fargate["unread"].as_str().is_some_and(|u| !u.is_empty()));
    // Two customers × (2 + 1 + 2 tasks of 0.25 vCPU).
    assert_eq!(fargate["highest_use"], 2.5, "{fargate}");
    let rules = limits
        .iter()
        .find(|l| l["quota_code"] == "L-7EED9B64")
        .expect("the rules quota");
    assert!(
        rules["highest_use"].as_f64().is_some_and(|n| n >= 1.0),
        "{rules}"
    );
}
