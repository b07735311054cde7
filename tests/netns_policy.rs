//! Privileged: the reachability matrix follows the policies (NetworkPolicy semantics), and a
//! data plane that disagrees with them is caught by the probe.

mod netns_common;

use std::time::Duration;

use netns_common::*;
use sdnbed::dataplane::probe::Reach;
use sdnbed::dataplane::DataplaneError;
use sdnbed::model::rollout::Traffic;
use sdnbed::model::steering::{Endpoint, SteeringTable};
use sdnbed::scenario::types::{NodeKind, Policy};

#[test]
fn policy_matrix_allows_and_denies_as_written() {
    let run = run_id("pol");
    let sc = scenario(
        vec![
            node("client", NodeKind::Client),
            node("intruder", NodeKind::Host),
            node("gw", NodeKind::Gateway),
            node("db", NodeKind::Host),
        ],
        vec![service("web", 2, 8080, "gw")],
        vec![
            link(n("client"), n("gw"), None),
            link(n("intruder"), n("gw"), None),
            link(n("gw"), n("db"), None),
        ],
        vec![
            Policy {
                name: "client-to-web".into(),
                from: vec!["client".into()],
                to: "web".into(),
                ports: vec![8080],
            },
            Policy {
                name: "web-to-db".into(),
                from: vec!["web".into()],
                to: "db".into(),
                ports: vec![5432],
            },
        ],
    );
    let mut dp = deploy(&sc, &run);
    for id in 0..2 {
        dp.add_replica("web", id).unwrap();
    }
    let eps = [
        Endpoint {
            id: 0,
            version: "v1",
        },
        Endpoint {
            id: 1,
            version: "v1",
        },
    ];
    dp.set_steering(
        "web",
        &SteeringTable::build(&Traffic::ByReadyReplicas, &eps),
    )
    .unwrap();
    let rows = dp
        .check_policies(&sc, Duration::from_millis(300))
        .expect("matrix matches policies");
    let get = |from: &str, to: &str, port: u16| {
        rows.iter()
            .find(|r| r.from == from && r.to == to && r.port == port)
            .unwrap_or_else(|| panic!("{from} → {to}:{port} not probed"))
    };
    // Allowed: reachable (nothing listens, so the replica or db answers with a reset).
    assert_eq!(get("client", "web", 8080).observed, Reach::Refused);
    assert_eq!(get("web", "db", 5432).observed, Reach::Refused);
    // A service's own gateway always reaches it, as NetworkPolicy allows a pod's node.
    let own = get("gw", "web", 8080);
    assert!(own.expected);
    assert_eq!(own.observed, Reach::Refused);
    // Denied: silently dropped at the destination.
    for (from, to, port) in [
        ("intruder", "web", 8080),
        ("db", "web", 8080),
        ("client", "db", 5432),
        ("intruder", "db", 5432),
        ("gw", "db", 5432),
    ] {
        let r = get(from, to, port);
        assert!(!r.expected, "{from} → {to}");
        assert_eq!(r.observed, Reach::Timeout, "{from} → {to}:{port}");
    }
    // 4 nodes + web probe db:5432 (4, not db itself); 4 nodes probe web:8080.
    assert_eq!(rows.len(), 8);

    // Remove db's filter behind the controller's back: the probe reports the pairs.
    let db_ns = dp.plan().node("db").unwrap().netns.clone();
    let st = sdnbed::dataplane::netlink::command_in(&db_ns, "nft")
        .unwrap()
        .args(["delete", "table", "ip", "sdnbed"])
        .status()
        .unwrap();
    assert!(st.success());
    match dp.check_policies(&sc, Duration::from_millis(300)) {
        Err(DataplaneError::PolicyMismatch(pairs)) => {
            assert_eq!(pairs.len(), 3, "{pairs:?}");
            assert!(pairs.iter().any(|p| p.starts_with("client → db:5432")));
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    dp.teardown().unwrap();
    assert_gone(&run);
}
