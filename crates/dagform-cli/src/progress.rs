//! Live progress of a run: which steps are running, done, failed or pending, and for how long.

use dagform_core::reconcile::{Event, Phase};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// Renders events until the channel closes. On a terminal a spinner line shows what is
/// running; each finished step is printed as a line (to stderr, so stdout stays clean).
pub async fn render(mut events: UnboundedReceiver<Event>, total: usize) {
    let started = Instant::now();
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(total as u64);
        b.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {pos}/{len} {wide_msg}")
                .expect("valid template"),
        );
        b.enable_steady_tick(Duration::from_millis(120));
        Some(b)
    } else {
        None
    };
    let mut running: BTreeSet<String> = BTreeSet::new();
    let line = |text: String| match &bar {
        Some(b) => b.println(text),
        None => eprintln!("{text}"),
    };
    while let Some(e) = events.recv().await {
        let key = format!("{} {}", e.step, e.address);
        let at = format!("{:>6.1}s", started.elapsed().as_secs_f64());
        match e.phase {
            Phase::Started => {
                running.insert(key);
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
            let list: Vec<&str> = running.iter().map(String::as_str).collect();
            b.set_message(format!("running: {}", list.join(", ")));
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}
