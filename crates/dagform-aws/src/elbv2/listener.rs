//! `aws_lb_listener`: a port and protocol a load balancer accepts, and what it does with a
//! request no rule matches.

use super::{
    ARN_BATCH, Claim, adopt_holder, adoptable, arns, check_range, claim, held_by_superseded,
    require_not_foreign, taken_and_freed,
};
use crate::AwsClients;
use crate::clients::{by_id, each_item, fail_all, read_each};
use crate::error::{classify, code, is_not_found, parse};
use crate::ownership::{found, gone, single_attempt, tags_for};
use aws_sdk_elasticloadbalancingv2::error::SdkError;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, FixedResponseActionConfig, ProtocolEnum,
    RedirectActionConfig, RedirectActionStatusCodeEnum,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use dagform_core::{
    Applied, Current, Observed, OpContext, Properties, ResourceError, ResourceKind,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

pub(super) struct Listener {
    pub(super) clients: Arc<AwsClients>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Props {
    load_balancer_arn: String,
    port: i32,
    protocol: String,
    #[serde(default)]
    certificate_arn: Option<String>,
    #[serde(default)]
    ssl_policy: Option<String>,
    default_action: DefaultAction,
}

/// What a listener does with requests no rule matches.
#[derive(Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
enum DefaultAction {
    Forward {
        target_group_arn: String,
    },
    Redirect {
        protocol: String,
        port: String,
        status_code: String,
    },
    FixedResponse {
        status_code: String,
        content_type: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_body: Option<String>,
    },
}

const CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "text/css",
    "text/html",
    "application/javascript",
    "application/json",
];

impl DefaultAction {
    fn validate(&self) -> Result<(), ResourceError> {
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

    fn to_sdk(&self) -> Action {
        match self {
            DefaultAction::Forward { target_group_arn } => Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(target_group_arn)
                .build(),
            DefaultAction::Redirect {
                protocol,
                port,
                status_code,
            } => Action::builder()
                .r#type(ActionTypeEnum::Redirect)
                .redirect_config(
                    RedirectActionConfig::builder()
                        .protocol(protocol)
                        .port(port)
                        .status_code(RedirectActionStatusCodeEnum::from(status_code.as_str()))
                        .build(),
                )
                .build(),
            DefaultAction::FixedResponse {
                status_code,
                content_type,
                message_body,
            } => Action::builder()
                .r#type(ActionTypeEnum::FixedResponse)
                .fixed_response_config(
                    FixedResponseActionConfig::builder()
                        .status_code(status_code)
                        .content_type(content_type)
                        .set_message_body(message_body.clone())
                        .build(),
                )
                .build(),
        }
    }

    /// The action in the property shape; `{type}` alone for kinds dagform does not manage,
    /// so that they show up as drift.
    fn observed(action: &Action) -> serde_json::Value {
        let parsed = match action.r#type() {
            Some(ActionTypeEnum::Forward) => {
                forwarded_target_group(action).map(|arn| DefaultAction::Forward {
                    target_group_arn: arn.to_owned(),
                })
            }
            Some(ActionTypeEnum::Redirect) => {
                action.redirect_config().map(|c| DefaultAction::Redirect {
                    protocol: c.protocol().unwrap_or("#{protocol}").to_owned(),
                    port: c.port().unwrap_or("#{port}").to_owned(),
                    status_code: c
                        .status_code()
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_default(),
                })
            }
            Some(ActionTypeEnum::FixedResponse) => {
                action
                    .fixed_response_config()
                    .map(|c| DefaultAction::FixedResponse {
                        status_code: c.status_code().unwrap_or_default().to_owned(),
                        content_type: c.content_type().unwrap_or_default().to_owned(),
                        message_body: c.message_body().map(str::to_owned),
                    })
            }
            _ => None,
        };
        match parsed {
            Some(a) => serde_json::to_value(a).unwrap_or_default(),
            None => json!({ "type": action.r#type().map(|t| t.as_str()) }),
        }
    }
}

/// The target group a forward action sends to, in either of the forms AWS reports.
pub(super) fn forwarded_target_group(action: &Action) -> Option<&str> {
    action.target_group_arn().or_else(|| {
        action
            .forward_config()
            .and_then(|f| f.target_groups().first())
            .and_then(|t| t.target_group_arn())
    })
}

impl Props {
    fn parse(props: &Properties) -> Result<Self, ResourceError> {
        let p: Self = parse(props)?;
        check_range("port", p.port, 1..=65535)?;
        match p.protocol.as_str() {
            "HTTPS" if p.certificate_arn.is_none() => {
                return Err(ResourceError::invalid(
                    "an HTTPS listener needs certificate_arn",
                ));
            }
            "HTTPS" => {}
            "HTTP" if p.certificate_arn.is_some() || p.ssl_policy.is_some() => {
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
        p.default_action.validate()?;
        Ok(p)
    }

    fn certificates(&self) -> Option<Vec<Certificate>> {
        self.certificate_arn
            .as_ref()
            .map(|arn| vec![Certificate::builder().certificate_arn(arn).build()])
    }
}

/// A certificate ACM just issued can be unknown to ELB for a few seconds: retried.
fn classify_listener<E, R>(operation: &str, err: SdkError<E, R>) -> ResourceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match classify(operation, err) {
        ResourceError::Failed(m) if m.contains("CertificateNotFound") => {
            ResourceError::Transient(m)
        }
        other => other,
    }
}

type Lsn = aws_sdk_elasticloadbalancingv2::types::Listener;

fn applied(listener: &Lsn) -> Result<Applied, ResourceError> {
    let arn = listener
        .listener_arn()
        .ok_or_else(|| ResourceError::failed("DescribeListeners: listener without ARN"))?;
    Ok(Applied::new(arn).output("arn", arn))
}

impl Listener {
    /// Who holds the wanted port of the load balancer (one listener per port).
    async fn claim(&self, ctx: &OpContext, p: &Props) -> Result<Claim, ResourceError> {
        let mut marker = None;
        let holder = loop {
            let Some(out) = found(
                "DescribeListeners",
                self.clients
                    .elbv2
                    .describe_listeners()
                    .load_balancer_arn(&p.load_balancer_arn)
                    .set_marker(marker)
                    .send()
                    .await,
            )?
            else {
                break None;
            };
            if let Some(listener) = out.listeners().iter().find(|l| l.port() == Some(p.port)) {
                break Some(applied(listener)?);
            }
            match out.next_marker() {
                Some(m) => marker = Some(m.to_owned()),
                None => break None,
            }
        };
        claim(&self.clients, ctx, &object(p), holder).await
    }

    async fn describe(&self, arn: &str) -> Result<Option<Lsn>, ResourceError> {
        match self
            .clients
            .elbv2
            .describe_listeners()
            .listener_arns(arn)
            .send()
            .await
        {
            Ok(out) => Ok(out.listeners().first().cloned()),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(classify("DescribeListeners", e)),
        }
    }
}

/// A live listener in the shape of the desired properties.
fn observe(listener: &Lsn, current: Current<'_>) -> Result<Observed, ResourceError> {
    let recorded = current.properties;
    let mut properties = Properties::new();
    properties.insert(
        "load_balancer_arn".into(),
        json!(listener.load_balancer_arn()),
    );
    properties.insert("port".into(), json!(listener.port()));
    properties.insert(
        "protocol".into(),
        json!(listener.protocol().map(|p| p.as_str())),
    );
    let certificates = listener.certificates();
    let default_certificate = certificates
        .iter()
        .find(|c| c.is_default() == Some(true))
        .or_else(|| certificates.first())
        .and_then(|c| c.certificate_arn());
    if let Some(cert) = default_certificate {
        properties.insert("certificate_arn".into(), json!(cert));
    }
    // AWS reports a policy even where none was asked for; only a chosen one is compared.
    if recorded.contains_key("ssl_policy")
        && let Some(policy) = listener.ssl_policy()
    {
        properties.insert("ssl_policy".into(), json!(policy));
    }
    let mut actions: Vec<&Action> = listener.default_actions().iter().collect();
    actions.sort_by_key(|a| a.order().unwrap_or(i32::MAX));
    if let Some(action) = actions.first() {
        properties.insert("default_action".into(), DefaultAction::observed(action));
    }
    Ok(Observed {
        properties,
        outputs: applied(listener)?.outputs,
    })
}

#[async_trait::async_trait]
impl ResourceKind for Listener {
    fn name(&self) -> &'static str {
        "aws_lb_listener"
    }

    fn forces_replacement(&self, property: &str) -> bool {
        property == "load_balancer_arn"
    }

    /// A load balancer has one listener per port, and AWS answers a create of an existing
    /// listener with the same settings with that listener: whatever holds the port is checked
    /// first, and what the create returns is checked again.
    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = Props::parse(props)?;
        let object = object(&p);
        let holder = self.claim(ctx, &p).await?;
        if let Some(adopted) = adopt_holder(self, ctx, &object, holder, props).await? {
            return Ok(adopted);
        }
        let created = self
            .clients
            .elbv2
            .create_listener()
            .load_balancer_arn(&p.load_balancer_arn)
            .port(p.port)
            .protocol(ProtocolEnum::from(p.protocol.as_str()))
            .set_certificates(p.certificates())
            .set_ssl_policy(p.ssl_policy.clone())
            .default_actions(p.default_action.to_sdk())
            .set_tags(Some(tags_for(ctx, None)))
            .customize()
            .config_override(single_attempt::elbv2())
            .send()
            .await;
        let out = match created {
            Ok(out) => out,
            Err(e) if code(&e) == Some("DuplicateListener") => {
                let holder = self.claim(ctx, &p).await?;
                return adopt_holder(self, ctx, &object, holder, props)
                    .await?
                    .ok_or_else(|| taken_and_freed(&object));
            }
            Err(e) => return Err(classify_listener("CreateListener", e)),
        };
        let listener = out
            .listeners()
            .first()
            .ok_or_else(|| ResourceError::failed("CreateListener returned no listener"))?;
        let result = applied(listener)?;
        if !adoptable(&self.clients, ctx, &object, &result.id).await? {
            return Err(held_by_superseded(&object));
        }
        Ok(result)
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        self.describe(current.id)
            .await?
            .map(|listener| observe(&listener, current))
            .transpose()
    }

    /// One DescribeListeners per batch of ARNs; when one of them is gone AWS fails the call,
    /// and the batch is read one by one.
    async fn read_many(
        &self,
        ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let found = match self
            .clients
            .elbv2
            .describe_listeners()
            .set_listener_arns(Some(arns(items)))
            .send()
            .await
        {
            Ok(out) => by_id(out.listeners().to_vec(), |l| l.listener_arn()),
            Err(e) if is_not_found(&e) => return read_each(self, ctx, items).await,
            Err(e) => return fail_all(items, classify("DescribeListeners", e)),
        };
        each_item(items, Ok(found), |listener, current| {
            observe(listener, current).map(Some)
        })
    }

    fn read_batch_size(&self) -> usize {
        ARN_BATCH
    }

    /// Port, protocol, certificate, policy and default action all change in one call.
    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        _changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p = Props::parse(desired)?;
        require_not_foreign(&self.clients, ctx, &object(&p), current.id).await?;
        let out = self
            .clients
            .elbv2
            .modify_listener()
            .listener_arn(current.id)
            .port(p.port)
            .protocol(ProtocolEnum::from(p.protocol.as_str()))
            .set_certificates(p.certificates())
            .set_ssl_policy(p.ssl_policy.clone())
            .default_actions(p.default_action.to_sdk())
            .send()
            .await
            .map_err(|e| classify_listener("ModifyListener", e))?;
        let listener = out
            .listeners()
            .first()
            .ok_or_else(|| ResourceError::failed("ModifyListener returned no listener"))?;
        applied(listener)
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let arn = current.id;
        if !require_not_foreign(&self.clients, ctx, &format!("listener {arn}"), arn).await? {
            return Ok(());
        }
        gone(
            "DeleteListener",
            self.clients
                .elbv2
                .delete_listener()
                .listener_arn(arn)
                .send()
                .await,
        )
    }

    /// The listener on the wanted port of the load balancer, when it carries this node's tags;
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

/// How errors name a listener: by its port and load balancer.
fn object(p: &Props) -> String {
    format!(
        "listener on port {} of {}",
        p.port,
        p.load_balancer_arn
            .rsplit_once(":loadbalancer/")
            .map_or(p.load_balancer_arn.as_str(), |(_, lb)| lb)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_actions_parse_by_type() {
        let a: DefaultAction = serde_json::from_value(json!({
            "type": "redirect", "protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"
        }))
        .unwrap();
        assert!(a.validate().is_ok());
        let back = DefaultAction::observed(&a.to_sdk());
        assert_eq!(back["type"], "redirect");
        assert_eq!(back["port"], "443");
        let bad = serde_json::from_value::<DefaultAction>(json!({
            "type": "forward", "target_group_arn": "x", "extra": 1
        }));
        assert!(bad.is_err());
    }
}
