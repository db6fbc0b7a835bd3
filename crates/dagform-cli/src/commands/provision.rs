//! `dagform provision`: create or update everything the configuration describes.

use crate::context::Context;
use crate::render;
use crate::{Common, Targets, Walk, exit};
use anyhow::Result;
use clap::Args;
use dagform_core::plan::PlanOptions;
use std::time::Instant;

#[derive(Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    walk: Walk,
    #[command(flatten)]
    targets: Targets,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    yes: bool,
    /// Read every resource from AWS first, reporting (and, when provisioning, putting back)
    /// what changed outside dagform; `--refresh=false` plans from the state alone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    refresh: bool,
}

pub async fn run(args: ProvisionArgs) -> Result<u8> {
    let ctx = Context::load(&args.common)?;
    let (mut store, blueprint, kinds) = super::prepare(&ctx).await?;
    let options = ctx.apply_options(&args.walk)?;
    let plan_options = PlanOptions {
        targets: ctx.check_targets(&args.targets, store.state())?,
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
    print!("{}", render::plan_text(&plan, &ctx.stack(), false));
    if !plan.has_changes() {
        return Ok(exit::OK);
    }
    // On a terminal, ask; in CI (no terminal) provisioning proceeds.
    if !args.yes && super::interactive() && !super::confirm("\nApply these changes?")? {
        eprintln!("Cancelled; nothing was changed.");
        return Ok(exit::ERROR);
    }
    let started = Instant::now();
    let report = super::apply_with_progress(&plan, &blueprint, &kinds, &mut store, options).await?;
    Ok(super::finish(&report, "Provision", started.elapsed()))
}
