//! Typed kinds: a kind declares its properties and outputs once, as types, and the shared code
//! here does the rest — parsing, replacement rules, secret fields, typed change sets — so a kind
//! is its AWS calls and little else.
//!
//! The types themselves live with the kinds' schemas (`dagform-resources`), derived with
//! `#[derive(Properties)]` and `#[derive(Outputs)]`; the blueprint builds their `…Spec`s from
//! [`Input`]s, and the reconciler drives a [`Kind`] through [`Typed`], which is a
//! [`ResourceKind`].

use crate::address::Address;
use crate::error::ResourceError;
use crate::graph::NodeSpec;
use crate::kind::{Applied, Current, Observed, OpContext, Outputs, Properties, ResourceKind};
use crate::value::{Reference, Value, ValueMap};
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::marker::PhantomData;
use std::time::Duration;

/// A kind's properties, as `#[derive(Properties)]` declares them.
pub trait KindProperties: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind's name in the graph and the state, e.g. `aws_subnet`.
    const KIND: &'static str;
    /// Every property's name.
    const FIELDS: &'static [&'static str];
    /// Properties whose values are secret: shown as a hash in plans, kept out of the state.
    const SENSITIVE: &'static [&'static str];
    /// One variant per property.
    type Field: PropertyName + Eq + Hash + Debug + Send + Sync + 'static;
    /// What the blueprint fills in.
    type Spec: Spec<Props = Self>;
    /// What an applied object of this kind reports.
    type Outputs: KindOutputs;

    fn field(name: &str) -> Option<Self::Field>;

    /// Whether changing `field` needs a new object rather than an in-place update.
    fn forces_replacement(field: Self::Field) -> bool;

    /// Checks beyond the types (a CIDR's prefix length, a name's characters).
    fn check(&self) -> Result<(), ResourceError>;

    /// Parses resolved properties: unknown or missing properties, wrong types and failed
    /// checks are `InvalidProperties`.
    fn parse(properties: &Properties) -> Result<Self, ResourceError> {
        let parsed: Self = serde_json::from_value(Json::Object(properties.clone()))?;
        parsed.check()?;
        Ok(parsed)
    }

    /// The properties in the engine's untyped shape (options left unset stay out).
    fn to_properties(&self) -> Properties {
        match serde_json::to_value(self) {
            Ok(Json::Object(map)) => map,
            _ => Properties::new(),
        }
    }
}

/// A kind's property, named as the graph and the state name it: code that reads untyped
/// properties (the cost estimate, `status`) names them through these, never by string.
pub trait PropertyName: Copy {
    fn property(self) -> &'static str;
}

/// A kind's outputs, as `#[derive(Outputs)]` declares them.
pub trait KindOutputs: Serialize {
    /// Typed references to each output of one node.
    type Refs;

    fn refs(node: &Address) -> Self::Refs;

    /// The object's physical id.
    fn id(&self) -> &str;

    /// The outputs as the state records them.
    fn into_outputs(self) -> Outputs
    where
        Self: Sized,
    {
        match serde_json::to_value(&self) {
            Ok(Json::Object(map)) => map,
            _ => Outputs::new(),
        }
    }
}

/// The properties the blueprint gives one node, before references are resolved.
pub trait Spec {
    type Props: KindProperties;

    fn into_properties(self) -> ValueMap;
}

impl Applied {
    /// The result of a create or update, from the kind's typed outputs.
    pub fn of<O: KindOutputs>(outputs: O) -> Self {
        let id = outputs.id().to_owned();
        Applied {
            id,
            outputs: outputs.into_outputs(),
            pending: None,
        }
    }
}

impl Observed {
    /// A live object read back, in the shape of the kind's properties.
    pub fn of<P: Serialize, O: KindOutputs>(properties: &P, outputs: O) -> Self {
        let properties = match serde_json::to_value(properties) {
            Ok(Json::Object(map)) => map,
            _ => Properties::new(),
        };
        Observed {
            properties,
            outputs: outputs.into_outputs(),
        }
    }
}

impl crate::state::ResourceState {
    /// The recorded object's outputs, when it is of kind `P` and they read as `P`'s outputs.
    pub fn outputs_as<P: KindProperties>(&self) -> Option<P::Outputs>
    where
        P::Outputs: DeserializeOwned,
    {
        if self.kind != P::KIND {
            return None;
        }
        serde_json::from_value(Json::Object(self.outputs.clone())).ok()
    }
}

impl NodeSpec {
    /// A node of `spec`'s kind at `address`.
    pub fn of<S: Spec>(address: impl Into<Address>, spec: S) -> Self {
        NodeSpec::new(address, S::Props::KIND, spec.into_properties())
    }
}

/// Typed references to the outputs of the node at `address`, of kind `P`.
pub fn outputs_of<P: KindProperties>(address: &Address) -> <P::Outputs as KindOutputs>::Refs {
    <P::Outputs as KindOutputs>::refs(address)
}

/// A reference to one output of another node, typed by what the output holds.
#[derive(Debug)]
pub struct OutputRef<T> {
    reference: Reference,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for OutputRef<T> {
    fn clone(&self) -> Self {
        Self {
            reference: self.reference.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> OutputRef<T> {
    pub fn new(node: Address, output: &str) -> Self {
        Self {
            reference: Reference::new(node, output),
            _type: PhantomData,
        }
    }

    /// A path into a structured output, such as `validation_records.0.name`.
    pub fn at<U>(&self, path: &str) -> OutputRef<U> {
        OutputRef {
            reference: Reference::new(
                self.reference.node.clone(),
                format!("{}.{path}", self.reference.output),
            ),
            _type: PhantomData,
        }
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }
}

/// One property value as the blueprint gives it: plain data of type `T`, another node's output
/// of that type, or strings joined once their parts are known.
#[derive(Debug)]
pub struct Input<T> {
    value: Value,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Input<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            _type: PhantomData,
        }
    }
}

impl<T: Serialize> Input<T> {
    /// A plain value.
    pub fn value(value: T) -> Self {
        Self::untyped(Value::Data(
            serde_json::to_value(value).expect("property values serialise to JSON"),
        ))
    }
}

impl<T> Input<T> {
    /// A value the types cannot check (a nested document holding references); the kind's
    /// parse checks it once resolved.
    pub fn untyped(value: Value) -> Self {
        Self {
            value,
            _type: PhantomData,
        }
    }

    pub fn into_value(self) -> Value {
        self.value
    }

    pub fn as_value(&self) -> &Value {
        &self.value
    }
}

impl Input<String> {
    /// Strings joined once every part is known, e.g. a repository URI and an image tag.
    pub fn concat(parts: impl IntoIterator<Item = Input<String>>) -> Self {
        Self::untyped(Value::concat(
            parts.into_iter().map(Input::into_value).collect(),
        ))
    }
}

impl<T> From<OutputRef<T>> for Input<T> {
    fn from(r: OutputRef<T>) -> Self {
        Self::untyped(Value::Ref(r.reference))
    }
}

impl<T> From<&OutputRef<T>> for Input<T> {
    fn from(r: &OutputRef<T>) -> Self {
        Self::untyped(Value::Ref(r.reference.clone()))
    }
}

impl<T> From<Vec<Input<T>>> for Input<Vec<T>> {
    fn from(items: Vec<Input<T>>) -> Self {
        Self::untyped(
            Value::List(items.into_iter().map(Input::into_value).collect())
                .partially_resolve(&|_| None),
        )
    }
}

impl<T> From<BTreeMap<String, Input<T>>> for Input<BTreeMap<String, T>> {
    fn from(entries: BTreeMap<String, Input<T>>) -> Self {
        Self::untyped(
            Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, v.into_value()))
                    .collect(),
            )
            .partially_resolve(&|_| None),
        )
    }
}

macro_rules! plain_inputs {
    ($($from:ty => $to:ty),+ $(,)?) => {$(
        impl From<$from> for Input<$to> {
            fn from(v: $from) -> Self {
                Input::value(<$to>::from(v))
            }
        }
    )+};
}

plain_inputs!(
    String => String,
    &str => String,
    &String => String,
    bool => bool,
    u16 => u16,
    u32 => u32,
    u64 => u64,
    i32 => i32,
    i64 => i64,
    u16 => u32,
    u32 => u64,
    Json => Json,
);

impl From<Vec<String>> for Input<Vec<String>> {
    fn from(v: Vec<String>) -> Self {
        Input::value(v)
    }
}

impl From<Vec<&str>> for Input<Vec<String>> {
    fn from(v: Vec<&str>) -> Self {
        Input::value(v.into_iter().map(str::to_owned).collect())
    }
}

/// The properties an update changes, as the kind's fields.
#[derive(Debug, Clone)]
pub struct Changes<P: KindProperties> {
    fields: Vec<P::Field>,
    names: Vec<String>,
}

impl<P: KindProperties> Changes<P> {
    pub fn new(names: &[String]) -> Self {
        Self {
            fields: names.iter().filter_map(|n| P::field(n)).collect(),
            names: names.to_vec(),
        }
    }

    /// The changed properties that are fields of the kind.
    pub fn fields(&self) -> &[P::Field] {
        &self.fields
    }

    pub fn contains(&self, field: P::Field) -> bool {
        self.fields.contains(&field)
    }

    /// Whether any of `fields` changed.
    pub fn any(&self, fields: &[P::Field]) -> bool {
        fields.iter().any(|f| self.contains(*f))
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The changed properties by name, as the plan lists them.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// A resource type with typed properties. Wrapped in [`Typed`] it is a [`ResourceKind`]:
/// properties are parsed (and checked) once before each call, the kind's name, replacement
/// rules and secret fields come from `Props`.
#[async_trait]
pub trait Kind: Send + Sync + 'static {
    type Props: KindProperties;

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

    /// A data source only looks up an object it does not own.
    fn is_data_source(&self) -> bool {
        false
    }

    async fn create(&self, ctx: &OpContext, props: &Self::Props) -> Result<Applied, ResourceError>;

    /// Reads the live object; `None` when it no longer exists.
    async fn read(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError>;

    /// Reads many objects of this kind; see [`ResourceKind::read_many`].
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

    fn read_batch_size(&self) -> usize {
        1
    }

    /// Changes the object in place.
    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        desired: &Self::Props,
        changed: &Changes<Self::Props>,
    ) -> Result<Applied, ResourceError>;

    /// Deletes the object; an object already gone is success.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError>;

    /// See [`ResourceKind::find`].
    async fn find(
        &self,
        _ctx: &OpContext,
        _props: &Self::Props,
    ) -> Result<Option<Applied>, ResourceError> {
        Ok(None)
    }

    /// See [`ResourceKind::inspect`].
    async fn inspect(
        &self,
        _ctx: &OpContext,
        _current: Current<'_>,
    ) -> Result<Option<Json>, ResourceError> {
        Ok(None)
    }
}

/// A [`Kind`] as the engine drives it.
pub struct Typed<K>(pub K);

#[async_trait]
impl<K: Kind> ResourceKind for Typed<K> {
    fn name(&self) -> &'static str {
        K::Props::KIND
    }

    fn forces_replacement(&self, property: &str) -> bool {
        K::Props::field(property).is_some_and(K::Props::forces_replacement)
    }

    fn create_before_destroy(&self) -> bool {
        self.0.create_before_destroy()
    }

    fn typical_wait(&self, deleting: bool) -> Duration {
        self.0.typical_wait(deleting)
    }

    fn is_data_source(&self) -> bool {
        self.0.is_data_source()
    }

    fn sensitive_properties(&self) -> &'static [&'static str] {
        K::Props::SENSITIVE
    }

    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        self.0.create(ctx, &K::Props::parse(props)?).await
    }

    async fn read(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        self.0.read(ctx, current).await
    }

    async fn read_many(
        &self,
        ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        self.0.read_many(ctx, items).await
    }

    fn read_batch_size(&self) -> usize {
        self.0.read_batch_size()
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let desired = K::Props::parse(desired)?;
        self.0
            .update(ctx, current, &desired, &Changes::new(changed))
            .await
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        self.0.delete(ctx, current).await
    }

    async fn find(
        &self,
        ctx: &OpContext,
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        self.0.find(ctx, &K::Props::parse(props)?).await
    }

    async fn inspect(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Json>, ResourceError> {
        self.0.inspect(ctx, current).await
    }
}

impl crate::kind::Kinds {
    /// Registers a typed kind.
    pub fn add<K: Kind>(&mut self, kind: K) {
        self.register(std::sync::Arc::new(Typed(kind)));
    }
}
