//! `aws_ecs_cluster`.

use crate::AwsClients;
use crate::error::{classify, code};
use crate::ownership::{found, gone, pairs, tags_for};
use aws_sdk_ecs::types::{Cluster, ClusterField as Include, ClusterSetting, ClusterSettingName};
use dagform_core::{
    Applied, Changes, Current, Kind, KindOutputs, Observed, OpContext, Properties, ResourceError,
};
use dagform_resources::ecs::{ClusterField, ClusterOutputs, ClusterProps};
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
                .include(Include::Settings)
                .include(Include::Tags)
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
            .settings(insights_setting(p))
            .send()
            .await
            .map_err(|e| classify("UpdateCluster", e))?;
        Ok(out.cluster().cloned().unwrap_or(cluster))
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

fn insights_setting(p: &ClusterProps) -> ClusterSetting {
    ClusterSetting::builder()
        .name(ClusterSettingName::ContainerInsights)
        .value(if p.container_insights {
            "enabled"
        } else {
            "disabled"
        })
        .build()
}

fn outputs(cluster: &Cluster) -> ClusterOutputs {
    let arn = cluster.cluster_arn().unwrap_or_default();
    ClusterOutputs {
        id: arn.to_owned(),
        arn: arn.to_owned(),
        name: cluster.cluster_name().unwrap_or_default().to_owned(),
    }
}

fn applied(cluster: &Cluster) -> Applied {
    Applied::of(outputs(cluster))
}

/// A live cluster in the shape of the desired properties; Container Insights only when the
/// cluster reports it.
fn observe(cluster: &Cluster) -> Observed {
    let mut properties = Properties::new();
    properties.insert(
        ClusterField::Name.as_str().into(),
        cluster.cluster_name().unwrap_or_default().into(),
    );
    if let Some(on) = insights(cluster) {
        properties.insert(ClusterField::ContainerInsights.as_str().into(), on.into());
    }
    Observed {
        properties,
        outputs: outputs(cluster).into_outputs(),
    }
}

#[async_trait::async_trait]
impl Kind for EcsCluster {
    type Props = ClusterProps;

    /// CreateCluster answers a name that exists with the existing cluster (and the emulator
    /// replaces it), so the name is looked up first: a cluster of this node is adopted and
    /// brought to the wanted settings, anyone else's is refused.
    async fn create(&self, ctx: &OpContext, p: &ClusterProps) -> Result<Applied, ResourceError> {
        if let Some(existing) = self.describe(&p.name).await? {
            ctx.require_ours(&what(&p.name), pairs(existing.tags()))?;
            return Ok(applied(&self.set_insights(existing, p).await?));
        }
        // Idempotent by name, so an SDK retry cannot make a second cluster: no single attempt.
        let out = self
            .clients
            .ecs
            .create_cluster()
            .cluster_name(&p.name)
            .settings(insights_setting(p))
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
        Ok(self.describe(current.id).await?.as_ref().map(observe))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &ClusterProps,
        changed: &Changes<ClusterProps>,
    ) -> Result<Applied, ResourceError> {
        let cluster = self
            .describe(current.id)
            .await?
            .ok_or_else(|| ResourceError::failed(format!("cluster {} is gone", current.id)))?;
        ctx.require_not_foreign(&what(&p.name), pairs(cluster.tags()))?;
        let cluster = if changed.contains(ClusterField::ContainerInsights) {
            self.set_insights(cluster, p).await?
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
        let result = self
            .clients
            .ecs
            .delete_cluster()
            .cluster(current.id)
            .send()
            .await;
        match result {
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
            result => gone("DeleteCluster", result),
        }
    }

    /// The active cluster of this name when it is this node's; one of anyone else's under the
    /// name is `NotOwned`, as the create would be.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &ClusterProps,
    ) -> Result<Option<Applied>, ResourceError> {
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
