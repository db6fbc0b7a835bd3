//! The multi-customer example through a fault layer that throttles a fifth of all calls and
//! answers first attempts with AWS's eventual-consistency errors: provision and destroy still
//! converge, with nothing lost or left behind (AWS read back directly, not through the layer).

mod support;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use dagform_core::ResourceError;
use support::faults::{Fault, FaultProxy, Faults, Inventory};
use support::{Emulator, Project, create_zone, run_ok};

const ZONE: &str = "freeinterestcal.com";

/// The error an SDK call got, as dagform sees it: AWS's code, and whether dagform retries it.
fn judged<E, R>(
    operation: &str,
    result: Result<impl std::fmt::Debug, aws_sdk_ec2::error::SdkError<E, R>>,
) -> (String, bool)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let err = result.expect_err(operation);
    let code = err.code().unwrap_or("no code").to_owned();
    let transient = matches!(
        dagform_aws::error::classify(operation, err),
        ResourceError::Transient(_)
    );
    (code, transient)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_reads_each_protocols_injected_throttling_as_throttling() {
    let emu = Emulator::start();
    let proxy = FaultProxy::start(
        &emu,
        Faults {
            throttle: 1.0,
            ..Faults::default()
        },
    );
    let sdk = proxy.sdk_config().await;
    // Three attempts, quickly: a third attempt reaching the proxy proves the SDK classed the
    // answer as retryable throttling, not as the client error its HTTP 400 would otherwise be.
    let retry = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(1));
    macro_rules! client {
        ($sdk:ident) => {
            $sdk::Client::from_conf(
                $sdk::config::Builder::from(&sdk)
                    .retry_config(retry.clone())
                    .build(),
            )
        };
    }
    let results = [
        (
            "ec2",
            judged(
                "DescribeVpcs",
                client!(aws_sdk_ec2).describe_vpcs().send().await,
            ),
        ),
        (
            "elasticloadbalancing",
            judged(
                "DescribeLoadBalancers",
                client!(aws_sdk_elasticloadbalancingv2)
                    .describe_load_balancers()
                    .send()
                    .await,
            ),
        ),
        (
            "iam",
            judged("ListRoles", client!(aws_sdk_iam).list_roles().send().await),
        ),
        (
            "rds",
            judged(
                "DescribeDBInstances",
                client!(aws_sdk_rds).describe_db_instances().send().await,
            ),
        ),
        (
            "ecs",
            judged(
                "ListClusters",
                client!(aws_sdk_ecs).list_clusters().send().await,
            ),
        ),
        (
            "ecr",
            judged(
                "DescribeRepositories",
                client!(aws_sdk_ecr).describe_repositories().send().await,
            ),
        ),
        (
            "logs",
            judged(
                "DescribeLogGroups",
                client!(aws_sdk_cloudwatchlogs)
                    .describe_log_groups()
                    .send()
                    .await,
            ),
        ),
        (
            "secretsmanager",
            judged(
                "ListSecrets",
                client!(aws_sdk_secretsmanager).list_secrets().send().await,
            ),
        ),
        (
            "acm",
            judged(
                "ListCertificates",
                client!(aws_sdk_acm).list_certificates().send().await,
            ),
        ),
        (
            "route53",
            judged(
                "ListHostedZones",
                client!(aws_sdk_route53).list_hosted_zones().send().await,
            ),
        ),
    ];
    for (service, (code, transient)) in results {
        let expected = match service {
            "ec2" => "RequestLimitExceeded",
            "ecs" | "ecr" | "logs" | "secretsmanager" | "acm" => "ThrottlingException",
            _ => "Throttling",
        };
        assert_eq!(code, expected, "{service}");
        assert!(transient, "dagform retries {service}'s {code}");
        assert_eq!(
            proxy.injected_into(Fault::Throttled, service),
            3,
            "the SDK retried {service}'s {code} as throttling"
        );
    }
    eprintln!("faults injected: {}", proxy.report());
}

#[tokio::test(flavor = "multi_thread")]
async fn first_attempts_get_the_eventual_consistency_errors_once_per_target() {
    let emu = Emulator::start();
    let proxy = FaultProxy::start(
        &emu,
        Faults {
            eventual_consistency: true,
            ..Faults::default()
        },
    );
    let sdk = proxy.sdk_config().await;
    let no_retries = RetryConfig::disabled();
    let ec2 = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&sdk)
            .retry_config(no_retries.clone())
            .build(),
    );
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::from_conf(
        aws_sdk_elasticloadbalancingv2::config::Builder::from(&sdk)
            .retry_config(no_retries.clone())
            .build(),
    );
    let ecs = aws_sdk_ecs::Client::from_conf(
        aws_sdk_ecs::config::Builder::from(&sdk)
            .retry_config(no_retries)
            .build(),
    );
    let delete_subnet = |id: &'static str| {
        let ec2 = ec2.clone();
        async move {
            judged(
                "DeleteSubnet",
                ec2.delete_subnet().subnet_id(id).send().await,
            )
        }
    };
    let not_yet = (String::from("DependencyViolation"), true);
    assert_eq!(delete_subnet("subnet-0a1b2c3d").await, not_yet);
    let (code, _) = delete_subnet("subnet-0a1b2c3d").await;
    assert_ne!(
        code, "DependencyViolation",
        "only the first attempt is refused"
    );
    assert_eq!(
        delete_subnet("subnet-9f8e7d6c").await,
        not_yet,
        "another subnet"
    );
    assert_eq!(proxy.injected(Fault::SubnetHasDependencies), 2);

    let group = ec2
        .delete_security_group()
        .group_id("sg-0a1b2c3d")
        .send()
        .await;
    assert_eq!(judged("DeleteSecurityGroup", group), not_yet);
    assert_eq!(proxy.injected(Fault::SecurityGroupInUse), 1);

    let arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/0123456789abcdef";
    let in_use = elbv2
        .delete_target_group()
        .target_group_arn(arn)
        .send()
        .await;
    assert_eq!(
        judged("DeleteTargetGroup", in_use),
        ("ResourceInUse".into(), true)
    );
    assert_eq!(proxy.injected(Fault::TargetGroupInUse), 1);

    let service = ecs
        .create_service()
        .cluster("default")
        .service_name("api")
        .task_definition("api:1")
        .send()
        .await;
    let err = service.as_ref().expect_err("CreateService");
    assert!(
        err.message()
            .unwrap_or_default()
            .contains("Unable to assume role"),
        "{err:?}"
    );
    assert_eq!(
        judged("CreateService", service),
        ("InvalidParameterException".into(), true)
    );
    assert_eq!(proxy.injected(Fault::RoleNotAssumable), 1);
    assert_eq!(proxy.injected(Fault::Throttled), 0);
    eprintln!("faults injected: {}", proxy.report());
}

/// Objects of `kind` in `inventory`, for messages.
fn listed(inventory: &Inventory, kind: &str) -> String {
    format!("{kind}: {:?}", inventory.items(kind))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_converges_through_throttling_and_not_yet_errors() {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    create_zone(&clients, ZONE).await;
    let fresh = Inventory::read(&clients).await;
    let proxy = FaultProxy::start(
        &emu,
        Faults {
            seed: 8,
            latency_ms: 0..=5,
            throttle: 0.2,
            eventual_consistency: true,
            ..Faults::default()
        },
    );
    let project = Project::from_example("multi-customer");
    let through_faults = |verb: &str| {
        let mut cmd = project.dagform(&emu, &[verb, "--yes"]);
        cmd.envs(proxy.env(&emu));
        // A fifth of all calls throttled is far beyond what AWS does; the SDK's adaptive
        // pacing answers it by slowing every client to a crawl (minutes, not seconds), so
        // this test retries the standard way.
        cmd.env("AWS_RETRY_MODE", "standard");
        cmd
    };

    run_ok(&mut through_faults("provision"));
    eprintln!("provision through faults: {}", proxy.report());
    assert!(proxy.injected(Fault::Throttled) > 0, "{}", proxy.report());
    // One refusal per service: every CreateService met a role not yet assumable, first.
    assert_eq!(
        proxy.injected(Fault::RoleNotAssumable),
        6,
        "{}",
        proxy.report()
    );

    // Read back directly: one load balancer with HTTP and HTTPS listeners, a target group and
    // a host rule per customer and web-facing service, every service running, the records.
    let built = Inventory::read(&clients).await;
    assert_eq!(
        built.count("load balancer"),
        1,
        "{}",
        listed(&built, "load balancer")
    );
    let lb = &built.items("load balancer")[0];
    assert_eq!(
        built.items("listener"),
        [format!("{lb}:443"), format!("{lb}:80")],
        "{}",
        listed(&built, "listener")
    );
    // Each customer's host has two rules (API and web), each to a target group of its own.
    let rules = built.items("listener rule");
    assert_eq!(rules.len(), 4, "{}", listed(&built, "listener rule"));
    let target = |rule: &String| rule.rsplit("→ ").next().unwrap_or_default().to_owned();
    let targets: std::collections::BTreeSet<String> = rules.iter().map(target).collect();
    assert_eq!(
        targets.len(),
        4,
        "no two rules share a target group: {rules:#?}"
    );
    for group in &targets {
        assert!(
            built.items("target group").contains(group),
            "{group}: {}",
            listed(&built, "target group")
        );
    }
    for host in ["freeinterestcal.com", "customer1.freeinterestcal.com"] {
        let condition = format!("host-header={host}");
        let of_host = rules
            .iter()
            .filter(|r| r.split(' ').any(|c| c == condition))
            .count();
        assert_eq!(of_host, 2, "{host}'s rules: {rules:#?}");
    }
    assert_eq!(built.count("service"), 6, "{}", listed(&built, "service"));
    assert_eq!(built.count("active task definition"), 6);
    assert_eq!(built.count("certificate"), 1);
    for record in ["freeinterestcal.com. A", "customer1.freeinterestcal.com. A"] {
        assert!(
            built.items("record").iter().any(|r| r == record),
            "{record}: {}",
            listed(&built, "record")
        );
    }
    assert_eq!(
        Inventory::private_subnets_without_nat_route(&clients).await,
        Vec::<String>::new()
    );

    run_ok(&mut through_faults("destroy"));
    eprintln!("provision and destroy through faults: {}", proxy.report());
    for fault in [
        Fault::SecurityGroupInUse,
        Fault::TargetGroupInUse,
        Fault::SubnetHasDependencies,
    ] {
        assert!(
            proxy.injected(fault) > 0,
            "{}: {}",
            fault.label(),
            proxy.report()
        );
    }
    let left = Inventory::read(&clients).await.differences(&fresh);
    assert!(
        left.is_empty(),
        "destroy through faults left {:#?} and removed {:#?}",
        left.extra,
        left.missing
    );
}
