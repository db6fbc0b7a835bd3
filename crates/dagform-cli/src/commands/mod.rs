//! The subcommands, and what they share: planning, confirming, applying.

pub mod completions;
pub mod destroy;
pub mod force_unlock;
pub mod graph;
pub mod import;
pub mod logs;
pub mod output;
pub mod plan;
pub mod provision;
pub mod refresh;
pub mod saved;
pub mod show;
pub mod state;
pub mod status;
pub mod validate;

use crate::context::Context;
use crate::exit;
use crate::progress;
use anyhow::Result;
use dagform_config::Blueprint;
use dagform_core::plan::{LiveView, PlanOptions};
use dagform_core::reconcile::{ApplyOptions, ApplyReport, apply, read_live};
use dagform_core::{Kinds, Plan, State, StateStore};
use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

/// Plans against `state`, reading live values first when `refresh` is set.
pub async fn make_plan(
    blueprint: &Blueprint,
    state: &State,
    kinds: &Kinds,
    options: &PlanOptions,
    refresh: Option<&ApplyOptions>,
) -> Result<Plan> {
    let live: Option<LiveView> = match refresh {
        Some(o) => Some(read_live_reporting(state, kinds, o).await?),
        None => None,
    };
    Ok(dagform_core::plan::plan(
        &blueprint.graph,
        state,
        kinds,
        live.as_ref(),
        options,
    )?)
}

/// Reads every recorded resource from AWS and says on stderr what that cost (a stack not
/// created yet costs nothing and says nothing).
pub async fn read_live_reporting(
    state: &State,
    kinds: &Kinds,
    options: &ApplyOptions,
) -> Result<LiveView> {
    let (calls, started) = (dagform_aws::clients::calls_in_process(), Instant::now());
    let live = read_live(state, kinds, options, |_| true).await?;
    if live.is_empty() {
        return Ok(live);
    }
    eprintln!(
        "refreshed {} resources with {} AWS calls in {:.1} s",
        live.len(),
        dagform_aws::clients::calls_in_process() - calls,
        started.elapsed().as_secs_f64()
    );
    Ok(live)
}

/// Asks on the terminal; anything but "yes" declines.
pub fn confirm(question: &str) -> Result<bool> {
    eprint!("{question} Only 'yes' will be accepted: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Applies `plan` with live progress (with `json`, also one JSON event a line on stdout).
/// The first Ctrl-C starts nothing new and cancels waits, letting the calls in flight finish
/// and recording where each object is; a second exits at once (every intent and result is
/// already on disk as it happens, so the state stays true).
pub async fn apply_with_progress(
    plan: &Plan,
    blueprint: &Blueprint,
    kinds: &Kinds,
    store: &mut StateStore,
    mut options: ApplyOptions,
    json: bool,
) -> Result<ApplyReport> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    options.events = Some(tx);
    let total = plan.resources.iter().filter(|r| r.has_work()).count();
    let renderer = tokio::spawn(progress::render(rx, total, json));
    let cancel = options.cancel.clone();
    let interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\ninterrupted: cancelling waits, finishing the AWS calls in flight, starting nothing new, saving state… (Ctrl-C again to exit at once)"
            );
            cancel.cancel();
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\ninterrupted again: exiting now; the state records every create begun, and a re-run adopts what they made."
            );
            std::process::exit(exit::INTERRUPTED.into());
        }
    });
    let report = apply(plan, &blueprint.graph, kinds, store, &options).await;
    interrupt.abort();
    drop(options);
    let _ = renderer.await;
    Ok(report?)
}

/// Prints the outcome of a run and picks the exit code.
pub fn finish(report: &ApplyReport, verb: &str, elapsed: std::time::Duration) -> u8 {
    let secs = elapsed.as_secs_f64();
    if report.cancelled {
        eprintln!(
            "\nInterrupted after {secs:.1}s: {} step(s) done, {} not started; the state records what exists. Run again to continue.",
            report.succeeded.len(),
            report.not_started
        );
        return exit::INTERRUPTED;
    }
    if report.failed.is_empty() {
        eprintln!(
            "\n{verb} complete in {secs:.1}s: {} step(s).",
            report.succeeded.len()
        );
        return exit::OK;
    }
    eprintln!(
        "\n{verb} failed after {secs:.1}s: {} step(s) done, {} failed, {} skipped because of them:",
        report.succeeded.len(),
        report.failed.len(),
        report.skipped.len()
    );
    for f in &report.failed {
        eprintln!("  ✗ {} {}: {}", f.step, f.address, f.error);
    }
    eprintln!("The state records what exists; fix the cause and run again to converge.");
    exit::ERROR
}

/// Loads what a walking command needs.
pub async fn prepare(
    ctx: &Context,
    targets: &crate::Targets,
) -> Result<(StateStore, Blueprint, Kinds)> {
    let store = ctx.open_state(&ctx.write_scope(targets.prefixes().as_deref()))?;
    let blueprint = ctx.blueprint(store.state())?;
    let kinds = ctx.kinds().await;
    Ok((store, blueprint, kinds))
}
