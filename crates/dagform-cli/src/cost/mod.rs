//! Estimated monthly cost of a stack, shown at the end of a plan.
//!
//! [`estimate`] prices the desired graph (and [`estimate_state`] the recorded state) with a
//! [`PriceTable`]: unit prices for one region plus the usage assumptions the configuration
//! does not say, kept as TOML under `prices/` and overridable with a file. [`render`] prints
//! the total, the change against what exists, and the shared and per-customer subtotals.

mod estimate;
mod prices;
mod render;

pub use estimate::{Estimate, estimate, estimate_state};
pub use prices::PriceTable;
pub use render::render;

use dagform_core::Address;
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub};

/// An amount of US dollars, held in millionths so that sums are exact and independent of
/// their order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(i64);

impl Usd {
    pub fn from_dollars(dollars: f64) -> Self {
        Self((dollars * 1e6).round() as i64)
    }

    pub fn dollars(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// With an explicit sign, for changes: `+$45.85`, `-$3.65`.
    pub fn signed(self) -> String {
        if self.0 < 0 {
            self.to_string()
        } else {
            format!("+{self}")
        }
    }
}

impl fmt::Display for Usd {
    /// `$1,234.56`, rounded to the cent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cents = (self.dollars() * 100.0).round() as i64;
        let sign = if cents < 0 { "-" } else { "" };
        let (whole, cents) = (cents.abs() / 100, cents.abs() % 100);
        let digits = whole.to_string();
        let mut grouped = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        f.pad(&format!("{sign}${grouped}.{cents:02}"))
    }
}

impl Add for Usd {
    type Output = Usd;
    fn add(self, other: Usd) -> Usd {
        Usd(self.0 + other.0)
    }
}

impl AddAssign for Usd {
    fn add_assign(&mut self, other: Usd) {
        self.0 += other.0;
    }
}

impl Sub for Usd {
    type Output = Usd;
    fn sub(self, other: Usd) -> Usd {
        Usd(self.0 - other.0)
    }
}

impl Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::default(), Add::add)
    }
}

/// Who pays for a resource: everyone (`shared.…` and anything else) or one customer
/// (`customer.NAME.…`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    Shared,
    Customer(String),
}

impl Group {
    pub fn of(address: &Address) -> Self {
        let mut parts = address.as_str().splitn(3, '.');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("customer"), Some(name), Some(_)) => Group::Customer(name.to_owned()),
            _ => Group::Shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::estimate::Line;
    use super::render::delta;
    use super::*;
    use dagform_core::kind::Properties;
    use dagform_core::state::{ResourceState, ResourceStatus};
    use dagform_core::{GraphBuilder, NodeSpec, ResourceGraph, State, Value, props};
    use serde_json::json;
    use std::path::{Path, PathBuf};

    fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/multi-customer/dagform.toml")
    }

    /// The example's graph, with `extra` appended to its configuration.
    fn example_graph(extra: &str) -> ResourceGraph {
        let path = example_path();
        let source = std::fs::read_to_string(&path).unwrap() + extra;
        let config = dagform_config::parse(&path, &source).unwrap();
        dagform_config::blueprint(&config, &path, None)
            .unwrap()
            .graph
    }

    fn us_east_1() -> PriceTable {
        PriceTable::builtin("us-east-1").unwrap()
    }

    const CUSTOMER2: &str = r#"
[customers.customer2]
domain = "customer2.freeinterestcal.com"
display_name = "Customer 2"
"#;

    fn within(actual: Usd, target: f64, tolerance: f64) -> bool {
        (actual.dollars() - target).abs() <= target * tolerance
    }

    fn line<'a>(e: &'a Estimate, address: &str, what: &str) -> &'a Line {
        e.lines
            .iter()
            .find(|l| l.address.as_str() == address && l.what.starts_with(what))
            .unwrap_or_else(|| panic!("no line {address} {what}: {:#?}", e.lines))
    }

    #[test]
    fn usd_formats_and_sums_exactly() {
        assert_eq!(Usd::from_dollars(1234.565).to_string(), "$1,234.57");
        assert_eq!(Usd::from_dollars(0.004).to_string(), "$0.00");
        assert_eq!(Usd::from_dollars(-3.65).signed(), "-$3.65");
        assert_eq!(Usd::from_dollars(45.85).signed(), "+$45.85");
        assert_eq!(Usd::from_dollars(1_000_000.0).to_string(), "$1,000,000.00");
        let parts = [0.1, 0.2, 0.3].map(Usd::from_dollars);
        assert_eq!(parts.into_iter().sum::<Usd>(), Usd::from_dollars(0.6));
    }

    #[test]
    fn groups_follow_the_address() {
        assert_eq!(Group::of(&"shared.alb".into()), Group::Shared);
        assert_eq!(
            Group::of(&"customer.acme.service.web".into()),
            Group::Customer("acme".into())
        );
        assert_eq!(Group::of(&"customer.acme".into()), Group::Shared);
    }

    #[test]
    fn example_prices_every_chargeable_resource() {
        let e = estimate(&example_graph(""), &us_east_1());
        assert_eq!(e.not_priced().count(), 0, "{:#?}", e.lines);
        // Two NAT gateways, one per zone, each with its Elastic IP.
        assert_eq!(
            line(&e, "shared.nat_gateway.1", "NAT gateway").monthly,
            Some(Usd::from_dollars(730.0 * 0.045))
        );
        assert!(
            e.lines
                .iter()
                .any(|l| l.address.as_str() == "shared.nat_gateway.2")
        );
        assert_eq!(
            line(&e, "shared.eip.nat_2", "public IPv4").monthly,
            Some(Usd::from_dollars(3.65))
        );
        // The internet-facing load balancer spans two subnets: two public addresses.
        assert_eq!(
            line(&e, "shared.alb", "public IPv4 addresses, 2").monthly,
            Some(Usd::from_dollars(7.3))
        );
        // backend-api: 2 tasks of 256 CPU units / 512 MiB from its task definition.
        assert_eq!(
            line(
                &e,
                "customer.global.service.backend-api",
                "Fargate, 2 × (0.25 vCPU, 0.5 GB)"
            )
            .monthly,
            Some(Usd::from_dollars(
                2.0 * 730.0 * (0.25 * 0.04048 + 0.5 * 0.004445)
            ))
        );
        // Alias records to the load balancer are free; the certificate's CNAME is not.
        assert!(
            !e.lines
                .iter()
                .any(|l| l.address.as_str() == "customer.global.dns_record")
        );
        line(&e, "shared.certificate_record.1", "DNS queries");
        // Only log groups a task definition writes to are charged, for 30 days kept.
        line(
            &e,
            "customer.global.log_group.frontend",
            "log storage, 0.493 GB-month × $0.03",
        );
        assert!(
            !e.lines
                .iter()
                .any(|l| l.address.as_str() == "shared.log_group.frontend")
        );
    }

    #[test]
    fn example_lands_near_the_published_figures() {
        let e = estimate(&example_graph(""), &us_east_1());
        assert!(within(e.shared(), 81.0, 0.25), "shared {}", e.shared());
        let customers = e.customers();
        assert_eq!(
            customers.keys().collect::<Vec<_>>(),
            ["customer1", "global"]
        );
        for (name, usd) in &customers {
            assert!(within(*usd, 38.0, 0.25), "{name} {usd}");
        }
        assert_eq!(e.total(), e.shared() + customers.values().copied().sum());
    }

    #[test]
    fn example_renders_as_a_compact_block() {
        let e = estimate(&example_graph(""), &us_east_1());
        insta::assert_snapshot!("example", render(None, &e));
    }

    #[test]
    fn a_new_customer_adds_exactly_one_customer_cost() {
        let prices = us_east_1();
        let before = estimate(&example_graph(""), &prices);
        let after = estimate(&example_graph(CUSTOMER2), &prices);
        let per_customer = after.customers()["customer2"];
        assert_eq!(per_customer, before.customers()["customer1"]);
        assert_eq!(after.total() - before.total(), per_customer);
        assert_eq!(after.shared(), before.shared());

        let d = delta(&before, &after);
        assert_eq!(d.total.difference(), per_customer);
        let changed: Vec<&Group> = d
            .groups
            .iter()
            .filter(|(_, c)| c.difference() != Usd::default())
            .map(|(g, _)| g)
            .collect();
        assert_eq!(changed, [&Group::Customer("customer2".into())]);
        assert_eq!(d.groups[&Group::Customer("customer2".into())].before, None);
        insta::assert_snapshot!("customer2_added", render(Some(&before), &after));
    }

    #[test]
    fn removing_a_customer_shows_as_removed() {
        let prices = us_east_1();
        let before = estimate(&example_graph(CUSTOMER2), &prices);
        let after = estimate(&example_graph(""), &prices);
        let text = render(Some(&before), &after);
        let removed = before.customers()["customer2"];
        assert!(
            text.contains(&format!(
                "({} a month)",
                (Usd::default() - removed).signed()
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("$0.00  -{removed}, removed")),
            "{text}"
        );
    }

    #[test]
    fn many_unchanged_customers_share_one_row() {
        let extra: String = (1..=12)
            .map(|i| {
                format!(
                    "\n[customers.c{i:02}]\ndomain = \"c{i:02}.freeinterestcal.com\"\ndisplay_name = \"C{i}\"\n"
                )
            })
            .collect();
        let prices = us_east_1();
        let before = estimate(&example_graph(&extra), &prices);
        let after = estimate(&example_graph(&(extra.clone() + CUSTOMER2)), &prices);
        let text = render(Some(&before), &after);
        assert!(text.contains("customer customer2"), "{text}");
        assert!(text.contains("14 other customers"), "{text}");
        assert!(!text.contains("customer c01"), "{text}");
    }

    fn database(class: &str) -> ResourceGraph {
        let mut b = GraphBuilder::new();
        b.add(NodeSpec::new(
            "customer.acme.database",
            "aws_db_instance",
            props! {
                "engine" => "postgres",
                "instance_class" => class,
                "allocated_storage" => 20u32,
                "storage_type" => "gp3",
            },
        ));
        b.build().unwrap()
    }

    #[test]
    fn a_known_database_class_is_priced_with_its_storage() {
        let e = estimate(&database("db.t4g.micro"), &us_east_1());
        assert_eq!(e.not_priced().count(), 0, "{:#?}", e.lines);
        assert_eq!(
            e.customers()["acme"],
            Usd::from_dollars(730.0 * 0.016) + Usd::from_dollars(20.0 * 0.115)
        );
    }

    #[test]
    fn an_unknown_database_class_is_reported_not_priced() {
        let e = estimate(&database("db.x9.colossal"), &us_east_1());
        let missing: Vec<&Line> = e.not_priced().collect();
        assert_eq!(missing.len(), 1, "{:#?}", e.lines);
        assert!(
            missing[0].what.contains("db.x9.colossal"),
            "{:?}",
            missing[0]
        );
        // Its storage is still priced; the unknown class adds nothing rather than a guess.
        assert_eq!(e.total(), Usd::from_dollars(20.0 * 0.115));
        let text = render(None, &e);
        assert!(
            text.contains("not priced: customer.acme.database (database db.x9.colossal"),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_kind_is_reported_not_priced() {
        let mut b = GraphBuilder::new();
        b.add(NodeSpec::new(
            "shared.cache",
            "aws_elasticache_cluster",
            props! {},
        ));
        b.add(NodeSpec::new("shared.vpc", "aws_vpc", props! {}));
        let e = estimate(&b.build().unwrap(), &us_east_1());
        let missing: Vec<&str> = e.not_priced().map(|l| l.address.as_str()).collect();
        assert_eq!(missing, ["shared.cache"]);
    }

    #[test]
    fn public_tasks_pay_for_their_addresses() {
        let mut b = GraphBuilder::new();
        let td = b
            .add(NodeSpec::new(
                "shared.task_definition.web",
                "aws_ecs_task_definition",
                props! { "cpu" => "512", "memory" => "1024" },
            ))
            .output("arn");
        b.add(NodeSpec::new(
            "shared.service.web",
            "aws_ecs_service",
            props! { "task_definition_arn" => td, "desired_count" => 3u32, "assign_public_ip" => true },
        ));
        let e = estimate(&b.build().unwrap(), &us_east_1());
        assert_eq!(
            line(&e, "shared.service.web", "public IPv4 addresses, 3").monthly,
            Some(Usd::from_dollars(3.0 * 730.0 * 0.005))
        );
    }

    fn recorded(
        kind: &str,
        properties: serde_json::Value,
        outputs: serde_json::Value,
    ) -> ResourceState {
        let object = |v: serde_json::Value| -> Properties { v.as_object().unwrap().clone() };
        ResourceState {
            kind: kind.into(),
            status: ResourceStatus::Ready,
            id: None,
            properties: object(properties),
            outputs: object(outputs),
            dependencies: Vec::new(),
            deposed: Vec::new(),
            intent: None,
        }
    }

    #[test]
    fn recorded_state_is_priced_like_the_graph() {
        let arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/dev-acme-web:3";
        let mut state = State::new("dev-app");
        for (address, r) in [
            (
                "customer.acme.task_definition.web",
                recorded(
                    "aws_ecs_task_definition",
                    json!({"cpu": "256", "memory": "512",
                           "containers": [{"name": "web", "log": {"group": "/ecs/acme-web"}}]}),
                    json!({"arn": arn}),
                ),
            ),
            (
                "customer.acme.service.web",
                recorded(
                    "aws_ecs_service",
                    json!({"task_definition_arn": arn, "desired_count": 2, "launch_type": "FARGATE"}),
                    json!({}),
                ),
            ),
            (
                "customer.acme.log_group.web",
                recorded(
                    "aws_cloudwatch_log_group",
                    json!({"name": "/ecs/acme-web", "retention_in_days": 30}),
                    json!({}),
                ),
            ),
        ] {
            state.resources.insert(address.into(), r);
        }
        let from_state = estimate_state(&state, &us_east_1());

        let mut b = GraphBuilder::new();
        b.add(NodeSpec::new(
            "customer.acme.log_group.web",
            "aws_cloudwatch_log_group",
            props! { "name" => "/ecs/acme-web", "retention_in_days" => 30u32 },
        ));
        let containers = Value::List(vec![Value::Map(
            [(
                "log".to_string(),
                Value::Map(
                    [(
                        "group".to_string(),
                        Value::reference("customer.acme.log_group.web", "name"),
                    )]
                    .into(),
                ),
            )]
            .into(),
        )]);
        b.add(NodeSpec::new(
            "customer.acme.task_definition.web",
            "aws_ecs_task_definition",
            props! { "cpu" => "256", "memory" => "512", "containers" => containers },
        ));
        b.add(NodeSpec::new(
            "customer.acme.service.web",
            "aws_ecs_service",
            props! {
                "task_definition_arn" => Value::reference("customer.acme.task_definition.web", "arn"),
                "desired_count" => 2u32,
            },
        ));
        let from_graph = estimate(&b.build().unwrap(), &us_east_1());

        assert_eq!(
            from_state.not_priced().count(),
            0,
            "{:#?}",
            from_state.lines
        );
        assert_eq!(from_state.lines, from_graph.lines);
        assert_eq!(from_state.lines.len(), 3, "{:#?}", from_state.lines);
    }
}
