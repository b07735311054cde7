//! Addresses of a plan: IPv4 prefixes, the default pool, the size of a run's block, and the
//! layout of service attachment pools inside it (see the plan's guarantees on addresses).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::Serialize;

use crate::scenario::types::{LinkEnd, Scenario};

use super::PlanError;

/// Smallest block a run takes from the pool (a /24).
const MIN_BLOCK: u64 = 256;

/// An IPv4 prefix, always normalised to its network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    pub(super) addr: Ipv4Addr,
    pub(super) len: u8,
}

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Ipv4Net, PlanError> {
        if len > 32 {
            return Err(PlanError::BadNet(format!("{addr}/{len}")));
        }
        let mask = Self::mask(len);
        Ok(Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        })
    }
    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - len)
        }
    }
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }
    pub fn prefix_len(&self) -> u8 {
        self.len
    }
    /// Number of addresses.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.len)
    }
    /// The `i`-th address (no bounds check beyond the prefix: callers stay inside).
    pub fn nth(&self, i: u64) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(i as u32))
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.len) == u32::from(self.addr)
    }
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Net {
    type Err = PlanError;
    fn from_str(s: &str) -> Result<Self, PlanError> {
        let bad = || PlanError::BadNet(s.to_string());
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        let net = Ipv4Net::new(addr, len)?;
        if net.addr != addr {
            return Err(bad());
        }
        Ok(net)
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The default address pool: the benchmarking range (RFC 2544).
pub fn default_pool() -> Ipv4Net {
    Ipv4Net {
        addr: Ipv4Addr::new(198, 18, 0, 0),
        len: 15,
    }
}

/// Replica slots reserved per service attachment.
pub(super) fn capacity(replicas: u32) -> u32 {
    (replicas.saturating_mul(4)).max(16).next_power_of_two()
}

/// The service attachments a scenario implies: (service index, scenario link or None, node name).
pub(super) fn attachments_of(
    sc: &Scenario,
) -> Result<Vec<(usize, Option<usize>, String)>, PlanError> {
    let mut out = Vec::new();
    for (si, s) in sc.services.iter().enumerate() {
        let mut any = false;
        for (li, l) in sc.links.iter().enumerate() {
            let node = match (&l.between[0], &l.between[1]) {
                (LinkEnd::Service(a), LinkEnd::Service(b)) if *a == s.name || *b == s.name => {
                    return Err(PlanError::ServiceToService(a.clone(), b.clone()))
                }
                (LinkEnd::Service(a), LinkEnd::Node(n))
                | (LinkEnd::Node(n), LinkEnd::Service(a))
                    if *a == s.name =>
                {
                    n.clone()
                }
                _ => continue,
            };
            any = true;
            out.push((si, Some(li), node));
        }
        if !any {
            out.push((si, None, s.gateway.clone()));
        }
    }
    Ok(out)
}

/// Addresses the scenario needs from its block, and the block size (a power of two, ≥ 256).
pub fn block_size(sc: &Scenario) -> Result<u64, PlanError> {
    let node_links = sc
        .links
        .iter()
        .filter(|l| matches!(l.between, [LinkEnd::Node(_), LinkEnd::Node(_)]))
        .count() as u64;
    let mut need = 2 * node_links + sc.services.len() as u64;
    for (si, _, _) in attachments_of(sc)? {
        need += 2 * u64::from(capacity(sc.services[si].replicas));
    }
    Ok(need.max(MIN_BLOCK).next_power_of_two())
}

/// Aligned pools for the attachments `atts`, taken from `block` at offset `next` on, largest
/// first so that every pool stays aligned; `next` moves past them.
pub(super) fn pools(
    sc: &Scenario,
    atts: &[(usize, Option<usize>, String)],
    block: Ipv4Net,
    next: &mut u64,
) -> Result<Vec<Ipv4Net>, PlanError> {
    let mut order: Vec<usize> = (0..atts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(capacity(sc.services[atts[i].0].replicas)));
    let mut pools = vec![None; atts.len()];
    for i in order {
        let cap = capacity(sc.services[atts[i].0].replicas);
        pools[i] = Some(Ipv4Net::new(
            block.nth(*next),
            32 - (2 * cap).trailing_zeros() as u8,
        )?);
        *next += 2 * u64::from(cap);
    }
    Ok(pools
        .into_iter()
        .map(|p| p.expect("every attachment got a pool"))
        .collect())
}
