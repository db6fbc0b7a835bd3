//! `dagform refresh`: brings the state's record of every resource up to what AWS reports,
//! without changing anything in AWS.

use crate::context::Context;
use crate::{Common, Walk, exit};
use anyhow::Result;
use clap::Args;
use dagform_core::ResourceState;
use dagform_core::kind::Properties;
use serde_json::Value as Json;
use std::fmt::Write;

#[derive(Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    walk: Walk,
}

pub async fn run(args: RefreshArgs) -> Result<u8> {
    let ctx = Context::load(&args.common)?;
    let mut store = ctx.open_state()?;
    let kinds = ctx.kinds().await;
    let options = ctx.apply_options(&args.walk)?;
    let live = super::read_live_reporting(store.state(), &kinds, &options).await?;
    let mut report = String::new();
    let (mut changed, mut removed) = (0, 0);
    for (address, observed) in live {
        let record = store
            .state()
            .get(&address)
            .cloned()
            .expect("read_live reads recorded resources");
        let Some(observed) = observed else {
            store.remove(&address)?;
            removed += 1;
            let _ = writeln!(
                report,
                "  - {address} [{}]: deleted outside dagform; removed from the state",
                record.kind
            );
            continue;
        };
        let sensitive = kinds
            .get(&record.kind)
            .map(|k| k.sensitive_properties())
            .unwrap_or_default();
        let updated = ResourceState {
            properties: overlay(&record.properties, &observed.properties, sensitive),
            outputs: overlay(&record.outputs, &observed.outputs, sensitive),
            ..record.clone()
        };
        if updated == record {
            continue;
        }
        changed += 1;
        let _ = writeln!(report, "  ~ {address} [{}]", record.kind);
        describe_changes(&record, &updated, &mut report);
        store.put(address, updated)?;
    }
    store.persist()?;
    if changed + removed == 0 {
        println!(
            "The state of stack {} matches AWS; nothing recorded changed.",
            ctx.stack()
        );
    } else {
        print!("Recorded what changed outside dagform:\n{report}");
        println!(
            "\nRefresh: {changed} updated, {removed} removed from the state. AWS was not changed; \
             `dagform plan` shows what provisioning would put back."
        );
    }
    Ok(exit::OK)
}

/// The recorded values with what AWS reports laid over them. Values a kind does not read back
/// stay as recorded, and so do secrets: the state only ever holds their fingerprints.
fn overlay(recorded: &Properties, live: &Properties, sensitive: &[&str]) -> Properties {
    let mut out = recorded.clone();
    for (key, value) in live {
        if !sensitive.contains(&key.as_str()) {
            out.insert(key.clone(), value.clone());
        }
    }
    out
}

/// One line per recorded value that changed, old → new.
fn describe_changes(before: &ResourceState, after: &ResourceState, out: &mut String) {
    for (what, old, new) in [
        ("", &before.properties, &after.properties),
        ("output ", &before.outputs, &after.outputs),
    ] {
        for (key, value) in new {
            let previous = old.get(key);
            if previous != Some(value) {
                let _ = writeln!(
                    out,
                    "      {what}{key}: {} → {}",
                    show(previous.unwrap_or(&Json::Null)),
                    show(value)
                );
            }
        }
    }
}

fn show(v: &Json) -> String {
    match v {
        Json::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}
