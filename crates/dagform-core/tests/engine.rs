//! The engine end to end over the in-memory cloud: plan, concurrent walk, failure isolation,
//! destroy order, replacement order, retries, cancellation, adoption, drift and objects
//! pending on the outside world.

use dagform_core::plan::{LiveView, PlanOptions, PlannedValue, plan};
use dagform_core::reconcile::{
    ApplyOptions, ApplyReport, Event, PendingStep, Phase, RetryPolicy, Step, Waiting, apply,
    read_live,
};
use dagform_core::state::ResourceStatus;
use dagform_core::testing::{MemoryCloud, MemoryKind};
use dagform_core::{
    Action, Address, GraphBuilder, Kinds, NodeSpec, Pending, Plan, ResourceGraph, StateStore,
    Value, props,
};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

struct Fixture {
    cloud: Arc<MemoryCloud>,
    kinds: Kinds,
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn fixture(latency_ms: u64) -> Fixture {
    let cloud = MemoryCloud::with_latency(Duration::from_millis(latency_ms));
    let kinds = Kinds::new()
        .with(Arc::new(
            MemoryKind::new("net", &cloud).replace_on(&["cidr"]),
        ))
        .with(Arc::new(
            MemoryKind::new("thing", &cloud).replace_on(&["zone"]),
        ))
        .with(Arc::new(
            MemoryKind::new("revision", &cloud)
                .replace_on(&["image"])
                .create_before_destroy(),
        ))
        .with(Arc::new(
            MemoryKind::new("secret", &cloud).sensitive(&["value"]),
        ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/test.json");
    Fixture {
        cloud,
        kinds,
        _dir: dir,
        path,
    }
}

fn options() -> ApplyOptions {
    let mut o = ApplyOptions::new("test");
    o.retry = RetryPolicy {
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_elapsed: Duration::from_millis(500),
    };
    o
}

fn graph(nodes: Vec<NodeSpec>) -> ResourceGraph {
    let mut b = GraphBuilder::new();
    for n in nodes {
        b.add(n);
    }
    b.build().unwrap()
}

fn r(node: &str) -> Value {
    Value::reference(node, "id")
}

impl Fixture {
    fn plan(&self, g: &ResourceGraph) -> Plan {
        let state = StateStore::load(&self.path)
            .unwrap()
            .unwrap_or_else(|| dagform_core::State::new("test"));
        plan(g, &state, &self.kinds, None, &PlanOptions::default()).unwrap()
    }

    async fn converge_with(&self, g: &ResourceGraph, o: &ApplyOptions) -> (Plan, ApplyReport) {
        let mut store = StateStore::open(&self.path, "test").unwrap();
        let p = plan(g, store.state(), &self.kinds, None, &PlanOptions::default()).unwrap();
        let report = apply(&p, g, &self.kinds, &mut store, o).await.unwrap();
        (p, report)
    }

    async fn converge(&self, g: &ResourceGraph) -> ApplyReport {
        let (_, report) = self.converge_with(g, &options()).await;
        report
    }

    async fn destroy(&self, g: &ResourceGraph) -> ApplyReport {
        let mut store = StateStore::open(&self.path, "test").unwrap();
        let opts = PlanOptions {
            destroy: true,
            ..Default::default()
        };
        let p = plan(g, store.state(), &self.kinds, None, &opts).unwrap();
        apply(&p, g, &self.kinds, &mut store, &options())
            .await
            .unwrap()
    }

    fn state(&self) -> dagform_core::State {
        StateStore::load(&self.path).unwrap().unwrap()
    }

    fn call_index(&self, address: &str, op: &str) -> usize {
        self.cloud
            .calls()
            .iter()
            .position(|c| c.address.as_str() == address && c.operation == op)
            .unwrap_or_else(|| panic!("no {op} of {address}"))
    }
}

/// vpc → subnet.a, subnet.b → lb (uses both); log (independent)
fn platform(cidr: &str) -> ResourceGraph {
    graph(vec![
        NodeSpec::new("shared.vpc", "net", props! { "cidr" => cidr }),
        NodeSpec::new(
            "shared.subnet.a",
            "thing",
            props! { "vpc" => r("shared.vpc"), "zone" => "a" },
        ),
        NodeSpec::new(
            "shared.subnet.b",
            "thing",
            props! { "vpc" => r("shared.vpc"), "zone" => "b" },
        ),
        NodeSpec::new(
            "shared.lb",
            "thing",
            props! {
                "subnets" => vec![r("shared.subnet.a"), r("shared.subnet.b")],
                "zone" => "ab",
                "size" => 2i64,
            },
        ),
        NodeSpec::new("shared.log", "thing", props! { "zone" => "none" }),
    ])
}

#[tokio::test]
async fn creates_in_dependency_order_with_independent_nodes_in_parallel() {
    let f = fixture(30);
    let report = f.converge(&platform("10.0.0.0/16")).await;
    assert!(report.is_success(), "{report:?}");
    let calls = f.cloud.calls();
    let call = |a: &str| calls.iter().find(|c| c.address.as_str() == a).unwrap();
    for (dep, dependent) in [
        ("shared.vpc", "shared.subnet.a"),
        ("shared.vpc", "shared.subnet.b"),
        ("shared.subnet.a", "shared.lb"),
        ("shared.subnet.b", "shared.lb"),
    ] {
        assert!(
            call(dep).ended <= call(dependent).started,
            "{dep} before {dependent}"
        );
    }
    // The two subnets, and the log group with the VPC, ran at the same time.
    let (a, b) = (call("shared.subnet.a"), call("shared.subnet.b"));
    assert!(
        a.started < b.ended && b.started < a.ended,
        "subnets overlapped"
    );
    assert!(f.cloud.max_in_flight() >= 2);
    // The load balancer got the subnets' real ids.
    let (_, lb) = f.cloud.object_at("shared.lb").unwrap();
    let subnet_a = f.state().resources[&Address::from("shared.subnet.a")]
        .id
        .clone()
        .unwrap();
    assert_eq!(lb.properties["subnets"][0], json!(subnet_a));
}

#[tokio::test]
async fn a_second_run_changes_nothing() {
    let f = fixture(0);
    let g = platform("10.0.0.0/16");
    f.converge(&g).await;
    let calls = f.cloud.calls().len();
    let p = f.plan(&g);
    assert!(!p.has_changes(), "{p:#?}");
    assert_eq!(p.summary().unchanged, 5);
    let report = f.converge(&g).await;
    assert!(report.succeeded.is_empty());
    assert_eq!(f.cloud.calls().len(), calls, "no call on a converged stack");
}

#[tokio::test]
async fn parallelism_bound_is_never_exceeded() {
    let f = fixture(15);
    let nodes = (0..40)
        .map(|i| NodeSpec::new(format!("n{i:02}"), "thing", props! { "zone" => "z" }))
        .collect();
    let mut o = options();
    o.parallelism = 4;
    let (_, report) = f.converge_with(&graph(nodes), &o).await;
    assert_eq!(report.succeeded.len(), 40);
    assert_eq!(f.cloud.max_in_flight(), 4);
}

/// With more steps ready than calls may be in flight, the step heading the longest chain goes
/// first: the chain `z.head → z.mid → z.tail` starts before ten independent leaves that sort
/// ahead of it.
#[tokio::test]
async fn the_longest_chain_starts_first_when_slots_are_short() {
    let f = fixture(5);
    let mut nodes: Vec<NodeSpec> = (0..10)
        .map(|i| NodeSpec::new(format!("a.leaf{i}"), "thing", props! { "zone" => "z" }))
        .collect();
    nodes.push(NodeSpec::new("z.head", "thing", props! { "zone" => "z" }));
    nodes.push(NodeSpec::new(
        "z.mid",
        "thing",
        props! { "zone" => "z", "after" => r("z.head") },
    ));
    nodes.push(NodeSpec::new(
        "z.tail",
        "thing",
        props! { "zone" => "z", "after" => r("z.mid") },
    ));
    let mut o = options();
    o.parallelism = 1;
    let (_, report) = f.converge_with(&graph(nodes), &o).await;
    assert_eq!(report.succeeded.len(), 13);
    assert_eq!(f.call_index("z.head", "create"), 0, "{:?}", f.cloud.calls());
    // The middle of the chain outranks the leaves too, once it is ready (a finished call frees
    // its slot a moment before its result is taken in, so one leaf may slip in first); its
    // tail, a step nothing waits on like the leaves, takes its turn among them.
    assert!(f.call_index("z.mid", "create") <= 2);
    // Among equals, the order is the address order.
    assert!(f.call_index("a.leaf0", "create") < f.call_index("a.leaf9", "create"));
}

/// A step whose object takes long to be ready (a load balancer, say) starts before quick ones
/// that sort ahead of it: the kinds' typical waits weigh in the order.
#[tokio::test]
async fn steps_ahead_of_long_waits_start_first() {
    let cloud = MemoryCloud::with_latency(Duration::from_millis(2));
    let kinds = Kinds::new()
        .with(Arc::new(MemoryKind::new("thing", &cloud)))
        .with(Arc::new(
            MemoryKind::new("gateway", &cloud).settles_after(Duration::from_millis(30)),
        ));
    let dir = tempfile::tempdir().unwrap();
    let mut store = StateStore::open(&dir.path().join("state/test.json"), "test").unwrap();
    let mut nodes: Vec<NodeSpec> = (0..5)
        .map(|i| NodeSpec::new(format!("a.quick{i}"), "thing", props! { "zone" => "z" }))
        .collect();
    nodes.push(NodeSpec::new("z.slow", "gateway", props! { "zone" => "z" }));
    let g = graph(nodes);
    let mut o = options();
    o.parallelism = 1;
    o.poll.interval = Duration::from_millis(5);
    let p = plan(&g, store.state(), &kinds, None, &PlanOptions::default()).unwrap();
    let report = apply(&p, &g, &kinds, &mut store, &o).await.unwrap();
    assert!(report.is_success(), "{report:?}");
    let calls = cloud.calls();
    assert_eq!(calls[0].address.as_str(), "z.slow", "{calls:?}");
    assert_eq!(calls[0].operation, "create");
}

/// Steps that wait (for an object to become ready) give their slot up between polls: with two
/// slots, ten creates that each wait are all under way at once, yet never more than two calls
/// are in flight.
#[tokio::test]
async fn waiting_steps_hold_no_slot() {
    let cloud = MemoryCloud::with_latency(Duration::from_millis(5));
    let kinds = Kinds::new().with(Arc::new(
        MemoryKind::new("gateway", &cloud).settles_after(Duration::from_millis(300)),
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut store = StateStore::open(&dir.path().join("state/test.json"), "test").unwrap();
    let nodes = (0..10)
        .map(|i| NodeSpec::new(format!("gw{i}"), "gateway", props! { "zone" => "z" }))
        .collect();
    let g = graph(nodes);
    let mut o = options();
    o.parallelism = 2;
    o.poll.interval = Duration::from_millis(20);
    o.poll.timeout = Duration::from_secs(30);
    let p = plan(&g, store.state(), &kinds, None, &PlanOptions::default()).unwrap();
    let report = apply(&p, &g, &kinds, &mut store, &o).await.unwrap();
    assert_eq!(report.succeeded.len(), 10, "{report:?}");
    assert!(cloud.max_in_flight() <= 2, "{}", cloud.max_in_flight());
    // Each step runs from its create's start to its last poll's end; all ten overlap.
    let calls = cloud.calls();
    let span = |address: &str| {
        let mine = calls.iter().filter(|c| c.address.as_str() == address);
        let start = mine.clone().map(|c| c.started).min().unwrap();
        let end = mine.map(|c| c.ended).max().unwrap();
        (start, end)
    };
    let spans: Vec<_> = (0..10).map(|i| span(&format!("gw{i}"))).collect();
    let latest_start = spans.iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(
        latest_start < earliest_end,
        "every wait was under way before the first one ended"
    );
}

/// Ctrl-C during long waits: every waiting step ends at once as interrupted (no wait runs to
/// its end), the creates keep their recorded intent, and the next run adopts their objects
/// rather than making new ones.
#[tokio::test]
async fn cancelling_ends_waits_at_once_and_a_rerun_adopts_what_they_made() {
    let cloud = MemoryCloud::with_latency(Duration::from_millis(5));
    let kinds = Kinds::new().with(Arc::new(
        MemoryKind::new("gateway", &cloud).settles_after(Duration::from_secs(600)),
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/test.json");
    let nodes = (0..4)
        .map(|i| NodeSpec::new(format!("gw{i}"), "gateway", props! { "zone" => "z" }))
        .collect();
    let g = graph(nodes);
    let mut o = options();
    o.poll.interval = Duration::from_millis(20);
    o.poll.timeout = Duration::from_secs(3600);
    let cancel = o.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let started = std::time::Instant::now();
    {
        let mut store = StateStore::open(&path, "test").unwrap();
        let p = plan(&g, store.state(), &kinds, None, &PlanOptions::default()).unwrap();
        let report = apply(&p, &g, &kinds, &mut store, &o).await.unwrap();
        assert!(report.cancelled);
        assert_eq!(report.failed.len(), 4, "{report:?}");
        assert!(
            report
                .failed
                .iter()
                .all(|f| f.error.contains("interrupted")),
            "{report:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(cloud.objects().len(), 4);
    let state = StateStore::load(&path).unwrap().unwrap();
    assert!(
        state
            .resources
            .values()
            .all(|r| r.status == ResourceStatus::Creating && r.intent.is_some())
    );
}

/// Steps that finish together are recorded with one flush of the state, and the intents of
/// creates that start together with another: far fewer flushes than records.
#[tokio::test]
async fn results_that_land_together_are_flushed_together() {
    let cloud = MemoryCloud::with_latency(Duration::from_millis(20));
    let kinds = Kinds::new().with(Arc::new(MemoryKind::new("thing", &cloud)));
    let dir = tempfile::tempdir().unwrap();
    let mut store = StateStore::open(&dir.path().join("state/test.json"), "test").unwrap();
    let nodes = (0..40)
        .map(|i| NodeSpec::new(format!("t{i}"), "thing", props! { "zone" => "z" }))
        .collect();
    let g = graph(nodes);
    let mut o = options();
    o.parallelism = 40;
    let p = plan(&g, store.state(), &kinds, None, &PlanOptions::default()).unwrap();
    let (before, serial_before) = (store.write_stats().0, store.state().serial);
    let report = apply(&p, &g, &kinds, &mut store, &o).await.unwrap();
    assert_eq!(report.succeeded.len(), 40);
    let (after, _) = store.write_stats();
    // 80 records (40 intents, 40 results) in a handful of flushes.
    assert!(after - before <= 20, "{} flushes", after - before);
    assert_eq!(store.state().serial, serial_before + 80);
    drop(store);
    let state = StateStore::load(&dir.path().join("state/test.json"))
        .unwrap()
        .unwrap();
    assert_eq!(state.resources.len(), 40);
    assert!(
        state
            .resources
            .values()
            .all(|r| r.status == ResourceStatus::Ready)
    );
}

#[tokio::test]
async fn a_result_no_step_waits_on_reaches_the_disk_while_the_walk_goes_on() {
    // Nothing starts after the quick step's result: its flush is not owed to any call, and
    // still comes within a tenth of a second, long before the slow step ends the walk.
    let cloud = MemoryCloud::with_latency(Duration::from_millis(20));
    let kinds = Kinds::new()
        .with(Arc::new(MemoryKind::new("quick", &cloud)))
        .with(Arc::new(
            MemoryKind::new("slow", &cloud).latency(Duration::from_secs(3)),
        ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/test.json");
    let mut store = StateStore::open(&path, "test").unwrap();
    let g = graph(vec![
        NodeSpec::new("quick", "quick", props! { "zone" => "z" }),
        NodeSpec::new("slow", "slow", props! { "zone" => "z" }),
    ]);
    let p = plan(&g, store.state(), &kinds, None, &PlanOptions::default()).unwrap();
    let o = options();
    let walk = apply(&p, &g, &kinds, &mut store, &o);
    let read_meanwhile = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        StateStore::load(&path).unwrap().unwrap()
    };
    let (report, meanwhile) = tokio::join!(walk, read_meanwhile);
    assert!(report.unwrap().is_success());
    let status = |address: &str| meanwhile.resources[&Address::from(address)].status;
    assert_eq!(status("quick"), ResourceStatus::Ready, "on disk mid-walk");
    assert_eq!(
        status("slow"),
        ResourceStatus::Creating,
        "still running then"
    );
}

#[tokio::test]
async fn a_failure_skips_only_its_dependents() {
    let f = fixture(5);
    f.cloud
        .break_resource("shared.subnet.a", "InvalidSubnet: no capacity");
    let report = f.converge(&platform("10.0.0.0/16")).await;
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].address.as_str(), "shared.subnet.a");
    assert!(report.failed[0].error.contains("no capacity"));
    assert_eq!(
        report.skipped,
        vec![(Address::from("shared.lb"), Step::Create)]
    );
    let state = f.state();
    let ready: Vec<&str> = state
        .resources
        .iter()
        .filter(|(_, r)| r.status == dagform_core::state::ResourceStatus::Ready)
        .map(|(a, _)| a.as_str())
        .collect();
    assert_eq!(
        ready,
        ["shared.log", "shared.subnet.b", "shared.vpc"],
        "state holds what exists"
    );
    // The failed create keeps its intent, so whatever it may have made is looked for next time.
    let failed = &state.resources[&Address::from("shared.subnet.a")];
    assert_eq!(failed.status, dagform_core::state::ResourceStatus::Creating);
    assert!(failed.id.is_none() && failed.intent.is_some());
    assert_eq!(f.cloud.objects().len(), 3);
    // Once the cause is fixed, a re-run converges.
    f.cloud.repair("shared.subnet.a");
    let report = f.converge(&platform("10.0.0.0/16")).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(f.cloud.objects().len(), 5);
}

#[tokio::test]
async fn transient_errors_are_retried_until_they_pass() {
    let f = fixture(0);
    f.cloud.fail_transiently("shared.vpc", 3);
    let report = f.converge(&platform("10.0.0.0/16")).await;
    assert!(report.is_success(), "{report:?}");
    let creates = f
        .cloud
        .calls()
        .iter()
        .filter(|c| c.address.as_str() == "shared.vpc")
        .count();
    assert_eq!(creates, 4);
}

#[tokio::test]
async fn retries_are_bounded_in_time() {
    let f = fixture(0);
    f.cloud.fail_transiently("shared.log", usize::MAX);
    let started = std::time::Instant::now();
    let report = f.converge(&platform("10.0.0.0/16")).await;
    assert_eq!(report.failed.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn destroy_runs_in_reverse_dependency_order_from_the_state() {
    let f = fixture(5);
    f.converge(&platform("10.0.0.0/16")).await;
    // The configuration is gone entirely: only the state knows the dependencies.
    let report = f.destroy(&graph(vec![])).await;
    assert!(report.is_success(), "{report:?}");
    assert!(f.cloud.objects().is_empty());
    assert!(f.state().resources.is_empty());
    let lb = f.call_index("shared.lb", "delete");
    assert!(lb < f.call_index("shared.subnet.a", "delete"));
    assert!(f.call_index("shared.subnet.b", "delete") < f.call_index("shared.vpc", "delete"));
}

#[tokio::test]
async fn nodes_removed_from_the_config_are_deleted_after_their_dependents() {
    let f = fixture(5);
    f.converge(&platform("10.0.0.0/16")).await;
    let smaller = graph(vec![
        NodeSpec::new("shared.vpc", "net", props! { "cidr" => "10.0.0.0/16" }),
        NodeSpec::new("shared.log", "thing", props! { "zone" => "none" }),
    ]);
    let p = f.plan(&smaller);
    let deletes: Vec<&str> = p
        .resources
        .iter()
        .filter(|r| r.action == Action::Delete)
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(deletes, ["shared.lb", "shared.subnet.a", "shared.subnet.b"]);
    let report = f.converge(&smaller).await;
    assert!(report.is_success(), "{report:?}");
    assert!(f.call_index("shared.lb", "delete") < f.call_index("shared.subnet.a", "delete"));
    assert_eq!(f.cloud.objects().len(), 2);
}

#[tokio::test]
async fn replacement_deletes_then_recreates_and_dependents_follow() {
    let f = fixture(0);
    f.converge(&platform("10.0.0.0/16")).await;
    let old_vpc = f.cloud.object_at("shared.vpc").unwrap().0;
    let g = platform("10.1.0.0/16");
    let p = f.plan(&g);
    let vpc = p.get(&"shared.vpc".into()).unwrap();
    assert_eq!(vpc.action, Action::Replace);
    assert!(vpc.changes[0].forces_replacement);
    // Subnets use the VPC's id, unknown until it is recreated: they are replaced too? No —
    // `vpc` does not force their replacement, so they are updated with the new id.
    let subnet = p.get(&"shared.subnet.a".into()).unwrap();
    assert_eq!(subnet.action, Action::Update);
    assert!(matches!(
        subnet.changes[0].new,
        PlannedValue::KnownAfterApply(_)
    ));
    // The old VPC is still used by the subnets, so deleting it first must wait, and the cloud
    // refuses: a plain replacement of a used node fails cleanly and keeps the state true.
    let report = f.converge(&g).await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(f.cloud.objects().contains_key(&old_vpc));
    assert_eq!(
        f.state().resources[&Address::from("shared.vpc")]
            .id
            .as_deref(),
        Some(old_vpc.as_str())
    );
}

#[tokio::test]
async fn create_before_destroy_repoints_dependents_before_deleting_the_old_object() {
    let f = fixture(0);
    let g = |image: &str| {
        graph(vec![
            NodeSpec::new("svc.rev", "revision", props! { "image" => image }),
            NodeSpec::new(
                "svc.service",
                "thing",
                props! { "task" => r("svc.rev"), "zone" => "z" },
            ),
        ])
    };
    f.converge(&g("app:1")).await;
    let old = f.cloud.object_at("svc.rev").unwrap().0;
    let p = f.plan(&g("app:2"));
    let rev = p.get(&"svc.rev".into()).unwrap();
    assert_eq!(
        (rev.action, rev.create_before_destroy),
        (Action::Replace, true)
    );
    assert_eq!(p.get(&"svc.service".into()).unwrap().action, Action::Update);
    let report = f.converge(&g("app:2")).await;
    assert!(report.is_success(), "{report:?}");
    let steps: Vec<(&str, Step)> = report
        .succeeded
        .iter()
        .map(|(a, s)| (a.as_str(), *s))
        .collect();
    assert_eq!(
        steps,
        [
            ("svc.rev", Step::Create),
            ("svc.service", Step::Update),
            ("svc.rev", Step::DeleteDeposed)
        ]
    );
    assert!(!f.cloud.objects().contains_key(&old));
    let state = f.state();
    assert!(
        state.resources[&Address::from("svc.rev")]
            .deposed
            .is_empty()
    );
    assert_eq!(f.cloud.objects().len(), 2);
}

#[tokio::test]
async fn cancellation_lets_running_calls_finish_records_them_and_starts_nothing_new() {
    let f = fixture(100);
    let g = platform("10.0.0.0/16");
    let mut o = options();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    o.events = Some(tx);
    let cancel = o.cancel.clone();
    // Cancel as soon as the first call starts, like Ctrl-C.
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            if matches!(e.phase, dagform_core::reconcile::Phase::Started) {
                cancel.cancel();
            }
        }
    });
    let (_, report) = f.converge_with(&g, &o).await;
    assert!(report.cancelled);
    assert!(report.not_started > 0);
    // What started finished and is in the state; nothing else was created.
    let state = f.state();
    assert_eq!(state.resources.len(), report.succeeded.len());
    assert_eq!(f.cloud.objects().len(), report.succeeded.len());
    assert!(report.succeeded.len() < 5);
    // A later run picks up where it stopped.
    let report = f.converge(&g).await;
    assert!(report.is_success());
    assert_eq!(f.cloud.objects().len(), 5);
}

#[tokio::test]
async fn an_interrupted_create_is_adopted_not_duplicated() {
    let f = fixture(0);
    let g = graph(vec![NodeSpec::new(
        "shared.log",
        "thing",
        props! { "zone" => "z" },
    )]);
    // A run recorded its intent, created the object, and died before recording the id.
    {
        let mut store = StateStore::open(&f.path, "test").unwrap();
        store
            .put(
                "shared.log".into(),
                dagform_core::ResourceState {
                    kind: "thing".into(),
                    status: dagform_core::state::ResourceStatus::Creating,
                    id: None,
                    properties: json!({"zone": "z"}).as_object().unwrap().clone(),
                    outputs: Default::default(),
                    dependencies: vec![],
                    deposed: vec![],
                    intent: Some("intent-1".into()),
                },
            )
            .unwrap();
    }
    let id = f.cloud.insert("thing", "shared.log", Default::default());
    let p = f.plan(&g);
    assert_eq!(p.resources[0].action, Action::Create);
    assert!(
        p.resources[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("interrupted")
    );
    let report = f.converge(&g).await;
    assert!(report.is_success());
    assert_eq!(f.cloud.objects().len(), 1, "adopted, not duplicated");
    assert_eq!(
        f.state().resources[&Address::from("shared.log")]
            .id
            .as_deref(),
        Some(id.as_str())
    );
}

#[tokio::test]
async fn drift_is_reported_and_repaired() {
    let f = fixture(0);
    let g = platform("10.0.0.0/16");
    f.converge(&g).await;
    let (lb_id, _) = f.cloud.object_at("shared.lb").unwrap();
    let (log_id, _) = f.cloud.object_at("shared.log").unwrap();
    f.cloud.set_property(&lb_id, "size", json!(9));
    f.cloud.remove(&log_id);
    let state = f.state();
    let live: LiveView = read_live(&state, &f.kinds, &options(), |_| true)
        .await
        .unwrap();
    let p = plan(&g, &state, &f.kinds, Some(&live), &PlanOptions::default()).unwrap();
    let lb = p.get(&"shared.lb".into()).unwrap();
    assert!(
        lb.changes
            .iter()
            .any(|c| c.drift && c.old.as_deref() == Some(&json!(9)))
    );
    let log = p.get(&"shared.log".into()).unwrap();
    assert_eq!(log.action, Action::Create);
    assert_eq!(log.reason.as_deref(), Some("deleted outside dagform"));
    let mut store = StateStore::open(&f.path, "test").unwrap();
    let report = apply(&p, &g, &f.kinds, &mut store, &options())
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(lb.action, Action::Update);
    assert_eq!(f.cloud.objects()[&lb_id].properties["size"], json!(2));
    assert_eq!(f.cloud.objects().len(), 5);
}

#[tokio::test]
async fn targets_limit_the_plan_to_their_nodes() {
    let f = fixture(0);
    let g = platform("10.0.0.0/16");
    f.converge(&g).await;
    let state = f.state();
    let opts = PlanOptions {
        targets: Some(vec!["shared.log".into()]),
        destroy: true,
    };
    let p = plan(&g, &state, &f.kinds, None, &opts).unwrap();
    let changed: Vec<&str> = p
        .resources
        .iter()
        .filter(|r| r.has_work())
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(changed, ["shared.log"]);
}

#[tokio::test]
async fn secret_values_never_reach_the_state_file() {
    let f = fixture(0);
    let g = graph(vec![NodeSpec::new(
        "app.secret.stripe",
        "secret",
        props! { "name" => "stripe", "value" => "sk_live_very_secret" },
    )]);
    let p = f.plan(&g);
    let json = serde_json::to_string(&p).unwrap();
    assert!(
        !json.contains("sk_live_very_secret"),
        "plan leaks the value: {json}"
    );
    f.converge(&g).await;
    let text = std::fs::read_to_string(&f.path).unwrap();
    assert!(!text.contains("sk_live_very_secret"));
    // Unchanged secret: no change; changed secret: an update showing only fingerprints.
    assert!(!f.plan(&g).has_changes());
    let g2 = graph(vec![NodeSpec::new(
        "app.secret.stripe",
        "secret",
        props! { "name" => "stripe", "value" => "sk_live_rotated" },
    )]);
    let p = f.plan(&g2);
    assert_eq!(p.resources[0].action, Action::Update);
    let shown = serde_json::to_string(&p).unwrap();
    assert!(!shown.contains("sk_live_rotated") && shown.contains("sha256:"));
}

#[test]
fn plan_snapshot() {
    let f = fixture(0);
    let p = f.plan(&platform("10.0.0.0/16"));
    let summary = p.summary();
    assert_eq!(summary.create, 5);
    insta::assert_json_snapshot!("initial_plan", p);
}

fn objects_at(f: &Fixture, address: &str) -> Vec<String> {
    f.cloud
        .objects()
        .into_iter()
        .filter(|(_, o)| o.address.as_str() == address)
        .map(|(id, _)| id)
        .collect()
}

fn create_tokens(f: &Fixture, address: &str) -> Vec<String> {
    f.cloud
        .calls()
        .iter()
        .filter(|c| c.address.as_str() == address && c.operation == "create")
        .filter_map(|c| c.token.clone())
        .collect()
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_found_not_repeated() {
    let f = fixture(0);
    // The VPC is made, but the connection drops before the answer arrives.
    f.cloud.lose_answers("shared.vpc", 1);
    let report = f.converge(&platform("10.0.0.0/16")).await;
    assert!(report.is_success(), "{report:?}");
    let made = objects_at(&f, "shared.vpc");
    assert_eq!(made.len(), 1, "looked for before retrying: {made:?}");
    assert_eq!(
        f.state().resources[&Address::from("shared.vpc")]
            .id
            .as_deref(),
        Some(made[0].as_str())
    );
    assert_eq!(create_tokens(&f, "shared.vpc").len(), 1, "no second create");
}

#[tokio::test]
async fn a_create_that_failed_halfway_is_adopted_and_finished() {
    let f = fixture(0);
    let g = platform("10.0.0.0/16");
    // The load balancer is made, but its second call (setting `size`) fails.
    f.cloud.fail_halfway("shared.lb", "size");
    let report = f.converge(&g).await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let record = &f.state().resources[&Address::from("shared.lb")];
    assert_eq!(record.status, dagform_core::state::ResourceStatus::Creating);
    let first_intent = record.intent.clone().expect("intent kept");
    let made = objects_at(&f, "shared.lb");
    assert_eq!(made.len(), 1);
    assert!(!f.cloud.objects()[&made[0]].properties.contains_key("size"));

    // The next run adopts the half-built object and brings it to the configuration in place.
    let report = f.converge(&g).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(objects_at(&f, "shared.lb"), made, "adopted, not duplicated");
    assert_eq!(f.cloud.objects()[&made[0]].properties["size"], json!(2));
    let record = &f.state().resources[&Address::from("shared.lb")];
    assert_eq!(record.id.as_deref(), Some(made[0].as_str()));
    assert!(record.intent.is_none(), "a finished create needs no intent");
    assert!(f.call_index("shared.lb", "update") > f.call_index("shared.lb", "create"));
    assert!(!first_intent.is_empty());
    assert!(
        f.plan(&g)
            .resources
            .iter()
            .all(|r| r.action == Action::NoOp)
    );
}

#[tokio::test]
async fn one_intent_presents_one_token_across_runs() {
    let f = fixture(0);
    let g = platform("10.0.0.0/16");
    f.cloud.break_resource("shared.log", "throttled for good");
    f.converge(&g).await;
    f.converge(&g).await;
    let tokens = create_tokens(&f, "shared.log");
    assert_eq!(tokens.len(), 2);
    assert_eq!(
        tokens[0], tokens[1],
        "the re-run repeats the same intended create"
    );
    // A changed configuration is a new intent, with a new token.
    let changed = graph(vec![NodeSpec::new(
        "shared.log",
        "thing",
        props! { "zone" => "elsewhere" },
    )]);
    f.converge(&changed).await;
    let tokens = create_tokens(&f, "shared.log");
    assert_ne!(tokens[2], tokens[0]);
    // Another address never shares a token.
    assert!(
        !create_tokens(&f, "shared.vpc").contains(&tokens[0]),
        "tokens are per address"
    );
}

#[tokio::test]
async fn another_stacks_object_under_the_name_is_refused_and_left_alone() {
    let f = fixture(0);
    let theirs = f.cloud.insert_for(
        "prod-app",
        "thing",
        "shared.log",
        props_of(json!({"name": "app-logs", "zone": "none"})),
    );
    let g = graph(vec![
        NodeSpec::new(
            "shared.log",
            "thing",
            props! { "name" => "app-logs", "zone" => "none" },
        ),
        NodeSpec::new("shared.vpc", "net", props! { "cidr" => "10.0.0.0/16" }),
    ]);
    let report = f.converge(&g).await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let error = &report.failed[0].error;
    assert!(error.contains("belongs to stack `prod-app`"), "{error}");
    assert!(error.contains("app-logs"), "{error}");
    // The rest of the run went on; the other stack's object is as it was.
    assert!(
        f.state().resources[&Address::from("shared.vpc")]
            .id
            .is_some()
    );
    assert_eq!(f.cloud.objects()[&theirs].stack, "prod-app");
    // A re-run after the crash-like failure does not adopt it either.
    let report = f.converge(&g).await;
    assert_eq!(report.failed.len(), 1);
    // Destroying this stack deletes what it made and nothing of theirs.
    let report = f.destroy(&g).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(f.cloud.objects().keys().collect::<Vec<_>>(), [&theirs]);
    assert!(f.state().resources.is_empty());
}

#[tokio::test]
async fn a_replaced_object_is_never_adopted_as_its_successor() {
    let f = fixture(0);
    let g = |image: &str| {
        graph(vec![
            NodeSpec::new("svc.rev", "revision", props! { "image" => image }),
            NodeSpec::new(
                "svc.service",
                "thing",
                props! { "task" => r("svc.rev"), "zone" => "z" },
            ),
        ])
    };
    f.converge(&g("v1")).await;
    let old = objects_at(&f, "svc.rev");
    // The new revision's create fails: the old one, same stack and address, is still there.
    f.cloud.break_resource("svc.rev", "capacity");
    let report = f.converge(&g("v2")).await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    f.cloud.repair("svc.rev");
    let report = f.converge(&g("v2")).await;
    assert!(report.is_success(), "{report:?}");
    let now = objects_at(&f, "svc.rev");
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, old, "the deposed revision was replaced, not adopted");
    assert_eq!(f.cloud.objects()[&now[0]].properties["image"], json!("v2"));
}

fn props_of(v: serde_json::Value) -> dagform_core::Properties {
    v.as_object().unwrap().clone()
}

fn awaiting_approval() -> Pending {
    Pending {
        waiting_for: "subnet a to be approved".into(),
        instructions: vec!["approve subnet a at the outside host".into()],
    }
}

fn succeeded(report: &ApplyReport) -> Vec<(&str, Step)> {
    let mut steps: Vec<(&str, Step)> = report
        .succeeded
        .iter()
        .map(|(a, s)| (a.as_str(), *s))
        .collect();
    steps.sort();
    steps
}

#[tokio::test]
async fn a_pending_create_holds_back_its_dependents_without_failing() {
    let f = fixture(0);
    let g = platform("10.0.0.0/16");
    f.cloud
        .answer_pending("shared.subnet.a", awaiting_approval());
    let mut o = options();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    o.events = Some(tx);
    let (_, report) = f.converge_with(&g, &o).await;
    drop(o);

    assert!(report.failed.is_empty(), "{report:?}");
    assert!(
        report.skipped.is_empty(),
        "waiting is not skipped: {report:?}"
    );
    assert!(!report.is_success(), "not everything is done");
    assert_eq!(
        report.pending,
        [PendingStep {
            address: "shared.subnet.a".into(),
            step: Step::Create,
            waiting_for: "subnet a to be approved".into(),
            instructions: vec!["approve subnet a at the outside host".into()],
        }]
    );
    assert_eq!(
        report.waiting,
        [Waiting {
            address: "shared.lb".into(),
            step: Step::Create,
            on: "shared.subnet.a".into(),
        }]
    );
    assert_eq!(
        succeeded(&report),
        [
            ("shared.log", Step::Create),
            ("shared.subnet.b", Step::Create),
            ("shared.vpc", Step::Create)
        ]
    );
    assert!(
        !f.cloud
            .calls()
            .iter()
            .any(|c| c.address.as_str() == "shared.lb"),
        "the dependent never started"
    );
    let mut phases = Vec::new();
    while let Some(e) = rx.recv().await {
        match e.phase {
            Phase::Pending { waiting_for } => {
                phases.push(format!("{} pending: {waiting_for}", e.address))
            }
            Phase::Waiting { on } => phases.push(format!("{} waits on {on}", e.address)),
            _ => {}
        }
    }
    assert_eq!(
        phases,
        [
            "shared.subnet.a pending: subnet a to be approved",
            "shared.lb waits on shared.subnet.a"
        ]
    );
    // Recorded as still being created, exactly as an interrupted create is.
    let record = &f.state().resources[&Address::from("shared.subnet.a")];
    assert_eq!(record.status, ResourceStatus::Creating);
    assert!(record.id.is_none() && record.intent.is_some(), "{record:?}");
    assert!(
        !f.state()
            .resources
            .contains_key(&Address::from("shared.lb"))
    );
}

#[tokio::test]
async fn a_later_run_finishes_a_pending_node_and_then_its_dependents() {
    let f = fixture(0);
    let g = platform("10.0.0.0/16");
    f.cloud
        .answer_pending("shared.subnet.a", awaiting_approval());
    f.converge(&g).await;
    let made = objects_at(&f, "shared.subnet.a");
    assert_eq!(made.len(), 1);
    let intent = f.state().resources[&Address::from("shared.subnet.a")]
        .intent
        .clone();

    // Still waiting: the run checks again, finds the same object, makes no other.
    let report = f.converge(&g).await;
    assert_eq!(report.pending.len(), 1, "{report:?}");
    assert_eq!(report.waiting.len(), 1, "{report:?}");
    assert!(report.succeeded.is_empty(), "{report:?}");
    assert_eq!(
        objects_at(&f, "shared.subnet.a"),
        made,
        "looked for, not repeated"
    );
    let record = &f.state().resources[&Address::from("shared.subnet.a")];
    assert_eq!(record.status, ResourceStatus::Creating);
    assert_eq!(record.intent, intent, "the same intended create");

    // The outside condition is met: the next run completes the node and its dependents.
    f.cloud.condition_met("shared.subnet.a");
    let report = f.converge(&g).await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(
        succeeded(&report),
        [
            ("shared.lb", Step::Create),
            ("shared.subnet.a", Step::Create)
        ]
    );
    let record = &f.state().resources[&Address::from("shared.subnet.a")];
    assert_eq!(record.status, ResourceStatus::Ready);
    assert_eq!(record.id.as_deref(), Some(made[0].as_str()), "adopted");
    assert!(record.intent.is_none());
    let (_, lb) = f.cloud.object_at("shared.lb").unwrap();
    assert_eq!(lb.properties["subnets"][0], json!(made[0]));
    assert!(!f.plan(&g).has_changes());
}

#[tokio::test]
async fn a_pending_update_keeps_the_record_and_stays_planned() {
    let f = fixture(0);
    let g = |size: i64| {
        graph(vec![NodeSpec::new(
            "shared.log",
            "thing",
            props! { "zone" => "none", "size" => size },
        )])
    };
    f.converge(&g(1)).await;
    let g = g(3);
    f.cloud.answer_pending("shared.log", awaiting_approval());
    let report = f.converge(&g).await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.pending.len(), 1, "{report:?}");
    assert_eq!(report.pending[0].step, Step::Update);
    let record = &f.state().resources[&Address::from("shared.log")];
    assert_eq!(record.status, ResourceStatus::Ready);
    assert_eq!(record.properties["size"], json!(1), "not recorded as done");
    assert_eq!(
        f.plan(&g).get(&"shared.log".into()).unwrap().action,
        Action::Update,
        "the next run updates again"
    );
    f.cloud.condition_met("shared.log");
    let report = f.converge(&g).await;
    assert!(report.is_success(), "{report:?}");
    assert!(!f.plan(&g).has_changes());
}
