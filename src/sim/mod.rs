//! The discrete-event simulator: the `sim` backend.
//!
//! It runs a validated [`Scenario`] in virtual time, message by message, driving the shared
//! sans-IO models ([`crate::model`]) exactly as the real backends do, and feeds the same
//! [`crate::metrics::Recorder`]. A run is bit-for-bit deterministic for a seed: every random
//! component has its own generator from the seed tree, and simultaneous events run in the order
//! they were scheduled.
//!
//! # What is simulated
//!
//! - **Clients.** Each workload generates arrivals open loop (constant or Poisson, piecewise
//!   rate, `set-rate` events). A request waits in the client until a connection of its
//!   keep-alive pool is free (HTTP/1.1: one request at a time per connection); its latency counts
//!   from the intended send time, so that wait is measured, not hidden. With `connections = 0`
//!   every request opens its own connection. `max_requests_per_connection` closes a connection
//!   after that many requests so that new connections see new steering.
//! - **Connections.** Opening one costs a round trip (SYN → SYN-ACK; the request travels with the
//!   ACK). The SYN is steered when it crosses the service's gateway, by the gateway's
//!   [`crate::model::steering::SteeringTable`]; the connection then stays on that replica
//!   until it is closed (conntrack), whatever the weights do later.
//! - **Transport.** Requests and responses travel on TCP as Linux runs it
//!   ([`crate::model::tcp`]: initial window 10, CUBIC, SACK with RACK and DupThresh loss
//!   detection, PRR, tail-loss probes, RTO = SRTT + max(4·RTTVAR, 200 ms) with exponential
//!   backoff, delayed and quick ACKs, slow start after idle), one sender and receiver per
//!   direction of every connection. Each segment (one MSS of payload plus 40 header bytes, or
//!   a bare ACK) crosses every link of the route as one packet through
//!   [`crate::model::link::LinkDirection`]: serialization, drop-tail queue, delay, jitter,
//!   loss. A message is delivered when its last byte arrives in order. SYN, SYN-ACK, RST and
//!   the close of a draining server are single control packets, resent after 1 s (doubling)
//!   for the handshake and 200 ms otherwise when lost. A link that is down drops everything;
//!   traffic resumes when the link is back and the next retransmission fires.
//! - **Replicas.** Each has `workers` concurrent servers and a FIFO queue
//!   ([`crate::model::service::WorkerPool`]); service times come from its version's distribution
//!   and its own generator, and a share `error_rate` of answers is a 500. A new replica listens
//!   after `startup` and becomes ready at the next readiness probe.
//! - **Draining.** Removed from steering (after `propagation_delay`), then `pre_stop`, then
//!   SIGTERM: new connections are refused, kept-alive idle connections are closed (a request that
//!   was already on its way on one is retried by the client on a new connection, as HTTP clients
//!   do for a connection closed before any answer), in-flight and queued requests are answered
//!   with `connection: close`; SIGKILL after `grace` resets whatever is left.
//! - **Failures.** `kill-replica` kills the process (everything it held is reset; requests on
//!   its connections meet a RST) and restarts it in place; readiness probes notice only if the
//!   outage spans `failure_threshold` probes. Until then steering still sends it new connections,
//!   which are refused.
//! - **Errors** are counted by kind: refused (no endpoint, or nothing listening), reset (the
//!   replica died holding the request), timeout (no answer within `timeout` of the intended send
//!   time), 5xx.
//!
//! # What is not
//!
//! CPU contention between replicas (`cpu` is ignored), the gateway's own processing time, and
//! the parts of TCP [`crate::model::tcp`] lists as not modelled (timestamps, pacing, HyStart,
//! F-RTO, BBR).

mod engine;
mod topology;

use crate::scenario::types::Scenario;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(
        "workload {workload}: no route from {from} to {to}; add a [[link]] that connects them"
    )]
    NoRoute {
        workload: String,
        from: String,
        to: String,
    },
    #[error("service {service}: its links do not reach its gateway {gateway}; link the service to {gateway} (or remove its links to attach it to the gateway directly)")]
    ServiceUnreachable { service: String, gateway: String },
}

/// Checks that every workload has a route to its target (what `sdnbed validate` adds to the
/// format's own checks).
pub fn check(scenario: &Scenario) -> Result<(), SimError> {
    engine::World::new(scenario).map(|_| ())
}

/// Simulates one run.
pub fn run(scenario: &Scenario) -> Result<crate::output::RunOutput, SimError> {
    Ok(engine::World::new(scenario)?.run())
}
