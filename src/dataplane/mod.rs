//! The SDN controller of the netns backend: it turns a scenario's network into network
//! namespaces, veth pairs, addresses, routes, `tbf` shaping and nftables rules, changes them
//! while a run goes on (replicas, steering weights, link state and shaping), and removes
//! exactly what it made.
//!
//! Layers, from pure to effectful:
//!
//! - [`plan`]: the desired state of a run (names, addresses, routes, shaping, policy filters)
//!   from a validated scenario, a run id and an address block. Pure.
//! - [`tc`] and [`nft`]: hand-built `tbf` options (bytes identical to `tc`'s) and nftables
//!   scripts. Pure.
//! - [`ops`]: kernel changes as values ([`ops::Op`], each named after its `ip`/`tc`/`nft`
//!   command) and the narrow [`ops::Executor`] trait, with a recording fake.
//! - [`netlink`]: the real executor (rtnetlink through netlink-packet-route, namespaces by
//!   unshare + bind mount, `nft -f -` in a namespace).
//! - [`ledger`]: every object is written to the run's ledger before it is created; teardown and
//!   `sdnbed clean` work from the ledger alone.
//! - [`deploy`]: the [`Dataplane`] handle a backend drives; [`probe`]: reachability probes.
//! - [`conntrack`]: ctnetlink lookups of where a gateway's DNAT sent one connection (for
//!   attributing requests to versions when the replica's image does not name its version).

pub mod conntrack;
pub mod deploy;
pub mod ledger;
pub mod netlink;
pub mod nft;
pub mod ops;
pub mod plan;
pub mod probe;
pub mod tc;

pub use deploy::{
    install_signal_teardown, prepare, Dataplane, DataplaneError, DeployOptions, LinkSample,
    ProbeRow, ReplicaInfo,
};
pub use plan::{Ipv4Net, Plan};
