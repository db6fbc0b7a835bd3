//! ECR: the image repositories services pull from.

use crate::AwsClients;
use crate::error::{classify, code};
use crate::ownership::{finish_existing, found, gone, pairs, single_attempt, tags_for};
use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability, Repository, Tag};
use dagform_core::{
    Applied, Changes, Current, Kind, Kinds, Observed, OpContext, Properties, ResourceError,
};
use dagform_resources::ecr::{RepositoryField, RepositoryOutputs, RepositoryProps};
use serde_json::{Value as Json, json};
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    kinds.add(EcrRepository::new(clients.clone()));
}

/// `aws_ecr_repository`: a private repository, optionally expiring all but its newest images.
#[derive(Clone)]
pub struct EcrRepository {
    clients: Arc<AwsClients>,
}

/// The description of the one lifecycle rule dagform writes; `read` recognises its own rule by
/// this shape.
const LIFECYCLE_RULE: &str = "expire all but the last N images";

fn mutability(p: &RepositoryProps) -> ImageTagMutability {
    ImageTagMutability::from(p.image_tag_mutability.as_str())
}

/// The lifecycle policy that keeps the `n` newest images, tagged or not.
fn lifecycle_policy(n: i32) -> String {
    json!({
        "rules": [{
            "rulePriority": 1,
            "description": LIFECYCLE_RULE,
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": n,
            },
            "action": { "type": "expire" },
        }]
    })
    .to_string()
}

/// The image count of a policy dagform wrote, or the whole policy when it is anything else (so
/// a hand-made policy shows up as drift instead of being mistaken for "no policy").
fn observed_keep_last(policy_text: &str) -> Json {
    let Ok(policy) = serde_json::from_str::<Json>(policy_text) else {
        return Json::String(policy_text.to_owned());
    };
    let ours = policy["rules"]
        .as_array()
        .filter(|r| r.len() == 1)
        .and_then(|rules| {
            let rule = &rules[0];
            let selection = &rule["selection"];
            (selection["tagStatus"] == "any"
                && selection["countType"] == "imageCountMoreThan"
                && rule["action"]["type"] == "expire")
                .then(|| selection["countNumber"].clone())
                .filter(Json::is_i64)
        });
    ours.unwrap_or(policy)
}

fn outputs(repo: &Repository) -> RepositoryOutputs {
    let name = repo.repository_name().unwrap_or_default();
    RepositoryOutputs {
        id: name.to_owned(),
        arn: repo.repository_arn().unwrap_or_default().to_owned(),
        name: name.to_owned(),
        repository_uri: repo.repository_uri().unwrap_or_default().to_owned(),
    }
}

fn applied(repo: &Repository) -> Applied {
    Applied::of(outputs(repo))
}

/// How errors name a repository.
fn object(name: &str) -> String {
    format!("repository `{name}`")
}

impl EcrRepository {
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    async fn describe(&self, name: &str) -> Result<Option<Repository>, ResourceError> {
        let described = self
            .clients
            .ecr
            .describe_repositories()
            .repository_names(name)
            .send()
            .await;
        Ok(found("DescribeRepositories", described)?
            .and_then(|out| out.repositories().first().cloned()))
    }

    /// The repository named `name` with its tags, which DescribeRepositories does not report:
    /// `None` when it is gone, by either call.
    async fn tagged(&self, name: &str) -> Result<Option<(Repository, Vec<Tag>)>, ResourceError> {
        let Some(repo) = self.describe(name).await? else {
            return Ok(None);
        };
        let listed = self
            .clients
            .ecr
            .list_tags_for_resource()
            .resource_arn(repo.repository_arn().unwrap_or_default())
            .send()
            .await;
        Ok(found("ListTagsForResource", listed)?.map(|out| (repo, out.tags.unwrap_or_default())))
    }

    /// The live repository `name` a recorded resource may change or delete: `None` when it is
    /// gone, `NotOwned` when it carries another stack's or resource's tags.
    async fn not_foreign(
        &self,
        ctx: &OpContext,
        name: &str,
    ) -> Result<Option<Repository>, ResourceError> {
        let Some((repo, tags)) = self.tagged(name).await? else {
            return Ok(None);
        };
        ctx.require_not_foreign(&object(name), pairs(&tags))?;
        Ok(Some(repo))
    }

    /// How many images the repository holds (each digest once, however many tags it has).
    async fn image_count(&self, name: &str) -> Result<usize, ResourceError> {
        let images: Vec<_> = self
            .clients
            .ecr
            .describe_images()
            .repository_name(name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeImages", e))?;
        let digests: std::collections::HashSet<_> =
            images.iter().filter_map(|i| i.image_digest()).collect();
        Ok(digests.len())
    }

    async fn set_lifecycle(&self, name: &str, keep_last: Option<i32>) -> Result<(), ResourceError> {
        let ecr = &self.clients.ecr;
        match keep_last {
            Some(n) => {
                ecr.put_lifecycle_policy()
                    .repository_name(name)
                    .lifecycle_policy_text(lifecycle_policy(n))
                    .send()
                    .await
                    .map_err(|e| classify("PutLifecyclePolicy", e))?;
            }
            None => {
                // LifecyclePolicyNotFoundException: nothing to remove.
                let deleted = ecr
                    .delete_lifecycle_policy()
                    .repository_name(name)
                    .send()
                    .await;
                gone("DeleteLifecyclePolicy", deleted)?;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Kind for EcrRepository {
    type Props = RepositoryProps;

    /// Repository names are unique in the registry: a name already taken is adopted only when
    /// its tags say it is this node's.
    async fn create(&self, ctx: &OpContext, p: &RepositoryProps) -> Result<Applied, ResourceError> {
        let created = self
            .clients
            .ecr
            .create_repository()
            .repository_name(&p.name)
            .image_tag_mutability(mutability(p))
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(p.scan_on_push)
                    .build(),
            )
            .set_tags(Some(tags_for(ctx, Some(&p.name))))
            .customize()
            .config_override(single_attempt::ecr())
            .send()
            .await;
        let out = match created {
            Ok(out) => out,
            Err(e) if code(&e) == Some("RepositoryAlreadyExistsException") => {
                return match self.find(ctx, p).await? {
                    Some(existing) => {
                        finish_existing(self, ctx, &object(&p.name), existing, p).await
                    }
                    // Ours, but the replaced repository still awaiting deletion.
                    None => Err(classify("CreateRepository", e)),
                };
            }
            Err(e) => return Err(classify("CreateRepository", e)),
        };
        let repo = out
            .repository()
            .ok_or_else(|| ResourceError::failed("CreateRepository returned no repository"))?;
        if p.keep_last_images.is_some() {
            self.set_lifecycle(&p.name, p.keep_last_images).await?;
        }
        Ok(applied(repo))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Some(repo) = self.describe(current.id).await? else {
            return Ok(None);
        };
        // Built by hand: a policy dagform did not write shows as a whole document.
        let mut properties = Properties::new();
        let mut set = |field: RepositoryField, value: Json| {
            properties.insert(field.as_str().into(), value);
        };
        set(RepositoryField::Name, current.id.into());
        if let Some(m) = repo.image_tag_mutability() {
            set(RepositoryField::ImageTagMutability, m.as_str().into());
        }
        if let Some(scan) = repo.image_scanning_configuration() {
            set(RepositoryField::ScanOnPush, scan.scan_on_push().into());
        }
        let policy = self
            .clients
            .ecr
            .get_lifecycle_policy()
            .repository_name(current.id)
            .send()
            .await;
        let policy = found("GetLifecyclePolicy", policy)?
            .and_then(|out| out.lifecycle_policy_text().map(observed_keep_last));
        let recorded = |field: RepositoryField| current.properties.get(field.as_str());
        match policy {
            Some(v) => set(RepositoryField::KeepLastImages, v),
            None if recorded(RepositoryField::KeepLastImages).is_some() => {
                set(RepositoryField::KeepLastImages, Json::Null)
            }
            None => {}
        }
        // Not a property of the repository: the setting recorded (or asked for) is the one
        // in force, so it never shows as drift.
        if let Some(force) = recorded(RepositoryField::ForceDelete) {
            set(RepositoryField::ForceDelete, force.clone());
        }
        Ok(Some(Observed {
            properties,
            outputs: applied(&repo).outputs,
        }))
    }

    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &RepositoryProps,
        changed: &Changes<RepositoryProps>,
    ) -> Result<Applied, ResourceError> {
        if self.not_foreign(ctx, current.id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "repository {} is gone",
                current.id
            )));
        }
        let ecr = &self.clients.ecr;
        if changed.contains(RepositoryField::ImageTagMutability) {
            ecr.put_image_tag_mutability()
                .repository_name(current.id)
                .image_tag_mutability(mutability(p))
                .send()
                .await
                .map_err(|e| classify("PutImageTagMutability", e))?;
        }
        if changed.contains(RepositoryField::ScanOnPush) {
            ecr.put_image_scanning_configuration()
                .repository_name(current.id)
                .image_scanning_configuration(
                    ImageScanningConfiguration::builder()
                        .scan_on_push(p.scan_on_push)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| classify("PutImageScanningConfiguration", e))?;
        }
        if changed.contains(RepositoryField::KeepLastImages) {
            self.set_lifecycle(current.id, p.keep_last_images).await?;
        }
        // force_delete only matters to `delete`, which reads it from the recorded properties.
        let repo = self
            .describe(current.id)
            .await?
            .ok_or_else(|| ResourceError::failed(format!("repository {} is gone", current.id)))?;
        Ok(applied(&repo))
    }

    /// Images are deleted with their repository only when the configuration allows it;
    /// otherwise a repository still holding images is left as it is.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        if self.not_foreign(ctx, current.id).await?.is_none() {
            return Ok(());
        }
        // Read as recorded, whatever shape an older dagform recorded the rest in: images go
        // only if it said so.
        let force = current
            .properties
            .get(RepositoryField::ForceDelete.as_str())
            .and_then(Json::as_bool)
            .unwrap_or(false);
        if !force {
            let images = self.image_count(current.id).await?;
            if images > 0 {
                return Err(holds_images(current.id, images));
            }
        }
        let deleted = self
            .clients
            .ecr
            .delete_repository()
            .repository_name(current.id)
            .force(force)
            .send()
            .await;
        match deleted {
            // An image pushed since the count above.
            Err(e) if code(&e) == Some("RepositoryNotEmptyException") => Err(holds_images(
                current.id,
                self.image_count(current.id).await?,
            )),
            other => gone("DeleteRepository", other),
        }
    }

    /// The repository of this name, if its tags say it is this node's; a repository of this
    /// name that is anyone else's is an error, since the name cannot be had.
    async fn find(
        &self,
        ctx: &OpContext,
        p: &RepositoryProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let Some((repo, tags)) = self.tagged(&p.name).await? else {
            return Ok(None);
        };
        ctx.require_ours(&object(&p.name), pairs(&tags))?;
        if ctx.superseded.contains(&p.name) {
            return Ok(None);
        }
        Ok(Some(applied(&repo)))
    }
}

/// The refusal to delete a repository whose images the configuration does not let go.
fn holds_images(name: &str, images: usize) -> ResourceError {
    let noun = if images == 1 { "image" } else { "images" };
    ResourceError::failed(format!(
        "repository `{name}` still holds {images} {noun} and was left as it is; delete the \
         images, or set `[registry] force_delete = true` to delete them with the repository"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_lifecycle_policy_reads_back_as_a_count() {
        assert_eq!(observed_keep_last(&lifecycle_policy(10)), json!(10));
        let other = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}}]}"#;
        assert!(observed_keep_last(other).is_object());
    }
}
