//! The user-space link emulator: delay, jitter, loss, rate, drop-tail queues and Mahimahi
//! traces for the netns backend on kernels without `sch_netem`, driving the simulator's link
//! model ([`crate::model::link`]) unchanged in real time, so that a simulated and an emulated
//! link mean the same thing, with the same per-direction seeds.
//!
//! - [`engine`]: one packet thread for every emulated link of a run (no process per link):
//!   read a packet, ask the model when it arrives, write it then. Guarantees in its docs.
//! - [`mod@attach`]: which links the emulator carries (`emulator = "auto" | "kernel" |
//!   "userspace"`, `capture`), and how it plugs into the data plane: a TUN device at each end in
//!   place of the veth pair (why TUN: see there).
//! - [`gso`]: TCP segmentation offload on the TUN devices, cut back into segments for the model.
//! - [`cpus`]: which CPU the packet thread keeps, and where replicas and load generators go.
//! - [`pcap`]: classic pcap files (`capture = true`).
//! - [`tap`]: when each packet entered the link, by the kernel's clock.
//! - [`tun`]: TUN devices in a namespace.
//!
//! How a backend uses it: [`deploy`] (the data plane's `prepare`, then [`take_emulated`], which
//! takes the emulated links' shaping out of the plan, then `Dataplane::deploy`, then [`attach()`],
//! which swaps those links' veth pairs for TUN devices and hands the running [`Emulator`] to the
//! data plane, which stops it at teardown; replicas' links join with [`Attached::add_replica`]).
//! `set-link`, `link-up`/`link-down` and the
//! `links.csv` counters ([`crate::model::link::LinkCounters`], the simulator's columns) of an
//! emulated link go through [`Attached`]; the data plane's own calls are for its other links.
//!
//! Kernel netem, where present and where it can express the link, stays the data plane's
//! business (`dataplane::tc`, options byte-identical to `tc`'s).
//!
//! The emulator lives as long as the process that holds it: in lab mode (`sdnbed up`) that is
//! a keeper process, which carries the run's emulated links until `sdnbed down` stops it
//! (`cli::lab`).
//!
//! Time: the packet thread waits with [`crate::workload::timer`], the one precise timer of
//! sdnbed's real-time loops (the load generator's and the server's too): `CLOCK_MONOTONIC`, a
//! timerfd armed with an absolute deadline, 1 ns timer slack, a spin before the deadline, all
//! in one epoll set with the TUN devices.
//!
//! Cost: the packet thread runs on a CPU of its own ([`cpus`]) and, with the default
//! [`Timing::Sleep`], busy-polls only the last stretch before each delivery: under a steady
//! stream (a 1 Gbit/s shaped flow, a delivery every 12 µs) that is all of its CPU, with a
//! ping every 1 ms a few per cent ([`Timing`] lists the busy-polling choices). It also does the
//! receiving stack's work of every packet it writes (the kernel processes a TUN write in the
//! writer's context).

pub mod attach;
pub mod cpus;
pub mod engine;
pub mod gso;
pub mod pcap;
pub mod tap;
pub mod tun;

pub use attach::{
    attach, deploy, take_emulated, Attached, Carrier, EmulatedLink, EmulatedLinks, ServiceLink,
};
pub use engine::{EmuControl, Emulator, End, LinkSpec, LinkTotals, Timing};

#[derive(Debug, thiserror::Error)]
pub enum LinkEmuError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("needs {what}, which takes kernel netem, and this kernel has no sch_netem")]
    NoNetem { what: String },
    #[error(
        "link {link} asks for emulator = \"kernel\" and needs {what}, but this kernel has no \
         sch_netem; use emulator = \"auto\" or \"userspace\" for the user-space link emulator"
    )]
    KernelChoice { link: String, what: String },
    #[error("service `{service}` has no replica {id} in the data plane")]
    NoReplica { service: String, id: u32 },
    #[error("scenario link #{0} is not emulated")]
    NotEmulated(usize),
    #[error("data plane: {0}")]
    Dataplane(String),
    #[error("SDNBED_LINKEMU_TIMING={0}: expected ready, spin or sleep")]
    Timing(String),
    #[error("the emulator's packet thread panicked")]
    Panicked,
}
