//! Two environments of the multi-customer example in one account: each provisions beside the
//! other and is destroyed without touching it, and a third configuration that claims the
//! first one's domains is refused without changing anything of theirs. Everything is verified
//! by reading AWS back.

mod support;

use aws_sdk_ec2::types::Filter;
use std::collections::{BTreeMap, BTreeSet};
use support::{Emulator, Project, create_zone, run, run_ok};

const ZONE: &str = "freeinterestcal.com";

/// The example with another environment and, when `subdomain` is given, customer domains of
/// its own. The certificate keeps its names: every certificate of one name in an account is
/// validated by the very same DNS record, which the environments then share.
fn environment(name: &str, subdomain: Option<&str>) -> String {
    let mut text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/multi-customer/dagform.toml"),
    )
    .expect("example");
    text = text.replace(
        "environment = \"dev\"",
        &format!("environment = \"{name}\""),
    );
    if let Some(sub) = subdomain {
        text = text
            .replace(
                "domain = \"freeinterestcal.com\"",
                &format!("domain = \"{sub}.{ZONE}\""),
            )
            .replace(
                "domain = \"customer1.freeinterestcal.com\"",
                &format!("domain = \"customer1-{sub}.{ZONE}\""),
            );
    }
    text
}

/// The certificate validation records in the zone.
async fn validation_records(c: &dagform_aws::AwsClients) -> BTreeSet<String> {
    let records = c
        .route53
        .list_resource_record_sets()
        .hosted_zone_id(zone_id(c).await)
        .send()
        .await
        .unwrap();
    records
        .resource_record_sets()
        .iter()
        .filter(|r| r.r#type().as_str() == "CNAME" && r.name().starts_with('_'))
        .map(|r| r.name().to_owned())
        .collect()
}

/// What one stack has in AWS, read back by describe calls: object kind → names or ids.
type Footprint = BTreeMap<&'static str, BTreeSet<String>>;

async fn footprint(c: &dagform_aws::AwsClients, stack: &str, domains: &[String]) -> Footprint {
    let mut f = Footprint::new();
    let tagged = |name: &str| Filter::builder().name(name).values(stack).build();
    let vpcs = c
        .ec2
        .describe_vpcs()
        .filters(tagged("tag:dagform:stack"))
        .send()
        .await
        .unwrap();
    f.insert(
        "vpcs",
        vpcs.vpcs()
            .iter()
            .filter_map(|v| v.vpc_id().map(str::to_owned))
            .collect(),
    );
    let subnets = c
        .ec2
        .describe_subnets()
        .filters(tagged("tag:dagform:stack"))
        .send()
        .await
        .unwrap();
    f.insert(
        "subnets",
        subnets
            .subnets()
            .iter()
            .filter_map(|s| s.subnet_id().map(str::to_owned))
            .collect(),
    );
    let lbs = c
        .elbv2
        .describe_load_balancers()
        .names(format!("{stack}-alb"))
        .send()
        .await
        .map(|o| {
            o.load_balancers()
                .iter()
                .filter_map(|l| l.dns_name().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    f.insert("load balancers", lbs);
    let tgs = c.elbv2.describe_target_groups().send().await.unwrap();
    f.insert(
        "target groups",
        tgs.target_groups()
            .iter()
            .filter_map(|t| t.target_group_name())
            .filter(|n| n.starts_with(stack))
            .map(str::to_owned)
            .collect(),
    );
    let groups = c
        .logs
        .describe_log_groups()
        .log_group_name_prefix(format!("/ecs/{stack}"))
        .send()
        .await
        .unwrap();
    f.insert(
        "log groups",
        groups
            .log_groups()
            .iter()
            .filter_map(|g| g.log_group_name().map(str::to_owned))
            .collect(),
    );
    let repos = c.ecr.describe_repositories().send().await.unwrap();
    f.insert(
        "repositories",
        repos
            .repositories()
            .iter()
            .filter_map(|r| r.repository_name())
            .filter(|n| *n == stack)
            .map(str::to_owned)
            .collect(),
    );
    let cluster = format!("{stack}-cluster");
    let services = c
        .ecs
        .list_services()
        .cluster(&cluster)
        .send()
        .await
        .map(|o| o.service_arns().to_vec())
        .unwrap_or_default();
    // Deleted services linger as INACTIVE for a while, as in AWS.
    let live = if services.is_empty() {
        BTreeSet::new()
    } else {
        c.ecs
            .describe_services()
            .cluster(&cluster)
            .set_services(Some(services))
            .send()
            .await
            .unwrap()
            .services()
            .iter()
            .filter(|s| s.status() != Some("INACTIVE"))
            .filter_map(|s| s.service_arn().map(str::to_owned))
            .collect()
    };
    f.insert("services", live);
    let roles = c.iam.list_roles().send().await.unwrap();
    f.insert(
        "roles",
        roles
            .roles()
            .iter()
            .map(|r| r.role_name())
            .filter(|n| n.starts_with(stack))
            .map(str::to_owned)
            .collect(),
    );
    let certs = c.acm.list_certificates().send().await.unwrap();
    let mut ours = BTreeSet::new();
    for cert in certs.certificate_summary_list() {
        let arn = cert.certificate_arn().unwrap();
        let tags = c
            .acm
            .list_tags_for_certificate()
            .certificate_arn(arn)
            .send()
            .await
            .unwrap();
        if tags
            .tags()
            .iter()
            .any(|t| t.key() == "dagform:stack" && t.value() == Some(stack))
        {
            ours.insert(arn.to_owned());
        }
    }
    f.insert("certificates", ours);
    let zone = zone_id(c).await;
    let records = c
        .route53
        .list_resource_record_sets()
        .hosted_zone_id(&zone)
        .send()
        .await
        .unwrap();
    f.insert(
        "records",
        records
            .resource_record_sets()
            .iter()
            .filter(|r| {
                let name = r.name().trim_end_matches('.');
                domains.iter().any(|d| d == name) && !matches!(r.r#type().as_str(), "NS" | "SOA")
            })
            .map(|r| {
                let target = r
                    .alias_target()
                    .map(|a| a.dns_name().to_owned())
                    .unwrap_or_default();
                format!("{} {} -> {target}", r.name(), r.r#type().as_str())
            })
            .collect(),
    );
    f
}

async fn zone_id(c: &dagform_aws::AwsClients) -> String {
    let zones = c
        .route53
        .list_hosted_zones_by_name()
        .dns_name(ZONE)
        .send()
        .await
        .unwrap();
    zones.hosted_zones()[0]
        .id()
        .trim_start_matches("/hostedzone/")
        .to_owned()
}

/// Every kind of object the example makes is there, in the numbers it makes them.
fn assert_complete(stack: &str, f: &Footprint) {
    let expected = [
        ("vpcs", 1),
        ("subnets", 4),
        ("load balancers", 1),
        // The listener's default group plus two routed services for each of two customers.
        ("target groups", 1 + 2 * 2),
        // One per service shared, and one per service and customer.
        ("log groups", 3 + 3 * 2),
        ("repositories", 1),
        ("services", 3 * 2),
        ("roles", 2),
        ("certificates", 1),
        // An alias record for each customer's domain.
        ("records", 2),
    ];
    for (what, n) in expected {
        assert_eq!(f[what].len(), n, "{stack}: {what}: {:?}", f[what]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn environments_side_by_side_never_touch_each_other() {
    let emu = Emulator::start();
    let c = emu.clients().await;
    create_zone(&c, ZONE).await;

    let dev = Project::with_config(&environment("dev", None));
    let dev_domains = vec![ZONE.to_owned(), format!("customer1.{ZONE}")];
    let prod = Project::with_config(&environment("prod", Some("prod")));
    let prod_domains = vec![format!("prod.{ZONE}"), format!("customer1-prod.{ZONE}")];

    run_ok(&mut dev.dagform(&emu, &["provision", "--yes"]));
    let dev_before = footprint(&c, "dev-task-manager", &dev_domains).await;
    assert_complete("dev", &dev_before);

    // prod provisions beside dev: it adopts nothing of dev's and changes none of it.
    let validation = validation_records(&c).await;
    assert!(!validation.is_empty());
    run_ok(&mut prod.dagform(&emu, &["provision", "--yes"]));
    assert_eq!(
        validation_records(&c).await,
        validation,
        "prod's certificate uses dev's validation record"
    );
    let prod_built = footprint(&c, "prod-task-manager", &prod_domains).await;
    assert_complete("prod", &prod_built);
    assert_eq!(
        footprint(&c, "dev-task-manager", &dev_domains).await,
        dev_before
    );

    // A third environment that claims dev's domains is refused for those records, names the
    // stack they belong to, and leaves them pointing at dev's load balancer.
    let thief = Project::with_config(&environment("staging", None));
    let out = run(&mut thief.dagform(&emu, &["provision", "--yes"]));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "claiming dev's domains succeeded:\n{text}"
    );
    assert!(
        text.contains("belongs to stack `dev-task-manager`"),
        "the refusal names the owner:\n{text}"
    );
    assert_eq!(
        footprint(&c, "dev-task-manager", &dev_domains).await,
        dev_before
    );
    // Its destroy removes what it made and still nothing of dev's.
    run_ok(&mut thief.dagform(&emu, &["destroy", "--yes"]));
    let gone = footprint(&c, "staging-task-manager", &[]).await;
    assert!(gone.values().all(BTreeSet::is_empty), "{gone:?}");
    assert_eq!(
        footprint(&c, "dev-task-manager", &dev_domains).await,
        dev_before
    );

    // Destroying prod leaves dev whole, and dev's plan sees nothing changed outside.
    run_ok(&mut prod.dagform(&emu, &["destroy", "--yes"]));
    let prod_after = footprint(&c, "prod-task-manager", &prod_domains).await;
    assert!(
        prod_after.values().all(BTreeSet::is_empty),
        "prod left {prod_after:?}"
    );
    assert_eq!(
        footprint(&c, "dev-task-manager", &dev_domains).await,
        dev_before
    );
    assert_eq!(validation_records(&c).await, validation, "still dev's");
    let plan = run_ok(&mut dev.dagform(&emu, &["plan"]));
    assert!(plan.contains("No changes"), "{plan}");

    run_ok(&mut dev.dagform(&emu, &["destroy", "--yes"]));
    let dev_after = footprint(&c, "dev-task-manager", &dev_domains).await;
    assert!(
        dev_after.values().all(BTreeSet::is_empty),
        "dev left {dev_after:?}"
    );
    assert!(validation_records(&c).await.is_empty());
}
