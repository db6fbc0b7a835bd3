//! The image registry every service's image comes from.

use super::{Expansion, int};
use crate::model::Registry as RegistryConfig;
use dagform_core::typed::{Input, OutputRef, outputs_of};
use dagform_core::{Address, NodeSpec};
use dagform_resources::ecr::{RepositoryProps, RepositorySpec};

/// Where images are pulled from.
pub struct Registry {
    pub repository_uri: OutputRef<String>,
}

/// The stack's ECR repository, named `prefix` unless the configuration names it.
pub fn registry(x: &mut Expansion, prefix: &str, config: &RegistryConfig) -> Registry {
    let address = Address::new("shared.ecr");
    x.add(NodeSpec::of(
        address.clone(),
        RepositorySpec {
            name: config
                .name
                .as_ref()
                .map_or_else(|| prefix.to_owned(), |n| n.get_ref().clone())
                .into(),
            image_tag_mutability: if config.immutable_tags {
                "IMMUTABLE"
            } else {
                "MUTABLE"
            }
            .into(),
            scan_on_push: true.into(),
            force_delete: config.force_delete.into(),
            keep_last_images: config
                .keep_last_images
                .as_ref()
                .map(|n| int(*n.get_ref()).into()),
        },
    ));
    let repository_uri = outputs_of::<RepositoryProps>(&address).repository_uri;
    x.output(
        "ecr_repository_uri",
        "where to push images",
        Input::from(&repository_uri).into_value(),
    );
    Registry { repository_uri }
}
