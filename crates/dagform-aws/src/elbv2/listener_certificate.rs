//! `aws_lb_listener_certificate`: a certificate an HTTPS listener serves by SNI besides its
//! default one.

use super::tags_of;
use crate::AwsClients;
use crate::error::classify;
use crate::ownership::{found, gone, pairs};
use aws_sdk_elasticloadbalancingv2::types::Certificate;
use dagform_core::kind::Owner;
use dagform_core::{Applied, Changes, Current, Kind, Observed, OpContext, ResourceError};
use dagform_resources::elbv2::{
    ListenerCertificateOutputs, ListenerCertificateProps, listener_certificate_parts,
};
use std::sync::Arc;

/// `aws_lb_listener_certificate`: an attachment of a certificate to a listener. It carries no
/// tags; the listener it is on says whose it is.
#[derive(Clone)]
pub struct ListenerCertificate {
    clients: Arc<AwsClients>,
}

fn applied(p: &ListenerCertificateProps) -> Applied {
    Applied::of(ListenerCertificateOutputs::of(p))
}

/// The properties an attachment's id names.
fn props_of(id: &str) -> Result<ListenerCertificateProps, ResourceError> {
    let (listener_arn, certificate_arn) = listener_certificate_parts(id).ok_or_else(|| {
        ResourceError::failed(format!(
            "`{id}` is not a listener certificate id (listener ARN, a space, certificate ARN)"
        ))
    })?;
    Ok(ListenerCertificateProps {
        listener_arn: listener_arn.to_owned(),
        certificate_arn: certificate_arn.to_owned(),
    })
}

impl ListenerCertificate {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    /// The certificates `listener_arn` serves by SNI (its default one left out); `None` when
    /// the listener is gone.
    async fn sni_certificates(
        &self,
        listener_arn: &str,
    ) -> Result<Option<Vec<String>>, ResourceError> {
        let mut marker = None;
        let mut arns = Vec::new();
        loop {
            let Some(out) = found(
                "DescribeListenerCertificates",
                self.clients
                    .elbv2
                    .describe_listener_certificates()
                    .listener_arn(listener_arn)
                    .set_marker(marker)
                    .send()
                    .await,
            )?
            else {
                return Ok(None);
            };
            arns.extend(
                out.certificates()
                    .iter()
                    .filter(|c| c.is_default() != Some(true))
                    .filter_map(|c| c.certificate_arn().map(str::to_owned)),
            );
            match out.next_marker() {
                Some(m) => marker = Some(m.to_owned()),
                None => return Ok(Some(arns)),
            }
        }
    }

    async fn attached(&self, p: &ListenerCertificateProps) -> Result<bool, ResourceError> {
        Ok(self
            .sni_certificates(&p.listener_arn)
            .await?
            .is_some_and(|arns| arns.contains(&p.certificate_arn)))
    }

    /// Refuses to touch a listener another stack owns; `Ok(false)` when the listener is gone.
    async fn require_listener_not_other_stacks(
        &self,
        ctx: &OpContext,
        p: &ListenerCertificateProps,
    ) -> Result<bool, ResourceError> {
        let Some(tags) = tags_of(&self.clients, &p.listener_arn).await? else {
            return Ok(false);
        };
        if let owner @ Owner::OtherStack { .. } = ctx.owner(pairs(&tags)) {
            return Err(ctx.not_owned(&format!("listener {}", p.listener_arn), &owner));
        }
        Ok(true)
    }
}

#[async_trait::async_trait]
impl Kind for ListenerCertificate {
    type Props = ListenerCertificateProps;

    /// AddListenerCertificates is not idempotent everywhere (the emulator lists a certificate
    /// added twice twice), so an attachment already there is adopted instead.
    async fn create(
        &self,
        ctx: &OpContext,
        p: &ListenerCertificateProps,
    ) -> Result<Applied, ResourceError> {
        self.require_listener_not_other_stacks(ctx, p).await?;
        if self.attached(p).await? {
            return Ok(applied(p));
        }
        self.clients
            .elbv2
            .add_listener_certificates()
            .listener_arn(&p.listener_arn)
            .certificates(
                Certificate::builder()
                    .certificate_arn(&p.certificate_arn)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("AddListenerCertificates", e))?;
        Ok(applied(p))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let p = props_of(current.id)?;
        Ok(self
            .attached(&p)
            .await?
            .then(|| Observed::of(&p, ListenerCertificateOutputs::of(&p))))
    }

    async fn update(
        &self,
        _ctx: &OpContext,
        _current: Current<'_>,
        _desired: &ListenerCertificateProps,
        _changed: &Changes<ListenerCertificateProps>,
    ) -> Result<Applied, ResourceError> {
        Err(ResourceError::failed(
            "a listener certificate has no in-place update; every change replaces it",
        ))
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let p = props_of(current.id)?;
        if !self.require_listener_not_other_stacks(ctx, &p).await? || !self.attached(&p).await? {
            return Ok(());
        }
        gone(
            "RemoveListenerCertificates",
            self.clients
                .elbv2
                .remove_listener_certificates()
                .listener_arn(&p.listener_arn)
                .certificates(
                    Certificate::builder()
                        .certificate_arn(&p.certificate_arn)
                        .build(),
                )
                .send()
                .await,
        )
    }

    /// The attachment, if the listener already serves the certificate. Both ends are this
    /// stack's objects, named by the configuration.
    async fn find(
        &self,
        _ctx: &OpContext,
        p: &ListenerCertificateProps,
    ) -> Result<Option<Applied>, ResourceError> {
        Ok(self.attached(p).await?.then(|| applied(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_names_listener_and_certificate() {
        let p = ListenerCertificateProps {
            listener_arn: "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/a/b/c".into(),
            certificate_arn: "arn:aws:acm:us-east-1:1:certificate/d".into(),
        };
        assert_eq!(props_of(&p.id()).unwrap(), p);
        assert!(props_of("nonsense").is_err());
    }
}
