//! Expands a configuration into the resource graph, in two steps.
//!
//! [`resolve_inputs`] reads what lies outside the configuration: secret values (environment,
//! files) and the listener rule priorities already allocated (the state). [`expand`] is then a
//! pure function of the configuration and those inputs: a platform (see `platforms`) composes
//! components — network, security groups, cluster, registry, secrets, database, ingress,
//! services, customers — each of which adds its nodes and hands back typed references to them
//! for the components that follow.

mod alarms;
mod ci;
mod cluster;
mod customers;
mod database;
mod firewall;
mod ingress;
mod inputs;
mod network;
mod platforms;
mod registry;
mod scaling;
mod secrets;
mod security_groups;
mod services;
mod shards;

pub use inputs::{Inputs, customer_load_balancers, resolve_inputs};
pub use shards::Shard;
pub(crate) use shards::{
    MAX_RULES_PER_LOAD_BALANCER, MAX_TARGET_GROUPS_PER_LOAD_BALANCER, computed_capacity,
};

use crate::error::{ConfigError, Diagnostic};
use crate::model::Config;
use dagform_core::{GraphBuilder, NodeSpec, ResourceGraph, State, Value};
use std::path::Path;

/// A named value the stack reports after a run (`dagform output`).
#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub name: String,
    pub description: String,
    pub value: Value,
}

/// The desired resources of one stack.
#[derive(Debug, Clone)]
pub struct Blueprint {
    pub stack: String,
    pub region: String,
    pub graph: ResourceGraph,
    pub outputs: Vec<OutputSpec>,
    /// Secret values that could not be read (unset variable, missing file). Planning or applying
    /// needs them; destroying or inspecting does not.
    pub missing_secrets: Vec<Diagnostic>,
}

impl Blueprint {
    /// Fails when a secret value the configuration names could not be read.
    pub fn require_secrets(&self) -> Result<(), ConfigError> {
        if self.missing_secrets.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.missing_secrets.clone()))
        }
    }
}

/// Expands `config` (read from `config_path`, against which secret files are resolved);
/// `state` supplies listener rule priorities already allocated, so they never move.
pub fn blueprint(
    config: &Config,
    config_path: &Path,
    state: Option<&State>,
) -> Result<Blueprint, ConfigError> {
    expand(config, &resolve_inputs(config, config_path, state))
}

/// Expands `config` with inputs already resolved; reads nothing.
pub fn expand(config: &Config, inputs: &Inputs) -> Result<Blueprint, ConfigError> {
    let Expansion { graph, outputs } = platforms::compose(config, inputs)?;
    Ok(Blueprint {
        stack: config.stack_name(),
        region: config.region().to_owned(),
        graph: graph.build()?,
        outputs,
        missing_secrets: inputs.missing_secrets.clone(),
    })
}

/// What the components add to: the graph's nodes and the stack's outputs, in order.
#[derive(Default)]
struct Expansion {
    graph: GraphBuilder,
    outputs: Vec<OutputSpec>,
}

impl Expansion {
    fn add(&mut self, node: NodeSpec) {
        self.graph.add(node);
    }

    fn output(&mut self, name: impl Into<String>, description: impl Into<String>, value: Value) {
        self.outputs.push(OutputSpec {
            name: name.into(),
            description: description.into(),
            value,
        });
    }
}

/// How the stack names what it creates.
struct StackNames {
    environment: String,
    app: String,
    region: String,
    /// `{environment}-{app}`: the start of most names, so two environments never collide.
    prefix: String,
}

impl StackNames {
    fn of(config: &Config) -> Self {
        let environment = config.stack.environment.get_ref().clone();
        let app = config.stack.app.get_ref().clone();
        Self {
            prefix: format!("{environment}-{app}"),
            environment,
            app,
            region: config.region().to_owned(),
        }
    }
}

/// A number from the configuration for an `i32` property. Validation keeps each within AWS's
/// limits, far inside an `i32`.
fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
