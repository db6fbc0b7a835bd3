//! The planner: desired graph + recorded state (+ optionally what AWS reports) → one action
//! per node, with a property-by-property diff.

use crate::address::Address;
use crate::error::Error;
use crate::graph::ResourceGraph;
use crate::kind::{Kinds, Observed, Properties, ResourceKind};
use crate::state::{ResourceStatus, State, fingerprint};
use crate::value::{Reference, Value};
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    NoOp,
    /// A data source is looked up.
    Read,
    Create,
    Update,
    Replace,
    Delete,
}

impl Action {
    pub fn is_change(self) -> bool {
        !matches!(self, Action::NoOp)
    }
}

/// A property's value in the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", content = "value", rename_all = "snake_case")]
pub enum PlannedValue {
    Known(Json),
    /// Depends on outputs of nodes not applied yet.
    KnownAfterApply(BTreeSet<String>),
    /// The property is no longer set.
    Absent,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PropertyChange {
    pub property: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Json>,
    pub new: PlannedValue,
    pub forces_replacement: bool,
    /// The live value differs from the recorded one: changed outside dagform.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub drift: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourcePlan {
    pub address: Address,
    pub kind: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<PropertyChange>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub create_before_destroy: bool,
    /// Replaced objects left over from an earlier run, deleted by this one.
    #[serde(skip_serializing_if = "is_zero")]
    pub deposed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl ResourcePlan {
    pub fn has_work(&self) -> bool {
        self.action.is_change() || self.deposed > 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub resources: Vec<ResourcePlan>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub read: usize,
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    pub unchanged: usize,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.resources.iter().any(ResourcePlan::has_work)
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for r in &self.resources {
            match r.action {
                Action::NoOp => s.unchanged += 1,
                Action::Read => s.read += 1,
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Replace => s.replace += 1,
                Action::Delete => s.delete += 1,
            }
        }
        s
    }

    pub fn get(&self, address: &Address) -> Option<&ResourcePlan> {
        self.resources.iter().find(|r| &r.address == address)
    }
}

/// What to plan for.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Only these addresses (or those below them), plus what they depend on, read-only.
    pub targets: Option<Vec<String>>,
    /// Delete everything recorded (within the targets) instead of converging.
    pub destroy: bool,
}

/// Live values read from AWS, per recorded node: `None` when the object no longer exists.
pub type LiveView = BTreeMap<Address, Option<Observed>>;

fn kind_of<'k>(
    kinds: &'k Kinds,
    address: &Address,
    kind: &str,
) -> Result<&'k Arc<dyn ResourceKind>, Error> {
    kinds.get(kind).ok_or_else(|| Error::UnknownKind {
        address: address.clone(),
        kind: kind.to_owned(),
    })
}

/// Compares the desired graph with the state (and live values, if read) and decides what to
/// do with every node.
pub fn plan(
    graph: &ResourceGraph,
    state: &State,
    kinds: &Kinds,
    live: Option<&LiveView>,
    options: &PlanOptions,
) -> Result<Plan, Error> {
    let in_scope = |a: &Address| match &options.targets {
        None => true,
        Some(t) => t.iter().any(|p| a.is_within(p)),
    };
    let mut out = Vec::new();
    let mut actions: BTreeMap<&Address, Action> = BTreeMap::new();

    if !options.destroy {
        for node in graph.topological() {
            let kind = kind_of(kinds, &node.address, &node.kind)?;
            let recorded = state.get(&node.address);
            if !in_scope(&node.address) {
                // Outside the targets: left as it is, its recorded outputs used as known.
                actions.insert(&node.address, Action::NoOp);
                if let Some(r) = recorded {
                    out.push(noop(&node.address, &node.kind, r.deposed.len()));
                }
                continue;
            }
            if options.targets.is_some() {
                for dep in graph.dependencies(&node.address) {
                    let exists = state
                        .get(dep)
                        .is_some_and(|s| s.status == ResourceStatus::Ready);
                    if !in_scope(dep) && !exists {
                        return Err(Error::Plan {
                            address: node.address.clone(),
                            message: format!(
                                "depends on `{dep}`, which is outside the targets and does not exist yet; provision it first"
                            ),
                        });
                    }
                }
            }
            // A reference is known once its node exists and keeps its outputs in this run.
            let lookup = |r: &Reference| -> Option<Json> {
                match actions.get(&r.node) {
                    Some(Action::NoOp | Action::Update) => state
                        .get(&r.node)
                        .filter(|s| s.status == ResourceStatus::Ready)
                        .and_then(|s| r.lookup(&s.outputs)),
                    _ => None,
                }
            };
            let desired: BTreeMap<&String, Value> = node
                .properties
                .iter()
                .map(|(k, v)| (k, v.partially_resolve(&lookup)))
                .collect();
            let sensitive = kind.sensitive_properties();
            let planned = |key: &str, v: &Value| match v.as_data() {
                Some(j) if sensitive.contains(&key) => PlannedValue::Known(fingerprint(j)),
                Some(j) => PlannedValue::Known(j.clone()),
                None => PlannedValue::KnownAfterApply(v.unresolved()),
            };
            let live_entry = live.and_then(|l| l.get(&node.address));
            let rp = match recorded {
                Some(r)
                    if r.status == ResourceStatus::Ready && !matches!(live_entry, Some(None)) =>
                {
                    let observed = live_entry.and_then(|o| o.as_ref());
                    let mut changes = Vec::new();
                    let keys: BTreeSet<&str> = desired
                        .keys()
                        .map(|k| k.as_str())
                        .chain(r.properties.keys().map(|k| k.as_str()))
                        .collect();
                    for key in keys {
                        let recorded_value = r.properties.get(key);
                        let live_value = observed.and_then(|o| o.properties.get(key));
                        let drift = matches!((recorded_value, live_value), (Some(a), Some(b)) if !same_value(a, b, sensitive.contains(&key)));
                        let old = if drift { live_value } else { recorded_value };
                        let new = match desired.get(&key.to_string()) {
                            Some(v) => planned(key, v),
                            None => PlannedValue::Absent,
                        };
                        let unchanged = match (&new, old) {
                            (PlannedValue::Known(n), Some(o)) => n == o || same_value(n, o, false),
                            (PlannedValue::Absent, None) => true,
                            (PlannedValue::Absent, Some(Json::Null)) => true,
                            (PlannedValue::Known(Json::Null), None) => true,
                            _ => false,
                        };
                        if !unchanged {
                            changes.push(PropertyChange {
                                property: key.to_owned(),
                                old: old.cloned(),
                                new,
                                forces_replacement: kind.forces_replacement(key),
                                drift,
                            });
                        }
                    }
                    let action = if changes.is_empty() {
                        Action::NoOp
                    } else if kind.is_data_source() {
                        Action::Read
                    } else if changes.iter().any(|c| c.forces_replacement) {
                        Action::Replace
                    } else {
                        Action::Update
                    };
                    ResourcePlan {
                        address: node.address.clone(),
                        kind: node.kind.clone(),
                        action,
                        create_before_destroy: action == Action::Replace
                            && kind.create_before_destroy(),
                        changes,
                        deposed: r.deposed.len(),
                        reason: None,
                    }
                }
                _ => {
                    let reason = match (recorded, live_entry) {
                        (Some(r), _) if r.status == ResourceStatus::Creating => Some(
                            "an earlier create was interrupted; adopting the object if it exists"
                                .to_owned(),
                        ),
                        (Some(_), Some(None)) => Some("deleted outside dagform".to_owned()),
                        _ => None,
                    };
                    ResourcePlan {
                        address: node.address.clone(),
                        kind: node.kind.clone(),
                        action: if kind.is_data_source() {
                            Action::Read
                        } else {
                            Action::Create
                        },
                        changes: desired
                            .iter()
                            .map(|(k, v)| PropertyChange {
                                property: (*k).clone(),
                                old: None,
                                new: planned(k, v),
                                forces_replacement: false,
                                drift: false,
                            })
                            .collect(),
                        create_before_destroy: false,
                        deposed: recorded.map_or(0, |r| r.deposed.len()),
                        reason,
                    }
                }
            };
            actions.insert(&node.address, rp.action);
            out.push(rp);
        }
    }

    // Recorded nodes no longer desired (or all of them, when destroying).
    let mut deletes: Vec<ResourcePlan> = state
        .resources
        .iter()
        .filter(|(a, _)| (options.destroy || !graph.contains(a)) && in_scope(a))
        .map(|(a, r)| ResourcePlan {
            address: a.clone(),
            kind: r.kind.clone(),
            action: Action::Delete,
            changes: Vec::new(),
            create_before_destroy: false,
            deposed: r.deposed.len(),
            reason: (!options.destroy).then(|| "no longer in the configuration".to_owned()),
        })
        .collect();
    for d in &deletes {
        kind_of(kinds, &d.address, &d.kind)?;
    }
    deletes.sort_by(|a, b| a.address.cmp(&b.address));
    out.extend(deletes);
    Ok(Plan { resources: out })
}

fn noop(address: &Address, kind: &str, deposed: usize) -> ResourcePlan {
    ResourcePlan {
        address: address.clone(),
        kind: kind.to_owned(),
        action: Action::NoOp,
        changes: Vec::new(),
        create_before_destroy: false,
        deposed,
        reason: None,
    }
}

/// The desired top-level properties a live object does not match: what adopting an object an
/// interrupted create left behind must still change. A property the object does not report is
/// taken as matching (kinds report everything they can set).
pub fn unmatched_properties(
    desired: &Properties,
    observed: &Properties,
    sensitive: &[&str],
) -> Vec<String> {
    desired
        .iter()
        .filter(|(k, v)| {
            observed
                .get(k.as_str())
                .is_some_and(|o| !same_value(v, o, sensitive.contains(&k.as_str())))
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// Equality that treats 3 and 3.0 alike and compares secrets by fingerprint.
fn same_value(a: &Json, b: &Json, sensitive: bool) -> bool {
    if sensitive {
        return a == b || &fingerprint(b) == a || &fingerprint(a) == b;
    }
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q, false))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w, false)))
        }
        _ => a == b,
    }
}

/// Resolves a node's properties for a call, from the outputs recorded in the state.
pub fn resolve_properties(
    properties: &BTreeMap<String, Value>,
    state: &State,
) -> Result<Properties, Reference> {
    let mut out = Properties::new();
    for (k, v) in properties {
        let resolved = v.partially_resolve(&|r| {
            state
                .get(&r.node)
                .filter(|s| s.status == ResourceStatus::Ready)
                .and_then(|s| r.lookup(&s.outputs))
        });
        match resolved.as_data() {
            Some(j) => {
                out.insert(k.clone(), j.clone());
            }
            None => {
                return Err(resolved
                    .references()
                    .first()
                    .map(|r| (*r).clone())
                    .expect("unresolved value has a reference"));
            }
        }
    }
    Ok(out)
}
