//! Recurrences, RNN topologies, sequence losses and sampling for Burn.
//!
//! - [`recurrence`]: the [`Recurrence`] trait (one step `h(t) = f(h(t-1), x(t); θ)`), the
//!   state-only [`Dynamics`], and the one loop that unrolls them ([`unroll`]).
//! - [`elman`]: the hidden-to-hidden RNN, `h(t) = tanh(b + W h(t-1) + U x(t))`, `o(t) = c + V h(t)`.
//! - [`jordan`]: the output-to-hidden RNN, trained with teacher forcing in parallel over time.
//! - [`classifier`]: single output at the end — sequence → fixed-size summary `h(τ)` →
//!   `o = c + V h(τ)`.
//! - [`loss`]: the sequence negative log-likelihood with masking, perplexity, bits per character.
//! - [`sample`]: sampling (greedy, temperature, top-k) and batched free-running generation.
//! - [`kernel`], [`fused`]: the serial part of the Elman recurrence behind one function, run as
//!   one autodiff operation with a hand-written BPTT backward where the backend allows.
//! - [`clip`]: gradient clipping by the global norm over all parameters.
//! - `import` (feature `pytorch`): PyTorch `nn.RNN` (+ `nn.Linear`) weights from safetensors
//!   files, into [`ElmanRnn`], [`SequenceEncoder`] and [`SequenceClassifier`].
//! - `train` (feature `train`): burn-train's `TrainStep`/`InferenceStep` for every model, so
//!   they train with Burn's `Learner`.
//!
//! Every module is generic over Burn's [`Backend`](burn::tensor::backend::Backend); training
//! needs an `AutodiffBackend`, and gradients are back-propagation through time by Burn's
//! autodiff (with the recurrence itself as one fused node).
#![warn(missing_docs)]

pub mod classifier;
pub mod clip;
pub mod elman;
pub mod error;
pub mod fused;
#[cfg(feature = "pytorch")]
pub mod import;
mod init;
pub mod jordan;
pub mod kernel;
pub mod loss;
pub mod readout;
pub mod recurrence;
pub mod sample;
#[cfg(feature = "train")]
pub mod train;

pub use classifier::{
    accuracy, classification_nll, mean_squared_error, try_accuracy, try_classification_nll,
    try_correct, try_mean_squared_error, EncoderOutput, Pooling, SequenceClassifier,
    SequenceClassifierConfig, SequenceEncoder, SequenceEncoderConfig,
};
pub use clip::{clip_global_norm, global_norm};
pub use elman::{ElmanCell, ElmanCellConfig, ElmanRnn, ElmanRnnConfig, RnnLoss, RnnOutput};
pub use error::{Error, Result};
#[cfg(feature = "pytorch")]
pub use import::{LoadPytorch, PytorchNames, PytorchRnnShape};
pub use init::default_initializer;
pub use jordan::{
    ElmanJordanRnn, ElmanJordanRnnConfig, Feedback, Forcing, JordanOutput, JordanRnn,
    JordanRnnConfig, TeacherSchedule,
};
pub use loss::{
    bits_per_token, perplexity, readout_nll, sequence_nll, try_readout_nll, try_sequence_nll,
    Reduction,
};
pub use readout::{Readout, ReadoutConfig};
pub use recurrence::{
    unroll, unroll_dynamics, Dynamics, Recurrence, SequenceInput, StepPlan, UnrollOptions, Unrolled,
};
pub use sample::{generate, Autoregressive, GenerateConfig, Sampling};
#[cfg(feature = "train")]
pub use train::{ClassificationBatch, RegressionBatch, SequenceBatch, SequenceRegressor};
