//! `aws_lb_listener`: a port and protocol a load balancer accepts, and what it does with a
//! request no rule matches.

use super::{
    ARN_BATCH, Claim, adopt_holder, adoptable, arns, claim, held_by_superseded,
    require_not_foreign, taken_and_freed,
};
use crate::AwsClients;
use crate::clients::read_each;
use crate::clients::{by_id, each_item, fail_all};
use crate::error::{classify, code, is_not_found};
use crate::ownership::{found, gone, single_attempt, tags_for};
use aws_sdk_elasticloadbalancingv2::error::SdkError;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, FixedResponseActionConfig, ProtocolEnum,
    RedirectActionConfig, RedirectActionStatusCodeEnum,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use dagform_core::{
    Applied, Changes, Current, Kind, KindOutputs, Observed, OpContext, Properties, ResourceError,
};
use dagform_resources::elbv2::{DefaultAction, ListenerField, ListenerOutputs, ListenerProps};
use serde_json::{Value as Json, json};
use std::sync::Arc;

/// `aws_lb_listener`: only the load balancer it belongs to is fixed at creation.
#[derive(Clone)]
pub struct Listener {
    clients: Arc<AwsClients>,
}

/// The action as the SDK takes it.
fn to_sdk(action: &DefaultAction) -> Action {
    match action {
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

/// The action in the property shape; `{type}` alone for kinds dagform does not manage, so that
/// they show up as drift.
fn observed_action(action: &Action) -> Json {
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

/// The target group a forward action sends to, in either of the forms AWS reports.
pub(super) fn forwarded_target_group(action: &Action) -> Option<&str> {
    action.target_group_arn().or_else(|| {
        action
            .forward_config()
            .and_then(|f| f.target_groups().first())
            .and_then(|t| t.target_group_arn())
    })
}

/// The listener's certificate as the SDK takes it.
fn certificates(p: &ListenerProps) -> Option<Vec<Certificate>> {
    p.certificate_arn
        .as_ref()
        .map(|arn| vec![Certificate::builder().certificate_arn(arn).build()])
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

fn outputs(listener: &Lsn) -> Result<ListenerOutputs, ResourceError> {
    let arn = listener
        .listener_arn()
        .ok_or_else(|| ResourceError::failed("DescribeListeners: listener without ARN"))?;
    Ok(ListenerOutputs {
        id: arn.to_owned(),
        arn: arn.to_owned(),
    })
}

fn applied(listener: &Lsn) -> Result<Applied, ResourceError> {
    outputs(listener).map(Applied::of)
}

impl Listener {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    /// Who holds the wanted port of the load balancer (one listener per port).
    async fn claim(&self, ctx: &OpContext, p: &ListenerProps) -> Result<Claim, ResourceError> {
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
        let result = self
            .clients
            .elbv2
            .describe_listeners()
            .listener_arns(arn)
            .send()
            .await;
        Ok(found("DescribeListeners", result)?.and_then(|out| out.listeners().first().cloned()))
    }
}

/// A live listener in the shape of the desired properties. Built by hand: the certificate and
/// default action are left out when AWS reports none, and an action dagform does not manage
/// shows as its type alone.
fn observe(listener: &Lsn, current: Current<'_>) -> Result<Observed, ResourceError> {
    let recorded = current.properties;
    let mut properties = Properties::new();
    let mut set = |field: ListenerField, value: Json| {
        properties.insert(field.as_str().to_owned(), value);
    };
    set(
        ListenerField::LoadBalancerArn,
        json!(listener.load_balancer_arn()),
    );
    set(ListenerField::Port, json!(listener.port()));
    set(
        ListenerField::Protocol,
        json!(listener.protocol().map(|p| p.as_str())),
    );
    let certificates = listener.certificates();
    let default_certificate = certificates
        .iter()
        .find(|c| c.is_default() == Some(true))
        .or_else(|| certificates.first())
        .and_then(|c| c.certificate_arn());
    if let Some(cert) = default_certificate {
        set(ListenerField::CertificateArn, json!(cert));
    }
    // AWS reports a policy even where none was asked for; only a chosen one is compared.
    if recorded.contains_key(ListenerField::SslPolicy.as_str())
        && let Some(policy) = listener.ssl_policy()
    {
        set(ListenerField::SslPolicy, json!(policy));
    }
    let mut actions: Vec<&Action> = listener.default_actions().iter().collect();
    actions.sort_by_key(|a| a.order().unwrap_or(i32::MAX));
    if let Some(action) = actions.first() {
        set(ListenerField::DefaultAction, observed_action(action));
    }
    Ok(Observed {
        properties,
        outputs: outputs(listener)?.into_outputs(),
    })
}

#[async_trait::async_trait]
impl Kind for Listener {
    type Props = ListenerProps;

    /// A load balancer has one listener per port, and AWS answers a create of an existing
    /// listener with the same settings with that listener: whatever holds the port is checked
    /// first, and what the create returns is checked again.
    async fn create(&self, ctx: &OpContext, p: &ListenerProps) -> Result<Applied, ResourceError> {
        let object = object(p);
        let holder = self.claim(ctx, p).await?;
        if let Some(adopted) = adopt_holder(self, ctx, &object, holder, p).await? {
            return Ok(adopted);
        }
        let created = self
            .clients
            .elbv2
            .create_listener()
            .load_balancer_arn(&p.load_balancer_arn)
            .port(p.port)
            .protocol(ProtocolEnum::from(p.protocol.as_str()))
            .set_certificates(certificates(p))
            .set_ssl_policy(p.ssl_policy.clone())
            .default_actions(to_sdk(&p.default_action))
            .set_tags(Some(tags_for(ctx, None)))
            .customize()
            .config_override(single_attempt::elbv2())
            .send()
            .await;
        let out = match created {
            Ok(out) => out,
            Err(e) if code(&e) == Some("DuplicateListener") => {
                let holder = self.claim(ctx, p).await?;
                return adopt_holder(self, ctx, &object, holder, p)
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
        p: &ListenerProps,
        _changed: &Changes<ListenerProps>,
    ) -> Result<Applied, ResourceError> {
        require_not_foreign(&self.clients, ctx, &object(p), current.id).await?;
        let out = self
            .clients
            .elbv2
            .modify_listener()
            .listener_arn(current.id)
            .port(p.port)
            .protocol(ProtocolEnum::from(p.protocol.as_str()))
            .set_certificates(certificates(p))
            .set_ssl_policy(p.ssl_policy.clone())
            .default_actions(to_sdk(&p.default_action))
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
        p: &ListenerProps,
    ) -> Result<Option<Applied>, ResourceError> {
        Ok(self.claim(ctx, p).await?.adopted())
    }

    /// What `status` shows of it.
    async fn inspect(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<serde_json::Value>, ResourceError> {
        Ok(Some(
            crate::inspect::listener(&self.clients, current)
                .await?
                .to_json(),
        ))
    }
}

/// How errors name a listener: by its port and load balancer.
fn object(p: &ListenerProps) -> String {
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
    fn default_actions_round_trip_through_the_sdk() {
        let a: DefaultAction = serde_json::from_value(json!({
            "type": "redirect", "protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"
        }))
        .unwrap();
        let back = observed_action(&to_sdk(&a));
        assert_eq!(back["type"], "redirect");
        assert_eq!(back["port"], "443");
        assert_eq!(serde_json::from_value::<DefaultAction>(back).unwrap(), a);
    }
}
