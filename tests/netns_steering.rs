//! Privileged: weighted steering through the gateway's nftables map. With weights 80/20, 10,000
//! new connections split 20 % ± 1.5 % to the canary (binomial sd 0.4 %); a change to 50/50 is
//! one transaction and applies to the next connections; a connection opened before the change
//! stays on its replica.

mod netns_common;

use std::io::Write;
use std::net::SocketAddrV4;
use std::time::Duration;

use netns_common::*;
use sdnbed::model::rollout::Traffic;
use sdnbed::model::steering::{Endpoint, SteeringTable};
use sdnbed::scenario::types::NodeKind;

fn share_of_canary(client: &str, vip: SocketAddrV4, n: usize) -> f64 {
    let per = n / 4;
    let counts: Vec<usize> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..per)
                        .filter(|_| {
                            let mut c = connect_from(client, vip, Duration::from_secs(2)).unwrap();
                            read_name(&mut c) == "canary"
                        })
                        .count()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    counts.iter().sum::<usize>() as f64 / (per * 4) as f64
}

#[test]
fn weights_80_20_split_new_connections() {
    let run = run_id("steer");
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
    let stable = dp.add_replica("web", 0).unwrap();
    let canary = dp.add_replica("web", 1).unwrap();
    let _s = NameServer::start(
        &stable.netns,
        SocketAddrV4::new(stable.addr, 8080),
        "stable",
    );
    let _c = NameServer::start(
        &canary.netns,
        SocketAddrV4::new(canary.addr, 8080),
        "canary",
    );
    let eps = [
        Endpoint {
            id: 0,
            version: "v1",
        },
        Endpoint {
            id: 1,
            version: "v2",
        },
    ];
    let w = |a, b| Traffic::Weights(vec![("v1".into(), a), ("v2".into(), b)]);
    dp.set_steering("web", &SteeringTable::build(&w(8000, 2000), &eps))
        .unwrap();
    let client = dp.plan().node("client").unwrap().netns.clone();
    let vip = SocketAddrV4::new(dp.plan().service("web").unwrap().vip, 8080);

    // A connection held open across the changes below.
    let mut held = connect_from(&client, vip, Duration::from_secs(2)).unwrap();
    let held_by = read_name(&mut held);

    let share = share_of_canary(&client, vip, 10_000);
    eprintln!("80/20: canary share {:.2} %", share * 100.0);
    assert!((share - 0.2).abs() < 0.015, "canary share {share}");

    dp.set_steering("web", &SteeringTable::build(&w(5000, 5000), &eps))
        .unwrap();
    let share = share_of_canary(&client, vip, 2_000);
    eprintln!("50/50: canary share {:.2} %", share * 100.0);
    assert!((share - 0.5).abs() < 0.04, "canary share {share}");

    // All weight to the other version: every new connection goes there, the held one stays
    // on the replica it was steered to (conntrack).
    let other = if held_by == "stable" {
        w(0, 10000)
    } else {
        w(10000, 0)
    };
    dp.set_steering("web", &SteeringTable::build(&other, &eps))
        .unwrap();
    let expect = if held_by == "stable" { 1.0 } else { 0.0 };
    assert_eq!(share_of_canary(&client, vip, 200), expect);
    held.write_all(b"?").unwrap();
    assert_eq!(read_name(&mut held), held_by);
    drop(held);

    drop((_s, _c));
    dp.teardown().unwrap();
    assert_gone(&run);
}
