//! `dagform provision`: create or update everything the configuration describes.

use crate::context::Context;
use crate::render;
use crate::{Common, Targets, Walk, exit};
use anyhow::{Result, bail};
use clap::Args;
use dagform_config::Blueprint;
use dagform_core::plan::PlanOptions;
use dagform_core::reconcile::{ApplyReport, Step};
use dagform_core::{Kinds, Plan, State, StateStore};
use dagform_resources::ecs::ServiceProps;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ProvisionArgs {
    /// A plan saved by `dagform plan --out FILE`: apply exactly its steps, refusing if the state
    /// or the configuration moved since it was saved.
    #[arg(value_name = "PLAN_FILE")]
    saved_plan: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    walk: Walk,
    #[command(flatten)]
    targets: Targets,
    /// Do not ask for confirmation (required when not on a terminal, unless applying a saved
    /// plan).
    #[arg(short, long)]
    yes: bool,
    /// Read every resource from AWS first, reporting (and, when provisioning, putting back)
    /// what changed outside dagform; `--refresh=false` plans from the state alone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    refresh: bool,
    /// After applying, wait until every ECS service this run created or updated is stable
    /// (one deployment, all tasks running); fail if one is not within --wait-timeout.
    #[arg(long)]
    wait: bool,
    /// Print on stdout one JSON event a line as steps start and end, then the report as the
    /// last line (the plan and human progress go to stderr).
    #[arg(long)]
    json: bool,
    /// Do not check the plan against the account's AWS quotas (for a quota raised in a way
    /// Service Quotas does not show to these credentials).
    #[arg(long)]
    skip_quota_check: bool,
}

/// What a run applies, and with what.
struct Prepared {
    ctx: Context,
    store: StateStore,
    blueprint: Blueprint,
    kinds: Kinds,
    plan: Plan,
    /// Applying a saved plan of deletions (`plan --destroy --out`).
    destroy: bool,
}

pub async fn run(args: ProvisionArgs) -> Result<u8> {
    let saved = args.saved_plan.is_some();
    let Prepared {
        ctx,
        mut store,
        blueprint,
        kinds,
        plan,
        destroy,
    } = match &args.saved_plan {
        Some(path) => from_saved_plan(&args, path).await?,
        None => from_configuration(&args).await?,
    };
    let options = ctx.apply_options(&args.walk)?;
    let text = render::plan_text(&plan, &ctx.stack(), false);
    if args.json {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    // A saved plan was reviewed when it was saved; otherwise a terminal asks.
    if plan.has_changes() && !saved && !args.yes && !super::confirm("\nApply these changes?")? {
        eprintln!("Cancelled; nothing was changed.");
        return Ok(exit::ERROR);
    }
    let started = Instant::now();
    let report = if plan.has_changes() {
        super::apply_with_progress(
            &plan,
            &blueprint,
            &kinds,
            &mut store,
            options.clone(),
            args.json,
        )
        .await?
    } else {
        ApplyReport::default()
    };
    let mut code = if destroy {
        super::finish(&report, "Destroy", started.elapsed())
    } else if plan.has_changes() {
        finish(&report, started.elapsed())
    } else {
        exit::OK
    };

    let mut waited = Vec::new();
    if args.wait && code == exit::OK {
        let services = services_applied(&report, store.state());
        if !services.is_empty() {
            eprintln!(
                "\nWaiting up to {} for {} service(s) to become stable…",
                humantime::format_duration(options.poll.timeout),
                services.len()
            );
        }
        let clients = ctx.clients().await;
        let poll = options.poll;
        let results = futures::future::join_all(services.iter().map(|(cluster, name)| {
            let clients = clients.clone();
            async move {
                (
                    name.clone(),
                    dagform_aws::ecs::wait_until_stable(&clients, cluster, name, poll).await,
                )
            }
        }))
        .await;
        for (name, result) in results {
            match &result {
                Ok(()) => eprintln!("  ✓ {name} is stable"),
                Err(e) => {
                    eprintln!("  ✗ {name}: {e}");
                    code = exit::ERROR;
                }
            }
            waited.push(json!({"service": name, "stable": result.is_ok(), "error": result.err().map(|e| e.to_string())}));
        }
    }

    if args.json {
        let outputs = super::output::resolve(&blueprint, store.state());
        let report_json = json!({
            "format_version": crate::render::JSON_FORMAT_VERSION,
            "type": "report",
            "stack": ctx.stack(),
            "changed": plan.has_changes(),
            "succeeded": report.succeeded.iter().map(|(a, s)| json!({"address": a, "step": s.to_string()})).collect::<Vec<_>>(),
            "failed": report.failed.iter().map(|f| json!({"address": f.address, "step": f.step.to_string(), "error": f.error})).collect::<Vec<_>>(),
            "skipped": report.skipped.iter().map(|(a, s)| json!({"address": a, "step": s.to_string()})).collect::<Vec<_>>(),
            "pending": report.pending.iter().map(|p| json!({"address": p.address, "step": p.step.to_string(), "waiting_for": p.waiting_for, "instructions": p.instructions})).collect::<Vec<_>>(),
            "waiting": report.waiting.iter().map(|w| json!({"address": w.address, "step": w.step.to_string(), "on": w.on})).collect::<Vec<_>>(),
            "cancelled": report.cancelled,
            "waited": waited,
            "outputs": outputs,
            "exit_code": code,
        });
        // The last line of the event stream.
        println!("{}", serde_json::to_string(&report_json)?);
    }
    Ok(code)
}

/// Plans from the configuration and the state, as an interactive or `--yes` run does.
async fn from_configuration(args: &ProvisionArgs) -> Result<Prepared> {
    let ctx = Context::load(&args.common)?;
    // Without a terminal nobody can answer the question: CI says --yes, or applies a plan
    // reviewed earlier. Refused before any AWS call.
    if !args.yes && !super::interactive() {
        bail!(
            "refusing to provision stack {} without --yes when not on a terminal: pass --yes, \
             or save a plan with `dagform plan --out FILE` and apply it with `dagform provision FILE`",
            ctx.stack()
        );
    }
    let (store, blueprint, kinds) = super::prepare(&ctx, &args.targets).await?;
    blueprint.require_secrets()?;
    let options = ctx.apply_options(&args.walk)?;
    let plan_options = PlanOptions {
        targets: ctx.check_targets(&args.targets, &blueprint, store.state())?,
        destroy: false,
    };
    let plan = super::make_plan(
        &blueprint,
        store.state(),
        &kinds,
        &plan_options,
        args.refresh.then_some(&options),
    )
    .await?;
    // Before anything changes AWS: a quota exceeded would stop the walk halfway.
    if plan.has_changes() && !args.skip_quota_check {
        ctx.check_quotas(&blueprint.graph)
            .await
            .refuse_if_exceeded()?;
    }
    Ok(Prepared {
        ctx,
        store,
        blueprint,
        kinds,
        plan,
        destroy: false,
    })
}

/// Loads a saved plan and checks, before any AWS call and again once the state's lock is
/// held, that the configuration, the secret values and the state are those it was computed
/// from. The configuration (with the plan's own `--set` overrides) is expanded again only for
/// what the plan file leaves out: the secret values, and the properties with references
/// resolved as each step runs; being the same configuration against the same state, it
/// describes the same resources the plan was computed for.
async fn from_saved_plan(args: &ProvisionArgs, path: &Path) -> Result<Prepared> {
    let saved = super::saved::read(path)?;
    if !args.common.overrides.is_empty()
        || args.targets.customer.is_some()
        || !args.targets.targets.is_empty()
    {
        bail!(
            "a saved plan already fixes its --set overrides and targets; plan again with them instead of passing them to provision"
        );
    }
    let mut common = args.common.clone();
    common.overrides = saved.basis.overrides.clone();
    let ctx = Context::load(&common)?;
    let overrides = &saved.basis.overrides;
    let targets = saved.targets.as_deref();
    let current = super::saved::basis(&ctx, overrides, &ctx.read_state()?, saved.destroy, targets);
    super::saved::refuse_if_moved(&saved, &current, path)?;
    let store = ctx.open_state(&ctx.write_scope(targets))?;
    // Another run may have written the state between the first check and the lock.
    let current = super::saved::basis(&ctx, overrides, store.state(), saved.destroy, targets);
    super::saved::refuse_if_moved(&saved, &current, path)?;
    let blueprint = ctx.blueprint(store.state())?;
    if !saved.destroy {
        blueprint.require_secrets()?;
    }
    let kinds = ctx.kinds().await;
    eprintln!(
        "Applying the saved plan {} (computed {}).",
        path.display(),
        saved.created_at
    );
    Ok(Prepared {
        ctx,
        store,
        blueprint,
        kinds,
        plan: saved.plan,
        destroy: saved.destroy,
    })
}

/// ECS services created or updated by this run, as (cluster ARN, service name).
fn services_applied(report: &ApplyReport, state: &State) -> Vec<(String, String)> {
    report
        .succeeded
        .iter()
        .filter(|(_, step)| matches!(step, Step::Create | Step::Update))
        .filter_map(|(address, _)| state.get(address))
        .filter_map(|r| r.outputs_as::<ServiceProps>())
        .map(|service| (service.cluster, service.name))
        .collect()
}

/// Prints the outcome of the run and picks the exit code. A run that did everything it could
/// but left objects waiting on the user has its own code, once it has said what to do.
fn finish(report: &ApplyReport, elapsed: Duration) -> u8 {
    if report.pending.is_empty() || report.cancelled || !report.failed.is_empty() {
        let code = super::finish(report, "Provision", elapsed);
        print_pending(report);
        return code;
    }
    eprintln!(
        "\nProvision done as far as it can go in {:.1}s: {} step(s) done, {} waiting on something outside AWS, {} waiting on them.",
        elapsed.as_secs_f64(),
        report.succeeded.len(),
        report.pending.len(),
        report.waiting.len()
    );
    print_pending(report);
    exit::PENDING
}

/// What each pending object waits for and what the user can do about it, in the kind's words,
/// and what waits on it.
fn print_pending(report: &ApplyReport) {
    for pending in &report.pending {
        let then = if pending.instructions.is_empty() {
            ""
        } else {
            " To finish it:"
        };
        eprintln!(
            "\n`{}` is waiting for {}.{then}",
            pending.address, pending.waiting_for
        );
        for line in &pending.instructions {
            eprintln!("  {line}");
        }
        let held: Vec<&str> = report
            .waiting
            .iter()
            .filter(|w| w.on == pending.address)
            .map(|w| w.address.as_str())
            .collect();
        if !held.is_empty() {
            eprintln!("Waiting on it: {}.", held.join(", "));
        }
    }
    if !report.pending.is_empty() {
        eprintln!("Run provision again once that is done: it carries on from there.");
    }
}
