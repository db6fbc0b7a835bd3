//! ACM: public certificates validated through DNS, and the wait for their issuance.

mod certificate;
mod validation;

use crate::AwsClients;
use crate::ownership::found;
use aws_sdk_acm::types::CertificateDetail;
use dagform_core::{Kinds, ResourceError};
use dagform_resources::acm::ValidationRecord;
use std::collections::BTreeSet;
use std::sync::Arc;

pub use certificate::Certificate;
pub use validation::CertificateValidation;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    let c = || clients.clone();
    kinds.add(Certificate::new(c()));
    kinds.add(CertificateValidation::new(c()));
}

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

/// One record per distinct DNS record the validation needs, sorted by name (a wildcard and its
/// apex share a record); `None` while ACM has not yet published them all.
fn validation_records(cert: &CertificateDetail) -> Option<Vec<ValidationRecord>> {
    let options = cert.domain_validation_options();
    if options.is_empty() {
        return None;
    }
    let mut records = BTreeSet::new();
    for option in options {
        let r = option.resource_record()?;
        records.insert(ValidationRecord {
            name: r.name().to_owned(),
            r#type: r.r#type().as_str().to_owned(),
            value: r.value().to_owned(),
        });
    }
    Some(records.into_iter().collect())
}

fn status_of(cert: &CertificateDetail) -> &str {
    cert.status().map(|s| s.as_str()).unwrap_or("UNKNOWN")
}
