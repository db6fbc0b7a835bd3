//! The account's applied quota values, read through the Service Quotas API before a plan is
//! carried out. A value that cannot be read (no permission, a quota the endpoint does not
//! offer, no answer in time) falls back to AWS's default, and the limits say why.

use crate::AwsClients;
use aws_config::Region;
use aws_config::retry::RetryConfig;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use dagform_resources::quotas::{Limits, QUOTAS, Quota};
use std::time::Duration;

/// Service Quotas keeps global quotas (IAM, Route 53) in this region.
const GLOBAL_QUOTAS_REGION: &str = "us-east-1";

/// How long one quota may take to read before its default is used instead: the check must
/// never hold a plan up for long.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads every quota of [`QUOTAS`] at once; each one not read keeps AWS's default.
pub async fn read_limits(clients: &AwsClients) -> Limits {
    // Few attempts: an unreadable quota only costs its applied value.
    let patient = |region: Option<&str>| {
        let mut config = clients
            .servicequotas
            .config()
            .to_builder()
            .retry_config(RetryConfig::standard().with_max_attempts(2));
        if let Some(r) = region {
            config = config.region(Region::new(r.to_owned()));
        }
        aws_sdk_servicequotas::Client::from_conf(config.build())
    };
    let regional = patient(None);
    let global = patient(Some(GLOBAL_QUOTAS_REGION));
    let mut reads = tokio::task::JoinSet::new();
    for quota in QUOTAS {
        let client = if quota.global { &global } else { &regional }.clone();
        reads.spawn(async move { (quota, read_one(&client, quota).await) });
    }
    let mut limits = Limits::defaults("not read");
    while let Some(read) = reads.join_next().await {
        match read {
            Ok((quota, Ok(value))) => limits.set_applied(quota.id, value),
            Ok((quota, Err(unread))) => limits.set_default(quota.id, unread),
            // A read that panicked keeps its default, "not read".
            Err(_) => {}
        }
    }
    limits
}

/// The applied value of one quota, or why it could not be read.
async fn read_one(client: &aws_sdk_servicequotas::Client, quota: &Quota) -> Result<f64, String> {
    let call = client
        .get_service_quota()
        .service_code(quota.service_code)
        .quota_code(quota.quota_code)
        .send();
    let answer = tokio::time::timeout(READ_TIMEOUT, call)
        .await
        .map_err(|_| format!("no answer within {}s", READ_TIMEOUT.as_secs()))?;
    match answer {
        Ok(out) => out
            .quota()
            .and_then(|q| q.value())
            .ok_or_else(|| "the answer held no value".to_owned()),
        Err(e) => Err(match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => DisplayErrorContext(&e).to_string(),
        }),
    }
}
