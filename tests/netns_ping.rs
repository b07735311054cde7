//! Privileged: ping across a two-node link and across a gateway; teardown on drop and on panic
//! leaves nothing behind.

mod netns_common;

use std::time::Duration;

use netns_common::*;
use sdnbed::scenario::types::NodeKind;

#[test]
fn ping_across_a_two_node_link() {
    let run = run_id("ping");
    let sc = scenario(
        vec![node("h1", NodeKind::Host), node("h2", NodeKind::Host)],
        vec![],
        vec![link(n("h1"), n("h2"), None)],
        vec![],
    );
    let dp = deploy(&sc, &run);
    let h1 = dp.plan().node("h1").unwrap();
    let h2 = dp.plan().node("h2").unwrap();
    assert!(ping(&h1.netns, h2.ifaces[0].addr, Duration::from_secs(2)));
    assert!(ping(&h2.netns, h1.ifaces[0].addr, Duration::from_secs(2)));
    // An address that is not on the link gets no answer.
    assert!(!ping(
        &h1.netns,
        "198.19.255.254".parse().unwrap(),
        Duration::from_millis(300)
    ));
    dp.teardown().unwrap();
    assert_gone(&run);
}

#[test]
fn ping_across_a_gateway_by_routes() {
    let run = run_id("route");
    let sc = scenario(
        vec![
            node("client", NodeKind::Client),
            node("gw", NodeKind::Gateway),
            node("host", NodeKind::Host),
            node("db", NodeKind::Host),
        ],
        vec![],
        vec![
            link(n("client"), n("gw"), None),
            link(n("gw"), n("host"), None),
            link(n("host"), n("db"), None),
        ],
        vec![],
    );
    let mut dp = deploy(&sc, &run);
    let client = dp.plan().node("client").unwrap().netns.clone();
    let db = dp.plan().node("db").unwrap().ifaces[0].addr;
    // client → gw → host → db: three hops, two of them forwarded.
    assert!(ping(&client, db, Duration::from_secs(2)));
    // gw—host down cuts the path; up restores it (routes included).
    dp.set_link_up(1, false).unwrap();
    assert!(!ping(&client, db, Duration::from_millis(300)));
    dp.set_link_up(1, true).unwrap();
    assert!(ping(&client, db, Duration::from_secs(2)));
    drop(dp);
    assert_gone(&run);
}

#[test]
fn a_panic_tears_down() {
    let run = run_id("panic");
    let sc = scenario(
        vec![node("h1", NodeKind::Host), node("h2", NodeKind::Host)],
        vec![],
        vec![link(n("h1"), n("h2"), None)],
        vec![],
    );
    let r = std::panic::catch_unwind(|| {
        let _dp = deploy(&sc, &run);
        assert!(sdnbed::dataplane::netlink::netns_path(&format!("sdnbed-{run}-h1")).exists());
        panic!("test panic while deployed");
    });
    assert!(r.is_err());
    assert_gone(&run);
}

#[test]
fn two_runs_of_one_scenario_do_not_collide() {
    let sc = scenario(
        vec![node("h1", NodeKind::Host), node("h2", NodeKind::Host)],
        vec![],
        vec![link(n("h1"), n("h2"), None)],
        vec![],
    );
    let (ra, rb) = (run_id("twin"), run_id("twin"));
    let a = deploy(&sc, &ra);
    let b = deploy(&sc, &rb);
    assert!(!a.plan().block.overlaps(&b.plan().block), "blocks overlap");
    for dp in [&a, &b] {
        let h1 = dp.plan().node("h1").unwrap();
        let h2 = dp.plan().node("h2").unwrap();
        assert!(ping(&h1.netns, h2.ifaces[0].addr, Duration::from_secs(2)));
    }
    // Runs are isolated: h1 of run a cannot reach h2 of run b.
    let a1 = a.plan().node("h1").unwrap().netns.clone();
    let b2 = b.plan().node("h2").unwrap().ifaces[0].addr;
    assert!(!ping(&a1, b2, Duration::from_millis(300)));
    drop(a);
    assert_gone(&ra);
    let h1 = b.plan().node("h1").unwrap();
    let h2 = b.plan().node("h2").unwrap();
    assert!(
        ping(&h1.netns, h2.ifaces[0].addr, Duration::from_secs(2)),
        "b survives a's teardown"
    );
    drop(b);
    assert_gone(&rb);
}
