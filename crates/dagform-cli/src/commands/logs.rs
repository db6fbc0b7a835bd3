//! `dagform logs CUSTOMER SERVICE`: a customer's service logs from CloudWatch Logs, like
//! `aws logs tail`, without having to know the log group's name.

use crate::context::Context;
use crate::{Common, exit};
use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use dagform_aws::AwsClients;
use dagform_aws::error::{classify, is_not_found};
use dagform_core::Address;
use dagform_resources::logs::LogGroupProps;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Args)]
pub struct LogsArgs {
    #[command(flatten)]
    common: Common,
    /// The customer, as named under [customers].
    customer: String,
    /// The service, as named under [services].
    service: String,
    /// Where to start: a duration back from now (30s, 10m, 2h, 1day) or a timestamp
    /// (2025-01-31T09:00:00Z).
    #[arg(long, default_value = "10m", value_parser = parse_since)]
    since: SystemTime,
    /// Keep printing new events until Ctrl-C.
    #[arg(long)]
    follow: bool,
}

fn parse_since(text: &str) -> Result<SystemTime, String> {
    if let Ok(d) = humantime::parse_duration(text) {
        return SystemTime::now()
            .checked_sub(d)
            .ok_or_else(|| format!("{text} reaches back too far"));
    }
    humantime::parse_rfc3339_weak(text).map_err(|_| {
        format!("`{text}` is neither a duration (10m, 2h) nor a timestamp (2025-01-31T09:00:00Z)")
    })
}

/// How often `--follow` polls: `DAGFORM_POLL_INTERVAL`, 2 s by default.
fn poll_interval() -> Result<Duration> {
    match std::env::var("DAGFORM_POLL_INTERVAL") {
        Ok(v) => humantime::parse_duration(v.trim()).with_context(|| {
            format!("DAGFORM_POLL_INTERVAL={v} is not a duration such as 2s or 500ms")
        }),
        Err(_) => Ok(Duration::from_secs(2)),
    }
}

/// While following, each poll reaches this far behind the newest event seen, so events that
/// reach CloudWatch late are still shown (once: events are de-duplicated by id).
const LATE_ARRIVALS: i64 = 5_000;

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The log group recorded for `customer`'s `service`; errors name the valid choices.
fn log_group(ctx: &Context, customer: &str, service: &str) -> Result<String> {
    let state = ctx.read_state()?;
    let address = Address::new(format!("customer.{customer}.log_group.{service}"));
    if let Some(log_group) = state
        .get(&address)
        .and_then(|r| r.outputs_as::<LogGroupProps>())
    {
        return Ok(log_group.name);
    }
    let customers: Vec<&str> = ctx.config.customer_names().collect();
    let services: Vec<&str> = ctx.config.service_names().collect();
    if !customers.contains(&customer) {
        bail!(
            "unknown customer `{customer}`; the customers are: {}",
            customers.join(", ")
        );
    }
    if !services.contains(&service) {
        bail!(
            "unknown service `{service}`; the services are: {}",
            services.join(", ")
        );
    }
    bail!(
        "{customer}'s {service} has no log group in {} yet: run `dagform provision` first",
        ctx.state_path.display()
    )
}

/// One event as printed.
struct Event {
    id: String,
    timestamp: i64,
    line: String,
}

/// Every event of `group` from `start` on, page by page in time order, handed to `page`.
async fn fetch(
    clients: &AwsClients,
    group: &str,
    start: i64,
    mut page: impl FnMut(Vec<Event>) -> std::io::Result<()>,
) -> Result<()> {
    let mut token: Option<String> = None;
    loop {
        let out = clients
            .logs
            .filter_log_events()
            .log_group_name(group)
            .start_time(start)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    anyhow!(
                        "log group {group} does not exist in AWS although the state records it: \
                         run `dagform plan` to see the drift"
                    )
                } else {
                    anyhow!(classify("FilterLogEvents", e))
                }
            })?;
        let mut events: Vec<Event> = out
            .events()
            .iter()
            .map(|e| {
                let timestamp = e.timestamp().unwrap_or_default();
                let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(timestamp).unwrap_or(0));
                let message = e
                    .message()
                    .unwrap_or_default()
                    .trim_end_matches(['\n', '\r']);
                Event {
                    id: e.event_id().unwrap_or_default().to_owned(),
                    timestamp,
                    line: format!(
                        "{} {} {message}",
                        humantime::format_rfc3339_millis(at),
                        e.log_stream_name().unwrap_or("-"),
                    ),
                }
            })
            .collect();
        // Pages from several streams may come stream by stream.
        events.sort_by_key(|e| e.timestamp);
        page(events)?;
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(()),
        }
    }
}

pub async fn run(args: LogsArgs) -> Result<u8> {
    let ctx = Context::load(&args.common)?;
    let group = log_group(&ctx, &args.customer, &args.service)?;
    let interval = poll_interval()?;
    let clients = ctx.clients().await;
    let mut start = millis(args.since);
    // Ids of printed events at or after `start`, so overlapping polls print each event once.
    let mut seen: HashMap<String, i64> = HashMap::new();
    let mut newest = start;
    let stdout = std::io::stdout();
    let print = |events: Vec<Event>, seen: &mut HashMap<String, i64>, newest: &mut i64| {
        let mut out = stdout.lock();
        for e in events {
            if seen.insert(e.id, e.timestamp).is_none() {
                writeln!(out, "{}", e.line)?;
                *newest = (*newest).max(e.timestamp);
            }
        }
        out.flush()
    };
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let poll = fetch(&clients, &group, start, |events| {
            print(events, &mut seen, &mut newest)
        });
        let result = tokio::select! {
            r = poll => r,
            _ = &mut interrupted => return Ok(exit::OK),
        };
        if let Err(e) = result {
            // A closed pipe (`dagform logs … | head`) ends the output, not in error.
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return Ok(exit::OK);
            }
            return Err(e);
        }
        if !args.follow {
            return Ok(exit::OK);
        }
        start = start.max(newest - LATE_ARRIVALS);
        seen.retain(|_, t| *t >= start);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut interrupted => return Ok(exit::OK),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_timestamps() {
        let ten_minutes_ago = millis(parse_since("10m").unwrap());
        let expected = millis(SystemTime::now()) - 600_000;
        assert!((ten_minutes_ago - expected).abs() < 5_000);
        assert_eq!(
            millis(parse_since("2025-01-31T09:00:00Z").unwrap()),
            1_738_314_000_000
        );
        let err = parse_since("yesterday-ish").unwrap_err();
        assert!(err.contains("neither a duration"), "{err}");
    }
}
