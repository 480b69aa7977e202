//! Address ranges as NetworkPolicy `ipBlock`s write them (`10.244.0.0/16`,
//! `fd00::/64`, and a bare address meaning that one address), with the two
//! questions vnest asks of them: does one range hold another, and which
//! ranges are the host's. The supervisor computes the host's ranges and
//! hands them to each syncer as `--host-range` flags; both sides read and
//! write them with this type.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address range: an address and how many leading bits are fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    address: IpAddr,
    prefix: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not an address or ADDRESS/PREFIX")]
    Syntax(String),
    #[error("{0:?}: the prefix length is longer than the address")]
    Prefix(String),
}

impl Cidr {
    /// The range of one address.
    pub fn host(address: IpAddr) -> Self {
        Self {
            address,
            prefix: max_prefix(address),
        }
    }

    /// The whole address space of `address`'s family (`0.0.0.0/0`, `::/0`).
    pub fn everything(ipv6: bool) -> Self {
        let address = if ipv6 {
            IpAddr::from([0u16; 8])
        } else {
            IpAddr::from([0u8; 4])
        };
        Self { address, prefix: 0 }
    }

    /// How many leading bits are fixed (0 for the whole address space).
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv6(&self) -> bool {
        self.address.is_ipv6()
    }

    /// Whether every address of `other` is in `self` (a range holds
    /// itself; ranges of different families hold nothing of each other).
    pub fn contains(&self, other: &Cidr) -> bool {
        if self.is_ipv6() != other.is_ipv6() || other.prefix < self.prefix {
            return false;
        }
        bits(self.address) & mask(self.address, self.prefix)
            == bits(other.address) & mask(self.address, self.prefix)
    }

    /// Whether `address` is in this range.
    pub fn contains_address(&self, address: IpAddr) -> bool {
        self.contains(&Cidr::host(address))
    }
}

/// `ranges` sorted, each once, without those inside another (an address
/// inside a listed subnet adds nothing).
pub fn without_nested(mut ranges: Vec<Cidr>) -> Vec<Cidr> {
    ranges.sort();
    ranges.dedup();
    let kept: Vec<Cidr> = ranges
        .iter()
        .filter(|r| !ranges.iter().any(|o| o != *r && o.contains(r)))
        .copied()
        .collect();
    kept
}

fn max_prefix(address: IpAddr) -> u8 {
    if address.is_ipv6() { 128 } else { 32 }
}

fn bits(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(address: IpAddr, prefix: u8) -> u128 {
    let width = u32::from(max_prefix(address));
    let host_bits = width - u32::from(prefix);
    let all = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    all.checked_shl(host_bits).map_or(0, |m| m & all)
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = match s.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (s, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| CidrError::Syntax(s.to_owned()))?;
        let prefix = match prefix {
            None => max_prefix(address),
            Some(p) => p.parse().map_err(|_| CidrError::Syntax(s.to_owned()))?,
        };
        if prefix > max_prefix(address) {
            return Err(CidrError::Prefix(s.to_owned()));
        }
        Ok(Self { address, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_round_trip_through_their_text() {
        for text in [
            "10.244.0.0/16",
            "172.30.0.1/32",
            "0.0.0.0/0",
            "fd00::/64",
            "::/0",
        ] {
            assert_eq!(cidr(text).to_string(), text);
        }
        assert_eq!(cidr("172.30.0.1").to_string(), "172.30.0.1/32");
        assert_eq!(cidr("fd00::1").to_string(), "fd00::1/128");
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "x",
            "10.0.0.0/-1",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_range_holds_the_ranges_inside_it() {
        let cases = [
            ("0.0.0.0/0", "10.244.1.0/24", true),
            ("10.244.0.0/16", "10.244.1.0/24", true),
            ("10.244.1.0/24", "10.244.0.0/16", false),
            ("10.244.0.0/16", "10.245.0.0/24", false),
            ("10.244.0.0/16", "10.244.0.0/16", true),
            ("10.244.1.7/32", "10.244.1.7/32", true),
            ("10.244.1.7/32", "10.244.1.8/32", false),
            // Bits past the prefix do not count.
            ("10.244.3.3/16", "10.244.9.0/24", true),
            ("::/0", "fd00::1/128", true),
            ("fd00::/64", "fd00:0:0:1::/64", false),
            ("0.0.0.0/0", "fd00::1/128", false),
            ("::/0", "10.0.0.1/32", false),
        ];
        for (outer, inner, holds) in cases {
            assert_eq!(
                cidr(outer).contains(&cidr(inner)),
                holds,
                "{outer} ⊇ {inner}"
            );
        }
        let ranges = [
            "10.244.1.5",
            "10.244.0.0/16",
            "172.30.0.1",
            "172.30.0.1/32",
            "169.254.0.0/16",
        ];
        let kept = without_nested(ranges.iter().map(|r| cidr(r)).collect());
        let kept: Vec<String> = kept.iter().map(Cidr::to_string).collect();
        assert_eq!(kept, ["10.244.0.0/16", "169.254.0.0/16", "172.30.0.1/32"]);
        assert!(Cidr::everything(false).contains_address("172.30.0.1".parse().unwrap()));
        assert!(Cidr::everything(true).contains_address("fd00::5".parse().unwrap()));
    }
}
