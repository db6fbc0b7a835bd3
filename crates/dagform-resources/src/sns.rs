//! SNS: the topic alarms publish to, and the e-mail addresses subscribed to it.

use dagform_core::ResourceError;
use dagform_derive::{Outputs, Properties};
use serde::{Deserialize, Serialize};

/// `aws_sns_topic`: a standard topic. Its id is its ARN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_sns_topic", outputs = TopicOutputs, check = TopicProps::check)]
pub struct TopicProps {
    #[kind(replace)]
    pub name: String,
}

impl TopicProps {
    fn check(&self) -> Result<(), ResourceError> {
        let ok = (1..=256).contains(&self.name.len())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
        if !ok {
            return Err(ResourceError::invalid(format!(
                "topic name `{}` must be 1-256 letters, digits, `_` or `-`",
                self.name
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct TopicOutputs {
    pub id: String,
    pub arn: String,
    pub name: String,
}

/// `aws_sns_topic_subscription`: an endpoint receiving a topic's messages. Its id is the
/// subscription ARN once confirmed; an e-mail subscription stays `pending confirmation` until
/// its owner clicks the link AWS sends, and is then identified by topic and endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Properties)]
#[serde(deny_unknown_fields)]
#[kind(name = "aws_sns_topic_subscription", outputs = SubscriptionOutputs, check = SubscriptionProps::check)]
pub struct SubscriptionProps {
    #[kind(replace)]
    pub topic_arn: String,
    /// `email` (the only protocol the blueprint uses).
    #[kind(replace)]
    pub protocol: String,
    #[kind(replace)]
    pub endpoint: String,
}

impl SubscriptionProps {
    fn check(&self) -> Result<(), ResourceError> {
        if self.protocol != "email" {
            return Err(ResourceError::invalid(format!(
                "protocol `{}` is not supported (email is)",
                self.protocol
            )));
        }
        if !is_email(&self.endpoint) {
            return Err(ResourceError::invalid(format!(
                "`{}` is not an e-mail address",
                self.endpoint
            )));
        }
        Ok(())
    }
}

/// A plausible e-mail address: one `@`, a local part, and a domain with a dot.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Outputs)]
pub struct SubscriptionOutputs {
    pub id: String,
    /// The subscription ARN, or `pending confirmation` until the address confirms.
    pub arn: String,
    pub pending_confirmation: bool,
}
