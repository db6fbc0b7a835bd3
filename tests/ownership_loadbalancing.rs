mod support;

// What the load-balancing kinds (ELBv2 and ACM) do when an object exists but is not this
// stack's, and how they pick up what a killed run left behind. Each test builds what it needs
// through the kinds (as `dev-app`, or as another stack, `prod-app`) or with the SDK directly,
// and reads AWS back.
//
// Emulator gaps (moto 5.2), so some real-AWS behaviour is not exercised here:
// - CreateLoadBalancer never answers `DuplicateLoadBalancerName` (the ARN it checks carries a
//   random id) and CreateTargetGroup always answers `DuplicateTargetGroupName`, where AWS
//   returns the existing object when the settings match; the kinds check the name's holder
//   before creating either way, which is what is shown here;
// - CreateListener of a taken port always answers `DuplicateListener`;
// - DescribeTags answers for an ARN that does not exist with no tags, where AWS answers
//   "not found".

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, HostHeaderConditionConfig,
    LoadBalancerSchemeEnum, ProtocolEnum, RuleCondition, Tag, TargetTypeEnum,
};
use dagform_aws::AwsClients;
use dagform_core::kind::PollSettings;
use dagform_core::plan::unmatched_properties;
use dagform_core::{Applied, Current, Kinds, OpContext, Properties, ResourceError};
use serde_json::{Value, json};
use std::time::Duration;
use support::props;

const STACK: &str = "dev-app";
const OTHER_STACK: &str = "prod-app";

fn ctx_of(stack: &str, address: &str) -> OpContext {
    OpContext::new(
        stack,
        address,
        PollSettings {
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(60),
        },
    )
}

fn ours(address: &str) -> OpContext {
    ctx_of(STACK, address)
}

fn current<'a>(applied: &'a Applied, props: &'a Properties) -> Current<'a> {
    Current {
        id: &applied.id,
        properties: props,
        outputs: &applied.outputs,
    }
}

async fn create(kinds: &Kinds, kind: &str, ctx: &OpContext, desired: &Properties) -> Applied {
    support::kind(kinds, kind)
        .create(ctx, desired)
        .await
        .unwrap_or_else(|e| panic!("creating {} as {}: {e}", ctx.address, ctx.stack))
}

/// The error is `NotOwned` and its message contains every one of `words`.
fn assert_not_owned(result: Result<impl std::fmt::Debug, ResourceError>, words: &[&str]) {
    match result {
        Err(ResourceError::NotOwned(message)) => {
            for w in words {
                assert!(message.contains(w), "`{w}` missing from: {message}");
            }
        }
        other => panic!("expected NotOwned, got {other:?}"),
    }
}

/// ELBv2 tags for `ctx`, for objects made with the SDK directly as a kind would.
fn elb_tags(ctx: &OpContext) -> Vec<Tag> {
    ctx.tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// The tags of an ELBv2 object as (key, value), sorted.
async fn tags_on(c: &AwsClients, arn: &str) -> Vec<(String, String)> {
    let mut tags: Vec<_> = c
        .elbv2
        .describe_tags()
        .resource_arns(arn)
        .send()
        .await
        .expect("describe tags")
        .tag_descriptions()
        .iter()
        .flat_map(|d| d.tags())
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    tags.sort();
    tags
}

fn stack_tag(tags: &[(String, String)]) -> Option<&str> {
    tags.iter()
        .find(|(k, _)| k == "dagform:stack")
        .map(|(_, v)| v.as_str())
}

/// A VPC with two subnets in two zones and a security group, made with the SDK.
struct Network {
    vpc_id: String,
    subnet_ids: Vec<String>,
    sg_id: String,
}

async fn network(c: &AwsClients) -> Network {
    let vpc_id = c
        .ec2
        .create_vpc()
        .cidr_block("10.30.0.0/16")
        .send()
        .await
        .expect("create vpc")
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_owned();
    let mut subnet_ids = vec![];
    for (cidr, az) in [
        ("10.30.1.0/24", "us-east-1a"),
        ("10.30.2.0/24", "us-east-1b"),
    ] {
        let out = c
            .ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(cidr)
            .availability_zone(az)
            .send()
            .await
            .expect("create subnet");
        subnet_ids.push(out.subnet().and_then(|s| s.subnet_id()).unwrap().to_owned());
    }
    let sg_id = c
        .ec2
        .create_security_group()
        .group_name("alb")
        .description("load balancer")
        .vpc_id(&vpc_id)
        .send()
        .await
        .expect("create security group")
        .group_id()
        .unwrap()
        .to_owned();
    Network {
        vpc_id,
        subnet_ids,
        sg_id,
    }
}

fn tg_props(net: &Network, name: &str, path: &str) -> Properties {
    props(json!({
        "name": name,
        "protocol": "HTTP",
        "port": 8080,
        "vpc_id": net.vpc_id,
        "target_type": "ip",
        "health_check": {
            "path": path,
            "interval_seconds": 15,
            "timeout_seconds": 5,
            "healthy_threshold": 2,
            "unhealthy_threshold": 3,
        },
        "deregistration_delay_seconds": 30,
    }))
}

/// Every target group holding `name`, with its ARN and health check path.
async fn target_groups_named(c: &AwsClients, name: &str) -> Vec<(String, String)> {
    c.elbv2
        .describe_target_groups()
        .names(name)
        .send()
        .await
        .map(|out| {
            out.target_groups()
                .iter()
                .map(|t| {
                    (
                        t.target_group_arn().unwrap().to_owned(),
                        t.health_check_path().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn deregistration_delay(c: &AwsClients, arn: &str) -> Option<String> {
    c.elbv2
        .describe_target_group_attributes()
        .target_group_arn(arn)
        .send()
        .await
        .expect("describe target group attributes")
        .attributes()
        .iter()
        .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
        .and_then(|a| a.value().map(str::to_owned))
}

/// A target group made with the SDK: as a kind would for `tagged_as` but without the
/// deregistration delay (a create killed after its first call), or untagged.
async fn sdk_target_group(
    c: &AwsClients,
    net: &Network,
    name: &str,
    tagged_as: Option<&OpContext>,
) -> String {
    c.elbv2
        .create_target_group()
        .name(name)
        .protocol(ProtocolEnum::Http)
        .port(8080)
        .vpc_id(&net.vpc_id)
        .target_type(TargetTypeEnum::Ip)
        .health_check_path("/hand-made")
        .health_check_interval_seconds(15)
        .health_check_timeout_seconds(5)
        .healthy_threshold_count(2)
        .unhealthy_threshold_count(3)
        .set_tags(tagged_as.map(elb_tags))
        .send()
        .await
        .expect("create target group")
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn target_group_of_another_stack_or_of_nobody_is_refused() {
    let (_emu, c, kinds) = support::setup().await;
    let net = network(&c).await;
    let kind = support::kind(&kinds, "aws_lb_target_group");
    let address = "customer.acme.service.api.tg";
    let (dev, prod) = (ours(address), ctx_of(OTHER_STACK, address));

    // prod's target group holds the name; dev wants the same name with another health check.
    let theirs_props = tg_props(&net, "acme-api-tg", "/health");
    let theirs = create(&kinds, "aws_lb_target_group", &prod, &theirs_props).await;
    let wanted = tg_props(&net, "acme-api-tg", "/ready");
    let words = ["target group `acme-api-tg`", "stack `prod-app`"];
    assert_not_owned(kind.create(&dev, &wanted).await, &words);
    assert_not_owned(kind.find(&dev, &wanted).await, &words);
    // Recorded by mistake (say, a copied state): neither changed nor deleted.
    assert_not_owned(
        kind.update(
            &dev,
            current(&theirs, &theirs_props),
            &wanted,
            &["health_check".into()],
        )
        .await,
        &["stack `prod-app`"],
    );
    assert_not_owned(
        kind.delete(&dev, current(&theirs, &theirs_props)).await,
        &["stack `prod-app`"],
    );
    assert_eq!(
        target_groups_named(&c, "acme-api-tg").await,
        [(theirs.id.clone(), "/health".to_owned())],
        "prod's target group is unchanged and alone under its name"
    );
    assert_eq!(stack_tag(&tags_on(&c, &theirs.id).await), Some(OTHER_STACK));
    assert_eq!(
        deregistration_delay(&c, &theirs.id).await.as_deref(),
        Some("30")
    );
    // prod itself still finds it.
    assert_eq!(
        kind.find(&prod, &theirs_props).await.unwrap().map(|a| a.id),
        Some(theirs.id.clone())
    );

    // A target group made by hand, without dagform's tags.
    let hand_made = sdk_target_group(&c, &net, "hand-made-tg", None).await;
    let wanted = tg_props(&net, "hand-made-tg", "/ready");
    let words = ["target group `hand-made-tg`", "not managed by dagform"];
    assert_not_owned(kind.create(&dev, &wanted).await, &words);
    assert_not_owned(kind.find(&dev, &wanted).await, &words);
    assert_eq!(
        target_groups_named(&c, "hand-made-tg").await,
        [(hand_made.clone(), "/hand-made".to_owned())]
    );
    assert!(tags_on(&c, &hand_made).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn target_group_is_found_again_and_finished_after_a_crash() {
    let (_emu, c, kinds) = support::setup().await;
    let net = network(&c).await;
    let kind = support::kind(&kinds, "aws_lb_target_group");
    let mut dev = ours("customer.acme.service.web.tg");

    // Created through the kind, then the run dies before the state records it.
    let wanted = tg_props(&net, "dev-acme-web-tg", "/");
    let made = create(&kinds, "aws_lb_target_group", &dev, &wanted).await;
    assert_eq!(
        kind.find(&dev, &wanted).await.unwrap().map(|a| a.id),
        Some(made.id.clone())
    );
    // Another address of the same stack may not take it.
    assert_not_owned(
        kind.find(&ours("customer.other.service.web.tg"), &wanted)
            .await,
        &["belongs to `customer.acme.service.web.tg` of this stack"],
    );
    // The object this address replaces is never adopted, nor is a second one made beside it.
    dev.superseded = vec![made.id.clone()];
    assert_eq!(kind.find(&dev, &wanted).await.unwrap(), None);
    let blocked = kind.create(&dev, &wanted).await.expect_err("name is held");
    assert!(blocked.to_string().contains("replaces"), "{blocked}");
    assert_eq!(target_groups_named(&c, "dev-acme-web-tg").await.len(), 1);
    dev.superseded.clear();

    // Half-built: CreateTargetGroup went through with our tags, the attribute call did not.
    let half = sdk_target_group(&c, &net, "dev-acme-half-tg", Some(&dev)).await;
    let wanted = tg_props(&net, "dev-acme-half-tg", "/hand-made");
    let found = kind.find(&dev, &wanted).await.unwrap().expect("adopted");
    assert_eq!(found.id, half);
    let observed = kind
        .read(&dev, current(&found, &wanted))
        .await
        .unwrap()
        .expect("exists");
    assert_eq!(
        unmatched_properties(&wanted, &observed.properties, &[]),
        ["deregistration_delay_seconds"],
        "read shows what the create did not finish"
    );
    // A create that meets it (no `find` first) adopts and finishes it instead of failing.
    let adopted = create(&kinds, "aws_lb_target_group", &dev, &wanted).await;
    assert_eq!(adopted.id, half);
    assert_eq!(deregistration_delay(&c, &half).await.as_deref(), Some("30"));
    assert_eq!(target_groups_named(&c, "dev-acme-half-tg").await.len(), 1);
}

fn lb_props(net: &Network, name: &str) -> Properties {
    props(json!({
        "name": name,
        "scheme": "internet-facing",
        "subnet_ids": net.subnet_ids,
        "security_group_ids": [net.sg_id],
        "idle_timeout_seconds": 120,
    }))
}

/// Every load balancer holding `name`, by ARN.
async fn load_balancers_named(c: &AwsClients, name: &str) -> Vec<String> {
    c.elbv2
        .describe_load_balancers()
        .names(name)
        .send()
        .await
        .map(|out| {
            out.load_balancers()
                .iter()
                .map(|l| l.load_balancer_arn().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn idle_timeout(c: &AwsClients, arn: &str) -> Option<String> {
    c.elbv2
        .describe_load_balancer_attributes()
        .load_balancer_arn(arn)
        .send()
        .await
        .expect("describe load balancer attributes")
        .attributes()
        .iter()
        .find(|a| a.key() == Some("idle_timeout.timeout_seconds"))
        .and_then(|a| a.value().map(str::to_owned))
}

/// A load balancer made with the SDK, tagged as a kind would for `tagged_as` (or untagged),
/// without the idle timeout a kind sets after the create.
async fn sdk_load_balancer(
    c: &AwsClients,
    net: &Network,
    name: &str,
    tagged_as: Option<&OpContext>,
) -> String {
    c.elbv2
        .create_load_balancer()
        .name(name)
        .scheme(LoadBalancerSchemeEnum::InternetFacing)
        .set_subnets(Some(net.subnet_ids.clone()))
        .security_groups(&net.sg_id)
        .set_tags(tagged_as.map(elb_tags))
        .send()
        .await
        .expect("create load balancer")
        .load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn load_balancer_of_another_stack_or_of_nobody_is_refused_and_ours_is_finished() {
    let (_emu, c, kinds) = support::setup().await;
    let net = network(&c).await;
    let kind = support::kind(&kinds, "aws_lb");
    let (dev, prod) = (ours("shared.alb"), ctx_of(OTHER_STACK, "shared.alb"));

    let theirs_props = lb_props(&net, "shared-alb");
    let theirs = create(&kinds, "aws_lb", &prod, &theirs_props).await;
    let words = ["load balancer `shared-alb`", "stack `prod-app`"];
    assert_not_owned(kind.create(&dev, &theirs_props).await, &words);
    assert_not_owned(kind.find(&dev, &theirs_props).await, &words);
    let mut longer = theirs_props.clone();
    longer.insert("idle_timeout_seconds".into(), json!(600));
    assert_not_owned(
        kind.update(
            &dev,
            current(&theirs, &theirs_props),
            &longer,
            &["idle_timeout_seconds".into()],
        )
        .await,
        &["stack `prod-app`"],
    );
    assert_not_owned(
        kind.delete(&dev, current(&theirs, &theirs_props)).await,
        &["stack `prod-app`"],
    );
    // One load balancer under the name (the emulator would have made a second one), prod's,
    // with its settings.
    assert_eq!(
        load_balancers_named(&c, "shared-alb").await,
        [theirs.id.as_str()]
    );
    assert_eq!(stack_tag(&tags_on(&c, &theirs.id).await), Some(OTHER_STACK));
    assert_eq!(idle_timeout(&c, &theirs.id).await.as_deref(), Some("120"));

    let hand_made = sdk_load_balancer(&c, &net, "hand-made-alb", None).await;
    let wanted = lb_props(&net, "hand-made-alb");
    assert_not_owned(
        kind.create(&dev, &wanted).await,
        &["load balancer `hand-made-alb`", "not managed by dagform"],
    );
    assert_eq!(load_balancers_named(&c, "hand-made-alb").await, [hand_made]);

    // Half-built: CreateLoadBalancer went through with our tags, the idle timeout was not set.
    let half = sdk_load_balancer(&c, &net, "dev-alb", Some(&dev)).await;
    let wanted = lb_props(&net, "dev-alb");
    let found = kind.find(&dev, &wanted).await.unwrap().expect("adopted");
    assert_eq!(found.id, half);
    let observed = kind
        .read(&dev, current(&found, &wanted))
        .await
        .unwrap()
        .expect("exists");
    assert_eq!(
        unmatched_properties(&wanted, &observed.properties, &[]),
        ["idle_timeout_seconds"]
    );
    let adopted = create(&kinds, "aws_lb", &dev, &wanted).await;
    assert_eq!(adopted.id, half);
    assert_eq!(adopted.outputs["name"], "dev-alb");
    assert_eq!(idle_timeout(&c, &half).await.as_deref(), Some("120"));
    assert_eq!(load_balancers_named(&c, "dev-alb").await, [half.as_str()]);

    // Replaced: the old one is not adopted, and the name it holds is not taken twice.
    let mut replacing = ours("shared.alb");
    replacing.superseded = vec![half.clone()];
    assert_eq!(kind.find(&replacing, &wanted).await.unwrap(), None);
    kind.create(&replacing, &wanted)
        .await
        .expect_err("the name is held by the replaced load balancer");
    assert_eq!(load_balancers_named(&c, "dev-alb").await, [half]);
}

fn fixed_response(body: &str) -> Value {
    json!({
        "type": "fixed-response", "status_code": "404", "content_type": "text/plain",
        "message_body": body,
    })
}

fn listener_props(lb_arn: &str, port: i64, body: &str) -> Properties {
    props(json!({
        "load_balancer_arn": lb_arn,
        "port": port,
        "protocol": "HTTP",
        "default_action": fixed_response(body),
    }))
}

fn rule_props(listener_arn: &str, priority: i64, host: &str, tg_arn: &str) -> Properties {
    props(json!({
        "listener_arn": listener_arn,
        "priority": priority,
        "host_headers": [host],
        "path_patterns": [],
        "target_group_arn": tg_arn,
    }))
}

/// The listeners of a load balancer, as (ARN, port, message of the fixed response).
async fn listeners_of(c: &AwsClients, lb_arn: &str) -> Vec<(String, i32, String)> {
    let out = c
        .elbv2
        .describe_listeners()
        .load_balancer_arn(lb_arn)
        .send()
        .await
        .expect("describe listeners");
    let mut listeners: Vec<_> = out
        .listeners()
        .iter()
        .map(|l| {
            let body = l.default_actions()[0]
                .fixed_response_config()
                .and_then(|f| f.message_body())
                .unwrap_or_default();
            (
                l.listener_arn().unwrap().to_owned(),
                l.port().unwrap(),
                body.to_owned(),
            )
        })
        .collect();
    listeners.sort_by_key(|l| l.1);
    listeners
}

/// The non-default rules of a listener, as (ARN, priority, host headers).
async fn rules_of(c: &AwsClients, listener_arn: &str) -> Vec<(String, String, Vec<String>)> {
    let out = c
        .elbv2
        .describe_rules()
        .listener_arn(listener_arn)
        .send()
        .await
        .expect("describe rules");
    let mut rules: Vec<_> = out
        .rules()
        .iter()
        .filter(|r| r.is_default() != Some(true))
        .map(|r| {
            let hosts = r
                .conditions()
                .iter()
                .find(|c| c.field() == Some("host-header"))
                .map(|c| {
                    c.host_header_config()
                        .map(|h| h.values().to_vec())
                        .filter(|v| !v.is_empty())
                        .unwrap_or_else(|| c.values().to_vec())
                })
                .unwrap_or_default();
            (
                r.rule_arn().unwrap().to_owned(),
                r.priority().unwrap().to_owned(),
                hosts,
            )
        })
        .collect();
    rules.sort_by(|a, b| a.1.cmp(&b.1));
    rules
}

#[tokio::test(flavor = "multi_thread")]
async fn listener_and_rule_of_another_stack_are_refused_and_ours_adopted() {
    let (_emu, c, kinds) = support::setup().await;
    let net = network(&c).await;
    let listeners = support::kind(&kinds, "aws_lb_listener");
    let rules = support::kind(&kinds, "aws_lb_listener_rule");
    // The load balancer and target group are not under test: made by hand.
    let lb = sdk_load_balancer(&c, &net, "shared-alb", None).await;
    let tg = sdk_target_group(&c, &net, "shared-tg", None).await;

    // prod's listener holds port 80 of the load balancer.
    let prod_http = ctx_of(OTHER_STACK, "shared.alb.http");
    let theirs_props = listener_props(&lb, 80, "prod");
    let theirs = create(&kinds, "aws_lb_listener", &prod_http, &theirs_props).await;
    let dev_http = ours("shared.alb.http");
    let wanted = listener_props(&lb, 80, "dev");
    let words = ["listener on port 80", "stack `prod-app`"];
    assert_not_owned(listeners.create(&dev_http, &wanted).await, &words);
    assert_not_owned(listeners.find(&dev_http, &wanted).await, &words);
    assert_not_owned(
        listeners
            .update(
                &dev_http,
                current(&theirs, &theirs_props),
                &wanted,
                &["default_action".into()],
            )
            .await,
        &["stack `prod-app`"],
    );
    assert_not_owned(
        listeners
            .delete(&dev_http, current(&theirs, &theirs_props))
            .await,
        &["stack `prod-app`"],
    );
    assert_eq!(
        listeners_of(&c, &lb).await,
        [(theirs.id.clone(), 80, "prod".to_owned())]
    );
    assert_eq!(stack_tag(&tags_on(&c, &theirs.id).await), Some(OTHER_STACK));

    // Ours on another port: found again after a crash, and a create that meets it adopts it
    // (bringing the default action to what is wanted) instead of failing on the taken port.
    let dev_alt = ours("shared.alb.alt");
    let mut alt_props = listener_props(&lb, 8080, "dev");
    let alt = create(&kinds, "aws_lb_listener", &dev_alt, &alt_props).await;
    assert_eq!(
        listeners
            .find(&dev_alt, &alt_props)
            .await
            .unwrap()
            .map(|a| a.id),
        Some(alt.id.clone())
    );
    alt_props.insert("default_action".into(), fixed_response("dev again"));
    let again = create(&kinds, "aws_lb_listener", &dev_alt, &alt_props).await;
    assert_eq!(again.id, alt.id);
    let mut replacing = ours("shared.alb.alt");
    replacing.superseded = vec![alt.id.clone()];
    assert_eq!(listeners.find(&replacing, &alt_props).await.unwrap(), None);
    assert_eq!(
        listeners_of(&c, &lb).await,
        [
            (theirs.id.clone(), 80, "prod".to_owned()),
            (alt.id.clone(), 8080, "dev again".to_owned())
        ]
    );

    // Rules on our listener: prod's holds priority 10.
    let prod_rule = ctx_of(OTHER_STACK, "customer.acme.rule");
    let theirs_rule_props = rule_props(&alt.id, 10, "prod.example.com", &tg);
    let theirs_rule = create(
        &kinds,
        "aws_lb_listener_rule",
        &prod_rule,
        &theirs_rule_props,
    )
    .await;
    let dev_rule = ours("customer.acme.rule");
    let wanted = rule_props(&alt.id, 10, "dev.example.com", &tg);
    let words = ["listener rule at priority 10", "stack `prod-app`"];
    assert_not_owned(rules.create(&dev_rule, &wanted).await, &words);
    assert_not_owned(rules.find(&dev_rule, &wanted).await, &words);
    assert_not_owned(
        rules
            .delete(&dev_rule, current(&theirs_rule, &theirs_rule_props))
            .await,
        &["stack `prod-app`"],
    );
    assert_not_owned(
        rules
            .update(
                &dev_rule,
                current(&theirs_rule, &theirs_rule_props),
                &wanted,
                &["host_headers".into()],
            )
            .await,
        &["stack `prod-app`"],
    );

    // A rule made by hand at priority 30.
    let hand_made = c
        .elbv2
        .create_rule()
        .listener_arn(&alt.id)
        .priority(30)
        .conditions(
            RuleCondition::builder()
                .field("host-header")
                .host_header_config(
                    HostHeaderConditionConfig::builder()
                        .values("hand.example.com")
                        .build(),
                )
                .build(),
        )
        .actions(
            Action::builder()
                .r#type(ActionTypeEnum::FixedResponse)
                .fixed_response_config(
                    FixedResponseActionConfig::builder()
                        .status_code("200")
                        .content_type("text/plain")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("create rule")
        .rules()[0]
        .rule_arn()
        .unwrap()
        .to_owned();
    assert_not_owned(
        rules
            .create(&dev_rule, &rule_props(&alt.id, 30, "dev.example.com", &tg))
            .await,
        &["listener rule at priority 30", "not managed by dagform"],
    );

    // Ours at priority 20: found after a crash; a create that meets `PriorityInUse` on it
    // adopts it and brings the host header to what is wanted.
    let ours_props = rule_props(&alt.id, 20, "dev.example.com", &tg);
    let ours_rule = create(&kinds, "aws_lb_listener_rule", &dev_rule, &ours_props).await;
    assert_eq!(
        rules
            .find(&dev_rule, &ours_props)
            .await
            .unwrap()
            .map(|a| a.id),
        Some(ours_rule.id.clone())
    );
    let renamed = rule_props(&alt.id, 20, "www.dev.example.com", &tg);
    let again = create(&kinds, "aws_lb_listener_rule", &dev_rule, &renamed).await;
    assert_eq!(again.id, ours_rule.id);
    let mut replacing = ours("customer.acme.rule");
    replacing.superseded = vec![ours_rule.id.clone()];
    assert_eq!(rules.find(&replacing, &renamed).await.unwrap(), None);

    assert_eq!(
        rules_of(&c, &alt.id).await,
        [
            (
                theirs_rule.id.clone(),
                "10".to_owned(),
                vec!["prod.example.com".to_owned()]
            ),
            (
                ours_rule.id.clone(),
                "20".to_owned(),
                vec!["www.dev.example.com".to_owned()]
            ),
            (
                hand_made,
                "30".to_owned(),
                vec!["hand.example.com".to_owned()]
            ),
        ]
    );
    assert_eq!(
        stack_tag(&tags_on(&c, &theirs_rule.id).await),
        Some(OTHER_STACK)
    );
}

fn cert_props(domain: &str, sans: &[&str]) -> Properties {
    props(json!({
        "domain_name": domain,
        "subject_alternative_names": sans,
        "validation_method": "DNS",
    }))
}

/// Every certificate ARN for `domain`, whatever its status.
async fn certificates_for(c: &AwsClients, domain: &str) -> Vec<String> {
    let mut arns: Vec<String> = c
        .acm
        .list_certificates()
        .send()
        .await
        .expect("list certificates")
        .certificate_summary_list()
        .iter()
        .filter(|s| s.domain_name() == Some(domain))
        .filter_map(|s| s.certificate_arn().map(str::to_owned))
        .collect();
    arns.sort();
    arns
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_is_found_only_when_ours_and_its_request_is_idempotent() {
    let (_emu, c, kinds) = support::setup().await;
    let kind = support::kind(&kinds, "aws_acm_certificate");
    let wanted = cert_props("*.example.com", &["example.com"]);

    // Another environment's certificate for the very same names.
    let prod = ctx_of(OTHER_STACK, "shared.cert");
    let theirs = create(&kinds, "aws_acm_certificate", &prod, &wanted).await;
    // One of ours covering fewer names (the apex is missing).
    let mut narrower = ours("shared.cert");
    narrower.intent = "narrower".into();
    let narrow = create(
        &kinds,
        "aws_acm_certificate",
        &narrower,
        &cert_props("*.example.com", &[]),
    )
    .await;
    // One made by hand for the same names.
    c.acm
        .request_certificate()
        .domain_name("*.example.com")
        .subject_alternative_names("example.com")
        .validation_method(aws_sdk_acm::types::ValidationMethod::Dns)
        .send()
        .await
        .expect("request certificate");

    let mut dev = ours("shared.cert");
    dev.intent = "first".into();
    assert_eq!(kind.find(&dev, &wanted).await.unwrap(), None);

    // The request carries a token of this intent: a retry (or a re-run after a crash) of the
    // same create gets the same certificate back instead of a second wildcard certificate.
    let mine = create(&kinds, "aws_acm_certificate", &dev, &wanted).await;
    let retried = create(&kinds, "aws_acm_certificate", &dev, &wanted).await;
    assert_eq!(retried.id, mine.id);
    assert_eq!(certificates_for(&c, "*.example.com").await.len(), 4);

    // Found again: ours, for all the names, and not another stack's.
    assert_eq!(
        kind.find(&dev, &wanted).await.unwrap().map(|a| a.id),
        Some(mine.id.clone())
    );
    // Being replaced, it is never adopted, and nothing else qualifies.
    dev.superseded = vec![mine.id.clone()];
    assert_eq!(kind.find(&dev, &wanted).await.unwrap(), None);
    dev.superseded.clear();

    // Deleting another stack's certificate is refused, and it stays.
    let their_props = wanted.clone();
    assert_not_owned(
        kind.delete(&dev, current(&theirs, &their_props)).await,
        &["stack `prod-app`"],
    );
    assert!(
        certificates_for(&c, "*.example.com")
            .await
            .contains(&theirs.id)
    );
    // Ours goes, twice over.
    for _ in 0..2 {
        kind.delete(&dev, current(&mine, &wanted)).await.unwrap();
    }
    kind.delete(&narrower, current(&narrow, &wanted))
        .await
        .unwrap();
    let left = certificates_for(&c, "*.example.com").await;
    assert_eq!(left.len(), 2, "prod's and the hand-made one: {left:?}");
    assert!(left.contains(&theirs.id));
    assert_eq!(kind.find(&dev, &wanted).await.unwrap(), None);
}
