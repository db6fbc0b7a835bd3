//! Price tables: unit prices for one region and the usage assumptions an estimate rests on,
//! kept as TOML so they can be read, checked against AWS's pages and overridden.

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The tables compiled into the binary, by region.
const BUILTIN: &[(&str, &str)] = &[("us-east-1", include_str!("../../prices/us-east-1.toml"))];

/// Unit prices for one region in US dollars, and the usage assumed where the configuration
/// says nothing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    pub region: String,
    pub currency: String,
    /// When the prices were read off the sources.
    pub as_of: String,
    pub sources: Vec<String>,
    pub assumptions: Assumptions,
    pub nat_gateway: NatGatewayPrices,
    pub load_balancer: LoadBalancerPrices,
    pub public_ipv4: PublicIpv4Prices,
    pub fargate: FargatePrices,
    pub route53: Route53Prices,
    pub logs: LogsPrices,
    pub secrets_manager: SecretsManagerPrices,
    pub cloudwatch: CloudWatchPrices,
    pub waf: WafPrices,
    pub ecr: EcrPrices,
    pub rds: RdsPrices,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assumptions {
    pub hours_per_month: f64,
    pub lcus_per_load_balancer: f64,
    pub nat_gb_per_gateway: f64,
    pub log_gb_per_service: f64,
    pub log_months_kept_without_retention: f64,
    pub queries_per_record: f64,
    pub ecr_gb_per_repository: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatGatewayPrices {
    pub hour: f64,
    pub gb_processed: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancerPrices {
    pub hour: f64,
    pub lcu_hour: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicIpv4Prices {
    pub hour: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FargatePrices {
    pub vcpu_hour: f64,
    pub gb_hour: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route53Prices {
    pub hosted_zone_month: f64,
    pub million_queries: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsPrices {
    pub ingestion_gb: f64,
    pub storage_gb_month: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsManagerPrices {
    pub secret_month: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchPrices {
    pub alarm_month: f64,
}

/// A web ACL and each rule in it, per month (requests inspected are left out).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WafPrices {
    pub web_acl_month: f64,
    pub rule_month: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EcrPrices {
    pub storage_gb_month: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdsPrices {
    /// Engine (`postgres`) → instance class (`db.t4g.micro`) → single-AZ price per hour.
    pub instance_hour: BTreeMap<String, BTreeMap<String, f64>>,
    /// Storage type (`gp3`) → single-AZ price per GB-month.
    pub storage_gb_month: BTreeMap<String, f64>,
}

impl PriceTable {
    /// The table compiled in for `region`.
    pub fn builtin(region: &str) -> Result<Self> {
        let Some((_, source)) = BUILTIN.iter().find(|(r, _)| *r == region) else {
            let known: Vec<&str> = BUILTIN.iter().map(|(r, _)| *r).collect();
            bail!(
                "no built-in price table for region {region} (built in: {}); \
                 write one for it, starting from a copy of the us-east-1 table",
                known.join(", ")
            );
        };
        Self::parse(source, &format!("built-in price table {region}"))
    }

    /// A table from a file, replacing the built-in one.
    pub fn load(path: &Path) -> Result<Self> {
        let source = std::fs::read_to_string(path)
            .with_context(|| format!("reading price table {}", path.display()))?;
        Self::parse(&source, &format!("price table {}", path.display()))
    }

    /// The table for a stack in `region`: `file` when given, else the built-in one. A file
    /// written for another region is refused, so an estimate never silently mixes regions.
    pub fn for_region(region: &str, file: Option<&Path>) -> Result<Self> {
        let Some(path) = file else {
            return Self::builtin(region);
        };
        let table = Self::load(path)?;
        if table.region != region {
            bail!(
                "price table {} is for region {}, but the stack is in {region}",
                path.display(),
                table.region
            );
        }
        Ok(table)
    }

    /// Parses and checks a table; `origin` names it in errors.
    pub fn parse(source: &str, origin: &str) -> Result<Self> {
        let raw: toml::Table =
            toml::from_str(source).with_context(|| format!("parsing {origin}"))?;
        check_amounts(&raw, "").with_context(|| format!("checking {origin}"))?;
        let table: Self = raw
            .try_into()
            .with_context(|| format!("reading {origin}"))?;
        if table.currency != "USD" {
            bail!(
                "{origin}: currency {} is not supported, only USD",
                table.currency
            );
        }
        // A price without its source cannot be checked or updated.
        if table.sources.is_empty() {
            bail!("{origin}: sources must name the pages the prices come from");
        }
        if table.assumptions.hours_per_month <= 0.0 {
            bail!("{origin}: assumptions.hours_per_month must be more than 0");
        }
        Ok(table)
    }

    /// One line naming what an estimate assumes and what it leaves out.
    pub fn note(&self) -> String {
        let a = &self.assumptions;
        format!(
            "Assumes {} h/month, {} LCU per load balancer, {} GB per NAT gateway, {} GB of logs \
             per service, {} queries per DNS record; excludes data transfer out. \
             Prices: {} on-demand as of {}.",
            number(a.hours_per_month),
            number(a.lcus_per_load_balancer),
            number(a.nat_gb_per_gateway),
            number(a.log_gb_per_service),
            count(a.queries_per_record),
            self.region,
            self.as_of
        )
    }
}

/// Every number in a table is a price or a usage: negative or non-finite ones are mistakes.
fn check_amounts(table: &toml::Table, path: &str) -> Result<()> {
    for (key, value) in table {
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let amount = match value {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            toml::Value::Table(t) => {
                check_amounts(t, &here)?;
                continue;
            }
            _ => continue,
        };
        if !amount.is_finite() || amount < 0.0 {
            bail!("{here} = {amount}: amounts must be zero or more");
        }
    }
    Ok(())
}

/// A quantity as people write it: `10`, `0.25`, `1.5`.
pub(crate) fn number(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A unit price: `$0.50`, `$0.045`, `$0.004445`.
pub(crate) fn rate(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0');
    let decimals = s.split_once('.').map_or(0, |(_, d)| d.len());
    format!("${s}{}", "0".repeat(2usize.saturating_sub(decimals)))
}

/// A large count, shortened: `1M`, `250k`.
fn count(x: f64) -> String {
    if x >= 1e6 {
        format!("{}M", number(x / 1e6))
    } else if x >= 1e3 {
        format!("{}k", number(x / 1e3))
    } else {
        number(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_reads_and_carries_its_date_and_sources() {
        let t = PriceTable::builtin("us-east-1").unwrap();
        assert_eq!(t.region, "us-east-1");
        assert_eq!(t.as_of, "2025-06");
        assert!(
            t.sources
                .iter()
                .all(|s| s.starts_with("https://aws.amazon.com/"))
        );
        assert_eq!(t.nat_gateway.hour, 0.045);
        assert_eq!(t.fargate.vcpu_hour, 0.04048);
        assert_eq!(t.rds.instance_hour["postgres"]["db.t4g.micro"], 0.016);
        assert_eq!(t.assumptions.hours_per_month, 730.0);
    }

    #[test]
    fn unknown_region_is_refused_by_name() {
        let err = PriceTable::builtin("eu-west-3").unwrap_err().to_string();
        assert!(err.contains("eu-west-3"), "{err}");
        assert!(err.contains("built in: us-east-1"), "{err}");
    }

    #[test]
    fn file_overrides_the_builtin_table_for_its_region_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.toml");
        let source = BUILTIN[0].1.replace(
            "lcus_per_load_balancer = 0.25",
            "lcus_per_load_balancer = 2",
        );
        std::fs::write(&path, &source).unwrap();
        let t = PriceTable::for_region("us-east-1", Some(&path)).unwrap();
        assert_eq!(t.assumptions.lcus_per_load_balancer, 2.0);
        let err = PriceTable::for_region("eu-west-1", Some(&path))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is for region us-east-1"), "{err}");

        let missing = dir.path().join("missing.toml");
        let err = format!("{:#}", PriceTable::load(&missing).unwrap_err());
        assert!(err.contains("missing.toml"), "{err}");
    }

    #[test]
    fn mistakes_in_a_table_are_named() {
        let negative = BUILTIN[0]
            .1
            .replace("gb_hour = 0.004445", "gb_hour = -0.004445");
        let err = format!("{:#}", PriceTable::parse(&negative, "t").unwrap_err());
        assert!(err.contains("fargate.gb_hour"), "{err}");

        let typo = BUILTIN[0]
            .1
            .replace("[ecr]\nstorage_gb_month", "[ecr]\nstorage_gb_mnth");
        let err = format!("{:#}", PriceTable::parse(&typo, "t").unwrap_err());
        assert!(err.contains("storage_gb_mnth"), "{err}");
    }

    #[test]
    fn note_states_the_assumptions() {
        let note = PriceTable::builtin("us-east-1").unwrap().note();
        assert_eq!(rate(0.5), "$0.50");
        assert_eq!(rate(0.045), "$0.045");
        assert_eq!(rate(0.004445), "$0.004445");
        assert_eq!(rate(2.0), "$2.00");
        assert_eq!(
            note,
            "Assumes 730 h/month, 0.25 LCU per load balancer, 10 GB per NAT gateway, 0.5 GB of \
             logs per service, 1M queries per DNS record; excludes data transfer out. Prices: \
             us-east-1 on-demand as of 2025-06."
        );
    }
}
