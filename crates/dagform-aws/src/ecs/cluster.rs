//! `aws_ecs_cluster`.

use super::valid_name;
use crate::AwsClients;
use crate::error::{classify, code, is_not_found, parse};
use crate::ownership::{found, pairs, tags_for};
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

    /// The cluster with its settings and tags, or `None` when it is missing or INACTIVE
    /// (deleted clusters linger as INACTIVE for a while).
    async fn describe(&self, cluster: &str) -> Result<Option<Cluster>, ResourceError> {
        let out = found(
            "DescribeClusters",
            self.clients
                .ecs
                .describe_clusters()
                .clusters(cluster)
                // Real ECS returns settings and tags only when asked for them.
                .include(ClusterField::Settings)
                .include(ClusterField::Tags)
                .send()
                .await,
        )?;
        Ok(out.and_then(|out| {
            out.clusters()
                .iter()
                .find(|c| c.status() != Some("INACTIVE"))
                .cloned()
        }))
    }
}

fn what(name: &str) -> String {
    format!("ECS cluster `{name}`")
}

/// Whether Container Insights is on (`enhanced` is Container Insights with more metrics),
/// or `None` when the cluster does not say.
fn insights(cluster: &Cluster) -> Option<bool> {
    cluster
        .settings()
        .iter()
        .find(|s| s.name() == Some(&ClusterSettingName::ContainerInsights))
        .map(|s| matches!(s.value(), Some("enabled" | "enhanced")))
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

impl EcsCluster {
    /// Sets Container Insights as wanted when the cluster has it otherwise, returning the
    /// cluster as it is then.
    async fn set_insights(
        &self,
        cluster: Cluster,
        p: &ClusterProps,
    ) -> Result<Cluster, ResourceError> {
        if insights(&cluster) == Some(p.container_insights) {
            return Ok(cluster);
        }
        // UpdateCluster takes the same settings as UpdateClusterSettings, and the emulator
        // only implements the former.
        let out = self
            .clients
            .ecs
            .update_cluster()
            .cluster(cluster.cluster_arn().unwrap_or_default())
            .settings(p.insights_setting())
            .send()
            .await
            .map_err(|e| classify("UpdateCluster", e))?;
        Ok(out.cluster().cloned().unwrap_or(cluster))
    }
}

#[async_trait::async_trait]
impl ResourceKind for EcsCluster {
    fn name(&self) -> &'static str {
        "aws_ecs_cluster"
    }

    fn forces_replacement(&self, property: &str) -> bool {
        property == "name"
    }

    /// CreateCluster answers a name that exists with the existing cluster (and the emulator
    /// replaces it), so the name is looked up first: a cluster of this node is adopted and
    /// brought to the wanted settings, anyone else's is refused.
    async fn create(&self, ctx: &OpContext, props: &Properties) -> Result<Applied, ResourceError> {
        let p = ClusterProps::from(props)?;
        if let Some(existing) = self.describe(&p.name).await? {
            ctx.require_ours(&what(&p.name), pairs(existing.tags()))?;
            return Ok(applied(&self.set_insights(existing, &p).await?));
        }
        // Idempotent by name, so an SDK retry cannot make a second cluster: no single attempt.
        let out = self
            .clients
            .ecs
            .create_cluster()
            .cluster_name(&p.name)
            .settings(p.insights_setting())
            .set_tags(Some(tags_for(ctx, Some(&p.name))))
            .send()
            .await
            .map_err(|e| classify("CreateCluster", e))?;
        let cluster = out
            .cluster()
            .ok_or_else(|| ResourceError::failed("CreateCluster returned no cluster"))?;
        // Someone else's cluster made between the look-up and the create comes back as is.
        if !cluster.tags().is_empty() {
            ctx.require_ours(&what(&p.name), pairs(cluster.tags()))?;
        }
        Ok(applied(cluster))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some(cluster) = self.describe(current.id).await? else {
            return Ok(None);
        };
        let mut properties = Properties::new();
        properties.insert(
            "name".into(),
            cluster.cluster_name().unwrap_or_default().into(),
        );
        if let Some(on) = insights(&cluster) {
            properties.insert("container_insights".into(), on.into());
        }
        Ok(Some(Observed {
            properties,
            outputs: applied(&cluster).outputs,
        }))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        desired: &Properties,
        changed: &[String],
    ) -> Result<Applied, ResourceError> {
        let p = ClusterProps::from(desired)?;
        let cluster = self
            .describe(current.id)
            .await?
            .ok_or_else(|| ResourceError::failed(format!("cluster {} is gone", current.id)))?;
        ctx.require_not_foreign(&what(&p.name), pairs(cluster.tags()))?;
        let cluster = if changed.iter().any(|c| c == "container_insights") {
            self.set_insights(cluster, &p).await?
        } else {
            cluster
        };
        Ok(applied(&cluster))
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let Some(cluster) = self.describe(current.id).await? else {
            return Ok(());
        };
        ctx.require_not_foreign(
            &what(cluster.cluster_name().unwrap_or(current.id)),
            pairs(cluster.tags()),
        )?;
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

    /// The active cluster of this name when it is this node's; one of anyone else's under the
    /// name is `NotOwned`, as the create would be.
    async fn find(
        &self,
        ctx: &OpContext,
        props: &Properties,
    ) -> Result<Option<Applied>, ResourceError> {
        let p = ClusterProps::from(props)?;
        let Some(cluster) = self.describe(&p.name).await? else {
            return Ok(None);
        };
        ctx.require_ours(&what(&p.name), pairs(cluster.tags()))?;
        let arn = cluster.cluster_arn().unwrap_or_default();
        if ctx.superseded.iter().any(|s| s == arn) {
            return Ok(None);
        }
        Ok(Some(applied(&cluster)))
    }
}
