//! Conventions of the command line itself, run as the real binary: `validate` works offline,
//! completions and environment variables are declared, and every JSON document carries its
//! format version.

mod support;

use serde_json::Value as Json;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{Emulator, Project, create_zone, run, run_ok};

/// The binary with no AWS credentials and an AWS endpoint nothing listens on: any AWS call
/// would fail (or hang on retries), so a command that succeeds made none.
fn offline() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dagform"));
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "RUST_LOG",
        "DAGFORM_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn validate(config: &Path, extra: &[&str]) -> Output {
    run(offline().arg("validate").arg("-f").arg(config).args(extra))
}

#[test]
fn validate_passes_the_examples_without_aws() {
    for example in ["multi-customer", "priceguard"] {
        let project = Project::from_example(example);
        let started = Instant::now();
        let out = validate(&project.config, &[]);
        assert_eq!(out.status.code(), Some(0), "{example}: {}", stderr(&out));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{example} took {:?}",
            started.elapsed()
        );
        let text = stdout(&out);
        assert!(text.contains("is valid: stack "), "{text}");
        assert!(text.contains(" resources, "), "{text}");

        let out = validate(&project.config, &["--json"]);
        assert_eq!(out.status.code(), Some(0), "{example}: {}", stderr(&out));
        let doc: Json = serde_json::from_str(&stdout(&out)).expect("validate --json");
        assert_eq!(doc["format_version"], 1);
        assert_eq!(doc["valid"], true);
        assert!(
            doc["stack"].as_str().is_some_and(|s| !s.is_empty()),
            "{doc}"
        );
        assert!(doc["resources"].as_u64().unwrap() > 10, "{doc}");
        assert_eq!(doc["errors"], Json::Array(vec![]));
    }
}

#[test]
fn the_config_file_comes_from_dagform_config() {
    let project = Project::from_example("multi-customer");
    let out = run(offline()
        .arg("validate")
        .env("DAGFORM_CONFIG", &project.config)
        .current_dir(project.dir.path().parent().unwrap()));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// The example with one line replaced; returns the new text and the 1-based line changed.
fn broken(example: &str, from: &str, to: &str) -> (String, usize) {
    let project = Project::from_example(example);
    let text = project.config_text();
    let line = text
        .lines()
        .position(|l| l.trim_start().starts_with(from))
        .unwrap_or_else(|| panic!("no line starting `{from}`"))
        + 1;
    let replaced: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == line {
                to.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    (replaced.join("\n") + "\n", line)
}

#[test]
fn validate_names_file_line_and_field_of_a_mistake() {
    let project = Project::from_example("multi-customer");
    let text = project.config_text();
    let cidr_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("cidr"))
        .expect("the example sets a CIDR")
        .to_owned();
    let cases = [
        (cidr_line.as_str(), "cidr = \"10.0.0.0/33\"", "network.cidr"),
        // An unknown key, added under a known one.
        (
            "environment",
            "environment = \"dev\"\ncolour = \"blue\"",
            "stack.colour",
        ),
    ];
    for (from, to, field) in cases {
        let (bad, line) = broken("multi-customer", from.trim_start(), to);
        let line = line + to.matches('\n').count();
        project.write_config(&bad);
        let file = project.config.display().to_string();

        let out = validate(&project.config, &[]);
        assert_eq!(out.status.code(), Some(1), "{to}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("{file}:{line}:")), "{to}: {err}");
        assert!(err.contains(field), "{to}: {err}");

        let out = validate(&project.config, &["--json"]);
        assert_eq!(out.status.code(), Some(1));
        let doc: Json = serde_json::from_str(&stdout(&out)).expect("validate --json");
        assert_eq!(doc["format_version"], 1);
        assert_eq!(doc["valid"], false);
        let e = &doc["errors"][0];
        assert_eq!(e["file"], file.as_str(), "{doc}");
        assert_eq!(e["line"], line, "{doc}");
        assert!(e["field"].as_str().unwrap().contains(field), "{doc}");
        assert!(!e["message"].as_str().unwrap().is_empty(), "{doc}");
    }
}

#[test]
fn validate_reports_an_unreadable_file() {
    let out = validate(Path::new("/nonexistent/dagform.toml"), &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: Json = serde_json::from_str(&stdout(&out)).expect("validate --json");
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["errors"][0]["file"], "/nonexistent/dagform.toml");
    assert_eq!(doc["errors"][0]["line"], Json::Null);
    assert_eq!(doc["stack"], Json::Null);
}

#[test]
fn completions_print_a_script() {
    let script = run_ok(offline().args(["completions", "bash"]));
    assert!(script.contains("dagform"), "{script}");
    assert!(script.contains("validate"), "{script}");
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let script = run_ok(offline().args(["completions", shell]));
        assert!(script.contains("dagform"), "{shell}: {script}");
    }
}

#[test]
fn help_lists_the_environment_variables() {
    let help = run_ok(offline().args(["provision", "--help"]));
    for var in [
        "DAGFORM_CONFIG",
        "DAGFORM_STATE",
        "DAGFORM_PARALLELISM",
        "DAGFORM_POLL_INTERVAL",
        "DAGFORM_WAIT_TIMEOUT",
    ] {
        assert!(help.contains(var), "{var} missing from:\n{help}");
    }
}

/// Every option of every command explains itself: no line of `--help` names a flag alone.
#[test]
fn every_flag_has_a_help_line() {
    let top = run_ok(offline().arg("--help"));
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.contains(&"validate".to_owned()), "{top}");
    let state = ["list", "show", "rm", "mv", "pull"].map(|s| format!("state {s}"));
    for command in commands.iter().cloned().chain(state) {
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push("--help");
        let help = run_ok(offline().args(&args));
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            if !t.starts_with('-') || !line.starts_with("  ") {
                continue;
            }
            // clap puts the help after the flag or, when long, on the next line.
            let described = t.split("  ").filter(|p| !p.trim().is_empty()).count() > 1
                || lines.get(i + 1).is_some_and(|n| {
                    n.starts_with("          ") && !n.trim_start().starts_with('-')
                });
            assert!(described, "`dagform {command}`: bare flag `{t}`:\n{help}");
        }
    }
}

#[test]
fn a_bad_poll_interval_is_refused() {
    let project = Project::from_example("multi-customer");
    let out = run(offline()
        .args(["plan", "-f"])
        .arg(&project.config)
        .env("DAGFORM_POLL_INTERVAL", "soon"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("poll-interval"), "{}", stderr(&out));
}

fn json_of(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// Every JSON document, from a stack provisioned once: each parses and carries the version.
#[tokio::test(flavor = "multi_thread")]
async fn every_json_document_carries_its_format_version() {
    let emu = Emulator::start();
    create_zone(&emu.clients().await, "freeinterestcal.com").await;
    let project = Project::from_example("multi-customer");

    let plan = json_of(&run_ok(&mut project.dagform(&emu, &["plan", "--json"])));
    assert_eq!(plan["format_version"], 1);
    for key in ["quotas", "monthly_cost_usd", "saved_plan", "drift"] {
        assert!(plan.get(key).is_some(), "plan --json lacks {key}");
    }
    let first = &plan["resources"][0];
    for key in ["address", "kind", "action", "changes", "deposed", "reason"] {
        assert!(first.get(key).is_some(), "a resource lacks {key}: {first}");
    }
    let saved = project.dir.path().join("plan.json");
    run_ok(&mut project.dagform(
        &emu,
        &["plan", "--out", saved.to_str().unwrap(), "--refresh=false"],
    ));
    let shown = json_of(&run_ok(emu.dagform().args([
        "show",
        "--json",
        saved.to_str().unwrap(),
    ])));
    assert_eq!(shown["format_version"], 1);
    assert!(shown["saved_plan"].is_object(), "{shown}");

    // provision --json: one event a line as steps start and end, the report last.
    let stream = run_ok(&mut project.dagform(&emu, &["provision", "--yes", "--json"]));
    let events: Vec<Json> = stream.lines().map(json_of).collect();
    assert!(events.iter().all(|e| e["format_version"] == 1), "{stream}");
    for kind in ["step_started", "step_finished"] {
        assert!(events.iter().any(|e| e["type"] == kind), "no {kind}");
    }
    let started = events.iter().find(|e| e["type"] == "step_started").unwrap();
    for key in [
        "step",
        "address",
        "elapsed_seconds",
        "message",
        "at_seconds",
    ] {
        assert!(
            started.get(key).is_some(),
            "an event lacks {key}: {started}"
        );
    }
    let report = events.last().unwrap();
    assert_eq!(report["type"], "report");
    assert_eq!(report["exit_code"], 0);
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "step_finished")
            .count(),
        report["succeeded"].as_array().unwrap().len()
    );

    let outputs = json_of(&run_ok(&mut project.dagform(&emu, &["output", "--json"])));
    assert_eq!(outputs["format_version"], 1);
    assert_eq!(
        outputs["url.customer1"],
        "https://customer1.freeinterestcal.com"
    );
    let status = json_of(&run_ok(&mut project.dagform(&emu, &["status", "--json"])));
    assert_eq!(status["format_version"], 1);
    assert!(status["services"].as_array().is_some_and(|s| !s.is_empty()));
    let state = project.state_json();
    let address = state["resources"]
        .as_object()
        .and_then(|r| r.keys().next())
        .expect("a recorded resource")
        .clone();
    let record = json_of(&run_ok(
        &mut project.dagform(&emu, &["state", "show", &address]),
    ));
    assert_eq!(record["format_version"], 1);
    assert_eq!(record["address"], address.as_str());
    for key in [
        "kind",
        "id",
        "properties",
        "outputs",
        "dependencies",
        "deposed",
        "intent",
    ] {
        assert!(
            record.get(key).is_some(),
            "state show lacks {key}: {record}"
        );
    }

    // Nothing left to do: the plan still has every key, with empty values.
    let plan = json_of(&run_ok(&mut project.dagform(&emu, &["plan", "--json"])));
    assert_eq!(plan["format_version"], 1);
    assert_eq!(plan["has_changes"], false);
    assert_eq!(plan["resources"], Json::Array(vec![]));
    assert_eq!(plan["drift"], Json::Array(vec![]));

    let stream = run_ok(&mut project.dagform(&emu, &["destroy", "--yes", "--json"]));
    let events: Vec<Json> = stream.lines().map(json_of).collect();
    assert!(events.iter().all(|e| e["format_version"] == 1), "{stream}");
    let report = events.last().unwrap();
    assert_eq!(report["type"], "report");
    assert_eq!(report["exit_code"], 0);
    assert!(!report["succeeded"].as_array().unwrap().is_empty());
}
