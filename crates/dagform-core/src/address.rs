//! Stable node addresses such as `shared.vpc` or `customer.customer1.service.frontend`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The stable name of a node in the resource graph and in the state file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Address(String);

impl Address {
    pub fn new(address: impl Into<String>) -> Self {
        Self(address.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this address is `prefix` itself or lies below it (`customer.a` contains
    /// `customer.a.service.web` but not `customer.ab`).
    pub fn is_within(&self, prefix: &str) -> bool {
        self.0 == prefix
            || (self.0.starts_with(prefix) && self.0.as_bytes().get(prefix.len()) == Some(&b'.'))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Address {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Address {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl AsRef<str> for Address {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_matches_whole_segments_only() {
        let a = Address::new("customer.acme.service.web");
        assert!(a.is_within("customer.acme"));
        assert!(a.is_within("customer.acme.service.web"));
        assert!(!a.is_within("customer.ac"));
        assert!(!a.is_within("shared"));
    }
}
