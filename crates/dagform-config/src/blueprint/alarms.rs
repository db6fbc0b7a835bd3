//! Alarms that page someone: an SNS topic with e-mail subscriptions (or an existing topic),
//! and per target group, service and database the alarms `[alarms.thresholds]` keeps on. With
//! customers every customer's copy has its own, named after the customer.

use super::Expansion;
use super::services::ecs_service_name;
use super::shards::Shard;
use crate::model::{Alarm, Config};
use dagform_core::typed::{Input, OutputRef};
use dagform_core::{Address, NodeSpec};
use dagform_resources::cloudwatch::MetricAlarmSpec;
use dagform_resources::sns::{SubscriptionSpec, TopicSpec};
use std::collections::BTreeMap;

/// One deployment of the services the alarms watch.
pub struct Watched<'a> {
    /// The customer it serves; none without customers.
    pub customer: Option<&'a str>,
    /// The address its nodes live under (`app`, `customer.acme`).
    pub base: String,
    /// What precedes a service's name in the name of its ECS service (`acme-`, or nothing).
    pub service_prefix: String,
    /// The load balancer its target groups are behind.
    pub shard: Shard,
}

/// The alarms of `deployments` and the database, and where they go; nothing without
/// `[alarms]`.
pub fn alarms(x: &mut Expansion, config: &Config, prefix: &str, deployments: &[Watched<'_>]) {
    let Some(settings) = &config.alarms else {
        return;
    };
    let settings = settings.get_ref();
    let topic: Input<String> = match &settings.topic_arn {
        Some(arn) => arn.get_ref().into(),
        None => {
            let address = Address::new("shared.alarm_topic");
            x.add(NodeSpec::of(
                address.clone(),
                TopicSpec {
                    name: format!("{prefix}-alarms").into(),
                },
            ));
            let arn: OutputRef<String> = OutputRef::new(address, "arn");
            for email in &settings.email {
                let email = email.get_ref();
                x.add(NodeSpec::of(
                    format!("shared.alarm_subscription.{}", address_part(email)),
                    SubscriptionSpec {
                        topic_arn: (&arn).into(),
                        protocol: "email".into(),
                        endpoint: email.into(),
                    },
                ));
            }
            x.output(
                "alarm_topic_arn",
                "the SNS topic alarms notify",
                Input::from(&arn).into_value(),
            );
            arn.into()
        }
    };
    let mut add = |address: String, a: AlarmDef| {
        let Some(threshold) = settings.threshold(a.alarm) else {
            return;
        };
        let Some(threshold) = threshold.or(a.default).map(|t| t * a.scale) else {
            return;
        };
        x.add(NodeSpec::of(
            address,
            MetricAlarmSpec {
                name: a.name.into(),
                description: a.description.into(),
                namespace: a.namespace.into(),
                metric_name: a.metric.into(),
                dimensions: a.dimensions.into(),
                statistic: a.statistic.into(),
                period: a.period.into(),
                evaluation_periods: a.evaluation_periods.into(),
                threshold: Input::value(threshold),
                comparison_operator: a.comparison.into(),
                treat_missing_data: a.missing.into(),
                alarm_actions: vec![topic.clone()].into(),
                ok_actions: vec![topic.clone()].into(),
                percent_of: a.percent_of.map(Input::from),
            },
        ));
    };
    let cluster_name: OutputRef<String> = OutputRef::new(Address::new("shared.cluster"), "name");
    for d in deployments {
        let label = |service: &str| match d.customer {
            Some(c) => format!("{prefix}-{c}-{service}"),
            None => format!("{prefix}-{service}"),
        };
        let whose = |service: &str| match d.customer {
            Some(c) => format!("{service} of {c}"),
            None => service.to_owned(),
        };
        for (name, service) in &config.services {
            let (name, service) = (name.get_ref().as_str(), service.get_ref());
            let base = format!("{}.alarm.{name}", d.base);
            // The service's utilisation alarms name it as configured: they treat missing data
            // as missing, so they may exist before it does, and need not queue behind its
            // create. The running-tasks alarm treats missing data as breaching and so waits
            // for the service (its `name` output), lest it page someone before there is one.
            let service_dimensions = |after_the_service: bool| {
                let service_name = if after_the_service {
                    Input::from(&OutputRef::<String>::new(
                        Address::new(format!("{}.service.{name}", d.base)),
                        "name",
                    ))
                } else {
                    Input::value(ecs_service_name(&d.service_prefix, name))
                };
                BTreeMap::from([
                    ("ClusterName".to_owned(), Input::from(&cluster_name)),
                    ("ServiceName".to_owned(), service_name),
                ])
            };
            if service.is_routed() {
                let target_group = || {
                    BTreeMap::from([
                        (
                            "LoadBalancer".to_owned(),
                            Input::from(&OutputRef::<String>::new(d.shard.load_balancer(), "arn")),
                        ),
                        (
                            "TargetGroup".to_owned(),
                            Input::from(&OutputRef::<String>::new(
                                Address::new(format!("{}.target_group.{name}", d.base)),
                                "arn_suffix",
                            )),
                        ),
                    ])
                };
                add(
                    format!("{base}.target_5xx"),
                    AlarmDef {
                        alarm: Alarm::Target5xx,
                        name: format!("{}-5xx", label(name)),
                        description: format!(
                            "{} answers too many requests with server errors",
                            whose(name)
                        ),
                        namespace: "AWS/ApplicationELB",
                        metric: "HTTPCode_Target_5XX_Count",
                        percent_of: Some("RequestCount"),
                        dimensions: target_group(),
                        statistic: "Sum",
                        period: 300,
                        evaluation_periods: 1,
                        comparison: "GreaterThanOrEqualToThreshold",
                        missing: "notBreaching",
                        default: None,
                        scale: 1.0,
                    },
                );
                add(
                    format!("{base}.unhealthy_hosts"),
                    AlarmDef {
                        alarm: Alarm::UnhealthyHosts,
                        name: format!("{}-unhealthy-hosts", label(name)),
                        description: format!("targets of {} fail their health check", whose(name)),
                        namespace: "AWS/ApplicationELB",
                        metric: "UnHealthyHostCount",
                        percent_of: None,
                        dimensions: target_group(),
                        statistic: "Maximum",
                        period: 60,
                        evaluation_periods: 3,
                        comparison: "GreaterThanOrEqualToThreshold",
                        missing: "notBreaching",
                        default: None,
                        scale: 1.0,
                    },
                );
            }
            for (alarm, metric, suffix) in [
                (Alarm::ServiceCpu, "CPUUtilization", "cpu-high"),
                (Alarm::ServiceMemory, "MemoryUtilization", "memory-high"),
            ] {
                add(
                    format!("{base}.{}", alarm.key()),
                    AlarmDef {
                        alarm,
                        name: format!("{}-{suffix}", label(name)),
                        description: format!("{} runs hot on {metric}", whose(name)),
                        namespace: "AWS/ECS",
                        metric,
                        percent_of: None,
                        dimensions: service_dimensions(false),
                        statistic: "Average",
                        period: 300,
                        evaluation_periods: 2,
                        comparison: "GreaterThanOrEqualToThreshold",
                        missing: "missing",
                        default: None,
                        scale: 1.0,
                    },
                );
            }
            // Container Insights publishes RunningTaskCount; without it, the number of tasks
            // reporting CPU (its SampleCount per minute) is the number running, and no data at
            // all means none is.
            let (namespace, metric, statistic) = if config.cluster.container_insights {
                ("ECS/ContainerInsights", "RunningTaskCount", "Minimum")
            } else {
                ("AWS/ECS", "CPUUtilization", "SampleCount")
            };
            add(
                format!("{base}.running_tasks"),
                AlarmDef {
                    alarm: Alarm::RunningTasks,
                    name: format!("{}-tasks-low", label(name)),
                    description: format!("{} runs fewer tasks than it should", whose(name)),
                    namespace,
                    metric,
                    percent_of: None,
                    dimensions: service_dimensions(true),
                    statistic,
                    period: 60,
                    evaluation_periods: 5,
                    comparison: "LessThanThreshold",
                    missing: "breaching",
                    // While auto scaling is on, the count may rightly fall to its minimum.
                    default: Some(
                        service
                            .autoscaling
                            .as_ref()
                            .map_or(*service.desired_count.get_ref(), |a| {
                                *a.get_ref().min.get_ref()
                            }),
                    )
                    .filter(|&tasks| tasks > 0)
                    .map(f64::from),
                    scale: 1.0,
                },
            );
        }
    }
    if config.database.is_some() {
        let id: OutputRef<String> = OutputRef::new(Address::new("shared.database"), "id");
        let dimensions = || BTreeMap::from([("DBInstanceIdentifier".to_owned(), Input::from(&id))]);
        for (alarm, metric, suffix, comparison) in [
            (
                Alarm::DatabaseCpu,
                "CPUUtilization",
                "cpu-high",
                "GreaterThanOrEqualToThreshold",
            ),
            (
                Alarm::DatabaseFreeStorage,
                "FreeStorageSpace",
                "storage-low",
                "LessThanThreshold",
            ),
            (
                Alarm::DatabaseConnections,
                "DatabaseConnections",
                "connections-high",
                "GreaterThanOrEqualToThreshold",
            ),
        ] {
            // FreeStorageSpace is in bytes; the threshold is given in GiB.
            let scale = if alarm == Alarm::DatabaseFreeStorage {
                1024.0 * 1024.0 * 1024.0
            } else {
                1.0
            };
            let alarm_settings = AlarmDef {
                alarm,
                name: format!("{prefix}-database-{suffix}"),
                description: format!("the database's {metric} crossed its threshold"),
                namespace: "AWS/RDS",
                metric,
                percent_of: None,
                dimensions: dimensions(),
                statistic: "Average",
                period: 300,
                evaluation_periods: 2,
                comparison,
                missing: "missing",
                default: None,
                scale,
            };
            add(
                format!("shared.alarm.database.{}", alarm.key()),
                alarm_settings,
            );
        }
    }
}

/// One alarm as the blueprint defines it; the threshold comes from the configuration, or
/// `default` when the alarm's own default needs the deployment (or a unit conversion).
struct AlarmDef {
    alarm: Alarm,
    name: String,
    description: String,
    namespace: &'static str,
    metric: &'static str,
    /// Watch `metric` as a percentage of this one.
    percent_of: Option<&'static str>,
    dimensions: BTreeMap<String, Input<String>>,
    statistic: &'static str,
    period: i32,
    evaluation_periods: i32,
    comparison: &'static str,
    missing: &'static str,
    default: Option<f64>,
    /// From the configuration's unit to the metric's.
    scale: f64,
}

/// An e-mail address as part of a node address: letters and digits kept, the rest `_`.
fn address_part(email: &str) -> String {
    email
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}
