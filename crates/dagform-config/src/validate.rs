//! Checks a parsed configuration against the limits AWS enforces, so mistakes surface before
//! any call with the file, line and field that caused them.

use crate::error::Diagnostic;
use crate::model::Config;
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
    let region_ok = region.split('-').count() >= 3
        && region.ends_with(|ch: char| ch.is_ascii_digit())
        && region
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
    if !region_ok {
        k.error(
            &c.stack.region,
            "stack.region",
            format!("`{region}` is not an AWS region such as `us-east-1`"),
        );
    }

    // Network: the VPC's range holds every subnet, subnets never overlap, one of each kind per zone.
    let vpc: Option<Ipv4Net> = match c.network.cidr.get_ref().parse::<Ipv4Net>() {
        Ok(net) if (16..=28).contains(&net.prefix_len()) && net.trunc() == net => Some(net),
        Ok(net) => {
            k.error(
                &c.network.cidr,
                "network.cidr",
                format!("`{net}` must be a network address with a prefix between /16 and /28"),
            );
            None
        }
        Err(_) => {
            k.error(
                &c.network.cidr,
                "network.cidr",
                format!("`{}` is not an IPv4 CIDR block", c.network.cidr.get_ref()),
            );
            None
        }
    };
    let zones = c.network.availability_zones.get_ref();
    if zones.len() < 2 {
        k.error(
            &c.network.availability_zones,
            "network.availability_zones",
            "an Application Load Balancer needs at least two availability zones",
        );
    }
    for z in zones {
        if !z.starts_with(region.as_str()) || z.len() != region.len() + 1 {
            k.error(
                &c.network.availability_zones,
                "network.availability_zones",
                format!("`{z}` is not an availability zone of {region}"),
            );
        }
    }
    let mut seen: Vec<(Ipv4Net, String)> = Vec::new();
    for (field, list) in [
        ("network.public_subnets", &c.network.public_subnets),
        ("network.private_subnets", &c.network.private_subnets),
    ] {
        if list.get_ref().len() != zones.len() {
            k.error(
                list,
                field,
                format!(
                    "{} subnets given for {} availability zones; give one per zone",
                    list.get_ref().len(),
                    zones.len()
                ),
            );
        }
        for s in list.get_ref() {
            match s.parse::<Ipv4Net>() {
                Ok(net) => {
                    if net.trunc() != net || !(16..=28).contains(&net.prefix_len()) {
                        k.error(
                            list,
                            field,
                            format!(
                                "`{s}` must be a network address with a prefix between /16 and /28"
                            ),
                        );
                    } else if vpc.is_some_and(|v| !v.contains(&net)) {
                        k.error(
                            list,
                            field,
                            format!("`{s}` is outside the VPC's {}", c.network.cidr.get_ref()),
                        );
                    } else if let Some((_, other)) = seen
                        .iter()
                        .find(|(o, _)| o.contains(&net.network()) || net.contains(&o.network()))
                    {
                        k.error(list, field, format!("`{s}` overlaps `{other}`"));
                    }
                    seen.push((net, s.clone()));
                }
                Err(_) => k.error(list, field, format!("`{s}` is not an IPv4 CIDR block")),
            }
        }
    }

    let zone = c.dns.zone.get_ref().clone();
    k.domain(&c.dns.zone, "dns.zone", "", false);
    k.domain(&c.certificate.domain, "certificate.domain", &zone, true);
    for n in &c.certificate.alternative_names {
        k.domain(n, "certificate.alternative_names", &zone, true);
    }
    if c.certificate.validation_timeout_minutes == 0 {
        k.error(
            &c.certificate.domain,
            "certificate.validation_timeout_minutes",
            "must be at least 1",
        );
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
    }
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
        k.domain(&cu.domain, &f("domain"), &zone, false);
        let d = cu
            .domain
            .get_ref()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if let Some(other) = domains.insert(d.clone(), n.clone()) {
            k.error(
                &cu.domain,
                &f("domain"),
                format!("`{d}` is already the domain of customer `{other}`"),
            );
        }
        if !certificate_covers(c, &d) {
            k.error(
                &cu.domain,
                &f("domain"),
                format!(
                    "`{d}` is not covered by the certificate for `{}`",
                    c.certificate.domain.get_ref()
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

fn env_name_ok(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether the certificate's names (with one-level wildcards) cover `domain`.
fn certificate_covers(c: &Config, domain: &str) -> bool {
    std::iter::once(&c.certificate.domain)
        .chain(&c.certificate.alternative_names)
        .any(|n| {
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
