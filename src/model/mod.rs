//! Sans-IO cores shared by the simulator and the real backends. Nothing here reads a clock,
//! touches the OS or draws entropy it was not given: time comes in as `now`, randomness as a
//! seeded [`rng::Rng`].

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
pub mod time;
pub mod units;
