//! The shape of `dagform.toml`. Values that need checking beyond their type keep their
//! location (`Spanned`) so errors can name the line.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub stack: Stack,
    pub network: Spanned<Network>,
    pub dns: Option<Dns>,
    pub certificate: Option<Spanned<Certificate>>,
    #[serde(default)]
    pub registry: Registry,
    #[serde(default)]
    pub cluster: Cluster,
    #[serde(default)]
    pub logs: Logs,
    #[serde(default)]
    pub state: StateSection,
    #[serde(default)]
    pub load_balancer: LoadBalancer,
    /// Secret values injected into containers, keyed by the environment variable they become.
    #[serde(default)]
    pub secrets: IndexMap<Spanned<String>, Spanned<Secret>>,
    pub database: Option<Spanned<Database>>,
    pub services: IndexMap<Spanned<String>, Spanned<Service>>,
    /// Tenants: each gets its own copy of every service behind the shared load balancer. Without
    /// customers, every service is deployed once.
    #[serde(default)]
    pub customers: IndexMap<Spanned<String>, Spanned<Customer>>,
    /// Alarms that notify someone when the platform misbehaves.
    pub alarms: Option<Spanned<Alarms>>,
    /// A web firewall in front of the stack's load balancers.
    pub waf: Option<Spanned<Waf>>,
    /// An identity CI deploys the stack with, without stored keys.
    pub ci: Option<Spanned<Ci>>,
    /// The text this was parsed from, to locate errors found later.
    #[serde(skip)]
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    pub app: Spanned<String>,
    pub environment: Spanned<String>,
    pub region: Spanned<String>,
    /// Defaults to `{environment}-{app}`; names the state file.
    pub name: Option<Spanned<String>>,
    /// The AWS account this stack lives in: commands that write refuse to run with
    /// credentials of any other account.
    pub account_id: Option<Spanned<String>>,
}

/// Where the state is kept: a local file (the default, `state/<stack>.json`) or an S3 object
/// shared by a team (`location = "s3://BUCKET/KEY"`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    pub location: Option<Spanned<String>>,
    /// The S3 bucket's region, when it is not the stack's.
    pub region: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatGateways {
    /// One NAT gateway per availability zone: a zone's outage cuts only its own tasks off.
    #[default]
    PerAz,
    /// One NAT gateway for every zone: cheaper, one point of failure.
    Single,
}

/// Either a network dagform creates (`cidr`, zones and subnets) or one that already exists
/// (`existing = "default"`, `vpc_id` or `vpc_tags`, with optional `subnet_ids`), which is
/// only read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub existing: Option<Spanned<String>>,
    pub vpc_id: Option<Spanned<String>>,
    /// Picks the one VPC carrying all these tags, e.g. `{ Name = "prod" }`.
    pub vpc_tags: Option<Spanned<IndexMap<String, String>>>,
    pub subnet_ids: Option<Spanned<Vec<String>>>,
    pub cidr: Option<Spanned<String>>,
    pub availability_zones: Option<Spanned<Vec<String>>>,
    pub public_subnets: Option<Spanned<Vec<String>>>,
    pub private_subnets: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub nat_gateways: NatGateways,
    /// Give tasks public IPs (needed in a network without NAT); defaults to yes in an existing
    /// network and no in one dagform creates, where tasks sit in private subnets.
    pub assign_public_ip: Option<bool>,
}

impl Network {
    pub fn is_managed(&self) -> bool {
        self.existing.is_none() && self.vpc_id.is_none() && self.vpc_tags.is_none()
    }

    pub fn assign_public_ip(&self) -> bool {
        self.assign_public_ip.unwrap_or(!self.is_managed())
    }

    pub fn zones(&self) -> &[String] {
        self.availability_zones
            .as_ref()
            .map_or(&[], |z| z.get_ref().as_slice())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// An existing public hosted zone, looked up by name.
    pub zone: Spanned<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Validation {
    /// Validation records are written to the `[dns]` zone in Route 53.
    Route53,
    /// The domain's DNS is hosted elsewhere: dagform prints the records to add there.
    External,
}

/// A certificate dagform requests (`domain`…), or an existing one (`arn`), which is only used.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub arn: Option<Spanned<String>>,
    pub domain: Option<Spanned<String>>,
    #[serde(default)]
    pub alternative_names: Vec<Spanned<String>>,
    pub validation: Option<Validation>,
    /// How long a run waits for DNS validation: 45 minutes by default with Route 53; none with
    /// external DNS, where the HTTPS listener follows in a later run once the records exist.
    pub validation_timeout_minutes: Option<u64>,
}

impl Certificate {
    pub fn validation(&self, dns: Option<&Dns>) -> Validation {
        self.validation.unwrap_or(if dns.is_some() {
            Validation::Route53
        } else {
            Validation::External
        })
    }

    pub fn timeout_minutes(&self, dns: Option<&Dns>) -> u64 {
        self.validation_timeout_minutes
            .unwrap_or(match self.validation(dns) {
                Validation::Route53 => 45,
                Validation::External => 0,
            })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Defaults to `{environment}-{app}`, so environments of one app never share it.
    pub name: Option<Spanned<String>>,
    pub keep_last_images: Option<Spanned<u32>>,
    #[serde(default)]
    pub immutable_tags: bool,
    /// Whether `destroy` may delete the repository while it still holds images.
    #[serde(default)]
    pub force_delete: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    pub retention_days: Option<Spanned<u32>>,
    /// The name of each service's log group, with `{environment}`, `{app}`, `{service}` and
    /// (with customers) `{customer}` filled in. Defaults to
    /// `/ecs/{environment}-{app}/{customer}-{service}` (`/ecs/{environment}-{app}/{service}`
    /// without customers).
    pub group_name: Option<Spanned<String>>,
}

/// The placeholders a log group name may use.
pub const LOG_GROUP_PLACEHOLDERS: &[&str] = &["environment", "app", "customer", "service"];

impl Logs {
    /// The template each service's log group name is made from.
    pub fn group_name_template(&self, with_customers: bool) -> &str {
        match &self.group_name {
            Some(t) => t.get_ref(),
            None if with_customers => "/ecs/{environment}-{app}/{customer}-{service}",
            None => "/ecs/{environment}-{app}/{service}",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HttpListener {
    /// Port 80 answers with a redirect to HTTPS.
    #[default]
    Redirect,
    /// Port 80 serves the application too.
    Forward,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancer {
    /// Defaults to `{environment}-{app}-alb`.
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub http: HttpListener,
    pub idle_timeout_seconds: Option<Spanned<u32>>,
    pub ssl_policy: Option<Spanned<String>>,
    /// With `[customers]`: how many customers share one load balancer before another is added.
    /// Defaults to as many as AWS's listener rule and target group quotas allow.
    pub customers_per_load_balancer: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Defaults to `{environment}-{app}-cluster`.
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub container_insights: bool,
}

/// Where a secret's value comes from: an environment variable or a file read when dagform runs,
/// or an existing Secrets Manager secret. Values never reach the state file or the output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    pub from_env: Option<Spanned<String>>,
    pub from_file: Option<Spanned<String>>,
    pub arn: Option<Spanned<String>>,
    /// The Secrets Manager name; defaults to `{app}/{key in kebab-case}`.
    pub name: Option<Spanned<String>>,
    pub description: Option<String>,
    /// Days a deleted secret can be restored; 0 deletes at once.
    pub recovery_window_days: Option<Spanned<u32>>,
}

/// A PostgreSQL database dagform creates, or an existing instance (`existing`), which is only
/// read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub existing: Option<Spanned<String>>,
    pub identifier: Option<Spanned<String>>,
    #[serde(default = "default_engine_version")]
    pub engine_version: Spanned<String>,
    #[serde(default = "default_instance_class")]
    pub instance_class: String,
    #[serde(default = "default_storage")]
    pub allocated_storage: Spanned<u32>,
    #[serde(default = "default_db_name")]
    pub name: Spanned<String>,
    #[serde(default = "default_db_user")]
    pub username: Spanned<String>,
    #[serde(default = "default_backup_days")]
    pub backup_retention_days: Spanned<u32>,
    #[serde(default)]
    pub deletion_protection: bool,
    #[serde(default)]
    pub skip_final_snapshot: bool,
    #[serde(default)]
    pub multi_az: bool,
}

fn default_engine_version() -> Spanned<String> {
    Spanned::new(0..0, "16".to_owned())
}
fn default_instance_class() -> String {
    "db.t4g.micro".to_owned()
}
fn default_storage() -> Spanned<u32> {
    Spanned::new(0..0, 20)
}
fn default_db_name() -> Spanned<String> {
    Spanned::new(0..0, "appdb".to_owned())
}
fn default_db_user() -> Spanned<String> {
    Spanned::new(0..0, "app".to_owned())
}
fn default_backup_days() -> Spanned<u32> {
    Spanned::new(0..0, 7)
}

/// The container's own health check (run by ECS inside the task).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerHealthCheck {
    /// A shell command; exit status 0 means healthy.
    pub command: Spanned<String>,
    #[serde(default = "default_interval")]
    pub interval: u32,
    #[serde(default = "default_timeout")]
    pub timeout: u32,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default)]
    pub start_period: u32,
}

fn default_interval() -> u32 {
    30
}
fn default_timeout() -> u32 {
    5
}
fn default_retries() -> u32 {
    3
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The image tag in the stack's repository, e.g. `backend-api-latest`.
    pub image_tag: Spanned<String>,
    /// The container port the load balancer sends traffic to; none for a worker.
    pub port: Option<Spanned<u32>>,
    /// The path pattern routed to this service, e.g. `/api/*`; none means everything else.
    pub path: Option<Spanned<String>>,
    pub health_check_path: Option<Spanned<String>>,
    pub cpu: Spanned<u32>,
    pub memory: Spanned<u32>,
    pub desired_count: Spanned<u32>,
    #[serde(default)]
    pub environment: IndexMap<String, String>,
    /// Keys of `[secrets]` injected as environment variables from Secrets Manager.
    #[serde(default)]
    pub secrets: Vec<Spanned<String>>,
    pub health_check: Option<ContainerHealthCheck>,
    /// The load balancer's health check of the targets.
    #[serde(default = "default_interval")]
    pub health_check_interval_seconds: u32,
    #[serde(default = "default_retries")]
    pub unhealthy_threshold: u32,
    /// Defaults to a name derived from the stack and service. Only without customers: each
    /// customer has a target group of its own.
    pub target_group_name: Option<Spanned<String>>,
    /// The task definition family; defaults to `{environment}-{app}-{service}` (with the
    /// customer before the service). Only without customers.
    pub family: Option<Spanned<String>>,
    /// Application Auto Scaling of the task count; `desired_count` is then where it starts.
    pub autoscaling: Option<Spanned<Autoscaling>>,
}

/// `autoscaling = { min = 1, max = 4, cpu_target = 60 }`: the task count's bounds and the
/// targets it tracks (at least one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Autoscaling {
    pub min: Spanned<u32>,
    pub max: Spanned<u32>,
    /// Average CPU utilisation, percent.
    pub cpu_target: Option<Spanned<u32>>,
    /// Average memory utilisation, percent.
    pub memory_target: Option<Spanned<u32>>,
    /// Load balancer requests per task; only for a service with a `port`.
    pub requests_per_target: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub domain: Spanned<String>,
    pub display_name: Spanned<String>,
    #[serde(default)]
    pub environment: IndexMap<String, String>,
}

/// Where alarms go — an SNS topic dagform creates with `email` subscriptions, or an existing
/// `topic_arn` it only publishes to — and, per alarm, a threshold or `false` to turn it off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alarms {
    #[serde(default)]
    pub email: Vec<Spanned<String>>,
    pub topic_arn: Option<Spanned<String>>,
    /// Alarm name → threshold; `false` turns it off, `true` keeps the default.
    #[serde(default)]
    pub thresholds: IndexMap<Spanned<String>, Spanned<AlarmSetting>>,
}

/// One alarm's setting in `[alarms.thresholds]`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum AlarmSetting {
    On(bool),
    Threshold(f64),
}

/// The alarms dagform sets up, as named in `[alarms.thresholds]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alarm {
    /// The share of a target group's requests its targets answered with a 5xx, percent, over
    /// 5 minutes.
    Target5xx,
    /// Unhealthy targets of a target group.
    UnhealthyHosts,
    /// Average CPU of a service, percent.
    ServiceCpu,
    /// Average memory of a service, percent.
    ServiceMemory,
    /// Running tasks of a service below this (default: its `desired_count`).
    RunningTasks,
    DatabaseCpu,
    /// GiB left on the database's volume.
    DatabaseFreeStorage,
    DatabaseConnections,
}

impl Alarm {
    pub const ALL: [Alarm; 8] = [
        Alarm::Target5xx,
        Alarm::UnhealthyHosts,
        Alarm::ServiceCpu,
        Alarm::ServiceMemory,
        Alarm::RunningTasks,
        Alarm::DatabaseCpu,
        Alarm::DatabaseFreeStorage,
        Alarm::DatabaseConnections,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Alarm::Target5xx => "target_5xx",
            Alarm::UnhealthyHosts => "unhealthy_hosts",
            Alarm::ServiceCpu => "service_cpu",
            Alarm::ServiceMemory => "service_memory",
            Alarm::RunningTasks => "running_tasks",
            Alarm::DatabaseCpu => "database_cpu",
            Alarm::DatabaseFreeStorage => "database_free_storage",
            Alarm::DatabaseConnections => "database_connections",
        }
    }

    pub fn from_key(key: &str) -> Option<Alarm> {
        Alarm::ALL.into_iter().find(|a| a.key() == key)
    }

    /// The default threshold; `None` for running tasks, whose default is the service's own
    /// desired count.
    pub fn default_threshold(self) -> Option<f64> {
        match self {
            Alarm::Target5xx => Some(5.0),
            Alarm::UnhealthyHosts => Some(1.0),
            Alarm::ServiceCpu | Alarm::ServiceMemory | Alarm::DatabaseCpu => Some(80.0),
            Alarm::RunningTasks => None,
            Alarm::DatabaseFreeStorage => Some(2.0),
            Alarm::DatabaseConnections => Some(100.0),
        }
    }

    /// The thresholds that make sense, and what they count.
    pub fn range(self) -> (std::ops::RangeInclusive<f64>, &'static str) {
        match self {
            Alarm::Target5xx => (0.1..=100.0, "percent of requests answered with a 5xx"),
            Alarm::UnhealthyHosts => (1.0..=1000.0, "unhealthy targets"),
            Alarm::ServiceCpu | Alarm::ServiceMemory | Alarm::DatabaseCpu => {
                (1.0..=100.0, "percent")
            }
            Alarm::RunningTasks => (1.0..=1000.0, "tasks"),
            Alarm::DatabaseFreeStorage => (1.0..=65536.0, "GiB"),
            Alarm::DatabaseConnections => (1.0..=100_000.0, "connections"),
        }
    }
}

impl Alarms {
    fn setting(&self, alarm: Alarm) -> Option<AlarmSetting> {
        self.thresholds
            .iter()
            .find(|(k, _)| k.get_ref() == alarm.key())
            .map(|(_, v)| *v.get_ref())
    }

    /// Whether `alarm` is set up, and with which threshold (`None`: its default).
    pub fn threshold(&self, alarm: Alarm) -> Option<Option<f64>> {
        match self.setting(alarm) {
            Some(AlarmSetting::On(false)) => None,
            Some(AlarmSetting::Threshold(t)) => Some(Some(t)),
            Some(AlarmSetting::On(true)) | None => Some(alarm.default_threshold()),
        }
    }
}

impl Customer {
    /// The host name the customer is served at: its domain in lower case, without a final dot.
    pub fn host(&self) -> String {
        self.domain
            .get_ref()
            .trim_end_matches('.')
            .to_ascii_lowercase()
    }
}

impl Config {
    pub fn stack_name(&self) -> String {
        match &self.stack.name {
            Some(n) => n.get_ref().clone(),
            None => format!(
                "{}-{}",
                self.stack.environment.get_ref(),
                self.stack.app.get_ref()
            ),
        }
    }

    pub fn region(&self) -> &str {
        self.stack.region.get_ref()
    }

    pub fn has_customers(&self) -> bool {
        !self.customers.is_empty()
    }

    pub fn customer_names(&self) -> impl Iterator<Item = &str> {
        self.customers.keys().map(|k| k.get_ref().as_str())
    }

    /// The customers whose domain lies outside the `[dns]` zone, with that domain (lower
    /// case, no final dot): each gets a certificate of its own, attached to its load
    /// balancer's HTTPS listener by SNI.
    pub fn customers_with_own_domain(&self) -> impl Iterator<Item = (&str, String)> {
        self.customers.iter().filter_map(|(name, customer)| {
            let domain = customer.get_ref().host();
            (!self.in_zone(&domain)).then(|| (name.get_ref().as_str(), domain))
        })
    }

    /// Whether `domain` is the `[dns]` zone or lies inside it.
    pub fn in_zone(&self, domain: &str) -> bool {
        self.dns.as_ref().is_some_and(|dns| {
            let zone = dns
                .zone
                .get_ref()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            domain == zone || domain.ends_with(&format!(".{zone}"))
        })
    }

    pub fn service_names(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(|k| k.get_ref().as_str())
    }
}

impl Service {
    pub fn port(&self) -> Option<u32> {
        self.port.as_ref().map(|p| *p.get_ref())
    }

    /// Whether the load balancer routes to this service.
    pub fn is_routed(&self) -> bool {
        self.port.is_some()
    }

    /// Whether this service's rule has no path condition (it takes the host's other traffic).
    pub fn is_catch_all(&self) -> bool {
        self.path
            .as_ref()
            .is_none_or(|p| p.get_ref() == "/*" || p.get_ref() == "*")
    }
}

impl Config {
    /// Applies a command-line override such as `image_tag=abc123` (every service),
    /// `services.api.image_tag=abc123` or `services.api.desired_count=3`, as a CI pipeline
    /// deploying a new image would.
    pub fn set(&mut self, assignment: &str) -> Result<(), String> {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| format!("`{assignment}`: expected KEY=VALUE"))?;
        let parts: Vec<&str> = key.trim().split('.').collect();
        let valid_tag = |v: &str| {
            !v.is_empty()
                && v.len() <= 128
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        };
        let set_tag = |svc: &mut Spanned<Service>| {
            let span = svc.get_ref().image_tag.span();
            svc.get_mut().image_tag = Spanned::new(span, value.to_owned());
        };
        match parts.as_slice() {
            ["image_tag"] => {
                if !valid_tag(value) {
                    return Err(format!("`{value}` is not a valid image tag"));
                }
                self.services.values_mut().for_each(set_tag);
            }
            ["services", name, field] => {
                let svc = self
                    .services
                    .iter_mut()
                    .find(|(k, _)| k.get_ref() == name)
                    .map(|(_, v)| v)
                    .ok_or_else(|| format!("`{key}`: no service `{name}`"))?;
                match *field {
                    "image_tag" if valid_tag(value) => set_tag(svc),
                    "image_tag" => return Err(format!("`{value}` is not a valid image tag")),
                    "desired_count" => {
                        let n: u32 =
                            value.parse().ok().filter(|n| *n <= 1000).ok_or_else(|| {
                                format!("`{key}`: `{value}` is not a task count (0-1000)")
                            })?;
                        let span = svc.get_ref().desired_count.span();
                        svc.get_mut().desired_count = Spanned::new(span, n);
                    }
                    other => {
                        return Err(format!(
                            "`{key}`: `{other}` cannot be set from the command line (image_tag, desired_count can)"
                        ));
                    }
                }
            }
            _ => {
                return Err(format!(
                    "`{key}` cannot be set from the command line; use image_tag, services.NAME.image_tag or services.NAME.desired_count"
                ));
            }
        }
        Ok(())
    }
}

/// `[waf]`: a WAFv2 web ACL of AWS managed rule groups, and an optional rate limit per client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waf {
    #[serde(default)]
    pub managed_rules: Vec<Spanned<String>>,
    /// Requests per 5 minutes one client IP may send before it is blocked.
    pub rate_limit: Option<Spanned<u64>>,
}

/// `[ci]`: where the stack is deployed from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ci {
    pub github: Spanned<GithubCi>,
}

/// `github = { repository = "org/repo", branches = ["main"] }`: the workflows allowed to deploy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubCi {
    pub repository: Spanned<String>,
    pub branches: Vec<Spanned<String>>,
}
