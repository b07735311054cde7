//! The run as deployed, for people (lab mode's `nodes.json`).

use crate::dataplane::ops::Executor;

use super::Dataplane;

impl<E: Executor> Dataplane<E> {
    /// The run as deployed, for people (`nodes.json` in lab mode): every node's namespace,
    /// interfaces, routes and VIPs, and every service's VIP and replicas.
    pub fn describe(&self) -> serde_json::Value {
        let nodes: Vec<serde_json::Value> = self
            .plan
            .nodes
            .iter()
            .map(|n| serde_json::to_value(n).expect("plan serialises"))
            .collect();
        let services: Vec<serde_json::Value> = self
            .plan
            .services
            .iter()
            .enumerate()
            .map(|(si, s)| {
                let replicas: Vec<serde_json::Value> = self.replicas[si]
                    .iter()
                    .map(|(id, r)| {
                        serde_json::json!({
                            "name": format!("{}-{id}", s.name),
                            "netns": r.plan.netns,
                            "ifaces": r.plan.veths.iter().map(|v| &v.iface).collect::<Vec<_>>(),
                            "routes": r.plan.routes,
                        })
                    })
                    .collect();
                serde_json::json!({
                    "name": s.name,
                    "vip": s.vip,
                    "port": s.port,
                    "gateway": self.plan.nodes[s.gateway].name,
                    "replicas": replicas,
                })
            })
            .collect();
        serde_json::json!({
            "run": self.plan.run,
            "block": self.plan.block,
            "nodes": nodes,
            "services": services,
        })
    }
}
