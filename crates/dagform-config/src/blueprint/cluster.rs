//! The ECS cluster, and the two roles every task uses: the execution role ECS acts as (pull
//! images, write logs, read the stack's secrets) and the task role the containers act as.

use super::Expansion;
use crate::model::Cluster as ClusterConfig;
use dagform_core::typed::{Input, OutputRef, outputs_of};
use dagform_core::{Address, NodeSpec, Value};
use dagform_resources::ecs::{ClusterProps, ClusterSpec};
use dagform_resources::iam::{RoleProps, RoleSpec};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// The ECS task execution policy AWS manages: pull images, write logs.
pub const TASK_EXECUTION_POLICY: &str =
    "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";

/// What a task definition and a service need of the cluster.
pub struct Cluster {
    pub arn: OutputRef<String>,
    pub execution_role_arn: OutputRef<String>,
    pub task_role_arn: OutputRef<String>,
}

/// The cluster and roles; the execution role may read exactly `secret_arns`, nothing else.
pub fn cluster_and_roles(
    x: &mut Expansion,
    prefix: &str,
    config: &ClusterConfig,
    secret_arns: Vec<OutputRef<String>>,
) -> Cluster {
    let name = config
        .name
        .as_ref()
        .map_or_else(|| format!("{prefix}-cluster"), |n| n.get_ref().clone());
    let address = Address::new("shared.cluster");
    x.add(NodeSpec::of(
        address.clone(),
        ClusterSpec {
            name: name.into(),
            container_insights: config.container_insights.into(),
        },
    ));
    let cluster = outputs_of::<ClusterProps>(&address);
    x.output(
        "cluster_name",
        "the ECS cluster",
        Input::from(cluster.name).into_value(),
    );
    let mut inline_policies = BTreeMap::new();
    if !secret_arns.is_empty() {
        inline_policies.insert("read-secrets".to_owned(), read_secrets_policy(secret_arns));
    }
    let execution_role = role(
        x,
        Address::new("shared.role.task_execution"),
        RoleSpec {
            name: format!("{prefix}-task-execution-role").into(),
            description: Some(
                "Lets ECS pull images, write logs and read the stack's secrets".into(),
            ),
            trusted_service: Some("ecs-tasks.amazonaws.com".into()),
            trusted_web_identity: None,
            managed_policy_arns: vec![TASK_EXECUTION_POLICY].into(),
            inline_policies: inline_policies.into(),
        },
    );
    let task_role = role(
        x,
        Address::new("shared.role.task"),
        RoleSpec {
            name: format!("{prefix}-task-role").into(),
            description: Some("The identity of the stack's application containers".into()),
            trusted_service: Some("ecs-tasks.amazonaws.com".into()),
            trusted_web_identity: None,
            managed_policy_arns: Vec::<String>::new().into(),
            inline_policies: Input::value(BTreeMap::new()),
        },
    );
    Cluster {
        arn: cluster.arn,
        execution_role_arn: execution_role,
        task_role_arn: task_role,
    }
}

/// A role; returns its ARN.
fn role(x: &mut Expansion, address: Address, spec: RoleSpec) -> OutputRef<String> {
    x.add(NodeSpec::of(address.clone(), spec));
    outputs_of::<RoleProps>(&address).arn
}

/// A policy document allowing to read the secrets `arns`, which are other nodes' outputs.
fn read_secrets_policy(arns: Vec<OutputRef<String>>) -> Input<Json> {
    let statement = BTreeMap::from([
        ("Effect".to_owned(), Value::from("Allow")),
        (
            "Action".to_owned(),
            Value::from(vec!["secretsmanager:GetSecretValue"]),
        ),
        (
            "Resource".to_owned(),
            Input::<Vec<String>>::from(arns.into_iter().map(Input::from).collect::<Vec<_>>())
                .into_value(),
        ),
    ]);
    let document = BTreeMap::from([
        ("Version".to_owned(), Value::from("2012-10-17")),
        (
            "Statement".to_owned(),
            Value::List(vec![Value::from(statement)]),
        ),
    ]);
    // A document holding references: the role's parse checks it once they are resolved.
    Input::untyped(Value::from(document))
}
