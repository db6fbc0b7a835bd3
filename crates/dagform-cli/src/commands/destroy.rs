//! `dagform destroy`: delete everything the state records, dependents first.

use crate::context::Context;
use crate::render;
use crate::{Common, Targets, Walk, exit};
use anyhow::{Result, bail};
use clap::Args;
use dagform_core::plan::PlanOptions;
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
    let (mut store, blueprint, kinds) = super::prepare(&ctx).await?;
    let options = PlanOptions {
        destroy: true,
        targets: ctx.check_targets(&args.targets, &blueprint, store.state())?,
    };
    let plan = super::make_plan(&blueprint, store.state(), &kinds, &options, None).await?;
    print!("{}", render::plan_text(&plan, &ctx.stack(), false));
    if !plan.has_changes() {
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
    )
    .await?;
    Ok(super::finish(&report, "Destroy", started.elapsed()))
}
