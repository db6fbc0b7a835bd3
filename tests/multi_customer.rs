//! The multi-customer example end to end: the real `dagform` binary against a private AWS
//! emulator, every result verified by reading AWS back.

mod support;

use aws_sdk_ec2::types::{Filter, IpPermission};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use support::{Emulator, Project, create_zone, run, run_ok, stack_vpcs};

const ZONE: &str = "freeinterestcal.com";
const CLUSTER: &str = "dev-task-manager-cluster";

/// The name the example gives a customer's target group (`customer-service`).
fn tg_name(customer_service: &str) -> String {
    dagform_config::naming::elb_name(&format!("dev-task-manager-{customer_service}"))
}

struct Platform {
    emu: Emulator,
    clients: dagform_aws::AwsClients,
    project: Project,
    zone_id: String,
}

async fn provisioned() -> Platform {
    let emu = Emulator::start();
    let clients = emu.clients().await;
    let zone_id = create_zone(&clients, ZONE).await;
    let project = Project::from_example("multi-customer");
    let out = run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));
    assert!(out.contains("to create"), "{out}");
    Platform {
        emu,
        clients,
        project,
        zone_id,
    }
}

impl Platform {
    fn dagform(&self, args: &[&str]) -> std::process::Command {
        self.project.dagform(&self.emu, args)
    }

    fn plan_json(&self) -> Json {
        serde_json::from_str(&run_ok(&mut self.dagform(&["plan", "--json"]))).expect("plan JSON")
    }

    async fn vpc_id(&self) -> String {
        let vpcs = stack_vpcs(&self.clients, "dev-task-manager").await;
        assert_eq!(vpcs.len(), 1, "one VPC tagged with the stack");
        vpcs[0].vpc_id().unwrap().to_owned()
    }

    async fn security_groups(&self) -> BTreeMap<String, aws_sdk_ec2::types::SecurityGroup> {
        let vpc = self.vpc_id().await;
        let out = self
            .clients
            .ec2
            .describe_security_groups()
            .filters(Filter::builder().name("vpc-id").values(vpc).build())
            .send()
            .await
            .unwrap();
        out.security_groups()
            .iter()
            .filter(|g| g.group_name() != Some("default"))
            .map(|g| (g.group_name().unwrap().to_owned(), g.clone()))
            .collect()
    }

    async fn https_listener(&self) -> aws_sdk_elasticloadbalancingv2::types::Listener {
        let lbs = self
            .clients
            .elbv2
            .describe_load_balancers()
            .names("dev-task-manager-alb")
            .send()
            .await
            .unwrap();
        let lb = lbs.load_balancers()[0]
            .load_balancer_arn()
            .unwrap()
            .to_owned();
        let listeners = self
            .clients
            .elbv2
            .describe_listeners()
            .load_balancer_arn(lb)
            .send()
            .await
            .unwrap();
        listeners
            .listeners()
            .iter()
            .find(|l| l.port() == Some(443))
            .expect("HTTPS listener")
            .clone()
    }

    /// priority → (host, paths, target group name)
    async fn rules(&self) -> BTreeMap<u32, (String, Vec<String>, String)> {
        let listener = self.https_listener().await;
        let out = self
            .clients
            .elbv2
            .describe_rules()
            .listener_arn(listener.listener_arn().unwrap())
            .send()
            .await
            .unwrap();
        let tgs = self
            .clients
            .elbv2
            .describe_target_groups()
            .send()
            .await
            .unwrap();
        let tg_name = |arn: &str| {
            tgs.target_groups()
                .iter()
                .find(|t| t.target_group_arn() == Some(arn))
                .and_then(|t| t.target_group_name())
                .unwrap_or("?")
                .to_owned()
        };
        let mut rules = BTreeMap::new();
        for r in out.rules() {
            let Ok(priority) = r.priority().unwrap().parse::<u32>() else {
                continue;
            };
            let mut host = String::new();
            let mut paths = Vec::new();
            for c in r.conditions() {
                match c.field() {
                    Some("host-header") => {
                        let v = c
                            .host_header_config()
                            .map(|h| h.values().to_vec())
                            .filter(|v| !v.is_empty())
                            .unwrap_or_else(|| c.values().to_vec());
                        host = v.join(",");
                    }
                    Some("path-pattern") => {
                        paths = c
                            .path_pattern_config()
                            .map(|p| p.values().to_vec())
                            .filter(|v| !v.is_empty())
                            .unwrap_or_else(|| c.values().to_vec());
                    }
                    other => panic!("unexpected condition {other:?}"),
                }
            }
            let target = r.actions()[0]
                .target_group_arn()
                .map(tg_name)
                .unwrap_or_default();
            rules.insert(priority, (host, paths, target));
        }
        rules
    }

    async fn services(&self, names: &[&str]) -> Vec<aws_sdk_ecs::types::Service> {
        let out = self
            .clients
            .ecs
            .describe_services()
            .cluster(CLUSTER)
            .set_services(Some(names.iter().map(|s| s.to_string()).collect()))
            .send()
            .await
            .unwrap();
        out.services().to_vec()
    }

    async fn active_services(&self) -> BTreeSet<String> {
        let out = self
            .clients
            .ecs
            .list_services()
            .cluster(CLUSTER)
            .send()
            .await
            .unwrap();
        let arns = out.service_arns().to_vec();
        if arns.is_empty() {
            return BTreeSet::new();
        }
        let d = self
            .clients
            .ecs
            .describe_services()
            .cluster(CLUSTER)
            .set_services(Some(arns))
            .send()
            .await
            .unwrap();
        d.services()
            .iter()
            .filter(|s| s.status() == Some("ACTIVE"))
            .map(|s| s.service_name().unwrap().to_owned())
            .collect()
    }

    async fn records(&self) -> Vec<aws_sdk_route53::types::ResourceRecordSet> {
        let out = self
            .clients
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(&self.zone_id)
            .send()
            .await
            .unwrap();
        out.resource_record_sets().to_vec()
    }
}

fn ports(p: &IpPermission) -> (String, i32, i32) {
    (
        p.ip_protocol().unwrap_or_default().to_owned(),
        p.from_port().unwrap_or(-1),
        p.to_port().unwrap_or(-1),
    )
}

fn peers(p: &IpPermission) -> Vec<String> {
    p.ip_ranges()
        .iter()
        .filter_map(|r| r.cidr_ip().map(str::to_owned))
        .chain(
            p.user_id_group_pairs()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_owned)),
        )
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_builds_the_whole_platform_as_the_seed_describes_and_destroy_removes_it() {
    let p = provisioned().await;

    // Security groups, exactly the seed's table.
    let sgs = p.security_groups().await;
    let id = |n: &str| sgs[n].group_id().unwrap().to_owned();
    assert_eq!(
        sgs.keys().cloned().collect::<Vec<_>>(),
        [
            "dev-task-manager-alb-sg",
            "dev-task-manager-backend-api-sg",
            "dev-task-manager-backend-worker-sg",
            "dev-task-manager-frontend-sg",
        ]
    );
    let alb = &sgs["dev-task-manager-alb-sg"];
    let mut alb_in: Vec<_> = alb
        .ip_permissions()
        .iter()
        .map(|p| (ports(p), peers(p)))
        .collect();
    alb_in.sort();
    assert_eq!(
        alb_in,
        [
            (("tcp".into(), 80, 80), vec!["0.0.0.0/0".to_string()]),
            (("tcp".into(), 443, 443), vec!["0.0.0.0/0".to_string()]),
        ]
    );
    let mut alb_out: Vec<_> = alb
        .ip_permissions_egress()
        .iter()
        .map(|p| (ports(p), peers(p)))
        .collect();
    alb_out.sort();
    assert_eq!(
        alb_out,
        [
            (
                ("tcp".into(), 3000, 3000),
                vec![id("dev-task-manager-frontend-sg")]
            ),
            (
                ("tcp".into(), 3001, 3001),
                vec![id("dev-task-manager-backend-api-sg")]
            ),
        ],
        "the load balancer may only reach the services"
    );
    let api_in: Vec<_> = sgs["dev-task-manager-backend-api-sg"]
        .ip_permissions()
        .iter()
        .map(|p| (ports(p), peers(p)))
        .collect();
    assert_eq!(
        api_in,
        [(
            ("tcp".into(), 3001, 3001),
            vec![id("dev-task-manager-alb-sg")]
        )]
    );
    let web_in: Vec<_> = sgs["dev-task-manager-frontend-sg"]
        .ip_permissions()
        .iter()
        .map(|p| (ports(p), peers(p)))
        .collect();
    assert_eq!(
        web_in,
        [(
            ("tcp".into(), 3000, 3000),
            vec![id("dev-task-manager-alb-sg")]
        )]
    );
    assert!(
        sgs["dev-task-manager-backend-worker-sg"]
            .ip_permissions()
            .is_empty(),
        "the worker has no ingress at all"
    );
    for s in [
        "dev-task-manager-backend-api-sg",
        "dev-task-manager-backend-worker-sg",
        "dev-task-manager-frontend-sg",
    ] {
        let out: Vec<_> = sgs[s]
            .ip_permissions_egress()
            .iter()
            .map(|p| (ports(p), peers(p)))
            .collect();
        assert_eq!(
            out,
            [(("-1".into(), -1, -1), vec!["0.0.0.0/0".to_string()])],
            "{s} egress"
        );
    }

    // Network: 2 public + 2 private subnets in 2 AZs, a NAT gateway per AZ, the IGW attached.
    let vpc = p.vpc_id().await;
    let subnets = p
        .clients
        .ec2
        .describe_subnets()
        .filters(Filter::builder().name("vpc-id").values(&vpc).build())
        .send()
        .await
        .unwrap();
    let mut cidrs: Vec<(String, String, bool)> = subnets
        .subnets()
        .iter()
        .map(|s| {
            (
                s.cidr_block().unwrap().to_owned(),
                s.availability_zone().unwrap().to_owned(),
                s.map_public_ip_on_launch().unwrap_or(false),
            )
        })
        .collect();
    cidrs.sort();
    assert_eq!(
        cidrs,
        [
            ("10.0.1.0/24".to_string(), "us-east-1a".to_string(), true),
            ("10.0.11.0/24".into(), "us-east-1a".into(), false),
            ("10.0.12.0/24".into(), "us-east-1b".into(), false),
            ("10.0.2.0/24".into(), "us-east-1b".into(), true),
        ]
    );
    let nats = p
        .clients
        .ec2
        .describe_nat_gateways()
        .filter(Filter::builder().name("vpc-id").values(&vpc).build())
        .send()
        .await
        .unwrap();
    let live_nats: Vec<_> = nats
        .nat_gateways()
        .iter()
        .filter(|n| n.state().map(|s| s.as_str()) == Some("available"))
        .collect();
    assert_eq!(live_nats.len(), 2, "one NAT gateway per AZ");
    let igws = p
        .clients
        .ec2
        .describe_internet_gateways()
        .filters(
            Filter::builder()
                .name("attachment.vpc-id")
                .values(&vpc)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(igws.internet_gateways().len(), 1);
    let private_subnets: BTreeSet<String> = subnets
        .subnets()
        .iter()
        .filter(|s| !s.map_public_ip_on_launch().unwrap_or(false))
        .map(|s| s.subnet_id().unwrap().to_owned())
        .collect();

    // Listener rules: host + /api/* → backend, host → frontend, the seed's priorities.
    let rules = p.rules().await;
    let expect = |host: &str, paths: &[&str], tg: &str| {
        (
            host.to_string(),
            paths.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            tg.to_string(),
        )
    };
    assert_eq!(
        rules,
        BTreeMap::from([
            (
                10,
                expect(
                    "freeinterestcal.com",
                    &["/api/*"],
                    &tg_name("global-backend-api")
                )
            ),
            (
                11,
                expect("freeinterestcal.com", &[], &tg_name("global-frontend"))
            ),
            (
                20,
                expect(
                    "customer1.freeinterestcal.com",
                    &["/api/*"],
                    &tg_name("customer1-backend-api")
                )
            ),
            (
                21,
                expect(
                    "customer1.freeinterestcal.com",
                    &[],
                    &tg_name("customer1-frontend")
                )
            ),
        ])
    );

    // Target groups: ports, IP targets, health checks.
    let tgs = p
        .clients
        .elbv2
        .describe_target_groups()
        .names(tg_name("customer1-backend-api"))
        .names(tg_name("customer1-frontend"))
        .send()
        .await
        .unwrap();
    let tg: BTreeMap<&str, (i32, &str, &str)> = tgs
        .target_groups()
        .iter()
        .map(|t| {
            (
                t.target_group_name().unwrap(),
                (
                    t.port().unwrap(),
                    t.health_check_path().unwrap(),
                    t.target_type().unwrap().as_str(),
                ),
            )
        })
        .collect();
    assert_eq!(
        tg[tg_name("customer1-backend-api").as_str()],
        (3001, "/health", "ip")
    );
    assert_eq!(
        tg[tg_name("customer1-frontend").as_str()],
        (3000, "/", "ip")
    );

    // The HTTPS listener uses the issued wildcard certificate; HTTP redirects to HTTPS.
    let https = p.https_listener().await;
    let cert_arn = https.certificates()[0]
        .certificate_arn()
        .unwrap()
        .to_owned();
    let cert = p
        .clients
        .acm
        .describe_certificate()
        .certificate_arn(&cert_arn)
        .send()
        .await
        .unwrap();
    let cert = cert.certificate().unwrap();
    assert_eq!(cert.domain_name(), Some("*.freeinterestcal.com"));
    assert!(
        cert.subject_alternative_names()
            .contains(&"freeinterestcal.com".to_string())
    );
    assert_eq!(cert.status().map(|s| s.as_str()), Some("ISSUED"));

    // DNS: the certificate's validation record and an alias per customer to the load balancer.
    let records = p.records().await;
    let validation = cert.domain_validation_options()[0]
        .resource_record()
        .unwrap();
    assert!(
        records.iter().any(|r| r.name() == validation.name()
            && r.r#type().as_str() == "CNAME"
            && r.resource_records()[0].value() == validation.value()),
        "validation CNAME in the zone"
    );
    let lbs = p
        .clients
        .elbv2
        .describe_load_balancers()
        .names("dev-task-manager-alb")
        .send()
        .await
        .unwrap();
    let alb_dns = lbs.load_balancers()[0]
        .dns_name()
        .unwrap()
        .to_ascii_lowercase();
    for domain in ["freeinterestcal.com.", "customer1.freeinterestcal.com."] {
        let r = records
            .iter()
            .find(|r| r.name() == domain && r.r#type().as_str() == "A")
            .unwrap_or_else(|| panic!("no A record for {domain}"));
        let alias = r.alias_target().expect("alias record");
        assert_eq!(
            alias.dns_name().trim_end_matches('.').to_ascii_lowercase(),
            alb_dns.trim_end_matches('.')
        );
    }

    // Services: private subnets, no public IP, their own security group, load balancer or none.
    let svcs = p
        .services(&[
            "customer1-backend-api",
            "customer1-backend-worker",
            "customer1-frontend",
        ])
        .await;
    assert_eq!(svcs.len(), 3);
    for s in &svcs {
        let name = s.service_name().unwrap();
        let net = s
            .network_configuration()
            .unwrap()
            .awsvpc_configuration()
            .unwrap();
        assert_eq!(
            net.subnets().iter().cloned().collect::<BTreeSet<_>>(),
            private_subnets,
            "{name}"
        );
        assert_eq!(
            net.assign_public_ip().map(|a| a.as_str()),
            Some("DISABLED"),
            "{name}"
        );
        let service = name.trim_start_matches("customer1-");
        assert_eq!(
            net.security_groups(),
            [id(&format!("dev-task-manager-{service}-sg"))],
            "{name}"
        );
        assert_eq!(s.launch_type().map(|l| l.as_str()), Some("FARGATE"));
        let lbs: Vec<(String, i32)> = s
            .load_balancers()
            .iter()
            .map(|l| {
                (
                    l.container_name().unwrap().to_owned(),
                    l.container_port().unwrap(),
                )
            })
            .collect();
        match service {
            "backend-api" => {
                assert_eq!(lbs, [("backend-api".to_string(), 3001)]);
                assert_eq!(s.desired_count(), 2);
            }
            "frontend" => {
                assert_eq!(lbs, [("frontend".to_string(), 3000)]);
                assert_eq!(s.desired_count(), 2);
            }
            "backend-worker" => {
                assert!(lbs.is_empty(), "the worker has no load balancer");
                assert_eq!(s.desired_count(), 1);
            }
            other => panic!("unexpected {other}"),
        }
        // Task definitions: Fargate, awsvpc, awslogs to the customer's group, customer env.
        let td = p
            .clients
            .ecs
            .describe_task_definition()
            .task_definition(s.task_definition().unwrap())
            .send()
            .await
            .unwrap();
        let td = td.task_definition().unwrap();
        assert_eq!((td.cpu(), td.memory()), (Some("256"), Some("512")));
        assert_eq!(td.network_mode().map(|m| m.as_str()), Some("awsvpc"));
        let c = &td.container_definitions()[0];
        assert!(
            c.image()
                .unwrap()
                .ends_with(&format!("/dev-task-manager:{service}-latest")),
            "{:?}",
            c.image()
        );
        let log = c.log_configuration().unwrap();
        assert_eq!(log.log_driver().as_str(), "awslogs");
        assert_eq!(
            log.options().unwrap()["awslogs-group"],
            format!("/ecs/dev-task-manager/customer1-{service}")
        );
        let env: BTreeMap<&str, &str> = c
            .environment()
            .iter()
            .map(|e| (e.name().unwrap(), e.value().unwrap()))
            .collect();
        assert_eq!(env["CUSTOMER_DOMAIN"], "customer1.freeinterestcal.com");
        assert_eq!(env["INSTANCE_DISPLAY_NAME"], "Customer 1");
        let ports: Vec<i32> = c
            .port_mappings()
            .iter()
            .filter_map(|m| m.container_port())
            .collect();
        match service {
            "backend-api" => assert_eq!(ports, [3001]),
            "frontend" => assert_eq!(ports, [3000]),
            _ => assert!(ports.is_empty()),
        }
    }
    let roles = p
        .clients
        .iam
        .get_role()
        .role_name("dev-task-manager-task-execution-role")
        .send()
        .await
        .unwrap();
    // The trust policy (URL-encoded by IAM) names ECS tasks as its only principal.
    let trust = roles.role().unwrap().assume_role_policy_document().unwrap();
    assert!(trust.contains("ecs-tasks.amazonaws.com"), "{trust}");
    assert_eq!(trust.matches("amazonaws.com").count(), 1, "{trust}");
    let attached = p
        .clients
        .iam
        .list_attached_role_policies()
        .role_name("dev-task-manager-task-execution-role")
        .send()
        .await
        .unwrap();
    assert_eq!(
        attached
            .attached_policies()
            .iter()
            .map(|a| a.policy_arn().unwrap())
            .collect::<Vec<_>>(),
        ["arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"]
    );
    let logs = p
        .clients
        .logs
        .describe_log_groups()
        .log_group_name_prefix("/ecs/")
        .send()
        .await
        .unwrap();
    assert_eq!(logs.log_groups().len(), 9);
    assert!(
        logs.log_groups()
            .iter()
            .all(|g| g.retention_in_days() == Some(30))
    );

    // The state file is private.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&p.project.state)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // A second provision changes nothing; plan --detailed-exitcode says so with 0.
    let again = run_ok(&mut p.dagform(&["provision", "--yes"]));
    assert!(again.contains("No changes"), "{again}");
    let status = run(&mut p.dagform(&["plan", "--detailed-exitcode"])).status;
    assert_eq!(status.code(), Some(0));

    // Destroy leaves nothing tagged with the stack.
    run_ok(&mut p.dagform(&["destroy", "--yes"]));
    let vpcs = p
        .clients
        .ec2
        .describe_vpcs()
        .filters(
            Filter::builder()
                .name("tag:dagform:stack")
                .values("dev-task-manager")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(vpcs.vpcs().is_empty(), "VPC left behind");
    let eips = p.clients.ec2.describe_addresses().send().await.unwrap();
    assert!(eips.addresses().is_empty(), "Elastic IPs left behind");
    let nats = p.clients.ec2.describe_nat_gateways().send().await.unwrap();
    assert!(
        nats.nat_gateways()
            .iter()
            .all(|n| n.state().map(|s| s.as_str()) == Some("deleted"))
    );
    assert!(
        p.clients
            .elbv2
            .describe_load_balancers()
            .send()
            .await
            .unwrap()
            .load_balancers()
            .is_empty()
    );
    assert!(
        p.clients
            .elbv2
            .describe_target_groups()
            .send()
            .await
            .unwrap()
            .target_groups()
            .is_empty()
    );
    assert!(p.active_services().await.is_empty());
    let clusters = p
        .clients
        .ecs
        .describe_clusters()
        .clusters(CLUSTER)
        .send()
        .await
        .unwrap();
    assert!(
        clusters
            .clusters()
            .iter()
            .all(|c| c.status() == Some("INACTIVE"))
    );
    assert!(
        p.clients
            .logs
            .describe_log_groups()
            .send()
            .await
            .unwrap()
            .log_groups()
            .is_empty()
    );
    assert!(
        p.clients
            .iam
            .list_roles()
            .send()
            .await
            .unwrap()
            .roles()
            .iter()
            .all(|r| !r.role_name().starts_with("dev-task-manager"))
    );
    assert!(
        p.clients
            .ecr
            .describe_repositories()
            .send()
            .await
            .unwrap()
            .repositories()
            .is_empty()
    );
    assert!(
        p.clients
            .acm
            .list_certificates()
            .send()
            .await
            .unwrap()
            .certificate_summary_list()
            .is_empty()
    );
    let left: Vec<String> = p
        .records()
        .await
        .iter()
        .map(|r| r.r#type().as_str().to_owned())
        .collect();
    assert_eq!(
        left.iter().filter(|t| *t != "NS" && *t != "SOA").count(),
        0,
        "records left: {left:?}"
    );
    let active_tds = p
        .clients
        .ecs
        .list_task_definitions()
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .send()
        .await
        .unwrap();
    assert!(active_tds.task_definition_arns().is_empty());
    assert_eq!(p.project.state_json()["resources"], serde_json::json!({}));
}

fn planned(plan: &Json) -> BTreeMap<String, String> {
    plan["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap().to_owned(),
                r["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn customers_come_and_go_without_touching_anyone_else() {
    let p = provisioned().await;
    let base = p.project.config_text();

    // Adding customer2: the plan is exactly customer2's nodes, all creates.
    p.project.write_config(&format!("{base}\n[customers.customer2]\ndomain = \"customer2.freeinterestcal.com\"\ndisplay_name = \"Customer 2\"\n"));
    let plan = planned(&p.plan_json());
    assert_eq!(plan.len(), 33, "{plan:#?}");
    assert!(
        plan.iter()
            .all(|(a, act)| a.starts_with("customer.customer2.") && act == "create"),
        "{plan:#?}"
    );
    run_ok(&mut p.dagform(&["provision", "--yes"]));
    let rules = p.rules().await;
    assert_eq!(
        rules.keys().copied().collect::<Vec<_>>(),
        [10, 11, 20, 21, 30, 31]
    );
    assert_eq!(rules[&30].0, "customer2.freeinterestcal.com");
    assert!(
        p.active_services()
            .await
            .contains("customer2-backend-worker")
    );

    // Removing customer1: exactly its nodes are deleted; nobody else's rules move.
    let without = p.project.config_text().replace(
        "[customers.customer1]\ndomain = \"customer1.freeinterestcal.com\"\ndisplay_name = \"Customer 1\"\n", "");
    p.project.write_config(&without);
    let plan = planned(&p.plan_json());
    assert_eq!(plan.len(), 33, "{plan:#?}");
    assert!(
        plan.iter()
            .all(|(a, act)| a.starts_with("customer.customer1.") && act == "delete"),
        "{plan:#?}"
    );
    run_ok(&mut p.dagform(&["provision", "--yes"]));
    let rules = p.rules().await;
    assert_eq!(
        rules.keys().copied().collect::<Vec<_>>(),
        [10, 11, 30, 31],
        "customer2 keeps 30/31"
    );
    let services = p.active_services().await;
    assert!(
        !services.iter().any(|s| s.starts_with("customer1-")),
        "{services:?}"
    );
    assert_eq!(services.len(), 6);
    let tgs = p
        .clients
        .elbv2
        .describe_target_groups()
        .send()
        .await
        .unwrap();
    assert!(
        !tgs.target_groups()
            .iter()
            .any(|t| t.target_group_name().unwrap().contains("customer1"))
    );
    assert!(
        !p.records()
            .await
            .iter()
            .any(|r| r.name().starts_with("customer1."))
    );
    let logs = p
        .clients
        .logs
        .describe_log_groups()
        .log_group_name_prefix("/ecs/dev-task-manager/customer1-")
        .send()
        .await
        .unwrap();
    assert!(logs.log_groups().is_empty());
    let again = run_ok(&mut p.dagform(&["plan"]));
    assert!(again.contains("No changes"), "{again}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_change_registers_a_revision_and_updates_the_service_in_place() {
    let p = provisioned().await;
    let before = p.services(&["global-frontend"]).await[0]
        .task_definition()
        .unwrap()
        .to_owned();
    let changed = p
        .project
        .config_text()
        .replace(
            "image_tag = \"frontend-latest\"",
            "image_tag = \"frontend-v2\"",
        )
        .replace(
            "port = 3000\nhealth_check_path = \"/\"\ncpu = 256\nmemory = 512\ndesired_count = 2",
            "port = 3000\nhealth_check_path = \"/\"\ncpu = 256\nmemory = 512\ndesired_count = 3",
        );
    p.project.write_config(&changed);
    let text = run_ok(&mut p.dagform(&["plan"]));
    assert!(text.contains("frontend-v2"), "{text}");
    let plan = planned(&p.plan_json());
    let expected: BTreeMap<String, String> = ["global", "customer1"]
        .iter()
        .flat_map(|c| {
            [
                (
                    format!("customer.{c}.task_definition.frontend"),
                    "replace".to_string(),
                ),
                (
                    format!("customer.{c}.service.frontend"),
                    "update".to_string(),
                ),
            ]
        })
        .collect();
    assert_eq!(plan, expected);
    run_ok(&mut p.dagform(&["provision", "--yes"]));
    let svc = &p.services(&["global-frontend"]).await[0];
    let after = svc.task_definition().unwrap();
    assert_ne!(after, before);
    // The frontend scales: its desired count is where scaling started, not reset by a deploy.
    assert_eq!(svc.desired_count(), 2, "desired count left to auto scaling");
    let td = p
        .clients
        .ecs
        .describe_task_definition()
        .task_definition(after)
        .send()
        .await
        .unwrap();
    assert!(
        td.task_definition().unwrap().container_definitions()[0]
            .image()
            .unwrap()
            .ends_with(":frontend-v2")
    );
    let old = p
        .clients
        .ecs
        .describe_task_definition()
        .task_definition(&before)
        .send()
        .await
        .unwrap();
    assert_eq!(
        old.task_definition().unwrap().status().map(|s| s.as_str()),
        Some("INACTIVE"),
        "old revision deregistered"
    );
    assert_eq!(
        p.active_services().await.len(),
        6,
        "services updated, not recreated"
    );
    let again = run_ok(&mut p.dagform(&["plan"]));
    assert!(again.contains("No changes"), "{again}");
}
