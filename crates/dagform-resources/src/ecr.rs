//! ECR: the image repositories services pull from.

use dagform_core::ResourceError;
use dagform_derive::{Outputs, Properties};
use serde::{Deserialize, Serialize};

/// `aws_ecr_repository`: a private repository, optionally expiring all but its newest images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_ecr_repository", outputs = RepositoryOutputs, check = RepositoryProps::check)]
pub struct RepositoryProps {
    #[kind(replace)]
    pub name: String,
    /// `MUTABLE` or `IMMUTABLE`.
    pub image_tag_mutability: String,
    pub scan_on_push: bool,
    /// Whether destroying the repository may delete the images it still holds: a dagform
    /// setting (`[registry] force_delete`), not an attribute of the repository.
    pub force_delete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last_images: Option<i32>,
}

impl RepositoryProps {
    fn check(&self) -> Result<(), ResourceError> {
        if !valid_repository_name(&self.name) {
            return Err(ResourceError::invalid(format!(
                "repository name `{}` must be 2-256 characters: lowercase letters and digits, \
                 separated by single `.`, `_`, `-` or `/`",
                self.name
            )));
        }
        if !matches!(self.image_tag_mutability.as_str(), "MUTABLE" | "IMMUTABLE") {
            return Err(ResourceError::invalid(format!(
                "image_tag_mutability must be MUTABLE or IMMUTABLE, not `{}`",
                self.image_tag_mutability
            )));
        }
        if let Some(n) = self.keep_last_images
            && n < 1
        {
            return Err(ResourceError::invalid(format!(
                "keep_last_images must be at least 1, not {n}"
            )));
        }
        Ok(())
    }
}

/// ECR's repository name rule: `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*`.
fn valid_repository_name(name: &str) -> bool {
    (2..=256).contains(&name.len())
        && name.split('/').all(|component| {
            !component.is_empty()
                && component.split(['.', '_', '-']).all(|run| {
                    !run.is_empty()
                        && run
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                })
        })
}

/// The repository's name is its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct RepositoryOutputs {
    pub id: String,
    pub arn: String,
    pub name: String,
    /// Where images are pushed and pulled: `<registry>/<name>`.
    pub repository_uri: String,
}

#[cfg(test)]
mod tests {
    use super::valid_repository_name;

    #[test]
    fn repository_names_follow_ecr_rules() {
        assert!(valid_repository_name("acme/backend-api"));
        assert!(valid_repository_name("a1.b_c-d/e"));
        assert!(!valid_repository_name("a"));
        assert!(!valid_repository_name("Acme"));
        assert!(!valid_repository_name("acme//api"));
        assert!(!valid_repository_name("acme--api"));
        assert!(!valid_repository_name("-acme"));
    }
}
