//! The command line's contract: errors before any AWS call, exit codes, confirmation rules,
//! the state lock and interruption — the real binary, against a private emulator where AWS is
//! needed.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::{Emulator, Project, create_zone, run, run_ok};

/// An environment whose AWS endpoint refuses connections: any AWS call would fail loudly.
fn no_aws(cmd: &mut std::process::Command) -> &mut std::process::Command {
    cmd.env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
}

fn binary() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_dagform"))
}

fn example() -> String {
    Project::from_example("multi-customer").config_text()
}

#[test]
fn a_bad_config_is_refused_with_file_line_and_field_before_any_aws_call() {
    let bad = example().replace("desired_count = 1\n", "desired_count = 1\nreplicas = 2\n");
    let project = Project::with_config(&bad);
    for command in [
        &["plan"][..],
        &["provision", "--yes"],
        &["destroy", "--yes"],
    ] {
        let out = run(no_aws(
            binary()
                .args(command)
                .arg("-f")
                .arg(&project.config)
                .arg("--state")
                .arg(&project.state),
        ));
        assert_eq!(out.status.code(), Some(1), "{command:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let line = bad.lines().position(|l| l.starts_with("replicas")).unwrap() + 1;
        assert!(
            err.contains(&format!("dagform.toml:{line}:")),
            "{command:?}: {err}"
        );
        assert!(
            err.contains("replicas") && err.contains("services.backend-worker"),
            "{command:?}: {err}"
        );
        assert!(
            !err.contains("127.0.0.1:9"),
            "no AWS call was attempted: {err}"
        );
    }
    assert!(!project.state.exists(), "no state written for a bad config");
}

#[test]
fn destroy_refuses_without_yes_when_not_on_a_terminal() {
    let project = Project::with_config(&example());
    let out = run(no_aws(
        binary()
            .arg("destroy")
            .arg("-f")
            .arg(&project.config)
            .arg("--state")
            .arg(&project.state),
    ));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without --yes"));
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_reports_changes_by_exit_code_and_as_json() {
    let emu = Emulator::start();
    create_zone(&emu.clients().await, "freeinterestcal.com").await;
    let project = Project::from_example("multi-customer");
    let out = run(&mut project.dagform(&emu, &["plan", "--detailed-exitcode"]));
    assert_eq!(out.status.code(), Some(2), "changes pending");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("+ shared.vpc [aws_vpc]"), "{text}");
    assert!(text.contains("cidr_block: \"10.0.0.0/16\""), "{text}");
    assert!(text.contains("known after apply"), "{text}");
    assert!(!text.contains('\u{1b}'), "no colour without a terminal");
    let json: serde_json::Value =
        serde_json::from_str(&run_ok(&mut project.dagform(&emu, &["plan", "--json"]))).unwrap();
    assert_eq!(json["has_changes"], true);
    assert_eq!(json["summary"]["create"], 109);
    assert_eq!(
        json["summary"]["read"], 1,
        "the hosted zone is looked up, not created"
    );
    assert!(!project.state.exists(), "plan writes no state");

    run_ok(&mut project.dagform(&emu, &["provision", "--yes", "--parallelism", "4"]));
    let out = run(&mut project.dagform(&emu, &["plan", "--detailed-exitcode"]));
    assert_eq!(out.status.code(), Some(0));
    let outputs: serde_json::Value =
        serde_json::from_str(&run_ok(&mut project.dagform(&emu, &["output", "--json"]))).unwrap();
    assert_eq!(
        outputs["url.customer1"],
        "https://customer1.freeinterestcal.com"
    );
    let lbs = emu
        .clients()
        .await
        .elbv2
        .describe_load_balancers()
        .send()
        .await
        .unwrap();
    assert_eq!(
        outputs["alb_dns_name"],
        lbs.load_balancers()[0].dns_name().unwrap()
    );
    let dns = run_ok(&mut project.dagform(&emu, &["output", "alb_dns_name"]));
    assert_eq!(dns.trim(), lbs.load_balancers()[0].dns_name().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_fails_at_once_naming_the_lock_holder() {
    let emu = Emulator::start();
    let project = Project::from_example("multi-customer");
    let _held = dagform_core::StateStore::open(&project.state, "dev-task-manager").unwrap();
    let started = Instant::now();
    let out = run(&mut project.dagform(&emu, &["provision", "--yes"]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("locked") && err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "fails at once, without waiting"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_finishes_running_calls_saves_state_and_a_rerun_converges() {
    let emu = Emulator::start();
    create_zone(&emu.clients().await, "freeinterestcal.com").await;
    let project = Project::from_example("multi-customer");
    // Slow polling keeps the run going long enough to be interrupted mid-walk.
    let mut child = project
        .dagform(&emu, &["provision", "--yes", "--parallelism", "2"])
        .env("DAGFORM_POLL_INTERVAL", "2s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    // Interrupt once a few steps have completed.
    let mut done = 0;
    while done < 5 {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "run ended early:\n{seen}"
        );
        done += usize::from(line.contains('✓'));
        seen.push_str(&line);
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains("Interrupted"), "{rest}");
    // The state holds exactly what was created, and a re-run finishes the job.
    let state = project.state_json();
    let recorded = state["resources"].as_object().unwrap();
    assert!(
        !recorded.is_empty() && recorded.len() < 70,
        "{}",
        recorded.len()
    );
    // Waits were cancelled, so an object may be recorded as being created (its intent kept
    // for the re-run to adopt), never without a record of which create it was.
    assert!(
        recorded
            .values()
            .all(|r| r["status"] == "ready"
                || (r["status"] == "creating" && r["intent"].is_string())),
        "no half-recorded resource"
    );
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));
    let again = run_ok(&mut project.dagform(&emu, &["plan"]));
    assert!(again.contains("No changes"), "{again}");
    let vpcs = emu
        .clients()
        .await
        .ec2
        .describe_vpcs()
        .send()
        .await
        .unwrap();
    assert_eq!(
        vpcs.vpcs()
            .iter()
            .filter(|v| !v.is_default().unwrap_or(false))
            .count(),
        1,
        "nothing duplicated"
    );
}
