//! CloudWatch Logs: the log groups ECS tasks write to through the `awslogs` driver.

use dagform_core::ResourceError;
use dagform_derive::{Outputs, Properties};
use serde::{Deserialize, Serialize};

/// Retention periods CloudWatch Logs accepts; anything else is rejected by `PutRetentionPolicy`.
pub const RETENTION_DAYS: &[i32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// `aws_cloudwatch_log_group`: a log group with an optional retention period (none: its events
/// never expire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_cloudwatch_log_group", outputs = LogGroupOutputs, check = LogGroupProps::check)]
pub struct LogGroupProps {
    #[kind(replace)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_in_days: Option<i32>,
}

impl LogGroupProps {
    fn check(&self) -> Result<(), ResourceError> {
        let name_ok = (1..=512).contains(&self.name.len())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/#".contains(c));
        if !name_ok {
            return Err(ResourceError::invalid(format!(
                "log group name `{}` must be 1-512 characters of letters, digits and . _ - / #",
                self.name
            )));
        }
        if let Some(days) = self.retention_in_days
            && !RETENTION_DAYS.contains(&days)
        {
            return Err(ResourceError::invalid(format!(
                "retention_in_days {days} is not one CloudWatch Logs accepts ({})",
                RETENTION_DAYS
                    .iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }
}

/// The group's name is its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct LogGroupOutputs {
    pub id: String,
    pub name: String,
    /// Without the `:*` suffix DescribeLogGroups puts on it: what IAM policies and tags use.
    pub arn: String,
}
