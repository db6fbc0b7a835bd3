//! An in-memory cloud and resource kind, for testing the engine without AWS.
//!
//! The cloud behaves like a strict provider: deleting an object another object still refers to
//! fails with a transient "dependency violation", and creating with a reference to a missing
//! object fails, so ordering mistakes show up as test failures. Objects remember the stack and
//! address that made them (as AWS tags do) and a `name` property is unique per kind, so the
//! ownership rules can be tested too. It records every call and the highest number of calls in
//! flight at once, and can lose a create's answer, fail a create halfway, or keep an object
//! waiting on the outside world until the test says the outside condition is met.

use crate::address::Address;
use crate::error::ResourceError;
use crate::kind::{
    ADDRESS_TAG, Applied, Current, Observed, OpContext, Owner, Pending, Properties, ResourceKind,
    STACK_TAG,
};
use crate::polls::Polls;
use async_trait::async_trait;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct StoredObject {
    pub kind: String,
    /// The stack and address it was made for: its ownership tags.
    pub stack: String,
    pub address: Address,
    pub properties: Properties,
}

impl StoredObject {
    fn owner(&self, ctx: &OpContext) -> Owner {
        ctx.owner([
            (STACK_TAG, self.stack.as_str()),
            (ADDRESS_TAG, self.address.as_str()),
        ])
    }
}

#[derive(Debug, Clone)]
pub struct Call {
    pub address: Address,
    pub operation: &'static str,
    pub started: Instant,
    pub ended: Instant,
    /// The idempotency token a create presented.
    pub token: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    objects: BTreeMap<String, StoredObject>,
    /// How many times each id appears in the objects' properties, so a delete finds out
    /// whether the object is still used without reading every other object.
    mentions: HashMap<String, usize>,
    /// The ids of the objects of each (kind, `name` property), so a create finds a name
    /// already taken without reading every other object.
    names: HashMap<(String, String), BTreeSet<String>>,
    next_id: u64,
    calls: Vec<Call>,
    in_flight: usize,
    max_in_flight: usize,
    /// Address → remaining transient failures before calls succeed.
    transient_failures: HashMap<Address, usize>,
    /// Addresses whose calls always fail.
    broken: HashMap<Address, String>,
    /// Address → remaining creates that succeed but whose answer is lost on the way back.
    lost_answers: HashMap<Address, usize>,
    /// Address → a property the next create leaves unset before failing, as a multi-call
    /// create stopped after its first call does.
    halfway: HashMap<Address, String>,
    /// Address → what its object waits for outside the cloud, until the condition is met.
    pending: HashMap<Address, Pending>,
}

/// A shared in-memory "cloud".
#[derive(Debug, Default)]
pub struct MemoryCloud {
    inner: Mutex<Inner>,
    latency: Mutex<Duration>,
}

impl MemoryCloud {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn with_latency(latency: Duration) -> Arc<Self> {
        let c = Self::default();
        *c.latency.lock().unwrap() = latency;
        Arc::new(c)
    }

    pub fn fail_transiently(&self, address: &str, times: usize) {
        self.lock().transient_failures.insert(address.into(), times);
    }

    pub fn break_resource(&self, address: &str, message: &str) {
        self.lock().broken.insert(address.into(), message.into());
    }

    /// The next `times` creates at `address` happen, but their answer is lost (a reset
    /// connection): the caller sees a transient error.
    pub fn lose_answers(&self, address: &str, times: usize) {
        self.lock().lost_answers.insert(address.into(), times);
    }

    /// The next create at `address` makes its object without `property` and then fails.
    pub fn fail_halfway(&self, address: &str, property: &str) {
        self.lock().halfway.insert(address.into(), property.into());
    }

    /// Objects at `address` wait on the outside world: creates, updates and finds make or
    /// return them but answer `pending`, until [`MemoryCloud::condition_met`].
    pub fn answer_pending(&self, address: &str, pending: Pending) {
        self.lock().pending.insert(address.into(), pending);
    }

    /// What the objects at `address` waited for has happened: they answer as finished.
    pub fn condition_met(&self, address: &str) {
        self.lock().pending.remove(&Address::from(address));
    }

    pub fn repair(&self, address: &str) {
        self.lock().broken.remove(&Address::from(address));
    }

    pub fn objects(&self) -> BTreeMap<String, StoredObject> {
        self.lock().objects.clone()
    }

    pub fn object_at(&self, address: &str) -> Option<(String, StoredObject)> {
        self.lock()
            .objects
            .iter()
            .find(|(_, o)| o.address.as_str() == address)
            .map(|(id, o)| (id.clone(), o.clone()))
    }

    /// Changes an object behind dagform's back (drift).
    pub fn set_property(&self, id: &str, key: &str, value: Json) {
        let mut inner = self.lock();
        if let Some(mut o) = inner.take(id) {
            o.properties.insert(key.into(), value);
            inner.store(id.to_owned(), o);
        }
    }

    /// Deletes an object behind dagform's back.
    pub fn remove(&self, id: &str) {
        self.lock().take(id);
    }

    /// Creates an object as if an interrupted run of stack `test` had done so.
    pub fn insert(&self, kind: &str, address: &str, properties: Properties) -> String {
        self.insert_for("test", kind, address, properties)
    }

    /// Creates an object tagged for `stack` and `address`, e.g. another environment's.
    pub fn insert_for(
        &self,
        stack: &str,
        kind: &str,
        address: &str,
        properties: Properties,
    ) -> String {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = format!("mem-{kind}-{}", inner.next_id);
        inner.store(
            id.clone(),
            StoredObject {
                kind: kind.into(),
                stack: stack.into(),
                address: address.into(),
                properties,
            },
        );
        id
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.lock().max_in_flight
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("memory cloud lock")
    }

    async fn call<T>(
        &self,
        address: &Address,
        operation: &'static str,
        latency: Option<Duration>,
        body: impl FnOnce(&mut Inner) -> Result<T, ResourceError>,
    ) -> Result<T, ResourceError> {
        self.call_with_token(address, operation, None, latency, body)
            .await
    }

    async fn call_with_token<T>(
        &self,
        address: &Address,
        operation: &'static str,
        token: Option<String>,
        latency: Option<Duration>,
        body: impl FnOnce(&mut Inner) -> Result<T, ResourceError>,
    ) -> Result<T, ResourceError> {
        let started = Instant::now();
        {
            let mut inner = self.lock();
            inner.in_flight += 1;
            inner.max_in_flight = inner.max_in_flight.max(inner.in_flight);
        }
        let latency = latency.unwrap_or(*self.latency.lock().unwrap());
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut inner = self.lock();
        inner.in_flight -= 1;
        inner.calls.push(Call {
            address: address.clone(),
            operation,
            started,
            ended: Instant::now(),
            token,
        });
        if let Some(message) = inner.broken.get(address) {
            return Err(ResourceError::Failed(message.clone()));
        }
        if let Some(n) = inner.transient_failures.get_mut(address)
            && *n > 0
        {
            *n -= 1;
            return Err(ResourceError::Transient("throttled, try again".into()));
        }
        body(&mut inner)
    }
}

impl Inner {
    /// Stores `object` under `id` (replacing an earlier one), counting the ids it mentions.
    fn store(&mut self, id: String, object: StoredObject) {
        self.take(&id);
        for_each_string(&object.properties, &mut |s| {
            *self.mentions.entry(s.to_owned()).or_default() += 1;
        });
        if let Some(key) = name_key(&object) {
            self.names.entry(key).or_default().insert(id.clone());
        }
        self.objects.insert(id, object);
    }

    fn take(&mut self, id: &str) -> Option<StoredObject> {
        let object = self.objects.remove(id)?;
        if let Some(key) = name_key(&object)
            && let Some(ids) = self.names.get_mut(&key)
        {
            ids.remove(id);
            if ids.is_empty() {
                self.names.remove(&key);
            }
        }
        for_each_string(&object.properties, &mut |s| {
            if let Some(n) = self.mentions.get_mut(s) {
                *n -= 1;
                if *n == 0 {
                    self.mentions.remove(s);
                }
            }
        });
        Some(object)
    }

    /// An object of `kind` whose `name` property is `name`.
    fn named(&self, kind: &str, name: &Json) -> Option<&StoredObject> {
        let ids = self.names.get(&(kind.to_owned(), name.to_string()))?;
        ids.iter().find_map(|id| self.objects.get(id))
    }

    /// Whether any object but `id` itself mentions `id`.
    fn is_used(&self, id: &str) -> bool {
        let own = self.objects.get(id).map_or(0, |o| {
            let mut n = 0;
            for_each_string(&o.properties, &mut |s| n += usize::from(s == id));
            n
        });
        self.mentions.get(id).copied().unwrap_or(0) > own
    }
}

fn name_key(object: &StoredObject) -> Option<(String, String)> {
    let name = object.properties.get("name")?;
    Some((object.kind.clone(), name.to_string()))
}

fn for_each_string(props: &Properties, f: &mut impl FnMut(&str)) {
    fn walk(v: &Json, f: &mut impl FnMut(&str)) {
        match v {
            Json::String(s) => f(s),
            Json::Array(a) => a.iter().for_each(|x| walk(x, f)),
            Json::Object(o) => o.values().for_each(|x| walk(x, f)),
            _ => {}
        }
    }
    props.values().for_each(|v| walk(v, f));
}

fn mentions(props: &Properties, id: &str) -> bool {
    fn walk(v: &Json, id: &str) -> bool {
        match v {
            Json::String(s) => s == id,
            Json::Array(a) => a.iter().any(|x| walk(x, id)),
            Json::Object(o) => o.values().any(|x| walk(x, id)),
            _ => false,
        }
    }
    props.values().any(|v| walk(v, id))
}

/// A resource kind stored in a [`MemoryCloud`]. Property values that are ids of other objects
/// (`mem-<kind>-<n>`) are references the cloud enforces.
pub struct MemoryKind {
    pub name: &'static str,
    pub replace_on: Vec<&'static str>,
    pub create_before_destroy: bool,
    pub data_source: bool,
    pub sensitive: &'static [&'static str],
    /// How long each call takes, instead of the cloud's default.
    pub latency: Option<Duration>,
    /// How long a new object takes to become ready, polled through `OpContext::wait_for` as
    /// a NAT gateway or a load balancer is.
    pub settles_after: Option<Duration>,
    /// How long a deleted object takes to be gone (a service draining), polled the same way.
    pub deletes_after: Option<Duration>,
    pub outputs: Vec<(&'static str, Json)>,
    pub cloud: Arc<MemoryCloud>,
    /// How many waiting objects one describe call polls; `None`: each polls on its own.
    pub poll_batch: Option<usize>,
    polls: std::sync::OnceLock<Polls<(Address, Instant), bool>>,
}

/// A waiting object as its poll names it: its address, and when it is ready (or gone).
type Waiting = (Address, Instant);

impl MemoryKind {
    pub fn new(name: &'static str, cloud: &Arc<MemoryCloud>) -> Self {
        Self {
            name,
            replace_on: Vec::new(),
            create_before_destroy: false,
            data_source: false,
            sensitive: &[],
            latency: None,
            settles_after: None,
            deletes_after: None,
            outputs: Vec::new(),
            cloud: cloud.clone(),
            poll_batch: None,
            polls: std::sync::OnceLock::new(),
        }
    }

    /// Waiting objects are polled together, up to `n` a describe call, as the AWS kinds poll
    /// NAT gateways, load balancers and draining services.
    pub fn polls_in_batches_of(mut self, n: usize) -> Self {
        self.poll_batch = Some(n);
        self
    }

    /// The shared polls of this kind's waiting objects, when they are batched.
    fn polls(&self) -> Option<&Polls<Waiting, bool>> {
        let chunk = self.poll_batch?;
        Some(self.polls.get_or_init(|| {
            let (cloud, latency) = (self.cloud.clone(), self.latency);
            Polls::new(
                chunk,
                Arc::new(move |keys: Vec<Waiting>| {
                    let cloud = cloud.clone();
                    Box::pin(async move {
                        // The call is recorded under the first object it polls.
                        if let Some((first, _)) = keys.first() {
                            cloud.call(first, "describe", latency, |_| Ok(())).await?;
                        }
                        let now = Instant::now();
                        Ok(keys
                            .into_iter()
                            .map(|key| {
                                let ready = now >= key.1;
                                (key, ready)
                            })
                            .collect())
                    })
                }),
            )
        }))
    }

    pub fn replace_on(mut self, props: &[&'static str]) -> Self {
        self.replace_on = props.to_vec();
        self
    }

    pub fn create_before_destroy(mut self) -> Self {
        self.create_before_destroy = true;
        self
    }

    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
        self
    }

    /// New objects take `settle` to become ready, and a create waits for that.
    pub fn settles_after(mut self, settle: Duration) -> Self {
        self.settles_after = Some(settle);
        self
    }

    /// Deleted objects take `drain` to be gone, and a delete waits for that.
    pub fn deletes_after(mut self, drain: Duration) -> Self {
        self.deletes_after = Some(drain);
        self
    }

    pub fn sensitive(mut self, props: &'static [&'static str]) -> Self {
        self.sensitive = props;
        self
    }

    /// Extra outputs every object of this kind reports, e.g. a DNS name.
    pub fn output(mut self, name: &'static str, value: Json) -> Self {
        self.outputs.push((name, value));
        self
    }

    /// Polls, as real kinds do, until `duration` has passed.
    async fn wait(
        &self,
        ctx: &OpContext,
        what: &str,
        duration: Duration,
    ) -> Result<(), ResourceError> {
        let done_at = Instant::now() + duration;
        if let Some(polls) = self.polls() {
            let key: Waiting = (ctx.address.clone(), done_at);
            return ctx
                .wait_for(what, || async {
                    let ready = polls.poll(ctx, key.clone()).await?;
                    Ok(ready.filter(|r| *r).map(|_| ()))
                })
                .await;
        }
        ctx.wait_for(what, || async {
            self.cloud
                .call(&ctx.address, "describe", self.latency, |_| {
                    Ok((Instant::now() >= done_at).then_some(()))
                })
                .await
        })
        .await
    }

    /// The id, an ARN, the properties (as real kinds echo names) and the declared outputs.
    /// Secret properties are echoed too, like a careless kind would: the engine must keep them
    /// out of the state anyway.
    fn applied(&self, id: &str, props: &Properties) -> Applied {
        let mut applied = Applied::new(id).output("arn", format!("arn:memory:{id}"));
        for (k, v) in props {
            applied
                .outputs
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        for (k, v) in &self.outputs {
            applied.outputs.insert((*k).to_owned(), v.clone());
        }
        applied
    }

    /// What a create, update or find answers for the object at `address`: pending while the
    /// cloud keeps it waiting.
    fn answer(&self, inner: &Inner, address: &Address, id: &str, props: &Properties) -> Applied {
        let applied = self.applied(id, props);
        match inner.pending.get(address) {
            Some(pending) => applied.pending(pending.clone()),
            None => applied,
        }
    }
}

#[async_trait]
impl ResourceKind for MemoryKind {
    fn name(&self) -> &'static str {
        self.name
    }

    fn forces_replacement(&self, property: &str) -> bool {
        self.replace_on.contains(&property)
    }

    fn create_before_destroy(&self) -> bool {
        self.create_before_destroy
    }

    fn is_data_source(&self) -> bool {
        self.data_source
    }

    fn typical_wait(&self, deleting: bool) -> Duration {
        let wait = if deleting {
            self.deletes_after
        } else {
            self.settles_after
        };
        wait.unwrap_or_default()
    }

    fn sensitive_properties(&self) -> &'static [&'static str] {
        self.sensitive
    }

    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let kind = self.name;
        let token = ctx.client_token(32);
        let applied = self
            .cloud
            .call_with_token(&ctx.address, "create", Some(token), self.latency, |inner| {
                for v in props.values() {
                    if let Some(s) = v.as_str().filter(|s| s.starts_with("mem-"))
                        && !inner.objects.contains_key(s)
                    {
                        return Err(ResourceError::Failed(format!("{s} does not exist")));
                    }
                }
                if let Some(name) = props.get("name")
                    && let Some(other) = inner.named(kind, name)
                {
                    return Err(ctx.not_owned(&format!("{kind} {name}"), &other.owner(ctx)));
                }
                inner.next_id += 1;
                let id = format!("mem-{kind}-{}", inner.next_id);
                let mut stored = props.clone();
                let halfway = inner.halfway.remove(&ctx.address);
                if let Some(p) = &halfway {
                    stored.remove(p);
                }
                inner.store(
                    id.clone(),
                    StoredObject {
                        kind: kind.into(),
                        stack: ctx.stack.clone(),
                        address: ctx.address.clone(),
                        properties: stored,
                    },
                );
                if let Some(p) = halfway {
                    return Err(ResourceError::Failed(format!(
                        "{id} was made, but setting `{p}` failed"
                    )));
                }
                if let Some(n) = inner.lost_answers.get_mut(&ctx.address)
                    && *n > 0
                {
                    *n -= 1;
                    return Err(ResourceError::Transient("connection reset".into()));
                }
                Ok(self.answer(inner, &ctx.address, &id, props))
            })
            .await?;
        if let Some(settle) = self.settles_after {
            self.wait(ctx, "the object to become ready", settle).await?;
        }
        Ok(applied)
    }

    async fn read(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        self.cloud
            .call(&ctx.address, "read", self.latency, |inner| {
                Ok(inner.objects.get(current.id).map(|o| Observed {
                    properties: o.properties.clone(),
                    outputs: self.applied(current.id, &o.properties).outputs,
                }))
            })
            .await
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        _changed: &[String],
    ) -> Result<Applied, ResourceError> {
        self.cloud
            .call(&ctx.address, "update", self.latency, |inner| {
                let mut o = inner
                    .take(current.id)
                    .ok_or_else(|| ResourceError::Failed(format!("{} is gone", current.id)))?;
                o.properties = desired.clone();
                inner.store(current.id.to_owned(), o);
                Ok(self.answer(inner, &ctx.address, current.id, desired))
            })
            .await
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        self.cloud
            .call(&ctx.address, "delete", self.latency, |inner| {
                if let Some(o) = inner.objects.get(current.id)
                    && !matches!(o.owner(ctx), Owner::Ours | Owner::Nobody)
                {
                    return Err(ctx.not_owned(current.id, &o.owner(ctx)));
                }
                if inner.is_used(current.id)
                    && let Some((_, user)) = inner.objects.iter().find(|(id, o)| {
                        id.as_str() != current.id && mentions(&o.properties, current.id)
                    })
                {
                    return Err(ResourceError::Transient(format!(
                        "DependencyViolation: {} is used by {}",
                        current.id, user.address
                    )));
                }
                inner.take(current.id);
                Ok(())
            })
            .await?;
        if let Some(drain) = self.deletes_after {
            self.wait(ctx, "the object to be deleted", drain).await?;
        }
        Ok(())
    }

    async fn find(
        &self,
        ctx: &OpContext,
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let inner = self.cloud.lock();
        let ours = inner.objects.iter().find(|(id, o)| {
            o.kind == self.name
                && o.owner(ctx) == Owner::Ours
                && !ctx.superseded.iter().any(|s| s == *id)
        });
        if let Some((id, o)) = ours {
            return Ok(Some(self.answer(&inner, &ctx.address, id, &o.properties)));
        }
        // Something else under the wanted name is never ours to adopt.
        if let Some(name) = props.get("name")
            && let Some(other) = inner.named(self.name, name)
        {
            return Err(ctx.not_owned(&format!("{} {name}", self.name), &other.owner(ctx)));
        }
        Ok(None)
    }
}
