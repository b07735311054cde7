//! Where a gateway's DNAT sent one TCP connection, read from its conntrack table over ctnetlink
//! (`conntrack -G`), so that a connection can be attributed to the replica (and so the version)
//! behind a service VIP even when the replica's image says nothing about its version.
//!
//! A client's connection to `VIP:port` is translated in the gateway's namespace: conntrack there
//! holds an entry whose *original* tuple is the client's view (`client:cport -> VIP:port`) and
//! whose *reply* tuple starts at the replica the DNAT chose (`replica:port -> client:cport`).
//! [`Conntrack::reply_source`] asks for that one entry by its original tuple and returns the
//! reply tuple's source.
//!
//! Layers: [`CtGet`] is the request as a value (its bytes are unit-tested against what a
//! hand-written client sends, see the tests); [`parse_answer`] reads one answer (tested on bytes
//! captured from this kernel); [`Conntrack`] is the socket. The narrow effect a caller needs is
//! [`SteeringLookup`], with the recording fake [`FakeSteering`].
//!
//! Guarantees and limits:
//!
//! - The socket is created on a thread that has joined the named namespace and stays bound to
//!   that namespace's conntrack table for its lifetime, so [`Conntrack`] can be used from any
//!   thread (and from several: one request is in flight at a time, answers are matched by
//!   sequence number, and late answers to an earlier timed-out request are skipped).
//! - One lookup is one `sendmsg` and one `recv`: about 35 µs for an entry, 10 µs for a miss
//!   (`cargo bench --bench conntrack`), one at a time per handle, so one handle attributes
//!   some 30,000 new connections a second; open a handle per generator thread for more. An
//!   answer not in within [`ANSWER_TIMEOUT`] is an error, never a hang.
//! - "No such entry" (`ENOENT`: the connection never passed this gateway, or its entry expired)
//!   is `Ok(None)`, not an error.
//! - Only the default conntrack zone is searched (sdnbed sets no zones).

use std::fmt;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Mutex;
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr as NetlinkAddr};

use crate::dataplane::netlink::{in_netns, netns_path};

/// The nfnetlink subsystem of conntrack (`NFNL_SUBSYS_CTNETLINK`).
pub const NFNL_SUBSYS_CTNETLINK: u8 = 1;
/// `IPCTNL_MSG_CT_NEW`: the type of an entry in an answer.
pub const IPCTNL_MSG_CT_NEW: u8 = 0;
/// `IPCTNL_MSG_CT_GET`: asks for one entry (without `NLM_F_DUMP`).
pub const IPCTNL_MSG_CT_GET: u8 = 1;

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NFNETLINK_V0: u8 = 0;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const IPPROTO_TCP: u8 = 6;

/// How long [`Conntrack::reply_source`] waits for the kernel's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a lookup failed; every variant names the namespace, and the tuple where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("tcp {src} -> {dst}: source and destination are of different address families")]
    MixedFamilies { src: SocketAddr, dst: SocketAddr },
    #[error("ctnetlink socket in netns {netns}: {source}")]
    Open {
        netns: String,
        #[source]
        source: io::Error,
    },
    #[error("conntrack lookup of {tuple} in netns {netns}: {source}")]
    Io {
        netns: String,
        tuple: TcpTuple,
        #[source]
        source: io::Error,
    },
    #[error("conntrack lookup of {tuple} in netns {netns}: malformed answer: {why}")]
    Malformed {
        netns: String,
        tuple: TcpTuple,
        why: &'static str,
    },
}

/// A TCP connection's tuple as seen in one direction. Both ends are of one address family
/// (checked once, by [`TcpTuple::new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpTuple {
    src: SocketAddr,
    dst: SocketAddr,
}

impl TcpTuple {
    pub fn new(src: SocketAddr, dst: SocketAddr) -> Result<TcpTuple, ConntrackError> {
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(ConntrackError::MixedFamilies { src, dst });
        }
        Ok(TcpTuple { src, dst })
    }
    pub fn src(&self) -> SocketAddr {
        self.src
    }
    pub fn dst(&self) -> SocketAddr {
        self.dst
    }
}

impl fmt::Display for TcpTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tcp {} -> {}", self.src, self.dst)
    }
}

/// `conntrack -G -p tcp -s SRC --sport SPORT -d DST --dport DPORT`: one `IPCTNL_MSG_CT_GET`
/// request for the entry whose original tuple is `orig`, as the bytes of one netlink message
/// (nfgenmsg, then `CTA_TUPLE_ORIG` with `CTA_TUPLE_IP` and `CTA_TUPLE_PROTO` nested in it,
/// nests flagged `NLA_F_NESTED` as libmnl does). No `NLM_F_ACK`: the answer is the entry or an
/// error, never both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtGet {
    pub orig: TcpTuple,
    pub seq: u32,
}

fn push_attr(out: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len() + (4 - len % 4) % 4, 0);
}

fn push_nest(out: &mut Vec<u8>, ty: u16, build: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    build(out);
    let len = (out.len() - start) as u16;
    out[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    out[start + 2..start + 4].copy_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
}

fn ip_octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

impl CtGet {
    pub fn bytes(&self) -> Vec<u8> {
        let (src, dst) = (self.orig.src, self.orig.dst);
        let (family, src_ty, dst_ty) = match src.ip() {
            IpAddr::V4(_) => (libc::AF_INET as u8, CTA_IP_V4_SRC, CTA_IP_V4_DST),
            IpAddr::V6(_) => (libc::AF_INET6 as u8, CTA_IP_V6_SRC, CTA_IP_V6_DST),
        };
        let mut out = vec![0; NLMSG_HDRLEN];
        out.extend_from_slice(&[family, NFNETLINK_V0, 0, 0]);
        push_nest(&mut out, CTA_TUPLE_ORIG, |o| {
            push_nest(o, CTA_TUPLE_IP, |o| {
                push_attr(o, src_ty, &ip_octets(src.ip()));
                push_attr(o, dst_ty, &ip_octets(dst.ip()));
            });
            push_nest(o, CTA_TUPLE_PROTO, |o| {
                push_attr(o, CTA_PROTO_NUM, &[IPPROTO_TCP]);
                push_attr(o, CTA_PROTO_SRC_PORT, &src.port().to_be_bytes());
                push_attr(o, CTA_PROTO_DST_PORT, &dst.port().to_be_bytes());
            });
        });
        let len = out.len() as u32;
        let ty = (u16::from(NFNL_SUBSYS_CTNETLINK) << 8) | u16::from(IPCTNL_MSG_CT_GET);
        out[0..4].copy_from_slice(&len.to_ne_bytes());
        out[4..6].copy_from_slice(&ty.to_ne_bytes());
        out[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        out[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        // nlmsg_pid 0: the kernel fills in our port.
        out
    }
}

/// What one netlink message of an answer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A conntrack entry; `reply_src` is its reply tuple's source (the DNAT's target).
    Entry { reply_src: SocketAddr },
    /// `ENOENT`: no such entry.
    NoEntry,
    /// Another error code (positive errno), or 0 for a bare acknowledgement.
    Errno(i32),
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// The (type without flags, payload) of each attribute in `b`; stops at the first truncated one.
fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        if off + 4 > b.len() {
            return None;
        }
        let len = usize::from(u16_at(b, off));
        if len < 4 || off + len > b.len() {
            return None;
        }
        let item = (u16_at(b, off + 2) & NLA_TYPE_MASK, &b[off + 4..off + len]);
        off += (len + 3) & !3;
        Some(item)
    })
}

fn find(b: &[u8], ty: u16) -> Option<&[u8]> {
    attrs(b).find(|(t, _)| *t == ty).map(|(_, p)| p)
}

/// The sequence number and meaning of one netlink message `msg` (a whole message, header
/// included) answering a [`CtGet`].
pub fn parse_answer(msg: &[u8]) -> Result<(u32, Answer), &'static str> {
    if msg.len() < NLMSG_HDRLEN || (u32_at(msg, 0) as usize) > msg.len() {
        return Err("shorter than its netlink header says");
    }
    let msg = &msg[..u32_at(msg, 0) as usize];
    let (ty, seq) = (u16_at(msg, 4), u32_at(msg, 8));
    if ty == NLMSG_ERROR {
        if msg.len() < NLMSG_HDRLEN + 4 {
            return Err("error message without a code");
        }
        let code = -(u32_at(msg, NLMSG_HDRLEN) as i32);
        return Ok((
            seq,
            if code == libc::ENOENT {
                Answer::NoEntry
            } else {
                Answer::Errno(code)
            },
        ));
    }
    let want = (u16::from(NFNL_SUBSYS_CTNETLINK) << 8) | u16::from(IPCTNL_MSG_CT_NEW);
    if ty != want {
        return Err("neither a conntrack entry nor an error");
    }
    let body = msg
        .get(NLMSG_HDRLEN + NFGENMSG_LEN..)
        .ok_or("no nfgenmsg header")?;
    let reply = find(body, CTA_TUPLE_REPLY).ok_or("entry without a reply tuple")?;
    let ip = find(reply, CTA_TUPLE_IP).ok_or("reply tuple without addresses")?;
    let addr = if let Some(a) = find(ip, CTA_IP_V4_SRC) {
        let o: [u8; 4] = a.try_into().map_err(|_| "IPv4 source not 4 bytes")?;
        IpAddr::V4(Ipv4Addr::from(o))
    } else if let Some(a) = find(ip, CTA_IP_V6_SRC) {
        let o: [u8; 16] = a.try_into().map_err(|_| "IPv6 source not 16 bytes")?;
        IpAddr::V6(Ipv6Addr::from(o))
    } else {
        return Err("reply tuple without a source address");
    };
    let proto = find(reply, CTA_TUPLE_PROTO).ok_or("reply tuple without ports")?;
    if find(proto, CTA_PROTO_NUM) != Some(&[IPPROTO_TCP][..]) {
        return Err("not a TCP entry");
    }
    let port = find(proto, CTA_PROTO_SRC_PORT).ok_or("reply tuple without a source port")?;
    let port: [u8; 2] = port.try_into().map_err(|_| "source port not 2 bytes")?;
    Ok((
        seq,
        Answer::Entry {
            reply_src: SocketAddr::new(addr, u16::from_be_bytes(port)),
        },
    ))
}

/// Where a gateway steered connections: the one effect attribution needs.
pub trait SteeringLookup: Send + Sync {
    /// The reply tuple's source of the TCP entry whose original tuple is `orig` (the replica a
    /// DNAT chose, or `orig.dst()` itself if nothing was translated); `None` if there is none.
    fn reply_source(&self, orig: &TcpTuple) -> Result<Option<SocketAddr>, ConntrackError>;
}

struct Inner {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// A ctnetlink socket bound to one namespace's conntrack table.
pub struct Conntrack {
    netns: String,
    inner: Mutex<Inner>,
}

impl fmt::Debug for Conntrack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conntrack")
            .field("netns", &self.netns)
            .finish_non_exhaustive()
    }
}

fn socket() -> io::Result<Socket> {
    let mut sock = Socket::new(NETLINK_NETFILTER)?;
    sock.bind_auto()?;
    let tv = libc::timeval {
        tv_sec: ANSWER_TIMEOUT.as_secs() as _,
        tv_usec: ANSWER_TIMEOUT.subsec_micros() as _,
    };
    // SAFETY: setsockopt with a valid timeval on a socket we own.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

impl Conntrack {
    /// Opens a ctnetlink socket in namespace `netns` (a name under
    /// [`crate::dataplane::netlink::NETNS_DIR`], e.g. a gateway's).
    pub fn open_in(netns: &str) -> Result<Conntrack, ConntrackError> {
        let open_err = |source| ConntrackError::Open {
            netns: netns.to_string(),
            source,
        };
        let file = File::open(netns_path(netns)).map_err(open_err)?;
        let sock = in_netns(file.as_fd(), socket).map_err(open_err)?;
        Ok(Conntrack::with_socket(netns, sock))
    }

    /// Opens a ctnetlink socket in the calling thread's namespace; `label` names it in errors.
    pub fn open_here(label: &str) -> Result<Conntrack, ConntrackError> {
        let sock = socket().map_err(|source| ConntrackError::Open {
            netns: label.to_string(),
            source,
        })?;
        Ok(Conntrack::with_socket(label, sock))
    }

    fn with_socket(netns: &str, sock: Socket) -> Conntrack {
        Conntrack {
            netns: netns.to_string(),
            inner: Mutex::new(Inner {
                sock,
                seq: 0,
                buf: Vec::with_capacity(16 * 1024),
            }),
        }
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    fn lookup(&self, orig: &TcpTuple) -> Result<Answer, ConntrackError> {
        let io_err = |source| ConntrackError::Io {
            netns: self.netns.clone(),
            tuple: *orig,
            source,
        };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *inner;
        inner.seq = inner.seq.wrapping_add(1);
        let req = CtGet {
            orig: *orig,
            seq: inner.seq,
        };
        inner
            .sock
            .send_to(&req.bytes(), &NetlinkAddr::new(0, 0), 0)
            .map_err(io_err)?;
        loop {
            inner.buf.clear();
            let n = loop {
                // MSG_TRUNC: the datagram's real length, so a cut answer is seen as one.
                match inner.sock.recv(&mut inner.buf, libc::MSG_TRUNC) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r,
                }
            };
            let n = n.map_err(|e| {
                if e.kind() == io::ErrorKind::WouldBlock {
                    io_err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer within {ANSWER_TIMEOUT:?}"),
                    ))
                } else {
                    io_err(e)
                }
            })?;
            if n > inner.buf.len() {
                return Err(ConntrackError::Malformed {
                    netns: self.netns.clone(),
                    tuple: *orig,
                    why: "answer larger than the receive buffer",
                });
            }
            // A datagram may hold several messages; only ours counts.
            let mut off = 0;
            while off + NLMSG_HDRLEN <= inner.buf.len() {
                let len = u32_at(&inner.buf, off) as usize;
                if len < NLMSG_HDRLEN || off + len > inner.buf.len() {
                    break;
                }
                if u32_at(&inner.buf, off + 8) == req.seq {
                    return parse_answer(&inner.buf[off..off + len])
                        .map(|(_, a)| a)
                        .map_err(|why| ConntrackError::Malformed {
                            netns: self.netns.clone(),
                            tuple: *orig,
                            why,
                        });
                }
                off += (len + 3) & !3;
            }
        }
    }
}

impl SteeringLookup for Conntrack {
    fn reply_source(&self, orig: &TcpTuple) -> Result<Option<SocketAddr>, ConntrackError> {
        match self.lookup(orig)? {
            Answer::Entry { reply_src } => Ok(Some(reply_src)),
            Answer::NoEntry => Ok(None),
            Answer::Errno(code) => Err(ConntrackError::Io {
                netns: self.netns.clone(),
                tuple: *orig,
                source: if code == 0 {
                    io::Error::other("acknowledged without an entry")
                } else {
                    io::Error::from_raw_os_error(code)
                },
            }),
        }
    }
}

/// A [`SteeringLookup`] that answers from a table and records every tuple it was asked about.
#[derive(Debug, Default)]
pub struct FakeSteering {
    entries: Mutex<Vec<(TcpTuple, SocketAddr)>>,
    calls: Mutex<Vec<TcpTuple>>,
    fail: std::sync::atomic::AtomicBool,
}

impl FakeSteering {
    pub fn new() -> FakeSteering {
        FakeSteering::default()
    }
    /// Connections with original tuple `orig` were steered to `to`.
    pub fn steer(&self, orig: TcpTuple, to: SocketAddr) {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        e.retain(|(t, _)| *t != orig);
        e.push((orig, to));
    }
    /// From now on every lookup fails (as a socket error would).
    pub fn fail_lookups(&self) {
        self.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    /// The tuples looked up so far, in order.
    pub fn calls(&self) -> Vec<TcpTuple> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl SteeringLookup for FakeSteering {
    fn reply_source(&self, orig: &TcpTuple) -> Result<Option<SocketAddr>, ConntrackError> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(*orig);
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ConntrackError::Io {
                netns: "fake".into(),
                tuple: *orig,
                source: io::Error::from(io::ErrorKind::TimedOut),
            });
        }
        let e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        Ok(e.iter().find(|(t, _)| t == orig).map(|(_, a)| *a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn tuple(src: &str, dst: &str) -> TcpTuple {
        TcpTuple::new(src.parse().unwrap(), dst.parse().unwrap()).unwrap()
    }

    // Captured on this kernel (6.18, x86_64, little-endian) in a scratch namespace with
    // `ip daddr 127.0.0.2 tcp dport 80 dnat to 127.0.0.3:8080` in a nat output chain, a
    // connection 127.0.0.1:40000 -> 127.0.0.2:80, and a request written by hand in Python
    // (struct.pack of nlmsghdr, nfgenmsg and the nested attributes, as libmnl lays them out).
    const REQUEST: &str =
        "48000000010101000700000000000000020000003400018014000180080001007f000001\
        080002007f0000021c0002800500010006000000060002009c4000000600030000500000";
    const ENTRY: &str = "d4000000000102000700000043260000020000003400018014000180080001007f000001\
        080002007f0000021c0002800500010006000000060002009c40000006000300005000003400028014000180\
        080001007f000003080002007f0000011c0002800500010006000000060002001f900000060003009c400000\
        08000300000001ae080008000000000008000c00166c3cff08000b00000000020800070000069780300004802c\
        0001800500010003000000050002000a000000050003000a00000006000400230000000600050023000000";
    // The same request for source port 40001 (sequence 8): no entry.
    const ENOENT: &str = "5c000000020000000800000043260000feffffff48000000010101000800000000000000\
        020000003400018014000180080001007f000001080002007f0000021c0002800500010006000000060002009c\
        4100000600030000500000";

    #[test]
    fn ct_get_bytes_match_a_hand_written_client() {
        if cfg!(target_endian = "big") {
            return; // The capture is little-endian (netlink headers are host order).
        }
        let req = CtGet {
            orig: tuple("127.0.0.1:40000", "127.0.0.2:80"),
            seq: 7,
        };
        assert_eq!(req.bytes(), hex(REQUEST));
    }

    #[test]
    fn ct_get_bytes_for_ipv6_carry_16_byte_addresses() {
        let req = CtGet {
            orig: tuple("[fd00::1]:40000", "[fd00::2]:80"),
            seq: 1,
        }
        .bytes();
        assert_eq!(u32_at(&req, 0) as usize, req.len());
        assert_eq!(req[16], libc::AF_INET6 as u8);
        // orig nest (4) + ip nest (4) + two 20-byte addresses + proto nest (4 + 24).
        assert_eq!(req.len(), 16 + 4 + 4 + 4 + 40 + 28);
        let (_, body) = req.split_at(20);
        let orig = find(body, CTA_TUPLE_ORIG).unwrap();
        let ip = find(orig, CTA_TUPLE_IP).unwrap();
        assert_eq!(
            find(ip, CTA_IP_V6_DST).unwrap(),
            "fd00::2".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert!(find(ip, CTA_IP_V4_SRC).is_none());
    }

    #[test]
    fn an_entry_answer_gives_the_reply_source() {
        if cfg!(target_endian = "big") {
            return;
        }
        assert_eq!(
            parse_answer(&hex(ENTRY)),
            Ok((
                7,
                Answer::Entry {
                    reply_src: "127.0.0.3:8080".parse().unwrap()
                }
            ))
        );
    }

    #[test]
    fn enoent_is_no_entry_and_other_codes_are_kept() {
        if cfg!(target_endian = "big") {
            return;
        }
        assert_eq!(parse_answer(&hex(ENOENT)), Ok((8, Answer::NoEntry)));
        let mut eperm = hex(ENOENT);
        eperm[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(parse_answer(&eperm), Ok((8, Answer::Errno(libc::EPERM))));
    }

    #[test]
    fn truncated_or_foreign_answers_are_malformed() {
        if cfg!(target_endian = "big") {
            return;
        }
        let entry = hex(ENTRY);
        assert!(parse_answer(&entry[..10]).is_err());
        // Header says 0xd4 bytes, only 100 present.
        assert!(parse_answer(&entry[..100]).is_err());
        // An entry without its reply tuple: cut the message after the original tuple.
        let mut orig_only = entry[..16 + 4 + 0x34].to_vec();
        let len = orig_only.len() as u32;
        orig_only[0..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(parse_answer(&orig_only), Err("entry without a reply tuple"));
        // A message of another subsystem.
        let mut other = entry.clone();
        other[5] = 2;
        assert!(parse_answer(&other).is_err());
    }

    #[test]
    fn a_handmade_ipv6_entry_parses() {
        let mut msg = vec![0; NLMSG_HDRLEN];
        msg.extend_from_slice(&[libc::AF_INET6 as u8, 0, 0, 0]);
        push_nest(&mut msg, CTA_TUPLE_REPLY, |o| {
            push_nest(o, CTA_TUPLE_IP, |o| {
                push_attr(
                    o,
                    CTA_IP_V6_SRC,
                    &"fd00::9".parse::<Ipv6Addr>().unwrap().octets(),
                );
                push_attr(
                    o,
                    CTA_IP_V6_DST,
                    &"fd00::1".parse::<Ipv6Addr>().unwrap().octets(),
                );
            });
            push_nest(o, CTA_TUPLE_PROTO, |o| {
                push_attr(o, CTA_PROTO_NUM, &[IPPROTO_TCP]);
                push_attr(o, CTA_PROTO_SRC_PORT, &8080u16.to_be_bytes());
                push_attr(o, CTA_PROTO_DST_PORT, &40000u16.to_be_bytes());
            });
        });
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg[4..6].copy_from_slice(&0x0100u16.to_ne_bytes());
        msg[8..12].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(
            parse_answer(&msg),
            Ok((
                3,
                Answer::Entry {
                    reply_src: "[fd00::9]:8080".parse().unwrap()
                }
            ))
        );
    }

    #[test]
    fn tuples_of_mixed_families_are_refused() {
        let e = TcpTuple::new(
            "10.0.0.1:1".parse().unwrap(),
            "[fd00::1]:2".parse().unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("10.0.0.1:1 -> [fd00::1]:2"), "{e}");
    }

    #[test]
    fn the_fake_answers_from_its_table_and_records_calls() {
        let f = FakeSteering::new();
        let t = tuple("10.0.0.2:5000", "10.9.0.1:8080");
        f.steer(t, "10.1.0.7:8080".parse().unwrap());
        let other = tuple("10.0.0.2:5001", "10.9.0.1:8080");
        assert_eq!(
            f.reply_source(&t).unwrap(),
            Some("10.1.0.7:8080".parse().unwrap())
        );
        assert_eq!(f.reply_source(&other).unwrap(), None);
        f.fail_lookups();
        assert!(f.reply_source(&t).is_err());
        assert_eq!(f.calls(), vec![t, other, t]);
    }
}
