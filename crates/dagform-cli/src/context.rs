//! What every command loads: the configuration, its blueprint, the state, and the AWS kinds.

use crate::{Common, Targets, Walk};
use anyhow::{Context as _, Result, bail};
use dagform_aws::AwsClients;
use dagform_config::{Blueprint, Config};
use dagform_core::kind::PollSettings;
use dagform_core::reconcile::ApplyOptions;
use dagform_core::{Kinds, ResourceGraph, State, StateStore};
use dagform_resources::quotas::{self, Exceeded, Limits, Source, Usage};
use serde_json::json;
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

    /// The blueprint, with the hosted zones of customers' own domains read from Route 53 (only
    /// when a customer has a domain outside the `[dns]` zone).
    pub fn blueprint(&self, state: &State) -> Result<Blueprint> {
        let mut inputs =
            dagform_config::resolve_inputs(&self.config, &self.config_path, Some(state));
        inputs.customer_zones = self.customer_zones()?;
        Ok(dagform_config::expand(&self.config, &inputs)?)
    }

    /// The public hosted zone holding each customer's own domain, by customer. Asked on a
    /// thread of its own: the callers are synchronous code inside the command's runtime.
    fn customer_zones(&self) -> Result<std::collections::BTreeMap<String, String>> {
        let own: Vec<(String, String)> = self
            .config
            .customers_with_own_domain()
            .map(|(c, d)| (c.to_owned(), d))
            .collect();
        if own.is_empty() {
            return Ok(Default::default());
        }
        let domains: Vec<String> = own.iter().map(|(_, d)| d.clone()).collect();
        let region = self.config.region().to_owned();
        let zones = std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(async {
                        let clients = AwsClients::load(Some(&region)).await;
                        Ok::<_, anyhow::Error>(
                            dagform_aws::hosted_zones::public_zones_holding(&clients, &domains)
                                .await?,
                        )
                    })
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the hosted zone lookup panicked"))?
        })
        .context("looking up the hosted zones of customers' own domains")?;
        Ok(own
            .into_iter()
            .filter_map(|(c, d)| zones.get(&d).map(|z| (c, z.clone())))
            .collect())
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

    /// What `graph` would use of each AWS quota, against the account's values where Service
    /// Quotas answers and AWS's defaults where it does not.
    pub async fn check_quotas(&self, graph: &ResourceGraph) -> QuotaCheck {
        let usage = Usage::of(graph);
        let limits = dagform_aws::quotas::read_limits(&*self.clients().await).await;
        let exceeded = quotas::check(&usage, &limits);
        QuotaCheck {
            usage,
            limits,
            exceeded,
        }
    }

    pub fn apply_options(&self, walk: &Walk) -> Result<ApplyOptions> {
        let mut options = ApplyOptions::new(self.stack());
        options.parallelism = walk.parallelism.into();
        options.poll = poll_settings()?;
        Ok(options)
    }
}

/// The desired graph's use of every quota, and the quotas it would exceed.
pub struct QuotaCheck {
    pub usage: Usage,
    pub limits: Limits,
    pub exceeded: Vec<Exceeded>,
}

impl QuotaCheck {
    /// Fails, naming every quota exceeded, when the plan would exceed one: AWS would refuse
    /// the object halfway through the walk, with the stack half built.
    pub fn refuse_if_exceeded(&self) -> Result<()> {
        if self.exceeded.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = self.exceeded.iter().map(|e| format!("  ✗ {e}")).collect();
        bail!(
            "the plan would exceed {} AWS quota(s), so nothing was changed:\n{}\n\
             Change the configuration, or raise the quota in the Service Quotas console \
             (--skip-quota-check plans without this check).",
            self.exceeded.len(),
            lines.join("\n")
        )
    }

    /// One line for the plan, and a note for each thing not counted.
    pub fn text(&self) -> String {
        let mut out = format!("{}\n", self.limits.summary());
        for note in &self.usage.not_counted {
            out.push_str(&format!("  note: {note}\n"));
        }
        out
    }

    /// Each quota with its limit, where the limit comes from and the highest use planned.
    pub fn json(&self) -> serde_json::Value {
        let limits: Vec<serde_json::Value> = self
            .limits
            .iter()
            .map(|(quota, limit)| {
                let (source, unread) = match &limit.source {
                    Source::Applied => ("applied", None),
                    Source::Default { unread } => ("default", Some(unread)),
                };
                json!({
                    "service_code": quota.service_code,
                    "quota_code": quota.quota_code,
                    "name": quota.name,
                    "limit": limit.value,
                    "source": source,
                    "unread": unread,
                    "highest_use": self.usage.highest(quota.id),
                })
            })
            .collect();
        json!({
            "checked": limits.len(),
            "limits": limits,
            "exceeded": self.exceeded.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            "not_counted": self.usage.not_counted,
        })
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
