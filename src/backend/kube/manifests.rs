//! A scenario as Kubernetes objects: what `sdnbed manifests` prints and what the kube backend
//! applies. Pure: a [`Scenario`] in, JSON objects out (`yaml::documents` writes them).
//!
//! One run is one Namespace, `sdnbed-<run>`, labelled `sdnbed.run=<run>` (what `sdnbed clean`
//! finds), holding:
//! - per service version a Deployment `<service>-<version>` (the starting version at the
//!   service's replica count, the others at zero), its pods labelled `sdnbed.run`,
//!   `sdnbed.service` and `sdnbed.version`, with the scenario's readiness probe (`GET /ready`),
//!   `preStop` and termination grace;
//! - per service a Service `<service>` over every version's pods: with `steering = "replicas"`
//!   the cluster's own routing (kube-proxy) is the steering, as the scenario means it;
//! - for `steering = "sdn"`, a gateway Deployment `<gateway>` with `NET_ADMIN`, its
//!   ServiceAccount and the Role to watch EndpointSlices, and a Service `<service>-sdn` that
//!   clients use: the gateway keeps the weighted nftables map on pod IPs (0.01 % granularity)
//!   from the slices and the weights the runner writes on its Deployment's annotation
//!   `sdnbed.weights/<service>`. The in-pod program (`sdnbed gateway`) is not part of this build
//!   yet: these objects validate, and `run --backend kube` refuses `steering = "sdn"`;
//! - one NetworkPolicy per `[[policy]]` (Kubernetes semantics are the scenario's);
//! - per workload a Job running `sdnbed load` against the service, from a pod labelled as the
//!   workload's `from` node (`sdnbed.node=<from>`).
//!
//! # Departures, said plainly
//! - **Probe times are whole seconds** in Kubernetes: `initial_delay` and `period` round up,
//!   `period` to at least 1 s. The termination grace is `pre_stop + grace`, rounded up, because
//!   Kubernetes counts the grace period from the start of `preStop` while the scenario counts it
//!   from SIGTERM. `preStop` is the kubelet's own `sleep` action (Kubernetes 1.30 and later), so
//!   images need no shell.
//! - **Replicas of one Deployment share a seed** (`kube/<service>/<version>`): pods of a
//!   Deployment are identical by construction, so their service-time draws are not independent
//!   as they are on the other backends.
//! - **A link is a pod's interface, not a cable.** A `[[link]]` is carried at the `eth0` of the
//!   end that has no other link (a service end: every replica's pod), preferring a service end:
//!   an init container with `NET_ADMIN` runs `tc` for both directions (egress on `eth0`, ingress
//!   through an `ifb` device), netem for delay, jitter and loss, `rate` for bandwidth. The node
//!   kernels must have `sch_netem` (a manifest cannot detect it), and the init image must have
//!   `tc`. Refused, because they cannot be expressed this way: a link both of whose ends have
//!   other links, a link to a gateway node when steering is by the cluster (no gateway pod
//!   exists then, so such a link is the client's or the replicas' access link and is carried
//!   at the other end), Mahimahi traces, `emulator = "userspace"` (the user-space emulator has
//!   no in-pod form yet), and workloads that target a node.
//! - Nodes of kind `host` have no pod: nothing runs there on the other backends either unless a
//!   workload or a lab user starts it.

use serde_json::{json, Map, Value};

use crate::model::link::{JitterDist, LinkParams, Loss};
use crate::model::rng::SeedTree;
use crate::model::time::Duration;
use crate::scenario::types::{
    EmulatorChoice, LinkEnd, NodeKind, Scenario, Service, Steering, Target, Workload,
};

/// The label every object of a run carries, with the run id as its value.
pub const RUN_LABEL: &str = "sdnbed.run";
pub const SERVICE_LABEL: &str = "sdnbed.service";
pub const VERSION_LABEL: &str = "sdnbed.version";
pub const NODE_LABEL: &str = "sdnbed.node";

/// What a scenario cannot be rendered as, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{what} cannot be expressed on Kubernetes: {why}")]
    Unsupported { what: String, why: String },
    #[error("{what} `{name}` is not a Kubernetes name (lower-case letters, digits and `-`, at most {max} characters)")]
    BadName {
        what: &'static str,
        name: String,
        max: usize,
    },
}

/// Where the objects go and what they run.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// The run id: the namespace is `sdnbed-<run_id>`.
    pub run_id: String,
    /// The built-in image (`sdnbed` as its entrypoint): `serve`, `load` and `gateway` run in it.
    pub image: String,
    /// The image of the links' init container: anything with `tc` (iproute2).
    pub tc_image: String,
}

impl RenderOptions {
    /// The built-in image's name under `registry` (none: the local name `sdnbed`).
    pub fn image_for(registry: Option<&str>) -> String {
        let tag = env!("CARGO_PKG_VERSION");
        match registry {
            Some(r) => format!("{}/sdnbed:{tag}", r.trim_end_matches('/')),
            None => format!("sdnbed:{tag}"),
        }
    }
    pub fn namespace(&self) -> String {
        format!("sdnbed-{}", self.run_id)
    }
}

/// The default image for links' init containers: a common network toolbox that has `tc`.
pub const DEFAULT_TC_IMAGE: &str = "nicolaka/netshoot:v0.13";

/// Every object of one run, in the order they are applied (the Namespace first).
pub fn render(s: &Scenario, o: &RenderOptions) -> Result<Vec<Value>, ManifestError> {
    dns_label("run id", &format!("sdnbed-{}", o.run_id), 63)?;
    let ns = o.namespace();
    let sdn = sdn_services(s);
    let carried = link_carriers(s, &sdn)?;
    let mut out = vec![json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns, "labels": {RUN_LABEL: o.run_id}},
    })];
    for svc in &s.services {
        dns_label("service", &svc.name, 50)?;
        let shaping = carried.init_for(&LinkEnd::Service(svc.name.clone()), o);
        for (vi, v) in svc.versions.iter().enumerate() {
            dns_label("version", &format!("{}-{}", svc.name, v.name), 63)?;
            let replicas = if v.name == svc.version {
                svc.replicas
            } else {
                0
            };
            out.push(deployment(s, svc, vi, replicas, &shaping, o));
        }
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": svc.name, "namespace": ns, "labels": {RUN_LABEL: o.run_id}},
            "spec": {
                "selector": {RUN_LABEL: o.run_id, SERVICE_LABEL: svc.name},
                "ports": [{"name": "http", "port": svc.port, "targetPort": svc.port}],
            },
        }));
    }
    for svc in s.services.iter().filter(|x| sdn.contains(&x.name)) {
        out.extend(gateway(svc, o));
    }
    for p in &s.policies {
        dns_label("policy", &p.name, 63)?;
        let from: Vec<Value> = p
            .from
            .iter()
            .map(|n| json!({"podSelector": {"matchLabels": selector(s, n)}}))
            .collect();
        let mut rule = Map::new();
        rule.insert("from".into(), Value::Array(from));
        if !p.ports.is_empty() {
            let ports: Vec<Value> = p
                .ports
                .iter()
                .map(|port| json!({"protocol": "TCP", "port": port}))
                .collect();
            rule.insert("ports".into(), Value::Array(ports));
        }
        out.push(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": p.name, "namespace": ns, "labels": {RUN_LABEL: o.run_id}},
            "spec": {
                "podSelector": {"matchLabels": selector(s, &p.to)},
                "policyTypes": ["Ingress"],
                "ingress": [Value::Object(rule)],
            },
        }));
    }
    for wl in &s.workloads {
        out.push(load_job(s, wl, &sdn, &carried, o)?);
    }
    Ok(out)
}

/// Services whose rollout steers by gateway weights.
fn sdn_services(s: &Scenario) -> Vec<String> {
    s.rollout
        .iter()
        .filter(|r| r.steering == Steering::Sdn)
        .map(|r| r.service.clone())
        .collect()
}

/// Labels that select node or service `name`'s pods.
fn selector(s: &Scenario, name: &str) -> Value {
    if s.service(name).is_some() {
        json!({SERVICE_LABEL: name})
    } else {
        json!({NODE_LABEL: name})
    }
}

fn dns_label(what: &'static str, name: &str, max: usize) -> Result<(), ManifestError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ManifestError::BadName {
            what,
            name: name.to_string(),
            max,
        })
    }
}

/// Whole seconds, rounded up.
fn secs_up(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000)
}

/// The response size the service's workload asks for (what `serve --response-size` takes).
fn response_size(s: &Scenario, svc: &Service) -> u64 {
    s.workloads
        .iter()
        .find(|w| w.to == Target::Service(svc.name.clone()))
        .map_or(0, |w| w.response.0)
}

fn deployment(
    s: &Scenario,
    svc: &Service,
    vi: usize,
    replicas: u32,
    init: &[Value],
    o: &RenderOptions,
) -> Value {
    let v = &svc.versions[vi];
    let labels = json!({RUN_LABEL: o.run_id, SERVICE_LABEL: svc.name, VERSION_LABEL: v.name});
    let seed = SeedTree::new(s.seed).seed_for(&format!("kube/{}/{}", svc.name, v.name));
    let builtin_args = vec![
        "serve".to_string(),
        "--listen".into(),
        format!("0.0.0.0:{}", svc.port),
        "--version".into(),
        v.name.clone(),
        "--service-time".into(),
        v.service_time.to_string(),
        "--workers".into(),
        svc.workers.to_string(),
        "--startup".into(),
        v.startup.to_string(),
        "--error-rate".into(),
        v.error_rate.to_string(),
        "--response-size".into(),
        format!("{}B", response_size(s, svc)),
        "--seed".into(),
        seed.to_string(),
    ];
    let mut container = Map::new();
    container.insert("name".into(), json!("server"));
    match (&v.image, &v.command) {
        (Some(image), command) => {
            container.insert("image".into(), json!(image));
            if let Some(c) = command {
                container.insert("command".into(), json!(c));
            }
        }
        (None, Some(c)) => {
            container.insert("image".into(), json!(o.image));
            container.insert("command".into(), json!(c));
        }
        (None, None) => {
            container.insert("image".into(), json!(o.image));
            container.insert("args".into(), json!(builtin_args));
        }
    }
    container.insert(
        "ports".into(),
        json!([{"name": "http", "containerPort": svc.port}]),
    );
    container.insert(
        "readinessProbe".into(),
        json!({
            "httpGet": {"path": "/ready", "port": svc.port},
            "initialDelaySeconds": secs_up(svc.readiness.initial_delay),
            "periodSeconds": secs_up(svc.readiness.period).max(1),
            "failureThreshold": svc.readiness.failure_threshold.max(1),
        }),
    );
    if svc.termination.pre_stop > Duration::ZERO {
        container.insert(
            "lifecycle".into(),
            json!({"preStop": {"sleep": {"seconds": secs_up(svc.termination.pre_stop)}}}),
        );
    }
    if let Some(cpu) = svc.cpu {
        let milli = (cpu * 1000.0).ceil() as u64;
        container.insert(
            "resources".into(),
            json!({"limits": {"cpu": format!("{milli}m")}}),
        );
    }
    let mut pod = Map::new();
    if !init.is_empty() {
        pod.insert("initContainers".into(), json!(init));
    }
    pod.insert("containers".into(), json!([Value::Object(container)]));
    pod.insert(
        "terminationGracePeriodSeconds".into(),
        json!(secs_up(svc.termination.pre_stop + svc.termination.grace)),
    );
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": format!("{}-{}", svc.name, v.name),
            "namespace": o.namespace(),
            "labels": labels,
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": Value::Object(pod)},
        },
    })
}

/// The weights annotation the runner writes on the gateway Deployment: `version=basis points`.
pub fn weights_annotation(service: &str) -> String {
    format!("sdnbed.weights/{service}")
}

fn gateway(svc: &Service, o: &RenderOptions) -> Vec<Value> {
    let ns = o.namespace();
    let name = &svc.gateway;
    let labels = json!({RUN_LABEL: o.run_id, NODE_LABEL: name});
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": ns, "labels": {RUN_LABEL: o.run_id}},
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": ns, "labels": {RUN_LABEL: o.run_id}},
            "rules": [
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                 "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["apps"], "resources": ["deployments"],
                 "verbs": ["get", "list", "watch"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": ns, "labels": {RUN_LABEL: o.run_id}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": labels,
                "annotations": {weights_annotation(&svc.name): format!("{}=10000", svc.version)},
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {
                    "serviceAccountName": name,
                    "containers": [{
                        "name": "gateway",
                        "image": o.image,
                        "args": ["gateway", "--service", svc.name, "--port",
                                 svc.port.to_string(), "--deployment", name],
                        "ports": [{"name": "http", "containerPort": svc.port}],
                        "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
                    }],
                }},
            },
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": format!("{}-sdn", svc.name),
                "namespace": ns,
                "labels": {RUN_LABEL: o.run_id},
            },
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": svc.port, "targetPort": svc.port}],
            },
        }),
    ]
}

fn load_job(
    s: &Scenario,
    wl: &Workload,
    sdn: &[String],
    carried: &Carriers,
    o: &RenderOptions,
) -> Result<Value, ManifestError> {
    let Target::Service(target) = &wl.to else {
        return Err(ManifestError::Unsupported {
            what: format!("workload {}", wl.name),
            why: "it targets a node, and a node has no server on a cluster".into(),
        });
    };
    dns_label("workload", &format!("load-{}", wl.name), 63)?;
    let svc = s.service(target).expect("validated");
    let host = if sdn.contains(target) {
        format!("{target}-sdn")
    } else {
        target.clone()
    };
    let schedule: Vec<String> = wl
        .rate
        .steps
        .iter()
        .map(|(at, r)| format!("{at}:{r}"))
        .collect();
    let seed = SeedTree::new(s.seed).seed_for(&format!("workload/{}", wl.name));
    let args = vec![
        "load".to_string(),
        "--url".into(),
        format!("http://{host}:{}/", svc.port),
        "--schedule".into(),
        schedule.join(","),
        "--arrivals".into(),
        match wl.arrivals {
            crate::scenario::types::Arrivals::Constant => "constant",
            crate::scenario::types::Arrivals::Poisson => "poisson",
        }
        .into(),
        "--duration".into(),
        s.duration.to_string(),
        "--connections".into(),
        wl.connections.to_string(),
        "--max-requests-per-connection".into(),
        wl.max_requests_per_connection.to_string(),
        "--timeout".into(),
        wl.timeout.to_string(),
        "--request-size".into(),
        format!("{}B", wl.request.0),
        "--window".into(),
        s.window.to_string(),
        "--seed".into(),
        seed.to_string(),
        "--json".into(),
    ];
    let labels = json!({RUN_LABEL: o.run_id, NODE_LABEL: wl.from});
    let mut pod = Map::new();
    let init = carried.init_for(&LinkEnd::Node(wl.from.clone()), o);
    if !init.is_empty() {
        pod.insert("initContainers".into(), json!(init));
    }
    pod.insert("restartPolicy".into(), json!("Never"));
    pod.insert(
        "containers".into(),
        json!([{"name": "load", "image": o.image, "args": args}]),
    );
    Ok(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": format!("load-{}", wl.name),
            "namespace": o.namespace(),
            "labels": {RUN_LABEL: o.run_id, "sdnbed.workload": wl.name},
        },
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": labels}, "spec": Value::Object(pod)},
        },
    }))
}

/// Which pod end carries each link.
struct Carriers {
    /// (end, link params) for every shaped link.
    at: Vec<(LinkEnd, LinkParams)>,
}

impl Carriers {
    /// The init container that shapes `end`'s pods, if any link is carried there.
    fn init_for(&self, end: &LinkEnd, o: &RenderOptions) -> Vec<Value> {
        let Some((_, p)) = self.at.iter().find(|(e, _)| e == end) else {
            return Vec::new();
        };
        vec![json!({
            "name": "links",
            "image": o.tc_image,
            "command": ["sh", "-ec", tc_script(p)],
            "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
        })]
    }
}

fn unshaped(p: &LinkParams) -> bool {
    p.bandwidth.is_none()
        && p.delay == Duration::ZERO
        && p.jitter.is_none()
        && p.loss == Loss::None
        && p.trace.is_none()
}

fn link_carriers(s: &Scenario, sdn: &[String]) -> Result<Carriers, ManifestError> {
    let gateway_pod = |n: &str| {
        s.services
            .iter()
            .any(|x| x.gateway == n && sdn.contains(&x.name))
    };
    // How many declared links touch each end.
    let degree = |end: &LinkEnd| s.links.iter().filter(|l| l.between.contains(end)).count();
    let mut at: Vec<(LinkEnd, LinkParams)> = Vec::new();
    for l in &s.links {
        let what = || format!("link {}-{}", l.between[0].name(), l.between[1].name());
        if unshaped(&l.params) {
            continue;
        }
        if l.params.trace.is_some() {
            return Err(ManifestError::Unsupported {
                what: what(),
                why: "tc has no Mahimahi trace player".into(),
            });
        }
        if l.emulator == EmulatorChoice::Userspace {
            return Err(ManifestError::Unsupported {
                what: what(),
                why: "the user-space emulator has no in-pod form yet; use emulator = \"kernel\" \
                      or \"auto\" (netem on the nodes)"
                    .into(),
            });
        }
        // A pod end: a service's replicas, a workload's client, or an sdn gateway.
        let has_pod = |e: &LinkEnd| match e {
            LinkEnd::Service(_) => true,
            LinkEnd::Node(n) => match s.node(n).map(|n| n.kind) {
                Some(NodeKind::Gateway) => gateway_pod(n),
                Some(NodeKind::Client) => s.workloads.iter().any(|w| &w.from == n),
                _ => false,
            },
        };
        let mut ends: Vec<&LinkEnd> = l.between.iter().filter(|e| has_pod(e)).collect();
        // Prefer a service end, then an end with no other link.
        ends.sort_by_key(|e| (!matches!(e, LinkEnd::Service(_)), degree(e)));
        let Some(end) = ends.into_iter().find(|e| degree(e) == 1) else {
            return Err(ManifestError::Unsupported {
                what: what(),
                why: "neither end is a pod with no other link, and a pod's one interface cannot \
                      carry two links' shaping apart"
                    .into(),
            });
        };
        at.push((end.clone(), l.params.clone()));
    }
    Ok(Carriers { at })
}

/// The `tc` commands that give `eth0` the link's parameters in both directions: egress on
/// `eth0`, ingress redirected through `ifb0`. netem's `rate` carries the bandwidth.
pub fn tc_script(p: &LinkParams) -> String {
    let mut netem = String::from("netem");
    if p.delay > Duration::ZERO || p.jitter.is_some() {
        netem.push_str(&format!(" delay {}us", p.delay.as_nanos() / 1000));
        if let Some(j) = p.jitter {
            netem.push_str(&format!(" {}us", j.amount.as_nanos() / 1000));
            netem.push_str(match j.distribution {
                JitterDist::Normal => " distribution normal",
                JitterDist::Uniform => "",
                JitterDist::Pareto => " distribution pareto",
            });
        }
    }
    match p.loss {
        Loss::None => {}
        Loss::Bernoulli(x) => netem.push_str(&format!(" loss random {}%", x * 100.0)),
        Loss::GilbertElliott { p, r, h, k } => netem.push_str(&format!(
            " loss gemodel {}% {}% {}% {}%",
            p * 100.0,
            r * 100.0,
            (1.0 - h) * 100.0,
            (1.0 - k) * 100.0
        )),
    }
    if let Some(b) = p.bandwidth {
        netem.push_str(&format!(" rate {}bit", b.0));
    }
    match p.queue {
        Some(crate::scenario::units::QueueLimit::Packets(n)) => {
            netem.push_str(&format!(" limit {n}"))
        }
        Some(crate::scenario::units::QueueLimit::Bytes(b)) => {
            netem.push_str(&format!(" limit {}", b.div_ceil(1500).max(1)))
        }
        None => {}
    }
    format!(
        "tc qdisc replace dev eth0 root {netem}\n\
         ip link add ifb0 type ifb\n\
         ip link set ifb0 up\n\
         tc qdisc replace dev eth0 handle ffff: ingress\n\
         tc filter replace dev eth0 parent ffff: matchall action mirred egress redirect dev ifb0\n\
         tc qdisc replace dev ifb0 root {netem}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{parse_experiment, LoadOptions};

    fn scenario(extra: &str) -> Scenario {
        let text = format!(
            r#"
[scenario]
name = "t"
seed = 1
duration = "10s"

[[node]]
name = "client"
kind = "client"

[[node]]
name = "gw"
kind = "gateway"

[service.web]
replicas = 3
port = 8080
gateway = "gw"
version = "v1"
readiness = {{ initial_delay = "500ms", period = "250ms", failure_threshold = 3 }}
termination = {{ pre_stop = "1s", grace = "10s" }}

[service.web.versions.v1]
service_time = "const(2ms)"

[service.web.versions.v2]
service_time = "const(3ms)"

[[workload]]
name = "users"
from = "client"
to = "web"
rate = "100/s"
{extra}
"#
        );
        parse_experiment(&text, "t.toml", None, &LoadOptions::default())
            .expect("valid")
            .runs
            .remove(0)
            .scenario
    }

    fn opts() -> RenderOptions {
        RenderOptions {
            run_id: "t-0".into(),
            image: RenderOptions::image_for(Some("reg.example/x/")),
            tc_image: DEFAULT_TC_IMAGE.into(),
        }
    }

    fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
        objs.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    #[test]
    fn deployments_carry_versions_replicas_probe_and_grace() {
        let objs = render(&scenario(""), &opts()).expect("renders");
        assert_eq!(objs[0]["kind"], "Namespace");
        assert_eq!(objs[0]["metadata"]["labels"][RUN_LABEL], "t-0");
        let v1 = find(&objs, "Deployment", "web-v1");
        let v2 = find(&objs, "Deployment", "web-v2");
        assert_eq!(v1["spec"]["replicas"], 3);
        assert_eq!(v2["spec"]["replicas"], 0);
        assert_eq!(v1["metadata"]["namespace"], "sdnbed-t-0");
        let pod = &v2["spec"]["template"];
        assert_eq!(pod["metadata"]["labels"][VERSION_LABEL], "v2");
        assert_eq!(pod["metadata"]["labels"][SERVICE_LABEL], "web");
        let c = &pod["spec"]["containers"][0];
        assert_eq!(
            c["image"],
            format!("reg.example/x/sdnbed:{}", env!("CARGO_PKG_VERSION"))
        );
        // 500 ms and 250 ms round up to whole seconds; grace counts from preStop.
        assert_eq!(c["readinessProbe"]["initialDelaySeconds"], 1);
        assert_eq!(c["readinessProbe"]["periodSeconds"], 1);
        assert_eq!(c["lifecycle"]["preStop"]["sleep"]["seconds"], 1);
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 11);
        let args: Vec<&str> = c["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("str"))
            .collect();
        assert_eq!(
            &args[..5],
            ["serve", "--listen", "0.0.0.0:8080", "--version", "v2"]
        );
        // No rollout: the cluster's Service routing; the Job targets the Service.
        assert!(objs.iter().all(|o| o["kind"] != "Role"));
        let job = find(&objs, "Job", "load-users");
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["args"][2],
            "http://web:8080/"
        );
    }

    #[test]
    fn sdn_steering_adds_the_gateway_and_clients_use_its_service() {
        let s = scenario(
            "[rollout]\nservice = \"web\"\nto = \"v2\"\nat = \"2s\"\nstrategy = \"canary\"\nsteering = \"sdn\"\n\
             [rollout.canary]\nsteps = [{ weight = 10, pause = \"1s\" }, { weight = 100 }]\n",
        );
        let objs = render(&s, &opts()).expect("renders");
        let gw = find(&objs, "Deployment", "gw");
        assert_eq!(
            gw["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]
                ["add"][0],
            "NET_ADMIN"
        );
        assert_eq!(
            gw["metadata"]["annotations"]["sdnbed.weights/web"],
            "v1=10000"
        );
        find(&objs, "Service", "web-sdn");
        let job = find(&objs, "Job", "load-users");
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["args"][2],
            "http://web-sdn:8080/"
        );
    }

    #[test]
    fn links_shape_the_single_link_end_and_refuse_what_cannot_be_said() {
        let s = scenario(
            "[[link]]\nbetween = [\"client\", \"gw\"]\ndelay = \"10ms\"\nloss = \"1%\"\n\
             [[link]]\nbetween = [\"gw\", \"web\"]\nbandwidth = \"1Gbit\"\n",
        );
        let objs = render(&s, &opts()).expect("renders");
        let job = find(&objs, "Job", "load-users");
        let script = job["spec"]["template"]["spec"]["initContainers"][0]["command"][2]
            .as_str()
            .expect("script");
        assert!(
            script.contains("root netem delay 10000us loss random 1%\n"),
            "{script}"
        );
        assert!(script.contains("redirect dev ifb0"), "{script}");
        let web = find(&objs, "Deployment", "web-v1");
        let script = web["spec"]["template"]["spec"]["initContainers"][0]["command"][2]
            .as_str()
            .expect("script");
        assert!(
            script.contains("root netem rate 1000000000bit\n"),
            "{script}"
        );

        let s = scenario("[[link]]\nbetween = [\"client\", \"web\"]\ndelay = \"1ms\"\nemulator = \"userspace\"\n");
        let e = render(&s, &opts()).expect_err("userspace refused");
        assert!(e.to_string().contains("link client-web"), "{e}");
    }

    #[test]
    fn names_that_kubernetes_refuses_are_refused_here() {
        let mut o = opts();
        o.run_id = "Bad_Id".into();
        let e = render(&scenario(""), &o).expect_err("bad name");
        assert!(matches!(e, ManifestError::BadName { .. }), "{e}");
    }
}
