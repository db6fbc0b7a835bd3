//! The resource DAG: nodes with desired properties, edges for every use of another node's
//! output and for pure ordering dependencies.

use crate::address::Address;
use crate::error::Error;
use crate::value::{Value, ValueMap};
use petgraph::Direction;
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A desired resource.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub address: Address,
    pub kind: String,
    pub properties: ValueMap,
    /// Ordering dependencies that carry no data (an ECS service waits for the listener rule
    /// that attaches its target group).
    pub depends_on: Vec<Address>,
}

impl NodeSpec {
    pub fn new(address: impl Into<Address>, kind: impl Into<String>, properties: ValueMap) -> Self {
        Self {
            address: address.into(),
            kind: kind.into(),
            properties,
            depends_on: Vec::new(),
        }
    }

    pub fn after(mut self, dependency: impl Into<Address>) -> Self {
        self.depends_on.push(dependency.into());
        self
    }

    /// A reference to one of this node's outputs.
    pub fn output(&self, output: &str) -> Value {
        Value::reference(self.address.clone(), output)
    }
}

/// Why one node waits for another: the outputs it uses, or none for pure ordering. Made by
/// [`ResourceGraph::edges`] from the dependent's references; the graph itself stores none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edge {
    /// Sorted, each once.
    pub uses: Vec<String>,
}

impl Edge {
    pub fn is_ordering_only(&self) -> bool {
        self.uses.is_empty()
    }
}

/// Collects nodes, then checks references and cycles in [`GraphBuilder::build`].
#[derive(Debug, Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeSpec>,
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, node: NodeSpec) -> &NodeSpec {
        self.nodes.push(node);
        self.nodes.last().expect("just pushed")
    }

    pub fn build(self) -> Result<ResourceGraph, Error> {
        let mut index = HashMap::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            if index
                .insert(node.address.clone(), NodeIndex::new(i))
                .is_some()
            {
                return Err(Error::DuplicateAddress(node.address.clone()));
            }
        }
        // One edge per (dependency, dependent) pair, however many outputs it uses: those are
        // read back from the dependent's properties when asked (see `ResourceGraph::edges`)
        // rather than stored, a stack of hundreds of customers having tens of thousands.
        let mut pairs: Vec<(NodeIndex, NodeIndex)> = Vec::new();
        for (to, node) in self.nodes.iter().enumerate() {
            let to = NodeIndex::new(to);
            let references = node.properties.values().flat_map(Value::references);
            let used = references.map(|r| &r.node);
            for dep in used.chain(&node.depends_on) {
                let from = *index.get(dep).ok_or_else(|| Error::UnknownReference {
                    from: node.address.clone(),
                    to: dep.clone(),
                })?;
                pairs.push((from, to));
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        let mut graph = DiGraph::<NodeSpec, ()>::with_capacity(self.nodes.len(), pairs.len());
        for node in self.nodes {
            graph.add_node(node);
        }
        for (from, to) in pairs {
            graph.add_edge(from, to, ());
        }
        if toposort(&graph, None).is_err() {
            return Err(Error::Cycle {
                cycle: find_cycle(&graph),
            });
        }
        Ok(ResourceGraph { graph, index })
    }
}

/// The nodes of one cycle, in edge order and closed (first node repeated at the end).
fn find_cycle(graph: &DiGraph<NodeSpec, ()>) -> Vec<Address> {
    let component = tarjan_scc(graph)
        .into_iter()
        .find(|c| c.len() > 1 || c.iter().any(|&n| graph.contains_edge(n, n)))
        .expect("toposort found a cycle");
    let members: BTreeSet<NodeIndex> = component.iter().copied().collect();
    let start = *members.iter().next().expect("non-empty component");
    // Walk inside the component until a node repeats.
    let mut path = vec![start];
    let mut seen = BTreeSet::from([start]);
    let mut current = start;
    loop {
        let next = graph
            .neighbors_directed(current, Direction::Outgoing)
            .filter(|n| members.contains(n))
            .min()
            .expect("every node of a cycle has a successor in it");
        if !seen.insert(next) {
            let from = path.iter().position(|&n| n == next).expect("seen");
            let mut cycle: Vec<Address> = path[from..]
                .iter()
                .map(|&n| graph[n].address.clone())
                .collect();
            cycle.push(graph[next].address.clone());
            return cycle;
        }
        path.push(next);
        current = next;
    }
}

/// The desired resources and their dependencies; acyclic by construction.
#[derive(Debug, Clone)]
pub struct ResourceGraph {
    graph: DiGraph<NodeSpec, ()>,
    index: HashMap<Address, NodeIndex>,
}

impl ResourceGraph {
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    pub fn get(&self, address: &Address) -> Option<&NodeSpec> {
        self.index.get(address).map(|&i| &self.graph[i])
    }

    pub fn contains(&self, address: &Address) -> bool {
        self.index.contains_key(address)
    }

    /// Nodes in dependency order (every node after all it depends on), ties broken by address
    /// so the order is stable.
    pub fn topological(&self) -> Vec<&NodeSpec> {
        let mut indegree: HashMap<NodeIndex, usize> = self
            .graph
            .node_indices()
            .map(|n| {
                (
                    n,
                    self.graph
                        .neighbors_directed(n, Direction::Incoming)
                        .count(),
                )
            })
            .collect();
        let mut ready: BTreeMap<&Address, NodeIndex> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(&n, _)| (&self.graph[n].address, n))
            .collect();
        let mut out = Vec::with_capacity(self.graph.node_count());
        while let Some((_, n)) = ready.pop_first() {
            out.push(&self.graph[n]);
            for m in self.graph.neighbors_directed(n, Direction::Outgoing) {
                let d = indegree.get_mut(&m).expect("known node");
                *d -= 1;
                if *d == 0 {
                    ready.insert(&self.graph[m].address, m);
                }
            }
        }
        out
    }

    /// The nodes `address` depends on directly.
    pub fn dependencies(&self, address: &Address) -> Vec<&Address> {
        self.neighbors(address, Direction::Incoming)
    }

    /// The nodes that depend directly on `address`.
    pub fn dependents(&self, address: &Address) -> Vec<&Address> {
        self.neighbors(address, Direction::Outgoing)
    }

    fn neighbors(&self, address: &Address, dir: Direction) -> Vec<&Address> {
        let Some(&i) = self.index.get(address) else {
            return Vec::new();
        };
        let mut v: Vec<&Address> = self
            .graph
            .neighbors_directed(i, dir)
            .map(|n| &self.graph[n].address)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every edge as (dependency, dependent, why).
    pub fn edges(&self) -> Vec<(&Address, &Address, Edge)> {
        let mut v: Vec<_> = self
            .graph
            .edge_references()
            .map(|e| {
                let (from, to) = (&self.graph[e.source()], &self.graph[e.target()]);
                let mut uses: Vec<String> = to
                    .properties
                    .values()
                    .flat_map(Value::references)
                    .filter(|r| r.node == from.address)
                    .map(|r| r.output.clone())
                    .collect();
                uses.sort_unstable();
                uses.dedup();
                (&from.address, &to.address, Edge { uses })
            })
            .collect();
        v.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        v
    }

    /// The nodes within any of `prefixes` plus everything they depend on, transitively.
    pub fn closure_of(&self, prefixes: &[String]) -> BTreeSet<Address> {
        let mut out = BTreeSet::new();
        let mut stack: Vec<NodeIndex> = self
            .graph
            .node_indices()
            .filter(|&n| prefixes.iter().any(|p| self.graph[n].address.is_within(p)))
            .collect();
        while let Some(n) = stack.pop() {
            if out.insert(self.graph[n].address.clone()) {
                stack.extend(self.graph.neighbors_directed(n, Direction::Incoming));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::props;

    fn node(addr: &str, refs: &[&str]) -> NodeSpec {
        let mut p = props! {};
        for (i, r) in refs.iter().enumerate() {
            p.insert(format!("r{i}"), Value::reference(*r, "id"));
        }
        NodeSpec::new(addr, "test", p)
    }

    #[test]
    fn topological_order_puts_dependencies_first_and_is_stable() {
        let mut b = GraphBuilder::new();
        b.add(node("c", &["a", "b"]));
        b.add(node("b", &["a"]));
        b.add(node("a", &[]));
        b.add(node("d", &[]));
        let g = b.build().unwrap();
        let order: Vec<&str> = g.topological().iter().map(|n| n.address.as_str()).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
        assert_eq!(
            g.dependencies(&"c".into()),
            [&Address::from("a"), &"b".into()]
        );
        assert_eq!(
            g.dependents(&"a".into()),
            [&Address::from("b"), &"c".into()]
        );
    }

    #[test]
    fn cycle_is_rejected_naming_its_nodes() {
        let mut b = GraphBuilder::new();
        b.add(node("x", &[]));
        b.add(node("sg.alb", &["rule.b"]));
        b.add(node("rule.b", &["sg.backend"]));
        b.add(node("sg.backend", &["sg.alb"]));
        let err = b.build().unwrap_err();
        let Error::Cycle { cycle } = &err else {
            panic!("expected a cycle, got {err}")
        };
        assert_eq!(cycle.first(), cycle.last());
        let names: BTreeSet<&str> = cycle.iter().map(|a| a.as_str()).collect();
        assert_eq!(names, BTreeSet::from(["sg.alb", "rule.b", "sg.backend"]));
        assert!(err.to_string().contains("sg.alb"), "{err}");
    }

    #[test]
    fn unknown_reference_and_duplicates_are_errors() {
        let mut b = GraphBuilder::new();
        b.add(node("a", &["ghost"]));
        assert!(matches!(b.build(), Err(Error::UnknownReference { .. })));
        let mut b = GraphBuilder::new();
        b.add(node("a", &[]));
        b.add(node("a", &[]));
        assert!(matches!(b.build(), Err(Error::DuplicateAddress(_))));
    }

    #[test]
    fn ordering_edges_carry_no_outputs() {
        let mut b = GraphBuilder::new();
        b.add(node("rule", &[]));
        b.add(node("service", &[]).after("rule"));
        let g = b.build().unwrap();
        let edges = g.edges();
        assert_eq!(edges.len(), 1);
        assert!(edges[0].2.is_ordering_only());
    }

    #[test]
    fn one_edge_per_pair_names_each_output_it_carries_once() {
        let mut b = GraphBuilder::new();
        b.add(node("lb", &[]));
        b.add(node("other", &[]));
        let props = crate::props! {
            "alias" => Value::reference("lb", "dns_name"),
            "zone" => Value::reference("lb", "zone_id"),
            "again" => Value::List(vec![Value::reference("lb", "dns_name")]),
            "elsewhere" => Value::reference("other", "id"),
        };
        b.add(NodeSpec::new("record", "t", props).after("lb"));
        let g = b.build().unwrap();
        let edges: Vec<(&str, &str, Vec<String>)> = g
            .edges()
            .into_iter()
            .map(|(from, to, e)| (from.as_str(), to.as_str(), e.uses))
            .collect();
        assert_eq!(
            edges,
            [
                (
                    "lb",
                    "record",
                    vec!["dns_name".to_owned(), "zone_id".to_owned()]
                ),
                ("other", "record", vec!["id".to_owned()]),
            ]
        );
    }

    #[test]
    fn closure_includes_transitive_dependencies_only() {
        let mut b = GraphBuilder::new();
        b.add(node("shared.vpc", &[]));
        b.add(node("shared.sg", &["shared.vpc"]));
        b.add(node("customer.a.svc", &["shared.sg"]));
        b.add(node("customer.b.svc", &["shared.sg"]));
        let g = b.build().unwrap();
        let c = g.closure_of(&["customer.a".into()]);
        let names: Vec<&str> = c.iter().map(|a| a.as_str()).collect();
        assert_eq!(names, ["customer.a.svc", "shared.sg", "shared.vpc"]);
    }
}
