//! Reachability probes: a TCP connect from one namespace to an address and port.
//!
//! A probe needs no server: a SYN that arrives where nothing listens is answered with a reset
//! (`Refused`), which still proves the path and the policies let it through. A policy drop, or
//! a missing route, shows as `Timeout` or `Unreachable`. Probes run in parallel, each on its own
//! thread that joins the source namespace, in batches of 64.

use std::fs::File;
use std::io;
use std::net::{SocketAddrV4, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use crate::dataplane::netlink::{in_netns, netns_path};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Something accepted the connection.
    Open,
    /// The destination answered with a reset: reachable, nothing listening.
    Refused,
    /// No answer within the timeout (dropped by a policy, or lost).
    Timeout,
    /// The kernel reported no route or an ICMP error (errno).
    Unreachable(i32),
}

impl Reach {
    pub fn reachable(self) -> bool {
        matches!(self, Reach::Open | Reach::Refused)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Open => "open",
            Reach::Refused => "refused",
            Reach::Timeout => "timeout",
            Reach::Unreachable(_) => "unreachable",
        }
    }
}

/// One TCP connect from namespace `src_netns` to `dst`.
pub fn probe(src_netns: &str, dst: SocketAddrV4, timeout: Duration) -> io::Result<Reach> {
    let ns = File::open(netns_path(src_netns))?;
    in_netns(ns.as_fd(), || {
        Ok(match TcpStream::connect_timeout(&dst.into(), timeout) {
            Ok(_) => Reach::Open,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Reach::Refused,
            Err(e)
                if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock =>
            {
                Reach::Timeout
            }
            Err(e) => Reach::Unreachable(e.raw_os_error().unwrap_or(0)),
        })
    })
}

/// Probes every (source namespace, destination) pair, in parallel; results in input order.
pub fn probe_all(pairs: &[(String, SocketAddrV4)], timeout: Duration) -> io::Result<Vec<Reach>> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(64) {
        let results: Vec<io::Result<Reach>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(ns, dst)| s.spawn(move || probe(ns, *dst, timeout)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(io::Error::other("probe thread panicked")))
                })
                .collect()
        });
        for r in results {
            out.push(r?);
        }
    }
    Ok(out)
}
