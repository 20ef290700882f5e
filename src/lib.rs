#![doc = include_str!("../README.md")]
//!
//! ## This crate
//!
//! This facade re-exports the library crates and adds what the examples share:
//! - [`nn`] (`unfold-nn`): recurrences, the unroll, RNN topologies, losses, sampling.
//! - [`data`] (`unfold-data`): corpora, vocabularies, batching.
//! - [`backend`]: the backend chosen by cargo feature (`ndarray` default, `wgpu`).
//! - [`cli`], [`output`]: the examples' shared flags and run directory.
#![warn(missing_docs)]

pub use unfold_data as data;
pub use unfold_nn as nn;
pub use unfold_viz as viz;

pub mod backend;
pub mod cli;
pub mod output;
