//! Customers with domains of their own, outside the stack's zone: each gets a certificate
//! served by SNI on its load balancer's HTTPS listener. One domain's zone is in the account, so
//! its validation and address records go there; the other's DNS is elsewhere, so its records
//! are printed and what waits for its certificate is reported pending until it is issued.
//! Verified by reading AWS back.

mod support;

use aws_sdk_route53::types::{ResourceRecordSet, RrType};
use std::time::Duration;
use support::{Emulator, Project, create_zone, run, run_ok};

const ZONE: &str = "example.com";
const ACME: &str = "app.acme-corp.com";
const OTHER: &str = "shop.other-corp.net";
/// ACM issues a certificate this long after it is requested: long enough for the first run to
/// find the outside one still waiting for its records, however slow the machine.
const ACM_WAIT_SECONDS: u64 = 10;

fn config() -> String {
    let mut text = format!(
        r#"
[stack]
app = "cdom"
environment = "dev"
region = "us-east-1"

[network]
cidr = "10.0.0.0/16"
availability_zones = ["us-east-1a", "us-east-1b"]
public_subnets = ["10.0.1.0/24", "10.0.2.0/24"]
private_subnets = ["10.0.11.0/24", "10.0.12.0/24"]
nat_gateways = "single"

[dns]
zone = "{ZONE}"

[certificate]
domain = "*.{ZONE}"

[services.web]
image_tag = "web-latest"
port = 3000
health_check_path = "/"
cpu = 256
memory = 512
desired_count = 1
"#
    );
    for (name, domain) in [
        ("c1", "c1.example.com"),
        ("c2", "c2.example.com"),
        ("acme", ACME),
        ("other", OTHER),
    ] {
        text.push_str(&format!(
            "\n[customers.{name}]\ndomain = \"{domain}\"\ndisplay_name = \"{name}\"\n"
        ));
    }
    text
}

/// The ACM certificates in the account, as (domain name, ARN).
async fn certificates(c: &dagform_aws::AwsClients) -> Vec<(String, String)> {
    c.acm
        .list_certificates()
        .send()
        .await
        .unwrap()
        .certificate_summary_list()
        .iter()
        .map(|s| {
            (
                s.domain_name().unwrap().to_owned(),
                s.certificate_arn().unwrap().to_owned(),
            )
        })
        .collect()
}

fn arn_for(certificates: &[(String, String)], domain: &str) -> Option<String> {
    let matching: Vec<&String> = certificates
        .iter()
        .filter(|(d, _)| d == domain)
        .map(|(_, a)| a)
        .collect();
    assert!(matching.len() <= 1, "{domain}: {matching:?}");
    matching.first().map(|a| (*a).clone())
}

/// The stack's load balancer's HTTPS listener.
async fn https_listener(c: &dagform_aws::AwsClients) -> String {
    let lb = c
        .elbv2
        .describe_load_balancers()
        .names("dev-cdom-alb")
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    c.elbv2
        .describe_listeners()
        .load_balancer_arn(lb)
        .send()
        .await
        .unwrap()
        .listeners()
        .iter()
        .find(|l| l.port() == Some(443))
        .expect("an HTTPS listener")
        .listener_arn()
        .unwrap()
        .to_owned()
}

/// The certificates `listener` serves by SNI.
async fn sni_certificates(c: &dagform_aws::AwsClients, listener: &str) -> Vec<String> {
    c.elbv2
        .describe_listener_certificates()
        .listener_arn(listener)
        .send()
        .await
        .unwrap()
        .certificates()
        .iter()
        .filter(|cert| cert.is_default() != Some(true))
        .map(|cert| cert.certificate_arn().unwrap().to_owned())
        .collect()
}

/// The hosts the rules of `listener` match.
async fn rule_hosts(c: &dagform_aws::AwsClients, listener: &str) -> Vec<String> {
    let rules = c
        .elbv2
        .describe_rules()
        .listener_arn(listener)
        .send()
        .await
        .unwrap();
    let mut hosts: Vec<String> = rules
        .rules()
        .iter()
        .flat_map(|r| r.conditions())
        .filter(|c| c.field() == Some("host-header"))
        .flat_map(|c| {
            c.host_header_config()
                .map(|h| h.values().to_vec())
                .unwrap_or_else(|| c.values().to_vec())
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

async fn records(c: &dagform_aws::AwsClients, zone_id: &str) -> Vec<ResourceRecordSet> {
    c.route53
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .send()
        .await
        .unwrap()
        .resource_record_sets()
        .to_vec()
}

/// The DNS record ACM looks for before it issues `arn`, as (name, value).
async fn validation_record(c: &dagform_aws::AwsClients, arn: &str) -> (String, String) {
    let cert = c
        .acm
        .describe_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .unwrap();
    let record = cert.certificate().unwrap().domain_validation_options()[0]
        .resource_record()
        .expect("a validation record")
        .clone();
    (record.name().to_owned(), record.value().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn customers_with_their_own_domains_get_certificates_served_by_sni() {
    let wait = ACM_WAIT_SECONDS.to_string();
    let emu = Emulator::start_with(&[("MOTO_ACM_VALIDATION_WAIT", wait.as_str())]);
    let c = emu.clients().await;
    create_zone(&c, ZONE).await;
    let acme_zone = create_zone(&c, "acme-corp.com").await;
    let project = Project::with_config(&config());

    // First run: everything but what waits for the outside domain's certificate.
    let first = run(&mut project.dagform(&emu, &["provision", "--yes"]));
    let err = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(3), "pending: {err}");
    let listener = https_listener(&c).await;

    let certs = certificates(&c).await;
    let acme_cert = arn_for(&certs, ACME).expect("acme's certificate");
    let other_cert = arn_for(&certs, OTHER).expect("other's certificate");
    let described = c
        .acm
        .describe_certificate()
        .certificate_arn(&acme_cert)
        .send()
        .await
        .unwrap();
    let described = described.certificate().unwrap();
    assert_eq!(described.subject_alternative_names(), [ACME]);
    assert_eq!(described.status().unwrap().as_str(), "ISSUED");

    // Acme's certificate is served by SNI, its rules are on, and both its records are in its
    // zone.
    assert_eq!(
        sni_certificates(&c, &listener).await,
        vec![acme_cert.clone()]
    );
    let (validation_name, validation_value) = validation_record(&c, &acme_cert).await;
    let in_acme_zone = records(&c, &acme_zone).await;
    let validation = in_acme_zone
        .iter()
        .find(|r| r.r#type() == &RrType::Cname)
        .expect("a validation CNAME in the acme zone");
    assert_eq!(
        validation.name().trim_end_matches('.'),
        validation_name.trim_end_matches('.')
    );
    assert_eq!(
        validation.resource_records()[0].value(),
        validation_value.as_str()
    );
    let alias = in_acme_zone
        .iter()
        .find(|r| r.r#type() == &RrType::A)
        .expect("an A record in the acme zone");
    assert_eq!(alias.name().trim_end_matches('.'), ACME);
    let lb_dns = c
        .elbv2
        .describe_load_balancers()
        .names("dev-cdom-alb")
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .dns_name()
        .unwrap()
        .to_ascii_lowercase();
    assert_eq!(
        alias
            .alias_target()
            .expect("an alias")
            .dns_name()
            .trim_end_matches('.')
            .to_ascii_lowercase(),
        lb_dns.trim_end_matches('.')
    );

    // Other's records are printed, and its certificate, its listener certificate and its
    // rules wait: reported pending, not failed.
    let (other_name, other_value) = validation_record(&c, &other_cert).await;
    assert!(
        err.contains(other_name.trim_end_matches('.')) && err.contains(&other_value),
        "{err}"
    );
    assert!(err.contains("Run provision again"), "{err}");
    let hosts = rule_hosts(&c, &listener).await;
    assert!(
        hosts.contains(&ACME.to_owned()) && hosts.contains(&"c1.example.com".to_owned()),
        "{hosts:?}"
    );
    assert!(!hosts.contains(&OTHER.to_owned()), "{hosts:?}");
    let outputs: serde_json::Value =
        serde_json::from_str(&run_ok(&mut project.dagform(&emu, &["output", "--json"])))
            .expect("outputs JSON");
    assert!(
        outputs["certificate_validation_records.other"]
            .to_string()
            .contains(other_name.trim_end_matches('.')),
        "{outputs}"
    );

    // Once ACM has issued it (the records were added elsewhere), a second run finishes the job.
    tokio::time::sleep(Duration::from_secs(ACM_WAIT_SECONDS)).await;
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));
    let mut served = sni_certificates(&c, &listener).await;
    served.sort();
    let mut wanted = vec![acme_cert.clone(), other_cert.clone()];
    wanted.sort();
    assert_eq!(served, wanted);
    assert!(rule_hosts(&c, &listener).await.contains(&OTHER.to_owned()));

    // Destroy leaves nothing: no certificate, no load balancer, only the zone's own records.
    run_ok(&mut project.dagform(&emu, &["destroy", "--yes"]));
    assert!(certificates(&c).await.is_empty());
    let lbs = c.elbv2.describe_load_balancers().send().await.unwrap();
    assert!(lbs.load_balancers().is_empty());
    let left: Vec<RrType> = records(&c, &acme_zone)
        .await
        .iter()
        .map(|r| r.r#type().clone())
        .collect();
    assert!(
        left.iter().all(|t| matches!(t, RrType::Ns | RrType::Soa)),
        "{left:?}"
    );
}
