//! The per-step model: a stack of recurrent layers read out at every step,
//! `o(t) = c + V h(t)`, for any cell.
//!
//! [`ElmanRnn`](crate::ElmanRnn) is this model over Elman cells (with its fused kernels);
//! the gated cells of [`crate::gated`] make an LSTM or GRU language model the same way.

use burn::module::Module;
use burn::tensor::{backend::Backend, Int, Tensor};

use crate::error::{Error, Result};
use crate::loss::{try_readout_nll, Reduction};
use crate::model::{Autoregressive, RnnLoss, RnnOutput, SequenceModel};
use crate::readout::Readout;
use crate::recurrence::{Recurrence, SequenceInput, State, UnrollOptions, Unrolled};
use crate::sample::{check_feeds_back, GenerationNet};
use crate::stack::RecurrentStack;

/// A [`RecurrentStack`] of cells `C` read out by `o(t) = c + V h(t)` at every step.
#[derive(Module, Debug)]
pub struct StackedRnn<B: Backend, C: Module<B>> {
    /// The recurrence: every layer and direction.
    pub stack: RecurrentStack<B, C>,
    /// The output layer: `V`, `c`.
    pub readout: Readout<B>,
}

impl<B: Backend, C: Recurrence<B> + Module<B>> StackedRnn<B, C> {
    /// A model from its parts; checks that the readout reads the stack's output width.
    pub fn try_new(stack: RecurrentStack<B, C>, readout: Readout<B>) -> Result<Self> {
        if readout.hidden_size() != stack.output_size() {
            return Err(Error::config(
                "readout",
                format!("reading {} features", readout.hidden_size()),
                format!("must read the stack's {} features", stack.output_size()),
            ));
        }
        Ok(Self { stack, readout })
    }

    /// The bottom layer's forward cell: the whole recurrence of a one-layer network.
    pub fn cell(&self) -> &C {
        &self.stack.layers[0]
    }

    /// Every state of the sequence, checked (the shared first half of forward and loss).
    fn unrolled(&self, input: SequenceInput<B>, options: &UnrollOptions<B>) -> Result<Unrolled<B>> {
        options.refuse_forcing("this model")?;
        self.stack.try_forward(input, options)
    }
}

impl<B: Backend, C: Recurrence<B> + Module<B>> SequenceModel<B> for StackedRnn<B, C> {
    fn input_size(&self) -> usize {
        self.stack.input_size()
    }

    fn hidden_size(&self) -> usize {
        self.stack.output_size()
    }

    fn output_size(&self) -> usize {
        self.readout.output_size()
    }

    fn try_forward(
        &self,
        input: impl Into<SequenceInput<B>>,
        options: &UnrollOptions<B>,
    ) -> Result<RnnOutput<B>> {
        let Unrolled {
            states,
            last,
            final_state,
        } = self.unrolled(input.into(), options)?;
        Ok(RnnOutput {
            logits: self.readout.forward(states.clone()),
            states,
            last,
            final_state,
            fed_back: None,
        })
    }

    fn try_loss(
        &self,
        input: impl Into<SequenceInput<B>>,
        targets: Tensor<B, 2, Int>,
        options: &UnrollOptions<B>,
        reduction: Reduction,
    ) -> Result<RnnLoss<B>> {
        let Unrolled {
            states,
            last,
            final_state,
        } = self.unrolled(input.into(), options)?;
        let loss = try_readout_nll(
            states,
            &self.readout,
            targets,
            options.lengths.as_deref(),
            reduction,
        )?;
        Ok(RnnLoss {
            loss,
            last,
            final_state,
        })
    }
}

/// A language model: the state is every layer's state, the fed-back token is the next input
/// `x(t+1)`.
impl<B: Backend, C: Recurrence<B> + Module<B>> Autoregressive<B> for StackedRnn<B, C> {
    fn warm(&self, prompts: Tensor<B, 2, Int>, lengths: &[usize]) -> Result<State<B>> {
        check_feeds_back("this model", self.input_size(), self.output_size())?;
        if self.stack.is_bidirectional() {
            return Err(Error::config(
                "bidirectional",
                true,
                "a bidirectional model reads each sequence from its end too, so it cannot \
                 generate one token at a time",
            ));
        }
        let options = UnrollOptions::new().with_lengths(lengths);
        Ok(self.stack.try_forward(prompts, &options)?.final_state)
    }

    /// The readout of the top layer's `h`.
    fn next_logits(&self, state: &State<B>) -> Tensor<B, 2> {
        self.readout.forward(self.stack.top_output(state))
    }

    /// `hᵏ(t+1) = fᵏ(hᵏ(t), hᵏ⁻¹(t+1))`, with `h⁰(t+1) = ŷ(t)`.
    fn feed(&self, state: State<B>, tokens: Tensor<B, 1, Int>) -> State<B> {
        let drive = self
            .cell()
            .drive(SequenceInput::Tokens(tokens.unsqueeze_dim(1)));
        self.stack
            .step(state, crate::recurrence::drive_at(&drive, 0))
    }

    /// Every layer's matrices, when every layer is an Elman cell (one state part each) and no
    /// dropout would apply between them (dropout is active on an autodiff backend).
    fn generation_net(&self, state: &State<B>) -> Option<GenerationNet<B>> {
        let dropout = B::ad_enabled(&state.output().device()) && self.stack.dropout.prob > 0.0;
        if self.stack.is_bidirectional() || dropout {
            return None;
        }
        let layers = self
            .stack
            .layers
            .iter()
            .map(Recurrence::generation_layer)
            .collect::<Option<Vec<_>>>()?;
        if state.parts().len() != layers.len() {
            return None;
        }
        let readout = &self.readout;
        Some(GenerationNet::new(
            layers,
            readout.v.val(),
            readout.c.as_ref().map(|c| c.val()),
            state.parts().to_vec(),
        ))
    }
}
