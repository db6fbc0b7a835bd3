//! Saved plans on disk: written by `plan --out`, read by `show` and by `provision FILE`.

use crate::context::Context;
use anyhow::{Context as _, Result, bail};
use dagform_core::plan::{
    PlanBasis, SAVED_PLAN_FORMAT, SavedPlan, StateVersion, config_digest, secrets_digest,
};
use dagform_core::state::{fingerprint, write_atomically};
use dagform_core::{Kinds, Plan, State};
use std::io::Write;
use std::path::Path;

/// What a plan computed now from `ctx` (loaded with `overrides`) against `state`, limited to
/// `targets`, is based on. A destroy plan needs no secret values, so they are not part of its
/// basis.
pub fn basis(
    ctx: &Context,
    overrides: &[String],
    state: &State,
    destroy: bool,
    targets: Option<&[String]>,
) -> PlanBasis {
    let secrets = (!destroy).then(|| {
        let inputs = dagform_config::resolve_inputs(&ctx.config, &ctx.config_path, None);
        secrets_digest(&inputs.secret_values)
    });
    PlanBasis {
        stack: ctx.stack(),
        region: ctx.config.region().to_owned(),
        config_digest: config_digest(&ctx.config.source, overrides),
        overrides: overrides.to_vec(),
        secrets_digest: secrets,
        state: StateVersion::of_scope(state, &ctx.write_scope(targets)),
    }
}

/// Secret properties' earlier values as fingerprints. Planned values already are; an earlier
/// value read live from AWS (a secret changed outside dagform) might not be, and a saved plan
/// is a file that gets passed around.
pub fn redact_earlier_values(plan: &mut Plan, kinds: &Kinds) {
    for r in &mut plan.resources {
        let Some(kind) = kinds.get(&r.kind) else {
            continue;
        };
        let sensitive = kind.sensitive_properties();
        for c in &mut r.changes {
            if !sensitive.contains(&c.property.as_str()) {
                continue;
            }
            if let Some(old) = &mut c.old
                && !is_fingerprint(old)
            {
                **old = fingerprint(old);
            }
        }
    }
}

fn is_fingerprint(v: &serde_json::Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 23 && s.starts_with("sha256:") && s[7..].bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Writes `saved` to `path` atomically, readable by its owner only.
pub fn write(path: &Path, saved: &SavedPlan) -> Result<()> {
    write_atomically(path, |f| {
        serde_json::to_writer_pretty(&mut *f, saved).map_err(std::io::Error::other)?;
        f.write_all(b"\n")
    })
    .with_context(|| format!("writing the plan to {}", path.display()))
}

/// Reads a saved plan, refusing one written by a newer dagform.
pub fn read(path: &Path) -> Result<SavedPlan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the saved plan {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a saved plan (not JSON)", path.display()))?;
    let Some(version) = value.get("format_version").and_then(|v| v.as_u64()) else {
        bail!(
            "{} is not a saved plan (no format_version); write one with `dagform plan --out {}`",
            path.display(),
            path.display()
        );
    };
    if version > u64::from(SAVED_PLAN_FORMAT) {
        bail!(
            "{} is a saved plan of format {version}; this dagform reads format {SAVED_PLAN_FORMAT} and older",
            path.display()
        );
    }
    serde_json::from_value(value)
        .with_context(|| format!("{} is not a valid saved plan", path.display()))
}

/// Fails, naming everything that moved, when `saved` no longer applies to `current`.
pub fn refuse_if_moved(saved: &SavedPlan, current: &PlanBasis, path: &Path) -> Result<()> {
    let moved = saved.moved_since(current);
    if moved.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = moved.iter().map(|m| format!("  ✗ {m}")).collect();
    bail!(
        "the saved plan {} is stale, so nothing was changed:\n{}\n\
         Plan again (`dagform plan --out {}`), review it, and apply the new one.",
        path.display(),
        lines.join("\n"),
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn saved() -> SavedPlan {
        SavedPlan {
            format_version: SAVED_PLAN_FORMAT,
            created_at: "2026-01-01T00:00:00Z".into(),
            basis: PlanBasis {
                stack: "dev-app".into(),
                region: "us-east-1".into(),
                config_digest: config_digest("[stack]\n", &[]),
                overrides: vec![],
                secrets_digest: None,
                state: None,
            },
            destroy: false,
            targets: None,
            plan: Plan::default(),
        }
    }

    #[test]
    fn a_written_plan_reads_back_and_only_its_owner_can_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        write(&path, &saved()).unwrap();
        assert_eq!(read(&path).unwrap(), saved());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_plan_of_a_newer_format_or_no_plan_at_all_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let mut newer = serde_json::to_value(saved()).unwrap();
        newer["format_version"] = (SAVED_PLAN_FORMAT + 1).into();
        std::fs::write(&path, newer.to_string()).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("this dagform reads format"), "{err}");
        std::fs::write(&path, r#"{"serial": 3}"#).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("not a saved plan"), "{err}");
    }

    #[test]
    fn only_fingerprints_pass_for_fingerprints() {
        assert!(is_fingerprint(&fingerprint(&serde_json::json!("hunter2"))));
        assert!(!is_fingerprint(&serde_json::json!("hunter2")));
        assert!(!is_fingerprint(&serde_json::json!(
            "sha256:not-hex-at-all!"
        )));
    }
}
