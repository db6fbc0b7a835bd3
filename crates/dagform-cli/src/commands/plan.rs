//! `dagform plan`: what a provision would do, without doing it.

use crate::context::Context;
use crate::render;
use crate::{Common, Walk, exit};
use anyhow::Result;
use clap::Args;
use dagform_core::plan::PlanOptions;

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    walk: Walk,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Read every resource from AWS first and report what changed outside dagform.
    #[arg(long)]
    refresh: bool,
    /// Plan the deletion of everything instead.
    #[arg(long)]
    destroy: bool,
}

pub async fn run(args: PlanArgs) -> Result<u8> {
    let ctx = Context::load(&args.common)?;
    let state = ctx.read_state()?;
    let blueprint = ctx.blueprint(&state)?;
    let kinds = ctx.kinds().await;
    let options = PlanOptions {
        destroy: args.destroy,
        ..Default::default()
    };
    let apply_options = ctx.apply_options(&args.walk)?;
    let plan = super::make_plan(
        &blueprint,
        &state,
        &kinds,
        &options,
        args.refresh.then_some(&apply_options),
    )
    .await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&render::plan_json(&plan, &ctx.stack()))?
        );
    } else {
        print!("{}", render::plan_text(&plan, &ctx.stack(), true));
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        exit::CHANGES
    } else {
        exit::OK
    })
}
