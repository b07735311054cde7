//! Cost of attributing one connection through conntrack: building a ctnetlink request and
//! parsing its answer (pure), and one real lookup (a hit and a miss) on this kernel.
//!
//! `cargo bench --bench conntrack` as root. The lookups run in a private network namespace of
//! the bench process (`unshare(CLONE_NEWNET)`, gone when it exits) holding one DNATed
//! loopback connection, as a gateway holds a client's. Without root only the pure part runs.
//! [`LoadConfig::attribute`](sdnbed::workload::load::LoadConfig::attribute) pays one lookup per
//! new connection, so a lookup's time is the per-connection budget it adds to the generator.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};

use criterion::{black_box, criterion_group, criterion_main, Criterion};

use sdnbed::dataplane::conntrack::{parse_answer, Conntrack, CtGet, SteeringLookup, TcpTuple};

const NFT: &str = "table ip bench {\n chain out {\n  type nat hook output priority -100; \
                   policy accept;\n  ip daddr 127.0.0.2 tcp dport 80 dnat to 127.0.0.3:8080\n \
                   }\n}\n";

fn pure(c: &mut Criterion) {
    let orig = TcpTuple::new(
        "10.0.0.2:40000".parse().unwrap(),
        "10.9.0.1:8080".parse().unwrap(),
    )
    .unwrap();
    c.bench_function("ctnetlink/build_request", |b| {
        b.iter(|| {
            CtGet {
                orig: black_box(orig),
                seq: 1,
            }
            .bytes()
        })
    });
    // An answer as the kernel sends it (see the captured bytes in dataplane::conntrack).
    let answer = captured_answer();
    c.bench_function("ctnetlink/parse_answer", |b| {
        b.iter(|| parse_answer(black_box(&answer)))
    });
}

fn captured_answer() -> Vec<u8> {
    let hex = "d4000000000102000700000043260000020000003400018014000180080001007f000001\
        080002007f0000021c0002800500010006000000060002009c40000006000300005000003400028014000180\
        080001007f000003080002007f0000011c0002800500010006000000060002001f900000060003009c400000\
        08000300000001ae080008000000000008000c00166c3cff08000b00000000020800070000069780300004802c\
        0001800500010003000000050002000a000000050003000a00000006000400230000000600050023000000";
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn sh(cmd: &[&str], stdin: Option<&str>) -> bool {
    let mut child = match Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(_) => return false,
    };
    if let Some(s) = stdin {
        let _ = child.stdin.take().unwrap().write_all(s.as_bytes());
    }
    child.wait().is_ok_and(|s| s.success())
}

fn lookups(c: &mut Criterion) {
    // This thread (criterion runs every benchmark on it) moves to a namespace of its own.
    if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err()
        || !sh(&["ip", "link", "set", "lo", "up"], None)
        || !sh(&["nft", "-f", "-"], Some(NFT))
    {
        eprintln!("conntrack lookups skipped: needs root (CLONE_NEWNET, nft)");
        return;
    }
    let l = TcpListener::bind("127.0.0.3:8080").unwrap();
    let s = TcpStream::connect("127.0.0.2:80").unwrap();
    let _peer = l.accept().unwrap();
    let local = s.local_addr().unwrap();
    let vip: SocketAddr = "127.0.0.2:80".parse().unwrap();
    let ct = Conntrack::open_here("bench").unwrap();
    let hit = TcpTuple::new(local, vip).unwrap();
    assert_eq!(
        ct.reply_source(&hit).unwrap(),
        Some("127.0.0.3:8080".parse().unwrap())
    );
    c.bench_function("ctnetlink/lookup_hit", |b| {
        b.iter(|| ct.reply_source(black_box(&hit)).unwrap())
    });
    let miss = TcpTuple::new("127.0.0.1:1".parse().unwrap(), vip).unwrap();
    c.bench_function("ctnetlink/lookup_miss", |b| {
        b.iter(|| ct.reply_source(black_box(&miss)).unwrap())
    });
}

criterion_group!(benches, pure, lookups);
criterion_main!(benches);
