//! Secrets Manager secrets, holding values resolved before expansion; or existing secrets,
//! only read.

use super::Expansion;
use crate::model::Secret;
use dagform_core::typed::{OutputRef, outputs_of};
use dagform_core::{Address, NodeSpec};
use dagform_resources::secretsmanager::{
    SecretLookupProps, SecretLookupSpec, SecretProps, SecretSpec,
};
use indexmap::IndexMap;
use std::collections::BTreeMap;
use toml::Spanned;

/// Each secret's ARN by key, in the configuration's order.
pub struct Secrets {
    pub arns: IndexMap<String, OutputRef<String>>,
}

/// A node per secret: created with its value from `values` (by key), or looked up by ARN.
/// A value that could not be read is left empty: the blueprint's `missing_secrets` keeps a plan
/// from using it.
pub fn secrets(
    x: &mut Expansion,
    prefix: &str,
    config: &IndexMap<Spanned<String>, Spanned<Secret>>,
    values: &BTreeMap<String, String>,
) -> Secrets {
    let mut arns = IndexMap::new();
    for (key, secret) in config {
        let key = key.get_ref();
        let s = secret.get_ref();
        let address = Address::new(format!("shared.secret.{key}"));
        let arn = if let Some(arn) = &s.arn {
            x.add(NodeSpec::of(
                address.clone(),
                SecretLookupSpec {
                    name_or_arn: arn.get_ref().into(),
                },
            ));
            outputs_of::<SecretLookupProps>(&address).arn
        } else {
            let name = s.name.as_ref().map_or_else(
                || format!("{prefix}/{}", key.to_ascii_lowercase().replace('_', "-")),
                |n| n.get_ref().clone(),
            );
            x.add(NodeSpec::of(
                address.clone(),
                SecretSpec {
                    name: name.into(),
                    description: s.description.as_ref().map(Into::into),
                    value: values.get(key).cloned().unwrap_or_default().into(),
                    kms_key_id: None,
                    recovery_window_days: s
                        .recovery_window_days
                        .as_ref()
                        .map(|w| i64::from(*w.get_ref()).into()),
                },
            ));
            outputs_of::<SecretProps>(&address).arn
        };
        arns.insert(key.clone(), arn);
    }
    Secrets { arns }
}
