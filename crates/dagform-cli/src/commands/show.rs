//! `dagform show FILE`: a plan saved by `plan --out`, printed for review.

use crate::{exit, render};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ShowArgs {
    /// The saved plan.
    plan: PathBuf,
    /// Print it as JSON (`plan --json`'s document, with what it was computed from).
    #[arg(long)]
    json: bool,
}

pub fn run(args: ShowArgs) -> Result<u8> {
    let saved = super::saved::read(&args.plan)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&render::saved_plan_json(&saved))?
        );
    } else {
        print!("{}", render::saved_plan_text(&saved));
    }
    Ok(exit::OK)
}
