//! A long wait seen from CI (no terminal): it is reported while it lasts, Ctrl-C ends it at
//! once with exit 130 and the state true to AWS, a second Ctrl-C exits without waiting for
//! anything, and a re-run converges.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::{Emulator, Project, create_zone, run_ok, stack_vpcs};

/// An emulator whose certificates take 30 seconds to be issued: the validation step waits.
async fn slow_certificates() -> Emulator {
    let emu = Emulator::start_with(&[("MOTO_ACM_VALIDATION_WAIT", "30")]);
    create_zone(&emu.clients().await, "freeinterestcal.com").await;
    emu
}

/// Starts `provision --yes` with progress reported every second; returns the child and the
/// reader of its stderr.
fn provision(project: &Project, emu: &Emulator) -> (Child, BufReader<std::process::ChildStderr>) {
    let mut child = project
        .dagform(emu, &["provision", "--yes"])
        .env("DAGFORM_PROGRESS_INTERVAL", "1s")
        .env("DAGFORM_POLL_INTERVAL", "1s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    (child, stderr)
}

/// Reads stderr until a line satisfies `done`; returns everything read.
fn read_until(stderr: &mut impl BufRead, done: impl Fn(&str) -> bool) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the run ended first:\n{seen}"
        );
        seen.push_str(&line);
        if done(&line) {
            return seen;
        }
    }
}

/// A re-run finishes the job: nothing left to do afterwards, one VPC; returns its id.
async fn rerun_converges(project: &Project, emu: &Emulator) -> String {
    run_ok(
        project
            .dagform(emu, &["provision", "--yes"])
            .env("DAGFORM_POLL_INTERVAL", "1s"),
    );
    let plan = run_ok(&mut project.dagform(emu, &["plan"]));
    assert!(plan.contains("No changes"), "{plan}");
    let vpcs = stack_vpcs(&emu.clients().await, "dev-task-manager").await;
    assert_eq!(vpcs.len(), 1, "nothing duplicated");
    vpcs[0].vpc_id().unwrap().to_owned()
}

fn interrupt(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the child to exit; how long it took.
fn exit_of(child: &mut Child, stderr: &mut impl BufRead) -> (Option<i32>, Duration, String) {
    let since = Instant::now();
    let mut rest = String::new();
    std::io::Read::read_to_string(stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    (status.code(), since.elapsed(), rest)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_is_reported_and_ctrl_c_ends_it_at_once() {
    let emu = slow_certificates().await;
    let project = Project::from_example("multi-customer");
    let (mut child, mut stderr) = provision(&project, &emu);

    // Without a terminal: a line as each step starts, and one a second for the long wait.
    let seen = read_until(&mut stderr, |l| {
        l.contains("still creating shared.certificate_validation")
    });
    assert!(seen.contains("→ create shared.vpc"), "{seen}");
    let seen = read_until(&mut stderr, |l| {
        l.contains("still creating shared.certificate_validation") && l.contains("elapsed")
    });
    assert!(!seen.is_empty());

    interrupt(&child);
    let (code, took, rest) = exit_of(&mut child, &mut stderr);
    assert_eq!(code, Some(130), "{rest}");
    assert!(
        took < Duration::from_secs(15),
        "the certificate's 30-second wait was cancelled, not sat out ({took:?}):\n{rest}"
    );
    assert!(rest.contains("Interrupted"), "{rest}");

    // A re-run (certificates issued by now, or waited for) converges on the same objects.
    let state = project.state_json();
    let vpc = state["resources"]["shared.vpc"]["id"].clone();
    assert_eq!(
        rerun_converges(&project, &emu).await,
        vpc.as_str().unwrap(),
        "the VPC made before the interrupt"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_ctrl_c_exits_without_waiting_and_a_rerun_converges() {
    let emu = slow_certificates().await;
    let project = Project::from_example("multi-customer");
    let (mut child, mut stderr) = provision(&project, &emu);
    read_until(&mut stderr, |l| l.contains("✓ create shared.vpc"));

    interrupt(&child);
    read_until(&mut stderr, |l| l.contains("Ctrl-C again"));
    interrupt(&child);
    let (code, took, rest) = exit_of(&mut child, &mut stderr);
    assert_eq!(code, Some(130), "{rest}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    rerun_converges(&project, &emu).await;
}
