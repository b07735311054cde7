//! Privileged: requests to a service whose replicas send no `x-sdnbed-version` (standing in for
//! a researcher's image) are still attributed, by the replica the gateway's DNAT chose for each
//! connection (its conntrack entry), and the attribution agrees with what each replica says it
//! served.

mod netns_common;
mod workload_support;

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;

use netns_common::*;
use sdnbed::dataplane::conntrack::{Conntrack, ConntrackError, SteeringLookup, TcpTuple};
use sdnbed::dataplane::netlink::netns_path;
use sdnbed::model::rollout::Traffic;
use sdnbed::model::steering::{Endpoint, SteeringTable};
use sdnbed::model::time::Duration;
use sdnbed::scenario::types::NodeKind;
use sdnbed::workload::attribution::{Attribution, ReplicaVersions};
use sdnbed::workload::load::LoadConfig;
use workload_support::{open_loop, run_load, ServerProc};

/// `cfg` with its generator threads in namespace `ns`.
fn from_ns(mut cfg: LoadConfig, ns: &str) -> LoadConfig {
    let path = netns_path(ns);
    cfg.on_thread_start = Some(Arc::new(move |_| {
        let f = File::open(&path)?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
    }));
    cfg
}

#[test]
fn netns_foreign_replicas_are_attributed_through_the_gateways_conntrack() {
    let run = run_id("attr");
    let sc = scenario(
        vec![
            node("client", NodeKind::Client),
            node("gw", NodeKind::Gateway),
        ],
        vec![service("web", 2, 8080, "gw")],
        vec![link(n("client"), n("gw"), None)],
        vec![],
    );
    let mut dp = deploy(&sc, &run);
    let a = dp.add_replica("web", 0).unwrap();
    let b = dp.add_replica("web", 1).unwrap();
    let listen = |addr| SocketAddrV4::new(addr, 8080).to_string();
    let mut serve_a = ServerProc::spawn_in(
        &a.netns,
        &[
            "--no-version-header",
            "--version",
            "vA",
            "--listen",
            &listen(a.addr),
        ],
    );
    let mut serve_b = ServerProc::spawn_in(
        &b.netns,
        &[
            "--no-version-header",
            "--version",
            "vB",
            "--listen",
            &listen(b.addr),
        ],
    );
    let eps = [
        Endpoint {
            id: 0,
            version: "vA",
        },
        Endpoint {
            id: 1,
            version: "vB",
        },
    ];
    let w = |x, y| Traffic::Weights(vec![("vA".into(), x), ("vB".into(), y)]);
    let client = dp.plan().node("client").unwrap().netns.clone();
    let gw_ns = dp.plan().node("gw").unwrap().netns.clone();
    let vip = SocketAddr::V4(SocketAddrV4::new(
        dp.plan().service("web").unwrap().vip,
        8080,
    ));

    let versions = ReplicaVersions::new();
    versions.insert(a.addr.into(), "vA");
    versions.insert(b.addr.into(), "vB");
    let ct = Arc::new(Conntrack::open_in(&gw_ns).unwrap());
    let attribution = Attribution::via_gateway(versions.clone(), ct.clone());

    // The servers really send no version: without a resolver nothing is attributed.
    dp.set_steering("web", &SteeringTable::build(&w(10000, 0), &eps))
        .unwrap();
    let s = run_load(&from_ns(
        open_loop(vip, 100.0, Duration::from_millis(500), 2),
        &client,
    ));
    assert_eq!(s.ok, 50, "{s:?}");
    assert!(s.by_version.is_empty(), "{s:?}");

    // All weight on vA, kept-alive connections: every request is vA's.
    let mut cfg = from_ns(open_loop(vip, 200.0, Duration::from_secs(1), 4), &client);
    cfg.attribute = Some(attribution.resolver());
    let s = run_load(&cfg);
    assert_eq!(s.ok, 200, "{s:?}");
    assert_eq!(s.by_version["vA"].ok, 200, "{s:?}");
    assert_eq!(s.by_version.len(), 1, "{s:?}");
    let first_a = s.by_version["vA"].ok;

    // 50/50, a new connection per request: both versions, each near half, every request
    // attributed.
    dp.set_steering("web", &SteeringTable::build(&w(5000, 5000), &eps))
        .unwrap();
    let mut cfg = from_ns(open_loop(vip, 500.0, Duration::from_secs(2), 0), &client);
    cfg.attribute = Some(attribution.resolver());
    let s = run_load(&cfg);
    assert_eq!(s.requests, 1000, "{s:?}");
    assert_eq!(s.ok, 1000, "{s:?}");
    let names: BTreeSet<&str> = s.by_version.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["vA", "vB"]), "{s:?}");
    let (ka, kb) = (s.by_version["vA"].ok, s.by_version["vB"].ok);
    assert_eq!(ka + kb, 1000, "every request attributed: {s:?}");
    // binomial(1000, 1/2): sd 1.6 %; 6 points is over 3.5 sd.
    let share = ka as f64 / 1000.0;
    eprintln!("50/50: vA share {:.1} %", share * 100.0);
    assert!((share - 0.5).abs() < 0.06, "vA share {share}");
    let counts = attribution.counts();
    assert_eq!(
        (counts.resolved, counts.unknown, counts.failed),
        (4 + 1000, 0, 0),
        "{counts:?}"
    );

    // A workload aimed at a replica's own address resolves with no lookup.
    let direct = Attribution::direct(versions);
    let mut cfg = from_ns(
        open_loop(
            SocketAddr::V4(SocketAddrV4::new(b.addr, 8080)),
            100.0,
            Duration::from_millis(500),
            0,
        ),
        &client,
    );
    cfg.attribute = Some(direct.resolver());
    let s = run_load(&cfg);
    assert_eq!((s.ok, s.by_version["vB"].ok), (50, 50), "{s:?}");

    // A connection that never passed the gateway has no entry.
    let nowhere = TcpTuple::new("10.255.0.1:1".parse().unwrap(), vip).unwrap();
    assert_eq!(ct.reply_source(&nowhere).unwrap(), None);

    // Each replica served exactly what the generator attributed to it.
    assert_eq!(serve_a.drain_and_count(200), 50 + first_a + ka);
    assert_eq!(serve_b.drain_and_count(200), kb + 50);

    drop((serve_a, serve_b, attribution, direct, ct));
    dp.teardown().unwrap();
    assert_gone(&run);
}

#[test]
fn netns_a_conntrack_socket_for_a_missing_namespace_names_it() {
    let name = format!("sdnbed-{}-nothere", run_id("ct"));
    let e = Conntrack::open_in(&name).unwrap_err();
    assert!(matches!(e, ConntrackError::Open { .. }), "{e:?}");
    assert!(e.to_string().contains(&name), "{e}");
}
