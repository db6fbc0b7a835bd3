//! `dagform force-unlock LOCK_ID`: removes the lock a killed run left on a state in S3.

use crate::context::{Context, StateLocation};
use crate::{Common, exit};
use anyhow::{Result, bail};
use clap::Args;
use dagform_aws::state_s3;

#[derive(Args)]
pub struct ForceUnlockArgs {
    #[command(flatten)]
    common: Common,
    /// The lock's id, as printed by the run it refused.
    lock_id: String,
    /// Do not ask for confirmation (required when not on a terminal).
    #[arg(short, long)]
    yes: bool,
}

pub async fn run(args: ForceUnlockArgs) -> Result<u8> {
    let ctx = Context::load(&args.common)?;
    let (location, region) = match &ctx.state {
        StateLocation::S3 { location, region } => (location, region),
        StateLocation::File(path) => bail!(
            "the state {} is a local file: its lock is the operating system's and ends with the \
             process holding it, so there is nothing to unlock",
            path.display()
        ),
    };
    let client = state_s3::s3_client(Some(region)).await;
    // The shared part's lock, or a customer's part's (a run limited to that customer).
    let held = state_s3::S3Parts::new(client.clone(), location.clone(), "force-unlock")
        .locks()
        .await?;
    if held.is_empty() {
        bail!("the state {location} is not locked");
    }
    let Some((location, held)) = held.iter().find(|(_, info)| info.id == args.lock_id) else {
        let list: Vec<String> = held
            .iter()
            .map(|(at, info)| {
                format!(
                    "{} on {at} (held by {} since {} for `{}`)",
                    info.id, info.who, info.since, info.operation
                )
            })
            .collect();
        bail!(
            "no lock {} on {location}; the locks held are: {}; nothing was changed",
            args.lock_id,
            list.join(", ")
        );
    };
    eprintln!(
        "The state {location} is locked by {} (pid {}) since {} for `{}`.\n\
         Unlock it only if that run is no longer running: two runs writing at once are refused \
         by the state's versioning, but the second loses its work.",
        held.who, held.pid, held.since, held.operation
    );
    if !args.yes {
        if !super::interactive() {
            bail!("not on a terminal: pass --yes to remove the lock");
        }
        if !super::confirm("Remove the lock?")? {
            eprintln!("Cancelled; the lock is still held.");
            return Ok(exit::ERROR);
        }
    }
    state_s3::force_unlock(&client, location, &args.lock_id).await?;
    eprintln!("Removed lock {} from {location}.", args.lock_id);
    Ok(exit::OK)
}
