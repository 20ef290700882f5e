//! Recurrences, RNN topologies, sequence losses and sampling for Burn.
//!
//! - [`recurrence`]: the [`Recurrence`] trait (one step `h(t) = f(h(t-1), x(t); θ)`), the
//!   state-only [`Dynamics`], the [`State`] of a step, and the one loop that unrolls them
//!   ([`unroll`]).
//! - [`stack`]: layers and directions of recurrences, with dropout between layers.
//! - [`model`]: the one interface of the per-step models ([`SequenceModel`], [`RnnOutput`]) and
//!   of generation ([`Autoregressive`]).
//! - [`elman`]: the hidden-to-hidden RNN, `h(t) = tanh(b + W h(t-1) + U x(t))`, `o(t) = c + V h(t)`.
//! - [`rnn`]: the per-step model over any cell ([`StackedRnn`]; [`ElmanRnn`] is its Elman preset).
//! - [`feedback`]: the output-to-hidden RNN, trained with teacher forcing in parallel over time
//!   ([`JordanRnn`], and [`ElmanJordanRnn`] with both recurrences).
//! - [`gated`]: the LSTM and GRU cells (PyTorch's equations), written on the public
//!   [`Recurrence`] trait: beyond the textbook's chapter, and the proof that any cell runs in
//!   every model.
//! - [`classifier`]: single output at the end — sequence → fixed-size summary `h(τ)` →
//!   `o = c + V h(τ)`.
//! - [`loss`]: the sequence negative log-likelihood with masking, perplexity, bits per character.
//! - [`sample`]: sampling (greedy, temperature, top-k) and batched free-running generation.
//! - [`clip`]: gradient clipping by the global norm over all parameters.
//! - [`memory`]: what a model needs and what the process can have; sizes that cannot fit are a
//!   clear error, not an abort.
//! - `checkpoint` (feature `checkpoint`): atomic run directories, checkpoints with resume, the
//!   guard against non-finite losses.
//! - `import` (feature `pytorch`): PyTorch `nn.RNN` (+ `nn.Linear`) weights from safetensors
//!   files, into [`ElmanRnn`], [`SequenceEncoder`] and [`SequenceClassifier`].
//! - `train` (feature `train`): burn-train's `TrainStep`/`InferenceStep` for every model, so
//!   they train with Burn's `Learner`.
//!
//! Every module is generic over Burn's [`Backend`](burn::tensor::backend::Backend); training
//! needs an `AutodiffBackend`, and gradients are back-propagation through time by Burn's
//! autodiff. Where the backend has kernels (ndarray; wgpu's generic ones), the recurrence, the
//! token input, the teacher-forced nonlinearity and the readout loss each run as one fused
//! operation with a hand-written backward pass (see [`has_kernels`]); elsewhere the same
//! computation is recorded op by op, with the same values and gradients.
#![warn(missing_docs)]

mod backends;
#[cfg(feature = "checkpoint")]
pub mod checkpoint;
pub mod classifier;
pub mod clip;
pub mod elman;
pub mod error;
pub mod feedback;
pub mod gated;
#[cfg(feature = "pytorch")]
pub mod import;
mod init;
mod layout;
pub mod loss;
pub mod memory;
pub mod model;
pub mod nonlinearity;
mod ops;
pub mod readout;
pub mod recurrence;
pub mod rnn;
pub mod sample;
pub mod stack;
#[cfg(feature = "train")]
pub mod train;

pub use classifier::{
    accuracy, classification_nll, mean_squared_error, try_accuracy, try_classification_nll,
    try_correct, try_mean_squared_error, Pooling, SequenceClassifier, SequenceClassifierConfig,
    SequenceEncoder, SequenceEncoderConfig,
};
pub use clip::{clip_global_norm, global_norm};
pub use elman::{ElmanCell, ElmanCellConfig, ElmanRnn, ElmanRnnConfig, StackedRnnConfig};
pub use error::{Error, Result};
pub use feedback::{
    ElmanJordanRnn, ElmanJordanRnnConfig, Feedback, Forcing, JordanRnn, JordanRnnConfig,
    OutputFeedbackRnn, OutputFeedbackRnnConfig, TeacherSchedule,
};
pub use gated::{GruCell, GruCellConfig, LstmCell, LstmCellConfig};
#[cfg(feature = "pytorch")]
pub use import::{LoadPytorch, PytorchNames, PytorchRnnShape, TorchModule};
pub use init::default_initializer;
pub use loss::{
    bits_per_token, perplexity, readout_nll, sequence_nll, try_readout_nll, try_sequence_nll,
    Reduction,
};
pub use model::{Autoregressive, RnnLoss, RnnOutput, SequenceModel};
pub use nonlinearity::Nonlinearity;
pub use ops::has_kernels;
pub use readout::{Readout, ReadoutConfig};
pub use recurrence::{
    unroll, unroll_dynamics, Dynamics, Recurrence, SequenceInput, State, StepPlan, UnrollOptions,
    Unrolled,
};
pub use rnn::StackedRnn;
pub use sample::{generate, GenerateConfig, Sampling};
pub use stack::RecurrentStack;
#[cfg(feature = "train")]
pub use train::{ClassificationBatch, RegressionBatch, SequenceBatch, SequenceRegressor};

/// The fused operations' kernel interface and the host GEMM, for the benchmark and the
/// kernel tests (feature `internals`; not a stable API).
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    pub use crate::backends::cubecl::recurrence as cubecl;
    #[cfg(feature = "ndarray")]
    pub use crate::backends::ndarray::sgemm;
    pub use crate::ops::recurrence::{recurrence, recurrence_unfused};
    pub use crate::ops::{Kernels, NllRows, ReadoutNllGrads, RecurrenceGrads};
    pub use crate::recurrence::Steps;
}
