//! The web firewall and the keyless CI deploy identity end to end: the real binary against a
//! private emulator, verified by reading WAF and IAM back — the web ACL with its rules and its
//! association with the load balancer, the GitHub OIDC provider, the deploy role's trust and
//! policy; a changed rate limit updated in place; the account's own provider used and left in
//! place; nothing of the stack left after `destroy`.

mod support;

use aws_sdk_wafv2::types::{Scope, WebAcl};
use serde_json::Value as Json;
use std::collections::BTreeSet;
use support::{Emulator, Project, run_ok};

const ACL: &str = "dev-shop-waf";
const ROLE: &str = "dev-shop-ci-deploy";
const GITHUB: &str = "token.actions.githubusercontent.com";

fn config(rate_limit: u32) -> String {
    format!(
        r#"
[stack]
app = "shop"
environment = "dev"
region = "us-east-1"

[network]
existing = "default"

[waf]
managed_rules = ["AWSManagedRulesCommonRuleSet", "AWSManagedRulesSQLiRuleSet"]
rate_limit = {rate_limit}

[ci]
github = {{ repository = "acme/shop", branches = ["main", "release"] }}

[services.web]
image_tag = "v1"
port = 3000
cpu = 256
memory = 512
desired_count = 1
"#
    )
}

/// The stack's web ACL with its lock token, if it exists.
async fn web_acl(c: &dagform_aws::AwsClients) -> Option<WebAcl> {
    let listed = c
        .wafv2
        .list_web_acls()
        .scope(Scope::Regional)
        .send()
        .await
        .unwrap();
    let summary = listed.web_acls().iter().find(|a| a.name() == Some(ACL))?;
    let got = c
        .wafv2
        .get_web_acl()
        .scope(Scope::Regional)
        .name(ACL)
        .id(summary.id().unwrap())
        .send()
        .await
        .unwrap();
    got.web_acl
}

async fn load_balancer_arn(c: &dagform_aws::AwsClients) -> String {
    let out = c.elbv2.describe_load_balancers().send().await.unwrap();
    let lbs = out.load_balancers();
    assert_eq!(lbs.len(), 1, "one load balancer");
    lbs[0].load_balancer_arn().unwrap().to_owned()
}

async fn github_providers(c: &dagform_aws::AwsClients) -> Vec<String> {
    let out = c.iam.list_open_id_connect_providers().send().await.unwrap();
    out.open_id_connect_provider_list()
        .iter()
        .filter_map(|p| p.arn())
        .filter(|a| a.ends_with(&format!(":oidc-provider/{GITHUB}")))
        .map(str::to_owned)
        .collect()
}

/// A policy document as IAM returns it: URL-encoded, or already plain.
fn document(raw: &str) -> Json {
    serde_json::from_str(raw).unwrap_or_else(|_| {
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        serde_json::from_str(&decoded).expect("a JSON policy document")
    })
}

fn strings(v: &Json) -> Vec<String> {
    match v {
        Json::String(s) => vec![s.clone()],
        Json::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_owned()).collect(),
        other => panic!("not a string or list: {other}"),
    }
}

/// Checks the ACL's rules: each managed group with its own actions, then the rate rule.
fn assert_rules(acl: &WebAcl, rate_limit: i64) {
    assert!(
        acl.default_action().unwrap().allow().is_some(),
        "allows by default"
    );
    let mut rules: Vec<_> = acl.rules().iter().collect();
    rules.sort_by_key(|r| r.priority());
    let names: Vec<&str> = rules.iter().map(|r| r.name()).collect();
    assert_eq!(
        names,
        [
            "AWSManagedRulesCommonRuleSet",
            "AWSManagedRulesSQLiRuleSet",
            "rate-limit-per-ip"
        ]
    );
    for rule in &rules[..2] {
        let group = rule
            .statement()
            .and_then(|s| s.managed_rule_group_statement())
            .expect("a managed rule group statement");
        assert_eq!((group.vendor_name(), group.name()), ("AWS", rule.name()));
        assert!(
            rule.override_action().unwrap().none().is_some(),
            "{}",
            rule.name()
        );
        assert!(rule.visibility_config().is_some());
    }
    let rate = rules[2]
        .statement()
        .and_then(|s| s.rate_based_statement())
        .expect("a rate-based statement");
    assert_eq!(rate.limit(), rate_limit);
    assert_eq!(rate.aggregate_key_type().as_str(), "IP");
    assert!(rules[2].action().unwrap().block().is_some());
}

/// Checks the deploy role: trusted by the provider for the repository's branches only, allowed
/// named resources of the stack only (besides the actions IAM cannot scope), no managed policy.
async fn assert_deploy_role(c: &dagform_aws::AwsClients, provider_arn: &str) -> String {
    let role = c.iam.get_role().role_name(ROLE).send().await.unwrap();
    let role = role.role().unwrap();
    let trust = document(role.assume_role_policy_document().unwrap());
    let statements = trust["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1);
    let s = &statements[0];
    assert_eq!(s["Principal"]["Federated"], provider_arn);
    assert_eq!(strings(&s["Action"]), ["sts:AssumeRoleWithWebIdentity"]);
    assert_eq!(
        strings(&s["Condition"]["StringEquals"][format!("{GITHUB}:aud")]),
        ["sts.amazonaws.com"]
    );
    assert_eq!(
        strings(&s["Condition"]["StringLike"][format!("{GITHUB}:sub")]),
        [
            "repo:acme/shop:ref:refs/heads/main",
            "repo:acme/shop:ref:refs/heads/release"
        ]
    );

    let attached = c
        .iam
        .list_attached_role_policies()
        .role_name(ROLE)
        .send()
        .await
        .unwrap();
    assert!(attached.attached_policies().is_empty(), "no managed policy");
    let policy = c
        .iam
        .get_role_policy()
        .role_name(ROLE)
        .policy_name("deploy")
        .send()
        .await
        .unwrap();
    let policy = document(policy.policy_document());
    let unscopable: BTreeSet<&str> = [
        "ecr:GetAuthorizationToken",
        "ecs:RegisterTaskDefinition",
        "ecs:DescribeTaskDefinition",
        "ecs:DeregisterTaskDefinition",
    ]
    .into();
    let mut resources_of = std::collections::BTreeMap::<String, Vec<String>>::new();
    for s in policy["Statement"].as_array().unwrap() {
        assert_eq!(s["Effect"], "Allow");
        let actions = strings(&s["Action"]);
        let resources = strings(&s["Resource"]);
        // Reads only (`Describe…`, `Get…`, `List…`) may be named by a wildcard.
        let read_only = |a: &str| {
            let verb = a.split_once(':').map_or("", |(_, v)| v);
            ["Describe", "Get", "List"]
                .iter()
                .any(|r| verb.starts_with(r))
        };
        assert!(
            actions.iter().all(|a| !a.contains('*') || read_only(a)),
            "{actions:?}"
        );
        if resources == ["*"] {
            // What IAM cannot scope: the four deploy calls above, and the reads a plan makes.
            assert!(
                actions
                    .iter()
                    .all(|a| unscopable.contains(a.as_str()) || read_only(a)),
                "`*` for {actions:?}"
            );
            assert!(
                !actions.iter().any(|a| a == "secretsmanager:GetSecretValue"),
                "no secret value is readable"
            );
        } else {
            for r in &resources {
                assert!(r.starts_with("arn:aws:"), "{r}");
                let named = r.trim_end_matches(":*");
                assert!(
                    !named.contains('*') || named.contains(":ecs:us-east-1:*:task-definition/"),
                    "{r}"
                );
            }
        }
        for a in actions {
            resources_of.entry(a).or_default().extend(resources.clone());
        }
    }
    // The stack's own repository, service and task roles.
    let repo = c
        .ecr
        .describe_repositories()
        .repository_names("dev-shop")
        .send()
        .await
        .unwrap();
    let repo_arn = repo.repositories()[0].repository_arn().unwrap().to_owned();
    assert_eq!(resources_of["ecr:PutImage"], [repo_arn]);
    let clusters = c.ecs.list_clusters().send().await.unwrap();
    let [cluster] = clusters.cluster_arns() else {
        panic!("one cluster: {:?}", clusters.cluster_arns());
    };
    let services = c.ecs.list_services().cluster(cluster).send().await.unwrap();
    let [service_arn] = services.service_arns() else {
        panic!("one service: {:?}", services.service_arns());
    };
    let service_arn = service_arn.clone();
    assert_eq!(
        resources_of["ecs:UpdateService"],
        std::slice::from_ref(&service_arn)
    );
    assert_eq!(resources_of["ecs:DescribeServices"], [service_arn]);
    let mut pass: Vec<String> = Vec::new();
    for name in ["dev-shop-task-execution-role", "dev-shop-task-role"] {
        let r = c.iam.get_role().role_name(name).send().await.unwrap();
        pass.push(r.role().unwrap().arn().to_owned());
    }
    let mut passed = resources_of["iam:PassRole"].clone();
    passed.sort();
    pass.sort();
    assert_eq!(passed, pass);
    assert!(
        resources_of["logs:GetLogEvents"]
            .iter()
            .all(|r| r.contains(":log-group:/ecs/dev-shop")),
        "{:?}",
        resources_of["logs:GetLogEvents"]
    );
    role.arn().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_firewall_and_deploy_role_are_provisioned_updated_in_place_and_destroyed() {
    let emu = Emulator::start();
    let c = emu.clients().await;
    let project = Project::with_config(&config(2000));
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));

    let acl = web_acl(&c).await.expect("the web ACL");
    assert_rules(&acl, 2000);
    let lb = load_balancer_arn(&c).await;
    let protecting = c
        .wafv2
        .get_web_acl_for_resource()
        .resource_arn(&lb)
        .send()
        .await
        .unwrap();
    assert_eq!(protecting.web_acl().map(|a| a.arn()), Some(acl.arn()));
    let tags = c
        .wafv2
        .list_tags_for_resource()
        .resource_arn(acl.arn())
        .send()
        .await
        .unwrap();
    let tag_keys: Vec<&str> = tags
        .tag_info_for_resource()
        .unwrap()
        .tag_list()
        .iter()
        .map(|t| t.key())
        .collect();
    assert!(
        tag_keys.len() >= 2,
        "the ACL is tagged as the stack's: {tag_keys:?}"
    );

    // No provider in the account: the stack creates its own, tagged.
    let providers = github_providers(&c).await;
    assert_eq!(providers.len(), 1);
    let provider = c
        .iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(&providers[0])
        .send()
        .await
        .unwrap();
    assert_eq!(provider.client_id_list(), ["sts.amazonaws.com"]);
    let provider_tags = c
        .iam
        .list_open_id_connect_provider_tags()
        .open_id_connect_provider_arn(&providers[0])
        .send()
        .await
        .unwrap();
    assert!(provider_tags.tags().iter().any(|t| t.value() == "dev-shop"));
    let role_arn = assert_deploy_role(&c, &providers[0]).await;
    let outputs: Json =
        serde_json::from_str(&run_ok(&mut project.dagform(&emu, &["output", "--json"]))).unwrap();
    assert_eq!(outputs["ci_role_arn"], role_arn.as_str());

    // A new rate limit changes the same ACL.
    project.write_config(&config(500));
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));
    let updated = web_acl(&c).await.expect("the web ACL");
    assert_eq!((updated.id(), updated.arn()), (acl.id(), acl.arn()));
    assert_rules(&updated, 500);
    let plan: Json =
        serde_json::from_str(&run_ok(&mut project.dagform(&emu, &["plan", "--json"]))).unwrap();
    assert_eq!(plan["has_changes"], false, "{plan}");
    assert_eq!(plan["drift"], serde_json::json!([]), "{plan}");

    run_ok(&mut project.dagform(&emu, &["destroy", "--yes"]));
    assert!(web_acl(&c).await.is_none(), "the ACL is gone");
    let protecting = c
        .wafv2
        .get_web_acl_for_resource()
        .resource_arn(&lb)
        .send()
        .await
        .unwrap();
    assert!(protecting.web_acl().is_none(), "the association is gone");
    assert!(c.iam.get_role().role_name(ROLE).send().await.is_err());
    assert!(
        github_providers(&c).await.is_empty(),
        "its own provider goes too"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_accounts_own_github_provider_is_used_and_left_in_place() {
    let emu = Emulator::start();
    let c = emu.clients().await;
    let existing = c
        .iam
        .create_open_id_connect_provider()
        .url(format!("https://{GITHUB}"))
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("6938fd4d98bab03faadb97b34396831e3780aea1")
        .send()
        .await
        .unwrap()
        .open_id_connect_provider_arn()
        .unwrap()
        .to_owned();
    let project = Project::with_config(&config(2000));
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));
    assert_eq!(github_providers(&c).await, std::slice::from_ref(&existing));
    assert_deploy_role(&c, &existing).await;
    // Nothing of the account's provider is this stack's to change: no drift either.
    let plan: Json =
        serde_json::from_str(&run_ok(&mut project.dagform(&emu, &["plan", "--json"]))).unwrap();
    assert_eq!(plan["has_changes"], false, "{plan}");
    assert_eq!(plan["drift"], serde_json::json!([]), "{plan}");

    run_ok(&mut project.dagform(&emu, &["destroy", "--yes"]));
    assert!(c.iam.get_role().role_name(ROLE).send().await.is_err());
    assert!(web_acl(&c).await.is_none());
    assert_eq!(
        github_providers(&c).await,
        [existing],
        "the account's provider stays"
    );
}

/// The IAM action a traced SDK call needs: its service's prefix and, but for S3's reads and
/// listings, the operation's own name.
fn iam_action(service: &str, operation: &str) -> String {
    let prefix = match service {
        "ACM" => "acm",
        "Application Auto Scaling" => "application-autoscaling",
        "CloudWatch" => "cloudwatch",
        "CloudWatch Logs" => "logs",
        "EC2" => "ec2",
        "ECR" => "ecr",
        "ECS" => "ecs",
        "Elastic Load Balancing v2" => "elasticloadbalancing",
        "IAM" => "iam",
        "RDS" => "rds",
        "Route 53" => "route53",
        "S3" => "s3",
        "Secrets Manager" => "secretsmanager",
        "Service Quotas" => "servicequotas",
        "SNS" => "sns",
        "STS" => "sts",
        "WAFV2" => "wafv2",
        other => panic!("no IAM prefix known for {other}"),
    };
    let action = match (prefix, operation) {
        ("s3", "HeadObject") => "GetObject",
        ("s3", "ListObjectsV2" | "ListObjects" | "HeadBucket") => "ListBucket",
        (_, operation) => operation,
    };
    format!("{prefix}:{action}")
}

/// Whether an IAM action pattern (`ecs:Describe*`) names `action`.
fn names(pattern: &str, action: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(action),
        Some((head, tail)) => {
            action.len() >= head.len() + tail.len()
                && action[..head.len()].eq_ignore_ascii_case(head)
                && action[action.len() - tail.len()..].eq_ignore_ascii_case(tail)
        }
    }
}

/// The (service, operation) of every AWS request a run's trace of `dagform::aws_calls` shows.
fn traced_calls(stderr: &str) -> BTreeSet<(String, String)> {
    let quoted = |line: &str, field: &str| {
        let rest = line.split_once(&format!("{field}=\""))?.1;
        Some(rest.split_once('"')?.0.to_owned())
    };
    stderr
        .lines()
        .filter_map(|l| Some((quoted(l, "service")?, quoted(l, "operation")?)))
        .collect()
}

/// PriceGuard as its workflow deploys it, with its state in S3: every call of
/// `provision --set image_tag=… --wait --yes` is one the deploy role allows, so the role is
/// enough for the deploy (the emulator does not enforce IAM, so the calls are traced and held
/// against the role's policy as IAM reads it back).
#[tokio::test(flavor = "multi_thread")]
async fn the_deploy_role_allows_every_call_the_deploy_makes() {
    const BUCKET: &str = "priceguard-state";
    // Every service runs its one task, so `--wait` sees the rollout finish.
    let emu = Emulator::start_with(&[("MOTO_ECS_SERVICE_RUNNING", "1")]);
    let c = emu.clients().await;
    let sdk = emu.sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let project = Project::from_example("priceguard");
    let text = project.config_text();
    project.write_config(&format!(
        "{text}\n[state]\nlocation = \"s3://{BUCKET}/prod/priceguard.json\"\n"
    ));
    let secrets = [
        ("PRICEGUARD_DATABASE_URL", "postgres://u:p@db:5432/appdb"),
        ("PRICEGUARD_ALLOWED_ORIGINS", "https://example.net"),
        ("PRICEGUARD_STRIPE_SECRET_KEY", "sk_test_1"),
        ("PRICEGUARD_STRIPE_WEBHOOK_SECRET", "whsec_1"),
    ];
    // As CI runs it: the state where the configuration says.
    let dagform = |args: &[&str]| {
        let mut cmd = emu.dagform();
        cmd.args(args)
            .arg("-f")
            .arg(&project.config)
            .current_dir(project.dir.path())
            .envs(secrets);
        cmd
    };
    // The first run may leave the certificate waiting for its records (exit 3); the second
    // finishes the listener it held back.
    for _ in 0..2 {
        let out = support::run(&mut dagform(&["provision", "--yes"]));
        match out.status.code() {
            Some(0) => break,
            Some(3) => std::thread::sleep(std::time::Duration::from_secs(2)),
            _ => panic!("{}", String::from_utf8_lossy(&out.stderr)),
        }
    }

    let deploy = support::run(
        dagform(&["provision", "--set", "image_tag=3f9c2ab", "--wait", "--yes"])
            .env("RUST_LOG", "warn,dagform::aws_calls=trace"),
    );
    let stderr = String::from_utf8_lossy(&deploy.stderr);
    assert!(deploy.status.success(), "{stderr}");
    let calls: BTreeSet<String> = traced_calls(&stderr)
        .iter()
        .map(|(service, operation)| iam_action(service, operation))
        .collect();
    // The deploy did deploy: a new revision, the service moved onto it, the state written.
    for needed in [
        "ecs:RegisterTaskDefinition",
        "ecs:UpdateService",
        "ecs:DescribeServices",
        "s3:PutObject",
    ] {
        assert!(calls.contains(needed), "{needed} not among {calls:?}");
    }

    let role = c
        .iam
        .get_role_policy()
        .role_name("prod-priceguard-ci-deploy")
        .policy_name("deploy")
        .send()
        .await
        .unwrap();
    let policy = document(role.policy_document());
    let allowed: Vec<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| strings(&s["Action"]))
        .collect();
    let denied: Vec<&String> = calls
        .iter()
        .filter(|call| !allowed.iter().any(|p| names(p, call)))
        .collect();
    assert!(
        denied.is_empty(),
        "the deploy role does not allow {denied:?}; it allows {allowed:?}"
    );
    assert!(!calls.contains("secretsmanager:GetSecretValue"));
}
