//! The scenario file format (docs/scenario.md; contract in SCENARIO.md): units, parsing,
//! validation with line:column errors, sweep expansion. Pure apart from reading the scenario
//! file and the files it names (empirical distributions, traces).
//!
//! Entry points: [`load_experiment`] and [`parse_experiment`] turn a file into an
//! [`Experiment`] whose runs are fully validated, or into a [`ScenarioError`] listing every
//! problem with file, line, column, key path and hint.

pub mod cost;
mod diag;
mod load;
mod reader;
mod schema;
mod sweep;
pub mod types;
pub mod units;
mod validate;

pub use diag::{Diagnostic, ScenarioError};
pub use load::{diagnose_at, load_experiment, parse_experiment, LoadOptions};
pub use types::*;
