//! WAFv2: a web ACL of AWS managed rule groups (and a rate limit per client IP) in front of
//! the stack's load balancers.

use dagform_core::ResourceError;
use dagform_derive::{Outputs, Properties};
use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;

/// The managed rule groups AWS publishes (vendor `AWS`) that `[waf] managed_rules` may name.
pub const MANAGED_RULE_GROUPS: &[&str] = &[
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesAdminProtectionRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesSQLiRuleSet",
    "AWSManagedRulesLinuxRuleSet",
    "AWSManagedRulesUnixRuleSet",
    "AWSManagedRulesWindowsRuleSet",
    "AWSManagedRulesPHPRuleSet",
    "AWSManagedRulesWordPressRuleSet",
    "AWSManagedRulesAmazonIpReputationList",
    "AWSManagedRulesAnonymousIpList",
    "AWSManagedRulesBotControlRuleSet",
    "AWSManagedRulesATPRuleSet",
    "AWSManagedRulesACFPRuleSet",
    "AWSManagedRulesAntiDDoSRuleSet",
];

/// Requests per evaluation window a rate-based statement accepts as its limit.
pub const RATE_LIMIT_RANGE: RangeInclusive<u64> = 10..=2_000_000_000;

/// The vendor of every group in [`MANAGED_RULE_GROUPS`].
pub const AWS_VENDOR: &str = "AWS";

/// The name of the rate-based rule, after the managed groups.
pub const RATE_RULE_NAME: &str = "rate-limit-per-ip";

/// `aws_wafv2_web_acl`: a regional web ACL allowing by default, running each managed rule group
/// with its own actions (override none) in the order given, then blocking a client IP over
/// `rate_limit` requests per 5 minutes. Its id is its ARN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_wafv2_web_acl", outputs = WebAclOutputs, check = WebAclProps::check)]
pub struct WebAclProps {
    #[kind(replace)]
    pub name: String,
    /// `REGIONAL` (load balancers); `CLOUDFRONT` ACLs live in us-east-1 only.
    #[kind(replace)]
    pub scope: String,
    pub managed_rule_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<i64>,
}

impl WebAclProps {
    fn check(&self) -> Result<(), ResourceError> {
        let name_ok = (1..=128).contains(&self.name.len())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
        if !name_ok {
            return Err(ResourceError::invalid(format!(
                "web ACL name `{}` must be 1-128 letters, digits, `_` or `-`",
                self.name
            )));
        }
        if self.scope != "REGIONAL" {
            return Err(ResourceError::invalid(format!(
                "scope `{}` is not supported (REGIONAL is)",
                self.scope
            )));
        }
        if let Some(g) = self
            .managed_rule_groups
            .iter()
            .find(|g| !MANAGED_RULE_GROUPS.contains(&g.as_str()))
        {
            return Err(ResourceError::invalid(format!(
                "`{g}` is not an AWS managed rule group"
            )));
        }
        if let Some(limit) = self.rate_limit
            && !u64::try_from(limit).is_ok_and(|l| RATE_LIMIT_RANGE.contains(&l))
        {
            return Err(ResourceError::invalid(format!(
                "rate_limit {limit} must be between {} and {}",
                RATE_LIMIT_RANGE.start(),
                RATE_LIMIT_RANGE.end()
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct WebAclOutputs {
    /// The ARN.
    pub id: String,
    pub arn: String,
    /// WAF's own id of the ACL (the last part of the ARN).
    pub acl_id: String,
    pub name: String,
}

/// `aws_wafv2_web_acl_association`: a web ACL protecting one resource (a load balancer). Its id
/// is the resource's ARN: a resource has at most one web ACL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_wafv2_web_acl_association", outputs = WebAclAssociationOutputs, check = WebAclAssociationProps::check)]
pub struct WebAclAssociationProps {
    #[kind(replace)]
    pub web_acl_arn: String,
    #[kind(replace)]
    pub resource_arn: String,
}

impl WebAclAssociationProps {
    fn check(&self) -> Result<(), ResourceError> {
        for (field, arn) in [
            ("web_acl_arn", &self.web_acl_arn),
            ("resource_arn", &self.resource_arn),
        ] {
            if !arn.starts_with("arn:") {
                return Err(ResourceError::invalid(format!(
                    "{field} `{arn}` must be an ARN"
                )));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct WebAclAssociationOutputs {
    pub id: String,
}
