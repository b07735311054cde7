//! Helpers for the privileged data-plane tests (CI runs as root): unique run ids, scenario
//! values, an ICMP ping and TCP endpoints inside namespaces, and the "nothing of ours is left"
//! check.
#![allow(dead_code)]

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sdnbed::dataplane::netlink::{in_netns, netns_path, Kernel};
use sdnbed::dataplane::{prepare, Dataplane, DeployOptions};
use sdnbed::model::link::LinkParams;
use sdnbed::model::time::Duration as SimDuration;
use sdnbed::scenario::types::*;
use sdnbed::scenario::units::BitRate;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A run id no other test (or concurrent test process) uses.
pub fn run_id(tag: &str) -> String {
    format!(
        "t{}-{tag}{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn node(name: &str, kind: NodeKind) -> Node {
    Node {
        name: name.into(),
        kind,
    }
}

pub fn n(s: &str) -> LinkEnd {
    LinkEnd::Node(s.into())
}

pub fn link(a: LinkEnd, b: LinkEnd, bw: Option<u64>) -> Link {
    Link {
        between: [a, b],
        params: LinkParams {
            bandwidth: bw.map(BitRate),
            ..Default::default()
        },
        emulator: EmulatorChoice::Auto,
        capture: false,
    }
}

pub fn service(name: &str, replicas: u32, port: u16, gateway: &str) -> Service {
    Service {
        name: name.into(),
        replicas,
        port,
        gateway: gateway.into(),
        version: "v1".into(),
        workers: 1,
        readiness: Readiness {
            initial_delay: SimDuration::ZERO,
            period: SimDuration::from_millis(100),
            failure_threshold: 3,
        },
        termination: Termination {
            pre_stop: SimDuration::ZERO,
            grace: SimDuration::from_secs(1),
        },
        cpu: None,
        memory: None,
        versions: vec![],
    }
}

pub fn scenario(
    nodes: Vec<Node>,
    services: Vec<Service>,
    links: Vec<Link>,
    policies: Vec<Policy>,
) -> Scenario {
    Scenario {
        name: "t".into(),
        description: String::new(),
        seed: 1,
        duration: SimDuration::from_secs(1),
        warmup: SimDuration::ZERO,
        window: SimDuration::from_millis(100),
        backend: BackendKind::Netns,
        nodes,
        services,
        links,
        policies,
        workloads: vec![],
        rollout: None,
        events: vec![],
    }
}

pub fn deploy(sc: &Scenario, run: &str) -> Dataplane<Kernel> {
    let (plan, ledger) = prepare(sc, run, &DeployOptions::default()).expect("prepare");
    Dataplane::deploy(plan, ledger, Kernel::new().expect("kernel"), None).expect("deploy")
}

/// One ICMP echo from namespace `ns` to `dst`; true if the reply came within `timeout`.
pub fn ping(ns: &str, dst: Ipv4Addr, timeout: Duration) -> bool {
    let f = File::open(netns_path(ns)).expect("netns exists");
    in_netns(f.as_fd(), || {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: plain socket syscalls on a descriptor we own.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let sock = OwnedFd::from_raw_fd(fd);
            let tv = libc::timeval {
                tv_sec: timeout.as_secs() as _,
                tv_usec: timeout.subsec_micros() as _,
            };
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
            let id = (std::process::id() & 0xffff) as u16;
            let mut pkt = vec![8u8, 0, 0, 0];
            pkt.extend_from_slice(&id.to_be_bytes());
            pkt.extend_from_slice(&1u16.to_be_bytes());
            pkt.extend_from_slice(b"sdnbed-ping-test");
            let c = sdnbed::linkemu::gso::checksum(&pkt);
            pkt[2..4].copy_from_slice(&c.to_be_bytes());
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(dst).to_be(),
                },
                sin_zero: [0; 8],
            };
            if libc::sendto(
                sock.as_raw_fd(),
                pkt.as_ptr() as *const libc::c_void,
                pkt.len(),
                0,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            ) < 0
            {
                return Ok(false);
            }
            let mut buf = [0u8; 1500];
            loop {
                let n = libc::recv(
                    sock.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                );
                if n < 0 {
                    return Ok(false);
                }
                let ihl = usize::from(buf[0] & 0x0f) * 4;
                let icmp = &buf[ihl..n as usize];
                let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
                if icmp.len() >= 8 && icmp[0] == 0 && icmp[4..6] == id.to_be_bytes() && src == dst {
                    return Ok(true);
                }
            }
        }
    })
    .expect("ping thread")
}

/// A TCP listener bound inside namespace `ns` (the socket stays in it).
pub fn listen_in(ns: &str, addr: SocketAddrV4) -> TcpListener {
    let f = File::open(netns_path(ns)).expect("netns exists");
    in_netns(f.as_fd(), || TcpListener::bind(addr)).expect("bind in namespace")
}

/// A TCP socket connected from inside namespace `ns`.
pub fn connect_from(ns: &str, dst: SocketAddrV4, timeout: Duration) -> io::Result<TcpStream> {
    let f = File::open(netns_path(ns))?;
    in_netns(f.as_fd(), || {
        TcpStream::connect_timeout(&dst.into(), timeout)
    })
}

/// A server thread answering every connection with a name; stopping it closes its socket, so
/// its namespace can really go away.
pub struct NameServer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ns: String,
    addr: SocketAddrV4,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NameServer {
    /// `name` must be 6 bytes long.
    pub fn start(ns: &str, addr: SocketAddrV4, name: &'static str) -> NameServer {
        assert_eq!(name.len(), 6);
        let l = listen_in(ns, addr);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            for c in l.incoming() {
                if s2.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(mut c) = c {
                    // The name on connect, and again for every byte received, until EOF.
                    std::thread::spawn(move || {
                        let mut b = [0u8; 1];
                        while c.write_all(name.as_bytes()).is_ok() {
                            if !matches!(c.read(&mut b), Ok(1)) {
                                break;
                            }
                        }
                    });
                }
            }
        });
        NameServer {
            stop,
            ns: ns.to_string(),
            addr,
            thread: Some(thread),
        }
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = connect_from(&self.ns, self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one 6-byte name from a [`NameServer`] connection.
pub fn read_name(s: &mut TcpStream) -> String {
    let mut b = [0u8; 6];
    s.read_exact(&mut b).expect("a name");
    String::from_utf8_lossy(&b).to_string()
}

/// Asserts that nothing of run `run` is left: no namespace, no ledger, no nft table or link
/// with our names in the root namespace.
pub fn assert_gone(run: &str) {
    let prefix = format!("sdnbed-{run}-");
    let left: Vec<String> = std::fs::read_dir(sdnbed::dataplane::netlink::NETNS_DIR)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&prefix));
    assert!(!Path::new(&format!("/run/sdnbed/{run}.ledger")).exists());
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip link");
    assert!(!String::from_utf8_lossy(&links.stdout).contains(run));
    let tables = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft list tables");
    assert!(!String::from_utf8_lossy(&tables.stdout).contains("sdnbed"));
}

/// TCP goodput in bit/s from namespace `src` to a listener on `dst` in namespace `dst_ns`, over
/// `measure` after `warmup`; `mark` is called at the start and at the end of the measured window
/// (e.g. to sample link counters).
pub fn tcp_goodput(
    src: &str,
    dst_ns: &str,
    dst: SocketAddrV4,
    warmup: Duration,
    measure: Duration,
    mark: &mut dyn FnMut(),
) -> f64 {
    let listener = listen_in(dst_ns, dst);
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let rx = {
        let received = received.clone();
        std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 {
                    break;
                }
                received.fetch_add(n as u64, Ordering::Relaxed);
            }
        })
    };
    let tx = {
        let stop = stop.clone();
        let mut s = connect_from(src, dst, Duration::from_secs(3)).unwrap();
        std::thread::spawn(move || {
            let buf = vec![0x5au8; 1 << 16];
            while !stop.load(Ordering::Relaxed) {
                if s.write_all(&buf).is_err() {
                    break;
                }
            }
        })
    };
    std::thread::sleep(warmup);
    mark();
    let (t0, g0) = (std::time::Instant::now(), received.load(Ordering::Relaxed));
    std::thread::sleep(measure);
    let (t1, g1) = (std::time::Instant::now(), received.load(Ordering::Relaxed));
    mark();
    stop.store(true, Ordering::Relaxed);
    tx.join().unwrap();
    rx.join().unwrap();
    (g1 - g0) as f64 * 8.0 / (t1 - t0).as_secs_f64()
}
