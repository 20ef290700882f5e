//! The one interface of unfold's sequence models: every model that gives an output per step
//! ([`ElmanRnn`](crate::ElmanRnn), [`JordanRnn`](crate::JordanRnn),
//! [`ElmanJordanRnn`](crate::ElmanJordanRnn)) takes the same [`UnrollOptions`] (initial
//! state, lengths, direction, what is fed back) and returns the same [`RnnOutput`].
//! burn-train's glue ([`crate::train`]), [`generate`](crate::sample::generate) and the
//! examples are written against [`SequenceModel`] and [`Autoregressive`] alone.

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::error::Result;
use crate::loss::Reduction;
use crate::recurrence::{SequenceInput, State, UnrollOptions};
use crate::sample::GenerationNet;

/// What a sequence model returns for a batch.
#[derive(Debug, Clone)]
pub struct RnnOutput<B: Backend> {
    /// `o(t)` for every step, `[batch, time, output_size]`.
    pub logits: Tensor<B, 3>,
    /// `h(t)` for every step, `[batch, time, hidden_size]` (of the top layer, both directions
    /// concatenated for a bidirectional one).
    pub states: Tensor<B, 3>,
    /// Each sequence's final `h` `[batch, hidden_size]` (top layer), at its own last valid
    /// step: to carry into the next chunk of a long sequence.
    pub last: Tensor<B, 2>,
    /// Each sequence's whole final state, every part (every layer and direction of a stack,
    /// bottom first): what [`UnrollOptions::with_initial_state`] takes back.
    pub final_state: State<B>,
    /// What a model that feeds its outputs back received as `r(t-1)` at every step,
    /// `[batch, time, output_size]`, when that was not the teacher (free running, scheduled
    /// sampling); `None` otherwise.
    pub fed_back: Option<Tensor<B, 3>>,
}

/// What [`SequenceModel::try_loss`] returns.
#[derive(Debug, Clone)]
pub struct RnnLoss<B: Backend> {
    /// The reduced sequence negative log-likelihood, `[1]`.
    pub loss: Tensor<B, 1>,
    /// Each sequence's final `h` `[batch, hidden_size]`, as in [`RnnOutput::last`].
    pub last: Tensor<B, 2>,
    /// Each sequence's whole final state, as in [`RnnOutput::final_state`].
    pub final_state: State<B>,
}

/// A model with an output `o(t)` at every step, trained by the sequence negative
/// log-likelihood `Σ_t -log p(y(t) | …)`.
///
/// `forward` and `loss` panic with the message of the error `try_forward` and `try_loss`
/// return, as Burn modules' `forward` does.
pub trait SequenceModel<B: Backend> {
    /// Width of `x(t)`: the feature count for dense input, the vocabulary size for token ids.
    fn input_size(&self) -> usize;

    /// Width of `h(t)` (of the top layer, every direction).
    fn hidden_size(&self) -> usize;

    /// Width of `o(t)`: the number of classes.
    fn output_size(&self) -> usize;

    /// Runs the whole sequence: every state and every output.
    ///
    /// `input` is dense `[batch, time, input_size]` or token ids `[batch, time]`. Checks its
    /// shape, ids, the options (lengths, initial state, forcing) and names the problem in the
    /// error.
    fn try_forward(
        &self,
        input: impl Into<SequenceInput<B>>,
        options: &UnrollOptions<B>,
    ) -> Result<RnnOutput<B>>;

    /// The training loss in one pass: the sequence negative log-likelihood of `targets`
    /// `[batch, time]`, equal (values and gradients) to
    /// `sequence_nll(try_forward(input, options).logits, targets, lengths, reduction)`, with
    /// the readout, log-softmax and loss fused into one operation where the backend allows
    /// (the logits are then never materialised). A model that feeds its outputs back feeds
    /// `targets` as the teacher unless `options` holds one.
    fn try_loss(
        &self,
        input: impl Into<SequenceInput<B>>,
        targets: Tensor<B, 2, Int>,
        options: &UnrollOptions<B>,
        reduction: Reduction,
    ) -> Result<RnnLoss<B>>;

    /// [`try_forward`](Self::try_forward), panicking with its error message.
    fn forward(
        &self,
        input: impl Into<SequenceInput<B>>,
        options: &UnrollOptions<B>,
    ) -> RnnOutput<B> {
        self.try_forward(input, options)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`try_loss`](Self::try_loss), panicking with its error message.
    fn loss(
        &self,
        input: impl Into<SequenceInput<B>>,
        targets: Tensor<B, 2, Int>,
        options: &UnrollOptions<B>,
        reduction: Reduction,
    ) -> RnnLoss<B> {
        self.try_loss(input, targets, options, reduction)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A model that generates by feeding each chosen token back as its next input (a language
/// model: `input_size == output_size`). [`generate`](crate::sample::generate) runs any of
/// them.
pub trait Autoregressive<B: Backend>: SequenceModel<B> {
    /// Reads the prompts `[batch, len]` (row `b` valid for its first `lengths[b]` tokens) and
    /// returns the state after each row's last prompt token. Checks the ids and lengths.
    fn warm(&self, prompts: Tensor<B, 2, Int>, lengths: &[usize]) -> Result<State<B>>;

    /// The logits `o` of the next token, `[batch, output_size]`, from a state.
    fn next_logits(&self, state: &State<B>) -> Tensor<B, 2>;

    /// Feeds the chosen tokens `[batch]` back: the state after them.
    fn feed(&self, state: State<B>, tokens: Tensor<B, 1, Int>) -> State<B>;

    /// The model's generation step as plain matrices, starting from `state`, for backends that
    /// run the whole free-running loop as one operation (see
    /// [`generate`](crate::sample::generate)). `None`, the default, keeps the step-by-step loop
    /// of [`next_logits`](Self::next_logits) and [`feed`](Self::feed); only unfold's own models
    /// can describe themselves this way.
    #[doc(hidden)]
    fn generation_net(&self, state: &State<B>) -> Option<GenerationNet<B>> {
        let _ = state;
        None
    }
}
