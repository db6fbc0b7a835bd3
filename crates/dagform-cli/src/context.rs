//! What every command loads: the configuration, its blueprint, the state, and the AWS kinds.

use crate::{Common, Targets, Walk};
use anyhow::{Context as _, Result, bail};
use dagform_aws::AwsClients;
use dagform_config::{Blueprint, Config};
use dagform_core::kind::PollSettings;
use dagform_core::reconcile::ApplyOptions;
use dagform_core::{Kinds, State, StateStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct Context {
    pub config: Config,
    pub config_path: PathBuf,
    pub state_path: PathBuf,
}

impl Context {
    /// Reads and validates the configuration: every mistake in it surfaces here, before any
    /// AWS call.
    pub fn load(common: &Common) -> Result<Self> {
        let mut config = dagform_config::load(&common.file)?;
        for o in &common.overrides {
            config.set(o).map_err(|e| anyhow::anyhow!("--set {e}"))?;
        }
        let state_path = common.state.clone().unwrap_or_else(|| {
            PathBuf::from("state").join(format!("{}.json", config.stack_name()))
        });
        Ok(Self {
            config,
            config_path: common.file.clone(),
            state_path,
        })
    }

    pub fn stack(&self) -> String {
        self.config.stack_name()
    }

    /// The recorded state without taking the lock (for read-only commands).
    pub fn read_state(&self) -> Result<State> {
        Ok(StateStore::load(&self.state_path)?.unwrap_or_else(|| State::new(&self.stack())))
    }

    /// Opens the state for writing, holding its lock until dropped.
    pub fn open_state(&self) -> Result<StateStore> {
        StateStore::open(&self.state_path, &self.stack())
            .with_context(|| format!("opening state {}", self.state_path.display()))
    }

    /// The address prefixes a `--customer`/`--target` run is limited to, after checking that
    /// each names something configured or recorded.
    pub fn check_targets(
        &self,
        targets: &Targets,
        blueprint: &Blueprint,
        state: &State,
    ) -> Result<Option<Vec<String>>> {
        if let Some(c) = &targets.customer {
            let recorded = state
                .resources
                .keys()
                .any(|a| a.is_within(&format!("customer.{c}")));
            if !recorded && !self.config.customer_names().any(|n| n == c) {
                bail!(
                    "no customer `{c}` in {} or in the state; customers: {}",
                    self.config_path.display(),
                    self.config.customer_names().collect::<Vec<_>>().join(", ")
                );
            }
        }
        for t in &targets.targets {
            let known = blueprint
                .graph
                .topological()
                .iter()
                .any(|n| n.address.is_within(t))
                || state.resources.keys().any(|a| a.is_within(t));
            if !known {
                bail!("--target {t} matches no resource in the configuration or the state");
            }
        }
        Ok(targets.prefixes())
    }

    pub fn blueprint(&self, state: &State) -> Result<Blueprint> {
        Ok(dagform_config::blueprint(
            &self.config,
            &self.config_path,
            Some(state),
        )?)
    }

    /// AWS kinds built on the standard credential chain (and `AWS_ENDPOINT_URL`, which points
    /// them at a local emulator).
    pub async fn kinds(&self) -> Kinds {
        dagform_aws::kinds(self.clients().await)
    }

    /// SDK clients for the stack's region, for commands that query AWS directly.
    pub async fn clients(&self) -> Arc<AwsClients> {
        Arc::new(AwsClients::load(Some(self.config.region())).await)
    }

    pub fn apply_options(&self, walk: &Walk) -> Result<ApplyOptions> {
        let mut options = ApplyOptions::new(self.stack());
        options.parallelism = walk.parallelism.into();
        options.poll = poll_settings()?;
        Ok(options)
    }
}

fn duration_from_env(name: &str) -> Result<Option<Duration>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(humantime::parse_duration(v.trim()).with_context(
            || format!("{name}={v} is not a duration such as 5s or 200ms"),
        )?)),
        Err(_) => Ok(None),
    }
}

/// How often kinds poll AWS while waiting (`DAGFORM_POLL_INTERVAL`, default 5 s) and for how
/// long (`DAGFORM_WAIT_TIMEOUT`, default 30 minutes; the certificate's validation has its own).
fn poll_settings() -> Result<PollSettings> {
    let mut poll = PollSettings::default();
    if let Some(i) = duration_from_env("DAGFORM_POLL_INTERVAL")? {
        poll.interval = i;
    }
    if let Some(t) = duration_from_env("DAGFORM_WAIT_TIMEOUT")? {
        poll.timeout = t;
    }
    Ok(poll)
}
