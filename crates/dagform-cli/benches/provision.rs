//! How fast dagform provisions and destroys the multi-customer platform as it grows, compared
//! in one run with the critical path of its graph, with one operation at a time, and with the
//! seed's route of stacks deployed one after another; and what `plan` costs at the sizes users
//! grow into.
//!
//! The walks run over an in-memory provider whose calls and waits take AWS's typical times,
//! scaled down 100×: every call a few hundred milliseconds, and the long waits (NAT gateway,
//! load balancer, certificate, a service draining) polled the way the real kinds poll them.
//! The last part provisions the example against the local emulator with the real binary.

#[path = "../../../tests/support/mod.rs"]
mod support;

use dagform_core::plan::{PlanOptions, plan};
use dagform_core::reconcile::{ApplyOptions, apply};
use dagform_core::testing::{MemoryCloud, MemoryKind};
use dagform_core::{Address, FileParts, Kinds, ResourceGraph, State, StateStore, WriteScope};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Typical AWS times in seconds, per kind: (each call, the wait after a create, the wait after
/// a delete). The waits are what AWS takes to make the object ready or gone.
const SECONDS: &[(&str, f64, f64, f64)] = &[
    ("aws_nat_gateway", 0.5, 90.0, 60.0),
    ("aws_lb", 0.5, 150.0, 30.0),
    ("aws_acm_certificate_validation", 0.3, 180.0, 0.0),
    ("aws_acm_certificate", 5.0, 0.0, 0.0),
    ("aws_ecs_service", 2.0, 0.0, 300.0),
    ("aws_iam_role", 2.0, 0.0, 0.0),
    ("aws_ecs_cluster", 1.0, 0.0, 0.0),
    ("aws_ecs_task_definition", 0.5, 0.0, 0.0),
    ("aws_route53_record", 1.0, 0.0, 0.0),
    ("aws_vpc", 0.5, 0.0, 0.0),
    ("aws_subnet", 0.3, 0.0, 0.0),
    ("aws_internet_gateway", 0.5, 0.0, 0.0),
    ("aws_eip", 0.3, 0.0, 0.0),
    ("aws_route_table", 0.3, 0.0, 0.0),
    ("aws_route_table_association", 0.3, 0.0, 0.0),
    ("aws_security_group", 0.3, 0.0, 0.0),
    ("aws_security_group_rule", 0.3, 0.0, 0.0),
    ("aws_cloudwatch_log_group", 0.2, 0.0, 0.0),
    ("aws_ecr_repository", 0.3, 0.0, 0.0),
    ("aws_lb_target_group", 0.3, 0.0, 0.0),
    ("aws_lb_listener", 0.5, 0.0, 0.0),
    ("aws_lb_listener_rule", 0.3, 0.0, 0.0),
    ("data_route53_zone", 0.2, 0.0, 0.0),
    ("aws_appautoscaling_target", 0.5, 0.0, 0.0),
    ("aws_appautoscaling_policy", 0.5, 0.0, 0.0),
    ("aws_cloudwatch_metric_alarm", 0.2, 0.0, 0.0),
    ("aws_sns_topic", 0.3, 0.0, 0.0),
    ("aws_sns_topic_subscription", 0.3, 0.0, 0.0),
    ("aws_wafv2_web_acl", 0.5, 0.0, 0.0),
    ("aws_wafv2_web_acl_association", 0.5, 0.0, 0.0),
];
const SCALE: f64 = 100.0;
/// Real kinds poll every five seconds; scaled down like everything else.
const POLL: Duration = Duration::from_millis(50);
/// The customer counts the walks are measured at, and the larger ones `plan` is measured at.
const CUSTOMERS: &[usize] = &[1, 10, 50, 500];
const PLAN_CUSTOMERS: &[usize] = &[500, 2000];
/// Walks slower than dagform's grow with every resource; beyond this size they are left out.
const SLOW_WALKS_UP_TO: usize = 50;
/// dagform's own walks are repeated this many times up to `SLOW_WALKS_UP_TO` customers, and
/// their median shown with the spread: on a shared machine one walk can be off by 5%.
const RUNS: usize = 5;

fn scaled(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds / SCALE)
}

/// The scaled (call, create wait, delete wait) of a kind.
fn times(kind: &str) -> (Duration, Duration, Duration) {
    let (_, call, create, delete) = SECONDS
        .iter()
        .find(|(k, ..)| *k == kind)
        .unwrap_or_else(|| panic!("no latency for {kind}"));
    (scaled(*call), scaled(*create), scaled(*delete))
}

fn simulated_kinds(cloud: &Arc<MemoryCloud>) -> Kinds {
    let mut kinds = Kinds::new();
    for (name, ..) in SECONDS {
        let (call, create, delete) = times(name);
        let mut kind = MemoryKind::new(name, cloud).latency(call);
        if !create.is_zero() {
            kind = kind.settles_after(create);
        }
        if !delete.is_zero() {
            kind = kind.deletes_after(delete);
        }
        // Waiting objects are polled as the AWS kinds poll them: NAT gateways 100 and load
        // balancers 20 to a describe call, draining services 10.
        kind = match *name {
            "aws_nat_gateway" => kind.polls_in_batches_of(100),
            "aws_lb" => kind.polls_in_batches_of(20),
            "aws_ecs_service" => kind.polls_in_batches_of(10),
            _ => kind,
        };
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
            "aws_lb_target_group" => kind.output("arn_suffix", json!("targetgroup/bench/0123456789abcdef")),
            _ => kind,
        };
        kinds.register(Arc::new(kind));
    }
    kinds
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/multi-customer/dagform.toml")
}

/// The example with `customers` customers: its own first ones, then `c0003`, `c0004`…
fn customer_names(customers: usize) -> Vec<String> {
    let mut names = vec!["global".to_owned(), "customer1".to_owned()];
    names.extend((names.len()..customers).map(|i| format!("c{:04}", i + 1)));
    names.truncate(customers);
    names
}

fn example_graph(customers: usize) -> ResourceGraph {
    let path = example_path();
    let config = dagform_config::parse(&path, &example_source(customers)).expect("example config");
    dagform_config::blueprint(&config, &path, None)
        .expect("blueprint")
        .graph
}

/// The example's configuration with `customers` customers.
fn example_source(customers: usize) -> String {
    let source = std::fs::read_to_string(example_path()).expect("example config");
    let mut source = source[..source.find("[customers.").expect("customers")].to_owned();
    for name in customer_names(customers) {
        let domain = match name.as_str() {
            "global" => "freeinterestcal.com".to_owned(),
            other => format!("{other}.freeinterestcal.com"),
        };
        source.push_str(&format!(
            "[customers.{name}]\ndomain = \"{domain}\"\ndisplay_name = \"{name}\"\n\n"
        ));
    }
    source
}

/// When each step could start at the earliest, with unlimited calls in flight, and what it
/// then takes: (start, its call, its wait). Deleting runs the same chains the other way round.
fn earliest_starts(graph: &ResourceGraph, destroy: bool) -> Vec<(Duration, Duration, Duration)> {
    let order: Vec<&Address> = graph.topological().iter().map(|n| &n.address).collect();
    let mut finish: HashMap<&Address, Duration> = HashMap::new();
    let mut dependents: HashMap<&Address, Vec<&Address>> = HashMap::new();
    for a in &order {
        for d in graph.dependencies(a) {
            dependents.entry(d).or_default().push(a);
        }
    }
    let walk: Box<dyn Iterator<Item = &&Address>> = if destroy {
        Box::new(order.iter().rev())
    } else {
        Box::new(order.iter())
    };
    let mut starts = Vec::with_capacity(order.len());
    for a in walk {
        let before: Vec<&Address> = if destroy {
            dependents.get(a).cloned().unwrap_or_default()
        } else {
            graph.dependencies(a)
        };
        let start = before
            .iter()
            .filter_map(|b| finish.get(b))
            .max()
            .copied()
            .unwrap_or_default();
        let (call, create, delete) = times(&graph.get(a).expect("node").kind);
        let wait = if destroy { delete } else { create };
        finish.insert(a, start + call + wait);
        starts.push((start, call, wait));
    }
    starts
}

/// The lower bound of any walk: the longest chain of dependencies, each step taking its
/// call and its wait.
fn critical_path(graph: &ResourceGraph, destroy: bool) -> Duration {
    earliest_starts(graph, destroy)
        .into_iter()
        .map(|(start, call, wait)| start + call + wait)
        .max()
        .unwrap_or_default()
}

/// A tighter lower bound once calls queue for their `parallelism` slots (a wait holds none):
/// the calls that cannot start before time t need their time shared among the slots after t,
/// so no walk ends before t plus that share, whatever t is. At a few customers this is the
/// critical path; at hundreds, the calls left after the certificate's wait decide.
fn bound_with_slots(graph: &ResourceGraph, destroy: bool, parallelism: usize) -> Duration {
    let slots = u32::try_from(parallelism).expect("a parallelism that fits");
    let mut starts = earliest_starts(graph, destroy);
    starts.sort_by_key(|&(start, ..)| std::cmp::Reverse(start));
    let mut calls_after = Duration::ZERO;
    let mut bound = critical_path(graph, destroy);
    for (start, call, _) in starts {
        calls_after += call;
        bound = bound.max(start + calls_after / slots);
    }
    bound
}

fn options(parallelism: usize) -> ApplyOptions {
    let mut options = ApplyOptions::new("bench");
    options.parallelism = parallelism;
    options.poll.interval = POLL;
    options
}

/// Provisions `graph` in the given stages (each a set of address prefixes; `None` = all at
/// once), returning the elapsed time and the store holding the result.
async fn provision(
    graph: &ResourceGraph,
    kinds: &Kinds,
    store: &mut StateStore,
    stages: &[Option<Vec<String>>],
    parallelism: usize,
) -> Duration {
    let started = Instant::now();
    for targets in stages {
        let p = plan(
            graph,
            store.state(),
            kinds,
            None,
            &PlanOptions {
                targets: targets.clone(),
                destroy: false,
            },
        )
        .unwrap();
        let report = apply(&p, graph, kinds, store, &options(parallelism))
            .await
            .unwrap();
        assert!(report.is_success(), "{report:?}");
    }
    let elapsed = started.elapsed();
    let rest = plan(graph, store.state(), kinds, None, &PlanOptions::default()).unwrap();
    assert!(
        !rest.has_changes(),
        "every stage together must cover the whole platform"
    );
    elapsed
}

async fn destroy(
    graph: &ResourceGraph,
    kinds: &Kinds,
    store: &mut StateStore,
    parallelism: usize,
) -> Duration {
    let started = Instant::now();
    let p = plan(
        graph,
        store.state(),
        kinds,
        None,
        &PlanOptions {
            targets: None,
            destroy: true,
        },
    )
    .unwrap();
    let report = apply(&p, graph, kinds, store, &options(parallelism))
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert!(store.state().resources.is_empty(), "destroy left resources");
    started.elapsed()
}

/// A provision and destroy of one graph.
struct RoundTrip {
    up: Duration,
    down: Duration,
    /// How many times provision flushed the state to disk, and the time it spent writing it.
    up_flushes: u64,
    up_writing: Duration,
}

/// Provisions then destroys `graph` (in `stages`), on a fresh in-memory cloud, with the state
/// in a file of the system's temporary folder (`TMPDIR`), fsynced as on any run.
async fn round_trip(
    graph: &ResourceGraph,
    stages: &[Option<Vec<String>>],
    parallelism: usize,
) -> RoundTrip {
    round_trip_in(&std::env::temp_dir(), graph, stages, parallelism).await
}

/// [`round_trip`] with the state in `folder`.
async fn round_trip_in(
    folder: &Path,
    graph: &ResourceGraph,
    stages: &[Option<Vec<String>>],
    parallelism: usize,
) -> RoundTrip {
    let cloud = MemoryCloud::new();
    let kinds = simulated_kinds(&cloud);
    let dir = tempfile::tempdir_in(folder).unwrap();
    // Kept as every run keeps it: a shared part and one part per customer.
    let parts = FileParts::new(&dir.path().join("bench.json"));
    let everything = WriteScope::Everything { customers: vec![] };
    let mut store = StateStore::open_parts(Box::new(parts), "bench", &everything).unwrap();
    let (flushes, writing) = store.write_stats();
    let up = provision(graph, &kinds, &mut store, stages, parallelism).await;
    let (up_flushes, up_writing) = store.write_stats();
    let down = destroy(graph, &kinds, &mut store, parallelism).await;
    RoundTrip {
        up,
        down,
        up_flushes: up_flushes - flushes,
        up_writing: up_writing - writing,
    }
}

/// The seed's route: the certificate set up by hand, six shared stacks, then six stacks per
/// customer, each deployed after the previous one finished (resources within one stack run
/// concurrently, as CloudFormation does).
fn seed_stacks(graph: &ResourceGraph, customers: &[String]) -> Vec<Option<Vec<String>>> {
    // The load-balancer stack holds every load balancer, its listeners and target groups.
    let load_balancing: Vec<String> = graph
        .topological()
        .iter()
        .map(|n| n.address.as_str().to_owned())
        .filter(|a| {
            ["shared.alb", "shared.target_group", "shared.listener"]
                .iter()
                .any(|p| a.starts_with(p))
        })
        .collect();
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
        Some(load_balancing),
        // Paging, which the seed's stacks leave to the console: one more stack here.
        stage(&["shared.alarm_topic", "shared.alarm_subscription"]),
    ];
    for c in customers {
        for part in [
            "log_group",
            "target_group",
            "listener_rule",
            "task_definition",
            "service",
            "dns_record",
            // Scaling and alarms: the seed's next steps, a stack each here.
            "scaling_target",
            "scaling_policy",
            "alarm",
        ] {
            stages.push(Some(vec![format!("customer.{c}.{part}")]));
        }
    }
    stages
}

fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn ratio(t: Duration, base: Duration) -> String {
    format!("{:.2}×", t.as_secs_f64() / base.as_secs_f64())
}

fn on_aws(d: Duration) -> String {
    let minutes = d.as_secs_f64() * SCALE / 60.0;
    if minutes >= 60.0 {
        format!("≈ {:.1} h on AWS", minutes / 60.0)
    } else {
        format!("≈ {minutes:.1} min on AWS")
    }
}

/// The peak resident memory of this process so far, from the kernel.
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// `plan` of a new stack of `customers` customers: expanding the configuration and planning
/// every resource, timed; run as a child process of its own so its peak memory is its own.
fn plan_child(customers: usize) {
    let started = Instant::now();
    let graph = example_graph(customers);
    let cloud = MemoryCloud::new();
    let kinds = simulated_kinds(&cloud);
    let p = plan(
        &graph,
        &State::new("bench"),
        &kinds,
        None,
        &PlanOptions::default(),
    )
    .unwrap();
    let elapsed = started.elapsed();
    let summary = p.summary();
    assert_eq!(summary.create + summary.read, graph.len());
    println!(
        "{} {} {:.3} {:.0}",
        customers,
        graph.len(),
        elapsed.as_secs_f64(),
        peak_memory_mib().unwrap_or(f64::NAN)
    );
}

fn plan_sizes() {
    println!(
        "\n`plan` of a new stack (configuration expanded, every resource planned; median of \
         {RUNS} runs, each in a process of its own):"
    );
    println!(
        "  {:>9}  {:>9}  {:>8}  {:>15}  {:>11}",
        "customers", "resources", "time", "runs", "peak memory"
    );
    for customers in PLAN_CUSTOMERS {
        // (resources, seconds, peak MiB) of each run.
        let mut runs: Vec<(String, f64, String)> = (0..RUNS)
            .map(|_| {
                let out = std::process::Command::new(std::env::current_exe().unwrap())
                    .args(["--plan-child", &customers.to_string()])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let text = String::from_utf8_lossy(&out.stdout);
                let fields: Vec<&str> = text.split_whitespace().collect();
                (
                    fields[1].to_owned(),
                    fields[2].parse().expect("seconds"),
                    fields[3].to_owned(),
                )
            })
            .collect();
        runs.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (resources, median, memory) = &runs[runs.len() / 2];
        let spread = format!("{:.3} to {:.3}", runs[0].1, runs[runs.len() - 1].1);
        println!("  {customers:>9}  {resources:>9}  {median:>7.3}s  {spread:>15}  {memory:>7} MiB");
    }
}

/// A RAM-backed folder to keep the state in as well, when there is one and `TMPDIR` is not
/// already in it: each flush waits for the disk, and there it costs next to nothing, so the two
/// walks side by side tell the disk's share from dagform's own work.
fn ram_folder() -> Option<PathBuf> {
    let shm = Path::new("/dev/shm");
    (shm.is_dir() && !std::env::temp_dir().starts_with(shm)).then(|| shm.to_path_buf())
}

fn walks(runtime: &tokio::runtime::Runtime) {
    let default = ApplyOptions::new("bench").parallelism;
    println!("Simulated AWS (every call and wait scaled down {SCALE}×), --parallelism {default}:");
    println!(
        "(state kept under {}; TMPDIR moves it)",
        std::env::temp_dir().display()
    );
    let ram = ram_folder();
    for &customers in CUSTOMERS {
        let graph = example_graph(customers);
        let names = customer_names(customers);
        println!("\n  {customers} customers, {} resources", graph.len());
        let up_bound = critical_path(&graph, false);
        let down_bound = critical_path(&graph, true);
        let runs = if customers <= SLOW_WALKS_UP_TO {
            RUNS
        } else {
            1
        };
        let repeated_in = |folder: &Path| {
            Repeated::of(runs, || {
                runtime.block_on(round_trip_in(folder, &graph, &[None], default))
            })
        };
        let dagform = repeated_in(&std::env::temp_dir());
        let up = dagform.median(|walk| walk.up);
        row("critical path (provision)", up_bound, up_bound);
        row(
            &format!("bound with {default} call slots (provision)"),
            bound_with_slots(&graph, false, default),
            up_bound,
        );
        dagform.rows("dagform provision", |walk| walk.up, up_bound);
        writing_row(dagform.median_up(), graph.len());
        let in_ram = ram.as_deref().map(|folder| (folder, repeated_in(folder)));
        if let Some((folder, in_ram)) = &in_ram {
            let label = format!("  with the state in {}", folder.display());
            in_ram.rows(&label, |walk| walk.up, up_bound);
            writing_row(in_ram.median_up(), graph.len());
        }
        if customers <= SLOW_WALKS_UP_TO {
            let sequential = runtime.block_on(round_trip(&graph, &[None], 1)).up;
            let stacks = runtime
                .block_on(round_trip(&graph, &seed_stacks(&graph, &names), default))
                .up;
            row("one operation at a time", sequential, up_bound);
            row(
                &format!("seed: {} stacks one after another", 8 + 9 * customers),
                stacks,
                up_bound,
            );
            println!(
                "    dagform is {} faster than one at a time, {} faster than the stacks",
                ratio(sequential, up),
                ratio(stacks, up)
            );
        }
        row("critical path (destroy)", down_bound, down_bound);
        row(
            &format!("bound with {default} call slots (destroy)"),
            bound_with_slots(&graph, true, default),
            down_bound,
        );
        dagform.rows("dagform destroy", |walk| walk.down, down_bound);
        if let Some((folder, in_ram)) = &in_ram {
            let label = format!("  with the state in {}", folder.display());
            in_ram.rows(&label, |walk| walk.down, down_bound);
        }
    }
}

/// The same round trip run several times.
struct Repeated(Vec<RoundTrip>);

impl Repeated {
    fn of(runs: usize, mut run: impl FnMut() -> RoundTrip) -> Self {
        Self((0..runs.max(1)).map(|_| run()).collect())
    }

    /// The walk whose `time` is the median.
    fn median_by(&self, time: impl Fn(&RoundTrip) -> Duration) -> &RoundTrip {
        let mut walks: Vec<&RoundTrip> = self.0.iter().collect();
        walks.sort_by_key(|walk| time(walk));
        walks[walks.len() / 2]
    }

    fn median_up(&self) -> &RoundTrip {
        self.median_by(|walk| walk.up)
    }

    /// The median `time`.
    fn median(&self, time: impl Fn(&RoundTrip) -> Duration) -> Duration {
        time(self.median_by(&time))
    }

    /// The row of the median `time` against `bound`, and when there were several runs the
    /// fastest and slowest beneath it.
    fn rows(&self, what: &str, time: impl Fn(&RoundTrip) -> Duration, bound: Duration) {
        let runs = self.0.len();
        if runs == 1 {
            row(what, time(&self.0[0]), bound);
            return;
        }
        row(
            &format!("{what} (median of {runs})"),
            self.median(&time),
            bound,
        );
        let times: Vec<Duration> = self.0.iter().map(&time).collect();
        let (least, most) = (times.iter().min().unwrap(), times.iter().max().unwrap());
        println!(
            "    {:<42} {:>8} to {}",
            format!("  the {runs} runs"),
            seconds(*least),
            seconds(*most)
        );
    }
}

/// How much of a provision went on writing the state.
fn writing_row(walk: &RoundTrip, resources: usize) {
    println!(
        "    {:<42} {:>8}  {:>5.1}% of provision time ({} flushes for {} resources)",
        "  of which writing the state",
        seconds(walk.up_writing),
        100.0 * walk.up_writing.as_secs_f64() / walk.up.as_secs_f64(),
        walk.up_flushes,
        resources
    );
}

/// Provision and destroy of 50 customers at several `--parallelism` values, next to the
/// critical path: where raising it stops paying is what the default is chosen from.
fn parallelism_sweep(runtime: &tokio::runtime::Runtime) {
    const CUSTOMERS: usize = 50;
    let graph = example_graph(CUSTOMERS);
    let (up_bound, down_bound) = (critical_path(&graph, false), critical_path(&graph, true));
    println!("\n  --parallelism at {CUSTOMERS} customers (provision and destroy, × the bound):");
    for parallelism in [10, 20, 32, 50, 100] {
        let RoundTrip { up, down, .. } = runtime.block_on(round_trip(&graph, &[None], parallelism));
        println!(
            "    {parallelism:>4}   provision {:>7} ({:>6})   destroy {:>7} ({:>6})",
            seconds(up),
            ratio(up, up_bound),
            seconds(down),
            ratio(down, down_bound)
        );
    }
}

fn row(label: &str, t: Duration, bound: Duration) {
    println!(
        "    {label:<42} {:>8}  {:>6} of the bound  {}",
        seconds(t),
        ratio(t, bound),
        on_aws(t)
    );
}

fn provision_on_emulator(parallelism: &str) -> Duration {
    let emu = support::Emulator::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        support::create_zone(&emu.clients().await, "freeinterestcal.com").await
    });
    let project = support::Project::from_example("multi-customer");
    let started = Instant::now();
    quietly(
        project
            .dagform(&emu, &["provision", "--yes", "--parallelism", parallelism])
            .env("DAGFORM_POLL_INTERVAL", "100ms"),
    );
    started.elapsed()
}

/// Runs `command`, printing nothing unless it fails.
fn quietly(command: &mut std::process::Command) -> std::process::Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Refreshing a 50-customer stack against the emulator with the real binary: the AWS calls
/// `plan` spends reading every recorded resource back, per resource.
fn refresh_on_emulator() {
    const CUSTOMERS: usize = 50;
    let emu = support::Emulator::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        support::create_zone(&emu.clients().await, "freeinterestcal.com").await
    });
    let project = support::Project::from_example("multi-customer");
    project.write_config(&example_source(CUSTOMERS));
    quietly(&mut project.dagform(&emu, &["provision", "--yes"]));
    let out = quietly(&mut project.dagform(&emu, &["plan"]));
    let out = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    // "refreshed N resources with M AWS calls in S s"
    let line = out
        .lines()
        .find(|l| l.starts_with("refreshed "))
        .unwrap_or_else(|| panic!("plan printed no refresh line:\n{out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let resources: f64 = words[1].parse().expect("resources");
    let calls: f64 = words[4].parse().expect("calls");
    println!(
        "  refresh of {CUSTOMERS} customers: {resources} resources, {calls} AWS calls ({:.2} per resource, one per {:.1})",
        calls / resources,
        resources / calls
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--plan-child") {
        plan_child(args[i + 1].parse().expect("a customer count"));
        return;
    }
    // `cargo bench -- NAME…` runs only the named parts; `cargo bench` passes flags such as
    // --bench, which name none.
    const PARTS: &[&str] = &["walks", "parallelism", "plan", "emulator"];
    let named: Vec<&str> = args
        .iter()
        .skip(1)
        .map(String::as_str)
        .filter(|a| PARTS.contains(a))
        .collect();
    let runs = |part: &str| named.is_empty() || named.contains(&part);
    println!("dagform benchmark — one run; ratios are between rows of that run\n");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if runs("walks") {
        walks(&runtime);
    }
    if runs("parallelism") {
        parallelism_sweep(&runtime);
    }
    if runs("plan") {
        plan_sizes();
    }
    if !runs("emulator") {
        return;
    }

    println!(
        "\nLocal emulator (real binary, real SDK calls; the emulator answers in milliseconds, so"
    );
    println!("process start-up and the certificate's validation delay dominate here):");
    let default = ApplyOptions::new("bench").parallelism.to_string();
    let fast = provision_on_emulator(&default);
    let slow = provision_on_emulator("1");
    println!(
        "  dagform provision (--parallelism {default})  {}",
        seconds(fast)
    );
    println!(
        "  dagform provision (--parallelism 1)   {}  {}",
        seconds(slow),
        ratio(slow, fast)
    );
    refresh_on_emulator();
}
