//! What expansion needs from outside the configuration, read before it starts: secret values
//! from the environment and files, the listener rule priorities and load balancers the state
//! shows already allocated, and (filled in by the caller, who can ask Route 53) the hosted
//! zones of customers' own domains. Expansion itself then reads nothing.

use super::shards::Shard;
use super::{customers, services};
use crate::error::Diagnostic;
use crate::model::Config;
use crate::naming::PRIORITY_BLOCK;
use dagform_core::{Address, State};
use std::collections::BTreeMap;
use std::path::Path;

/// Everything expansion takes besides the configuration, as plain data.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The values of the secrets dagform creates, by key. A value that could not be read is
    /// absent here and named in `missing_secrets`.
    pub secret_values: BTreeMap<String, String>,
    /// Secret values that could not be read (unset variable, missing file).
    pub missing_secrets: Vec<Diagnostic>,
    /// The priority block each customer's listener rules already hold, by customer.
    pub priority_blocks: BTreeMap<String, u32>,
    /// The load balancer each customer is already on, by customer.
    pub load_balancers: BTreeMap<String, Shard>,
    /// For customers whose domain lies outside the `[dns]` zone, the public hosted zone in the
    /// account holding it (the domain's own or a parent's), by customer. A customer missing
    /// here has its DNS elsewhere: its validation records are the user's to add. Read from
    /// Route 53 by the caller (see [`Config::customers_with_own_domain`]); empty otherwise.
    pub customer_zones: BTreeMap<String, String>,
}

/// Reads the secret values `config` names (files relative to `config_path`) and, from `state`,
/// the priority blocks and load balancers customers already hold.
pub fn resolve_inputs(config: &Config, config_path: &Path, state: Option<&State>) -> Inputs {
    let mut inputs = Inputs::default();
    read_secret_values(config, config_path, &mut inputs);
    if let Some(state) = state {
        inputs.priority_blocks = held_priority_blocks(state, config.customer_names());
        inputs.load_balancers = held_load_balancers(state, config.customer_names());
    }
    inputs
}

/// Reads each created secret's value from its variable or file; an existing secret (`arn`)
/// needs none.
fn read_secret_values(config: &Config, config_path: &Path, inputs: &mut Inputs) {
    let config_dir = config_path.parent().unwrap_or(Path::new("."));
    for (key, secret) in &config.secrets {
        let key = key.get_ref();
        let s = secret.get_ref();
        if s.arn.is_some() {
            continue;
        }
        let value = match (&s.from_env, &s.from_file) {
            (Some(var), _) => std::env::var(var.get_ref()).map_err(|_| {
                (
                    var.span().start,
                    format!("secrets.{key}.from_env"),
                    format!("environment variable `{}` is not set", var.get_ref()),
                )
            }),
            (None, Some(file)) => {
                let path = config_dir.join(file.get_ref());
                std::fs::read_to_string(&path)
                    .map(|v| v.trim_end_matches(['\n', '\r']).to_owned())
                    .map_err(|e| {
                        (
                            file.span().start,
                            format!("secrets.{key}.from_file"),
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })
            }
            (None, None) => Err((
                secret.span().start,
                format!("secrets.{key}"),
                "no value source".to_owned(),
            )),
        };
        match value {
            Ok(value) => {
                inputs.secret_values.insert(key.clone(), value);
            }
            Err((offset, field, message)) => inputs.missing_secrets.push(Diagnostic::at(
                config_path,
                &config.source,
                offset,
                &field,
                message,
            )),
        }
    }
}

/// The priority blocks `customers` already hold, read from their recorded listener rules.
fn held_priority_blocks<'a>(
    state: &State,
    customers: impl Iterator<Item = &'a str>,
) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for c in customers {
        let prefix = services::listener_rules_of(&customers::deployment_base(c));
        let block = state
            .resources
            .iter()
            .filter(|(a, _)| a.is_within(&prefix))
            .filter_map(|(_, r)| r.properties.get("priority").and_then(|p| p.as_u64()))
            .map(|p| p as u32 / PRIORITY_BLOCK)
            .min();
        if let Some(b) = block {
            out.insert(c.to_owned(), b);
        }
    }
    out
}

/// The load balancers `customers` are already on: the one their recorded listener rules and DNS
/// record depended on when applied.
pub(super) fn held_load_balancers<'a>(
    state: &State,
    customers: impl Iterator<Item = &'a str>,
) -> BTreeMap<String, Shard> {
    let mut out = BTreeMap::new();
    for c in customers {
        let base = customers::deployment_base(c);
        let shard = state
            .resources
            .iter()
            .filter(|(a, _)| a.is_within(&base))
            .flat_map(|(_, r)| &r.dependencies)
            .find_map(Shard::of_ingress_address);
        if let Some(shard) = shard {
            out.insert(c.to_owned(), shard);
        }
    }
    out
}

/// The address of the load balancer each of `config`'s customers is on, as `state` records it;
/// customers not provisioned yet are left out.
pub fn customer_load_balancers(config: &Config, state: &State) -> BTreeMap<String, Address> {
    held_load_balancers(state, config.customer_names())
        .into_iter()
        .map(|(c, shard)| (c, shard.load_balancer()))
        .collect()
}
