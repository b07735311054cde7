//! The built-in workload: an HTTP service whose versions behave as a scenario says
//! ([`server`], `sdnbed serve`) and an open-loop load generator whose latency numbers can be
//! trusted ([`load`], `sdnbed load`).
//!
//! Guarantees that matter for results:
//!
//! - **Latency from the intended send time.** The generator sends on a schedule that does not
//!   wait for the server, and measures every request from when the schedule meant to send it, so
//!   a stall shows in the percentiles instead of silently slowing the generator down (coordinated
//!   omission, corrected as wrk2 does). If the generator itself cannot keep the schedule, its
//!   report says by how much ([`load::ScheduleReport`]).
//! - **Sub-millisecond time.** Pacing and service times use a timerfd with 1 ns timer slack and a
//!   short busy-poll before each deadline ([`timer`]), not a millisecond timer.
//! - **Failures are data.** Refused, reset, timed-out, 5xx and other failures are counted by kind
//!   per window and per version; a run never aborts because requests fail. Every request ends up
//!   exactly once in a [`stats::Sink`]: normally the run's [`crate::metrics::Recorder`]
//!   ([`load::run_recorded`]), so `sdnbed load --out` writes the same `timeseries.csv` and
//!   `latency.hlog` as a run.
//! - **No hidden entropy.** Service times, error draws and Poisson arrivals come from
//!   [`crate::model::rng::SeedTree`] generators named after the component.
//! - **Namespaces.** Every socket is created on the thread that uses it: a server listens in the
//!   network namespace of the thread that calls [`server::serve`]; generator threads call
//!   [`load::LoadConfig::on_thread_start`] (e.g. `setns(2)`) before creating any socket. Both
//!   also run as child processes (`sdnbed serve`, `sdnbed load --json`).
//!
//! The event loops are written directly on epoll ([`sys`]): one thread, level-triggered, one
//! `read` and one `write` per request on a kept-alive connection, no `epoll_ctl` on the hot path
//! (wrk needs two per request). Measured against wrk and nginx by `bench/compare_wrk.py`: both
//! use slightly less CPU per request than their counterpart.
//!
//! For a backend: run [`server::serve`] on a thread inside the replica's namespace (or spawn
//! `sdnbed serve` there and read its `listening on ADDR` line), drain it with
//! [`server::ServerControl::drain`] (or SIGTERM); run [`load::run_recorded`] with a
//! [`load::LoadConfig`] whose `on_thread_start` enters the client's namespace and whose `clock`
//! is the run's, or spawn `sdnbed load --json --out DIR`. For a server that does not send
//! `x-sdnbed-version` (a researcher's image), set `attribute` to an
//! [`attribution::Attribution`]'s resolver: requests are then attributed by the replica each
//! connection was steered to.

pub mod attribution;
pub mod http;
pub mod load;
pub mod server;
pub mod stats;
pub mod sys;
pub mod timer;

use std::io;

/// Why the server or the generator could not run (request failures are not errors: they are
/// counted in [`stats`]).
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid workload configuration: {0}")]
    Config(String),
}

impl WorkloadError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        WorkloadError::Io {
            what: what.into(),
            source,
        }
    }
}
