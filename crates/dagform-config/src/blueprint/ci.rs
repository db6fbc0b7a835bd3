//! The identity CI deploys with, without stored keys: the account's OpenID Connect provider for
//! GitHub Actions (created unless the account has it) and a role only the workflows of one
//! repository's branches can assume, allowed what `dagform provision --set image_tag=… --wait`
//! does to this stack and nothing more.

use super::Expansion;
use crate::model::{Config, GithubCi};
use dagform_core::typed::{Input, outputs_of};
use dagform_core::{Address, NodeSpec, Value};
use dagform_resources::ecr::RepositoryProps;
use dagform_resources::ecs::ServiceProps;
use dagform_resources::iam::{
    GITHUB_OIDC_HOST, OidcProviderProps, OidcProviderSpec, RoleProps, RoleSpec, STS_AUDIENCE,
    WebIdentityTrustSpec,
};
use dagform_resources::logs::LogGroupProps;
use std::collections::BTreeMap;

/// The certificate thumbprint GitHub's provider was registered with; IAM now trusts GitHub's
/// certificate authority itself, but older partitions still ask for one.
const GITHUB_THUMBPRINT: &str = "6938fd4d98bab03faadb97b34396831e3780aea1";

/// Where the deployments live: each one's address and the start of its names, its services'
/// names, and whether the stack also has stack-wide log groups per service
/// (`shared.log_group.<service>`).
pub struct Deployed<'a> {
    pub bases: Vec<(String, String)>,
    pub services: Vec<&'a str>,
    pub shared_log_groups: bool,
}

/// The provider and the deploy role; the role's ARN is the `ci_role_arn` output.
pub fn ci(
    x: &mut Expansion,
    config: &Config,
    prefix: &str,
    github: &GithubCi,
    deployed: &Deployed<'_>,
) {
    let provider = Address::new("shared.ci.oidc_provider");
    x.add(NodeSpec::of(
        provider.clone(),
        OidcProviderSpec {
            url: format!("https://{GITHUB_OIDC_HOST}").into(),
            client_ids: vec![STS_AUDIENCE].into(),
            thumbprints: vec![GITHUB_THUMBPRINT].into(),
        },
    ));
    let repository = github.repository.get_ref();
    let subjects: Vec<String> = github
        .branches
        .iter()
        .map(|b| format!("repo:{repository}:ref:refs/heads/{}", b.get_ref()))
        .collect();
    let role = Address::new("shared.ci.role");
    x.add(NodeSpec::of(
        role.clone(),
        RoleSpec {
            name: format!("{prefix}-ci-deploy").into(),
            description: Some(format!("Lets {repository}'s workflows deploy {prefix}").into()),
            trusted_service: None,
            trusted_web_identity: Some(
                WebIdentityTrustSpec {
                    provider_arn: outputs_of::<OidcProviderProps>(&provider).arn.into(),
                    audience: STS_AUDIENCE.into(),
                    subjects: subjects.into(),
                }
                .into(),
            ),
            managed_policy_arns: Vec::<String>::new().into(),
            inline_policies: Input::untyped(Value::from(BTreeMap::from([(
                "deploy".to_owned(),
                deploy_policy(config, deployed),
            )]))),
        },
    ));
    x.output(
        "ci_role_arn",
        "the role CI assumes to deploy (role-to-assume)",
        Input::from(outputs_of::<RoleProps>(&role).arn).into_value(),
    );
}

/// `aws`, `aws-cn` or `aws-us-gov`: the partition ARNs of `region` start with.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

fn list(items: Vec<Input<String>>) -> Value {
    Input::<Vec<String>>::from(items).into_value()
}

fn allow(actions: &[&str], resources: Value) -> Value {
    Value::from(BTreeMap::from([
        ("Effect".to_owned(), Value::from("Allow")),
        ("Action".to_owned(), Value::from(actions.to_vec())),
        ("Resource".to_owned(), resources),
    ]))
}

/// What a deploy does: push the image, register the task definitions, update the services and
/// wait for them, read the logs of failing tasks, and read and write the state.
fn deploy_policy(config: &Config, deployed: &Deployed<'_>) -> Value {
    let region = config.region();
    let p = partition(region);
    let per_service = |kind: &str| -> Vec<Address> {
        deployed
            .bases
            .iter()
            .flat_map(|(base, _)| {
                deployed
                    .services
                    .iter()
                    .map(move |s| Address::new(format!("{base}.{kind}.{s}")))
            })
            .collect()
    };
    let services = per_service("service");
    let mut log_groups = per_service("log_group");
    if deployed.shared_log_groups {
        log_groups.extend(
            deployed
                .services
                .iter()
                .map(|s| Address::new(format!("shared.log_group.{s}"))),
        );
    }
    let repository = outputs_of::<RepositoryProps>(&Address::new("shared.ecr")).arn;
    let log_arns: Vec<Input<String>> = log_groups
        .iter()
        .flat_map(|a| {
            let arn = outputs_of::<LogGroupProps>(a).arn;
            // The group itself, and its streams (`…:log-stream:*`).
            [
                Input::from(&arn),
                Input::concat([Input::from(&arn), ":*".into()]),
            ]
        })
        .collect();
    // Known before any run (not read from the revisions' outputs), so a new revision does not
    // touch the role.
    let families: Vec<Input<String>> = deployed
        .bases
        .iter()
        .flat_map(|(_, name_prefix)| {
            config.services.iter().map(move |(name, service)| {
                let family = service.get_ref().family.as_ref().map_or_else(
                    || format!("{name_prefix}-{}", name.get_ref()),
                    |f| f.get_ref().clone(),
                );
                Input::from(format!("arn:{p}:ecs:{region}:*:task-definition/{family}:*"))
            })
        })
        .collect();
    let mut statements = vec![
        // GetAuthorizationToken is account-wide: IAM offers no resource to scope it to.
        allow(&["ecr:GetAuthorizationToken"], Value::from("*")),
        allow(
            &[
                "ecr:BatchCheckLayerAvailability",
                "ecr:InitiateLayerUpload",
                "ecr:UploadLayerPart",
                "ecr:CompleteLayerUpload",
                "ecr:PutImage",
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
                "ecr:DescribeImages",
                "ecr:DescribeRepositories",
                "ecr:GetLifecyclePolicy",
            ],
            list(vec![repository.into()]),
        ),
        // Registering, describing and deregistering task definitions support no resource-level
        // permissions in IAM (a revision's ARN does not exist before it is registered):
        // they need `*`. The tags dagform puts on each revision are scoped to the families.
        allow(
            &[
                "ecs:RegisterTaskDefinition",
                "ecs:DescribeTaskDefinition",
                "ecs:DeregisterTaskDefinition",
            ],
            Value::from("*"),
        ),
        allow(
            &["ecs:TagResource", "ecs:ListTagsForResource"],
            list(families),
        ),
        allow(
            &["ecs:UpdateService", "ecs:DescribeServices"],
            list(
                services
                    .iter()
                    .map(|a| outputs_of::<ServiceProps>(a).arn.into())
                    .collect(),
            ),
        ),
        allow(
            &["iam:PassRole"],
            list(vec![
                outputs_of::<RoleProps>(&Address::new("shared.role.task_execution"))
                    .arn
                    .into(),
                outputs_of::<RoleProps>(&Address::new("shared.role.task"))
                    .arn
                    .into(),
            ]),
        ),
        allow(
            &[
                "logs:DescribeLogStreams",
                "logs:GetLogEvents",
                "logs:FilterLogEvents",
                "logs:ListTagsForResource",
            ],
            list(log_arns),
        ),
        // A deploy plans first, which reads every resource of the stack back from AWS and
        // the account's quotas: read-only calls, most of which IAM cannot scope to resources.
        // Nothing here changes anything, and no secret value is readable.
        allow(
            &[
                "sts:GetCallerIdentity",
                "ec2:Describe*",
                "elasticloadbalancing:Describe*",
                "ecs:Describe*",
                "ecs:List*",
                "iam:GetRole",
                "iam:GetRolePolicy",
                "iam:ListRolePolicies",
                "iam:ListAttachedRolePolicies",
                "iam:ListRoleTags",
                "iam:GetOpenIDConnectProvider",
                "iam:ListOpenIDConnectProviders",
                "iam:ListOpenIDConnectProviderTags",
                "acm:DescribeCertificate",
                "acm:ListTagsForCertificate",
                "route53:GetHostedZone",
                "route53:ListHostedZonesByName",
                "route53:ListResourceRecordSets",
                "logs:DescribeLogGroups",
                "secretsmanager:DescribeSecret",
                "rds:Describe*",
                "rds:ListTagsForResource",
                "application-autoscaling:Describe*",
                "cloudwatch:DescribeAlarms",
                "cloudwatch:ListTagsForResource",
                "sns:GetTopicAttributes",
                "sns:ListSubscriptionsByTopic",
                "sns:ListTagsForResource",
                "wafv2:GetWebACL",
                "wafv2:GetWebACLForResource",
                "wafv2:ListTagsForResource",
                "servicequotas:GetServiceQuota",
            ],
            Value::from("*"),
        ),
    ];
    if let Some((bucket, key)) = config
        .state
        .location
        .as_ref()
        .and_then(|l| l.get_ref().strip_prefix("s3://"))
        .and_then(|rest| rest.split_once('/'))
    {
        // The state object, its journal and its lock all start with the key.
        statements.push(allow(
            &["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            Value::from(format!("arn:{p}:s3:::{bucket}/{key}*")),
        ));
        let mut listing = BTreeMap::from([
            ("Effect".to_owned(), Value::from("Allow")),
            ("Action".to_owned(), Value::from(vec!["s3:ListBucket"])),
            (
                "Resource".to_owned(),
                Value::from(format!("arn:{p}:s3:::{bucket}")),
            ),
        ]);
        listing.insert(
            "Condition".to_owned(),
            Value::from(BTreeMap::from([(
                "StringLike".to_owned(),
                Value::from(BTreeMap::from([(
                    "s3:prefix".to_owned(),
                    Value::from(vec![format!("{key}*")]),
                )])),
            )])),
        );
        statements.push(Value::from(listing));
    }
    Value::from(BTreeMap::from([
        ("Version".to_owned(), Value::from("2012-10-17")),
        ("Statement".to_owned(), Value::List(statements)),
    ]))
}
