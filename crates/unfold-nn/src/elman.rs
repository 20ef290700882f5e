//! The hidden-to-hidden (Elman) recurrence and the language model built on it.
//!
//! ```text
//! a(t) = b + W h(t-1) + U x(t)
//! h(t) = tanh(a(t))
//! o(t) = c + V h(t)
//! ŷ(t) = softmax(o(t))
//! ```
//!
//! Parameters are stored as burn-nn's `Linear` stores them, `[fan_in, fan_out]`, so in the
//! row-per-sequence layout Burn uses the products read `x U` and `h W` (the textbook's `U x` and
//! `W h` on column vectors, transposed).

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::tensor::{backend::Backend, Tensor};

use crate::error::Result;
use crate::init;
use crate::kernel::{input_drive, tanh_recurrence, tanh_step};
use crate::readout::{Readout, ReadoutConfig};
use crate::recurrence::{unroll, Recurrence, SequenceInput, StepPlan, UnrollOptions, Unrolled};

/// Configuration of an [`ElmanCell`].
#[derive(Config, Debug)]
pub struct ElmanCellConfig {
    /// Width of `x(t)`: the feature count for dense input, the vocabulary size for token ids.
    pub input_size: usize,
    /// Width of `h(t)`.
    pub hidden_size: usize,
    /// Whether `a(t)` has a bias `b`.
    #[config(default = true)]
    pub bias: bool,
    /// Initialiser of `U` and `W`; `b` starts at zero. Default: PyTorch's `nn.RNN`,
    /// `U(-1/√fan_in, 1/√fan_in)`.
    #[config(default = "crate::init::default_initializer()")]
    pub initializer: Initializer,
}

/// One step of the hidden-to-hidden recurrence: `h(t) = tanh(b + W h(t-1) + U x(t))`.
#[derive(Module, Debug)]
pub struct ElmanCell<B: Backend> {
    /// Input-to-hidden weights `U`, `[input_size, hidden_size]`.
    pub u: Param<Tensor<B, 2>>,
    /// Hidden-to-hidden weights `W`, `[hidden_size, hidden_size]`.
    pub w: Param<Tensor<B, 2>>,
    /// Hidden bias `b`, `[hidden_size]`.
    pub b: Option<Param<Tensor<B, 1>>>,
}

impl ElmanCellConfig {
    /// Initialises an [`ElmanCell`] on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ElmanCell<B> {
        ElmanCell {
            u: init::weight(&self.initializer, self.input_size, self.hidden_size, device),
            w: init::weight(
                &self.initializer,
                self.hidden_size,
                self.hidden_size,
                device,
            ),
            b: init::bias(self.bias, self.hidden_size, device),
        }
    }
}

impl<B: Backend> Recurrence<B> for ElmanCell<B> {
    fn input_size(&self) -> usize {
        self.u.dims()[0]
    }

    fn state_size(&self) -> usize {
        self.w.dims()[0]
    }

    /// `b + U x(t)` for every step at once ([`input_drive`]).
    fn drive(&self, input: SequenceInput<B>) -> Tensor<B, 3> {
        input_drive(self.u.val(), self.b.as_ref().map(Param::val), input)
    }

    /// `h(t) = tanh(drive(t) + W h(t-1))`.
    fn step(&self, h: Tensor<B, 2>, drive: Tensor<B, 2>) -> Tensor<B, 2> {
        tanh_step(h, drive, &self.w.val())
    }

    /// The whole sequence through the tanh-recurrence kernel.
    fn scan(&self, drive: Tensor<B, 3>, h0: Tensor<B, 2>, plan: &StepPlan<B>) -> Unrolled<B> {
        tanh_recurrence(drive, self.w.val(), h0, plan)
    }
}

/// Configuration of an [`ElmanRnn`].
#[derive(Config, Debug)]
pub struct ElmanRnnConfig {
    /// Width of `x(t)`: the feature count for dense input, the vocabulary size for token ids.
    pub input_size: usize,
    /// Width of `h(t)`.
    pub hidden_size: usize,
    /// Width of `o(t)`: the number of classes (the vocabulary size for a language model).
    pub output_size: usize,
    /// Whether `a(t)` and `o(t)` have the biases `b` and `c`.
    #[config(default = true)]
    pub bias: bool,
    /// Initialiser of `U`, `W` and `V`; biases start at zero. Default: PyTorch's,
    /// `U(-1/√fan_in, 1/√fan_in)`.
    #[config(default = "crate::init::default_initializer()")]
    pub initializer: Initializer,
}

/// The hidden-to-hidden RNN: an [`ElmanCell`] read out by `o(t) = c + V h(t)` at every step.
///
/// Train it with [`sequence_nll`](crate::loss::sequence_nll) on [`RnnOutput::logits`]; its
/// gradients are back-propagation through time by Burn's autodiff through the unrolled graph.
#[derive(Module, Debug)]
pub struct ElmanRnn<B: Backend> {
    /// The recurrence: `U`, `W`, `b`.
    pub cell: ElmanCell<B>,
    /// The output layer: `V`, `c`.
    pub readout: Readout<B>,
}

/// What a sequence model returns for a batch.
#[derive(Debug, Clone)]
pub struct RnnOutput<B: Backend> {
    /// `o(t)` for every step, `[batch, time, output_size]`.
    pub logits: Tensor<B, 3>,
    /// `h(t)` for every step, `[batch, time, hidden_size]`.
    pub states: Tensor<B, 3>,
    /// Each sequence's final state `[batch, hidden_size]`, to carry into the next chunk.
    pub last: Tensor<B, 2>,
}

/// What [`ElmanRnn::try_loss`] returns.
#[derive(Debug, Clone)]
pub struct RnnLoss<B: Backend> {
    /// The reduced sequence negative log-likelihood, `[1]`.
    pub loss: Tensor<B, 1>,
    /// Each sequence's final state `[batch, hidden_size]`, to carry into the next chunk.
    pub last: Tensor<B, 2>,
}

impl ElmanRnnConfig {
    /// Checks the sizes, then initialises an [`ElmanRnn`] on `device`.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> Result<ElmanRnn<B>> {
        crate::error::check_sizes(&[
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("output_size", self.output_size),
        ])?;
        crate::error::check_initializer(&self.initializer)?;
        let cell = ElmanCellConfig::new(self.input_size, self.hidden_size)
            .with_bias(self.bias)
            .with_initializer(self.initializer.clone())
            .init(device);
        let readout = ReadoutConfig::new(self.hidden_size, self.output_size)
            .with_bias(self.bias)
            .with_initializer(self.initializer.clone())
            .init(device);
        Ok(ElmanRnn { cell, readout })
    }

    /// Initialises an [`ElmanRnn`] on `device`; panics with a clear message on a zero size
    /// (see [`try_init`](Self::try_init)).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ElmanRnn<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl<B: Backend> ElmanRnn<B> {
    /// Runs the whole sequence: every state and every output.
    ///
    /// `input` is dense `[batch, time, input_size]` or token ids `[batch, time]`. Checks its
    /// shape, ids, lengths and initial state, and names the problem in the error.
    pub fn try_forward(
        &self,
        input: impl Into<SequenceInput<B>>,
        options: &UnrollOptions<B>,
    ) -> Result<RnnOutput<B>> {
        let Unrolled { states, last } = unroll(&self.cell, input, options)?;
        let logits = self.readout.forward(states.clone());
        Ok(RnnOutput {
            logits,
            states,
            last,
        })
    }

    /// [`try_forward`](Self::try_forward), panicking with its error message.
    pub fn forward(
        &self,
        input: impl Into<SequenceInput<B>>,
        options: &UnrollOptions<B>,
    ) -> RnnOutput<B> {
        self.try_forward(input, options)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The training loss in one pass: the sequence negative log-likelihood of `targets`
    /// `[batch, time]` under the model's outputs, equal (values and gradients) to
    /// `sequence_nll(forward(input).logits, targets, lengths, reduction)` with the lengths of
    /// `options`, but with the readout, log-softmax and loss fused into one operation (see
    /// [`try_readout_nll`](crate::loss::try_readout_nll)): the logits are never materialised as
    /// a tensor. Use [`try_forward`](Self::try_forward) when you want the logits themselves.
    pub fn try_loss(
        &self,
        input: impl Into<SequenceInput<B>>,
        targets: Tensor<B, 2, burn::tensor::Int>,
        options: &UnrollOptions<B>,
        reduction: crate::loss::Reduction,
    ) -> Result<RnnLoss<B>> {
        let Unrolled { states, last } = unroll(&self.cell, input, options)?;
        let loss = crate::loss::try_readout_nll(
            states,
            &self.readout,
            targets,
            options.lengths.as_deref(),
            reduction,
        )?;
        Ok(RnnLoss { loss, last })
    }

    /// [`try_loss`](Self::try_loss), panicking with its error message.
    pub fn loss(
        &self,
        input: impl Into<SequenceInput<B>>,
        targets: Tensor<B, 2, burn::tensor::Int>,
        options: &UnrollOptions<B>,
        reduction: crate::loss::Reduction,
    ) -> RnnLoss<B> {
        self.try_loss(input, targets, options, reduction)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Width of `x(t)`.
    pub fn input_size(&self) -> usize {
        self.cell.input_size()
    }

    /// Width of `h(t)`.
    pub fn hidden_size(&self) -> usize {
        self.cell.state_size()
    }

    /// Width of `o(t)`.
    pub fn output_size(&self) -> usize {
        self.readout.output_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use burn::tensor::{Distribution, Int, TensorData, Tolerance};

    type TestBackend = burn::backend::NdArray<f64>;
    type Device = burn::backend::ndarray::NdArrayDevice;

    fn model(device: &Device) -> ElmanRnn<TestBackend> {
        // Large weights, so that every input visibly moves every later state.
        ElmanRnnConfig::new(3, 5, 4)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.8,
            })
            .init(device)
    }

    fn inputs(batch: usize, time: usize, device: &Device) -> Tensor<TestBackend, 3> {
        Tensor::random([batch, time, 3], Distribution::Normal(0.0, 1.0), device)
    }

    fn steps(x: &Tensor<TestBackend, 3>, range: std::ops::Range<usize>) -> Tensor<TestBackend, 3> {
        let [batch, _, width] = x.dims();
        x.clone().slice([0..batch, range, 0..width])
    }

    fn exact() -> Tolerance<f64> {
        Tolerance::absolute(1e-12)
    }

    #[test]
    fn outputs_do_not_depend_on_future_inputs() {
        let device = Default::default();
        let model = model(&device);
        let x = inputs(2, 6, &device);
        let before = model.forward(x.clone(), &UnrollOptions::new()).logits;
        // Change steps 3.. only: outputs 0..3 must not move, output 3 must.
        let changed = Tensor::cat(vec![steps(&x, 0..3), inputs(2, 3, &device)], 1);
        let after = model.forward(changed, &UnrollOptions::new()).logits;
        steps(&after, 0..3)
            .into_data()
            .assert_approx_eq::<f64>(&steps(&before, 0..3).into_data(), exact());
        let moved = (steps(&after, 3..4) - steps(&before, 3..4))
            .abs()
            .max()
            .into_scalar();
        assert!(moved > 1e-6, "output 3 should depend on input 3");
    }

    #[test]
    fn batch_rows_are_independent() {
        let device = Default::default();
        let model = model(&device);
        let x = inputs(3, 5, &device);
        let together = model.forward(x.clone(), &UnrollOptions::new()).logits;
        for row in 0..3 {
            let alone = model
                .forward(
                    x.clone().slice([row..row + 1, 0..5, 0..3]),
                    &UnrollOptions::new(),
                )
                .logits;
            let in_batch = together.clone().slice([row..row + 1, 0..5, 0..4]);
            in_batch
                .into_data()
                .assert_approx_eq::<f64>(&alone.into_data(), exact());
        }
    }

    #[test]
    fn padding_changes_nothing_at_valid_steps() {
        let device = Default::default();
        let model = model(&device);
        let short = inputs(1, 3, &device);
        let alone = model.forward(short.clone(), &UnrollOptions::new());
        for pad in [1, 4] {
            // Padding of garbage (large values): the lengths must keep it out.
            let garbage = Tensor::random([1, pad, 3], Distribution::Uniform(-50.0, 50.0), &device);
            let padded = Tensor::cat(vec![short.clone(), garbage], 1);
            let out = model.forward(padded, &UnrollOptions::new().with_lengths([3]));
            steps(&out.logits, 0..3)
                .into_data()
                .assert_approx_eq::<f64>(&alone.logits.clone().into_data(), exact());
            out.last
                .into_data()
                .assert_approx_eq::<f64>(&alone.last.clone().into_data(), exact());
        }
    }

    #[test]
    fn same_parameters_run_sequences_of_any_length() {
        let device = Default::default();
        let model = model(&device);
        let long = inputs(1, 500, &device);
        let full = model.forward(long.clone(), &UnrollOptions::new());
        assert_eq!(full.logits.dims(), [1, 500, 4]);
        assert!(full.logits.clone().is_finite().all().into_scalar());
        // Any prefix, run on its own, gives the same states as inside the long run.
        for len in [1, 2, 17, 499] {
            let prefix = model.forward(steps(&long, 0..len), &UnrollOptions::new());
            prefix
                .states
                .into_data()
                .assert_approx_eq::<f64>(&steps(&full.states, 0..len).into_data(), exact());
        }
    }

    #[test]
    fn token_ids_are_a_lookup_of_the_one_hot_product() {
        let device = Default::default();
        let model = model(&device);
        let ids = Tensor::<TestBackend, 2, Int>::from_data([[0, 2, 1, 1], [2, 2, 0, 1]], &device);
        let one_hot = ids.clone().one_hot::<3>(3).float();
        let by_id = model.forward(ids, &UnrollOptions::new()).logits;
        let by_product = model.forward(one_hot, &UnrollOptions::new()).logits;
        by_id
            .into_data()
            .assert_approx_eq::<f64>(&by_product.into_data(), exact());
    }

    #[test]
    fn bad_input_is_a_named_error_not_a_panic_in_burn() {
        let device = Default::default();
        let model = model(&device);
        let options = UnrollOptions::new();
        let err =
            |input: SequenceInput<TestBackend>| model.try_forward(input, &options).unwrap_err();

        let wrong_width = Tensor::<TestBackend, 3>::zeros([2, 4, 7], &device);
        assert!(matches!(
            err(wrong_width.into()),
            Error::Shape { arg: "input", .. }
        ));
        let ids = Tensor::<TestBackend, 2, Int>::from_data([[0, 3]], &device);
        assert!(matches!(
            err(ids.into()),
            Error::TokenOutOfRange {
                id: 3,
                vocab_size: 3,
                ..
            }
        ));
        let negative = Tensor::<TestBackend, 2, Int>::from_data([[-1, 0]], &device);
        assert!(matches!(
            err(negative.into()),
            Error::TokenOutOfRange { id: -1, .. }
        ));
        let empty_batch = Tensor::<TestBackend, 3>::zeros([0, 4, 3], &device);
        assert!(matches!(err(empty_batch.into()), Error::Empty { .. }));
        let zero_length = Tensor::<TestBackend, 3>::zeros([2, 0, 3], &device);
        assert!(matches!(err(zero_length.into()), Error::Empty { .. }));
        let nan = Tensor::<TestBackend, 3>::from_data(
            TensorData::new(vec![f64::NAN; 3], [1, 1, 3]),
            &device,
        );
        assert!(matches!(err(nan.into()), Error::NonFinite { .. }));
        let too_long = UnrollOptions::new().with_lengths([5, 2]);
        let x = inputs(2, 4, &device);
        let message = model.try_forward(x, &too_long).unwrap_err().to_string();
        assert!(
            message.contains("[0] = 5") && message.contains("1..=4"),
            "{message}"
        );
    }

    #[test]
    #[should_panic(expected = "`input` has shape [1, 2, 9], expected [batch, time, 3]")]
    fn forward_panics_with_the_same_clear_message() {
        let device = Default::default();
        model(&device).forward(
            Tensor::<TestBackend, 3>::zeros([1, 2, 9], &device),
            &UnrollOptions::new(),
        );
    }

    #[test]
    fn zero_sizes_are_config_errors() {
        let device = Default::default();
        let err = ElmanRnnConfig::new(3, 0, 4)
            .try_init::<TestBackend>(&device)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad config: `hidden_size` = 0: must be at least 1"
        );
    }

    #[test]
    fn config_defaults_match_pytorch_rnn() {
        let config = ElmanRnnConfig::new(3, 5, 4);
        assert!(config.bias);
        let device = Default::default();
        let model = config.init::<TestBackend>(&device);
        // U(-1/√fan_in, 1/√fan_in), zero biases.
        let bound = 1.0 / 5f64.sqrt();
        let w = model.cell.w.val().abs().max().into_scalar();
        assert!(
            w <= bound && w > 0.3 * bound,
            "max |W| = {w}, bound {bound}"
        );
        assert_eq!(
            model
                .cell
                .b
                .as_ref()
                .unwrap()
                .val()
                .abs()
                .sum()
                .into_scalar(),
            0.0
        );
    }
}
