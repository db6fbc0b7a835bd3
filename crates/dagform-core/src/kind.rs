//! The interface every resource type implements, and the registry of them.

use crate::address::Address;
use crate::error::ResourceError;
use async_trait::async_trait;
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Resolved properties: every reference replaced by the referenced output.
pub type Properties = Map<String, Json>;
/// Outputs of an applied resource (`id`, `arn`, `dns_name`…).
pub type Outputs = Map<String, Json>;

/// The result of a create or an update: the physical id and the outputs, or word that the
/// object is waiting on something outside AWS.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub id: String,
    pub outputs: Outputs,
    /// Set when the object cannot be finished until something outside AWS happens (DNS
    /// records added at another DNS host): an expected outcome, not a failure. The node is
    /// recorded as still being created, its dependents wait, and a later run carries on.
    pub pending: Option<Pending>,
}

/// What a pending object waits for, and what the user can do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// What it is waiting for, e.g. "certificate … to be issued".
    pub waiting_for: String,
    /// Steps only the user can take, one per line (a DNS record to add, say).
    pub instructions: Vec<String>,
}

impl Applied {
    pub fn new(id: impl Into<String>) -> Self {
        let id = id.into();
        let mut outputs = Outputs::new();
        outputs.insert("id".into(), Json::String(id.clone()));
        Self {
            id,
            outputs,
            pending: None,
        }
    }

    pub fn output(mut self, name: &str, value: impl Into<Json>) -> Self {
        self.outputs.insert(name.into(), value.into());
        self
    }

    /// Marks the object as waiting on the outside world.
    pub fn pending(mut self, pending: Pending) -> Self {
        self.pending = Some(pending);
        self
    }
}

/// What `read` saw of a live object: its properties in the same shape as the desired ones,
/// and its outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub properties: Properties,
    pub outputs: Outputs,
}

/// An existing object as recorded in the state.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    pub id: &'a str,
    pub properties: &'a Properties,
    pub outputs: &'a Outputs,
}

/// How long and how often a kind polls while it waits for AWS.
#[derive(Debug, Clone, Copy)]
pub struct PollSettings {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// The tag naming the stack an object belongs to.
pub const STACK_TAG: &str = "dagform:stack";
/// The tag naming the node address an object was created for.
pub const ADDRESS_TAG: &str = "dagform:address";

/// Who an existing AWS object belongs to, according to its dagform tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This stack, for this very address.
    Ours,
    /// This stack, but another address: another resource of the same configuration.
    OtherAddress { address: String },
    /// Another stack (another environment or app in the same account).
    OtherStack {
        stack: String,
        address: Option<String>,
    },
    /// No dagform tags: made by hand or by another tool.
    Nobody,
}

/// A step's share of the run's parallelism: held while the step calls AWS, given up while it
/// only waits (a poll interval, a retry's backoff), so that `--parallelism` bounds the calls in
/// flight and not the objects being waited for. Outside a run it is empty and waiting just
/// sleeps.
#[derive(Debug, Clone, Default)]
pub struct CallSlot(Option<Arc<HeldSlot>>);

#[derive(Debug)]
struct HeldSlot {
    calls: Arc<tokio::sync::Semaphore>,
    permit: std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
}

impl CallSlot {
    /// A slot holding `permit`, one of `calls`'.
    pub fn held(
        calls: Arc<tokio::sync::Semaphore>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Self {
        Self(Some(Arc::new(HeldSlot {
            calls,
            permit: std::sync::Mutex::new(Some(permit)),
        })))
    }

    /// Sleeps for `duration` without holding the slot, and takes it back (waiting its turn
    /// behind steps that are ready to call AWS) before returning.
    pub async fn idle(&self, duration: Duration) {
        self.without(tokio::time::sleep(duration)).await;
    }

    /// Runs `work` without holding the slot (a poll answered by a round of batched describe
    /// calls, which are made once for every object in the round), and takes it back (waiting
    /// its turn behind steps that are ready to call AWS) before returning.
    pub async fn without<F: Future>(&self, work: F) -> F::Output {
        let Some(slot) = &self.0 else {
            return work.await;
        };
        // The permit taken is dropped at once: another step may call AWS meanwhile.
        let had_it = slot.take().is_some();
        let out = work.await;
        // A step waiting on two things at once gives its slot up once and takes it back once.
        if had_it && let Ok(permit) = slot.calls.clone().acquire_owned().await {
            slot.put(permit);
        }
        out
    }
}

impl HeldSlot {
    fn take(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permit.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn put(&self, permit: tokio::sync::OwnedSemaphorePermit) {
        *self.permit.lock().unwrap_or_else(|e| e.into_inner()) = Some(permit);
    }
}

/// What an operation knows of where it runs.
#[derive(Debug, Clone)]
pub struct OpContext {
    pub stack: String,
    pub address: Address,
    pub poll: PollSettings,
    /// Identifies this create attempt (recorded with its intent in the state before the call);
    /// idempotency tokens derive from it, so a retry, or a re-run after a crash, of the same
    /// intended create presents the same token.
    pub intent: String,
    /// Ids of older objects of this address still recorded for deletion (replaced ones):
    /// `find` must never return one of them as the object being created.
    pub superseded: Vec<String>,
    /// The step's share of the run's parallelism, given up while it waits.
    pub slot: CallSlot,
    /// Cancelled when the run is interrupted: a wait then ends at once with
    /// `ResourceError::Interrupted` instead of holding the run until the object is ready.
    pub cancel: CancellationToken,
}

impl OpContext {
    pub fn new(stack: impl Into<String>, address: impl Into<Address>, poll: PollSettings) -> Self {
        Self {
            stack: stack.into(),
            address: address.into(),
            poll,
            intent: String::new(),
            superseded: Vec::new(),
            slot: CallSlot::default(),
            cancel: CancellationToken::new(),
        }
    }

    /// Tags every object dagform creates carries, so it can be found again and its owner known.
    pub fn tags(&self) -> Vec<(String, String)> {
        vec![
            (STACK_TAG.to_string(), self.stack.clone()),
            (ADDRESS_TAG.to_string(), self.address.to_string()),
        ]
    }

    /// Tags as `Key=Value` pairs for a tag filter or a tag-on-create builder.
    pub fn tag_pairs(&self) -> [(&'static str, String); 2] {
        [
            (STACK_TAG, self.stack.clone()),
            (ADDRESS_TAG, self.address.to_string()),
        ]
    }

    /// Who owns an object carrying `tags` (any other tags are ignored).
    pub fn owner<'t>(&self, tags: impl IntoIterator<Item = (&'t str, &'t str)>) -> Owner {
        let (mut stack, mut address) = (None, None);
        for (k, v) in tags {
            match k {
                STACK_TAG => stack = Some(v),
                ADDRESS_TAG => address = Some(v),
                _ => {}
            }
        }
        match (stack, address) {
            (Some(s), Some(a)) if s == self.stack && a == self.address.as_str() => Owner::Ours,
            (Some(s), a) if s == self.stack => Owner::OtherAddress {
                address: a.unwrap_or_default().to_owned(),
            },
            (Some(s), a) => Owner::OtherStack {
                stack: s.to_owned(),
                address: a.map(str::to_owned),
            },
            (None, _) => Owner::Nobody,
        }
    }

    /// Whether an object found under the wanted name (or by its tags) may be adopted as this
    /// node's: only when both its stack and its address are this node's. `object` names it for
    /// the error, e.g. "log group `/ecs/api`".
    pub fn require_ours<'t>(
        &self,
        object: &str,
        tags: impl IntoIterator<Item = (&'t str, &'t str)>,
    ) -> Result<(), ResourceError> {
        match self.owner(tags) {
            Owner::Ours => Ok(()),
            other => Err(self.not_owned(object, &other)),
        }
    }

    /// Whether an object the state records may be changed or deleted: it must not carry
    /// another stack's (or another resource's) tags. An untagged object the state records is
    /// this stack's by record (imported), so it may be.
    pub fn require_not_foreign<'t>(
        &self,
        object: &str,
        tags: impl IntoIterator<Item = (&'t str, &'t str)>,
    ) -> Result<(), ResourceError> {
        match self.owner(tags) {
            Owner::Ours | Owner::Nobody => Ok(()),
            other => Err(self.not_owned(object, &other)),
        }
    }

    /// The error for an object that is not this node's to adopt, change or delete.
    pub fn not_owned(&self, object: &str, owner: &Owner) -> ResourceError {
        let whose = match owner {
            Owner::Ours => "is this resource's".to_owned(),
            Owner::OtherAddress { address } => {
                format!("belongs to `{address}` of this stack")
            }
            Owner::OtherStack {
                stack,
                address: Some(a),
            } => format!("belongs to stack `{stack}` (as `{a}`)"),
            Owner::OtherStack {
                stack,
                address: None,
            } => format!("belongs to stack `{stack}`"),
            Owner::Nobody => "is not managed by dagform".to_owned(),
        };
        ResourceError::NotOwned(format!(
            "{object} already exists and {whose}; dagform will not adopt, change or delete it \
             (name this resource differently, or remove the other object)"
        ))
    }

    /// An idempotency token for this create attempt, at most `max_len` characters of lowercase
    /// hex: the same for every retry of one intended create, different for another stack,
    /// address or intent.
    pub fn client_token(&self, max_len: usize) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [self.stack.as_str(), self.address.as_str(), &self.intent] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let mut token = hex::encode(h.finalize());
        token.truncate(max_len);
        token
    }

    /// Polls `check` every `poll.interval` until it yields a value, fails, or `poll.timeout`
    /// passes. Transient errors from `check` are polled through.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> Result<T, ResourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, ResourceError>>,
    {
        let deadline = tokio::time::Instant::now() + self.poll.timeout;
        let interrupted = || ResourceError::Interrupted(what.to_owned());
        loop {
            if self.cancel.is_cancelled() {
                return Err(interrupted());
            }
            match check().await {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) if e.is_transient() => {
                    tracing::debug!(address = %self.address, "still waiting for {what}: {e}")
                }
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ResourceError::Timeout(format!(
                    "{what} after {}",
                    humanize(self.poll.timeout)
                )));
            }
            tokio::select! {
                () = self.slot.idle(self.poll.interval) => {}
                () = self.cancel.cancelled() => return Err(interrupted()),
            }
        }
    }
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// One resource type: how to create, read, update and delete it, and which property changes
/// force a replacement.
#[async_trait]
pub trait ResourceKind: Send + Sync {
    /// The kind's name as used in the graph, e.g. `aws_vpc`.
    fn name(&self) -> &'static str;

    /// Whether changing `property` needs a new object rather than an in-place update.
    fn forces_replacement(&self, property: &str) -> bool;

    /// Whether a replacement creates the new object before deleting the old one.
    fn create_before_destroy(&self) -> bool {
        false
    }

    /// How long AWS typically takes to make an object of this kind ready after its create,
    /// or gone after its delete (`deleting`): the walk starts first the steps that lead to
    /// long waits. Zero for kinds whose objects are ready when their call returns.
    fn typical_wait(&self, deleting: bool) -> Duration {
        let _ = deleting;
        Duration::ZERO
    }

    /// A data source only looks up an object it does not own: `create` reads it, `delete`
    /// forgets it and AWS is never changed.
    fn is_data_source(&self) -> bool {
        false
    }

    /// Properties whose values are secret: shown as a hash in plans and kept out of the state.
    fn sensitive_properties(&self) -> &'static [&'static str] {
        &[]
    }

    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError>;

    /// Reads the live object; `None` when it no longer exists.
    async fn read(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError>;

    /// Reads many objects of this kind: one result per item, in the order of `items`, each
    /// exactly what `read` gives for it. Kinds whose API describes many ids in one request
    /// override this to make a refresh cost a few calls instead of one per object.
    async fn read_many(
        &self,
        ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(self.read(ctx, *item).await);
        }
        out
    }

    /// How many objects one `read_many` call may be given. The default of 1 suits kinds
    /// without a batched read: each object is then read on its own, concurrently with the
    /// others and with a context naming its own address.
    fn read_batch_size(&self) -> usize {
        1
    }

    /// Changes the object in place; `changed` names the top-level properties that differ.
    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        changed: &[String],
    ) -> Result<Applied, ResourceError>;

    /// Deletes the object; an object already gone is success.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError>;

    /// What `status` shows of a live object beyond its properties (health, rollout,
    /// issuance), as the JSON of the kind's typed view in `dagform-resources`; `None` when the
    /// kind has nothing to add.
    async fn inspect(
        &self,
        _ctx: &OpContext,
        _current: Current<'_>,
    ) -> Result<Option<Json>, ResourceError> {
        Ok(None)
    }

    /// Finds an object created for `ctx.address` whose id never reached the state (the run was
    /// killed mid-create), so it can be adopted instead of leaked or duplicated.
    async fn find(
        &self,
        _ctx: &OpContext,
        _props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        Ok(None)
    }
}

/// The resource kinds a run knows, by name.
#[derive(Clone, Default)]
pub struct Kinds {
    by_name: HashMap<&'static str, Arc<dyn ResourceKind>>,
}

impl Kinds {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, kind: Arc<dyn ResourceKind>) {
        self.by_name.insert(kind.name(), kind);
    }

    pub fn with(mut self, kind: Arc<dyn ResourceKind>) -> Self {
        self.register(kind);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn ResourceKind>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }
}
