//! Sans-IO cores shared by the simulator and the real backends. Nothing here reads a clock,
//! touches the OS or draws entropy it was not given: time comes in as `now`, randomness as a
//! seeded [`rng::Rng`].
//!
//! The layers read one way: `model` imports nothing of `scenario` (or anything above it). The
//! parameter types the models consume (units, service and rollout parameters, analysis,
//! arrival schedules) are defined here; `scenario` builds them from the file and re-exports
//! them, and maps a scenario onto [`route::Graph`] (`Scenario::graph`).

pub mod analysis;
pub mod arrivals;
pub mod dist;
pub mod link;
pub mod queue;
pub mod rng;
pub mod rollout;
pub mod route;
pub mod service;
pub mod steering;
pub mod tcp;
pub mod time;
pub mod units;
