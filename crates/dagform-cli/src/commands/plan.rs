//! `dagform plan`: what a provision would do, without doing it.

use crate::context::Context;
use crate::{Common, Targets, Walk, cost, exit, render};
use anyhow::Result;
use clap::Args;
use dagform_core::plan::{PlanOptions, SAVED_PLAN_FORMAT, SavedPlan};

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    walk: Walk,
    #[command(flatten)]
    targets: Targets,
    /// A price table to estimate the monthly cost with, instead of the built-in one.
    #[arg(long, env = "DAGFORM_PRICES", value_name = "FILE")]
    prices: Option<std::path::PathBuf>,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Read every resource from AWS first, reporting (and, when provisioning, putting back)
    /// what changed outside dagform; `--refresh=false` plans from the state alone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    refresh: bool,
    /// Plan the deletion of everything instead.
    #[arg(long)]
    destroy: bool,
    /// Do not check the plan against the account's AWS quotas (for a quota raised in a way
    /// Service Quotas does not show to these credentials).
    #[arg(long)]
    skip_quota_check: bool,
    /// Also save the plan to FILE, for review (`dagform show FILE`) and to apply exactly that
    /// (`dagform provision FILE`).
    #[arg(long, value_name = "FILE")]
    out: Option<std::path::PathBuf>,
}

pub async fn run(args: PlanArgs) -> Result<u8> {
    let ctx = Context::load(&args.common)?;
    let state = ctx.read_state()?;
    let blueprint = ctx.blueprint(&state)?;
    if !args.destroy {
        blueprint.require_secrets()?;
    }
    let kinds = ctx.kinds().await;
    let targets = ctx.check_targets(&args.targets, &blueprint, &state)?;
    let options = PlanOptions {
        destroy: args.destroy,
        targets,
    };
    let apply_options = ctx.apply_options(&args.walk)?;
    let mut plan = super::make_plan(
        &blueprint,
        &state,
        &kinds,
        &options,
        args.refresh.then_some(&apply_options),
    )
    .await?;
    // A plan that would exceed a quota fails here rather than halfway through a provision.
    let quotas = if args.destroy || args.skip_quota_check {
        None
    } else {
        let check = ctx.check_quotas(&blueprint.graph).await;
        if plan.has_changes() {
            check.refuse_if_exceeded()?;
        }
        Some(check)
    };
    // The monthly cost of the stack before and after the change; a missing price table only
    // costs the estimate, never the plan.
    let estimate = match cost::PriceTable::for_region(ctx.config.region(), args.prices.as_deref()) {
        Ok(prices) => {
            let before = cost::estimate_state(&state, &prices);
            let after = if args.destroy {
                cost::Estimate {
                    lines: Vec::new(),
                    note: before.note.clone(),
                }
            } else {
                cost::estimate(&blueprint.graph, &prices)
            };
            Some((before, after))
        }
        Err(e) => {
            eprintln!("note: no cost estimate: {e:#}");
            None
        }
    };
    if let Some(out) = &args.out {
        super::saved::redact_earlier_values(&mut plan, &kinds);
        let saved = SavedPlan {
            format_version: SAVED_PLAN_FORMAT,
            created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            basis: super::saved::basis(
                &ctx,
                &args.common.overrides,
                &state,
                args.destroy,
                options.targets.as_deref(),
            ),
            destroy: args.destroy,
            targets: options.targets.clone(),
            plan: plan.clone(),
        };
        super::saved::write(out, &saved)?;
        eprintln!(
            "Saved this plan to {0}: review it with `dagform show {0}`, apply exactly it with `dagform provision {0}`.",
            out.display()
        );
    }
    if args.json {
        let mut json = render::plan_json(&plan, &ctx.stack());
        if let Some((before, after)) = &estimate {
            json["monthly_cost_usd"] = serde_json::json!({
                "before": before.total().dollars(),
                "after": after.total().dollars(),
            });
        }
        if let Some(quotas) = &quotas {
            json["quotas"] = quotas.json();
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", render::plan_text(&plan, &ctx.stack(), true));
        if let Some((before, after)) = &estimate {
            print!("\n{}", cost::render(Some(before), after));
        }
        if let Some(quotas) = &quotas {
            print!("\n{}", quotas.text());
        }
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        exit::CHANGES
    } else {
        exit::OK
    })
}
