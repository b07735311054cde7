//! Privileged: replicas are added while a run goes on (a rolling update), quickly, reachable
//! through the VIP once steered; removing one removes its namespace; link down/up and a new
//! shaping apply to every replica veth of a service link.

mod netns_common;

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use netns_common::*;
use sdnbed::model::link::LinkParams;
use sdnbed::model::rollout::Traffic;
use sdnbed::model::steering::{Endpoint, SteeringTable};
use sdnbed::scenario::types::{LinkEnd, NodeKind};
use sdnbed::scenario::units::BitRate;

#[test]
fn rolling_replicas_are_fast_and_reachable() {
    let run = run_id("roll");
    let sc = scenario(
        vec![
            node("client", NodeKind::Client),
            node("gw", NodeKind::Gateway),
        ],
        vec![service("web", 4, 8080, "gw")],
        vec![
            link(n("client"), n("gw"), None),
            link(LinkEnd::Service("web".into()), n("gw"), Some(100_000_000)),
        ],
        vec![],
    );
    let mut dp = deploy(&sc, &run);
    let t = Instant::now();
    let mut infos = Vec::new();
    for id in 0..16 {
        infos.push(dp.add_replica("web", id).unwrap());
    }
    let per = t.elapsed() / 16;
    eprintln!("add_replica: {per:?} each (namespace, shaped veth, addresses, routes)");
    assert!(per < Duration::from_millis(250), "{per:?} per replica");
    let client = dp.plan().node("client").unwrap().netns.clone();
    for r in &infos {
        assert!(ping(&client, r.addr, Duration::from_secs(2)), "{}", r.netns);
    }
    // Steer everything to replica 15 and reach it through the VIP.
    let last = &infos[15];
    let _srv = NameServer::start(&last.netns, SocketAddrV4::new(last.addr, 8080), "last15");
    let eps = [Endpoint {
        id: 15,
        version: "v1",
    }];
    dp.set_steering(
        "web",
        &SteeringTable::build(&Traffic::ByReadyReplicas, &eps),
    )
    .unwrap();
    let vip = SocketAddrV4::new(dp.plan().service("web").unwrap().vip, 8080);
    let mut c = connect_from(&client, vip, Duration::from_secs(2)).unwrap();
    assert_eq!(read_name(&mut c), "last15");
    drop(c);

    // The service link (#1) down: replicas unreachable; up again: reachable.
    dp.set_link_up(1, false).unwrap();
    assert!(!ping(&client, infos[3].addr, Duration::from_millis(300)));
    dp.set_link_up(1, true).unwrap();
    assert!(ping(&client, infos[3].addr, Duration::from_secs(2)));
    // New shaping on every replica veth; unshaped again removes the qdiscs.
    let slow = LinkParams {
        bandwidth: Some(BitRate(1_000_000)),
        ..Default::default()
    };
    dp.set_link_shaping(1, &slow).unwrap();
    let out = sdnbed::dataplane::netlink::command_in(&infos[0].netns, "tc")
        .unwrap()
        .args(["qdisc", "show"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tbf"),
        "{out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rate 1Mbit"),
        "{out:?}"
    );
    dp.set_link_shaping(1, &LinkParams::default()).unwrap();
    let out = sdnbed::dataplane::netlink::command_in(&infos[0].netns, "tc")
        .unwrap()
        .args(["qdisc", "show"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("tbf"));

    // Removing a replica removes its namespace; a replica added right after reuses its slot.
    let gone_ns = infos[0].netns.clone();
    dp.remove_replica("web", 0).unwrap();
    assert!(!sdnbed::dataplane::netlink::netns_path(&gone_ns).exists());
    let again = dp.add_replica("web", 16).unwrap();
    assert_eq!(again.addr, infos[0].addr);
    assert!(ping(&client, again.addr, Duration::from_secs(2)));
    drop(_srv);
    dp.teardown().unwrap();
    assert_gone(&run);
}
