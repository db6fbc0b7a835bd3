//! Desired property values, which may refer to outputs of other nodes.

use crate::address::Address;
use litemap::LiteMap;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut, Index};

/// A use of another node's output, such as `shared.vpc`'s `id`. The output may be a path into
/// a structured output: `validation_records.0.name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Reference {
    pub node: Address,
    pub output: String,
}

impl Reference {
    pub fn new(node: impl Into<Address>, output: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            output: output.into(),
        }
    }
}

impl Reference {
    /// Looks this reference's output path up in a node's outputs.
    pub fn lookup(&self, outputs: &serde_json::Map<String, Json>) -> Option<Json> {
        let mut parts = self.output.split('.');
        let mut value = outputs.get(parts.next()?)?;
        for part in parts {
            value = match value {
                Json::Array(items) => items.get(part.parse::<usize>().ok()?)?,
                Json::Object(map) => map.get(part)?,
                _ => return None,
            };
        }
        Some(value.clone())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.node, self.output)
    }
}

/// Names to values, sorted by name: a node's properties, or a map inside one. A sorted vector
/// rather than a B-tree: a node has one or two dozen properties, and a stack of hundreds of
/// customers holds tens of thousands of nodes, each map of which a B-tree would give room for
/// eleven entries at least.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValueMap(LiteMap<String, Value>);

impl ValueMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Self(LiteMap::with_capacity(capacity))
    }
}

impl Deref for ValueMap {
    type Target = LiteMap<String, Value>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for ValueMap {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Index<&str> for ValueMap {
    type Output = Value;

    /// The value of `name`; panics when there is none, as a map's index does.
    fn index(&self, name: &str) -> &Value {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("no property `{name}`"))
    }
}

impl FromIterator<(String, Value)> for ValueMap {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(entries: I) -> Self {
        Self(entries.into_iter().collect())
    }
}

impl<const N: usize> From<[(String, Value); N]> for ValueMap {
    fn from(entries: [(String, Value); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl IntoIterator for ValueMap {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ValueMap {
    type Item = (&'a String, &'a Value);
    type IntoIter = <&'a LiteMap<String, Value> as IntoIterator>::IntoIter;

    fn into_iter(self) -> Self::IntoIter {
        (&self.0).into_iter()
    }
}

/// A desired property value: plain data, or a reference resolved when the referenced node
/// has been applied.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Data(Json),
    Ref(Reference),
    List(Vec<Value>),
    Map(ValueMap),
    /// Strings joined once every part is known, e.g. a repository URI and an image tag.
    Concat(Vec<Value>),
}

impl Value {
    pub fn reference(node: impl Into<Address>, output: impl Into<String>) -> Self {
        Value::Ref(Reference::new(node, output))
    }

    /// Every reference inside this value.
    pub fn references(&self) -> Vec<&Reference> {
        let mut out = Vec::new();
        self.collect_references(&mut out);
        out
    }

    fn collect_references<'a>(&'a self, out: &mut Vec<&'a Reference>) {
        match self {
            Value::Data(_) => {}
            Value::Ref(r) => out.push(r),
            Value::List(items) => items.iter().for_each(|v| v.collect_references(out)),
            Value::Map(map) => map.values().for_each(|v| v.collect_references(out)),
            Value::Concat(parts) => parts.iter().for_each(|v| v.collect_references(out)),
        }
    }

    /// Replaces every reference `lookup` can answer; the others stay references.
    pub fn partially_resolve(&self, lookup: &dyn Fn(&Reference) -> Option<Json>) -> Value {
        match self {
            Value::Data(j) => Value::Data(j.clone()),
            Value::Ref(r) => match lookup(r) {
                Some(j) => Value::Data(j),
                None => Value::Ref(r.clone()),
            },
            Value::List(items) => {
                let items: Vec<Value> = items.iter().map(|v| v.partially_resolve(lookup)).collect();
                if items.iter().all(|v| matches!(v, Value::Data(_))) {
                    Value::Data(Json::Array(
                        items.into_iter().map(Value::into_data).collect(),
                    ))
                } else {
                    Value::List(items)
                }
            }
            Value::Map(map) => {
                let map: ValueMap = map
                    .iter()
                    .map(|(k, v)| (k.clone(), v.partially_resolve(lookup)))
                    .collect();
                if map.values().all(|v| matches!(v, Value::Data(_))) {
                    Value::Data(Json::Object(
                        map.into_iter().map(|(k, v)| (k, v.into_data())).collect(),
                    ))
                } else {
                    Value::Map(map)
                }
            }
            Value::Concat(parts) => {
                let parts: Vec<Value> = parts.iter().map(|v| v.partially_resolve(lookup)).collect();
                if parts.iter().all(|v| matches!(v, Value::Data(_))) {
                    let joined: String = parts
                        .into_iter()
                        .map(|v| match v.into_data() {
                            Json::String(s) => s,
                            other => other.to_string(),
                        })
                        .collect();
                    Value::Data(Json::String(joined))
                } else {
                    Value::Concat(parts)
                }
            }
        }
    }

    /// Joins string parts, some of which may be references.
    pub fn concat(parts: Vec<Value>) -> Self {
        Value::Concat(parts).partially_resolve(&|_| None)
    }

    /// The plain data, if no reference is left unresolved.
    pub fn as_data(&self) -> Option<&Json> {
        match self {
            Value::Data(j) => Some(j),
            _ => None,
        }
    }

    fn into_data(self) -> Json {
        match self {
            Value::Data(j) => j,
            _ => unreachable!("checked by the caller"),
        }
    }

    /// The references still unresolved, for display ("known after apply"): sorted, each once.
    pub fn unresolved(&self) -> Vec<String> {
        let mut names: Vec<String> = self.references().iter().map(|r| r.to_string()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

impl From<Json> for Value {
    fn from(j: Json) -> Self {
        Value::Data(j)
    }
}

impl From<Reference> for Value {
    fn from(r: Reference) -> Self {
        Value::Ref(r)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Data(Json::String(s.to_owned()))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Data(Json::String(s))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Data(Json::Bool(b))
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Data(Json::from(n))
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::Data(Json::from(n))
    }
}

impl From<u16> for Value {
    fn from(n: u16) -> Self {
        Value::Data(Json::from(n))
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Self {
        Value::List(items.into_iter().map(Into::into).collect()).partially_resolve(&|_| None)
    }
}

impl<T: Into<Value>> From<BTreeMap<String, T>> for Value {
    fn from(map: BTreeMap<String, T>) -> Self {
        Value::Map(map.into_iter().map(|(k, v)| (k, v.into())).collect())
            .partially_resolve(&|_| None)
    }
}

/// Builds a map of desired properties: `props! { "cidr_block" => "10.0.0.0/16", "vpc_id" => vpc_ref }`.
#[macro_export]
macro_rules! props {
    ($($key:expr => $value:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut map = $crate::value::ValueMap::new();
        $( map.insert(($key).to_string(), $crate::value::Value::from($value)); )*
        map
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolution_collapses_to_plain_data_once_every_reference_is_known() {
        let v: Value = Value::Map(ValueMap::from([
            ("a".to_string(), Value::from("x")),
            ("b".to_string(), Value::reference("shared.vpc", "id")),
        ]));
        let unknown = v.partially_resolve(&|_| None);
        assert!(unknown.as_data().is_none());
        assert_eq!(unknown.unresolved(), ["shared.vpc.id"]);
        let known = v.partially_resolve(&|r| (r.output == "id").then(|| json!("vpc-1")));
        assert_eq!(known.as_data(), Some(&json!({"a": "x", "b": "vpc-1"})));
    }

    #[test]
    fn concat_and_output_paths() {
        let v = Value::concat(vec![
            Value::reference("shared.ecr", "repository_uri"),
            Value::from(":web-1"),
        ]);
        assert!(v.as_data().is_none());
        let known = v.partially_resolve(&|_| Some(json!("1234.dkr/app")));
        assert_eq!(known.as_data(), Some(&json!("1234.dkr/app:web-1")));
        let outputs = json!({"records": [{"name": "_x.example.com"}]});
        let r = Reference::new("cert", "records.0.name");
        assert_eq!(
            r.lookup(outputs.as_object().unwrap()),
            Some(json!("_x.example.com"))
        );
        assert_eq!(
            Reference::new("cert", "records.1.name").lookup(outputs.as_object().unwrap()),
            None
        );
    }

    #[test]
    fn props_macro_builds_data_and_references() {
        let p = props! { "n" => 3i64, "r" => Reference::new("x", "arn") };
        assert_eq!(p["n"], Value::Data(json!(3)));
        assert_eq!(p["r"].references().len(), 1);
    }
}
