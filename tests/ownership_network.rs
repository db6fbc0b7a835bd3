mod support;

// What the EC2 network kinds do when an object exists but is not this stack's, and how they
// pick up what a killed run left behind. Each test builds what it needs through the kinds (as
// `dev-app` or as another stack, `prod-app`) or with the SDK directly, and reads AWS back.
//
// Emulator gaps (moto 5.2), so some real-AWS behaviour is not exercised here:
// - NAT gateways are `available` the moment they are created, so a create whose wait is cut
//   short is simulated by making the CreateNatGateway call ourselves;
// - CreateNatGateway and CreateRouteTable ignore `ClientToken`, so the idempotent re-send
//   cannot be shown;
// - DescribeNatGateways ignores tag filters (the kind checks the tags itself, which the
//   superseded and other-stack cases below rely on);
// - AssociateRouteTable silently returns the existing association instead of answering
//   `Resource.AlreadyAssociated`.

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, ResourceType, Tag, TagSpecification, VpcAttributeName,
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

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// The tags a kind would put on an object for `ctx`, for objects made with the SDK directly.
fn tags_of(ctx: &OpContext, resource: ResourceType, name: Option<&str>) -> TagSpecification {
    let name = name.map(|n| ("Name".to_owned(), n.to_owned()));
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(
            ctx.tags()
                .into_iter()
                .chain(name)
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build()
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
        .unwrap_or_else(|e| panic!("create {kind} {}: {e}", ctx.address))
}

#[track_caller]
fn assert_not_owned<T: std::fmt::Debug>(result: Result<T, ResourceError>, naming: &[&str]) {
    match result {
        Err(ResourceError::NotOwned(message)) => {
            for n in naming {
                assert!(message.contains(n), "`{message}` should name {n}");
            }
        }
        other => panic!("expected NotOwned naming {naming:?}, got {other:?}"),
    }
}

fn vpc_props(name: &str) -> Properties {
    props(json!({"name": name, "cidr_block": "10.30.0.0/16",
                 "enable_dns_hostnames": true, "enable_dns_support": true}))
}

fn subnet_props(vpc: &str, cidr: &str) -> Properties {
    props(
        json!({"name": format!("subnet-{cidr}"), "vpc_id": vpc, "cidr_block": cidr,
                 "availability_zone": "us-east-1a", "map_public_ip_on_launch": false}),
    )
}

fn group_props(vpc: &str, name: &str) -> Properties {
    props(
        json!({"name": name, "description": "web tier", "vpc_id": vpc,
                 "revoke_default_egress": true}),
    )
}

/// What the reconciler does with an object `find` returned: read it as the desired object,
/// compare, and update what differs. Returns the properties that differed.
async fn finish_adopted(
    kinds: &Kinds,
    kind: &str,
    ctx: &OpContext,
    found: &Applied,
    desired: &Properties,
) -> Vec<String> {
    let kind = support::kind(kinds, kind);
    let observed = kind
        .read(ctx, current(found, desired))
        .await
        .expect("read")
        .expect("the adopted object exists");
    let unmatched = unmatched_properties(desired, &observed.properties, &[]);
    if !unmatched.is_empty() {
        assert!(
            !unmatched.iter().any(|p| kind.forces_replacement(p)),
            "{unmatched:?} would replace the adopted object"
        );
        let live = Current {
            id: &found.id,
            properties: &observed.properties,
            outputs: &observed.outputs,
        };
        kind.update(ctx, live, desired, &unmatched)
            .await
            .expect("update");
    }
    let again = kind
        .read(ctx, current(found, desired))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        unmatched_properties(desired, &again.properties, &[]),
        Vec::<String>::new(),
        "the adopted object is finished"
    );
    unmatched
}

async fn egress_rules(aws: &AwsClients, group: &str) -> Vec<(String, String)> {
    let out = aws
        .ec2
        .describe_security_group_rules()
        .filters(filter("group-id", group))
        .send()
        .await
        .expect("describe rules");
    out.security_group_rules()
        .iter()
        .filter(|r| r.is_egress() == Some(true))
        .map(|r| {
            (
                r.ip_protocol().unwrap_or_default().to_owned(),
                r.cidr_ipv4().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn group_tags(aws: &AwsClients, group: &str) -> Vec<Tag> {
    let out = aws
        .ec2
        .describe_security_groups()
        .group_ids(group)
        .send()
        .await
        .expect("describe group");
    out.security_groups()[0].tags().to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn another_stacks_security_group_and_an_untagged_one_are_refused() {
    let (_emu, aws, kinds) = support::setup().await;
    let prod_vpc = create(
        &kinds,
        "aws_vpc",
        &ctx_of(OTHER_STACK, "shared.vpc"),
        &vpc_props("vpc"),
    )
    .await;
    let prod_ctx = ctx_of(OTHER_STACK, "shared.web_sg");
    let web = group_props(&prod_vpc.id, "web");
    let prod_group = create(&kinds, "aws_security_group", &prod_ctx, &web).await;
    assert!(egress_rules(&aws, &prod_group.id).await.is_empty());

    // Same name in the same VPC, as this stack: refused at find and at create.
    let sg = support::kind(&kinds, "aws_security_group");
    let dev = ours("shared.web_sg");
    assert_not_owned(sg.find(&dev, &web).await, &["`web`", "stack `prod-app`"]);
    let mut keep_egress = web.clone();
    keep_egress.insert("revoke_default_egress".into(), json!(false));
    assert_not_owned(
        sg.create(&dev, &keep_egress).await,
        &["`web`", "stack `prod-app`"],
    );
    // prod's group is as prod left it: its tags, and no egress restored by our create.
    let tags = group_tags(&aws, &prod_group.id).await;
    assert_eq!(tag(&tags, "dagform:stack"), Some(OTHER_STACK));
    assert!(egress_rules(&aws, &prod_group.id).await.is_empty());

    // Change and delete of prod's group by this stack are refused; the group stays.
    let live = current(&prod_group, &web);
    assert_not_owned(
        sg.update(&dev, live, &keep_egress, &["revoke_default_egress".into()])
            .await,
        &["stack `prod-app`"],
    );
    assert_not_owned(sg.delete(&dev, live).await, &["stack `prod-app`"]);
    assert!(egress_rules(&aws, &prod_group.id).await.is_empty());
    assert_eq!(
        tag(&group_tags(&aws, &prod_group.id).await, "Name"),
        Some("web")
    );

    // A rule of prod's, identical to one this stack wants in the same group, is not adopted.
    let rule = support::kind(&kinds, "aws_security_group_rule");
    let https = props(
        json!({"security_group_id": prod_group.id, "direction": "ingress",
                             "protocol": "tcp", "from_port": 443, "to_port": 443,
                             "cidr_ipv4": "0.0.0.0/0"}),
    );
    let prod_rule = create(
        &kinds,
        "aws_security_group_rule",
        &ctx_of(OTHER_STACK, "shared.https"),
        &https,
    )
    .await;
    let dev_rule = ours("shared.https");
    assert_not_owned(rule.find(&dev_rule, &https).await, &["stack `prod-app`"]);
    assert_not_owned(
        rule.create(&dev_rule, &https).await,
        &[&prod_rule.id, "stack `prod-app`"],
    );
    assert_not_owned(
        rule.delete(&dev_rule, current(&prod_rule, &https)).await,
        &["stack `prod-app`"],
    );
    let out = aws
        .ec2
        .describe_security_group_rules()
        .security_group_rule_ids(&prod_rule.id)
        .send()
        .await
        .expect("prod's rule is still there");
    assert_eq!(out.security_group_rules().len(), 1);

    // A group made by hand under the name: not managed by dagform, refused likewise.
    let legacy = aws
        .ec2
        .create_security_group()
        .group_name("legacy")
        .description("made by hand")
        .vpc_id(&prod_vpc.id)
        .send()
        .await
        .expect("create untagged group");
    let legacy_id = legacy.group_id().unwrap();
    let wanted = group_props(&prod_vpc.id, "legacy");
    let dev_legacy = ours("shared.legacy_sg");
    assert_not_owned(
        sg.find(&dev_legacy, &wanted).await,
        &["`legacy`", "not managed by dagform"],
    );
    assert_not_owned(
        sg.create(&dev_legacy, &wanted).await,
        &["`legacy`", "not managed by dagform"],
    );
    // Our create did not revoke the hand-made group's egress.
    assert_eq!(
        egress_rules(&aws, legacy_id).await,
        vec![("-1".to_owned(), "0.0.0.0/0".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subnet_block_held_by_another_stack_or_by_hand_is_refused() {
    let (_emu, aws, kinds) = support::setup().await;
    let vpc = create(
        &kinds,
        "aws_vpc",
        &ctx_of(OTHER_STACK, "shared.vpc"),
        &vpc_props("vpc"),
    )
    .await;
    let prod_wanted = subnet_props(&vpc.id, "10.30.1.0/24");
    let prod_subnet = create(
        &kinds,
        "aws_subnet",
        &ctx_of(OTHER_STACK, "shared.subnet_a"),
        &prod_wanted,
    )
    .await;

    let subnet = support::kind(&kinds, "aws_subnet");
    let dev = ours("shared.subnet_a");
    // The very block: find and create both name the subnet and its stack.
    assert_not_owned(
        subnet.find(&dev, &prod_wanted).await,
        &[&prod_subnet.id, "stack `prod-app`"],
    );
    assert_not_owned(
        subnet.create(&dev, &prod_wanted).await,
        &[&prod_subnet.id, "stack `prod-app`"],
    );
    // An overlapping block is a conflict with that subnet too, not a generic failure.
    let overlapping = subnet_props(&vpc.id, "10.30.1.0/25");
    assert_not_owned(
        subnet.create(&dev, &overlapping).await,
        &[&prod_subnet.id, "10.30.1.0/24", "stack `prod-app`"],
    );
    assert_eq!(subnet.find(&dev, &overlapping).await.unwrap(), None);

    // A subnet made by hand.
    let by_hand = aws
        .ec2
        .create_subnet()
        .vpc_id(&vpc.id)
        .cidr_block("10.30.2.0/24")
        .availability_zone("us-east-1a")
        .send()
        .await
        .expect("create untagged subnet");
    let by_hand_id = by_hand.subnet().and_then(|s| s.subnet_id()).unwrap();
    let wanted = subnet_props(&vpc.id, "10.30.2.0/24");
    assert_not_owned(
        subnet.find(&dev, &wanted).await,
        &[by_hand_id, "not managed by dagform"],
    );
    assert_not_owned(
        subnet.create(&dev, &wanted).await,
        &[by_hand_id, "not managed by dagform"],
    );

    // prod's subnet and VPC cannot be changed or deleted by this stack.
    let live = current(&prod_subnet, &prod_wanted);
    let mut public = prod_wanted.clone();
    public.insert("map_public_ip_on_launch".into(), json!(true));
    assert_not_owned(
        subnet
            .update(&dev, live, &public, &["map_public_ip_on_launch".into()])
            .await,
        &["stack `prod-app`"],
    );
    assert_not_owned(subnet.delete(&dev, live).await, &["stack `prod-app`"]);
    let vpc_kind = support::kind(&kinds, "aws_vpc");
    assert_not_owned(
        vpc_kind
            .delete(&ours("shared.vpc"), current(&vpc, &vpc_props("vpc")))
            .await,
        &["stack `prod-app`"],
    );
    let out = aws
        .ec2
        .describe_subnets()
        .subnet_ids(&prod_subnet.id)
        .send()
        .await
        .expect("prod's subnet is still there");
    assert_eq!(out.subnets()[0].map_public_ip_on_launch(), Some(false));
    assert_eq!(
        tag(out.subnets()[0].tags(), "dagform:stack"),
        Some(OTHER_STACK)
    );
    let out = aws
        .ec2
        .describe_vpcs()
        .vpc_ids(&vpc.id)
        .send()
        .await
        .expect("prod's VPC is still there");
    assert_eq!(out.vpcs().len(), 1);
}

/// Builds one of each kind through the kinds for `stack`, returning (kind, address, desired,
/// applied) in creation order.
async fn build_network(
    kinds: &Kinds,
    stack: &str,
) -> Vec<(&'static str, String, Properties, Applied)> {
    let mut built: Vec<(&'static str, String, Properties, Applied)> = Vec::new();
    let mut add = async |kind: &'static str, address: &str, desired: Value| {
        let desired = props(desired);
        let applied = create(kinds, kind, &ctx_of(stack, address), &desired).await;
        built.push((kind, address.to_owned(), desired, applied.clone()));
        applied.id
    };
    let vpc = add("aws_vpc", "net.vpc", Value::Object(vpc_props("vpc"))).await;
    let subnet = add(
        "aws_subnet",
        "net.public_a",
        Value::Object(subnet_props(&vpc, "10.30.0.0/24")),
    )
    .await;
    let igw = add(
        "aws_internet_gateway",
        "net.igw",
        json!({"name": "igw", "vpc_id": vpc}),
    )
    .await;
    let eip = add("aws_eip", "net.nat_eip", json!({"name": "nat"})).await;
    let nat = add(
        "aws_nat_gateway",
        "net.nat",
        json!({"name": "nat", "subnet_id": subnet, "allocation_id": eip}),
    )
    .await;
    let public_rt = add(
        "aws_route_table",
        "net.public_rt",
        json!({"name": "public", "vpc_id": vpc,
               "routes": [{"destination_cidr_block": "0.0.0.0/0", "gateway_id": igw}]}),
    )
    .await;
    add(
        "aws_route_table_association",
        "net.public_a_rta",
        json!({"route_table_id": public_rt, "subnet_id": subnet}),
    )
    .await;
    add(
        "aws_route_table",
        "net.private_rt",
        json!({"name": "private", "vpc_id": vpc,
               "routes": [{"destination_cidr_block": "0.0.0.0/0", "nat_gateway_id": nat}]}),
    )
    .await;
    let group = add(
        "aws_security_group",
        "net.web_sg",
        Value::Object(group_props(&vpc, "web")),
    )
    .await;
    add(
        "aws_security_group_rule",
        "net.web_https",
        json!({"security_group_id": group, "direction": "ingress", "protocol": "tcp",
               "from_port": 443, "to_port": 443, "cidr_ipv4": "0.0.0.0/0"}),
    )
    .await;
    built
}

#[tokio::test(flavor = "multi_thread")]
async fn find_adopts_only_this_stacks_object_and_never_a_superseded_one() {
    let (_emu, _aws, kinds) = support::setup().await;
    // Another stack's network with the same addresses, so that the tags must tell them apart.
    let prod = build_network(&kinds, OTHER_STACK).await;
    let dev = build_network(&kinds, STACK).await;
    for ((kind, address, desired, applied), (_, _, _, prod_applied)) in dev.iter().zip(&prod) {
        let k = support::kind(&kinds, kind);
        let mut ctx = ours(address);
        let found = k
            .find(&ctx, desired)
            .await
            .unwrap_or_else(|e| panic!("find {address}: {e}"));
        assert_eq!(
            found.map(|f| f.id),
            Some(applied.id.clone()),
            "{kind} `{address}` adopts what this stack made, not prod's {}",
            prod_applied.id
        );
        // The same object, as an older one of this address awaiting deletion: not returned.
        ctx.superseded = vec![applied.id.clone()];
        let found = k
            .find(&ctx, desired)
            .await
            .unwrap_or_else(|e| panic!("find {address}: {e}"));
        assert_eq!(found, None, "{kind} `{address}` skips a superseded object");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_and_deletes_of_another_stacks_objects_are_refused() {
    let (_emu, _aws, kinds) = support::setup().await;
    let prod = build_network(&kinds, OTHER_STACK).await;
    // In reverse order, as a destroy would: each refusal must leave the object in place.
    for (kind, address, desired, applied) in prod.iter().rev() {
        let k = support::kind(&kinds, kind);
        let dev = ours(address);
        let live = current(applied, desired);
        // An association has no in-place update: every change replaces it.
        if *kind != "aws_route_table_association" {
            let names: Vec<String> = desired.keys().cloned().collect();
            assert_not_owned(
                k.update(&dev, live, desired, &names).await,
                &["stack `prod-app`"],
            );
        }
        assert_not_owned(k.delete(&dev, live).await, &["stack `prod-app`"]);
        let observed = k
            .read(&ctx_of(OTHER_STACK, address), live)
            .await
            .unwrap_or_else(|e| panic!("read {address}: {e}"))
            .unwrap_or_else(|| panic!("{kind} `{address}` of prod was deleted"));
        assert_eq!(
            unmatched_properties(desired, &observed.properties, &[]),
            Vec::<String>::new(),
            "{kind} `{address}` of prod is unchanged"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_table_created_without_its_route_is_finished_on_adoption() {
    let (_emu, aws, kinds) = support::setup().await;
    let vpc = create(&kinds, "aws_vpc", &ours("net.vpc"), &vpc_props("vpc")).await;
    let subnet = create(
        &kinds,
        "aws_subnet",
        &ours("net.public_a"),
        &subnet_props(&vpc.id, "10.30.0.0/24"),
    )
    .await;
    let eip = create(
        &kinds,
        "aws_eip",
        &ours("net.nat_eip"),
        &props(json!({"name": "nat"})),
    )
    .await;
    let nat = create(
        &kinds,
        "aws_nat_gateway",
        &ours("net.nat"),
        &props(json!({"name": "nat", "subnet_id": subnet.id, "allocation_id": eip.id})),
    )
    .await;

    // The run was killed between CreateRouteTable and CreateRoute: a tagged table, no route.
    let ctx = ours("net.private_rt");
    let made = aws
        .ec2
        .create_route_table()
        .vpc_id(&vpc.id)
        .tag_specifications(tags_of(&ctx, ResourceType::RouteTable, None))
        .send()
        .await
        .expect("create route table");
    let table_id = made.route_table().and_then(|t| t.route_table_id()).unwrap();
    let desired = props(json!({"name": "private", "vpc_id": vpc.id,
        "routes": [{"destination_cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}]}));
    let found = support::kind(&kinds, "aws_route_table")
        .find(&ctx, &desired)
        .await
        .expect("find")
        .expect("the half-built table is found");
    assert_eq!(found.id, table_id);
    let differed = finish_adopted(&kinds, "aws_route_table", &ctx, &found, &desired).await;
    assert!(differed.contains(&"routes".to_owned()), "{differed:?}");

    let out = aws
        .ec2
        .describe_route_tables()
        .route_table_ids(table_id)
        .send()
        .await
        .expect("describe route table");
    let table = &out.route_tables()[0];
    let default_route = table
        .routes()
        .iter()
        .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
        .expect("the default route was added");
    assert_eq!(default_route.nat_gateway_id(), Some(nat.id.as_str()));
    assert_eq!(tag(table.tags(), "Name"), Some("private"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_security_group_that_still_allows_all_egress_is_finished_on_adoption() {
    let (_emu, aws, kinds) = support::setup().await;
    let vpc = create(&kinds, "aws_vpc", &ours("net.vpc"), &vpc_props("vpc")).await;
    let sg = support::kind(&kinds, "aws_security_group");

    // Killed between CreateSecurityGroup and the egress revoke; adopted through find.
    let ctx = ours("net.web_sg");
    let wanted = group_props(&vpc.id, "web");
    let made = aws
        .ec2
        .create_security_group()
        .group_name("web")
        .description("web tier")
        .vpc_id(&vpc.id)
        .tag_specifications(tags_of(&ctx, ResourceType::SecurityGroup, None))
        .send()
        .await
        .expect("create group");
    let group_id = made.group_id().unwrap().to_owned();
    assert_eq!(egress_rules(&aws, &group_id).await.len(), 1);
    let found = sg.find(&ctx, &wanted).await.expect("find").expect("found");
    assert_eq!(found.id, group_id);
    let differed = finish_adopted(&kinds, "aws_security_group", &ctx, &found, &wanted).await;
    assert_eq!(differed, vec!["revoke_default_egress".to_owned()]);
    assert!(egress_rules(&aws, &group_id).await.is_empty());

    // Killed the same way, but this time the retried create meets the name: it adopts the
    // group (InvalidGroup.Duplicate) and finishes it instead of failing.
    let ctx = ours("net.api_sg");
    let wanted = group_props(&vpc.id, "api");
    let made = aws
        .ec2
        .create_security_group()
        .group_name("api")
        .description("web tier")
        .vpc_id(&vpc.id)
        .tag_specifications(tags_of(&ctx, ResourceType::SecurityGroup, None))
        .send()
        .await
        .expect("create group");
    let group_id = made.group_id().unwrap();
    let applied = sg.create(&ctx, &wanted).await.expect("create adopts");
    assert_eq!(applied.id, group_id);
    assert!(egress_rules(&aws, group_id).await.is_empty());
    let out = aws
        .ec2
        .describe_security_groups()
        .filters(filter("vpc-id", &vpc.id))
        .filters(filter("group-name", "api"))
        .send()
        .await
        .expect("describe groups");
    assert_eq!(out.security_groups().len(), 1, "no second group");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vpc_created_without_its_dns_attributes_is_finished_on_adoption() {
    let (_emu, aws, kinds) = support::setup().await;
    let ctx = ours("net.vpc");
    let made = aws
        .ec2
        .create_vpc()
        .cidr_block("10.30.0.0/16")
        .tag_specifications(tags_of(&ctx, ResourceType::Vpc, Some("vpc")))
        .send()
        .await
        .expect("create VPC");
    let vpc_id = made.vpc().and_then(|v| v.vpc_id()).unwrap();
    let wanted = vpc_props("vpc");
    let found = support::kind(&kinds, "aws_vpc")
        .find(&ctx, &wanted)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.id, vpc_id);
    let differed = finish_adopted(&kinds, "aws_vpc", &ctx, &found, &wanted).await;
    assert!(
        differed.contains(&"enable_dns_hostnames".to_owned()),
        "{differed:?}"
    );
    let out = aws
        .ec2
        .describe_vpc_attribute()
        .vpc_id(vpc_id)
        .attribute(VpcAttributeName::EnableDnsHostnames)
        .send()
        .await
        .expect("describe attribute");
    assert_eq!(
        out.enable_dns_hostnames().and_then(|v| v.value()),
        Some(true)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nat_gateway_is_found_again_after_a_create_whose_wait_was_cut_short() {
    let (_emu, aws, kinds) = support::setup().await;
    let vpc = create(&kinds, "aws_vpc", &ours("net.vpc"), &vpc_props("vpc")).await;
    let subnet = create(
        &kinds,
        "aws_subnet",
        &ours("net.public_a"),
        &subnet_props(&vpc.id, "10.30.0.0/24"),
    )
    .await;
    let eip = create(
        &kinds,
        "aws_eip",
        &ours("net.nat_eip"),
        &props(json!({"name": "nat"})),
    )
    .await;
    let nat_kind = support::kind(&kinds, "aws_nat_gateway");
    let wanted = props(json!({"name": "nat", "subnet_id": subnet.id, "allocation_id": eip.id}));

    // CreateNatGateway went through, then the wait for `available` was cut short (a kill, or
    // the timeout): the first call of the kind's create, made here.
    let mut ctx = ours("net.nat");
    ctx.intent = "first-attempt".into();
    let tags = tags_of(&ctx, ResourceType::Natgateway, Some("nat"));
    let made = aws
        .ec2
        .create_nat_gateway()
        .subnet_id(&subnet.id)
        .allocation_id(&eip.id)
        .tag_specifications(tags)
        .client_token(ctx.client_token(64))
        .send()
        .await
        .expect("create NAT gateway");
    let nat_id = made
        .nat_gateway()
        .and_then(|n| n.nat_gateway_id())
        .unwrap()
        .to_owned();

    let found = nat_kind
        .find(&ctx, &wanted)
        .await
        .expect("find")
        .expect("found again");
    assert_eq!(found.id, nat_id);
    assert_eq!(
        finish_adopted(&kinds, "aws_nat_gateway", &ctx, &found, &wanted).await,
        Vec::<String>::new()
    );

    // Another stack's find does not see it; once deleted, ours does not either.
    assert_eq!(
        nat_kind
            .find(&ctx_of(OTHER_STACK, "net.nat"), &wanted)
            .await
            .unwrap(),
        None
    );
    nat_kind
        .delete(&ctx, current(&found, &wanted))
        .await
        .expect("delete");
    let out = aws
        .ec2
        .describe_nat_gateways()
        .nat_gateway_ids(&nat_id)
        .send()
        .await
        .expect("describe NAT gateway");
    assert_eq!(
        out.nat_gateways()[0].state().map(|s| s.as_str()),
        Some("deleted")
    );
    assert_eq!(nat_kind.find(&ctx, &wanted).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn gateways_and_addresses_are_tagged_on_create() {
    let (_emu, aws, kinds) = support::setup().await;
    let vpc = create(&kinds, "aws_vpc", &ours("net.vpc"), &vpc_props("vpc")).await;
    let igw = create(
        &kinds,
        "aws_internet_gateway",
        &ours("net.igw"),
        &props(json!({"name": "igw", "vpc_id": vpc.id})),
    )
    .await;
    let eip = create(
        &kinds,
        "aws_eip",
        &ours("net.nat_eip"),
        &props(json!({"name": "nat"})),
    )
    .await;
    let out = aws
        .ec2
        .describe_internet_gateways()
        .filters(filter("tag:dagform:stack", STACK))
        .filters(filter("tag:dagform:address", "net.igw"))
        .send()
        .await
        .expect("describe gateways");
    let ids: Vec<_> = out
        .internet_gateways()
        .iter()
        .filter_map(|g| g.internet_gateway_id())
        .collect();
    assert_eq!(ids, vec![igw.id.as_str()]);
    let out = aws
        .ec2
        .describe_addresses()
        .filters(filter("tag:dagform:address", "net.nat_eip"))
        .send()
        .await
        .expect("describe addresses");
    let address = &out.addresses()[0];
    assert_eq!(address.allocation_id(), Some(eip.id.as_str()));
    assert_eq!(tag(address.tags(), "dagform:stack"), Some(STACK));
    assert_eq!(tag(address.tags(), "Name"), Some("nat"));
    // An untagged address is nobody's: this stack's find does not take it.
    aws.ec2
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .send()
        .await
        .expect("allocate untagged address");
    let mut superseded = ours("net.nat_eip");
    superseded.superseded = vec![eip.id.clone()];
    assert_eq!(
        support::kind(&kinds, "aws_eip")
            .find(&superseded, &props(json!({"name": "nat"})))
            .await
            .unwrap(),
        None
    );
}

/// A rule added by hand to a group of ours is nobody's: this stack's identical rule node
/// refuses it rather than adopting it.
#[tokio::test(flavor = "multi_thread")]
async fn a_hand_made_rule_identical_to_a_wanted_one_is_refused() {
    let (_emu, aws, kinds) = support::setup().await;
    let vpc = create(&kinds, "aws_vpc", &ours("net.vpc"), &vpc_props("vpc")).await;
    let group = create(
        &kinds,
        "aws_security_group",
        &ours("net.web_sg"),
        &group_props(&vpc.id, "web"),
    )
    .await;
    aws.ec2
        .authorize_security_group_ingress()
        .group_id(&group.id)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/8").build())
                .build(),
        )
        .send()
        .await
        .expect("authorize by hand");
    let ssh = props(
        json!({"security_group_id": group.id, "direction": "ingress",
                           "protocol": "tcp", "from_port": 22, "to_port": 22,
                           "cidr_ipv4": "10.0.0.0/8"}),
    );
    let rule = support::kind(&kinds, "aws_security_group_rule");
    let ctx = ours("net.web_ssh");
    assert_not_owned(rule.find(&ctx, &ssh).await, &["not managed by dagform"]);
    assert_not_owned(rule.create(&ctx, &ssh).await, &["not managed by dagform"]);
}
