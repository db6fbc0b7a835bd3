//! ECR, CloudWatch Logs, IAM and ECS kinds against a private emulator, verified by reading AWS
//! back with the SDK.

mod support;

use dagform_aws::AwsClients;
use dagform_core::{Properties, ResourceError};
use serde_json::{Value as Json, json};
use support::{current, kind, op_context, props, setup};

const EXECUTION_POLICY: &str =
    "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";

#[tokio::test(flavor = "multi_thread")]
async fn ecr_repository_lifecycle() {
    let (_emu, clients, kinds) = setup().await;
    let repo = kind(&kinds, "aws_ecr_repository");
    let ctx = op_context("shared.ecr.backend");
    let desired = props(json!({
        "name": "acme/backend-api",
        "image_tag_mutability": "MUTABLE",
        "scan_on_push": false,
        "force_delete": true,
        "keep_last_images": 10,
    }));

    let applied = repo.create(&ctx, &desired).await.unwrap();
    assert_eq!(applied.id, "acme/backend-api");
    assert_eq!(applied.outputs["name"], "acme/backend-api");
    let described = clients
        .ecr
        .describe_repositories()
        .repository_names("acme/backend-api")
        .send()
        .await
        .unwrap();
    let live = &described.repositories()[0];
    assert_eq!(applied.outputs["arn"], live.repository_arn().unwrap());
    assert_eq!(
        applied.outputs["repository_uri"],
        live.repository_uri().unwrap()
    );
    assert_eq!(live.image_tag_mutability().unwrap().as_str(), "MUTABLE");
    assert!(!live.image_scanning_configuration().unwrap().scan_on_push());
    let policy = clients
        .ecr
        .get_lifecycle_policy()
        .repository_name("acme/backend-api")
        .send()
        .await
        .unwrap();
    let policy: Json = serde_json::from_str(policy.lifecycle_policy_text().unwrap()).unwrap();
    let rules = policy["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["selection"]["tagStatus"], "any");
    assert_eq!(rules[0]["selection"]["countType"], "imageCountMoreThan");
    assert_eq!(rules[0]["selection"]["countNumber"], 10);
    assert_eq!(rules[0]["action"]["type"], "expire");
    let tags = clients
        .ecr
        .list_tags_for_resource()
        .resource_arn(live.repository_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        tags.tags()
            .iter()
            .any(|t| t.key() == "dagform:address" && t.value() == "shared.ecr.backend")
    );

    let cur = current(&applied.id, &desired, &applied.outputs);
    let observed = repo.read(&ctx, cur).await.unwrap().unwrap();
    assert_eq!(observed.properties, desired);
    assert_eq!(observed.outputs, applied.outputs);

    // A crashed create is adopted by its address tag, and only by it.
    let found = repo.find(&ctx, &desired).await.unwrap().unwrap();
    assert_eq!(found.id, applied.id);
    assert!(matches!(
        repo.find(&op_context("someone.else"), &desired).await,
        Err(ResourceError::NotOwned(_))
    ));
    // A retried create carries on with what its first attempt made; someone else's is refused.
    assert_eq!(repo.create(&ctx, &desired).await.unwrap(), applied);
    assert!(
        repo.create(&op_context("someone.else"), &desired)
            .await
            .is_err()
    );

    // Mutability and scanning change in place; removing keep_last_images removes the policy.
    // (Turning scanning off cannot be shown on the emulator: the SDK leaves `scanOnPush: false`
    // out of the request, which AWS reads as false and moto as "no change".)
    let updated = props(json!({
        "name": "acme/backend-api",
        "image_tag_mutability": "IMMUTABLE",
        "scan_on_push": true,
        "force_delete": true,
    }));
    assert!(repo.forces_replacement("name"));
    assert!(!repo.forces_replacement("image_tag_mutability"));
    let changed: Vec<String> = ["image_tag_mutability", "scan_on_push", "keep_last_images"]
        .map(String::from)
        .to_vec();
    let after = repo.update(&ctx, cur, &updated, &changed).await.unwrap();
    assert_eq!(after.outputs, applied.outputs);
    let described = clients
        .ecr
        .describe_repositories()
        .repository_names("acme/backend-api")
        .send()
        .await
        .unwrap();
    let live = &described.repositories()[0];
    assert_eq!(live.image_tag_mutability().unwrap().as_str(), "IMMUTABLE");
    assert!(live.image_scanning_configuration().unwrap().scan_on_push());
    let err = clients
        .ecr
        .get_lifecycle_policy()
        .repository_name("acme/backend-api")
        .send()
        .await
        .unwrap_err();
    assert!(dagform_aws::error::is_not_found(&err), "{err:?}");
    let cur = current(&after.id, &updated, &after.outputs);
    let observed = repo.read(&ctx, cur).await.unwrap().unwrap();
    assert_eq!(observed.properties, updated);

    // force_delete removes a repository that still holds images.
    clients
        .ecr
        .put_image()
        .repository_name("acme/backend-api")
        .image_manifest(
            json!({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                   "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000"},
                   "layers": []})
            .to_string(),
        )
        .image_tag("v1")
        .send()
        .await
        .unwrap();
    repo.delete(&ctx, cur).await.unwrap();
    let err = clients
        .ecr
        .describe_repositories()
        .repository_names("acme/backend-api")
        .send()
        .await
        .unwrap_err();
    assert!(dagform_aws::error::is_not_found(&err));
    repo.delete(&ctx, cur).await.unwrap();
    assert!(repo.read(&ctx, cur).await.unwrap().is_none());

    let bad = props(json!({
        "name": "Acme_Backend",
        "image_tag_mutability": "MUTABLE",
        "scan_on_push": false,
        "force_delete": false,
    }));
    assert!(matches!(
        repo.create(&ctx, &bad).await,
        Err(ResourceError::InvalidProperties(_))
    ));
}

async fn log_group(
    clients: &AwsClients,
    name: &str,
) -> Option<aws_sdk_cloudwatchlogs::types::LogGroup> {
    clients
        .logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .send()
        .await
        .unwrap()
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(name))
        .cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn log_group_lifecycle() {
    let (_emu, clients, kinds) = setup().await;
    let logs = kind(&kinds, "aws_cloudwatch_log_group");
    let ctx = op_context("customer.acme.log_group.api");
    let name = "/ecs/acme-api";

    // An invalid retention is refused before anything is created.
    let invalid = props(json!({ "name": name, "retention_in_days": 2 }));
    assert!(matches!(
        logs.create(&ctx, &invalid).await,
        Err(ResourceError::InvalidProperties(_))
    ));
    assert!(log_group(&clients, name).await.is_none());

    let desired = props(json!({ "name": name, "retention_in_days": 14 }));
    let applied = logs.create(&ctx, &desired).await.unwrap();
    assert_eq!(applied.id, name);
    let live = log_group(&clients, name).await.unwrap();
    assert_eq!(live.retention_in_days(), Some(14));
    assert_eq!(applied.outputs["arn"], live.log_group_arn().unwrap());
    assert!(!applied.outputs["arn"].as_str().unwrap().ends_with(":*"));
    let tags = clients
        .logs
        .list_tags_for_resource()
        .resource_arn(live.log_group_arn().unwrap())
        .send()
        .await
        .unwrap();
    let tags = tags.tags().unwrap();
    assert_eq!(tags["dagform:address"], "customer.acme.log_group.api");
    assert_eq!(tags["Name"], name);

    let cur = current(&applied.id, &desired, &applied.outputs);
    let observed = logs.read(&ctx, cur).await.unwrap().unwrap();
    assert_eq!(observed.properties, desired);
    assert_eq!(observed.outputs, applied.outputs);
    assert_eq!(logs.find(&ctx, &desired).await.unwrap().unwrap().id, name);
    assert!(matches!(
        logs.find(&op_context("other"), &desired).await,
        Err(ResourceError::NotOwned(_))
    ));
    assert_eq!(logs.create(&ctx, &desired).await.unwrap(), applied);
    assert!(logs.create(&op_context("other"), &desired).await.is_err());

    let changed = vec!["retention_in_days".to_string()];
    let longer = props(json!({ "name": name, "retention_in_days": 30 }));
    logs.update(&ctx, cur, &longer, &changed).await.unwrap();
    assert_eq!(
        log_group(&clients, name).await.unwrap().retention_in_days(),
        Some(30)
    );
    assert!(matches!(
        logs.update(&ctx, cur, &invalid, &changed).await,
        Err(ResourceError::InvalidProperties(_))
    ));
    assert_eq!(
        log_group(&clients, name).await.unwrap().retention_in_days(),
        Some(30)
    );

    let forever = props(json!({ "name": name }));
    let cur = current(&applied.id, &longer, &applied.outputs);
    logs.update(&ctx, cur, &forever, &changed).await.unwrap();
    assert_eq!(
        log_group(&clients, name).await.unwrap().retention_in_days(),
        None
    );
    let cur = current(&applied.id, &forever, &applied.outputs);
    assert_eq!(
        logs.read(&ctx, cur).await.unwrap().unwrap().properties,
        forever
    );
    // Drift: retention asked for but gone shows as null.
    let cur_longer = current(&applied.id, &longer, &applied.outputs);
    let drift = logs.read(&ctx, cur_longer).await.unwrap().unwrap();
    assert_eq!(drift.properties["retention_in_days"], Json::Null);

    logs.delete(&ctx, cur).await.unwrap();
    assert!(log_group(&clients, name).await.is_none());
    logs.delete(&ctx, cur).await.unwrap();
    assert!(logs.read(&ctx, cur).await.unwrap().is_none());
}

async fn attached(clients: &AwsClients, role: &str) -> Vec<String> {
    let mut arns: Vec<String> = clients
        .iam
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap()
        .attached_policies()
        .iter()
        .map(|p| p.policy_arn().unwrap().to_owned())
        .collect();
    arns.sort();
    arns
}

async fn inline_names(clients: &AwsClients, role: &str) -> Vec<String> {
    clients
        .iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .unwrap()
        .policy_names()
        .to_vec()
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_role_lifecycle() {
    let (_emu, clients, kinds) = setup().await;
    let role = kind(&kinds, "aws_iam_role");
    let ctx = op_context("customer.acme.role.execution");
    let secrets_policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": ["arn:aws:secretsmanager:us-east-1:123456789012:secret:acme/*"],
        }]
    });
    let desired = props(json!({
        "name": "acme-api-execution",
        "description": "runs the acme api tasks",
        "trusted_service": "ecs-tasks.amazonaws.com",
        "managed_policy_arns": [EXECUTION_POLICY],
        "inline_policies": { "read-secrets": secrets_policy },
    }));

    let applied = role.create(&ctx, &desired).await.unwrap();
    assert_eq!(applied.id, "acme-api-execution");
    let live = clients
        .iam
        .get_role()
        .role_name("acme-api-execution")
        .send()
        .await
        .unwrap();
    let live = live.role().unwrap();
    assert_eq!(applied.outputs["arn"], live.arn());
    assert_eq!(live.description(), Some("runs the acme api tasks"));
    let trust: Json =
        serde_json::from_str(&url_decode(live.assume_role_policy_document().unwrap())).unwrap();
    let statements = trust["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0]["Effect"], "Allow");
    assert_eq!(statements[0]["Action"], "sts:AssumeRole");
    assert_eq!(
        statements[0]["Principal"],
        json!({ "Service": "ecs-tasks.amazonaws.com" })
    );
    assert!(
        live.tags()
            .iter()
            .any(|t| t.key() == "dagform:address" && t.value() == "customer.acme.role.execution")
    );
    assert_eq!(
        attached(&clients, "acme-api-execution").await,
        [EXECUTION_POLICY]
    );
    assert_eq!(
        inline_names(&clients, "acme-api-execution").await,
        ["read-secrets"]
    );
    let doc = clients
        .iam
        .get_role_policy()
        .role_name("acme-api-execution")
        .policy_name("read-secrets")
        .send()
        .await
        .unwrap();
    let doc: Json = serde_json::from_str(&url_decode(doc.policy_document())).unwrap();
    assert_eq!(doc, desired["inline_policies"]["read-secrets"]);

    let cur = current(&applied.id, &desired, &applied.outputs);
    let observed = role.read(&ctx, cur).await.unwrap().unwrap();
    assert_eq!(observed.properties, desired);
    assert_eq!(observed.outputs, applied.outputs);

    // Adoption after a crash: only with this node's address tag.
    assert_eq!(
        role.find(&ctx, &desired).await.unwrap().unwrap().id,
        applied.id
    );
    assert!(matches!(
        role.find(&op_context("customer.other.role"), &desired)
            .await,
        Err(ResourceError::NotOwned(_))
    ));
    // Retrying a create that got as far as CreateRole converges instead of failing.
    assert_eq!(role.create(&ctx, &desired).await.unwrap().id, applied.id);
    assert!(
        role.create(&op_context("customer.other.role"), &desired)
            .await
            .is_err()
    );

    // Swap the managed policy and the inline policy; drop the description.
    let logs_policy = json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*" }]
    });
    let updated = props(json!({
        "name": "acme-api-execution",
        "trusted_service": "ecs-tasks.amazonaws.com",
        "managed_policy_arns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
        "inline_policies": { "write-logs": logs_policy },
    }));
    let changed: Vec<String> = ["description", "managed_policy_arns", "inline_policies"]
        .map(String::from)
        .to_vec();
    role.update(&ctx, cur, &updated, &changed).await.unwrap();
    assert_eq!(
        attached(&clients, "acme-api-execution").await,
        ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    );
    assert_eq!(
        inline_names(&clients, "acme-api-execution").await,
        ["write-logs"]
    );
    let cur = current(&applied.id, &updated, &applied.outputs);
    assert_eq!(
        role.read(&ctx, cur).await.unwrap().unwrap().properties,
        updated
    );

    // Trust policy changes in place too.
    let ec2_trust = props(json!({
        "name": "acme-api-execution",
        "trusted_service": "ec2.amazonaws.com",
        "managed_policy_arns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
        "inline_policies": { "write-logs": logs_policy },
    }));
    role.update(&ctx, cur, &ec2_trust, &["trusted_service".to_string()])
        .await
        .unwrap();
    let cur = current(&applied.id, &ec2_trust, &applied.outputs);
    assert_eq!(
        role.read(&ctx, cur).await.unwrap().unwrap().properties["trusted_service"],
        "ec2.amazonaws.com"
    );

    role.delete(&ctx, cur).await.unwrap();
    let err = clients
        .iam
        .get_role()
        .role_name("acme-api-execution")
        .send()
        .await
        .unwrap_err();
    assert!(dagform_aws::error::is_not_found(&err));
    role.delete(&ctx, cur).await.unwrap();
    assert!(role.read(&ctx, cur).await.unwrap().is_none());

    let long_name = props(json!({
        "name": "r".repeat(65),
        "trusted_service": "ecs-tasks.amazonaws.com",
        "managed_policy_arns": [],
        "inline_policies": {},
    }));
    assert!(matches!(
        role.create(&ctx, &long_name).await,
        Err(ResourceError::InvalidProperties(_))
    ));
}

async fn describe_cluster(clients: &AwsClients, arn: &str) -> aws_sdk_ecs::types::Cluster {
    clients
        .ecs
        .describe_clusters()
        .clusters(arn)
        .include(aws_sdk_ecs::types::ClusterField::Settings)
        .include(aws_sdk_ecs::types::ClusterField::Tags)
        .send()
        .await
        .unwrap()
        .clusters()[0]
        .clone()
}

fn insights(cluster: &aws_sdk_ecs::types::Cluster) -> Option<String> {
    cluster
        .settings()
        .iter()
        .find(|s| s.name().map(|n| n.as_str()) == Some("containerInsights"))
        .and_then(|s| s.value().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread")]
async fn ecs_cluster_lifecycle() {
    let (_emu, clients, kinds) = setup().await;
    let cluster = kind(&kinds, "aws_ecs_cluster");
    let ctx = op_context("shared.cluster");
    let desired = props(json!({ "name": "acme-dev", "container_insights": true }));

    let applied = cluster.create(&ctx, &desired).await.unwrap();
    assert!(applied.id.starts_with("arn:aws:ecs:"), "{}", applied.id);
    assert_eq!(applied.outputs["arn"], applied.id.as_str());
    assert_eq!(applied.outputs["name"], "acme-dev");
    let live = describe_cluster(&clients, &applied.id).await;
    assert_eq!(live.status(), Some("ACTIVE"));
    assert_eq!(insights(&live).as_deref(), Some("enabled"));
    assert!(
        live.tags()
            .iter()
            .any(|t| t.key() == Some("Name") && t.value() == Some("acme-dev"))
    );

    let cur = current(&applied.id, &desired, &applied.outputs);
    let observed = cluster.read(&ctx, cur).await.unwrap().unwrap();
    assert_eq!(observed.properties, desired);
    assert_eq!(observed.outputs, applied.outputs);
    assert_eq!(
        cluster.find(&ctx, &desired).await.unwrap().unwrap().id,
        applied.id
    );
    assert!(matches!(
        cluster.find(&op_context("other"), &desired).await,
        Err(ResourceError::NotOwned(_))
    ));

    let off = props(json!({ "name": "acme-dev", "container_insights": false }));
    assert!(!cluster.forces_replacement("container_insights"));
    cluster
        .update(&ctx, cur, &off, &["container_insights".to_string()])
        .await
        .unwrap();
    assert_eq!(
        insights(&describe_cluster(&clients, &applied.id).await).as_deref(),
        Some("disabled")
    );
    let cur = current(&applied.id, &off, &applied.outputs);
    assert_eq!(
        cluster.read(&ctx, cur).await.unwrap().unwrap().properties,
        off
    );

    cluster.delete(&ctx, cur).await.unwrap();
    assert_eq!(
        describe_cluster(&clients, &applied.id).await.status(),
        Some("INACTIVE")
    );
    cluster.delete(&ctx, cur).await.unwrap();
    assert!(cluster.read(&ctx, cur).await.unwrap().is_none());
    assert!(cluster.find(&ctx, &desired).await.unwrap().is_none());
}

fn task_definition_props(family: &str, image: &str, secret_arn: &str) -> Properties {
    props(json!({
        "family": family,
        "cpu": "256",
        "memory": "512",
        "network_mode": "awsvpc",
        "requires_compatibilities": ["FARGATE"],
        "execution_role_arn": "arn:aws:iam::123456789012:role/acme-api-execution",
        "task_role_arn": "arn:aws:iam::123456789012:role/acme-api-task",
        "containers": [{
            "name": "api",
            "image": image,
            "essential": true,
            "port_mappings": [{ "container_port": 8080, "protocol": "tcp" }],
            "environment": { "PORT": "8080", "APP_ENV": "dev", "A_LAST": "z" },
            "secrets": { "DATABASE_URL": secret_arn },
            "log": { "group": "/ecs/acme-api", "region": "us-east-1", "stream_prefix": "api" },
            "health_check": {
                "command": ["CMD-SHELL", "curl -f http://localhost:8080/health || exit 1"],
                "interval": 30,
                "timeout": 5,
                "retries": 3,
                "start_period": 10,
            },
        }],
    }))
}

async fn secret_arn(clients: &AwsClients) -> String {
    clients
        .secretsmanager
        .create_secret()
        .name("acme/database-url")
        .secret_string("postgres://acme")
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn ecs_task_definition_lifecycle() {
    let (_emu, clients, kinds) = setup().await;
    let td = kind(&kinds, "aws_ecs_task_definition");
    let ctx = op_context("customer.acme.task_definition.api");
    let secret = secret_arn(&clients).await;
    let desired = task_definition_props("acme-api", "nginx:1.27", &secret);

    assert!(td.create_before_destroy());
    for p in ["family", "cpu", "containers", "execution_role_arn"] {
        assert!(td.forces_replacement(p));
    }

    let applied = td.create(&ctx, &desired).await.unwrap();
    assert!(
        applied.id.ends_with("task-definition/acme-api:1"),
        "{}",
        applied.id
    );
    assert_eq!(applied.outputs["arn"], applied.id.as_str());
    assert_eq!(applied.outputs["family"], "acme-api");
    assert_eq!(applied.outputs["revision"], 1);

    let out = clients
        .ecs
        .describe_task_definition()
        .task_definition(&applied.id)
        .send()
        .await
        .unwrap();
    let live = out.task_definition().unwrap();
    assert_eq!(live.cpu(), Some("256"));
    assert_eq!(live.memory(), Some("512"));
    assert_eq!(live.network_mode().unwrap().as_str(), "awsvpc");
    assert_eq!(live.requires_compatibilities()[0].as_str(), "FARGATE");
    assert_eq!(
        live.execution_role_arn(),
        Some("arn:aws:iam::123456789012:role/acme-api-execution")
    );
    let c = &live.container_definitions()[0];
    assert_eq!(c.name(), Some("api"));
    assert_eq!(c.image(), Some("nginx:1.27"));
    assert_eq!(c.essential(), Some(true));
    assert_eq!(c.port_mappings()[0].container_port(), Some(8080));
    assert_eq!(c.port_mappings()[0].protocol().unwrap().as_str(), "tcp");
    let env: Vec<(&str, &str)> = c
        .environment()
        .iter()
        .map(|kv| (kv.name().unwrap(), kv.value().unwrap()))
        .collect();
    assert_eq!(env, [("PORT", "8080"), ("APP_ENV", "dev"), ("A_LAST", "z")]);
    assert!(
        c.environment()
            .iter()
            .all(|kv| kv.name() != Some("DATABASE_URL"))
    );
    assert_eq!(c.secrets().len(), 1);
    assert_eq!(c.secrets()[0].name(), "DATABASE_URL");
    assert_eq!(c.secrets()[0].value_from(), secret);
    let log = c.log_configuration().unwrap();
    assert_eq!(log.log_driver().as_str(), "awslogs");
    let options = log.options().unwrap();
    assert_eq!(options["awslogs-group"], "/ecs/acme-api");
    assert_eq!(options["awslogs-region"], "us-east-1");
    assert_eq!(options["awslogs-stream-prefix"], "api");
    let hc = c.health_check().unwrap();
    assert_eq!(
        hc.command(),
        [
            "CMD-SHELL",
            "curl -f http://localhost:8080/health || exit 1"
        ]
    );
    assert_eq!(
        (hc.interval(), hc.timeout(), hc.retries(), hc.start_period()),
        (Some(30), Some(5), Some(3), Some(10))
    );

    let cur = current(&applied.id, &desired, &applied.outputs);
    let observed = td.read(&ctx, cur).await.unwrap().unwrap();
    assert_eq!(observed.properties, desired);
    assert_eq!(observed.outputs, applied.outputs);

    // A second revision is a new object; the first is deregistered after.
    let second = td
        .create(
            &ctx,
            &task_definition_props("acme-api", "nginx:1.28", &secret),
        )
        .await
        .unwrap();
    assert_eq!(second.outputs["revision"], 2);
    td.delete(&ctx, cur).await.unwrap();
    let status = clients
        .ecs
        .describe_task_definition()
        .task_definition(&applied.id)
        .send()
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .status()
        .unwrap()
        .clone();
    assert_eq!(status.as_str(), "INACTIVE");
    td.delete(&ctx, cur).await.unwrap();
    assert!(td.read(&ctx, cur).await.unwrap().is_none());
    let cur2 = current(&second.id, &desired, &second.outputs);
    assert!(td.read(&ctx, cur2).await.unwrap().is_some());

    // Fargate sizes and malformed containers are refused before any call.
    let mut wrong_size = desired.clone();
    wrong_size.insert("memory".into(), json!("4096"));
    assert!(matches!(
        td.create(&ctx, &wrong_size).await,
        Err(ResourceError::InvalidProperties(_))
    ));
    let mut numeric_env = desired.clone();
    numeric_env["containers"][0]["environment"]["PORT"] = json!(8080);
    assert!(matches!(
        td.create(&ctx, &numeric_env).await,
        Err(ResourceError::InvalidProperties(_))
    ));
    let listed = clients
        .ecs
        .list_task_definitions()
        .family_prefix("acme-api")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.task_definition_arns(), [second.id.as_str()]);
}

/// A VPC with two subnets, a security group, and an ALB whose listener forwards to an
/// ip-target group: what a service behind a load balancer needs.
struct Network {
    subnets: Vec<String>,
    security_group: String,
    target_group: String,
    listener: String,
}

async fn network(clients: &AwsClients) -> Network {
    use aws_sdk_elasticloadbalancingv2::types::{
        Action, ActionTypeEnum, LoadBalancerTypeEnum, ProtocolEnum, TargetTypeEnum,
    };
    let vpc = clients
        .ec2
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_owned();
    let mut subnets = Vec::new();
    for (i, az) in ["us-east-1a", "us-east-1b"].iter().enumerate() {
        let subnet = clients
            .ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("10.20.{i}.0/24"))
            .availability_zone(*az)
            .send()
            .await
            .unwrap();
        subnets.push(subnet.subnet().unwrap().subnet_id().unwrap().to_owned());
    }
    let security_group = clients
        .ec2
        .create_security_group()
        .group_name("acme-api")
        .description("acme api tasks")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    let alb = clients
        .elbv2
        .create_load_balancer()
        .name("acme-dev")
        .r#type(LoadBalancerTypeEnum::Application)
        .set_subnets(Some(subnets.clone()))
        .security_groups(&security_group)
        .send()
        .await
        .unwrap();
    let alb_arn = alb.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    let tg = clients
        .elbv2
        .create_target_group()
        .name("acme-api-tg")
        .protocol(ProtocolEnum::Http)
        .port(8080)
        .vpc_id(&vpc)
        .target_type(TargetTypeEnum::Ip)
        .send()
        .await
        .unwrap();
    let target_group = tg.target_groups()[0].target_group_arn().unwrap().to_owned();
    let listener = clients
        .elbv2
        .create_listener()
        .load_balancer_arn(&alb_arn)
        .protocol(ProtocolEnum::Http)
        .port(80)
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(&target_group)
                .build(),
        )
        .send()
        .await
        .unwrap();
    Network {
        subnets,
        security_group,
        target_group,
        listener: listener.listeners()[0].listener_arn().unwrap().to_owned(),
    }
}

async fn describe_service(
    clients: &AwsClients,
    cluster: &str,
    service: &str,
) -> aws_sdk_ecs::types::Service {
    clients
        .ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .unwrap()
        .services()[0]
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn ecs_service_lifecycle() {
    let (_emu, clients, kinds) = setup().await;
    let net = network(&clients).await;
    let secret = secret_arn(&clients).await;
    let cluster_kind = kind(&kinds, "aws_ecs_cluster");
    let td_kind = kind(&kinds, "aws_ecs_task_definition");
    let svc = kind(&kinds, "aws_ecs_service");
    let ctx = op_context("customer.acme.service.api");

    let cluster = cluster_kind
        .create(
            &op_context("shared.cluster"),
            &props(json!({ "name": "acme-dev", "container_insights": false })),
        )
        .await
        .unwrap();
    let td1 = td_kind
        .create(
            &ctx,
            &task_definition_props("acme-api", "nginx:1.27", &secret),
        )
        .await
        .unwrap();
    let td2 = td_kind
        .create(
            &ctx,
            &task_definition_props("acme-api", "nginx:1.28", &secret),
        )
        .await
        .unwrap();

    let desired = props(json!({
        "name": "acme-api",
        "cluster": cluster.id,
        "task_definition_arn": td1.id,
        "desired_count": 2,
        "launch_type": "FARGATE",
        "subnet_ids": net.subnets,
        "security_group_ids": [net.security_group],
        "assign_public_ip": false,
        "load_balancers": [{
            "target_group_arn": net.target_group,
            "container_name": "api",
            "container_port": 8080,
        }],
    }));
    let applied = svc.create(&ctx, &desired).await.unwrap();
    assert!(applied.id.contains(":service/"), "{}", applied.id);
    assert_eq!(applied.outputs["arn"], applied.id.as_str());
    assert_eq!(applied.outputs["name"], "acme-api");
    assert_eq!(applied.outputs["cluster"], cluster.id.as_str());

    let live = describe_service(&clients, &cluster.id, &applied.id).await;
    assert_eq!(live.status(), Some("ACTIVE"));
    assert_eq!(live.launch_type().unwrap().as_str(), "FARGATE");
    assert_eq!(live.desired_count(), 2);
    assert_eq!(live.task_definition(), Some(td1.id.as_str()));
    let vpc = live
        .network_configuration()
        .unwrap()
        .awsvpc_configuration()
        .unwrap();
    assert_eq!(vpc.subnets(), net.subnets.as_slice());
    assert_eq!(vpc.security_groups(), [net.security_group.as_str()]);
    assert_eq!(vpc.assign_public_ip().unwrap().as_str(), "DISABLED");
    let lb = &live.load_balancers()[0];
    assert_eq!(lb.target_group_arn(), Some(net.target_group.as_str()));
    assert_eq!(lb.container_name(), Some("api"));
    assert_eq!(lb.container_port(), Some(8080));

    let cur = current(&applied.id, &desired, &applied.outputs);
    let observed = svc.read(&ctx, cur).await.unwrap().unwrap();
    assert_eq!(observed.properties, desired);
    assert_eq!(observed.outputs, applied.outputs);
    assert_eq!(
        svc.find(&ctx, &desired).await.unwrap().unwrap().id,
        applied.id
    );

    for p in ["name", "cluster", "launch_type", "load_balancers"] {
        assert!(svc.forces_replacement(p), "{p}");
    }
    for p in [
        "task_definition_arn",
        "desired_count",
        "subnet_ids",
        "security_group_ids",
    ] {
        assert!(!svc.forces_replacement(p), "{p}");
    }

    // A new revision and a new count roll out in place.
    let mut updated = desired.clone();
    updated.insert("task_definition_arn".into(), json!(td2.id));
    updated.insert("desired_count".into(), json!(3));
    updated.insert("health_check_grace_period_seconds".into(), json!(60));
    updated.insert("deployment_minimum_healthy_percent".into(), json!(50));
    updated.insert("deployment_maximum_percent".into(), json!(200));
    let changed: Vec<String> = [
        "task_definition_arn",
        "desired_count",
        "health_check_grace_period_seconds",
        "deployment_minimum_healthy_percent",
        "deployment_maximum_percent",
    ]
    .map(String::from)
    .to_vec();
    let after = svc.update(&ctx, cur, &updated, &changed).await.unwrap();
    assert_eq!(after.id, applied.id);
    let live = describe_service(&clients, &cluster.id, &applied.id).await;
    assert_eq!(live.desired_count(), 3);
    assert_eq!(live.task_definition(), Some(td2.id.as_str()));
    assert_eq!(live.health_check_grace_period_seconds(), Some(60));
    let deployment = live.deployment_configuration().unwrap();
    assert_eq!(deployment.minimum_healthy_percent(), Some(50));
    assert_eq!(deployment.maximum_percent(), Some(200));
    let cur = current(&applied.id, &updated, &after.outputs);
    assert_eq!(
        svc.read(&ctx, cur).await.unwrap().unwrap().properties,
        updated
    );

    // A worker without a load balancer, its cluster given by name.
    let worker_ctx = op_context("customer.acme.service.worker");
    let worker = props(json!({
        "name": "acme-worker",
        "cluster": "acme-dev",
        "task_definition_arn": td2.id,
        "desired_count": 1,
        "launch_type": "FARGATE",
        "subnet_ids": [net.subnets[0]],
        "security_group_ids": [net.security_group],
        "assign_public_ip": true,
        "load_balancers": [],
        "enable_execute_command": true,
    }));
    let worker_applied = svc.create(&worker_ctx, &worker).await.unwrap();
    assert_eq!(worker_applied.outputs["cluster"], cluster.id.as_str());
    let live = describe_service(&clients, "acme-dev", &worker_applied.id).await;
    assert!(live.load_balancers().is_empty());
    let vpc = live
        .network_configuration()
        .unwrap()
        .awsvpc_configuration()
        .unwrap();
    assert_eq!(vpc.assign_public_ip().unwrap().as_str(), "ENABLED");
    assert_eq!(vpc.subnets(), [net.subnets[0].as_str()]);
    let worker_cur = current(&worker_applied.id, &worker, &worker_applied.outputs);
    let observed = svc.read(&worker_ctx, worker_cur).await.unwrap().unwrap();
    assert_eq!(observed.properties["cluster"], "acme-dev");
    assert_eq!(observed.properties["load_balancers"], json!([]));
    assert_eq!(observed.properties["subnet_ids"], worker["subnet_ids"]);
    // The network configuration changes in place.
    let mut moved = worker.clone();
    moved.insert("subnet_ids".into(), json!(net.subnets));
    moved.insert("assign_public_ip".into(), json!(false));
    svc.update(
        &worker_ctx,
        worker_cur,
        &moved,
        &["subnet_ids".to_string(), "assign_public_ip".to_string()],
    )
    .await
    .unwrap();
    let live = describe_service(&clients, "acme-dev", &worker_applied.id).await;
    let vpc = live
        .network_configuration()
        .unwrap()
        .awsvpc_configuration()
        .unwrap();
    assert_eq!(vpc.subnets(), net.subnets.as_slice());
    assert_eq!(vpc.assign_public_ip().unwrap().as_str(), "DISABLED");
    let worker_cur = current(&worker_applied.id, &moved, &worker_applied.outputs);

    // Delete: scaled to zero, deleted, INACTIVE; then its target group can go.
    for (c, cur) in [(&ctx, cur), (&worker_ctx, worker_cur)] {
        svc.delete(c, cur).await.unwrap();
        let live = describe_service(&clients, &cluster.id, cur.id).await;
        assert_eq!(live.status(), Some("INACTIVE"));
        assert_eq!(live.desired_count(), 0);
        svc.delete(c, cur).await.unwrap();
        assert!(svc.read(c, cur).await.unwrap().is_none());
    }
    assert!(svc.find(&ctx, &desired).await.unwrap().is_none());
    clients
        .elbv2
        .delete_listener()
        .listener_arn(&net.listener)
        .send()
        .await
        .unwrap();
    clients
        .elbv2
        .delete_target_group()
        .target_group_arn(&net.target_group)
        .send()
        .await
        .unwrap();

    // Services without security groups are refused (moto would crash, AWS would accept).
    let mut no_sg = desired.clone();
    no_sg.insert("security_group_ids".into(), json!([]));
    assert!(matches!(
        svc.create(&ctx, &no_sg).await,
        Err(ResourceError::InvalidProperties(_))
    ));

    // The stability wait fails fast on a service that is gone.
    let err = dagform_aws::ecs::wait_until_stable(
        &clients,
        &cluster.id,
        "acme-api",
        dagform_core::kind::PollSettings {
            interval: std::time::Duration::from_millis(50),
            timeout: std::time::Duration::from_secs(5),
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ResourceError::Failed(_)), "{err}");
}
