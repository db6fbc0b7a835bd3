//! `aws_security_group` (created without rules) and `aws_security_group_rule` (one rule per
//! node, so groups can reference each other without a cycle).

use super::{
    FILTER_BATCH, adoptable, filter, filter_ids, not_yet_visible, tag_spec, until_visible,
};
use crate::AwsClients;
use crate::clients::{by_id, each_item};
use crate::error::{classify, code, parse};
use crate::ownership::{found, gone, pairs, single_attempt};
use aws_sdk_ec2::types::{
    IpPermission, IpRange, ResourceType, SecurityGroupRuleRequest, SecurityGroupRuleUpdate,
    UserIdGroupPair,
};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use dagform_core::kind::Owner;
use dagform_core::{
    Applied, Changes, Current, Kind, Observed, OpContext, Properties, ResourceError,
};
use dagform_resources::ec2::{
    Direction, SecurityGroupField, SecurityGroupOutputs, SecurityGroupProps,
    SecurityGroupRuleOutputs, SecurityGroupRuleProps,
};
use serde_json::json;
use std::future::Future;
use std::sync::Arc;

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

fn group_applied(id: &str) -> Applied {
    Applied::of(SecurityGroupOutputs { id: id.to_owned() })
}

/// A live group in the shape of the desired properties.
fn observe_group(group: &aws_sdk_ec2::types::SecurityGroup, current: Current<'_>) -> Observed {
    let props = SecurityGroupProps {
        name: group.group_name().unwrap_or_default().to_owned(),
        description: group.description().unwrap_or_default().to_owned(),
        vpc_id: group.vpc_id().unwrap_or_default().to_owned(),
        revoke_default_egress: !has_default_egress(group),
    };
    let outputs = SecurityGroupOutputs {
        id: current.id.to_owned(),
    };
    Observed::of(&props, outputs)
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
        let result = self
            .clients
            .ec2
            .describe_security_groups()
            .group_ids(id)
            .send()
            .await;
        Ok(found("DescribeSecurityGroups", result)?
            .and_then(|out| out.security_groups().first().cloned()))
    }

    /// The group, when it may be changed or deleted (it carries no other owner's tags).
    async fn describe_not_foreign(
        &self,
        ctx: &OpContext,
        id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::SecurityGroup>, ResourceError> {
        let group = self.describe(id).await?;
        if let Some(g) = &group {
            ctx.require_not_foreign(&format!("security group `{id}`"), pairs(g.tags()))?;
        }
        Ok(group)
    }

    /// The group holding `name` in `vpc_id` (names are unique per VPC), whoever owns it.
    async fn by_name(
        &self,
        name: &str,
        vpc_id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::SecurityGroup>, ResourceError> {
        let out = self
            .clients
            .ec2
            .describe_security_groups()
            .filters(filter("group-name", name))
            .filters(filter("vpc-id", vpc_id))
            .send()
            .await
            .map_err(|e| classify("DescribeSecurityGroups", e))?;
        Ok(out.security_groups().first().cloned())
    }
}

/// Whether the group holding the wanted name may be adopted: its id when it is this node's;
/// `None` when it is an older group of this node awaiting deletion; not owned otherwise.
fn claim<'g>(
    ctx: &OpContext,
    p: &SecurityGroupProps,
    group: &'g aws_sdk_ec2::types::SecurityGroup,
) -> Result<Option<&'g str>, ResourceError> {
    if adoptable(ctx, group) {
        return Ok(group.group_id());
    }
    match ctx.owner(pairs(group.tags())) {
        Owner::Ours => Ok(None),
        owner => Err(ctx.not_owned(
            &format!("security group `{}` in VPC `{}`", p.name, p.vpc_id),
            &owner,
        )),
    }
}

#[async_trait::async_trait]
impl Kind for SecurityGroup {
    type Props = SecurityGroupProps;

    async fn create(
        &self,
        ctx: &OpContext,
        p: &SecurityGroupProps,
    ) -> Result<Applied, ResourceError> {
        let result = self
            .clients
            .ec2
            .create_security_group()
            .group_name(&p.name)
            .description(&p.description)
            .vpc_id(&p.vpc_id)
            .tag_specifications(tag_spec(ResourceType::SecurityGroup, ctx, Some(&p.name)))
            // No idempotency token: a lost answer must reach `find`, not a blind re-send.
            .customize()
            .config_override(single_attempt::ec2())
            .send()
            .await;
        let id = match result {
            Ok(out) => out
                .group_id()
                .ok_or_else(|| ResourceError::failed("CreateSecurityGroup returned no group id"))?
                .to_string(),
            Err(e) if code(&e) == Some("InvalidGroup.Duplicate") => {
                let group = self.by_name(&p.name, &p.vpc_id).await?.ok_or_else(|| {
                    ResourceError::Transient(format!(
                        "CreateSecurityGroup: `{}` exists, but is not visible yet",
                        p.name
                    ))
                })?;
                let Some(id) = claim(ctx, p, &group)? else {
                    return Err(ResourceError::failed(format!(
                        "security group `{}` in VPC `{}` is an older group of this resource \
                         awaiting deletion; its name is not free yet",
                        p.name, p.vpc_id
                    )));
                };
                // Ours, made by an attempt whose answer was lost: finish it either way.
                self.set_default_egress(ctx, id, p.revoke_default_egress)
                    .await?;
                return Ok(group_applied(id));
            }
            Err(e) => return Err(not_yet_visible("CreateSecurityGroup", e)),
        };
        // A run killed before the revoke leaves a group that `find` adopts: `read` reports the
        // default egress as still there, and `update` revokes it.
        if p.revoke_default_egress {
            self.set_default_egress(ctx, &id, true).await?;
        }
        Ok(group_applied(&id))
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
        p: &SecurityGroupProps,
        changed: &Changes<SecurityGroupProps>,
    ) -> Result<Applied, ResourceError> {
        if self.describe_not_foreign(ctx, current.id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "security group {} is gone",
                current.id
            )));
        }
        if changed.contains(SecurityGroupField::RevokeDefaultEgress) {
            self.set_default_egress(ctx, current.id, p.revoke_default_egress)
                .await?;
        }
        Ok(group_applied(current.id))
    }

    /// A group still used by network interfaces or referenced by another group's rules fails
    /// with `DependencyViolation`, which is retried: rule nodes and services go away first.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        if self.describe_not_foreign(ctx, current.id).await?.is_none() {
            return Ok(());
        }
        let result = self
            .clients
            .ec2
            .delete_security_group()
            .group_id(current.id)
            .send()
            .await;
        gone("DeleteSecurityGroup", result)
    }

    /// The group holding this name in this VPC, when it is this node's; another owner's group
    /// under the name is reported as not ours.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &SecurityGroupProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let Some(group) = self.by_name(&p.name, &p.vpc_id).await? else {
            return Ok(None);
        };
        Ok(claim(ctx, p, &group)?.map(group_applied))
    }
}

fn rule_applied(id: &str) -> Applied {
    Applied::of(SecurityGroupRuleOutputs { id: id.to_owned() })
}

/// The rule as AWS takes it in an authorize call.
fn permission(p: &SecurityGroupRuleProps) -> IpPermission {
    let (from, to) = p.ports();
    let mut perm = IpPermission::builder()
        .ip_protocol(&p.protocol)
        .from_port(from)
        .to_port(to);
    if let Some(cidr) = &p.cidr_ipv4 {
        perm = perm.ip_ranges(
            IpRange::builder()
                .cidr_ip(cidr)
                .set_description(p.description.clone())
                .build(),
        );
    }
    if let Some(peer) = &p.peer_security_group_id {
        perm = perm.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(peer)
                .set_description(p.description.clone())
                .build(),
        );
    }
    perm.build()
}

/// How an error names a live rule like `p`.
fn describe_rule(p: &SecurityGroupRuleProps, rule_id: &str) -> String {
    let (from, to) = p.ports();
    let peer = p
        .cidr_ipv4
        .as_deref()
        .or(p.peer_security_group_id.as_deref())
        .unwrap_or_default();
    format!(
        "{} rule `{rule_id}` ({} {from}-{to}, {peer}) of security group `{}`",
        p.direction.as_str(),
        p.protocol,
        p.security_group_id
    )
}

/// Whether a live rule is `p` (for finding its id when AWS did not return it).
fn matches(p: &SecurityGroupRuleProps, rule: &aws_sdk_ec2::types::SecurityGroupRule) -> bool {
    let (from, to) = p.ports();
    rule.is_egress() == Some(p.direction == Direction::Egress)
        && rule.ip_protocol() == Some(p.protocol.as_str())
        && (p.protocol == "-1" || (rule.from_port() == Some(from) && rule.to_port() == Some(to)))
        && rule.cidr_ipv4() == p.cidr_ipv4.as_deref()
        && rule.referenced_group_info().and_then(|g| g.group_id())
            == p.peer_security_group_id.as_deref()
}

/// A live rule in the shape of the desired properties. Built by hand: what AWS leaves out
/// (the ports of an all-traffic rule, an empty description) is left out here too, so that it
/// shows as neither drift nor a reason to replace the rule.
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
    let outputs = SecurityGroupRuleOutputs {
        id: current.id.to_owned(),
    };
    Observed::of(&properties, outputs)
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

    async fn describe(
        &self,
        id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::SecurityGroupRule>, ResourceError> {
        let result = self
            .clients
            .ec2
            .describe_security_group_rules()
            .security_group_rule_ids(id)
            .send()
            .await;
        Ok(
            found("DescribeSecurityGroupRules", result)?.and_then(|out| {
                out.security_group_rules()
                    .iter()
                    .find(|r| r.security_group_rule_id() == Some(id))
                    .cloned()
            }),
        )
    }

    /// The rule, when it may be changed or revoked (it carries no other owner's tags).
    async fn describe_not_foreign(
        &self,
        ctx: &OpContext,
        id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::SecurityGroupRule>, ResourceError> {
        let rule = self.describe(id).await?;
        if let Some(r) = &rule {
            ctx.require_not_foreign(&format!("security group rule `{id}`"), pairs(r.tags()))?;
        }
        Ok(rule)
    }

    /// The live rule of the group that is this one (a group holds a rule only once): its id
    /// when it is this node's, `None` when there is none (or only an older one of this node's
    /// awaiting deletion), not owned when another owner's rule, or AWS's default, is it.
    async fn claim_matching(
        &self,
        ctx: &OpContext,
        p: &SecurityGroupRuleProps,
    ) -> Result<Option<String>, ResourceError> {
        let rules = self.rules_of_group(&p.security_group_id).await?;
        let matching: Vec<_> = rules.iter().filter(|r| matches(p, r)).collect();
        if let Some(ours) = matching.iter().find(|r| adoptable(ctx, **r)) {
            return Ok(ours.security_group_rule_id().map(str::to_owned));
        }
        let other = matching
            .iter()
            .map(|r| (r, ctx.owner(pairs(r.tags()))))
            .find(|(_, owner)| *owner != Owner::Ours);
        match other {
            Some((rule, owner)) => Err(ctx.not_owned(
                &describe_rule(p, rule.security_group_rule_id().unwrap_or_default()),
                &owner,
            )),
            None => Ok(None),
        }
    }

    async fn set_description(
        &self,
        p: &SecurityGroupRuleProps,
        id: &str,
    ) -> Result<(), ResourceError> {
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
                    .security_group_rule_id(id)
                    .security_group_rule(request)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("ModifySecurityGroupRules", e))?;
        Ok(())
    }
}

/// Sends an authorize call; `None` when AWS answers that the group holds the rule already.
async fn authorized<T, E, R>(
    call: impl Future<Output = Result<T, SdkError<E, R>>>,
) -> Result<Option<T>, SdkError<E, R>>
where
    E: ProvideErrorMetadata,
{
    match call.await {
        Ok(out) => Ok(Some(out)),
        Err(e) if code(&e) == Some("InvalidPermission.Duplicate") => Ok(None),
        Err(e) => Err(e),
    }
}

#[async_trait::async_trait]
impl Kind for SecurityGroupRule {
    type Props = SecurityGroupRuleProps;

    async fn create(
        &self,
        ctx: &OpContext,
        p: &SecurityGroupRuleProps,
    ) -> Result<Applied, ResourceError> {
        let ec2 = &self.clients.ec2;
        let tags = tag_spec(ResourceType::SecurityGroupRule, ctx, None);
        // No idempotency token, but no duplicate either: a group holds a rule only once, so a
        // re-sent call answers `InvalidPermission.Duplicate`, handled below.
        let returned = match p.direction {
            Direction::Ingress => {
                let req = ec2
                    .authorize_security_group_ingress()
                    .group_id(&p.security_group_id)
                    .ip_permissions(permission(p))
                    .tag_specifications(tags);
                until_visible(ctx, "AuthorizeSecurityGroupIngress", move || {
                    authorized(req.clone().send())
                })
                .await?
                .map(|out| out.security_group_rules().to_vec())
            }
            Direction::Egress => {
                let req = ec2
                    .authorize_security_group_egress()
                    .group_id(&p.security_group_id)
                    .ip_permissions(permission(p))
                    .tag_specifications(tags);
                until_visible(ctx, "AuthorizeSecurityGroupEgress", move || {
                    authorized(req.clone().send())
                })
                .await?
                .map(|out| out.security_group_rules().to_vec())
            }
        };
        let Some(returned) = returned else {
            // The group holds this rule already: adopted when it is this node's.
            let id = self.claim_matching(ctx, p).await?.ok_or_else(|| {
                ResourceError::failed(format!(
                    "security group `{}` holds this rule already, as an older rule of this \
                     resource awaiting removal",
                    p.security_group_id
                ))
            })?;
            self.set_description(p, &id).await?;
            return Ok(rule_applied(&id));
        };
        let id = match returned.iter().find_map(|r| r.security_group_rule_id()) {
            Some(id) => id.to_string(),
            None => self
                .rules_of_group(&p.security_group_id)
                .await?
                .iter()
                .filter(|r| matches(p, r))
                .find_map(|r| r.security_group_rule_id())
                .ok_or_else(|| {
                    ResourceError::failed("the new security group rule cannot be found")
                })?
                .to_string(),
        };
        Ok(rule_applied(&id))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        Ok(self
            .describe(current.id)
            .await?
            .map(|rule| observe_rule(&rule, current)))
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
        ctx: &OpContext,
        current: Current<'_>,
        p: &SecurityGroupRuleProps,
        _changed: &Changes<SecurityGroupRuleProps>,
    ) -> Result<Applied, ResourceError> {
        if self.describe_not_foreign(ctx, current.id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "security group rule {} is gone",
                current.id
            )));
        }
        // Only the description changes in place.
        self.set_description(p, current.id).await?;
        Ok(rule_applied(current.id))
    }

    /// Revokes the rule by id; a rule or group already gone is success.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        // Only the group and the direction are needed; no re-validation of recorded values.
        let p: SecurityGroupRuleProps = parse(current.properties)?;
        if self.describe_not_foreign(ctx, current.id).await?.is_none() {
            return Ok(());
        }
        let ec2 = &self.clients.ec2;
        match p.direction {
            Direction::Ingress => {
                let result = ec2
                    .revoke_security_group_ingress()
                    .group_id(&p.security_group_id)
                    .security_group_rule_ids(current.id)
                    .send()
                    .await;
                gone("RevokeSecurityGroupIngress", result)
            }
            Direction::Egress => {
                let result = ec2
                    .revoke_security_group_egress()
                    .group_id(&p.security_group_id)
                    .security_group_rule_ids(current.id)
                    .send()
                    .await;
                gone("RevokeSecurityGroupEgress", result)
            }
        }
    }

    /// This rule in its group, when it is this node's; another owner's identical rule is
    /// reported as not ours.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &SecurityGroupRuleProps,
    ) -> Result<Option<Applied>, ResourceError> {
        Ok(self
            .claim_matching(ctx, p)
            .await?
            .map(|id| rule_applied(&id)))
    }
}
