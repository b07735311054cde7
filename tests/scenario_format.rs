//! The scenario file format end to end: the contract's example, files next to a scenario,
//! defaults, sweeps and overrides, and every semantic error with its line.

use std::path::{Path, PathBuf};

use sdnbed::model::dist::Dist;
use sdnbed::model::link::{JitterDist, Loss};
use sdnbed::model::time::Duration;
use sdnbed::scenario::units::{BitRate, CountOrShare, QueueLimit, RequestRate};
use sdnbed::scenario::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn parse(text: &str) -> Result<Experiment, ScenarioError> {
    parse_with(text, &LoadOptions::default())
}

fn parse_with(text: &str, opts: &LoadOptions) -> Result<Experiment, ScenarioError> {
    parse_experiment(text, "t.toml", Some(&fixtures()), opts)
}

fn scenario(text: &str) -> Scenario {
    match parse(text) {
        Ok(mut e) => e.runs.remove(0).scenario,
        Err(e) => panic!("expected a valid scenario, got:\n{e}"),
    }
}

fn diags(text: &str) -> Vec<Diagnostic> {
    match parse(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.diagnostics().to_vec(),
    }
}

/// 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not in text"));
    text[..at].matches('\n').count() + 1
}

/// Asserts a diagnostic whose message contains `msg`, on the line where `line_needle` is.
#[track_caller]
fn expect(text: &str, msg: &str, line_needle: &str) -> Diagnostic {
    let ds = diags(text);
    let line = line_of(text, line_needle);
    match ds.iter().find(|d| d.message.contains(msg)) {
        Some(d) => {
            assert_eq!(d.line, Some(line), "wrong line for {d:?}");
            assert_eq!(d.source_name, "t.toml");
            d.clone()
        }
        None => panic!("no diagnostic containing `{msg}` in {ds:#?}"),
    }
}

const BASE: &str = r#"[scenario]
name = "t"
duration = "30s"

[[node]]
name = "client"
kind = "client"

[[node]]
name = "gw"
kind = "gateway"

[service.web]
replicas = 4
gateway = "gw"

[service.web.versions.v1]
service_time = "const(1ms)"

[service.web.versions.v2]
service_time = "const(1ms)"

[[link]]
between = ["client", "gw"]
delay = "1ms"

[[workload]]
name = "users"
from = "client"
to = "web"
rate = "100/s"
"#;

fn base_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "`{from}` not in BASE");
    BASE.replacen(from, to, 1)
}

fn base_plus(extra: &str) -> String {
    format!("{BASE}\n{extra}")
}

const ROLLOUT: &str = "[rollout]\nservice = \"web\"\nto = \"v2\"\nat = \"10s\"\n";

#[test]
fn the_contract_example_parses_with_every_value() {
    let exp = load_experiment(&fixtures().join("full.toml"), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(exp.name, "quickstart");
    assert_eq!(exp.swept_keys, ["rollout.strategy", "workload.users.rate"]);
    assert_eq!(exp.repetitions, 5);
    assert_eq!(exp.runs.len(), 4 * 2 * 5);
    let s = &exp.runs[0].scenario;
    assert_eq!(
        (s.seed, s.duration, s.warmup, s.window),
        (7, Duration::from_secs(60), Duration::from_secs(5), ms(100))
    );
    assert_eq!(s.backend, BackendKind::Sim);
    assert_eq!(
        s.description,
        "Rolling update of a 4-replica service under steady load"
    );
    assert_eq!(
        s.nodes,
        [
            Node {
                name: "client".into(),
                kind: NodeKind::Client
            },
            Node {
                name: "gw".into(),
                kind: NodeKind::Gateway
            }
        ]
    );
    let web = s.service("web").expect("web");
    assert_eq!(
        (
            web.replicas,
            web.port,
            web.gateway.as_str(),
            web.version.as_str(),
            web.workers
        ),
        (4, 8080, "gw", "v1", 8)
    );
    assert_eq!(
        web.readiness,
        Readiness {
            initial_delay: ms(500),
            period: ms(250),
            failure_threshold: 3
        }
    );
    assert_eq!(
        web.termination,
        Termination {
            pre_stop: Duration::from_secs(1),
            grace: Duration::from_secs(10)
        }
    );
    assert_eq!(web.cpu, Some(0.5));
    let v2 = web.version("v2").expect("v2");
    assert_eq!(
        v2.service_time,
        Dist::LogNormal {
            median: Duration::from_micros(2500),
            p99: ms(12)
        }
    );
    assert_eq!((v2.startup, v2.error_rate), (Duration::from_secs(2), 0.002));
    let link = &s.links[0];
    assert_eq!(
        link.between,
        [LinkEnd::Node("client".into()), LinkEnd::Node("gw".into())]
    );
    assert_eq!(link.params.bandwidth, Some(BitRate(100_000_000)));
    assert_eq!(link.params.delay, ms(10));
    let jitter = link.params.jitter.expect("jitter");
    assert_eq!(
        (jitter.amount, jitter.distribution),
        (ms(1), JitterDist::Normal)
    );
    assert_eq!(link.params.loss, Loss::Bernoulli(0.001));
    assert_eq!(link.params.queue, Some(QueueLimit::Packets(200)));
    assert_eq!(link.emulator, EmulatorChoice::Auto);
    assert_eq!(
        s.policies,
        [Policy {
            name: "client-to-web".into(),
            from: vec!["client".into()],
            to: "web".into(),
            ports: vec![8080]
        }]
    );
    let w = s.workload("users").expect("users");
    assert_eq!(
        (w.from.as_str(), &w.to, w.arrivals),
        ("client", &Target::Service("web".into()), Arrivals::Poisson)
    );
    assert_eq!(
        (
            w.connections,
            w.max_requests_per_connection,
            w.request.0,
            w.response.0
        ),
        (32, 0, 200, 4096)
    );
    assert_eq!(w.timeout, Duration::from_secs(2));
    let r = s.rollout.as_ref().expect("rollout");
    assert_eq!(
        (r.service.as_str(), r.to.as_str(), r.at),
        ("web", "v2", Duration::from_secs(20))
    );
    assert_eq!(
        (r.steering, r.propagation_delay),
        (Steering::Sdn, Duration::ZERO)
    );
    assert_eq!(
        r.rolling,
        RollingParams {
            max_surge: CountOrShare::Share(0.25),
            max_unavailable: CountOrShare::Count(0),
            min_ready: Duration::ZERO
        }
    );
    assert_eq!(
        r.blue_green,
        BlueGreenParams {
            scale_down_delay: Duration::from_secs(30),
            preview_analysis: false
        }
    );
    let weights: Vec<u32> = r.canary.steps.iter().map(|s| s.weight_bp).collect();
    assert_eq!(weights, [500, 2500, 5000, 10000]);
    assert_eq!(r.canary.steps[0].pause, Some(Duration::from_secs(10)));
    assert_eq!(r.canary.steps[3].pause, None);
    assert_eq!(
        r.analysis,
        Some(Analysis {
            interval: Duration::from_secs(5),
            max_error_rate: Some(0.01),
            max_p99: Some(ms(50)),
            failure_limit: 2,
            judge: Judge::Thresholds
        })
    );
    assert_eq!(s.events.len(), 1);
    assert_eq!(
        (s.events[0].at, s.events[0].duration),
        (Duration::from_secs(40), Some(Duration::from_secs(2)))
    );
    assert!(
        matches!(&s.events[0].action, EventAction::LinkDown { link } if link == &["client".to_string(), "gw".to_string()])
    );
}

#[test]
fn sweeps_expand_in_order_with_seeds_and_resolved_text() {
    let exp = load_experiment(&fixtures().join("full.toml"), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    // First swept key outermost, repetitions innermost.
    let order: Vec<(String, String, u32)> = exp
        .runs
        .iter()
        .map(|r| {
            (
                r.params["rollout.strategy"].clone(),
                r.params["workload.users.rate"].clone(),
                r.repetition,
            )
        })
        .collect();
    assert_eq!(order[0], ("recreate".into(), "1000/s".into(), 0));
    assert_eq!(order[4], ("recreate".into(), "1000/s".into(), 4));
    assert_eq!(order[5], ("recreate".into(), "4000/s".into(), 0));
    assert_eq!(order[10], ("rolling".into(), "1000/s".into(), 0));
    assert_eq!(order[39], ("canary".into(), "4000/s".into(), 4));
    for (i, run) in exp.runs.iter().enumerate() {
        assert_eq!(run.index, i);
        assert_eq!(run.scenario.seed, 7 + u64::from(run.repetition));
        let strategy = run.scenario.rollout.as_ref().expect("rollout").strategy;
        assert_eq!(strategy.as_str(), run.params["rollout.strategy"]);
        let rate = run
            .scenario
            .workload("users")
            .expect("users")
            .rate
            .rate_at(Duration::ZERO);
        assert_eq!(
            rate,
            RequestRate(if run.params["workload.users.rate"] == "1000/s" {
                1000.0
            } else {
                4000.0
            })
        );
        assert!(
            !run.resolved_toml.contains("[sweep]"),
            "{}",
            run.resolved_toml
        );
        assert!(!run.resolved_toml.contains("repetitions"));
        // The resolved text is a complete, single run.
        let back = parse_experiment(
            &run.resolved_toml,
            "resolved.toml",
            Some(&fixtures()),
            &LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.runs.len(), 1);
        assert_eq!(
            format!("{:?}", back.runs[0].scenario),
            format!("{:?}", run.scenario)
        );
    }
    // Overridden values keep their line and comment; other lines are untouched.
    let run = &exp.runs[5];
    assert!(
        run.resolved_toml.contains("rate = \"4000/s\"\n"),
        "{}",
        run.resolved_toml
    );
    let original = std::fs::read_to_string(fixtures().join("full.toml")).expect("fixture");
    let line = line_of(&original, "strategy = \"canary\"");
    assert_eq!(
        run.resolved_toml.lines().nth(line - 1),
        Some("strategy = \"recreate\"            # recreate | rolling | blue-green | canary")
    );
}

#[test]
fn files_next_to_the_scenario_are_read() {
    let exp = load_experiment(&fixtures().join("files.toml"), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let s = &exp.runs[0].scenario;
    let v1 = s.service("web").expect("web").version("v1").expect("v1");
    match &v1.service_time {
        Dist::Empirical { source, samples } => {
            assert_eq!(source, "service-times.csv");
            assert_eq!(
                **samples,
                [
                    Duration::from_micros(1500),
                    ms(2),
                    Duration::from_micros(2500),
                    ms(10)
                ]
            );
        }
        other => panic!("not empirical: {other:?}"),
    }
    let link = &s.links[0];
    let trace = link.params.trace.as_ref().expect("trace");
    assert_eq!(trace.opportunities_ms, [1, 1, 3, 4]);
    assert_eq!(link.params.bandwidth, None);
    assert_eq!(
        link.params.jitter.map(|j| (j.amount, j.distribution)),
        Some((ms(2), JitterDist::Pareto))
    );
    assert_eq!(
        link.params.loss,
        Loss::GilbertElliott {
            p: 0.01,
            r: 0.3,
            h: 0.0,
            k: 1.0
        }
    );
    assert!(link.params.reorder && link.capture);
    assert_eq!(link.emulator, EmulatorChoice::Userspace);
    assert_eq!(
        s.links[1].between,
        [LinkEnd::Service("web".into()), LinkEnd::Node("gw".into())]
    );
    assert_eq!(s.links[1].params.queue, Some(QueueLimit::Bytes(65536)));
    let w = &s.workloads[0];
    assert_eq!(
        w.rate.steps,
        [
            (Duration::ZERO, RequestRate(500.0)),
            (Duration::from_secs(5), RequestRate(2000.0))
        ]
    );
    assert_eq!(w.arrivals, Arrivals::Constant);
    // The only gateway is the default for `gateway`; the first version the default `version`.
    assert_eq!(
        (
            s.services[0].gateway.as_str(),
            s.services[0].version.as_str()
        ),
        ("gw", "v1")
    );
    // Events are sorted by time.
    let kinds: Vec<&str> = s.events.iter().map(|e| e.action.name()).collect();
    assert_eq!(kinds, ["set-link", "kill-replica", "set-rate"]);
    match &s.events[0].action {
        EventAction::SetLink { link, patch } => {
            assert_eq!(link, &["client".to_string(), "gw".to_string()]);
            assert_eq!(patch.bandwidth, Some(None));
            assert_eq!(patch.delay, Some(ms(50)));
            assert_eq!(patch.loss, Some(Loss::Bernoulli(0.05)));
            assert!(patch.jitter.is_none() && patch.queue.is_none());
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&s.events[1].action, EventAction::KillReplica { service, version: Some(v), count: 1 } if service == "web" && v == "v1")
    );
    assert!(
        matches!(&s.events[2].action, EventAction::SetRate { workload, rate } if workload == "users" && *rate == RequestRate(100.0))
    );
    assert_eq!(s.events[2].duration, Some(Duration::from_secs(1)));
}

#[test]
fn a_minimal_file_gets_the_documented_defaults() {
    let exp = parse("[scenario]\nname = \"m\"\n\n[[node]]\nname = \"a\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (exp.runs.len(), exp.repetitions, exp.swept_keys.len()),
        (1, 1, 0)
    );
    let s = &exp.runs[0].scenario;
    assert_eq!(
        (s.name.as_str(), s.seed, s.duration, s.warmup, s.window),
        ("m", 0, Duration::from_secs(60), Duration::ZERO, ms(100))
    );
    assert_eq!(s.backend, BackendKind::Sim);
    assert_eq!(
        s.nodes,
        [Node {
            name: "a".into(),
            kind: NodeKind::Host
        }]
    );
    assert!(
        s.services.is_empty()
            && s.links.is_empty()
            && s.workloads.is_empty()
            && s.rollout.is_none()
    );
    assert_eq!(
        exp.runs[0].resolved_toml,
        "[scenario]\nname = \"m\"\n\n[[node]]\nname = \"a\"\n"
    );
}

#[test]
fn defaults_of_services_workloads_and_rollouts() {
    let s = scenario(&base_plus(ROLLOUT));
    let web = s.service("web").expect("web");
    assert_eq!(
        (web.port, web.workers, web.version.as_str()),
        (8080, 8, "v1")
    );
    assert_eq!(
        web.readiness,
        Readiness {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            failure_threshold: 3
        }
    );
    assert_eq!(
        web.termination,
        Termination {
            pre_stop: Duration::ZERO,
            grace: Duration::from_secs(30)
        }
    );
    let v1 = web.version("v1").expect("v1");
    assert_eq!(
        (v1.startup, v1.error_rate, v1.image.as_deref()),
        (Duration::ZERO, 0.0, None)
    );
    let w = &s.workloads[0];
    assert_eq!(
        (w.arrivals, w.connections, w.max_requests_per_connection),
        (Arrivals::Poisson, 32, 0)
    );
    assert_eq!(
        (w.request.0, w.response.0, w.timeout),
        (100, 1024, Duration::from_secs(5))
    );
    let link = &s.links[0].params;
    assert_eq!(
        (
            link.bandwidth,
            link.jitter,
            link.loss,
            link.queue,
            link.reorder
        ),
        (None, None, Loss::None, None, false)
    );
    let r = s.rollout.expect("rollout");
    assert_eq!(
        (r.strategy, r.steering, r.propagation_delay),
        (StrategyKind::Rolling, Steering::Sdn, Duration::ZERO)
    );
    assert_eq!(r.rolling.max_surge, CountOrShare::Share(0.25));
    assert_eq!(r.rolling.max_unavailable, CountOrShare::Share(0.25));
    assert_eq!(r.blue_green.scale_down_delay, Duration::from_secs(30));
    assert!(r.canary.steps.is_empty() && r.analysis.is_none());
}

#[test]
fn canary_weights_accept_percent_numbers_fractions_and_strings() {
    let text = base_plus(&format!(
        "{ROLLOUT}strategy = \"canary\"\n[rollout.canary]\nsteps = [{{ weight = 0.5 }}, {{ weight = \"5%\" }}, {{ weight = 12.25, pause = \"1s\" }}, {{ weight = 100 }}]\n"
    ));
    let s = scenario(&text);
    let w: Vec<u32> = s
        .rollout
        .expect("rollout")
        .canary
        .steps
        .iter()
        .map(|s| s.weight_bp)
        .collect();
    assert_eq!(w, [50, 500, 1225, 10000]);
}

#[test]
fn unknown_keys_render_like_rustc_with_a_suggestion() {
    let text = base_with("delay = \"1ms\"", "bandwith = \"100Mbit\"");
    let err = parse(&text).expect_err("unknown key");
    let line = line_of(&text, "bandwith");
    assert_eq!(
        err.to_string(),
        format!(
            "error: unknown key `bandwith` in [[link]] #1\n  --> t.toml:{line}:1\n   |\n{line} | bandwith = \"100Mbit\"\n   | ^^^^^^^^\n   = hint: did you mean `bandwidth`?\n"
        )
    );
    let d = &err.diagnostics()[0];
    assert_eq!(
        (d.key_path.as_deref(), d.column),
        (Some("link[0].bandwith"), Some(1))
    );
    expect(
        &base_with("[scenario]\n", "[scenario]\ncolour = 1\n"),
        "unknown key `colour` in [scenario]",
        "colour",
    );
    expect(
        &base_plus("[rollout.canary]\nsteps = [{ wieght = 5 }]\n"),
        "unknown key `wieght`",
        "wieght",
    );
    expect(
        &base_plus("[extra]\n"),
        "unknown key `extra` in the scenario file",
        "[extra]",
    );
}

#[test]
fn unknown_names_are_reported_where_they_are_used() {
    let d = expect(
        &base_with("[\"client\", \"gw\"]", "[\"clinet\", \"gw\"]"),
        "unknown node or service `clinet`",
        "[\"clinet\"",
    );
    assert_eq!(d.key_path.as_deref(), Some("link[0].between[0]"));
    assert_eq!(d.hint.as_deref(), Some("did you mean `client`?"));
    assert_eq!(d.column, Some(12));
    expect(
        &base_plus("[[policy]]\nname = \"p\"\nfrom = [\"client\"]\nto = \"api\"\n"),
        "unknown node or service `api`",
        "to = \"api\"",
    );
    expect(
        &base_plus("[[policy]]\nname = \"p\"\nfrom = [\"nobody\"]\nto = \"web\"\n"),
        "unknown node or service `nobody`",
        "[\"nobody\"]",
    );
    expect(
        &base_with("from = \"client\"", "from = \"laptop\""),
        "unknown node `laptop`",
        "from = \"laptop\"",
    );
    expect(
        &base_with("to = \"web\"", "to = \"wbe\""),
        "unknown service or node `wbe`",
        "to = \"wbe\"",
    );
    expect(
        &base_plus("[rollout]\nservice = \"api\"\nto = \"v2\"\nat = \"1s\"\n"),
        "unknown service `api`",
        "service = \"api\"",
    );
    expect(
        &base_plus("[[event]]\nat = \"1s\"\naction = \"kill-replica\"\nservice = \"db\"\n"),
        "unknown service `db`",
        "\"db\"",
    );
    expect(
        &base_plus(
            "[[event]]\nat = \"1s\"\naction = \"set-rate\"\nworkload = \"bots\"\nrate = \"1/s\"\n",
        ),
        "unknown workload `bots`",
        "\"bots\"",
    );
    expect(
        &base_plus(
            "[[event]]\nat = \"1s\"\naction = \"link-down\"\nlink = [\"client\", \"web\"]\n",
        ),
        "names no [[link]] between `client` and `web`",
        "link = [\"client\", \"web\"]",
    );
    expect(&base_plus("[[event]]\nat = \"1s\"\naction = \"kill-replica\"\nservice = \"web\"\nversion = \"v3\"\n"), "unknown version `v3`", "\"v3\"");
}

#[test]
fn names_are_unique_well_formed_and_short() {
    expect(
        &base_with(
            "name = \"gw\"",
            "name = \"web\"\nkind = \"gateway\"\n[[node]]\nname = \"gw\"",
        ),
        "the name `web` is used twice",
        "[service.web]",
    );
    expect(
        &base_with("name = \"client\"", "name = \"Client_1\""),
        "`Client_1` is not a valid node name",
        "Client_1",
    );
    let d = expect(
        &base_with("name = \"client\"", "name = \"client-of-the-lab\""),
        "at most 15 are allowed",
        "client-of-the-lab",
    );
    assert!(
        d.hint
            .as_deref()
            .is_some_and(|h| h.contains("network interface")),
        "{d:?}"
    );
    expect(
        &base_with("name = \"t\"", "name = \"T t\""),
        "`T t` is not a valid scenario name",
        "T t",
    );
    expect(
        &base_with("[service.web.versions.v2]", "[service.web.versions.V2]"),
        "`V2` is not a valid version name",
        "[service.web.versions.V2]",
    );
}

#[test]
fn services_check_their_gateway_version_and_port() {
    expect(
        &base_with("gateway = \"gw\"", "gateway = \"client\""),
        "not a node of kind \"gateway\"",
        "gateway = \"client\"",
    );
    expect(
        &base_with("replicas = 4", "replicas = 4\nversion = \"v9\""),
        "unknown version `v9`",
        "version = \"v9\"",
    );
    expect(
        &base_with("replicas = 4", "replicas = 4\nport = 0"),
        "must be between 1 and 65535, not 0",
        "port = 0",
    );
    expect(
        &base_with("replicas = 4", "replicas = 4\nport = 70000"),
        "must be between 1 and 65535, not 70000",
        "port = 70000",
    );
    expect(
        &base_with("replicas = 4", "replicas = \"four\""),
        "`replicas` in [service.web] must be an integer, not a string",
        "replicas",
    );
    expect(
        &base_with(
            "service_time = \"const(1ms)\"",
            "service_time = \"lognormal(median=2ms)\"",
        ),
        "invalid distribution",
        "lognormal",
    );
    let d = expect(
        &base_with("delay = \"1ms\"", "delay = \"1 parsec\""),
        "invalid duration for `delay` in [[link]] #1",
        "1 parsec",
    );
    assert_eq!(
        d.hint.as_deref(),
        Some("`1 parsec` is not a duration; write e.g. \"250us\", \"10ms\", \"1.5s\" or \"2m\"")
    );
    let no_gateway =
        base_with("kind = \"gateway\"", "kind = \"host\"").replace("gateway = \"gw\"\n", "");
    expect(
        &no_gateway,
        "missing required key `gateway` in [service.web]",
        "[service.web]",
    );
}

#[test]
fn rollouts_are_checked() {
    expect(
        &base_plus("[rollout]\nservice = \"web\"\nto = \"v3\"\nat = \"1s\"\n"),
        "unknown version `v3`",
        "to = \"v3\"",
    );
    expect(
        &base_plus("[rollout]\nservice = \"web\"\nto = \"v1\"\nat = \"1s\"\n"),
        "`to` is `v1`, the version already running",
        "to = \"v1\"",
    );
    expect(
        &base_plus("[rollout]\nservice = \"web\"\nto = \"v2\"\nat = \"30s\"\n"),
        "the rollout starts at 30s, not before the end of the run (30s)",
        "at = \"30s\"",
    );
    expect(
        &base_plus(&format!("{ROLLOUT}strategy = \"canary\"\n")),
        "strategy \"canary\" needs `steps`",
        "[rollout]",
    );
    let steps = |s: &str| {
        base_plus(&format!(
            "{ROLLOUT}strategy = \"canary\"\n[rollout.canary]\nsteps = [\n{s}]\n"
        ))
    };
    expect(
        &steps("{ weight = 50 },\n{ weight = 25 },\n"),
        "canary weights must increase: 25 % follows 50 %",
        "{ weight = 25 }",
    );
    expect(
        &steps("{ weight = 50 },\n{ weight = 50, pause = \"1s\" },\n"),
        "canary weights must increase",
        "pause",
    );
    expect(
        &steps("{ weight = 150 },\n"),
        "invalid `weight`",
        "{ weight = 150 }",
    );
    expect(
        &steps("{ weight = 0 },\n"),
        "invalid `weight`",
        "{ weight = 0 }",
    );
    let d = expect(
        &steps("{ weight = 0.005 },\n"),
        "invalid `weight`",
        "{ weight = 0.005 }",
    );
    assert!(
        d.hint
            .as_deref()
            .is_some_and(|h| h.contains("resolution of 0.01 %")),
        "{d:?}"
    );
    let d = expect(
        &steps("{ weight = 5 },\n{ weight = 4 },\n"),
        "4 % follows 5 %",
        "{ weight = 4 }",
    );
    assert_eq!(
        (d.key_path.as_deref(), d.column),
        (Some("rollout.canary.steps[1].weight"), Some(12))
    );
    expect(
        &base_plus(&format!(
            "{ROLLOUT}[rollout.rolling]\nmax_surge = 0\nmax_unavailable = \"0%\"\n"
        )),
        "`max_surge` (0) and `max_unavailable` (0%) are both zero",
        "[rollout.rolling]",
    );
    // 10 % of 4 replicas rounds down to zero unavailable (Kubernetes rounding).
    expect(
        &base_plus(&format!(
            "{ROLLOUT}[rollout.rolling]\nmax_surge = 0\nmax_unavailable = \"10%\"\n"
        )),
        "are both zero for 4 replicas",
        "[rollout.rolling]",
    );
    expect(
        &base_plus(&format!("{ROLLOUT}strategy = \"canary\"\n[rollout.canary]\nsteps = [{{ weight = 100 }}]\nanalysis = {{ interval = \"0s\", max_p99 = \"5ms\" }}\n")),
        "the analysis `interval` must be greater than zero",
        "interval = \"0s\"",
    );
    expect(
        &base_plus(&format!(
            "{ROLLOUT}[rollout.blue_green]\npreview_analysis = true\n"
        )),
        "`preview_analysis` needs an `analysis`",
        "preview_analysis",
    );
}

#[test]
fn times_lie_inside_the_run() {
    expect(
        &base_with("duration = \"30s\"", "duration = \"30s\"\nwarmup = \"30s\""),
        "`warmup` (30s) must be shorter than `duration` (30s)",
        "warmup",
    );
    expect(
        &base_with("duration = \"30s\"", "duration = \"30s\"\nwindow = \"0s\""),
        "`window` must be greater than zero",
        "window",
    );
    expect(
        &base_with("duration = \"30s\"", "duration = \"30s\"\nwindow = \"31s\""),
        "`window` (31s) must not exceed `duration` (30s)",
        "window",
    );
    expect(
        &base_plus(
            "[[event]]\nat = \"45s\"\naction = \"link-down\"\nlink = [\"gw\", \"client\"]\n",
        ),
        "[[event]] #1 is at 45s, not before the end of the run",
        "at = \"45s\"",
    );
}

#[test]
fn links_and_workloads_are_checked() {
    expect(
        &base_with("delay = \"1ms\"", "queue = \"1000B\""),
        "holds less than one packet",
        "queue",
    );
    expect(
        &base_with("delay = \"1ms\"", "queue = \"0 packets\""),
        "holds less than one packet",
        "queue",
    );
    let d = expect(
        &base_with("rate = \"100/s\"", "rate = \"0/s\""),
        "invalid request rate for `rate`",
        "rate = \"0/s\"",
    );
    assert!(
        d.hint
            .as_deref()
            .is_some_and(|h| h.contains("greater than zero")),
        "{d:?}"
    );
    expect(
        &base_with(
            "rate = \"100/s\"",
            "schedule = [[\"0s\", \"1/s\"], [\"9s\", \"2/s\"], [\"5s\", \"3/s\"]]",
        ),
        "increasing order",
        "schedule",
    );
    expect(
        &base_with("rate = \"100/s\"", "schedule = [[\"1s\", \"1/s\"]]"),
        "must start at \"0s\"",
        "schedule",
    );
    expect(
        &base_with(
            "rate = \"100/s\"",
            "rate = \"100/s\"\nschedule = [[\"0s\", \"1/s\"]]",
        ),
        "sets both `rate` and `schedule`",
        "schedule",
    );
    expect(
        &base_with("from = \"client\"", "from = \"gw\""),
        "`from` of [[workload]] #1 is `gw`, a gateway",
        "from = \"gw\"",
    );
    expect(
        &base_with("delay = \"1ms\"", "loss = \"150%\""),
        "invalid ratio for `loss`",
        "loss",
    );
    expect(&base_plus("[[event]]\nat = \"1s\"\naction = \"link-down\"\nlink = [\"gw\", \"client\"]\nrate = \"1/s\"\n"), "`rate` does not apply to a `link-down` event", "rate = \"1/s\"");
    expect(
        &base_plus("[[event]]\nat = \"1s\"\naction = \"set-link\"\nlink = [\"gw\", \"client\"]\n"),
        "(set-link) changes nothing",
        "[[event]]",
    );
    expect(&base_plus("[[event]]\nat = \"1s\"\naction = \"kill-replica\"\nservice = \"web\"\nduration = \"1s\"\n"), "cannot have a `duration`", "duration = \"1s\"\n");
    expect(
        &base_plus("[[event]]\nat = \"1s\"\naction = \"reboot\"\n"),
        "invalid `action` `reboot`",
        "reboot",
    );
}

#[test]
fn all_semantic_errors_are_reported_at_once_in_line_order() {
    let text = base_with("gateway = \"gw\"", "gateway = \"client\"")
        .replace("from = \"client\"", "from = \"gw\"")
        .replace("delay = \"1ms\"", "queue = \"1B\"");
    let ds = diags(&text);
    let lines: Vec<usize> = ds.iter().filter_map(|d| d.line).collect();
    assert_eq!(
        lines,
        [
            line_of(&text, "gateway = \"client\""),
            line_of(&text, "queue = \"1B\""),
            line_of(&text, "from = \"gw\"")
        ]
    );
    let rendered = parse(&text).expect_err("errors").to_string();
    assert!(
        rendered.ends_with("error: the scenario has 3 errors\n"),
        "{rendered}"
    );
}

#[test]
fn syntax_errors_have_a_line() {
    let text = base_with("replicas = 4", "replicas = = 4");
    let ds = diags(&text);
    assert_eq!(ds.len(), 1);
    assert!(ds[0].message.starts_with("invalid TOML"), "{ds:?}");
    assert_eq!(ds[0].line, Some(line_of(&text, "replicas = = 4")));
}

#[test]
fn sweeps_are_checked() {
    expect(
        &base_plus("[sweep]\nrepetitions = 0\n"),
        "`repetitions` in [sweep] must be a whole number ≥ 1",
        "repetitions = 0",
    );
    expect(
        &base_plus("[sweep]\n\"scenario.duration\" = []\n"),
        "the sweep list of `scenario.duration` is empty",
        "\"scenario.duration\"",
    );
    let d = expect(
        &base_plus("[sweep]\n\"rollout.stratgy\" = [\"rolling\"]\n"),
        "cannot sweep `rollout.stratgy`",
        "\"rollout.stratgy\"",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `rollout.strategy`?"));
    expect(
        &base_plus("[sweep]\n\"workload.bots.rate\" = [\"1/s\"]\n"),
        "the file has no [[workload]] `bots`",
        "workload.bots",
    );
    expect(
        &base_plus("[sweep]\n\"link.1.delay\" = [\"1ms\"]\n"),
        "the file has no [[link]] `1`",
        "link.1",
    );
    // A problem that only some runs have names the run; one in a swept value is shown on its
    // sweep entry.
    let text = base_plus(&format!(
        "{ROLLOUT}[sweep]\n\"rollout.strategy\" = [\"rolling\", \"canary\"]\n"
    ));
    let d = expect(&text, "strategy \"canary\" needs `steps` in [rollout.canary] (in the run with rollout.strategy = canary)", "[rollout]");
    assert_eq!(d.key_path.as_deref(), Some("rollout.canary.steps"));
    let text = base_plus(&format!(
        "{ROLLOUT}[sweep]\n\"rollout.strategy\" = [\"rolling\", \"canery\"]\n"
    ));
    let d = expect(
        &text,
        "invalid `strategy` `canery` in [rollout] (in the run with rollout.strategy = canery)",
        "\"rollout.strategy\"",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `canary`?"));
    // Unquoted dotted keys are the same as quoted ones.
    let exp = parse(&base_plus(
        "[sweep]\nrepetitions = 2\nlink.client-gw.delay = [\"1ms\", \"5ms\", \"9ms\"]\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(exp.swept_keys, ["link.client-gw.delay"]);
    let delays: Vec<u64> = exp
        .runs
        .iter()
        .map(|r| r.scenario.links[0].params.delay.as_nanos() / 1_000_000)
        .collect();
    assert_eq!(delays, [1, 1, 5, 5, 9, 9]);
}

#[test]
fn sweeping_whole_arrays_and_nested_keys() {
    let text = base_plus(&format!(
        "{ROLLOUT}strategy = \"canary\"\n[rollout.canary]\nsteps = [{{ weight = 100 }}]\n\n[sweep]\n\"rollout.canary.steps\" = [[{{ weight = 10 }}, {{ weight = 100 }}], [{{ weight = 100 }}]]\n\"service.web.versions.v2.error_rate\" = [0.0, \"1%\"]\n"
    ));
    let exp = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(exp.runs.len(), 4);
    let r = &exp.runs[0];
    assert_eq!(
        r.params["rollout.canary.steps"],
        "[{ weight = 10 }, { weight = 100 }]"
    );
    assert_eq!(r.params["service.web.versions.v2.error_rate"], "0.0");
    assert_eq!(
        r.scenario
            .rollout
            .as_ref()
            .expect("rollout")
            .canary
            .steps
            .len(),
        2
    );
    assert_eq!(
        exp.runs[1]
            .scenario
            .service("web")
            .expect("web")
            .version("v2")
            .expect("v2")
            .error_rate,
        0.01
    );
    assert_eq!(
        exp.runs[3]
            .scenario
            .rollout
            .as_ref()
            .expect("rollout")
            .canary
            .steps
            .len(),
        1
    );
}

#[test]
fn command_line_overrides() {
    let opts = LoadOptions {
        overrides: vec![
            ("rollout.strategy".into(), "canary".into()),
            (
                "rollout.canary.steps".into(),
                "[{ weight = 20 }, { weight = 100 }]".into(),
            ),
            ("service.web.replicas".into(), "6".into()),
            ("link.gw-client.delay".into(), "\"7ms\"".into()),
        ],
        seed: Some(42),
        backend: Some(BackendKind::Netns),
    };
    let text = base_plus(&format!(
        "{ROLLOUT}[sweep]\nrepetitions = 2\n\"rollout.strategy\" = [\"rolling\", \"recreate\"]\n"
    ));
    let exp = parse_with(&text, &opts).unwrap_or_else(|e| panic!("{e}"));
    // --set pins the swept key to one value.
    assert_eq!(exp.runs.len(), 2);
    let s = &exp.runs[1].scenario;
    assert_eq!((s.seed, s.backend), (43, BackendKind::Netns));
    assert_eq!(exp.runs[1].params["rollout.strategy"], "canary");
    assert_eq!(
        s.rollout.as_ref().expect("rollout").strategy,
        StrategyKind::Canary
    );
    assert_eq!(s.service("web").expect("web").replicas, 6);
    assert_eq!(s.links[0].params.delay, ms(7));
    for run in &exp.runs {
        let back = parse(&run.resolved_toml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            format!("{:?}", back.runs[0].scenario),
            format!("{:?}", run.scenario)
        );
    }
    // The repetitions of a sweep can be overridden too.
    let fewer = LoadOptions {
        overrides: vec![("sweep.repetitions".into(), "1".into())],
        ..LoadOptions::default()
    };
    assert_eq!(parse_with(&text, &fewer).unwrap().runs.len(), 2);
    let zero = LoadOptions {
        overrides: vec![("sweep.repetitions".into(), "0".into())],
        ..LoadOptions::default()
    };
    assert!(parse_with(&text, &zero).is_err());
    // Bad --set keys and values have no line but name the flag.
    let bad = LoadOptions {
        overrides: vec![("service.web.replicaz".into(), "2".into())],
        ..LoadOptions::default()
    };
    let e = parse_with(BASE, &bad).expect_err("unknown key");
    let d = &e.diagnostics()[0];
    assert_eq!((d.line, d.message.as_str()), (None, "--set service.web.replicaz=2: `service.web.replicaz`: unknown key `replicaz` in `service.web`"));
    assert_eq!(
        d.hint.as_deref(),
        Some("did you mean `service.web.replicas`?")
    );
    let bad = LoadOptions {
        overrides: vec![("service.web.replicas".into(), "0".into())],
        ..LoadOptions::default()
    };
    let d = parse_with(BASE, &bad)
        .expect_err("zero replicas")
        .diagnostics()[0]
        .clone();
    assert_eq!(d.line, None);
    assert!(
        d.message
            .ends_with("(value from `--set service.web.replicas=0`)"),
        "{d:?}"
    );
    assert_eq!(d.key_path.as_deref(), Some("service.web.replicas"));
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let e = load_experiment(Path::new("/nonexistent/x.toml"), &LoadOptions::default())
        .expect_err("missing");
    assert!(
        e.to_string()
            .starts_with("error: cannot read scenario file /nonexistent/x.toml"),
        "{e}"
    );
    let e = parse(&base_with(
        "service_time = \"const(1ms)\"",
        "service_time = \"empirical(nothere.csv)\"",
    ))
    .expect_err("missing csv");
    assert!(
        e.diagnostics()[0]
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("cannot read")),
        "{e}"
    );
}

#[test]
fn truncated_and_garbled_files_never_panic() {
    let full = std::fs::read_to_string(fixtures().join("full.toml")).expect("fixture");
    let files = std::fs::read_to_string(fixtures().join("files.toml")).expect("fixture");
    let mut variants: Vec<String> = Vec::new();
    for text in [&full, &files] {
        let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).step_by(5).collect();
        variants.extend(bounds.iter().map(|&i| text[..i].to_string()));
        let lines: Vec<&str> = text.lines().collect();
        for i in 0..lines.len() {
            // Drop one line; duplicate one line.
            let mut l = lines.clone();
            l.remove(i);
            variants.push(l.join("\n"));
            let mut l = lines.clone();
            l.insert(i, lines[i]);
            variants.push(l.join("\n"));
        }
        // Swap every pair of neighbouring characters at a few strides.
        for stride in [7, 13, 29] {
            let mut chars: Vec<char> = text.chars().collect();
            for i in (0..chars.len().saturating_sub(1)).step_by(stride) {
                chars.swap(i, i + 1);
            }
            variants.push(chars.into_iter().collect());
        }
        // Replace every value on a line with something of another type.
        for (i, line) in lines.iter().enumerate() {
            if let Some((k, _)) = line.split_once(" = ") {
                for v in [
                    "-1",
                    "\"\"",
                    "[]",
                    "{}",
                    "1e400",
                    "9999999999999999999",
                    "\"µs\"",
                ] {
                    let mut l = lines.clone();
                    let replaced = format!("{k} = {v}");
                    l[i] = &replaced;
                    variants.push(l.join("\n"));
                }
            }
        }
    }
    // Every fourth variant also gets a seed that overflows with the repetitions.
    let opts = LoadOptions {
        overrides: vec![("scenario.seed".into(), "9223372036854775807".into())],
        ..LoadOptions::default()
    };
    let mut errors = 0;
    for (n, v) in variants.iter().enumerate() {
        let o = if n % 4 == 0 {
            &opts
        } else {
            &LoadOptions::default()
        };
        if let Err(e) = parse_with(v, o) {
            errors += 1;
            // Rendering must not panic either, and every error has a message.
            assert!(e.to_string().starts_with("error: "));
        }
    }
    assert!(
        2 * errors > variants.len(),
        "most variants are invalid: {errors} of {}",
        variants.len()
    );
}
