//! ACM: public certificates validated through DNS, and the wait for their issuance.

use crate::AwsClients;
use crate::error::{classify, parse};
use crate::ownership::{found, gone, in_recorded_order, pairs, tags_for};
use aws_sdk_acm::types::{CertificateDetail, CertificateStatus, Tag, ValidationMethod};
use dagform_core::kind::Owner;
use dagform_core::{
    Applied, Current, Kinds, Observed, OpContext, Properties, ResourceError, ResourceKind,
};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::collections::BTreeSet;
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    kinds.register(Arc::new(Certificate {
        clients: clients.clone(),
    }));
    kinds.register(Arc::new(CertificateValidation {
        clients: clients.clone(),
    }));
}

/// ACM limits the first domain name to 64 characters (it becomes the certificate's CN).
const MAX_DOMAIN_NAME: usize = 64;
const MAX_SAN: usize = 253;

async fn describe(
    clients: &AwsClients,
    arn: &str,
) -> Result<Option<CertificateDetail>, ResourceError> {
    let out = found(
        "DescribeCertificate",
        clients
            .acm
            .describe_certificate()
            .certificate_arn(arn)
            .send()
            .await,
    )?;
    Ok(out.and_then(|out| out.certificate().cloned()))
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

/// One `(name, type, value)` per distinct DNS record the validation needs, sorted by name (a
/// wildcard and its apex share a record); `None` while ACM has not yet published them all.
fn validation_records(cert: &CertificateDetail) -> Option<Vec<(String, String, String)>> {
    let options = cert.domain_validation_options();
    if options.is_empty() {
        return None;
    }
    let mut records = BTreeSet::new();
    for option in options {
        let r = option.resource_record()?;
        records.insert((
            r.name().to_owned(),
            r.r#type().as_str().to_owned(),
            r.value().to_owned(),
        ));
    }
    Some(records.into_iter().collect())
}

fn records_json(records: &[(String, String, String)]) -> Json {
    Json::Array(
        records
            .iter()
            .map(|(name, ty, value)| json!({ "name": name, "type": ty, "value": value }))
            .collect(),
    )
}

fn status_of(cert: &CertificateDetail) -> &str {
    cert.status().map(|s| s.as_str()).unwrap_or("UNKNOWN")
}

/// `aws_acm_certificate`: a public certificate validated by DNS records.
struct Certificate {
    clients: Arc<AwsClients>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateProps {
    domain_name: String,
    #[serde(default)]
    subject_alternative_names: Vec<String>,
    validation_method: String,
}

impl CertificateProps {
    fn parse(props: &Properties) -> Result<Self, ResourceError> {
        let p: Self = parse(props)?;
        if p.validation_method != "DNS" {
            return Err(ResourceError::invalid(format!(
                "validation_method must be DNS, got `{}`",
                p.validation_method
            )));
        }
        if p.domain_name.is_empty() || p.domain_name.len() > MAX_DOMAIN_NAME {
            return Err(ResourceError::invalid(format!(
                "domain_name `{}` must be 1 to {MAX_DOMAIN_NAME} characters long",
                p.domain_name
            )));
        }
        if let Some(san) = p
            .subject_alternative_names
            .iter()
            .find(|s| s.is_empty() || s.len() > MAX_SAN)
        {
            return Err(ResourceError::invalid(format!(
                "subject alternative name `{san}` must be 1 to {MAX_SAN} characters long"
            )));
        }
        Ok(p)
    }

    /// Every name the certificate is to cover, as ACM reports them (the domain is among them).
    fn names(&self) -> BTreeSet<String> {
        std::iter::once(self.domain_name.clone())
            .chain(self.subject_alternative_names.iter().cloned())
            .collect()
    }
}

impl Certificate {
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
                Ok(validation_records(&cert).map(|records| applied(arn, &records)))
            },
        )
        .await
    }
}

fn applied(arn: &str, records: &[(String, String, String)]) -> Applied {
    Applied::new(arn)
        .output("arn", arn)
        .output("validation_records", records_json(records))
}

#[async_trait::async_trait]
impl ResourceKind for Certificate {
    fn name(&self) -> &'static str {
        "aws_acm_certificate"
    }

    fn forces_replacement(&self, _property: &str) -> bool {
        true
    }

    /// Listeners use the certificate: the new one must exist before the old one goes.
    fn create_before_destroy(&self) -> bool {
        true
    }

    /// The token makes a retried or re-run request of the same intent return the certificate
    /// the first one made (ACM remembers a token for an hour), instead of a second one.
    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = CertificateProps::parse(props)?;
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
        let recorded_sans = recorded.get("subject_alternative_names");
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
        properties.insert("domain_name".into(), json!(domain));
        properties.insert(
            "subject_alternative_names".into(),
            json!(in_recorded_order(sans, recorded_sans)),
        );
        let method = cert
            .domain_validation_options()
            .iter()
            .find_map(|o| o.validation_method());
        if let Some(method) = method {
            properties.insert("validation_method".into(), json!(method.as_str()));
        }
        let outputs = match validation_records(&cert) {
            Some(records) => applied(current.id, &records).outputs,
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
        _desired: &Properties,
        changed: &[String],
    ) -> Result<Applied, ResourceError> {
        Err(ResourceError::failed(format!(
            "certificate {} cannot change {} in place; it must be replaced",
            current.id,
            changed.join(", ")
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
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = CertificateProps::parse(props)?;
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

/// `aws_acm_certificate_validation`: owns no AWS object; it stands for "the certificate is
/// issued", so that listeners using the certificate wait for it.
struct CertificateValidation {
    clients: Arc<AwsClients>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidationProps {
    certificate_arn: String,
    /// How long to wait for issuance; by default as long as any other wait. Zero checks once:
    /// the records live at another DNS host and a later run finishes the job.
    timeout_seconds: Option<u64>,
}

impl ValidationProps {
    fn context(&self, ctx: &OpContext) -> OpContext {
        let mut ctx = ctx.clone();
        if let Some(t) = self.timeout_seconds {
            ctx.poll.timeout = std::time::Duration::from_secs(t);
        }
        ctx
    }
}

impl CertificateValidation {
    /// Waits until the certificate is issued; a timeout names the DNS records ACM is still
    /// waiting for.
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
                    Some(_) => Err(ResourceError::failed(format!(
                        "certificate {arn} will not be issued: it is {} ({})",
                        status_of(&cert),
                        cert.failure_reason()
                            .map(|r| r.as_str())
                            .unwrap_or("no reason given")
                    ))),
                }
            })
            .await;
        match issued {
            Ok(()) => Ok(Applied::new(arn)
                .output("certificate_arn", arn)
                .output("status", CertificateStatus::Issued.as_str())),
            Err(ResourceError::Timeout(message)) => {
                let records = describe(&self.clients, arn)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|c| validation_records(&c))
                    .unwrap_or_default();
                let wanted = records
                    .iter()
                    .map(|(name, ty, value)| format!("{name} {ty} {value}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                Err(ResourceError::Timeout(format!(
                    "{message}; ACM issues it once these DNS records exist in public DNS: {wanted}"
                )))
            }
            Err(e) => Err(e),
        }
    }
}

#[async_trait::async_trait]
impl ResourceKind for CertificateValidation {
    fn name(&self) -> &'static str {
        "aws_acm_certificate_validation"
    }

    fn forces_replacement(&self, property: &str) -> bool {
        property == "certificate_arn"
    }

    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p: ValidationProps = parse(props)?;
        self.wait_issued(&p.context(ctx), &p.certificate_arn).await
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some(cert) = describe(&self.clients, current.id).await? else {
            return Ok(None);
        };
        let mut properties = Properties::new();
        properties.insert("certificate_arn".into(), json!(current.id));
        if let Some(t) = current.properties.get("timeout_seconds") {
            // A setting of this run, not of AWS: nothing to compare.
            properties.insert("timeout_seconds".into(), t.clone());
        }
        let outputs = Applied::new(current.id)
            .output("certificate_arn", current.id)
            .output("status", status_of(&cert))
            .outputs;
        Ok(Some(Observed {
            properties,
            outputs,
        }))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        _current: Current<'_>,
        desired: &Properties,
        _changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p: ValidationProps = parse(desired)?;
        self.wait_issued(&p.context(ctx), &p.certificate_arn).await
    }

    async fn delete(&self, _ctx: &OpContext, _current: Current<'_>) -> Result<(), ResourceError> {
        Ok(())
    }
}
