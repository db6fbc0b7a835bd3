//! The reconciler: executes a plan by walking the DAG concurrently, recording every result in
//! the state before moving on.
//!
//! A plan becomes a graph of steps (create, update, delete…). A step starts as soon as every
//! step it waits for has succeeded, with at most `parallelism` in flight; a failure skips only
//! the steps that wait on it. Deletes are ordered by the dependencies recorded in the state, so
//! a node removed from the configuration still goes after its dependents.

use crate::address::Address;
use crate::error::{Error, ResourceError};
use crate::graph::ResourceGraph;
use crate::kind::{Applied, Current, Kinds, OpContext, PollSettings, Properties, ResourceKind};
use crate::plan::{Action, Plan, resolve_properties, unmatched_properties};
use crate::state::{DeposedObject, ResourceState, ResourceStatus, StateStore, redact};
use backon::{ExponentialBuilder, Retryable};
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

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
    Retrying { error: String, delay: Duration },
    Succeeded { elapsed: Duration },
    Failed { error: String },
    Skipped { because: Address },
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
            parallelism: 10,
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

#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub succeeded: Vec<(Address, Step)>,
    pub failed: Vec<Failure>,
    pub skipped: Vec<(Address, Step)>,
    /// Steps never started because the run was cancelled.
    pub not_started: usize,
    pub cancelled: bool,
}

impl ApplyReport {
    pub fn is_success(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && !self.cancelled
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

/// Executes `plan`, recording each result in `store` as it lands.
pub async fn apply(
    plan: &Plan,
    graph: &ResourceGraph,
    kinds: &Kinds,
    store: &mut StateStore,
    options: &ApplyOptions,
) -> Result<ApplyReport, Error> {
    let steps = step_graph(plan, graph, store)?;
    let changes: HashMap<&Address, Vec<String>> = plan
        .resources
        .iter()
        .map(|r| {
            (
                &r.address,
                r.changes.iter().map(|c| c.property.clone()).collect(),
            )
        })
        .collect();
    // Only a replacement keeps the old object to delete later; a create for an object that
    // vanished outside dagform has nothing left to delete.
    let replacing: HashSet<&Address> = plan
        .resources
        .iter()
        .filter(|r| r.action == Action::Replace)
        .map(|r| &r.address)
        .collect();
    let mut waiting: HashMap<NodeIndex, usize> = steps
        .node_indices()
        .map(|n| (n, steps.neighbors_directed(n, Direction::Incoming).count()))
        .collect();
    let mut ready: VecDeque<NodeIndex> = {
        let mut v: Vec<NodeIndex> = waiting
            .iter()
            .filter(|(_, w)| **w == 0)
            .map(|(&n, _)| n)
            .collect();
        v.sort_by(|a, b| steps[*a].address.cmp(&steps[*b].address));
        v.into()
    };
    let mut report = ApplyReport::default();
    let mut done: HashSet<NodeIndex> = HashSet::new();
    let mut running: JoinSet<StepResult> = JoinSet::new();
    let parallelism = options.parallelism.max(1);

    loop {
        while running.len() < parallelism && !options.cancel.is_cancelled() {
            let Some(n) = ready.pop_front() else { break };
            let op = steps[n].clone();
            emit(options, &op, Phase::Started);
            match prepare(&op, graph, kinds, store, &changes, &replacing, options) {
                Ok(call) => {
                    running.spawn(async move {
                        let started = Instant::now();
                        let result = call.await;
                        (n, result, started.elapsed())
                    });
                }
                Err(e) => {
                    finish_failed(&steps, n, e.to_string(), &mut done, &mut report, options);
                }
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (n, result, elapsed) = joined.expect("a step panicked");
        let op = steps[n].clone();
        match result {
            Ok(applied) => {
                record_success(&op, applied, graph, kinds, store)?;
                emit(options, &op, Phase::Succeeded { elapsed });
                report.succeeded.push((op.address.clone(), op.step));
                done.insert(n);
                let mut next: Vec<NodeIndex> =
                    steps.neighbors_directed(n, Direction::Outgoing).collect();
                next.sort_by(|a, b| steps[*a].address.cmp(&steps[*b].address));
                next.dedup();
                for m in next {
                    let w = waiting.get_mut(&m).expect("known step");
                    *w -= 1;
                    if *w == 0 && !done.contains(&m) {
                        ready.push_back(m);
                    }
                }
            }
            Err(e) => {
                // A failed create keeps its intent: a multi-call create may have made its
                // object before failing, and the next run adopts it (or destroy deletes it).
                finish_failed(&steps, n, e.to_string(), &mut done, &mut report, options);
            }
        }
    }
    if options.cancel.is_cancelled() {
        report.cancelled = true;
        report.not_started = steps.node_count() - done.len();
    }
    store.persist()?;
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

/// Records a failure and skips everything that waits on it, transitively.
fn finish_failed(
    steps: &DiGraph<Op, ()>,
    n: NodeIndex,
    error: String,
    done: &mut HashSet<NodeIndex>,
    report: &mut ApplyReport,
    options: &ApplyOptions,
) {
    let op = &steps[n];
    tracing::debug!(address = %op.address, step = %op.step, "failed: {error}");
    emit(
        options,
        op,
        Phase::Failed {
            error: error.clone(),
        },
    );
    report.failed.push(Failure {
        address: op.address.clone(),
        step: op.step,
        error,
    });
    done.insert(n);
    let mut stack: Vec<NodeIndex> = steps.neighbors_directed(n, Direction::Outgoing).collect();
    while let Some(m) = stack.pop() {
        if done.insert(m) {
            let skipped = &steps[m];
            emit(
                options,
                skipped,
                Phase::Skipped {
                    because: op.address.clone(),
                },
            );
            report.skipped.push((skipped.address.clone(), skipped.step));
            stack.extend(steps.neighbors_directed(m, Direction::Outgoing));
        }
    }
}

type Call = std::pin::Pin<Box<dyn Future<Output = Result<Option<Applied>, ResourceError>> + Send>>;

/// Resolves what a step needs, records the intent of a create, and returns the call.
fn prepare(
    op: &Op,
    graph: &ResourceGraph,
    kinds: &Kinds,
    store: &mut StateStore,
    changes: &HashMap<&Address, Vec<String>>,
    replacing: &HashSet<&Address>,
    options: &ApplyOptions,
) -> Result<Call, Error> {
    let recorded = store.state().get(&op.address).cloned();
    let kind_name = match (graph.get(&op.address), &recorded) {
        (Some(n), _) if matches!(op.step, Step::Create | Step::Update | Step::Read) => {
            n.kind.clone()
        }
        (_, Some(r)) => r.kind.clone(),
        (Some(n), None) => n.kind.clone(),
        (None, None) => {
            return Err(Error::Plan {
                address: op.address.clone(),
                message: "neither desired nor recorded".into(),
            });
        }
    };
    let kind: Arc<dyn ResourceKind> =
        kinds
            .get(&kind_name)
            .cloned()
            .ok_or_else(|| Error::UnknownKind {
                address: op.address.clone(),
                kind: kind_name.clone(),
            })?;
    let ctx = OpContext::new(options.stack.clone(), op.address.clone(), options.poll);
    let desired = || -> Result<Properties, Error> {
        let node = graph.get(&op.address).expect("desired node");
        resolve_properties(&node.properties, store.state()).map_err(|r| Error::Plan {
            address: op.address.clone(),
            message: format!("`{r}` is not known: its node has not been applied"),
        })
    };
    let retry = options.retry;
    let events = options.events.clone();
    let (address, step) = (op.address.clone(), op.step);
    let notify = move |e: &ResourceError, delay: Duration| {
        tracing::warn!(%address, %step, "retrying in {delay:?}: {e}");
        if let Some(tx) = &events {
            let _ = tx.send(Event {
                address: address.clone(),
                step,
                phase: Phase::Retrying {
                    error: e.to_string(),
                    delay,
                },
            });
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(retry.min_delay)
        .with_max_delay(retry.max_delay)
        .with_total_delay(Some(retry.max_elapsed))
        .without_max_times();

    let call: Call = match op.step {
        Step::Read | Step::Create => {
            let props = desired()?;
            let redacted = redact(&props, kind.sensitive_properties());
            let interrupted = recorded
                .as_ref()
                .filter(|r| r.status == ResourceStatus::Creating);
            // The same intent keeps its token across runs, so AWS recognises a create it has
            // already done; a changed configuration is a new intent.
            let intent = interrupted
                .filter(|r| r.properties == redacted)
                .and_then(|r| r.intent.clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
            let mut deposed = recorded
                .as_ref()
                .map(|r| r.deposed.clone())
                .unwrap_or_default();
            if let Some(r) = recorded
                .as_ref()
                .filter(|r| r.status == ResourceStatus::Ready && replacing.contains(&op.address))
            {
                // Create-before-destroy: the old object stays recorded until it is deleted.
                deposed.push(DeposedObject {
                    id: r.id.clone().unwrap_or_default(),
                    properties: r.properties.clone(),
                    outputs: r.outputs.clone(),
                });
            }
            let mut ctx = ctx;
            ctx.intent = intent.clone();
            ctx.superseded = deposed.iter().map(|d| d.id.clone()).collect();
            let adopt = interrupted.is_some() && !kind.is_data_source();
            // The intent is durable before the call: whatever happens next, the next run looks
            // for what this create made before making another.
            store.put(
                op.address.clone(),
                ResourceState {
                    kind: kind_name,
                    status: ResourceStatus::Creating,
                    id: None,
                    properties: redacted,
                    outputs: Default::default(),
                    dependencies: graph
                        .dependencies(&op.address)
                        .into_iter()
                        .cloned()
                        .collect(),
                    deposed,
                    intent: Some(intent),
                },
            )?;
            let props = Arc::new(props);
            let attempts = Arc::new(AtomicUsize::new(0));
            Box::pin(async move {
                (|| {
                    let (kind, ctx, props, attempts) =
                        (kind.clone(), ctx.clone(), props.clone(), attempts.clone());
                    async move {
                        // After an interrupted run, and before retrying a create whose first
                        // attempt may have gone through, look for the object first.
                        let retry = attempts.fetch_add(1, Ordering::Relaxed) > 0;
                        if (adopt || retry)
                            && !kind.is_data_source()
                            && let Some(found) = kind.find(&ctx, &props).await?
                        {
                            tracing::info!(address = %ctx.address, id = %found.id, "adopting an object an unfinished create made");
                            return finish_adopted(kind.as_ref(), &ctx, found, &props).await;
                        }
                        kind.create(&ctx, &props).await
                    }
                })
                .retry(backoff)
                .sleep(tokio::time::sleep)
                .when(ResourceError::is_transient)
                .notify(notify)
                .await
                .map(Some)
            })
        }
        Step::Update => {
            let props = Arc::new(desired()?);
            let record = recorded.ok_or_else(|| Error::Plan {
                address: op.address.clone(),
                message: "update of a resource the state does not hold".into(),
            })?;
            let changed = Arc::new(changes.get(&op.address).cloned().unwrap_or_default());
            let record = Arc::new(record);
            Box::pin(async move {
                (|| {
                    let (kind, ctx, props, record, changed) = (
                        kind.clone(),
                        ctx.clone(),
                        props.clone(),
                        record.clone(),
                        changed.clone(),
                    );
                    async move {
                        let current = Current {
                            id: record.id.as_deref().unwrap_or_default(),
                            properties: &record.properties,
                            outputs: &record.outputs,
                        };
                        kind.update(&ctx, current, &props, &changed).await
                    }
                })
                .retry(backoff)
                .sleep(tokio::time::sleep)
                .when(ResourceError::is_transient)
                .notify(notify)
                .await
                .map(Some)
            })
        }
        Step::Delete | Step::DeleteDeposed => {
            let targets: Vec<DeposedObject> = match (&recorded, op.step) {
                (Some(r), Step::DeleteDeposed) => r.deposed.clone(),
                (Some(r), _) if r.id.is_some() => vec![DeposedObject {
                    id: r.id.clone().unwrap_or_default(),
                    properties: r.properties.clone(),
                    outputs: r.outputs.clone(),
                }],
                // A create that never got an id: look for what it may have made.
                (Some(r), _) => vec![DeposedObject {
                    id: String::new(),
                    properties: r.properties.clone(),
                    outputs: Default::default(),
                }],
                (None, _) => vec![],
            };
            let targets = Arc::new(targets);
            Box::pin(async move {
                for t in targets.iter() {
                    let mut object = t.clone();
                    if object.id.is_empty() {
                        match kind.find(&ctx, &object.properties).await {
                            Ok(Some(found)) => {
                                object.id = found.id;
                                object.outputs = found.outputs;
                            }
                            // What is there is not ours: this create never made anything.
                            Ok(None) | Err(ResourceError::NotOwned(_)) => continue,
                            Err(e) => return Err(e),
                        }
                    }
                    let object = Arc::new(object);
                    (|| {
                        let (kind, ctx, object) = (kind.clone(), ctx.clone(), object.clone());
                        async move {
                            let current = Current {
                                id: &object.id,
                                properties: &object.properties,
                                outputs: &object.outputs,
                            };
                            kind.delete(&ctx, current).await
                        }
                    })
                    .retry(backoff)
                    .sleep(tokio::time::sleep)
                    .when(ResourceError::is_transient)
                    .notify(notify.clone())
                    .await?;
                }
                Ok(None)
            })
        }
    };
    Ok(call)
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

fn record_success(
    op: &Op,
    applied: Option<Applied>,
    graph: &ResourceGraph,
    kinds: &Kinds,
    store: &mut StateStore,
) -> Result<(), Error> {
    let recorded = store.state().get(&op.address).cloned();
    match op.step {
        Step::Read | Step::Create | Step::Update => {
            let node = graph.get(&op.address).expect("desired node");
            let applied = applied.expect("create and update return the object");
            let kind = kinds.get(&node.kind).expect("checked when prepared");
            let props = resolve_properties(&node.properties, store.state())
                .expect("resolved when prepared");
            store.put(
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
                    deposed: recorded.map(|r| r.deposed).unwrap_or_default(),
                    intent: None,
                },
            )
        }
        Step::Delete => store.remove(&op.address),
        Step::DeleteDeposed => match recorded {
            Some(mut r) => {
                r.deposed.clear();
                store.put(op.address.clone(), r)
            }
            None => Ok(()),
        },
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
