//! `aws_lb_listener_rule`: forwards requests matching host names (and paths) to a target group.

use super::listener::forwarded_target_group;
use super::{Claim, adopt_holder, check_range, claim, require_not_foreign, taken_and_freed};
use crate::AwsClients;
use crate::clients::{by_id, each_item};
use crate::error::{classify, code, is_not_found, parse};
use crate::ownership::{found, gone, in_recorded_order, single_attempt, tags_for};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, HostHeaderConditionConfig, PathPatternConditionConfig, RuleCondition,
    RulePriorityPair,
};
use dagform_core::{
    Applied, Current, Observed, OpContext, Properties, ResourceError, ResourceKind,
};
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// AWS allows three values per condition and five per rule.
const MAX_VALUES_PER_CONDITION: usize = 3;
const MAX_VALUES_PER_RULE: usize = 5;

pub(super) struct ListenerRule {
    pub(super) clients: Arc<AwsClients>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Props {
    listener_arn: String,
    priority: i32,
    host_headers: Vec<String>,
    #[serde(default)]
    path_patterns: Vec<String>,
    target_group_arn: String,
}

impl Props {
    fn parse(props: &Properties) -> Result<Self, ResourceError> {
        let p: Self = parse(props)?;
        check_range("priority", p.priority, 1..=50000)?;
        if p.host_headers.is_empty() && p.path_patterns.is_empty() {
            return Err(ResourceError::invalid(
                "a listener rule needs at least one host header or path pattern",
            ));
        }
        for (what, values) in [
            ("host_headers", &p.host_headers),
            ("path_patterns", &p.path_patterns),
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
        let total = p.host_headers.len() + p.path_patterns.len();
        if total > MAX_VALUES_PER_RULE {
            return Err(ResourceError::invalid(format!(
                "a listener rule may match at most {MAX_VALUES_PER_RULE} values in all, got {total}"
            )));
        }
        Ok(p)
    }

    fn conditions(&self) -> Vec<RuleCondition> {
        let mut conditions = vec![];
        if !self.host_headers.is_empty() {
            conditions.push(
                RuleCondition::builder()
                    .field("host-header")
                    .host_header_config(
                        HostHeaderConditionConfig::builder()
                            .set_values(Some(self.host_headers.clone()))
                            .build(),
                    )
                    .build(),
            );
        }
        if !self.path_patterns.is_empty() {
            conditions.push(
                RuleCondition::builder()
                    .field("path-pattern")
                    .path_pattern_config(
                        PathPatternConditionConfig::builder()
                            .set_values(Some(self.path_patterns.clone()))
                            .build(),
                    )
                    .build(),
            );
        }
        conditions
    }

    fn actions(&self) -> Vec<Action> {
        vec![
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(&self.target_group_arn)
                .build(),
        ]
    }
}

type Rule = aws_sdk_elasticloadbalancingv2::types::Rule;

fn applied(rule: &Rule) -> Result<Applied, ResourceError> {
    let arn = rule
        .rule_arn()
        .ok_or_else(|| ResourceError::failed("DescribeRules: rule without ARN"))?;
    Ok(Applied::new(arn).output("arn", arn))
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

/// A live rule in the shape of the desired properties.
fn observe(rule: &Rule, current: Current<'_>) -> Result<Observed, ResourceError> {
    let recorded = current.properties;
    let mut properties = Properties::new();
    let listener = listener_of(current.id)
        .map(serde_json::Value::from)
        .or_else(|| recorded.get("listener_arn").cloned());
    if let Some(listener) = listener {
        properties.insert("listener_arn".into(), listener);
    }
    if let Some(priority) = rule.priority().and_then(|p| p.parse::<i64>().ok()) {
        properties.insert("priority".into(), json!(priority));
    }
    properties.insert(
        "host_headers".into(),
        json!(in_recorded_order(
            condition_values(rule, "host-header"),
            recorded.get("host_headers")
        )),
    );
    properties.insert(
        "path_patterns".into(),
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
        properties.insert("target_group_arn".into(), json!(target));
    }
    Ok(Observed {
        properties,
        outputs: applied(rule)?.outputs,
    })
}

impl ListenerRule {
    /// Who holds the wanted priority of the listener (one rule per priority).
    async fn claim(&self, ctx: &OpContext, p: &Props) -> Result<Claim, ResourceError> {
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
        match self
            .clients
            .elbv2
            .describe_rules()
            .rule_arns(arn)
            .send()
            .await
        {
            Ok(out) => Ok(out.rules().first().cloned()),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(classify("DescribeRules", e)),
        }
    }
}

#[async_trait::async_trait]
impl ResourceKind for ListenerRule {
    fn name(&self) -> &'static str {
        "aws_lb_listener_rule"
    }

    fn forces_replacement(&self, property: &str) -> bool {
        property == "listener_arn"
    }

    /// A priority is unique per listener: a create that meets `PriorityInUse` adopts the rule
    /// holding it only when it is this node's.
    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = Props::parse(props)?;
        let created = self
            .clients
            .elbv2
            .create_rule()
            .listener_arn(&p.listener_arn)
            .priority(p.priority)
            .set_conditions(Some(p.conditions()))
            .set_actions(Some(p.actions()))
            .set_tags(Some(tags_for(ctx, None)))
            .customize()
            .config_override(single_attempt::elbv2())
            .send()
            .await;
        let out = match created {
            Ok(out) => out,
            Err(e) if code(&e) == Some("PriorityInUse") => {
                let object = object(&p);
                let holder = self.claim(ctx, &p).await?;
                return adopt_holder(self, ctx, &object, holder, props)
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
        desired: &Properties,
        changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p = Props::parse(desired)?;
        let arn = current.id;
        require_not_foreign(&self.clients, ctx, &format!("listener rule {arn}"), arn).await?;
        let elbv2 = &self.clients.elbv2;
        if changed.iter().any(|c| c == "priority") {
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
        if changed.iter().any(|c| {
            matches!(
                c.as_str(),
                "host_headers" | "path_patterns" | "target_group_arn"
            )
        }) {
            elbv2
                .modify_rule()
                .rule_arn(arn)
                .set_conditions(Some(p.conditions()))
                .set_actions(Some(p.actions()))
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
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = Props::parse(props)?;
        Ok(self.claim(ctx, &p).await?.adopted())
    }
}

/// How errors name a rule: by its priority and listener.
fn object(p: &Props) -> String {
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
