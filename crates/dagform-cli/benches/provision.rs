//! How fast dagform provisions the multi-customer example, compared in one run with doing one
//! operation at a time and with the seed's route of twelve stacks deployed one after another.
//!
//! Part one walks the example's real graph over an in-memory provider whose operations take
//! AWS's typical times, scaled down 100×. Part two provisions the example against the local
//! emulator with the real binary.

#[path = "../../../tests/support/mod.rs"]
mod support;

use dagform_core::plan::{PlanOptions, plan};
use dagform_core::reconcile::{ApplyOptions, apply};
use dagform_core::testing::{MemoryCloud, MemoryKind};
use dagform_core::{Kinds, ResourceGraph, StateStore};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Typical AWS latencies in seconds (see the README's sources): long waits for NAT gateways,
/// the load balancer and certificate validation, about a second for ECS and IAM, a few hundred
/// milliseconds for plain calls.
const LATENCY_SECONDS: &[(&str, f64)] = &[
    ("aws_nat_gateway", 90.0),
    ("aws_lb", 150.0),
    ("aws_acm_certificate_validation", 180.0),
    ("aws_acm_certificate", 5.0),
    ("aws_ecs_service", 2.0),
    ("aws_iam_role", 2.0),
    ("aws_ecs_cluster", 1.0),
    ("aws_ecs_task_definition", 0.5),
    ("aws_route53_record", 1.0),
    ("aws_vpc", 0.5),
    ("aws_subnet", 0.3),
    ("aws_internet_gateway", 0.5),
    ("aws_eip", 0.3),
    ("aws_route_table", 0.3),
    ("aws_route_table_association", 0.3),
    ("aws_security_group", 0.3),
    ("aws_security_group_rule", 0.3),
    ("aws_cloudwatch_log_group", 0.2),
    ("aws_ecr_repository", 0.3),
    ("aws_lb_target_group", 0.3),
    ("aws_lb_listener", 0.5),
    ("aws_lb_listener_rule", 0.3),
    ("data_route53_zone", 0.2),
];
const SCALE: f64 = 100.0;

fn simulated_kinds(cloud: &Arc<MemoryCloud>) -> Kinds {
    let mut kinds = Kinds::new();
    for (name, seconds) in LATENCY_SECONDS {
        let mut kind =
            MemoryKind::new(name, cloud).latency(Duration::from_secs_f64(seconds / SCALE));
        kind = match *name {
            "aws_ecs_task_definition" => kind.create_before_destroy(),
            "aws_ecr_repository" => kind.output("repository_uri", json!("123456789012.dkr.ecr.us-east-1.amazonaws.com/app")),
            "aws_lb" => kind
                .output("dns_name", json!("alb.us-east-1.elb.amazonaws.com"))
                .output("canonical_hosted_zone_id", json!("Z35SXDOTRQ7X7K")),
            "aws_acm_certificate" => kind.output(
                "validation_records",
                json!([{"name": "_x.example.com.", "type": "CNAME", "value": "_y.acm-validations.aws."}]),
            ),
            "aws_acm_certificate_validation" => kind.output("certificate_arn", json!("arn:aws:acm:us-east-1:123456789012:certificate/bench")),
            _ => kind,
        };
        kinds.register(Arc::new(kind));
    }
    kinds
}

fn example_graph() -> ResourceGraph {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/multi-customer/dagform.toml");
    let config = dagform_config::load(&path).expect("example config");
    dagform_config::blueprint(&config, &path, None)
        .expect("blueprint")
        .graph
}

/// Provisions `graph` in the given stages (each a set of address prefixes; `None` = all at
/// once) and returns the elapsed time.
async fn walk(
    graph: &ResourceGraph,
    stages: &[Option<Vec<String>>],
    parallelism: usize,
) -> Duration {
    let cloud = MemoryCloud::new();
    let kinds = simulated_kinds(&cloud);
    let dir = tempfile::tempdir().unwrap();
    let mut store = StateStore::open(&dir.path().join("bench.json"), "bench").unwrap();
    let mut options = ApplyOptions::new("bench");
    options.parallelism = parallelism;
    let started = Instant::now();
    for targets in stages {
        let p = plan(
            graph,
            store.state(),
            &kinds,
            None,
            &PlanOptions {
                targets: targets.clone(),
                destroy: false,
            },
        )
        .unwrap();
        let report = apply(&p, graph, &kinds, &mut store, &options)
            .await
            .unwrap();
        assert!(report.is_success(), "{report:?}");
    }
    let elapsed = started.elapsed();
    let rest = plan(graph, store.state(), &kinds, None, &PlanOptions::default()).unwrap();
    assert!(
        !rest.has_changes(),
        "every stage together must cover the whole platform"
    );
    elapsed
}

/// The seed's route: the certificate set up by hand, six shared stacks, then six stacks per
/// customer, each deployed after the previous one finished (resources within one stack run
/// concurrently, as CloudFormation does).
fn seed_stacks(customers: &[&str]) -> Vec<Option<Vec<String>>> {
    let stage = |prefixes: &[&str]| Some(prefixes.iter().map(|p| p.to_string()).collect());
    let mut stages = vec![
        stage(&[
            "shared.zone",
            "shared.certificate",
            "shared.certificate_record",
            "shared.certificate_validation",
        ]),
        stage(&["shared.ecr"]),
        stage(&[
            "shared.vpc",
            "shared.internet_gateway",
            "shared.subnet",
            "shared.eip",
            "shared.nat_gateway",
            "shared.route_table",
            "shared.route_table_association",
        ]),
        stage(&["shared.security_group", "shared.security_group_rule"]),
        stage(&["shared.cluster", "shared.log_group"]),
        stage(&["shared.role"]),
        stage(&["shared.alb", "shared.target_group", "shared.listener"]),
    ];
    for c in customers {
        for part in [
            "log_group",
            "target_group",
            "listener_rule",
            "task_definition",
            "service",
            "dns_record",
        ] {
            stages.push(Some(vec![format!("customer.{c}.{part}")]));
        }
    }
    stages
}

fn provision_on_emulator(parallelism: &str) -> Duration {
    let emu = support::Emulator::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        support::create_zone(&emu.clients().await, "freeinterestcal.com").await
    });
    let project = support::Project::from_example("multi-customer");
    let started = Instant::now();
    let out = project
        .dagform(&emu, &["provision", "--yes", "--parallelism", parallelism])
        .env("DAGFORM_POLL_INTERVAL", "100ms")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn row(label: &str, t: Duration, base: Duration, note: &str) {
    println!(
        "  {label:<44} {:>8.2}s  {:>6.2}×  {note}",
        t.as_secs_f64(),
        t.as_secs_f64() / base.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes flags such as --bench; there is nothing to filter.
    let graph = example_graph();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "dagform provisioning benchmark — one run, {} resources (shared + 2 customers)\n",
        graph.len()
    );

    println!("Simulated AWS latencies (scaled down {SCALE}×; ×{SCALE} for real time):");
    let dagform = runtime.block_on(walk(&graph, &[None], 10));
    let one_at_a_time = runtime.block_on(walk(&graph, &[None], 1));
    let stacks = runtime.block_on(walk(&graph, &seed_stacks(&["global", "customer1"]), 10));
    row(
        "dagform provision (--parallelism 10)",
        dagform,
        dagform,
        &format!("≈ {:.1} min on AWS", dagform.as_secs_f64() * SCALE / 60.0),
    );
    row(
        "one operation at a time (--parallelism 1)",
        one_at_a_time,
        dagform,
        &format!("≈ {:.1} min", one_at_a_time.as_secs_f64() * SCALE / 60.0),
    );
    row(
        "seed: 13 stacks one after another",
        stacks,
        dagform,
        &format!("≈ {:.1} min", stacks.as_secs_f64() * SCALE / 60.0),
    );

    println!(
        "\nLocal emulator (real binary, real SDK calls; the emulator answers in milliseconds, so"
    );
    println!("process start-up and the certificate's validation delay dominate here):");
    let fast = provision_on_emulator("10");
    let slow = provision_on_emulator("1");
    row("dagform provision (--parallelism 10)", fast, fast, "");
    row("dagform provision (--parallelism 1)", slow, fast, "");
}
