//! The schema of every resource kind dagform knows: the properties each takes, the outputs each
//! gives and the views `status` shows, as plain types with no SDK behind them.
//!
//! The blueprint (`dagform-config`) builds the `…Spec` of each kind from
//! [`dagform_core::Input`]s; the AWS kinds (`dagform-aws`) receive the parsed `…Props` and
//! return the `…Outputs`. A property is named once, here.

pub mod acm;
pub mod autoscaling;
pub mod checks;
pub mod cloudwatch;
pub mod ec2;
pub mod ecr;
pub mod ecs;
pub mod elbv2;
pub mod iam;
pub mod logs;
pub mod quotas;
pub mod rds;
pub mod route53;
pub mod secretsmanager;
pub mod sns;
pub mod status;
pub mod wafv2;

pub use dagform_core::typed::{Input, KindOutputs, KindProperties, OutputRef, outputs_of};
