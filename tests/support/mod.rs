//! Test support: a private AWS emulator per test, SDK clients pointed at it, and the dagform
//! binary with the environment that targets it.
#![allow(dead_code)]

pub mod faults;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use dagform_aws::AwsClients;

/// A moto server on a free loopback port, stopped when dropped. Starting fails the test
/// loudly: a test that needs AWS never silently skips.
pub struct Emulator {
    child: Child,
    pub port: u16,
    pub endpoint: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

fn moto_server() -> PathBuf {
    if let Ok(p) = std::env::var("DAGFORM_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    workspace_root().join(".venv/bin/moto_server")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn http_get_ok(port: u16, path: &str) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}

/// SDK configuration for an emulator (or a layer in front of one) at `endpoint`, with
/// throwaway credentials.
pub async fn sdk_config_for(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "test", "test", None, None, "emulator",
        ))
        .load()
        .await
}

impl Emulator {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// An emulator with settings of its own, e.g. `MOTO_ACM_VALIDATION_WAIT` (seconds before
    /// a DNS-validated certificate is issued; 1 unless given).
    pub fn start_with(settings: &[(&str, &str)]) -> Self {
        let server = moto_server();
        assert!(
            server.exists(),
            "AWS emulator not installed at {}: run `make test` (it installs moto into .venv)",
            server.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        for _attempt in 0..3 {
            let port = free_port();
            let log = dir.path().join(format!("moto-{port}.log"));
            let log_file = std::fs::File::create(&log).expect("emulator log");
            let mut child = Command::new(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
                .env("MOTO_ACM_VALIDATION_WAIT", "1")
                .envs(settings.iter().copied())
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if http_get_ok(port, "/moto-api/") {
                    return Self {
                        child,
                        port,
                        endpoint: format!("http://127.0.0.1:{port}"),
                        log,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "emulator on port {port} did not start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!("the AWS emulator failed to start three times; see the log above");
    }

    /// SDK configuration for this emulator, with throwaway credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config_for(&self.endpoint).await
    }

    pub async fn clients(&self) -> AwsClients {
        AwsClients::from_sdk_config(&self.sdk_config().await)
    }

    /// Environment for running the dagform binary against this emulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("DAGFORM_POLL_INTERVAL", "200ms".into()),
            ("NO_COLOR", "1".into()),
        ]
    }

    /// A command running the real `dagform` binary against this emulator.
    pub fn dagform(&self) -> Command {
        let Some(bin) = option_env!("CARGO_BIN_EXE_dagform") else {
            panic!("this test target is not built with the dagform binary")
        };
        let mut cmd = Command::new(bin);
        cmd.envs(self.env())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command, printing its output, and returns it; panics with the output on failure
/// when `expect_success` is set.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run dagform");
    eprintln!(
        "$ {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "command failed: {:?}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An operation context for calling kinds directly, with fast polling for the emulator.
pub fn op_context(address: &str) -> dagform_core::OpContext {
    dagform_core::OpContext::new(
        "test",
        dagform_core::Address::new(address),
        dagform_core::kind::PollSettings {
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(60),
        },
    )
}

/// Converts `json!({...})` into resolved properties.
pub fn props(v: serde_json::Value) -> dagform_core::Properties {
    match v {
        serde_json::Value::Object(m) => m,
        other => panic!("properties must be an object, got {other}"),
    }
}

/// The multi-customer example, copied into a private folder with its own state path.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state: PathBuf,
}

impl Project {
    pub fn from_example(name: &str) -> Self {
        let source = workspace_root()
            .join("examples")
            .join(name)
            .join("dagform.toml");
        let text = std::fs::read_to_string(&source).expect("example config");
        Self::with_config(&text)
    }

    pub fn with_config(text: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("dagform.toml");
        std::fs::write(&config, text).expect("write config");
        let state = dir.path().join("state/stack.json");
        Self { dir, config, state }
    }

    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config).expect("config")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("write config");
    }

    /// `dagform <args> -f <config> --state <state>` against `emu`.
    pub fn dagform(&self, emu: &Emulator, args: &[&str]) -> Command {
        let mut cmd = emu.dagform();
        cmd.args(args)
            .arg("-f")
            .arg(&self.config)
            .arg("--state")
            .arg(&self.state)
            .current_dir(self.dir.path());
        cmd
    }

    /// The state as dagform keeps it on disk, put together as `state pull` prints it: the
    /// shared part, with each customer's part (`<state>.customers/NAME.json`) added in, each
    /// read as its document and journal.
    pub fn state_json(&self) -> serde_json::Value {
        let mut state = read_json(&self.state);
        for part in self.customer_parts() {
            let part = read_json(&part);
            let serial = state["serial"].as_u64().unwrap() + part["serial"].as_u64().unwrap();
            state["serial"] = serial.into();
            let resources = state["resources"].as_object_mut().expect("resources");
            for (address, record) in part["resources"].as_object().expect("resources") {
                resources.insert(address.clone(), record.clone());
            }
        }
        state
    }

    /// The documents of the customers' parts of the state.
    pub fn customer_parts(&self) -> Vec<PathBuf> {
        let mut dir = self.state.clone().into_os_string();
        dir.push(".customers");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut parts: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        parts.sort();
        parts
    }

    /// Removes `address` from whichever part of the state records it, as if dagform had
    /// never recorded it; false when none does.
    pub fn forget_in_state(&self, address: &str) -> bool {
        for path in std::iter::once(self.state.clone()).chain(self.customer_parts()) {
            let mut part = read_json(&path);
            if part["resources"]
                .as_object_mut()
                .unwrap()
                .remove(address)
                .is_some()
            {
                // The part as read (document and journal) goes back as a document alone.
                std::fs::write(&path, serde_json::to_string_pretty(&part).unwrap()).unwrap();
                std::fs::write(journal_of(&path), b"").unwrap();
                return true;
            }
        }
        false
    }
}

/// A part of the state as dagform reads it: its document with its journal replayed.
pub fn read_json(path: &Path) -> serde_json::Value {
    let state = dagform_core::state::StateStore::load(path)
        .unwrap_or_else(|e| panic!("state file {}: {e}", path.display()))
        .unwrap_or_else(|| panic!("no state in {}", path.display()));
    serde_json::to_value(state).expect("state is JSON")
}

/// The journal beside a state document.
pub fn journal_of(path: &Path) -> PathBuf {
    let mut journal = path.as_os_str().to_owned();
    journal.push(".journal");
    PathBuf::from(journal)
}

/// The names of the ACTIVE services in `cluster`, read from ECS (ten to a describe).
pub async fn active_services(
    clients: &AwsClients,
    cluster: &str,
) -> std::collections::BTreeSet<String> {
    let arns = clients
        .ecs
        .list_services()
        .cluster(cluster)
        .send()
        .await
        .unwrap()
        .service_arns()
        .to_vec();
    let mut names = std::collections::BTreeSet::new();
    for chunk in arns.chunks(10) {
        let described = clients
            .ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        names.extend(
            described
                .services()
                .iter()
                .filter(|s| s.status() == Some("ACTIVE"))
                .map(|s| s.service_name().unwrap().to_owned()),
        );
    }
    names
}

/// Creates the public hosted zone the configuration refers to, as a user would have.
/// The VPCs tagged as `stack`'s, read from AWS.
pub async fn stack_vpcs(clients: &AwsClients, stack: &str) -> Vec<aws_sdk_ec2::types::Vpc> {
    clients
        .ec2
        .describe_vpcs()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:dagform:stack")
                .values(stack)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .vpcs()
        .to_vec()
}

pub async fn create_zone(clients: &AwsClients, name: &str) -> String {
    let out = clients
        .route53
        .create_hosted_zone()
        .name(name)
        .caller_reference(format!("test-{name}"))
        .send()
        .await
        .expect("create hosted zone");
    out.hosted_zone()
        .expect("zone")
        .id()
        .trim_start_matches("/hostedzone/")
        .to_owned()
}

/// A private emulator, clients for it, and every AWS kind built on them.
pub async fn setup() -> (Emulator, AwsClients, dagform_core::Kinds) {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    let kinds = dagform_aws::kinds(std::sync::Arc::new(clients.clone()));
    (emu, clients, kinds)
}

pub fn kind<'a>(kinds: &'a dagform_core::Kinds, name: &str) -> &'a dyn dagform_core::ResourceKind {
    kinds
        .get(name)
        .unwrap_or_else(|| panic!("{name} is not registered"))
        .as_ref()
}

pub fn current<'a>(
    id: &'a str,
    properties: &'a dagform_core::Properties,
    outputs: &'a dagform_core::kind::Outputs,
) -> dagform_core::Current<'a> {
    dagform_core::Current {
        id,
        properties,
        outputs,
    }
}

/// Desired properties without the keys AWS cannot report back.
pub fn without(p: &dagform_core::Properties, keys: &[&str]) -> dagform_core::Properties {
    p.iter()
        .filter(|(k, _)| !keys.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The lines a running child writes on stdout, as they come, read on a thread of their own;
/// `next()` waits up to twenty seconds for each.
pub struct Lines(std::sync::mpsc::Receiver<String>);

impl Lines {
    pub fn of(child: &mut Child) -> Self {
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        Self(rx)
    }

    /// Whether no line comes within `wait`.
    pub fn none_within(&self, wait: Duration) -> bool {
        self.0.recv_timeout(wait).is_err()
    }

    pub fn next(&self) -> String {
        self.0
            .recv_timeout(Duration::from_secs(20))
            .expect("a line")
    }
}
