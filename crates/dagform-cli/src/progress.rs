//! Live progress of a run: which steps are running, done, failed or pending, and for how long.

use dagform_core::reconcile::{Event, Phase, Step};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// Every progress display of the process: log lines are written around it (see `LogWriter`)
/// rather than through it, so they never garble the live lines.
static DISPLAY: std::sync::LazyLock<indicatif::MultiProgress> =
    std::sync::LazyLock::new(indicatif::MultiProgress::new);

/// Where tracing writes: stderr, with any live display hidden while a line is written.
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        DISPLAY.suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// How often a step still running is reported (`DAGFORM_PROGRESS_INTERVAL`, default 30 s), so
/// that a log without a terminal shows a long wait is a wait, not a hang.
fn report_interval() -> Duration {
    std::env::var("DAGFORM_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| humantime::parse_duration(v.trim()).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(30))
}

/// What a step is doing while it runs, as a log line says it.
fn doing(step: Step) -> &'static str {
    match step {
        Step::Read => "reading",
        Step::Create => "creating",
        Step::Update => "updating",
        Step::Delete | Step::DeleteDeposed => "deleting",
    }
}

/// A duration as `1m30s`, to the second.
fn whole_seconds(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs()))
        .to_string()
        .replace(' ', "")
}

/// One event as a line of JSON for `--json` (every key present, null when not applicable).
fn event_json(e: &Event, since_start: Duration) -> serde_json::Value {
    let (kind, elapsed, message) = match &e.phase {
        Phase::Started => ("step_started", None, None),
        Phase::Succeeded { elapsed } => ("step_finished", Some(elapsed.as_secs_f64()), None),
        Phase::Failed { error } => ("step_failed", None, Some(error.clone())),
        Phase::Pending { waiting_for } => ("step_pending", None, Some(waiting_for.clone())),
        Phase::Skipped { because } => ("step_skipped", None, Some(format!("{because} failed"))),
        Phase::Waiting { on } => ("waiting", None, Some(format!("{on} is pending"))),
        Phase::Retrying { error, delay } => {
            ("retrying", Some(delay.as_secs_f64()), Some(error.clone()))
        }
    };
    json!({
        "format_version": crate::render::JSON_FORMAT_VERSION,
        "type": kind,
        "step": e.step.to_string(),
        "address": e.address.to_string(),
        "elapsed_seconds": elapsed,
        "message": message,
        "at_seconds": (since_start.as_secs_f64() * 1000.0).round() / 1000.0,
    })
}

/// Renders events until the channel closes. On a terminal a spinner line shows what is
/// running; each finished step is printed as a line (to stderr, so stdout stays clean), and
/// without one each start too. Every `report_interval` a line names each step still running
/// and for how long. With `json`, every event is also printed on stdout as a line of JSON.
pub async fn render(mut events: UnboundedReceiver<Event>, total: usize, json: bool) {
    let started = Instant::now();
    let interval = report_interval();
    // Ticks finer than the interval, so each step is reported once per interval of its own
    // running time, counted from its start rather than from the run's.
    let tick = (interval / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let bar = if std::io::stderr().is_terminal() {
        let b = DISPLAY.add(ProgressBar::new(total as u64));
        b.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {pos}/{len} {wide_msg}")
                .expect("valid template"),
        );
        b.enable_steady_tick(Duration::from_millis(120));
        Some(b)
    } else {
        None
    };
    let on_terminal = bar.is_some();
    // What is running, by its line's key: what it does, to what, since when, and how many
    // still-running lines it has had.
    let mut running: BTreeMap<String, (Step, String, Instant, u32)> = BTreeMap::new();
    let line = |text: String| match &bar {
        Some(b) => b.println(text),
        None => eprintln!("{text}"),
    };
    loop {
        let e = tokio::select! {
            e = events.recv() => match e {
                Some(e) => e,
                None => break,
            },
            _ = ticks.tick() => {
                let at = format!("{:>6.1}s", started.elapsed().as_secs_f64());
                for (step, address, since, reported) in running.values_mut() {
                    if since.elapsed() >= interval * (*reported + 1) {
                        *reported += 1;
                        line(format!(
                            "{at}  still {} {address}… {} elapsed",
                            doing(*step),
                            whole_seconds(since.elapsed())
                        ));
                    }
                }
                continue;
            }
        };
        if json {
            println!("{}", event_json(&e, started.elapsed()));
        }
        let key = format!("{} {}", e.step, e.address);
        let at = format!("{:>6.1}s", started.elapsed().as_secs_f64());
        match e.phase {
            Phase::Started => {
                if !on_terminal {
                    line(format!("{at}  → {key}"));
                }
                running.insert(key, (e.step, e.address.to_string(), Instant::now(), 0));
            }
            Phase::Succeeded { elapsed } => {
                running.remove(&key);
                line(format!("{at}  ✓ {key} ({:.1}s)", elapsed.as_secs_f64()));
                if let Some(b) = &bar {
                    b.inc(1);
                }
            }
            Phase::Failed { error } => {
                running.remove(&key);
                line(format!("{at}  ✗ {key}: {error}"));
                if let Some(b) = &bar {
                    b.inc(1);
                }
            }
            Phase::Pending { waiting_for } => {
                running.remove(&key);
                line(format!("{at}  … {key}: waiting for {waiting_for}"));
                if let Some(b) = &bar {
                    b.inc(1);
                }
            }
            Phase::Skipped { because } => {
                line(format!("{at}  - {key} skipped: {because} failed"));
                if let Some(b) = &bar {
                    b.inc(1);
                }
            }
            Phase::Waiting { on } => {
                line(format!("{at}  … {key} waits: {on} is pending"));
                if let Some(b) = &bar {
                    b.inc(1);
                }
            }
            Phase::Retrying { error, delay } => {
                line(format!(
                    "{at}  ↻ {key}: {error} (retrying in {:.1}s)",
                    delay.as_secs_f64()
                ));
            }
        }
        if let Some(b) = &bar {
            let list: Vec<&str> = running.keys().map(String::as_str).collect();
            b.set_message(format!("running: {}", list.join(", ")));
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}
