//! `dagform output`: the stack's outputs, read from the state.

use crate::context::Context;
use crate::{Common, exit};
use anyhow::{Result, bail};
use clap::Args;
use dagform_config::Blueprint;
use dagform_core::State;
use serde_json::{Map, Value as Json};

#[derive(Args)]
pub struct OutputArgs {
    #[command(flatten)]
    common: Common,
    /// Print only this output, unquoted.
    name: Option<String>,
    /// Print as a JSON object.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: OutputArgs) -> Result<u8> {
    let ctx = Context::load(&args.common)?;
    let state = ctx.read_state()?;
    let blueprint = ctx.blueprint(&state)?;
    let values = resolve(&blueprint, &state);
    if let Some(name) = &args.name {
        let Some(v) = values.get(name) else {
            bail!(
                "no output `{name}` (not defined, or not provisioned yet); known: {}",
                blueprint
                    .outputs
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        match v {
            Json::String(s) if !args.json => println!("{s}"),
            other => println!("{other}"),
        }
        return Ok(exit::OK);
    }
    if args.json {
        // Flat, as scripts read it (`.["url.acme"]`), with the version beside the outputs.
        let mut doc = Map::new();
        doc.insert(
            "format_version".into(),
            crate::render::JSON_FORMAT_VERSION.into(),
        );
        doc.extend(values);
        println!("{}", serde_json::to_string_pretty(&Json::Object(doc))?);
    } else if values.is_empty() {
        println!("No outputs yet: run `dagform provision` first.");
    } else {
        let rows: Vec<Vec<String>> = values
            .iter()
            .map(|(k, v)| {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                vec![k.clone(), text]
            })
            .collect();
        for line in crate::render::aligned_table(None, &rows, &[]) {
            println!("{line}");
        }
    }
    Ok(exit::OK)
}

/// The outputs whose values the state already knows.
pub fn resolve(blueprint: &Blueprint, state: &State) -> Map<String, Json> {
    let mut values = Map::new();
    for o in &blueprint.outputs {
        let v = o
            .value
            .partially_resolve(&|r| state.get(&r.node).and_then(|s| r.lookup(&s.outputs)));
        if let Some(v) = v.as_data() {
            values.insert(o.name.clone(), v.clone());
        }
    }
    values
}
