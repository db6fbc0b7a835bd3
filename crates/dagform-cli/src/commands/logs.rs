//! `dagform logs [CUSTOMER] SERVICE`: a service's logs from CloudWatch Logs, like
//! `aws logs tail`, without having to know the log group's name.

use crate::context::Context;
use crate::{Common, exit};
use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use dagform_aws::AwsClients;
use dagform_aws::error::{classify, is_not_found};
use dagform_core::Address;
use dagform_resources::logs::LogGroupProps;
use futures::{Stream, StreamExt};
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Args)]
pub struct LogsArgs {
    #[command(flatten)]
    common: Common,
    /// The service, as named under [services]; with [customers], the customer first for that
    /// customer's copy (the service alone is its stack-wide log group).
    #[arg(value_name = "[CUSTOMER] SERVICE", num_args = 1..=2, required = true)]
    names: Vec<String>,
    /// Where to start: a duration back from now (30s, 10m, 2h, 1day) or a timestamp
    /// (2025-01-31T09:00:00Z).
    #[arg(long, default_value = "10m", value_parser = parse_since)]
    since: SystemTime,
    /// Keep printing new events until Ctrl-C: a CloudWatch Logs live tail where the endpoint
    /// offers one, polling otherwise.
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

/// How often `--follow` polls without a live tail: `DAGFORM_POLL_INTERVAL`, 2 s by default.
fn poll_interval() -> Result<Duration> {
    match std::env::var("DAGFORM_POLL_INTERVAL") {
        Ok(v) => humantime::parse_duration(v.trim()).with_context(|| {
            format!("DAGFORM_POLL_INTERVAL={v} is not a duration such as 2s or 500ms")
        }),
        Err(_) => Ok(Duration::from_secs(2)),
    }
}

/// While following, each poll reaches this far behind the newest event seen, so events that
/// reach CloudWatch late are still shown (once: events are de-duplicated).
const LATE_ARRIVALS: i64 = 5_000;

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The log group recorded for the named service: `[service]` is the service of a stack without
/// customers, or a stack's shared log group of it; `[customer, service]` that customer's copy.
/// Errors name the valid choices.
fn log_group(ctx: &Context, names: &[String]) -> Result<String> {
    let customers: Vec<&str> = ctx.config.customer_names().collect();
    let services: Vec<&str> = ctx.config.service_names().collect();
    let (customer, service) = match names {
        [service] => (None, service.as_str()),
        [customer, service] => (Some(customer.as_str()), service.as_str()),
        _ => bail!("name the service, or the customer and then the service"),
    };
    if customer.is_none() && customers.contains(&service) && !services.contains(&service) {
        bail!(
            "`{service}` is a customer: name the service too, e.g. `dagform logs {service} {}`",
            services.first().copied().unwrap_or("SERVICE")
        );
    }
    if !services.contains(&service) {
        bail!(unknown("service", service, &services));
    }
    let address = match customer {
        None if customers.is_empty() => format!("app.log_group.{service}"),
        None => format!("shared.log_group.{service}"),
        Some(_) if customers.is_empty() => bail!(
            "stack {} has no customers: name only the service, `dagform logs {service}`",
            ctx.stack()
        ),
        Some(c) if !customers.contains(&c) => bail!(unknown("customer", c, &customers)),
        Some(c) => format!("customer.{c}.log_group.{service}"),
    };
    let state = ctx.read_state()?;
    if let Some(log_group) = state
        .get(&Address::new(address.clone()))
        .and_then(|r| r.outputs_as::<LogGroupProps>())
    {
        return Ok(log_group.name);
    }
    bail!(
        "{address} has no log group in {} yet: run `dagform provision` first",
        ctx.state
    )
}

/// "unknown service `x` (did you mean `y`?); the services are: …".
fn unknown(what: &str, name: &str, choices: &[&str]) -> String {
    let closest = choices
        .iter()
        .map(|c| (strsim::levenshtein(c, name), *c))
        .filter(|(d, _)| *d <= (name.len() / 3).max(2))
        .min();
    let hint = closest.map_or(String::new(), |(_, c)| format!(" (did you mean `{c}`?)"));
    let listed = if choices.is_empty() {
        "none".to_owned()
    } else {
        choices.join(", ")
    };
    format!("unknown {what} `{name}`{hint}; the {what}s are: {listed}")
}

/// One event as printed. FilterLogEvents gives ids and live tails do not, so events are told
/// apart by what is printed of them: time, stream and message.
struct Event {
    timestamp: i64,
    line: String,
}

impl Event {
    fn new(timestamp: Option<i64>, stream: Option<&str>, message: Option<&str>) -> Self {
        let timestamp = timestamp.unwrap_or_default();
        let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(timestamp).unwrap_or(0));
        let message = message.unwrap_or_default().trim_end_matches(['\n', '\r']);
        Self {
            timestamp,
            line: format!(
                "{} {} {message}",
                humantime::format_rfc3339_millis(at),
                stream.unwrap_or("-"),
            ),
        }
    }
}

/// Prints each event once, whichever way it arrived.
struct Printer {
    /// Lines printed at or after `floor`, with their times.
    seen: HashMap<String, i64>,
    floor: i64,
    newest: i64,
}

impl Printer {
    fn new(start: i64) -> Self {
        Self {
            seen: HashMap::new(),
            floor: start,
            newest: start,
        }
    }

    fn print(&mut self, events: Vec<Event>) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        for e in events {
            if e.timestamp >= self.floor && self.seen.insert(e.line.clone(), e.timestamp).is_none()
            {
                writeln!(out, "{}", e.line)?;
                self.newest = self.newest.max(e.timestamp);
            }
        }
        out.flush()
    }

    /// Where the next read starts: a little before the newest event, forgetting older ones.
    fn advance(&mut self) -> i64 {
        self.floor = self.floor.max(self.newest - LATE_ARRIVALS);
        let floor = self.floor;
        self.seen.retain(|_, t| *t >= floor);
        floor
    }
}

/// Every event of `group` from `start` on, page by page in time order, handed to `printer`.
async fn fetch(clients: &AwsClients, group: &str, start: i64, printer: &mut Printer) -> Result<()> {
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
            .map(|e| Event::new(e.timestamp(), e.log_stream_name(), e.message()))
            .collect();
        // Pages from several streams may come stream by stream.
        events.sort_by_key(|e| e.timestamp);
        printer.print(events)?;
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(()),
        }
    }
}

/// The batches of events a live tail session delivers, ending when AWS ends the session; an
/// error ends it too.
type LiveTail = std::pin::Pin<Box<dyn Stream<Item = Result<Vec<Event>>> + Send>>;

/// The events of a live tail's update (a macro, as the SDK's event type is not nameable here).
macro_rules! events_of {
    ($results:expr) => {
        $results
            .iter()
            .map(|e| Event::new(e.timestamp(), e.log_stream_name(), e.message()))
            .collect::<Vec<Event>>()
    };
}

/// How long a live tail may take to open: AWS confirms a session at once, and an endpoint
/// that cannot stream (or a host it cannot resolve) should not hold up polling for long.
const LIVE_TAIL_HANDSHAKE: Duration = Duration::from_secs(5);

/// Opens a live tail of `group`, once AWS has confirmed the session.
async fn start_live_tail(clients: &AwsClients, group: &str) -> Result<LiveTail> {
    tokio::time::timeout(LIVE_TAIL_HANDSHAKE, open_live_tail(clients, group))
        .await
        .unwrap_or_else(|_| {
            Err(anyhow!(
                "no session within {}",
                humantime::format_duration(LIVE_TAIL_HANDSHAKE)
            ))
        })
}

async fn open_live_tail(clients: &AwsClients, group: &str) -> Result<LiveTail> {
    let described = clients
        .logs
        .describe_log_groups()
        .log_group_name_prefix(group)
        .send()
        .await
        .map_err(|e| anyhow!(classify("DescribeLogGroups", e)))?;
    // StartLiveTail takes the group's ARN.
    let arn = described
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(group))
        .and_then(|g| {
            g.log_group_arn()
                .map(str::to_owned)
                .or_else(|| g.arn().map(|a| a.trim_end_matches(":*").to_owned()))
        })
        .ok_or_else(|| anyhow!("log group {group} does not exist in AWS"))?;
    let session = clients
        .logs
        .start_live_tail()
        .log_group_identifiers(arn)
        .send()
        .await
        .map_err(|e| anyhow!(causes(&e)))?;
    let mut receiver = session.response_stream;
    // The first message (the session's start) shows the stream really works.
    let first = match receiver.recv().await {
        Ok(Some(message)) => message
            .as_session_update()
            .map(|u| events_of!(u.session_results()))
            .unwrap_or_default(),
        Ok(None) => bail!("the session ended at once"),
        Err(e) => bail!(causes(&e)),
    };
    let batches = futures::stream::unfold(
        (Some(receiver), Some(first)),
        |(receiver, pending)| async move {
            if let Some(events) = pending {
                return Some((Ok(events), (receiver, None)));
            }
            let mut receiver = receiver?;
            loop {
                match receiver.recv().await {
                    // Messages other than updates (the session's start) carry no events.
                    Ok(Some(message)) => {
                        if let Ok(update) = message.as_session_update() {
                            let events = events_of!(update.session_results());
                            return Some((Ok(events), (Some(receiver), None)));
                        }
                    }
                    Ok(None) => return None,
                    Err(e) => return Some((Err(anyhow!(causes(&e))), (None, None))),
                }
            }
        },
    );
    Ok(Box::pin(batches))
}

/// An error and its causes on one line: the SDK's own message alone is often just
/// "dispatch failure".
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Why a live tail stopped: the output went away, or the tail stopped working.
enum TailEnd {
    Output(std::io::Error),
    Unavailable(anyhow::Error),
}

/// Prints a live tail's events as they come. A session AWS ends (after three hours) is
/// replaced, reading what arrived in between.
async fn tail(
    clients: &AwsClients,
    group: &str,
    mut session: LiveTail,
    printer: &mut Printer,
) -> TailEnd {
    loop {
        match session.next().await {
            Some(Ok(events)) => {
                if let Err(e) = printer.print(events) {
                    return TailEnd::Output(e);
                }
            }
            Some(Err(e)) => return TailEnd::Unavailable(e),
            None => {
                session = match start_live_tail(clients, group).await {
                    Ok(s) => s,
                    Err(e) => return TailEnd::Unavailable(e),
                };
                let start = printer.advance();
                if let Err(e) = fetch(clients, group, start, printer).await {
                    return match e.downcast::<std::io::Error>() {
                        Ok(io) => TailEnd::Output(io),
                        Err(e) => TailEnd::Unavailable(e),
                    };
                }
            }
        }
    }
}

async fn show(args: &LogsArgs, clients: &AwsClients, group: &str) -> Result<()> {
    let interval = poll_interval()?;
    let mut printer = Printer::new(millis(args.since));
    fetch(clients, group, printer.floor, &mut printer).await?;
    if !args.follow {
        return Ok(());
    }
    let why_polling = match start_live_tail(clients, group).await {
        Ok(session) => {
            // What arrived while the session was opening.
            let start = printer.advance();
            fetch(clients, group, start, &mut printer).await?;
            match tail(clients, group, session, &mut printer).await {
                TailEnd::Output(e) => return Err(e.into()),
                TailEnd::Unavailable(e) => e,
            }
        }
        Err(e) => e,
    };
    eprintln!(
        "note: live tail unavailable ({}); polling every {} instead",
        first_line(&why_polling.to_string()),
        humantime::format_duration(interval)
    );
    loop {
        tokio::time::sleep(interval).await;
        let start = printer.advance();
        fetch(clients, group, start, &mut printer).await?;
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

pub async fn run(args: LogsArgs) -> Result<u8> {
    let ctx = Context::load(&args.common)?;
    let group = log_group(&ctx, &args.names)?;
    let clients = ctx.clients().await;
    let result = tokio::select! {
        r = show(&args, &clients, &group) => r,
        _ = tokio::signal::ctrl_c() => return Ok(exit::OK),
    };
    match result {
        // A closed pipe (`dagform logs … | head`) ends the output, not in error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(exit::OK)
        }
        Err(e) => Err(e),
        Ok(()) => Ok(exit::OK),
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

    #[test]
    fn unknown_names_list_the_choices_and_suggest_the_closest() {
        let choices = ["api", "worker"];
        assert_eq!(
            unknown("service", "wroker", &choices),
            "unknown service `wroker` (did you mean `worker`?); the services are: api, worker"
        );
        assert_eq!(
            unknown("customer", "zzzzzzzz", &["acme"]),
            "unknown customer `zzzzzzzz`; the customers are: acme"
        );
    }
}
