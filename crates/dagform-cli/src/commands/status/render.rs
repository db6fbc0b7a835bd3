//! The report as a person reads it: one aligned table per part of the stack, the latest
//! service events, and what needs attention.

use super::Report;
use std::fmt::Write as _;

/// `None` shown as `-`.
fn dash(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A list as `a,b`, an empty one as `-`.
fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(",")
    }
}

/// A titled section holding one table: left-aligned columns, two spaces apart, indented by
/// two, with no trailing spaces.
fn section(out: &mut String, title: &str, headers: &[&str], rows: &[Vec<String>]) {
    out.push('\n');
    out.push_str(title);
    out.push('\n');
    table(out, headers, rows);
}

fn table(out: &mut String, headers: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        out.push_str("  none recorded in the state\n");
        return;
    }
    for line in crate::render::aligned_table(Some(headers), rows, &[]) {
        out.push_str("  ");
        out.push_str(&line);
        out.push('\n');
    }
}

pub(super) fn human(r: &Report) -> String {
    let mut out = format!("Stack {} ({})", r.stack, r.region);
    if let Some(c) = &r.customer {
        let _ = write!(out, ", customer {c}");
    }
    out.push('\n');

    let rows: Vec<Vec<String>> = r
        .load_balancers
        .iter()
        .map(|lb| {
            vec![
                lb.name.clone(),
                lb.state.clone(),
                dash(lb.scheme.as_ref()),
                dash(lb.dns_name.as_ref()),
            ]
        })
        .collect();
    section(
        &mut out,
        "Load balancer",
        &["NAME", "STATE", "SCHEME", "DNS NAME"],
        &rows,
    );

    // Only a stack with customers places them.
    if !r.customers.is_empty() {
        let rows: Vec<Vec<String>> = r
            .customers
            .iter()
            .map(|c| {
                vec![
                    c.customer.clone(),
                    dash(c.name.as_ref()),
                    c.load_balancer.clone(),
                ]
            })
            .collect();
        section(
            &mut out,
            "Customers",
            &["CUSTOMER", "LOAD BALANCER", "NODE"],
            &rows,
        );
    }

    let rows: Vec<Vec<String>> = r
        .certificates
        .iter()
        .map(|c| {
            vec![
                dash(c.domain.as_ref()),
                c.status.clone(),
                list(&c.names),
                c.in_use_by.to_string(),
                dash(c.not_after.as_ref()),
            ]
        })
        .collect();
    section(
        &mut out,
        "Certificate",
        &["DOMAIN", "STATUS", "NAMES", "IN USE BY", "EXPIRES"],
        &rows,
    );

    let rows: Vec<Vec<String>> = r
        .services
        .iter()
        .map(|s| {
            let rollout = match (&s.rollout, s.deployments) {
                (Some(state), n) if n > 1 => format!("{state} ({n} deployments)"),
                (state, _) => dash(state.as_ref()),
            };
            vec![
                dash(s.customer.as_ref()),
                s.service.clone(),
                s.name.clone(),
                s.status.clone(),
                dash(s.desired),
                dash(s.running),
                dash(s.pending),
                rollout,
                dash(s.task_definition.as_ref()),
            ]
        })
        .collect();
    section(
        &mut out,
        "Services",
        &[
            "CUSTOMER",
            "SERVICE",
            "ECS SERVICE",
            "STATUS",
            "DESIRED",
            "RUNNING",
            "PENDING",
            "ROLLOUT",
            "TASK DEFINITION",
        ],
        &rows,
    );

    let rows: Vec<Vec<String>> = r
        .target_groups
        .iter()
        .map(|g| {
            // A missing group has no targets to count.
            let count = |n: u32| {
                if g.status == "OK" {
                    n.to_string()
                } else {
                    "-".into()
                }
            };
            vec![
                dash(g.customer.as_ref()),
                g.name.clone(),
                g.status.clone(),
                count(g.targets.healthy),
                count(g.targets.unhealthy),
                count(g.targets.initial),
                count(g.targets.unused),
                count(g.targets.draining),
                dash(g.health_check_path.as_ref()),
            ]
        })
        .collect();
    section(
        &mut out,
        "Target health",
        &[
            "CUSTOMER",
            "TARGET GROUP",
            "STATUS",
            "HEALTHY",
            "UNHEALTHY",
            "INITIAL",
            "UNUSED",
            "DRAINING",
            "HEALTH CHECK",
        ],
        &rows,
    );

    let rows: Vec<Vec<String>> = r
        .listener_rules
        .iter()
        .map(|rule| {
            vec![
                rule.priority
                    .map_or_else(|| "default".to_owned(), |p| p.to_string()),
                dash(rule.customer.as_ref()),
                list(&rule.hosts),
                list(&rule.paths),
                match rule.action.as_str() {
                    "forward" => list(&rule.target_groups),
                    other => other.to_owned(),
                },
            ]
        })
        .collect();
    section(
        &mut out,
        "HTTPS listener rules",
        &["PRIORITY", "CUSTOMER", "HOST", "PATH", "TARGET GROUP"],
        &rows,
    );

    let mut events = r
        .services
        .iter()
        .filter_map(|s| s.last_event.as_ref().map(|e| (s, e)))
        .peekable();
    if events.peek().is_some() {
        out.push_str("\nLatest service events\n");
        for (s, e) in events {
            let at = e.at.as_deref().unwrap_or("-");
            let _ = writeln!(out, "  {at} {}: {}", s.name, e.message);
        }
    }

    if r.alarms > 0 {
        if r.firing_alarms.is_empty() {
            let _ = writeln!(out, "\nAlarms: {}, none firing", r.alarms);
        } else {
            let rows: Vec<Vec<String>> = r
                .firing_alarms
                .iter()
                .map(|a| {
                    vec![
                        a.name.clone(),
                        dash(a.since.as_ref()),
                        dash(a.reason.as_ref()),
                    ]
                })
                .collect();
            section(
                &mut out,
                &format!("Alarms firing ({} of {})", r.firing_alarms.len(), r.alarms),
                &["ALARM", "SINCE", "REASON"],
                &rows,
            );
        }
    }

    if r.attention.is_empty() {
        out.push_str("\nEverything looks healthy.\n");
    } else {
        out.push_str("\nNeeds attention\n");
        for line in &r.attention {
            let _ = writeln!(out, "  - {line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut out = String::new();
        table(
            &mut out,
            &["A", "LONG HEADER", "C"],
            &[vec!["wide cell".into(), "x".into(), "y".into()]],
        );
        assert_eq!(
            out,
            "  A          LONG HEADER  C\n  wide cell  x            y\n"
        );
    }

    #[test]
    fn an_empty_table_says_so() {
        let mut out = String::new();
        section(&mut out, "Certificate", &["DOMAIN"], &[]);
        assert_eq!(out, "\nCertificate\n  none recorded in the state\n");
    }
}
