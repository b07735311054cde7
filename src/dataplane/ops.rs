//! Kernel changes as values, and the narrow trait that carries them out.
//!
//! Every [`Op`] is named after the `ip`/`tc`/`nft` command it matches (its `Display` prints that
//! command), so a recorded batch reads like a shell script and error messages name the object
//! that failed. [`Executor`] is the only way the data plane touches the kernel: the real one is
//! [`crate::dataplane::netlink::Kernel`], and [`Recorder`] is a fake that records, for tests that
//! run without root.
//!
//! Ops that remove something (`NetnsDel`, `LinkDel`, `QdiscDel`, `NftDelTable`) succeed when the
//! object is already gone, so teardown is idempotent.

use std::fmt;
use std::net::Ipv4Addr;

use crate::dataplane::plan::Route;
use crate::dataplane::tc::Shaper;

/// The loopback interface index in every namespace.
pub const LO: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `ip netns add NAME` (and `ip -n NAME link set lo up`), or with `adopt`,
    /// `ip netns attach NAME PID`: the namespace of process PID (a container's sandbox) is
    /// mounted as NAME instead of a new one made. Either way IPv6 is off and `lo` is up.
    NetnsAdd { name: String, adopt: Option<u32> },
    /// `ip netns del NAME`, after killing the processes inside (`ip netns pids NAME`).
    NetnsDel { name: String },
    /// `ip link add NAME index IFINDEX netns NS up type veth peer name PEER index PEER_IFINDEX
    /// netns PEER_NS up`: both ends are created directly in their namespaces, already up.
    VethAdd {
        ns: String,
        name: String,
        ifindex: u32,
        peer_ns: String,
        peer_name: String,
        peer_ifindex: u32,
    },
    /// `ip -n NS link del dev IFINDEX` (a veth takes its peer with it).
    LinkDel { ns: String, ifindex: u32 },
    /// `ip -n NS link set dev IFINDEX up|down`.
    LinkSet { ns: String, ifindex: u32, up: bool },
    /// `ip -n NS addr add ADDR/LEN dev IFINDEX`.
    AddrAdd {
        ns: String,
        ifindex: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
    },
    /// `ip -n NS route replace DST via VIA` (DST `default` when None).
    RouteAdd { ns: String, route: Route },
    /// `ip netns exec NS sysctl -w net.ipv4.ip_forward=1`.
    Forwarding { ns: String },
    /// `tc -n NS qdisc replace dev IFINDEX root tbf rate … burst … limit …`, or
    /// `… root netem delay … loss … rate … limit …`.
    Qdisc {
        ns: String,
        ifindex: u32,
        shaper: Shaper,
    },
    /// `tc -n NS qdisc del dev IFINDEX root`.
    QdiscDel { ns: String, ifindex: u32 },
    /// `ip netns exec NS nft -f -` with SCRIPT: one atomic transaction.
    Nft { ns: String, script: String },
    /// `ip netns exec NS nft delete table ip sdnbed`.
    NftDelTable { ns: String },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::NetnsAdd { name, adopt: None } => write!(f, "ip netns add {name}"),
            Op::NetnsAdd {
                name,
                adopt: Some(pid),
            } => write!(f, "ip netns attach {name} {pid}"),
            Op::NetnsDel { name } => write!(f, "ip netns del {name}"),
            Op::VethAdd {
                ns,
                name,
                ifindex,
                peer_ns,
                peer_name,
                peer_ifindex,
            } => write!(
                f,
                "ip link add {name} index {ifindex} netns {ns} type veth peer name {peer_name} \
                 index {peer_ifindex} netns {peer_ns}"
            ),
            Op::LinkDel { ns, ifindex } => write!(f, "ip -n {ns} link del dev #{ifindex}"),
            Op::LinkSet { ns, ifindex, up } => write!(
                f,
                "ip -n {ns} link set dev #{ifindex} {}",
                if *up { "up" } else { "down" }
            ),
            Op::AddrAdd {
                ns,
                ifindex,
                addr,
                prefix_len,
            } => write!(f, "ip -n {ns} addr add {addr}/{prefix_len} dev #{ifindex}"),
            Op::RouteAdd { ns, route } => match route.dst {
                Some(d) => write!(f, "ip -n {ns} route replace {d} via {}", route.via),
                None => write!(f, "ip -n {ns} route replace default via {}", route.via),
            },
            Op::Forwarding { ns } => {
                write!(f, "ip netns exec {ns} sysctl -w net.ipv4.ip_forward=1")
            }
            Op::Qdisc {
                ns,
                ifindex,
                shaper: Shaper::Tbf(tbf),
            } => write!(
                f,
                "tc -n {ns} qdisc replace dev #{ifindex} root tbf rate {}bit burst {}b limit {}b",
                tbf.rate * 8,
                tbf.burst,
                tbf.limit
            ),
            Op::Qdisc {
                ns,
                ifindex,
                shaper: Shaper::Netem(n),
            } => {
                write!(
                    f,
                    "tc -n {ns} qdisc replace dev #{ifindex} root netem delay {}us {}us",
                    n.delay_us, n.jitter_us
                )?;
                if let Some([p, r, h, k1]) = n.gilbert_elliott {
                    let pc = |v: u32| f64::from(v) / f64::from(u32::MAX) * 100.0;
                    write!(
                        f,
                        " loss gemodel {}% {}% {}% {}%",
                        pc(p),
                        pc(r),
                        100.0 - pc(h),
                        pc(k1)
                    )?;
                } else if n.loss > 0 {
                    write!(
                        f,
                        " loss {}%",
                        f64::from(n.loss) / f64::from(u32::MAX) * 100.0
                    )?;
                }
                if let Some(r) = n.rate {
                    write!(f, " rate {}bit", r * 8)?;
                }
                write!(f, " limit {}", n.limit)
            }
            Op::QdiscDel { ns, ifindex } => write!(f, "tc -n {ns} qdisc del dev #{ifindex} root"),
            Op::Nft { ns, .. } => write!(f, "ip netns exec {ns} nft -f -"),
            Op::NftDelTable { ns } => write!(f, "ip netns exec {ns} nft delete table ip sdnbed"),
        }
    }
}

impl Op {
    /// The namespace the op works in (for `VethAdd`, the first end's).
    pub fn ns(&self) -> &str {
        match self {
            Op::NetnsAdd { name, .. } | Op::NetnsDel { name } => name,
            Op::VethAdd { ns, .. }
            | Op::LinkDel { ns, .. }
            | Op::LinkSet { ns, .. }
            | Op::AddrAdd { ns, .. }
            | Op::RouteAdd { ns, .. }
            | Op::Forwarding { ns }
            | Op::Qdisc { ns, .. }
            | Op::QdiscDel { ns, .. }
            | Op::Nft { ns, .. }
            | Op::NftDelTable { ns } => ns,
        }
    }
}

/// Counters of one interface, from the kernel (`ip -s link`, `tc -s qdisc`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfCounters {
    pub tx_bytes: u64,
    pub tx_packets: u64,
    /// Device drops plus drops of its root qdisc (a full shaping queue).
    pub tx_dropped: u64,
    pub rx_bytes: u64,
    pub rx_packets: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("{op}: {error}")]
pub struct ExecError {
    /// The command the failed op matches.
    pub op: String,
    pub error: std::io::Error,
}

impl ExecError {
    pub fn new(op: &Op, error: std::io::Error) -> ExecError {
        ExecError {
            op: op.to_string(),
            error,
        }
    }
}

/// Carries out kernel changes.
pub trait Executor {
    /// Applies `ops` in order: an op sees every earlier op done. Stops at the first failure.
    /// Implementations may batch ops that do not depend on each other.
    fn apply(&mut self, ops: &[Op]) -> Result<(), ExecError>;
    /// Counters of every interface in namespace `ns`, by interface index.
    fn counters(&mut self, ns: &str) -> Result<Vec<(u32, IfCounters)>, ExecError>;
    /// Whether the kernel can create a `netem` qdisc, tried in the scratch namespace `scratch`
    /// (created and deleted by the call; the caller records it in its ledger first).
    fn netem_available(&mut self, scratch: &str) -> Result<bool, ExecError>;
}

/// A fake executor that records what it is asked to do and answers queries from fixed values.
#[derive(Debug, Default)]
pub struct Recorder {
    pub ops: Vec<Op>,
    /// Answer of `netem_available`.
    pub netem: bool,
    /// Fail the op whose `Display` equals this, with `EEXIST`.
    pub fail_on: Option<String>,
}

impl Executor for Recorder {
    fn apply(&mut self, ops: &[Op]) -> Result<(), ExecError> {
        for op in ops {
            if self.fail_on.as_deref() == Some(op.to_string().as_str()) {
                return Err(ExecError::new(
                    op,
                    std::io::Error::from_raw_os_error(libc::EEXIST),
                ));
            }
            self.ops.push(op.clone());
        }
        Ok(())
    }
    fn counters(&mut self, _ns: &str) -> Result<Vec<(u32, IfCounters)>, ExecError> {
        Ok(Vec::new())
    }
    fn netem_available(&mut self, _scratch: &str) -> Result<bool, ExecError> {
        Ok(self.netem)
    }
}
