//! Attaching the emulator to a run of the data plane.
//!
//! **Design: a TUN device at each end replaces the link's veth pair.** For an emulated node
//! link A—B, the data plane first deploys its veth pair as usual (unshaped: [`take_emulated`]
//! takes the link's shaping out of the plan before the deploy). [`attach`] then deletes the
//! pair and creates, in A's and B's namespaces, a TUN device with the veth end's name, address,
//! prefix and the default MTU (1500, as the veth's), and re-installs the node's routes through
//! it. The nodes still see an ordinary interface with their addresses and routes; everything
//! A routes into the link is read by the emulator from A's TUN device and written, when the
//! model says it arrives, to B's, which hands it to B's stack.
//!
//! Why TUN and not AF_PACKET on the veth ends: a packet socket on a veth end sees the frame
//! but cannot stop the kernel from delivering it to the peer (that takes a tc ingress filter
//! with a drop action per end, built by hand), and a frame sent back on a veth end goes the
//! wrong way (out of the end, not into its stack), so the emulator would need a second device
//! per end anyway. A TUN device is one object per end that is both the tap and the injection
//! point, at layer 3 (no ARP to forward), and the kernel here has it. The price is a `write`
//! system call per packet and a `read` per packet or TCP super-packet ([`crate::linkemu::gso`]).
//!
//! Ownership: the emulator ([`Emulator`]) is handed to the [`Dataplane`] with
//! [`Dataplane::own`], which drops it (stopping the thread, closing the TUN devices) at
//! teardown, before the namespaces go. TUN devices are not persistent: they vanish when their
//! descriptor closes or their namespace is deleted, so they cannot outlive both the sdnbed
//! process (the ledger's owner) and the run's namespaces (in the ledger); `sdnbed clean` has
//! nothing more to remove. The scratch namespace of the netem probe goes into the ledger before
//! it is made, as the data plane does.
//!
//! Links to a service have one veth per replica, made while the run goes on: the backend calls
//! [`Attached::add_replica`] after `Dataplane::add_replica` (and [`Attached::remove_replica`]
//! with `Dataplane::remove_replica`), which swaps that replica's veth for TUN devices the same
//! way and adds the instance to the running emulator, seeded as the simulator seeds it
//! (`link/A-B/ID/fwd`).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::dataplane::deploy::{prepare, Dataplane, DataplaneError, DeployOptions};
use crate::dataplane::ledger::{Entry, Ledger};
use crate::dataplane::netlink::Kernel;
use crate::dataplane::ops::{Executor, Op};
use crate::dataplane::plan::{Iface, Ipv4Net, Plan, Route};
use crate::dataplane::tc::{needs_emulation, Netem};
use crate::linkemu::engine::{EmuControl, Emulator, LinkSpec, LinkTotals, Timing};
use crate::linkemu::tap::EntryTap;
use crate::linkemu::{engine, tun, LinkEmuError};
use crate::model::link::{LinkCounters, LinkParams};
use crate::model::rng::SeedTree;
use crate::scenario::types::{EmulatorChoice, LinkEnd, Scenario};

/// Who carries a link's delay, jitter, loss or trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carrier {
    /// Nothing to emulate (unshaped, or rate only: `tbf`), or kernel netem does it.
    Kernel,
    Userspace,
}

/// The scenario's choice, applied: `userspace` and `capture = true` always take the emulator
/// (only it can capture); `auto` takes it when the link needs more than a rate and netem is
/// missing or cannot express the link; `kernel` never does, and fails when the link needs
/// netem and there is none. `netem` is asked only when the answer depends on it.
pub fn carrier(
    params: &LinkParams,
    choice: EmulatorChoice,
    capture: bool,
    netem: &mut dyn FnMut() -> Result<bool, LinkEmuError>,
) -> Result<Carrier, LinkEmuError> {
    if choice == EmulatorChoice::Userspace || capture {
        return Ok(Carrier::Userspace);
    }
    let Some(what) = needs_emulation(params) else {
        return Ok(Carrier::Kernel);
    };
    match choice {
        EmulatorChoice::Kernel => {
            if !netem()? {
                return Err(LinkEmuError::NoNetem { what });
            }
            Ok(Carrier::Kernel)
        }
        _ => {
            if netem()? && Netem::for_link(params).is_ok() {
                Ok(Carrier::Kernel)
            } else {
                Ok(Carrier::Userspace)
            }
        }
    }
}

#[derive(Clone, Debug)]
struct End {
    node: String,
    ns: String,
    iface: String,
    veth_ifindex: u32,
    addr: Ipv4Addr,
    prefix_len: u8,
    routes: Vec<Route>,
}

/// A node link the emulator will carry, taken out of the plan by [`take_emulated`].
#[derive(Clone, Debug)]
pub struct EmulatedLink {
    /// Scenario link index.
    pub link: usize,
    pub spec: LinkSpec,
    ends: [End; 2],
}

/// A link to a service the emulator will carry: one instance per replica, attached by
/// [`Attached::add_replica`].
#[derive(Clone, Debug)]
pub struct ServiceLink {
    /// Scenario link index.
    pub link: usize,
    pub service: String,
    /// Index into the service's attachments (and its replicas' veths).
    pub attachment: usize,
    /// `A-B` as the scenario writes the link; replica `id`'s instance is `A-B/id` for seeds.
    pub name: String,
    /// Whether the service is the link's first end (direction A→B is then replica→node).
    pub service_first: bool,
    pub params: LinkParams,
    pub capture: Option<PathBuf>,
}

/// What [`take_emulated`] took out of the plan.
#[derive(Clone, Debug, Default)]
pub struct EmulatedLinks {
    pub node_links: Vec<EmulatedLink>,
    pub service_links: Vec<ServiceLink>,
    /// The scenario seed, from which replica links' seeds are derived.
    pub seed: u64,
}

fn name_err(link: &str) -> impl FnOnce(LinkEmuError) -> LinkEmuError + '_ {
    move |e| match e {
        LinkEmuError::NoNetem { what } => LinkEmuError::KernelChoice {
            link: link.to_string(),
            what,
        },
        e => e,
    }
}

/// Decides which links the emulator carries (see [`carrier`]) and takes their shaping out of
/// `plan`, so that the data plane deploys them as plain veth pairs (and adds replicas with
/// plain veths). Call between `dataplane::prepare` and `Dataplane::deploy`; `exec` probes for
/// netem (at most once) in a scratch namespace recorded in `ledger` first. Captures go to
/// `capture_dir`.
pub fn take_emulated(
    sc: &Scenario,
    plan: &mut Plan,
    ledger: &mut Ledger,
    exec: &mut dyn Executor,
    capture_dir: Option<&Path>,
) -> Result<EmulatedLinks, LinkEmuError> {
    let mut known: Option<bool> = None;
    let scratch = format!("sdnbed-{}-netem-probe", plan.run);
    let mut netem = || -> Result<bool, LinkEmuError> {
        if let Some(n) = known {
            return Ok(n);
        }
        ledger
            .record(&[Entry::Netns {
                name: scratch.clone(),
            }])
            .map_err(|e| LinkEmuError::Dataplane(e.to_string()))?;
        let n = exec
            .netem_available(&scratch)
            .map_err(|e| LinkEmuError::Dataplane(e.to_string()))?;
        known = Some(n);
        Ok(n)
    };
    let capture = |on: bool| on.then(|| capture_dir.map(Path::to_path_buf)).flatten();
    let seeds = SeedTree::new(sc.seed);
    let mut out = EmulatedLinks {
        seed: sc.seed,
        ..Default::default()
    };
    for s in &mut plan.services {
        for (k, a) in s.attachments.iter_mut().enumerate() {
            let Some(li) = a.link else { continue };
            let l = &sc.links[li];
            let name = format!("{}-{}", l.between[0].name(), l.between[1].name());
            if carrier(&a.params, a.emulator, l.capture, &mut netem).map_err(name_err(&name))?
                == Carrier::Userspace
            {
                out.service_links.push(ServiceLink {
                    link: li,
                    service: s.name.clone(),
                    attachment: k,
                    service_first: matches!(&l.between[0], LinkEnd::Service(n) if *n == s.name),
                    params: std::mem::take(&mut a.params),
                    capture: capture(l.capture),
                    name,
                });
            }
        }
    }
    for lp in &mut plan.links {
        let l = &sc.links[lp.link];
        let name = format!("{}-{}", l.between[0].name(), l.between[1].name());
        if carrier(&lp.params, lp.emulator, l.capture, &mut netem).map_err(name_err(&name))?
            != Carrier::Userspace
        {
            continue;
        }
        let ends = lp.ends.clone().map(|e| {
            let n = &plan.nodes[e.node];
            end(&n.name, &n.netns, &n.ifaces[e.iface], &n.routes)
        });
        out.node_links.push(EmulatedLink {
            link: lp.link,
            spec: LinkSpec {
                params: std::mem::take(&mut lp.params),
                seeds: [
                    seeds.seed_for(&format!("link/{name}/fwd")),
                    seeds.seed_for(&format!("link/{name}/rev")),
                ],
                capture: capture(l.capture),
                name,
            },
            ends,
        });
    }
    Ok(out)
}

/// One end of an emulated link: the veth end it replaces and the routes through it.
fn end(who: &str, ns: &str, i: &Iface, routes: &[Route]) -> End {
    let net = Ipv4Net::new(i.addr, i.prefix_len).expect("plan prefixes are valid");
    End {
        node: who.to_string(),
        ns: ns.to_string(),
        iface: i.name.clone(),
        veth_ifindex: i.ifindex,
        addr: i.addr,
        prefix_len: i.prefix_len,
        routes: routes
            .iter()
            .filter(|r| net.contains(r.via))
            .copied()
            .collect(),
    }
}

/// One link instance the emulator carries, by emulator index.
struct Carried {
    link: usize,
    /// Node or replica names at ends A and B.
    names: [String; 2],
    replica: Option<(String, u32)>,
}

/// The emulated links of a deployed run: where `set-link`, `link-up`/`link-down` and the
/// `links.csv` counters of these links go (the data plane's veth for them is gone), and where a
/// backend adds and removes replicas' emulated links.
pub struct Attached {
    control: Option<EmuControl>,
    /// By emulator index.
    carried: Vec<Carried>,
    service_links: Vec<ServiceLink>,
    seeds: SeedTree,
    down: Vec<usize>,
}

impl Attached {
    /// Whether scenario link `link` is emulated.
    pub fn carries(&self, link: usize) -> bool {
        self.carried.iter().any(|c| c.link == link)
            || self.service_links.iter().any(|s| s.link == link)
    }

    fn check(&self, link: usize) -> Result<(), LinkEmuError> {
        if self.carries(link) {
            Ok(())
        } else {
            Err(LinkEmuError::NotEmulated(link))
        }
    }

    /// `set-link` on an emulated link: every instance, both directions, in place (queued
    /// packets stay); replicas added later get the new parameters.
    pub fn set_link(&mut self, link: usize, params: LinkParams) -> Result<(), LinkEmuError> {
        self.check(link)?;
        for s in self.service_links.iter_mut().filter(|s| s.link == link) {
            s.params = params.clone();
        }
        if let Some(ctl) = &self.control {
            for (i, _) in self
                .carried
                .iter()
                .enumerate()
                .filter(|(_, c)| c.link == link)
            {
                ctl.set_params(i, params.clone());
            }
        }
        Ok(())
    }

    /// `link-up` / `link-down` on an emulated link (replicas added while it is down start
    /// down).
    pub fn set_up(&mut self, link: usize, up: bool) -> Result<(), LinkEmuError> {
        self.check(link)?;
        self.down.retain(|&l| l != link);
        if !up {
            self.down.push(link);
        }
        if let Some(ctl) = &self.control {
            for (i, _) in self
                .carried
                .iter()
                .enumerate()
                .filter(|(_, c)| c.link == link)
            {
                ctl.set_up(i, up);
            }
        }
        Ok(())
    }

    /// Per direction: (scenario link, from, to, counters), A→B then B→A per link instance, node
    /// links first, then replicas' links in the order they were added (removed replicas keep
    /// their final counts).
    pub fn counters(&self) -> Vec<(usize, String, String, LinkCounters)> {
        let totals: Vec<LinkTotals> = self
            .control
            .as_ref()
            .map(|c| c.totals())
            .unwrap_or_default();
        let mut out = Vec::new();
        for (c, t) in self.carried.iter().zip(totals) {
            let [a, b] = &c.names;
            out.push((c.link, a.clone(), b.clone(), t.counters[0]));
            out.push((c.link, b.clone(), a.clone(), t.counters[1]));
        }
        out
    }

    pub fn control(&self) -> Option<&EmuControl> {
        self.control.as_ref()
    }

    /// After `Dataplane::add_replica(service, id)`: replaces the replica's veths on emulated
    /// links with TUN devices and adds them to the emulator. Seeds are the simulator's
    /// (`link/A-B/ID/fwd`, `…/rev`).
    pub fn add_replica<E: Executor>(
        &mut self,
        dp: &Dataplane<E>,
        service: &str,
        id: u32,
    ) -> Result<(), LinkEmuError> {
        let mine: Vec<ServiceLink> = self
            .service_links
            .iter()
            .filter(|s| s.service == service)
            .cloned()
            .collect();
        if mine.is_empty() {
            return Ok(());
        }
        let (Some(ctl), Some(rp), Some(sp)) = (
            self.control.clone(),
            dp.replica_plan(service, id),
            dp.plan().service(service),
        ) else {
            return Err(LinkEmuError::NoReplica {
                service: service.to_string(),
                id,
            });
        };
        let mut k = kernel()?;
        let rname = format!("{service}-{id}");
        for sl in mine {
            let v = &rp.veths[sl.attachment];
            let node = &dp.plan().nodes[sp.attachments[sl.attachment].node];
            let r_end = end(&rname, &rp.netns, &v.iface, &rp.routes);
            let n_end = end(&node.name, &node.netns, &v.node_iface, &node.routes);
            let ends = if sl.service_first {
                [r_end, n_end]
            } else {
                [n_end, r_end]
            };
            let fds = swap_in_tuns(&mut k, &ends)?;
            let name = format!("{}/{id}", sl.name);
            let spec = LinkSpec {
                params: sl.params.clone(),
                seeds: [
                    self.seeds.seed_for(&format!("link/{name}/fwd")),
                    self.seeds.seed_for(&format!("link/{name}/rev")),
                ],
                capture: sl.capture.clone(),
                name: format!("{}-{id}", sl.name),
            };
            let idx = ctl.add_link(spec, fds)?;
            debug_assert_eq!(idx, self.carried.len());
            if self.down.contains(&sl.link) {
                ctl.set_up(idx, false);
            }
            self.carried.push(Carried {
                link: sl.link,
                names: ends.map(|e| e.node),
                replica: Some((service.to_string(), id)),
            });
        }
        Ok(())
    }

    /// Before or after `Dataplane::remove_replica(service, id)`: stops carrying the replica's
    /// links (their queued packets are dropped, their counters stay).
    pub fn remove_replica(&mut self, service: &str, id: u32) {
        if let Some(ctl) = &self.control {
            for (i, c) in self.carried.iter().enumerate() {
                if c.replica
                    .as_ref()
                    .is_some_and(|(s, r)| s == service && *r == id)
                {
                    ctl.remove_link(i);
                }
            }
        }
    }
}

fn kernel() -> Result<Kernel, LinkEmuError> {
    Kernel::new().map_err(|source| LinkEmuError::Io {
        what: "opening rtnetlink".into(),
        source,
    })
}

/// Deletes the veth pair between `ends` and puts a TUN device with the same name, address and
/// routes at each end; returns their descriptors (A, B).
fn swap_in_tuns(k: &mut Kernel, ends: &[End; 2]) -> Result<[engine::End; 2], LinkEmuError> {
    let exec = |k: &mut Kernel, ops: &[Op]| {
        k.apply(ops)
            .map_err(|e| LinkEmuError::Dataplane(e.to_string()))
    };
    let [a, b] = ends;
    exec(
        k,
        &[Op::LinkDel {
            ns: a.ns.clone(),
            ifindex: a.veth_ifindex,
        }],
    )?;
    let mk = |e: &End| {
        tun::create(&e.ns, &e.iface).map_err(|source| LinkEmuError::Io {
            what: format!("TUN {} in netns {}", e.iface, e.ns),
            source,
        })
    };
    let (ta, tb) = (mk(a)?, mk(b)?);
    let mut ops = Vec::new();
    for (e, t) in [(a, &ta), (b, &tb)] {
        ops.push(Op::AddrAdd {
            ns: e.ns.clone(),
            ifindex: t.ifindex,
            addr: e.addr,
            prefix_len: e.prefix_len,
        });
        ops.push(Op::LinkSet {
            ns: e.ns.clone(),
            ifindex: t.ifindex,
            up: true,
        });
    }
    for e in [a, b] {
        ops.extend(e.routes.iter().map(|r| Op::RouteAdd {
            ns: e.ns.clone(),
            route: *r,
        }));
    }
    exec(k, &ops)?;
    let tap = |e: &End, t: &tun::Tun| {
        EntryTap::open(&e.ns, t.ifindex).map_err(|source| LinkEmuError::Io {
            what: format!("packet tap on {} in netns {}", e.iface, e.ns),
            source,
        })
    };
    let taps = (tap(a, &ta)?, tap(b, &tb)?);
    Ok([
        engine::End {
            fd: ta.fd,
            tap: Some(taps.0),
        },
        engine::End {
            fd: tb.fd,
            tap: Some(taps.1),
        },
    ])
}

/// Replaces the veth pair of each emulated node link with a TUN device at each end and starts
/// the emulator, which `dp` then owns (it stops at teardown). On failure the devices made so
/// far close with their descriptors; the data plane's teardown removes the rest. Replicas'
/// links are attached by [`Attached::add_replica`] as replicas come.
pub fn attach<E: Executor>(
    dp: &mut Dataplane<E>,
    links: EmulatedLinks,
) -> Result<Attached, LinkEmuError> {
    let mut att = Attached {
        control: None,
        carried: Vec::new(),
        service_links: links.service_links,
        seeds: SeedTree::new(links.seed),
        down: Vec::new(),
    };
    if links.node_links.is_empty() && att.service_links.is_empty() {
        return Ok(att);
    }
    let mut k = kernel()?;
    let mut started = Vec::new();
    for l in links.node_links {
        let fds = swap_in_tuns(&mut k, &l.ends)?;
        att.carried.push(Carried {
            link: l.link,
            names: l.ends.map(|e| e.node),
            replica: None,
        });
        started.push((l.spec, fds));
    }
    let emu = Emulator::start(started, Timing::from_env()?)?;
    att.control = Some(emu.control());
    dp.own(Box::new(emu));
    Ok(att)
}

/// Deploys scenario `sc` as run `run` with the emulator carrying the links that need it: the
/// data plane's `prepare`, [`take_emulated`], `Dataplane::deploy`, [`attach`]. A failure before
/// the deploy removes the run's ledger (and the netem probe's namespace, if made); after it,
/// the data plane tears down what was made.
pub fn deploy(
    sc: &Scenario,
    run: &str,
    opts: &DeployOptions,
    capture_dir: Option<&Path>,
) -> Result<(Dataplane<Kernel>, Attached), LinkEmuError> {
    let dp_err = |e: DataplaneError| LinkEmuError::Dataplane(e.to_string());
    let (mut plan, mut ledger) = prepare(sc, run, opts).map_err(dp_err)?;
    let mut k = Kernel::new().map_err(|source| LinkEmuError::Io {
        what: "opening rtnetlink".into(),
        source,
    })?;
    let links = match take_emulated(sc, &mut plan, &mut ledger, &mut k, capture_dir) {
        Ok(l) => l,
        Err(e) => {
            drop(ledger);
            let _ = crate::dataplane::ledger::teardown(&opts.ledger_dir, run, &mut k);
            return Err(e);
        }
    };
    let mut dp = Dataplane::deploy(plan, ledger, k, opts.sandboxes.clone()).map_err(dp_err)?;
    let att = attach(&mut dp, links)?;
    Ok((dp, att))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::link::{Jitter, JitterDist, Loss};
    use crate::model::time::Duration;

    fn decide(
        p: &LinkParams,
        c: EmulatorChoice,
        cap: bool,
        netem: bool,
    ) -> (Result<Carrier, String>, u32) {
        let mut asked = 0;
        let r = carrier(p, c, cap, &mut || {
            asked += 1;
            Ok(netem)
        })
        .map_err(|e| e.to_string());
        (r, asked)
    }

    use crate::dataplane::ops::Recorder;
    use crate::dataplane::plan::tests::{link, node, scenario, service};
    use crate::scenario::types::{LinkEnd, NodeKind};

    fn n(s: &str) -> LinkEnd {
        LinkEnd::Node(s.into())
    }

    /// client —(5 ms, captured)— gw —(rate only)— db, web attached to gw.
    fn sc(web_delay: bool) -> Scenario {
        let mut a = link(n("client"), n("gw"), None);
        a.params.delay = Duration::from_millis(5);
        a.capture = true;
        let mut w = link(LinkEnd::Service("web".into()), n("gw"), None);
        if web_delay {
            w.params.delay = Duration::from_millis(1);
        }
        let mut s = scenario(
            vec![
                node("client", NodeKind::Client),
                node("gw", NodeKind::Gateway),
                node("db", NodeKind::Host),
            ],
            vec![service("web", 1, 8080, "gw")],
            vec![a, link(n("gw"), n("db"), Some(10_000_000)), w],
            vec![],
        );
        s.seed = 42;
        s
    }

    fn prepared(s: &Scenario, dir: &Path) -> (Plan, Ledger) {
        let opts = DeployOptions {
            ledger_dir: dir.to_path_buf(),
            ..Default::default()
        };
        prepare(s, "r1", &opts).unwrap()
    }

    #[test]
    fn take_emulated_moves_the_shaping_out_of_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let s = sc(false);
        let (mut plan, mut ledger) = prepared(&s, dir.path());
        let mut rec = Recorder {
            netem: true,
            ..Default::default()
        };
        let cap = Path::new("/tmp/caps");
        let links = take_emulated(&s, &mut plan, &mut ledger, &mut rec, Some(cap)).unwrap();
        // Only client—gw (captured): gw—db is rate only, for tbf; netem was never probed.
        assert_eq!(links.node_links.len(), 1);
        assert!(links.service_links.is_empty());
        let l = &links.node_links[0];
        assert_eq!(l.link, 0);
        assert_eq!(l.spec.name, "client-gw");
        assert_eq!(l.spec.params.delay, Duration::from_millis(5));
        assert_eq!(l.spec.capture.as_deref(), Some(cap));
        // The simulator's seed names, from the scenario seed.
        let t = SeedTree::new(42);
        assert_eq!(
            l.spec.seeds,
            [
                t.seed_for("link/client-gw/fwd"),
                t.seed_for("link/client-gw/rev")
            ]
        );
        assert_eq!(plan.links[0].params, LinkParams::default());
        assert!(plan.links[1].params.bandwidth.is_some());
        // The ends keep their names and addresses; the routes through the link go with them.
        let client = plan.node("client").unwrap();
        assert_eq!(l.ends[0].iface, client.ifaces[0].name);
        assert_eq!(l.ends[0].addr, client.ifaces[0].addr);
        assert_eq!(l.ends[0].routes, client.routes);
        // The gateway reaches the client's /30 directly: no route of its own through it.
        assert!(l.ends[1].routes.is_empty());
        assert!(crate::dataplane::ledger::read(ledger.path())
            .unwrap()
            .iter()
            .all(|e| !matches!(e, Entry::Netns { .. })));
    }

    #[test]
    fn service_links_are_taken_for_replicas_and_netem_probed_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = sc(true);
        let (mut plan, mut ledger) = prepared(&s, dir.path());
        let mut rec = Recorder::default();
        let links = take_emulated(&s, &mut plan, &mut ledger, &mut rec, None).unwrap();
        assert_eq!(links.node_links.len(), 1);
        assert_eq!(links.service_links.len(), 1);
        let sl = &links.service_links[0];
        assert_eq!(
            (
                sl.link,
                sl.service.as_str(),
                sl.attachment,
                sl.name.as_str()
            ),
            (2, "web", 0, "web-gw")
        );
        assert!(sl.service_first);
        assert_eq!(sl.params.delay, Duration::from_millis(1));
        assert_eq!(links.seed, 42);
        let web = plan.service("web").unwrap();
        assert_eq!(web.attachments[0].params, LinkParams::default());
        // The probe's scratch namespace went into the ledger before the probe, once.
        let netns: Vec<_> = crate::dataplane::ledger::read(ledger.path())
            .unwrap()
            .into_iter()
            .filter(|e| matches!(e, Entry::Netns { .. }))
            .collect();
        assert_eq!(
            netns,
            vec![Entry::Netns {
                name: "sdnbed-r1-netem-probe".into()
            }]
        );
    }

    #[test]
    fn the_data_plane_drops_what_it_owns_at_teardown() {
        struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let s = sc(false);
        let (plan, ledger) = prepared(&s, dir.path());
        let rec = Recorder {
            netem: true,
            ..Default::default()
        };
        let mut dp = Dataplane::deploy(plan, ledger, rec, None).unwrap();
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        dp.own(Box::new(Flag(dropped.clone())));
        assert!(!dropped.load(std::sync::atomic::Ordering::SeqCst));
        dp.teardown().unwrap();
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn choice_table() {
        use EmulatorChoice::*;
        let rate_only = LinkParams {
            bandwidth: Some(crate::scenario::units::BitRate(1_000_000)),
            ..Default::default()
        };
        let delay = LinkParams {
            delay: Duration::from_millis(5),
            ..Default::default()
        };
        let normal = LinkParams {
            jitter: Some(Jitter {
                amount: Duration::from_millis(1),
                distribution: JitterDist::Normal,
            }),
            loss: Loss::Bernoulli(0.01),
            ..Default::default()
        };
        // Rate only never needs netem and never asks.
        assert_eq!(
            decide(&rate_only, Auto, false, false),
            (Ok(Carrier::Kernel), 0)
        );
        // Userspace and capture force the emulator without asking.
        assert_eq!(
            decide(&rate_only, Userspace, false, true),
            (Ok(Carrier::Userspace), 0)
        );
        assert_eq!(
            decide(&rate_only, Auto, true, true),
            (Ok(Carrier::Userspace), 0)
        );
        // Auto: netem when present, the emulator otherwise or when netem cannot do it.
        assert_eq!(decide(&delay, Auto, false, true), (Ok(Carrier::Kernel), 1));
        assert_eq!(
            decide(&delay, Auto, false, false),
            (Ok(Carrier::Userspace), 1)
        );
        assert_eq!(
            decide(&normal, Auto, false, true),
            (Ok(Carrier::Userspace), 1)
        );
        // Kernel without netem fails, naming what the link needs.
        let (r, _) = decide(&delay, Kernel, false, false);
        assert!(r.unwrap_err().contains("delay 5 ms"));
        assert_eq!(
            decide(&delay, Kernel, false, true),
            (Ok(Carrier::Kernel), 1)
        );
    }
}
