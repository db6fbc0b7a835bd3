//! A crash campaign: the multi-customer example provisioned and destroyed by the real binary
//! through a latency layer (so kills land inside waits and between the calls of one create),
//! SIGKILLed at a seeded random moment, then run again to completion. After each trial AWS is
//! read back and compared with what one clean run makes: nothing duplicated, nothing missing,
//! and nothing left after destroy.
//!
//! `DAGFORM_CRASH_TRIALS` (default 2) trials; trial n uses seed `DAGFORM_CRASH_SEED` + n, which
//! picks the kill moments (as fractions of a clean run's duration) and the layer's latencies,
//! so trial n of seed S replays as trial 1 of seed S + n - 1. `make crash TRIALS=N [SEED=S]`.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::faults::{FaultProxy, Faults, Inventory};
use support::{Emulator, Project, create_zone};

const ZONE: &str = "freeinterestcal.com";
const DEFAULT_TRIALS: u64 = 2;
const DEFAULT_SEED: u64 = 0x5EED_0008;

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a whole number")),
        Err(_) => default,
    }
}

/// One private account: an emulator with the hosted zone, the latency layer in front of it,
/// and a copy of the example with its own state.
struct Site {
    runtime: tokio::runtime::Runtime,
    emulator: Emulator,
    proxy: FaultProxy,
    clients: dagform_aws::AwsClients,
    project: Project,
    /// The account before dagform ran: what destroy must return it to.
    fresh: Inventory,
}

/// How a run of the binary ended.
struct Run {
    success: bool,
    elapsed: Duration,
    output: String,
}

impl Site {
    fn new(seed: u64) -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let emulator = Emulator::start();
        let clients = runtime.block_on(emulator.clients());
        runtime.block_on(create_zone(&clients, ZONE));
        let fresh = runtime.block_on(Inventory::read(&clients));
        let proxy = FaultProxy::start(&emulator, Faults::realistic_latency(seed));
        Self {
            runtime,
            emulator,
            proxy,
            clients,
            project: Project::from_example("multi-customer"),
            fresh,
        }
    }

    fn command(&self, verb: &str, log: &Path) -> Command {
        let mut cmd = self.project.dagform(&self.emulator, &[verb, "--yes"]);
        let log = std::fs::File::create(log).expect("log file");
        cmd.envs(self.proxy.env(&self.emulator))
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        cmd
    }

    fn log_path(&self, name: &str) -> std::path::PathBuf {
        self.project.dir.path().join(format!("{name}.log"))
    }

    /// Runs `dagform <verb>` to its end.
    fn run(&self, verb: &str) -> Run {
        let log = self.log_path(verb);
        let started = Instant::now();
        let status = self.command(verb, &log).status().expect("run dagform");
        Run {
            success: status.success(),
            elapsed: started.elapsed(),
            output: std::fs::read_to_string(&log).unwrap_or_default(),
        }
    }

    /// Starts `dagform <verb>` and SIGKILLs it after `after`; false if it had already ended.
    fn kill_during(&self, verb: &str, after: Duration) -> bool {
        let log = self.log_path(&format!("{verb}-killed"));
        let mut child = self
            .command(verb, &log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start dagform");
        std::thread::sleep(after);
        let running = child.try_wait().expect("child status").is_none();
        if running {
            child.kill().expect("SIGKILL dagform");
        }
        child.wait().expect("reap dagform");
        running
    }

    fn inventory(&self) -> Inventory {
        self.runtime.block_on(Inventory::read(&self.clients))
    }

    fn private_subnets_without_nat_route(&self) -> Vec<String> {
        self.runtime
            .block_on(Inventory::private_subnets_without_nat_route(&self.clients))
    }
}

/// What one clean, uninterrupted provision makes, and how long provision and destroy take.
struct Baseline {
    provisioned: Inventory,
    provision_time: Duration,
    destroy_time: Duration,
}

fn baseline(seed: u64) -> Baseline {
    let site = Site::new(seed);
    let provision = site.run("provision");
    assert!(
        provision.success,
        "clean provision failed:\n{}",
        provision.output
    );
    let provisioned = site.inventory();
    assert_eq!(
        site.private_subnets_without_nat_route(),
        Vec::<String>::new(),
        "clean provision: private subnets without a NAT route"
    );
    let destroy = site.run("destroy");
    assert!(destroy.success, "clean destroy failed:\n{}", destroy.output);
    let left = site.inventory().differences(&site.fresh);
    assert!(
        left.is_empty(),
        "a clean destroy left or removed: {left:#?}"
    );
    let made: Vec<String> = provisioned
        .0
        .iter()
        .map(|(kind, items)| format!("{kind} {}", items.len()))
        .collect();
    eprintln!(
        "clean run: provision {:.1?}, destroy {:.1?}; made {}; through the layer: {}",
        provision.elapsed,
        destroy.elapsed,
        made.join(", "),
        site.proxy.report()
    );
    Baseline {
        provisioned,
        provision_time: provision.elapsed,
        destroy_time: destroy.elapsed,
    }
}

/// The outcome of one trial, and what differed from a clean run.
#[derive(Default)]
struct Trial {
    converged: bool,
    duplicates: Vec<String>,
    missing: Vec<String>,
    leftovers: Vec<String>,
    failures: Vec<String>,
}

fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn trial(number: u64, seed: u64, baseline: &Baseline) -> Trial {
    let mut rng = StdRng::seed_from_u64(seed);
    let site = Site::new(seed);
    let mut trial = Trial::default();
    let moment = |rng: &mut StdRng, whole: Duration| whole.mul_f64(rng.random_range(0.05..0.95));

    let provision_kill = moment(&mut rng, baseline.provision_time);
    let killed_provision = site.kill_during("provision", provision_kill);
    let provision = site.run("provision");
    if !provision.success {
        trial.failures.push(format!(
            "provision re-run failed:\n{}",
            tail(&provision.output)
        ));
    }
    let differences = site.inventory().differences(&baseline.provisioned);
    trial.duplicates = differences.extra;
    trial.missing = differences.missing;
    for cidr in site.private_subnets_without_nat_route() {
        trial
            .missing
            .push(format!("NAT route of private subnet {cidr}"));
    }

    let destroy_kill = moment(&mut rng, baseline.destroy_time);
    let killed_destroy = site.kill_during("destroy", destroy_kill);
    let destroy = site.run("destroy");
    if !destroy.success {
        trial
            .failures
            .push(format!("destroy re-run failed:\n{}", tail(&destroy.output)));
    }
    let left = site.inventory().differences(&site.fresh);
    trial.leftovers = left.extra;
    trial.failures.extend(
        left.missing
            .into_iter()
            .map(|m| format!("destroy removed {m}")),
    );
    trial.converged = trial.failures.is_empty()
        && trial.duplicates.is_empty()
        && trial.missing.is_empty()
        && trial.leftovers.is_empty();

    let at = |killed: bool, when: Duration, whole: Duration| {
        let when = format!("{:.1}s of ~{:.1}s", when.as_secs_f64(), whole.as_secs_f64());
        if killed {
            format!("killed at {when}")
        } else {
            format!("ended before the kill at {when}")
        }
    };
    eprintln!(
        "trial {number} (seed {seed}): provision {}, re-run {} in {:.1?}; destroy {}, re-run {} \
         in {:.1?}; duplicates {}, missing {}, leftovers {}",
        at(killed_provision, provision_kill, baseline.provision_time),
        if provision.success { "ok" } else { "FAILED" },
        provision.elapsed,
        at(killed_destroy, destroy_kill, baseline.destroy_time),
        if destroy.success { "ok" } else { "FAILED" },
        destroy.elapsed,
        trial.duplicates.len(),
        trial.missing.len(),
        trial.leftovers.len(),
    );
    trial
}

#[test]
fn provision_and_destroy_killed_at_random_moments_converge_when_run_again() {
    let trials = env_number("DAGFORM_CRASH_TRIALS", DEFAULT_TRIALS);
    let seed = env_number("DAGFORM_CRASH_SEED", DEFAULT_SEED);
    let baseline = baseline(seed);
    let results: Vec<Trial> = (1..=trials)
        .map(|n| trial(n, seed.wrapping_add(n), &baseline))
        .collect();

    let sum = |f: fn(&Trial) -> usize| results.iter().map(f).sum::<usize>();
    eprintln!(
        "crash trials: {trials}, converged: {}, duplicates: {}, missing: {}, leftovers: {}",
        results.iter().filter(|t| t.converged).count(),
        sum(|t| t.duplicates.len()),
        sum(|t| t.missing.len()),
        sum(|t| t.leftovers.len()),
    );
    let mut report = String::new();
    for (n, t) in results.iter().enumerate().filter(|(_, t)| !t.converged) {
        report.push_str(&format!(
            "\ntrial {} (seed {}):\n",
            n + 1,
            seed.wrapping_add(n as u64 + 1)
        ));
        for (label, items) in [
            ("duplicated", &t.duplicates),
            ("missing", &t.missing),
            ("left after destroy", &t.leftovers),
            ("failed", &t.failures),
        ] {
            for item in items {
                report.push_str(&format!("  {label}: {item}\n"));
            }
        }
    }
    assert!(report.is_empty(), "trials that did not converge:{report}");
}
