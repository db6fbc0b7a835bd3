//! `dagform state …`: read the state, or edit it without touching AWS. Every edit takes the
//! state's lock and is recorded through the state store, so the serial moves and a saved plan
//! computed before it is refused.

use crate::context::{Context, StateLocation};
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
    /// Move the state to another location (a file, or s3://BUCKET/KEY), e.g. from this machine
    /// into S3 for a team; the old copy is left as it was. Refuses to overwrite a different
    /// state, or a later version of this one.
    Migrate {
        #[command(flatten)]
        common: Common,
        /// Where the state goes.
        #[arg(long, value_name = "PATH|s3://BUCKET/KEY")]
        to: String,
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
                    ctx.state
                );
            };
            // Every key present, set or not, after the version and the address.
            let shown = json!({
                "format_version": crate::render::JSON_FORMAT_VERSION,
                "address": address,
                "kind": record.kind,
                "status": record.status,
                "id": record.id,
                "properties": record.properties,
                "outputs": record.outputs,
                "dependencies": record.dependencies,
                "deposed": record.deposed,
                "intent": record.intent,
            });
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
                        ctx.state
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
                    ctx.state
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
            let Some(state) = ctx.load_state()? else {
                bail!("no state at {}", ctx.state);
            };
            println!("{}", serde_json::to_string_pretty(&state)?);
        }
        StateCommand::Migrate { common, to } => {
            let ctx = Context::load(&common)?;
            let source = open_existing(&ctx)?;
            let target = Context {
                state: StateLocation::of(Some(&to), &ctx.config)?,
                ..ctx
            };
            if target.state.to_string() == source.location() {
                bail!("the state is already at {to}");
            }
            let mut store = target.open_state_for_edit()?;
            store.take_over(source.state().clone())?;
            eprintln!(
                "Moved the state of {} ({} resource(s), serial {}) from {} to {}; the copy at {} is left as it was. \
                 Point the configuration at the new location with `[state] location = \"{}\"` (or pass --state).",
                store.state().stack,
                store.state().resources.len(),
                store.state().serial,
                source.location(),
                store.location(),
                source.location(),
                store.location(),
            );
        }
    }
    Ok(exit::OK)
}

/// Opens the state for an edit, holding its lock; an edit of a state that does not exist yet
/// would only create an empty one.
fn open_existing(ctx: &Context) -> Result<StateStore> {
    if ctx.load_state()?.is_none() {
        bail!("no state at {}", ctx.state);
    }
    ctx.open_state_for_edit()
}
