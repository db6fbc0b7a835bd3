//! Ingress: the hosted zone looked up, the certificate requested and validated (or an existing
//! one), a load balancer and its listeners (one of several when customers need more), and the
//! certificates of customers with domains of their own, served by SNI.

use super::network::Network;
use super::shards::Shard;
use super::{Expansion, int};
use crate::model::{Certificate, Dns, HttpListener, LoadBalancer, Validation};
use crate::naming::elb_name;
use dagform_core::typed::{Input, OutputRef, outputs_of};
use dagform_core::{Address, NodeSpec};
use dagform_resources::acm::{
    CertificateProps, CertificateSpec, CertificateValidationProps, CertificateValidationSpec,
};
use dagform_resources::elbv2::{
    DefaultAction, ListenerCertificateProps, ListenerCertificateSpec, ListenerProps, ListenerSpec,
    LoadBalancerProps, LoadBalancerSpec,
};
use dagform_resources::route53::{RecordSpec, ZoneProps, ZoneSpec};

/// An existing public hosted zone.
pub struct Zone<'a> {
    /// The `[dns]` section naming it: `None` for the zone of a customer's own domain.
    pub config: Option<&'a Dns>,
    pub id: OutputRef<String>,
}

/// The zone `[dns]` names, looked up by name and never changed.
pub fn zone<'a>(x: &mut Expansion, dns: &'a Dns) -> Zone<'a> {
    let address = Address::new("shared.zone");
    x.add(NodeSpec::of(
        address.clone(),
        ZoneSpec {
            name: dns.zone.get_ref().trim_end_matches('.').into(),
            private_zone: Some(false.into()),
        },
    ));
    Zone {
        config: Some(dns),
        id: outputs_of::<ZoneProps>(&address).id,
    }
}

/// The zone `name` holding customer `base`'s own domain, looked up by name and never changed.
pub fn customer_zone<'a>(x: &mut Expansion, base: &str, name: &str) -> Zone<'a> {
    let address = Address::new(format!("{base}.zone"));
    x.add(NodeSpec::of(
        address.clone(),
        ZoneSpec {
            name: name.trim_end_matches('.').into(),
            private_zone: Some(false.into()),
        },
    ));
    Zone {
        config: None,
        id: outputs_of::<ZoneProps>(&address).id,
    }
}

/// The ARN of the certificate the HTTPS listener uses, once issued: requested and validated here
/// (through Route 53 in `zone`, or by records the user adds elsewhere), or an existing one.
/// `None` when the configuration asks for no certificate.
pub fn certificate(
    x: &mut Expansion,
    config: &Certificate,
    zone: Option<&Zone>,
) -> Option<Input<String>> {
    if let Some(arn) = &config.arn {
        return Some(arn.get_ref().into());
    }
    let domain = config.domain.as_ref()?.get_ref();
    let dns = zone.and_then(|z| z.config);
    let address = Address::new("shared.certificate");
    x.add(NodeSpec::of(
        address.clone(),
        CertificateSpec {
            domain_name: domain.into(),
            subject_alternative_names: Some(
                config
                    .alternative_names
                    .iter()
                    .map(|n| n.get_ref().clone())
                    .collect::<Vec<_>>()
                    .into(),
            ),
            validation_method: "DNS".into(),
        },
    ));
    let certificate = outputs_of::<CertificateProps>(&address);
    let validation_address = Address::new("shared.certificate_validation");
    let mut validation = NodeSpec::of(
        validation_address.clone(),
        CertificateValidationSpec {
            certificate_arn: (&certificate.arn).into(),
            timeout_seconds: Some((config.timeout_minutes(dns) * 60).into()),
        },
    );
    match (config.validation(dns), zone) {
        (Validation::Route53, Some(zone)) => {
            // A wildcard and its apex share one validation record.
            let mut bases: Vec<String> = std::iter::once(domain.as_str())
                .chain(
                    config
                        .alternative_names
                        .iter()
                        .map(|n| n.get_ref().as_str()),
                )
                .map(|n| n.trim_start_matches("*.").to_ascii_lowercase())
                .collect();
            bases.sort();
            bases.dedup();
            for i in 0..bases.len() {
                let record = Address::new(format!("shared.certificate_record.{}", i + 1));
                let field = |name: &str| -> Input<String> {
                    certificate
                        .validation_records
                        .at::<String>(&format!("{i}.{name}"))
                        .into()
                };
                x.add(NodeSpec::of(
                    record.clone(),
                    validation_record((&zone.id).into(), field),
                ));
                validation = validation.after(record);
            }
        }
        // Without a zone (validation refuses Route 53 then) the records are the user's to add.
        _ => x.output(
            "certificate_validation_records",
            "the DNS records to add at the domain's DNS host",
            Input::from(&certificate.validation_records).into_value(),
        ),
    }
    x.add(validation);
    x.output(
        "certificate_arn",
        "the certificate",
        Input::from(certificate.arn).into_value(),
    );
    // Taken from the validation node, so the listener waits until the certificate is issued.
    Some(
        outputs_of::<CertificateValidationProps>(&validation_address)
            .certificate_arn
            .into(),
    )
}

/// A customer whose domain lies outside the `[dns]` zone: where its deployment lives, the
/// domain, and the zone in the account holding it, if any.
pub struct OwnDomain<'z> {
    pub customer: &'z str,
    pub base: &'z str,
    pub display_name: &'z str,
    pub host: &'z str,
    pub zone: Option<&'z Zone<'z>>,
    /// How long a run waits for issuance when the validation record goes to `zone`.
    pub timeout_minutes: u64,
}

/// The certificate of a customer's own domain, validated through its zone (or by records the
/// user adds at the domain's DNS host, printed while pending), and served by SNI on
/// `listener`. Returns the listener's ARN taken from the attachment, so that what routes the
/// customer's traffic waits until the listener serves its certificate.
pub fn own_domain_certificate(
    x: &mut Expansion,
    own: &OwnDomain<'_>,
    listener: &OutputRef<String>,
) -> OutputRef<String> {
    let base = own.base;
    let address = Address::new(format!("{base}.certificate"));
    x.add(NodeSpec::of(
        address.clone(),
        CertificateSpec {
            domain_name: own.host.into(),
            subject_alternative_names: Some(Vec::<String>::new().into()),
            validation_method: "DNS".into(),
        },
    ));
    let certificate = outputs_of::<CertificateProps>(&address);
    let validation_address = Address::new(format!("{base}.certificate_validation"));
    let timeout_minutes = if own.zone.is_some() {
        own.timeout_minutes
    } else {
        0
    };
    let mut validation = NodeSpec::of(
        validation_address.clone(),
        CertificateValidationSpec {
            certificate_arn: (&certificate.arn).into(),
            timeout_seconds: Some((timeout_minutes * 60).into()),
        },
    );
    match own.zone {
        Some(zone) => {
            // One name, no wildcard: one validation record.
            let record = Address::new(format!("{base}.certificate_record"));
            let field = |name: &str| -> Input<String> {
                certificate
                    .validation_records
                    .at::<String>(&format!("0.{name}"))
                    .into()
            };
            x.add(NodeSpec::of(
                record.clone(),
                validation_record((&zone.id).into(), field),
            ));
            validation = validation.after(record);
        }
        None => x.output(
            format!("certificate_validation_records.{}", own.customer),
            format!(
                "the DNS records to add at {}'s DNS host for {}'s certificate",
                own.host, own.display_name
            ),
            Input::from(&certificate.validation_records).into_value(),
        ),
    }
    x.add(validation);
    let attachment = Address::new(format!("{base}.listener_certificate"));
    x.add(NodeSpec::of(
        attachment.clone(),
        ListenerCertificateSpec {
            listener_arn: listener.into(),
            // Taken from the validation node, so the attachment waits for issuance.
            certificate_arn: outputs_of::<CertificateValidationProps>(&validation_address)
                .certificate_arn
                .into(),
        },
    ));
    outputs_of::<ListenerCertificateProps>(&attachment).listener_arn
}

/// Where traffic that no listener rule matches goes.
pub enum Fallback {
    /// To the target group with this ARN.
    Forward(OutputRef<String>),
    /// Nowhere: a plain 404.
    NotFound,
}

/// What the load balancer's users attach to.
#[derive(Clone)]
pub struct Ingress {
    pub dns_name: OutputRef<String>,
    pub canonical_hosted_zone_id: OutputRef<String>,
    /// The listener rules attach to: HTTPS when there is a certificate, else HTTP.
    pub rules_listener: OutputRef<String>,
    /// The listener that forwards unmatched traffic to the fallback, which a target group
    /// served that way waits for (ECS insists that a listener use it before the service starts).
    pub fallback_listener: Address,
}

/// How the load balancer is set up: where it sits, its certificate and its fallback.
pub struct Listeners<'a> {
    pub network: &'a Network,
    pub security_group: &'a OutputRef<String>,
    /// The HTTPS listener's certificate; none means HTTP only.
    pub certificate_arn: Option<Input<String>>,
    pub fallback: Fallback,
}

/// The internet-facing load balancer `shard` with an HTTP listener (redirecting to HTTPS when
/// there is a certificate, unless `config` asks to forward) and an HTTPS listener when there is
/// one.
pub fn load_balancer(
    x: &mut Expansion,
    shard: Shard,
    prefix: &str,
    config: &LoadBalancer,
    listeners: Listeners<'_>,
) -> Ingress {
    let Listeners {
        network,
        security_group,
        certificate_arn,
        fallback,
    } = listeners;
    let address = shard.load_balancer();
    let name = match &config.name {
        Some(n) if shard == Shard::FIRST => n.get_ref().clone(),
        Some(n) => elb_name(&shard.name(n.get_ref())),
        None => elb_name(&shard.name(&format!("{prefix}-alb"))),
    };
    let mut node = NodeSpec::of(
        address.clone(),
        LoadBalancerSpec {
            name: name.into(),
            scheme: "internet-facing".into(),
            subnet_ids: network.public_subnets.clone(),
            security_group_ids: vec![Input::from(security_group)].into(),
            idle_timeout_seconds: config
                .idle_timeout_seconds
                .as_ref()
                .map(|t| int(*t.get_ref()).into()),
        },
    );
    // The load balancer's subnets need the internet gateway's route to be reachable.
    for r in &network.load_balancer_routes {
        node = node.after(r.clone());
    }
    x.add(node);
    let alb = outputs_of::<LoadBalancerProps>(&address);
    let description = if shard == Shard::FIRST {
        "the load balancer's DNS name".to_owned()
    } else {
        format!("load balancer {}'s DNS name", shard.0)
    };
    x.output(
        shard.output("alb_dns_name"),
        description,
        Input::from(&alb.dns_name).into_value(),
    );

    let default_action = match fallback {
        Fallback::Forward(target_group_arn) => DefaultAction::forward_to(target_group_arn),
        Fallback::NotFound => Input::value(DefaultAction::FixedResponse {
            status_code: "404".into(),
            content_type: "text/plain".into(),
            message_body: Some("not found".into()),
        }),
    };
    let https = certificate_arn.is_some();
    let http_action = match (https, config.http) {
        (true, HttpListener::Redirect) => Input::value(DefaultAction::Redirect {
            protocol: "HTTPS".into(),
            port: "443".into(),
            status_code: "HTTP_301".into(),
        }),
        _ => default_action.clone(),
    };
    let http = shard.listener("http");
    x.add(NodeSpec::of(
        http.clone(),
        ListenerSpec {
            load_balancer_arn: (&alb.arn).into(),
            port: 80.into(),
            protocol: "HTTP".into(),
            certificate_arn: None,
            ssl_policy: None,
            default_action: http_action,
        },
    ));
    let https_listener = shard.listener("https");
    if let Some(certificate_arn) = certificate_arn {
        x.add(NodeSpec::of(
            https_listener.clone(),
            ListenerSpec {
                load_balancer_arn: (&alb.arn).into(),
                port: 443.into(),
                protocol: "HTTPS".into(),
                certificate_arn: Some(certificate_arn),
                ssl_policy: Some(
                    config
                        .ssl_policy
                        .as_ref()
                        .map_or("ELBSecurityPolicy-TLS13-1-2-2021-06", |p| {
                            p.get_ref().as_str()
                        })
                        .into(),
                ),
                default_action,
            },
        ));
    }
    let rules_listener = if https { https_listener } else { http.clone() };
    let fallback_listener = match config.http {
        HttpListener::Forward => http,
        HttpListener::Redirect => rules_listener.clone(),
    };
    Ingress {
        dns_name: alb.dns_name,
        canonical_hosted_zone_id: alb.canonical_hosted_zone_id,
        rules_listener: outputs_of::<ListenerProps>(&rules_listener).arn,
        fallback_listener,
    }
}

/// A certificate's DNS validation record in `zone_id`, its name, type and value read by
/// `field`. Every certificate of a name in the account needs this very record: another
/// stack's identical one serves as it is.
fn validation_record(zone_id: Input<String>, field: impl Fn(&str) -> Input<String>) -> RecordSpec {
    RecordSpec {
        zone_id,
        name: field("name"),
        r#type: field("type"),
        share_identical: Some(true.into()),
        ttl: Some(300i64.into()),
        records: Some(vec![field("value")].into()),
        alias: None,
    }
}
