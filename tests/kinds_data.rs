//! Secrets Manager and RDS kinds against a private emulator, verified by reading AWS back with
//! the SDK.

mod support;

use dagform_aws::AwsClients;
use dagform_aws::error::is_not_found;
use dagform_core::state::{fingerprint, redact};
use dagform_core::{Kinds, OpContext, Properties, ResourceError};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use support::{current, kind, op_context, props, setup, without};

fn changed(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

fn is_invalid(result: Result<impl std::fmt::Debug, ResourceError>) -> bool {
    matches!(result, Err(ResourceError::InvalidProperties(_)))
}

fn is_not_owned(result: Result<impl std::fmt::Debug, ResourceError>) -> bool {
    matches!(result, Err(ResourceError::NotOwned(_)))
}

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

fn has_tag<'a>(
    tags: impl IntoIterator<Item = (Option<&'a str>, Option<&'a str>)>,
    key: &str,
    value: &str,
) -> bool {
    tags.into_iter()
        .any(|(k, v)| k == Some(key) && v == Some(value))
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_lifecycle() {
    let (_emu, clients, kinds) = setup().await;
    let secret = kind(&kinds, "aws_secretsmanager_secret");
    assert_eq!(secret.sensitive_properties(), ["value"]);
    let ctx = op_context("shared.secret.api_key");
    let desired = props(json!({
        "name": "acme/api-key",
        "description": "API key of the acme backend",
        "value": "first-value-8f2d",
        "recovery_window_days": 0,
    }));

    // Invalid properties are refused before anything is created, without quoting the value.
    let numeric = props(json!({ "name": "acme/api-key", "value": 987654321 }));
    match secret.create(&ctx, &numeric).await {
        Err(ResourceError::InvalidProperties(m)) => assert!(!m.contains("987654321"), "{m}"),
        other => panic!("expected invalid properties, got {other:?}"),
    }
    for bad in [
        json!({ "name": "acme api key", "value": "x" }),
        json!({ "name": "acme/api-key", "value": "x", "recovery_window_days": 3 }),
        json!({ "name": "acme/api-key", "value": "x", "rotation": true }),
    ] {
        assert!(is_invalid(secret.create(&ctx, &props(bad)).await));
    }
    let err = clients
        .secretsmanager
        .describe_secret()
        .secret_id("acme/api-key")
        .send()
        .await
        .unwrap_err();
    assert!(is_not_found(&err));

    let applied = secret.create(&ctx, &desired).await.unwrap();
    let live = clients
        .secretsmanager
        .describe_secret()
        .secret_id("acme/api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(applied.id, live.arn().unwrap());
    assert_eq!(applied.outputs["arn"], live.arn().unwrap());
    assert_eq!(applied.outputs["name"], "acme/api-key");
    assert_eq!(live.description(), Some("API key of the acme backend"));
    assert!(has_tag(
        live.tags().iter().map(|t| (t.key(), t.value())),
        "dagform:address",
        "shared.secret.api_key"
    ));
    assert_eq!(
        secret_value(&clients, &applied.id).await,
        "first-value-8f2d"
    );

    // The state keeps a fingerprint; read reports the live value as a fingerprint too.
    let recorded = redact(&desired, secret.sensitive_properties());
    assert_eq!(recorded["value"], fingerprint(&json!("first-value-8f2d")));
    let cur = current(&applied.id, &recorded, &applied.outputs);
    let observed = secret.read(&ctx, cur).await.unwrap().unwrap();
    assert_eq!(
        observed.properties,
        without(&recorded, &["recovery_window_days"])
    );
    assert_eq!(observed.outputs, applied.outputs);
    assert!(
        !Json::Object(observed.properties.clone())
            .to_string()
            .contains("first-value")
    );

    // Adopted by its own tags only; a retried create carries on, another resource's is
    // refused as not its own.
    assert_eq!(
        secret.find(&ctx, &desired).await.unwrap().unwrap().id,
        applied.id
    );
    assert!(is_not_owned(
        secret.find(&op_context("someone.else"), &desired).await
    ));
    assert_eq!(secret.create(&ctx, &desired).await.unwrap(), applied);
    assert!(is_not_owned(
        secret.create(&op_context("someone.else"), &desired).await
    ));

    // A new value and description are set in place.
    assert!(secret.forces_replacement("name"));
    assert!(!secret.forces_replacement("value"));
    assert!(!secret.forces_replacement("description"));
    let rotated = props(json!({
        "name": "acme/api-key",
        "description": "API key of the acme backend, rotated",
        "value": "second-value-51c9",
        "recovery_window_days": 0,
    }));
    let after = secret
        .update(&ctx, cur, &rotated, &changed(&["value", "description"]))
        .await
        .unwrap();
    assert_eq!(
        (&after.id, &after.outputs["arn"]),
        (&applied.id, &applied.outputs["arn"])
    );
    assert_eq!(
        secret_value(&clients, &applied.id).await,
        "second-value-51c9"
    );
    let live = clients
        .secretsmanager
        .describe_secret()
        .secret_id(&applied.id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        live.description(),
        Some("API key of the acme backend, rotated")
    );
    // The version the new value made current is recorded, and is the one AWS labels current.
    let version = after.outputs["version_id"].as_str().unwrap();
    assert_ne!(version, applied.outputs["version_id"]);
    assert_eq!(
        live.version_ids_to_stages().unwrap()[version],
        ["AWSCURRENT"]
    );
    let recorded = redact(&rotated, secret.sensitive_properties());
    let cur = current(&applied.id, &recorded, &after.outputs);
    let observed = secret.read(&ctx, cur).await.unwrap().unwrap();
    assert_eq!(
        observed.properties["value"],
        fingerprint(&json!("second-value-51c9"))
    );
    assert_eq!(
        observed.properties,
        without(&recorded, &["recovery_window_days"])
    );

    // The encryption key changes in place, and back to the default when removed.
    let with_key = props(json!({
        "name": "acme/api-key",
        "description": "API key of the acme backend, rotated",
        "value": "second-value-51c9",
        "kms_key_id": "alias/acme-secrets",
        "recovery_window_days": 0,
    }));
    secret
        .update(&ctx, cur, &with_key, &changed(&["kms_key_id"]))
        .await
        .unwrap();
    let live = clients
        .secretsmanager
        .describe_secret()
        .secret_id(&applied.id)
        .send()
        .await
        .unwrap();
    assert_eq!(live.kms_key_id(), Some("alias/acme-secrets"));
    let keyed = redact(&with_key, secret.sensitive_properties());
    let cur_keyed = current(&applied.id, &keyed, &after.outputs);
    assert_eq!(
        secret
            .read(&ctx, cur_keyed)
            .await
            .unwrap()
            .unwrap()
            .properties,
        without(&keyed, &["recovery_window_days"])
    );
    secret
        .update(&ctx, cur_keyed, &rotated, &changed(&["kms_key_id"]))
        .await
        .unwrap();
    assert_eq!(
        secret.read(&ctx, cur).await.unwrap().unwrap().properties,
        without(&recorded, &["recovery_window_days"])
    );
    assert_eq!(
        secret_value(&clients, &applied.id).await,
        "second-value-51c9"
    );

    // A value changed outside dagform shows as changed, by its new version: its value is
    // not read (a deploy identity may not read secret values).
    let by_hand = clients
        .secretsmanager
        .put_secret_value()
        .secret_id(&applied.id)
        .secret_string("changed-by-hand")
        .send()
        .await
        .unwrap();
    let drifted = secret.read(&ctx, cur).await.unwrap().unwrap();
    assert_eq!(
        drifted.properties["value"],
        format!(
            "changed outside dagform (version {})",
            by_hand.version_id().unwrap()
        )
    );
    assert_eq!(drifted.outputs["version_id"], by_hand.version_id().unwrap());
    // A state from before versions were recorded reads the value once, as a fingerprint.
    let mut unversioned = after.outputs.clone();
    unversioned.remove("version_id");
    let legacy = current(&applied.id, &recorded, &unversioned);
    let read = secret.read(&ctx, legacy).await.unwrap().unwrap();
    assert_eq!(
        read.properties["value"],
        fingerprint(&json!("changed-by-hand"))
    );
    assert_eq!(read.outputs["version_id"], by_hand.version_id().unwrap());
    // Provision puts the configured value back, and records its version.
    let restored = secret
        .update(&ctx, cur, &rotated, &changed(&["value"]))
        .await
        .unwrap();
    let cur = current(&applied.id, &recorded, &restored.outputs);
    assert_eq!(
        secret.read(&ctx, cur).await.unwrap().unwrap().properties["value"],
        fingerprint(&json!("second-value-51c9"))
    );

    // recovery_window_days = 0 deletes at once, without a recovery window.
    secret.delete(&ctx, cur).await.unwrap();
    let err = clients
        .secretsmanager
        .describe_secret()
        .secret_id(&applied.id)
        .send()
        .await
        .unwrap_err();
    assert!(is_not_found(&err), "{err:?}");
    secret.delete(&ctx, cur).await.unwrap();
    assert!(secret.read(&ctx, cur).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_scheduled_for_deletion_is_restored_by_its_owner() {
    let (_emu, clients, kinds) = setup().await;
    let secret = kind(&kinds, "aws_secretsmanager_secret");
    let ctx = op_context("shared.secret.token");
    let desired = props(json!({
        "name": "acme/token",
        "value": "token-one",
        "recovery_window_days": 7,
    }));
    let applied = secret.create(&ctx, &desired).await.unwrap();
    let recorded = redact(&desired, secret.sensitive_properties());
    let cur = current(&applied.id, &recorded, &applied.outputs);

    secret.delete(&ctx, cur).await.unwrap();
    let live = clients
        .secretsmanager
        .describe_secret()
        .secret_id(&applied.id)
        .send()
        .await
        .unwrap();
    assert!(live.deleted_date().is_some(), "scheduled for deletion");
    assert!(secret.read(&ctx, cur).await.unwrap().is_none());
    assert!(secret.find(&ctx, &desired).await.unwrap().is_none());
    // Deleting again while it is scheduled is fine.
    secret.delete(&ctx, cur).await.unwrap();

    // Applying again restores the same secret with the new value.
    let again = props(json!({
        "name": "acme/token",
        "value": "token-two",
        "recovery_window_days": 7,
    }));
    let restored = secret.create(&ctx, &again).await.unwrap();
    assert_eq!(restored.id, applied.id);
    let live = clients
        .secretsmanager
        .describe_secret()
        .secret_id(&applied.id)
        .send()
        .await
        .unwrap();
    assert!(live.deleted_date().is_none());
    assert_eq!(secret_value(&clients, &applied.id).await, "token-two");

    // Someone else's secret scheduled for deletion is never restored.
    clients
        .secretsmanager
        .create_secret()
        .name("other/token")
        .secret_string("theirs")
        .send()
        .await
        .unwrap();
    clients
        .secretsmanager
        .delete_secret()
        .secret_id("other/token")
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();
    let theirs = props(json!({ "name": "other/token", "value": "mine" }));
    assert!(is_not_owned(secret.create(&ctx, &theirs).await));
    let live = clients
        .secretsmanager
        .describe_secret()
        .secret_id("other/token")
        .send()
        .await
        .unwrap();
    assert!(live.deleted_date().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_data_source_reads_but_never_deletes() {
    let (_emu, clients, kinds) = setup().await;
    let lookup = kind(&kinds, "data_secretsmanager_secret");
    assert!(lookup.is_data_source());
    let ctx = op_context("shared.existing_secret");
    let arn = clients
        .secretsmanager
        .create_secret()
        .name("prod/db-password")
        .secret_string("existing")
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();

    let by_name = props(json!({ "name_or_arn": "prod/db-password" }));
    let found = lookup.create(&ctx, &by_name).await.unwrap();
    assert_eq!(found.id, arn);
    assert_eq!(found.outputs["arn"], arn.as_str());
    assert_eq!(found.outputs["name"], "prod/db-password");
    let by_arn = props(json!({ "name_or_arn": arn }));
    assert_eq!(lookup.create(&ctx, &by_arn).await.unwrap(), found);

    let cur = current(&found.id, &by_name, &found.outputs);
    let observed = lookup.read(&ctx, cur).await.unwrap().unwrap();
    assert_eq!(observed.properties, by_name);
    assert_eq!(observed.outputs, found.outputs);

    lookup.delete(&ctx, cur).await.unwrap();
    let live = clients
        .secretsmanager
        .describe_secret()
        .secret_id(&arn)
        .send()
        .await
        .unwrap();
    assert!(live.deleted_date().is_none());
    assert_eq!(secret_value(&clients, &arn).await, "existing");

    let missing = props(json!({ "name_or_arn": "prod/nothing" }));
    match lookup.create(&ctx, &missing).await {
        Err(ResourceError::Failed(m)) => assert!(m.contains("does not exist"), "{m}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Two subnets of the default VPC, found through the `data_default_vpc` kind.
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

async fn subnet_group(
    clients: &AwsClients,
    name: &str,
) -> Option<aws_sdk_rds::types::DbSubnetGroup> {
    match clients
        .rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(name)
        .send()
        .await
    {
        Ok(out) => out.db_subnet_groups().first().cloned(),
        Err(e) if is_not_found(&e) => None,
        Err(e) => panic!("{e:?}"),
    }
}

async fn user_parameters(clients: &AwsClients, group: &str) -> BTreeMap<String, String> {
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
                p.parameter_value().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn rds_tags(clients: &AwsClients, arn: &str) -> Vec<(String, String)> {
    clients
        .rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .unwrap()
        .tag_list()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn db_subnet_group_and_parameter_group() {
    let (_emu, clients, kinds) = setup().await;
    let (_, subnets) = default_subnets(&kinds).await;

    let groups = kind(&kinds, "aws_db_subnet_group");
    let ctx = op_context("shared.database.subnet_group");
    let desired = props(json!({
        "name": "acme-db",
        "description": "acme database subnets",
        "subnet_ids": subnets,
    }));
    assert!(is_invalid(
        groups
            .create(
                &ctx,
                &props(json!({ "name": "default", "description": "d", "subnet_ids": subnets }))
            )
            .await
    ));
    let applied = groups.create(&ctx, &desired).await.unwrap();
    assert_eq!(applied.id, "acme-db");
    assert_eq!(applied.outputs["name"], "acme-db");
    let live = subnet_group(&clients, "acme-db").await.unwrap();
    assert_eq!(applied.outputs["arn"], live.db_subnet_group_arn().unwrap());
    assert_eq!(
        live.db_subnet_group_description(),
        Some("acme database subnets")
    );
    let mut live_subnets: Vec<&str> = live
        .subnets()
        .iter()
        .map(|s| s.subnet_identifier().unwrap())
        .collect();
    live_subnets.sort();
    let mut expected: Vec<&str> = subnets.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(live_subnets, expected);
    assert!(
        rds_tags(&clients, live.db_subnet_group_arn().unwrap())
            .await
            .contains(&(
                "dagform:address".into(),
                "shared.database.subnet_group".into()
            ))
    );
    let cur = current(&applied.id, &desired, &applied.outputs);
    let observed = groups.read(&ctx, cur).await.unwrap().unwrap();
    assert_eq!(observed.properties, desired);
    assert_eq!(observed.outputs, applied.outputs);
    assert_eq!(
        groups.find(&ctx, &desired).await.unwrap(),
        Some(applied.clone())
    );
    assert!(is_not_owned(
        groups.find(&op_context("other"), &desired).await
    ));
    assert!(groups.forces_replacement("name"));
    assert!(!groups.forces_replacement("subnet_ids"));
    assert!(!groups.forces_replacement("description"));

    let params = kind(&kinds, "aws_db_parameter_group");
    let pctx = op_context("shared.database.parameters");
    let desired_params = props(json!({
        "name": "acme-postgres16",
        "family": "postgres16",
        "description": "acme postgres settings",
        "parameters": { "rds.force_ssl": "1", "log_min_duration_statement": "500" },
    }));
    assert!(is_invalid(
        params
            .create(
                &pctx,
                &props(json!({
                    "name": "acme--pg", "family": "postgres16", "description": "d",
                    "parameters": {}
                }))
            )
            .await
    ));
    let applied_params = params.create(&pctx, &desired_params).await.unwrap();
    assert_eq!(applied_params.id, "acme-postgres16");
    let live = clients
        .rds
        .describe_db_parameter_groups()
        .db_parameter_group_name("acme-postgres16")
        .send()
        .await
        .unwrap();
    let live = &live.db_parameter_groups()[0];
    assert_eq!(live.db_parameter_group_family(), Some("postgres16"));
    assert_eq!(live.description(), Some("acme postgres settings"));
    assert_eq!(
        applied_params.outputs["arn"],
        live.db_parameter_group_arn().unwrap()
    );
    assert!(
        rds_tags(&clients, live.db_parameter_group_arn().unwrap())
            .await
            .contains(&(
                "dagform:address".into(),
                "shared.database.parameters".into()
            ))
    );
    let set = user_parameters(&clients, "acme-postgres16").await;
    assert_eq!(set["rds.force_ssl"], "1");
    assert_eq!(set["log_min_duration_statement"], "500");

    let pcur = current(&applied_params.id, &desired_params, &applied_params.outputs);
    let observed = params.read(&pctx, pcur).await.unwrap().unwrap();
    assert_eq!(observed.properties, desired_params);
    assert_eq!(observed.outputs, applied_params.outputs);
    assert!(params.forces_replacement("name"));
    assert!(params.forces_replacement("family"));
    assert!(!params.forces_replacement("parameters"));

    // A parameter changes in place.
    let relaxed = props(json!({
        "name": "acme-postgres16",
        "family": "postgres16",
        "description": "acme postgres settings",
        "parameters": { "rds.force_ssl": "0", "log_min_duration_statement": "500" },
    }));
    let after = params
        .update(&pctx, pcur, &relaxed, &changed(&["parameters"]))
        .await
        .unwrap();
    assert_eq!(after, applied_params);
    let set = user_parameters(&clients, "acme-postgres16").await;
    assert_eq!(set["rds.force_ssl"], "0");
    assert_eq!(set["log_min_duration_statement"], "500");
    let pcur = current(&applied_params.id, &relaxed, &applied_params.outputs);
    assert_eq!(
        params.read(&pctx, pcur).await.unwrap().unwrap().properties,
        relaxed
    );

    params.delete(&pctx, pcur).await.unwrap();
    match clients
        .rds
        .describe_db_parameter_groups()
        .db_parameter_group_name("acme-postgres16")
        .send()
        .await
    {
        Ok(out) => assert!(out.db_parameter_groups().is_empty(), "{out:?}"),
        Err(e) => assert!(is_not_found(&e), "{e:?}"),
    }
    params.delete(&pctx, pcur).await.unwrap();
    assert!(params.read(&pctx, pcur).await.unwrap().is_none());

    groups.delete(&ctx, cur).await.unwrap();
    assert!(subnet_group(&clients, "acme-db").await.is_none());
    groups.delete(&ctx, cur).await.unwrap();
    assert!(groups.read(&ctx, cur).await.unwrap().is_none());
}

/// What a database needs around it: a subnet group, a security group, a parameter group.
struct Surroundings {
    subnet_group: String,
    security_group: String,
    parameter_group: String,
}

async fn surroundings(clients: &AwsClients, kinds: &Kinds) -> Surroundings {
    let (vpc, subnets) = default_subnets(kinds).await;
    let subnet_group = kind(kinds, "aws_db_subnet_group")
        .create(
            &op_context("shared.database.subnet_group"),
            &props(json!({
                "name": "acme-db",
                "description": "acme database subnets",
                "subnet_ids": subnets,
            })),
        )
        .await
        .unwrap();
    let parameter_group = kind(kinds, "aws_db_parameter_group")
        .create(
            &op_context("shared.database.parameters"),
            &props(json!({
                "name": "acme-postgres16",
                "family": "postgres16",
                "description": "acme postgres settings",
                "parameters": { "rds.force_ssl": "1" },
            })),
        )
        .await
        .unwrap();
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
    Surroundings {
        subnet_group: subnet_group.outputs["name"].as_str().unwrap().to_owned(),
        security_group,
        parameter_group: parameter_group.outputs["name"].as_str().unwrap().to_owned(),
    }
}

fn instance_props(s: &Surroundings, identifier: &str, extra: Json) -> Properties {
    let mut p = props(json!({
        "identifier": identifier,
        "engine": "postgres",
        "engine_version": "16.3",
        "instance_class": "db.t4g.micro",
        "allocated_storage": 20,
        "storage_type": "gp3",
        "db_name": "acme",
        "master_username": "acme_admin",
        "manage_master_user_password": true,
        "db_subnet_group_name": s.subnet_group,
        "vpc_security_group_ids": [s.security_group],
        "parameter_group_name": s.parameter_group,
        "publicly_accessible": false,
        "storage_encrypted": true,
        "backup_retention_period": 7,
        "deletion_protection": false,
        "skip_final_snapshot": false,
        "multi_az": false,
    }));
    p.extend(props(extra));
    p
}

async fn db_instance(clients: &AwsClients, id: &str) -> Option<aws_sdk_rds::types::DbInstance> {
    match clients
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
    {
        Ok(out) => out.db_instances().first().cloned(),
        Err(e) if is_not_found(&e) => None,
        Err(e) => panic!("{e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn db_instance_lifecycle() {
    let (_emu, clients, kinds) = setup().await;
    let s = surroundings(&clients, &kinds).await;
    let db = kind(&kinds, "aws_db_instance");
    let ctx = op_context("shared.database.instance");

    // Invalid properties are refused before anything is created.
    for extra in [
        json!({ "identifier": "1acme" }),
        json!({ "identifier": "acme--db" }),
        json!({ "identifier": "acme-db-" }),
        json!({ "identifier": "a".repeat(64) }),
        json!({ "allocated_storage": 10 }),
        json!({ "allocated_storage": 70000 }),
        json!({ "backup_retention_period": 36 }),
        json!({ "manage_master_user_password": false }),
        json!({ "master_password": "hunter2" }),
    ] {
        let bad = instance_props(&s, "acme-db", extra.clone());
        assert!(is_invalid(db.create(&ctx, &bad).await), "{extra}");
    }
    assert!(db_instance(&clients, "acme-db").await.is_none());

    let desired = instance_props(&s, "acme-db", json!({}));
    let applied = db.create(&ctx, &desired).await.unwrap();
    assert_eq!(applied.id, "acme-db");
    let live = db_instance(&clients, "acme-db").await.unwrap();
    assert_eq!(live.db_instance_status(), Some("available"));
    assert_eq!(live.engine(), Some("postgres"));
    assert_eq!(live.engine_version(), Some("16.3"));
    assert_eq!(live.db_instance_class(), Some("db.t4g.micro"));
    assert_eq!(live.allocated_storage(), Some(20));
    assert_eq!(live.storage_type(), Some("gp3"));
    assert_eq!(live.db_name(), Some("acme"));
    assert_eq!(live.master_username(), Some("acme_admin"));
    assert_eq!(live.storage_encrypted(), Some(true));
    assert_eq!(live.publicly_accessible(), Some(false));
    assert_eq!(live.backup_retention_period(), Some(7));
    assert_eq!(live.multi_az(), Some(false));
    assert_eq!(live.deletion_protection(), Some(false));
    assert_eq!(
        live.db_subnet_group().unwrap().db_subnet_group_name(),
        Some("acme-db")
    );
    let groups: Vec<&str> = live
        .vpc_security_groups()
        .iter()
        .map(|g| g.vpc_security_group_id().unwrap())
        .collect();
    assert_eq!(groups, [s.security_group.as_str()]);
    let parameter_groups: Vec<&str> = live
        .db_parameter_groups()
        .iter()
        .map(|g| g.db_parameter_group_name().unwrap())
        .collect();
    assert_eq!(parameter_groups, ["acme-postgres16"]);
    assert!(has_tag(
        live.tag_list().iter().map(|t| (t.key(), t.value())),
        "dagform:address",
        "shared.database.instance"
    ));
    let endpoint = live.endpoint().unwrap();
    assert_eq!(applied.outputs["arn"], live.db_instance_arn().unwrap());
    assert_eq!(
        applied.outputs["endpoint_address"],
        endpoint.address().unwrap()
    );
    assert_eq!(applied.outputs["endpoint_port"], endpoint.port().unwrap());
    let secret_arn = live.master_user_secret().unwrap().secret_arn().unwrap();
    assert_eq!(applied.outputs["master_user_secret_arn"], secret_arn);

    let cur = current(&applied.id, &desired, &applied.outputs);
    let observed = db.read(&ctx, cur).await.unwrap().unwrap();
    assert_eq!(
        observed.properties,
        without(&desired, &["skip_final_snapshot"])
    );
    assert_eq!(observed.outputs, applied.outputs);
    assert_eq!(
        db.find(&ctx, &desired).await.unwrap(),
        Some(applied.clone())
    );
    assert!(is_not_owned(db.find(&op_context("other"), &desired).await));
    assert_eq!(db.create(&ctx, &desired).await.unwrap(), applied);
    assert!(is_not_owned(
        db.create(&op_context("other"), &desired).await
    ));

    // An existing database is referenced through the data source, which never changes it.
    let lookup = kind(&kinds, "data_db_instance");
    assert!(lookup.is_data_source());
    let lctx = op_context("customer.acme.database");
    let by_id = props(json!({ "identifier": "acme-db" }));
    let found = lookup.create(&lctx, &by_id).await.unwrap();
    assert_eq!(found.id, "acme-db");
    assert_eq!(found.outputs["arn"], applied.outputs["arn"]);
    assert_eq!(
        found.outputs["endpoint_address"],
        applied.outputs["endpoint_address"]
    );
    assert_eq!(
        found.outputs["endpoint_port"],
        applied.outputs["endpoint_port"]
    );
    assert_eq!(
        found.outputs["security_group_ids"],
        json!([s.security_group])
    );
    lookup
        .delete(&lctx, current(&found.id, &by_id, &found.outputs))
        .await
        .unwrap();
    assert!(db_instance(&clients, "acme-db").await.is_some());
    assert!(matches!(
        lookup
            .create(&lctx, &props(json!({ "identifier": "nothing-here" })))
            .await,
        Err(ResourceError::Failed(_))
    ));

    // The instance class and the backup retention change in place.
    for key in [
        "instance_class",
        "backup_retention_period",
        "parameter_group_name",
    ] {
        assert!(!db.forces_replacement(key), "{key}");
    }
    for key in [
        "identifier",
        "engine",
        "storage_encrypted",
        "db_subnet_group_name",
    ] {
        assert!(db.forces_replacement(key), "{key}");
    }
    let bigger = instance_props(
        &s,
        "acme-db",
        json!({ "instance_class": "db.t4g.small", "backup_retention_period": 14 }),
    );
    let after = db
        .update(
            &ctx,
            cur,
            &bigger,
            &changed(&["instance_class", "backup_retention_period"]),
        )
        .await
        .unwrap();
    assert_eq!(after, applied);
    let live = db_instance(&clients, "acme-db").await.unwrap();
    assert_eq!(live.db_instance_class(), Some("db.t4g.small"));
    assert_eq!(live.backup_retention_period(), Some(14));
    assert_eq!(live.storage_encrypted(), Some(true));
    let cur = current(&applied.id, &bigger, &applied.outputs);
    assert_eq!(
        db.read(&ctx, cur).await.unwrap().unwrap().properties,
        without(&bigger, &["skip_final_snapshot"])
    );

    // Deleted with a final snapshot, then gone.
    db.delete(&ctx, cur).await.unwrap();
    assert!(db_instance(&clients, "acme-db").await.is_none());
    let snapshots = clients
        .rds
        .describe_db_snapshots()
        .db_instance_identifier("acme-db")
        .send()
        .await
        .unwrap();
    assert!(
        snapshots
            .db_snapshots()
            .iter()
            .any(|s| s.snapshot_type() == Some("manual")
                && s.db_snapshot_identifier()
                    .is_some_and(|id| id.starts_with("acme-db-final-"))),
        "{snapshots:?}"
    );
    db.delete(&ctx, cur).await.unwrap();
    assert!(db.read(&ctx, cur).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn db_instance_deletion_protection_blocks_delete() {
    let (_emu, clients, kinds) = setup().await;
    let s = surroundings(&clients, &kinds).await;
    let db = kind(&kinds, "aws_db_instance");
    let ctx: OpContext = op_context("shared.database.instance");
    let protected = instance_props(
        &s,
        "acme-protected",
        json!({ "deletion_protection": true, "skip_final_snapshot": true }),
    );
    let applied = db.create(&ctx, &protected).await.unwrap();
    assert_eq!(
        db_instance(&clients, "acme-protected")
            .await
            .unwrap()
            .deletion_protection(),
        Some(true)
    );

    let cur = current(&applied.id, &protected, &applied.outputs);
    match db.delete(&ctx, cur).await {
        Err(ResourceError::Failed(m)) => {
            assert!(m.contains("deletion_protection = false"), "{m}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(db_instance(&clients, "acme-protected").await.is_some());

    // Turning protection off in place lets the delete through.
    let unprotected = instance_props(
        &s,
        "acme-protected",
        json!({ "deletion_protection": false, "skip_final_snapshot": true }),
    );
    db.update(&ctx, cur, &unprotected, &changed(&["deletion_protection"]))
        .await
        .unwrap();
    assert_eq!(
        db_instance(&clients, "acme-protected")
            .await
            .unwrap()
            .deletion_protection(),
        Some(false)
    );
    let cur = current(&applied.id, &unprotected, &applied.outputs);
    db.delete(&ctx, cur).await.unwrap();
    assert!(db_instance(&clients, "acme-protected").await.is_none());
    // skip_final_snapshot: no final snapshot; the automated backups are kept.
    let snapshots = clients
        .rds
        .describe_db_snapshots()
        .db_instance_identifier("acme-protected")
        .send()
        .await
        .unwrap();
    let types: Vec<&str> = snapshots
        .db_snapshots()
        .iter()
        .map(|s| s.snapshot_type().unwrap())
        .collect();
    assert!(!types.is_empty(), "{snapshots:?}");
    assert!(types.iter().all(|t| *t == "automated"), "{snapshots:?}");
}
