//! Alarms and paging: the multi-customer example with `[alarms]` provisions an SNS topic with
//! an e-mail subscription and per customer and service the alarms, each on the right metric,
//! dimensions and topic; a changed threshold updates the alarm in place, and destroy leaves
//! none of them while a topic dagform does not own stays. Verified by reading AWS back.

mod support;

use aws_sdk_cloudwatch::types::MetricAlarm;
use std::collections::BTreeMap;
use support::{Emulator, Project, create_zone, run_ok};

const ZONE: &str = "freeinterestcal.com";
const STACK: &str = "dev-task-manager";

/// Every alarm of the stack, by name.
async fn stack_alarms(c: &dagform_aws::AwsClients) -> BTreeMap<String, MetricAlarm> {
    let out = c
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(format!("{STACK}-"))
        .send()
        .await
        .unwrap();
    out.metric_alarms()
        .iter()
        .map(|a| (a.alarm_name().unwrap().to_owned(), a.clone()))
        .collect()
}

fn dimension<'a>(alarm: &'a MetricAlarm, name: &str) -> Option<&'a str> {
    alarm
        .dimensions()
        .iter()
        .find(|d| d.name() == Some(name))
        .and_then(|d| d.value())
}

/// The stack's alarm topic, checked to carry the stack's tag.
async fn stack_topic(c: &dagform_aws::AwsClients) -> String {
    let topics = c.sns.list_topics().send().await.unwrap();
    let topic = topics
        .topics()
        .iter()
        .filter_map(|t| t.topic_arn())
        .find(|a| a.ends_with(&format!(":{STACK}-alarms")))
        .expect("the stack's topic")
        .to_owned();
    let tags = c
        .sns
        .list_tags_for_resource()
        .resource_arn(&topic)
        .send()
        .await
        .unwrap();
    assert!(
        tags.tags()
            .iter()
            .any(|t| t.key() == "dagform:stack" && t.value() == STACK),
        "{tags:?}"
    );
    topic
}

/// A topic of someone else's, which the stack's destroy must leave.
async fn bystander_topic(c: &dagform_aws::AwsClients) -> String {
    c.sns
        .create_topic()
        .name("someone-elses-topic")
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn alarms_page_the_stacks_topic_and_go_with_it() {
    let emu = Emulator::start();
    let c = emu.clients().await;
    create_zone(&c, ZONE).await;
    let bystander = bystander_topic(&c).await;
    let project = Project::from_example("multi-customer");
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));

    // The topic, tagged as the stack's, with the e-mail subscription.
    let topic = stack_topic(&c).await;
    let subs = c
        .sns
        .list_subscriptions_by_topic()
        .topic_arn(&topic)
        .send()
        .await
        .unwrap();
    assert!(
        subs.subscriptions()
            .iter()
            .any(|s| s.protocol() == Some("email") && s.endpoint() == Some("ops@example.com")),
        "{subs:?}"
    );

    // Per customer and service, its alarms on its own service and target group.
    let alarms = stack_alarms(&c).await;
    let cpu = &alarms[&format!("{STACK}-customer1-frontend-cpu-high")];
    assert_eq!(cpu.namespace(), Some("AWS/ECS"));
    assert_eq!(cpu.metric_name(), Some("CPUUtilization"));
    assert_eq!(dimension(cpu, "ServiceName"), Some("customer1-frontend"));
    assert!(dimension(cpu, "ClusterName").is_some());
    assert_eq!(cpu.threshold(), Some(80.0));
    assert_eq!(cpu.alarm_actions(), [topic.as_str()]);
    assert_eq!(cpu.ok_actions(), [topic.as_str()]);
    let unhealthy = &alarms[&format!("{STACK}-global-frontend-unhealthy-hosts")];
    assert_eq!(unhealthy.metric_name(), Some("UnHealthyHostCount"));
    let tg = dimension(unhealthy, "TargetGroup").unwrap();
    assert!(
        tg.starts_with("targetgroup/") && tg.contains("global"),
        "{tg}"
    );
    assert!(
        dimension(unhealthy, "LoadBalancer")
            .unwrap()
            .starts_with("app/")
    );
    // The 5xx alarm is a rate: the target group's 5xx responses as a percentage of its
    // requests, both read on the same target group.
    let errors = &alarms[&format!("{STACK}-customer1-backend-api-5xx")];
    assert_eq!(errors.threshold(), Some(5.0));
    let queries = errors.metrics();
    let stat = |id: &str| {
        queries
            .iter()
            .find(|q| q.id() == Some(id))
            .and_then(|q| q.metric_stat())
            .unwrap_or_else(|| panic!("query {id} in {queries:?}"))
    };
    let (part, whole) = (stat("part"), stat("whole"));
    assert_eq!(
        part.metric().and_then(|m| m.metric_name()),
        Some("HTTPCode_Target_5XX_Count")
    );
    assert_eq!(
        whole.metric().and_then(|m| m.metric_name()),
        Some("RequestCount")
    );
    assert_eq!(part.stat(), Some("Sum"));
    assert_eq!(
        part.metric().unwrap().dimensions(),
        whole.metric().unwrap().dimensions()
    );
    let own = dimension(
        &alarms[&format!("{STACK}-customer1-backend-api-unhealthy-hosts")],
        "TargetGroup",
    );
    assert!(own.is_some_and(|tg| tg.starts_with("targetgroup/")));
    assert!(
        part.metric()
            .unwrap()
            .dimensions()
            .iter()
            .any(|d| d.name() == Some("TargetGroup") && d.value() == own),
        "{part:?}"
    );
    let rate = queries
        .iter()
        .find(|q| q.return_data() == Some(true))
        .unwrap();
    assert_eq!(rate.expression(), Some("100 * FILL(part, 0) / whole"));
    // Read back, the rate alarms (and every other) match what was planned.
    let plan = support::run(&mut project.dagform(&emu, &["plan", "--detailed-exitcode"]));
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plan.stdout)
    );
    assert!(alarms.contains_key(&format!("{STACK}-global-backend-worker-tasks-low")));
    // A worker has no target group, so no load balancer alarms.
    assert!(!alarms.contains_key(&format!("{STACK}-global-backend-worker-5xx")));

    // A changed threshold updates the alarm in place; a turned-off one goes.
    let text = project.config_text().replace(
        "email = [\"ops@example.com\"]",
        "email = [\"ops@example.com\"]\n\n[alarms.thresholds]\nservice_cpu = 65\nservice_memory = false",
    );
    project.write_config(&text);
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));
    let alarms = stack_alarms(&c).await;
    let cpu = &alarms[&format!("{STACK}-customer1-frontend-cpu-high")];
    assert_eq!(cpu.threshold(), Some(65.0));
    assert!(!alarms.contains_key(&format!("{STACK}-customer1-frontend-memory-high")));

    // Status names a firing alarm.
    let firing = format!("{STACK}-global-frontend-cpu-high");
    c.cloudwatch
        .set_alarm_state()
        .alarm_name(&firing)
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("test")
        .send()
        .await
        .unwrap();
    let status = run_ok(&mut project.dagform(&emu, &["status"]));
    assert!(status.contains(&firing), "{status}");

    run_ok(&mut project.dagform(&emu, &["destroy", "--yes"]));
    assert!(stack_alarms(&c).await.is_empty());
    let topics = c.sns.list_topics().send().await.unwrap();
    let left: Vec<&str> = topics
        .topics()
        .iter()
        .filter_map(|t| t.topic_arn())
        .collect();
    assert_eq!(left, [bystander.as_str()]);
    let subs = c.sns.list_subscriptions().send().await.unwrap();
    assert!(subs.subscriptions().is_empty(), "{subs:?}");
}

/// Every alarm turned off: only the topic and its subscription, which exercise SNS on their
/// own against the emulator.
#[tokio::test(flavor = "multi_thread")]
async fn the_alarm_topic_is_the_stacks_and_goes_with_it() {
    let emu = Emulator::start();
    let c = emu.clients().await;
    create_zone(&c, ZONE).await;
    let bystander = bystander_topic(&c).await;
    let project = Project::from_example("multi-customer");
    let off: String = dagform_config::Alarm::ALL
        .iter()
        .map(|a| format!("{} = false\n", a.key()))
        .collect();
    let text = project.config_text().replace(
        "email = [\"ops@example.com\"]",
        &format!(
            "email = [\"ops@example.com\", \"oncall@example.com\"]\n\n[alarms.thresholds]\n{off}"
        ),
    );
    project.write_config(&text);
    run_ok(&mut project.dagform(&emu, &["provision", "--yes"]));

    let topic = stack_topic(&c).await;
    let subs = c
        .sns
        .list_subscriptions_by_topic()
        .topic_arn(&topic)
        .send()
        .await
        .unwrap();
    let mut endpoints: Vec<&str> = subs
        .subscriptions()
        .iter()
        .filter(|s| s.protocol() == Some("email"))
        .filter_map(|s| s.endpoint())
        .collect();
    endpoints.sort();
    assert_eq!(endpoints, ["oncall@example.com", "ops@example.com"]);
    // A second run finds nothing to change.
    let plan = run_ok(&mut project.dagform(&emu, &["plan"]));
    assert!(!plan.contains("alarm_subscription"), "{plan}");

    run_ok(&mut project.dagform(&emu, &["destroy", "--yes"]));
    let topics = c.sns.list_topics().send().await.unwrap();
    let left: Vec<&str> = topics
        .topics()
        .iter()
        .filter_map(|t| t.topic_arn())
        .collect();
    assert_eq!(left, [bystander.as_str()]);
    let subs = c.sns.list_subscriptions().send().await.unwrap();
    assert!(subs.subscriptions().is_empty(), "{subs:?}");
}
