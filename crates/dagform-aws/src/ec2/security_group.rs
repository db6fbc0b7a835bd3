//! `aws_security_group` (created without rules) and `aws_security_group_rule` (one rule per
//! node, so groups can reference each other without a cycle).

use super::{
    FILTER_BATCH, check_cidr, filter, filter_ids, is_owned, not_yet_visible, owned_by, tag_spec,
    until_visible,
};
use crate::AwsClients;
use crate::clients::{by_id, each_item};
use crate::error::{classify, code, is_not_found, parse};
use aws_sdk_ec2::types::{
    IpPermission, IpRange, ResourceType, SecurityGroupRuleRequest, SecurityGroupRuleUpdate,
    UserIdGroupPair,
};
use dagform_core::{
    Applied, Current, Observed, OpContext, Properties, ResourceError, ResourceKind,
};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Characters AWS allows in a VPC security group's name and description, and in a rule's
/// description.
fn check_sg_text(what: &str, value: &str, allow_empty: bool) -> Result<(), ResourceError> {
    const EXTRA: &str = " ._-:/()#,@[]+=&;{}!$*";
    let len = value.chars().count();
    if (len == 0 && !allow_empty) || len > 255 {
        return Err(ResourceError::invalid(format!(
            "{what} `{value}` must be {} to 255 characters long",
            if allow_empty { 0 } else { 1 }
        )));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !EXTRA.contains(*c))
    {
        return Err(ResourceError::invalid(format!(
            "{what} `{value}` contains `{bad}`; allowed are letters, digits, spaces and {}",
            EXTRA.trim()
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecurityGroupProps {
    name: String,
    description: String,
    vpc_id: String,
    revoke_default_egress: bool,
}

impl SecurityGroupProps {
    fn parse(props: &Properties) -> Result<Self, ResourceError> {
        let p: Self = parse(props)?;
        check_sg_text("name", &p.name, false)?;
        if p.name.to_ascii_lowercase().starts_with("sg-") {
            return Err(ResourceError::invalid(format!(
                "security group name `{}` must not start with `sg-`",
                p.name
            )));
        }
        check_sg_text("description", &p.description, false)?;
        Ok(p)
    }
}

/// The allow-all IPv4 egress rule AWS gives every new VPC security group.
fn default_egress() -> IpPermission {
    IpPermission::builder()
        .ip_protocol("-1")
        .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .build()
}

fn has_default_egress(group: &aws_sdk_ec2::types::SecurityGroup) -> bool {
    group.ip_permissions_egress().iter().any(|p| {
        p.ip_protocol() == Some("-1")
            && p.ip_ranges()
                .iter()
                .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
    })
}

/// A live group in the shape of the desired properties.
fn observe_group(group: &aws_sdk_ec2::types::SecurityGroup, current: Current<'_>) -> Observed {
    let mut properties = Properties::new();
    let fields = [
        ("name", group.group_name()),
        ("description", group.description()),
        ("vpc_id", group.vpc_id()),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            properties.insert(key.into(), json!(v));
        }
    }
    properties.insert(
        "revoke_default_egress".into(),
        json!(!has_default_egress(group)),
    );
    Observed {
        properties,
        outputs: Applied::new(current.id).outputs,
    }
}

/// `aws_security_group`: a VPC security group without rules of its own; its rules are
/// `aws_security_group_rule` nodes. Optionally without the default allow-all egress.
pub struct SecurityGroup {
    clients: Arc<AwsClients>,
}

impl SecurityGroup {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    /// Removes (`revoke`) or restores the default egress rule; already so is fine.
    async fn set_default_egress(
        &self,
        ctx: &OpContext,
        id: &str,
        revoke: bool,
    ) -> Result<(), ResourceError> {
        let ec2 = &self.clients.ec2;
        if revoke {
            let req = ec2
                .revoke_security_group_egress()
                .group_id(id)
                .ip_permissions(default_egress());
            until_visible(ctx, "RevokeSecurityGroupEgress", move || {
                let req = req.clone();
                async move {
                    match req.send().await {
                        Err(e) if code(&e) == Some("InvalidPermission.NotFound") => Ok(()),
                        other => other.map(drop),
                    }
                }
            })
            .await
        } else {
            let req = ec2
                .authorize_security_group_egress()
                .group_id(id)
                .ip_permissions(default_egress());
            until_visible(ctx, "AuthorizeSecurityGroupEgress", move || {
                let req = req.clone();
                async move {
                    match req.send().await {
                        Err(e) if code(&e) == Some("InvalidPermission.Duplicate") => Ok(()),
                        other => other.map(drop),
                    }
                }
            })
            .await
        }
    }

    async fn describe(
        &self,
        id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::SecurityGroup>, ResourceError> {
        match self
            .clients
            .ec2
            .describe_security_groups()
            .group_ids(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.security_groups().first().cloned()),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(classify("DescribeSecurityGroups", e)),
        }
    }
}

#[async_trait::async_trait]
impl ResourceKind for SecurityGroup {
    fn name(&self) -> &'static str {
        "aws_security_group"
    }

    fn forces_replacement(&self, property: &str) -> bool {
        matches!(property, "name" | "description" | "vpc_id")
    }

    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = SecurityGroupProps::parse(props)?;
        let out = self
            .clients
            .ec2
            .create_security_group()
            .group_name(&p.name)
            .description(&p.description)
            .vpc_id(&p.vpc_id)
            .tag_specifications(tag_spec(ResourceType::SecurityGroup, ctx, Some(&p.name)))
            .send()
            .await
            .map_err(|e| not_yet_visible("CreateSecurityGroup", e))?;
        let id = out
            .group_id()
            .ok_or_else(|| ResourceError::failed("CreateSecurityGroup returned no group id"))?
            .to_string();
        if p.revoke_default_egress {
            self.set_default_egress(ctx, &id, true).await?;
        }
        Ok(Applied::new(id))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        Ok(self
            .describe(current.id)
            .await?
            .map(|group| observe_group(&group, current)))
    }

    /// One DescribeSecurityGroups per batch, by a `group-id` filter: unlike a list of ids, a
    /// filter does not fail the whole call when one group is gone.
    async fn read_many(
        &self,
        _ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let found = self
            .clients
            .ec2
            .describe_security_groups()
            .filters(filter_ids("group-id", items))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeSecurityGroups", e))
            .map(|groups| by_id(groups, |g| g.group_id()));
        each_item(items, found, |group, current| {
            Ok(Some(observe_group(group, current)))
        })
    }

    fn read_batch_size(&self) -> usize {
        FILTER_BATCH
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p = SecurityGroupProps::parse(desired)?;
        if changed.iter().any(|c| c == "revoke_default_egress") {
            self.set_default_egress(ctx, current.id, p.revoke_default_egress)
                .await?;
        }
        Ok(Applied::new(current.id))
    }

    /// A group still used by network interfaces or referenced by another group's rules fails
    /// with `DependencyViolation`, which is retried: rule nodes and services go away first.
    async fn delete(&self, _ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        match self
            .clients
            .ec2
            .delete_security_group()
            .group_id(current.id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(classify("DeleteSecurityGroup", e)),
        }
    }

    /// A group with this name in this VPC, tagged for this address (a same-named group that
    /// is not ours is left alone, and the create fails on the duplicate name).
    async fn find(
        &self,
        ctx: &OpContext,
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = SecurityGroupProps::parse(props)?;
        let out = self
            .clients
            .ec2
            .describe_security_groups()
            .set_filters(Some(owned_by(ctx)))
            .filters(filter("group-name", &p.name))
            .filters(filter("vpc-id", &p.vpc_id))
            .send()
            .await
            .map_err(|e| classify("DescribeSecurityGroups", e))?;
        Ok(out
            .security_groups()
            .iter()
            .filter(|g| is_owned(g.tags(), ctx))
            .find_map(|g| g.group_id())
            .map(Applied::new))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleProps {
    security_group_id: String,
    direction: Direction,
    protocol: String,
    from_port: i32,
    to_port: i32,
    #[serde(default)]
    cidr_ipv4: Option<String>,
    #[serde(default)]
    peer_security_group_id: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Direction {
    Ingress,
    Egress,
}

impl RuleProps {
    fn parse(props: &Properties) -> Result<Self, ResourceError> {
        let p: Self = parse(props)?;
        match p.protocol.as_str() {
            "tcp" | "udp" => {
                let ports = 0..=65535;
                if !ports.contains(&p.from_port)
                    || !ports.contains(&p.to_port)
                    || p.from_port > p.to_port
                {
                    return Err(ResourceError::invalid(format!(
                        "port range {}-{} must lie within 0-65535, from_port first",
                        p.from_port, p.to_port
                    )));
                }
            }
            // All traffic: AWS ignores the ports.
            "-1" => {}
            other => {
                return Err(ResourceError::invalid(format!(
                    "protocol `{other}` is not one of tcp, udp, -1"
                )));
            }
        }
        match (&p.cidr_ipv4, &p.peer_security_group_id) {
            (Some(cidr), None) => check_cidr("cidr_ipv4", cidr, 0..=32)?,
            (None, Some(_)) => {}
            _ => {
                return Err(ResourceError::invalid(
                    "a rule needs exactly one of cidr_ipv4 and peer_security_group_id",
                ));
            }
        }
        if let Some(d) = &p.description {
            check_sg_text("description", d, true)?;
        }
        Ok(p)
    }

    /// The ports as AWS records them: -1 for all traffic.
    fn ports(&self) -> (i32, i32) {
        if self.protocol == "-1" {
            (-1, -1)
        } else {
            (self.from_port, self.to_port)
        }
    }

    fn permission(&self) -> IpPermission {
        let (from, to) = self.ports();
        let mut perm = IpPermission::builder()
            .ip_protocol(&self.protocol)
            .from_port(from)
            .to_port(to);
        if let Some(cidr) = &self.cidr_ipv4 {
            perm = perm.ip_ranges(
                IpRange::builder()
                    .cidr_ip(cidr)
                    .set_description(self.description.clone())
                    .build(),
            );
        }
        if let Some(peer) = &self.peer_security_group_id {
            perm = perm.user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id(peer)
                    .set_description(self.description.clone())
                    .build(),
            );
        }
        perm.build()
    }

    /// Whether a live rule is this one (for finding its id when AWS did not return it).
    fn matches(&self, rule: &aws_sdk_ec2::types::SecurityGroupRule) -> bool {
        let (from, to) = self.ports();
        rule.is_egress() == Some(self.direction == Direction::Egress)
            && rule.ip_protocol() == Some(self.protocol.as_str())
            && (self.protocol == "-1"
                || (rule.from_port() == Some(from) && rule.to_port() == Some(to)))
            && rule.cidr_ipv4() == self.cidr_ipv4.as_deref()
            && rule.referenced_group_info().and_then(|g| g.group_id())
                == self.peer_security_group_id.as_deref()
    }
}

/// A live rule in the shape of the desired properties.
fn observe_rule(rule: &aws_sdk_ec2::types::SecurityGroupRule, current: Current<'_>) -> Observed {
    let mut properties = Properties::new();
    if let Some(group) = rule.group_id() {
        properties.insert("security_group_id".into(), json!(group));
    }
    if let Some(egress) = rule.is_egress() {
        let direction = if egress { "egress" } else { "ingress" };
        properties.insert("direction".into(), json!(direction));
    }
    if let Some(protocol) = rule.ip_protocol() {
        properties.insert("protocol".into(), json!(protocol));
        // All traffic has no ports to compare.
        if protocol != "-1" {
            if let Some(from) = rule.from_port() {
                properties.insert("from_port".into(), json!(from));
            }
            if let Some(to) = rule.to_port() {
                properties.insert("to_port".into(), json!(to));
            }
        }
    }
    if let Some(cidr) = rule.cidr_ipv4() {
        properties.insert("cidr_ipv4".into(), json!(cidr));
    }
    if let Some(peer) = rule.referenced_group_info().and_then(|g| g.group_id()) {
        properties.insert("peer_security_group_id".into(), json!(peer));
    }
    if let Some(d) = rule.description().filter(|d| !d.is_empty()) {
        properties.insert("description".into(), json!(d));
    }
    Observed {
        properties,
        outputs: Applied::new(current.id).outputs,
    }
}

/// `aws_security_group_rule`: one ingress or egress rule of a security group, from or to an
/// IPv4 CIDR block or a peer group. Its id is the rule id (`sgr-…`). Only the description
/// changes in place (ModifySecurityGroupRules); anything else replaces the rule.
pub struct SecurityGroupRule {
    clients: Arc<AwsClients>,
}

impl SecurityGroupRule {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    async fn rules_of_group(
        &self,
        group_id: &str,
    ) -> Result<Vec<aws_sdk_ec2::types::SecurityGroupRule>, ResourceError> {
        let mut pages = self
            .clients
            .ec2
            .describe_security_group_rules()
            .filters(filter("group-id", group_id))
            .into_paginator()
            .items()
            .send();
        let mut rules = Vec::new();
        while let Some(rule) = pages.next().await {
            rules.push(rule.map_err(|e| classify("DescribeSecurityGroupRules", e))?);
        }
        Ok(rules)
    }
}

#[async_trait::async_trait]
impl ResourceKind for SecurityGroupRule {
    fn name(&self) -> &'static str {
        "aws_security_group_rule"
    }

    fn forces_replacement(&self, property: &str) -> bool {
        property != "description"
    }

    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = RuleProps::parse(props)?;
        let ec2 = &self.clients.ec2;
        let tags = tag_spec(ResourceType::SecurityGroupRule, ctx, None);
        let returned = match p.direction {
            Direction::Ingress => {
                let req = ec2
                    .authorize_security_group_ingress()
                    .group_id(&p.security_group_id)
                    .ip_permissions(p.permission())
                    .tag_specifications(tags);
                until_visible(ctx, "AuthorizeSecurityGroupIngress", move || {
                    req.clone().send()
                })
                .await?
                .security_group_rules()
                .to_vec()
            }
            Direction::Egress => {
                let req = ec2
                    .authorize_security_group_egress()
                    .group_id(&p.security_group_id)
                    .ip_permissions(p.permission())
                    .tag_specifications(tags);
                until_visible(ctx, "AuthorizeSecurityGroupEgress", move || {
                    req.clone().send()
                })
                .await?
                .security_group_rules()
                .to_vec()
            }
        };
        let id = match returned.iter().find_map(|r| r.security_group_rule_id()) {
            Some(id) => id.to_string(),
            None => self
                .rules_of_group(&p.security_group_id)
                .await?
                .iter()
                .filter(|r| p.matches(r))
                .find_map(|r| r.security_group_rule_id())
                .ok_or_else(|| {
                    ResourceError::failed("the new security group rule cannot be found")
                })?
                .to_string(),
        };
        Ok(Applied::new(id))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let out = match self
            .clients
            .ec2
            .describe_security_group_rules()
            .security_group_rule_ids(current.id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(classify("DescribeSecurityGroupRules", e)),
        };
        Ok(out
            .security_group_rules()
            .iter()
            .find(|r| r.security_group_rule_id() == Some(current.id))
            .map(|rule| observe_rule(rule, current)))
    }

    /// One DescribeSecurityGroupRules per batch, by a `security-group-rule-id` filter, which
    /// leaves out rules that are gone instead of failing.
    async fn read_many(
        &self,
        _ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let found = self
            .clients
            .ec2
            .describe_security_group_rules()
            .filters(filter_ids("security-group-rule-id", items))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeSecurityGroupRules", e))
            .map(|rules| by_id(rules, |r| r.security_group_rule_id()));
        each_item(items, found, |rule, current| {
            Ok(Some(observe_rule(rule, current)))
        })
    }

    fn read_batch_size(&self) -> usize {
        FILTER_BATCH
    }

    async fn update(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        _changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p = RuleProps::parse(desired)?;
        let (from, to) = p.ports();
        let request = SecurityGroupRuleRequest::builder()
            .ip_protocol(&p.protocol)
            .from_port(from)
            .to_port(to)
            .set_cidr_ipv4(p.cidr_ipv4.clone())
            .set_referenced_group_id(p.peer_security_group_id.clone())
            // An empty description clears it.
            .description(p.description.clone().unwrap_or_default())
            .build();
        self.clients
            .ec2
            .modify_security_group_rules()
            .group_id(&p.security_group_id)
            .security_group_rules(
                SecurityGroupRuleUpdate::builder()
                    .security_group_rule_id(current.id)
                    .security_group_rule(request)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("ModifySecurityGroupRules", e))?;
        Ok(Applied::new(current.id))
    }

    /// Revokes the rule by id; a rule or group already gone is success.
    async fn delete(&self, _ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        // Only the group and the direction are needed; no re-validation of recorded values.
        let p: RuleProps = parse(current.properties)?;
        let ec2 = &self.clients.ec2;
        let result = match p.direction {
            Direction::Ingress => ec2
                .revoke_security_group_ingress()
                .group_id(&p.security_group_id)
                .security_group_rule_ids(current.id)
                .send()
                .await
                .map(drop)
                .map_err(|e| (is_not_found(&e), classify("RevokeSecurityGroupIngress", e))),
            Direction::Egress => ec2
                .revoke_security_group_egress()
                .group_id(&p.security_group_id)
                .security_group_rule_ids(current.id)
                .send()
                .await
                .map(drop)
                .map_err(|e| (is_not_found(&e), classify("RevokeSecurityGroupEgress", e))),
        };
        match result {
            Ok(()) | Err((true, _)) => Ok(()),
            Err((false, e)) => Err(e),
        }
    }

    /// A rule of this group tagged for this address.
    async fn find(
        &self,
        ctx: &OpContext,
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = RuleProps::parse(props)?;
        Ok(self
            .rules_of_group(&p.security_group_id)
            .await?
            .iter()
            .filter(|r| is_owned(r.tags(), ctx) && p.matches(r))
            .find_map(|r| r.security_group_rule_id())
            .map(Applied::new))
    }
}
