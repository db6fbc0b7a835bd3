//! `aws_ecs_cluster`.

use super::{has_address_tag, tags, valid_name};
use crate::AwsClients;
use crate::error::{classify, code, is_not_found, parse};
use aws_sdk_ecs::types::{Cluster, ClusterField, ClusterSetting, ClusterSettingName};
use dagform_core::{
    Applied, Current, Observed, OpContext, Properties, ResourceError, ResourceKind,
};
use serde::Deserialize;
use std::sync::Arc;

/// `aws_ecs_cluster`: a cluster, with Container Insights on or off.
pub struct EcsCluster {
    clients: Arc<AwsClients>,
}

impl EcsCluster {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    /// The cluster, or `None` when it is missing or INACTIVE (deleted clusters linger as
    /// INACTIVE for a while).
    async fn describe(
        &self,
        cluster: &str,
        field: ClusterField,
    ) -> Result<Option<Cluster>, ResourceError> {
        let out = match self
            .clients
            .ecs
            .describe_clusters()
            .clusters(cluster)
            .include(field)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(classify("DescribeClusters", e)),
        };
        Ok(out
            .clusters()
            .iter()
            .find(|c| c.status() != Some("INACTIVE"))
            .cloned())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterProps {
    name: String,
    container_insights: bool,
}

impl ClusterProps {
    fn from(props: &Properties) -> Result<Self, ResourceError> {
        let p: Self = parse(props)?;
        if !valid_name(&p.name) {
            return Err(ResourceError::invalid(format!(
                "cluster name `{}` must be 1-255 letters, digits, hyphens or underscores",
                p.name
            )));
        }
        Ok(p)
    }

    fn insights_setting(&self) -> ClusterSetting {
        ClusterSetting::builder()
            .name(ClusterSettingName::ContainerInsights)
            .value(if self.container_insights {
                "enabled"
            } else {
                "disabled"
            })
            .build()
    }
}

fn applied(cluster: &Cluster) -> Applied {
    let arn = cluster.cluster_arn().unwrap_or_default();
    Applied::new(arn)
        .output("arn", arn)
        .output("name", cluster.cluster_name().unwrap_or_default())
}

#[async_trait::async_trait]
impl ResourceKind for EcsCluster {
    fn name(&self) -> &'static str {
        "aws_ecs_cluster"
    }

    fn forces_replacement(&self, property: &str) -> bool {
        property == "name"
    }

    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = ClusterProps::from(props)?;
        let out = self
            .clients
            .ecs
            .create_cluster()
            .cluster_name(&p.name)
            .settings(p.insights_setting())
            .set_tags(Some(tags(ctx, Some(&p.name))))
            .send()
            .await
            .map_err(|e| classify("CreateCluster", e))?;
        let cluster = out
            .cluster()
            .ok_or_else(|| ResourceError::failed("CreateCluster returned no cluster"))?;
        Ok(applied(cluster))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        // Real ECS returns settings only when asked for them.
        let Some(cluster) = self.describe(current.id, ClusterField::Settings).await? else {
            return Ok(None);
        };
        let mut properties = Properties::new();
        properties.insert(
            "name".into(),
            cluster.cluster_name().unwrap_or_default().into(),
        );
        if let Some(setting) = cluster
            .settings()
            .iter()
            .find(|s| s.name() == Some(&ClusterSettingName::ContainerInsights))
        {
            // `enhanced` is Container Insights with more metrics: still on.
            let on = matches!(setting.value(), Some("enabled" | "enhanced"));
            properties.insert("container_insights".into(), on.into());
        }
        Ok(Some(Observed {
            properties,
            outputs: applied(&cluster).outputs,
        }))
    }

    async fn update(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p = ClusterProps::from(desired)?;
        if changed.iter().any(|c| c == "container_insights") {
            // UpdateCluster takes the same settings as UpdateClusterSettings, and the emulator
            // only implements the former.
            self.clients
                .ecs
                .update_cluster()
                .cluster(current.id)
                .settings(p.insights_setting())
                .send()
                .await
                .map_err(|e| classify("UpdateCluster", e))?;
        }
        let cluster = self
            .describe(current.id, ClusterField::Settings)
            .await?
            .ok_or_else(|| ResourceError::failed(format!("cluster {} is gone", current.id)))?;
        Ok(applied(&cluster))
    }

    async fn delete(&self, _ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        match self
            .clients
            .ecs
            .delete_cluster()
            .cluster(current.id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // Services or tasks still draining out of the cluster: retry until they are gone.
            Err(e)
                if matches!(
                    code(&e),
                    Some(
                        "ClusterContainsServicesException"
                            | "ClusterContainsTasksException"
                            | "UpdateInProgressException"
                    )
                ) =>
            {
                Err(ResourceError::Transient(
                    classify("DeleteCluster", e).to_string(),
                ))
            }
            Err(e) => Err(classify("DeleteCluster", e)),
        }
    }

    /// Adopts an active cluster of this name only if it carries this node's address tag.
    async fn find(
        &self,
        ctx: &OpContext,
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = ClusterProps::from(props)?;
        Ok(self
            .describe(&p.name, ClusterField::Tags)
            .await?
            .filter(|c| has_address_tag(c.tags(), ctx))
            .map(|c| applied(&c)))
    }
}
