//! WAFv2: the stack's web ACL and its associations with the load balancers.

use crate::AwsClients;
use crate::error::{classify, code};
use crate::ownership::{NewTag, TagPair, finish_existing, pairs, tags_for};
use aws_config::retry::RetryConfig;
use aws_sdk_wafv2::types::{
    AllowAction, BlockAction, DefaultAction, ManagedRuleGroupStatement, NoneAction, OverrideAction,
    RateBasedStatement, RateBasedStatementAggregateKeyType, Rule, RuleAction, Scope, Statement,
    Tag, VisibilityConfig, WebAcl,
};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use dagform_core::{Applied, Changes, Current, Kind, Kinds, Observed, OpContext, ResourceError};
use dagform_resources::wafv2::{
    AWS_VENDOR, RATE_RULE_NAME, WebAclAssociationOutputs, WebAclAssociationProps, WebAclOutputs,
    WebAclProps,
};
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    kinds.add(WebAclKind::new(clients.clone()));
    kinds.add(WebAclAssociation::new(clients.clone()));
}

impl TagPair for Tag {
    fn pair(&self) -> (&str, &str) {
        (self.key(), self.value())
    }
}

impl NewTag for Tag {
    fn new_tag(key: &str, value: &str) -> Self {
        Tag::builder()
            .key(key)
            .value(value)
            .build()
            .expect("key and value are set")
    }
}

/// WAF's spelling of "no such object".
const NONEXISTENT: &str = "WAFNonexistentItemException";
/// The lock token given was not the latest: read it again and retry.
const STALE_LOCK: &str = "WAFOptimisticLockException";
/// How often a call is retried with a fresh lock token.
const LOCK_ATTEMPTS: usize = 3;
/// Rate-based rules count over the last 5 minutes, as `rate_limit` is documented.
const RATE_WINDOW_SECONDS: i64 = 300;

/// A WAF call's result with "no such object" as `None`.
fn found<T, E, R>(
    operation: &str,
    result: Result<T, SdkError<E, R>>,
) -> Result<Option<T>, ResourceError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if code(&e) == Some(NONEXISTENT) => Ok(None),
        Err(e) => Err(classify(operation, e)),
    }
}

/// An error that a retry with the ACL's fresh lock token (or a little patience) may cure.
fn lock_or_transient<E, R>(operation: &str, e: SdkError<E, R>) -> ResourceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let retry = matches!(
        code(&e),
        Some(STALE_LOCK | "WAFUnavailableEntityException" | "WAFAssociatedItemException")
    );
    let err = classify(operation, e);
    if retry {
        ResourceError::Transient(err.to_string())
    } else {
        err
    }
}

fn build_error(e: impl std::fmt::Display) -> ResourceError {
    ResourceError::failed(format!("building a WAF request: {e}"))
}

/// The name and WAF id an ACL's ARN ends with (`…/webacl/{name}/{id}`).
fn name_and_id(arn: &str) -> Result<(&str, &str), ResourceError> {
    let mut parts = arn.rsplitn(3, '/');
    match (parts.next(), parts.next()) {
        (Some(id), Some(name)) if !id.is_empty() && !name.is_empty() => Ok((name, id)),
        _ => Err(ResourceError::failed(format!(
            "`{arn}` is not a web ACL ARN"
        ))),
    }
}

/// CloudWatch metric names take letters, digits, `-` and `_`.
fn metric_name(acl: &str, rule: &str) -> String {
    format!("{acl}-{rule}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(255)
        .collect()
}

fn visibility(metric: String) -> Result<VisibilityConfig, ResourceError> {
    VisibilityConfig::builder()
        .sampled_requests_enabled(true)
        .cloud_watch_metrics_enabled(true)
        .metric_name(metric)
        .build()
        .map_err(build_error)
}

/// One rule per managed group in order, each with the group's own actions, then the rate rule.
fn rules(p: &WebAclProps) -> Result<Vec<Rule>, ResourceError> {
    let mut rules = Vec::new();
    for (priority, group) in p.managed_rule_groups.iter().enumerate() {
        let statement = ManagedRuleGroupStatement::builder()
            .vendor_name(AWS_VENDOR)
            .name(group)
            .build()
            .map_err(build_error)?;
        rules.push(
            Rule::builder()
                .name(group)
                .priority(i32::try_from(priority).unwrap_or(i32::MAX))
                .statement(
                    Statement::builder()
                        .managed_rule_group_statement(statement)
                        .build(),
                )
                .override_action(
                    OverrideAction::builder()
                        .none(NoneAction::builder().build())
                        .build(),
                )
                .visibility_config(visibility(metric_name(&p.name, group))?)
                .build()
                .map_err(build_error)?,
        );
    }
    if let Some(limit) = p.rate_limit {
        let statement = RateBasedStatement::builder()
            .limit(limit)
            .evaluation_window_sec(RATE_WINDOW_SECONDS)
            .aggregate_key_type(RateBasedStatementAggregateKeyType::Ip)
            .build()
            .map_err(build_error)?;
        rules.push(
            Rule::builder()
                .name(RATE_RULE_NAME)
                .priority(i32::try_from(p.managed_rule_groups.len()).unwrap_or(i32::MAX))
                .statement(Statement::builder().rate_based_statement(statement).build())
                .action(
                    RuleAction::builder()
                        .block(BlockAction::builder().build())
                        .build(),
                )
                .visibility_config(visibility(metric_name(&p.name, RATE_RULE_NAME))?)
                .build()
                .map_err(build_error)?,
        );
    }
    Ok(rules)
}

fn allow() -> DefaultAction {
    DefaultAction::builder()
        .allow(AllowAction::builder().build())
        .build()
}

/// A live ACL in the shape of its properties: a rule dagform does not write shows by name
/// among the managed groups, so it appears as drift.
fn observe(acl: &WebAcl) -> WebAclProps {
    let mut rules: Vec<&Rule> = acl.rules().iter().collect();
    rules.sort_by_key(|r| r.priority());
    let mut managed_rule_groups = Vec::new();
    let mut rate_limit = None;
    for rule in rules {
        let statement = rule.statement();
        match (
            statement.and_then(Statement::managed_rule_group_statement),
            statement.and_then(Statement::rate_based_statement),
        ) {
            (Some(group), _) if group.vendor_name() == AWS_VENDOR => {
                managed_rule_groups.push(group.name().to_owned());
            }
            (_, Some(rate)) if rule.name() == RATE_RULE_NAME => rate_limit = Some(rate.limit()),
            _ => managed_rule_groups.push(rule.name().to_owned()),
        }
    }
    WebAclProps {
        name: acl.name().to_owned(),
        scope: "REGIONAL".to_owned(),
        managed_rule_groups,
        rate_limit,
    }
}

fn acl_outputs(acl: &WebAcl) -> WebAclOutputs {
    WebAclOutputs {
        id: acl.arn().to_owned(),
        arn: acl.arn().to_owned(),
        acl_id: acl.id().to_owned(),
        name: acl.name().to_owned(),
    }
}

fn what(name: &str) -> String {
    format!("web ACL `{name}`")
}

/// `aws_wafv2_web_acl`.
pub struct WebAclKind {
    clients: Arc<AwsClients>,
}

impl WebAclKind {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    /// The ACL at `arn` with its current lock token, or `None` when it is gone.
    async fn get(&self, arn: &str) -> Result<Option<(WebAcl, String)>, ResourceError> {
        let (name, id) = name_and_id(arn)?;
        let got = self
            .clients
            .wafv2
            .get_web_acl()
            .scope(Scope::Regional)
            .name(name)
            .id(id)
            .send()
            .await;
        Ok(found("GetWebACL", got)?.and_then(|out| {
            let token = out.lock_token().unwrap_or_default().to_owned();
            out.web_acl.map(|acl| (acl, token))
        }))
    }

    async fn tags(&self, arn: &str) -> Result<Option<Vec<Tag>>, ResourceError> {
        let listed = self
            .clients
            .wafv2
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await;
        Ok(found("ListTagsForResource", listed)?.map(|out| {
            out.tag_info_for_resource()
                .map(|t| t.tag_list().to_vec())
                .unwrap_or_default()
        }))
    }

    /// The ARN of the regional ACL named `name`, if there is one.
    async fn arn_named(&self, name: &str) -> Result<Option<String>, ResourceError> {
        let mut marker = None;
        loop {
            let out = self
                .clients
                .wafv2
                .list_web_acls()
                .scope(Scope::Regional)
                .set_next_marker(marker)
                .limit(100)
                .send()
                .await
                .map_err(|e| classify("ListWebACLs", e))?;
            if let Some(arn) = out
                .web_acls()
                .iter()
                .find(|a| a.name() == Some(name))
                .and_then(|a| a.arn())
            {
                return Ok(Some(arn.to_owned()));
            }
            match out.next_marker() {
                Some(m) if !out.web_acls().is_empty() => marker = Some(m.to_owned()),
                _ => return Ok(None),
            }
        }
    }
}

#[async_trait::async_trait]
impl Kind for WebAclKind {
    type Props = WebAclProps;

    /// CreateWebACL takes no idempotency token: a single attempt, after which the reconciler's
    /// `find` looks for the ACL by its name (unique per scope and region).
    async fn create(&self, ctx: &OpContext, p: &WebAclProps) -> Result<Applied, ResourceError> {
        let created = self
            .clients
            .wafv2
            .create_web_acl()
            .name(&p.name)
            .scope(Scope::Regional)
            .default_action(allow())
            .set_rules(Some(rules(p)?))
            .visibility_config(visibility(metric_name(&p.name, "acl"))?)
            .set_tags(Some(tags_for(ctx, Some(&p.name))))
            .customize()
            .config_override(
                aws_sdk_wafv2::config::Builder::default().retry_config(RetryConfig::disabled()),
            )
            .send()
            .await;
        let summary = match created {
            Ok(out) => out.summary,
            Err(e) if code(&e) == Some("WAFDuplicateItemException") => {
                return match self.find(ctx, p).await? {
                    Some(existing) => finish_existing(self, ctx, &what(&p.name), existing, p).await,
                    None => Err(classify("CreateWebACL", e)),
                };
            }
            Err(e) => return Err(classify("CreateWebACL", e)),
        };
        let arn = summary
            .and_then(|s| s.arn)
            .ok_or_else(|| ResourceError::failed("CreateWebACL returned no ARN"))?;
        let (acl, _) = self.get(&arn).await?.ok_or_else(|| {
            ResourceError::Transient(format!("{} not visible yet", what(&p.name)))
        })?;
        Ok(Applied::of(acl_outputs(&acl)))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        Ok(self
            .get(current.id)
            .await?
            .map(|(acl, _)| Observed::of(&observe(&acl), acl_outputs(&acl))))
    }

    /// UpdateWebACL replaces the whole ACL, guarded by its lock token: a token gone stale
    /// meanwhile is read again. The ACL keeps its id and ARN.
    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &WebAclProps,
        _changed: &Changes<WebAclProps>,
    ) -> Result<Applied, ResourceError> {
        let tags = self.tags(current.id).await?.unwrap_or_default();
        ctx.require_not_foreign(&what(&p.name), pairs(&tags))?;
        let (name, id) = name_and_id(current.id)?;
        for attempt in 1..=LOCK_ATTEMPTS {
            let (acl, token) = self
                .get(current.id)
                .await?
                .ok_or_else(|| ResourceError::failed(format!("{} is gone", what(name))))?;
            let updated = self
                .clients
                .wafv2
                .update_web_acl()
                .name(name)
                .id(id)
                .scope(Scope::Regional)
                .default_action(allow())
                .set_rules(Some(rules(p)?))
                .visibility_config(visibility(metric_name(&p.name, "acl"))?)
                .lock_token(token)
                .send()
                .await;
            match updated {
                Ok(_) => return Ok(Applied::of(acl_outputs(&acl))),
                Err(e) if code(&e) == Some(STALE_LOCK) && attempt < LOCK_ATTEMPTS => {}
                Err(e) => return Err(lock_or_transient("UpdateWebACL", e)),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// An ACL still associated is refused by WAF; the associations go first, so that is
    /// only a moment's wait.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let Some(tags) = self.tags(current.id).await? else {
            return Ok(());
        };
        let (name, id) = name_and_id(current.id)?;
        ctx.require_not_foreign(&what(name), pairs(&tags))?;
        for attempt in 1..=LOCK_ATTEMPTS {
            let Some((_, token)) = self.get(current.id).await? else {
                return Ok(());
            };
            let deleted = self
                .clients
                .wafv2
                .delete_web_acl()
                .name(name)
                .id(id)
                .scope(Scope::Regional)
                .lock_token(token)
                .send()
                .await;
            match deleted {
                Ok(_) => return Ok(()),
                Err(e) if code(&e) == Some(NONEXISTENT) => return Ok(()),
                Err(e) if code(&e) == Some(STALE_LOCK) && attempt < LOCK_ATTEMPTS => {}
                Err(e) => return Err(lock_or_transient("DeleteWebACL", e)),
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn find(
        &self,
        ctx: &OpContext,
        p: &WebAclProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let Some(arn) = self.arn_named(&p.name).await? else {
            return Ok(None);
        };
        let Some(tags) = self.tags(&arn).await? else {
            return Ok(None);
        };
        ctx.require_ours(&what(&p.name), pairs(&tags))?;
        if ctx.superseded.contains(&arn) {
            return Ok(None);
        }
        let Some((acl, _)) = self.get(&arn).await? else {
            return Ok(None);
        };
        Ok(Some(Applied::of(acl_outputs(&acl))))
    }
}

/// `aws_wafv2_web_acl_association`: no tags of its own; a resource holds at most one ACL, so it
/// is this node's when the resource holds the recorded ACL.
pub struct WebAclAssociation {
    clients: Arc<AwsClients>,
}

impl WebAclAssociation {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    /// The ARN of the ACL protecting `resource_arn`, if any (and if the resource exists).
    async fn acl_of(&self, resource_arn: &str) -> Result<Option<String>, ResourceError> {
        let got = self
            .clients
            .wafv2
            .get_web_acl_for_resource()
            .resource_arn(resource_arn)
            .send()
            .await;
        Ok(found("GetWebACLForResource", got)?.and_then(|out| out.web_acl.map(|acl| acl.arn)))
    }
}

fn association(resource_arn: &str) -> Applied {
    Applied::of(WebAclAssociationOutputs {
        id: resource_arn.to_owned(),
    })
}

#[async_trait::async_trait]
impl Kind for WebAclAssociation {
    type Props = WebAclAssociationProps;

    /// A resource another ACL protects is refused rather than taken over: AssociateWebACL
    /// would silently replace it.
    async fn create(
        &self,
        _ctx: &OpContext,
        p: &WebAclAssociationProps,
    ) -> Result<Applied, ResourceError> {
        match self.acl_of(&p.resource_arn).await? {
            Some(acl) if acl == p.web_acl_arn => return Ok(association(&p.resource_arn)),
            Some(other) => {
                return Err(ResourceError::NotOwned(format!(
                    "`{}` is already protected by web ACL `{other}`; disassociate it first",
                    p.resource_arn
                )));
            }
            None => {}
        }
        self.clients
            .wafv2
            .associate_web_acl()
            .web_acl_arn(&p.web_acl_arn)
            .resource_arn(&p.resource_arn)
            .send()
            .await
            // A load balancer just created may not be available to WAF yet.
            .map_err(|e| lock_or_transient("AssociateWebACL", e))?;
        Ok(association(&p.resource_arn))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some(acl) = self.acl_of(current.id).await? else {
            return Ok(None);
        };
        let props = WebAclAssociationProps {
            web_acl_arn: acl,
            resource_arn: current.id.to_owned(),
        };
        Ok(Some(Observed::of(
            &props,
            WebAclAssociationOutputs {
                id: current.id.to_owned(),
            },
        )))
    }

    /// Both properties force a replacement: nothing changes in place.
    async fn update(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
        _p: &WebAclAssociationProps,
        _changed: &Changes<WebAclAssociationProps>,
    ) -> Result<Applied, ResourceError> {
        Ok(association(current.id))
    }

    /// Only the recorded ACL's association goes: one someone put in its place stays.
    async fn delete(&self, _ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let recorded = current
            .properties
            .get("web_acl_arn")
            .and_then(serde_json::Value::as_str);
        let live = self.acl_of(current.id).await?;
        if live.is_none() || live.as_deref() != recorded {
            return Ok(());
        }
        let result = self
            .clients
            .wafv2
            .disassociate_web_acl()
            .resource_arn(current.id)
            .send()
            .await;
        found("DisassociateWebACL", result).map(|_| ())
    }

    async fn find(
        &self,
        _ctx: &OpContext,
        p: &WebAclAssociationProps,
    ) -> Result<Option<Applied>, ResourceError> {
        Ok(
            (self.acl_of(&p.resource_arn).await?.as_deref() == Some(p.web_acl_arn.as_str()))
                .then(|| association(&p.resource_arn)),
        )
    }
}
