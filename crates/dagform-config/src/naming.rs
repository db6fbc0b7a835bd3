//! Names AWS accepts, and listener rule priorities that stay put.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Load balancer and target group names may have at most 32 characters.
pub const ELB_NAME_MAX: usize = 32;

/// Shortens `wanted` to fit AWS's 32-character limit for load balancer and target group names:
/// a prefix plus a short hash of the whole name, so the result is deterministic and distinct
/// names stay distinct.
pub fn elb_name(wanted: &str) -> String {
    if wanted.len() <= ELB_NAME_MAX {
        return wanted.to_owned();
    }
    let hash = &hex::encode(Sha256::digest(wanted.as_bytes()))[..7];
    let prefix = wanted[..ELB_NAME_MAX - hash.len() - 1].trim_end_matches('-');
    format!("{prefix}-{hash}")
}

/// Each customer owns a block of this many listener rule priorities.
pub const PRIORITY_BLOCK: u32 = 10;
/// Listener rule priorities run from 1 to 50,000.
pub const MAX_PRIORITY: u32 = 50_000;

/// Assigns each customer a block of rule priorities. Customers that already have one keep it;
/// new customers, in the order given, take the lowest free blocks. Adding or removing a customer
/// therefore never renumbers another's rules.
pub fn allocate_priority_blocks(
    customers: &[&str],
    existing: &BTreeMap<String, u32>,
) -> Result<BTreeMap<String, u32>, String> {
    let mut used: BTreeSet<u32> = BTreeSet::new();
    let mut out = BTreeMap::new();
    for c in customers {
        if let Some(&block) = existing.get(*c)
            && used.insert(block)
        {
            out.insert((*c).to_owned(), block);
        }
    }
    let mut next = 1;
    for c in customers {
        if out.contains_key(*c) {
            continue;
        }
        while used.contains(&next) {
            next += 1;
        }
        if (next + 1) * PRIORITY_BLOCK > MAX_PRIORITY {
            return Err(format!(
                "no listener rule priorities left for customer `{c}` (at most {} customers per listener)",
                MAX_PRIORITY / PRIORITY_BLOCK - 1
            ));
        }
        used.insert(next);
        out.insert((*c).to_owned(), next);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept_and_long_ones_shortened_deterministically() {
        assert_eq!(
            elb_name("dev-customer1-backend-api-tg"),
            "dev-customer1-backend-api-tg"
        );
        let long = "dev-a-very-long-customer-name-backend-api-tg";
        let short = elb_name(long);
        assert!(short.len() <= 32, "{short}");
        assert_eq!(short, elb_name(long));
        assert_ne!(short, elb_name("dev-a-very-long-customer-name-frontend-tg"));
        assert!(!short.starts_with('-') && !short.ends_with('-'));
    }

    #[test]
    fn blocks_are_stable_when_customers_come_and_go() {
        let first = allocate_priority_blocks(&["global", "customer1"], &BTreeMap::new()).unwrap();
        assert_eq!(first["global"], 1);
        assert_eq!(first["customer1"], 2);
        // customer2 arrives at the front of the file: nobody else moves.
        let second =
            allocate_priority_blocks(&["customer2", "global", "customer1"], &first).unwrap();
        assert_eq!(
            (second["global"], second["customer1"], second["customer2"]),
            (1, 2, 3)
        );
        // global leaves: customer1 and customer2 keep theirs; a newcomer reuses the gap.
        let third =
            allocate_priority_blocks(&["customer2", "customer1", "customer3"], &second).unwrap();
        assert_eq!(
            (third["customer1"], third["customer2"], third["customer3"]),
            (2, 3, 1)
        );
    }
}
