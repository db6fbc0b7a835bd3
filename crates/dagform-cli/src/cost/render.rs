//! The cost block printed at the end of a plan: total, change, shared and per-customer costs.

use super::{Estimate, Group, Usd};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Above this many customers, the unchanged ones are summed on one row.
const MAX_CUSTOMER_ROWS: usize = 10;

/// One amount before and after; `None` where the group does not exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    pub before: Option<Usd>,
    pub after: Option<Usd>,
}

impl Change {
    pub fn difference(self) -> Usd {
        self.after.unwrap_or_default() - self.before.unwrap_or_default()
    }

    fn text(self) -> String {
        let d = self.difference();
        match (self.before, self.after) {
            (None, Some(_)) => format!("{}, new", d.signed()),
            (Some(_), None) => format!("{}, removed", d.signed()),
            _ if d == Usd::default() => "no change".into(),
            _ => d.signed(),
        }
    }
}

/// How an estimate moves from one stack to another, in total and per group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub total: Change,
    /// Every group present before or after.
    pub groups: BTreeMap<Group, Change>,
}

pub fn delta(before: &Estimate, after: &Estimate) -> Delta {
    let subtotals = |e: &Estimate| {
        let shared = e.has_shared().then(|| (Group::Shared, e.shared()));
        let customers = e.customers().into_iter();
        shared
            .into_iter()
            .chain(customers.map(|(name, usd)| (Group::Customer(name), usd)))
            .collect::<Vec<_>>()
    };
    let mut groups: BTreeMap<Group, Change> = BTreeMap::new();
    for (g, usd) in subtotals(before) {
        groups.entry(g).or_default().before = Some(usd);
    }
    for (g, usd) in subtotals(after) {
        groups.entry(g).or_default().after = Some(usd);
    }
    Delta {
        total: Change {
            before: Some(before.total()),
            after: Some(after.total()),
        },
        groups,
    }
}

/// The block for `after`, with changes against `before` when there is one.
pub fn render(before: Option<&Estimate>, after: &Estimate) -> String {
    let nothing = Estimate {
        lines: Vec::new(),
        note: String::new(),
    };
    let compare = before.is_some();
    let d = delta(before.unwrap_or(&nothing), after);
    let changed = |c: &Change| compare && (c.before != c.after);

    let mut out = format!("Estimated monthly cost: {}", after.total());
    if compare {
        let _ = write!(out, " ({} a month)", d.total.text());
    }
    out.push('\n');

    let mut rows: Vec<(String, Change)> = Vec::new();
    if let Some(c) = d.groups.get(&Group::Shared) {
        rows.push(("shared".into(), *c));
    }
    let customers: Vec<(&String, &Change)> = d
        .groups
        .iter()
        .filter_map(|(g, c)| match g {
            Group::Customer(name) => Some((name, c)),
            Group::Shared => None,
        })
        .collect();
    let unchanged: Vec<Usd> = customers
        .iter()
        .filter(|(_, c)| !changed(c))
        .map(|(_, c)| c.after.unwrap_or_default())
        .collect();
    let collapse = customers.len() > MAX_CUSTOMER_ROWS && unchanged.len() > 1;
    for (name, c) in &customers {
        if !collapse || changed(c) {
            rows.push((format!("customer {name}"), **c));
        }
    }
    if collapse {
        let sum: Usd = unchanged.iter().copied().sum();
        let c = Change {
            before: Some(sum),
            after: Some(sum),
        };
        rows.push((format!("{} other customers", unchanged.len()), c));
    }

    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(label, c)| {
            let change = if changed(c) { c.text() } else { String::new() };
            vec![
                label.clone(),
                c.after.unwrap_or_default().to_string(),
                change,
            ]
        })
        .collect();
    for line in crate::render::aligned_table(None, &cells, &[1]) {
        let _ = writeln!(out, "  {line}");
    }
    for line in after.not_priced() {
        let _ = writeln!(out, "  not priced: {} ({})", line.address, line.what);
    }
    let _ = writeln!(out, "  {}", after.note);
    out
}
