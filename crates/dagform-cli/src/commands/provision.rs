//! `dagform provision`: create or update everything the configuration describes.

use crate::context::Context;
use crate::render;
use crate::{Common, Targets, Walk, exit};
use anyhow::Result;
use clap::Args;
use dagform_core::State;
use dagform_core::plan::PlanOptions;
use dagform_core::reconcile::{ApplyReport, Step};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    walk: Walk,
    #[command(flatten)]
    targets: Targets,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    yes: bool,
    /// Read every resource from AWS first, reporting (and, when provisioning, putting back)
    /// what changed outside dagform; `--refresh=false` plans from the state alone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    refresh: bool,
    /// After applying, wait until every ECS service this run created or updated is stable
    /// (one deployment, all tasks running); fail if one is not within --wait-timeout.
    #[arg(long)]
    wait: bool,
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    wait_timeout: Duration,
    /// Print a machine-readable report on stdout (the plan and progress go to stderr).
    #[arg(long)]
    json: bool,
}

pub async fn run(args: ProvisionArgs) -> Result<u8> {
    let ctx = Context::load(&args.common)?;
    let (mut store, blueprint, kinds) = super::prepare(&ctx).await?;
    blueprint.require_secrets()?;
    let options = ctx.apply_options(&args.walk)?;
    let plan_options = PlanOptions {
        targets: ctx.check_targets(&args.targets, &blueprint, store.state())?,
        destroy: false,
    };
    let plan = super::make_plan(
        &blueprint,
        store.state(),
        &kinds,
        &plan_options,
        args.refresh.then_some(&options),
    )
    .await?;
    let text = render::plan_text(&plan, &ctx.stack(), false);
    if args.json {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    // On a terminal, ask; in CI (no terminal) provisioning proceeds.
    if plan.has_changes()
        && !args.yes
        && super::interactive()
        && !super::confirm("\nApply these changes?")?
    {
        eprintln!("Cancelled; nothing was changed.");
        return Ok(exit::ERROR);
    }
    let started = Instant::now();
    let report = if plan.has_changes() {
        super::apply_with_progress(&plan, &blueprint, &kinds, &mut store, options.clone()).await?
    } else {
        ApplyReport::default()
    };
    let mut code = if plan.has_changes() {
        super::finish(&report, "Provision", started.elapsed())
    } else {
        exit::OK
    };
    print_pending_validation(&report, &blueprint.graph, store.state());

    let mut waited = Vec::new();
    if args.wait && code == exit::OK {
        let services = services_applied(&report, store.state());
        if !services.is_empty() {
            eprintln!(
                "\nWaiting up to {} for {} service(s) to become stable…",
                humantime::format_duration(args.wait_timeout),
                services.len()
            );
        }
        let clients = ctx.clients().await;
        let mut poll = options.poll;
        poll.timeout = args.wait_timeout;
        let results = futures::future::join_all(services.iter().map(|(cluster, name)| {
            let clients = clients.clone();
            async move {
                (
                    name.clone(),
                    dagform_aws::ecs::wait_until_stable(&clients, cluster, name, poll).await,
                )
            }
        }))
        .await;
        for (name, result) in results {
            match &result {
                Ok(()) => eprintln!("  ✓ {name} is stable"),
                Err(e) => {
                    eprintln!("  ✗ {name}: {e}");
                    code = exit::ERROR;
                }
            }
            waited.push(json!({"service": name, "stable": result.is_ok(), "error": result.err().map(|e| e.to_string())}));
        }
    }

    if args.json {
        let outputs = super::output::resolve(&blueprint, store.state());
        let report_json = json!({
            "stack": ctx.stack(),
            "changed": plan.has_changes(),
            "succeeded": report.succeeded.iter().map(|(a, s)| json!({"address": a, "step": s.to_string()})).collect::<Vec<_>>(),
            "failed": report.failed.iter().map(|f| json!({"address": f.address, "step": f.step.to_string(), "error": f.error})).collect::<Vec<_>>(),
            "skipped": report.skipped.iter().map(|(a, s)| json!({"address": a, "step": s.to_string()})).collect::<Vec<_>>(),
            "cancelled": report.cancelled,
            "waited": waited,
            "outputs": outputs,
            "exit_code": code,
        });
        println!("{}", serde_json::to_string_pretty(&report_json)?);
    }
    Ok(code)
}

/// ECS services created or updated by this run, as (cluster ARN, service name).
fn services_applied(report: &ApplyReport, state: &State) -> Vec<(String, String)> {
    report
        .succeeded
        .iter()
        .filter(|(_, step)| matches!(step, Step::Create | Step::Update))
        .filter_map(|(address, _)| state.get(address))
        .filter(|r| r.kind == "aws_ecs_service")
        .filter_map(|r| {
            let cluster = r.outputs.get("cluster")?.as_str()?.to_owned();
            let name = r.outputs.get("name")?.as_str()?.to_owned();
            Some((cluster, name))
        })
        .collect()
}

/// A certificate validated through DNS hosted elsewhere waits for records only the user can
/// add: say which, so a later run can finish the HTTPS listener.
fn print_pending_validation(
    report: &ApplyReport,
    graph: &dagform_core::ResourceGraph,
    state: &State,
) {
    for failure in &report.failed {
        let Some(node) = graph.get(&failure.address) else {
            continue;
        };
        if node.kind != "aws_acm_certificate_validation" {
            continue;
        }
        let Some(cert) = node
            .properties
            .get("certificate_arn")
            .and_then(|v| v.references().first().map(|r| r.node.clone()))
        else {
            continue;
        };
        let records = state
            .get(&cert)
            .and_then(|c| c.outputs.get("validation_records"))
            .and_then(|r| r.as_array().cloned())
            .unwrap_or_default();
        eprintln!(
            "\nThe certificate is not issued yet, so the HTTPS listener waits. Add these DNS records at your DNS host, then run provision again:"
        );
        for r in records {
            eprintln!(
                "  {}  {}  {}",
                r["name"].as_str().unwrap_or("?"),
                r["type"].as_str().unwrap_or("CNAME"),
                r["value"].as_str().unwrap_or("?")
            );
        }
    }
}
