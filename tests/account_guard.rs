//! The account guard: a run with credentials of the wrong AWS account is refused before it
//! changes anything, whether `[stack] account_id` names the account or the state recorded it.

mod support;

use support::{Emulator, Project, create_zone, run, run_ok, stack_vpcs};

const STACK: &str = "dev-task-manager";

/// The multi-customer example pinned to `account` (or not pinned, with `None`).
fn pinned(project: &Project, example: &str, account: Option<&str>) {
    let line = account.map_or(String::new(), |a| format!("account_id = \"{a}\"\n"));
    project.write_config(&example.replacen("[stack]\n", &format!("[stack]\n{line}"), 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wrong_account_is_refused_before_anything_is_created() {
    let emu = Emulator::start();
    create_zone(&emu.clients().await, "freeinterestcal.com").await;
    let project = Project::from_example("multi-customer");
    let example = project.config_text();

    // The emulator's account is 123456789012: a stack pinned elsewhere is refused.
    pinned(&project, &example, Some("111111111111"));
    let out = run(&mut project.dagform(&emu, &["provision", "--yes"]));
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("123456789012")
            && text.contains("111111111111")
            && text.contains("dagform.toml:")
            && text.contains("stack.account_id"),
        "{text}"
    );
    assert!(stack_vpcs(&emu.clients().await, STACK).await.is_empty());
    assert!(!project.state.exists(), "not even a state was written");
    // Reading is allowed: plan still previews.
    run_ok(&mut project.dagform(&emu, &["plan"]));

    // Pinned to the right account it provisions, and the state records the account.
    pinned(&project, &example, Some("123456789012"));
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));
    let state = project.state_json();
    assert_eq!(state["account_id"], "123456789012");
    let serial = state["serial"].clone();

    // Unpinned, against another account: the state's own record refuses it.
    pinned(&project, &example, None);
    let other = Emulator::start_with(&[("MOTO_ACCOUNT_ID", "222222222222")]);
    create_zone(&other.clients().await, "freeinterestcal.com").await;
    for command in [&["provision", "--yes"][..], &["destroy", "--yes"][..]] {
        let out = run(&mut project.dagform(&other, command));
        assert_eq!(out.status.code(), Some(1), "{command:?}");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("belongs to AWS account 123456789012") && text.contains("222222222222"),
            "{text}"
        );
    }
    assert!(stack_vpcs(&other.clients().await, STACK).await.is_empty());
    assert_eq!(
        project.state_json()["serial"],
        serial,
        "the state is untouched"
    );
    // The stack's own account still manages it.
    let plan = run_ok(&mut project.dagform(&emu, &["plan"]));
    assert!(plan.contains("No changes"), "{plan}");
}

#[tokio::test(flavor = "multi_thread")]
async fn profile_selects_the_credentials() {
    let emu = Emulator::start();
    let project = Project::from_example("priceguard");
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        "[team]\naws_access_key_id = team\naws_secret_access_key = team\n",
    )
    .unwrap();
    let with_profile = |profile: &str| {
        let mut cmd = project.dagform(&emu, &["provision", "--yes", "--profile", profile]);
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_CONFIG_FILE", dir.path().join("config"));
        cmd
    };
    let out = run(&mut with_profile("nobody"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !project.state.exists(),
        "refused before anything was written"
    );
    let out = run(&mut with_profile("team"));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("cannot tell which AWS account"),
        "the profile's credentials are used"
    );
    assert_eq!(project.state_json()["account_id"], "123456789012");
}
