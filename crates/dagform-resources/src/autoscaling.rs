//! Application Auto Scaling: an ECS service's task count as a scalable target, and the
//! target-tracking policies that move it.

use dagform_core::ResourceError;
use dagform_derive::{Outputs, Properties};
use serde::{Deserialize, Serialize};

/// The service namespace and dimension of an ECS service's task count.
pub const ECS_NAMESPACE: &str = "ecs";
pub const ECS_DESIRED_COUNT: &str = "ecs:service:DesiredCount";

/// The predefined metrics a policy tracks.
pub const CPU_METRIC: &str = "ECSServiceAverageCPUUtilization";
pub const MEMORY_METRIC: &str = "ECSServiceAverageMemoryUtilization";
pub const REQUESTS_METRIC: &str = "ALBRequestCountPerTarget";

/// Application Auto Scaling's upper bound on a scalable target's capacity.
pub const MAX_CAPACITY: i32 = 1_000_000;

// --- aws_appautoscaling_target ---

/// `aws_appautoscaling_target`: a resource's capacity (an ECS service's desired count) that
/// scaling policies may move between `min_capacity` and `max_capacity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(
    name = "aws_appautoscaling_target",
    outputs = ScalableTargetOutputs,
    check = ScalableTargetProps::check
)]
pub struct ScalableTargetProps {
    #[kind(replace)]
    pub service_namespace: String,
    /// `service/CLUSTER/SERVICE` for an ECS service.
    #[kind(replace)]
    pub resource_id: String,
    #[kind(replace)]
    pub scalable_dimension: String,
    pub min_capacity: i32,
    pub max_capacity: i32,
}

impl ScalableTargetProps {
    fn check(&self) -> Result<(), ResourceError> {
        check_target_key(
            &self.service_namespace,
            &self.resource_id,
            &self.scalable_dimension,
        )?;
        if self.min_capacity < 0 || self.max_capacity > MAX_CAPACITY {
            return Err(ResourceError::invalid(format!(
                "capacity must lie between 0 and {MAX_CAPACITY}"
            )));
        }
        if self.min_capacity > self.max_capacity {
            return Err(ResourceError::invalid(format!(
                "min_capacity {} is above max_capacity {}",
                self.min_capacity, self.max_capacity
            )));
        }
        Ok(())
    }
}

/// The target's id is its resource id; `arn` is empty where the API gives none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct ScalableTargetOutputs {
    pub id: String,
    pub arn: String,
    pub resource_id: String,
}

// --- aws_appautoscaling_policy ---

/// `aws_appautoscaling_policy`: a target-tracking policy keeping one predefined metric of a
/// scalable target near `target_value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(
    name = "aws_appautoscaling_policy",
    outputs = ScalingPolicyOutputs,
    check = ScalingPolicyProps::check
)]
pub struct ScalingPolicyProps {
    #[kind(replace)]
    pub name: String,
    #[kind(replace)]
    pub service_namespace: String,
    #[kind(replace)]
    pub resource_id: String,
    #[kind(replace)]
    pub scalable_dimension: String,
    /// One of [`CPU_METRIC`], [`MEMORY_METRIC`], [`REQUESTS_METRIC`].
    pub predefined_metric: String,
    pub target_value: f64,
    /// For [`REQUESTS_METRIC`]: the load balancer and target group whose requests count,
    /// from which the metric's resource label is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group_arn: Option<String>,
}

impl ScalingPolicyProps {
    fn check(&self) -> Result<(), ResourceError> {
        let name_ok = (1..=256).contains(&self.name.len())
            && !self.name.chars().any(|c| c == ':' || c.is_control());
        if !name_ok {
            return Err(ResourceError::invalid(format!(
                "policy name `{}` must be 1-256 characters without `:`",
                self.name
            )));
        }
        check_target_key(
            &self.service_namespace,
            &self.resource_id,
            &self.scalable_dimension,
        )?;
        if !(self.target_value > 0.0 && self.target_value.is_finite()) {
            return Err(ResourceError::invalid(format!(
                "target_value {} must be above 0",
                self.target_value
            )));
        }
        match self.predefined_metric.as_str() {
            REQUESTS_METRIC => {
                self.resource_label()?;
            }
            CPU_METRIC | MEMORY_METRIC => {
                if self.load_balancer_arn.is_some() || self.target_group_arn.is_some() {
                    return Err(ResourceError::invalid(format!(
                        "{} takes no load balancer or target group",
                        self.predefined_metric
                    )));
                }
                if self.target_value > 100.0 {
                    return Err(ResourceError::invalid(format!(
                        "target_value {} is a percentage: at most 100",
                        self.target_value
                    )));
                }
            }
            other => {
                return Err(ResourceError::invalid(format!(
                    "predefined_metric `{other}` must be {CPU_METRIC}, {MEMORY_METRIC} or \
                     {REQUESTS_METRIC}"
                )));
            }
        }
        Ok(())
    }

    /// `app/LB/ID/targetgroup/TG/ID`, the label [`REQUESTS_METRIC`] needs; `None` for the
    /// other metrics.
    pub fn resource_label(&self) -> Result<Option<String>, ResourceError> {
        match (&self.load_balancer_arn, &self.target_group_arn) {
            (None, None) if self.predefined_metric != REQUESTS_METRIC => Ok(None),
            (Some(lb), Some(tg)) => resource_label(lb, tg).map(Some).ok_or_else(|| {
                ResourceError::invalid(format!(
                    "`{lb}` and `{tg}` are not an application load balancer's and a target \
                     group's ARNs"
                ))
            }),
            _ => Err(ResourceError::invalid(format!(
                "{REQUESTS_METRIC} needs both load_balancer_arn and target_group_arn"
            ))),
        }
    }
}

/// The resource label of requests to target group `tg_arn` through load balancer `lb_arn`:
/// the parts of their ARNs after `loadbalancer/` and `:`.
pub fn resource_label(lb_arn: &str, tg_arn: &str) -> Option<String> {
    let lb = lb_arn.split_once(":loadbalancer/")?.1;
    let tg = tg_arn.rsplit_once(':')?.1;
    (lb.starts_with("app/") && tg.starts_with("targetgroup/")).then(|| format!("{lb}/{tg}"))
}

fn check_target_key(
    namespace: &str,
    resource_id: &str,
    dimension: &str,
) -> Result<(), ResourceError> {
    if namespace.is_empty() || dimension.is_empty() {
        return Err(ResourceError::invalid(
            "service_namespace and scalable_dimension are required",
        ));
    }
    let ecs_ok = namespace != ECS_NAMESPACE
        || resource_id
            .strip_prefix("service/")
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(cluster, service)| {
                !cluster.is_empty() && !service.is_empty() && !service.contains('/')
            });
    if resource_id.is_empty() || !ecs_ok {
        return Err(ResourceError::invalid(format!(
            "resource_id `{resource_id}` must be service/CLUSTER/SERVICE for an ECS service"
        )));
    }
    Ok(())
}

/// The policy's id is its ARN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct ScalingPolicyOutputs {
    pub id: String,
    pub arn: String,
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_label_comes_from_both_arns() {
        let lb =
            "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/dev-alb/50dc6c495c0c9188";
        let tg = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/dev-api/943f017f100becff";
        assert_eq!(
            resource_label(lb, tg).as_deref(),
            Some("app/dev-alb/50dc6c495c0c9188/targetgroup/dev-api/943f017f100becff")
        );
        let nlb = "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/dev-nlb/1";
        assert_eq!(resource_label(nlb, tg), None);
    }

    #[test]
    fn policies_refuse_what_aws_would() {
        let policy = |metric: &str, value: f64, lb: Option<&str>| ScalingPolicyProps {
            name: "cpu".into(),
            service_namespace: ECS_NAMESPACE.into(),
            resource_id: "service/dev/api".into(),
            scalable_dimension: ECS_DESIRED_COUNT.into(),
            predefined_metric: metric.into(),
            target_value: value,
            load_balancer_arn: lb.map(str::to_owned),
            target_group_arn: lb.map(|_| "arn:aws:x:1:targetgroup/tg/1".to_owned()),
        };
        assert!(policy(CPU_METRIC, 60.0, None).check().is_ok());
        assert!(policy(CPU_METRIC, 160.0, None).check().is_err());
        assert!(policy(CPU_METRIC, 0.0, None).check().is_err());
        assert!(policy(REQUESTS_METRIC, 1000.0, None).check().is_err());
        let lb = "arn:aws:x:1:loadbalancer/app/lb/1";
        assert!(policy(REQUESTS_METRIC, 1000.0, Some(lb)).check().is_ok());
        assert!(policy("Other", 10.0, None).check().is_err());
        let mut bad_id = policy(CPU_METRIC, 60.0, None);
        bad_id.resource_id = "dev/api".into();
        assert!(bad_id.check().is_err());
    }
}
