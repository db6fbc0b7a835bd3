//! PriceGuard end to end: one service with secrets, HTTPS validated at an outside DNS host, and
//! a private PostgreSQL database, in the account's existing default VPC — the real binary
//! against a private emulator, verified by reading AWS back.

mod support;

use std::collections::BTreeSet;
use support::{Emulator, Project, run, run_ok};

const SECRETS: [(&str, &str); 4] = [
    (
        "PRICEGUARD_DATABASE_URL",
        "postgres://priceguard:pw-9f3k2@db.internal:5432/appdb",
    ),
    (
        "PRICEGUARD_ALLOWED_ORIGINS",
        "https://priceguard.netlify.app",
    ),
    ("PRICEGUARD_STRIPE_SECRET_KEY", "sk_live_51Hx2secretvalue"),
    ("PRICEGUARD_STRIPE_WEBHOOK_SECRET", "whsec_4b7secretvalue"),
];

fn dagform(project: &Project, emu: &Emulator, args: &[&str]) -> std::process::Command {
    let mut cmd = project.dagform(emu, args);
    cmd.envs(SECRETS);
    cmd
}

fn assert_no_secret(text: &str, what: &str) {
    for (_, value) in SECRETS {
        assert!(!text.contains(value), "{what} leaks a secret value");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn priceguard_deploys_into_the_default_vpc_and_leaves_it_as_it_was() {
    // ACM issues the certificate ten seconds after it is requested: long enough for the
    // first run to find it still waiting for its records, however slow the machine.
    let emu = Emulator::start_with(&[("MOTO_ACM_VALIDATION_WAIT", "10")]);
    let clients = emu.clients().await;
    let project = Project::from_example("priceguard");
    let vpcs_before = clients
        .ec2
        .describe_vpcs()
        .send()
        .await
        .unwrap()
        .vpcs()
        .len();
    let default_vpc = clients
        .ec2
        .describe_vpcs()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("is-default")
                .values("true")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .vpcs()[0]
        .vpc_id()
        .unwrap()
        .to_owned();
    let default_subnets: BTreeSet<String> = clients
        .ec2
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(&default_vpc)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .subnets()
        .iter()
        .map(|s| s.subnet_id().unwrap().to_owned())
        .collect();

    // Without the secret values, nothing is planned: the error names the file, line and field.
    let out = run(&mut project.dagform(&emu, &["plan"]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("secrets.DATABASE_URL.from_env") && err.contains("PRICEGUARD_DATABASE_URL"),
        "{err}"
    );

    let plan = run(&mut dagform(&project, &emu, &["plan"]));
    assert!(plan.status.success());
    assert_no_secret(&String::from_utf8_lossy(&plan.stdout), "the plan");
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("sha256:"),
        "secrets shown as fingerprints"
    );

    // First run: the certificate waits for records at the outside DNS host, an outcome, not a
    // failure; everything else is provisioned and the records to add are printed.
    let first = run(&mut dagform(&project, &emu, &["provision", "--yes"]));
    let err = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(3), "pending: {err}");
    assert!(
        err.contains("is waiting for certificate") && err.contains("Waiting on it:"),
        "{err}"
    );
    assert!(
        err.contains("api.priceguardbackend.live.") && err.contains("acm-validations.aws"),
        "{err}"
    );
    assert!(err.contains("Run provision again"), "{err}");
    assert_no_secret(
        &format!("{}{err}", String::from_utf8_lossy(&first.stdout)),
        "provision output",
    );
    let lbs = clients
        .elbv2
        .describe_load_balancers()
        .names("priceguard-alb")
        .send()
        .await
        .unwrap();
    let lb = lbs.load_balancers()[0].clone();
    let listeners = clients
        .elbv2
        .describe_listeners()
        .load_balancer_arn(lb.load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        listeners
            .listeners()
            .iter()
            .map(|l| l.port().unwrap())
            .collect::<Vec<_>>(),
        [80],
        "HTTPS waits for the certificate"
    );

    // Once ACM issues the certificate (as the records were added), a re-run adds HTTPS.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let issued = clients
            .acm
            .list_certificates()
            .send()
            .await
            .unwrap()
            .certificate_summary_list()
            .iter()
            .any(|c| c.status().map(|s| s.as_str()) == Some("ISSUED"));
        if issued {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ACM never issued the certificate"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    run_ok(&mut dagform(&project, &emu, &["provision", "--yes"]));
    let listeners = clients
        .elbv2
        .describe_listeners()
        .load_balancer_arn(lb.load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    let mut ports: Vec<i32> = listeners
        .listeners()
        .iter()
        .map(|l| l.port().unwrap())
        .collect();
    ports.sort();
    assert_eq!(ports, [80, 443]);
    let tgs = clients
        .elbv2
        .describe_target_groups()
        .names("priceguard-targets")
        .send()
        .await
        .unwrap();
    let tg = &tgs.target_groups()[0];
    assert_eq!(
        (
            tg.port(),
            tg.health_check_path(),
            tg.health_check_interval_seconds(),
            tg.unhealthy_threshold_count()
        ),
        (Some(4000), Some("/health"), Some(30), Some(3))
    );
    for l in listeners.listeners() {
        let action = &l.default_actions()[0];
        assert_eq!(
            action.target_group_arn(),
            tg.target_group_arn(),
            "port {:?} forwards to the target group",
            l.port()
        );
    }
    let cert = listeners
        .listeners()
        .iter()
        .find(|l| l.port() == Some(443))
        .unwrap()
        .certificates()[0]
        .certificate_arn()
        .unwrap()
        .to_owned();
    let described = clients
        .acm
        .describe_certificate()
        .certificate_arn(&cert)
        .send()
        .await
        .unwrap();
    let c = described.certificate().unwrap();
    assert_eq!(c.domain_name(), Some("api.priceguardbackend.live"));
    assert_eq!(
        c.subject_alternative_names()
            .iter()
            .filter(|n| n.as_str() != "api.priceguardbackend.live")
            .cloned()
            .collect::<BTreeSet<_>>(),
        [
            "priceguardbackend.live".to_string(),
            "www.priceguardbackend.live".to_string()
        ]
        .into()
    );

    // The default VPC is used, not created.
    assert_eq!(
        clients
            .ec2
            .describe_vpcs()
            .send()
            .await
            .unwrap()
            .vpcs()
            .len(),
        vpcs_before
    );
    assert_eq!(lb.vpc_id(), Some(default_vpc.as_str()));

    // Secrets exist; the task definition takes them by ARN as secrets, never as environment.
    let mut secret_arns = BTreeSet::new();
    for name in [
        "priceguard/database-url",
        "priceguard/allowed-origins",
        "priceguard/stripe-secret-key",
        "priceguard/stripe-webhook-secret",
    ] {
        let s = clients
            .secretsmanager
            .describe_secret()
            .secret_id(name)
            .send()
            .await
            .unwrap();
        secret_arns.insert(s.arn().unwrap().to_owned());
    }
    let value = clients
        .secretsmanager
        .get_secret_value()
        .secret_id("priceguard/stripe-secret-key")
        .send()
        .await
        .unwrap();
    assert_eq!(value.secret_string(), Some(SECRETS[2].1));
    let services = clients
        .ecs
        .describe_services()
        .cluster("priceguard-cluster")
        .services("priceguard-server")
        .send()
        .await
        .unwrap();
    let svc = services.services()[0].clone();
    assert_eq!(svc.desired_count(), 1);
    let net = svc
        .network_configuration()
        .unwrap()
        .awsvpc_configuration()
        .unwrap();
    assert_eq!(
        net.assign_public_ip().map(|a| a.as_str()),
        Some("ENABLED"),
        "public IPs in the default VPC, as the seed"
    );
    assert!(net.subnets().iter().all(|s| default_subnets.contains(s)));
    let td = clients
        .ecs
        .describe_task_definition()
        .task_definition(svc.task_definition().unwrap())
        .send()
        .await
        .unwrap();
    let td = td.task_definition().unwrap();
    assert_eq!(
        (td.family(), td.cpu(), td.memory()),
        (Some("priceguard-server"), Some("256"), Some("512"))
    );
    let container = &td.container_definitions()[0];
    let from: BTreeSet<String> = container
        .secrets()
        .iter()
        .map(|s| s.value_from().to_owned())
        .collect();
    assert_eq!(from, secret_arns);
    let env: BTreeSet<&str> = container
        .environment()
        .iter()
        .map(|e| e.name().unwrap())
        .collect();
    for k in ["NODE_ENV", "PORT", "PGSSLMODE"] {
        assert!(env.contains(k), "{k} in {env:?}");
    }
    assert!(!env.contains("STRIPE_SECRET_KEY") && !env.contains("DATABASE_URL"));
    let hc = container.health_check().unwrap();
    assert_eq!(
        (hc.interval(), hc.timeout(), hc.retries(), hc.start_period()),
        (Some(30), Some(5), Some(3), Some(120))
    );
    assert!(
        hc.command()
            .join(" ")
            .contains("http://localhost:4000/health?simple=1")
    );
    let log = container.log_configuration().unwrap().options().unwrap();
    assert_eq!(
        (
            log["awslogs-group"].as_str(),
            log["awslogs-stream-prefix"].as_str()
        ),
        ("/ecs/priceguard-server", "ecs")
    );
    let groups = clients
        .logs
        .describe_log_groups()
        .log_group_name_prefix("/ecs/priceguard-server")
        .send()
        .await
        .unwrap();
    assert_eq!(groups.log_groups()[0].retention_in_days(), Some(90));

    // The execution role reads exactly these secrets.
    let policy = clients
        .iam
        .get_role_policy()
        .role_name("prod-priceguard-task-execution-role")
        .policy_name("read-secrets")
        .send()
        .await
        .unwrap();
    // IAM returns policy documents URL-encoded.
    let doc: serde_json::Value = serde_json::from_str(
        &percent_encoding::percent_decode_str(policy.policy_document()).decode_utf8_lossy(),
    )
    .unwrap();
    let resources: BTreeSet<String> = doc["Statement"][0]["Resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(resources, secret_arns);
    assert_eq!(
        doc["Statement"][0]["Action"],
        serde_json::json!(["secretsmanager:GetSecretValue"])
    );
    let attached = clients
        .iam
        .list_attached_role_policies()
        .role_name("prod-priceguard-task-execution-role")
        .send()
        .await
        .unwrap();
    assert_eq!(
        attached
            .attached_policies()
            .iter()
            .map(|p| p.policy_arn().unwrap())
            .collect::<Vec<_>>(),
        ["arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"],
        "no SecretsManagerReadWrite"
    );

    // Security groups chain: internet → ALB (80/443) → service (4000) → database (5432).
    let groups = clients
        .ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(&default_vpc)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let by_name = |n: &str| {
        groups
            .security_groups()
            .iter()
            .find(|g| g.group_name() == Some(n))
            .unwrap_or_else(|| panic!("no {n}"))
            .clone()
    };
    let (alb_sg, svc_sg, db_sg) = (
        by_name("prod-priceguard-alb-sg"),
        by_name("prod-priceguard-priceguard-server-sg"),
        by_name("prod-priceguard-database-sg"),
    );
    let ingress = |g: &aws_sdk_ec2::types::SecurityGroup| -> Vec<(i32, Vec<String>)> {
        g.ip_permissions()
            .iter()
            .map(|p| {
                (
                    p.from_port().unwrap(),
                    p.ip_ranges()
                        .iter()
                        .filter_map(|r| r.cidr_ip().map(str::to_owned))
                        .chain(
                            p.user_id_group_pairs()
                                .iter()
                                .filter_map(|u| u.group_id().map(str::to_owned)),
                        )
                        .collect(),
                )
            })
            .collect()
    };
    let mut alb_in = ingress(&alb_sg);
    alb_in.sort();
    assert_eq!(
        alb_in,
        [
            (80, vec!["0.0.0.0/0".to_string()]),
            (443, vec!["0.0.0.0/0".to_string()])
        ]
    );
    assert_eq!(
        ingress(&svc_sg),
        [(4000, vec![alb_sg.group_id().unwrap().to_owned()])]
    );
    assert_eq!(
        ingress(&db_sg),
        [(5432, vec![svc_sg.group_id().unwrap().to_owned()])]
    );

    // The database: private, encrypted, in its subnet group, behind its group, SSL enforced.
    let dbs = clients
        .rds
        .describe_db_instances()
        .db_instance_identifier("priceguard-db")
        .send()
        .await
        .unwrap();
    let db = &dbs.db_instances()[0];
    assert_eq!(db.publicly_accessible(), Some(false));
    assert_eq!(db.storage_encrypted(), Some(true));
    assert_eq!(db.engine(), Some("postgres"));
    assert_eq!(
        db.db_subnet_group().and_then(|g| g.db_subnet_group_name()),
        Some("prod-priceguard-db-subnets")
    );
    assert_eq!(
        db.vpc_security_groups()
            .iter()
            .filter_map(|g| g.vpc_security_group_id())
            .collect::<Vec<_>>(),
        [db_sg.group_id().unwrap()]
    );
    let pg = db.db_parameter_groups()[0]
        .db_parameter_group_name()
        .unwrap()
        .to_owned();
    let params = clients
        .rds
        .describe_db_parameters()
        .db_parameter_group_name(&pg)
        .source("user")
        .send()
        .await
        .unwrap();
    assert!(
        params.parameters().iter().any(
            |p| p.parameter_name() == Some("rds.force_ssl") && p.parameter_value() == Some("1")
        )
    );
    let repo = clients
        .ecr
        .get_lifecycle_policy()
        .repository_name("priceguard-server")
        .send()
        .await
        .unwrap();
    assert!(
        repo.lifecycle_policy_text().unwrap().contains("20"),
        "keeps the last 20 images"
    );

    // Nothing secret in the state file, nor in its journal.
    let state = std::fs::read_to_string(&project.state).unwrap();
    assert_no_secret(&state, "the state file");
    let journal = std::fs::read_to_string(support::journal_of(&project.state)).unwrap();
    assert_no_secret(&journal, "the state's journal");

    // Deploying a new image from CI: a new revision, the service updated in place.
    let before = svc.task_definition().unwrap().to_owned();
    let out = run_ok(&mut dagform(
        &project,
        &emu,
        &["provision", "--yes", "--set", "image_tag=3f9c2ab", "--json"],
    ));
    // One JSON event a line, the report last.
    let report: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap()).expect("JSON report");
    let steps: BTreeSet<(String, String)> = report["succeeded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["address"].as_str().unwrap().to_owned(),
                s["step"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("app.task_definition.priceguard-server", "create"),
            ("app.service.priceguard-server", "update"),
            ("app.task_definition.priceguard-server", "delete old"),
        ]
        .iter()
        .map(|(a, s)| (a.to_string(), s.to_string()))
        .collect()
    );
    let svc = clients
        .ecs
        .describe_services()
        .cluster("priceguard-cluster")
        .services("priceguard-server")
        .send()
        .await
        .unwrap()
        .services()[0]
        .clone();
    assert_ne!(svc.task_definition().unwrap(), before);
    let td = clients
        .ecs
        .describe_task_definition()
        .task_definition(svc.task_definition().unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        td.task_definition().unwrap().container_definitions()[0]
            .image()
            .unwrap()
            .ends_with("/priceguard-server:3f9c2ab")
    );
    assert_no_secret(&out, "the JSON report");

    // Destroy removes what dagform created and nothing else.
    run_ok(&mut project.dagform(&emu, &["destroy", "--yes"]));
    assert_eq!(
        clients
            .ec2
            .describe_vpcs()
            .vpc_ids(&default_vpc)
            .send()
            .await
            .unwrap()
            .vpcs()
            .len(),
        1,
        "the default VPC stays"
    );
    let subnets_after: BTreeSet<String> = clients
        .ec2
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("vpc-id")
                .values(&default_vpc)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .subnets()
        .iter()
        .map(|s| s.subnet_id().unwrap().to_owned())
        .collect();
    assert_eq!(subnets_after, default_subnets);
    assert!(
        clients
            .elbv2
            .describe_load_balancers()
            .send()
            .await
            .unwrap()
            .load_balancers()
            .is_empty()
    );
    assert!(
        clients
            .rds
            .describe_db_instances()
            .send()
            .await
            .unwrap()
            .db_instances()
            .is_empty()
    );
    let left = clients.secretsmanager.list_secrets().send().await.unwrap();
    assert!(
        left.secret_list()
            .iter()
            .all(|s| s.deleted_date().is_some()),
        "secrets deleted (or scheduled for deletion)"
    );
    let groups = clients.ec2.describe_security_groups().send().await.unwrap();
    assert!(groups.security_groups().iter().all(|g| {
        !g.group_name()
            .unwrap_or_default()
            .starts_with("prod-priceguard")
    }));
    assert_eq!(project.state_json()["resources"], serde_json::json!({}));
}
