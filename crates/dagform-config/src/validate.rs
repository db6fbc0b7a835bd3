//! Checks a parsed configuration against the limits AWS enforces, so mistakes surface before
//! any call with the file, line and field that caused them.

use crate::error::Diagnostic;
use crate::model::{Certificate, Config, Database, Network, Secret, StateSection, Validation};
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::path::Path;
use toml::Spanned;

struct Checker<'a> {
    path: &'a Path,
    source: &'a str,
    out: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error<T>(&mut self, at: &Spanned<T>, field: &str, message: impl Into<String>) {
        self.out.push(Diagnostic::at(
            self.path,
            self.source,
            at.span().start,
            field,
            message.into(),
        ));
    }

    fn name(&mut self, v: &Spanned<String>, field: &str, max: usize) {
        let s = v.get_ref();
        let ok = !s.is_empty()
            && s.len() <= max
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            self.error(
                v,
                field,
                format!(
                    "`{s}` is not a valid name: use 1 to {max} lowercase letters, digits and hyphens, starting with a letter"
                ),
            );
        }
    }

    fn domain(&mut self, v: &Spanned<String>, field: &str, zone: &str, wildcard: bool) {
        let s = v.get_ref().trim_end_matches('.');
        let body = if wildcard {
            s.strip_prefix("*.").unwrap_or(s)
        } else {
            s
        };
        let labels_ok = !body.is_empty()
            && body.len() <= 253
            && body.split('.').count() >= 2
            && body.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !labels_ok {
            self.error(v, field, format!("`{s}` is not a valid domain name"));
            return;
        }
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        let lower = body.to_ascii_lowercase();
        if !zone.is_empty() && lower != zone && !lower.ends_with(&format!(".{zone}")) {
            self.error(v, field, format!("`{s}` is not in the DNS zone `{zone}`"));
        }
    }
}

/// Fargate's valid CPU units and, for each, the memory sizes (MiB) it accepts.
fn fargate_memory_ok(cpu: u32, memory: u32) -> bool {
    let (low, high, step) = match cpu {
        256 => return matches!(memory, 512 | 1024 | 2048),
        512 => (1024, 4096, 1024),
        1024 => (2048, 8192, 1024),
        2048 => (4096, 16384, 1024),
        4096 => (8192, 30720, 1024),
        8192 => (16384, 61440, 4096),
        16384 => (32768, 122880, 8192),
        _ => return false,
    };
    (low..=high).contains(&memory) && memory.is_multiple_of(step)
}

pub const LOG_RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

pub fn check(path: &Path, source: &str, c: &Config) -> Vec<Diagnostic> {
    let mut k = Checker {
        path,
        source,
        out: Vec::new(),
    };

    k.name(&c.stack.app, "stack.app", 20);
    k.name(&c.stack.environment, "stack.environment", 10);
    if let Some(n) = &c.stack.name {
        k.name(n, "stack.name", 40);
    }
    let region = c.stack.region.get_ref();
    if !region_ok(region) {
        k.error(
            &c.stack.region,
            "stack.region",
            format!("`{region}` is not an AWS region such as `us-east-1`"),
        );
    }
    if let Some(account) = &c.stack.account_id {
        let a = account.get_ref();
        if a.len() != 12 || !a.chars().all(|ch| ch.is_ascii_digit()) {
            k.error(
                account,
                "stack.account_id",
                format!("`{a}` is not an AWS account id (12 digits, e.g. \"123456789012\")"),
            );
        }
    }
    check_state_section(&mut k, &c.state);

    check_network(&mut k, c.network.get_ref(), &c.network, region);

    let zone = c
        .dns
        .as_ref()
        .map(|d| d.zone.get_ref().clone())
        .unwrap_or_default();
    if let Some(dns) = &c.dns {
        k.domain(&dns.zone, "dns.zone", "", false);
    }
    if let Some(cert) = &c.certificate {
        check_certificate(&mut k, c, cert, &zone);
    }
    if c.has_customers() {
        if c.dns.is_none() {
            k.out.push(Diagnostic::at(
                path,
                source,
                0,
                "dns",
                "customers need a `[dns]` zone for their records".into(),
            ));
        }
        if c.certificate
            .as_ref()
            .is_none_or(|cert| cert.get_ref().domain.is_none())
        {
            k.out.push(Diagnostic::at(
                path,
                source,
                0,
                "certificate",
                "customers need a `[certificate]` with a `domain` covering theirs".into(),
            ));
        }
        if !c.network.get_ref().is_managed() {
            k.error(
                &c.network,
                "network",
                "customers' services run in private subnets: give `cidr`, zones and subnets",
            );
        }
    }
    if let Some(n) = &c.load_balancer.name {
        k.name(n, "load_balancer.name", crate::naming::ELB_NAME_MAX);
    }
    if let Some(n) = &c.cluster.name {
        k.name(n, "cluster.name", 255);
    }
    for (key, secret) in &c.secrets {
        check_secret(&mut k, key, secret);
    }
    if let Some(db) = &c.database {
        check_database(&mut k, c, db);
    }
    if let Some(alarms) = &c.alarms {
        check_alarms(&mut k, alarms);
    }
    if let Some(waf) = &c.waf {
        check_waf(&mut k, waf);
    }
    if let Some(ci) = &c.ci {
        check_ci(&mut k, ci);
    }

    if let Some(name) = &c.registry.name {
        let s = name.get_ref();
        let ok = (2..=256).contains(&s.len())
            && s.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-/".contains(ch))
            && s.starts_with(|ch: char| ch.is_ascii_alphanumeric());
        if !ok {
            k.error(
                name,
                "registry.name",
                format!("`{s}` is not a valid ECR repository name"),
            );
        }
    }
    if let Some(n) = &c.registry.keep_last_images
        && !(1..=1000).contains(n.get_ref())
    {
        k.error(n, "registry.keep_last_images", "must be between 1 and 1000");
    }
    if let Some(r) = &c.logs.retention_days
        && !LOG_RETENTION_DAYS.contains(r.get_ref())
    {
        k.error(
            r,
            "logs.retention_days",
            format!("CloudWatch Logs accepts only {LOG_RETENTION_DAYS:?}"),
        );
    }
    if let Some(t) = &c.load_balancer.idle_timeout_seconds
        && !(1..=4000).contains(t.get_ref())
    {
        k.error(
            t,
            "load_balancer.idle_timeout_seconds",
            "must be between 1 and 4000",
        );
    }

    check_customers_per_load_balancer(&mut k, c);

    // Services.
    if c.services.is_empty() {
        k.out.push(Diagnostic::at(
            path,
            source,
            0,
            "services",
            "define at least one service".into(),
        ));
    }
    let mut catch_all: Option<String> = None;
    let mut paths: BTreeMap<String, String> = BTreeMap::new();
    let mut routed = 0;
    for (name, svc) in &c.services {
        let n = name.get_ref();
        let f = |field: &str| format!("services.{n}.{field}");
        k.name(name, &format!("services.{n}"), 24);
        let s = svc.get_ref();
        let tag = s.image_tag.get_ref();
        if tag.is_empty()
            || tag.len() > 128
            || !tag
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
        {
            k.error(
                &s.image_tag,
                &f("image_tag"),
                format!("`{tag}` is not a valid image tag"),
            );
        }
        if let Some(p) = &s.port {
            if !(1..=65535).contains(p.get_ref()) {
                k.error(
                    p,
                    &f("port"),
                    format!("{} is not a port (1-65535)", p.get_ref()),
                );
            }
            routed += 1;
            if s.is_catch_all() {
                if let Some(other) = &catch_all {
                    k.error(
                        p,
                        &f("path"),
                        format!(
                            "both `{other}` and `{n}` take every path; give one of them a `path`"
                        ),
                    );
                }
                catch_all = Some(n.clone());
            }
        }
        if let Some(p) = &s.path {
            let v = p.get_ref();
            if s.port.is_none() {
                k.error(
                    p,
                    &f("path"),
                    "a service without a `port` receives no traffic, so it cannot have a `path`",
                );
            } else if !v.starts_with('/') || v.len() > 128 {
                k.error(
                    p,
                    &f("path"),
                    format!("`{v}` must start with `/` and have at most 128 characters"),
                );
            } else if let Some(other) = paths.insert(v.clone(), n.clone()) {
                k.error(
                    p,
                    &f("path"),
                    format!("`{v}` is already routed to `{other}`"),
                );
            }
        }
        if let Some(p) = &s.health_check_path {
            if s.port.is_none() {
                k.error(
                    p,
                    &f("health_check_path"),
                    "only a service with a `port` is health-checked by the load balancer",
                );
            } else if !p.get_ref().starts_with('/') {
                k.error(
                    p,
                    &f("health_check_path"),
                    format!("`{}` must start with `/`", p.get_ref()),
                );
            }
        }
        let (cpu, memory) = (*s.cpu.get_ref(), *s.memory.get_ref());
        if !matches!(cpu, 256 | 512 | 1024 | 2048 | 4096 | 8192 | 16384) {
            k.error(
                &s.cpu,
                &f("cpu"),
                format!(
                    "{cpu} is not a Fargate CPU size (256, 512, 1024, 2048, 4096, 8192, 16384)"
                ),
            );
        } else if !fargate_memory_ok(cpu, memory) {
            k.error(
                &s.memory,
                &f("memory"),
                format!("{memory} MiB is not a valid Fargate memory size for {cpu} CPU units"),
            );
        }
        if *s.desired_count.get_ref() > 1000 {
            k.error(&s.desired_count, &f("desired_count"), "at most 1000 tasks");
        }
        for key in s.environment.keys() {
            if !env_name_ok(key) {
                k.error(
                    svc,
                    &f("environment"),
                    format!("`{key}` is not a valid environment variable name"),
                );
            }
        }
        for secret in &s.secrets {
            let name = secret.get_ref();
            if !c.secrets.keys().any(|k| k.get_ref() == name) {
                k.error(
                    secret,
                    &f("secrets"),
                    format!("`{name}` is not defined under [secrets]"),
                );
            } else if s.environment.contains_key(name) {
                k.error(
                    secret,
                    &f("secrets"),
                    format!("`{name}` is both an environment variable and a secret"),
                );
            }
        }
        if let Some(h) = &s.health_check {
            let ok = (5..=300).contains(&h.interval)
                && (2..=120).contains(&h.timeout)
                && (1..=10).contains(&h.retries)
                && h.start_period <= 300;
            if !ok {
                k.error(
                    &h.command,
                    &f("health_check"),
                    "interval 5-300 s, timeout 2-120 s, retries 1-10, start_period 0-300 s",
                );
            }
        }
        if !(5..=300).contains(&s.health_check_interval_seconds) {
            k.error(
                svc,
                &f("health_check_interval_seconds"),
                "must be between 5 and 300",
            );
        }
        if !(2..=10).contains(&s.unhealthy_threshold) {
            k.error(svc, &f("unhealthy_threshold"), "must be between 2 and 10");
        }
        if let Some(n) = &s.target_group_name {
            k.name(n, &f("target_group_name"), crate::naming::ELB_NAME_MAX);
            if c.has_customers() {
                k.error(
                    n,
                    &f("target_group_name"),
                    "cannot be fixed with [customers]: every customer needs a target group of its own (remove it to use the default names)",
                );
            }
        }
        if let Some(fam) = &s.family {
            let v = fam.get_ref();
            let ok = (1..=255).contains(&v.len())
                && v.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
            if !ok {
                k.error(
                    fam,
                    &f("family"),
                    format!("`{v}` is not a valid task definition family: use 1 to 255 letters, digits, hyphens and underscores"),
                );
            }
            if c.has_customers() {
                k.error(
                    fam,
                    &f("family"),
                    "cannot be fixed with [customers]: every customer's service has a family of its own",
                );
            }
        }
    }
    check_fixed_names_unique(&mut k, c);
    check_autoscaling(&mut k, c);
    check_log_group_name(&mut k, c);
    if routed >= crate::naming::PRIORITY_BLOCK as usize {
        k.out.push(Diagnostic::at(
            path,
            source,
            0,
            "services",
            format!(
                "at most {} services can receive traffic",
                crate::naming::PRIORITY_BLOCK - 1
            ),
        ));
    }

    // Customers.
    let mut domains: BTreeMap<String, String> = BTreeMap::new();
    for (name, cust) in &c.customers {
        let n = name.get_ref();
        let f = |field: &str| format!("customers.{n}.{field}");
        k.name(name, &format!("customers.{n}"), 40);
        let cu = cust.get_ref();
        // A domain outside the zone is allowed: it gets a certificate of its own.
        k.domain(&cu.domain, &f("domain"), "", false);
        let d = cu.host();
        let own_domain = !c.in_zone(&d);
        if own_domain && d.len() > 64 {
            k.error(
                &cu.domain,
                &f("domain"),
                format!(
                    "`{d}` is outside the DNS zone `{zone}` and gets a certificate of its own, whose domain ACM limits to 64 characters"
                ),
            );
        }
        if let Some(other) = domains.insert(d.clone(), n.clone()) {
            k.error(
                &cu.domain,
                &f("domain"),
                format!("`{d}` is already the domain of customer `{other}`"),
            );
        }
        if let Some(cert) = c
            .certificate
            .as_ref()
            .and_then(|c| c.get_ref().domain.as_ref())
            && !own_domain
            && !certificate_covers(c, &d)
        {
            k.error(
                &cu.domain,
                &f("domain"),
                format!(
                    "`{d}` is not covered by the certificate for `{}`",
                    cert.get_ref()
                ),
            );
        }
        let display = cu.display_name.get_ref();
        if display.trim().is_empty() || display.len() > 255 {
            k.error(
                &cu.display_name,
                &f("display_name"),
                "must have 1 to 255 characters",
            );
        }
        for key in cu.environment.keys() {
            if !env_name_ok(key) {
                k.error(
                    cust,
                    &f("environment"),
                    format!("`{key}` is not a valid environment variable name"),
                );
            }
        }
    }
    k.out.sort_by_key(|d| (d.line, d.column));
    k.out
}

fn region_ok(region: &str) -> bool {
    region.split('-').count() >= 3
        && region.ends_with(|ch: char| ch.is_ascii_digit())
        && region
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
}

fn check_state_section(k: &mut Checker<'_>, state: &StateSection) {
    if let Some(location) = &state.location {
        let l = location.get_ref();
        if let Some(rest) = l.strip_prefix("s3://") {
            let ok = rest
                .split_once('/')
                .is_some_and(|(b, key)| !b.is_empty() && !key.is_empty() && !key.ends_with('/'));
            if !ok {
                k.error(
                    location,
                    "state.location",
                    format!("`{l}` is not an S3 location; write s3://BUCKET/KEY"),
                );
            }
        } else if l.contains("://") {
            k.error(
                location,
                "state.location",
                format!("`{l}`: only local paths and s3://BUCKET/KEY are supported"),
            );
        } else if l.trim().is_empty() {
            k.error(location, "state.location", "the state location is empty");
        }
    }
    if let Some(region) = &state.region {
        if !region_ok(region.get_ref()) {
            k.error(
                region,
                "state.region",
                format!(
                    "`{}` is not an AWS region such as `us-east-1`",
                    region.get_ref()
                ),
            );
        }
        if state
            .location
            .as_ref()
            .is_none_or(|l| !l.get_ref().starts_with("s3://"))
        {
            k.error(
                region,
                "state.region",
                "only an S3 state location has a region",
            );
        }
    }
}

fn env_name_ok(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether the certificate's names (with one-level wildcards) cover `domain`.
fn certificate_covers(c: &Config, domain: &str) -> bool {
    let Some(cert) = &c.certificate else {
        return false;
    };
    let cert = cert.get_ref();
    cert.domain.iter().chain(&cert.alternative_names).any(|n| {
        let n = n.get_ref().trim_end_matches('.').to_ascii_lowercase();
        match n.strip_prefix("*.") {
            Some(base) => domain
                .strip_suffix(base)
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            None => n == domain,
        }
    })
}

fn check_network(k: &mut Checker<'_>, net: &Network, at: &Spanned<Network>, region: &str) {
    if !net.is_managed() {
        if net.cidr.is_some()
            || net.availability_zones.is_some()
            || net.public_subnets.is_some()
            || net.private_subnets.is_some()
        {
            k.error(
                at,
                "network",
                "an existing network takes no `cidr`, zones or subnets to create",
            );
        }
        let pickers = [
            net.existing.is_some(),
            net.vpc_id.is_some(),
            net.vpc_tags.is_some(),
        ];
        if pickers.iter().filter(|p| **p).count() > 1 {
            k.error(
                at,
                "network",
                "give one of `existing`, `vpc_id` or `vpc_tags`",
            );
        }
        if net
            .vpc_tags
            .as_ref()
            .is_some_and(|t| t.get_ref().is_empty())
        {
            k.error(at, "network.vpc_tags", "give at least one tag");
        }
        if let Some(e) = &net.existing {
            if e.get_ref() != "default" {
                k.error(e, "network.existing", format!("`{}`: only \"default\" (the account's default VPC) is known; give `vpc_id` for another", e.get_ref()));
            }
            if net.vpc_id.is_some() {
                k.error(
                    e,
                    "network.existing",
                    "give `existing` or `vpc_id`, not both",
                );
            }
        }
        if let Some(v) = net
            .vpc_id
            .as_ref()
            .filter(|v| !v.get_ref().starts_with("vpc-"))
        {
            k.error(
                v,
                "network.vpc_id",
                format!("`{}` is not a VPC id", v.get_ref()),
            );
        }
        if let Some(s) = &net.subnet_ids
            && (s.get_ref().len() < 2 || s.get_ref().iter().any(|id| !id.starts_with("subnet-")))
        {
            k.error(
                s,
                "network.subnet_ids",
                "give at least two subnet ids (subnet-…) in different zones",
            );
        }
        return;
    }
    if net.subnet_ids.is_some() {
        k.error(
            at,
            "network.subnet_ids",
            "`subnet_ids` picks subnets of an existing `vpc_id`",
        );
    }
    let (Some(cidr), Some(zones), Some(public), Some(private)) = (
        &net.cidr,
        &net.availability_zones,
        &net.public_subnets,
        &net.private_subnets,
    ) else {
        k.error(at, "network", "give `cidr`, `availability_zones`, `public_subnets` and `private_subnets` for a network to create, or `existing = \"default\"` / `vpc_id` to use one");
        return;
    };
    // The VPC's range holds every subnet, subnets never overlap, one of each kind per zone.
    let vpc: Option<Ipv4Net> = match cidr.get_ref().parse::<Ipv4Net>() {
        Ok(n) if (16..=28).contains(&n.prefix_len()) && n.trunc() == n => Some(n),
        Ok(n) => {
            k.error(
                cidr,
                "network.cidr",
                format!("`{n}` must be a network address with a prefix between /16 and /28"),
            );
            None
        }
        Err(_) => {
            k.error(
                cidr,
                "network.cidr",
                format!("`{}` is not an IPv4 CIDR block", cidr.get_ref()),
            );
            None
        }
    };
    if zones.get_ref().len() < 2 {
        k.error(
            zones,
            "network.availability_zones",
            "an Application Load Balancer needs at least two availability zones",
        );
    }
    for z in zones.get_ref() {
        if !z.starts_with(region) || z.len() != region.len() + 1 {
            k.error(
                zones,
                "network.availability_zones",
                format!("`{z}` is not an availability zone of {region}"),
            );
        }
    }
    let mut seen: Vec<(Ipv4Net, String)> = Vec::new();
    for (field, list) in [
        ("network.public_subnets", public),
        ("network.private_subnets", private),
    ] {
        if list.get_ref().len() != zones.get_ref().len() {
            k.error(
                list,
                field,
                format!(
                    "{} subnets given for {} availability zones; give one per zone",
                    list.get_ref().len(),
                    zones.get_ref().len()
                ),
            );
        }
        for s in list.get_ref() {
            match s.parse::<Ipv4Net>() {
                Ok(n) => {
                    if n.trunc() != n || !(16..=28).contains(&n.prefix_len()) {
                        k.error(
                            list,
                            field,
                            format!(
                                "`{s}` must be a network address with a prefix between /16 and /28"
                            ),
                        );
                    } else if vpc.is_some_and(|v| !v.contains(&n)) {
                        k.error(
                            list,
                            field,
                            format!("`{s}` is outside the VPC's {}", cidr.get_ref()),
                        );
                    } else if let Some((_, other)) = seen
                        .iter()
                        .find(|(o, _)| o.contains(&n.network()) || n.contains(&o.network()))
                    {
                        k.error(list, field, format!("`{s}` overlaps `{other}`"));
                    }
                    seen.push((n, s.clone()));
                }
                Err(_) => k.error(list, field, format!("`{s}` is not an IPv4 CIDR block")),
            }
        }
    }
}

fn check_certificate(k: &mut Checker<'_>, c: &Config, cert: &Spanned<Certificate>, zone: &str) {
    let cr = cert.get_ref();
    match (&cr.arn, &cr.domain) {
        (Some(arn), None) => {
            if !arn.get_ref().starts_with("arn:aws") || !arn.get_ref().contains(":acm:") {
                k.error(
                    arn,
                    "certificate.arn",
                    format!("`{}` is not an ACM certificate ARN", arn.get_ref()),
                );
            }
            if cr.validation.is_some() || !cr.alternative_names.is_empty() {
                k.error(
                    arn,
                    "certificate.arn",
                    "an existing certificate takes no `validation` or `alternative_names`",
                );
            }
        }
        (None, Some(domain)) => {
            let route53 = cr.validation(c.dns.as_ref()) == Validation::Route53;
            if route53 && c.dns.is_none() {
                k.error(
                    cert,
                    "certificate.validation",
                    "validation through Route 53 needs a `[dns]` zone",
                );
            }
            let within = if route53 { zone } else { "" };
            k.domain(domain, "certificate.domain", within, true);
            for n in &cr.alternative_names {
                k.domain(n, "certificate.alternative_names", within, true);
            }
        }
        _ => k.error(
            cert,
            "certificate",
            "give either `domain` (a certificate to request) or `arn` (an existing one)",
        ),
    }
}

/// Two resources must never be given one AWS object: names a configuration fixes must differ
/// where AWS needs them to (target groups, task definition families, secrets).
fn check_fixed_names_unique(k: &mut Checker<'_>, c: &Config) {
    let mut seen: Vec<(&str, String, String)> = Vec::new();
    let mut claim = |k: &mut Checker<'_>,
                     what: &'static str,
                     name: &Spanned<String>,
                     field: String| {
        let v = name.get_ref();
        match seen.iter().find(|(w, _, n)| *w == what && *n == v.as_str()) {
            Some((_, first, _)) => k.error(
                name,
                &field,
                format!("{what} `{v}` is already the name of `{first}`: two resources cannot share one object"),
            ),
            None => seen.push((what, field, v.clone())),
        }
    };
    for (name, svc) in &c.services {
        let s = svc.get_ref();
        let f = |field: &str| format!("services.{}.{field}", name.get_ref());
        if let Some(n) = &s.target_group_name {
            claim(k, "target group", n, f("target_group_name"));
        }
        if let Some(n) = &s.family {
            claim(k, "task definition family", n, f("family"));
        }
    }
    for (key, secret) in &c.secrets {
        if let Some(n) = &secret.get_ref().name {
            claim(k, "secret", n, format!("secrets.{}.name", key.get_ref()));
        }
    }
}

/// A log group name template must give every service (and every customer's copy of it) a
/// group of its own, and use only known placeholders.
/// `customers_per_load_balancer` must leave every load balancer within AWS's quotas of listener
/// rules and target groups.
fn check_customers_per_load_balancer(k: &mut Checker<'_>, c: &Config) {
    let Some(n) = &c.load_balancer.customers_per_load_balancer else {
        return;
    };
    let field = "load_balancer.customers_per_load_balancer";
    if *n.get_ref() < 1 {
        k.error(n, field, "must be at least 1");
    } else if let Some(capacity) = crate::blueprint::computed_capacity(c)
        && *n.get_ref() > capacity
    {
        k.error(
            n,
            field,
            format!(
                "at most {capacity} customers fit one load balancer ({} listener rules and {} target groups, counting its default one, with one of each per customer and routed service)",
                crate::blueprint::MAX_RULES_PER_LOAD_BALANCER,
                crate::blueprint::MAX_TARGET_GROUPS_PER_LOAD_BALANCER
            ),
        );
    }
}

fn check_log_group_name(k: &mut Checker<'_>, c: &Config) {
    let Some(t) = &c.logs.group_name else {
        return;
    };
    let v = t.get_ref();
    let field = "logs.group_name";
    let mut rest = v.as_str();
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            k.error(t, field, format!("`{v}` has an unclosed `{{`"));
            return;
        };
        let name = &rest[open + 1..open + close];
        if !crate::model::LOG_GROUP_PLACEHOLDERS.contains(&name) {
            k.error(
                t,
                field,
                format!(
                    "`{{{name}}}` is not a placeholder; use {}",
                    crate::model::LOG_GROUP_PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        rest = &rest[open + close + 1..];
    }
    if c.services.len() > 1 && !v.contains("{service}") {
        k.error(
            t,
            field,
            "must contain `{service}`: every service needs a log group of its own",
        );
    }
    if c.has_customers() && !v.contains("{customer}") {
        k.error(
            t,
            field,
            "must contain `{customer}`: every customer needs log groups of its own",
        );
    }
    let literal: String = v
        .split(['{', '}'])
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, part)| part)
        .collect();
    if v.is_empty()
        || v.len() > 512
        || !literal
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "._-/#".contains(ch))
    {
        k.error(
            t,
            field,
            format!("`{v}` is not a valid log group name: letters, digits and `._-/#`, at most 512 characters"),
        );
    }
}

fn check_secret(k: &mut Checker<'_>, key: &Spanned<String>, secret: &Spanned<Secret>) {
    let f = format!("secrets.{}", key.get_ref());
    if !env_name_ok(key.get_ref()) {
        k.error(
            key,
            &f,
            format!(
                "`{}` is not a valid environment variable name",
                key.get_ref()
            ),
        );
    }
    let s = secret.get_ref();
    let sources = [s.from_env.is_some(), s.from_file.is_some(), s.arn.is_some()];
    if sources.iter().filter(|b| **b).count() != 1 {
        k.error(
            secret,
            &f,
            "give exactly one of `from_env`, `from_file` or `arn`",
        );
    }
    if let Some(w) = s
        .recovery_window_days
        .as_ref()
        .filter(|w| *w.get_ref() != 0 && !(7..=30).contains(w.get_ref()))
    {
        k.error(
            w,
            &format!("{f}.recovery_window_days"),
            "must be 0 (delete at once) or 7 to 30",
        );
    }
    if let Some(arn) = s.arn.as_ref().filter(|a| {
        !a.get_ref().starts_with("arn:aws") || !a.get_ref().contains(":secretsmanager:")
    }) {
        k.error(
            arn,
            &format!("{f}.arn"),
            format!("`{}` is not a Secrets Manager ARN", arn.get_ref()),
        );
    }
}

fn check_database(k: &mut Checker<'_>, c: &Config, db: &Spanned<Database>) {
    let d = db.get_ref();
    match (&d.existing, &d.identifier) {
        (Some(_), Some(id)) => k.error(
            id,
            "database.identifier",
            "give `identifier` for a new database or `existing` for one that exists, not both",
        ),
        (Some(_), None) => {}
        (None, None) => k.error(
            db,
            "database",
            "give `identifier` (a database to create) or `existing`",
        ),
        (None, Some(id)) => {
            let v = id.get_ref();
            let ok = (1..=63).contains(&v.len())
                && v.starts_with(|ch: char| ch.is_ascii_alphabetic())
                && !v.ends_with('-')
                && !v.contains("--")
                && v.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-');
            if !ok {
                k.error(
                    id,
                    "database.identifier",
                    format!("`{v}` is not a valid DB instance identifier"),
                );
            }
            if !(20..=65536).contains(d.allocated_storage.get_ref()) {
                k.error(
                    &d.allocated_storage,
                    "database.allocated_storage",
                    "must be between 20 and 65536 GiB",
                );
            }
            if *d.backup_retention_days.get_ref() > 35 {
                k.error(
                    &d.backup_retention_days,
                    "database.backup_retention_days",
                    "at most 35",
                );
            }
            if !d
                .engine_version
                .get_ref()
                .starts_with(|ch: char| ch.is_ascii_digit())
            {
                k.error(
                    &d.engine_version,
                    "database.engine_version",
                    "a PostgreSQL version such as \"16\"",
                );
            }
            let name = d.name.get_ref();
            if name.is_empty()
                || name.len() > 63
                || !name.starts_with(|ch: char| ch.is_ascii_alphabetic())
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            {
                k.error(
                    &d.name,
                    "database.name",
                    format!("`{name}` is not a valid PostgreSQL database name"),
                );
            }
            if c.network.get_ref().is_managed() && c.network.get_ref().zones().len() < 2 {
                k.error(
                    db,
                    "database",
                    "a DB subnet group needs subnets in two availability zones",
                );
            }
        }
    }
}

/// The most tasks a scaled service may reach: the same bound as `desired_count`.
const MAX_SCALED_TASKS: u32 = 1000;

/// Each service's `autoscaling`: bounds as Application Auto Scaling takes them (min ≥ 0,
/// max ≥ 1, min ≤ max), utilisation targets in percent, and requests only where the load
/// balancer sends them.
fn check_autoscaling(k: &mut Checker<'_>, c: &Config) {
    for (name, svc) in &c.services {
        let Some(scaling) = &svc.get_ref().autoscaling else {
            continue;
        };
        let f = |field: &str| format!("services.{}.autoscaling.{field}", name.get_ref());
        let a = scaling.get_ref();
        let (min, max) = (*a.min.get_ref(), *a.max.get_ref());
        if !(1..=MAX_SCALED_TASKS).contains(&max) {
            k.error(
                &a.max,
                &f("max"),
                format!("must be between 1 and {MAX_SCALED_TASKS} tasks"),
            );
        } else if min > max {
            k.error(&a.min, &f("min"), format!("{min} is above max ({max})"));
        }
        for (target, field) in [
            (&a.cpu_target, "cpu_target"),
            (&a.memory_target, "memory_target"),
        ] {
            if let Some(t) = target
                && !(1..=100).contains(t.get_ref())
            {
                k.error(
                    t,
                    &f(field),
                    "a utilisation target is a percentage: 1 to 100",
                );
            }
        }
        if let Some(r) = &a.requests_per_target {
            if *r.get_ref() == 0 {
                k.error(r, &f("requests_per_target"), "must be at least 1 request");
            } else if !svc.get_ref().is_routed() {
                k.error(
                    r,
                    &f("requests_per_target"),
                    "only a service with a `port` receives requests from the load balancer",
                );
            }
        }
        if a.cpu_target.is_none() && a.memory_target.is_none() && a.requests_per_target.is_none() {
            k.error(
                scaling,
                &format!("services.{}.autoscaling", name.get_ref()),
                "needs a target to track: cpu_target, memory_target or requests_per_target",
            );
        }
    }
}

fn check_alarms(k: &mut Checker<'_>, alarms: &Spanned<crate::model::Alarms>) {
    use crate::model::{Alarm, AlarmSetting};
    let a = alarms.get_ref();
    match (a.email.is_empty(), &a.topic_arn) {
        (true, None) => k.error(
            alarms,
            "alarms",
            "say where alarms go: `email = [\"ops@example.com\"]` or `topic_arn = \"arn:aws:sns:…\"`",
        ),
        (false, Some(arn)) => k.error(
            arn,
            "alarms.topic_arn",
            "give `email` or `topic_arn`, not both: an existing topic's subscriptions are its owner's to manage",
        ),
        _ => {}
    }
    for email in &a.email {
        if !dagform_resources::sns::is_email(email.get_ref()) {
            let e = email.get_ref();
            k.error(
                email,
                "alarms.email",
                format!("`{e}` is not an e-mail address"),
            );
        }
    }
    if let Some(arn) = &a.topic_arn
        && !sns_topic_arn_ok(arn.get_ref())
    {
        let s = arn.get_ref();
        k.error(
            arn,
            "alarms.topic_arn",
            format!("`{s}` is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"),
        );
    }
    for (key, setting) in &a.thresholds {
        let name = key.get_ref();
        let field = format!("alarms.thresholds.{name}");
        let Some(alarm) = Alarm::from_key(name) else {
            let known: Vec<&str> = Alarm::ALL.iter().map(|a| a.key()).collect();
            let hint = closest(name, &known)
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            k.error(
                key,
                &field,
                format!("unknown alarm `{name}`; {hint}known: {}", known.join(", ")),
            );
            continue;
        };
        if let AlarmSetting::Threshold(t) = setting.get_ref() {
            let (range, unit) = alarm.range();
            if !range.contains(t) {
                k.error(
                    setting,
                    &field,
                    format!(
                        "{t} is out of range: {} to {} {unit} (or `false` to turn it off)",
                        range.start(),
                        range.end()
                    ),
                );
            }
        }
    }
}

fn sns_topic_arn_ok(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    matches!(parts.as_slice(),
        ["arn", partition, "sns", region, account, name]
            if partition.starts_with("aws")
                && region_ok(region)
                && account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && !name.is_empty()
                && name.len() <= 256
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)))
}

/// `[waf]`: names from AWS's managed rule groups, each once, and a rate limit WAF accepts.
fn check_waf(k: &mut Checker<'_>, waf: &Spanned<crate::model::Waf>) {
    use dagform_resources::wafv2::{MANAGED_RULE_GROUPS, RATE_LIMIT_RANGE};
    let w = waf.get_ref();
    if w.managed_rules.is_empty() && w.rate_limit.is_none() {
        k.error(
            waf,
            "waf",
            "name at least one managed rule group (`managed_rules = [\"AWSManagedRulesCommonRuleSet\"]`) or a `rate_limit`",
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for rule in &w.managed_rules {
        let name = rule.get_ref();
        if !MANAGED_RULE_GROUPS.contains(&name.as_str()) {
            let hint = closest(name, MANAGED_RULE_GROUPS)
                .map_or_else(String::new, |c| format!(" (did you mean `{c}`?)"));
            k.error(
                rule,
                "waf.managed_rules",
                format!("`{name}` is not an AWS managed rule group{hint}"),
            );
        } else if !seen.insert(name.as_str()) {
            k.error(
                rule,
                "waf.managed_rules",
                format!("`{name}` is listed twice"),
            );
        }
    }
    if let Some(limit) = &w.rate_limit
        && !RATE_LIMIT_RANGE.contains(limit.get_ref())
    {
        k.error(
            limit,
            "waf.rate_limit",
            format!(
                "{} requests per 5 minutes is outside what WAF accepts ({} to {})",
                limit.get_ref(),
                RATE_LIMIT_RANGE.start(),
                RATE_LIMIT_RANGE.end()
            ),
        );
    }
}

/// `[ci]`: a GitHub repository as `owner/name`, and the branches that may deploy.
fn check_ci(k: &mut Checker<'_>, ci: &Spanned<crate::model::Ci>) {
    let github = ci.get_ref().github.get_ref();
    let repo = github.repository.get_ref();
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 100
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let repo_ok = matches!(repo.split_once('/'), Some((owner, name)) if part_ok(owner) && part_ok(name) && !name.contains('/'));
    if !repo_ok {
        k.error(
            &github.repository,
            "ci.github.repository",
            format!("`{repo}` is not a GitHub repository: write it as `owner/name`"),
        );
    }
    if github.branches.is_empty() {
        k.error(
            &ci.get_ref().github,
            "ci.github.branches",
            "name at least one branch allowed to deploy, e.g. `branches = [\"main\"]`",
        );
    }
    for branch in &github.branches {
        let b = branch.get_ref();
        // Branch names end up in an IAM condition: no wildcards or quotes sneak in.
        let ok = !b.is_empty()
            && b.len() <= 255
            && !b.starts_with('/')
            && !b.ends_with('/')
            && !b.contains("..")
            && b.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        if !ok {
            k.error(
                branch,
                "ci.github.branches",
                format!("`{b}` is not a branch name dagform accepts (letters, digits, - _ . /)"),
            );
        }
    }
}

/// The known name nearest `name` by edit distance, if it is near enough to be a typo.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= k.len() / 3 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}
