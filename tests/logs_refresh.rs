//! `dagform logs` on a stack without customers, and `dagform refresh` asking before it records
//! anything and keeping the records of objects deleted outside dagform — the real binary on
//! the PriceGuard example against a private emulator, verified by reading AWS and the state.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{Emulator, Project, run, run_ok};

const SECRETS: [(&str, &str); 4] = [
    (
        "PRICEGUARD_DATABASE_URL",
        "postgres://priceguard:pw@db.internal:5432/appdb",
    ),
    ("PRICEGUARD_ALLOWED_ORIGINS", "https://priceguard.example"),
    ("PRICEGUARD_STRIPE_SECRET_KEY", "sk_test_logs_refresh"),
    ("PRICEGUARD_STRIPE_WEBHOOK_SECRET", "whsec_logs_refresh"),
];
const SERVICE: &str = "priceguard-server";
const GROUP: &str = "/ecs/priceguard-server";
const GROUP_ADDRESS: &str = "app.log_group.priceguard-server";

struct Stack {
    emu: Emulator,
    clients: dagform_aws::AwsClients,
    project: Project,
}

impl Stack {
    fn dagform(&self, args: &[&str]) -> Command {
        let mut cmd = self.project.dagform(&self.emu, args);
        cmd.envs(SECRETS);
        cmd
    }

    /// Provisions; the certificate waiting on records at the outside DNS host is an outcome.
    fn provision(&self) {
        let out = run(&mut self.dagform(&["provision", "--yes"]));
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "provision failed: {:?}",
            out.status
        );
    }

    async fn group_exists(&self) -> bool {
        self.clients
            .logs
            .describe_log_groups()
            .log_group_name_prefix(GROUP)
            .send()
            .await
            .unwrap()
            .log_groups()
            .iter()
            .any(|g| g.log_group_name() == Some(GROUP))
    }

    async fn put_event(&self, stream: &str, message: &str) {
        let _ = self
            .clients
            .logs
            .create_log_stream()
            .log_group_name(GROUP)
            .log_stream_name(stream)
            .send()
            .await;
        self.clients
            .logs
            .put_log_events()
            .log_group_name(GROUP)
            .log_stream_name(stream)
            .log_events(
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(now_ms())
                    .message(message)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
}

/// The service's log group deleted through the SDK, as by hand in the console.
async fn delete_group_behind_dagforms_back(s: &Stack) {
    s.clients
        .logs
        .delete_log_group()
        .log_group_name(GROUP)
        .send()
        .await
        .unwrap();
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn provisioned() -> Stack {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    let project = Project::from_example("priceguard");
    let stack = Stack {
        emu,
        clients,
        project,
    };
    stack.provision();
    assert!(stack.group_exists().await);
    stack
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_takes_the_service_alone_on_a_stack_without_customers() {
    let s = provisioned().await;
    let stream = "ecs/priceguard-server/0123456789abcdef";
    s.put_event(stream, "listening on :4000").await;

    let out = run_ok(&mut s.dagform(&["logs", SERVICE]));
    assert!(
        out.lines()
            .any(|l| l.ends_with(&format!(" {stream} listening on :4000"))),
        "{out}"
    );

    for (args, expected) in [
        (
            vec!["logs", "priceguard-servr"],
            "unknown service `priceguard-servr` (did you mean `priceguard-server`?); \
             the services are: priceguard-server",
        ),
        (
            vec!["logs", "acme", SERVICE],
            "has no customers: name only the service, `dagform logs priceguard-server`",
        ),
    ] {
        let out = run(&mut s.dagform(&args));
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{err}");
    }

    // --follow: the emulator offers no live tail the SDK can read, so polling takes over with
    // one note.
    let mut child = s
        .dagform(&["logs", SERVICE, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = support::Lines::of(&mut child);
    let next = || lines.next();
    assert!(next().ends_with("listening on :4000"));
    s.put_event(stream, "GET /health 200").await;
    assert!(next().ends_with("GET /health 200"));
    assert!(
        lines.none_within(Duration::from_millis(1500)),
        "an event was printed twice"
    );
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("note: live tail unavailable (").count(),
        1,
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "only the note: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_asks_first_and_keeps_the_record_of_a_missing_object() {
    let s = provisioned().await;
    let recorded_id = s.project.state_json()["resources"][GROUP_ADDRESS]["id"].clone();
    assert!(recorded_id.is_string());
    delete_group_behind_dagforms_back(&s).await;

    // Not on a terminal and no --yes: shown, refused, nothing written.
    let stored = || {
        let journal = support::journal_of(&s.project.state);
        (
            std::fs::read(&s.project.state).unwrap(),
            std::fs::read(journal).unwrap_or_default(),
        )
    };
    let before = stored();
    let out = run(&mut s.dagform(&["refresh"]));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("! {GROUP_ADDRESS} [aws_cloudwatch_log_group]")),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pass --yes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stored(), before);

    // --yes: marked missing, the record kept.
    let out = run_ok(&mut s.dagform(&["refresh", "--yes"]));
    assert!(out.contains("1 marked missing, 0 removed"), "{out}");
    let record = s.project.state_json()["resources"][GROUP_ADDRESS].clone();
    assert_eq!(record["status"], "creating", "{record}");
    assert_eq!(record["id"], recorded_id);
    assert_eq!(record["properties"]["name"], GROUP);
    // The plan creates it again.
    let plan = run_ok(&mut s.dagform(&["plan", "--json"]));
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let planned = plan["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == GROUP_ADDRESS)
        .expect("the log group is planned");
    assert_eq!(planned["action"], "create", "{planned}");

    // --forget-missing: the marked record goes.
    let out = run_ok(&mut s.dagform(&["refresh", "--yes", "--forget-missing"]));
    assert!(out.contains("0 marked missing, 1 removed"), "{out}");
    assert!(
        s.project.state_json()["resources"]
            .get(GROUP_ADDRESS)
            .is_none()
    );
    assert!(!s.group_exists().await, "refresh never changes AWS");

    // Provisioning creates what is missing.
    s.provision();
    assert!(s.group_exists().await);
    let record = s.project.state_json()["resources"][GROUP_ADDRESS].clone();
    assert_eq!(record["status"], "ready", "{record}");

    // Provisioning also creates an object from a record marked missing, as a new object.
    delete_group_behind_dagforms_back(&s).await;
    run_ok(&mut s.dagform(&["refresh", "--yes"]));
    assert_eq!(
        s.project.state_json()["resources"][GROUP_ADDRESS]["status"],
        "creating"
    );
    s.provision();
    assert!(s.group_exists().await);
    let record = s.project.state_json()["resources"][GROUP_ADDRESS].clone();
    assert_eq!(record["status"], "ready", "{record}");
    assert!(
        record["id"].is_string() && record.get("intent").is_none(),
        "{record}"
    );
    let out = run_ok(&mut s.dagform(&["refresh"]));
    assert!(out.contains("matches AWS"), "{out}");
}
