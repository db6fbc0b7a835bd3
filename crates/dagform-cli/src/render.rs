//! Human-readable plans: one line per resource with `+`, `~`, `-/+`, `-` or `<=`, then the
//! changed properties, leaf by leaf, and a summary line.

use dagform_core::plan::{PlannedValue, PropertyChange, SavedPlan};
use dagform_core::{Action, Plan, ResourcePlan};
use owo_colors::{OwoColorize, Stream, Style};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::fmt::Write;

fn paint(text: &str, style: Style) -> String {
    text.if_supports_color(Stream::Stdout, |t| t.style(style))
        .to_string()
}

fn symbol(action: Action, cbd: bool) -> (&'static str, Style) {
    match action {
        Action::Create => ("+", Style::new().green()),
        Action::Update => ("~", Style::new().yellow()),
        Action::Replace if cbd => ("+/-", Style::new().magenta()),
        Action::Replace => ("-/+", Style::new().magenta()),
        Action::Delete => ("-", Style::new().red()),
        Action::Read => ("<=", Style::new().cyan()),
        Action::NoOp => (" ", Style::new()),
    }
}

/// Flattens a JSON value into `path → leaf` so nested changes show only what changed.
fn leaves(prefix: &str, v: &Json, out: &mut BTreeMap<String, Json>) {
    match v {
        Json::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                leaves(&format!("{prefix}.{k}"), x, out);
            }
        }
        Json::Array(a) if !a.is_empty() && a.iter().any(|x| x.is_object() || x.is_array()) => {
            for (i, x) in a.iter().enumerate() {
                leaves(&format!("{prefix}[{i}]"), x, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned(), v.clone());
        }
    }
}

fn show(v: &Json) -> String {
    match v {
        Json::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn render_change(c: &PropertyChange, action: Action, out: &mut String) {
    let forces = if c.forces_replacement && action == Action::Replace {
        paint("  # forces replacement", Style::new().magenta())
    } else {
        String::new()
    };
    let drift = if c.drift {
        paint("  # changed outside dagform", Style::new().yellow())
    } else {
        String::new()
    };
    match (&c.old, &c.new) {
        (_, PlannedValue::KnownAfterApply(refs)) => {
            let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
            let was = c
                .old
                .as_ref()
                .map(|o| format!("{} → ", show(o)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "      {}: {was}{}{forces}{drift}",
                c.property,
                paint(
                    &format!("(known after apply: {})", refs.join(", ")),
                    Style::new().dimmed()
                )
            );
        }
        (None, PlannedValue::Known(new)) => {
            let mut l = BTreeMap::new();
            leaves(&c.property, new, &mut l);
            for (path, v) in l {
                let _ = writeln!(out, "      {path}: {}{forces}", show(&v));
            }
        }
        (Some(old), PlannedValue::Known(new)) if is_document(old) || is_document(new) => {
            let _ = writeln!(out, "      {}:{forces}{drift}", c.property);
            line_diff(&document_text(old), &document_text(new), out);
        }
        (Some(old), new) => {
            let mut before = BTreeMap::new();
            leaves(&c.property, old, &mut before);
            let mut after = BTreeMap::new();
            if let PlannedValue::Known(n) = new {
                leaves(&c.property, n, &mut after);
            }
            let keys: std::collections::BTreeSet<&String> =
                before.keys().chain(after.keys()).collect();
            for k in keys {
                let (b, a) = (before.get(k), after.get(k));
                if b == a {
                    continue;
                }
                if let (Some(b), Some(a)) = (b, a)
                    && (is_document(b) || is_document(a))
                {
                    let _ = writeln!(out, "      {k}:{forces}{drift}");
                    line_diff(&document_text(b), &document_text(a), out);
                    continue;
                }
                let b = b.map_or_else(|| "(none)".to_owned(), show);
                let a = a.map_or_else(|| "(none)".to_owned(), show);
                let _ = writeln!(
                    out,
                    "      {k}: {} → {}{forces}{drift}",
                    paint(&b, Style::new().red()),
                    paint(&a, Style::new().green())
                );
            }
        }
        (None, PlannedValue::Absent) => {}
    }
}

/// A value better read as lines than on one: a structure holding structures (an IAM policy,
/// container definitions), a multi-line string, or a string holding a JSON document.
fn is_document(v: &Json) -> bool {
    let structured = |x: &Json| x.is_object() || x.is_array();
    match v {
        Json::Object(m) => m.values().any(structured),
        Json::Array(a) => a.iter().any(structured),
        Json::String(s) => {
            s.contains('\n')
                || serde_json::from_str::<Json>(s).is_ok_and(|j| j.is_object() || j.is_array())
        }
        _ => false,
    }
}

/// The lines a document is compared by: JSON pretty-printed (a JSON string's content too),
/// other strings as they are.
fn document_text(v: &Json) -> String {
    let pretty = |j: &Json| serde_json::to_string_pretty(j).unwrap_or_else(|_| j.to_string());
    let mut text = match v {
        Json::String(s) => match serde_json::from_str::<Json>(s) {
            Ok(j) if j.is_object() || j.is_array() => pretty(&j),
            _ => s.clone(),
        },
        other => pretty(other),
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Lines unchanged around a change that the diff keeps, for context.
const DIFF_CONTEXT: usize = 3;

/// A line diff of `old` and `new`: `-` lines removed, `+` lines added, a few unchanged lines
/// of context around each change, `…` where unchanged lines are left out.
fn line_diff(old: &str, new: &str, out: &mut String) {
    use similar::{ChangeTag, TextDiff};
    let diff = TextDiff::from_lines(old, new);
    for (i, group) in diff.grouped_ops(DIFF_CONTEXT).iter().enumerate() {
        if i > 0 {
            let _ = writeln!(out, "        {}", paint("…", Style::new().dimmed()));
        }
        for op in group {
            for change in diff.iter_changes(op) {
                let line = change.value().trim_end_matches('\n');
                let _ = match change.tag() {
                    ChangeTag::Delete => {
                        writeln!(
                            out,
                            "        {}",
                            paint(&format!("- {line}"), Style::new().red())
                        )
                    }
                    ChangeTag::Insert => writeln!(
                        out,
                        "        {}",
                        paint(&format!("+ {line}"), Style::new().green())
                    ),
                    ChangeTag::Equal => writeln!(out, "          {line}"),
                };
            }
        }
    }
}

/// The plan as text; `verbose_creates` lists every property of new resources.
pub fn plan_text(plan: &Plan, stack: &str, verbose_creates: bool) -> String {
    let mut out = String::new();
    if !plan.has_changes() {
        let _ = writeln!(
            out,
            "No changes: stack {stack} matches the configuration ({} resources).",
            plan.summary().unchanged
        );
        return out;
    }
    drift_text(plan, &mut out);
    let _ = writeln!(out, "Stack {stack}:\n");
    for r in plan.resources.iter().filter(|r| r.has_work()) {
        let (sym, style) = symbol(r.action, r.create_before_destroy);
        let mut notes = Vec::new();
        if r.action == Action::Replace {
            notes.push(
                if r.create_before_destroy {
                    "create the new one, then delete the old"
                } else {
                    "delete, then create"
                }
                .to_owned(),
            );
        }
        if r.deposed > 0 {
            notes.push(format!(
                "delete {} replaced object(s) left by an earlier run",
                r.deposed
            ));
        }
        if let Some(reason) = &r.reason {
            notes.push(reason.clone());
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  ({})", notes.join("; "))
        };
        let _ = writeln!(
            out,
            "  {} {} {}{}",
            paint(&format!("{sym:>3}"), style),
            paint(r.address.as_str(), Style::new().bold()),
            paint(&format!("[{}]", r.kind), Style::new().dimmed()),
            paint(&notes, Style::new().dimmed())
        );
        let show_props = match r.action {
            Action::Create | Action::Read => verbose_creates,
            Action::Update | Action::Replace => true,
            _ => false,
        };
        if show_props {
            for c in &r.changes {
                render_change(c, r.action, &mut out);
            }
        }
    }
    let s = plan.summary();
    let _ = writeln!(
        out,
        "\nPlan: {} to create, {} to update, {} to replace, {} to delete, {} to read, {} unchanged.",
        paint(&s.create.to_string(), Style::new().green()),
        paint(&s.update.to_string(), Style::new().yellow()),
        paint(&s.replace.to_string(), Style::new().magenta()),
        paint(&s.delete.to_string(), Style::new().red()),
        s.read,
        s.unchanged
    );
    out
}

/// The version of every JSON document the commands print; it moves only when a key changes
/// meaning or goes away.
pub const JSON_FORMAT_VERSION: u32 = 1;

/// The plan as JSON, for machines. `monthly_cost_usd`, `quotas` and `saved_plan` are null
/// until `plan` (or `show`) fills them in.
pub fn plan_json(plan: &Plan, stack: &str) -> Json {
    serde_json::json!({
        "format_version": JSON_FORMAT_VERSION,
        "stack": stack,
        "has_changes": plan.has_changes(),
        "summary": plan.summary(),
        "drift": drift_json(plan),
        "resources": plan
            .resources
            .iter()
            .filter(|r| r.has_work())
            .map(resource_json)
            .collect::<Vec<_>>(),
        "monthly_cost_usd": null,
        "quotas": null,
        "saved_plan": null,
    })
}

/// One planned resource with every key present, whether or not it is set.
fn resource_json(r: &ResourcePlan) -> Json {
    serde_json::json!({
        "address": r.address,
        "kind": r.kind,
        "action": r.action,
        "changes": r.changes.iter().map(change_json).collect::<Vec<_>>(),
        "create_before_destroy": r.create_before_destroy,
        "deposed": r.deposed,
        "reason": r.reason,
    })
}

fn change_json(c: &PropertyChange) -> Json {
    serde_json::json!({
        "property": c.property,
        "old": c.old,
        "new": c.new,
        "forces_replacement": c.forces_replacement,
        "drift": c.drift,
    })
}

/// What changed outside dagform, per resource: drifted properties, or the whole object gone.
enum Drift<'a> {
    Changed(Vec<&'a PropertyChange>),
    Deleted,
}

/// The resources the refresh found changed or deleted outside dagform, in plan order.
fn drifted(plan: &Plan) -> Vec<(&ResourcePlan, Drift<'_>)> {
    plan.resources
        .iter()
        .filter_map(|r| {
            if r.reason.as_deref() == Some(DELETED_OUTSIDE) {
                return Some((r, Drift::Deleted));
            }
            let changes: Vec<&PropertyChange> = r.changes.iter().filter(|c| c.drift).collect();
            (!changes.is_empty()).then_some((r, Drift::Changed(changes)))
        })
        .collect()
}

/// The reason the planner gives a create for an object that vanished from AWS.
const DELETED_OUTSIDE: &str = "deleted outside dagform";

/// The "Changed outside dagform" section that opens a plan: each drifted value as AWS has it
/// now and as the configuration wants it (which provisioning puts back).
fn drift_text(plan: &Plan, out: &mut String) {
    let drifted = drifted(plan);
    if drifted.is_empty() {
        return;
    }
    let _ = writeln!(out, "Changed outside dagform:\n");
    for (r, drift) in drifted {
        let (sym, style) = match drift {
            Drift::Deleted => ("-", Style::new().red()),
            Drift::Changed(_) => ("~", Style::new().yellow()),
        };
        let note = match drift {
            Drift::Deleted => paint("  (deleted outside dagform)", Style::new().dimmed()),
            Drift::Changed(_) => String::new(),
        };
        let _ = writeln!(
            out,
            "  {} {} {}{note}",
            paint(&format!("{sym:>3}"), style),
            paint(r.address.as_str(), Style::new().bold()),
            paint(&format!("[{}]", r.kind), Style::new().dimmed()),
        );
        let Drift::Changed(changes) = drift else {
            continue;
        };
        for c in changes {
            let mut live = BTreeMap::new();
            if let Some(old) = &c.old {
                leaves(&c.property, old, &mut live);
            }
            let mut wanted = BTreeMap::new();
            if let PlannedValue::Known(new) = &c.new {
                leaves(&c.property, new, &mut wanted);
            }
            let keys: std::collections::BTreeSet<&String> =
                live.keys().chain(wanted.keys()).collect();
            for k in keys {
                let (l, w) = (live.get(k), wanted.get(k));
                if l == w {
                    continue;
                }
                let l = l.map_or_else(|| "(none)".to_owned(), show);
                let w = match (&c.new, w) {
                    (PlannedValue::KnownAfterApply(_), _) => "known after apply".to_owned(),
                    (_, Some(w)) => show(w),
                    (_, None) => "(none)".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "      {k}: {} in AWS, {} in the configuration",
                    paint(&l, Style::new().yellow()),
                    paint(&w, Style::new().green())
                );
            }
        }
    }
    let _ = writeln!(out);
}

/// The drift section for machines: per resource, `deleted` or the drifted properties with
/// their `live` and `configured` values.
fn drift_json(plan: &Plan) -> Json {
    let entries: Vec<Json> = drifted(plan)
        .into_iter()
        .map(|(r, drift)| match drift {
            Drift::Deleted => serde_json::json!({
                "address": r.address,
                "kind": r.kind,
                "deleted": true,
                "properties": [],
            }),
            Drift::Changed(changes) => serde_json::json!({
                "address": r.address,
                "kind": r.kind,
                "deleted": false,
                "properties": changes
                    .iter()
                    .map(|c| serde_json::json!({
                        "property": c.property,
                        "live": c.old,
                        "configured": c.new,
                    }))
                    .collect::<Vec<_>>(),
            }),
        })
        .collect();
    Json::Array(entries)
}

/// A saved plan for review: what it was computed from, then the plan as `plan` prints it.
pub fn saved_plan_text(saved: &SavedPlan) -> String {
    let basis = &saved.basis;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Saved plan for stack {} in {}, computed {}{}.",
        basis.stack,
        basis.region,
        saved.created_at,
        if saved.destroy { " (destroy)" } else { "" }
    );
    let _ = match &basis.state {
        Some(v) => writeln!(
            out,
            "  against state serial {} (lineage {})",
            v.serial, v.lineage
        ),
        None => writeln!(out, "  against no state (a stack not provisioned yet)"),
    };
    let _ = writeln!(out, "  configuration {}", basis.config_digest);
    if !basis.overrides.is_empty() {
        let _ = writeln!(out, "  --set {}", basis.overrides.join(" --set "));
    }
    if let Some(targets) = &saved.targets {
        let _ = writeln!(out, "  limited to {}", targets.join(", "));
    }
    out.push('\n');
    out.push_str(&plan_text(&saved.plan, &basis.stack, true));
    out
}

/// A saved plan as JSON: `plan --json`'s document with what it was computed from.
pub fn saved_plan_json(saved: &SavedPlan) -> Json {
    let mut json = plan_json(&saved.plan, &saved.basis.stack);
    json["saved_plan"] = serde_json::json!({
        "format_version": saved.format_version,
        "created_at": saved.created_at,
        "basis": saved.basis,
        "destroy": saved.destroy,
        "targets": saved.targets,
    });
    json
}

/// Rows as plain text columns two spaces apart (no borders, so the output reads the same on a
/// terminal and in a pipe), one string per line without trailing spaces. Columns listed in
/// `right_aligned` are aligned right (amounts).
pub fn aligned_table(
    headers: Option<&[&str]>,
    rows: &[Vec<String>],
    right_aligned: &[usize],
) -> Vec<String> {
    use comfy_table::{CellAlignment, ContentArrangement, Table, presets::NOTHING};
    let mut table = Table::new();
    table
        .load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    if let Some(h) = headers {
        table.set_header(h.iter().copied());
    }
    for row in rows {
        table.add_row(row.iter().map(String::as_str));
    }
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        if right_aligned.contains(&i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
        .lines()
        .map(|l| l.trim_end().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}
