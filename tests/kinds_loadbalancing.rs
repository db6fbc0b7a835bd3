//! End-to-end tests of the load-balancing kinds (ELBv2, ACM, Route 53) against a private
//! emulator, checked by reading AWS back with describe calls.

mod support;

use aws_sdk_elasticloadbalancingv2::types::{ActionTypeEnum, Rule, RulePriorityPair};
use dagform_aws::AwsClients;
use dagform_core::{Applied, Current, Kinds, Observed, OpContext, Properties, ResourceError};
use serde_json::{Value, json};
use std::sync::Arc;
use support::{Emulator, op_context, props};

/// A VPC with two subnets in different zones and two security groups, made directly with the
/// SDK: the load balancer's surroundings, not under test here.
struct Network {
    vpc_id: String,
    subnet_ids: Vec<String>,
    sg_ids: Vec<String>,
}

async fn network(c: &AwsClients) -> Network {
    let vpc_id = c
        .ec2
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .send()
        .await
        .expect("create vpc")
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_owned();
    let mut subnet_ids = vec![];
    for (cidr, az) in [
        ("10.20.1.0/24", "us-east-1a"),
        ("10.20.2.0/24", "us-east-1b"),
    ] {
        let subnet = c
            .ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(cidr)
            .availability_zone(az)
            .send()
            .await
            .expect("create subnet");
        subnet_ids.push(
            subnet
                .subnet()
                .and_then(|s| s.subnet_id())
                .unwrap()
                .to_owned(),
        );
    }
    let mut sg_ids = vec![];
    for name in ["alb", "alb-extra"] {
        let sg = c
            .ec2
            .create_security_group()
            .group_name(name)
            .description("load balancer")
            .vpc_id(&vpc_id)
            .send()
            .await
            .expect("create security group");
        sg_ids.push(sg.group_id().unwrap().to_owned());
    }
    Network {
        vpc_id,
        subnet_ids,
        sg_ids,
    }
}

/// An object created through a kind, with what is needed to read, update and delete it.
struct Made {
    kinds: Kinds,
    kind: &'static str,
    ctx: OpContext,
    props: Properties,
    applied: Applied,
}

async fn make(kinds: &Kinds, kind: &'static str, address: &str, p: Value) -> Made {
    let ctx = op_context(address);
    let props = props(p);
    let applied = kinds
        .get(kind)
        .unwrap_or_else(|| panic!("kind {kind} is not registered"))
        .create(&ctx, &props)
        .await
        .unwrap_or_else(|e| panic!("creating {address}: {e}"));
    Made {
        kinds: kinds.clone(),
        kind,
        ctx,
        props,
        applied,
    }
}

impl Made {
    fn current(&self) -> Current<'_> {
        Current {
            id: &self.applied.id,
            properties: &self.props,
            outputs: &self.applied.outputs,
        }
    }

    fn id(&self) -> &str {
        &self.applied.id
    }

    fn out(&self, key: &str) -> String {
        self.applied
            .outputs
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}: no string output `{key}`", self.ctx.address))
            .to_owned()
    }

    async fn read(&self) -> Option<Observed> {
        self.kinds
            .get(self.kind)
            .unwrap()
            .read(&self.ctx, self.current())
            .await
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.ctx.address))
    }

    /// Reading the live object gives back exactly the desired properties (no false drift).
    async fn assert_in_sync(&self) {
        let observed = self.read().await.expect("object exists");
        assert_eq!(
            Value::Object(observed.properties),
            Value::Object(self.props.clone()),
            "{} drifted",
            self.ctx.address
        );
        for (key, value) in &self.applied.outputs {
            assert_eq!(
                observed.outputs.get(key),
                Some(value),
                "{}: output {key}",
                self.ctx.address
            );
        }
    }

    async fn update(&mut self, p: Value) {
        let desired = props(p);
        let changed: Vec<String> = desired
            .keys()
            .chain(self.props.keys())
            .filter(|k| desired.get(*k) != self.props.get(*k))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert!(!changed.is_empty(), "update without change");
        let kind = self.kinds.get(self.kind).unwrap();
        for c in &changed {
            assert!(
                !kind.forces_replacement(c),
                "{}: {c} would force a replacement",
                self.ctx.address
            );
        }
        let applied = kind
            .update(&self.ctx, self.current(), &desired, &changed)
            .await
            .unwrap_or_else(|e| panic!("updating {}: {e}", self.ctx.address));
        assert_eq!(applied.id, self.applied.id, "update keeps the object");
        self.props = desired;
        self.applied = applied;
    }

    async fn delete(&self) -> Result<(), ResourceError> {
        self.kinds
            .get(self.kind)
            .unwrap()
            .delete(&self.ctx, self.current())
            .await
    }

    /// Deletes, deletes again (already gone is success), and reads nothing back.
    async fn delete_twice(&self) {
        let address = &self.ctx.address;
        self.delete()
            .await
            .unwrap_or_else(|e| panic!("deleting {address}: {e}"));
        self.delete()
            .await
            .unwrap_or_else(|e| panic!("deleting {address} again: {e}"));
        assert!(self.read().await.is_none(), "{address} still readable");
    }

    /// `find` adopts the object for its own address, and nothing for another one.
    async fn assert_found(&self) {
        let kind = self.kinds.get(self.kind).unwrap();
        let found = kind
            .find(&self.ctx, &self.props)
            .await
            .unwrap_or_else(|e| panic!("finding {}: {e}", self.ctx.address));
        assert_eq!(
            found.map(|a| a.id),
            Some(self.applied.id.clone()),
            "{} not found",
            self.ctx.address
        );
    }
}

async fn rules_of(c: &AwsClients, listener_arn: &str) -> Vec<Rule> {
    c.elbv2
        .describe_rules()
        .listener_arn(listener_arn)
        .send()
        .await
        .expect("describe rules")
        .rules()
        .iter()
        .filter(|r| r.is_default() != Some(true))
        .cloned()
        .collect()
}

fn rule_by_arn<'a>(rules: &'a [Rule], arn: &str) -> &'a Rule {
    rules
        .iter()
        .find(|r| r.rule_arn() == Some(arn))
        .unwrap_or_else(|| panic!("rule {arn} not on the listener"))
}

fn condition(rule: &Rule, field: &str) -> Vec<String> {
    rule.conditions()
        .iter()
        .find(|c| c.field() == Some(field))
        .map(|c| {
            c.host_header_config()
                .map(|h| h.values().to_vec())
                .or_else(|| c.path_pattern_config().map(|p| p.values().to_vec()))
                .unwrap_or_else(|| c.values().to_vec())
        })
        .unwrap_or_default()
}

fn forward_target(rule: &Rule) -> Option<&str> {
    rule.actions()
        .iter()
        .find(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
        .and_then(|a| a.target_group_arn())
}

async fn tags_of(c: &AwsClients, arn: &str) -> Vec<(String, String)> {
    c.elbv2
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
        .collect()
}

async fn listener(c: &AwsClients, arn: &str) -> aws_sdk_elasticloadbalancingv2::types::Listener {
    c.elbv2
        .describe_listeners()
        .listener_arns(arn)
        .send()
        .await
        .expect("describe listener")
        .listeners()[0]
        .clone()
}

async fn target_group(
    c: &AwsClients,
    arn: &str,
) -> aws_sdk_elasticloadbalancingv2::types::TargetGroup {
    c.elbv2
        .describe_target_groups()
        .target_group_arns(arn)
        .send()
        .await
        .expect("describe target group")
        .target_groups()[0]
        .clone()
}

/// Every record set in the zone.
async fn zone_records(
    c: &AwsClients,
    zone_id: &str,
) -> Vec<aws_sdk_route53::types::ResourceRecordSet> {
    c.route53
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .send()
        .await
        .expect("list record sets")
        .resource_record_sets()
        .to_vec()
}

fn find_record<'a>(
    records: &'a [aws_sdk_route53::types::ResourceRecordSet],
    name: &str,
    ty: &str,
) -> Option<&'a aws_sdk_route53::types::ResourceRecordSet> {
    records.iter().find(|r| {
        r.name().trim_end_matches('.') == name.trim_end_matches('.') && r.r#type().as_str() == ty
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn load_balancing_stack_lifecycle() {
    let emu = Emulator::start();
    let c = emu.clients().await;
    let kinds = dagform_aws::kinds(Arc::new(c.clone()));
    let net = network(&c).await;

    // Load balancer.
    let lb = make(
        &kinds,
        "aws_lb",
        "shared.alb",
        json!({
            "name": "dev-shared-alb",
            "scheme": "internet-facing",
            "subnet_ids": net.subnet_ids,
            "security_group_ids": [net.sg_ids[0]],
            "idle_timeout_seconds": 120,
        }),
    )
    .await;
    assert_eq!(lb.out("arn"), lb.id());
    assert_eq!(lb.out("name"), "dev-shared-alb");
    let described = c
        .elbv2
        .describe_load_balancers()
        .load_balancer_arns(lb.id())
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .clone();
    assert_eq!(
        described.state().and_then(|s| s.code()).unwrap().as_str(),
        "active"
    );
    assert_eq!(described.scheme().unwrap().as_str(), "internet-facing");
    assert_eq!(described.security_groups(), [net.sg_ids[0].clone()]);
    assert_eq!(described.availability_zones().len(), 2);
    assert_eq!(lb.out("dns_name"), described.dns_name().unwrap());
    assert_eq!(
        lb.out("canonical_hosted_zone_id"),
        described.canonical_hosted_zone_id().unwrap()
    );
    let tags = tags_of(&c, lb.id()).await;
    assert!(tags.contains(&("dagform:address".into(), "shared.alb".into())));
    assert!(tags.contains(&("Name".into(), "dev-shared-alb".into())));
    lb.assert_in_sync().await;
    lb.assert_found().await;

    // Target groups.
    let tg_props = |name: &str, port: i64, path: &str| {
        json!({
            "name": name,
            "protocol": "HTTP",
            "port": port,
            "vpc_id": net.vpc_id,
            "target_type": "ip",
            "health_check": {
                "path": path,
                "protocol": "HTTP",
                "interval_seconds": 15,
                "timeout_seconds": 5,
                "healthy_threshold": 2,
                "unhealthy_threshold": 3,
                "matcher": "200",
            },
            "deregistration_delay_seconds": 30,
        })
    };
    let mut tg1 = make(
        &kinds,
        "aws_lb_target_group",
        "customer.acme.service.api.tg",
        tg_props("dev-acme-api-tg", 8080, "/health"),
    )
    .await;
    let tg2 = make(
        &kinds,
        "aws_lb_target_group",
        "customer.acme.service.web.tg",
        json!({
            "name": "dev-acme-web-tg",
            "protocol": "HTTP",
            "port": 3000,
            "vpc_id": net.vpc_id,
            "target_type": "ip",
            "health_check": {
                "path": "/",
                "interval_seconds": 30,
                "timeout_seconds": 10,
                "healthy_threshold": 5,
                "unhealthy_threshold": 2,
            },
        }),
    )
    .await;
    let live = target_group(&c, tg1.id()).await;
    assert_eq!(live.port(), Some(8080));
    assert_eq!(live.health_check_path(), Some("/health"));
    assert_eq!(live.health_check_interval_seconds(), Some(15));
    assert_eq!(live.health_check_timeout_seconds(), Some(5));
    assert_eq!(live.healthy_threshold_count(), Some(2));
    assert_eq!(live.unhealthy_threshold_count(), Some(3));
    assert_eq!(live.matcher().and_then(|m| m.http_code()), Some("200"));
    assert_eq!(live.target_type().unwrap().as_str(), "ip");
    assert_eq!(
        tg1.out("arn_suffix"),
        tg1.id()
            .split_once(":targetgroup/")
            .map(|(_, s)| format!("targetgroup/{s}"))
            .unwrap()
    );
    let attrs = c
        .elbv2
        .describe_target_group_attributes()
        .target_group_arn(tg1.id())
        .send()
        .await
        .unwrap();
    assert!(attrs.attributes().iter().any(|a| a.key()
        == Some("deregistration_delay.timeout_seconds")
        && a.value() == Some("30")));
    assert_eq!(target_group(&c, tg2.id()).await.port(), Some(3000));
    assert!(
        tags_of(&c, tg2.id())
            .await
            .contains(&("Name".into(), "dev-acme-web-tg".into()))
    );
    tg1.assert_in_sync().await;
    tg2.assert_in_sync().await;
    tg1.assert_found().await;

    // HTTP listener redirecting to HTTPS.
    let http = make(
        &kinds,
        "aws_lb_listener",
        "shared.alb.http",
        json!({
            "load_balancer_arn": lb.id(),
            "port": 80,
            "protocol": "HTTP",
            "default_action": {
                "type": "redirect", "protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"
            },
        }),
    )
    .await;
    let live = listener(&c, http.id()).await;
    assert_eq!(live.protocol().unwrap().as_str(), "HTTP");
    assert_eq!(live.port(), Some(80));
    let redirect = live.default_actions()[0]
        .redirect_config()
        .expect("redirect");
    assert_eq!(redirect.protocol(), Some("HTTPS"));
    assert_eq!(redirect.port(), Some("443"));
    assert_eq!(redirect.status_code().unwrap().as_str(), "HTTP_301");
    http.assert_in_sync().await;
    http.assert_found().await;

    // Hosted zone (made by hand, as an operator would) and its lookup.
    let zone_id = c
        .route53
        .create_hosted_zone()
        .name("example.com")
        .caller_reference("lb-test")
        .send()
        .await
        .expect("create hosted zone")
        .hosted_zone()
        .unwrap()
        .id()
        .trim_start_matches("/hostedzone/")
        .to_owned();
    let zone = make(
        &kinds,
        "data_route53_zone",
        "shared.zone",
        json!({ "name": "example.com" }),
    )
    .await;
    assert_eq!(zone.id(), zone_id);
    assert_eq!(zone.out("name"), "example.com.");
    assert!(kinds.get("data_route53_zone").unwrap().is_data_source());
    zone.assert_in_sync().await;

    // Certificate for the wildcard and the apex: one shared validation record.
    let cert = make(
        &kinds,
        "aws_acm_certificate",
        "shared.cert",
        json!({
            "domain_name": "*.example.com",
            "subject_alternative_names": ["example.com"],
            "validation_method": "DNS",
        }),
    )
    .await;
    assert!(
        kinds
            .get("aws_acm_certificate")
            .unwrap()
            .create_before_destroy()
    );
    let records = cert.applied.outputs["validation_records"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        records.len(),
        1,
        "wildcard and apex share a record: {records:?}"
    );
    assert_eq!(records[0]["type"], "CNAME");
    let described = c
        .acm
        .describe_certificate()
        .certificate_arn(cert.id())
        .send()
        .await
        .unwrap()
        .certificate()
        .unwrap()
        .clone();
    assert_eq!(described.domain_name(), Some("*.example.com"));
    assert_eq!(described.status().unwrap().as_str(), "PENDING_VALIDATION");
    let cert_tags = c
        .acm
        .list_tags_for_certificate()
        .certificate_arn(cert.id())
        .send()
        .await
        .unwrap();
    assert!(
        cert_tags
            .tags()
            .iter()
            .any(|t| t.key() == "dagform:address" && t.value() == Some("shared.cert"))
    );
    cert.assert_in_sync().await;
    cert.assert_found().await;

    // Validation records, written from the certificate's outputs.
    let mut validation_records = vec![];
    for (i, r) in records.iter().enumerate() {
        validation_records.push(
            make(
                &kinds,
                "aws_route53_record",
                &format!("shared.cert.validation_record.{i}"),
                json!({
                    "zone_id": zone.id(),
                    "name": r["name"],
                    "type": r["type"],
                    "ttl": 60,
                    "records": [r["value"]],
                }),
            )
            .await,
        );
    }
    let in_zone = zone_records(&c, &zone_id).await;
    let cname = find_record(&in_zone, records[0]["name"].as_str().unwrap(), "CNAME")
        .expect("validation record");
    assert_eq!(cname.ttl(), Some(60));
    assert_eq!(
        cname.resource_records()[0].value(),
        records[0]["value"].as_str().unwrap()
    );
    for r in &validation_records {
        r.assert_in_sync().await;
        r.assert_found().await;
    }

    // Validation waits until ACM issues the certificate.
    let validation = make(
        &kinds,
        "aws_acm_certificate_validation",
        "shared.cert.validation",
        json!({ "certificate_arn": cert.id() }),
    )
    .await;
    assert_eq!(validation.id(), cert.id());
    assert_eq!(validation.out("status"), "ISSUED");
    let status = c
        .acm
        .describe_certificate()
        .certificate_arn(cert.id())
        .send()
        .await
        .unwrap()
        .certificate()
        .unwrap()
        .status()
        .unwrap()
        .clone();
    assert_eq!(status.as_str(), "ISSUED");
    validation.assert_in_sync().await;

    // HTTPS listener with the certificate.
    let mut https = make(
        &kinds,
        "aws_lb_listener",
        "shared.alb.https",
        json!({
            "load_balancer_arn": lb.id(),
            "port": 443,
            "protocol": "HTTPS",
            "certificate_arn": validation.out("certificate_arn"),
            "ssl_policy": "ELBSecurityPolicy-2016-08",
            "default_action": {
                "type": "fixed-response", "status_code": "404", "content_type": "text/plain",
                "message_body": "not found",
            },
        }),
    )
    .await;
    let live = listener(&c, https.id()).await;
    assert_eq!(live.protocol().unwrap().as_str(), "HTTPS");
    assert_eq!(live.certificates()[0].certificate_arn(), Some(cert.id()));
    assert_eq!(live.ssl_policy(), Some("ELBSecurityPolicy-2016-08"));
    let fixed = live.default_actions()[0]
        .fixed_response_config()
        .expect("fixed response");
    assert_eq!(fixed.status_code(), Some("404"));
    assert_eq!(fixed.content_type(), Some("text/plain"));
    assert_eq!(fixed.message_body(), Some("not found"));
    https.assert_in_sync().await;

    // Listener rules: host + path to the API, host alone to the web app.
    let mut rule1 = make(
        &kinds,
        "aws_lb_listener_rule",
        "customer.acme.service.api.rule",
        json!({
            "listener_arn": https.id(),
            "priority": 10,
            "host_headers": ["acme.example.com"],
            "path_patterns": ["/api/*"],
            "target_group_arn": tg1.id(),
        }),
    )
    .await;
    let mut rule2 = make(
        &kinds,
        "aws_lb_listener_rule",
        "customer.acme.service.web.rule",
        json!({
            "listener_arn": https.id(),
            "priority": 20,
            "host_headers": ["acme.example.com"],
            "path_patterns": [],
            "target_group_arn": tg2.id(),
        }),
    )
    .await;
    let rules = rules_of(&c, https.id()).await;
    assert_eq!(rules.len(), 2);
    let r1 = rule_by_arn(&rules, rule1.id());
    assert_eq!(r1.priority(), Some("10"));
    assert_eq!(condition(r1, "host-header"), ["acme.example.com"]);
    assert_eq!(condition(r1, "path-pattern"), ["/api/*"]);
    assert_eq!(forward_target(r1), Some(tg1.id()));
    let r2 = rule_by_arn(&rules, rule2.id());
    assert_eq!(r2.priority(), Some("20"));
    assert_eq!(condition(r2, "host-header"), ["acme.example.com"]);
    assert!(condition(r2, "path-pattern").is_empty());
    assert_eq!(forward_target(r2), Some(tg2.id()));
    rule1.assert_in_sync().await;
    rule2.assert_in_sync().await;
    rule1.assert_found().await;

    // Alias A record to the load balancer.
    let mut alias = make(
        &kinds,
        "aws_route53_record",
        "customer.acme.dns",
        json!({
            "zone_id": zone.id(),
            "name": "acme.example.com",
            "type": "A",
            "alias": {
                "dns_name": lb.out("dns_name"),
                "hosted_zone_id": lb.out("canonical_hosted_zone_id"),
                "evaluate_target_health": true,
            },
        }),
    )
    .await;
    assert_eq!(alias.id(), format!("{zone_id}_acme.example.com_A"));
    assert_eq!(alias.out("fqdn"), "acme.example.com");
    let in_zone = zone_records(&c, &zone_id).await;
    let a = find_record(&in_zone, "acme.example.com", "A").expect("alias record");
    // Beside it, the ownership record that says which stack and node wrote it.
    let claim = find_record(&in_zone, "_dagform-a.acme.example.com", "TXT").expect("claim");
    assert_eq!(
        claim.resource_records()[0].value(),
        "\"dagform:stack=test,dagform:address=customer.acme.dns\""
    );
    let target = a.alias_target().expect("alias target");
    assert_eq!(target.dns_name().trim_end_matches('.'), lb.out("dns_name"));
    assert_eq!(target.hosted_zone_id(), lb.out("canonical_hosted_zone_id"));
    assert!(target.evaluate_target_health());
    alias.assert_in_sync().await;

    // Drift: a priority changed behind dagform's back shows up in read…
    c.elbv2
        .set_rule_priorities()
        .rule_priorities(
            RulePriorityPair::builder()
                .rule_arn(rule2.id())
                .priority(30)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let observed = rule2.read().await.unwrap();
    assert_eq!(observed.properties["priority"], 30);
    // …and the update from the refreshed state puts it back.
    rule2.props = observed.properties;
    rule2
        .update(json!({
            "listener_arn": https.id(),
            "priority": 20,
            "host_headers": ["acme.example.com"],
            "path_patterns": ["/web/*", "/"],
            "target_group_arn": tg2.id(),
        }))
        .await;

    // Updates in place.
    rule1
        .update(json!({
            "listener_arn": https.id(),
            "priority": 15,
            "host_headers": ["acme.example.com"],
            "path_patterns": ["/api/*"],
            "target_group_arn": tg1.id(),
        }))
        .await;
    tg1.update(tg_props("dev-acme-api-tg", 8080, "/ready"))
        .await;
    https
        .update(json!({
            "load_balancer_arn": lb.id(),
            "port": 443,
            "protocol": "HTTPS",
            "certificate_arn": cert.id(),
            "ssl_policy": "ELBSecurityPolicy-2016-08",
            "default_action": { "type": "forward", "target_group_arn": tg2.id() },
        }))
        .await;
    let mut lb = lb;
    lb.update(json!({
        "name": "dev-shared-alb",
        "scheme": "internet-facing",
        "subnet_ids": net.subnet_ids,
        "security_group_ids": net.sg_ids,
        "idle_timeout_seconds": 300,
    }))
    .await;
    alias
        .update(json!({
            "zone_id": zone.id(),
            "name": "acme.example.com",
            "type": "A",
            "alias": {
                "dns_name": lb.out("dns_name"),
                "hosted_zone_id": lb.out("canonical_hosted_zone_id"),
                "evaluate_target_health": false,
            },
        }))
        .await;

    let rules = rules_of(&c, https.id()).await;
    let r1 = rule_by_arn(&rules, rule1.id());
    assert_eq!(r1.priority(), Some("15"));
    let r2 = rule_by_arn(&rules, rule2.id());
    assert_eq!(r2.priority(), Some("20"));
    let mut paths = condition(r2, "path-pattern");
    paths.sort();
    assert_eq!(paths, ["/", "/web/*"]);
    assert_eq!(
        target_group(&c, tg1.id()).await.health_check_path(),
        Some("/ready")
    );
    let live = listener(&c, https.id()).await;
    assert_eq!(
        live.default_actions()[0].r#type().unwrap().as_str(),
        "forward"
    );
    assert_eq!(live.default_actions()[0].target_group_arn(), Some(tg2.id()));
    let described = c
        .elbv2
        .describe_load_balancers()
        .load_balancer_arns(lb.id())
        .send()
        .await
        .unwrap()
        .load_balancers()[0]
        .clone();
    let mut sgs = described.security_groups().to_vec();
    sgs.sort();
    let mut want = net.sg_ids.clone();
    want.sort();
    assert_eq!(sgs, want);
    let lb_attrs = c
        .elbv2
        .describe_load_balancer_attributes()
        .load_balancer_arn(lb.id())
        .send()
        .await
        .unwrap();
    assert!(
        lb_attrs
            .attributes()
            .iter()
            .any(|a| a.key() == Some("idle_timeout.timeout_seconds") && a.value() == Some("300"))
    );
    let in_zone = zone_records(&c, &zone_id).await;
    let a = find_record(&in_zone, "acme.example.com", "A").unwrap();
    assert!(!a.alias_target().unwrap().evaluate_target_health());
    for made in [&rule1, &rule2, &tg1, &https, &lb, &alias] {
        made.assert_in_sync().await;
    }

    // A target group still used by a rule cannot go yet: transient, so the engine retries.
    let in_use = tg1.delete().await.expect_err("target group in use");
    assert!(in_use.is_transient(), "{in_use:?}");

    // Teardown in reverse order.
    alias.delete_twice().await;
    rule2.delete_twice().await;
    rule1.delete_twice().await;
    https.delete_twice().await;
    validation.delete().await.unwrap();
    validation.delete().await.unwrap();
    for r in &validation_records {
        r.delete_twice().await;
    }
    cert.delete_twice().await;
    zone.delete().await.unwrap();
    zone.delete().await.unwrap();
    http.delete_twice().await;
    tg2.delete_twice().await;
    tg1.delete_twice().await;
    lb.delete_twice().await;

    // Nothing remains but the zone's own records.
    let lbs = c.elbv2.describe_load_balancers().send().await.unwrap();
    assert!(lbs.load_balancers().is_empty());
    let tgs = c.elbv2.describe_target_groups().send().await.unwrap();
    assert!(tgs.target_groups().is_empty());
    let certs = c.acm.list_certificates().send().await.unwrap();
    assert!(certs.certificate_summary_list().is_empty());
    let left: Vec<String> = zone_records(&c, &zone_id)
        .await
        .iter()
        .map(|r| r.r#type().as_str().to_owned())
        .filter(|t| t != "SOA" && t != "NS")
        .collect();
    assert!(left.is_empty(), "records left: {left:?}");
    assert!(validation.read().await.is_none());
}

/// Clients whose endpoint has nothing listening: any AWS call would fail as a connection
/// error, so an `InvalidProperties` answer proves the kind checked before calling.
async fn unreachable_clients() -> AwsClients {
    AwsClients::from_sdk_config(&support::sdk_config_for("http://127.0.0.1:9").await)
}

async fn rejected(kinds: &Kinds, kind: &str, p: Value) -> String {
    let err = kinds
        .get(kind)
        .unwrap()
        .create(&op_context("test.invalid"), &props(p))
        .await
        .expect_err("invalid properties accepted");
    match err {
        ResourceError::InvalidProperties(m) => m,
        other => panic!("{kind}: expected invalid properties, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_properties_are_rejected_before_any_aws_call() {
    let kinds = dagform_aws::kinds(Arc::new(unreachable_clients().await));
    let long = "a".repeat(33);
    let message = rejected(
        &kinds,
        "aws_lb",
        json!({
            "name": long,
            "scheme": "internet-facing",
            "subnet_ids": ["subnet-1", "subnet-2"],
            "security_group_ids": ["sg-1"],
        }),
    )
    .await;
    assert!(message.contains("32"), "{message}");

    let health = json!({
        "path": "/", "interval_seconds": 30, "timeout_seconds": 5,
        "healthy_threshold": 2, "unhealthy_threshold": 2,
    });
    rejected(
        &kinds,
        "aws_lb_target_group",
        json!({
            "name": "-leading-hyphen", "protocol": "HTTP", "port": 80, "vpc_id": "vpc-1",
            "target_type": "ip", "health_check": health,
        }),
    )
    .await;
    rejected(
        &kinds,
        "aws_lb_listener",
        json!({
            "load_balancer_arn": "arn:lb", "port": 443, "protocol": "HTTPS",
            "default_action": { "type": "fixed-response", "status_code": "404", "content_type": "text/plain" },
        }),
    )
    .await;
    rejected(
        &kinds,
        "aws_lb_listener_rule",
        json!({
            "listener_arn": "arn:listener", "priority": 0, "host_headers": ["a.example.com"],
            "path_patterns": [], "target_group_arn": "arn:tg",
        }),
    )
    .await;
    rejected(
        &kinds,
        "aws_route53_record",
        json!({
            "zone_id": "Z1", "name": "a.example.com", "type": "A", "ttl": 60, "records": ["1.2.3.4"],
            "alias": { "dns_name": "x", "hosted_zone_id": "Z2", "evaluate_target_health": false },
        }),
    )
    .await;
    rejected(
        &kinds,
        "aws_acm_certificate",
        json!({ "domain_name": "example.com", "subject_alternative_names": [], "validation_method": "EMAIL" }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_validation_timeout_names_the_records() {
    let emu = Emulator::start();
    let c = emu.clients().await;
    let kinds = dagform_aws::kinds(Arc::new(c.clone()));
    let validation = kinds.get("aws_acm_certificate_validation").unwrap();
    // The emulator issues a certificate a second after the request; a poll timeout of zero
    // (a single check) runs out before that unless this machine is very slow, so a certificate
    // issued too early is simply requested again.
    let mut timed_out = None;
    for attempt in 0..5 {
        let cert = make(
            &kinds,
            "aws_acm_certificate",
            &format!("shared.cert{attempt}"),
            json!({
                "domain_name": "example.org",
                "subject_alternative_names": ["www.example.org"],
                "validation_method": "DNS",
            }),
        )
        .await;
        let mut ctx = op_context("shared.cert.validation");
        ctx.poll.timeout = std::time::Duration::ZERO;
        let p = props(json!({ "certificate_arn": cert.id() }));
        match validation.create(&ctx, &p).await {
            Ok(applied) if applied.pending.is_some() => {
                let pending = applied.pending.expect("checked");
                timed_out = Some((cert, p, pending.instructions.join("\n")));
                break;
            }
            Ok(_) => cert.delete_twice().await,
            Err(other) => panic!("expected a pending certificate, got {other:?}"),
        }
    }
    let (cert, p, message) = timed_out.expect("every certificate was issued at once");
    let records = cert.applied.outputs["validation_records"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(
        records[0]["name"].as_str() < records[1]["name"].as_str(),
        "sorted by name"
    );
    for r in &records {
        assert!(message.contains(r["name"].as_str().unwrap()), "{message}");
        assert!(message.contains(r["value"].as_str().unwrap()), "{message}");
    }

    // With time to spare the same certificate is issued.
    let done = validation
        .create(&op_context("shared.cert.validation"), &p)
        .await
        .expect("issued");
    assert_eq!(done.outputs["status"], "ISSUED");

    // A zone that does not exist is an error that says so.
    let missing = kinds
        .get("data_route53_zone")
        .unwrap()
        .create(
            &op_context("shared.zone"),
            &props(json!({ "name": "nowhere.example" })),
        )
        .await
        .expect_err("zone found");
    assert!(
        missing.to_string().contains("nowhere.example."),
        "{missing}"
    );

    cert.delete_twice().await;
}

/// The certificates `listener_arn` serves by SNI, as DescribeListenerCertificates reports them.
async fn sni_certificates(c: &AwsClients, listener_arn: &str) -> Vec<String> {
    c.elbv2
        .describe_listener_certificates()
        .listener_arn(listener_arn)
        .send()
        .await
        .expect("describe listener certificates")
        .certificates()
        .iter()
        .filter(|cert| cert.is_default() != Some(true))
        .filter_map(|cert| cert.certificate_arn().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn listener_certificate_lifecycle() {
    let emu = Emulator::start();
    let c = emu.clients().await;
    let kinds = dagform_aws::kinds(Arc::new(c.clone()));
    let net = network(&c).await;
    let lb = make(
        &kinds,
        "aws_lb",
        "shared.alb",
        json!({
            "name": "dev-sni-alb",
            "scheme": "internet-facing",
            "subnet_ids": net.subnet_ids,
            "security_group_ids": [net.sg_ids[0]],
        }),
    )
    .await;
    let certificate = |address: &'static str, domain: &'static str| {
        make(
            &kinds,
            "aws_acm_certificate",
            address,
            json!({ "domain_name": domain, "validation_method": "DNS" }),
        )
    };
    let default_cert = certificate("shared.certificate", "*.example.com").await;
    let own_cert = certificate("customer.acme.certificate", "app.acme-corp.com").await;
    let https = make(
        &kinds,
        "aws_lb_listener",
        "shared.listener.https",
        json!({
            "load_balancer_arn": lb.id(),
            "port": 443,
            "protocol": "HTTPS",
            "certificate_arn": default_cert.id(),
            "default_action": {
                "type": "fixed-response", "status_code": "404", "content_type": "text/plain",
            },
        }),
    )
    .await;
    assert!(sni_certificates(&c, https.id()).await.is_empty());

    let attachment = make(
        &kinds,
        "aws_lb_listener_certificate",
        "customer.acme.listener_certificate",
        json!({ "listener_arn": https.id(), "certificate_arn": own_cert.id() }),
    )
    .await;
    assert_eq!(attachment.out("listener_arn"), https.id());
    assert_eq!(attachment.out("certificate_arn"), own_cert.id());
    assert_eq!(sni_certificates(&c, https.id()).await, [own_cert.id()]);
    attachment.assert_in_sync().await;
    attachment.assert_found().await;
    // A create run again (a retried apply) adopts the attachment rather than adding it twice.
    let again = kinds
        .get("aws_lb_listener_certificate")
        .unwrap()
        .create(&attachment.ctx, &attachment.props)
        .await
        .expect("second create");
    assert_eq!(again.id, attachment.id());
    assert_eq!(sni_certificates(&c, https.id()).await, [own_cert.id()]);

    // Removing it leaves the listener its default certificate.
    attachment.delete_twice().await;
    assert!(sni_certificates(&c, https.id()).await.is_empty());
    let live = listener(&c, https.id()).await;
    assert_eq!(
        live.certificates()[0].certificate_arn(),
        Some(default_cert.id())
    );
    let found = kinds
        .get("aws_lb_listener_certificate")
        .unwrap()
        .find(&attachment.ctx, &attachment.props)
        .await
        .expect("find");
    assert!(found.is_none(), "a removed attachment is found");

    https.delete_twice().await;
    // With its listener gone, an attachment reads as gone and deletes as done.
    assert!(attachment.read().await.is_none());
    attachment.delete().await.expect("delete without listener");
    own_cert.delete_twice().await;
    default_cert.delete_twice().await;
    lb.delete_twice().await;
}
