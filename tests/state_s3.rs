//! The state kept in S3 (the emulator's): provision, plan and destroy with no local file, the
//! lock (held, left by a killed run, cleared with force-unlock), conditional writes that refuse
//! a writer whose view is stale, and `state migrate` in and out of S3.

mod support;

use aws_sdk_s3::primitives::ByteStream;
use dagform_aws::state_s3::{S3Backend, S3Location, S3Parts};
use dagform_core::state::ResourceStatus;
use dagform_core::{Address, ResourceState, StateStore};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{Emulator, Project, create_zone, run, run_ok, stack_vpcs};

const BUCKET: &str = "team-state";
const KEY: &str = "dagform/dev.json";
const STACK: &str = "dev-task-manager";

async fn s3(emu: &Emulator) -> aws_sdk_s3::Client {
    let sdk = emu.sdk_config().await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    )
}

/// The emulator with the team's bucket (dagform never creates it) and the example's zone.
async fn setup() -> (Emulator, aws_sdk_s3::Client) {
    let emu = Emulator::start();
    create_zone(&emu.clients().await, "freeinterestcal.com").await;
    let s3 = s3(&emu).await;
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    (emu, s3)
}

async fn object(s3: &aws_sdk_s3::Client, key: &str) -> Option<serde_json::Value> {
    let out = s3.get_object().bucket(BUCKET).key(key).send().await.ok()?;
    let bytes = out.body.collect().await.unwrap().into_bytes();
    Some(serde_json::from_slice(&bytes).expect("JSON object"))
}

/// The state as S3 holds it, read through dagform's own reader (document plus journal).
fn state_in_s3(s3: &aws_sdk_s3::Client) -> dagform_core::State {
    state_of_stack_in_s3(s3, STACK)
}

fn state_of_stack_in_s3(s3: &aws_sdk_s3::Client, stack: &str) -> dagform_core::State {
    let location = S3Location::parse(&format!("s3://{BUCKET}/{KEY}"))
        .unwrap()
        .unwrap();
    StateStore::load_parts(&S3Parts::new(s3.clone(), location, "test"), stack)
        .unwrap()
        .expect("a state in S3")
}

/// `dagform ARGS -f CONFIG` in the project's folder, with no `--state`: the configuration's
/// `[state] location` decides.
fn dagform(project: &Project, emu: &Emulator, args: &[&str]) -> Command {
    let mut cmd = emu.dagform();
    cmd.args(args)
        .arg("-f")
        .arg(&project.config)
        .current_dir(project.config.parent().unwrap());
    cmd
}

/// The multi-customer example with its state in the team's bucket.
fn project_in_s3() -> Project {
    let project = Project::from_example("multi-customer");
    let text = project.config_text();
    project.write_config(&format!(
        "{text}\n[state]\nlocation = \"s3://{BUCKET}/{KEY}\"\n"
    ));
    project
}

fn no_local_state(dir: &Path) {
    assert!(
        !dir.join("state").exists(),
        "no local state folder may be written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_plan_and_destroy_keep_the_state_in_s3_only() {
    let (emu, s3) = setup().await;
    let project = project_in_s3();
    let dir = project.config.parent().unwrap().to_owned();

    run_ok(&mut dagform(&project, &emu, &["provision", "--yes"]));
    no_local_state(&dir);
    let state = state_in_s3(&s3);
    assert_eq!(state.stack, STACK);
    let vpc = &state.resources[&Address::from("shared.vpc")];
    let vpcs = stack_vpcs(&emu.clients().await, STACK).await;
    assert_eq!(vpcs.len(), 1);
    assert_eq!(
        vpc.id.as_deref(),
        vpcs[0].vpc_id(),
        "the state names the real VPC"
    );
    assert!(
        object(&s3, &format!("{KEY}.lock")).await.is_none(),
        "the lock is released when the run ends"
    );

    let plan = run_ok(&mut dagform(&project, &emu, &["plan"]));
    assert!(plan.contains("No changes"), "{plan}");

    run_ok(&mut dagform(&project, &emu, &["destroy", "--yes"]));
    no_local_state(&dir);
    assert!(state_in_s3(&s3).resources.is_empty());
    assert!(stack_vpcs(&emu.clients().await, STACK).await.is_empty());
    // The bucket is the team's: it stays.
    s3.head_bucket().bucket(BUCKET).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_runs_lock_refuses_others_until_force_unlock() {
    let (emu, s3) = setup().await;
    let project = project_in_s3();
    let state_url = format!("s3://{BUCKET}/{KEY}");

    // A run killed mid-walk (kill -9: nothing of it runs after) leaves its lock behind.
    let mut child = dagform(
        &project,
        &emu,
        &["provision", "--yes", "--parallelism", "2"],
    )
    .env("DAGFORM_POLL_INTERVAL", "2s")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut done = 0;
    while done < 3 {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "run ended early");
        done += usize::from(line.contains('✓'));
    }
    let lock = object(&s3, &format!("{KEY}.lock"))
        .await
        .expect("a lock while the run is going");
    let id = lock["id"].as_str().unwrap().to_owned();
    assert!(lock["operation"].as_str().unwrap().contains("provision"));
    child.kill().unwrap();
    child.wait().unwrap();
    let before = state_in_s3(&s3);
    assert!(
        !before.resources.is_empty(),
        "what the run made is recorded"
    );

    // Every writer is refused, naming the lock; a reader is not.
    let refused = run(&mut dagform(&project, &emu, &["provision", "--yes"]));
    assert_eq!(refused.status.code(), Some(1));
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        text.contains(&id) && text.contains("force-unlock"),
        "{text}"
    );
    let waited = run(&mut dagform(
        &project,
        &emu,
        &["state", "rm", "--lock-timeout", "3s", "shared.vpc"],
    ));
    assert_eq!(waited.status.code(), Some(1), "still held after waiting");
    run_ok(&mut dagform(&project, &emu, &["plan"]));
    assert_eq!(
        state_in_s3(&s3).serial,
        before.serial,
        "nothing was written"
    );

    // force-unlock asks first: without a terminal it needs --yes, and the id must match.
    let asked = run(&mut dagform(&project, &emu, &["force-unlock", &id]));
    assert_eq!(asked.status.code(), Some(1));
    assert!(object(&s3, &format!("{KEY}.lock")).await.is_some());
    let wrong = run(&mut dagform(
        &project,
        &emu,
        &["force-unlock", "--yes", "not-the-id"],
    ));
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains(&id));
    run_ok(&mut dagform(
        &project,
        &emu,
        &["force-unlock", "--yes", &id],
    ));
    assert!(object(&s3, &format!("{KEY}.lock")).await.is_none());

    // The re-run carries on from what the killed one recorded, with --state on the line.
    run_ok(&mut dagform(
        &project,
        &emu,
        &["provision", "--yes", "--state", &state_url],
    ));
    let plan = run_ok(&mut dagform(&project, &emu, &["plan"]));
    assert!(plan.contains("No changes"), "{plan}");
    assert_eq!(stack_vpcs(&emu.clients().await, STACK).await.len(), 1);
}

fn record(id: &str) -> ResourceState {
    ResourceState {
        kind: "test".into(),
        status: ResourceStatus::Ready,
        id: Some(id.into()),
        properties: Default::default(),
        outputs: Default::default(),
        dependencies: vec![],
        deposed: vec![],
        intent: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_whose_view_is_stale_is_refused_and_loses_nothing() {
    let emu = Emulator::start();
    let s3 = s3(&emu).await;
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let location = S3Location::parse(&format!("s3://{BUCKET}/{KEY}"))
        .unwrap()
        .unwrap();
    let open = |operation: &'static str| {
        let (s3, location) = (s3.clone(), location.clone());
        async move {
            let backend = S3Backend::locked(s3, location, operation, Duration::ZERO).await?;
            StateStore::open_in(Box::new(backend), "s")
        }
    };

    let mut first = open("first").await.unwrap();
    first.put("a".into(), record("a-1")).unwrap();
    first.persist().unwrap();
    // A second writer while the lock is held is refused at once.
    let err = open("second").await.unwrap_err();
    assert!(err.to_string().contains("first"), "{err}");

    // The lock broken by hand: a second writer gets in and records its own change.
    s3.delete_object()
        .bucket(BUCKET)
        .key(format!("{KEY}.lock"))
        .send()
        .await
        .unwrap();
    let mut second = open("second").await.unwrap();
    second.put("b".into(), record("b-1")).unwrap();
    second.persist().unwrap();

    // The first writer's next write is refused: it would overwrite what it never saw.
    first.stage_put("c".into(), record("c-1"));
    let err = first.persist().unwrap_err();
    assert!(
        matches!(err, dagform_core::Error::StateConflict { .. }),
        "{err}"
    );
    let err = first.put("d".into(), record("d-1")).unwrap_err();
    assert!(
        matches!(err, dagform_core::Error::StateConflict { .. }),
        "{err}"
    );
    drop(first);
    let stored = state_of_stack_in_s3(&s3, "s");
    assert_eq!(
        stored.resources[&Address::from("a")].id.as_deref(),
        Some("a-1")
    );
    assert_eq!(
        stored.resources[&Address::from("b")].id.as_deref(),
        Some("b-1")
    );
    assert!(!stored.resources.contains_key(&Address::from("c")));
    drop(second);
}

#[tokio::test(flavor = "multi_thread")]
async fn state_migrates_into_s3_and_back_refusing_another_lineage() {
    let (emu, s3) = setup().await;
    let project = Project::from_example("multi-customer");
    let local = project.state.to_str().unwrap().to_owned();
    let url = format!("s3://{BUCKET}/{KEY}");
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));
    let before = project.state_json();

    run_ok(&mut project.dagform(&emu, &["state", "migrate", "--to", &url]));
    let moved = state_in_s3(&s3);
    assert_eq!(
        moved.lineage.to_string(),
        before["lineage"].as_str().unwrap()
    );
    assert_eq!(moved.serial, before["serial"].as_u64().unwrap());
    let plan = run_ok(&mut dagform(&project, &emu, &["plan", "--state", &url]));
    assert!(plan.contains("No changes"), "{plan}");

    // Another stack's history in the way is never overwritten.
    let other = Project::from_example("multi-customer");
    let other_state = other.state.to_str().unwrap().to_owned();
    {
        let mut store = StateStore::open(&other.state, STACK).unwrap();
        store.put("shared.vpc".into(), record("vpc-other")).unwrap();
    }
    let refused = run(&mut dagform(
        &project,
        &emu,
        &["state", "migrate", "--state", &other_state, "--to", &url],
    ));
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("another state"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(state_in_s3(&s3).serial, moved.serial);

    // And back: a provision from S3, then the state moved to a new local file.
    let back = project.config.parent().unwrap().join("back.json");
    run_ok(&mut dagform(
        &project,
        &emu,
        &[
            "state",
            "migrate",
            "--state",
            &url,
            "--to",
            back.to_str().unwrap(),
        ],
    ));
    let plan = run_ok(&mut dagform(
        &project,
        &emu,
        &["plan", "--state", back.to_str().unwrap()],
    ));
    assert!(plan.contains("No changes"), "{plan}");
    assert!(std::path::Path::new(&local).exists(), "the old copy stays");
    // Nothing was recreated along the way.
    assert_eq!(stack_vpcs(&emu.clients().await, STACK).await.len(), 1);

    // Putting a lock object by hand shows writers wait for it, then name it.
    s3.put_object()
        .bucket(BUCKET)
        .key(format!("{KEY}.lock"))
        .body(ByteStream::from_static(
            br#"{"id":"hand-made","who":"ops@laptop","pid":1,"operation":"manual","since":"2026-01-01T00:00:00Z"}"#,
        ))
        .send()
        .await
        .unwrap();
    let refused = run(&mut dagform(
        &project,
        &emu,
        &["state", "rm", "--state", &url, "shared.vpc"],
    ));
    assert_eq!(refused.status.code(), Some(1));
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        text.contains("hand-made") && text.contains("ops@laptop"),
        "{text}"
    );
}
