//! ACM: public certificates validated through DNS, and the wait for their issuance.

use dagform_core::ResourceError;
use dagform_derive::{Outputs, Properties};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// ACM limits the first domain name to 64 characters (it becomes the certificate's CN).
const MAX_DOMAIN_NAME: usize = 64;
const MAX_SAN: usize = 253;

/// `aws_acm_certificate`: a public certificate validated by DNS records. Nothing about a
/// certificate changes in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(
    name = "aws_acm_certificate",
    outputs = CertificateOutputs,
    check = CertificateProps::check
)]
pub struct CertificateProps {
    #[kind(replace)]
    pub domain_name: String,
    #[kind(replace)]
    #[serde(default)]
    pub subject_alternative_names: Vec<String>,
    /// Only `DNS`.
    #[kind(replace)]
    pub validation_method: String,
}

impl CertificateProps {
    fn check(&self) -> Result<(), ResourceError> {
        if self.validation_method != "DNS" {
            return Err(ResourceError::invalid(format!(
                "validation_method must be DNS, got `{}`",
                self.validation_method
            )));
        }
        if self.domain_name.is_empty() || self.domain_name.len() > MAX_DOMAIN_NAME {
            return Err(ResourceError::invalid(format!(
                "domain_name `{}` must be 1 to {MAX_DOMAIN_NAME} characters long",
                self.domain_name
            )));
        }
        if let Some(san) = self
            .subject_alternative_names
            .iter()
            .find(|s| s.is_empty() || s.len() > MAX_SAN)
        {
            return Err(ResourceError::invalid(format!(
                "subject alternative name `{san}` must be 1 to {MAX_SAN} characters long"
            )));
        }
        Ok(())
    }

    /// Every name the certificate is to cover, as ACM reports them (the domain is among them).
    pub fn names(&self) -> BTreeSet<String> {
        std::iter::once(self.domain_name.clone())
            .chain(self.subject_alternative_names.iter().cloned())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct CertificateOutputs {
    pub id: String,
    pub arn: String,
    /// One per distinct DNS record the validation needs, sorted by name (a wildcard and its
    /// apex share a record).
    pub validation_records: Vec<ValidationRecord>,
}

/// A DNS record ACM looks up before it issues a certificate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ValidationRecord {
    pub name: String,
    pub r#type: String,
    pub value: String,
}

/// `aws_acm_certificate_validation`: owns no AWS object; it stands for "the certificate is
/// issued", so that listeners using the certificate wait for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(
    name = "aws_acm_certificate_validation",
    outputs = CertificateValidationOutputs
)]
pub struct CertificateValidationProps {
    #[kind(replace)]
    pub certificate_arn: String,
    /// How long to wait for issuance; by default as long as any other wait. Zero checks once:
    /// the records live at another DNS host and a later run finishes the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct CertificateValidationOutputs {
    pub id: String,
    pub certificate_arn: String,
    /// ACM's status of the certificate: `ISSUED` once validated, `PENDING_VALIDATION` while
    /// the records are missing.
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagform_core::KindProperties;
    use serde_json::json;

    #[test]
    fn every_certificate_property_forces_a_replacement() {
        for field in CertificateProps::FIELDS {
            let field = CertificateProps::field(field).unwrap();
            assert!(CertificateProps::forces_replacement(field), "{field:?}");
        }
    }

    #[test]
    fn validation_records_keep_their_names() {
        let record = ValidationRecord {
            name: "_x.example.org.".into(),
            r#type: "CNAME".into(),
            value: "_y.acm-validations.aws.".into(),
        };
        assert_eq!(
            serde_json::to_value(&record).unwrap(),
            json!({ "name": "_x.example.org.", "type": "CNAME", "value": "_y.acm-validations.aws." })
        );
    }
}
