//! `aws_acm_certificate_validation`: the wait for a certificate to be issued.

use super::{describe, status_of, validation_records};
use crate::AwsClients;
use aws_sdk_acm::types::{CertificateDetail, CertificateStatus};
use dagform_core::{Applied, Changes, Current, Kind, Observed, OpContext, Pending, ResourceError};
use dagform_resources::acm::{
    CertificateValidationField, CertificateValidationOutputs, CertificateValidationProps,
};
use serde_json::Value as Json;
use std::sync::Arc;
use std::time::Duration;

/// `aws_acm_certificate_validation`: owns no AWS object; it stands for "the certificate is
/// issued", so that listeners using the certificate wait for it. A certificate still waiting
/// for its DNS records when the wait runs out is pending, not failed: the records may live at
/// a DNS host only the user can change.
pub struct CertificateValidation {
    clients: Arc<AwsClients>,
}

fn applied(arn: &str, status: &str) -> Applied {
    Applied::of(CertificateValidationOutputs {
        id: arn.to_owned(),
        certificate_arn: arn.to_owned(),
        status: status.to_owned(),
    })
}

/// `ctx` with the wait the properties ask for.
fn with_timeout(ctx: &OpContext, p: &CertificateValidationProps) -> OpContext {
    let mut ctx = ctx.clone();
    if let Some(t) = p.timeout_seconds {
        ctx.poll.timeout = Duration::from_secs(t);
    }
    ctx
}

/// The error for a certificate ACM will never issue (failed, revoked, expired…).
fn never_issued(arn: &str, cert: &CertificateDetail) -> ResourceError {
    ResourceError::failed(format!(
        "certificate {arn} will not be issued: it is {} ({})",
        status_of(cert),
        cert.failure_reason()
            .map(|r| r.as_str())
            .unwrap_or("no reason given")
    ))
}

impl CertificateValidation {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    /// Waits until the certificate is issued. When the wait runs out, the certificate is
    /// pending on the DNS records ACM looks for, which the pending outcome lists.
    async fn wait_issued(&self, ctx: &OpContext, arn: &str) -> Result<Applied, ResourceError> {
        let issued = ctx
            .wait_for(&format!("certificate {arn} to be issued"), || async {
                let Some(cert) = describe(&self.clients, arn).await? else {
                    return Err(ResourceError::Transient(format!(
                        "certificate {arn} is not visible yet"
                    )));
                };
                match cert.status() {
                    Some(CertificateStatus::Issued) => Ok(Some(())),
                    Some(CertificateStatus::PendingValidation) | None => Ok(None),
                    Some(_) => Err(never_issued(arn, &cert)),
                }
            })
            .await;
        match issued {
            Ok(()) => Ok(applied(arn, CertificateStatus::Issued.as_str())),
            Err(timeout @ ResourceError::Timeout(_)) => self.pending(arn, timeout).await,
            Err(e) => Err(e),
        }
    }

    /// The outcome once the wait has run out: pending on the DNS records (or issued after
    /// all); `timeout` stands when the certificate cannot even be seen.
    async fn pending(&self, arn: &str, timeout: ResourceError) -> Result<Applied, ResourceError> {
        let Some(cert) = describe(&self.clients, arn).await? else {
            return Err(timeout);
        };
        match cert.status() {
            Some(CertificateStatus::Issued) => {
                return Ok(applied(arn, CertificateStatus::Issued.as_str()));
            }
            Some(CertificateStatus::PendingValidation) | None => {}
            Some(_) => return Err(never_issued(arn, &cert)),
        }
        let instructions = validation_records(&cert)
            .unwrap_or_default()
            .into_iter()
            .map(|r| format!("{} {} {}", r.name, r.r#type, r.value))
            .collect();
        Ok(applied(arn, status_of(&cert)).pending(Pending {
            waiting_for: format!("certificate {arn} to be issued"),
            instructions,
        }))
    }
}

#[async_trait::async_trait]
impl Kind for CertificateValidation {
    type Props = CertificateValidationProps;

    /// DNS validation takes a few minutes once the records resolve.
    fn typical_wait(&self, deleting: bool) -> std::time::Duration {
        std::time::Duration::from_secs(if deleting { 0 } else { 180 })
    }

    async fn create(
        &self,
        ctx: &OpContext,
        p: &CertificateValidationProps,
    ) -> Result<Applied, ResourceError> {
        self.wait_issued(&with_timeout(ctx, p), &p.certificate_arn)
            .await
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some(cert) = describe(&self.clients, current.id).await? else {
            return Ok(None);
        };
        let props = CertificateValidationProps {
            certificate_arn: current.id.to_owned(),
            // A setting of this run, not of AWS: nothing to compare.
            timeout_seconds: current
                .properties
                .get(CertificateValidationField::TimeoutSeconds.as_str())
                .and_then(Json::as_u64),
        };
        let outputs = CertificateValidationOutputs {
            id: current.id.to_owned(),
            certificate_arn: current.id.to_owned(),
            status: status_of(&cert).to_owned(),
        };
        Ok(Some(Observed::of(&props, outputs)))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        _current: Current<'_>,
        p: &CertificateValidationProps,
        _changed: &Changes<CertificateValidationProps>,
    ) -> Result<Applied, ResourceError> {
        self.wait_issued(&with_timeout(ctx, p), &p.certificate_arn)
            .await
    }

    async fn delete(&self, _ctx: &OpContext, _current: Current<'_>) -> Result<(), ResourceError> {
        Ok(())
    }
}
