//! Elastic Load Balancing v2: application load balancers, their target groups, listeners and
//! listener rules.

use dagform_core::{Input, ResourceError, Value, ValueMap};
use dagform_derive::{Outputs, Properties};
use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;

/// `aws_lb`: an application load balancer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_lb", outputs = LoadBalancerOutputs, check = LoadBalancerProps::check)]
pub struct LoadBalancerProps {
    #[kind(replace)]
    pub name: String,
    /// `internet-facing` or `internal`.
    #[kind(replace)]
    pub scheme: String,
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<i32>,
}

impl LoadBalancerProps {
    fn check(&self) -> Result<(), ResourceError> {
        check_elb_name("load balancer", &self.name)?;
        if self.name.starts_with("internal-") {
            return Err(ResourceError::invalid(format!(
                "load balancer name `{}` must not begin with `internal-`",
                self.name
            )));
        }
        if !matches!(self.scheme.as_str(), "internet-facing" | "internal") {
            return Err(ResourceError::invalid(format!(
                "scheme must be `internet-facing` or `internal`, got `{}`",
                self.scheme
            )));
        }
        if self.subnet_ids.len() < 2 {
            return Err(ResourceError::invalid(
                "an application load balancer needs subnets in at least two Availability Zones",
            ));
        }
        if let Some(t) = self.idle_timeout_seconds {
            check_range("idle_timeout_seconds", t, 1..=4000)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct LoadBalancerOutputs {
    pub id: String,
    pub arn: String,
    pub dns_name: String,
    /// The Route 53 zone an alias record to the load balancer names.
    pub canonical_hosted_zone_id: String,
    pub name: String,
}

/// `aws_lb_target_group`: where a load balancer sends traffic, and how it checks health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(
    name = "aws_lb_target_group",
    outputs = TargetGroupOutputs,
    check = TargetGroupProps::check
)]
pub struct TargetGroupProps {
    #[kind(replace)]
    pub name: String,
    /// `HTTP` or `HTTPS`.
    #[kind(replace)]
    pub protocol: String,
    #[kind(replace)]
    pub port: i32,
    #[kind(replace)]
    pub vpc_id: String,
    /// `ip` or `instance`.
    #[kind(replace)]
    pub target_type: String,
    pub health_check: HealthCheck,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregistration_delay_seconds: Option<i32>,
}

/// How a target group checks its targets. `protocol` and `matcher` default to AWS's own
/// (`HTTP`, `200`) when left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(nested)]
pub struct HealthCheck {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    pub interval_seconds: i32,
    pub timeout_seconds: i32,
    pub healthy_threshold: i32,
    pub unhealthy_threshold: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<String>,
}

fn is_http(protocol: &str) -> bool {
    matches!(protocol, "HTTP" | "HTTPS")
}

impl TargetGroupProps {
    fn check(&self) -> Result<(), ResourceError> {
        check_elb_name("target group", &self.name)?;
        if !is_http(&self.protocol) {
            return Err(ResourceError::invalid(format!(
                "protocol must be HTTP or HTTPS for an application load balancer, got `{}`",
                self.protocol
            )));
        }
        check_range("port", self.port, 1..=65535)?;
        if !matches!(self.target_type.as_str(), "ip" | "instance") {
            return Err(ResourceError::invalid(format!(
                "target_type must be `ip` or `instance`, got `{}`",
                self.target_type
            )));
        }
        self.health_check.check()?;
        if let Some(d) = self.deregistration_delay_seconds {
            check_range("deregistration_delay_seconds", d, 0..=3600)?;
        }
        Ok(())
    }
}

impl HealthCheck {
    fn check(&self) -> Result<(), ResourceError> {
        if !self.path.starts_with('/') || self.path.len() > 1024 {
            return Err(ResourceError::invalid(format!(
                "health_check.path must start with `/` and be at most 1024 characters, got `{}`",
                self.path
            )));
        }
        if let Some(proto) = &self.protocol
            && !is_http(proto)
        {
            return Err(ResourceError::invalid(format!(
                "health_check.protocol must be HTTP or HTTPS, got `{proto}`"
            )));
        }
        check_range(
            "health_check.interval_seconds",
            self.interval_seconds,
            5..=300,
        )?;
        check_range(
            "health_check.timeout_seconds",
            self.timeout_seconds,
            2..=120,
        )?;
        if self.timeout_seconds >= self.interval_seconds {
            return Err(ResourceError::invalid(format!(
                "health_check.timeout_seconds ({}) must be smaller than interval_seconds ({})",
                self.timeout_seconds, self.interval_seconds
            )));
        }
        check_range(
            "health_check.healthy_threshold",
            self.healthy_threshold,
            2..=10,
        )?;
        check_range(
            "health_check.unhealthy_threshold",
            self.unhealthy_threshold,
            2..=10,
        )?;
        if self.matcher.as_deref() == Some("") {
            return Err(ResourceError::invalid(
                "health_check.matcher must not be empty",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct TargetGroupOutputs {
    pub id: String,
    pub arn: String,
    pub name: String,
    /// The resource part of the ARN (`targetgroup/name/id`), which CloudWatch metrics name.
    pub arn_suffix: String,
}

/// `aws_lb_listener`: a port and protocol a load balancer accepts, and what it does with a
/// request no rule matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_lb_listener", outputs = ListenerOutputs, check = ListenerProps::check)]
pub struct ListenerProps {
    #[kind(replace)]
    pub load_balancer_arn: String,
    pub port: i32,
    /// `HTTP` or `HTTPS`.
    pub protocol: String,
    /// Required by HTTPS, refused by HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_arn: Option<String>,
    /// HTTPS only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_policy: Option<String>,
    pub default_action: DefaultAction,
}

impl ListenerProps {
    fn check(&self) -> Result<(), ResourceError> {
        check_range("port", self.port, 1..=65535)?;
        match self.protocol.as_str() {
            "HTTPS" if self.certificate_arn.is_none() => {
                return Err(ResourceError::invalid(
                    "an HTTPS listener needs certificate_arn",
                ));
            }
            "HTTPS" => {}
            "HTTP" if self.certificate_arn.is_some() || self.ssl_policy.is_some() => {
                return Err(ResourceError::invalid(
                    "an HTTP listener takes neither certificate_arn nor ssl_policy",
                ));
            }
            "HTTP" => {}
            other => {
                return Err(ResourceError::invalid(format!(
                    "protocol must be HTTP or HTTPS, got `{other}`"
                )));
            }
        }
        self.default_action.check()
    }
}

/// What a listener does with requests no rule matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DefaultAction {
    Forward {
        target_group_arn: String,
    },
    /// `protocol` and `port` may be `#{protocol}` and `#{port}`: those of the request.
    Redirect {
        protocol: String,
        port: String,
        /// `HTTP_301` or `HTTP_302`.
        status_code: String,
    },
    FixedResponse {
        status_code: String,
        content_type: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_body: Option<String>,
    },
}

/// The content types a fixed response may have.
const CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "text/css",
    "text/html",
    "application/javascript",
    "application/json",
];

impl DefaultAction {
    /// A forward to a target group whose ARN may be another node's output, as the blueprint
    /// gives it.
    pub fn forward_to(target_group_arn: impl Into<Input<String>>) -> Input<DefaultAction> {
        let action = ValueMap::from([
            ("type".to_owned(), Value::from("forward")),
            (
                "target_group_arn".to_owned(),
                target_group_arn.into().into_value(),
            ),
        ]);
        Input::untyped(Value::Map(action).partially_resolve(&|_| None))
    }

    fn check(&self) -> Result<(), ResourceError> {
        match self {
            DefaultAction::Forward { .. } => Ok(()),
            DefaultAction::Redirect {
                protocol,
                port,
                status_code,
            } => {
                if !matches!(protocol.as_str(), "HTTP" | "HTTPS" | "#{protocol}") {
                    return Err(ResourceError::invalid(format!(
                        "default_action.protocol must be HTTP, HTTPS or #{{protocol}}, got `{protocol}`"
                    )));
                }
                if port != "#{port}" && !port.parse::<u16>().is_ok_and(|p| p > 0) {
                    return Err(ResourceError::invalid(format!(
                        "default_action.port must be a port number or #{{port}}, got `{port}`"
                    )));
                }
                if !matches!(status_code.as_str(), "HTTP_301" | "HTTP_302") {
                    return Err(ResourceError::invalid(format!(
                        "default_action.status_code must be HTTP_301 or HTTP_302, got `{status_code}`"
                    )));
                }
                Ok(())
            }
            DefaultAction::FixedResponse {
                status_code,
                content_type,
                message_body,
            } => {
                let code_ok = status_code.len() == 3
                    && status_code.chars().all(|c| c.is_ascii_digit())
                    && matches!(status_code.as_bytes()[0], b'2' | b'4' | b'5');
                if !code_ok {
                    return Err(ResourceError::invalid(format!(
                        "default_action.status_code must be a 2XX, 4XX or 5XX code, got `{status_code}`"
                    )));
                }
                if !CONTENT_TYPES.contains(&content_type.as_str()) {
                    return Err(ResourceError::invalid(format!(
                        "default_action.content_type must be one of {}, got `{content_type}`",
                        CONTENT_TYPES.join(", ")
                    )));
                }
                if message_body.as_ref().is_some_and(|b| b.len() > 1024) {
                    return Err(ResourceError::invalid(
                        "default_action.message_body must be at most 1024 characters",
                    ));
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct ListenerOutputs {
    pub id: String,
    pub arn: String,
}

/// AWS allows three values per condition and five per rule.
const MAX_VALUES_PER_CONDITION: usize = 3;
const MAX_VALUES_PER_RULE: usize = 5;

/// `aws_lb_listener_rule`: forwards requests matching host names (and paths) to a target group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(
    name = "aws_lb_listener_rule",
    outputs = ListenerRuleOutputs,
    check = ListenerRuleProps::check
)]
pub struct ListenerRuleProps {
    #[kind(replace)]
    pub listener_arn: String,
    /// Unique per listener; lower numbers are matched first.
    pub priority: i32,
    pub host_headers: Vec<String>,
    #[serde(default)]
    pub path_patterns: Vec<String>,
    pub target_group_arn: String,
}

impl ListenerRuleProps {
    fn check(&self) -> Result<(), ResourceError> {
        check_range("priority", self.priority, 1..=50000)?;
        if self.host_headers.is_empty() && self.path_patterns.is_empty() {
            return Err(ResourceError::invalid(
                "a listener rule needs at least one host header or path pattern",
            ));
        }
        for (what, values) in [
            ("host_headers", &self.host_headers),
            ("path_patterns", &self.path_patterns),
        ] {
            if values.len() > MAX_VALUES_PER_CONDITION {
                return Err(ResourceError::invalid(format!(
                    "{what} may hold at most {MAX_VALUES_PER_CONDITION} values, got {}",
                    values.len()
                )));
            }
            if let Some(v) = values.iter().find(|v| v.is_empty() || v.len() > 128) {
                return Err(ResourceError::invalid(format!(
                    "{what} values must be 1 to 128 characters long, got `{v}`"
                )));
            }
        }
        let total = self.host_headers.len() + self.path_patterns.len();
        if total > MAX_VALUES_PER_RULE {
            return Err(ResourceError::invalid(format!(
                "a listener rule may match at most {MAX_VALUES_PER_RULE} values in all, got {total}"
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct ListenerRuleOutputs {
    pub id: String,
    pub arn: String,
}

/// `aws_lb_listener_certificate`: a certificate added to an HTTPS listener besides its default
/// one, which the listener serves to clients asking for its names (SNI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(
    name = "aws_lb_listener_certificate",
    outputs = ListenerCertificateOutputs,
    check = ListenerCertificateProps::check
)]
pub struct ListenerCertificateProps {
    #[kind(replace)]
    pub listener_arn: String,
    #[kind(replace)]
    pub certificate_arn: String,
}

impl ListenerCertificateProps {
    fn check(&self) -> Result<(), ResourceError> {
        for (what, arn) in [
            ("listener_arn", &self.listener_arn),
            ("certificate_arn", &self.certificate_arn),
        ] {
            if !arn.starts_with("arn:") {
                return Err(ResourceError::invalid(format!(
                    "{what} must be an ARN, got `{arn}`"
                )));
            }
        }
        Ok(())
    }

    /// The id of the attachment: listener and certificate, which together name it.
    pub fn id(&self) -> String {
        format!(
            "{}{LISTENER_CERTIFICATE_SEPARATOR}{}",
            self.listener_arn, self.certificate_arn
        )
    }
}

/// Between the listener's and the certificate's ARN in a listener certificate's id; ARNs hold
/// no spaces.
pub const LISTENER_CERTIFICATE_SEPARATOR: &str = " ";

/// The listener and certificate ARNs a listener certificate's id names.
pub fn listener_certificate_parts(id: &str) -> Option<(&str, &str)> {
    id.split_once(LISTENER_CERTIFICATE_SEPARATOR)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct ListenerCertificateOutputs {
    pub id: String,
    /// The listener, for what must wait until it serves the certificate.
    pub listener_arn: String,
    pub certificate_arn: String,
}

impl ListenerCertificateOutputs {
    pub fn of(p: &ListenerCertificateProps) -> Self {
        Self {
            id: p.id(),
            listener_arn: p.listener_arn.clone(),
            certificate_arn: p.certificate_arn.clone(),
        }
    }
}

/// Load balancer and target group names: at most 32 alphanumerics and hyphens, no hyphen at
/// either end. AWS rejects anything else; the emulator does not check all of it.
fn check_elb_name(what: &str, name: &str) -> Result<(), ResourceError> {
    if name.is_empty() || name.len() > 32 {
        return Err(ResourceError::invalid(format!(
            "{what} name `{name}` must be 1 to 32 characters long (it has {})",
            name.len()
        )));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(ResourceError::invalid(format!(
            "{what} name `{name}` may only contain letters, digits and hyphens"
        )));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(ResourceError::invalid(format!(
            "{what} name `{name}` must not begin or end with a hyphen"
        )));
    }
    Ok(())
}

/// `value` must lie in `range`, or the properties are invalid.
fn check_range(what: &str, value: i32, range: RangeInclusive<i32>) -> Result<(), ResourceError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ResourceError::invalid(format!(
            "{what} must be between {} and {}, got {value}",
            range.start(),
            range.end()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagform_core::{OutputRef, Reference};
    use serde_json::json;

    #[test]
    fn names_follow_aws_rules() {
        assert!(check_elb_name("target group", "dev-customer1-backend-api-tg").is_ok());
        assert!(check_elb_name("target group", &"a".repeat(32)).is_ok());
        assert!(check_elb_name("target group", &"a".repeat(33)).is_err());
        assert!(check_elb_name("target group", "-abc").is_err());
        assert!(check_elb_name("target group", "abc-").is_err());
        assert!(check_elb_name("target group", "a_b").is_err());
        assert!(check_elb_name("target group", "").is_err());
    }

    #[test]
    fn default_actions_parse_by_type() {
        let a: DefaultAction = serde_json::from_value(json!({
            "type": "redirect", "protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"
        }))
        .unwrap();
        assert!(a.check().is_ok());
        let bad = serde_json::from_value::<DefaultAction>(json!({
            "type": "forward", "target_group_arn": "x", "extra": 1
        }));
        assert!(bad.is_err());
    }

    #[test]
    fn a_forward_may_name_another_nodes_target_group() {
        let plain = DefaultAction::forward_to("arn:tg").into_value();
        assert_eq!(
            plain.as_data(),
            Some(&json!({ "type": "forward", "target_group_arn": "arn:tg" }))
        );
        let referenced =
            DefaultAction::forward_to(OutputRef::<String>::new("app.tg".into(), "arn"));
        assert_eq!(
            referenced.as_value().references(),
            vec![&Reference::new("app.tg", "arn")]
        );
    }
}
