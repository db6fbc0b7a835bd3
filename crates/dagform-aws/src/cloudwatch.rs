//! CloudWatch: metric alarms that notify a topic.

use crate::AwsClients;
use crate::clients::{by_id, each_item};
use crate::error::classify;
use crate::ownership::{finish_existing, found, gone, pairs, tags_for};
use aws_sdk_cloudwatch::operation::put_metric_alarm::builders::PutMetricAlarmFluentBuilder;
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricAlarm, MetricDataQuery, MetricStat, Statistic,
};
use dagform_core::{Applied, Changes, Current, Kind, Kinds, Observed, OpContext, ResourceError};
use dagform_resources::cloudwatch::{
    MetricAlarmOutputs, MetricAlarmProps, PART_QUERY, PERCENT_QUERY, WHOLE_QUERY, dimension_value,
    percent_expression,
};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn register(kinds: &mut Kinds, clients: &Arc<AwsClients>) {
    kinds.add(MetricAlarmKind {
        clients: clients.clone(),
    });
}

/// DescribeAlarms takes at most 100 names per call.
const ALARMS_PER_CALL: usize = 100;

fn object(name: &str) -> String {
    format!("alarm `{name}`")
}

/// `aws_cloudwatch_metric_alarm`: a standard alarm on one metric.
pub struct MetricAlarmKind {
    clients: Arc<AwsClients>,
}

impl MetricAlarmKind {
    async fn describe(&self, names: &[&str]) -> Result<Vec<MetricAlarm>, ResourceError> {
        let out = self
            .clients
            .cloudwatch
            .describe_alarms()
            .set_alarm_names(Some(names.iter().map(|n| (*n).to_owned()).collect()))
            .max_records(ALARMS_PER_CALL as i32)
            .send()
            .await
            .map_err(|e| classify("DescribeAlarms", e))?;
        Ok(out.metric_alarms.unwrap_or_default())
    }

    async fn one(&self, name: &str) -> Result<Option<MetricAlarm>, ResourceError> {
        Ok(self
            .describe(&[name])
            .await?
            .into_iter()
            .find(|a| a.alarm_name() == Some(name)))
    }

    /// The alarm's tags; `None` when it is gone.
    async fn tags(
        &self,
        arn: &str,
    ) -> Result<Option<Vec<aws_sdk_cloudwatch::types::Tag>>, ResourceError> {
        let listed = self
            .clients
            .cloudwatch
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await;
        Ok(found("ListTagsForResource", listed)?.map(|o| o.tags.unwrap_or_default()))
    }

    /// PutMetricAlarm creates the alarm or overwrites all of it; tags are taken only when it
    /// creates.
    async fn put(&self, ctx: &OpContext, p: &MetricAlarmProps) -> Result<Applied, ResourceError> {
        let put = self
            .clients
            .cloudwatch
            .put_metric_alarm()
            .alarm_name(&p.name)
            .alarm_description(&p.description)
            .evaluation_periods(p.evaluation_periods)
            .threshold(p.threshold)
            .comparison_operator(ComparisonOperator::from(p.comparison_operator.as_str()))
            .treat_missing_data(&p.treat_missing_data)
            .actions_enabled(true)
            .set_alarm_actions(Some(p.alarm_actions.clone()))
            .set_ok_actions(Some(p.ok_actions.clone()))
            .set_tags(Some(tags_for(ctx, None)));
        with_metric(put, p)
            .send()
            .await
            .map_err(|e| classify("PutMetricAlarm", e))?;
        let alarm = self
            .one(&p.name)
            .await?
            .ok_or_else(|| ResourceError::Transient(format!("alarm {} not visible yet", p.name)))?;
        Ok(applied(&alarm))
    }

    /// The live alarm a recorded resource may change or delete.
    async fn not_foreign(
        &self,
        ctx: &OpContext,
        name: &str,
    ) -> Result<Option<MetricAlarm>, ResourceError> {
        let Some(alarm) = self.one(name).await? else {
            return Ok(None);
        };
        let Some(tags) = self.tags(alarm.alarm_arn().unwrap_or_default()).await? else {
            return Ok(None);
        };
        ctx.require_not_foreign(&object(name), pairs(&tags))?;
        Ok(Some(alarm))
    }
}

fn dimensions(p: &MetricAlarmProps) -> Vec<Dimension> {
    p.dimensions
        .iter()
        .map(|(k, v)| {
            Dimension::builder()
                .name(k)
                .value(dimension_value(v))
                .build()
        })
        .collect()
}

/// What the alarm watches: its one metric, or the queries of a percentage.
fn with_metric(
    put: PutMetricAlarmFluentBuilder,
    p: &MetricAlarmProps,
) -> PutMetricAlarmFluentBuilder {
    let Some(whole) = &p.percent_of else {
        return put
            .namespace(&p.namespace)
            .metric_name(&p.metric_name)
            .set_dimensions(Some(dimensions(p)))
            .statistic(Statistic::from(p.statistic.as_str()))
            .period(p.period);
    };
    let stat = |id: &str, metric: &str| {
        MetricDataQuery::builder()
            .id(id)
            .return_data(false)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace(&p.namespace)
                            .metric_name(metric)
                            .set_dimensions(Some(dimensions(p)))
                            .build(),
                    )
                    .period(p.period)
                    .stat(&p.statistic)
                    .build(),
            )
            .build()
    };
    put.metrics(stat(PART_QUERY, &p.metric_name))
        .metrics(stat(WHOLE_QUERY, whole))
        .metrics(
            MetricDataQuery::builder()
                .id(PERCENT_QUERY)
                .expression(percent_expression())
                .label(format!("{} as % of {whole}", p.metric_name))
                .return_data(true)
                .build(),
        )
}

/// The metric a live alarm watches: its own fields, or those of a percentage's queries.
struct Watched<'a> {
    namespace: &'a str,
    metric_name: &'a str,
    dimensions: &'a [Dimension],
    statistic: String,
    period: i32,
    percent_of: Option<String>,
}

fn watched(alarm: &MetricAlarm) -> Watched<'_> {
    let query = |id: &str| {
        alarm
            .metrics()
            .iter()
            .find(|q| q.id() == Some(id))
            .and_then(|q| q.metric_stat())
    };
    match (query(PART_QUERY), query(WHOLE_QUERY)) {
        (Some(part), Some(whole)) => {
            let metric = part.metric();
            Watched {
                namespace: metric.and_then(|m| m.namespace()).unwrap_or_default(),
                metric_name: metric.and_then(|m| m.metric_name()).unwrap_or_default(),
                dimensions: metric.map(|m| m.dimensions()).unwrap_or_default(),
                statistic: part.stat().unwrap_or_default().to_owned(),
                period: part.period().unwrap_or_default(),
                percent_of: whole
                    .metric()
                    .and_then(|m| m.metric_name())
                    .map(str::to_owned),
            }
        }
        _ => Watched {
            namespace: alarm.namespace().unwrap_or_default(),
            metric_name: alarm.metric_name().unwrap_or_default(),
            dimensions: alarm.dimensions(),
            statistic: alarm
                .statistic()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            period: alarm.period().unwrap_or_default(),
            percent_of: None,
        },
    }
}

fn outputs(alarm: &MetricAlarm) -> MetricAlarmOutputs {
    let name = alarm.alarm_name().unwrap_or_default().to_owned();
    MetricAlarmOutputs {
        id: name.clone(),
        arn: alarm.alarm_arn().unwrap_or_default().to_owned(),
        name,
    }
}

fn applied(alarm: &MetricAlarm) -> Applied {
    Applied::of(outputs(alarm))
}

/// A live alarm in the shape of the desired properties. A dimension recorded as an ELB ARN
/// reads back as that ARN when CloudWatch holds its resource part, so it is not drift.
fn observe(alarm: &MetricAlarm, current: Current<'_>) -> Observed {
    let recorded: BTreeMap<String, String> = current
        .properties
        .get("dimensions")
        .and_then(|d| serde_json::from_value(d.clone()).ok())
        .unwrap_or_default();
    let watched = watched(alarm);
    let dimensions = watched
        .dimensions
        .iter()
        .map(|d| {
            let (name, value) = (d.name().unwrap_or_default(), d.value().unwrap_or_default());
            let value = match recorded.get(name) {
                Some(r) if dimension_value(r) == value => r.clone(),
                _ => value.to_owned(),
            };
            (name.to_owned(), value)
        })
        .collect();
    let props = MetricAlarmProps {
        name: alarm.alarm_name().unwrap_or_default().to_owned(),
        description: alarm.alarm_description().unwrap_or_default().to_owned(),
        namespace: watched.namespace.to_owned(),
        metric_name: watched.metric_name.to_owned(),
        dimensions,
        statistic: watched.statistic,
        period: watched.period,
        evaluation_periods: alarm.evaluation_periods().unwrap_or_default(),
        threshold: alarm.threshold().unwrap_or_default(),
        comparison_operator: alarm
            .comparison_operator()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        treat_missing_data: alarm.treat_missing_data().unwrap_or("missing").to_owned(),
        alarm_actions: alarm.alarm_actions().to_vec(),
        ok_actions: alarm.ok_actions().to_vec(),
        percent_of: watched.percent_of,
    };
    Observed::of(&props, outputs(alarm))
}

#[async_trait::async_trait]
impl Kind for MetricAlarmKind {
    type Props = MetricAlarmProps;

    /// Alarm names are unique in the region and PutMetricAlarm would overwrite one already
    /// there: it is adopted only when its tags say it is this node's.
    async fn create(
        &self,
        ctx: &OpContext,
        p: &MetricAlarmProps,
    ) -> Result<Applied, ResourceError> {
        if let Some(existing) = self.find(ctx, p).await? {
            return finish_existing(self, ctx, &object(&p.name), existing, p).await;
        }
        self.put(ctx, p).await
    }

    async fn read(
        &self,
        _ctx: &OpContext,
        current: Current<'_>,
    ) -> Result<Option<Observed>, ResourceError> {
        Ok(self
            .one(current.id)
            .await?
            .map(|alarm| observe(&alarm, current)))
    }

    async fn read_many(
        &self,
        _ctx: &OpContext,
        items: &[Current<'_>],
    ) -> Vec<Result<Option<Observed>, ResourceError>> {
        let names: Vec<&str> = items.iter().map(|c| c.id).collect();
        let found = self
            .describe(&names)
            .await
            .map(|alarms| by_id(alarms, |a| a.alarm_name()));
        each_item(items, found, |alarm, current| {
            Ok(Some(observe(alarm, current)))
        })
    }

    fn read_batch_size(&self) -> usize {
        ALARMS_PER_CALL
    }

    /// PutMetricAlarm replaces the whole definition; the name stays.
    async fn update(
        &self,
        ctx: &OpContext,
        current: Current<'_>,
        p: &MetricAlarmProps,
        _changed: &Changes<MetricAlarmProps>,
    ) -> Result<Applied, ResourceError> {
        if self.not_foreign(ctx, current.id).await?.is_none() {
            return Err(ResourceError::failed(format!(
                "alarm {} is gone",
                current.id
            )));
        }
        self.put(ctx, p).await
    }

    async fn delete(&self, ctx: &OpContext, current: Current<'_>) -> Result<(), ResourceError> {
        if self.not_foreign(ctx, current.id).await?.is_none() {
            return Ok(());
        }
        let deleted = self
            .clients
            .cloudwatch
            .delete_alarms()
            .alarm_names(current.id)
            .send()
            .await;
        gone("DeleteAlarms", deleted)
    }

    async fn find(
        &self,
        ctx: &OpContext,
        p: &MetricAlarmProps,
    ) -> Result<Option<Applied>, ResourceError> {
        let Some(alarm) = self.one(&p.name).await? else {
            return Ok(None);
        };
        let Some(tags) = self.tags(alarm.alarm_arn().unwrap_or_default()).await? else {
            return Ok(None);
        };
        ctx.require_ours(&object(&p.name), pairs(&tags))?;
        if ctx.superseded.contains(&p.name) {
            return Ok(None);
        }
        Ok(Some(applied(&alarm)))
    }
}
