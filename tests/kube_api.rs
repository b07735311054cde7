//! Tier 2 of the kube backend's tests: its API conversation (kube-rs over real HTTP) against a
//! Kubernetes API emulator, PyPI `kmock`'s KubernetesEmulator, started by the test
//! (`tests/kube/emulator.py`). The harness answers server-side apply, which kmock lacks, plays
//! the Deployment and EndpointSlice controllers (pods appear on scale-up, turn Ready after
//! 0.3 s), and ends every watch after one event, as API servers end watches.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use sdnbed::backend::kube::api::Cluster;
use sdnbed::backend::kube::manifests::{render, RenderOptions, DEFAULT_TC_IMAGE};

/// The emulator process; stopped (stdin closed, then killed) on drop, also when a test fails.
struct Emulator {
    child: Child,
}

impl Emulator {
    fn start(dir: &Path) -> Emulator {
        let mut child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kube/emulator.py"))
            .arg(dir.join("kubeconfig"))
            .arg(dir.join("requests.jsonl"))
            .args(["--ready-after", "0.3", "--end-watches-after", "1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs (test.sh installs kmock)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("emulator output");
        assert!(line.starts_with("ready http://127.0.0.1:"), "{line:?}");
        Emulator { child }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn requests(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("requests.jsonl"))
        .expect("request log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

/// `METHOD path` of each write, in order.
fn writes(reqs: &[Value]) -> Vec<String> {
    reqs.iter()
        .filter(|r| r["method"] != "GET")
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap()
            )
        })
        .collect()
}

/// KUBECONFIG is one per process: the tests take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The quickstart's objects under run id `run`, applied.
fn applied(run: &str) -> (Cluster, Vec<Value>) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml"),
    )
    .expect("quickstart");
    let s = sdnbed::scenario::parse_experiment(
        &text,
        "quickstart.toml",
        None,
        &sdnbed::scenario::LoadOptions::default(),
    )
    .expect("valid")
    .runs
    .remove(0)
    .scenario;
    let o = RenderOptions {
        run_id: run.into(),
        image: RenderOptions::image_for(None),
        tc_image: DEFAULT_TC_IMAGE.into(),
    };
    let objs = render(&s, &o).expect("renders");
    let c = Cluster::connect(None, run).expect("connects with the kubeconfig");
    c.apply(&objs).expect("server-side apply");
    (c, objs)
}

#[test]
fn canary_weights_then_abort_write_the_gateway_annotation_and_scale_back_in_order() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let _emu = Emulator::start(dir.path());
    std::env::set_var("KUBECONFIG", dir.path().join("kubeconfig"));
    let (c, objs) = applied("kc-1");
    c.scale("web-v2", 1).expect("canary replica");
    assert_eq!(
        c.wait_ready("web", "v2", 1, Duration::from_secs(10))
            .expect("watch"),
        1
    );
    let w = |pairs: &[(&str, u32)]| {
        pairs
            .iter()
            .map(|(v, bp)| (v.to_string(), *bp))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    c.set_weights("gw", "web", &w(&[("v1", 9500), ("v2", 500)]))
        .expect("5 %");
    // The analysis fails: all weight back to v1, then the canary goes.
    c.set_weights("gw", "web", &w(&[("v1", 10000), ("v2", 0)]))
        .expect("abort");
    c.scale("web-v2", 0).expect("canary gone");
    c.delete_run().expect("teardown");

    let reqs = requests(dir.path());
    let later: Vec<&Value> = reqs
        .iter()
        .filter(|r| r["method"] != "GET")
        .skip(objs.len())
        .collect();
    let deps = "/apis/apps/v1/namespaces/sdnbed-kc-1/deployments";
    let seen: Vec<(String, Value)> = later
        .iter()
        .map(|r| {
            (
                format!(
                    "{} {}",
                    r["method"].as_str().unwrap(),
                    r["path"].as_str().unwrap()
                ),
                r["body"].clone(),
            )
        })
        .collect();
    let ann = |v: &str| serde_json::json!({"metadata": {"annotations": {"sdnbed.weights/web": v}}});
    assert_eq!(
        seen,
        vec![
            (
                format!("PATCH {deps}/web-v2"),
                serde_json::json!({"spec": {"replicas": 1}})
            ),
            (format!("PATCH {deps}/gw"), ann("v1=9500,v2=500")),
            (format!("PATCH {deps}/gw"), ann("v1=10000,v2=0")),
            (
                format!("PATCH {deps}/web-v2"),
                serde_json::json!({"spec": {"replicas": 0}})
            ),
            (
                "DELETE /api/v1/namespaces/sdnbed-kc-1".to_string(),
                later[4]["body"].clone()
            ),
        ]
    );
}

#[test]
fn apply_scale_watch_through_restarts_and_delete_the_namespace() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let _emu = Emulator::start(dir.path());
    std::env::set_var("KUBECONFIG", dir.path().join("kubeconfig"));

    let (c, objs) = applied("kt-1");
    // The starting version's 4 pods become ready; each watch ends after one event, so this
    // needs at least one restart of the watch.
    assert_eq!(
        c.wait_ready("web", "v1", 4, Duration::from_secs(10))
            .expect("watch"),
        4
    );
    // One step of a rolling update: surge one v2, wait for it, then one v1 fewer.
    c.scale("web-v2", 1).expect("scale up");
    assert_eq!(
        c.wait_ready("web", "v2", 1, Duration::from_secs(10))
            .expect("watch"),
        1
    );
    c.scale("web-v1", 3).expect("scale down");
    assert_eq!(c.runs().expect("runs"), vec!["kt-1".to_string()]);
    c.delete_run().expect("teardown");
    c.delete_run().expect("teardown is idempotent");
    assert!(c.runs().expect("runs").is_empty());

    let reqs = requests(dir.path());
    let w = writes(&reqs);
    let ns = "/api/v1/namespaces/sdnbed-kt-1";
    let deps = "/apis/apps/v1/namespaces/sdnbed-kt-1/deployments";
    let mut expected: Vec<String> = vec![format!("PATCH {ns}")];
    expected.extend(objs[1..].iter().map(|obj| {
        let kind = obj["kind"].as_str().unwrap();
        let name = obj["metadata"]["name"].as_str().unwrap();
        let plural = match kind {
            "NetworkPolicy" => "networkpolicies".to_string(),
            k => format!("{}s", k.to_lowercase()),
        };
        let base = match obj["apiVersion"].as_str().unwrap() {
            "v1" => format!("{ns}/{plural}"),
            gv => format!("/apis/{gv}/namespaces/sdnbed-kt-1/{plural}"),
        };
        format!("PATCH {base}/{name}")
    }));
    expected.push(format!("PATCH {deps}/web-v2"));
    expected.push(format!("PATCH {deps}/web-v1"));
    expected.push(format!("DELETE {ns}"));
    expected.push(format!("DELETE {ns}"));
    assert_eq!(w, expected);
    // Applies are server-side applies by the field manager sdnbed; scales are merge patches of
    // spec.replicas alone.
    let patches: Vec<&Value> = reqs.iter().filter(|r| r["method"] == "PATCH").collect();
    for p in &patches[..objs.len()] {
        assert_eq!(p["content_type"], "application/apply-patch+yaml", "{p}");
        assert_eq!(p["query"]["fieldManager"], "sdnbed", "{p}");
        assert_eq!(p["query"]["force"], "true", "{p}");
    }
    let scale = &patches[objs.len()];
    assert_eq!(scale["content_type"], "application/merge-patch+json");
    assert_eq!(scale["body"], serde_json::json!({"spec": {"replicas": 1}}));
    // The pod watches were restarted (list, watch, list, watch, …) and selected by run,
    // service and version.
    let watches: Vec<&Value> = reqs
        .iter()
        .filter(|r| r["query"]["watch"] == "true" || r["query"]["watch"] == "1")
        .collect();
    assert!(watches.len() >= 3, "{watches:?}");
    for wr in &watches {
        let sel = wr["query"]["labelSelector"].as_str().unwrap();
        assert!(
            sel.starts_with("sdnbed.run=kt-1,sdnbed.service=web,sdnbed.version="),
            "{sel}"
        );
    }
}
