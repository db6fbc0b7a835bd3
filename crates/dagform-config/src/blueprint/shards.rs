//! Load balancer shards: an Application Load Balancer takes at most 100 listener rules and 100
//! target groups, so customers are spread over as many load balancers as they need. A customer,
//! once placed, stays on its load balancer; newcomers fill the lowest one with room.

use crate::model::Config;
use dagform_core::Address;
use std::collections::{BTreeMap, BTreeSet};

/// Listener rules an Application Load Balancer accepts, besides its listeners' default rules.
pub const MAX_RULES_PER_LOAD_BALANCER: u32 = 100;
/// Target groups an Application Load Balancer can route to.
pub const MAX_TARGET_GROUPS_PER_LOAD_BALANCER: u32 = 100;
/// Certificates an Application Load Balancer's listener serves by SNI besides its default
/// one: AWS's 25 per load balancer, the default counted (as the emulator counts it), leaves 24.
/// Each customer with a domain of its own takes one.
pub const MAX_SNI_CERTIFICATES_PER_LOAD_BALANCER: u32 = 24;

/// One of the stack's load balancers, numbered from 1. The first keeps the addresses and names
/// a stack with one load balancer always had; the others get numbered ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shard(pub u32);

impl Shard {
    pub const FIRST: Shard = Shard(1);

    /// What follows a shared address's first part: nothing for the first, `_{n}` after.
    fn address_suffix(self) -> String {
        if self == Self::FIRST {
            String::new()
        } else {
            format!("_{}", self.0)
        }
    }

    pub fn load_balancer(self) -> Address {
        Address::new(format!("shared.alb{}", self.address_suffix()))
    }

    /// The listener on `protocol` (`http` or `https`).
    pub fn listener(self, protocol: &str) -> Address {
        Address::new(format!(
            "shared.listener{}.{protocol}",
            self.address_suffix()
        ))
    }

    pub fn default_target_group(self) -> Address {
        Address::new(format!(
            "shared.target_group.default{}",
            self.address_suffix()
        ))
    }

    /// An AWS name for this shard's copy of `base`: `base` itself for the first, `{base}-{n}`
    /// after (the caller shortens it to AWS's limits).
    pub fn name(self, base: &str) -> String {
        if self == Self::FIRST {
            base.to_owned()
        } else {
            format!("{base}-{}", self.0)
        }
    }

    /// The name of a stack output for this shard: `base` for the first, `{base}_{n}` after.
    pub fn output(self, base: &str) -> String {
        format!("{base}{}", self.address_suffix())
    }

    /// The shard whose load balancer or listener lives at `address`, if it is one of those.
    pub fn of_ingress_address(address: &Address) -> Option<Shard> {
        let rest = address.as_str().strip_prefix("shared.")?;
        let numbered = |s: &str| match s {
            "" => Some(Self::FIRST),
            s => s
                .strip_prefix('_')?
                .parse()
                .ok()
                .filter(|n| *n > 1)
                .map(Shard),
        };
        if let Some(s) = rest.strip_prefix("alb") {
            return numbered(s);
        }
        let (listener, protocol) = rest.strip_prefix("listener")?.split_once('.')?;
        matches!(protocol, "http" | "https")
            .then(|| numbered(listener))
            .flatten()
    }
}

/// How many customers fit one load balancer with `routed_services` services receiving traffic
/// each: every one has a listener rule and a target group per customer, and each load balancer
/// has its own default target group. `None`: no limit (nothing is routed).
pub fn capacity(routed_services: u32) -> Option<u32> {
    if routed_services == 0 {
        return None;
    }
    let by_rules = MAX_RULES_PER_LOAD_BALANCER / routed_services;
    let by_target_groups = (MAX_TARGET_GROUPS_PER_LOAD_BALANCER - 1) / routed_services;
    Some(by_rules.min(by_target_groups).max(1))
}

/// The computed capacity of `config`'s load balancers.
pub fn computed_capacity(config: &Config) -> Option<u32> {
    let routed = config
        .services
        .values()
        .filter(|s| s.get_ref().is_routed())
        .count();
    capacity(u32::try_from(routed).unwrap_or(u32::MAX))
}

/// The customers each load balancer takes: `[load_balancer] customers_per_load_balancer`, or
/// as many as fit.
pub fn customers_per_load_balancer(config: &Config) -> Option<u32> {
    config
        .load_balancer
        .customers_per_load_balancer
        .as_ref()
        .map(|n| *n.get_ref())
        .or_else(|| computed_capacity(config))
}

/// The load balancer of each customer in `customers`. Those `held` places keep theirs, even on
/// a load balancer now fuller than `capacity` allows; newcomers, in the order given, take the
/// lowest one with room: a seat within `capacity` and, for those in `own_certificate` (a
/// domain of their own, served by SNI), a certificate within
/// [`MAX_SNI_CERTIFICATES_PER_LOAD_BALANCER`], whichever binds first.
pub fn place_customers(
    customers: &[&str],
    held: &BTreeMap<String, Shard>,
    capacity: Option<u32>,
    own_certificate: &BTreeSet<&str>,
) -> BTreeMap<String, Shard> {
    let mut placed = BTreeMap::new();
    // Customers and SNI certificates on each load balancer.
    let mut taken: BTreeMap<Shard, (u32, u32)> = BTreeMap::new();
    let mut seat = |c: &str, shard: Shard, taken: &mut BTreeMap<Shard, (u32, u32)>| {
        placed.insert(c.to_owned(), shard);
        let (customers, certificates) = taken.entry(shard).or_default();
        *customers += 1;
        *certificates += u32::from(own_certificate.contains(c));
    };
    for c in customers {
        if let Some(&shard) = held.get(*c) {
            seat(c, shard, &mut taken);
        }
    }
    for c in customers {
        if held.contains_key(*c) {
            continue;
        }
        let needs_certificate = own_certificate.contains(c);
        let mut shard = Shard::FIRST;
        loop {
            let (customers, certificates) = taken.get(&shard).copied().unwrap_or_default();
            let seats_full = capacity.is_some_and(|capacity| customers >= capacity);
            let certificates_full =
                needs_certificate && certificates >= MAX_SNI_CERTIFICATES_PER_LOAD_BALANCER;
            if !seats_full && !certificates_full {
                break;
            }
            shard = Shard(shard.0 + 1);
        }
        seat(c, shard, &mut taken);
    }
    placed
}

/// The load balancers the stack has: the first always, and every other one a customer is on.
pub fn shards_in_use(placement: &BTreeMap<String, Shard>) -> BTreeSet<Shard> {
    std::iter::once(Shard::FIRST)
        .chain(placement.values().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(pairs: &[(&str, u32)]) -> BTreeMap<String, Shard> {
        pairs
            .iter()
            .map(|(c, n)| ((*c).to_owned(), Shard(*n)))
            .collect()
    }

    fn shards(placement: &BTreeMap<String, Shard>, order: &[&str]) -> Vec<u32> {
        order.iter().map(|c| placement[*c].0).collect()
    }

    #[test]
    fn capacity_follows_the_rule_and_target_group_quotas() {
        // Two routed services: 50 customers by rules, 49 by target groups (one is the default).
        assert_eq!(capacity(2), Some(49));
        assert_eq!(capacity(1), Some(99));
        assert_eq!(capacity(3), Some(33));
        assert_eq!(capacity(9), Some(11));
        assert_eq!(capacity(0), None);
    }

    #[test]
    fn newcomers_fill_the_lowest_load_balancer_with_room() {
        let order = ["a", "b", "c", "d", "e"];
        let first = place_customers(&order, &BTreeMap::new(), Some(2), &BTreeSet::new());
        assert_eq!(shards(&first, &order), [1, 1, 2, 2, 3]);
        assert_eq!(
            shards_in_use(&first),
            BTreeSet::from([Shard(1), Shard(2), Shard(3)])
        );
        let unlimited = place_customers(&order, &BTreeMap::new(), None, &BTreeSet::new());
        assert_eq!(shards(&unlimited, &order), [1, 1, 1, 1, 1]);
    }

    #[test]
    fn placed_customers_never_move() {
        let before = held(&[("a", 1), ("b", 1), ("c", 2), ("d", 2), ("e", 3)]);
        // `b` leaves and `f` arrives at the top of the file: `f` takes `b`'s place on the first,
        // and nobody else moves.
        let order = ["f", "a", "c", "d", "e"];
        let after = place_customers(&order, &before, Some(2), &BTreeSet::new());
        assert_eq!(shards(&after, &order), [1, 1, 2, 2, 3]);
        // Held placements are kept even where the load balancer is now over capacity.
        let order = ["a", "b", "c", "g"];
        let after = place_customers(
            &order,
            &held(&[("a", 1), ("b", 1), ("c", 1)]),
            Some(2),
            &BTreeSet::new(),
        );
        assert_eq!(shards(&after, &order), [1, 1, 1, 2]);
    }

    #[test]
    fn removing_customers_keeps_the_others_and_drops_an_emptied_load_balancer() {
        let before = held(&[("a", 1), ("b", 1), ("c", 2), ("d", 2), ("e", 3)]);
        let order = ["a", "b", "c", "d"];
        let after = place_customers(&order, &before, Some(2), &BTreeSet::new());
        assert_eq!(shards(&after, &order), [1, 1, 2, 2]);
        assert_eq!(shards_in_use(&after), BTreeSet::from([Shard(1), Shard(2)]));
        // The middle one emptied: it goes, the third stays; the first is always there.
        let order = ["e"];
        let after = place_customers(&order, &before, Some(2), &BTreeSet::new());
        assert_eq!(shards_in_use(&after), BTreeSet::from([Shard(1), Shard(3)]));
    }

    #[test]
    fn own_domain_certificates_open_another_load_balancer_when_they_bind_first() {
        let names: Vec<String> = (0..30).map(|i| format!("c{i}")).collect();
        let order: Vec<&str> = names.iter().map(String::as_str).collect();
        // Every customer brings a certificate: 24 fit the first, the rest go to the second,
        // although 49 would fit by rules and target groups.
        let all: BTreeSet<&str> = order.iter().copied().collect();
        let placed = place_customers(&order, &BTreeMap::new(), Some(49), &all);
        assert!(order[..24].iter().all(|c| placed[*c] == Shard(1)));
        assert!(order[24..].iter().all(|c| placed[*c] == Shard(2)));
        // Customers without one still fill the first's seats.
        let some: BTreeSet<&str> = order[..26].iter().copied().collect();
        let placed = place_customers(&order, &BTreeMap::new(), Some(49), &some);
        assert_eq!(placed["c24"], Shard(2));
        assert_eq!(placed["c25"], Shard(2));
        assert!(order[26..].iter().all(|c| placed[*c] == Shard(1)));
    }

    #[test]
    fn the_first_load_balancer_keeps_its_addresses() {
        assert_eq!(Shard::FIRST.load_balancer().as_str(), "shared.alb");
        assert_eq!(
            Shard::FIRST.listener("https").as_str(),
            "shared.listener.https"
        );
        assert_eq!(Shard(2).load_balancer().as_str(), "shared.alb_2");
        assert_eq!(Shard(2).listener("http").as_str(), "shared.listener_2.http");
        assert_eq!(Shard(3).name("dev-app-alb"), "dev-app-alb-3");
        for s in [Shard(1), Shard(2), Shard(12)] {
            assert_eq!(Shard::of_ingress_address(&s.load_balancer()), Some(s));
            assert_eq!(Shard::of_ingress_address(&s.listener("https")), Some(s));
            assert_eq!(Shard::of_ingress_address(&s.listener("http")), Some(s));
        }
        assert_eq!(Shard::of_ingress_address(&"shared.alb_1".into()), None);
        assert_eq!(Shard::of_ingress_address(&"shared.zone".into()), None);
        assert_eq!(
            Shard::of_ingress_address(&"shared.target_group.default".into()),
            None
        );
    }
}
