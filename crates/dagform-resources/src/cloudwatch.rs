//! CloudWatch alarms: a metric watched against a threshold, notifying a topic when it breaches
//! and when it recovers.

use dagform_core::ResourceError;
use dagform_derive::{Outputs, Properties};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Comparison operators PutMetricAlarm accepts for a static threshold.
pub const COMPARISON_OPERATORS: &[&str] = &[
    "GreaterThanOrEqualToThreshold",
    "GreaterThanThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
];

/// What an alarm does while the metric has no data.
pub const TREAT_MISSING_DATA: &[&str] = &["breaching", "notBreaching", "ignore", "missing"];

pub const STATISTICS: &[&str] = &["SampleCount", "Average", "Sum", "Minimum", "Maximum"];

/// `aws_cloudwatch_metric_alarm`: a standard alarm on one metric, or on one metric as a
/// percentage of another. Its id is its name; every property but the name changes in place
/// (PutMetricAlarm overwrites the whole alarm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_cloudwatch_metric_alarm", outputs = MetricAlarmOutputs, check = MetricAlarmProps::check)]
pub struct MetricAlarmProps {
    #[kind(replace)]
    pub name: String,
    pub description: String,
    pub namespace: String,
    pub metric_name: String,
    /// Dimension name → value. A load balancer or target group may be given by its full ARN:
    /// CloudWatch names them by the resource part (`app/…`, `targetgroup/…`), which the kind
    /// sends.
    pub dimensions: BTreeMap<String, String>,
    pub statistic: String,
    /// Seconds: 10, 30 or a multiple of 60.
    pub period: i32,
    pub evaluation_periods: i32,
    pub threshold: f64,
    pub comparison_operator: String,
    pub treat_missing_data: String,
    /// Topics notified on entering ALARM and on returning to OK.
    pub alarm_actions: Vec<String>,
    pub ok_actions: Vec<String>,
    /// When set, the alarm watches `metric_name` as a percentage of this metric, both taken
    /// with the same namespace, dimensions, statistic and period (a metric-math alarm:
    /// [`percent_expression`]). A period without `metric_name` counts as 0%, one without this
    /// metric as missing data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_of: Option<String>,
}

/// The ids a percentage alarm's queries go by: the metric, the metric it is a share of, and
/// the share the threshold is compared with.
pub const PART_QUERY: &str = "part";
pub const WHOLE_QUERY: &str = "whole";
pub const PERCENT_QUERY: &str = "percent";

/// The metric-math expression of a percentage alarm. `FILL` counts a period without the part
/// (no 5xx at all, say) as 0 rather than missing; a period without the whole stays missing.
pub fn percent_expression() -> String {
    format!("100 * FILL({PART_QUERY}, 0) / {WHOLE_QUERY}")
}

impl MetricAlarmProps {
    fn check(&self) -> Result<(), ResourceError> {
        if !(1..=255).contains(&self.name.len()) || self.name.chars().any(char::is_control) {
            return Err(ResourceError::invalid(format!(
                "alarm name `{}` must be 1-255 printable characters",
                self.name
            )));
        }
        let one_of = |what: &str, v: &str, allowed: &[&str]| {
            if allowed.contains(&v) {
                Ok(())
            } else {
                Err(ResourceError::invalid(format!(
                    "{what} `{v}` is not one of {}",
                    allowed.join(", ")
                )))
            }
        };
        one_of(
            "comparison_operator",
            &self.comparison_operator,
            COMPARISON_OPERATORS,
        )?;
        one_of(
            "treat_missing_data",
            &self.treat_missing_data,
            TREAT_MISSING_DATA,
        )?;
        one_of("statistic", &self.statistic, STATISTICS)?;
        if !(matches!(self.period, 10 | 30) || (self.period >= 60 && self.period % 60 == 0)) {
            return Err(ResourceError::invalid(format!(
                "period {} must be 10, 30 or a multiple of 60 seconds",
                self.period
            )));
        }
        if self.evaluation_periods < 1 {
            return Err(ResourceError::invalid(
                "evaluation_periods must be at least 1",
            ));
        }
        if let Some(whole) = &self.percent_of
            && (whole.is_empty() || *whole == self.metric_name)
        {
            return Err(ResourceError::invalid(format!(
                "percent_of `{whole}` must name a metric other than `{}`",
                self.metric_name
            )));
        }
        if self.dimensions.len() > 30 {
            return Err(ResourceError::invalid(
                "an alarm takes at most 30 dimensions",
            ));
        }
        Ok(())
    }
}

/// The value CloudWatch uses for a dimension given as an ELB ARN: its resource part
/// (`app/name/id`, `targetgroup/name/id`); anything else is sent as it is.
pub fn dimension_value(value: &str) -> &str {
    if !value.starts_with("arn:") || !value.contains(":elasticloadbalancing:") {
        return value;
    }
    let resource = value.splitn(6, ':').nth(5).unwrap_or(value);
    resource.strip_prefix("loadbalancer/").unwrap_or(resource)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct MetricAlarmOutputs {
    pub id: String,
    pub arn: String,
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::dimension_value;

    #[test]
    fn elb_arns_become_the_names_cloudwatch_uses() {
        assert_eq!(
            dimension_value(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/dev-alb/50dc6c495c0c9188"
            ),
            "app/dev-alb/50dc6c495c0c9188"
        );
        assert_eq!(
            dimension_value(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/dev-web/6d0ecf831eec9f09"
            ),
            "targetgroup/dev-web/6d0ecf831eec9f09"
        );
        assert_eq!(dimension_value("dev-app-cluster"), "dev-app-cluster");
    }
}
