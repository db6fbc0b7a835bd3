//! Checks of property values beyond their types, shared by the kinds' `check`s.

use dagform_core::ResourceError;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

/// A `Name` tag: 1 to 256 characters.
pub fn check_name(name: &str) -> Result<(), ResourceError> {
    let len = name.chars().count();
    if len == 0 || len > 256 {
        return Err(ResourceError::invalid(format!(
            "name `{name}` must be 1 to 256 characters long"
        )));
    }
    Ok(())
}

/// An IPv4 CIDR block with a prefix length in `prefixes` and no host bits set (canonical, so
/// the value reads back unchanged).
pub fn check_cidr(
    what: &str,
    cidr: &str,
    prefixes: RangeInclusive<u8>,
) -> Result<(), ResourceError> {
    let bad = |why: &str| ResourceError::invalid(format!("{what} `{cidr}`: {why}"));
    let (addr, len) = cidr
        .split_once('/')
        .ok_or_else(|| bad("not an IPv4 CIDR block (a.b.c.d/n)"))?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
    let len: u8 = len.parse().map_err(|_| bad("bad prefix length"))?;
    if !prefixes.contains(&len) {
        return Err(bad(&format!(
            "prefix length must be /{} to /{}",
            prefixes.start(),
            prefixes.end()
        )));
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    if u32::from(addr) & !mask != 0 {
        let canonical = Ipv4Addr::from(u32::from(addr) & mask);
        return Err(bad(&format!(
            "host bits set; did you mean {canonical}/{len}?"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_cidr, check_name};

    #[test]
    fn cidr_validation() {
        assert!(check_cidr("cidr", "10.0.0.0/16", 16..=28).is_ok());
        assert!(check_cidr("cidr", "0.0.0.0/0", 0..=32).is_ok());
        assert!(check_cidr("cidr", "10.0.1.0/24", 16..=28).is_ok());
        assert!(check_cidr("cidr", "10.0.0.1/16", 16..=28).is_err());
        assert!(check_cidr("cidr", "10.0.0.0/8", 16..=28).is_err());
        assert!(check_cidr("cidr", "10.0.0/16", 16..=28).is_err());
        assert!(check_cidr("cidr", "10.0.0.0", 16..=28).is_err());
        assert!(check_cidr("cidr", "10.0.0.0/33", 0..=32).is_err());
    }

    #[test]
    fn name_length() {
        assert!(check_name("web").is_ok());
        assert!(check_name(&"é".repeat(256)).is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(&"a".repeat(257)).is_err());
    }
}
