//! Auto scaling of one deployment's services: per service with `autoscaling`, its task count
//! registered as a scalable target and a target-tracking policy per target it tracks. Each
//! customer's copy is a target of its own, so it scales on its own.

use super::services::Services;
use super::{Expansion, int};
use crate::model::Autoscaling;
use dagform_core::typed::{Input, outputs_of};
use dagform_core::{Address, NodeSpec};
use dagform_resources::autoscaling::{
    CPU_METRIC, ECS_DESIRED_COUNT, ECS_NAMESPACE, MEMORY_METRIC, REQUESTS_METRIC,
    ScalableTargetProps, ScalableTargetSpec, ScalingPolicySpec,
};
use dagform_resources::ecs::{ClusterProps, ServiceProps};
use dagform_resources::elbv2::{LoadBalancerProps, TargetGroupProps};

/// The stack's cluster node (see `cluster`), whose name the resource ids carry.
const CLUSTER: &str = "shared.cluster";

/// Where a deployment's services live and which load balancer counts their requests.
pub struct Scaled<'a> {
    /// The deployment's address, e.g. `customer.customer1` or `app`.
    pub base: &'a str,
    /// The start of its policy names, e.g. `dev-task-manager-customer1`.
    pub name_prefix: &'a str,
    pub load_balancer: &'a Address,
}

/// The scalable target and policies of every service of `deployment` with `autoscaling`.
pub fn scaling(x: &mut Expansion, deployment: &Scaled<'_>, services: &Services) {
    for (name, service) in services {
        let (name, service) = (name.get_ref().as_str(), service.get_ref());
        let Some(scaling) = &service.autoscaling else {
            continue;
        };
        let base = deployment.base;
        let service_node = Address::new(format!("{base}.service.{name}"));
        let resource_id = Input::concat([
            "service/".into(),
            outputs_of::<ClusterProps>(&Address::new(CLUSTER))
                .name
                .into(),
            "/".into(),
            outputs_of::<ServiceProps>(&service_node).name.into(),
        ]);
        let target = Address::new(format!("{base}.scaling_target.{name}"));
        x.add(NodeSpec::of(
            target.clone(),
            target_spec(scaling.get_ref(), resource_id),
        ));
        // The policies name the target by its resource id, so they wait for it to exist.
        let target_id = outputs_of::<ScalableTargetProps>(&target).resource_id;
        let requests = service.is_routed().then(|| {
            let target_group = Address::new(format!("{base}.target_group.{name}"));
            (
                outputs_of::<LoadBalancerProps>(deployment.load_balancer).arn,
                outputs_of::<TargetGroupProps>(&target_group).arn,
            )
        });
        for (metric, value, suffix) in tracked(scaling.get_ref()) {
            let (load_balancer_arn, target_group_arn) = match (&requests, metric) {
                (Some((lb, tg)), REQUESTS_METRIC) => (Some(lb.into()), Some(tg.into())),
                _ => (None, None),
            };
            x.add(NodeSpec::of(
                format!("{base}.scaling_policy.{name}.{suffix}"),
                ScalingPolicySpec {
                    name: format!("{}-{name}-{suffix}", deployment.name_prefix).into(),
                    service_namespace: ECS_NAMESPACE.into(),
                    resource_id: (&target_id).into(),
                    scalable_dimension: ECS_DESIRED_COUNT.into(),
                    predefined_metric: metric.into(),
                    target_value: Input::value(f64::from(value)),
                    load_balancer_arn,
                    target_group_arn,
                },
            ));
        }
    }
}

fn target_spec(scaling: &Autoscaling, resource_id: Input<String>) -> ScalableTargetSpec {
    ScalableTargetSpec {
        service_namespace: ECS_NAMESPACE.into(),
        resource_id,
        scalable_dimension: ECS_DESIRED_COUNT.into(),
        min_capacity: int(*scaling.min.get_ref()).into(),
        max_capacity: int(*scaling.max.get_ref()).into(),
    }
}

/// The targets `scaling` tracks: metric, value and the suffix of its policy's name.
fn tracked(scaling: &Autoscaling) -> Vec<(&'static str, u32, &'static str)> {
    [
        (CPU_METRIC, &scaling.cpu_target, "cpu"),
        (MEMORY_METRIC, &scaling.memory_target, "memory"),
        (REQUESTS_METRIC, &scaling.requests_per_target, "requests"),
    ]
    .into_iter()
    .filter_map(|(metric, value, suffix)| Some((metric, *value.as_ref()?.get_ref(), suffix)))
    .collect()
}
