//! Helpers for the emulator's privileged tests (CI runs as root): a two-host run whose link the
//! user-space emulator carries, UDP streams timed one way on `CLOCK_MONOTONIC` (system-wide, so
//! the sender's and receiver's namespaces share it), and a TCP bulk flow.
#![allow(dead_code)]

use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::netns_common::{link, n, node, run_id, scenario};
use sdnbed::dataplane::netlink::{in_netns, netns_path, Kernel};
use sdnbed::dataplane::{Dataplane, DeployOptions};
use sdnbed::linkemu::{deploy, Attached};
use sdnbed::model::link::LinkParams;
use sdnbed::scenario::types::{EmulatorChoice, NodeKind, Scenario};

/// Timing tests in one binary run one at a time (the machine has 2 cores).
pub fn serial() -> MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(|p| p.into_inner())
}

/// A run with hosts h1 and h2 joined by one link with `params`, through the emulator.
pub struct Run {
    pub dp: Dataplane<Kernel>,
    pub emu: Attached,
    pub h1: String,
    pub h2: String,
    pub a1: std::net::Ipv4Addr,
    pub a2: std::net::Ipv4Addr,
}

pub fn two_hosts(params: LinkParams, seed: u64, capture: Option<&Path>) -> Run {
    two_hosts_with(params, seed, capture, EmulatorChoice::Userspace)
}

/// [`two_hosts`] with the link's `emulator` choice.
pub fn two_hosts_with(
    params: LinkParams,
    seed: u64,
    capture: Option<&Path>,
    choice: EmulatorChoice,
) -> Run {
    let mut l = link(n("h1"), n("h2"), None);
    l.params = params;
    l.emulator = choice;
    l.capture = capture.is_some();
    let mut sc = scenario(
        vec![node("h1", NodeKind::Host), node("h2", NodeKind::Host)],
        vec![],
        vec![l],
        vec![],
    );
    sc.seed = seed;
    deploy_emulated(&sc, &run_id("emu"), capture)
}

pub fn deploy_emulated(sc: &Scenario, run: &str, capture: Option<&Path>) -> Run {
    let (dp, emu) = deploy(sc, run, &DeployOptions::default(), capture).expect("deploy");
    let (h1, h2) = (dp.plan().node("h1").unwrap(), dp.plan().node("h2").unwrap());
    Run {
        h1: h1.netns.clone(),
        h2: h2.netns.clone(),
        a1: h1.ifaces[0].addr,
        a2: h2.ifaces[0].addr,
        emu,
        dp,
    }
}

pub fn mono_ns() -> u64 {
    sdnbed::workload::sys::monotonic_ns()
}

pub fn udp_in(ns: &str, addr: SocketAddrV4) -> UdpSocket {
    let f = std::fs::File::open(netns_path(ns)).expect("netns");
    in_netns(f.as_fd(), || UdpSocket::bind(addr)).expect("udp bind")
}

/// `CLOCK_REALTIME` in nanoseconds (the clock of the kernel's receive timestamps).
pub fn real_ns() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    d.as_nanos() as u64
}

/// Asks for the kernel's receive time of each datagram (`SO_TIMESTAMPNS`), so the receiving
/// thread's own wake-up latency is not measured.
fn enable_rx_timestamps(s: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with an int option on our socket.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &one as *const _ as *const libc::c_void,
            4,
        )
    };
    assert_eq!(r, 0);
}

/// An 8 MiB receive buffer (`SO_RCVBUFFORCE`), so a fast stream is not dropped at the
/// receiving socket while its thread waits for a CPU.
fn big_rcvbuf(s: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt with an int option on our socket.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const _ as *const libc::c_void,
            4,
        )
    };
}

/// One datagram and its kernel receive time (`CLOCK_REALTIME` ns); None on timeout.
fn recv_stamped(s: &UdpSocket, buf: &mut [u8]) -> Option<(usize, u64)> {
    use std::os::fd::AsRawFd;
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; 16];
    // SAFETY: a zeroed msghdr is valid; we point it at our iovec and control buffer.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: recvmsg into buffers we own; the cmsg walk stays within msg_controllen.
    unsafe {
        let n = libc::recvmsg(s.as_raw_fd(), &mut msg, 0);
        if n < 0 {
            return None;
        }
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                return Some((
                    n as usize,
                    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
                ));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Some((n as usize, real_ns()))
    }
}

/// One received datagram: its sequence number and one-way delay.
#[derive(Clone, Copy, Debug)]
pub struct Got {
    pub seq: u64,
    pub delay_ns: u64,
}

/// Sends `count` datagrams of `size` bytes (≥ 16: sequence number, send time) from `from` to
/// `to` at `rate` per second, receiving them on a thread; returns what arrived, in arrival
/// order, after waiting `settle` for the last ones.
pub fn udp_stream(
    r: &Run,
    count: u64,
    rate: f64,
    size: usize,
    settle: Duration,
    mut between: impl FnMut(u64),
) -> Vec<Got> {
    let dst = SocketAddrV4::new(r.a2, 7000);
    let rx = udp_in(&r.h2, dst);
    rx.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let tx = udp_in(&r.h1, SocketAddrV4::new(r.a1, 0));
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    enable_rx_timestamps(&rx);
    big_rcvbuf(&rx);
    let recv = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut b = vec![0u8; 65536];
        loop {
            match recv_stamped(&rx, &mut b) {
                Some((n, rx_ns)) if n >= 16 => {
                    let seq = u64::from_le_bytes(b[0..8].try_into().unwrap());
                    let sent = u64::from_le_bytes(b[8..16].try_into().unwrap());
                    out.push(Got {
                        seq,
                        delay_ns: rx_ns.saturating_sub(sent),
                    });
                }
                Some(_) => {}
                None => {
                    if s2.load(Ordering::Relaxed) {
                        return out;
                    }
                }
            }
        }
    });
    let mut buf = vec![0u8; size.max(16)];
    let t0 = mono_ns();
    let gap = 1e9 / rate;
    for i in 0..count {
        let due = t0 + (i as f64 * gap) as u64;
        while mono_ns() < due {
            let left = due.saturating_sub(mono_ns());
            if left > 200_000 {
                std::thread::sleep(Duration::from_nanos(left - 100_000));
            } else {
                std::hint::spin_loop();
            }
        }
        between(i);
        buf[0..8].copy_from_slice(&i.to_le_bytes());
        buf[8..16].copy_from_slice(&real_ns().to_le_bytes());
        tx.send_to(&buf, dst).expect("send");
    }
    std::thread::sleep(settle);
    stop.store(true, Ordering::Relaxed);
    recv.join().unwrap()
}

/// TCP goodput from h1 to h2 in bit/s, over `measure` after `warmup`; `mark` is called at the
/// start and the end of the measured window.
pub fn tcp_goodput(r: &Run, warmup: Duration, measure: Duration, mark: &mut dyn FnMut()) -> f64 {
    let dst = SocketAddrV4::new(r.a2, 5001);
    crate::netns_common::tcp_goodput(&r.h1, &r.h2, dst, warmup, measure, mark)
}

pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
