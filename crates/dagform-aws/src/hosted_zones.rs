//! Which public hosted zones of the account hold given domains: what expansion must know
//! before it starts about customers whose domains lie outside the stack's zone.

use crate::AwsClients;
use crate::error::{AwsError, classify};
use std::collections::BTreeMap;

/// For each of `domains` held by a public hosted zone of the account (its own or a parent's),
/// the name of the deepest such zone, without a final dot; domains no zone holds are left out.
pub async fn public_zones_holding(
    clients: &AwsClients,
    domains: &[String],
) -> Result<BTreeMap<String, String>, AwsError> {
    let mut zones: Vec<String> = Vec::new();
    let mut marker = None;
    loop {
        let out = clients
            .route53
            .list_hosted_zones()
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| AwsError::Call {
                operation: "ListHostedZones".into(),
                message: classify("ListHostedZones", e).to_string(),
            })?;
        zones.extend(
            out.hosted_zones()
                .iter()
                .filter(|z| !z.config().is_some_and(|c| c.private_zone()))
                .map(|z| bare_name(z.name())),
        );
        match out.next_marker() {
            Some(m) if out.is_truncated() => marker = Some(m.to_owned()),
            _ => break,
        }
    }
    Ok(domains
        .iter()
        .filter_map(|domain| {
            deepest_zone_holding(&bare_name(domain), &zones).map(|z| (domain.clone(), z))
        })
        .collect())
}

/// A DNS name in lower case without its final dot.
fn bare_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The longest of `zones` that is `domain` or one of its parents.
fn deepest_zone_holding(domain: &str, zones: &[String]) -> Option<String> {
    zones
        .iter()
        .filter(|z| domain == z.as_str() || domain.ends_with(&format!(".{z}")))
        .max_by_key(|z| z.len())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deepest_zone_holding_a_domain_wins() {
        let zones: Vec<String> = ["acme-corp.com", "eu.acme-corp.com", "corp.com"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            deepest_zone_holding("shop.eu.acme-corp.com", &zones).as_deref(),
            Some("eu.acme-corp.com")
        );
        assert_eq!(
            deepest_zone_holding("app.acme-corp.com", &zones).as_deref(),
            Some("acme-corp.com")
        );
        assert_eq!(
            deepest_zone_holding("acme-corp.com", &zones).as_deref(),
            Some("acme-corp.com")
        );
        // A suffix that is not a parent does not hold it.
        assert_eq!(deepest_zone_holding("app.othercorp.com", &zones), None);
    }
}
