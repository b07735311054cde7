//! Validation: a parsed TOML document becomes a [`Scenario`], or a list of every problem found.
//!
//! Everything the format promises downstream code is checked here: names are well-formed,
//! unique across nodes and services and refer to things that exist; units parse; times lie
//! inside the run; canary weights increase; queues hold at least a packet; event keys fit their
//! action. Defaults are filled in here and nowhere else (docs/scenario.md lists them).

use std::collections::BTreeMap;
use std::sync::Arc;

use toml_edit::{Item, Table, Value};

use super::diag::{Diag, KeyPath, Point};
use super::reader::{self, Cx, Tbl};
use super::schema;
use super::types::*;
use super::units::{self, BitRate, ByteSize, CountOrShare, QueueLimit, UnitError};
use crate::model::dist::Dist;
use crate::model::link::{Jitter, JitterDist, LinkParams, Loss, Trace, TRACE_OPPORTUNITY_BYTES};
use crate::model::time::Duration;

/// Linux limits interface names to 15 bytes (IFNAMSIZ − 1); nodes and services name
/// interfaces and namespaces.
pub(crate) const IFACE_NAME_MAX: usize = 15;

pub(crate) const DEFAULT_SEED: u64 = 0;
const DEFAULT_DURATION: Duration = Duration::from_secs(60);
const DEFAULT_WINDOW: Duration = Duration::from_millis(100);
const DEFAULT_PORT: i64 = 8080;
const DEFAULT_WORKERS: u32 = 8;
const DEFAULT_READINESS_PERIOD: Duration = Duration::from_secs(1);
const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
const DEFAULT_SERVICE_TIME: Duration = Duration::from_millis(1);
const DEFAULT_CONNECTIONS: u32 = 32;
const DEFAULT_REQUEST: ByteSize = ByteSize(100);
const DEFAULT_RESPONSE: ByteSize = ByteSize(1024);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_SHARE: CountOrShare = CountOrShare::Share(0.25);
const DEFAULT_SCALE_DOWN_DELAY: Duration = Duration::from_secs(30);
const DEFAULT_ANALYSIS_INTERVAL: Duration = Duration::from_secs(5);

const BACKENDS: &[(&str, BackendKind)] = &[
    ("sim", BackendKind::Sim),
    ("netns", BackendKind::Netns),
    ("docker", BackendKind::Docker),
    ("kube", BackendKind::Kube),
];
const NODE_KINDS: &[(&str, NodeKind)] = &[
    ("client", NodeKind::Client),
    ("gateway", NodeKind::Gateway),
    ("host", NodeKind::Host),
];
const EMULATORS: &[(&str, EmulatorChoice)] = &[
    ("auto", EmulatorChoice::Auto),
    ("kernel", EmulatorChoice::Kernel),
    ("userspace", EmulatorChoice::Userspace),
];
const JITTER_DISTS: &[(&str, JitterDist)] = &[
    ("normal", JitterDist::Normal),
    ("uniform", JitterDist::Uniform),
    ("pareto", JitterDist::Pareto),
];
const LOSS_MODELS: &[(&str, ())] = &[("gilbert-elliott", ())];
const ARRIVALS: &[(&str, Arrivals)] = &[
    ("constant", Arrivals::Constant),
    ("poisson", Arrivals::Poisson),
];
const STRATEGIES: &[(&str, StrategyKind)] = &[
    ("recreate", StrategyKind::Recreate),
    ("rolling", StrategyKind::Rolling),
    ("blue-green", StrategyKind::BlueGreen),
    ("canary", StrategyKind::Canary),
];
const STEERINGS: &[(&str, Steering)] = &[("sdn", Steering::Sdn), ("replicas", Steering::Replicas)];
const JUDGES: &[(&str, Judge)] = &[
    ("thresholds", Judge::Thresholds),
    ("mann-whitney", Judge::MannWhitney),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    LinkDown,
    LinkUp,
    SetLink,
    KillReplica,
    SetRate,
}
const ACTIONS: &[(&str, Action)] = &[
    ("link-down", Action::LinkDown),
    ("link-up", Action::LinkUp),
    ("set-link", Action::SetLink),
    ("kill-replica", Action::KillReplica),
    ("set-rate", Action::SetRate),
];
const LINK_PATCH_KEYS: &[&str] = &["bandwidth", "delay", "jitter", "loss", "queue"];

/// What later sections need to know about the names defined earlier.
#[derive(Default)]
struct Names {
    nodes: BTreeMap<String, NodeKind>,
    /// Service name → (version names, starting version, replicas).
    services: BTreeMap<String, (Vec<String>, String, u32)>,
    /// First definition of every node or service name, for duplicate reports.
    defined: BTreeMap<String, &'static str>,
}

impl Names {
    fn exists(&self, n: &str) -> bool {
        self.nodes.contains_key(n) || self.services.contains_key(n)
    }
}

/// Validates a whole document (without `[sweep]`) into a scenario.
pub(crate) fn validate(root: &Table, cx: &mut Cx<'_>) -> Option<Scenario> {
    let top = Tbl::new(
        cx,
        root,
        KeyPath::default(),
        schema::ROOT,
        "the scenario file".into(),
    );
    let head = scenario_head(cx, &top);
    let duration = head.as_ref().map_or(DEFAULT_DURATION, |h| h.duration);

    let mut names = Names::default();
    let nodes = nodes(cx, &top, &mut names);
    let services = services(cx, &top, &mut names);
    let links = links(cx, &top, &names);
    let policies = policies(cx, &top, &names);
    let workloads = workloads(cx, &top, &names, duration);
    let rollout = top
        .table(cx, "rollout", schema::ROLLOUT, "[rollout]".into())
        .map(|t| rollout(cx, &t, &names, duration));
    let link_pairs: Vec<[String; 2]> = links
        .iter()
        .map(|l| {
            [
                l.between[0].name().to_string(),
                l.between[1].name().to_string(),
            ]
        })
        .collect();
    let events = events(cx, &top, &names, &link_pairs, &workloads, duration);

    let head = head?;
    let rollout = match rollout {
        Some(r) => Some(r?),
        None => None,
    };
    if !cx.diags.is_empty() {
        return None;
    }
    Some(Scenario {
        name: head.name,
        description: head.description,
        seed: head.seed,
        duration: head.duration,
        warmup: head.warmup,
        window: head.window,
        backend: head.backend,
        nodes,
        services,
        links,
        policies,
        workloads,
        rollout,
        events,
    })
}

struct Head {
    name: String,
    description: String,
    seed: u64,
    duration: Duration,
    warmup: Duration,
    window: Duration,
    backend: BackendKind,
}

fn scenario_head(cx: &mut Cx<'_>, top: &Tbl<'_>) -> Option<Head> {
    let Some(t) = top.table(cx, "scenario", schema::SCENARIO, "[scenario]".into()) else {
        if !top.has("scenario") {
            cx.err_hint(
                top.at("scenario"),
                "missing the [scenario] table",
                "every scenario starts with `[scenario]` and `name = \"…\"`",
            );
        }
        return None;
    };
    let name = t.req_str(cx, "name");
    if let Some(n) = name {
        check_name(cx, t.at("name"), n, "scenario", None);
    }
    let description = t.str(cx, "description").unwrap_or("").to_string();
    let seed = t
        .int(cx, "seed", 0, i64::MAX)
        .map_or(DEFAULT_SEED, |s| s as u64);
    let duration = t
        .unit(cx, "duration", "duration", units::parse_duration)
        .unwrap_or(DEFAULT_DURATION);
    if duration.is_zero() {
        cx.err(t.at("duration"), "`duration` must be greater than zero");
    }
    let warmup = t
        .unit(cx, "warmup", "duration", units::parse_duration)
        .unwrap_or(Duration::ZERO);
    if warmup >= duration && !duration.is_zero() {
        cx.err_hint(
            t.at("warmup"),
            format!(
                "`warmup` ({}) must be shorter than `duration` ({})",
                show(warmup),
                show(duration)
            ),
            "the warmup is the first part of the run, excluded from summary statistics",
        );
    }
    let window = t
        .unit(cx, "window", "duration", units::parse_duration)
        .unwrap_or(DEFAULT_WINDOW);
    if window.is_zero() {
        cx.err(t.at("window"), "`window` must be greater than zero");
    } else if window > duration {
        cx.err(
            t.at("window"),
            format!(
                "`window` ({}) must not exceed `duration` ({})",
                show(window),
                show(duration)
            ),
        );
    }
    let backend = t
        .choice(cx, "backend", BACKENDS)
        .unwrap_or(BackendKind::Sim);
    Some(Head {
        name: name?.to_string(),
        description,
        seed,
        duration,
        warmup,
        window,
        backend,
    })
}

/// Renders a duration for messages the way a user would write it.
fn show(d: Duration) -> String {
    let ns = d.as_nanos();
    for (div, unit) in [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")] {
        if ns >= div && ns % div == 0 {
            return format!("{}{unit}", ns / div);
        }
    }
    if ns >= 1_000_000 {
        format!("{}ms", d.as_millis_f64())
    } else {
        format!("{ns}ns")
    }
}

/// Checks `[a-z0-9-]`, starting with a letter or digit; `max` limits the length (with the
/// reason for the limit).
fn check_name(cx: &mut Cx<'_>, path: KeyPath, name: &str, what: &str, max: Option<usize>) -> bool {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty() || !ok_chars || name.starts_with('-') {
        cx.err_hint(
            path,
            format!("`{name}` is not a valid {what} name"),
            "names use lowercase letters, digits and `-`, and start with a letter or digit",
        );
        return false;
    }
    if let Some(max) = max {
        if name.len() > max {
            cx.err_hint(
                path,
                format!("{what} name `{name}` is {} characters long; at most {max} are allowed", name.len()),
                "node and service names become network interface and namespace names, which Linux limits to 15 bytes",
            );
            return false;
        }
    }
    true
}

fn define(cx: &mut Cx<'_>, names: &mut Names, path: KeyPath, name: &str, what: &'static str) {
    if let Some(first) = names.defined.get(name) {
        cx.err_hint(
            path,
            format!("the name `{name}` is used twice (a {first} and a {what})"),
            "nodes and services share one name space",
        );
    } else {
        names.defined.insert(name.to_string(), what);
    }
}

fn nodes(cx: &mut Cx<'_>, top: &Tbl<'_>, names: &mut Names) -> Vec<Node> {
    let tables = top.elements(cx, "node", schema::NODE, |i| format!("[[node]] #{}", i + 1));
    if tables.is_empty() && !top.has("node") {
        cx.err_hint(
            top.at("node"),
            "the scenario defines no [[node]]",
            "a scenario needs at least one node, e.g. `[[node]]` with `name = \"client\"` and `kind = \"client\"`",
        );
    }
    let mut out = Vec::new();
    for t in tables {
        let kind = t.choice(cx, "kind", NODE_KINDS).unwrap_or(NodeKind::Host);
        let Some(name) = t.req_str(cx, "name") else {
            continue;
        };
        if !check_name(cx, t.at("name"), name, "node", Some(IFACE_NAME_MAX)) {
            continue;
        }
        define(cx, names, t.at("name"), name, "node");
        names.nodes.entry(name.to_string()).or_insert(kind);
        out.push(Node {
            name: name.to_string(),
            kind,
        });
    }
    out
}

/// A ratio written as `"0.1%"` or as a number in [0, 1].
fn ratio(cx: &mut Cx<'_>, t: &Tbl<'_>, key: &str) -> Option<f64> {
    let item = t.get(key)?;
    let parsed = match item.as_value() {
        Some(Value::String(s)) => units::parse_ratio_str(s.value()),
        v => match reader::number(v) {
            Some(x) => units::check_ratio(x),
            None => {
                cx.err(
                    t.at(key),
                    format!(
                        "`{key}` in {} must be a ratio such as \"0.1%\" or 0.001",
                        t.what
                    ),
                );
                return None;
            }
        },
    };
    parsed
        .map_err(|e| {
            cx.err_hint(
                t.at(key),
                format!("invalid ratio for `{key}` in {}", t.what),
                e.0,
            )
        })
        .ok()
}

/// A count (integer) or a share (`"25%"`).
fn count_or_share(cx: &mut Cx<'_>, t: &Tbl<'_>, key: &str) -> Option<CountOrShare> {
    let item = t.get(key)?;
    match item.as_value() {
        Some(Value::Integer(i)) => match u32::try_from(*i.value()) {
            Ok(n) => Some(CountOrShare::Count(n)),
            Err(_) => {
                cx.err(
                    t.at(key),
                    format!("`{key}` in {} must be a non-negative count", t.what),
                );
                None
            }
        },
        _ => t.unit(cx, key, "count or share", units::parse_count_or_share),
    }
}

/// `env = { NAME = "value", … }`: names as a shell takes them, values strings.
fn env_table(cx: &mut Cx<'_>, t: &Tbl<'_>) -> Vec<(String, String)> {
    let Some(item) = t.get("env") else {
        return Vec::new();
    };
    let Some(table) = item.as_table_like() else {
        cx.err(
            t.at("env"),
            format!(
                "`env` in {} must be a table of strings, e.g. env = {{ MODE = \"fast\" }}",
                t.what
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in table.iter() {
        let valid = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            cx.err(
                t.at("env").key(k),
                format!(
                    "`{k}` in {} is not an environment variable name (letters, digits, _)",
                    t.what
                ),
            );
            continue;
        }
        match v.as_str() {
            Some(s) => out.push((k.to_string(), s.to_string())),
            None => cx.err(
                t.at("env").key(k),
                format!("`env.{k}` in {} must be a string", t.what),
            ),
        }
    }
    out
}

fn string_list(cx: &mut Cx<'_>, t: &Tbl<'_>, key: &str) -> Option<Vec<String>> {
    let item = t.get(key)?;
    if let Some(s) = item.as_str() {
        return Some(vec![s.to_string()]);
    }
    let Some(arr) = item.as_array() else {
        cx.err(
            t.at(key),
            format!("`{key}` in {} must be an array of strings", t.what),
        );
        return None;
    };
    let mut out = Vec::new();
    for (i, v) in arr.iter().enumerate() {
        match v.as_str() {
            Some(s) => out.push(s.to_string()),
            None => cx.err(
                t.at(key).index(i),
                format!(
                    "`{key}` in {} must hold strings, not {}",
                    t.what,
                    v.type_name()
                ),
            ),
        }
    }
    (out.len() == arr.len()).then_some(out)
}

fn services(cx: &mut Cx<'_>, top: &Tbl<'_>, names: &mut Names) -> Vec<Service> {
    let gateways: Vec<&String> = names
        .nodes
        .iter()
        .filter(|(_, k)| **k == NodeKind::Gateway)
        .map(|(n, _)| n)
        .collect();
    let only_gateway = (gateways.len() == 1).then(|| gateways[0].clone());
    let mut out = Vec::new();
    for (name, t) in top.named(cx, "service", schema::SERVICE, |n| format!("[service.{n}]")) {
        let named_ok = check_name(cx, t.path.clone(), name, "service", Some(IFACE_NAME_MAX));
        if named_ok {
            define(cx, names, t.path.clone(), name, "service");
        }
        let replicas = t.u32(cx, "replicas", 1).unwrap_or(1);
        let port = t.int(cx, "port", 1, 65535).unwrap_or(DEFAULT_PORT) as u16;
        let workers = t.u32(cx, "workers", 1).unwrap_or(DEFAULT_WORKERS);
        let gateway = match (t.get("gateway"), &only_gateway) {
            (Some(_), _) => t.str(cx, "gateway").map(str::to_string),
            (None, Some(g)) => Some(g.clone()),
            (None, None) => {
                cx.err_hint(
                    t.at("gateway"),
                    format!("missing required key `gateway` in {}", t.what),
                    "name the [[node]] of kind \"gateway\" that holds the service's virtual IP \
                     (it may be left out when the scenario has exactly one gateway)",
                );
                None
            }
        };
        if let Some(g) = &gateway {
            match names.nodes.get(g) {
                Some(NodeKind::Gateway) => {}
                Some(_) => cx.err_hint(
                    t.at("gateway"),
                    format!(
                        "`gateway` of {} is `{g}`, which is not a node of kind \"gateway\"",
                        t.what
                    ),
                    "set `kind = \"gateway\"` on that node or name another one",
                ),
                None => unknown_name(
                    cx,
                    t.at("gateway"),
                    g,
                    "gateway node",
                    names.nodes.keys().map(String::as_str),
                ),
            }
        }
        let readiness = match t.table(
            cx,
            "readiness",
            schema::READINESS,
            format!("`readiness` of {}", t.what),
        ) {
            Some(r) => {
                let period = r
                    .unit(cx, "period", "duration", units::parse_duration)
                    .unwrap_or(DEFAULT_READINESS_PERIOD);
                if period.is_zero() {
                    cx.err(
                        r.at("period"),
                        "the readiness `period` must be greater than zero",
                    );
                }
                Readiness {
                    initial_delay: r
                        .unit(cx, "initial_delay", "duration", units::parse_duration)
                        .unwrap_or(Duration::ZERO),
                    period,
                    failure_threshold: r
                        .u32(cx, "failure_threshold", 1)
                        .unwrap_or(DEFAULT_FAILURE_THRESHOLD),
                }
            }
            None => Readiness {
                initial_delay: Duration::ZERO,
                period: DEFAULT_READINESS_PERIOD,
                failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            },
        };
        let termination = match t.table(
            cx,
            "termination",
            schema::TERMINATION,
            format!("`termination` of {}", t.what),
        ) {
            Some(r) => Termination {
                pre_stop: r
                    .unit(cx, "pre_stop", "duration", units::parse_duration)
                    .unwrap_or(Duration::ZERO),
                grace: r
                    .unit(cx, "grace", "duration", units::parse_duration)
                    .unwrap_or(DEFAULT_GRACE),
            },
            None => Termination {
                pre_stop: Duration::ZERO,
                grace: DEFAULT_GRACE,
            },
        };
        let cpu = t.number(cx, "cpu");
        if cpu.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
            cx.err(
                t.at("cpu"),
                format!("`cpu` of {} must be a positive number of cores", t.what),
            );
        }
        let memory = t.unit(cx, "memory", "size", units::parse_size).map(|b| b.0);
        if memory == Some(0) {
            cx.err(
                t.at("memory"),
                format!("`memory` of {} must be more than 0", t.what),
            );
        }
        let versions = versions(cx, &t, name);
        let version = match t.get("version") {
            Some(_) => t.str(cx, "version").map(str::to_string),
            None => versions.first().map(|v| v.name.clone()),
        };
        if let Some(v) = &version {
            if !versions.is_empty() && !versions.iter().any(|x| &x.name == v) {
                unknown_name(
                    cx,
                    t.at("version"),
                    v,
                    "version",
                    versions.iter().map(|x| x.name.as_str()),
                );
            }
        }
        if !named_ok {
            continue;
        }
        let version_names: Vec<String> = versions.iter().map(|v| v.name.clone()).collect();
        let start = version.clone().unwrap_or_default();
        names
            .services
            .entry(name.to_string())
            .or_insert((version_names, start, replicas));
        if let (Some(gateway), Some(version)) = (gateway, version) {
            out.push(Service {
                name: name.to_string(),
                replicas,
                port,
                gateway,
                version,
                workers,
                readiness,
                termination,
                cpu,
                memory,
                versions,
            });
        }
    }
    out
}

fn versions(cx: &mut Cx<'_>, t: &Tbl<'_>, service: &str) -> Vec<Version> {
    let tables = t.named(cx, "versions", schema::VERSION, |v| {
        format!("[service.{service}.versions.{v}]")
    });
    if tables.is_empty() {
        cx.err_hint(
            t.at("versions"),
            format!("{} defines no version", t.what),
            format!("add a table `[service.{service}.versions.v1]`"),
        );
    }
    let mut out = Vec::new();
    for (name, v) in tables {
        if !check_name(cx, v.path.clone(), name, "version", None) {
            continue;
        }
        let base = cx.base;
        let service_time = v
            .unit(cx, "service_time", "distribution", |s| {
                units::parse_dist(s, base)
            })
            .unwrap_or(Dist::Const(DEFAULT_SERVICE_TIME));
        let startup = v
            .unit(cx, "startup", "duration", units::parse_duration)
            .unwrap_or(Duration::ZERO);
        let error_rate = ratio(cx, &v, "error_rate").unwrap_or(0.0);
        let image = v.str(cx, "image").map(str::to_string);
        let command = string_list(cx, &v, "command");
        if command.as_ref().is_some_and(Vec::is_empty) {
            cx.err(
                v.at("command"),
                "`command` must not be empty (leave it out to use the image's own)",
            );
        }
        let build = v.str(cx, "build").map(|b| match cx.base {
            Some(base) => base.join(b),
            None => b.into(),
        });
        if let Some(dir) = &build {
            if image.is_some() {
                cx.err(
                    v.at("build"),
                    format!("{} gives both `image` and `build`: one names the image, the other makes it", v.what),
                );
            } else if !dir.join("Dockerfile").is_file() {
                cx.err_hint(
                    v.at("build"),
                    format!("`build` of {} has no Dockerfile", v.what),
                    format!("looked for {}", dir.join("Dockerfile").display()),
                );
            }
        }
        let env = env_table(cx, &v);
        let ready_path = v.str(cx, "ready_path").map(str::to_string);
        if ready_path.as_ref().is_some_and(|p| !p.starts_with('/')) {
            cx.err(
                v.at("ready_path"),
                format!("`ready_path` of {} must start with `/`", v.what),
            );
        }
        out.push(Version {
            name: name.to_string(),
            service_time,
            startup,
            error_rate,
            image,
            build,
            command,
            env,
            ready_path,
        });
    }
    out
}

fn unknown_name<'a>(
    cx: &mut Cx<'_>,
    path: KeyPath,
    name: &str,
    what: &str,
    known: impl Iterator<Item = &'a str> + Clone,
) {
    let hint = match schema::did_you_mean(name, known.clone()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => {
            let list = reader::quoted_list(known);
            if list.is_empty() {
                format!("the scenario defines no {what}")
            } else {
                format!("defined: {list}")
            }
        }
    };
    cx.err_hint(path, format!("unknown {what} `{name}`"), hint);
}

/// A pair of names, e.g. `between = ["client", "gw"]`.
fn pair(cx: &mut Cx<'_>, t: &Tbl<'_>, key: &str) -> Option<[String; 2]> {
    let list = string_list(cx, t, key)?;
    match <[String; 2]>::try_from(list) {
        Ok(p) => Some(p),
        Err(l) => {
            cx.err(
                t.at(key),
                format!(
                    "`{key}` in {} must name exactly two ends, not {}",
                    t.what,
                    l.len()
                ),
            );
            None
        }
    }
}

/// `"1ms"` (normal) or `{ amount = "1ms", distribution = "pareto" }`; zero means none.
fn jitter(cx: &mut Cx<'_>, t: &Tbl<'_>, key: &str) -> Option<Option<Jitter>> {
    let item = t.get(key)?;
    let (amount, distribution) = if item.is_str() {
        (
            t.unit(cx, key, "duration", units::parse_duration)?,
            JitterDist::Normal,
        )
    } else if item.is_table_like() {
        let j = t.table(cx, key, schema::JITTER, format!("`{key}` of {}", t.what))?;
        let amount = match j.get("amount") {
            Some(_) => j.unit(cx, "amount", "duration", units::parse_duration)?,
            None => return j.missing(cx, "amount"),
        };
        (
            amount,
            j.choice(cx, "distribution", JITTER_DISTS)
                .unwrap_or(JitterDist::Normal),
        )
    } else {
        cx.err_hint(
            t.at(key),
            format!("`{key}` in {} must be a duration or a table", t.what),
            "write e.g. \"1ms\" or { amount = \"1ms\", distribution = \"pareto\" }",
        );
        return None;
    };
    Some((!amount.is_zero()).then_some(Jitter {
        amount,
        distribution,
    }))
}

/// A ratio (independent loss) or `{ model = "gilbert-elliott", p, r, h, k }`.
fn loss(cx: &mut Cx<'_>, t: &Tbl<'_>, key: &str) -> Option<Loss> {
    let item = t.get(key)?;
    if item.as_table_like().is_none() {
        let p = ratio(cx, t, key)?;
        return Some(if p == 0.0 {
            Loss::None
        } else {
            Loss::Bernoulli(p)
        });
    }
    let g = t.table(cx, key, schema::LOSS, format!("`{key}` of {}", t.what))?;
    if !g.has("model") {
        return g.missing(cx, "model");
    }
    g.choice(cx, "model", LOSS_MODELS)?;
    if !g.has("p") {
        return g.missing(cx, "p");
    }
    let p = ratio(cx, &g, "p")?;
    // Defaults as netem's gemodel: r = 1 − p, no delivery in the bad state, all in the good one.
    let r = if g.has("r") {
        ratio(cx, &g, "r")?
    } else {
        1.0 - p
    };
    let h = if g.has("h") { ratio(cx, &g, "h")? } else { 0.0 };
    let k = if g.has("k") { ratio(cx, &g, "k")? } else { 1.0 };
    Some(Loss::GilbertElliott { p, r, h, k })
}

fn queue(cx: &mut Cx<'_>, t: &Tbl<'_>, key: &str) -> Option<QueueLimit> {
    let q = t.unit(cx, key, "queue limit", units::parse_queue)?;
    let too_small = match q {
        QueueLimit::Packets(n) => n == 0,
        QueueLimit::Bytes(b) => b < TRACE_OPPORTUNITY_BYTES,
    };
    if too_small {
        cx.err_hint(
            t.at(key),
            format!("`{key}` in {} ({q}) holds less than one packet", t.what),
            "a queue must hold at least one 1500-byte packet; leave `queue` out for the default \
             (one bandwidth-delay product, at least 64 packets)",
        );
        return None;
    }
    Some(q)
}

fn trace(cx: &mut Cx<'_>, t: &Tbl<'_>) -> Option<Arc<Trace>> {
    let written = t.str(cx, "trace")?;
    let full = match cx.base {
        Some(b) => b.join(written),
        None => written.into(),
    };
    let text = match std::fs::read_to_string(&full) {
        Ok(s) => s,
        Err(e) => {
            cx.err_hint(
                t.at("trace"),
                format!("cannot read trace `{written}`"),
                format!("{}: {e}", full.display()),
            );
            return None;
        }
    };
    match Trace::parse(written, &text) {
        Ok(tr) => Some(Arc::new(tr)),
        Err(e) => {
            cx.err_hint(
                t.at("trace"),
                format!("invalid Mahimahi trace `{written}`"),
                e,
            );
            None
        }
    }
}

fn links(cx: &mut Cx<'_>, top: &Tbl<'_>, names: &Names) -> Vec<Link> {
    let mut out: Vec<Link> = Vec::new();
    for t in top.elements(cx, "link", schema::LINK, |i| format!("[[link]] #{}", i + 1)) {
        let between = if t.has("between") {
            pair(cx, &t, "between")
        } else {
            t.missing(cx, "between")
        };
        let bandwidth = t.unit(cx, "bandwidth", "bit rate", units::parse_bitrate);
        let trace = trace(cx, &t);
        if t.has("bandwidth") && t.has("trace") {
            cx.err_hint(
                t.at("trace"),
                format!("{} sets both `bandwidth` and `trace`", t.what),
                "a trace replaces the bandwidth; keep one of them",
            );
        }
        let params = LinkParams {
            bandwidth,
            delay: t
                .unit(cx, "delay", "duration", units::parse_duration)
                .unwrap_or(Duration::ZERO),
            jitter: jitter(cx, &t, "jitter").flatten(),
            loss: loss(cx, &t, "loss").unwrap_or_default(),
            queue: queue(cx, &t, "queue"),
            trace,
            reorder: t.bool(cx, "reorder").unwrap_or(false),
        };
        let emulator = t.choice(cx, "emulator", EMULATORS).unwrap_or_default();
        let capture = t.bool(cx, "capture").unwrap_or(false);
        let Some([a, b]) = between else { continue };
        let mut ends = Vec::new();
        for (i, n) in [&a, &b].into_iter().enumerate() {
            if names.nodes.contains_key(n) {
                ends.push(LinkEnd::Node(n.clone()));
            } else if names.services.contains_key(n) {
                ends.push(LinkEnd::Service(n.clone()));
            } else {
                let known = names.defined.keys().map(String::as_str);
                unknown_name(cx, t.at("between").index(i), n, "node or service", known);
            }
        }
        if a == b {
            cx.err(
                t.at("between"),
                format!("{} connects `{a}` to itself", t.what),
            );
            continue;
        }
        if let Some(j) = out.iter().position(|l| same_pair(l, &a, &b)) {
            cx.err_hint(
                t.at("between"),
                format!(
                    "{} duplicates [[link]] #{} between `{a}` and `{b}`",
                    t.what,
                    j + 1
                ),
                "events name links by their ends, so two ends have at most one link",
            );
            continue;
        }
        if let Ok(between) = <[LinkEnd; 2]>::try_from(ends) {
            out.push(Link {
                between,
                params,
                emulator,
                capture,
            });
        }
    }
    out
}

fn same_pair(l: &Link, a: &str, b: &str) -> bool {
    let (x, y) = (l.between[0].name(), l.between[1].name());
    (x == a && y == b) || (x == b && y == a)
}

fn policies(cx: &mut Cx<'_>, top: &Tbl<'_>, names: &Names) -> Vec<Policy> {
    let mut out: Vec<Policy> = Vec::new();
    for t in top.elements(cx, "policy", schema::POLICY, |i| {
        format!("[[policy]] #{}", i + 1)
    }) {
        let name = t.req_str(cx, "name");
        if let Some(n) = name {
            if check_name(cx, t.at("name"), n, "policy", None) && out.iter().any(|p| p.name == n) {
                cx.err(t.at("name"), format!("two policies are named `{n}`"));
            }
        }
        let from = if t.has("from") {
            string_list(cx, &t, "from")
        } else {
            t.missing(cx, "from")
        };
        if let Some(from) = &from {
            if from.is_empty() {
                cx.err(t.at("from"), format!("`from` of {} is empty", t.what));
            }
            for (i, f) in from.iter().enumerate() {
                if !names.exists(f) {
                    unknown_name(
                        cx,
                        t.at("from").index(i),
                        f,
                        "node or service",
                        names.defined.keys().map(String::as_str),
                    );
                }
            }
        }
        let to = t.req_str(cx, "to");
        if let Some(to) = to {
            if !names.exists(to) {
                unknown_name(
                    cx,
                    t.at("to"),
                    to,
                    "node or service",
                    names.defined.keys().map(String::as_str),
                );
            }
        }
        let ports = ports(cx, &t);
        if let (Some(name), Some(from), Some(to), Some(ports)) = (name, from, to, ports) {
            out.push(Policy {
                name: name.to_string(),
                from,
                to: to.to_string(),
                ports,
            });
        }
    }
    out
}

fn ports(cx: &mut Cx<'_>, t: &Tbl<'_>) -> Option<Vec<u16>> {
    let Some(item) = t.get("ports") else {
        return Some(Vec::new());
    };
    let Some(arr) = item.as_array() else {
        cx.err(
            t.at("ports"),
            format!("`ports` in {} must be an array of port numbers", t.what),
        );
        return None;
    };
    let mut out = Vec::new();
    for (i, v) in arr.iter().enumerate() {
        match v
            .as_integer()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p >= 1)
        {
            Some(p) => out.push(p),
            None => cx.err(
                t.at("ports").index(i),
                format!(
                    "`{v}` is not a port number (1–65535)",
                    v = v.to_string().trim()
                ),
            ),
        }
    }
    (out.len() == arr.len()).then_some(out)
}

fn workloads(cx: &mut Cx<'_>, top: &Tbl<'_>, names: &Names, duration: Duration) -> Vec<Workload> {
    let mut out: Vec<Workload> = Vec::new();
    for t in top.elements(cx, "workload", schema::WORKLOAD, |i| {
        format!("[[workload]] #{}", i + 1)
    }) {
        let name = t.req_str(cx, "name");
        if let Some(n) = name {
            if check_name(cx, t.at("name"), n, "workload", None) && out.iter().any(|w| w.name == n)
            {
                cx.err(t.at("name"), format!("two workloads are named `{n}`"));
            }
        }
        let from = t.req_str(cx, "from");
        if let Some(f) = from {
            match names.nodes.get(f) {
                Some(NodeKind::Client | NodeKind::Host) => {}
                Some(NodeKind::Gateway) => cx.err_hint(
                    t.at("from"),
                    format!("`from` of {} is `{f}`, a gateway", t.what),
                    "load is generated on a node of kind \"client\" or \"host\"",
                ),
                None if names.services.contains_key(f) => cx.err_hint(
                    t.at("from"),
                    format!("`from` of {} is `{f}`, a service", t.what),
                    "load is generated on a node of kind \"client\" or \"host\"",
                ),
                None => unknown_name(
                    cx,
                    t.at("from"),
                    f,
                    "node",
                    names.nodes.keys().map(String::as_str),
                ),
            }
        }
        let to = t.req_str(cx, "to").and_then(|to| {
            if names.services.contains_key(to) {
                Some(Target::Service(to.to_string()))
            } else if names.nodes.contains_key(to) {
                Some(Target::Node(to.to_string()))
            } else {
                unknown_name(
                    cx,
                    t.at("to"),
                    to,
                    "service or node",
                    names.defined.keys().map(String::as_str),
                );
                None
            }
        });
        let rate = rate_schedule(cx, &t, duration);
        let timeout = t
            .unit(cx, "timeout", "duration", units::parse_duration)
            .unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            cx.err(t.at("timeout"), "`timeout` must be greater than zero");
        }
        let arrivals = t
            .choice(cx, "arrivals", ARRIVALS)
            .unwrap_or(Arrivals::Poisson);
        let connections = t.u32(cx, "connections", 0).unwrap_or(DEFAULT_CONNECTIONS);
        let max_requests_per_connection = t.u32(cx, "max_requests_per_connection", 0).unwrap_or(0);
        let request = t
            .unit(cx, "request", "size", units::parse_size)
            .unwrap_or(DEFAULT_REQUEST);
        let response = t
            .unit(cx, "response", "size", units::parse_size)
            .unwrap_or(DEFAULT_RESPONSE);
        if let (Some(name), Some(from), Some(to), Some(rate)) = (name, from, to, rate) {
            out.push(Workload {
                name: name.to_string(),
                from: from.to_string(),
                to,
                rate,
                arrivals,
                connections,
                max_requests_per_connection,
                request,
                response,
                timeout,
            });
        }
    }
    out
}

fn rate_schedule(cx: &mut Cx<'_>, t: &Tbl<'_>, duration: Duration) -> Option<RateSchedule> {
    match (t.get("rate"), t.get("schedule")) {
        (Some(_), Some(_)) => {
            cx.err_hint(
                t.at("schedule"),
                format!("{} sets both `rate` and `schedule`", t.what),
                "a schedule replaces the rate; keep one of them",
            );
            None
        }
        (None, None) => {
            cx.err_hint(
                t.path.clone(),
                format!("{} sets neither `rate` nor `schedule`", t.what),
                "write e.g. `rate = \"1000/s\"`",
            );
            None
        }
        (Some(_), None) => t
            .unit(cx, "rate", "request rate", units::parse_rate)
            .map(RateSchedule::constant),
        (None, Some(item)) => {
            let path = t.at("schedule");
            let shape = "`schedule` must be an array of [time, rate] pairs, e.g. [[\"0s\", \"500/s\"], [\"30s\", \"2000/s\"]]";
            let Some(arr) = item.as_array() else {
                cx.err(path, shape);
                return None;
            };
            if arr.is_empty() {
                cx.err_hint(path, format!("`schedule` of {} is empty", t.what), shape);
                return None;
            }
            let mut steps: Vec<(Duration, units::RequestRate)> = Vec::new();
            for (i, v) in arr.iter().enumerate() {
                let p = path.index(i);
                let pair = v.as_array().filter(|a| a.len() == 2);
                let Some((Some(at), Some(rate))) = pair.map(|a| {
                    (
                        a.get(0).and_then(Value::as_str),
                        a.get(1).and_then(Value::as_str),
                    )
                }) else {
                    cx.err(p, shape);
                    continue;
                };
                let at = units::parse_duration(at)
                    .map_err(|e| cx.err_hint(p.index(0), "invalid duration in `schedule`", e.0));
                let rate = units::parse_rate(rate).map_err(|e| {
                    cx.err_hint(p.index(1), "invalid request rate in `schedule`", e.0)
                });
                let (Ok(at), Ok(rate)) = (at, rate) else {
                    continue;
                };
                if i == 0 && !at.is_zero() {
                    cx.err_hint(
                        p.index(0),
                        "the first `schedule` step must start at \"0s\"",
                        "the schedule gives the rate from the start of the run",
                    );
                } else if steps.last().is_some_and(|(prev, _)| *prev >= at) {
                    cx.err(
                        p.index(0),
                        "`schedule` steps must be in increasing order of time",
                    );
                } else if at >= duration {
                    cx.err(
                        p.index(0),
                        format!(
                            "`schedule` step at {} is not before the end of the run ({})",
                            show(at),
                            show(duration)
                        ),
                    );
                }
                steps.push((at, rate));
            }
            (steps.len() == arr.len()).then_some(RateSchedule { steps })
        }
    }
}

/// The required `at` of a rollout or an event: a duration before the end of the run. `what`
/// starts the message ("the rollout starts", "[[event]] #2 is").
fn start_time(cx: &mut Cx<'_>, t: &Tbl<'_>, duration: Duration, what: &str) -> Option<Duration> {
    let at = if t.has("at") {
        t.unit(cx, "at", "duration", units::parse_duration)
    } else {
        t.missing(cx, "at")
    };
    if let Some(at) = at.filter(|at| *at >= duration) {
        cx.err(
            t.at("at"),
            format!(
                "{what} at {}, not before the end of the run ({})",
                show(at),
                show(duration)
            ),
        );
    }
    at
}

fn rollout(cx: &mut Cx<'_>, t: &Tbl<'_>, names: &Names, duration: Duration) -> Option<Rollout> {
    let service = t.req_str(cx, "service");
    let info = service.and_then(|s| match names.services.get(s) {
        Some(info) => Some(info),
        None => {
            unknown_name(
                cx,
                t.at("service"),
                s,
                "service",
                names.services.keys().map(String::as_str),
            );
            None
        }
    });
    let to = t.req_str(cx, "to");
    if let (Some(to), Some((versions, start, _))) = (to, info) {
        if !versions.iter().any(|v| v == to) {
            unknown_name(
                cx,
                t.at("to"),
                to,
                "version",
                versions.iter().map(String::as_str),
            );
        } else if to == start {
            cx.err_hint(
                t.at("to"),
                format!("the rollout's `to` is `{to}`, the version already running"),
                "roll out to another version, or leave out [rollout] for a baseline run",
            );
        }
    }
    let at = start_time(cx, t, duration, "the rollout starts");
    let strategy = t
        .choice(cx, "strategy", STRATEGIES)
        .unwrap_or(StrategyKind::Rolling);
    let steering = t.choice(cx, "steering", STEERINGS).unwrap_or(Steering::Sdn);
    let propagation_delay = t
        .unit(cx, "propagation_delay", "duration", units::parse_duration)
        .unwrap_or(Duration::ZERO);

    let mut rolling = RollingParams {
        max_surge: DEFAULT_SHARE,
        max_unavailable: DEFAULT_SHARE,
        min_ready: Duration::ZERO,
    };
    if let Some(r) = t.table(cx, "rolling", schema::ROLLING, "[rollout.rolling]".into()) {
        rolling.max_surge = count_or_share(cx, &r, "max_surge").unwrap_or(DEFAULT_SHARE);
        rolling.max_unavailable =
            count_or_share(cx, &r, "max_unavailable").unwrap_or(DEFAULT_SHARE);
        rolling.min_ready = r
            .unit(cx, "min_ready", "duration", units::parse_duration)
            .unwrap_or(Duration::ZERO);
        if let Some((_, _, replicas)) = info {
            let surge = rolling.max_surge.resolve(*replicas, true);
            let unavailable = rolling.max_unavailable.resolve(*replicas, false);
            if surge == 0 && unavailable == 0 {
                cx.err_hint(
                    r.path.clone(),
                    format!(
                        "`max_surge` ({}) and `max_unavailable` ({}) are both zero for {replicas} replicas",
                        rolling.max_surge, rolling.max_unavailable
                    ),
                    "a rolling update could then never replace a replica; allow a surge or some unavailability",
                );
            }
        }
    }
    let mut blue_green = BlueGreenParams {
        scale_down_delay: DEFAULT_SCALE_DOWN_DELAY,
        preview_analysis: false,
    };
    if let Some(b) = t.table(
        cx,
        "blue_green",
        schema::BLUE_GREEN,
        "[rollout.blue_green]".into(),
    ) {
        blue_green.scale_down_delay = b
            .unit(cx, "scale_down_delay", "duration", units::parse_duration)
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY);
        blue_green.preview_analysis = b.bool(cx, "preview_analysis").unwrap_or(false);
    }
    let mut canary = CanaryParams { steps: Vec::new() };
    let mut analysis = None;
    let canary_t = t.table(cx, "canary", schema::CANARY, "[rollout.canary]".into());
    if let Some(c) = &canary_t {
        canary.steps = canary_steps(cx, c).unwrap_or_default();
        let judge = c.choice(cx, "judge", JUDGES);
        analysis = c
            .table(
                cx,
                "analysis",
                schema::ANALYSIS,
                "the canary `analysis`".into(),
            )
            .and_then(|a| analysis_params(cx, &a, judge.unwrap_or(Judge::Thresholds), duration));
        if judge.is_some() && !c.has("analysis") {
            cx.err(
                c.at("judge"),
                "`judge` is set but there is no `analysis` to use it",
            );
        }
    }
    if strategy == StrategyKind::Canary && !canary_t.as_ref().is_some_and(|c| c.has("steps")) {
        cx.err_hint(
            t.at("canary").key("steps"),
            "strategy \"canary\" needs `steps` in [rollout.canary]",
            "e.g. steps = [{ weight = 10, pause = \"10s\" }, { weight = 100 }]",
        );
    }
    if blue_green.preview_analysis
        && analysis.is_none()
        && !canary_t.as_ref().is_some_and(|c| c.has("analysis"))
    {
        cx.err_hint(
            t.at("blue_green").key("preview_analysis"),
            "`preview_analysis` needs an `analysis` in [rollout.canary]",
            "the analysis settings are shared by canary and blue-green",
        );
    }
    Some(Rollout {
        service: service?.to_string(),
        to: to?.to_string(),
        at: at?,
        strategy,
        steering,
        propagation_delay,
        rolling,
        blue_green,
        canary,
        analysis,
    })
}

/// A weight in percent (`5`, `0.5`, `"5%"`) as basis points.
fn weight_bp(v: &Item) -> Result<u32, String> {
    let pct = match v.as_value() {
        Some(Value::String(s)) => {
            let t = s.value().trim();
            let num = t.strip_suffix('%').ok_or_else(|| {
                format!("`{t}`: write a weight as a percentage, e.g. 5 or \"5%\"")
            })?;
            num.trim()
                .parse::<f64>()
                .map_err(|_| format!("`{t}` is not a percentage"))?
        }
        other => reader::number(other).ok_or("a weight is a number of percent, e.g. 5 or 0.5")?,
    };
    if !(pct > 0.0 && pct <= 100.0) {
        return Err(format!("{pct} % is outside (0, 100]"));
    }
    let bp = pct * 100.0;
    if (bp - bp.round()).abs() > 1e-6 {
        return Err(format!("{pct} % is finer than the resolution of 0.01 %"));
    }
    Ok(bp.round() as u32)
}

fn canary_steps(cx: &mut Cx<'_>, c: &Tbl<'_>) -> Option<Vec<CanaryStep>> {
    let steps = c.elements(cx, "steps", schema::CANARY_STEP, |i| {
        format!("rollout.canary.steps[{i}]")
    });
    if steps.is_empty() {
        if c.has("steps") {
            cx.err(c.at("steps"), "`steps` of [rollout.canary] is empty");
        }
        return None;
    }
    let mut out: Vec<CanaryStep> = Vec::new();
    let n = steps.len();
    for s in steps {
        let weight = match s.get("weight") {
            None => s.missing(cx, "weight"),
            Some(item) => weight_bp(item)
                .map_err(|e| {
                    cx.err_hint(s.at("weight"), format!("invalid `weight` in {}", s.what), e)
                })
                .ok(),
        };
        let pause = s.unit(cx, "pause", "duration", units::parse_duration);
        let Some(weight_bp) = weight else { continue };
        if let Some(prev) = out.last() {
            if weight_bp <= prev.weight_bp {
                cx.err_hint(
                    s.at("weight"),
                    format!(
                        "canary weights must increase: {} % follows {} %",
                        f64::from(weight_bp) / 100.0,
                        f64::from(prev.weight_bp) / 100.0
                    ),
                    "each step gives the canary a larger share of traffic",
                );
            }
        }
        out.push(CanaryStep { weight_bp, pause });
    }
    (out.len() == n).then_some(out)
}

fn analysis_params(
    cx: &mut Cx<'_>,
    a: &Tbl<'_>,
    judge: Judge,
    duration: Duration,
) -> Option<Analysis> {
    let interval = a
        .unit(cx, "interval", "duration", units::parse_duration)
        .unwrap_or(DEFAULT_ANALYSIS_INTERVAL);
    if interval.is_zero() {
        cx.err(
            a.at("interval"),
            "the analysis `interval` must be greater than zero",
        );
    } else if interval > duration {
        cx.err(
            a.at("interval"),
            format!(
                "the analysis `interval` ({}) is longer than the run ({})",
                show(interval),
                show(duration)
            ),
        );
    }
    let max_error_rate = ratio(cx, a, "max_error_rate");
    let max_p99 = a.unit(cx, "max_p99", "duration", units::parse_duration);
    if judge == Judge::Thresholds && !a.has("max_error_rate") && !a.has("max_p99") {
        cx.err_hint(
            a.path.clone(),
            "the canary `analysis` sets no limit",
            "give `max_error_rate`, `max_p99` or both, or `judge = \"mann-whitney\"`",
        );
    }
    let failure_limit = a.u32(cx, "failure_limit", 0).unwrap_or(0);
    Some(Analysis {
        interval,
        max_error_rate,
        max_p99,
        failure_limit,
        judge,
    })
}

fn events(
    cx: &mut Cx<'_>,
    top: &Tbl<'_>,
    names: &Names,
    links: &[[String; 2]],
    workloads: &[Workload],
    duration: Duration,
) -> Vec<Event> {
    let mut out = Vec::new();
    for t in top.elements(cx, "event", schema::EVENT, |i| {
        format!("[[event]] #{}", i + 1)
    }) {
        let what = format!("{} is", t.what);
        let at = start_time(cx, &t, duration, &what);
        let action_name = t.str(cx, "action");
        let action = if t.has("action") {
            t.choice(cx, "action", ACTIONS)
        } else {
            t.missing(cx, "action")
        };
        let ev_duration = t.unit(cx, "duration", "duration", units::parse_duration);
        if ev_duration.is_some_and(Duration::is_zero) {
            cx.err(t.at("duration"), "an event's `duration` must be greater than zero (leave it out for a permanent change)");
        }
        let Some(action) = action else { continue };
        let action_name = action_name.unwrap_or_default();
        let takes: &[&str] = match action {
            Action::LinkDown | Action::LinkUp => &["link"],
            Action::SetLink => &["link", "bandwidth", "delay", "jitter", "loss", "queue"],
            Action::KillReplica => &["service", "version", "count"],
            Action::SetRate => &["workload", "rate"],
        };
        let undoable = matches!(action, Action::LinkDown | Action::SetLink | Action::SetRate);
        for f in schema::EVENT
            .iter()
            .map(|f| f.name)
            .filter(|k| !["at", "action", "duration"].contains(k))
        {
            if t.has(f) && !takes.contains(&f) {
                cx.diags.push(
                    Diag::at(
                        t.at(f),
                        Point::Key,
                        format!("`{f}` does not apply to a `{action_name}` event"),
                    )
                    .with_hint(format!(
                        "{action_name} takes {}",
                        reader::quoted_list(takes.iter().copied())
                    )),
                );
            }
        }
        if t.has("duration") && !undoable {
            cx.err_hint(
                t.at("duration"),
                format!("a `{action_name}` event cannot have a `duration`"),
                "only link-down, set-link and set-rate are undone after a duration",
            );
        }
        let link_ref = |cx: &mut Cx<'_>| -> Option<LinkRef> {
            let [a, b] = if t.has("link") {
                pair(cx, &t, "link")?
            } else {
                t.missing(cx, "link")?
            };
            match links
                .iter()
                .find(|l| (l[0] == a && l[1] == b) || (l[0] == b && l[1] == a))
            {
                Some(l) => Some(l.clone()),
                None => {
                    let known: Vec<String> = links
                        .iter()
                        .map(|l| format!("[\"{}\", \"{}\"]", l[0], l[1]))
                        .collect();
                    let hint = if known.is_empty() {
                        "the scenario defines no [[link]]".to_string()
                    } else {
                        format!("links: {}", known.join(", "))
                    };
                    cx.err_hint(
                        t.at("link"),
                        format!("{} names no [[link]] between `{a}` and `{b}`", t.what),
                        hint,
                    );
                    None
                }
            }
        };
        let ev_action = match action {
            Action::LinkDown => link_ref(cx).map(|link| EventAction::LinkDown { link }),
            Action::LinkUp => link_ref(cx).map(|link| EventAction::LinkUp { link }),
            Action::SetLink => {
                let link = link_ref(cx);
                let patch = link_patch(cx, &t);
                if !LINK_PATCH_KEYS.iter().any(|k| t.has(k)) {
                    cx.err_hint(
                        t.path.clone(),
                        format!("{} (set-link) changes nothing", t.what),
                        format!(
                            "give at least one of {}",
                            reader::quoted_list(LINK_PATCH_KEYS.iter().copied())
                        ),
                    );
                }
                link.zip(patch)
                    .map(|(link, patch)| EventAction::SetLink { link, patch })
            }
            Action::KillReplica => {
                let service = t.req_str(cx, "service");
                let info = service.and_then(|s| {
                    let i = names.services.get(s);
                    if i.is_none() {
                        unknown_name(
                            cx,
                            t.at("service"),
                            s,
                            "service",
                            names.services.keys().map(String::as_str),
                        );
                    }
                    i
                });
                let version = t.str(cx, "version");
                if let (Some(v), Some((versions, _, _))) = (version, info) {
                    if !versions.iter().any(|x| x == v) {
                        unknown_name(
                            cx,
                            t.at("version"),
                            v,
                            "version",
                            versions.iter().map(String::as_str),
                        );
                    }
                }
                let count = t.u32(cx, "count", 1).unwrap_or(1);
                service.map(|s| EventAction::KillReplica {
                    service: s.to_string(),
                    version: version.map(str::to_string),
                    count,
                })
            }
            Action::SetRate => {
                let workload = t.req_str(cx, "workload");
                if let Some(w) = workload {
                    if !workloads.iter().any(|x| x.name == w) {
                        unknown_name(
                            cx,
                            t.at("workload"),
                            w,
                            "workload",
                            workloads.iter().map(|x| x.name.as_str()),
                        );
                    }
                }
                let rate = if t.has("rate") {
                    t.unit(cx, "rate", "request rate", units::parse_rate)
                } else {
                    t.missing(cx, "rate")
                };
                workload.zip(rate).map(|(w, rate)| EventAction::SetRate {
                    workload: w.to_string(),
                    rate,
                })
            }
        };
        if let (Some(at), Some(action)) = (at, ev_action) {
            out.push(Event {
                at,
                action,
                duration: ev_duration,
            });
        }
    }
    out.sort_by_key(|e| e.at);
    out
}

fn link_patch(cx: &mut Cx<'_>, t: &Tbl<'_>) -> Option<LinkPatch> {
    let before = cx.diags.len();
    let bandwidth = match t.get("bandwidth") {
        Some(item) if item.as_str() == Some("unshaped") => Some(None),
        Some(_) => t
            .unit(cx, "bandwidth", "bit rate", |s| {
                units::parse_bitrate(s).map_err(|e| {
                    UnitError(format!("{e}, or \"unshaped\" to remove the rate limit"))
                })
            })
            .map(Some::<BitRate>),
        None => None,
    };
    let patch = LinkPatch {
        bandwidth,
        delay: t.unit(cx, "delay", "duration", units::parse_duration),
        jitter: jitter(cx, t, "jitter"),
        loss: loss(cx, t, "loss"),
        queue: queue(cx, t, "queue"),
    };
    (cx.diags.len() == before).then_some(patch)
}
