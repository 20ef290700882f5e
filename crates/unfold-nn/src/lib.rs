//! Recurrences, RNN topologies, sequence losses and sampling for Burn.
//!
//! - [`recurrence`]: the [`Recurrence`] trait (one step `h(t) = f(h(t-1), x(t); θ)`), the
//!   state-only [`Dynamics`], and the one loop that unrolls them ([`unroll`]).
//! - [`elman`]: the hidden-to-hidden RNN, `h(t) = tanh(b + W h(t-1) + U x(t))`, `o(t) = c + V h(t)`.
//! - [`loss`]: the sequence negative log-likelihood with masking, perplexity, bits per character.
//! - [`sample`]: temperature sampling and free-running generation.
//! - [`kernel`]: the serial part of the Elman recurrence, behind one function.
//!
//! Every module is generic over Burn's [`Backend`](burn::tensor::backend::Backend); training
//! needs an `AutodiffBackend`, and gradients are Burn's autodiff through the unrolled graph.
#![warn(missing_docs)]

pub mod classifier;
pub mod elman;
pub mod error;
mod init;
pub mod jordan;
pub mod fused;
pub mod kernel;
pub mod loss;
pub mod readout;
pub mod recurrence;
pub mod sample;

pub use elman::{ElmanCell, ElmanCellConfig, ElmanRnn, ElmanRnnConfig, RnnOutput};
pub use error::{Error, Result};
pub use init::default_initializer;
pub use loss::{bits_per_token, perplexity, sequence_nll, try_sequence_nll, Reduction};
pub use readout::{Readout, ReadoutConfig};
pub use recurrence::{
    unroll, unroll_dynamics, Dynamics, Recurrence, SequenceInput, StepPlan, UnrollOptions, Unrolled,
};
