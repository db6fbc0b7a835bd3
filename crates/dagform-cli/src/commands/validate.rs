//! `dagform validate`: every check that needs no AWS account — syntax, schema, references,
//! names, CIDRs, Fargate sizes, the graph itself, and the quotas against AWS's defaults. It
//! builds no AWS client, reads no credentials and makes no network call, so it runs in CI.

use crate::exit;
use anyhow::Result;
use clap::Args;
use dagform_config::{Config, ConfigError, Diagnostic};
use dagform_resources::quotas::{self, Limits, Usage};
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ValidateArgs {
    /// The configuration file.
    #[arg(
        short = 'f',
        long = "file",
        env = "DAGFORM_CONFIG",
        default_value = "dagform.toml"
    )]
    file: PathBuf,
    /// Check the configuration with this override applied (as `plan --set`). Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// One problem found, located as precisely as the check that found it can.
struct Problem {
    message: String,
    file: Option<PathBuf>,
    line: Option<usize>,
    column: Option<usize>,
    field: Option<String>,
}

impl Problem {
    fn in_file(file: &Path, message: String) -> Self {
        Self {
            message,
            file: Some(file.to_owned()),
            line: None,
            column: None,
            field: None,
        }
    }

    fn from_diagnostic(d: &Diagnostic) -> Self {
        Self {
            message: d.message.clone(),
            file: Some(d.file.clone()),
            line: Some(d.line),
            column: Some(d.column),
            field: (!d.field.is_empty()).then(|| d.field.clone()),
        }
    }

    fn from_config_error(file: &Path, e: &ConfigError) -> Vec<Self> {
        match e {
            ConfigError::Invalid(diagnostics) => {
                diagnostics.iter().map(Self::from_diagnostic).collect()
            }
            other => vec![Self::in_file(file, other.to_string())],
        }
    }

    /// As the config crate prints it: `file:line:column: `field`: message`.
    fn text(&self) -> String {
        let mut out = String::new();
        if let Some(f) = &self.file {
            out.push_str(&format!("{}:", f.display()));
            if let (Some(l), Some(c)) = (self.line, self.column) {
                out.push_str(&format!("{l}:{c}:"));
            }
            out.push(' ');
        }
        if let Some(field) = &self.field {
            out.push_str(&format!("`{field}`: "));
        }
        out.push_str(&self.message);
        out
    }

    fn json(&self) -> Json {
        json!({
            "message": self.message,
            "file": self.file.as_ref().map(|f| f.display().to_string()),
            "line": self.line,
            "column": self.column,
            "field": self.field,
        })
    }
}

/// What a valid configuration expands to.
struct Summary {
    stack: Option<String>,
    resources: Option<usize>,
    customers: Option<usize>,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

fn check(args: &ValidateArgs) -> Summary {
    let mut summary = Summary {
        stack: None,
        resources: None,
        customers: None,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let config = match load(args) {
        Ok(c) => c,
        Err(errors) => {
            summary.errors = errors;
            return summary;
        }
    };
    summary.stack = Some(config.stack_name());
    summary.customers = Some(config.customer_names().count());
    // No state and no Route 53: the zones of customers' own domains are looked up at plan
    // time, so their nodes are not part of this graph.
    let inputs = dagform_config::resolve_inputs(&config, &args.file, None);
    let blueprint = match dagform_config::expand(&config, &inputs) {
        Ok(b) => b,
        Err(e) => {
            summary.errors = Problem::from_config_error(&args.file, &e);
            return summary;
        }
    };
    summary.resources = Some(blueprint.graph.topological().len());
    // Secret values are read when dagform runs, often only on the machine that provisions.
    summary.warnings = blueprint
        .missing_secrets
        .iter()
        .map(Problem::from_diagnostic)
        .collect();
    let usage = Usage::of(&blueprint.graph);
    let limits = Limits::defaults("validate reads no account data");
    summary.errors = quotas::check(&usage, &limits)
        .iter()
        .map(|e| Problem::in_file(&args.file, format!("quota exceeded: {e}")))
        .collect();
    summary
}

fn load(args: &ValidateArgs) -> Result<Config, Vec<Problem>> {
    let mut config =
        dagform_config::load(&args.file).map_err(|e| Problem::from_config_error(&args.file, &e))?;
    for o in &args.overrides {
        config
            .set(o)
            .map_err(|e| vec![Problem::in_file(&args.file, format!("--set {e}"))])?;
    }
    Ok(config)
}

pub fn run(args: ValidateArgs) -> Result<u8> {
    let summary = check(&args);
    let valid = summary.errors.is_empty();
    if args.json {
        let doc = json!({
            "format_version": crate::render::JSON_FORMAT_VERSION,
            "valid": valid,
            "file": args.file.display().to_string(),
            "stack": summary.stack,
            "resources": summary.resources,
            "customers": summary.customers,
            "errors": summary.errors.iter().map(Problem::json).collect::<Vec<_>>(),
            "warnings": summary.warnings.iter().map(Problem::json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for w in &summary.warnings {
            eprintln!("warning: {}", w.text());
        }
        if valid {
            println!(
                "{} is valid: stack {}, {} resources, {} customers.",
                args.file.display(),
                summary.stack.as_deref().unwrap_or("?"),
                summary.resources.unwrap_or(0),
                summary.customers.unwrap_or(0)
            );
        } else {
            for e in &summary.errors {
                eprintln!("error: {}", e.text());
            }
        }
    }
    Ok(if valid { exit::OK } else { exit::ERROR })
}
