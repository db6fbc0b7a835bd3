//! `dagform state …`: read the state, or edit it without touching AWS. Every edit takes the
//! state's lock and is recorded through the state store, so the serial moves and a saved plan
//! computed before it is refused.

use crate::context::Context;
use crate::{Common, exit};
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use dagform_core::{Address, StateStore};
use serde_json::json;

#[derive(Args)]
pub struct StateArgs {
    #[command(subcommand)]
    command: StateCommand,
}

#[derive(Subcommand)]
enum StateCommand {
    /// Print every recorded address, one a line.
    List {
        #[command(flatten)]
        common: Common,
        /// Only this customer's addresses.
        #[arg(long)]
        customer: Option<String>,
    },
    /// Print one resource's record as JSON (secret values are recorded as fingerprints only).
    Show {
        #[command(flatten)]
        common: Common,
        address: String,
    },
    /// Forget resources (an address, or every address under a prefix) without deleting them
    /// in AWS: dagform no longer manages them.
    Rm {
        #[command(flatten)]
        common: Common,
        #[arg(required = true, value_name = "ADDRESS")]
        addresses: Vec<String>,
    },
    /// Move a resource, or every address under a prefix, to a new address, without touching
    /// AWS; recorded dependencies on them follow.
    Mv {
        #[command(flatten)]
        common: Common,
        from: String,
        to: String,
    },
    /// Print the whole state as JSON.
    Pull {
        #[command(flatten)]
        common: Common,
    },
}

pub async fn run(args: StateArgs) -> Result<u8> {
    match args.command {
        StateCommand::List { common, customer } => {
            let ctx = Context::load(&common)?;
            let state = ctx.read_state()?;
            let prefix = customer.map(|c| format!("customer.{c}"));
            for address in state.resources.keys() {
                if prefix.as_ref().is_none_or(|p| address.is_within(p)) {
                    println!("{address}");
                }
            }
        }
        StateCommand::Show { common, address } => {
            let ctx = Context::load(&common)?;
            let state = ctx.read_state()?;
            let Some(record) = state.get(&Address::new(address.clone())) else {
                bail!(
                    "no resource `{address}` in the state {}; `dagform state list` shows what is recorded",
                    ctx.state_path.display()
                );
            };
            let mut shown = json!({ "address": address });
            if let (Some(out), serde_json::Value::Object(fields)) =
                (shown.as_object_mut(), serde_json::to_value(record)?)
            {
                out.extend(fields);
            }
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        StateCommand::Rm { common, addresses } => {
            let ctx = Context::load(&common)?;
            let mut store = open_existing(&ctx)?;
            let mut forget: Vec<Address> = Vec::new();
            for a in &addresses {
                let within = store.state().addresses_within(a);
                if within.is_empty() {
                    bail!(
                        "no resource `{a}` in the state {}, so nothing was removed; `dagform state list` shows what is recorded",
                        ctx.state_path.display()
                    );
                }
                forget.extend(within.into_iter().cloned());
            }
            forget.sort();
            forget.dedup();
            for address in &forget {
                let id = store
                    .state()
                    .get(address)
                    .and_then(|r| r.id.clone())
                    .unwrap_or_default();
                store.remove(address)?;
                println!("Removed {address} {id}");
            }
            store.persist()?;
            eprintln!(
                "Forgot {} resource(s); they still exist in AWS and dagform no longer manages them (serial {}).",
                forget.len(),
                store.state().serial
            );
        }
        StateCommand::Mv { common, from, to } => {
            let ctx = Context::load(&common)?;
            let mut store = open_existing(&ctx)?;
            let moved = store.state().addresses_within(&from).len();
            if moved == 0 {
                bail!(
                    "no resource `{from}` in the state {}, so nothing was moved",
                    ctx.state_path.display()
                );
            }
            let (from_a, to_a) = (Address::new(from.clone()), Address::new(to.clone()));
            if from_a.is_within(&to) || to_a.is_within(&from) {
                bail!("cannot move `{from}` to `{to}`: one lies within the other");
            }
            if let Some(taken) = store.state().addresses_within(&to).first() {
                bail!("cannot move `{from}` to `{to}`: `{taken}` is already recorded there");
            }
            let writes = store.state().renamed(&from, &to);
            for (address, record) in writes {
                match record {
                    Some(r) => store.put(address, r)?,
                    None => store.remove(&address)?,
                }
            }
            store.persist()?;
            eprintln!(
                "Moved {moved} resource(s) from {from} to {to}; nothing changed in AWS (serial {}).",
                store.state().serial
            );
        }
        StateCommand::Pull { common } => {
            let ctx = Context::load(&common)?;
            let Some(state) = StateStore::load(&ctx.state_path)? else {
                bail!("no state at {}", ctx.state_path.display());
            };
            println!("{}", serde_json::to_string_pretty(&state)?);
        }
    }
    Ok(exit::OK)
}

/// Opens the state for an edit, holding its lock; an edit of a state that does not exist yet
/// would only create an empty one.
fn open_existing(ctx: &Context) -> Result<StateStore> {
    if StateStore::load(&ctx.state_path)?.is_none() {
        bail!("no state at {}", ctx.state_path.display());
    }
    ctx.open_state()
}
