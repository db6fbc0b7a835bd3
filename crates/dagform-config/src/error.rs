//! Configuration errors, located by file, line and field.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The field's path, e.g. `customers.customer1.domain`.
    pub field: String,
    pub message: String,
}

impl Diagnostic {
    /// The problem `message` with the field at byte `offset` of `source`, read from `path`.
    pub fn at(path: &Path, source: &str, offset: usize, field: &str, message: String) -> Self {
        let (line, column) = line_column(source, offset);
        Self {
            file: path.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message,
        }
    }

    pub(crate) fn from_toml(path: &Path, source: &str, e: &toml::de::Error) -> Self {
        let offset = e.span().map_or(0, |s| s.start);
        let message = e.message().trim().to_owned();
        // toml names unknown and missing fields in its message; point at the key itself.
        let field = field_at(source, offset);
        Self::at(path, source, offset, &field, message)
    }
}

/// The dotted key path of the TOML line at `offset`: the enclosing table plus the key.
fn field_at(source: &str, offset: usize) -> String {
    let before = &source[..offset.min(source.len())];
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = source[line_start..].lines().next().unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_owned())
        .filter(|k| !k.starts_with('['));
    match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (Some(t), None) => t,
        (None, Some(k)) => k,
        (None, None) => String::new(),
    }
}

fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "`{}`: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
    #[error(transparent)]
    Graph(#[from] dagform_core::Error),
}
