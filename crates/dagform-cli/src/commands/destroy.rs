//! `dagform destroy`: delete everything the state records, dependents first.

use crate::context::Context;
use crate::render;
use crate::{Common, Targets, Walk, exit};
use anyhow::{Result, bail};
use clap::Args;
use dagform_core::plan::PlanOptions;
use dagform_core::reconcile::ApplyReport;
use std::time::Instant;

#[derive(Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    walk: Walk,
    #[command(flatten)]
    targets: Targets,
    /// Do not ask for confirmation (required when not on a terminal).
    #[arg(short, long)]
    yes: bool,
    /// Print on stdout one JSON event a line as steps start and end, then the report as the
    /// last line (the plan and human progress go to stderr).
    #[arg(long)]
    json: bool,
}

pub async fn run(args: DestroyArgs) -> Result<u8> {
    let ctx = Context::load(&args.common)?;
    if !args.yes && !super::interactive() {
        bail!(
            "refusing to destroy stack {} without --yes when not on a terminal: pass --yes, \
             or save a plan with `dagform plan --destroy --out FILE` and apply it with \
             `dagform provision FILE`",
            ctx.stack()
        );
    }
    let (mut store, blueprint, kinds) = super::prepare(&ctx, &args.targets).await?;
    let options = PlanOptions {
        destroy: true,
        targets: ctx.check_targets(&args.targets, &blueprint, store.state())?,
    };
    let plan = super::make_plan(&blueprint, store.state(), &kinds, &options, None).await?;
    let text = render::plan_text(&plan, &ctx.stack(), false);
    if args.json {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    if !plan.has_changes() {
        if args.json {
            println!("{}", report_json(&ApplyReport::default(), exit::OK));
        }
        return Ok(exit::OK);
    }
    let what = match &options.targets {
        Some(t) => format!("{} in stack {}", t.join(", "), ctx.stack()),
        None => format!("everything in stack {}", ctx.stack()),
    };
    if !args.yes && !super::confirm(&format!("\nDelete {what}?"))? {
        eprintln!("Cancelled; nothing was deleted.");
        return Ok(exit::ERROR);
    }
    let started = Instant::now();
    let report = super::apply_with_progress(
        &plan,
        &blueprint,
        &kinds,
        &mut store,
        ctx.apply_options(&args.walk)?,
        args.json,
    )
    .await?;
    let code = super::finish(&report, "Destroy", started.elapsed());
    if args.json {
        println!("{}", report_json(&report, code));
    }
    Ok(code)
}

/// The last line of `destroy --json`: what was deleted, what failed, and the exit code.
fn report_json(report: &ApplyReport, code: u8) -> serde_json::Value {
    serde_json::json!({
        "format_version": render::JSON_FORMAT_VERSION,
        "type": "report",
        "succeeded": report.succeeded.iter().map(|(a, s)| serde_json::json!({"address": a, "step": s.to_string()})).collect::<Vec<_>>(),
        "failed": report.failed.iter().map(|f| serde_json::json!({"address": f.address, "step": f.step.to_string(), "error": f.error})).collect::<Vec<_>>(),
        "skipped": report.skipped.iter().map(|(a, s)| serde_json::json!({"address": a, "step": s.to_string()})).collect::<Vec<_>>(),
        "cancelled": report.cancelled,
        "exit_code": code,
    })
}
