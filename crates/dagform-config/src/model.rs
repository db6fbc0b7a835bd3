//! The shape of `dagform.toml`. Values that need checking beyond their type keep their
//! location (`Spanned`) so errors can name the line.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub stack: Stack,
    pub network: Network,
    pub dns: Dns,
    pub certificate: Certificate,
    #[serde(default)]
    pub registry: Registry,
    #[serde(default)]
    pub logs: Logs,
    #[serde(default)]
    pub load_balancer: LoadBalancer,
    pub services: IndexMap<Spanned<String>, Spanned<Service>>,
    #[serde(default)]
    pub customers: IndexMap<Spanned<String>, Spanned<Customer>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    pub app: Spanned<String>,
    pub environment: Spanned<String>,
    pub region: Spanned<String>,
    /// Defaults to `{environment}-{app}`; names the state file.
    pub name: Option<Spanned<String>>,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub cidr: Spanned<String>,
    pub availability_zones: Spanned<Vec<String>>,
    pub public_subnets: Spanned<Vec<String>>,
    pub private_subnets: Spanned<Vec<String>>,
    #[serde(default)]
    pub nat_gateways: NatGateways,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// An existing public hosted zone, looked up by name.
    pub zone: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub domain: Spanned<String>,
    #[serde(default)]
    pub alternative_names: Vec<Spanned<String>>,
    /// How long to wait for DNS validation before giving up.
    #[serde(default = "default_validation_minutes")]
    pub validation_timeout_minutes: u64,
}

fn default_validation_minutes() -> u64 {
    45
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Defaults to the app's name.
    pub name: Option<Spanned<String>>,
    pub keep_last_images: Option<Spanned<u32>>,
    #[serde(default)]
    pub immutable_tags: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    pub retention_days: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancer {
    pub idle_timeout_seconds: Option<Spanned<u32>>,
    pub ssl_policy: Option<Spanned<String>>,
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub domain: Spanned<String>,
    pub display_name: Spanned<String>,
    #[serde(default)]
    pub environment: IndexMap<String, String>,
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

    pub fn customer_names(&self) -> impl Iterator<Item = &str> {
        self.customers.keys().map(|k| k.get_ref().as_str())
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
