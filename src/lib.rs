#![doc = include_str!("../README.md")]
//!
//! ## This crate
//!
//! The facade of unfold's library crates, re-exported under one name:
//! - [`nn`] (`unfold-nn`): recurrences, the unroll, RNN topologies, fused kernels, losses,
//!   sampling, checkpoints, PyTorch import, burn-train glue.
//! - [`data`] (`unfold-data`): corpora, vocabularies, batching, synthetic tasks.
//! - `viz` (`unfold-viz`, feature `viz`): diagrams, loss curves, hidden-state plots.
//!
//! Cargo features: `ndarray` (default: the CPU backend's kernels), `wgpu` or `cuda` (GPU, CubeCL
//! kernels); `train`,
//! `checkpoint`, `pytorch` (default) turn on the matching parts of `unfold-nn`; `viz` adds the
//! plots. The examples' command-line flags, backend choice and progress bars live in the
//! unpublished `unfold-lab` crate, so depending on `unfold` compiles none of them.
#![warn(missing_docs)]

pub use unfold_data as data;
pub use unfold_nn as nn;
#[cfg(feature = "viz")]
pub use unfold_viz as viz;

/// The guide's code blocks, compiled and run by `cargo test --doc` so that the guide cannot
/// drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../docs/guide.md")]
pub struct Guide;
