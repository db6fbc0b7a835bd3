//! `dagform.toml`: parsing, validation against AWS's limits, and expansion into the resource
//! graph (the blueprint).
//!
//! Every error names the file, line and field, and is raised before any AWS call.

mod blueprint;
mod error;
mod model;
pub mod naming;
mod validate;

pub use blueprint::{
    Blueprint, Inputs, OutputSpec, Shard, blueprint, customer_load_balancers, expand,
    resolve_inputs,
};
pub use error::{ConfigError, Diagnostic};
pub use model::*;

use std::path::Path;

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_owned(),
        source: e,
    })?;
    parse(path, &source)
}

/// Parses and validates configuration text; `path` is used in messages.
pub fn parse(path: &Path, source: &str) -> Result<Config, ConfigError> {
    let mut raw: model::Config = toml::from_str(source)
        .map_err(|e| ConfigError::Invalid(vec![Diagnostic::from_toml(path, source, &e)]))?;
    let diagnostics = validate::check(path, source, &raw);
    if diagnostics.is_empty() {
        raw.source = source.to_owned();
        Ok(raw)
    } else {
        Err(ConfigError::Invalid(diagnostics))
    }
}
