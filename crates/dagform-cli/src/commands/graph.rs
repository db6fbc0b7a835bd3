//! `dagform graph`: the resource DAG as Graphviz DOT or Mermaid, so what waits for what (and
//! why) can be read, rendered and reviewed as a diff. No AWS call.

use crate::commands::status::customer_prefix;
use crate::context::Context;
use crate::{Common, exit};
use anyhow::Result;
use clap::{Args, ValueEnum};
use dagform_core::graph::Edge;
use dagform_core::{Address, NodeSpec, ResourceGraph};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write;

#[derive(Args)]
pub struct GraphArgs {
    #[command(flatten)]
    common: Common,
    /// Output language.
    #[arg(long, value_enum, default_value_t = Format::Dot)]
    format: Format,
    /// Only this customer's resources and everything they depend on.
    #[arg(long, value_name = "NAME")]
    customer: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// Graphviz: `dagform graph | dot -Tsvg > graph.svg`.
    Dot,
    /// Mermaid flowchart, rendered by GitHub and GitLab in Markdown.
    Mermaid,
}

pub async fn run(args: GraphArgs) -> Result<u8> {
    let ctx = Context::load(&args.common)?;
    let state = ctx.read_state()?;
    let blueprint = ctx.blueprint(&state)?;
    let only = match &args.customer {
        Some(name) => Some(
            blueprint
                .graph
                .closure_of(&[customer_prefix(&ctx.config, name)?]),
        ),
        None => None,
    };
    let text = match args.format {
        Format::Dot => dot(&blueprint.graph, only.as_ref()),
        Format::Mermaid => mermaid(&blueprint.graph, only.as_ref()),
    };
    print!("{text}");
    Ok(exit::OK)
}

/// The nodes to draw, by group (`shared`, `customer.<name>`, …), each sorted by address.
fn groups<'g>(
    graph: &'g ResourceGraph,
    only: Option<&BTreeSet<Address>>,
) -> BTreeMap<String, Vec<&'g NodeSpec>> {
    let mut out: BTreeMap<String, Vec<&NodeSpec>> = BTreeMap::new();
    for node in graph.topological() {
        if only.is_none_or(|o| o.contains(&node.address)) {
            out.entry(group_of(&node.address)).or_default().push(node);
        }
    }
    for nodes in out.values_mut() {
        nodes.sort_by(|a, b| a.address.cmp(&b.address));
    }
    out
}

/// `customer.<name>` for a customer's nodes, the first segment (`shared`) for the others.
fn group_of(address: &Address) -> String {
    let mut parts = address.as_str().splitn(3, '.');
    match (parts.next(), parts.next()) {
        (Some("customer"), Some(name)) => format!("customer.{name}"),
        (Some(first), _) => first.to_owned(),
        (None, _) => String::new(),
    }
}

/// The edges between drawn nodes, sorted by (dependency, dependent).
fn edges<'g>(
    graph: &'g ResourceGraph,
    only: Option<&BTreeSet<Address>>,
) -> Vec<(&'g Address, &'g Address, Edge)> {
    graph
        .edges()
        .into_iter()
        .filter(|(from, to, _)| only.is_none_or(|o| o.contains(*from) && o.contains(*to)))
        .collect()
}

fn uses(edge: &Edge) -> String {
    edge.uses
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn dot_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

fn dot_quote(text: &str) -> String {
    format!("\"{}\"", dot_escape(text))
}

/// Graphviz DOT: one cluster per group; edges run from dependency to dependent, labelled with
/// the outputs used, dashed when they only order.
pub fn dot(graph: &ResourceGraph, only: Option<&BTreeSet<Address>>) -> String {
    let mut out = String::from("digraph dagform {\n");
    out.push_str("  rankdir=LR;\n  node [shape=box, fontsize=10];\n  edge [fontsize=9];\n");
    for (group, nodes) in groups(graph, only) {
        let _ = writeln!(
            out,
            "\n  subgraph {} {{\n    label={};",
            dot_quote(&format!("cluster_{group}")),
            dot_quote(&group)
        );
        for node in nodes {
            let _ = writeln!(
                out,
                "    {} [label=\"{}\\n{}\"];",
                dot_quote(node.address.as_str()),
                dot_escape(node.address.as_str()),
                dot_escape(&node.kind)
            );
        }
        out.push_str("  }\n");
    }
    out.push('\n');
    for (from, to, edge) in edges(graph, only) {
        let attrs = if edge.is_ordering_only() {
            "style=dashed".to_owned()
        } else {
            format!("label={}", dot_quote(&uses(&edge)))
        };
        let _ = writeln!(
            out,
            "  {} -> {} [{attrs}];",
            dot_quote(from.as_str()),
            dot_quote(to.as_str())
        );
    }
    out.push_str("}\n");
    out
}

/// Mermaid identifiers: addresses with every non-alphanumeric character as `_`, made unique.
#[derive(Default)]
struct Ids {
    taken: HashSet<String>,
    by_key: BTreeMap<String, String>,
}

impl Ids {
    fn assign(&mut self, key: &str) -> String {
        let base: String = key
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mut id = base.clone();
        let mut n = 2;
        while !self.taken.insert(id.clone()) {
            id = format!("{base}_{n}");
            n += 1;
        }
        self.by_key.insert(key.to_owned(), id.clone());
        id
    }

    fn get(&self, key: &str) -> &str {
        &self.by_key[key]
    }
}

fn mermaid_text(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "#quot;"))
}

/// A Mermaid flowchart: one subgraph per group; data edges `-->` labelled with the outputs
/// used, ordering-only edges dotted `-.->`.
pub fn mermaid(graph: &ResourceGraph, only: Option<&BTreeSet<Address>>) -> String {
    let groups = groups(graph, only);
    let mut ids = Ids::default();
    let group_ids: Vec<String> = groups
        .keys()
        .map(|g| ids.assign(&format!("group {g}")))
        .collect();
    for node in groups.values().flatten() {
        ids.assign(node.address.as_str());
    }
    let mut out = String::from("flowchart LR\n");
    for ((group, nodes), gid) in groups.iter().zip(&group_ids) {
        let _ = writeln!(out, "  subgraph {gid}[{}]", mermaid_text(group));
        for node in nodes {
            let _ = writeln!(
                out,
                "    {}[{}]",
                ids.get(node.address.as_str()),
                mermaid_text(&format!("{}<br/>{}", node.address, node.kind))
            );
        }
        out.push_str("  end\n");
    }
    for (from, to, edge) in edges(graph, only) {
        let (from, to) = (ids.get(from.as_str()), ids.get(to.as_str()));
        if edge.is_ordering_only() {
            let _ = writeln!(out, "  {from} -.-> {to}");
        } else {
            let _ = writeln!(out, "  {from} -->|{}| {to}", mermaid_text(&uses(&edge)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagform_core::{GraphBuilder, Value, props};
    use std::path::Path;

    fn example() -> ResourceGraph {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/multi-customer/dagform.toml");
        let config = dagform_config::load(&path).expect("example config");
        dagform_config::blueprint(&config, &path, None)
            .expect("example blueprint")
            .graph
    }

    /// A small graph with a data edge, an ordering edge and two groups.
    fn small() -> ResourceGraph {
        let mut b = GraphBuilder::new();
        b.add(NodeSpec::new("shared.vpc", "aws_vpc", props! {}));
        b.add(NodeSpec::new(
            "shared.subnet.a",
            "aws_subnet",
            props! { "vpc_id" => Value::reference("shared.vpc", "id") },
        ));
        b.add(
            NodeSpec::new(
                "customer.a-b.service.web",
                "aws_ecs_service",
                props! { "subnet" => Value::reference("shared.subnet.a", "id") },
            )
            .after("shared.vpc"),
        );
        b.add(NodeSpec::new("customer.other.log", "aws_log", props! {}));
        b.build().expect("valid graph")
    }

    #[test]
    fn example_dot_snapshot() {
        insta::assert_snapshot!("example_dot", dot(&example(), None));
    }

    #[test]
    fn example_mermaid_snapshot() {
        insta::assert_snapshot!("example_mermaid", mermaid(&example(), None));
    }

    #[test]
    fn dot_labels_data_edges_and_dashes_ordering_edges() {
        let text = dot(&small(), None);
        assert!(
            text.contains(r#""shared.vpc" -> "shared.subnet.a" [label="id"];"#),
            "{text}"
        );
        assert!(
            text.contains(r#""shared.vpc" -> "customer.a-b.service.web" [style=dashed];"#),
            "{text}"
        );
        assert!(
            text.contains(r#""shared.vpc" [label="shared.vpc\naws_vpc"];"#),
            "{text}"
        );
        assert!(
            text.contains(r#"subgraph "cluster_customer.a-b" {"#),
            "{text}"
        );
    }

    #[test]
    fn mermaid_uses_safe_unique_ids_and_dotted_ordering_edges() {
        let text = mermaid(&small(), None);
        assert!(
            text.contains(
                r#"customer_a_b_service_web["customer.a-b.service.web<br/>aws_ecs_service"]"#
            ),
            "{text}"
        );
        assert!(
            text.contains("  shared_vpc -.-> customer_a_b_service_web\n"),
            "{text}"
        );
        assert!(
            text.contains(r#"  shared_vpc -->|"id"| shared_subnet_a"#),
            "{text}"
        );
        assert!(
            text.contains(r#"subgraph group_shared["shared"]"#),
            "{text}"
        );
        let mut ids = Ids::default();
        assert_eq!(ids.assign("a.b"), "a_b");
        assert_eq!(ids.assign("a-b"), "a_b_2");
    }

    #[test]
    fn customer_closure_keeps_dependencies_and_drops_other_customers() {
        let g = small();
        let only = g.closure_of(&["customer.a-b".into()]);
        for text in [dot(&g, Some(&only)), mermaid(&g, Some(&only))] {
            assert!(text.contains("customer.a-b.service.web"), "{text}");
            assert!(text.contains("shared.subnet.a"), "{text}");
            assert!(!text.contains("customer.other"), "{text}");
        }
    }
}
