//! ECS clusters, services and task definitions and IAM roles touch only what their stack owns:
//! another stack's object (or a hand-made one) under the wanted name is refused and left as it
//! was, and what an unfinished create left behind is found again and finished. Verified by
//! reading AWS back from the emulator.

mod support;

use aws_sdk_ecs::types::{ClusterField, ContainerDefinition, ServiceField, TaskDefinitionStatus};
use dagform_aws::AwsClients;
use dagform_core::plan::unmatched_properties;
use dagform_core::{OpContext, Properties, ResourceError};
use serde_json::json;
use support::{current, kind, op_context, props, setup};

const EXECUTION_POLICY: &str =
    "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";
const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";

/// The same node in another environment of the app, in the same account.
fn prod(address: &str) -> OpContext {
    let mut ctx = op_context(address);
    ctx.stack = "prod-app".into();
    ctx
}

#[track_caller]
fn assert_not_owned<T: std::fmt::Debug>(result: Result<T, ResourceError>, whose: &str) {
    match result {
        Err(ResourceError::NotOwned(message)) => {
            assert!(message.contains(whose), "{message}")
        }
        other => panic!("expected NotOwned naming {whose}, got {other:?}"),
    }
}

const NOBODY: &str = "is not managed by dagform";

fn ecs_tags(ctx: &OpContext) -> Vec<aws_sdk_ecs::types::Tag> {
    ctx.tag_pairs()
        .iter()
        .map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(*k).value(v).build())
        .collect()
}

fn iam_tags(ctx: &OpContext) -> Vec<aws_sdk_iam::types::Tag> {
    ctx.tag_pairs()
        .iter()
        .map(|(k, v)| {
            aws_sdk_iam::types::Tag::builder()
                .key(*k)
                .value(v)
                .build()
                .unwrap()
        })
        .collect()
}

fn stack_tag<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<&'a str> {
    tags.into_iter()
        .find(|(k, _)| *k == "dagform:stack")
        .map(|(_, v)| v)
}

async fn describe_cluster(clients: &AwsClients, name: &str) -> aws_sdk_ecs::types::Cluster {
    clients
        .ecs
        .describe_clusters()
        .clusters(name)
        .include(ClusterField::Settings)
        .include(ClusterField::Tags)
        .send()
        .await
        .unwrap()
        .clusters()[0]
        .clone()
}

fn insights(cluster: &aws_sdk_ecs::types::Cluster) -> Option<&str> {
    cluster
        .settings()
        .iter()
        .find(|s| s.name().map(|n| n.as_str()) == Some("containerInsights"))
        .and_then(|s| s.value())
}

fn cluster_stack(cluster: &aws_sdk_ecs::types::Cluster) -> Option<&str> {
    stack_tag(
        cluster
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn ecs_cluster_of_another_stack_or_of_nobody_is_refused() {
    let (_emu, clients, kinds) = setup().await;
    let cluster = kind(&kinds, "aws_ecs_cluster");
    let theirs = cluster
        .create(
            &prod("shared.cluster"),
            &props(json!({ "name": "app", "container_insights": true })),
        )
        .await
        .unwrap();

    let ctx = op_context("shared.cluster");
    let ours = props(json!({ "name": "app", "container_insights": false }));
    assert_not_owned(cluster.create(&ctx, &ours).await, "prod-app");
    assert_not_owned(cluster.find(&ctx, &ours).await, "prod-app");
    let recorded = current(&theirs.id, &ours, &theirs.outputs);
    assert_not_owned(
        cluster
            .update(&ctx, recorded, &ours, &["container_insights".to_string()])
            .await,
        "prod-app",
    );
    assert_not_owned(cluster.delete(&ctx, recorded).await, "prod-app");
    let live = describe_cluster(&clients, "app").await;
    assert_eq!(live.status(), Some("ACTIVE"));
    assert_eq!(live.cluster_arn(), Some(theirs.id.as_str()));
    assert_eq!(cluster_stack(&live), Some("prod-app"));
    assert_eq!(insights(&live), Some("enabled"));

    // A cluster made by hand under the name is nobody's to adopt either.
    clients
        .ecs
        .create_cluster()
        .cluster_name("hand-made")
        .send()
        .await
        .unwrap();
    let hand_made = props(json!({ "name": "hand-made", "container_insights": true }));
    assert_not_owned(cluster.create(&ctx, &hand_made).await, NOBODY);
    assert_not_owned(cluster.find(&ctx, &hand_made).await, NOBODY);
    let live = describe_cluster(&clients, "hand-made").await;
    assert!(live.tags().is_empty(), "{:?}", live.tags());
    assert_ne!(insights(&live), Some("enabled"));
}

#[tokio::test(flavor = "multi_thread")]
async fn ecs_cluster_is_found_again_and_adopted_by_name() {
    let (_emu, clients, kinds) = setup().await;
    let cluster = kind(&kinds, "aws_ecs_cluster");
    let ctx = op_context("shared.cluster");
    let desired = props(json!({ "name": "dev-app", "container_insights": false }));
    let applied = cluster.create(&ctx, &desired).await.unwrap();

    assert_eq!(
        cluster.find(&ctx, &desired).await.unwrap().unwrap().id,
        applied.id
    );
    let mut replacing = ctx.clone();
    replacing.superseded = vec![applied.id.clone()];
    assert!(cluster.find(&replacing, &desired).await.unwrap().is_none());

    // Creating it again (its record lost) adopts the same cluster and brings it to the
    // configuration instead of making a second one.
    let insights_on = props(json!({ "name": "dev-app", "container_insights": true }));
    let again = cluster.create(&ctx, &insights_on).await.unwrap();
    assert_eq!(again.id, applied.id);
    let live = describe_cluster(&clients, "dev-app").await;
    assert_eq!(insights(&live), Some("enabled"));
    assert_eq!(cluster_stack(&live), Some("test"));
}

fn role_props(name: &str, managed: &[&str]) -> Properties {
    props(json!({
        "name": name,
        "description": "runs the api tasks",
        "trusted_service": "ecs-tasks.amazonaws.com",
        "managed_policy_arns": managed,
        "inline_policies": {
            "write-logs": {
                "Version": "2012-10-17",
                "Statement": [{ "Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*" }]
            }
        },
    }))
}

async fn attached(clients: &AwsClients, role: &str) -> Vec<String> {
    let out = clients
        .iam
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap();
    out.attached_policies()
        .iter()
        .map(|p| p.policy_arn().unwrap().to_owned())
        .collect()
}

async fn inline_names(clients: &AwsClients, role: &str) -> Vec<String> {
    let out = clients
        .iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap();
    out.policy_names().to_vec()
}

async fn get_role(clients: &AwsClients, name: &str) -> aws_sdk_iam::types::Role {
    clients
        .iam
        .get_role()
        .role_name(name)
        .send()
        .await
        .unwrap()
        .role()
        .unwrap()
        .clone()
}

fn trust_policy(service: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": service },
            "Action": "sts:AssumeRole",
        }]
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_role_of_another_stack_or_of_nobody_is_refused() {
    let (_emu, clients, kinds) = setup().await;
    let role = kind(&kinds, "aws_iam_role");
    let address = "customer.acme.role.execution";
    let theirs = role
        .create(
            &prod(address),
            &role_props("acme-execution", &[EXECUTION_POLICY]),
        )
        .await
        .unwrap();
    let trust_before = get_role(&clients, "acme-execution")
        .await
        .assume_role_policy_document()
        .map(str::to_owned);

    let ctx = op_context(address);
    let mut ours = role_props("acme-execution", &[READ_ONLY]);
    ours.insert("trusted_service".into(), json!("ec2.amazonaws.com"));
    ours.insert("inline_policies".into(), json!({}));
    assert_not_owned(role.create(&ctx, &ours).await, "prod-app");
    assert_not_owned(role.find(&ctx, &ours).await, "prod-app");
    let recorded = current(&theirs.id, &ours, &theirs.outputs);
    let changed: Vec<String> = ["trusted_service", "managed_policy_arns", "inline_policies"]
        .map(String::from)
        .to_vec();
    assert_not_owned(
        role.update(&ctx, recorded, &ours, &changed).await,
        "prod-app",
    );
    assert_not_owned(role.delete(&ctx, recorded).await, "prod-app");

    let live = get_role(&clients, "acme-execution").await;
    assert_eq!(
        stack_tag(live.tags().iter().map(|t| (t.key(), t.value()))),
        Some("prod-app")
    );
    assert_eq!(
        live.assume_role_policy_document().map(str::to_owned),
        trust_before
    );
    assert_eq!(
        attached(&clients, "acme-execution").await,
        [EXECUTION_POLICY]
    );
    assert_eq!(
        inline_names(&clients, "acme-execution").await,
        ["write-logs"]
    );

    // A role made by hand under the name is refused the same way, and left bare.
    clients
        .iam
        .create_role()
        .role_name("hand-made")
        .assume_role_policy_document(trust_policy("ecs-tasks.amazonaws.com"))
        .send()
        .await
        .unwrap();
    let hand_made = role_props("hand-made", &[EXECUTION_POLICY]);
    assert_not_owned(role.create(&ctx, &hand_made).await, NOBODY);
    assert_not_owned(role.find(&ctx, &hand_made).await, NOBODY);
    assert!(get_role(&clients, "hand-made").await.tags().is_empty());
    assert!(attached(&clients, "hand-made").await.is_empty());
    assert!(inline_names(&clients, "hand-made").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_role_half_created_is_found_and_finished() {
    let (_emu, clients, kinds) = setup().await;
    let role = kind(&kinds, "aws_iam_role");
    let ctx = op_context("customer.acme.role.execution");
    let desired = role_props("acme-execution", &[EXECUTION_POLICY]);

    // A create killed right after CreateRole: tagged as ours, no description, no policies.
    clients
        .iam
        .create_role()
        .role_name("acme-execution")
        .assume_role_policy_document(trust_policy("ecs-tasks.amazonaws.com"))
        .set_tags(Some(iam_tags(&ctx)))
        .send()
        .await
        .unwrap();
    let found = role.find(&ctx, &desired).await.unwrap().unwrap();
    assert_eq!(found.id, "acme-execution");
    let mut replacing = ctx.clone();
    replacing.superseded = vec![found.id.clone()];
    assert!(role.find(&replacing, &desired).await.unwrap().is_none());

    // `read` shows what the create left out, so the reconciler updates exactly that.
    let as_wanted = current(&found.id, &desired, &found.outputs);
    let observed = role.read(&ctx, as_wanted).await.unwrap().unwrap();
    let mut unmatched = unmatched_properties(&desired, &observed.properties, &[]);
    unmatched.sort();
    assert_eq!(
        unmatched,
        ["description", "inline_policies", "managed_policy_arns"]
    );
    role.update(&ctx, as_wanted, &desired, &unmatched)
        .await
        .unwrap();
    assert_eq!(
        attached(&clients, "acme-execution").await,
        [EXECUTION_POLICY]
    );
    assert_eq!(
        inline_names(&clients, "acme-execution").await,
        ["write-logs"]
    );
    let observed = role.read(&ctx, as_wanted).await.unwrap().unwrap();
    assert_eq!(observed.properties, desired);

    // A create that meets its own half-made role (its record lost) finishes it too.
    let worker = op_context("customer.acme.role.worker");
    clients
        .iam
        .create_role()
        .role_name("acme-worker")
        .assume_role_policy_document(trust_policy("ec2.amazonaws.com"))
        .set_tags(Some(iam_tags(&worker)))
        .send()
        .await
        .unwrap();
    let worker_props = role_props("acme-worker", &[READ_ONLY]);
    let applied = role.create(&worker, &worker_props).await.unwrap();
    assert_eq!(applied.id, "acme-worker");
    assert_eq!(attached(&clients, "acme-worker").await, [READ_ONLY]);
    let cur = current(&applied.id, &worker_props, &applied.outputs);
    assert_eq!(
        role.read(&worker, cur).await.unwrap().unwrap().properties,
        worker_props
    );
}

fn task_definition_props(family: &str, image: &str) -> Properties {
    props(json!({
        "family": family,
        "cpu": "256",
        "memory": "512",
        "network_mode": "awsvpc",
        "requires_compatibilities": ["FARGATE"],
        "execution_role_arn": "arn:aws:iam::123456789012:role/api-execution",
        "containers": [{
            "name": "api",
            "image": image,
            "essential": true,
            "port_mappings": [{ "container_port": 8080, "protocol": "tcp" }],
            "environment": {},
            "secrets": {},
            "log": { "group": "/ecs/api", "region": "us-east-1", "stream_prefix": "api" },
        }],
    }))
}

/// Registers a revision directly, as another tool (or an unfinished create) would.
async fn register(
    clients: &AwsClients,
    family: &str,
    tags: Vec<aws_sdk_ecs::types::Tag>,
) -> String {
    let container = ContainerDefinition::builder()
        .name("api")
        .image("nginx:1.27")
        .memory(512)
        .build();
    clients
        .ecs
        .register_task_definition()
        .family(family)
        .container_definitions(container)
        .set_tags(Some(tags).filter(|t| !t.is_empty()))
        .send()
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_owned()
}

async fn active_revisions(clients: &AwsClients, family: &str) -> Vec<String> {
    let mut arns = clients
        .ecs
        .list_task_definitions()
        .family_prefix(family)
        .status(TaskDefinitionStatus::Active)
        .send()
        .await
        .unwrap()
        .task_definition_arns()
        .to_vec();
    arns.sort();
    arns
}

#[tokio::test(flavor = "multi_thread")]
async fn task_definition_family_of_another_stack_or_of_nobody_is_refused() {
    let (_emu, clients, kinds) = setup().await;
    let td = kind(&kinds, "aws_ecs_task_definition");
    let address = "customer.acme.task_definition.api";
    let theirs = td
        .create(&prod(address), &task_definition_props("api", "nginx:1.27"))
        .await
        .unwrap();

    let ctx = op_context(address);
    let ours = task_definition_props("api", "nginx:1.28");
    assert_not_owned(td.create(&ctx, &ours).await, "prod-app");
    assert_not_owned(td.find(&ctx, &ours).await, "prod-app");
    let recorded = current(&theirs.id, &ours, &theirs.outputs);
    assert_not_owned(td.delete(&ctx, recorded).await, "prod-app");
    assert_eq!(
        active_revisions(&clients, "api").await,
        std::slice::from_ref(&theirs.id)
    );

    // A hand-made family is refused too: a new revision would become its latest.
    let hand_made = register(&clients, "hand-made", Vec::new()).await;
    let mine = task_definition_props("hand-made", "nginx:1.28");
    assert_not_owned(td.create(&ctx, &mine).await, NOBODY);
    assert_not_owned(td.find(&ctx, &mine).await, NOBODY);
    assert_eq!(active_revisions(&clients, "hand-made").await, [hand_made]);
}

#[tokio::test(flavor = "multi_thread")]
async fn task_definition_revisions_are_found_again_and_leftovers_deregistered() {
    let (_emu, clients, kinds) = setup().await;
    let td = kind(&kinds, "aws_ecs_task_definition");
    let ctx = op_context("customer.acme.task_definition.api");
    let desired = task_definition_props("dev-api", "nginx:1.27");

    // Registered, but the run died before its ARN reached the state.
    let first = td.create(&ctx, &desired).await.unwrap();
    assert_eq!(td.find(&ctx, &desired).await.unwrap().unwrap().id, first.id);
    // The re-run registered another before dying again: the newest is the one to adopt.
    let second = td
        .create(&ctx, &task_definition_props("dev-api", "nginx:1.28"))
        .await
        .unwrap();
    assert_eq!(
        td.find(&ctx, &desired).await.unwrap().unwrap().id,
        second.id
    );
    // Replacing a recorded revision: neither it nor anything older is what this create made.
    let mut replacing = ctx.clone();
    replacing.superseded = vec![first.id.clone()];
    assert_eq!(
        td.find(&replacing, &desired).await.unwrap().unwrap().id,
        second.id
    );
    replacing.superseded = vec![second.id.clone()];
    assert!(td.find(&replacing, &desired).await.unwrap().is_none());

    // The family also holds another stack's revision and a hand-made one (only possible
    // behind dagform's back: it refuses to register in such a family), then our live one.
    let hand_made = register(&clients, "dev-api", Vec::new()).await;
    let theirs = register(&clients, "dev-api", ecs_tags(&prod(ctx.address.as_str()))).await;
    let live = register(&clients, "dev-api", ecs_tags(&ctx)).await;
    assert_eq!(td.find(&ctx, &desired).await.unwrap().unwrap().id, live);
    assert_not_owned(td.create(&ctx, &desired).await, "prod-app");

    // Deleting the live revision takes our leftovers with it, and nothing of anyone else's.
    let outputs = Default::default();
    td.delete(&ctx, current(&live, &desired, &outputs))
        .await
        .unwrap();
    let mut left = vec![theirs, hand_made];
    left.sort();
    assert_eq!(active_revisions(&clients, "dev-api").await, left);
    assert!(
        td.read(&ctx, current(&first.id, &desired, &first.outputs))
            .await
            .unwrap()
            .is_none()
    );
}

/// A subnet and a security group for awsvpc tasks, a cluster and a task definition.
struct Placement {
    subnet: String,
    security_group: String,
    cluster: String,
    task_definition: String,
}

async fn placement(clients: &AwsClients, kinds: &dagform_core::Kinds) -> Placement {
    let vpc = clients
        .ec2
        .create_vpc()
        .cidr_block("10.30.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_owned();
    let subnet = clients
        .ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.30.0.0/24")
        .availability_zone("us-east-1a")
        .send()
        .await
        .unwrap()
        .subnet()
        .unwrap()
        .subnet_id()
        .unwrap()
        .to_owned();
    let security_group = clients
        .ec2
        .create_security_group()
        .group_name("api")
        .description("api tasks")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    let cluster = kind(kinds, "aws_ecs_cluster")
        .create(
            &op_context("shared.cluster"),
            &props(json!({ "name": "apps", "container_insights": false })),
        )
        .await
        .unwrap()
        .id;
    let task_definition = kind(kinds, "aws_ecs_task_definition")
        .create(
            &op_context("service.api.task_definition"),
            &task_definition_props("api", "nginx:1.27"),
        )
        .await
        .unwrap()
        .id;
    Placement {
        subnet,
        security_group,
        cluster,
        task_definition,
    }
}

fn service_props(at: &Placement, name: &str, desired_count: i32) -> Properties {
    props(json!({
        "name": name,
        "cluster": at.cluster,
        "task_definition_arn": at.task_definition,
        "desired_count": desired_count,
        "launch_type": "FARGATE",
        "subnet_ids": [at.subnet],
        "security_group_ids": [at.security_group],
        "assign_public_ip": false,
        "load_balancers": [],
    }))
}

async fn describe_service(
    clients: &AwsClients,
    cluster: &str,
    name: &str,
) -> aws_sdk_ecs::types::Service {
    clients
        .ecs
        .describe_services()
        .cluster(cluster)
        .services(name)
        .include(ServiceField::Tags)
        .send()
        .await
        .unwrap()
        .services()[0]
        .clone()
}

/// Creates a one-task Fargate service directly, as another tool (or the first call of an
/// unfinished create) would.
async fn create_service(
    clients: &AwsClients,
    at: &Placement,
    name: &str,
    tags: Vec<aws_sdk_ecs::types::Tag>,
) {
    use aws_sdk_ecs::types::{
        AssignPublicIp, AwsVpcConfiguration, LaunchType, NetworkConfiguration,
    };
    let vpc = AwsVpcConfiguration::builder()
        .subnets(&at.subnet)
        .security_groups(&at.security_group)
        .assign_public_ip(AssignPublicIp::Disabled)
        .build()
        .unwrap();
    clients
        .ecs
        .create_service()
        .cluster(&at.cluster)
        .service_name(name)
        .task_definition(&at.task_definition)
        .desired_count(1)
        .launch_type(LaunchType::Fargate)
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(vpc)
                .build(),
        )
        .set_tags(Some(tags).filter(|t| !t.is_empty()))
        .send()
        .await
        .unwrap();
}

fn service_stack(service: &aws_sdk_ecs::types::Service) -> Option<&str> {
    stack_tag(
        service
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn ecs_service_of_another_stack_or_of_nobody_is_refused() {
    let (_emu, clients, kinds) = setup().await;
    let at = placement(&clients, &kinds).await;
    let svc = kind(&kinds, "aws_ecs_service");
    let address = "service.api";
    let theirs = svc
        .create(&prod(address), &service_props(&at, "api", 1))
        .await
        .unwrap();

    let ctx = op_context(address);
    let ours = service_props(&at, "api", 3);
    assert_not_owned(svc.create(&ctx, &ours).await, "prod-app");
    assert_not_owned(svc.find(&ctx, &ours).await, "prod-app");
    let recorded = current(&theirs.id, &ours, &theirs.outputs);
    assert_not_owned(
        svc.update(&ctx, recorded, &ours, &["desired_count".to_string()])
            .await,
        "prod-app",
    );
    assert_not_owned(svc.delete(&ctx, recorded).await, "prod-app");
    let live = describe_service(&clients, &at.cluster, "api").await;
    assert_eq!(live.status(), Some("ACTIVE"));
    assert_eq!(live.service_arn(), Some(theirs.id.as_str()));
    assert_eq!(live.desired_count(), 1);
    assert_eq!(service_stack(&live), Some("prod-app"));

    // A service made by hand in the cluster is nobody's to adopt.
    create_service(&clients, &at, "hand-made", Vec::new()).await;
    let hand_made = service_props(&at, "hand-made", 2);
    assert_not_owned(svc.create(&ctx, &hand_made).await, NOBODY);
    assert_not_owned(svc.find(&ctx, &hand_made).await, NOBODY);
    let live = describe_service(&clients, &at.cluster, "hand-made").await;
    assert_eq!(live.desired_count(), 1);
    assert!(live.tags().is_empty(), "{:?}", live.tags());
}

#[tokio::test(flavor = "multi_thread")]
async fn ecs_service_is_found_again_and_a_half_created_one_finished() {
    let (_emu, clients, kinds) = setup().await;
    let at = placement(&clients, &kinds).await;
    let svc = kind(&kinds, "aws_ecs_service");
    let ctx = op_context("service.api");
    let desired = service_props(&at, "api", 2);

    let applied = svc.create(&ctx, &desired).await.unwrap();
    assert_eq!(
        svc.find(&ctx, &desired).await.unwrap().unwrap().id,
        applied.id
    );
    let mut replacing = ctx.clone();
    replacing.superseded = vec![applied.id.clone()];
    assert!(svc.find(&replacing, &desired).await.unwrap().is_none());
    // Created again with its record lost: the same service, brought to the new count.
    let more = service_props(&at, "api", 3);
    assert_eq!(svc.create(&ctx, &more).await.unwrap().id, applied.id);
    assert_eq!(
        describe_service(&clients, &at.cluster, "api")
            .await
            .desired_count(),
        3
    );
    // A deleted (INACTIVE) service is nothing to find.
    svc.delete(&ctx, current(&applied.id, &more, &applied.outputs))
        .await
        .unwrap();
    assert!(svc.find(&ctx, &more).await.unwrap().is_none());

    // A create killed between CreateService and the call that sets the grace period.
    let worker_ctx = op_context("service.worker");
    let mut worker = service_props(&at, "worker", 1);
    worker.insert("health_check_grace_period_seconds".into(), json!(60));
    create_service(&clients, &at, "worker", ecs_tags(&worker_ctx)).await;
    let found = svc.find(&worker_ctx, &worker).await.unwrap().unwrap();
    let as_wanted = current(&found.id, &worker, &found.outputs);
    let observed = svc.read(&worker_ctx, as_wanted).await.unwrap().unwrap();
    assert_eq!(
        unmatched_properties(&worker, &observed.properties, &[]),
        ["health_check_grace_period_seconds"]
    );
    svc.update(
        &worker_ctx,
        as_wanted,
        &worker,
        &["health_check_grace_period_seconds".to_string()],
    )
    .await
    .unwrap();
    let live = describe_service(&clients, &at.cluster, "worker").await;
    assert_eq!(live.health_check_grace_period_seconds(), Some(60));
    let observed = svc.read(&worker_ctx, as_wanted).await.unwrap().unwrap();
    assert_eq!(observed.properties, worker);
}
