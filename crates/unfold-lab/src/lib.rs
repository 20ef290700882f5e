//! The experiments behind unfold's README tables (its binaries, `cargo run --release -p
//! unfold-lab --bin NAME`), and what unfold's examples share: command-line flags ([`cli`]),
//! the backend chosen by cargo feature ([`backend`]), a progress bar ([`progress`]), burn-train's
//! `Learner` set up with a compact display ([`learner`]), and one error type ([`Error`]).
//!
//! Not published: it exists so that the library crates (`unfold`, `unfold-nn`, `unfold-data`)
//! compile no CLI, progress-bar or plotting crate for their users.
#![warn(missing_docs)]

pub mod backend;
pub mod cli;
mod error;
pub mod learner;
pub mod progress;

pub use error::{exit_on_error, Error, Result};
