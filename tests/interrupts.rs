//! A long wait seen from CI (no terminal): it is reported while it lasts, Ctrl-C ends it at
//! once with exit 130 and the state true to AWS, a second Ctrl-C exits without waiting for
//! anything, and a re-run converges. With `--json` the event stream stays parseable through
//! the interrupt and ends with the report.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::{Emulator, Project, create_zone, run, run_ok, stack_vpcs};

/// An emulator whose certificates take 30 seconds to be issued: the validation step waits.
async fn slow_certificates() -> Emulator {
    let emu = Emulator::start_with(&[("MOTO_ACM_VALIDATION_WAIT", "30")]);
    create_zone(&emu.clients().await, "freeinterestcal.com").await;
    emu
}

/// A run in progress: the child, the reader of its stderr, and its whole stdout once it ends
/// (drained on a thread so a full pipe never stalls the run).
struct Running {
    child: Child,
    stderr: BufReader<std::process::ChildStderr>,
    stdout: JoinHandle<String>,
}

/// Starts `provision --yes` plus `extra` with progress reported every second.
fn provision(project: &Project, emu: &Emulator, extra: &[&str]) -> Running {
    let mut child = project
        .dagform(emu, &[&["provision", "--yes"][..], extra].concat())
        .env("DAGFORM_PROGRESS_INTERVAL", "1s")
        .env("DAGFORM_POLL_INTERVAL", "1s")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut out = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut out, &mut text).unwrap();
        text
    });
    Running {
        child,
        stderr,
        stdout,
    }
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
    let plan = run(&mut project.dagform(emu, &["plan", "--detailed-exitcode"]));
    assert_eq!(plan.status.code(), Some(0), "plan still finds changes");
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

/// Waits for the run to exit: its exit code, how long that took, the rest of its stderr and
/// all of its stdout.
fn exit_of(mut run: Running) -> (Option<i32>, Duration, String, String) {
    let since = Instant::now();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut run.stderr, &mut rest).unwrap();
    let status = run.child.wait().unwrap();
    let stdout = run.stdout.join().unwrap();
    (status.code(), since.elapsed(), rest, stdout)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_is_reported_and_ctrl_c_ends_it_at_once() {
    let emu = slow_certificates().await;
    let project = Project::from_example("multi-customer");
    let mut run = provision(&project, &emu, &["--json"]);

    // Without a terminal: a line as each step starts, and one a second for the long wait.
    let seen = read_until(&mut run.stderr, |l| {
        l.contains("still creating shared.certificate_validation") && l.contains("elapsed")
    });
    assert!(seen.contains("→ create shared.vpc"), "{seen}");

    interrupt(&run.child);
    let (code, took, rest, stdout) = exit_of(run);
    assert_eq!(code, Some(130), "{rest}");
    assert!(
        took < Duration::from_secs(15),
        "the certificate's 30-second wait was cancelled, not sat out ({took:?}):\n{rest}"
    );
    assert!(rest.contains("Interrupted"), "{rest}");

    // stdout is still one JSON object a line, every one versioned, the report last.
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.iter().all(|l| l["format_version"] == 1), "{stdout}");
    let of_type = |kind: &str| lines.iter().filter(|l| l["type"] == kind).count();
    assert!(
        of_type("step_started") > 0 && of_type("step_finished") > 0,
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l["type"] == "step_started"
            && l["address"] == "shared.certificate_validation"
            && l["step"] == "create"
            && l["elapsed_seconds"].is_null()),
        "{stdout}"
    );
    let report = lines.last().expect("a report line");
    assert_eq!(report["type"], "report", "{stdout}");
    assert_eq!(report["cancelled"], true, "{report}");
    assert_eq!(report["exit_code"], 130, "{report}");
    assert_eq!(of_type("report"), 1, "{stdout}");

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
    let mut run = provision(&project, &emu, &[]);
    read_until(&mut run.stderr, |l| l.contains("✓ create shared.vpc"));

    interrupt(&run.child);
    read_until(&mut run.stderr, |l| l.contains("Ctrl-C again"));
    // The first Ctrl-C already ends every wait, so the run may be gone before the second
    // arrives; either way it exits 130 and the state is true to AWS.
    let second_delivered = std::process::Command::new("kill")
        .args(["-INT", &run.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    let (code, took, rest, _) = exit_of(run);
    assert_eq!(code, Some(130), "{rest}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    if second_delivered && !rest.contains("Interrupted after") {
        assert!(rest.contains("interrupted again: exiting now"), "{rest}");
    }
    rerun_converges(&project, &emu).await;
}
