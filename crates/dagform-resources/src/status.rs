//! What `status` shows of live objects: the typed views kinds report through `inspect`.
//!
//! A view holds what AWS says of one recorded object right now (health, rollout, issuance),
//! not its properties: those are in the state already.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// What `inspect` found under a recorded object's id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inspected<V> {
    /// The object exists; this is how it is doing.
    Live(V),
    /// The state records the object but AWS no longer has it.
    Gone,
}

impl<V: Serialize> Inspected<V> {
    /// The view as `ResourceKind::inspect` hands it over.
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).expect("a view is plain data")
    }
}

/// `aws_lb`: a load balancer as ELBv2 describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadBalancerView {
    pub name: String,
    /// `provisioning`, `active`, `active_impaired` or `failed`.
    pub state: String,
    /// Why it is in that state, when ELBv2 says.
    pub reason: Option<String>,
    pub scheme: Option<String>,
    pub dns_name: Option<String>,
}

/// `aws_acm_certificate`: issuance and use of a certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertificateView {
    pub domain: Option<String>,
    /// `PENDING_VALIDATION`, `ISSUED`, `FAILED`…
    pub status: String,
    /// Every name the certificate covers.
    pub names: Vec<String>,
    /// Domains whose DNS validation has not succeeded yet.
    pub pending_validation: Vec<String>,
    /// How many AWS resources (listeners) use it.
    pub in_use_by: usize,
    pub not_after: Option<String>,
}

/// `aws_ecs_service`: task counts, the rollout under way and the latest event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    /// `ACTIVE` or `DRAINING` (an `INACTIVE` service is [`Inspected::Gone`]).
    pub status: String,
    pub desired: i32,
    pub running: i32,
    pub pending: i32,
    /// The deployment new tasks come from.
    pub primary: Option<DeploymentView>,
    /// More than one while a rollout replaces old tasks.
    pub deployments: usize,
    /// The task definition the service runs, as `family:revision`.
    pub task_definition: Option<String>,
    pub revision: Option<u32>,
    pub last_event: Option<ServiceEvent>,
}

/// One deployment of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentView {
    /// `IN_PROGRESS`, `COMPLETED` or `FAILED`.
    pub rollout: Option<String>,
    pub rollout_reason: Option<String>,
    pub failed_tasks: i32,
}

/// A message from a service's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceEvent {
    pub at: Option<String>,
    pub message: String,
}

/// `aws_lb_target_group`: the group's health check and how its targets are doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetGroupView {
    /// `None` (with the health check) when the group's details could not be read.
    pub port: Option<i32>,
    pub health_check_path: Option<String>,
    /// How many load balancers route to it (0: no listener rule uses it).
    pub load_balancers: usize,
    pub targets: TargetCounts,
}

/// Targets of a group, counted by health state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetCounts {
    pub healthy: u32,
    pub unhealthy: u32,
    pub initial: u32,
    pub unused: u32,
    pub draining: u32,
    /// Any other state (`unavailable`, or one this build does not know).
    pub unavailable: u32,
}

/// `aws_lb_listener`: the listener's rules in ELBv2's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerView {
    pub rules: Vec<RuleView>,
}

/// One listener rule: what it matches and where it sends requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleView {
    pub arn: Option<String>,
    /// `None` for the listener's default rule.
    pub priority: Option<u32>,
    pub hosts: Vec<String>,
    pub paths: Vec<String>,
    /// The first action's type (`forward`, `fixed-response`…), `none` without one.
    pub action: String,
    /// Names of the target groups the action forwards to, sorted.
    pub target_groups: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_travel_as_json_and_back() {
        let live = Inspected::Live(TargetGroupView {
            port: Some(3000),
            health_check_path: Some("/".into()),
            load_balancers: 1,
            targets: TargetCounts {
                healthy: 2,
                ..TargetCounts::default()
            },
        });
        let json = live.to_json();
        assert_eq!(json["live"]["targets"]["healthy"], 2);
        assert_eq!(serde_json::from_value::<Inspected<_>>(json).unwrap(), live);

        let gone = Inspected::<TargetGroupView>::Gone;
        assert_eq!(gone.to_json(), "gone");
        assert_eq!(
            serde_json::from_value::<Inspected<_>>(gone.to_json()).unwrap(),
            gone
        );
    }
}
