mod support;

// The EC2 network kinds against a private emulator: a whole small network built node by
// node, checked with describe calls, updated in place and torn down in reverse order.

use aws_sdk_ec2::types::{Filter, VpcAttributeName};
use dagform_aws::AwsClients;
use dagform_core::{Applied, Current, Kinds, OpContext, Properties, ResourceKind};
use serde_json::{Value, json};
use std::sync::Arc;
use support::{Emulator, op_context, props};

/// One created object: its kind, context, desired properties and what create returned.
struct Node {
    kind: Arc<dyn ResourceKind>,
    ctx: OpContext,
    props: Properties,
    applied: Applied,
}

impl Node {
    async fn create(kinds: &Kinds, kind: &str, address: &str, desired: Value) -> Node {
        let kind = kinds
            .get(kind)
            .unwrap_or_else(|| panic!("kind {kind} not registered"))
            .clone();
        let ctx = op_context(address);
        let props = props(desired);
        let applied = kind
            .create(&ctx, &props)
            .await
            .unwrap_or_else(|e| panic!("create {address}: {e}"));
        Node {
            kind,
            ctx,
            props,
            applied,
        }
    }

    fn id(&self) -> &str {
        &self.applied.id
    }

    fn current(&self) -> Current<'_> {
        Current {
            id: &self.applied.id,
            properties: &self.props,
            outputs: &self.applied.outputs,
        }
    }

    /// Reads the object back and checks that every observed property equals the desired one
    /// and that every desired property was observed.
    async fn assert_read_matches(&self) {
        let observed = self
            .kind
            .read(&self.ctx, self.current())
            .await
            .unwrap_or_else(|e| panic!("read {}: {e}", self.ctx.address))
            .unwrap_or_else(|| panic!("read {}: gone", self.ctx.address));
        assert_eq!(
            Value::Object(observed.properties),
            Value::Object(self.props.clone()),
            "observed properties of {}",
            self.ctx.address
        );
        assert_eq!(
            observed.outputs, self.applied.outputs,
            "outputs of {}",
            self.ctx.address
        );
    }

    /// Updates to `desired`, naming the properties that differ.
    async fn update(&mut self, desired: Value) {
        let desired = props(desired);
        let changed: Vec<String> = desired
            .iter()
            .filter(|(k, v)| self.props.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &changed {
            assert!(
                !self.kind.forces_replacement(key),
                "{key} of {} should change in place",
                self.ctx.address
            );
        }
        self.applied = self
            .kind
            .update(&self.ctx, self.current(), &desired, &changed)
            .await
            .unwrap_or_else(|e| panic!("update {}: {e}", self.ctx.address));
        self.props = desired;
    }

    /// Deletes, deletes again (already gone is fine) and checks that read sees nothing.
    async fn delete(&self) {
        for attempt in ["delete", "delete again"] {
            self.kind
                .delete(&self.ctx, self.current())
                .await
                .unwrap_or_else(|e| panic!("{attempt} {}: {e}", self.ctx.address));
        }
        let after = self
            .kind
            .read(&self.ctx, self.current())
            .await
            .unwrap_or_else(|e| panic!("read {} after delete: {e}", self.ctx.address));
        assert!(
            after.is_none(),
            "{} still readable after delete",
            self.ctx.address
        );
    }
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn tag<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// The routes of a table other than `local`, as (destination, gateway, NAT gateway).
async fn routes(aws: &AwsClients, table: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let out = aws
        .ec2
        .describe_route_tables()
        .route_table_ids(table)
        .send()
        .await
        .unwrap();
    let mut routes: Vec<_> = out.route_tables()[0]
        .routes()
        .iter()
        .filter(|r| r.gateway_id() != Some("local"))
        .map(|r| {
            (
                r.destination_cidr_block().unwrap().to_string(),
                r.gateway_id().map(str::to_string),
                r.nat_gateway_id().map(str::to_string),
            )
        })
        .collect();
    routes.sort();
    routes
}

async fn sg_rules(aws: &AwsClients, group: &str) -> Vec<aws_sdk_ec2::types::SecurityGroupRule> {
    aws.ec2
        .describe_security_group_rules()
        .filters(filter("group-id", group))
        .send()
        .await
        .unwrap()
        .security_group_rules()
        .to_vec()
}

async fn dns_attribute(aws: &AwsClients, vpc: &str, attr: VpcAttributeName) -> bool {
    let out = aws
        .ec2
        .describe_vpc_attribute()
        .vpc_id(vpc)
        .attribute(attr.clone())
        .send()
        .await
        .unwrap();
    let value = match attr {
        VpcAttributeName::EnableDnsSupport => out.enable_dns_support(),
        _ => out.enable_dns_hostnames(),
    };
    value.and_then(|v| v.value()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn builds_updates_and_tears_down_a_network() {
    let emu = Emulator::start();
    let aws = emu.clients().await;
    let kinds = dagform_aws::kinds(Arc::new(emu.clients().await));

    // VPC
    let mut vpc = Node::create(
        &kinds,
        "aws_vpc",
        "network.vpc",
        json!({"name": "dev-vpc", "cidr_block": "10.20.0.0/16",
               "enable_dns_hostnames": true, "enable_dns_support": true}),
    )
    .await;
    let described = aws
        .ec2
        .describe_vpcs()
        .vpc_ids(vpc.id())
        .send()
        .await
        .unwrap();
    let v = &described.vpcs()[0];
    assert_eq!(v.cidr_block(), Some("10.20.0.0/16"));
    assert_eq!(tag(v.tags(), "Name"), Some("dev-vpc"));
    assert_eq!(tag(v.tags(), "dagform:address"), Some("network.vpc"));
    assert_eq!(tag(v.tags(), "dagform:stack"), Some("test"));
    assert!(dns_attribute(&aws, vpc.id(), VpcAttributeName::EnableDnsHostnames).await);
    assert!(dns_attribute(&aws, vpc.id(), VpcAttributeName::EnableDnsSupport).await);
    vpc.assert_read_matches().await;
    let found = vpc.kind.find(&vpc.ctx, &vpc.props).await.unwrap();
    assert_eq!(
        found.map(|a| a.id),
        Some(vpc.id().to_string()),
        "find by tag"
    );

    // Subnets: two public, two private, in two AZs.
    let mut subnets = Vec::new();
    for (label, cidr, az, public) in [
        ("public_a", "10.20.0.0/24", "us-east-1a", true),
        ("public_b", "10.20.1.0/24", "us-east-1b", true),
        ("private_a", "10.20.10.0/24", "us-east-1a", false),
        ("private_b", "10.20.11.0/24", "us-east-1b", false),
    ] {
        let node = Node::create(
            &kinds,
            "aws_subnet",
            &format!("network.subnet_{label}"),
            json!({"name": format!("dev-{label}"), "vpc_id": vpc.id(), "cidr_block": cidr,
                   "availability_zone": az, "map_public_ip_on_launch": public}),
        )
        .await;
        assert_eq!(node.applied.outputs["availability_zone"], json!(az));
        let out = aws
            .ec2
            .describe_subnets()
            .subnet_ids(node.id())
            .send()
            .await
            .unwrap();
        let s = &out.subnets()[0];
        assert_eq!(s.vpc_id(), Some(vpc.id()));
        assert_eq!(s.cidr_block(), Some(cidr));
        assert_eq!(s.availability_zone(), Some(az));
        assert_eq!(s.map_public_ip_on_launch(), Some(public));
        assert_eq!(
            tag(s.tags(), "dagform:address"),
            Some(format!("network.subnet_{label}").as_str())
        );
        node.assert_read_matches().await;
        subnets.push(node);
    }

    // Internet gateway, attached.
    let igw = Node::create(
        &kinds,
        "aws_internet_gateway",
        "network.igw",
        json!({"name": "dev-igw", "vpc_id": vpc.id()}),
    )
    .await;
    let out = aws
        .ec2
        .describe_internet_gateways()
        .internet_gateway_ids(igw.id())
        .send()
        .await
        .unwrap();
    let g = &out.internet_gateways()[0];
    assert_eq!(g.attachments().len(), 1);
    assert_eq!(g.attachments()[0].vpc_id(), Some(vpc.id()));
    assert_eq!(tag(g.tags(), "dagform:address"), Some("network.igw"));
    igw.assert_read_matches().await;

    // Elastic IP and NAT gateway in the first public subnet.
    let eip = Node::create(
        &kinds,
        "aws_eip",
        "network.nat_eip",
        json!({"name": "dev-nat"}),
    )
    .await;
    let out = aws
        .ec2
        .describe_addresses()
        .allocation_ids(eip.id())
        .send()
        .await
        .unwrap();
    let a = &out.addresses()[0];
    assert_eq!(
        Some(&json!(a.public_ip().unwrap())),
        eip.applied.outputs.get("public_ip")
    );
    assert_eq!(tag(a.tags(), "dagform:address"), Some("network.nat_eip"));
    eip.assert_read_matches().await;

    let nat = Node::create(
        &kinds,
        "aws_nat_gateway",
        "network.nat",
        json!({"name": "dev-nat", "subnet_id": subnets[0].id(), "allocation_id": eip.id()}),
    )
    .await;
    let out = aws
        .ec2
        .describe_nat_gateways()
        .nat_gateway_ids(nat.id())
        .send()
        .await
        .unwrap();
    let n = &out.nat_gateways()[0];
    assert_eq!(n.state().map(|s| s.as_str()), Some("available"));
    assert_eq!(n.subnet_id(), Some(subnets[0].id()));
    assert_eq!(n.nat_gateway_addresses()[0].allocation_id(), Some(eip.id()));
    assert_eq!(tag(n.tags(), "dagform:address"), Some("network.nat"));
    nat.assert_read_matches().await;

    // Route tables and associations.
    let public_rt = Node::create(
        &kinds,
        "aws_route_table",
        "network.public_rt",
        json!({"name": "dev-public", "vpc_id": vpc.id(),
               "routes": [{"destination_cidr_block": "0.0.0.0/0", "gateway_id": igw.id()}]}),
    )
    .await;
    let mut private_rt = Node::create(
        &kinds,
        "aws_route_table",
        "network.private_rt",
        json!({"name": "dev-private", "vpc_id": vpc.id(),
               "routes": [{"destination_cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id()}]}),
    )
    .await;
    assert_eq!(
        routes(&aws, public_rt.id()).await,
        vec![("0.0.0.0/0".into(), Some(igw.id().into()), None)]
    );
    let private_routes = routes(&aws, private_rt.id()).await;
    assert_eq!(private_routes.len(), 1);
    assert_eq!(private_routes[0].0, "0.0.0.0/0");
    assert_eq!(private_routes[0].2.as_deref(), Some(nat.id()));
    public_rt.assert_read_matches().await;
    private_rt.assert_read_matches().await;

    let mut associations = Vec::new();
    for (i, subnet) in subnets.iter().enumerate() {
        let table = if i < 2 { &public_rt } else { &private_rt };
        let assoc = Node::create(
            &kinds,
            "aws_route_table_association",
            &format!("network.rta_{i}"),
            json!({"route_table_id": table.id(), "subnet_id": subnet.id()}),
        )
        .await;
        let out = aws
            .ec2
            .describe_route_tables()
            .route_table_ids(table.id())
            .send()
            .await
            .unwrap();
        let found = out.route_tables()[0]
            .associations()
            .iter()
            .find(|a| a.route_table_association_id() == Some(assoc.id()))
            .expect("association listed on its table");
        assert_eq!(found.subnet_id(), Some(subnet.id()));
        assoc.assert_read_matches().await;
        let adopted = assoc.kind.find(&assoc.ctx, &assoc.props).await.unwrap();
        assert_eq!(adopted.map(|a| a.id), Some(assoc.id().to_string()));
        associations.push(assoc);
    }

    // Security groups: B admits tcp 3001 from A only; A sends only to B on 3001.
    let sg_a = Node::create(
        &kinds,
        "aws_security_group",
        "network.sg_alb",
        json!({"name": "dev-alb", "description": "ALB", "vpc_id": vpc.id(),
               "revoke_default_egress": true}),
    )
    .await;
    let sg_b = Node::create(
        &kinds,
        "aws_security_group",
        "network.sg_backend",
        json!({"name": "dev-backend", "description": "Backend (tasks)", "vpc_id": vpc.id(),
               "revoke_default_egress": false}),
    )
    .await;
    let out = aws
        .ec2
        .describe_security_groups()
        .group_ids(sg_a.id())
        .send()
        .await
        .unwrap();
    let a = &out.security_groups()[0];
    assert_eq!(a.group_name(), Some("dev-alb"));
    assert_eq!(a.vpc_id(), Some(vpc.id()));
    assert!(
        a.ip_permissions_egress().is_empty(),
        "default egress of A revoked"
    );
    assert_eq!(tag(a.tags(), "dagform:address"), Some("network.sg_alb"));
    assert_eq!(
        sg_rules(&aws, sg_b.id()).await.len(),
        1,
        "B keeps its default egress"
    );
    sg_a.assert_read_matches().await;
    sg_b.assert_read_matches().await;

    let b_from_a = Node::create(
        &kinds,
        "aws_security_group_rule",
        "network.sg_backend_from_alb",
        json!({"security_group_id": sg_b.id(), "direction": "ingress", "protocol": "tcp",
               "from_port": 3001, "to_port": 3001, "peer_security_group_id": sg_a.id()}),
    )
    .await;
    let a_to_b = Node::create(
        &kinds,
        "aws_security_group_rule",
        "network.sg_alb_to_backend",
        json!({"security_group_id": sg_a.id(), "direction": "egress", "protocol": "tcp",
               "from_port": 3001, "to_port": 3001, "peer_security_group_id": sg_b.id()}),
    )
    .await;
    let mut a_https = Node::create(
        &kinds,
        "aws_security_group_rule",
        "network.sg_alb_https",
        json!({"security_group_id": sg_a.id(), "direction": "ingress", "protocol": "tcp",
               "from_port": 443, "to_port": 443, "cidr_ipv4": "0.0.0.0/0",
               "description": "HTTPS from anywhere"}),
    )
    .await;
    for rule in [&b_from_a, &a_to_b, &a_https] {
        assert!(rule.id().starts_with("sgr-"), "rule id {}", rule.id());
        rule.assert_read_matches().await;
        let adopted = rule.kind.find(&rule.ctx, &rule.props).await.unwrap();
        assert_eq!(
            adopted.map(|a| a.id),
            Some(rule.id().to_string()),
            "find rule by tag"
        );
    }
    let b_rules = sg_rules(&aws, sg_b.id()).await;
    let ingress: Vec<_> = b_rules
        .iter()
        .filter(|r| r.is_egress() == Some(false))
        .collect();
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0].security_group_rule_id(), Some(b_from_a.id()));
    assert_eq!(ingress[0].ip_protocol(), Some("tcp"));
    assert_eq!(
        (ingress[0].from_port(), ingress[0].to_port()),
        (Some(3001), Some(3001))
    );
    assert_eq!(
        ingress[0]
            .referenced_group_info()
            .and_then(|g| g.group_id()),
        Some(sg_a.id())
    );
    let a_rules = sg_rules(&aws, sg_a.id()).await;
    let egress: Vec<_> = a_rules
        .iter()
        .filter(|r| r.is_egress() == Some(true))
        .collect();
    assert_eq!(egress.len(), 1, "A's only egress is to B");
    assert_eq!(egress[0].security_group_rule_id(), Some(a_to_b.id()));
    assert_eq!(
        (egress[0].from_port(), egress[0].to_port()),
        (Some(3001), Some(3001))
    );
    assert_eq!(
        egress[0].referenced_group_info().and_then(|g| g.group_id()),
        Some(sg_b.id())
    );
    assert!(egress[0].cidr_ipv4().is_none());
    let https = a_rules
        .iter()
        .find(|r| r.security_group_rule_id() == Some(a_https.id()))
        .unwrap();
    assert_eq!(https.cidr_ipv4(), Some("0.0.0.0/0"));
    assert_eq!(https.description(), Some("HTTPS from anywhere"));
    assert_eq!(
        tag(https.tags(), "dagform:address"),
        Some("network.sg_alb_https")
    );

    // In-place updates: routes, public IP mapping, DNS hostnames, rule description.
    private_rt
        .update(
            json!({"name": "dev-private", "vpc_id": vpc.id(), "routes": [
            {"destination_cidr_block": "0.0.0.0/0", "gateway_id": igw.id()},
            {"destination_cidr_block": "172.16.0.0/12", "nat_gateway_id": nat.id()}]}),
        )
        .await;
    let r = routes(&aws, private_rt.id()).await;
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0], ("0.0.0.0/0".into(), Some(igw.id().into()), None));
    assert_eq!(r[1].0, "172.16.0.0/12");
    assert_eq!(r[1].2.as_deref(), Some(nat.id()));
    private_rt.assert_read_matches().await;
    private_rt
        .update(
            json!({"name": "dev-private-2", "vpc_id": vpc.id(), "routes": [
            {"destination_cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id()}]}),
        )
        .await;
    let r = routes(&aws, private_rt.id()).await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].2.as_deref(), Some(nat.id()));
    private_rt.assert_read_matches().await;

    let subnet = &mut subnets[1];
    let mut desired = subnet.props.clone();
    desired.insert("map_public_ip_on_launch".into(), json!(false));
    subnet.update(Value::Object(desired)).await;
    let out = aws
        .ec2
        .describe_subnets()
        .subnet_ids(subnet.id())
        .send()
        .await
        .unwrap();
    assert_eq!(out.subnets()[0].map_public_ip_on_launch(), Some(false));
    subnet.assert_read_matches().await;

    vpc.update(json!({"name": "dev-vpc", "cidr_block": "10.20.0.0/16",
                      "enable_dns_hostnames": false, "enable_dns_support": true}))
        .await;
    assert!(!dns_attribute(&aws, vpc.id(), VpcAttributeName::EnableDnsHostnames).await);
    assert!(dns_attribute(&aws, vpc.id(), VpcAttributeName::EnableDnsSupport).await);
    vpc.assert_read_matches().await;

    let mut desired = a_https.props.clone();
    desired.insert("description".into(), json!("HTTPS (public)"));
    a_https.update(Value::Object(desired)).await;
    let rules = sg_rules(&aws, sg_a.id()).await;
    let https = rules
        .iter()
        .find(|r| r.security_group_rule_id() == Some(a_https.id()))
        .unwrap();
    assert_eq!(https.description(), Some("HTTPS (public)"));
    a_https.assert_read_matches().await;

    // Teardown in reverse order.
    for rule in [&a_https, &a_to_b, &b_from_a] {
        rule.delete().await;
    }
    assert!(
        sg_rules(&aws, sg_b.id())
            .await
            .iter()
            .all(|r| r.is_egress() == Some(true))
    );
    assert!(sg_rules(&aws, sg_a.id()).await.is_empty());
    sg_b.delete().await;
    sg_a.delete().await;
    for assoc in associations.iter().rev() {
        assoc.delete().await;
    }
    private_rt.delete().await;
    public_rt.delete().await;
    nat.delete().await;
    let out = aws
        .ec2
        .describe_nat_gateways()
        .nat_gateway_ids(nat.id())
        .send()
        .await
        .unwrap();
    assert!(
        out.nat_gateways()
            .iter()
            .all(|n| n.state().map(|s| s.as_str()) == Some("deleted"))
    );
    eip.delete().await;
    igw.delete().await;
    for subnet in subnets.iter().rev() {
        subnet.delete().await;
    }
    vpc.delete().await;

    let stack = filter("tag:dagform:stack", "test");
    let ec2 = &aws.ec2;
    let left = ec2
        .describe_vpcs()
        .filters(stack.clone())
        .send()
        .await
        .unwrap();
    assert!(left.vpcs().is_empty(), "VPCs left: {:?}", left.vpcs());
    let left = ec2
        .describe_subnets()
        .filters(stack.clone())
        .send()
        .await
        .unwrap();
    assert!(left.subnets().is_empty());
    let left = ec2
        .describe_internet_gateways()
        .filters(stack.clone())
        .send()
        .await
        .unwrap();
    assert!(left.internet_gateways().is_empty());
    let left = ec2
        .describe_addresses()
        .filters(stack.clone())
        .send()
        .await
        .unwrap();
    assert!(left.addresses().is_empty());
    let left = ec2
        .describe_route_tables()
        .filters(stack.clone())
        .send()
        .await
        .unwrap();
    assert!(left.route_tables().is_empty());
    let left = ec2
        .describe_security_groups()
        .filters(stack.clone())
        .send()
        .await
        .unwrap();
    assert!(left.security_groups().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn default_vpc_data_source_finds_the_default_network() {
    let emu = Emulator::start();
    let aws = emu.clients().await;
    let kinds = dagform_aws::kinds(Arc::new(emu.clients().await));
    let kind = kinds.get("data_default_vpc").expect("registered").clone();
    assert!(kind.is_data_source());

    let out = aws
        .ec2
        .describe_vpcs()
        .filters(filter("is-default", "true"))
        .send()
        .await
        .unwrap();
    let default = out.vpcs()[0].clone();
    let default_id = default.vpc_id().unwrap();
    let out = aws
        .ec2
        .describe_subnets()
        .filters(filter("vpc-id", default_id))
        .send()
        .await
        .unwrap();
    let mut expected: Vec<_> = out
        .subnets()
        .iter()
        .filter(|s| s.default_for_az() == Some(true))
        .map(|s| (s.availability_zone().unwrap(), s.subnet_id().unwrap()))
        .collect();
    expected.sort();
    let expected: Vec<Value> = expected.into_iter().map(|(_, s)| json!(s)).collect();
    assert!(expected.len() >= 2, "moto has default subnets");

    // A VPC of our own must not be mistaken for the default one.
    let vpc = Node::create(
        &kinds,
        "aws_vpc",
        "network.vpc",
        json!({"name": "own", "cidr_block": "10.30.0.0/16",
               "enable_dns_hostnames": false, "enable_dns_support": true}),
    )
    .await;

    let ctx = op_context("network.default_vpc");
    for desired in [json!({}), json!({"vpc_id": default_id})] {
        let desired = props(desired);
        let applied = kind.create(&ctx, &desired).await.unwrap();
        assert_eq!(applied.id, default_id);
        assert_eq!(applied.outputs["id"], json!(default_id));
        assert_eq!(
            applied.outputs["cidr_block"],
            json!(default.cidr_block().unwrap())
        );
        assert_eq!(
            applied.outputs["subnet_ids"],
            Value::Array(expected.clone())
        );

        let current = Current {
            id: &applied.id,
            properties: &desired,
            outputs: &applied.outputs,
        };
        let observed = kind.read(&ctx, current).await.unwrap().expect("found");
        assert_eq!(observed.properties, desired);
        assert_eq!(observed.outputs, applied.outputs);

        kind.delete(&ctx, current).await.unwrap();
        let out = aws
            .ec2
            .describe_vpcs()
            .vpc_ids(default_id)
            .send()
            .await
            .unwrap();
        assert_eq!(out.vpcs().len(), 1, "the default VPC is untouched");
        let out = aws
            .ec2
            .describe_subnets()
            .filters(filter("vpc-id", default_id))
            .send()
            .await
            .unwrap();
        assert_eq!(
            out.subnets().len(),
            expected.len(),
            "its subnets are untouched"
        );
    }

    // A given non-default VPC with no subnets, and a VPC that does not exist.
    let applied = kind
        .create(&ctx, &props(json!({"vpc_id": vpc.id()})))
        .await
        .unwrap();
    assert_eq!(applied.outputs["cidr_block"], json!("10.30.0.0/16"));
    assert_eq!(applied.outputs["subnet_ids"], json!([]));
    // Picked by its tags (kinds tag what they create with Name).
    let by_tags = props(json!({"vpc_tags": {"Name": "own"}}));
    let found = kind.create(&ctx, &by_tags).await.unwrap();
    assert_eq!(found.id, vpc.id());
    let observed = kind
        .read(
            &ctx,
            Current {
                id: &found.id,
                properties: &by_tags,
                outputs: &found.outputs,
            },
        )
        .await
        .unwrap()
        .expect("found");
    assert_eq!(
        observed.properties, by_tags,
        "no drift on how it was picked"
    );
    let none = kind
        .create(&ctx, &props(json!({"vpc_tags": {"Name": "nobody"}})))
        .await;
    assert!(
        none.unwrap_err()
            .to_string()
            .contains("0 VPCs carry the tags")
    );
    let missing = kind
        .create(&ctx, &props(json!({"vpc_id": "vpc-0123456789abcdef0"})))
        .await;
    assert!(missing.is_err());
    vpc.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_properties_are_rejected_before_calling_aws() {
    let emu = Emulator::start();
    let kinds = dagform_aws::kinds(Arc::new(emu.clients().await));
    let ctx = op_context("network.bad");
    let cases = [
        (
            "aws_vpc",
            json!({"name": "v", "cidr_block": "10.0.0.1/16",
                   "enable_dns_hostnames": false, "enable_dns_support": true}),
        ),
        (
            "aws_vpc",
            json!({"name": "v", "cidr_block": "10.0.0.0/8",
                   "enable_dns_hostnames": false, "enable_dns_support": true}),
        ),
        (
            "aws_vpc",
            json!({"name": "v", "cidr_block": "10.0.0.0/16",
                   "enable_dns_hostnames": true, "enable_dns_support": false}),
        ),
        (
            "aws_vpc",
            json!({"name": "v", "cidr_block": "10.0.0.0/16", "enable_dns_hostnames": true,
                   "enable_dns_support": true, "tenancy": "dedicated"}),
        ),
        (
            "aws_route_table",
            json!({"name": "r", "vpc_id": "vpc-1", "routes": [
                {"destination_cidr_block": "0.0.0.0/0", "gateway_id": "igw-1",
                 "nat_gateway_id": "nat-1"}]}),
        ),
        (
            "aws_security_group",
            json!({"name": "sg-web", "description": "web", "vpc_id": "vpc-1",
                   "revoke_default_egress": false}),
        ),
        (
            "aws_security_group",
            json!({"name": "web", "description": "caf\u{e9}", "vpc_id": "vpc-1",
                   "revoke_default_egress": false}),
        ),
        (
            "aws_security_group_rule",
            json!({"security_group_id": "sg-1", "direction": "ingress", "protocol": "tcp",
                   "from_port": 80, "to_port": 80}),
        ),
        (
            "aws_security_group_rule",
            json!({"security_group_id": "sg-1", "direction": "inbound", "protocol": "tcp",
                   "from_port": 80, "to_port": 80, "cidr_ipv4": "0.0.0.0/0"}),
        ),
        (
            "aws_security_group_rule",
            json!({"security_group_id": "sg-1", "direction": "ingress", "protocol": "tcp",
                   "from_port": 90, "to_port": 80, "cidr_ipv4": "0.0.0.0/0"}),
        ),
        (
            "aws_security_group_rule",
            json!({"security_group_id": "sg-1", "direction": "ingress", "protocol": "icmp",
                   "from_port": 0, "to_port": 0, "cidr_ipv4": "0.0.0.0/0"}),
        ),
    ];
    for (kind, desired) in cases {
        let err = kinds
            .get(kind)
            .unwrap()
            .create(&ctx, &props(desired.clone()))
            .await
            .expect_err(&format!("{kind} {desired} should be rejected"));
        assert!(
            matches!(err, dagform_core::ResourceError::InvalidProperties(_)),
            "{kind} {desired}: {err:?}"
        );
    }
}
