//! Operating a provisioned platform: `dagform status`, `dagform logs` and `dagform graph`, run
//! as the real binary against a private AWS emulator, their output checked against what AWS
//! reports when asked directly.

mod support;

/// The name the example gives a customer's target group (`customer-service`).
fn tg_name(customer_service: &str) -> String {
    dagform_config::naming::elb_name(&format!("dev-task-manager-{customer_service}"))
}

use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{Emulator, Project, create_zone, run, run_ok};

const ZONE: &str = "freeinterestcal.com";
const CLUSTER: &str = "dev-task-manager-cluster";
const SERVICES: [&str; 6] = [
    "customer1-backend-api",
    "customer1-backend-worker",
    "customer1-frontend",
    "global-backend-api",
    "global-backend-worker",
    "global-frontend",
];

struct Platform {
    emu: Emulator,
    clients: dagform_aws::AwsClients,
    project: Project,
}

async fn provisioned() -> Platform {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    create_zone(&clients, ZONE).await;
    let project = Project::from_example("multi-customer");
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));
    Platform {
        emu,
        clients,
        project,
    }
}

impl Platform {
    fn dagform(&self, args: &[&str]) -> std::process::Command {
        self.project.dagform(&self.emu, args)
    }

    /// The recorded output `name` of the state node `address`.
    fn recorded(&self, address: &str, name: &str) -> String {
        self.project.state_json()["resources"][address]["outputs"][name]
            .as_str()
            .unwrap_or_else(|| panic!("{address} has no output {name} in the state"))
            .to_owned()
    }

    fn status_json(&self, extra: &[&str]) -> Json {
        let mut args = vec!["status", "--json"];
        args.extend(extra);
        serde_json::from_str(&run_ok(&mut self.dagform(&args))).expect("status JSON")
    }

    /// name → (desired, running, pending), as ECS reports them.
    async fn service_counts(&self) -> BTreeMap<String, (i64, i64, i64)> {
        let out = self
            .clients
            .ecs
            .describe_services()
            .cluster(CLUSTER)
            .set_services(Some(SERVICES.iter().map(|s| s.to_string()).collect()))
            .send()
            .await
            .unwrap();
        out.services()
            .iter()
            .map(|s| {
                (
                    s.service_name().unwrap().to_owned(),
                    (
                        s.desired_count().into(),
                        s.running_count().into(),
                        s.pending_count().into(),
                    ),
                )
            })
            .collect()
    }

    /// Target health states, counted, of the target group recorded at `address`.
    async fn target_health(&self, address: &str) -> BTreeMap<String, i64> {
        let out = self
            .clients
            .elbv2
            .describe_target_health()
            .target_group_arn(self.recorded(address, "arn"))
            .send()
            .await
            .unwrap();
        let mut counts = BTreeMap::new();
        for d in out.target_health_descriptions() {
            let state = d.target_health().unwrap().state().unwrap().as_str();
            *counts.entry(state.to_owned()).or_default() += 1;
        }
        counts
    }

    /// priority → (hosts, paths, target group name) of the HTTPS listener's numbered rules.
    async fn rules(&self) -> BTreeMap<u64, (Vec<String>, Vec<String>, String)> {
        let out = self
            .clients
            .elbv2
            .describe_rules()
            .listener_arn(self.recorded("shared.listener.https", "arn"))
            .send()
            .await
            .unwrap();
        let tgs = self
            .clients
            .elbv2
            .describe_target_groups()
            .send()
            .await
            .unwrap();
        let mut rules = BTreeMap::new();
        for r in out.rules() {
            let Ok(priority) = r.priority().unwrap().parse::<u64>() else {
                continue;
            };
            let values = |field: &str| -> Vec<String> {
                r.conditions()
                    .iter()
                    .filter(|c| c.field() == Some(field))
                    .flat_map(|c| {
                        let typed = match field {
                            "host-header" => c.host_header_config().map(|h| h.values().to_vec()),
                            _ => c.path_pattern_config().map(|p| p.values().to_vec()),
                        };
                        typed
                            .filter(|v| !v.is_empty())
                            .unwrap_or_else(|| c.values().to_vec())
                    })
                    .collect()
            };
            let arn = r.actions()[0].target_group_arn().unwrap();
            let tg = tgs
                .target_groups()
                .iter()
                .find(|t| t.target_group_arn() == Some(arn))
                .and_then(|t| t.target_group_name())
                .unwrap()
                .to_owned();
            rules.insert(
                priority,
                (values("host-header"), values("path-pattern"), tg),
            );
        }
        rules
    }
}

fn strings(v: &Json) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The JSON rules with a priority, as priority → (hosts, paths, target group).
fn numbered_rules(status: &Json) -> BTreeMap<u64, (Vec<String>, Vec<String>, String)> {
    status["listener_rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["priority"].is_null())
        .map(|r| {
            let tgs = strings(&r["target_groups"]);
            assert_eq!(tgs.len(), 1, "{r}");
            (
                r["priority"].as_u64().unwrap(),
                (strings(&r["hosts"]), strings(&r["paths"]), tgs[0].clone()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_reports_what_aws_reports_for_services_targets_certificate_and_rules() {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    create_zone(&clients, ZONE).await;
    let project = Project::from_example("multi-customer");

    // Nothing provisioned yet: a clear pointer to `provision`, not an empty screen.
    let out = run(&mut project.dagform(&emu, &["status"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run `dagform provision` first"), "{err}");

    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));
    let p = Platform {
        emu,
        clients,
        project,
    };

    // Make AWS differ from the recorded state, so only a live read can show it: customer1's
    // frontend scaled to 3 by hand and two tasks' IPs registered in its target group.
    p.clients
        .ecs
        .update_service()
        .cluster(CLUSTER)
        .service("customer1-frontend")
        .desired_count(3)
        .send()
        .await
        .unwrap();
    let mut register = p
        .clients
        .elbv2
        .register_targets()
        .target_group_arn(p.recorded("customer.customer1.target_group.frontend", "arn"));
    for ip in ["10.0.11.10", "10.0.12.10"] {
        register = register.targets(
            aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                .id(ip)
                .port(3000)
                .build(),
        );
    }
    register.send().await.unwrap();

    let status = p.status_json(&[]);
    let counts = p.service_counts().await;
    assert_eq!(counts["customer1-frontend"].0, 3);
    let services = status["services"].as_array().unwrap();
    let names: BTreeSet<&str> = services
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, SERVICES.into_iter().collect());
    for s in services {
        let name = s["name"].as_str().unwrap();
        let seen = (
            s["desired"].as_i64().unwrap(),
            s["running"].as_i64().unwrap(),
            s["pending"].as_i64().unwrap(),
        );
        assert_eq!(seen, counts[name], "{name}: {s}");
        assert_eq!(s["status"], "ACTIVE", "{s}");
        assert_eq!(s["cluster"], CLUSTER, "{s}");
        // The revision ECS runs, as the task definition's ARN names it.
        let td = p.recorded(
            &format!(
                "customer.{}.task_definition.{}",
                s["customer"].as_str().unwrap(),
                s["service"].as_str().unwrap()
            ),
            "arn",
        );
        assert!(
            td.ends_with(&format!("/{}", s["task_definition"].as_str().unwrap())),
            "{td} vs {s}"
        );
        assert_eq!(
            s["revision"].as_u64().unwrap().to_string(),
            td.rsplit(':').next().unwrap()
        );
        assert!(s["rollout"].is_string(), "{s}");
    }
    // Running below desired is what needs attention, service by service, as ECS counts it
    // (the emulator reports the hand-scaled service as fully running, the others not).
    let attention = strings(&status["attention"]);
    for (name, (desired, running, _)) in &counts {
        let line = format!("service {name}: {running} of {desired} task(s) running");
        assert_eq!(
            attention.iter().any(|a| a.starts_with(&line)),
            running < desired,
            "{line}: {attention:?}"
        );
    }

    // Target health: the same counts as describe_target_health, per target group.
    let groups = status["target_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 5, "4 customers' groups and the default one");
    for g in groups {
        let address = g["address"].as_str().unwrap();
        let live = p.target_health(address).await;
        for state in ["healthy", "unhealthy", "initial", "unused"] {
            assert_eq!(
                g[state].as_i64().unwrap(),
                live.get(state).copied().unwrap_or(0),
                "{address} {state}: {g}"
            );
        }
    }
    let frontend = groups
        .iter()
        .find(|g| g["address"] == "customer.customer1.target_group.frontend")
        .unwrap();
    assert_eq!(frontend["healthy"], 2, "{frontend}");
    assert_eq!(frontend["port"], 3000, "{frontend}");

    // The certificate, as ACM describes it.
    let cert = p
        .clients
        .acm
        .describe_certificate()
        .certificate_arn(p.recorded("shared.certificate", "arn"))
        .send()
        .await
        .unwrap();
    let cert = cert.certificate().unwrap();
    assert_eq!(cert.status().unwrap().as_str(), "ISSUED");
    let certs = status["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0]["status"], "ISSUED");
    assert_eq!(certs[0]["domain"], cert.domain_name().unwrap());
    assert_eq!(
        certs[0]["in_use_by"].as_u64().unwrap() as usize,
        cert.in_use_by().len()
    );

    // Listener rules: 10/11 for global, 20/21 for customer1, exactly as ELBv2 has them.
    let rules = numbered_rules(&status);
    assert_eq!(rules.keys().copied().collect::<Vec<_>>(), [10, 11, 20, 21]);
    assert_eq!(rules, p.rules().await);
    assert_eq!(
        rules[&20],
        (
            vec!["customer1.freeinterestcal.com".to_owned()],
            vec!["/api/*".to_owned()],
            tg_name("customer1-backend-api")
        )
    );

    // The load balancer.
    let lbs = p
        .clients
        .elbv2
        .describe_load_balancers()
        .load_balancer_arns(p.recorded("shared.alb", "arn"))
        .send()
        .await
        .unwrap();
    let lb = &lbs.load_balancers()[0];
    let json_lb = &status["load_balancers"][0];
    assert_eq!(json_lb["dns_name"], lb.dns_name().unwrap());
    assert_eq!(
        json_lb["state"],
        lb.state().unwrap().code().unwrap().as_str()
    );

    // The same on one screen, as aligned columns.
    let text = run_ok(&mut p.dagform(&["status"]));
    let header = text
        .lines()
        .find(|l| l.trim_start().starts_with("CUSTOMER") && l.contains("DESIRED"))
        .expect("services table");
    let desired_at = header.find("DESIRED").unwrap();
    for name in SERVICES {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{text}"));
        let desired: i64 = line[desired_at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(desired, counts[name].0, "{line}");
    }
    assert!(text.contains("ISSUED"), "{text}");
    assert!(text.contains(lb.dns_name().unwrap()), "{text}");
    let priorities: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("HTTPS listener rules"))
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(priorities, ["10", "11", "20", "21", "default"], "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_for_one_customer_shows_only_its_services_and_rules() {
    let p = provisioned().await;

    let status = p.status_json(&["--customer", "customer1"]);
    let names: Vec<&str> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "customer1-backend-api",
            "customer1-backend-worker",
            "customer1-frontend"
        ]
    );
    let counts = p.service_counts().await;
    for s in status["services"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        assert_eq!(s["desired"].as_i64().unwrap(), counts[name].0, "{s}");
    }
    let rules = numbered_rules(&status);
    let all = p.rules().await;
    assert_eq!(
        rules,
        all.into_iter()
            .filter(|(_, (hosts, _, _))| hosts == &["customer1.freeinterestcal.com"])
            .collect::<BTreeMap<_, _>>()
    );
    assert_eq!(rules.keys().copied().collect::<Vec<_>>(), [20, 21]);
    assert_eq!(
        status["listener_rules"].as_array().unwrap().len(),
        2,
        "no default rule in one customer's view"
    );
    let groups: Vec<&str> = status["target_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        groups,
        [
            tg_name("customer1-backend-api"),
            tg_name("customer1-frontend")
        ]
    );

    let text = run_ok(&mut p.dagform(&["status", "--customer", "customer1"]));
    assert!(text.contains("customer1-frontend"), "{text}");
    assert!(!text.contains("global-"), "{text}");
    assert!(!text.contains("default"), "{text}");

    // A service deleted behind dagform's back shows as missing, not as an error.
    p.clients
        .ecs
        .delete_service()
        .cluster(CLUSTER)
        .service("customer1-backend-worker")
        .force(true)
        .send()
        .await
        .unwrap();
    let status = p.status_json(&["--customer", "customer1"]);
    let worker = &status["services"][1];
    assert_eq!(worker["name"], "customer1-backend-worker");
    assert_eq!(worker["status"], "MISSING", "{worker}");
    assert!(worker["desired"].is_null(), "{worker}");
    assert!(
        strings(&status["attention"])
            .contains(&"service customer1-backend-worker is MISSING".to_owned()),
        "{status}"
    );

    let out = run(&mut p.dagform(&["status", "--customer", "nobody"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown customer `nobody`") && err.contains("global, customer1"),
        "{err}"
    );
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn put_events(p: &Platform, group: &str, stream: &str, events: &[(i64, &str)]) {
    let _ = p
        .clients
        .logs
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send()
        .await;
    let mut put = p
        .clients
        .logs
        .put_log_events()
        .log_group_name(group)
        .log_stream_name(stream);
    for (timestamp, message) in events {
        put = put.log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(*timestamp)
                .message(*message)
                .build()
                .unwrap(),
        );
    }
    put.send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_prints_a_customers_service_events_and_follows_new_ones() {
    let p = provisioned().await;
    let now = now_ms();
    let stream = "frontend/frontend/0123456789abcdef";
    put_events(
        &p,
        "/ecs/dev-task-manager/customer1-frontend",
        stream,
        &[
            (now - 2 * 3_600_000, "too old for --since 1h"),
            (now - 300_000, "GET / 200"),
            (now - 60_000, "GET /tasks 200\n"),
        ],
    )
    .await;
    put_events(
        &p,
        "/ecs/dev-task-manager/global-frontend",
        "frontend/frontend/fedcba9876543210",
        &[(now - 60_000, "another customer's line")],
    )
    .await;

    let out = run_ok(&mut p.dagform(&["logs", "customer1", "frontend", "--since", "1h"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].ends_with(&format!(" {stream} GET / 200")), "{out}");
    assert!(
        lines[1].ends_with(&format!(" {stream} GET /tasks 200")),
        "{out}"
    );
    // `<timestamp> <stream> <message>`, the timestamp in RFC 3339 with milliseconds.
    let stamp = lines[0].split(' ').next().unwrap();
    assert!(stamp.ends_with('Z') && stamp.len() == 24, "{stamp}");

    for (args, expected) in [
        (
            ["logs", "customer1", "nope"],
            "unknown service `nope`; the services are: backend-api, backend-worker, frontend",
        ),
        (
            ["logs", "nobody", "frontend"],
            "unknown customer `nobody`; the customers are: global, customer1",
        ),
    ] {
        let out = run(&mut p.dagform(&args));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{err}");
    }

    // --follow: what is there, then each new event once, until Ctrl-C.
    let mut child = p
        .dagform(&["logs", "customer1", "frontend", "--since", "1h", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = support::Lines::of(&mut child);
    let next = || lines.next();
    assert!(next().ends_with("GET / 200"));
    assert!(next().ends_with("GET /tasks 200"));
    put_events(
        &p,
        "/ecs/dev-task-manager/customer1-frontend",
        stream,
        &[(now_ms(), "POST /tasks 201")],
    )
    .await;
    assert!(next().ends_with("POST /tasks 201"));
    // Several more polls (every 200 ms here) print nothing twice.
    assert!(
        lines.none_within(Duration::from_millis(1500)),
        "an event was printed twice"
    );
    let interrupt = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "Ctrl-C ends --follow cleanly: {status:?}");
}

/// A state's dependencies as (dependency, dependent) pairs: every edge the graph must draw.
fn recorded_edges(state: &Json) -> BTreeSet<(String, String)> {
    let mut edges = BTreeSet::new();
    for (address, r) in state["resources"].as_object().unwrap() {
        for dep in r["dependencies"].as_array().unwrap() {
            edges.insert((dep.as_str().unwrap().to_owned(), address.clone()));
        }
    }
    edges
}

/// DOT: node → kind and (from, to) → dashed, checking that the text is well formed.
fn parse_dot(text: &str) -> (BTreeMap<String, String>, BTreeMap<(String, String), bool>) {
    assert!(
        text.starts_with("digraph dagform {\n") && text.ends_with("}\n"),
        "{text}"
    );
    assert_eq!(
        text.matches('{').count(),
        text.matches('}').count(),
        "{text}"
    );
    let quoted = |s: &str| -> String {
        s.trim()
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or_else(|| panic!("not quoted: {s}"))
            .to_owned()
    };
    let mut nodes = BTreeMap::new();
    let mut edges = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        let Some((head, attrs)) = line.split_once(" [") else {
            continue;
        };
        let attrs = attrs.strip_suffix("];").expect("statement ends with ];");
        if let Some((from, to)) = head.split_once(" -> ") {
            let dashed = attrs == "style=dashed";
            assert!(dashed || attrs.starts_with("label=\""), "{line}");
            edges.insert((quoted(from), quoted(to)), dashed);
        } else if let Some(label) = attrs.strip_prefix("label=\"") {
            let (address, kind) = label
                .strip_suffix('"')
                .and_then(|l| l.split_once("\\n"))
                .expect("label of address and kind");
            assert_eq!(quoted(head), address, "{line}");
            nodes.insert(address.to_owned(), kind.to_owned());
        }
    }
    for (from, to) in edges.keys() {
        assert!(
            nodes.contains_key(from) && nodes.contains_key(to),
            "{from} -> {to}"
        );
    }
    (nodes, edges)
}

/// Mermaid: the same, mapping identifiers back to addresses through the node labels.
fn parse_mermaid(text: &str) -> (BTreeMap<String, String>, BTreeMap<(String, String), bool>) {
    assert!(text.starts_with("flowchart LR\n"), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.trim_start().starts_with("subgraph "))
            .count(),
        text.lines().filter(|l| l.trim() == "end").count()
    );
    let mut ids = BTreeMap::new();
    let mut nodes = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("subgraph ") {
            continue;
        }
        if let Some((id, label)) = line.split_once("[\"") {
            let (address, kind) = label
                .strip_suffix("\"]")
                .and_then(|l| l.split_once("<br/>"))
                .expect("label of address and kind");
            assert!(
                id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            assert!(
                ids.insert(id.to_owned(), address.to_owned()).is_none(),
                "{line}"
            );
            nodes.insert(address.to_owned(), kind.to_owned());
        }
    }
    let mut edges = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        let (from, rest, dashed) = if let Some((f, r)) = line.split_once(" -.-> ") {
            (f, r, true)
        } else if let Some((f, r)) = line.split_once(" -->|\"") {
            let (_, to) = r.split_once("\"| ").expect("closed label");
            (f, to, false)
        } else {
            continue;
        };
        let name = |id: &str| {
            ids.get(id)
                .unwrap_or_else(|| panic!("undeclared {id}"))
                .clone()
        };
        edges.insert((name(from), name(rest)), dashed);
    }
    (nodes, edges)
}

#[tokio::test(flavor = "multi_thread")]
async fn graph_draws_every_recorded_node_and_dependency_in_dot_and_mermaid() {
    let p = provisioned().await;
    let state = p.project.state_json();
    let recorded: BTreeMap<String, String> = state["resources"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(a, r)| (a.clone(), r["kind"].as_str().unwrap().to_owned()))
        .collect();
    let dependencies = recorded_edges(&state);

    let dot = run_ok(&mut p.dagform(&["graph"]));
    assert_eq!(dot, run_ok(&mut p.dagform(&["graph", "--format", "dot"])));
    let mermaid = run_ok(&mut p.dagform(&["graph", "--format", "mermaid"]));
    let (dot_nodes, dot_edges) = parse_dot(&dot);
    let (mermaid_nodes, mermaid_edges) = parse_mermaid(&mermaid);
    assert_eq!(dot_nodes, recorded);
    assert_eq!(mermaid_nodes, recorded);
    assert_eq!(
        dot_edges.keys().cloned().collect::<BTreeSet<_>>(),
        dependencies
    );
    assert_eq!(dot_edges, mermaid_edges, "both formats draw the same edges");
    assert!(dot.contains(r#""shared.vpc" -> "shared.subnet.public_1" [label="id"];"#));
    // Ordering-only edges are dashed; edges that carry data are not.
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert!(
        dot_edges[&pair(
            "customer.customer1.listener_rule.frontend",
            "customer.customer1.service.frontend"
        )]
    );
    assert!(dot_edges[&pair("shared.internet_gateway", "shared.nat_gateway.1")]);
    assert!(!dot_edges[&pair("shared.vpc", "shared.subnet.public_1")]);
    assert!(
        !dot_edges[&pair(
            "customer.customer1.target_group.frontend",
            "customer.customer1.service.frontend"
        )]
    );
    // Deterministic: the same text every time.
    assert_eq!(
        mermaid,
        run_ok(&mut p.dagform(&["graph", "--format", "mermaid"]))
    );

    for format in ["dot", "mermaid"] {
        let text =
            run_ok(&mut p.dagform(&["graph", "--format", format, "--customer", "customer1"]));
        assert!(!text.contains("customer.global."), "{text}");
        for address in recorded
            .keys()
            .filter(|a| a.starts_with("customer.customer1."))
        {
            assert!(
                text.contains(&format!("{address}\"")) || text.contains(&format!("{address}<br/>")),
                "{address} missing:\n{text}"
            );
        }
        for shared in ["shared.vpc", "shared.listener.https", "shared.cluster"] {
            assert!(text.contains(shared), "{shared} missing:\n{text}");
        }
    }
    let out = run(&mut p.dagform(&["graph", "--customer", "nobody"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("global, customer1"));
}
