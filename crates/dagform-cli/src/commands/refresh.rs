//! `dagform refresh`: brings the state's record of every resource up to what AWS reports,
//! without changing anything in AWS. It shows what it would record and asks first.

use crate::context::Context;
use crate::{Common, Walk, exit};
use anyhow::{Result, bail};
use clap::Args;
use dagform_core::kind::Properties;
use dagform_core::state::ResourceStatus;
use dagform_core::{Address, ResourceState, State};
use serde_json::Value as Json;
use std::fmt::Write;

#[derive(Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    walk: Walk,
    /// Do not ask for confirmation (required when not on a terminal).
    #[arg(short, long)]
    yes: bool,
    /// Remove the records of objects deleted outside dagform (and of those an earlier refresh
    /// marked missing) instead of marking them missing: the next provision then creates them
    /// as new, with no record of what they were.
    #[arg(long)]
    forget_missing: bool,
}

/// The record of an object AWS reports missing, kept so that the next provision creates it
/// again. It is recorded as a create not yet made: plan and provision create such a record's
/// object (looking for it first), and resources referring to it pick up the new object's
/// outputs. Without an intent, the new create gets a fresh idempotency token rather than the
/// one that made the deleted object.
fn marked_missing(record: &ResourceState) -> ResourceState {
    ResourceState {
        status: ResourceStatus::Creating,
        intent: None,
        ..record.clone()
    }
}

/// Whether an earlier refresh marked `record` missing (an interrupted create has an intent).
fn is_marked_missing(record: &ResourceState) -> bool {
    record.status == ResourceStatus::Creating && record.intent.is_none()
}

/// What a refresh would write, and how it reads.
#[derive(Default)]
struct Changes {
    writes: Vec<(Address, Option<ResourceState>)>,
    report: String,
    updated: usize,
    marked: usize,
    removed: usize,
}

pub async fn run(args: RefreshArgs) -> Result<u8> {
    let ctx = Context::load(&args.common)?;
    let mut store = ctx.open_state(&ctx.everything())?;
    let kinds = ctx.kinds().await;
    let options = ctx.apply_options(&args.walk)?;
    let live = super::read_live_reporting(store.state(), &kinds, &options).await?;
    let mut changes = Changes::default();
    for (address, observed) in live {
        let record = store
            .state()
            .get(&address)
            .cloned()
            .expect("read_live reads recorded resources");
        let Some(observed) = observed else {
            if args.forget_missing {
                changes.removed += 1;
                let _ = writeln!(
                    changes.report,
                    "  - {address} [{}]: deleted outside dagform; to be removed from the state",
                    record.kind
                );
                changes.writes.push((address, None));
            } else {
                changes.marked += 1;
                let _ = writeln!(
                    changes.report,
                    "  ! {address} [{}]: deleted outside dagform; to be marked missing \
                     (`dagform provision` creates it again)",
                    record.kind
                );
                changes
                    .writes
                    .push((address, Some(marked_missing(&record))));
            }
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
        changes.updated += 1;
        let _ = writeln!(changes.report, "  ~ {address} [{}]", record.kind);
        describe_changes(&record, &updated, &mut changes.report);
        changes.writes.push((address, Some(updated)));
    }
    if args.forget_missing {
        forget_marked(store.state(), &mut changes);
    }

    let stack = ctx.stack();
    if changes.writes.is_empty() {
        println!("The state of stack {stack} matches AWS; nothing recorded changed.");
        return Ok(exit::OK);
    }
    print!(
        "What changed outside dagform, to record in the state:\n{}",
        changes.report
    );
    if !args.yes {
        if !super::interactive() {
            bail!(
                "refusing to change the state of stack {stack} without --yes when not on a \
                 terminal: pass --yes to record what is shown above; nothing was changed"
            );
        }
        if !super::confirm("\nRecord these in the state?")? {
            eprintln!("Cancelled; the state was not changed.");
            return Ok(exit::ERROR);
        }
    }
    for (address, record) in changes.writes {
        match record {
            Some(record) => store.put(address, record)?,
            None => store.remove(&address)?,
        }
    }
    store.persist()?;
    println!(
        "\nRefresh: {} updated, {} marked missing, {} removed from the state. AWS was not \
         changed; `dagform plan` shows what provisioning would put back.",
        changes.updated, changes.marked, changes.removed
    );
    Ok(exit::OK)
}

/// Queues the removal of the records an earlier refresh marked missing (AWS is not asked
/// about them: nothing was recorded for them to be read by).
fn forget_marked(state: &State, changes: &mut Changes) {
    for (address, record) in &state.resources {
        if is_marked_missing(record) {
            changes.removed += 1;
            let _ = writeln!(
                changes.report,
                "  - {address} [{}]: marked missing earlier; to be removed from the state",
                record.kind
            );
            changes.writes.push((address.clone(), None));
        }
    }
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
