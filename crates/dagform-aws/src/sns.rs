//! SNS: the topic alarms notify, and its e-mail subscriptions.

use crate::AwsClients;
use crate::error::{classify, code};
use crate::ownership::{finish_existing, found, gone, pairs, single_attempt, tags_for};
use dagform_core::kind::Owner;
use dagform_core::{Applied, Changes, Current, Kind, Kinds, Observed, OpContext, ResourceError};
use dagform_resources::sns::{SubscriptionOutputs, SubscriptionProps, TopicOutputs, TopicProps};
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    kinds.add(Topic {
        clients: clients.clone(),
    });
    kinds.add(Subscription {
        clients: clients.clone(),
    });
}

/// The name at the end of a topic ARN.
fn topic_name(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

fn topic_object(name: &str) -> String {
    format!("SNS topic `{name}`")
}

/// The tags of topic `arn`; `None` when it is gone.
async fn topic_tags(
    clients: &AwsClients,
    arn: &str,
) -> Result<Option<Vec<aws_sdk_sns::types::Tag>>, ResourceError> {
    let listed = clients
        .sns
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await;
    Ok(found("ListTagsForResource", listed)?.map(|out| out.tags.unwrap_or_default()))
}

/// `aws_sns_topic`: a standard topic, tagged as its stack's.
pub struct Topic {
    clients: Arc<AwsClients>,
}

impl Topic {
    /// The ARN of the topic named `name`, if the account has one in this region.
    async fn arn_of(&self, name: &str) -> Result<Option<String>, ResourceError> {
        let topics: Vec<_> = self
            .clients
            .sns
            .list_topics()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListTopics", e))?;
        Ok(topics
            .into_iter()
            .filter_map(|t| t.topic_arn)
            .find(|arn| topic_name(arn) == name))
    }

    fn outputs(arn: &str) -> TopicOutputs {
        TopicOutputs {
            id: arn.to_owned(),
            arn: arn.to_owned(),
            name: topic_name(arn).to_owned(),
        }
    }

    fn applied(arn: &str) -> Applied {
        Applied::of(Self::outputs(arn))
    }
}

#[async_trait::async_trait]
impl Kind for Topic {
    type Props = TopicProps;

    /// CreateTopic returns an existing topic of the same name rather than failing, so a topic
    /// already there is looked for first and adopted only when its tags say it is this node's.
    async fn create(&self, ctx: &OpContext, p: &TopicProps) -> Result<Applied, ResourceError> {
        if let Some(existing) = self.find(ctx, p).await? {
            return finish_existing(self, ctx, &topic_object(&p.name), existing, p).await;
        }
        let created = self
            .clients
            .sns
            .create_topic()
            .name(&p.name)
            .set_tags(Some(tags_for(ctx, Some(&p.name))))
            .customize()
            .config_override(single_attempt::sns())
            .send()
            .await
            .map_err(|e| classify("CreateTopic", e))?;
        let arn = created
            .topic_arn()
            .ok_or_else(|| ResourceError::failed("CreateTopic returned no ARN"))?;
        Ok(Self::applied(arn))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let got = self
            .clients
            .sns
            .get_topic_attributes()
            .topic_arn(current.id)
            .send()
            .await;
        if found("GetTopicAttributes", got)?.is_none() {
            return Ok(None);
        }
        let props = TopicProps {
            name: topic_name(current.id).to_owned(),
        };
        Ok(Some(Observed::of(&props, Self::outputs(current.id))))
    }

    /// Only the name, which cannot change in place.
    async fn update(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
        _p: &TopicProps,
        _changed: &Changes<TopicProps>,
    ) -> Result<Applied, ResourceError> {
        Ok(Self::applied(current.id))
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let Some(tags) = topic_tags(&self.clients, current.id).await? else {
            return Ok(());
        };
        ctx.require_not_foreign(&topic_object(topic_name(current.id)), pairs(&tags))?;
        let deleted = self
            .clients
            .sns
            .delete_topic()
            .topic_arn(current.id)
            .send()
            .await;
        gone("DeleteTopic", deleted)
    }

    async fn find(
        &self,
        ctx: &OpContext,
        p: &TopicProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let Some(arn) = self.arn_of(&p.name).await? else {
            return Ok(None);
        };
        let Some(tags) = topic_tags(&self.clients, &arn).await? else {
            return Ok(None);
        };
        ctx.require_ours(&topic_object(&p.name), pairs(&tags))?;
        if ctx.superseded.contains(&arn) {
            return Ok(None);
        }
        Ok(Some(Self::applied(&arn)))
    }
}

/// `aws_sns_topic_subscription`: an e-mail address subscribed to a topic. Subscriptions take
/// no tags: whose one is, is whose its topic is.
pub struct Subscription {
    clients: Arc<AwsClients>,
}

/// What ListSubscriptionsByTopic shows for a subscription awaiting its confirmation link.
const PENDING: &str = "PendingConfirmation";

impl Subscription {
    /// The topic's subscription for `protocol` and `endpoint`; `None` when it or its topic is
    /// gone. A pending one's ARN reads `PendingConfirmation`.
    async fn listed(
        &self,
        topic_arn: &str,
        protocol: &str,
        endpoint: &str,
    ) -> Result<Option<aws_sdk_sns::types::Subscription>, ResourceError> {
        let listed: Result<Vec<_>, _> = self
            .clients
            .sns
            .list_subscriptions_by_topic()
            .topic_arn(topic_arn)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await;
        let Some(subscriptions) = found("ListSubscriptionsByTopic", listed)? else {
            return Ok(None);
        };
        Ok(subscriptions
            .into_iter()
            .find(|s| s.protocol() == Some(protocol) && s.endpoint() == Some(endpoint)))
    }

    fn outputs(arn: &str, pending: bool) -> SubscriptionOutputs {
        SubscriptionOutputs {
            id: arn.to_owned(),
            arn: arn.to_owned(),
            pending_confirmation: pending,
        }
    }

    fn applied(arn: &str, pending: bool) -> Applied {
        Applied::of(Self::outputs(arn, pending))
    }

    /// Whether topic `topic_arn` still exists; an error when it is another stack's: a
    /// subscription belongs to whoever owns its topic, and this stack only subscribes to, or
    /// unsubscribes from, topics of its own (any of its addresses) or untagged ones it records.
    async fn topic_not_foreign(
        &self,
        ctx: &OpContext,
        topic_arn: &str,
    ) -> Result<bool, ResourceError> {
        let Some(tags) = topic_tags(&self.clients, topic_arn).await? else {
            return Ok(false);
        };
        match ctx.owner(pairs(&tags)) {
            owner @ Owner::OtherStack { .. } => {
                Err(ctx.not_owned(&topic_object(topic_name(topic_arn)), &owner))
            }
            _ => Ok(true),
        }
    }
}

#[async_trait::async_trait]
impl Kind for Subscription {
    type Props = SubscriptionProps;

    /// Subscribe is idempotent for the same topic, protocol and endpoint. With
    /// ReturnSubscriptionArn AWS gives the ARN at once, even while the address has not
    /// confirmed yet (it then receives nothing until it does); the emulator confirms at once.
    async fn create(
        &self,
        ctx: &OpContext,
        p: &SubscriptionProps,
    ) -> Result<Applied, ResourceError> {
        if !self.topic_not_foreign(ctx, &p.topic_arn).await? {
            return Err(ResourceError::Transient(format!(
                "topic {} not visible yet",
                p.topic_arn
            )));
        }
        let subscribed = self
            .clients
            .sns
            .subscribe()
            .topic_arn(&p.topic_arn)
            .protocol(&p.protocol)
            .endpoint(&p.endpoint)
            .return_subscription_arn(true)
            .send()
            .await
            .map_err(|e| classify("Subscribe", e))?;
        let arn = subscribed
            .subscription_arn()
            .ok_or_else(|| ResourceError::failed("Subscribe returned no ARN"))?;
        let pending = self
            .listed(&p.topic_arn, &p.protocol, &p.endpoint)
            .await?
            .is_some_and(|s| s.subscription_arn() == Some(PENDING));
        Ok(Self::applied(arn, pending))
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        let Ok(p) = serde_json::from_value::<SubscriptionProps>(serde_json::Value::Object(
            current.properties.clone(),
        )) else {
            return Ok(None);
        };
        let Some(live) = self.listed(&p.topic_arn, &p.protocol, &p.endpoint).await? else {
            return Ok(None);
        };
        let pending = live.subscription_arn() == Some(PENDING);
        Ok(Some(Observed::of(&p, Self::outputs(current.id, pending))))
    }

    /// Every property is create-only.
    async fn update(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
        _p: &SubscriptionProps,
        _changed: &Changes<SubscriptionProps>,
    ) -> Result<Applied, ResourceError> {
        let pending = current
            .outputs
            .get("pending_confirmation")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        Ok(Self::applied(current.id, pending))
    }

    /// A pending subscription cannot be unsubscribed (AWS expires it after three days, and
    /// deleting its topic removes it): that refusal counts as done.
    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        let topic = current
            .properties
            .get("topic_arn")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !topic.is_empty() && !self.topic_not_foreign(ctx, &topic).await? {
            return Ok(());
        }
        let unsubscribed = self
            .clients
            .sns
            .unsubscribe()
            .subscription_arn(current.id)
            .send()
            .await;
        match unsubscribed {
            Err(e) if code(&e) == Some("InvalidParameter") => Ok(()),
            other => gone("Unsubscribe", other),
        }
    }
}
