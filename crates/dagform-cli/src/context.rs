//! What every command loads: the configuration, its blueprint, the state, and the AWS kinds.

use crate::{Common, Targets, Walk};
use anyhow::{Context as _, Result, bail};
use dagform_aws::AwsClients;
use dagform_aws::state_s3::{self, S3Location, S3Parts};
use dagform_config::{Blueprint, Config};
use dagform_core::kind::PollSettings;
use dagform_core::reconcile::ApplyOptions;
use dagform_core::{
    Address, FileParts, Kinds, Part, ResourceGraph, State, StateParts, StateStore, WriteScope,
};
use dagform_resources::quotas::{self, Exceeded, Limits, Source, Usage};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct Context {
    pub config: Config,
    pub config_path: PathBuf,
    pub state: StateLocation,
    /// How long to wait for a lock another run holds.
    pub lock_timeout: Duration,
}

/// Where the state is kept.
#[derive(Debug, Clone)]
pub enum StateLocation {
    File(PathBuf),
    S3 {
        location: S3Location,
        region: String,
    },
}

impl StateLocation {
    /// `--state`, else `[state] location`, else `state/<stack>.json`.
    pub fn of(given: Option<&str>, config: &Config) -> Result<Self> {
        let configured = config.state.location.as_ref().map(|l| l.get_ref().as_str());
        let Some(text) = given.or(configured) else {
            return Ok(Self::File(
                PathBuf::from("state").join(format!("{}.json", config.stack_name())),
            ));
        };
        Ok(match S3Location::parse(text) {
            None => Self::File(PathBuf::from(text)),
            Some(Ok(location)) => Self::S3 {
                location,
                region: config
                    .state
                    .region
                    .as_ref()
                    .map_or_else(|| config.region().to_owned(), |r| r.get_ref().clone()),
            },
            Some(Err(message)) => bail!("--state: {message}"),
        })
    }
}

impl std::fmt::Display for StateLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::S3 { location, .. } => write!(f, "{location}"),
        }
    }
}

/// Runs `future` to completion from synchronous code inside the command's runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

/// What the lock records as the operation holding it: the command line, without `--set`
/// values (they may be anything).
fn operation() -> String {
    let mut words = vec!["dagform".to_owned()];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--set" {
            args.next();
            words.push("--set …".into());
        } else if a.starts_with("--set=") {
            words.push("--set=…".into());
        } else {
            words.push(a);
        }
    }
    words.join(" ")
}

impl Context {
    /// Reads and validates the configuration: every mistake in it surfaces here, before any
    /// AWS call.
    pub fn load(common: &Common) -> Result<Self> {
        let mut config = dagform_config::load(&common.file)?;
        for o in &common.overrides {
            config.set(o).map_err(|e| anyhow::anyhow!("--set {e}"))?;
        }
        let state = StateLocation::of(common.state.as_deref(), &config)?;
        Ok(Self {
            config,
            config_path: common.file.clone(),
            state,
            lock_timeout: common.lock_timeout,
        })
    }

    pub fn stack(&self) -> String {
        self.config.stack_name()
    }

    /// The recorded state without taking the lock (for read-only commands).
    pub fn read_state(&self) -> Result<State> {
        Ok(self
            .load_state()?
            .unwrap_or_else(|| State::new(&self.stack())))
    }

    /// The recorded state, `None` when none was ever written.
    pub fn load_state(&self) -> Result<Option<State>> {
        let state = match &self.state {
            StateLocation::File(path) => {
                StateStore::load_parts(&FileParts::new(path), &self.stack())?
            }
            StateLocation::S3 { location, region } => {
                let client = block_on(state_s3::s3_client(Some(region)));
                let parts = S3Parts::new(client, location.clone(), &operation());
                StateStore::load_parts(&parts, &self.stack())?
            }
        };
        Ok(state)
    }

    /// Opens the state for a run that changes AWS, holding its lock until dropped, after the
    /// account guard: the caller's account (asked of STS before any other call) must be
    /// `[stack] account_id` when that is set, and the account the state records when it
    /// records one; a state recording none records this one.
    pub fn open_state(&self, scope: &WriteScope) -> Result<StateStore> {
        let caller = block_on(self.caller_account())?;
        if let Some(wanted) = &self.config.stack.account_id
            && wanted.get_ref() != &caller
        {
            bail!(
                "{}",
                dagform_config::Diagnostic::at(
                    &self.config_path,
                    &self.config.source,
                    wanted.span().start,
                    "stack.account_id",
                    format!(
                        "this stack lives in AWS account {}, but the credentials in use are \
                             for account {caller}; nothing was changed. Choose the right \
                             credentials (--profile NAME or AWS_PROFILE).",
                        wanted.get_ref()
                    ),
                )
            );
        }
        let mut store = self.open_state_parts(scope)?;
        match store.state().account_id.clone() {
            Some(recorded) if recorded != caller => bail!(
                "the state {} belongs to AWS account {recorded}, but the credentials in use are \
                 for account {caller}; nothing was changed. Choose the right credentials \
                 (--profile NAME or AWS_PROFILE).",
                self.state
            ),
            Some(_) => {}
            None => store.record_account(&caller)?,
        }
        Ok(store)
    }

    /// The AWS account of the credentials in use.
    async fn caller_account(&self) -> Result<String> {
        let clients = self.clients().await;
        let identity = clients
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot tell which AWS account the credentials are for (STS \
                     GetCallerIdentity): {}",
                    aws_sdk_cloudwatchlogs::error::DisplayErrorContext(e)
                )
            })?;
        identity
            .account()
            .map(str::to_owned)
            .context("STS GetCallerIdentity named no account")
    }

    /// Opens the state for an edit of the state alone (no AWS object changes), holding every
    /// part's lock until dropped.
    pub fn open_state_for_edit(&self) -> Result<StateStore> {
        self.open_state_parts(&self.everything())
    }

    /// What a run that may change anything locks: every part, those of the configured
    /// customers included.
    pub fn everything(&self) -> WriteScope {
        WriteScope::Everything {
            customers: self.config.customer_names().map(str::to_owned).collect(),
        }
    }

    /// What a run limited to `prefixes` (`--customer`/`--target`) locks: only one customer's
    /// part when they all lie within one customer, else every part.
    pub fn write_scope(&self, prefixes: Option<&[String]>) -> WriteScope {
        let customers: std::collections::BTreeSet<Part> = prefixes
            .unwrap_or_default()
            .iter()
            .map(|p| Part::of(&Address::new(p.as_str())))
            .collect();
        match customers.into_iter().collect::<Vec<_>>().as_slice() {
            [Part::Customer(name)] => WriteScope::Customer(name.clone()),
            _ => self.everything(),
        }
    }

    /// Opens the parts of the state `scope` may change, holding their locks until dropped;
    /// locks another run holds are waited for up to `--lock-timeout` (all given up between
    /// tries, so two runs waiting for each other never hold each other up).
    fn open_state_parts(&self, scope: &WriteScope) -> Result<StateStore> {
        let stack = self.stack();
        let deadline = std::time::Instant::now() + self.lock_timeout;
        // The parts, anew for every try; one S3 client serves them all.
        let parts: Box<dyn Fn() -> Box<dyn StateParts>> = match &self.state {
            StateLocation::File(path) => Box::new(move || Box::new(FileParts::new(path))),
            StateLocation::S3 { location, region } => {
                let client = block_on(state_s3::s3_client(Some(region)));
                Box::new(move || {
                    Box::new(S3Parts::new(client.clone(), location.clone(), &operation()))
                })
            }
        };
        loop {
            match StateStore::open_parts(parts(), &stack, scope) {
                Err(
                    dagform_core::Error::StateLocked { .. }
                    | dagform_core::Error::StateLockHeld { .. },
                ) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                other => return Ok(other?),
            }
        }
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
        options.poll = PollSettings {
            interval: walk.polling.poll_interval,
            timeout: walk.polling.wait_timeout,
        };
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
