//! One client per AWS service, built once from the standard configuration chain, each counting
//! the requests it sends.

use aws_config::{BehaviorVersion, Region, retry::RetryConfig};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use dagform_core::{Current, Kind, Observed, OpContext, ResourceError};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests sent by every client of this process, for commands that only hold the kinds.
static PROCESS_CALLS: AtomicU64 = AtomicU64::new(0);

/// How many AWS requests all clients of this process have sent so far (retries included).
pub fn calls_in_process() -> u64 {
    PROCESS_CALLS.load(Ordering::Relaxed)
}

/// Counts each request right before it goes out, so retries count too, and traces it
/// (`dagform::aws_calls`) with its service and operation.
#[derive(Debug, Clone, Default)]
pub(crate) struct CountCalls(Arc<AtomicU64>);

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "dagform::CountCalls"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        PROCESS_CALLS.fetch_add(1, Ordering::Relaxed);
        if let Some(api) = cfg.load::<Metadata>() {
            tracing::trace!(target: "dagform::aws_calls", service = api.service(), operation = api.name(), "request");
        }
        Ok(())
    }
}

/// Clients shared by every kind of a run.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub region: String,
    pub acm: aws_sdk_acm::Client,
    pub autoscaling: aws_sdk_applicationautoscaling::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub iam: aws_sdk_iam::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub route53: aws_sdk_route53::Client,
    pub secretsmanager: aws_sdk_secretsmanager::Client,
    pub sns: aws_sdk_sns::Client,
    pub wafv2: aws_sdk_wafv2::Client,
    pub servicequotas: aws_sdk_servicequotas::Client,
    pub rds: aws_sdk_rds::Client,
    pub sts: aws_sdk_sts::Client,
    calls: Arc<AtomicU64>,
}

impl AwsClients {
    /// Loads credentials, region and endpoint (`AWS_ENDPOINT_URL`) the standard way; `region`
    /// overrides the environment's. Throttling is retried by the SDK itself, with more attempts
    /// than its default since a run issues hundreds of calls at once, in its adaptive mode:
    /// each AWS service's client paces its own calls with a token bucket that slows down when
    /// that service throttles, so a wide walk does not keep tripping one service's limits.
    /// `AWS_RETRY_MODE=standard` turns the pacing off, as for the AWS CLI.
    pub async fn load(region: Option<&str>) -> Self {
        let sdk = sdk_config(region).await;
        Self::from_sdk_config(&sdk)
    }

    pub fn from_sdk_config(sdk: &aws_types::SdkConfig) -> Self {
        let calls = Arc::new(AtomicU64::new(0));
        let counter = CountCalls(calls.clone());
        macro_rules! client {
            ($sdk_crate:ident) => {
                $sdk_crate::Client::from_conf(
                    $sdk_crate::config::Builder::from(sdk)
                        .interceptor(counter.clone())
                        .build(),
                )
            };
        }
        Self {
            region: sdk
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".to_string()),
            acm: client!(aws_sdk_acm),
            autoscaling: client!(aws_sdk_applicationautoscaling),
            cloudwatch: client!(aws_sdk_cloudwatch),
            ec2: client!(aws_sdk_ec2),
            ecr: client!(aws_sdk_ecr),
            ecs: client!(aws_sdk_ecs),
            elbv2: client!(aws_sdk_elasticloadbalancingv2),
            iam: client!(aws_sdk_iam),
            logs: client!(aws_sdk_cloudwatchlogs),
            route53: client!(aws_sdk_route53),
            secretsmanager: client!(aws_sdk_secretsmanager),
            sns: client!(aws_sdk_sns),
            wafv2: client!(aws_sdk_wafv2),
            servicequotas: client!(aws_sdk_servicequotas),
            rds: client!(aws_sdk_rds),
            sts: client!(aws_sdk_sts),
            calls,
        }
    }

    /// How many requests these clients have sent (retries included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// The results of a batched read, one per item in order, from the objects one describe found
/// keyed by id: an id the describe did not return is an object gone (`None`), and a failed
/// describe fails every item. `observe` is the kind's own conversion, the one `read` uses.
pub(crate) fn each_item<T>(
    items: &[Current<'_>],
    found: Result<HashMap<String, T>, ResourceError>,
    observe: impl Fn(&T, Current<'_>) -> Result<Option<Observed>, ResourceError>,
) -> Vec<Result<Option<Observed>, ResourceError>> {
    match found {
        Ok(found) => items
            .iter()
            .map(|item| found.get(item.id).map_or(Ok(None), |o| observe(o, *item)))
            .collect(),
        Err(e) => fail_all(items, e),
    }
}

/// The same error for every item of a batch whose describe failed.
pub(crate) fn fail_all(
    items: &[Current<'_>],
    error: ResourceError,
) -> Vec<Result<Option<Observed>, ResourceError>> {
    items.iter().map(|_| Err(error.clone())).collect()
}

/// How many reads of one batch go out at once when its objects are read one by one: a batch
/// holds a single slot of the run's parallelism, so this keeps it from becoming a burst.
pub(crate) const READS_IN_FLIGHT_PER_BATCH: usize = 4;

/// Reads each item on its own, for a batch that cannot be described at once (AWS fails a
/// describe by a list of ARNs as a whole when one of them is gone); a few at a time, in order.
pub(crate) async fn read_each<K: Kind>(
    kind: &K,
    ctx: &OpContext,
    items: &[Current<'_>],
) -> Vec<Result<Option<Observed>, ResourceError>> {
    each_concurrently(items.iter().map(|item| kind.read(ctx, *item))).await
}

/// Runs `reads` [`READS_IN_FLIGHT_PER_BATCH`] at a time; results in their order. (The reads
/// are gathered before the returned future starts, so no closure lives in it: that keeps the
/// callers' futures `Send` for every lifetime.)
pub(crate) fn each_concurrently<Fut: std::future::Future>(
    reads: impl IntoIterator<Item = Fut>,
) -> impl std::future::Future<Output = Vec<Fut::Output>> {
    use futures::StreamExt;
    let reads: Vec<Fut> = reads.into_iter().collect();
    futures::stream::iter(reads)
        .buffered(READS_IN_FLIGHT_PER_BATCH)
        .collect()
}

/// A listing of everything of a kind, read page by page only while that is cheaper than
/// reading each object still wanted on its own (each page and each single read cost one call):
/// for a batch of objects that has no describe-by-ids call (task definition revisions, record
/// sets), whatever else the account holds.
pub(crate) struct Scan {
    wanted: std::collections::HashSet<String>,
    pages: usize,
}

impl Scan {
    pub(crate) fn new<'a>(ids: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            wanted: ids.into_iter().map(str::to_owned).collect(),
            pages: 0,
        }
    }

    /// Whether one more page can still pay for itself.
    pub(crate) fn worth_another_page(&self) -> bool {
        !self.wanted.is_empty() && self.pages < self.wanted.len()
    }

    /// Counts a page read; `seen` are the ids it listed.
    pub(crate) fn page<'a>(&mut self, seen: impl IntoIterator<Item = &'a str>) {
        self.pages += 1;
        for id in seen {
            self.wanted.remove(id);
        }
    }

    /// Whether `id` was wanted and has not been listed.
    pub(crate) fn still_wanted(&self, id: &str) -> bool {
        self.wanted.contains(id)
    }
}

/// Described objects keyed by their id, for [`each_item`].
pub(crate) fn by_id<T>(objects: Vec<T>, id: impl Fn(&T) -> Option<&str>) -> HashMap<String, T> {
    objects
        .into_iter()
        .filter_map(|o| Some((id(&o)?.to_owned(), o)))
        .collect()
}

/// The profile `--profile` chose, for every client of this process.
static PROFILE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Makes every client this process builds use the AWS profile `name` (`--profile`).
pub fn use_profile(name: &str) {
    let _ = PROFILE.set(name.to_owned());
}

/// The SDK configuration of the standard chain (with `--profile`'s profile), in `region` when
/// given, with adaptive retries unless `AWS_RETRY_MODE` asks otherwise.
pub async fn sdk_config(region: Option<&str>) -> aws_types::SdkConfig {
    let retry = match std::env::var("AWS_RETRY_MODE").as_deref() {
        Ok("standard" | "legacy") => RetryConfig::standard(),
        _ => RetryConfig::adaptive(),
    };
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).retry_config(retry.with_max_attempts(8));
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_owned()));
    }
    if let Some(profile) = PROFILE.get() {
        loader = loader.profile_name(profile);
    }
    loader.load().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Every attempt counts, retries included: a call to a closed port is tried three times.
    #[tokio::test(flavor = "multi_thread")]
    async fn every_request_sent_is_counted() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(format!("http://127.0.0.1:{closed}"))
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(1)),
            )
            .load()
            .await;
        let clients = AwsClients::from_sdk_config(&sdk);
        let before = calls_in_process();
        assert_eq!(clients.calls(), 0);
        assert!(clients.sts.get_caller_identity().send().await.is_err());
        assert_eq!(clients.calls(), 3);
        assert!(clients.ec2.describe_vpcs().send().await.is_err());
        assert_eq!(clients.calls(), 6, "one counter across the services");
        assert!(calls_in_process() >= before + 6);
        let other = AwsClients::from_sdk_config(&sdk);
        assert_eq!(other.calls(), 0, "each set of clients counts its own");
    }
}
