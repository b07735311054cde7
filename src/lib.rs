//! sdnbed: a research testbed and simulator for deployments on programmable networks.
//!
//! A researcher describes an experiment once, as a *scenario* (topology, links, policies, a
//! workload, the rollout of a new service version, timed events, a parameter sweep), runs it on a
//! *backend* and gets an immutable, self-describing *run directory* with time series, per-version
//! and per-phase statistics, and figures.
//!
//! The layers, from pure to effectful:
//!
//! - [`scenario`] parses and validates the file format into a [`scenario::Scenario`] that later
//!   code never re-checks, and expands sweeps into runs.
//! - [`model`] holds the sans-IO cores (time, seeds, distributions, links, services, steering,
//!   rollout strategies, canary analysis, arrival schedules, routes, Linux TCP) and the
//!   parameter types they take; it imports nothing of `scenario`. They take `now` as an argument
//!   and say when they next need attention, so one implementation serves simulation and
//!   emulation alike.
//! - [`driver`] is the control core every backend shares: which replicas exist, what steering
//!   is told and when (propagation delay), the rollout strategy's decisions, and what every
//!   timed event (and its undo) means, as commands.
//! - [`sim`] is the discrete-event simulator that carries those commands out in virtual time.
//!   [`backend`] holds the real-time runner ([`backend::runner`]) that carries them out in real
//!   time for every real backend, through four narrow effect traits ([`backend::effects`]:
//!   replicas, probes, network, workloads), and their implementations: netns today. A new
//!   backend implements those traits and one line of `cli::run`'s dispatch; the module docs of
//!   [`backend`] say how. [`output`] holds the records every backend returns.
//! - [`metrics`] turns request outcomes into windows, HdrHistograms and per-version, per-phase
//!   statistics; [`results`] writes and reads run and experiment directories; [`report`] draws
//!   figures and tables from them.
//! - [`dataplane`] is the SDN controller of the netns backend: network namespaces, veths,
//!   routes, `tbf` shaping and nftables steering and policies, with a teardown ledger; and
//!   conntrack lookups of where steering sent a connection.
//! - [`linkemu`] is the user-space link emulator: TUN devices in place of a link's veth pair,
//!   one packet thread driving [`model::link`] in real time where the kernel has no netem.
//! - [`engine`] is the Docker Engine client under the docker backend (bollard behind a
//!   blocking facade): content-cached images of sdnbed's own binary or a Dockerfile, containers
//!   created, signalled and restarted, their logs and events.
//! - [`workload`] is the built-in HTTP service (`sdnbed serve`) and the open-loop load
//!   generator (`sdnbed load`) that the real backends run; requests to images that do not
//!   name their version are attributed by steering target ([`workload::attribution`]).
//! - [`cli`] holds one file per subcommand; `main.rs` only dispatches.

pub mod backend;
pub mod cli;
pub mod dataplane;
pub mod driver;
pub mod engine;
pub mod linkemu;
pub mod metrics;
pub mod model;
pub mod output;
pub mod report;
pub mod results;
pub mod scenario;
pub mod sim;
pub mod workload;
