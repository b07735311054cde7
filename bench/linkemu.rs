//! The user-space link emulator's figures (root; two namespaces joined by one emulated link):
//!
//!   cargo bench --bench linkemu -- accuracy     # RTT error at 10 ms each way, 1,000 probes/s
//!   cargo bench --bench linkemu -- throughput   # TCP through unshaped and 1 Gbit/s links
//!   cargo bench --bench linkemu -- loss         # 1 % loss over 10^6 packets
//!   cargo bench --bench linkemu -- sim          # bench/linkemu_two_nodes.toml, simulated and
//!                                               # emulated: mean and p99 request latency
//!   cargo bench --bench linkemu -- udp          # 1.2 Gbit/s of UDP into a 1 Gbit/s link
//!   cargo bench --bench linkemu -- all          # all but udp
//!
//! Each prints one line per figure. Probes are ICMP echoes sent from h1 (send time taken just
//! before `sendto`) whose replies h2's kernel makes; the reply's receive time is the kernel's
//! (`SO_TIMESTAMPNS`), so the prober's own wake-up latency is not counted.

#[path = "../tests/linkemu_common/mod.rs"]
mod linkemu_common;
#[path = "../tests/netns_common/mod.rs"]
mod netns_common;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use linkemu_common::*;
use sdnbed::dataplane::netlink::{in_netns, netns_path};
use sdnbed::model::link::{LinkParams, Loss};
use sdnbed::model::time::Duration;
use sdnbed::scenario::units::BitRate;

fn icmp_socket(ns: &str) -> OwnedFd {
    let f = std::fs::File::open(netns_path(ns)).unwrap();
    in_netns(f.as_fd(), || {
        // SAFETY: a raw ICMP socket we own; SO_TIMESTAMPNS and a receive timeout on it.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
            assert!(fd >= 0, "raw socket");
            let one: libc::c_int = 1;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                &one as *const _ as _,
                4,
            );
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as _,
                std::mem::size_of::<libc::timeval>() as u32,
            );
            Ok(OwnedFd::from_raw_fd(fd))
        }
    })
    .unwrap()
}

/// Round-trip times in ns of `n` ICMP echoes from `ns` to `dst`, `gap` apart.
fn probe_rtts(ns: &str, dst: Ipv4Addr, n: u64, gap: StdDuration) -> Vec<u64> {
    let sock = Arc::new(icmp_socket(ns));
    let id = (std::process::id() & 0xffff) as u16;
    let done = Arc::new(AtomicBool::new(false));
    let (s2, d2) = (sock.clone(), done.clone());
    let rx = std::thread::spawn(move || {
        let mut rtts = Vec::new();
        let mut buf = [0u8; 2048];
        let mut cbuf = [0u64; 16];
        loop {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: recvmsg into our buffers; the cmsg walk stays within msg_controllen.
            let (len, ts) = unsafe {
                let mut m: libc::msghdr = std::mem::zeroed();
                m.msg_iov = &mut iov;
                m.msg_iovlen = 1;
                m.msg_control = cbuf.as_mut_ptr().cast();
                m.msg_controllen = std::mem::size_of_val(&cbuf);
                let r = libc::recvmsg(s2.as_raw_fd(), &mut m, 0);
                if r < 0 {
                    if d2.load(Ordering::Relaxed) {
                        return rtts;
                    }
                    continue;
                }
                let mut ts = 0;
                let mut c = libc::CMSG_FIRSTHDR(&m);
                while !c.is_null() {
                    if (*c).cmsg_type == libc::SO_TIMESTAMPNS {
                        let t =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                        ts = t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64;
                    }
                    c = libc::CMSG_NXTHDR(&m, c);
                }
                (r as usize, ts)
            };
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            let icmp = &buf[ihl..len];
            if icmp.len() >= 16 && icmp[0] == 0 && icmp[4..6] == id.to_be_bytes() {
                let sent = u64::from_le_bytes(icmp[8..16].try_into().unwrap());
                rtts.push(ts - sent);
            }
        }
    });
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(dst).to_be(),
        },
        sin_zero: [0; 8],
    };
    // The prober runs at real-time priority while it probes, so that being preempted between
    // taking the send time and `sendto` (an error of the probe, not of the link) is rare on a
    // shared machine.
    set_fifo(true);
    let t0 = mono_ns();
    for i in 0..n {
        let due = t0 + i * gap.as_nanos() as u64;
        while mono_ns() < due {
            let left = due.saturating_sub(mono_ns());
            if left > 300_000 {
                std::thread::sleep(StdDuration::from_nanos(left - 200_000));
            }
        }
        let mut pkt = vec![8u8, 0, 0, 0];
        pkt.extend_from_slice(&id.to_be_bytes());
        pkt.extend_from_slice(&(i as u16).to_be_bytes());
        pkt.extend_from_slice(&real_ns().to_le_bytes());
        pkt.extend_from_slice(&[0u8; 40]);
        let c = sdnbed::linkemu::gso::checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
        // SAFETY: sendto with our buffer and address.
        unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
    }
    set_fifo(false);
    std::thread::sleep(StdDuration::from_millis(200));
    done.store(true, Ordering::Relaxed);
    rx.join().unwrap()
}

/// `SCHED_FIFO` 40 for the calling thread, or back to `SCHED_OTHER`.
fn set_fifo(on: bool) {
    let (policy, prio) = if on {
        (libc::SCHED_FIFO, 40)
    } else {
        (libc::SCHED_OTHER, 0)
    };
    let p = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: sets the calling thread's policy with a valid sched_param.
    unsafe { libc::sched_setscheduler(0, policy, &p) };
}

fn report_errors(label: &str, rtts: &[u64], target_ns: u64, sent: u64) {
    let mut err: Vec<u64> = rtts.iter().map(|&r| r.abs_diff(target_ns)).collect();
    err.sort();
    let mean_signed = rtts
        .iter()
        .map(|&r| r as f64 - target_ns as f64)
        .sum::<f64>()
        / rtts.len() as f64;
    println!(
        "accuracy {label}: probes {}/{sent}, |error| p50 {:.1} us, p99 {:.1} us, max {:.1} us, mean error {:+.1} us",
        rtts.len(),
        percentile(&err, 0.5) as f64 / 1e3,
        percentile(&err, 0.99) as f64 / 1e3,
        *err.last().unwrap() as f64 / 1e3,
        mean_signed / 1e3
    );
}

/// A TCP flow from h1 to h2 paced at `rate` bit/s (`SO_MAX_PACING_RATE`), until `stop`.
fn paced_flow(r: &Run, rate: u64, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    use std::io::Read;
    let dst = SocketAddrV4::new(r.a2, 5002);
    let l = netns_common::listen_in(&r.h2, dst);
    let rx = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut b = vec![0u8; 1 << 16];
        while matches!(c.read(&mut b), Ok(n) if n > 0) {}
    });
    let mut s = netns_common::connect_from(&r.h1, dst, StdDuration::from_secs(3)).unwrap();
    let pace = (rate / 8) as u32;
    // SAFETY: setsockopt with a u32 option on our socket.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MAX_PACING_RATE,
            &pace as *const _ as _,
            4,
        )
    };
    let tx = std::thread::spawn(move || {
        let b = vec![1u8; 1 << 16];
        while !stop.load(Ordering::Relaxed) {
            if s.write_all(&b).is_err() {
                break;
            }
        }
    });
    vec![tx, rx]
}

fn accuracy() {
    let r = two_hosts(
        LinkParams {
            delay: Duration::from_millis(10),
            ..Default::default()
        },
        1,
        None,
    );
    let n = 10_000;
    let rtts = probe_rtts(&r.h1, r.a2, n, StdDuration::from_millis(1));
    report_errors("idle", &rtts, 20_000_000, n);
    let stop = Arc::new(AtomicBool::new(false));
    let flow = paced_flow(&r, 100_000_000, stop.clone());
    std::thread::sleep(StdDuration::from_millis(500));
    let c0 = r.emu.counters()[0].3.bytes;
    let t0 = std::time::Instant::now();
    let rtts = probe_rtts(&r.h1, r.a2, n, StdDuration::from_millis(1));
    let mbps = (r.emu.counters()[0].3.bytes - c0) as f64 * 8.0 / t0.elapsed().as_secs_f64() / 1e6;
    stop.store(true, Ordering::Relaxed);
    for h in flow {
        h.join().unwrap();
    }
    report_errors(
        &format!("with TCP flow ({mbps:.0} Mbit/s on the link)"),
        &rtts,
        20_000_000,
        n,
    );
}

fn throughput() {
    for (label, bw, queue) in [
        ("unshaped", None, None),
        ("1 Gbit/s, default queue", Some(1_000_000_000), None),
        (
            "1 Gbit/s, 1000-packet queue",
            Some(1_000_000_000),
            Some(1000),
        ),
    ] {
        let r = two_hosts(
            LinkParams {
                bandwidth: bw.map(BitRate),
                queue: queue.map(sdnbed::scenario::units::QueueLimit::Packets),
                ..Default::default()
            },
            1,
            None,
        );
        let mut marks = Vec::new();
        let g = tcp_goodput(
            &r,
            StdDuration::from_secs(1),
            StdDuration::from_secs(5),
            &mut || marks.push((std::time::Instant::now(), r.emu.counters()[0].3)),
        );
        let ((t0, c0), (t1, c1)) = (marks[0], marks[1]);
        let link = (c1.bytes - c0.bytes) as f64 * 8.0 / (t1 - t0).as_secs_f64();
        println!(
            "throughput {label}: TCP goodput {:.0} Mbit/s, IP packets on the link {:.0} Mbit/s, {} packets, {} queue drops (5 s after 1 s)",
            g / 1e6,
            link / 1e6,
            c1.packets - c0.packets,
            c1.dropped_queue - c0.dropped_queue
        );
    }
}

fn loss() {
    let r = two_hosts(
        LinkParams {
            loss: Loss::Bernoulli(0.01),
            ..Default::default()
        },
        1,
        None,
    );
    let n = 1_000_000u64;
    let got = udp_stream(&r, n, 100_000.0, 64, StdDuration::from_millis(200), |_| {});
    let c = r.emu.counters()[0].3;
    let seen = c.packets + c.dropped_loss;
    println!(
        "loss: sent {n}, offered to the model {seen}, lost {} = {:.4} % (configured 1 %), received {}",
        c.dropped_loss,
        c.dropped_loss as f64 / seen as f64 * 100.0,
        got.len()
    );
}

/// Latencies (ns, from the intended send time) of a Poisson request/response workload run
/// through the emulator as the scenario describes it: `connections` keep-alive TCP connections,
/// `request` bytes answered at once with `response` bytes by a server in the target host.
fn emulate_workload(sc: &sdnbed::scenario::Scenario) -> Vec<u64> {
    use sdnbed::scenario::types::Target;
    use std::io::Read;
    use std::sync::Mutex;
    let wl = &sc.workloads[0];
    let Target::Node(to) = &wl.to else {
        panic!("the benchmark scenario targets a node")
    };
    let run = netns_common::run_id("cmp");
    let (dp, emu) =
        sdnbed::linkemu::deploy(sc, &run, &sdnbed::dataplane::DeployOptions::default(), None)
            .expect("deploy");
    let (client, server) = (
        dp.plan().node(&wl.from).unwrap(),
        dp.plan().node(to).unwrap(),
    );
    let dst = SocketAddrV4::new(server.ifaces[0].addr, 8080);
    let (req, resp) = (wl.request.0 as usize, wl.response.0 as usize);
    let listener = netns_common::listen_in(&server.netns, dst);
    let conns = wl.connections as usize;
    std::thread::spawn(move || {
        for c in listener.incoming().take(conns) {
            let mut c = c.unwrap();
            c.set_nodelay(true).unwrap();
            std::thread::spawn(move || {
                let mut b = vec![0u8; req];
                let out = vec![7u8; resp];
                while c.read_exact(&mut b).is_ok() {
                    if c.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    // Arrivals: Poisson at the workload's rate, from the benchmark's own seeded generator.
    let rate = 500.0;
    let dur = sc.duration.as_secs_f64();
    let warm = sc.warmup.as_secs_f64();
    let mut rng = sdnbed::model::rng::Rng::new(sc.seed);
    let t0 = mono_ns() + 200_000_000;
    let mut intended = Vec::new();
    let mut t = 0.0;
    loop {
        t += -rng.open01().ln() / rate;
        if t >= dur {
            break;
        }
        intended.push(t0 + (t * 1e9) as u64);
    }
    let queue = Arc::new(Mutex::new(std::collections::VecDeque::<u64>::new()));
    let cv = Arc::new(std::sync::Condvar::new());
    let done = Arc::new(AtomicBool::new(false));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..conns {
        let mut s =
            netns_common::connect_from(&client.netns, dst, StdDuration::from_secs(3)).unwrap();
        s.set_nodelay(true).unwrap();
        let (queue, cv, done, lat) = (queue.clone(), cv.clone(), done.clone(), lat.clone());
        workers.push(std::thread::spawn(move || {
            let out = vec![1u8; req];
            let mut b = vec![0u8; resp];
            loop {
                let due = {
                    let mut q = queue.lock().unwrap();
                    loop {
                        if let Some(d) = q.pop_front() {
                            break d;
                        }
                        if done.load(Ordering::Relaxed) {
                            return;
                        }
                        q = cv.wait_timeout(q, StdDuration::from_millis(50)).unwrap().0;
                    }
                };
                s.write_all(&out).unwrap();
                s.read_exact(&mut b).unwrap();
                let l = mono_ns() - due;
                if due >= t0 + (warm * 1e9) as u64 {
                    lat.lock().unwrap().push(l);
                }
            }
        }));
    }
    let clock = sdnbed::workload::timer::Clock::start_now();
    let base = clock.origin_ns();
    for due in intended {
        let at = sdnbed::model::time::Instant::from_nanos(due.saturating_sub(base));
        sdnbed::workload::timer::sleep_until(&clock, at, sdnbed::workload::timer::DEFAULT_SPIN);
        queue.lock().unwrap().push_back(due);
        cv.notify_one();
    }
    done.store(true, Ordering::Relaxed);
    cv.notify_all();
    for w in workers {
        w.join().unwrap();
    }
    let c = emu.counters();
    eprintln!("emulated link counters: {c:?}");
    drop(dp);
    Arc::try_unwrap(lat).unwrap().into_inner().unwrap()
}

fn sim_compare() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/linkemu_two_nodes.toml");
    let exp = sdnbed::scenario::load_experiment(&path, &sdnbed::scenario::LoadOptions::default())
        .expect("valid scenario");
    let sc = &exp.runs[0].scenario;
    let sim = sdnbed::sim::run(sc).expect("simulates");
    let sl = sim
        .metrics
        .summary
        .overall
        .latency
        .expect("requests succeeded");
    let mut emu = emulate_workload(sc);
    emu.sort();
    let mean = emu.iter().sum::<u64>() as f64 / emu.len() as f64 / 1e6;
    let p99 = percentile(&emu, 0.99) as f64 / 1e6;
    let p50 = percentile(&emu, 0.5) as f64 / 1e6;
    println!(
        "sim vs emulator: simulated {} requests mean {:.3} ms p50 {:.3} ms p99 {:.3} ms; emulated {} requests mean {:.3} ms p50 {:.3} ms p99 {:.3} ms; difference mean {:+.2} % p99 {:+.2} %",
        sl.count,
        sl.mean_ms,
        sl.p50_ms,
        sl.p99_ms,
        emu.len(),
        mean,
        p50,
        p99,
        (mean / sl.mean_ms - 1.0) * 100.0,
        (p99 / sl.p99_ms - 1.0) * 100.0
    );
}

/// 200,000 UDP datagrams of 1,500 bytes (IP) at 100,000/s (1.2 Gbit/s) into a 1 Gbit/s link
/// with a 1,000-packet queue, the sender at normal and then at real-time priority: how much the
/// link carries when it is always offered more than its rate (over the 2 s sending schedule;
/// the last queue's worth, 12 ms, counts too).
fn udp_overload() {
    for fifo in [false, true] {
        let r = two_hosts(
            LinkParams {
                bandwidth: Some(BitRate(1_000_000_000)),
                queue: Some(sdnbed::scenario::units::QueueLimit::Packets(1000)),
                ..Default::default()
            },
            1,
            None,
        );
        set_fifo(fifo);
        udp_stream(
            &r,
            200_000,
            100_000.0,
            1472,
            StdDuration::from_millis(50),
            |_| {},
        );
        set_fifo(false);
        let c = r.emu.counters()[0].3;
        println!(
            "udp overload, sender at {} priority: link carried {:.0} Mbit/s ({} packets, {} queue drops)",
            if fifo { "real-time" } else { "normal" },
            c.bytes as f64 * 8.0 / 2.0 / 1e6,
            c.packets,
            c.dropped_queue
        );
    }
}

fn main() {
    let mode = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "all".into());
    let _ = std::io::stdout().flush();
    match mode.as_str() {
        "accuracy" => accuracy(),
        "throughput" => throughput(),
        "loss" => loss(),
        "sim" => sim_compare(),
        "udp" => udp_overload(),
        "all" => {
            accuracy();
            throughput();
            loss();
            sim_compare();
        }
        other => eprintln!("unknown mode {other}: accuracy | throughput | loss | sim | udp | all"),
    }
}
