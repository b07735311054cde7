//! nftables scripts, as text for `nft -f -` (one script = one atomic transaction).
//!
//! Everything sdnbed installs lives in one table, `ip sdnbed`, per namespace:
//!
//! - **Steering** (gateways): per service a map `svc_<i>` of type `numgen random mod 10000 →
//!   ip daddr` with interval flags, and in the `pre` (prerouting) and `out` (local output) NAT
//!   chains `ip daddr VIP tcp dport PORT dnat to numgen random mod 10000 map @svc_<i>`. Each new
//!   connection draws a slot; conntrack keeps an established connection on its replica whatever
//!   the map says later. A slot with no element is not translated: the connection reaches the
//!   VIP itself, where nothing listens, and is refused, as the steering model says.
//!   [`steering_update`] flushes and refills one map in a single transaction, so a weight change
//!   is atomic: no new connection sees a half-updated map.
//! - **Policies** (selected targets): an `input` filter chain that accepts replies, loopback
//!   and each allow rule, and drops the rest (a silent drop, so a denied connection times out
//!   the way a NetworkPolicy denial does).

use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::dataplane::plan::{Allow, Source};
use crate::model::steering::SlotRange;

/// A service steered in a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SteeredService {
    /// The map is `svc_<index>` (service names may hold characters nft identifiers may not).
    pub index: usize,
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
}

pub fn map_name(index: usize) -> String {
    format!("svc_{index}")
}

fn source_match(s: &Source) -> String {
    let mut m = format!("ip saddr {}", s.net);
    if let Some(p) = s.parity {
        write!(m, " ip saddr & 0.0.0.1 == 0.0.0.{p}").expect("write to String");
    }
    m
}

/// The table of one namespace at deploy time: steering maps (empty) and rules for `steered`,
/// and the input filter when `filters` is Some (the namespace is a selected policy target).
pub fn table(steered: &[SteeredService], filters: Option<&[Allow]>) -> String {
    let mut s = String::from("table ip sdnbed {\n");
    for svc in steered {
        writeln!(
            s,
            "  map {} {{\n    typeof numgen random mod 10000 : ip daddr\n    flags interval\n    \
             comment \"service {}\"\n  }}",
            map_name(svc.index),
            svc.name
        )
        .expect("write to String");
    }
    if !steered.is_empty() {
        for (chain, hook, prio) in [("pre", "prerouting", "dstnat"), ("out", "output", "-100")] {
            writeln!(
                s,
                "  chain {chain} {{\n    type nat hook {hook} priority {prio}; policy accept;"
            )
            .expect("write to String");
            for svc in steered {
                writeln!(
                    s,
                    "    ip daddr {} tcp dport {} dnat to numgen random mod 10000 map @{}",
                    svc.vip,
                    svc.port,
                    map_name(svc.index)
                )
                .expect("write to String");
            }
            s.push_str("  }\n");
        }
    }
    if let Some(allows) = filters {
        s.push_str(
            "  chain input {\n    type filter hook input priority filter; policy accept;\n    \
             ct state established,related accept\n    iif \"lo\" accept\n",
        );
        for a in allows {
            let ports = match a.ports.as_slice() {
                [] => String::new(),
                ps => format!(
                    " tcp dport {{ {} }}",
                    ps.iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            for src in &a.sources {
                writeln!(
                    s,
                    "    {}{ports} accept comment \"{}\"",
                    source_match(src),
                    a.policy
                )
                .expect("write to String");
            }
        }
        s.push_str("    drop\n  }\n");
    }
    s.push_str("}\n");
    s
}

/// Replaces the elements of map `svc_<index>` in one transaction. `addr_of` gives each range's
/// replica address (None: the range has no endpoint and gets no element).
pub fn steering_update(index: usize, ranges: &[(SlotRange, Option<Ipv4Addr>)]) -> String {
    let name = map_name(index);
    let mut s = format!("flush map ip sdnbed {name}\n");
    let elems: Vec<String> = ranges
        .iter()
        .filter_map(|(r, a)| {
            let a = (*a)?;
            Some(if r.end - r.start == 1 {
                format!("{} : {a}", r.start)
            } else {
                format!("{}-{} : {a}", r.start, r.end - 1)
            })
        })
        .collect();
    if !elems.is_empty() {
        writeln!(s, "add element ip sdnbed {name} {{ {} }}", elems.join(", "))
            .expect("write to String");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::plan::Ipv4Net;

    #[test]
    fn steering_table_and_atomic_update() {
        let svc = SteeredService {
            index: 0,
            name: "web".into(),
            vip: Ipv4Addr::new(198, 18, 0, 200),
            port: 8080,
        };
        let t = table(std::slice::from_ref(&svc), None);
        assert!(t.contains("map svc_0 {\n    typeof numgen random mod 10000 : ip daddr\n"));
        assert!(t.contains(
            "ip daddr 198.18.0.200 tcp dport 8080 dnat to numgen random mod 10000 map @svc_0"
        ));
        assert!(!t.contains("chain input"));
        let a = Ipv4Addr::new(198, 18, 0, 1);
        let b = Ipv4Addr::new(198, 18, 0, 3);
        let r = |start, end| SlotRange {
            start,
            end,
            replica: Some(0),
        };
        let u = steering_update(
            0,
            &[
                (r(0, 8000), Some(a)),
                (r(8000, 9999), Some(b)),
                (r(9999, 10000), None),
            ],
        );
        assert_eq!(
            u,
            "flush map ip sdnbed svc_0\nadd element ip sdnbed svc_0 \
             { 0-7999 : 198.18.0.1, 8000-9998 : 198.18.0.3 }\n"
        );
        assert_eq!(
            steering_update(1, &[(r(5, 6), Some(a))]),
            "flush map ip sdnbed svc_1\nadd element ip sdnbed svc_1 { 5 : 198.18.0.1 }\n"
        );
        assert_eq!(steering_update(2, &[]), "flush map ip sdnbed svc_2\n");
    }

    #[test]
    fn filters_accept_listed_sources_and_drop_the_rest() {
        let allow = Allow {
            policy: "client-to-web".into(),
            sources: vec![
                Source {
                    net: "198.18.0.9/32".parse::<Ipv4Net>().unwrap(),
                    parity: None,
                },
                Source {
                    net: "198.18.0.32/27".parse().unwrap(),
                    parity: Some(1),
                },
            ],
            ports: vec![8080, 8443],
        };
        let t = table(&[], Some(std::slice::from_ref(&allow)));
        assert_eq!(
            t,
            "table ip sdnbed {\n  chain input {\n    type filter hook input priority filter; \
             policy accept;\n    ct state established,related accept\n    iif \"lo\" accept\n    \
             ip saddr 198.18.0.9/32 tcp dport { 8080, 8443 } accept comment \"client-to-web\"\n    \
             ip saddr 198.18.0.32/27 ip saddr & 0.0.0.1 == 0.0.0.1 tcp dport { 8080, 8443 } \
             accept comment \"client-to-web\"\n    drop\n  }\n}\n"
        );
    }
}
