//! `dagform import ADDRESS ID`: adopts an object that already exists in AWS as one node of the
//! configuration, so dagform manages it from then on instead of creating a second one.

use crate::context::Context;
use crate::{Common, Polling, Walk, exit};
use anyhow::{Result, bail};
use clap::Args;
use dagform_core::kind::{Current, OpContext, Outputs, Properties};
use dagform_core::state::{ResourceStatus, redact};
use dagform_core::{Address, ResourceGraph, ResourceState, State};

#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    common: Common,
    /// The node to adopt the object as, e.g. `customer.acme.log_group.frontend`.
    address: String,
    /// The object's id in AWS: what the state records for that kind (an ARN, a name, `sg-…`).
    id: String,
    #[command(flatten)]
    polling: Polling,
}

pub async fn run(args: ImportArgs) -> Result<u8> {
    let ctx = Context::load(&args.common)?;
    let mut store = ctx.open_state(&ctx.write_scope(Some(std::slice::from_ref(&args.address))))?;
    let blueprint = ctx.blueprint(store.state())?;
    let graph = &blueprint.graph;
    let address = Address::new(args.address.as_str());
    let Some(node) = graph.get(&address) else {
        let close = close_matches(graph, &args.address);
        if close.is_empty() {
            bail!(
                "no node `{}` in {}; `dagform graph` lists them",
                args.address,
                ctx.config_path.display()
            );
        }
        bail!(
            "no node `{}` in {}; did you mean {}?",
            args.address,
            ctx.config_path.display(),
            close
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        );
    };
    if let Some(existing) = store.state().get(&address) {
        bail!(
            "`{address}` is already in the state (id {}); remove it from the state first to import another object",
            existing.id.as_deref().unwrap_or("not known yet")
        );
    }
    let kinds = ctx.kinds().await;
    let Some(kind) = kinds.get(&node.kind).cloned() else {
        bail!(
            "`{address}` has kind `{}`, which this build of dagform does not know",
            node.kind
        );
    };
    if kind.is_data_source() {
        bail!(
            "`{address}` is a lookup of an object dagform does not own; `dagform provision` reads it, there is nothing to import"
        );
    }
    // What the configuration asks for, as far as it is known now: kinds read some values only
    // when they are asked for (a deregistration delay, a retention period).
    let desired = known_properties(graph, &address, store.state());
    let no_outputs = Outputs::new();
    let options = ctx.apply_options(&Walk {
        parallelism: 1,
        polling: args.polling.clone(),
    })?;
    let op = OpContext::new(options.stack.clone(), address.clone(), options.poll);
    let current = Current {
        id: &args.id,
        properties: &desired,
        outputs: &no_outputs,
    };
    let Some(observed) = kind.read(&op, current).await? else {
        bail!(
            "no {} with id `{}` exists in region {}; nothing was imported",
            node.kind,
            args.id,
            ctx.config.region()
        );
    };
    let sensitive = kind.sensitive_properties();
    store.put(
        address.clone(),
        ResourceState {
            kind: node.kind.clone(),
            status: ResourceStatus::Ready,
            id: Some(args.id.clone()),
            properties: redact(&observed.properties, sensitive),
            outputs: redact(&observed.outputs, sensitive),
            dependencies: graph.dependencies(&address).into_iter().cloned().collect(),
            deposed: Vec::new(),
            intent: None,
        },
    )?;
    store.persist()?;
    println!(
        "Imported {} as `{address}` [{}]. `dagform plan` shows what provisioning would change to match the configuration.",
        args.id, node.kind
    );
    Ok(exit::OK)
}

/// The node's properties whose values are known: plain data, or references to nodes the state
/// already records.
fn known_properties(graph: &ResourceGraph, address: &Address, state: &State) -> Properties {
    let node = graph.get(address).expect("checked by the caller");
    let lookup = |r: &dagform_core::Reference| {
        state
            .get(&r.node)
            .filter(|s| s.status == ResourceStatus::Ready)
            .and_then(|s| r.lookup(&s.outputs))
    };
    node.properties
        .iter()
        .filter_map(|(k, v)| {
            let resolved = v.partially_resolve(&lookup);
            resolved.as_data().map(|j| (k.clone(), j.clone()))
        })
        .collect()
}

/// Up to three addresses of the graph that look like `wanted`: by edit distance, or sharing
/// its last part.
fn close_matches(graph: &ResourceGraph, wanted: &str) -> Vec<String> {
    let last = wanted.rsplit('.').next().unwrap_or(wanted);
    let mut scored: Vec<(usize, String)> = graph
        .topological()
        .iter()
        .map(|n| n.address.to_string())
        .filter_map(|a| {
            let d = distance(&a, wanted);
            let near = d <= (wanted.len() / 3).max(2);
            let same_leaf = !last.is_empty() && a.rsplit('.').next() == Some(last);
            (near || same_leaf).then_some((d, a))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, a)| a).collect()
}

/// Levenshtein distance, by characters.
fn distance(a: &str, b: &str) -> usize {
    strsim::levenshtein(a, b)
}

#[cfg(test)]
mod tests {
    use super::distance;

    #[test]
    fn edit_distance() {
        assert_eq!(distance("shared.alb", "shared.alb"), 0);
        assert_eq!(distance("shared.alb", "shared.alp"), 1);
        assert_eq!(distance("shared.alb", "shared.lab"), 2);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
