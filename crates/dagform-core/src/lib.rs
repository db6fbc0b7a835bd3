//! The engine of dagform, free of any cloud SDK.
//!
//! A [`graph::ResourceGraph`] of desired resources is compared by the [`plan`] module with the
//! recorded [`state`] to produce a [`plan::Plan`]; the [`reconcile`] module executes that plan by
//! walking the graph concurrently, calling one [`kind::ResourceKind`] per resource type and
//! recording every result in the state before moving on.

pub mod address;
pub mod error;
pub mod graph;
pub mod kind;
pub mod plan;
pub mod polls;
pub mod reconcile;
pub mod state;
pub mod testing;
pub mod typed;
pub mod value;

pub use address::Address;
pub use error::{Error, ResourceError};
pub use graph::{GraphBuilder, NodeSpec, ResourceGraph};
pub use kind::{Applied, Current, Kinds, Observed, OpContext, Pending, Properties, ResourceKind};
pub use plan::{Action, Plan, ResourcePlan};
pub use state::{
    Access, FileBackend, FileParts, Part, ResourceState, State, StateBackend, StateParts,
    StateStore, WriteScope,
};
pub use typed::{
    Changes, Input, Kind, KindOutputs, KindProperties, OutputRef, PropertyName, Spec, Typed,
};
pub use value::{Reference, Value, ValueMap};
