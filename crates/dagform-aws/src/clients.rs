//! One client per AWS service, built once from the standard configuration chain.

use aws_config::{BehaviorVersion, Region, retry::RetryConfig};

/// Clients shared by every kind of a run.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub region: String,
    pub acm: aws_sdk_acm::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub iam: aws_sdk_iam::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub route53: aws_sdk_route53::Client,
    pub secretsmanager: aws_sdk_secretsmanager::Client,
    pub rds: aws_sdk_rds::Client,
    pub sts: aws_sdk_sts::Client,
}

impl AwsClients {
    /// Loads credentials, region and endpoint (`AWS_ENDPOINT_URL`) the standard way; `region`
    /// overrides the environment's. Throttling is retried by the SDK itself, with more attempts
    /// than its default since a run issues hundreds of calls at once.
    pub async fn load(region: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(8));
        if let Some(r) = region {
            loader = loader.region(Region::new(r.to_owned()));
        }
        let sdk = loader.load().await;
        Self::from_sdk_config(&sdk)
    }

    pub fn from_sdk_config(sdk: &aws_types::SdkConfig) -> Self {
        Self {
            region: sdk
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".to_string()),
            acm: aws_sdk_acm::Client::new(sdk),
            ec2: aws_sdk_ec2::Client::new(sdk),
            ecr: aws_sdk_ecr::Client::new(sdk),
            ecs: aws_sdk_ecs::Client::new(sdk),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
            iam: aws_sdk_iam::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
            route53: aws_sdk_route53::Client::new(sdk),
            secretsmanager: aws_sdk_secretsmanager::Client::new(sdk),
            rds: aws_sdk_rds::Client::new(sdk),
            sts: aws_sdk_sts::Client::new(sdk),
        }
    }
}
