//! The planner: desired graph + recorded state (+ optionally what AWS reports) → one action
//! per node, with a property-by-property diff.

use crate::address::Address;
use crate::error::Error;
use crate::graph::ResourceGraph;
use crate::kind::{Kinds, Observed, Properties, ResourceKind};
use crate::state::{ResourceStatus, State, fingerprint};
use crate::value::{Reference, Value, ValueMap};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", content = "value", rename_all = "snake_case")]
pub enum PlannedValue {
    Known(Json),
    /// Depends on outputs of nodes not applied yet: the references, sorted, each once.
    KnownAfterApply(Vec<String>),
    /// The property is no longer set.
    Absent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertyChange {
    pub property: String,
    /// Boxed: a create has no old value, and a plan of a new stack holds one change per
    /// property of every node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Box<Json>>,
    pub new: PlannedValue,
    pub forces_replacement: bool,
    /// The live value differs from the recorded one: changed outside dagform.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drift: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourcePlan {
    pub address: Address,
    pub kind: String,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<PropertyChange>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_before_destroy: bool,
    /// Replaced objects left over from an earlier run, deleted by this one.
    #[serde(default, skip_serializing_if = "is_zero")]
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    let mut out = Vec::with_capacity(graph.len());
    // Looked up once per reference, so hashed rather than ordered.
    let mut actions: HashMap<&Address, Action> = HashMap::with_capacity(graph.len());

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
            // Sorted by name, as the node's properties are.
            let desired: Vec<(&String, Value)> = node
                .properties
                .iter()
                .map(|(k, v)| (k, v.partially_resolve(&lookup)))
                .collect();
            let desired_value = |key: &str| {
                desired
                    .binary_search_by(|(k, _)| k.as_str().cmp(key))
                    .ok()
                    .map(|i| &desired[i].1)
            };
            let sensitive = kind.sensitive_properties();
            let planned = |key: &str, v: Value| match v {
                Value::Data(j) if sensitive.contains(&key) => PlannedValue::Known(fingerprint(&j)),
                Value::Data(j) => PlannedValue::Known(j),
                v => PlannedValue::KnownAfterApply(v.unresolved()),
            };
            let live_entry = live.and_then(|l| l.get(&node.address));
            let rp = match recorded {
                Some(r)
                    if r.status == ResourceStatus::Ready && !matches!(live_entry, Some(None)) =>
                {
                    let observed = live_entry.and_then(|o| o.as_ref());
                    let mut changes = Vec::new();
                    let keys: BTreeSet<&str> = desired
                        .iter()
                        .map(|(k, _)| k.as_str())
                        .chain(r.properties.keys().map(|k| k.as_str()))
                        .collect();
                    for key in keys {
                        let recorded_value = r.properties.get(key);
                        let live_value = observed.and_then(|o| o.properties.get(key));
                        let drift = matches!((recorded_value, live_value), (Some(a), Some(b)) if !same_value(a, b, sensitive.contains(&key)));
                        let old = if drift { live_value } else { recorded_value };
                        let new = match desired_value(key) {
                            Some(v) => planned(key, v.clone()),
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
                                old: old.cloned().map(Box::new),
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
                        // `refresh` marks an object AWS no longer has as being created again,
                        // without the intent of the create that made the one now gone.
                        (Some(r), _)
                            if r.status == ResourceStatus::Creating && r.intent.is_none() =>
                        {
                            Some("missing in AWS at the last refresh; created again".to_owned())
                        }
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
                            .into_iter()
                            .map(|(k, v)| PropertyChange {
                                property: k.clone(),
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
pub fn resolve_properties(properties: &ValueMap, state: &State) -> Result<Properties, Reference> {
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

/// The format of saved plan files this build reads and writes.
pub const SAVED_PLAN_FORMAT: u32 = 1;

/// One version of one state: which history (lineage) and how far along it (serial).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateVersion {
    pub lineage: uuid::Uuid,
    pub serial: u64,
}

impl StateVersion {
    /// The version of `state`; `None` for a state that records nothing and was never changed,
    /// which is what a stack not provisioned yet has (its lineage is not settled until the
    /// first write).
    pub fn of(state: &State) -> Option<Self> {
        (state.serial > 0 || !state.resources.is_empty()).then_some(Self {
            lineage: state.lineage,
            serial: state.serial,
        })
    }

    /// The version of what a run limited to `scope` reads and writes: for a run limited to
    /// one customer, the shared part and that customer's, so another customer's run in the
    /// meantime does not make its saved plan stale.
    pub fn of_scope(state: &State, scope: &crate::WriteScope) -> Option<Self> {
        let whole = Self::of(state)?;
        match scope {
            crate::WriteScope::Customer(name) if !state.part_serials.is_empty() => {
                let serial_of = |part: &crate::Part| state.part_serials.get(part).copied();
                Some(Self {
                    serial: serial_of(&crate::Part::Shared).unwrap_or_default()
                        + serial_of(&crate::Part::Customer(name.clone())).unwrap_or_default(),
                    ..whole
                })
            }
            _ => Some(whole),
        }
    }
}

/// What a plan was computed from. A saved plan is applied only while all of it still holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanBasis {
    pub stack: String,
    pub region: String,
    /// The configuration file as written, with the `--set` overrides, digested by
    /// [`config_digest`].
    pub config_digest: String,
    /// The `--set` overrides, applied again with the plan.
    #[serde(default)]
    pub overrides: Vec<String>,
    /// The secret values read from the environment and files, as one fingerprint; `None` for
    /// a destroy plan, which needs none.
    #[serde(default)]
    pub secrets_digest: Option<String>,
    /// The state planned against; `None` when the stack had none yet.
    #[serde(default)]
    pub state: Option<StateVersion>,
}

/// A plan written by `plan --out`, to be reviewed and then applied exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format_version: u32,
    /// When it was computed (RFC 3339).
    pub created_at: String,
    pub basis: PlanBasis,
    /// A plan of deletions (`plan --destroy`).
    #[serde(default)]
    pub destroy: bool,
    /// The `--customer`/`--target` prefixes it was limited to.
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    pub plan: Plan,
}

/// The digest of a configuration file's text and the overrides applied to it, in order.
pub fn config_digest(source: &str, overrides: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(source.as_bytes());
    for o in overrides {
        // A separator no override or file contains keeps `a` + `bc` apart from `ab` + `c`.
        hasher.update([0u8]);
        hasher.update(o.as_bytes());
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// One fingerprint of secret values by key: equal exactly when every value is, and no value
/// can be read back from it.
pub fn secrets_digest(values: &BTreeMap<String, String>) -> String {
    match fingerprint(&serde_json::to_value(values).expect("strings")) {
        Json::String(s) => s,
        other => other.to_string(),
    }
}

impl SavedPlan {
    /// Everything that moved between the plan's basis and `current`, each in a sentence;
    /// empty when the plan still applies.
    pub fn moved_since(&self, current: &PlanBasis) -> Vec<String> {
        let saved = &self.basis;
        let mut moved = Vec::new();
        if saved.stack != current.stack {
            moved.push(format!(
                "the plan is for stack {}, the configuration is for stack {}",
                saved.stack, current.stack
            ));
        }
        if saved.region != current.region {
            moved.push(format!(
                "the plan is for region {}, the configuration is for region {}",
                saved.region, current.region
            ));
        }
        if saved.overrides != current.overrides {
            moved.push(format!(
                "the --set overrides differ (plan: [{}], now: [{}])",
                saved.overrides.join(", "),
                current.overrides.join(", ")
            ));
        } else if saved.config_digest != current.config_digest {
            moved.push(
                "the configuration file changed since the plan was saved (its digest differs)"
                    .to_owned(),
            );
        }
        if let Some(secrets) = &saved.secrets_digest
            && current.secrets_digest.as_ref() != Some(secrets)
        {
            moved.push(
                "a secret value (from the environment or a file) changed since the plan was saved"
                    .to_owned(),
            );
        }
        match (&saved.state, &current.state) {
            (Some(s), Some(c)) if s.lineage != c.lineage => moved.push(format!(
                "the state is another one (lineage {}; the plan was computed against lineage {})",
                c.lineage, s.lineage
            )),
            (Some(s), Some(c)) if s.serial != c.serial => moved.push(format!(
                "the state changed since the plan was saved (serial {} then, {} now): another run changed it",
                s.serial, c.serial
            )),
            (None, Some(c)) => moved.push(format!(
                "the state was written since the plan was saved (it had none; serial {} now)",
                c.serial
            )),
            (Some(s), None) => moved.push(format!(
                "the state the plan was computed against (lineage {}, serial {}) is gone",
                s.lineage, s.serial
            )),
            _ => {}
        }
        moved
    }

    /// The resources the plan would change, in order.
    pub fn steps(&self) -> impl Iterator<Item = &ResourcePlan> {
        self.plan.resources.iter().filter(|r| r.has_work())
    }
}

#[cfg(test)]
mod saved_plan_tests {
    use super::*;

    fn basis() -> PlanBasis {
        PlanBasis {
            stack: "dev-app".into(),
            region: "us-east-1".into(),
            config_digest: config_digest("[stack]\n", &[]),
            overrides: vec![],
            secrets_digest: Some(secrets_digest(&BTreeMap::from([(
                "KEY".to_owned(),
                "hunter2".to_owned(),
            )]))),
            state: Some(StateVersion {
                lineage: uuid::Uuid::new_v4(),
                serial: 7,
            }),
        }
    }

    fn saved(basis: PlanBasis) -> SavedPlan {
        SavedPlan {
            format_version: SAVED_PLAN_FORMAT,
            created_at: "2026-01-01T00:00:00Z".into(),
            basis,
            destroy: false,
            targets: None,
            plan: Plan::default(),
        }
    }

    #[test]
    fn an_unchanged_basis_applies() {
        let b = basis();
        assert!(saved(b.clone()).moved_since(&b).is_empty());
    }

    #[test]
    fn a_state_moved_by_another_run_is_named_with_both_serials() {
        let b = basis();
        let mut now = b.clone();
        now.state.as_mut().unwrap().serial = 9;
        let moved = saved(b).moved_since(&now);
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert!(moved[0].contains("serial 7 then, 9 now"), "{moved:?}");
    }

    #[test]
    fn another_lineage_is_refused_even_at_the_same_serial() {
        let b = basis();
        let mut now = b.clone();
        now.state.as_mut().unwrap().lineage = uuid::Uuid::new_v4();
        let moved = saved(b).moved_since(&now);
        assert!(moved[0].contains("lineage"), "{moved:?}");
    }

    #[test]
    fn a_state_written_after_planning_a_new_stack_is_refused() {
        let mut b = basis();
        b.state = None;
        let mut now = b.clone();
        now.state = Some(StateVersion {
            lineage: uuid::Uuid::new_v4(),
            serial: 1,
        });
        assert_eq!(saved(b.clone()).moved_since(&now).len(), 1);
        // And the other way round: the state planned against was deleted.
        assert_eq!(saved(now.clone()).moved_since(&b).len(), 1);
    }

    #[test]
    fn an_edited_configuration_or_override_is_named() {
        let b = basis();
        let mut edited = b.clone();
        edited.config_digest = config_digest("[stack]\n# edited\n", &[]);
        let moved = saved(b.clone()).moved_since(&edited);
        assert!(moved[0].contains("configuration file changed"), "{moved:?}");

        let mut overridden = b.clone();
        overridden.overrides = vec!["image_tag=abc".into()];
        overridden.config_digest = config_digest("[stack]\n", &overridden.overrides);
        let moved = saved(b).moved_since(&overridden);
        assert!(moved[0].contains("--set overrides differ"), "{moved:?}");
    }

    #[test]
    fn a_changed_secret_is_named_without_its_value() {
        let b = basis();
        let mut now = b.clone();
        now.secrets_digest = Some(secrets_digest(&BTreeMap::from([(
            "KEY".to_owned(),
            "hunter3".to_owned(),
        )])));
        let moved = saved(b.clone()).moved_since(&now);
        assert_eq!(moved.len(), 1);
        assert!(moved[0].contains("secret value"), "{moved:?}");
        assert!(
            !serde_json::to_string(&saved(b))
                .unwrap()
                .contains("hunter2")
        );
    }

    #[test]
    fn a_destroy_plan_does_not_depend_on_secrets() {
        let mut b = basis();
        b.secrets_digest = None;
        let mut now = b.clone();
        now.secrets_digest = Some("sha256:0000".into());
        assert!(saved(b).moved_since(&now).is_empty());
    }

    #[test]
    fn overrides_are_digested_apart_from_the_file() {
        assert_ne!(
            config_digest("a", &["bc".into()]),
            config_digest("ab", &["c".into()])
        );
        assert_ne!(config_digest("a", &[]), config_digest("a", &["x=1".into()]));
    }

    #[test]
    fn a_plan_survives_a_round_trip_through_json() {
        let plan = Plan {
            resources: vec![ResourcePlan {
                address: "shared.vpc".into(),
                kind: "aws_vpc".into(),
                action: Action::Create,
                changes: vec![PropertyChange {
                    property: "cidr".into(),
                    old: None,
                    new: PlannedValue::KnownAfterApply(vec!["x.y".to_owned()]),
                    forces_replacement: false,
                    drift: false,
                }],
                create_before_destroy: false,
                deposed: 0,
                reason: None,
            }],
        };
        let mut s = saved(basis());
        s.plan = plan;
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SavedPlan>(&text).unwrap(), s);
    }
}
