//! AWS resource kinds for dagform: one module per AWS service, each kind translating resolved
//! properties into typed SDK calls.

pub mod acm;
pub mod autoscaling;
pub mod clients;
pub mod cloudwatch;
pub mod ec2;
pub mod ecr;
pub mod ecs;
pub mod elbv2;
pub mod error;
pub mod hosted_zones;
pub mod iam;
pub mod iam_oidc;
pub mod inspect;
pub mod logs;
pub(crate) mod ownership;
pub mod quotas;
pub mod rds;
pub mod route53;
pub mod secretsmanager;
pub mod sns;
pub mod state_s3;
pub mod wafv2;

pub use clients::AwsClients;
pub use error::AwsError;

use dagform_core::Kinds;
use std::sync::Arc;

/// Every AWS kind this build knows, sharing one set of clients.
pub fn kinds(clients: Arc<AwsClients>) -> Kinds {
    let mut kinds = Kinds::new();
    ec2::register(&mut kinds, &clients);
    elbv2::register(&mut kinds, &clients);
    acm::register(&mut kinds, &clients);
    route53::register(&mut kinds, &clients);
    ecs::register(&mut kinds, &clients);
    iam::register(&mut kinds, &clients);
    logs::register(&mut kinds, &clients);
    ecr::register(&mut kinds, &clients);
    secretsmanager::register(&mut kinds, &clients);
    rds::register(&mut kinds, &clients);
    autoscaling::register(&mut kinds, &clients);
    sns::register(&mut kinds, &clients);
    cloudwatch::register(&mut kinds, &clients);
    wafv2::register(&mut kinds, &clients);
    kinds
}
