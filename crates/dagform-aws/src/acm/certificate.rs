//! `aws_acm_certificate`: a public certificate validated by DNS records.

use super::{describe, status_of, validation_records};
use crate::AwsClients;
use crate::error::classify;
use crate::ownership::{found, gone, in_recorded_order, pairs, tags_for};
use aws_sdk_acm::types::{CertificateDetail, CertificateStatus, Tag, ValidationMethod};
use dagform_core::kind::Owner;
use dagform_core::{
    Applied, Changes, Current, Kind, KindOutputs, Observed, OpContext, Properties, ResourceError,
};
use dagform_resources::acm::{
    CertificateField, CertificateOutputs, CertificateProps, ValidationRecord,
};
use serde_json::{Value as Json, json};
use std::collections::BTreeSet;
use std::sync::Arc;

/// `aws_acm_certificate`: a public certificate validated by DNS records; any change replaces
/// it.
pub struct Certificate {
    clients: Arc<AwsClients>,
}

/// The tags of certificate `arn`; `None` when it is gone.
async fn tags_of(clients: &AwsClients, arn: &str) -> Result<Option<Vec<Tag>>, ResourceError> {
    let out = found(
        "ListTagsForCertificate",
        clients
            .acm
            .list_tags_for_certificate()
            .certificate_arn(arn)
            .send()
            .await,
    )?;
    Ok(out.map(|out| out.tags().to_vec()))
}

fn outputs(arn: &str, records: Vec<ValidationRecord>) -> CertificateOutputs {
    CertificateOutputs {
        id: arn.to_owned(),
        arn: arn.to_owned(),
        validation_records: records,
    }
}

impl Certificate {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    /// ACM publishes the validation records a few seconds after the request.
    async fn wait_for_records(&self, ctx: &OpContext, arn: &str) -> Result<Applied, ResourceError> {
        ctx.wait_for(
            &format!("validation records of certificate {arn}"),
            || async {
                let Some(cert) = describe(&self.clients, arn).await? else {
                    return Err(ResourceError::Transient(format!(
                        "certificate {arn} is not visible yet"
                    )));
                };
                if matches!(
                    cert.status(),
                    Some(CertificateStatus::Failed | CertificateStatus::Revoked)
                ) {
                    return Err(ResourceError::failed(format!(
                        "certificate {arn} is {}: {}",
                        status_of(&cert),
                        cert.failure_reason()
                            .map(|r| r.as_str())
                            .unwrap_or("no reason given")
                    )));
                }
                Ok(validation_records(&cert).map(|records| Applied::of(outputs(arn, records))))
            },
        )
        .await
    }
}

#[async_trait::async_trait]
impl Kind for Certificate {
    type Props = CertificateProps;

    /// Listeners use the certificate: the new one must exist before the old one goes.
    fn create_before_destroy(&self) -> bool {
        true
    }

    /// The token makes a retried or re-run request of the same intent return the certificate
    /// the first one made (ACM remembers a token for an hour), instead of a second one.
    async fn create(
        &self,
        ctx: &OpContext,
        p: &CertificateProps,
    ) -> Result<Applied, ResourceError> {
        let out = self
            .clients
            .acm
            .request_certificate()
            .domain_name(&p.domain_name)
            .set_subject_alternative_names(
                (!p.subject_alternative_names.is_empty())
                    .then(|| p.subject_alternative_names.clone()),
            )
            .validation_method(ValidationMethod::Dns)
            // ACM takes at most 32 word characters.
            .idempotency_token(ctx.client_token(32))
            .set_tags(Some(tags_for::<Tag>(ctx, None)))
            .send()
            .await
            .map_err(|e| classify("RequestCertificate", e))?;
        let arn = out
            .certificate_arn()
            .ok_or_else(|| ResourceError::failed("RequestCertificate returned no ARN"))?;
        self.wait_for_records(ctx, arn).await
    }

    /// Built by hand: the validation method shows only once ACM reports it, and the outputs
    /// stay as recorded until ACM publishes the records.
    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some(cert) = describe(&self.clients, current.id).await? else {
            return Ok(None);
        };
        let recorded = current.properties;
        let domain = cert.domain_name().unwrap_or_default();
        // AWS lists the domain name among the alternative names; the properties need not.
        let recorded_sans = recorded.get(CertificateField::SubjectAlternativeNames.as_str());
        let domain_recorded = recorded_sans
            .and_then(Json::as_array)
            .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(domain)));
        let sans: Vec<String> = cert
            .subject_alternative_names()
            .iter()
            .filter(|s| domain_recorded || s.as_str() != domain)
            .cloned()
            .collect();
        let mut properties = Properties::new();
        let mut set = |field: CertificateField, value: Json| {
            properties.insert(field.as_str().to_owned(), value);
        };
        set(CertificateField::DomainName, json!(domain));
        set(
            CertificateField::SubjectAlternativeNames,
            json!(in_recorded_order(sans, recorded_sans)),
        );
        let method = cert
            .domain_validation_options()
            .iter()
            .find_map(|o| o.validation_method());
        if let Some(method) = method {
            set(CertificateField::ValidationMethod, json!(method.as_str()));
        }
        let outputs = match validation_records(&cert) {
            Some(records) => outputs(current.id, records).into_outputs(),
            None => current.outputs.clone(),
        };
        Ok(Some(Observed {
            properties,
            outputs,
        }))
    }

    async fn update(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
        _desired: &CertificateProps,
        changed: &Changes<CertificateProps>,
    ) -> Result<Applied, ResourceError> {
        Err(ResourceError::failed(format!(
            "certificate {} cannot change {} in place; it must be replaced",
            current.id,
            changed.names().join(", ")
        )))
    }

    /// A certificate still used by a listener reports `ResourceInUseException`, retried.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let arn = current.id;
        let Some(tags) = tags_of(&self.clients, arn).await? else {
            return Ok(());
        };
        ctx.require_not_foreign(&format!("certificate {arn}"), pairs(&tags))?;
        gone(
            "DeleteCertificate",
            self.clients
                .acm
                .delete_certificate()
                .certificate_arn(arn)
                .send()
                .await,
        )
    }

    /// A pending or issued certificate for exactly the wanted names that carries this node's
    /// tags and is not the one it replaces. Certificates have no unique name, so another
    /// stack's certificate for the same names is simply not this one.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &CertificateProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let wanted = p.names();
        let mut ours = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .clients
                .acm
                .list_certificates()
                .certificate_statuses(CertificateStatus::PendingValidation)
                .certificate_statuses(CertificateStatus::Issued)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| classify("ListCertificates", e))?;
            for summary in out.certificate_summary_list() {
                let Some(arn) = summary.certificate_arn() else {
                    continue;
                };
                if summary.domain_name() != Some(p.domain_name.as_str())
                    || ctx.superseded.iter().any(|s| s == arn)
                {
                    continue;
                }
                // The summary may list only some alternative names; the description has all.
                let Some(cert) = describe(&self.clients, arn).await? else {
                    continue;
                };
                if !is_usable(&cert) || names_of(&cert) != wanted {
                    continue;
                }
                let Some(tags) = tags_of(&self.clients, arn).await? else {
                    continue;
                };
                if ctx.owner(pairs(&tags)) != Owner::Ours {
                    continue;
                }
                ours.push(cert);
            }
            match out.next_token() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        // Several of this node's: an earlier run requested one and lost it. The newest is the
        // one the latest intent asked for (the ARN breaks a tie within the same second); the
        // older ones are leaks, left for the operator to see rather than adopted twice.
        let newest = ours
            .iter()
            .filter_map(|c| Some((c.created_at(), c.certificate_arn()?)))
            .max();
        match newest {
            Some((_, arn)) => self.wait_for_records(ctx, arn).await.map(Some),
            None => Ok(None),
        }
    }

    /// What `status` shows of it.
    async fn inspect(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<serde_json::Value>, ResourceError> {
        Ok(Some(
            crate::inspect::certificate(&self.clients, current)
                .await?
                .to_json(),
        ))
    }
}

/// Whether a certificate can still become (or is) the one in use: not failed, revoked,
/// expired or timed out.
fn is_usable(cert: &CertificateDetail) -> bool {
    matches!(
        cert.status(),
        Some(CertificateStatus::PendingValidation | CertificateStatus::Issued)
    )
}

/// Every name a certificate covers: its domain and all alternative names.
fn names_of(cert: &CertificateDetail) -> BTreeSet<String> {
    cert.domain_name()
        .into_iter()
        .map(str::to_owned)
        .chain(cert.subject_alternative_names().iter().cloned())
        .collect()
}
