//! What the log group, repository, secret and RDS kinds do when an object under their name is
//! not this stack's: another environment's, or made by hand. Each case is verified by reading
//! AWS back with the SDK.

mod support;

use dagform_aws::AwsClients;
use dagform_core::{Applied, Kinds, OpContext, Properties, ResourceError};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use support::{current, kind, op_context, props, setup};

const OURS: &str = "dev-task-manager";
const THEIRS: &str = "prod-task-manager";

/// A context for `address` in `stack`, with the emulator's fast polling.
fn in_stack(stack: &str, address: &str) -> OpContext {
    let mut ctx = op_context(address);
    ctx.stack = stack.into();
    ctx
}

/// The message of a `NotOwned` refusal; anything else fails the test.
fn refusal<T: std::fmt::Debug>(result: Result<T, ResourceError>) -> String {
    match result {
        Err(ResourceError::NotOwned(m)) => m,
        other => panic!("expected a refusal as not owned, got {other:?}"),
    }
}

/// Checks a refusal names the object and the stack it belongs to.
fn assert_names_owner(message: &str, object: &str, stack: &str) {
    assert!(message.contains(object), "{message}");
    assert!(message.contains(&format!("stack `{stack}`")), "{message}");
}

fn tag_map<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> HashMap<String, String> {
    tags.into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

// --- CloudWatch Logs ---

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

async fn log_group_tags(clients: &AwsClients, name: &str) -> HashMap<String, String> {
    let group = log_group(clients, name).await.expect("log group exists");
    clients
        .logs
        .list_tags_for_resource()
        .resource_arn(group.log_group_arn().unwrap())
        .send()
        .await
        .unwrap()
        .tags()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn log_group_of_another_stack_or_of_nobody_is_left_alone() {
    let (_emu, clients, kinds) = setup().await;
    let logs = kind(&kinds, "aws_cloudwatch_log_group");
    let address = "customer.acme.log_group.api";
    let (ours, theirs) = (in_stack(OURS, address), in_stack(THEIRS, address));
    let name = "/ecs/acme-api";

    // prod made the group first; dev asking for the same name is refused.
    let prod = props(json!({ "name": name, "retention_in_days": 14 }));
    let applied = logs.create(&theirs, &prod).await.unwrap();
    let dev = props(json!({ "name": name, "retention_in_days": 30 }));
    let message = refusal(logs.create(&ours, &dev).await);
    assert_names_owner(&message, &format!("log group `{name}`"), THEIRS);
    assert_names_owner(&refusal(logs.find(&ours, &dev).await), name, THEIRS);

    // Neither a change nor a delete goes through, even with the group's id at hand.
    let cur = current(&applied.id, &dev, &applied.outputs);
    let changed = vec!["retention_in_days".to_string()];
    refusal(logs.update(&ours, cur, &dev, &changed).await);
    refusal(logs.delete(&ours, cur).await);
    let live = log_group(&clients, name).await.expect("theirs is kept");
    assert_eq!(live.retention_in_days(), Some(14));
    assert_eq!(
        log_group_tags(&clients, name).await["dagform:stack"],
        THEIRS
    );

    // A group made by hand is not adopted either.
    clients
        .logs
        .create_log_group()
        .log_group_name("/ecs/by-hand")
        .send()
        .await
        .unwrap();
    let by_hand = props(json!({ "name": "/ecs/by-hand", "retention_in_days": 7 }));
    let message = refusal(logs.create(&ours, &by_hand).await);
    assert!(message.contains("not managed by dagform"), "{message}");
    refusal(logs.find(&ours, &by_hand).await);
    let live = log_group(&clients, "/ecs/by-hand").await.unwrap();
    assert_eq!(live.retention_in_days(), None);
    assert!(log_group_tags(&clients, "/ecs/by-hand").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn log_group_left_half_made_is_found_and_finished() {
    let (_emu, clients, kinds) = setup().await;
    let logs = kind(&kinds, "aws_cloudwatch_log_group");
    let mut ctx = in_stack(OURS, "customer.acme.log_group.web");
    let name = "/ecs/acme-web";
    let desired = props(json!({ "name": name, "retention_in_days": 14 }));

    // The create call went through with our tags, the retention call never came.
    let mut tags = HashMap::new();
    for (k, v) in ctx.tag_pairs() {
        tags.insert(k.to_owned(), v);
    }
    clients
        .logs
        .create_log_group()
        .log_group_name(name)
        .set_tags(Some(tags))
        .send()
        .await
        .unwrap();
    let found = logs.find(&ctx, &desired).await.unwrap().expect("adopted");
    assert_eq!(found.id, name);
    let observed = logs
        .read(&ctx, current(&found.id, &desired, &found.outputs))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(observed.properties["retention_in_days"], Json::Null);

    // A retried create adopts it and sets what is missing.
    let applied = logs.create(&ctx, &desired).await.unwrap();
    assert_eq!(applied, found);
    let live = log_group(&clients, name).await.unwrap();
    assert_eq!(live.retention_in_days(), Some(14));

    // A replaced group awaiting deletion is never taken for the new one.
    ctx.superseded = vec![name.to_owned()];
    assert!(logs.find(&ctx, &desired).await.unwrap().is_none());
}

// --- ECR ---

fn repository_props(name: &str, force_delete: bool) -> Properties {
    props(json!({
        "name": name,
        "image_tag_mutability": "MUTABLE",
        "scan_on_push": false,
        "force_delete": force_delete,
    }))
}

async fn repository(clients: &AwsClients, name: &str) -> Option<aws_sdk_ecr::types::Repository> {
    match clients
        .ecr
        .describe_repositories()
        .repository_names(name)
        .send()
        .await
    {
        Ok(out) => out.repositories().first().cloned(),
        Err(e) if dagform_aws::error::is_not_found(&e) => None,
        Err(e) => panic!("{e:?}"),
    }
}

async fn repository_tags(clients: &AwsClients, name: &str) -> HashMap<String, String> {
    let repo = repository(clients, name).await.expect("repository exists");
    let out = clients
        .ecr
        .list_tags_for_resource()
        .resource_arn(repo.repository_arn().unwrap())
        .send()
        .await
        .unwrap();
    tag_map(out.tags().iter().map(|t| (t.key(), t.value())))
}

async fn push_image(clients: &AwsClients, repository: &str, tag: &str) {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1,
            "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        },
        "layers": [],
    });
    clients
        .ecr
        .put_image()
        .repository_name(repository)
        .image_manifest(manifest.to_string())
        .image_tag(tag)
        .send()
        .await
        .unwrap();
}

async fn image_count(clients: &AwsClients, repository: &str) -> usize {
    clients
        .ecr
        .describe_images()
        .repository_name(repository)
        .send()
        .await
        .unwrap()
        .image_details()
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn repository_of_another_stack_or_of_nobody_is_left_alone() {
    let (_emu, clients, kinds) = setup().await;
    let repo = kind(&kinds, "aws_ecr_repository");
    let (ours, theirs) = (in_stack(OURS, "shared.ecr"), in_stack(THEIRS, "shared.ecr"));
    let name = "acme/backend-api";

    let mut prod = repository_props(name, true);
    prod.insert("image_tag_mutability".into(), json!("IMMUTABLE"));
    let applied = repo.create(&theirs, &prod).await.unwrap();
    push_image(&clients, name, "v1").await;

    let dev = repository_props(name, true);
    let message = refusal(repo.create(&ours, &dev).await);
    assert_names_owner(&message, &format!("repository `{name}`"), THEIRS);
    assert_names_owner(&refusal(repo.find(&ours, &dev).await), name, THEIRS);

    // Destroying dev never deletes prod's repository, force_delete or not.
    let cur = current(&applied.id, &dev, &applied.outputs);
    let changed = vec!["image_tag_mutability".to_string()];
    refusal(repo.update(&ours, cur, &dev, &changed).await);
    refusal(repo.delete(&ours, cur).await);
    let live = repository(&clients, name).await.expect("theirs is kept");
    assert_eq!(live.image_tag_mutability().unwrap().as_str(), "IMMUTABLE");
    assert_eq!(image_count(&clients, name).await, 1);
    assert_eq!(
        repository_tags(&clients, name).await["dagform:stack"],
        THEIRS
    );

    // A repository made by hand is not adopted either.
    clients
        .ecr
        .create_repository()
        .repository_name("acme/by-hand")
        .send()
        .await
        .unwrap();
    let by_hand = repository_props("acme/by-hand", false);
    let message = refusal(repo.create(&ours, &by_hand).await);
    assert!(message.contains("not managed by dagform"), "{message}");
    refusal(repo.find(&ours, &by_hand).await);
    assert!(repository_tags(&clients, "acme/by-hand").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn repository_with_images_is_deleted_only_with_force_delete() {
    let (_emu, clients, kinds) = setup().await;
    let repo = kind(&kinds, "aws_ecr_repository");
    let mut ctx = in_stack(OURS, "shared.ecr");
    let name = "acme/frontend";
    let keep = repository_props(name, false);
    let applied = repo.create(&ctx, &keep).await.unwrap();

    // A crashed create is found again; a replaced one awaiting deletion is not.
    assert_eq!(repo.find(&ctx, &keep).await.unwrap(), Some(applied.clone()));
    ctx.superseded = vec![name.to_owned()];
    assert!(repo.find(&ctx, &keep).await.unwrap().is_none());
    ctx.superseded.clear();

    // force_delete is dagform's setting: read reports it as recorded, never as drift.
    let cur = current(&applied.id, &keep, &applied.outputs);
    assert_eq!(
        repo.read(&ctx, cur).await.unwrap().unwrap().properties,
        keep
    );

    push_image(&clients, name, "v1").await;
    match repo.delete(&ctx, cur).await {
        Err(ResourceError::Failed(m)) => {
            assert!(m.contains(&format!("repository `{name}`")), "{m}");
            assert!(m.contains("1 image"), "{m}");
            assert!(m.contains("[registry] force_delete = true"), "{m}");
        }
        other => panic!("expected a refusal to delete images, got {other:?}"),
    }
    assert!(repository(&clients, name).await.is_some());
    assert_eq!(image_count(&clients, name).await, 1);

    let force = repository_props(name, true);
    repo.delete(&ctx, current(&applied.id, &force, &applied.outputs))
        .await
        .unwrap();
    assert!(repository(&clients, name).await.is_none());

    // An empty repository needs no force.
    let empty = repo.create(&ctx, &keep).await.unwrap();
    repo.delete(&ctx, current(&empty.id, &keep, &empty.outputs))
        .await
        .unwrap();
    assert!(repository(&clients, name).await.is_none());
}

// --- Secrets Manager ---

async fn secret_value(clients: &AwsClients, id: &str) -> String {
    clients
        .secretsmanager
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .unwrap()
        .secret_string()
        .unwrap()
        .to_owned()
}

async fn describe_secret(
    clients: &AwsClients,
    id: &str,
) -> aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput {
    clients
        .secretsmanager
        .describe_secret()
        .secret_id(id)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_of_another_stack_or_of_nobody_is_left_alone() {
    let (_emu, clients, kinds) = setup().await;
    let secret = kind(&kinds, "aws_secretsmanager_secret");
    let address = "shared.secret.api_key";
    let (ours, theirs) = (in_stack(OURS, address), in_stack(THEIRS, address));
    let name = "acme/api-key";

    let prod = props(json!({ "name": name, "value": "prod-value-7c1e" }));
    let applied = secret.create(&theirs, &prod).await.unwrap();
    let dev = props(json!({ "name": name, "value": "dev-value-93ab", "recovery_window_days": 0 }));
    let message = refusal(secret.create(&ours, &dev).await);
    assert_names_owner(&message, &format!("secret `{name}`"), THEIRS);
    assert!(!message.contains("value-"), "a value leaked: {message}");
    assert_names_owner(&refusal(secret.find(&ours, &dev).await), name, THEIRS);

    let cur = current(&applied.id, &dev, &applied.outputs);
    let message = refusal(
        secret
            .update(&ours, cur, &dev, &["value".to_string()])
            .await,
    );
    assert!(!message.contains("value-"), "a value leaked: {message}");
    refusal(secret.delete(&ours, cur).await);
    let live = describe_secret(&clients, name).await;
    assert!(
        live.deleted_date().is_none(),
        "theirs is not scheduled for deletion"
    );
    let tags = tag_map(
        live.tags()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap())),
    );
    assert_eq!(tags["dagform:stack"], THEIRS);
    assert_eq!(secret_value(&clients, name).await, "prod-value-7c1e");

    // A secret made by hand is not adopted, and its value is not overwritten.
    clients
        .secretsmanager
        .create_secret()
        .name("acme/by-hand")
        .secret_string("by-hand-value-51d0")
        .send()
        .await
        .unwrap();
    let by_hand = props(json!({ "name": "acme/by-hand", "value": "dev-value-93ab" }));
    let message = refusal(secret.create(&ours, &by_hand).await);
    assert!(message.contains("not managed by dagform"), "{message}");
    assert!(!message.contains("value-"), "a value leaked: {message}");
    refusal(secret.find(&ours, &by_hand).await);
    assert_eq!(
        secret_value(&clients, "acme/by-hand").await,
        "by-hand-value-51d0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_create_is_idempotent_and_found_again() {
    let (_emu, clients, kinds) = setup().await;
    let secret = kind(&kinds, "aws_secretsmanager_secret");
    let mut ctx = in_stack(OURS, "shared.secret.token");
    ctx.intent = "create-1".into();
    let desired = props(json!({ "name": "acme/token", "value": "token-value-0f3a" }));
    let applied = secret.create(&ctx, &desired).await.unwrap();

    // The first version carries the attempt's token, so a re-sent create is the same call.
    let live = describe_secret(&clients, &applied.id).await;
    let versions = live.version_ids_to_stages().expect("versions");
    assert!(versions.contains_key(&ctx.client_token(64)), "{versions:?}");
    assert_eq!(secret.create(&ctx, &desired).await.unwrap(), applied);

    assert_eq!(
        secret.find(&ctx, &desired).await.unwrap(),
        Some(applied.clone())
    );
    ctx.superseded = vec![applied.id.clone()];
    assert!(secret.find(&ctx, &desired).await.unwrap().is_none());
}

// --- RDS ---

/// Two subnets of the default VPC, and the VPC, found through the `data_default_vpc` kind.
async fn default_subnets(kinds: &Kinds) -> (String, Vec<String>) {
    let vpc = kind(kinds, "data_default_vpc")
        .create(&op_context("shared.vpc"), &props(json!({})))
        .await
        .unwrap();
    let subnets: Vec<String> = vpc.outputs["subnet_ids"]
        .as_array()
        .unwrap()
        .iter()
        .take(2)
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(subnets.len(), 2);
    (vpc.id, subnets)
}

async fn rds_tags(clients: &AwsClients, arn: &str) -> HashMap<String, String> {
    let out = clients
        .rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .unwrap();
    tag_map(
        out.tag_list()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap())),
    )
}

async fn subnet_group(clients: &AwsClients, name: &str) -> aws_sdk_rds::types::DbSubnetGroup {
    clients
        .rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(name)
        .send()
        .await
        .unwrap()
        .db_subnet_groups()[0]
        .clone()
}

fn rds_tag_list(ctx: &OpContext) -> Vec<aws_sdk_rds::types::Tag> {
    ctx.tag_pairs()
        .iter()
        .map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(*k).value(v).build())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn db_subnet_group_of_another_stack_or_of_nobody_is_left_alone() {
    let (_emu, clients, kinds) = setup().await;
    let (_, subnets) = default_subnets(&kinds).await;
    let groups = kind(&kinds, "aws_db_subnet_group");
    let address = "shared.database.subnet_group";
    let (mut ours, theirs) = (in_stack(OURS, address), in_stack(THEIRS, address));
    let group_props = |name: &str, description: &str| {
        props(json!({ "name": name, "description": description, "subnet_ids": subnets }))
    };

    let prod = group_props("acme-db", "prod database subnets");
    let applied = groups.create(&theirs, &prod).await.unwrap();
    let dev = group_props("acme-db", "dev database subnets");
    let message = refusal(groups.create(&ours, &dev).await);
    assert_names_owner(&message, "DB subnet group `acme-db`", THEIRS);
    assert_names_owner(&refusal(groups.find(&ours, &dev).await), "acme-db", THEIRS);
    let cur = current(&applied.id, &dev, &applied.outputs);
    refusal(
        groups
            .update(&ours, cur, &dev, &["description".to_string()])
            .await,
    );
    refusal(groups.delete(&ours, cur).await);
    let live = subnet_group(&clients, "acme-db").await;
    assert_eq!(
        live.db_subnet_group_description(),
        Some("prod database subnets")
    );
    let tags = rds_tags(&clients, live.db_subnet_group_arn().unwrap()).await;
    assert_eq!(tags["dagform:stack"], THEIRS);

    // A group made by hand is not adopted (nor replaced) either.
    clients
        .rds
        .create_db_subnet_group()
        .db_subnet_group_name("by-hand")
        .db_subnet_group_description("made by hand")
        .set_subnet_ids(Some(subnets.clone()))
        .send()
        .await
        .unwrap();
    let by_hand = group_props("by-hand", "dev database subnets");
    let message = refusal(groups.create(&ours, &by_hand).await);
    assert!(message.contains("not managed by dagform"), "{message}");
    refusal(groups.find(&ours, &by_hand).await);
    let live = subnet_group(&clients, "by-hand").await;
    assert_eq!(live.db_subnet_group_description(), Some("made by hand"));

    // Ours is found again after a crash; a replaced one awaiting deletion is not.
    let mine = group_props("acme-dev-db", "dev database subnets");
    let applied = groups.create(&ours, &mine).await.unwrap();
    assert_eq!(
        groups.find(&ours, &mine).await.unwrap(),
        Some(applied.clone())
    );
    assert_eq!(groups.create(&ours, &mine).await.unwrap(), applied);
    ours.superseded = vec![applied.id.clone()];
    assert!(groups.find(&ours, &mine).await.unwrap().is_none());
}

async fn user_parameters(clients: &AwsClients, group: &str) -> HashMap<String, String> {
    clients
        .rds
        .describe_db_parameters()
        .db_parameter_group_name(group)
        .source("user")
        .send()
        .await
        .unwrap()
        .parameters()
        .iter()
        .map(|p| {
            (
                p.parameter_name().unwrap().to_owned(),
                p.parameter_value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn parameter_group_props(name: &str, force_ssl: &str) -> Properties {
    props(json!({
        "name": name,
        "family": "postgres16",
        "description": "acme postgres settings",
        "parameters": { "rds.force_ssl": force_ssl },
    }))
}

#[tokio::test(flavor = "multi_thread")]
async fn db_parameter_group_of_another_stack_is_left_alone_and_ours_is_finished() {
    let (_emu, clients, kinds) = setup().await;
    let params = kind(&kinds, "aws_db_parameter_group");
    let address = "shared.database.parameters";
    let (mut ours, theirs) = (in_stack(OURS, address), in_stack(THEIRS, address));

    let prod = parameter_group_props("acme-postgres16", "1");
    let applied = params.create(&theirs, &prod).await.unwrap();
    let dev = parameter_group_props("acme-postgres16", "0");
    let message = refusal(params.create(&ours, &dev).await);
    assert_names_owner(&message, "DB parameter group `acme-postgres16`", THEIRS);
    assert_names_owner(
        &refusal(params.find(&ours, &dev).await),
        "acme-postgres16",
        THEIRS,
    );
    let cur = current(&applied.id, &dev, &applied.outputs);
    refusal(
        params
            .update(&ours, cur, &dev, &["parameters".to_string()])
            .await,
    );
    refusal(params.delete(&ours, cur).await);
    assert_eq!(
        user_parameters(&clients, "acme-postgres16").await["rds.force_ssl"],
        "1"
    );
    let tags = rds_tags(&clients, applied.outputs["arn"].as_str().unwrap()).await;
    assert_eq!(tags["dagform:stack"], THEIRS);

    // A group made by hand is not adopted either.
    clients
        .rds
        .create_db_parameter_group()
        .db_parameter_group_name("by-hand")
        .db_parameter_group_family("postgres16")
        .description("made by hand")
        .send()
        .await
        .unwrap();
    let message = refusal(
        params
            .create(&ours, &parameter_group_props("by-hand", "1"))
            .await,
    );
    assert!(message.contains("not managed by dagform"), "{message}");
    assert!(user_parameters(&clients, "by-hand").await.is_empty());

    // Killed after the create call, before the parameters were set: found, the difference
    // shows in `read`, and a retried create finishes it.
    let mine = parameter_group_props("acme-dev-postgres16", "1");
    clients
        .rds
        .create_db_parameter_group()
        .db_parameter_group_name("acme-dev-postgres16")
        .db_parameter_group_family("postgres16")
        .description("acme postgres settings")
        .set_tags(Some(rds_tag_list(&ours)))
        .send()
        .await
        .unwrap();
    let found: Applied = params.find(&ours, &mine).await.unwrap().expect("adopted");
    assert_eq!(found.id, "acme-dev-postgres16");
    let observed = params
        .read(&ours, current(&found.id, &mine, &found.outputs))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(observed.properties["parameters"], mine["parameters"]);
    assert_eq!(params.create(&ours, &mine).await.unwrap(), found);
    assert_eq!(
        user_parameters(&clients, "acme-dev-postgres16").await["rds.force_ssl"],
        "1"
    );
    ours.superseded = vec![found.id.clone()];
    assert!(params.find(&ours, &mine).await.unwrap().is_none());
}

fn instance_props(subnet_group: &str, security_group: &str, identifier: &str) -> Properties {
    props(json!({
        "identifier": identifier,
        "engine": "postgres",
        "engine_version": "16.3",
        "instance_class": "db.t4g.micro",
        "allocated_storage": 20,
        "db_name": "acme",
        "master_username": "acme_admin",
        "manage_master_user_password": true,
        "db_subnet_group_name": subnet_group,
        "vpc_security_group_ids": [security_group],
        "parameter_group_name": "default.postgres16",
        "publicly_accessible": false,
        "storage_encrypted": true,
        "backup_retention_period": 7,
        "deletion_protection": false,
        "skip_final_snapshot": true,
        "multi_az": false,
    }))
}

async fn db_instance(clients: &AwsClients, id: &str) -> aws_sdk_rds::types::DbInstance {
    clients
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .unwrap()
        .db_instances()[0]
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn db_instance_of_another_stack_is_left_alone_and_ours_is_adopted() {
    let (_emu, clients, kinds) = setup().await;
    let (vpc, subnets) = default_subnets(&kinds).await;
    let subnet_group = kind(&kinds, "aws_db_subnet_group")
        .create(
            &in_stack(OURS, "shared.database.subnet_group"),
            &props(json!({ "name": "acme-db", "description": "d", "subnet_ids": subnets })),
        )
        .await
        .unwrap();
    let subnet_group = subnet_group.outputs["name"].as_str().unwrap();
    let security_group = clients
        .ec2
        .create_security_group()
        .group_name("acme-db")
        .description("acme database")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    let db = kind(&kinds, "aws_db_instance");
    let address = "shared.database.instance";
    let (mut ours, theirs) = (in_stack(OURS, address), in_stack(THEIRS, address));

    let desired = instance_props(subnet_group, &security_group, "acme-db");
    let applied = db.create(&theirs, &desired).await.unwrap();
    let message = refusal(db.create(&ours, &desired).await);
    assert_names_owner(&message, "DB instance `acme-db`", THEIRS);
    assert_names_owner(&refusal(db.find(&ours, &desired).await), "acme-db", THEIRS);
    let cur = current(&applied.id, &desired, &applied.outputs);
    refusal(db.delete(&ours, cur).await);
    let live = db_instance(&clients, "acme-db").await;
    assert_eq!(live.db_instance_status(), Some("available"));
    let tags = tag_map(
        live.tag_list()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap())),
    );
    assert_eq!(tags["dagform:stack"], THEIRS);

    // The create call of ours went through but its wait was cut short: found again.
    let mine = instance_props(subnet_group, &security_group, "acme-dev-db");
    clients
        .rds
        .create_db_instance()
        .db_instance_identifier("acme-dev-db")
        .engine("postgres")
        .engine_version("16.3")
        .db_instance_class("db.t4g.micro")
        .allocated_storage(20)
        .db_name("acme")
        .master_username("acme_admin")
        .manage_master_user_password(true)
        .db_subnet_group_name(subnet_group)
        .vpc_security_group_ids(&security_group)
        .db_parameter_group_name("default.postgres16")
        .publicly_accessible(false)
        .storage_encrypted(true)
        .backup_retention_period(7)
        .set_tags(Some(rds_tag_list(&ours)))
        .send()
        .await
        .unwrap();
    let found = db.find(&ours, &mine).await.unwrap().expect("adopted");
    assert_eq!(found.id, "acme-dev-db");
    assert!(found.outputs["endpoint_address"].is_string(), "{found:?}");
    ours.superseded = vec![found.id.clone()];
    assert!(db.find(&ours, &mine).await.unwrap().is_none());
}
