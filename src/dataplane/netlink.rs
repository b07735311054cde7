//! The real [`Executor`]: rtnetlink requests (built with netlink-packet-route), network
//! namespaces made the way `ip netns add` makes them, and `nft` for nftables transactions.
//!
//! Speed is the point here (a star of 1000 hosts deploys in seconds):
//!
//! - A namespace is made by `unshare(CLONE_NEWNET)` in a worker thread and a bind mount of the
//!   thread's namespace onto `/run/sdnbed/netns/NAME` (as `ip netns add` does in `/run/netns`,
//!   see [`prepare_netns_dir`] for why not there); no process is spawned. While inside, the thread
//!   opens the namespace's rtnetlink socket, which stays bound to it, so later requests for that
//!   namespace need no `setns`.
//! - A veth pair is one request on the caller's own socket, with both ends created directly in
//!   their namespaces (`IFLA_NET_NS_FD`), with interface indexes chosen by the plan, already up.
//! - Requests are batched: many messages per `sendmsg`, acknowledgements read afterwards.
//!   Consecutive ops of one kind for different namespaces are independent and share batches;
//!   a change of kind (namespaces → veths → addresses/routes/qdiscs → sysctl → nft) is a
//!   barrier, so an op always sees every earlier op done.
//!
//! The executor never chooses what to create; it only carries out ops (see `ops`), and it
//! never deletes anything it is not told to.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption, TcStats2};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::sched::{setns, unshare, CloneFlags};

use crate::dataplane::ops::{ExecError, Executor, IfCounters, Op, LO};
use crate::dataplane::tc::Shaper;

/// The `TCA_OPTIONS` attribute of a qdisc request.
const TCA_OPTIONS: u16 = 2;

/// Where sdnbed keeps its namespaces: a small tmpfs of its own (see [`prepare_netns_dir`]).
pub const NETNS_DIR: &str = "/run/sdnbed/netns";
/// Messages per `sendmsg` are cut at this many bytes.
const BATCH_BYTES: usize = 32 * 1024;

/// The bind-mounted file of namespace `name`.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Runs `f` on a fresh thread that has joined the network namespace `fd`; the caller's thread
/// never changes namespace.
pub fn in_netns<T: Send>(
    fd: BorrowedFd<'_>,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(fd, CloneFlags::CLONE_NEWNET)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace worker panicked")))
    })
}

/// A command that runs in network namespace `name` (`ip netns exec NAME …`, network namespace
/// only: mounts and `/sys` are the caller's).
pub fn command_in(name: &str, program: impl AsRef<std::ffi::OsStr>) -> io::Result<Command> {
    let file = File::open(netns_path(name))?;
    let mut cmd = Command::new(program);
    // SAFETY: setns is async-signal-safe; the file stays open (moved into the closure) until exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Processes whose network namespace is one of those bind-mounted at `paths` (`ip netns pids`).
pub fn pids_in(paths: &[PathBuf]) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let inodes: Vec<(u64, u64)> = paths
        .iter()
        .filter_map(|p| fs::metadata(p).ok().map(|m| (m.dev(), m.ino())))
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for ent in rd.flatten() {
            let Ok(pid) = ent.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(m) = fs::metadata(format!("/proc/{pid}/ns/net")) {
                if inodes.contains(&(m.dev(), m.ino())) {
                    out.push(pid);
                }
            }
        }
    }
    out
}

struct NlSock {
    sock: Socket,
    seq: u32,
}

thread_local! {
    /// One receive buffer per thread, shared by its sockets (a buffer per socket would cost
    /// 64 KiB per namespace).
    static RECV_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

impl NlSock {
    fn new() -> io::Result<NlSock> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.set_cap_ack(true)?;
        let _ = sock.set_rx_buf_sz(1 << 20);
        Ok(NlSock { sock, seq: 0 })
    }

    fn message(&mut self, msg: RouteNetlinkMessage, flags: u16) -> (u32, Vec<u8>) {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let mut bytes = vec![0; m.buffer_len()];
        m.serialize(&mut bytes);
        (self.seq, bytes)
    }

    /// Sends requests (with `NLM_F_ACK`) in batches and waits for every acknowledgement.
    /// Returns, for the first failed request, its position and error.
    fn transact(
        &mut self,
        msgs: Vec<(RouteNetlinkMessage, u16)>,
    ) -> Result<(), (usize, io::Error)> {
        let mut i = 0;
        while i < msgs.len() {
            let start = i;
            let mut out = Vec::new();
            let mut seqs: BTreeMap<u32, usize> = BTreeMap::new();
            while i < msgs.len() && out.len() < BATCH_BYTES {
                let (m, f) = msgs[i].clone();
                let (seq, bytes) = self.message(m, f | NLM_F_REQUEST | NLM_F_ACK);
                out.extend_from_slice(&bytes);
                seqs.insert(seq, i);
                i += 1;
            }
            self.sock
                .send_to(&out, &SocketAddr::new(0, 0), 0)
                .map_err(|e| (start, e))?;
            let mut first_err: Option<(usize, io::Error)> = None;
            while !seqs.is_empty() {
                for (seq, code) in self.recv_acks().map_err(|e| (start, e))? {
                    if let Some(ix) = seqs.remove(&seq) {
                        if code != 0 && first_err.as_ref().is_none_or(|(j, _)| ix < *j) {
                            first_err = Some((ix, io::Error::from_raw_os_error(-code)));
                        }
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The netlink messages of one datagram, as raw bytes.
    fn recv_raw(&mut self) -> io::Result<Vec<Vec<u8>>> {
        RECV_BUF.with(|b| {
            let mut buf = b.borrow_mut();
            buf.clear();
            buf.reserve(1 << 16);
            self.sock.recv(&mut *buf, 0)?;
            let mut out = Vec::new();
            let mut off = 0;
            while off + 16 <= buf.len() {
                let len = u32_at(&buf, off) as usize;
                if len < 16 || off + len > buf.len() {
                    break;
                }
                out.push(buf[off..off + len].to_vec());
                off += (len + 3) & !3;
            }
            Ok(out)
        })
    }

    /// (sequence, error code) of the acknowledgements in one datagram.
    fn recv_acks(&mut self) -> io::Result<Vec<(u32, i32)>> {
        let mut out = Vec::new();
        for raw in self.recv_raw()? {
            let ty = u16::from_ne_bytes([raw[4], raw[5]]);
            // NLMSG_ERROR = 2: an i32 error code follows the header (0 = ack).
            if ty == 2 && raw.len() >= 20 {
                out.push((u32_at(&raw, 8), u32_at(&raw, 16) as i32));
            }
        }
        Ok(out)
    }

    /// Sends a dump request and collects the replies.
    fn dump(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let (seq, bytes) = self.message(msg, NLM_F_REQUEST | NLM_F_DUMP);
        self.sock.send_to(&bytes, &SocketAddr::new(0, 0), 0)?;
        let mut out = Vec::new();
        loop {
            for raw in self.recv_raw()? {
                if u32_at(&raw, 8) != seq {
                    continue;
                }
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&raw)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                match m.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    NetlinkPayload::InnerMessage(inner) => out.push(inner),
                    _ => {}
                }
            }
        }
    }
}

struct NsHandle {
    file: File,
    sock: NlSock,
}

/// A namespace's file and socket, as a creating worker hands them back.
type Opened = (File, NlSock);

/// The kernel, through rtnetlink, namespace files and `nft`.
pub struct Kernel {
    root: NlSock,
    /// Open namespaces, at most `cap` (two descriptors each); beyond that the first in name
    /// order is closed and reopened when needed again.
    ns: BTreeMap<String, NsHandle>,
    cap: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    NetnsAdd,
    NetnsDel,
    Veth,
    Conf,
    Forwarding,
    Nft,
}

fn class(op: &Op) -> Class {
    match op {
        Op::NetnsAdd { .. } => Class::NetnsAdd,
        Op::NetnsDel { .. } => Class::NetnsDel,
        Op::VethAdd { .. } => Class::Veth,
        Op::LinkDel { .. }
        | Op::LinkSet { .. }
        | Op::AddrAdd { .. }
        | Op::RouteAdd { .. }
        | Op::Qdisc { .. }
        | Op::QdiscDel { .. } => Class::Conf,
        Op::Forwarding { .. } => Class::Forwarding,
        Op::Nft { .. } | Op::NftDelTable { .. } => Class::Nft,
    }
}

/// Errors a removal treats as "already gone".
fn gone(op: &Op, e: &io::Error) -> bool {
    let removal = matches!(
        op,
        Op::NetnsDel { .. } | Op::LinkDel { .. } | Op::QdiscDel { .. } | Op::NftDelTable { .. }
    );
    removal
        && matches!(
            e.raw_os_error(),
            Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::EINVAL)
        )
}

fn link_message(ifindex: u32, up: Option<bool>) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = ifindex;
    if let Some(up) = up {
        m.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        m.header.change_mask = LinkFlags::Up;
    }
    m
}

/// Mounts a private tmpfs at [`NETNS_DIR`] unless one is there. sdnbed does not use
/// `/run/netns` (where `ip netns` looks): creating a file there costs about a millisecond on
/// machines whose `/run` is not a tmpfs, a second for a thousand namespaces, while a tmpfs
/// takes microseconds. Enter a namespace with `sdnbed exec RUN NODE -- CMD` or
/// `nsenter --net=/run/sdnbed/netns/NAME CMD`. The tmpfs stays mounted (empty) after teardown,
/// as `ip` leaves `/run/netns`; a lock keeps two processes from mounting it twice.
pub fn prepare_netns_dir() -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    use std::os::unix::fs::MetadataExt;
    fs::create_dir_all(NETNS_DIR)?;
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(Path::new(NETNS_DIR).with_extension("lock"))?;
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io::Error::from(e))?;
    let here = fs::metadata(NETNS_DIR)?.dev();
    let parent = fs::metadata(Path::new(NETNS_DIR).parent().unwrap_or(Path::new("/")))?.dev();
    if here == parent {
        mount(
            Some("sdnbed-netns"),
            NETNS_DIR,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("size=4m,mode=0755"),
        )?;
        mount(
            None::<&str>,
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )?;
    }
    Ok(())
}

/// Creates namespace `name` from the calling (worker) thread, which stays in it, and returns
/// its file and a socket bound to it, with `lo` up. With `adopt`, the namespace is process
/// `adopt`'s (a container sandbox's) instead of a new one: the thread enters it and mounts it
/// under `name`, so from here on it is a namespace like any other (its processes are the
/// sandbox's, which removing the mount does not stop).
fn make_netns(name: &str, adopt: Option<u32>) -> io::Result<Opened> {
    let path = netns_path(name);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let made = (|| {
        match adopt {
            None => unshare(CloneFlags::CLONE_NEWNET)?,
            Some(pid) => {
                let theirs = File::open(format!("/proc/{pid}/ns/net"))?;
                nix::sched::setns(&theirs, CloneFlags::CLONE_NEWNET)?;
            }
        }
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &path,
            Some("none"),
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )?;
        // IPv4 only: no IPv6 addresses, DAD or MLD traffic on sdnbed's links (it would show in
        // the link counters), and links come up faster.
        for conf in ["all", "default"] {
            fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1")?;
        }
        let file = File::open(&path)?;
        let mut sock = NlSock::new()?;
        sock.transact(vec![(
            RouteNetlinkMessage::SetLink(link_message(LO, Some(true))),
            0,
        )])
        .map_err(|(_, e)| e)?;
        Ok::<_, io::Error>((file, sock))
    })();
    if made.is_err() {
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        let _ = fs::remove_file(&path);
    }
    made
}

impl Kernel {
    /// Opens the caller's rtnetlink socket and prepares [`NETNS_DIR`]. Raises the soft limit
    /// on open files to the hard limit: the executor keeps a namespace file and a socket open
    /// per namespace, two thousand for a thousand hosts, more than a default soft limit of 1024.
    pub fn new() -> io::Result<Kernel> {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
        if soft < hard {
            setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
        }
        // A quarter of the descriptors for cached namespaces (two each), the rest for veth
        // batches (two per veth), sockets of probes and the caller.
        let cap = (hard.min(1 << 20) as usize).saturating_sub(128) / 8;
        prepare_netns_dir()?;
        Ok(Kernel {
            root: NlSock::new()?,
            ns: BTreeMap::new(),
            cap: cap.max(8),
        })
    }

    /// The handle of an existing namespace, opened on first use.
    fn handle(&mut self, name: &str) -> io::Result<&mut NsHandle> {
        if !self.ns.contains_key(name) {
            let file = File::open(netns_path(name))?;
            let sock = in_netns(file.as_fd(), NlSock::new)?;
            self.cache(name, NsHandle { file, sock });
        }
        Ok(self.ns.get_mut(name).expect("just inserted"))
    }

    fn cache(&mut self, name: &str, h: NsHandle) {
        while self.ns.len() >= self.cap {
            self.ns.pop_first();
        }
        self.ns.insert(name.to_string(), h);
    }

    /// Creates namespaces on worker threads (unshare + bind mount each in turn; one thread per
    /// core, at most 4, each taking a contiguous share).
    fn netns_add(&mut self, ops: &[&Op]) -> Result<(), ExecError> {
        let names: Vec<(&str, Option<u32>)> = ops
            .iter()
            .map(|o| match o {
                Op::NetnsAdd { name, adopt } => (name.as_str(), *adopt),
                other => (other.ns(), None),
            })
            .collect();
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4);
        let chunk = names.len().div_ceil(workers).max(1);
        // Each worker keeps the handles of its first namespaces, up to its share of the cache;
        // later ones are closed (and reopened on use) so descriptors stay within the limit.
        let keep = (self.cap / workers).max(1);
        let made: Vec<Vec<io::Result<Option<Opened>>>> = std::thread::scope(|s| {
            let handles: Vec<_> = names
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        let mut out = Vec::new();
                        for (i, (name, adopt)) in part.iter().enumerate() {
                            let r = make_netns(name, *adopt).map(|h| (i < keep).then_some(h));
                            let failed = r.is_err();
                            out.push(r);
                            if failed {
                                break;
                            }
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut first_err: Option<ExecError> = None;
        for (part_ops, part) in ops.chunks(chunk).zip(made) {
            let n = part.len();
            for (op, r) in part_ops.iter().zip(part) {
                match r {
                    Ok(Some((file, sock))) => self.cache(op.ns(), NsHandle { file, sock }),
                    Ok(None) => {}
                    Err(e) => {
                        first_err.get_or_insert(ExecError::new(op, e));
                    }
                }
            }
            if n < part_ops.len() && first_err.is_none() {
                first_err = Some(ExecError::new(
                    part_ops[n],
                    io::Error::other("namespace worker stopped"),
                ));
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Kills the processes inside, then unmounts and removes the namespace files.
    fn netns_del(&mut self, ops: &[&Op]) -> Result<(), ExecError> {
        let paths: Vec<PathBuf> = ops.iter().map(|o| netns_path(o.ns())).collect();
        let pids = pids_in(&paths);
        for &pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Wait (bounded, 2 s) until they are gone, so "nothing left" holds when we return.
        for _ in 0..400 {
            if pids
                .iter()
                .all(|p| !Path::new(&format!("/proc/{p}/ns")).exists())
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for (op, path) in ops.iter().zip(&paths) {
            self.ns.remove(op.ns());
            match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::EINVAL) => {}
                Err(e) => return Err(ExecError::new(op, e.into())),
            }
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ExecError::new(op, e)),
            }
        }
        Ok(())
    }

    /// Veth pairs, in chunks whose namespace files stay open until the chunk is acknowledged.
    fn veths(&mut self, ops: &[&Op]) -> Result<(), ExecError> {
        for chunk in ops.chunks(self.cap.max(2) / 2) {
            self.veth_chunk(chunk)?;
        }
        Ok(())
    }

    fn veth_chunk(&mut self, ops: &[&Op]) -> Result<(), ExecError> {
        let mut msgs = Vec::new();
        let mut files = Vec::new();
        for op in ops {
            let Op::VethAdd {
                ns,
                name,
                ifindex,
                peer_ns,
                peer_name,
                peer_ifindex,
            } = op
            else {
                unreachable!("class Veth holds VethAdd only")
            };
            let open = |n: &str| File::open(netns_path(n)).map_err(|e| ExecError::new(op, e));
            let (f, pf) = (open(ns)?, open(peer_ns)?);
            let (fd, peer_fd) = (f.as_raw_fd(), pf.as_raw_fd());
            files.push((f, pf));
            // The peer cannot be set up in the same request (veth_open answers ENOTCONN while
            // its own peer is not linked yet); it is brought up right after, from its namespace.
            let mut peer = link_message(*peer_ifindex, None);
            peer.attributes = vec![
                LinkAttribute::IfName(peer_name.clone()),
                LinkAttribute::NetNsFd(peer_fd),
            ];
            let mut m = link_message(*ifindex, Some(true));
            m.attributes = vec![
                LinkAttribute::IfName(name.clone()),
                LinkAttribute::NetNsFd(fd),
                LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(InfoKind::Veth),
                    LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
                ]),
            ];
            msgs.push((RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL));
        }
        self.root
            .transact(msgs)
            .map_err(|(i, e)| ExecError::new(ops[i], e))?;
        drop(files);
        let ups: Vec<Op> = ops
            .iter()
            .map(|op| match op {
                Op::VethAdd {
                    peer_ns,
                    peer_ifindex,
                    ..
                } => Op::LinkSet {
                    ns: peer_ns.clone(),
                    ifindex: *peer_ifindex,
                    up: true,
                },
                _ => unreachable!("class Veth holds VethAdd only"),
            })
            .collect();
        self.conf(&ups.iter().collect::<Vec<_>>())
    }

    fn conf_message(op: &Op) -> (RouteNetlinkMessage, u16) {
        match op {
            Op::LinkDel { ifindex, .. } => (
                RouteNetlinkMessage::DelLink(link_message(*ifindex, None)),
                0,
            ),
            Op::LinkSet { ifindex, up, .. } => (
                RouteNetlinkMessage::SetLink(link_message(*ifindex, Some(*up))),
                0,
            ),
            Op::AddrAdd {
                ifindex,
                addr,
                prefix_len,
                ..
            } => {
                let mut m = AddressMessage::default();
                m.header.family = AddressFamily::Inet;
                m.header.prefix_len = *prefix_len;
                m.header.index = *ifindex;
                m.attributes = vec![
                    AddressAttribute::Local((*addr).into()),
                    AddressAttribute::Address((*addr).into()),
                ];
                (
                    RouteNetlinkMessage::NewAddress(m),
                    NLM_F_CREATE | NLM_F_REPLACE,
                )
            }
            Op::RouteAdd { route, .. } => {
                let mut m = RouteMessage::default();
                m.header.address_family = AddressFamily::Inet;
                m.header.table = 254; // RT_TABLE_MAIN
                m.header.protocol = RouteProtocol::Static;
                m.header.scope = RouteScope::Universe;
                m.header.kind = RouteType::Unicast;
                if let Some(d) = route.dst {
                    m.header.destination_prefix_length = d.prefix_len();
                    m.attributes
                        .push(RouteAttribute::Destination(RouteAddress::Inet(d.addr())));
                }
                m.attributes
                    .push(RouteAttribute::Gateway(RouteAddress::Inet(route.via)));
                (
                    RouteNetlinkMessage::NewRoute(m),
                    NLM_F_CREATE | NLM_F_REPLACE,
                )
            }
            Op::Qdisc {
                ifindex, shaper, ..
            } => {
                let mut m = TcMessage::default();
                m.header.index = *ifindex as i32;
                m.header.parent = TcHandle::ROOT;
                m.attributes = match shaper {
                    Shaper::Tbf(tbf) => vec![
                        TcAttribute::Kind("tbf".into()),
                        TcAttribute::Options(
                            tbf.options()
                                .into_iter()
                                .map(|(k, v)| TcOption::Other(DefaultNla::new(k, v)))
                                .collect(),
                        ),
                    ],
                    // netem's options start with a struct, not attributes: sent raw.
                    Shaper::Netem(n) => vec![
                        TcAttribute::Kind("netem".into()),
                        TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, n.options())),
                    ],
                };
                (
                    RouteNetlinkMessage::NewQueueDiscipline(m),
                    NLM_F_CREATE | NLM_F_REPLACE,
                )
            }
            Op::QdiscDel { ifindex, .. } => {
                let mut m = TcMessage::default();
                m.header.index = *ifindex as i32;
                m.header.parent = TcHandle::ROOT;
                (RouteNetlinkMessage::DelQueueDiscipline(m), 0)
            }
            _ => unreachable!("not a configuration op: {op}"),
        }
    }

    /// Configuration ops, one batch per namespace (order kept within a namespace).
    fn conf(&mut self, ops: &[&Op]) -> Result<(), ExecError> {
        let mut by_ns: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
        for op in ops {
            by_ns.entry(op.ns()).or_default().push(op);
        }
        for (ns, ops) in by_ns {
            let h = match self.handle(ns) {
                Ok(h) => h,
                Err(e) if ops.iter().all(|op| gone(op, &e)) => continue,
                Err(e) => return Err(ExecError::new(ops[0], e)),
            };
            let mut pending: Vec<&Op> = ops;
            loop {
                let msgs = pending.iter().map(|op| Self::conf_message(op)).collect();
                match h.sock.transact(msgs) {
                    Ok(()) => break,
                    // A removal of something already gone: carry on after it.
                    Err((i, e)) if gone(pending[i], &e) => pending = pending[i + 1..].to_vec(),
                    Err((i, e)) => return Err(ExecError::new(pending[i], e)),
                }
            }
        }
        Ok(())
    }

    fn forwarding(&mut self, ops: &[&Op]) -> Result<(), ExecError> {
        let mut files = Vec::new();
        for op in ops {
            let h = self.handle(op.ns()).map_err(|e| ExecError::new(op, e))?;
            files.push(h.file.try_clone().map_err(|e| ExecError::new(op, e))?);
        }
        let r: Result<(), (usize, io::Error)> = std::thread::scope(|s| {
            s.spawn(|| {
                for (i, f) in files.iter().enumerate() {
                    setns(f.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| (i, e.into()))?;
                    fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|e| (i, e))?;
                }
                Ok(())
            })
            .join()
            .unwrap_or_else(|_| Err((0, io::Error::other("sysctl worker panicked"))))
        });
        r.map_err(|(i, e)| ExecError::new(ops[i], e))
    }

    fn nft(&mut self, op: &Op) -> Result<(), ExecError> {
        let script = match op {
            Op::Nft { script, .. } => script.clone(),
            Op::NftDelTable { .. } => "delete table ip sdnbed\n".to_string(),
            _ => unreachable!("class Nft"),
        };
        let mut cmd = match command_in(op.ns(), "nft") {
            Ok(c) => c,
            Err(e) if gone(op, &e) => return Ok(()),
            Err(e) => return Err(ExecError::new(op, e)),
        };
        let mut child = cmd
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ExecError::new(op, e))?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(script.as_bytes())
            .map_err(|e| ExecError::new(op, e))?;
        let out = child
            .wait_with_output()
            .map_err(|e| ExecError::new(op, e))?;
        if out.status.success() {
            return Ok(());
        }
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if matches!(op, Op::NftDelTable { .. }) && msg.contains("No such file") {
            return Ok(());
        }
        Err(ExecError::new(op, io::Error::other(msg)))
    }
}

impl Executor for Kernel {
    fn apply(&mut self, ops: &[Op]) -> Result<(), ExecError> {
        let mut i = 0;
        while i < ops.len() {
            let c = class(&ops[i]);
            let mut j = i;
            while j < ops.len() && class(&ops[j]) == c {
                j += 1;
            }
            let run: Vec<&Op> = ops[i..j].iter().collect();
            match c {
                Class::NetnsAdd => self.netns_add(&run)?,
                Class::NetnsDel => self.netns_del(&run)?,
                Class::Veth => self.veths(&run)?,
                Class::Conf => self.conf(&run)?,
                Class::Forwarding => self.forwarding(&run)?,
                Class::Nft => {
                    for op in run {
                        self.nft(op)?;
                    }
                }
            }
            i = j;
        }
        Ok(())
    }

    fn counters(&mut self, ns: &str) -> Result<Vec<(u32, IfCounters)>, ExecError> {
        let err = |e| ExecError {
            op: format!("ip -n {ns} -s link; tc -n {ns} -s qdisc"),
            error: e,
        };
        let h = self.handle(ns).map_err(err)?;
        let mut out: BTreeMap<u32, IfCounters> = BTreeMap::new();
        let links = h
            .sock
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
            .map_err(err)?;
        for m in links {
            if let RouteNetlinkMessage::NewLink(l) = m {
                let c = out.entry(l.header.index).or_default();
                for a in &l.attributes {
                    if let LinkAttribute::Stats64(s) = a {
                        c.tx_bytes = s.tx_bytes;
                        c.tx_packets = s.tx_packets;
                        c.tx_dropped += s.tx_dropped;
                        c.rx_bytes = s.rx_bytes;
                        c.rx_packets = s.rx_packets;
                    }
                }
            }
        }
        let qdiscs = h
            .sock
            .dump(RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()))
            .map_err(err)?;
        for m in qdiscs {
            if let RouteNetlinkMessage::NewQueueDiscipline(q) = m {
                if q.header.parent != TcHandle::ROOT {
                    continue;
                }
                let mut drops = 0u64;
                for a in &q.attributes {
                    if let TcAttribute::Stats2(v) = a {
                        for s in v {
                            if let TcStats2::Queue(q) = s {
                                drops += u64::from(q.drops);
                            }
                        }
                    }
                }
                out.entry(q.header.index as u32).or_default().tx_dropped += drops;
            }
        }
        Ok(out.into_iter().collect())
    }

    fn netem_available(&mut self, scratch: &str) -> Result<bool, ExecError> {
        let add = Op::NetnsAdd {
            name: scratch.to_string(),
            adopt: None,
        };
        self.apply(std::slice::from_ref(&add))?;
        // A netem request without options: the kernel answers ENOENT when it has no such
        // qdisc, and EINVAL (creating nothing) when it has one.
        let mut m = TcMessage::default();
        m.header.index = LO as i32;
        m.header.parent = TcHandle::ROOT;
        m.attributes = vec![TcAttribute::Kind("netem".into())];
        let r = match self.handle(scratch) {
            Ok(h) => h.sock.transact(vec![(
                RouteNetlinkMessage::NewQueueDiscipline(m),
                NLM_F_CREATE | NLM_F_EXCL,
            )]),
            Err(e) => Err((0, e)),
        };
        self.apply(&[Op::NetnsDel {
            name: scratch.to_string(),
        }])?;
        match r {
            Ok(()) => Ok(true),
            Err((_, e)) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err((_, e)) if e.raw_os_error() == Some(libc::EINVAL) => Ok(true),
            Err((_, e)) => Err(ExecError::new(&add, e)),
        }
    }
}
