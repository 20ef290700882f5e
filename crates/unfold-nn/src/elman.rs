//! The hidden-to-hidden (Elman) recurrence and the language model built on it.
//!
//! ```text
//! a(t) = b + W h(t-1) + U x(t)
//! h(t) = tanh(a(t))                 (or ReLU: ElmanCellConfig::nonlinearity)
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

use crate::error::{check_initializer, check_sizes, Result};
use crate::init;
use crate::layout::linear_rows;
use crate::memory::{self, MemoryEstimate};
use crate::nonlinearity::Nonlinearity;
use crate::ops::{embedding::embedding_with_bias, recurrence};
use crate::readout::ReadoutConfig;
use crate::recurrence::{Recurrence, SequenceInput, State, StepPlan, Unrolled};
use crate::rnn::StackedRnn;
use crate::stack::RecurrentStack;

/// `b + x(t) U` for every step at once, `[batch, time, hidden]`, from `u` `[input, hidden]` and
/// the bias `b` `[hidden]` if any. For token ids `x(t) U` is row `x(t)` of `U` (the one-hot
/// product without multiplying by zeros), and with a bias the lookup and the add are one fused
/// pass ([`embedding_with_bias`]). Shared by every model with an input-to-hidden layer.
pub(crate) fn input_drive<B: Backend>(
    u: Tensor<B, 2>,
    b: Option<Tensor<B, 1>>,
    input: SequenceInput<B>,
) -> Tensor<B, 3> {
    match (input, b) {
        (SequenceInput::Tokens(ids), Some(b)) => embedding_with_bias(u, b, ids),
        (SequenceInput::Tokens(ids), None) => burn::tensor::module::embedding(u, ids),
        (SequenceInput::Dense(x), b) => linear_rows(x, u, b),
    }
}

/// A maker of Elman cells with these settings, for [`RecurrentStack::try_build`]:
/// `make(input_size, hidden_size)`.
pub(crate) fn elman_cells<'a, B: Backend>(
    bias: bool,
    nonlinearity: Nonlinearity,
    initializer: &'a Initializer,
    device: &'a B::Device,
) -> impl FnMut(usize, usize) -> ElmanCell<B> + 'a {
    move |input_size, hidden_size| {
        ElmanCellConfig::new(input_size, hidden_size)
            .with_bias(bias)
            .with_nonlinearity(nonlinearity)
            .with_initializer(initializer.clone())
            .init(device)
    }
}

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
    /// `h(t) = act(a(t))`: tanh (the textbook's, PyTorch's default) or ReLU.
    #[config(default = "Nonlinearity::Tanh")]
    pub nonlinearity: Nonlinearity,
    /// Initialiser of `U` and `W`; `b` starts at zero. Default: PyTorch's `nn.RNN`,
    /// `U(-1/√fan_in, 1/√fan_in)`.
    #[config(default = "crate::init::default_initializer()")]
    pub initializer: Initializer,
}

/// One step of the hidden-to-hidden recurrence: `h(t) = act(b + W h(t-1) + U x(t))`.
#[derive(Module, Debug)]
pub struct ElmanCell<B: Backend> {
    /// Input-to-hidden weights `U`, `[input_size, hidden_size]`.
    pub u: Param<Tensor<B, 2>>,
    /// Hidden-to-hidden weights `W`, `[hidden_size, hidden_size]`.
    pub w: Param<Tensor<B, 2>>,
    /// Hidden bias `b`, `[hidden_size]`.
    pub b: Option<Param<Tensor<B, 1>>>,
    /// The nonlinearity `act`.
    pub nonlinearity: Nonlinearity,
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
            nonlinearity: self.nonlinearity,
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

    /// `b + x(t) U` for every step at once ([`input_drive`]).
    fn drive(&self, input: SequenceInput<B>) -> Tensor<B, 3> {
        input_drive(self.u.val(), self.b.as_ref().map(Param::val), input)
    }

    /// `h(t) = act(drive(t) + h(t-1) W)`.
    fn step(&self, h: Tensor<B, 2>, drive: Tensor<B, 2>) -> Tensor<B, 2> {
        recurrence::step(h, drive, &self.w.val(), self.nonlinearity)
    }

    fn generation_layer(&self) -> Option<crate::sample::GenerationLayer<B>> {
        Some(crate::sample::GenerationLayer::new(
            self.u.val(),
            self.b.as_ref().map(Param::val),
            Some(self.w.val()),
            self.nonlinearity,
        ))
    }

    /// The whole sequence through the fused recurrence ([`recurrence::recurrence`]).
    fn scan(
        &self,
        drive: Tensor<B, 3>,
        initial: State<B>,
        plan: &StepPlan<B>,
    ) -> Result<Unrolled<B>> {
        let h0 = initial.into_output();
        Ok(recurrence::recurrence(
            drive,
            self.w.val(),
            h0,
            plan,
            self.nonlinearity,
        ))
    }
}

/// Configuration of an [`ElmanRnn`], with the arguments of PyTorch's `nn.RNN` (layers,
/// directions, nonlinearity, bias, dropout) and an output size.
#[derive(Config, Debug)]
pub struct ElmanRnnConfig {
    /// Width of `x(t)`: the feature count for dense input, the vocabulary size for token ids.
    pub input_size: usize,
    /// Width of each layer's `h(t)` (per direction).
    pub hidden_size: usize,
    /// Width of `o(t)`: the number of classes (the vocabulary size for a language model).
    pub output_size: usize,
    /// Number of stacked layers; layer `k + 1` reads layer `k`'s states. Default 1 (the
    /// textbook's network).
    #[config(default = 1)]
    pub num_layers: usize,
    /// Whether every layer also reads each sequence backwards (from its own last valid step)
    /// and concatenates both directions' states. Default false. (A bidirectional model sees
    /// the future: fine for tagging, not for a language model.)
    #[config(default = false)]
    pub bidirectional: bool,
    /// `h(t) = act(a(t))`: tanh (the textbook's, PyTorch's default) or ReLU.
    #[config(default = "Nonlinearity::Tanh")]
    pub nonlinearity: Nonlinearity,
    /// Whether `a(t)` and `o(t)` have the biases `b` and `c`.
    #[config(default = true)]
    pub bias: bool,
    /// Dropout probability on the states every layer but the top one hands to the next
    /// (training only, as PyTorch's), in `[0, 1)`. Default 0.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Initialiser of `U`, `W` and `V`; biases start at zero. Default: PyTorch's,
    /// `U(-1/√fan_in, 1/√fan_in)`.
    #[config(default = "crate::init::default_initializer()")]
    pub initializer: Initializer,
}

/// The hidden-to-hidden RNN: a stack of [`ElmanCell`]s (one by default) read out by
/// `o(t) = c + V h(t)` at every step (a [`StackedRnn`] of Elman cells).
///
/// A [`SequenceModel`]: train it with [`SequenceModel::try_loss`] (or
/// [`sequence_nll`](crate::loss::sequence_nll) on
/// [`RnnOutput::logits`](crate::RnnOutput::logits)); its gradients are back-propagation through
/// time by Burn's autodiff, with each layer's recurrence as one fused node.
pub type ElmanRnn<B> = StackedRnn<B, ElmanCell<B>>;

/// Parameters of one Elman cell reading `input` features into `hidden`: `U`, `W`, `b`.
pub(crate) fn elman_cell_parameters(input: u64, hidden: u64, bias: bool) -> u64 {
    memory::sum_of_products(&[&[input, hidden], &[hidden, hidden], &[hidden * bias as u64]])
}

impl ElmanRnnConfig {
    fn directions(&self) -> usize {
        1 + self.bidirectional as usize
    }

    /// The number of parameters of the model: every layer's `U`, `W`, `b` and the readout's
    /// `V`, `c` (`u64::MAX` if the count overflows).
    pub fn parameter_count(&self) -> u64 {
        let bias = self.bias;
        let stack = memory::stack_parameters(
            self.input_size,
            self.hidden_size,
            self.num_layers,
            self.directions(),
            |input, hidden| elman_cell_parameters(input, hidden, bias),
        );
        let read_from = (self.directions() * self.hidden_size) as u64;
        let out = self.output_size as u64;
        memory::sum_of_products(&[&[stack], &[read_from, out], &[out * bias as u64]])
    }

    /// What one training step (forward, BPTT, Adam) of `batch` sequences of `time` steps keeps
    /// at its peak, in f32 ([`memory`]): the parameters, their gradients and Adam's moments, and
    /// per layer and direction seven `[batch, time, hidden]` buffers (the drive, the states and
    /// both their gradients, and the kernels' temporaries: the measured peak is ≈ 6.5 of them,
    /// `tests/memory_estimate.rs`), the readout loss's `G`, the dropout masks, the token batch.
    pub fn training_memory(&self, batch: usize, time: usize) -> MemoryEstimate {
        let parameters = self.parameter_count();
        let tokens = memory::mul(&[batch, time]);
        let (hidden, layers) = (self.hidden_size as u64, self.num_layers as u64);
        let dirs = self.directions() as u64;
        let dropout_masks = if self.dropout > 0.0 { layers } else { 0 };
        let activations = memory::sum_of_products(&[
            &[7, tokens, hidden, dirs, layers],
            &[tokens, self.output_size as u64],
            &[tokens, hidden, dirs, dropout_masks],
            &[4, tokens], // the input and target ids, i64
        ]);
        MemoryEstimate::from_floats(parameters, activations)
    }

    /// Checks the sizes, then initialises an [`ElmanRnn`] on `device`. Sizes whose parameters
    /// do not fit in the memory the process can have are an [`Error::TooLarge`] naming the
    /// field to shrink.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> Result<ElmanRnn<B>> {
        check_sizes(&[("output_size", self.output_size)])?;
        let sizes = [
            ("hidden_size", self.hidden_size),
            ("input_size", self.input_size),
            ("output_size", self.output_size),
            ("num_layers", self.num_layers),
        ];
        memory::check_parameters(&sizes, |v| {
            ElmanRnnConfig {
                hidden_size: v[0],
                input_size: v[1],
                output_size: v[2],
                num_layers: v[3],
                ..self.clone()
            }
            .parameter_count()
        })?;
        let cells = elman_cells(self.bias, self.nonlinearity, &self.initializer, device);
        self.try_init_with(device, cells)
    }

    /// Initialises an [`ElmanRnn`] on `device`; panics with a clear message on a zero size
    /// (see [`try_init`](Self::try_init)).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ElmanRnn<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The same per-step model with any cell: `make_cell(input_size, hidden_size)` is called
    /// once per layer and direction (see [`RecurrentStack::try_build`]); `bias` and
    /// `initializer` then configure the readout only (the cell decides for itself, and
    /// `nonlinearity` is the Elman cell's). E.g. an LSTM language model:
    /// `ElmanRnnConfig::new(65, 256, 65).try_init_with(&device, |i, h| LstmCellConfig::new(i, h).init(&device))`.
    pub fn try_init_with<B: Backend, C: Recurrence<B> + Module<B>>(
        &self,
        device: &B::Device,
        make_cell: impl FnMut(usize, usize) -> C,
    ) -> Result<StackedRnn<B, C>> {
        check_sizes(&[("output_size", self.output_size)])?;
        check_initializer(&self.initializer)?;
        let stack = RecurrentStack::try_build(
            self.input_size,
            self.hidden_size,
            self.num_layers,
            self.bidirectional,
            self.dropout,
            make_cell,
        )?;
        let readout = ReadoutConfig::new(stack.output_size(), self.output_size)
            .with_bias(self.bias)
            .with_initializer(self.initializer.clone())
            .init(device);
        StackedRnn::try_new(stack, readout)
    }
}

/// The configuration of a [`StackedRnn`] of any cell: the same fields, built with
/// [`ElmanRnnConfig::try_init_with`].
pub type StackedRnnConfig = ElmanRnnConfig;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::model::SequenceModel;
    use crate::recurrence::UnrollOptions;
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
        let w = model.cell().w.val().abs().max().into_scalar();
        assert!(
            w <= bound && w > 0.3 * bound,
            "max |W| = {w}, bound {bound}"
        );
        assert_eq!(
            model
                .cell()
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
