//! `aws_lb_listener_rule`: forwards requests matching host names (and paths) to a target group.

use super::listener::forwarded_target_group;
use super::{Claim, adopt_holder, claim, require_not_foreign, taken_and_freed};
use crate::AwsClients;
use crate::clients::{by_id, each_item};
use crate::error::{classify, code, is_not_found};
use crate::ownership::{found, gone, in_recorded_order, single_attempt, tags_for};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, HostHeaderConditionConfig, PathPatternConditionConfig, RuleCondition,
    RulePriorityPair,
};
use dagform_core::{
    Applied, Changes, Current, Kind, KindOutputs, Observed, OpContext, Properties, ResourceError,
};
use dagform_resources::elbv2::{ListenerRuleField, ListenerRuleOutputs, ListenerRuleProps};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// `aws_lb_listener_rule`: only the listener it belongs to is fixed at creation.
#[derive(Clone)]
pub struct ListenerRule {
    clients: Arc<AwsClients>,
}

/// The rule's conditions as the SDK takes them.
fn conditions(p: &ListenerRuleProps) -> Vec<RuleCondition> {
    let mut conditions = vec![];
    if !p.host_headers.is_empty() {
        conditions.push(
            RuleCondition::builder()
                .field("host-header")
                .host_header_config(
                    HostHeaderConditionConfig::builder()
                        .set_values(Some(p.host_headers.clone()))
                        .build(),
                )
                .build(),
        );
    }
    if !p.path_patterns.is_empty() {
        conditions.push(
            RuleCondition::builder()
                .field("path-pattern")
                .path_pattern_config(
                    PathPatternConditionConfig::builder()
                        .set_values(Some(p.path_patterns.clone()))
                        .build(),
                )
                .build(),
        );
    }
    conditions
}

/// The rule's forward as the SDK takes it.
fn actions(p: &ListenerRuleProps) -> Vec<Action> {
    vec![
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(&p.target_group_arn)
            .build(),
    ]
}

type Rule = aws_sdk_elasticloadbalancingv2::types::Rule;

fn outputs(rule: &Rule) -> Result<ListenerRuleOutputs, ResourceError> {
    let arn = rule
        .rule_arn()
        .ok_or_else(|| ResourceError::failed("DescribeRules: rule without ARN"))?;
    Ok(ListenerRuleOutputs {
        id: arn.to_owned(),
        arn: arn.to_owned(),
    })
}

fn applied(rule: &Rule) -> Result<Applied, ResourceError> {
    outputs(rule).map(Applied::of)
}

/// The values of the rule's `field` condition, from its typed config or the legacy `Values`.
fn condition_values(rule: &Rule, field: &str) -> Vec<String> {
    let Some(c) = rule.conditions().iter().find(|c| c.field() == Some(field)) else {
        return vec![];
    };
    let typed = match field {
        "host-header" => c.host_header_config().map(|h| h.values()),
        _ => c.path_pattern_config().map(|p| p.values()),
    };
    typed
        .filter(|v| !v.is_empty())
        .unwrap_or(c.values())
        .to_vec()
}

/// The listener of a rule, from the rule's ARN (`…:listener-rule/app/lb/id/listener-id/rule-id`).
fn listener_of(rule_arn: &str) -> Option<String> {
    let (prefix, _rule_id) = rule_arn.rsplit_once('/')?;
    prefix
        .contains(":listener-rule/")
        .then(|| prefix.replacen(":listener-rule/", ":listener/", 1))
}

/// A live rule in the shape of the desired properties. Built by hand: the listener, priority
/// and target group are left out when they cannot be read from what AWS reports.
fn observe(rule: &Rule, current: Current<'_>) -> Result<Observed, ResourceError> {
    let recorded = current.properties;
    let mut properties = Properties::new();
    let mut set = |field: ListenerRuleField, value: Json| {
        properties.insert(field.as_str().to_owned(), value);
    };
    let listener = listener_of(current.id)
        .map(Json::from)
        .or_else(|| recorded.get("listener_arn").cloned());
    if let Some(listener) = listener {
        set(ListenerRuleField::ListenerArn, listener);
    }
    if let Some(priority) = rule.priority().and_then(|p| p.parse::<i64>().ok()) {
        set(ListenerRuleField::Priority, json!(priority));
    }
    set(
        ListenerRuleField::HostHeaders,
        json!(in_recorded_order(
            condition_values(rule, "host-header"),
            recorded.get("host_headers")
        )),
    );
    set(
        ListenerRuleField::PathPatterns,
        json!(in_recorded_order(
            condition_values(rule, "path-pattern"),
            recorded.get("path_patterns")
        )),
    );
    let target = rule
        .actions()
        .iter()
        .find(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
        .and_then(forwarded_target_group);
    if let Some(target) = target {
        set(ListenerRuleField::TargetGroupArn, json!(target));
    }
    Ok(Observed {
        properties,
        outputs: outputs(rule)?.into_outputs(),
    })
}

impl ListenerRule {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    /// Who holds the wanted priority of the listener (one rule per priority).
    async fn claim(&self, ctx: &OpContext, p: &ListenerRuleProps) -> Result<Claim, ResourceError> {
        let priority = p.priority.to_string();
        let mut marker = None;
        let holder = loop {
            let Some(out) = found(
                "DescribeRules",
                self.clients
                    .elbv2
                    .describe_rules()
                    .listener_arn(&p.listener_arn)
                    .set_marker(marker)
                    .send()
                    .await,
            )?
            else {
                break None;
            };
            if let Some(rule) = out
                .rules()
                .iter()
                .find(|r| r.priority() == Some(priority.as_str()))
            {
                break Some(applied(rule)?);
            }
            match out.next_marker() {
                Some(m) => marker = Some(m.to_owned()),
                None => break None,
            }
        };
        claim(&self.clients, ctx, &object(p), holder).await
    }

    async fn describe(&self, arn: &str) -> Result<Option<Rule>, ResourceError> {
        let result = self
            .clients
            .elbv2
            .describe_rules()
            .rule_arns(arn)
            .send()
            .await;
        Ok(found("DescribeRules", result)?.and_then(|out| out.rules().first().cloned()))
    }
}

#[async_trait::async_trait]
impl Kind for ListenerRule {
    type Props = ListenerRuleProps;

    /// A priority is unique per listener: a create that meets `PriorityInUse` adopts the rule
    /// holding it only when it is this node's.
    async fn create(
        &self,
        ctx: &OpContext,
        p: &ListenerRuleProps,
    ) -> Result<Applied, ResourceError> {
        let created = self
            .clients
            .elbv2
            .create_rule()
            .listener_arn(&p.listener_arn)
            .priority(p.priority)
            .set_conditions(Some(conditions(p)))
            .set_actions(Some(actions(p)))
            .set_tags(Some(tags_for(ctx, None)))
            .customize()
            .config_override(single_attempt::elbv2())
            .send()
            .await;
        let out = match created {
            Ok(out) => out,
            Err(e) if code(&e) == Some("PriorityInUse") => {
                let object = object(p);
                let holder = self.claim(ctx, p).await?;
                return adopt_holder(self, ctx, &object, holder, p)
                    .await?
                    .ok_or_else(|| taken_and_freed(&object));
            }
            Err(e) => return Err(classify("CreateRule", e)),
        };
        let rule = out
            .rules()
            .first()
            .ok_or_else(|| ResourceError::failed("CreateRule returned no rule"))?;
        applied(rule)
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        self.describe(current.id)
            .await?
            .map(|rule| observe(&rule, current))
            .transpose()
    }

    /// One paginated DescribeRules per listener, which lists every rule of it: rules missing
    /// from the list are gone, and so are the rules of a listener that is gone.
    async fn read_many(
        &self,
        ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let mut out: Vec<Option<Result<Option<Observed>, ResourceError>>> = vec![None; items.len()];
        let mut by_listener: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            match listener_of(item.id) {
                Some(listener) => by_listener.entry(listener).or_default().push(i),
                None => out[i] = Some(self.read(ctx, *item).await),
            }
        }
        for (listener, indices) in by_listener {
            let found = match self
                .clients
                .elbv2
                .describe_rules()
                .listener_arn(&listener)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
            {
                Ok(rules) => Ok(by_id(rules, |r| r.rule_arn())),
                Err(e) if is_not_found(&e) => Ok(HashMap::new()),
                Err(e) => Err(classify("DescribeRules", e)),
            };
            let batch: Vec<Current<'_>> = indices.iter().map(|&i| items[i]).collect();
            let results = each_item(&batch, found, |rule, current| {
                observe(rule, current).map(Some)
            });
            for (i, result) in indices.into_iter().zip(results) {
                out[i] = Some(result);
            }
        }
        out.into_iter()
            .map(|r| r.expect("every item is read"))
            .collect()
    }

    /// Rules are listed per listener, so a batch is bounded only to keep one task short.
    fn read_batch_size(&self) -> usize {
        100
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &ListenerRuleProps,
        changed: &Changes<ListenerRuleProps>,
    ) -> Result<Applied, ResourceError> {
        let arn = current.id;
        require_not_foreign(&self.clients, ctx, &format!("listener rule {arn}"), arn).await?;
        let elbv2 = &self.clients.elbv2;
        if changed.contains(ListenerRuleField::Priority) {
            elbv2
                .set_rule_priorities()
                .rule_priorities(
                    RulePriorityPair::builder()
                        .rule_arn(arn)
                        .priority(p.priority)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| classify("SetRulePriorities", e))?;
        }
        if changed.any(&[
            ListenerRuleField::HostHeaders,
            ListenerRuleField::PathPatterns,
            ListenerRuleField::TargetGroupArn,
        ]) {
            elbv2
                .modify_rule()
                .rule_arn(arn)
                .set_conditions(Some(conditions(p)))
                .set_actions(Some(actions(p)))
                .send()
                .await
                .map_err(|e| classify("ModifyRule", e))?;
        }
        let rule = self.describe(arn).await?.ok_or_else(|| {
            ResourceError::failed(format!("listener rule {arn} disappeared during update"))
        })?;
        applied(&rule)
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let arn = current.id;
        if !require_not_foreign(&self.clients, ctx, &format!("listener rule {arn}"), arn).await? {
            return Ok(());
        }
        gone(
            "DeleteRule",
            self.clients.elbv2.delete_rule().rule_arn(arn).send().await,
        )
    }

    /// The rule at the wanted priority of the listener, when it carries this node's tags;
    /// another stack's (or nobody's) is `NotOwned`, and the one this node replaces is not
    /// returned.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &ListenerRuleProps,
    ) -> Result<Option<Applied>, ResourceError> {
        Ok(self.claim(ctx, p).await?.adopted())
    }
}

/// How errors name a rule: by its priority and listener.
fn object(p: &ListenerRuleProps) -> String {
    format!(
        "listener rule at priority {} of {}",
        p.priority,
        p.listener_arn
            .rsplit_once(":listener/")
            .map_or(p.listener_arn.as_str(), |(_, l)| l)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_arn_from_rule_arn() {
        assert_eq!(
            listener_of(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee"
            )
            .as_deref(),
            Some(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2"
            )
        );
        assert_eq!(listener_of("nonsense"), None);
    }
}
