//! The reconciler: executes a plan by walking the DAG concurrently, recording every result in
//! the state before moving on.
//!
//! A plan becomes a graph of steps (create, update, delete…). A step starts as soon as every
//! step it waits for has succeeded, with at most `parallelism` in flight; a failure skips only
//! the steps that wait on it. A step whose object waits on something outside AWS (DNS records
//! at another host) is pending, not failed: the steps that wait on it wait until a later run.
//! Deletes are ordered by the dependencies recorded in the state, so a node removed from the
//! configuration still goes after its dependents. Every call is retried on transient errors
//! the same way ([`RetryPolicy`]).

use crate::address::Address;
use crate::error::{Error, ResourceError};
use crate::graph::ResourceGraph;
use crate::kind::{
    Applied, CallSlot, Current, Kinds, OpContext, Pending, PollSettings, Properties, ResourceKind,
};
use crate::plan::{Action, Plan, resolve_properties, unmatched_properties};
use crate::state::{DeposedObject, ResourceState, ResourceStatus, State, StateStore, redact};
use backon::{ExponentialBuilder, Retryable};
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long results that no starting step waits on may wait for their flush.
const RESULTS_FLUSHED_WITHIN: Duration = Duration::from_millis(100);

/// One call the reconciler makes for one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    Read,
    Create,
    Update,
    Delete,
    /// Delete the object a create-before-destroy replacement left behind.
    DeleteDeposed,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Read => "read",
            Step::Create => "create",
            Step::Update => "update",
            Step::Delete => "delete",
            Step::DeleteDeposed => "delete old",
        })
    }
}

/// Progress, for the command line to render.
#[derive(Debug, Clone)]
pub struct Event {
    pub address: Address,
    pub step: Step,
    pub phase: Phase,
}

#[derive(Debug, Clone)]
pub enum Phase {
    Started,
    Retrying {
        error: String,
        delay: Duration,
    },
    Succeeded {
        elapsed: Duration,
    },
    /// Done as far as dagform can take it: the object waits on something outside AWS.
    Pending {
        waiting_for: String,
    },
    Failed {
        error: String,
    },
    Skipped {
        because: Address,
    },
    /// Not started: a step it waits on is pending.
    Waiting {
        on: Address,
    },
}

/// Retries of transient errors: exponential backoff with jitter, bounded in total time.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(20),
            max_elapsed: Duration::from_secs(5 * 60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub stack: String,
    pub parallelism: usize,
    pub retry: RetryPolicy,
    pub poll: PollSettings,
    /// Once cancelled, nothing new starts; steps in flight finish and are recorded.
    pub cancel: CancellationToken,
    pub events: Option<UnboundedSender<Event>>,
}

impl ApplyOptions {
    pub fn new(stack: impl Into<String>) -> Self {
        Self {
            stack: stack.into(),
            parallelism: 50,
            retry: RetryPolicy::default(),
            poll: PollSettings::default(),
            cancel: CancellationToken::new(),
            events: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub address: Address,
    pub step: Step,
    pub error: String,
}

/// A step whose object waits on something only the user can bring about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingStep {
    pub address: Address,
    pub step: Step,
    /// What the object waits for, e.g. "certificate … to be issued".
    pub waiting_for: String,
    /// What the user can do about it, one step per line, as the kind words it.
    pub instructions: Vec<String>,
}

/// A step not started because a step it waits on, directly or not, is pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub address: Address,
    pub step: Step,
    /// The pending node it waits on.
    pub on: Address,
}

#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub succeeded: Vec<(Address, Step)>,
    pub failed: Vec<Failure>,
    /// Steps not started because a step they wait on failed.
    pub skipped: Vec<(Address, Step)>,
    /// Steps whose object waits on the outside world: neither done nor failed; a later run
    /// carries on.
    pub pending: Vec<PendingStep>,
    /// Steps not started because a step they wait on is pending.
    pub waiting: Vec<Waiting>,
    /// Steps never started because the run was cancelled.
    pub not_started: usize,
    pub cancelled: bool,
}

impl ApplyReport {
    /// Everything planned was done.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
            && self.skipped.is_empty()
            && self.pending.is_empty()
            && self.waiting.is_empty()
            && !self.cancelled
    }
}

#[derive(Debug, Clone)]
struct Op {
    address: Address,
    step: Step,
}

/// Builds the graph of steps: an edge a → b means b waits for a.
fn step_graph(
    plan: &Plan,
    graph: &ResourceGraph,
    store: &StateStore,
) -> Result<DiGraph<Op, ()>, Error> {
    let state = store.state();
    let mut g = DiGraph::<Op, ()>::new();
    let mut index: HashMap<(Address, Step), NodeIndex> = HashMap::new();
    let mut add = |g: &mut DiGraph<Op, ()>, address: &Address, step: Step| {
        let i = g.add_node(Op {
            address: address.clone(),
            step,
        });
        index.insert((address.clone(), step), i);
        i
    };
    let mut apply_of: HashMap<Address, NodeIndex> = HashMap::new();
    let mut delete_of: HashMap<Address, (NodeIndex, bool)> = HashMap::new();
    let mut deposed_of: HashMap<Address, NodeIndex> = HashMap::new();
    for r in &plan.resources {
        let a = &r.address;
        match r.action {
            Action::NoOp => {}
            Action::Read => {
                apply_of.insert(a.clone(), add(&mut g, a, Step::Read));
            }
            Action::Create => {
                apply_of.insert(a.clone(), add(&mut g, a, Step::Create));
            }
            Action::Update => {
                apply_of.insert(a.clone(), add(&mut g, a, Step::Update));
            }
            Action::Delete => {
                delete_of.insert(a.clone(), (add(&mut g, a, Step::Delete), true));
            }
            Action::Replace if r.create_before_destroy => {
                let c = add(&mut g, a, Step::Create);
                let d = add(&mut g, a, Step::DeleteDeposed);
                g.add_edge(c, d, ());
                apply_of.insert(a.clone(), c);
                deposed_of.insert(a.clone(), d);
            }
            Action::Replace => {
                let d = add(&mut g, a, Step::Delete);
                let c = add(&mut g, a, Step::Create);
                g.add_edge(d, c, ());
                apply_of.insert(a.clone(), c);
                delete_of.insert(a.clone(), (d, false));
            }
        }
        if r.deposed > 0 && !deposed_of.contains_key(a) && r.action != Action::Delete {
            deposed_of.insert(a.clone(), add(&mut g, a, Step::DeleteDeposed));
        }
    }
    // Creates and updates follow the desired graph.
    for (a, &i) in &apply_of {
        for dep in graph.dependencies(a) {
            if let Some(&j) = apply_of.get(dep) {
                g.add_edge(j, i, ());
            }
        }
    }
    // Deletes follow the recorded dependencies, in reverse: dependents go first.
    for (dependent, record) in &state.resources {
        for dep in &record.dependencies {
            if let Some(&(d, pure_delete)) = delete_of.get(dep) {
                if let Some(&(e, _)) = delete_of.get(dependent) {
                    g.add_edge(e, d, ());
                } else if let Some(&u) = apply_of.get(dependent).filter(|_| pure_delete) {
                    // A node that stops using `dep` is updated before `dep` goes.
                    g.add_edge(u, d, ());
                }
            }
            if let Some(&d) = deposed_of.get(dep)
                && let Some(&(e, _)) = delete_of.get(dependent)
            {
                g.add_edge(e, d, ());
            }
        }
    }
    // An old object goes only once everything that used it points at its replacement.
    for (a, &d) in &deposed_of {
        for dependent in graph.dependents(a) {
            if let Some(&u) = apply_of.get(dependent) {
                g.add_edge(u, d, ());
            }
        }
    }
    if let Err(cycle) = petgraph::algo::toposort(&g, None) {
        let op = &g[cycle.node_id()];
        return Err(Error::Plan {
            address: op.address.clone(),
            message: format!(
                "the steps of this plan wait on each other ({} is in a cycle)",
                op.step
            ),
        });
    }
    Ok(g)
}

type StepResult = (NodeIndex, Result<Option<Applied>, ResourceError>, Duration);

/// What the walk's order counts a step's call as, next to the kinds' typical waits.
const ONE_CALL: Duration = Duration::from_secs(1);

/// Executes `plan`, recording each result in `store` as it lands.
pub async fn apply(
    plan: &Plan,
    graph: &ResourceGraph,
    kinds: &Kinds,
    store: &mut StateStore,
    options: &ApplyOptions,
) -> Result<ApplyReport, Error> {
    let steps = step_graph(plan, graph, store)?;
    let preparation = Preparation::new(plan, graph, kinds, options);
    // A step counts as one call plus what its object typically takes to be ready or gone.
    let state = store.state();
    let cost = |op: &Op| {
        let wait = preparation
            .kind(op, state.resources.get(&op.address))
            .map(|kind| match op.step {
                Step::Create => kind.typical_wait(false),
                Step::Delete | Step::DeleteDeposed => kind.typical_wait(true),
                Step::Read | Step::Update => Duration::ZERO,
            })
            .unwrap_or_default();
        ONE_CALL + wait
    };
    let mut walk = Walk::new(&steps, options, cost);
    let mut running: JoinSet<StepResult> = JoinSet::new();
    // One permit per AWS call in flight: a step holds one while it calls and gives it up while
    // it waits (see `CallSlot`), so a long wait does not keep ready steps from starting.
    let calls = Arc::new(Semaphore::new(options.parallelism.max(1)));
    let mut freed: Option<OwnedSemaphorePermit> = None;

    let mut finished: Vec<StepResult> = Vec::new();
    // Since when results taken in have waited for a flush that no starting step has owed yet.
    let mut unflushed_since: Option<Instant> = None;
    loop {
        let mut succeeded = Vec::new();
        for (n, result, elapsed) in finished.drain(..) {
            match result {
                Ok(Some(Applied {
                    pending: Some(pending),
                    ..
                })) => {
                    // Nothing is recorded: a create keeps its intent, so the next run checks
                    // again through find and create exactly as after an interrupted one; an
                    // update stays planned.
                    walk.pending(n, pending);
                }
                Ok(applied) => {
                    record_success(&steps[n], applied, graph, kinds, store);
                    succeeded.push((n, elapsed));
                }
                // A failed create keeps its intent too: a multi-call create may have made its
                // object before failing, and the next run adopts it (or destroy deletes it).
                Err(e) => walk.failed(n, e.to_string()),
            }
        }
        for (n, elapsed) in succeeded {
            walk.succeeded(n, elapsed);
        }
        let mut starting = Vec::new();
        while !options.cancel.is_cancelled() && !walk.ready.is_empty() {
            let Some(permit) = freed
                .take()
                .or_else(|| calls.clone().try_acquire_owned().ok())
            else {
                break;
            };
            let n = walk.next_ready().expect("a ready step");
            let op = &steps[n];
            emit(options, op, Phase::Started);
            match preparation.prepare(op, store, CallSlot::held(calls.clone(), permit)) {
                Ok(call) => starting.push((n, call)),
                Err(e) => walk.failed(n, e.to_string()),
            }
        }
        // One flush makes durable both the results taken in and the intents of the creates
        // about to start, before any of those calls is made: so before any step that waits on
        // those results starts. Results that no starting step waits on (every slot is busy)
        // wait for the next turn that starts one, or `RESULTS_FLUSHED_WITHIN` at most: a crash
        // meanwhile leaves intents, and their objects are found again.
        let flush_overdue =
            unflushed_since.is_some_and(|since| since.elapsed() >= RESULTS_FLUSHED_WITHIN);
        if !starting.is_empty() || flush_overdue {
            store.commit()?;
            unflushed_since = None;
        } else if store.has_staged() {
            unflushed_since.get_or_insert_with(Instant::now);
        }
        for (n, call) in starting {
            running.spawn(async move {
                let started = Instant::now();
                let result = call.await;
                (n, result, started.elapsed())
            });
        }
        let more_to_start = !options.cancel.is_cancelled() && !walk.ready.is_empty();
        let flush_due = unflushed_since.map(|since| (since + RESULTS_FLUSHED_WITHIN).into());
        tokio::select! {
            // Results first: a finished step gives its slot back as it ends, and the turn that
            // takes its result in starts the next step with that slot and flushes both at once.
            biased;
            joined = running.join_next() => match joined {
                Some(joined) => finished.push(joined.expect("a step panicked")),
                None => break,
            },
            // A waiting step gave its permit up: start the next ready step with it.
            Ok(permit) = calls.clone().acquire_owned(), if more_to_start => freed = Some(permit),
            () = tokio::time::sleep_until(flush_due.unwrap_or_else(tokio::time::Instant::now)),
                if flush_due.is_some() => {}
        }
        // Every step that has finished by now is taken in together.
        while let Some(more) = running.try_join_next() {
            finished.push(more.expect("a step panicked"));
        }
    }
    let mut report = walk.report;
    if options.cancel.is_cancelled() {
        report.cancelled = true;
        report.not_started = steps.node_count() - walk.done.len();
    }
    store.finish()?;
    Ok(report)
}

fn emit(options: &ApplyOptions, op: &Op, phase: Phase) {
    if let Some(tx) = &options.events {
        let _ = tx.send(Event {
            address: op.address.clone(),
            step: op.step,
            phase,
        });
    }
}

/// Where a walk of the step graph stands: how many steps each step still waits for, which
/// are ready to start, which are finished one way or another, and the report so far.
struct Walk<'a> {
    steps: &'a DiGraph<Op, ()>,
    options: &'a ApplyOptions,
    waiting: HashMap<NodeIndex, usize>,
    /// Ready steps, the one with the longest chain still after it first: when more steps are
    /// ready than calls may be in flight, the chains that decide when the run ends (those
    /// through a load balancer's or a draining service's wait) go before the steps nothing
    /// waits on (alarms, say). Ties go in the order they became ready.
    ready: BinaryHeap<(Duration, Reverse<u64>, NodeIndex)>,
    /// Per step, how long the longest chain from it to the end of the walk typically takes.
    rank: HashMap<NodeIndex, Duration>,
    /// How many steps have become ready so far, for the order of ties.
    readied: u64,
    /// Succeeded, failed, pending, or never to start because of one of those.
    done: HashSet<NodeIndex>,
    report: ApplyReport,
}

impl<'a> Walk<'a> {
    fn new(
        steps: &'a DiGraph<Op, ()>,
        options: &'a ApplyOptions,
        cost: impl Fn(&Op) -> Duration,
    ) -> Self {
        let waiting: HashMap<NodeIndex, usize> = steps
            .node_indices()
            .map(|n| (n, steps.neighbors_directed(n, Direction::Incoming).count()))
            .collect();
        let mut ready: Vec<NodeIndex> = waiting
            .iter()
            .filter(|(_, w)| **w == 0)
            .map(|(&n, _)| n)
            .collect();
        ready.sort_by(|a, b| steps[*a].address.cmp(&steps[*b].address));
        let mut rank: HashMap<NodeIndex, Duration> = HashMap::with_capacity(steps.node_count());
        let order = petgraph::algo::toposort(steps, None).expect("step_graph refuses cycles");
        for &n in order.iter().rev() {
            let after = steps
                .neighbors_directed(n, Direction::Outgoing)
                .map(|m| rank[&m])
                .max()
                .unwrap_or_default();
            rank.insert(n, after + cost(&steps[n]));
        }
        let mut walk = Self {
            steps,
            options,
            waiting,
            ready: BinaryHeap::new(),
            rank,
            readied: 0,
            done: HashSet::new(),
            report: ApplyReport::default(),
        };
        for n in ready {
            walk.make_ready(n);
        }
        walk
    }

    fn make_ready(&mut self, n: NodeIndex) {
        self.readied += 1;
        self.ready.push((self.rank[&n], Reverse(self.readied), n));
    }

    fn next_ready(&mut self) -> Option<NodeIndex> {
        self.ready.pop().map(|(_, _, n)| n)
    }

    /// Records a success and makes ready every step that waited only for it.
    fn succeeded(&mut self, n: NodeIndex, elapsed: Duration) {
        let op = &self.steps[n];
        emit(self.options, op, Phase::Succeeded { elapsed });
        self.report.succeeded.push((op.address.clone(), op.step));
        self.done.insert(n);
        let mut next: Vec<NodeIndex> = self
            .steps
            .neighbors_directed(n, Direction::Outgoing)
            .collect();
        next.sort_by(|a, b| self.steps[*a].address.cmp(&self.steps[*b].address));
        next.dedup();
        for m in next {
            let w = self.waiting.get_mut(&m).expect("known step");
            *w -= 1;
            if *w == 0 && !self.done.contains(&m) {
                self.make_ready(m);
            }
        }
    }

    /// Records a failure and skips everything that waits on it, transitively.
    fn failed(&mut self, n: NodeIndex, error: String) {
        let op = &self.steps[n];
        tracing::debug!(address = %op.address, step = %op.step, "failed: {error}");
        emit(
            self.options,
            op,
            Phase::Failed {
                error: error.clone(),
            },
        );
        self.report.failed.push(Failure {
            address: op.address.clone(),
            step: op.step,
            error,
        });
        for m in self.hold_back(n) {
            let skipped = &self.steps[m];
            emit(
                self.options,
                skipped,
                Phase::Skipped {
                    because: op.address.clone(),
                },
            );
            self.report
                .skipped
                .push((skipped.address.clone(), skipped.step));
        }
    }

    /// Records a step whose object waits on the outside world; everything that waits on it,
    /// transitively, waits with it until a later run.
    fn pending(&mut self, n: NodeIndex, pending: Pending) {
        let op = &self.steps[n];
        tracing::debug!(address = %op.address, step = %op.step, "pending: waiting for {}", pending.waiting_for);
        emit(
            self.options,
            op,
            Phase::Pending {
                waiting_for: pending.waiting_for.clone(),
            },
        );
        self.report.pending.push(PendingStep {
            address: op.address.clone(),
            step: op.step,
            waiting_for: pending.waiting_for,
            instructions: pending.instructions,
        });
        for m in self.hold_back(n) {
            let held = &self.steps[m];
            emit(
                self.options,
                held,
                Phase::Waiting {
                    on: op.address.clone(),
                },
            );
            self.report.waiting.push(Waiting {
                address: held.address.clone(),
                step: held.step,
                on: op.address.clone(),
            });
        }
    }

    /// Marks `n` finished, and with it every step that waits on it, transitively, that is not
    /// finished yet: those never start in this run. Returns the latter.
    fn hold_back(&mut self, n: NodeIndex) -> Vec<NodeIndex> {
        self.done.insert(n);
        let mut held = Vec::new();
        let mut stack: Vec<NodeIndex> = self
            .steps
            .neighbors_directed(n, Direction::Outgoing)
            .collect();
        while let Some(m) = stack.pop() {
            if self.done.insert(m) {
                held.push(m);
                stack.extend(self.steps.neighbors_directed(m, Direction::Outgoing));
            }
        }
        held
    }
}

type Call = std::pin::Pin<Box<dyn Future<Output = Result<Option<Applied>, ResourceError>> + Send>>;

/// What turning a step into a call needs besides the state: the desired graph, the kinds and
/// what the plan says of each node.
struct Preparation<'a> {
    graph: &'a ResourceGraph,
    kinds: &'a Kinds,
    options: &'a ApplyOptions,
    /// Per node, the properties the plan changes.
    changes: HashMap<&'a Address, Vec<String>>,
    /// Only a replacement keeps the old object to delete later; a create for an object that
    /// vanished outside dagform has nothing left to delete.
    replacing: HashSet<&'a Address>,
}

impl<'a> Preparation<'a> {
    fn new(
        plan: &'a Plan,
        graph: &'a ResourceGraph,
        kinds: &'a Kinds,
        options: &'a ApplyOptions,
    ) -> Self {
        let changes = plan
            .resources
            .iter()
            .map(|r| {
                (
                    &r.address,
                    r.changes.iter().map(|c| c.property.clone()).collect(),
                )
            })
            .collect();
        let replacing = plan
            .resources
            .iter()
            .filter(|r| r.action == Action::Replace)
            .map(|r| &r.address)
            .collect();
        Self {
            graph,
            kinds,
            options,
            changes,
            replacing,
        }
    }

    /// Resolves what a step needs, records the intent of a create, and returns the call.
    fn prepare(&self, op: &Op, store: &mut StateStore, slot: CallSlot) -> Result<Call, Error> {
        let kind = self.kind(op, store.state().get(&op.address))?;
        let mut ctx = OpContext::new(
            self.options.stack.clone(),
            op.address.clone(),
            self.options.poll,
        );
        ctx.slot = slot.clone();
        ctx.cancel = self.options.cancel.clone();
        let retries = Retries::new(op, self.options, slot);
        let call: Call = match op.step {
            Step::Read | Step::Create => {
                let props = self.desired(op, store.state())?;
                let (ctx, adopt) = self.record_intent(op, kind.as_ref(), ctx, &props, store)?;
                Box::pin(async move {
                    create(kind.as_ref(), &ctx, &props, adopt, &retries)
                        .await
                        .map(Some)
                })
            }
            Step::Update => {
                let props = self.desired(op, store.state())?;
                let record = store.state().get(&op.address).cloned();
                let record = record.ok_or_else(|| Error::Plan {
                    address: op.address.clone(),
                    message: "update of a resource the state does not hold".into(),
                })?;
                let changed = self.changes.get(&op.address).cloned().unwrap_or_default();
                Box::pin(async move {
                    let current = Current {
                        id: record.id.as_deref().unwrap_or_default(),
                        properties: &record.properties,
                        outputs: &record.outputs,
                    };
                    retries
                        .run(|| kind.update(&ctx, current, &props, &changed))
                        .await
                        .map(Some)
                })
            }
            Step::Delete | Step::DeleteDeposed => {
                let targets = deletion_targets(op.step, store.state().get(&op.address));
                Box::pin(async move {
                    delete(kind.as_ref(), &ctx, targets, &retries).await?;
                    Ok(None)
                })
            }
        };
        Ok(call)
    }

    /// The kind a step calls: the configuration's for a create, update or read, the state's
    /// otherwise (a node removed from the configuration is deleted as what it was).
    fn kind(
        &self,
        op: &Op,
        recorded: Option<&ResourceState>,
    ) -> Result<Arc<dyn ResourceKind>, Error> {
        let name = match (self.graph.get(&op.address), recorded) {
            (Some(n), _) if matches!(op.step, Step::Create | Step::Update | Step::Read) => &n.kind,
            (_, Some(r)) => &r.kind,
            (Some(n), None) => &n.kind,
            (None, None) => {
                return Err(Error::Plan {
                    address: op.address.clone(),
                    message: "neither desired nor recorded".into(),
                });
            }
        };
        self.kinds
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownKind {
                address: op.address.clone(),
                kind: name.clone(),
            })
    }

    /// The node's desired properties, every reference resolved from the state.
    fn desired(&self, op: &Op, state: &State) -> Result<Properties, Error> {
        let node = self.graph.get(&op.address).expect("desired node");
        resolve_properties(&node.properties, state).map_err(|r| Error::Plan {
            address: op.address.clone(),
            message: format!("`{r}` is not known: its node has not been applied"),
        })
    }

    /// Stages the intent of a create, which `apply` makes durable before the call: whatever
    /// happens next, the next run looks for what this create made before making another. Returns the context the
    /// create runs with, and whether an interrupted create's object is to be looked for first.
    fn record_intent(
        &self,
        op: &Op,
        kind: &dyn ResourceKind,
        mut ctx: OpContext,
        props: &Properties,
        store: &mut StateStore,
    ) -> Result<(OpContext, bool), Error> {
        let recorded = store.state().get(&op.address);
        let redacted = redact(props, kind.sensitive_properties());
        let interrupted = recorded.filter(|r| r.status == ResourceStatus::Creating);
        // The same intent keeps its token across runs, so AWS recognises a create it has
        // already done; a changed configuration is a new intent.
        let intent = interrupted
            .filter(|r| r.properties == redacted)
            .and_then(|r| r.intent.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let mut deposed = recorded.map(|r| r.deposed.clone()).unwrap_or_default();
        if let Some(r) = recorded
            .filter(|r| r.status == ResourceStatus::Ready && self.replacing.contains(&op.address))
        {
            // Create-before-destroy: the old object stays recorded until it is deleted.
            deposed.push(DeposedObject {
                id: r.id.clone().unwrap_or_default(),
                properties: r.properties.clone(),
                outputs: r.outputs.clone(),
            });
        }
        let adopt = interrupted.is_some() && !kind.is_data_source();
        ctx.intent = intent.clone();
        ctx.superseded = deposed.iter().map(|d| d.id.clone()).collect();
        store.stage_put(
            op.address.clone(),
            ResourceState {
                kind: kind.name().to_owned(),
                status: ResourceStatus::Creating,
                id: None,
                properties: redacted,
                outputs: Default::default(),
                dependencies: self
                    .graph
                    .dependencies(&op.address)
                    .into_iter()
                    .cloned()
                    .collect(),
                deposed,
                intent: Some(intent),
            },
        );
        Ok((ctx, adopt))
    }
}

/// Retries of one step's calls: transient errors are retried with exponential backoff and
/// jitter, bounded in total time; every retry is logged and reported as an event.
struct Retries {
    policy: RetryPolicy,
    address: Address,
    step: Step,
    events: Option<UnboundedSender<Event>>,
    /// Given up during each backoff: a step waiting to retry calls nothing.
    slot: CallSlot,
    /// An interrupted run retries nothing more: the step ends with its last error.
    cancel: CancellationToken,
}

impl Retries {
    fn new(op: &Op, options: &ApplyOptions, slot: CallSlot) -> Self {
        Self {
            policy: options.retry,
            address: op.address.clone(),
            step: op.step,
            events: options.events.clone(),
            slot,
            cancel: options.cancel.clone(),
        }
    }

    /// Runs `attempt` until it succeeds, fails with an error that is not transient, or the
    /// policy's time is up.
    async fn run<T, Fut>(&self, attempt: impl FnMut() -> Fut) -> Result<T, ResourceError>
    where
        Fut: Future<Output = Result<T, ResourceError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.policy.min_delay)
            .with_max_delay(self.policy.max_delay)
            .with_total_delay(Some(self.policy.max_elapsed))
            .without_max_times();
        let (slot, cancel) = (self.slot.clone(), self.cancel.clone());
        attempt
            .retry(backoff)
            .sleep(move |delay| {
                let (slot, cancel) = (slot.clone(), cancel.clone());
                async move {
                    tokio::select! {
                        () = slot.idle(delay) => {}
                        () = cancel.cancelled() => {}
                    }
                }
            })
            .when(|e| e.is_transient() && !self.cancel.is_cancelled())
            .notify(|e, delay| self.retrying(e, delay))
            .await
    }

    fn retrying(&self, error: &ResourceError, delay: Duration) {
        let (address, step) = (&self.address, self.step);
        tracing::warn!(%address, %step, "retrying in {delay:?}: {error}");
        if let Some(tx) = &self.events {
            let _ = tx.send(Event {
                address: address.clone(),
                step,
                phase: Phase::Retrying {
                    error: error.to_string(),
                    delay,
                },
            });
        }
    }
}

/// Creates the object (or reads a data source). After an interrupted run (`adopt`), and
/// before retrying a create whose first attempt may have gone through, it looks for the
/// object first.
async fn create(
    kind: &dyn ResourceKind,
    ctx: &OpContext,
    props: &Properties,
    adopt: bool,
    retries: &Retries,
) -> Result<Applied, ResourceError> {
    let mut attempts = 0;
    retries
        .run(|| {
            attempts += 1;
            create_or_adopt(kind, ctx, props, adopt || attempts > 1)
        })
        .await
}

async fn create_or_adopt(
    kind: &dyn ResourceKind,
    ctx: &OpContext,
    props: &Properties,
    look_first: bool,
) -> Result<Applied, ResourceError> {
    if look_first
        && !kind.is_data_source()
        && let Some(found) = kind.find(ctx, props).await?
    {
        tracing::info!(address = %ctx.address, id = %found.id, "adopting an object an unfinished create made");
        return finish_adopted(kind, ctx, found, props).await;
    }
    kind.create(ctx, props).await
}

/// Brings an object an unfinished create left behind to what is wanted, instead of assuming
/// the create got as far as it meant to: a multi-call create may have stopped after its first
/// call (a route table without its route, a security group still allowing all egress).
async fn finish_adopted(
    kind: &dyn ResourceKind,
    ctx: &OpContext,
    found: Applied,
    props: &Properties,
) -> Result<Applied, ResourceError> {
    let as_wanted = Current {
        id: &found.id,
        properties: props,
        outputs: &found.outputs,
    };
    let Some(observed) = kind.read(ctx, as_wanted).await? else {
        return kind.create(ctx, props).await;
    };
    let mut unmatched =
        unmatched_properties(props, &observed.properties, kind.sensitive_properties());
    // A property the kind cannot read back may be exactly what the unfinished create never
    // set: set it again, unless that would mean replacing the object on a guess.
    unmatched.extend(
        props
            .keys()
            .filter(|k| !observed.properties.contains_key(*k) && !kind.forces_replacement(k))
            .cloned(),
    );
    if unmatched.iter().any(|p| kind.forces_replacement(p)) {
        // Nothing can refer to an object that never reached the state: replace it right away.
        tracing::info!(address = %ctx.address, id = %found.id, ?unmatched, "replacing an adopted object that differs from the configuration");
        kind.delete(ctx, as_wanted).await?;
        return kind.create(ctx, props).await;
    }
    if unmatched.is_empty() {
        let mut applied = found;
        applied.outputs.extend(observed.outputs);
        return Ok(applied);
    }
    tracing::info!(address = %ctx.address, id = %found.id, ?unmatched, "finishing an adopted object");
    let current = Current {
        id: &found.id,
        properties: &observed.properties,
        outputs: &observed.outputs,
    };
    kind.update(ctx, current, props, &unmatched).await
}

/// The objects a delete step removes: the recorded one, or for `DeleteDeposed` the replaced
/// ones left over. A create that never got an id stands for whatever it may have made.
fn deletion_targets(step: Step, recorded: Option<&ResourceState>) -> Vec<DeposedObject> {
    match (recorded, step) {
        (Some(r), Step::DeleteDeposed) => r.deposed.clone(),
        (Some(r), _) if r.id.is_some() => vec![DeposedObject {
            id: r.id.clone().unwrap_or_default(),
            properties: r.properties.clone(),
            outputs: r.outputs.clone(),
        }],
        (Some(r), _) => vec![DeposedObject {
            id: String::new(),
            properties: r.properties.clone(),
            outputs: Default::default(),
        }],
        (None, _) => vec![],
    }
}

/// Deletes every target in turn, each retried on transient errors.
async fn delete(
    kind: &dyn ResourceKind,
    ctx: &OpContext,
    targets: Vec<DeposedObject>,
    retries: &Retries,
) -> Result<(), ResourceError> {
    for target in targets {
        let Some(object) = locate(kind, ctx, target).await? else {
            continue;
        };
        let current = Current {
            id: &object.id,
            properties: &object.properties,
            outputs: &object.outputs,
        };
        retries.run(|| kind.delete(ctx, current)).await?;
    }
    Ok(())
}

/// The object a delete target stands for: a target without an id (a create that never got
/// one) is looked for, and is nothing to delete when what is there is not ours.
async fn locate(
    kind: &dyn ResourceKind,
    ctx: &OpContext,
    mut target: DeposedObject,
) -> Result<Option<DeposedObject>, ResourceError> {
    if !target.id.is_empty() {
        return Ok(Some(target));
    }
    match kind.find(ctx, &target.properties).await {
        Ok(Some(found)) => {
            target.id = found.id;
            target.outputs = found.outputs;
            Ok(Some(target))
        }
        Ok(None) | Err(ResourceError::NotOwned(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn record_success(
    op: &Op,
    applied: Option<Applied>,
    graph: &ResourceGraph,
    kinds: &Kinds,
    store: &mut StateStore,
) {
    let recorded = store.state().get(&op.address);
    match op.step {
        // The intent staged when the create started holds the object's properties and
        // dependencies already, as this run resolved them: only the outcome is new.
        Step::Read | Step::Create
            if let Some(intent) = recorded.filter(|r| r.status == ResourceStatus::Creating) =>
        {
            let applied = applied.expect("create and read return the object");
            let kind = kinds.get(&intent.kind).expect("checked when prepared");
            // Outputs never carry a secret either, whatever the kind returns.
            let outputs = redact(&applied.outputs, kind.sensitive_properties());
            store.stage_edit(&op.address, |resource| {
                resource.status = ResourceStatus::Ready;
                resource.id = Some(applied.id.clone());
                resource.outputs = outputs.clone();
                resource.intent = None;
            });
        }
        Step::Read | Step::Create | Step::Update => {
            let node = graph.get(&op.address).expect("desired node");
            let applied = applied.expect("create and update return the object");
            let kind = kinds.get(&node.kind).expect("checked when prepared");
            let props = resolve_properties(&node.properties, store.state())
                .expect("resolved when prepared");
            store.stage_put(
                op.address.clone(),
                ResourceState {
                    kind: node.kind.clone(),
                    status: ResourceStatus::Ready,
                    id: Some(applied.id),
                    properties: redact(&props, kind.sensitive_properties()),
                    // Outputs never carry a secret either, whatever the kind returns.
                    outputs: redact(&applied.outputs, kind.sensitive_properties()),
                    dependencies: graph
                        .dependencies(&op.address)
                        .into_iter()
                        .cloned()
                        .collect(),
                    deposed: recorded.map(|r| r.deposed.clone()).unwrap_or_default(),
                    intent: None,
                },
            );
        }
        Step::Delete => store.stage_remove(&op.address),
        Step::DeleteDeposed => store.stage_edit(&op.address, |r| r.deposed.clear()),
    }
}

/// A kind and the recorded resources of it that a refresh reads.
type RecordsOfKind = (Arc<dyn ResourceKind>, Vec<(Address, ResourceState)>);

/// Reads every recorded resource (within `scope`) from AWS. Resources are grouped by kind and
/// read in batches of the kind's `read_batch_size`, so a kind with a batched describe costs a
/// few calls instead of one per resource; batches run concurrently, at most `parallelism` at
/// once.
pub async fn read_live(
    store_state: &crate::state::State,
    kinds: &Kinds,
    options: &ApplyOptions,
    scope: impl Fn(&Address) -> bool,
) -> Result<crate::plan::LiveView, Error> {
    let mut by_kind: BTreeMap<&str, RecordsOfKind> = BTreeMap::new();
    for (address, record) in &store_state.resources {
        if record.status != ResourceStatus::Ready || !scope(address) {
            continue;
        }
        let Some(kind) = kinds.get(&record.kind) else {
            return Err(Error::UnknownKind {
                address: address.clone(),
                kind: record.kind.clone(),
            });
        };
        if kind.is_data_source() {
            continue;
        }
        by_kind
            .entry(record.kind.as_str())
            .or_insert_with(|| (kind.clone(), Vec::new()))
            .1
            .push((address.clone(), record.clone()));
    }
    let semaphore = Arc::new(tokio::sync::Semaphore::new(options.parallelism.max(1)));
    let mut set = JoinSet::new();
    for (kind, records) in by_kind.into_values() {
        for batch in records.chunks(kind.read_batch_size().max(1)) {
            let (kind, batch, semaphore) = (kind.clone(), batch.to_vec(), semaphore.clone());
            // A batch speaks for its first resource in logs; the kind reads every item.
            let ctx = OpContext::new(options.stack.clone(), batch[0].0.clone(), options.poll);
            set.spawn(async move {
                let _permit = semaphore.acquire().await.expect("never closed");
                let items: Vec<Current<'_>> = batch
                    .iter()
                    .map(|(_, record)| Current {
                        id: record.id.as_deref().unwrap_or_default(),
                        properties: &record.properties,
                        outputs: &record.outputs,
                    })
                    .collect();
                let mut results = kind.read_many(&ctx, &items).await;
                if results.len() != items.len() {
                    let message = format!(
                        "{} answered {} reads for {} resources",
                        kind.name(),
                        results.len(),
                        items.len()
                    );
                    results = vec![Err(ResourceError::Failed(message)); items.len()];
                }
                batch
                    .into_iter()
                    .map(|(address, _)| address)
                    .zip(results)
                    .collect::<Vec<_>>()
            });
        }
    }
    let mut live = BTreeMap::new();
    while let Some(joined) = set.join_next().await {
        for (address, observed) in joined.expect("a read panicked") {
            match observed {
                Ok(o) => {
                    live.insert(address, o);
                }
                Err(source) => return Err(Error::Refresh { address, source }),
            }
        }
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::Observed;
    use crate::state::State;
    use crate::testing::{MemoryCloud, MemoryKind};
    use async_trait::async_trait;
    use serde_json::json;
    use std::sync::Mutex;

    /// A kind that reads in batches of three and records the size of every batch.
    struct Batched {
        inner: MemoryKind,
        batches: Mutex<Vec<usize>>,
    }

    #[async_trait]
    impl ResourceKind for Batched {
        fn name(&self) -> &'static str {
            self.inner.name
        }

        fn forces_replacement(&self, property: &str) -> bool {
            self.inner.forces_replacement(property)
        }

        async fn create(
            &self,
            ctx: &OpContext,
            props: &Properties,
        ) -> Result<Applied, ResourceError> {
            self.inner.create(ctx, props).await
        }

        async fn read(
            &self,
            ctx: &OpContext,
            current: Current<'_>,
        ) -> Result<Option<Observed>, ResourceError> {
            self.inner.read(ctx, current).await
        }

        async fn read_many(
            &self,
            ctx: &OpContext,
            items: &[Current<'_>],
        ) -> Vec<Result<Option<Observed>, ResourceError>> {
            self.batches.lock().unwrap().push(items.len());
            let mut out = Vec::new();
            for item in items {
                out.push(self.inner.read(ctx, *item).await);
            }
            out
        }

        fn read_batch_size(&self) -> usize {
            3
        }

        async fn update(
            &self,
            ctx: &OpContext,
            current: Current<'_>,
            desired: &Properties,
            changed: &[String],
        ) -> Result<Applied, ResourceError> {
            self.inner.update(ctx, current, desired, changed).await
        }

        async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
            self.inner.delete(ctx, current).await
        }
    }

    fn record(
        state: &mut State,
        cloud: &MemoryCloud,
        kind: &str,
        address: &str,
        size: i64,
    ) -> String {
        let properties = json!({ "size": size }).as_object().unwrap().clone();
        let id = cloud.insert(kind, address, properties.clone());
        state.resources.insert(
            address.into(),
            ResourceState {
                kind: kind.into(),
                status: ResourceStatus::Ready,
                id: Some(id.clone()),
                properties,
                outputs: Default::default(),
                dependencies: vec![],
                deposed: vec![],
                intent: None,
            },
        );
        id
    }

    #[tokio::test]
    async fn read_live_reads_every_recorded_resource_by_kind_in_batches() {
        let cloud = MemoryCloud::with_latency(Duration::from_millis(20));
        let batched = Arc::new(Batched {
            inner: MemoryKind::new("group", &cloud),
            batches: Mutex::new(Vec::new()),
        });
        let kinds = Kinds::new()
            .with(Arc::new(MemoryKind::new("single", &cloud)))
            .with(batched.clone());
        let mut state = State::new("test");
        let mut ids = BTreeMap::new();
        for i in 0..7 {
            let address = format!("group.g{i}");
            ids.insert(
                address.clone(),
                record(&mut state, &cloud, "group", &address, i),
            );
        }
        for i in 0..6 {
            let address = format!("single.s{i}");
            ids.insert(
                address.clone(),
                record(&mut state, &cloud, "single", &address, i),
            );
        }
        // Changed and deleted outside dagform.
        cloud.set_property(&ids["group.g4"], "size", json!(40));
        cloud.remove(&ids["group.g5"]);
        cloud.remove(&ids["single.s2"]);
        // Never read: an interrupted create, and a node outside the scope.
        state
            .resources
            .get_mut(&Address::from("single.s5"))
            .unwrap()
            .status = ResourceStatus::Creating;
        let mut options = ApplyOptions::new("test");
        options.parallelism = 2;

        let live = read_live(&state, &kinds, &options, |a| a.as_str() != "single.s4")
            .await
            .unwrap();

        let read: Vec<&str> = live.keys().map(Address::as_str).collect();
        assert_eq!(
            read,
            [
                "group.g0",
                "group.g1",
                "group.g2",
                "group.g3",
                "group.g4",
                "group.g5",
                "group.g6",
                "single.s0",
                "single.s1",
                "single.s2",
                "single.s3"
            ]
        );
        let size = |a: &str| {
            live[&Address::from(a)]
                .as_ref()
                .map(|o| o.properties["size"].clone())
        };
        assert_eq!(
            size("group.g4"),
            Some(json!(40)),
            "each result lands on its own address"
        );
        assert_eq!(size("group.g6"), Some(json!(6)));
        assert_eq!(size("single.s3"), Some(json!(3)));
        assert_eq!(size("group.g5"), None, "gone from the batched kind");
        assert_eq!(size("single.s2"), None, "gone from the one-by-one kind");
        let mut batches = batched.batches.lock().unwrap().clone();
        batches.sort();
        assert_eq!(batches, [1, 3, 3], "seven resources in batches of three");
        let singles = cloud
            .calls()
            .iter()
            .filter(|c| c.operation == "read" && c.address.as_str().starts_with("single."))
            .map(|c| c.address.to_string())
            .collect::<std::collections::BTreeSet<_>>();
        assert_eq!(
            singles.len(),
            4,
            "one read per resource, under its own address"
        );
        assert!(
            cloud.max_in_flight() <= 2,
            "{} reads at once",
            cloud.max_in_flight()
        );
        assert_eq!(cloud.max_in_flight(), 2, "batches run concurrently");
    }

    #[tokio::test]
    async fn a_failed_read_names_its_resource() {
        let cloud = MemoryCloud::new();
        let kinds = Kinds::new().with(Arc::new(MemoryKind::new("single", &cloud)));
        let mut state = State::new("test");
        record(&mut state, &cloud, "single", "single.a", 1);
        record(&mut state, &cloud, "single", "single.b", 2);
        cloud.break_resource("single.b", "AccessDenied");
        let err = read_live(&state, &kinds, &ApplyOptions::new("test"), |_| true)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Refresh { address, .. } if address.as_str() == "single.b"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_object_deleted_outside_is_recreated_without_leaving_it_to_delete() {
        use crate::graph::{GraphBuilder, NodeSpec};
        use crate::plan::{PlanOptions, plan};
        let cloud = MemoryCloud::new();
        let kinds = Kinds::new().with(Arc::new(MemoryKind::new("thing", &cloud)));
        let mut builder = GraphBuilder::new();
        builder.add(NodeSpec::new(
            "shared.log",
            "thing",
            crate::props! { "size" => 1i64 },
        ));
        let graph = builder.build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("s.json"), "test").unwrap();
        let options = ApplyOptions::new("test");
        let converge = async |store: &mut StateStore| {
            let live = read_live(store.state(), &kinds, &options, |_| true)
                .await
                .unwrap();
            let p = plan(
                &graph,
                store.state(),
                &kinds,
                Some(&live),
                &PlanOptions::default(),
            )
            .unwrap();
            let report = apply(&p, &graph, &kinds, store, &options).await.unwrap();
            assert!(report.is_success(), "{report:?}");
            p
        };
        converge(&mut store).await;
        let (id, _) = cloud.object_at("shared.log").unwrap();
        cloud.remove(&id);

        let repair = converge(&mut store).await;
        assert_eq!(
            repair.resources[0].reason.as_deref(),
            Some("deleted outside dagform")
        );
        let record = &store.state().resources[&Address::from("shared.log")];
        assert!(record.deposed.is_empty(), "{:?}", record.deposed);
        assert_ne!(record.id.as_deref(), Some(id.as_str()), "a new object");
        let next = converge(&mut store).await;
        assert!(!next.has_changes(), "{next:?}");
    }
}
