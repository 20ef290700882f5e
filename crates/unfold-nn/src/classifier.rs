//! Single output at the end: reading a whole sequence into a fixed-size summary.
//!
//! The textbook's sequence-to-one network (Goodfellow et al., fig. 10.5) reads every step with
//! the same recurrence and emits one output after the last:
//!
//! ```text
//! h(t) = f(h(t-1), x(t); θ)       t = 1 .. τ       (any Recurrence; ElmanCell by default)
//! o    = c + V h(τ)                                 (one output, read from the summary)
//! L    = -log softmax(o)[y]                         (one loss, at the end)
//! ```
//!
//! Because `θ` is shared by every step, a pattern (a year in "I went to Nepal in 2009") is
//! detected wherever it appears, and sequences of any length map to the same fixed-size `h(τ)`.
//!
//! - [`SequenceEncoder`]: the recurrence part, `x(1..τ) → h(τ)`: a
//!   [`RecurrentStack`] (layers, directions, dropout, per-sequence lengths: each sequence
//!   summarised at its own last valid step) and a choice of [`Pooling`]. It is a plain Burn
//!   module, so it can be a field of a larger model whose own head and loss train it.
//! - [`SequenceClassifier`]: a [`SequenceEncoder`] plus one [`Readout`], `o = c + V h(τ)`.
//!   With `output_size = 1` and [`mean_squared_error`] it is a sequence regressor.
//! - [`classification_nll`], [`accuracy`], [`mean_squared_error`]: the end-of-sequence losses,
//!   with shapes and labels checked.
//!
//! Both modules are generic over the cell: `SequenceClassifier<B>` is Elman-based, and
//! `SequenceClassifier<B, C>` runs any `C: Recurrence<B> + Module<B>` (build it with
//! [`SequenceClassifierConfig::try_init_with`]).
//!
//! # Example
//!
//! ```
//! use burn::tensor::{Int, Tensor};
//! use unfold_nn::classifier::{classification_nll, Pooling, SequenceEncoderConfig};
//! use unfold_nn::UnrollOptions;
//!
//! type B = burn::backend::NdArray;
//! let device = Default::default();
//!
//! // Token ids from a vocabulary of 10, two classes, read in both directions.
//! let model = SequenceEncoderConfig::new(10, 32)
//!     .with_bidirectional(true)
//!     .with_pooling(Pooling::Last)
//!     .classifier(2)
//!     .init::<B>(&device);
//! // Two sequences padded to 4 steps; the second has 2 valid steps.
//! let ids = Tensor::<B, 2, Int>::from_data([[3, 1, 4, 1], [5, 9, 0, 0]], &device);
//! let options = UnrollOptions::new().with_lengths([4, 2]);
//! let summary = model.encode(ids.clone(), &options); // h(τ), for a larger model
//! assert_eq!(summary.dims(), [2, 64]);
//! let logits = model.forward(ids, &options); // o = c + V h(τ)
//! let labels = Tensor::<B, 1, Int>::from_data([1, 0], &device);
//! let loss = classification_nll(logits, labels);
//! assert!(loss.into_scalar() > 0.0);
//! ```

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::loss::CrossEntropyLoss;
use burn::tensor::{backend::Backend, ElementConversion, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::elman::{elman_cell_parameters, elman_cells, ElmanCell};
use crate::error::{check_initializer, check_sizes, Error, Result};
use crate::memory::{self, MemoryEstimate};
use crate::nonlinearity::Nonlinearity;
use crate::readout::{Readout, ReadoutConfig};
use crate::recurrence::{valid_mask, Recurrence, SequenceInput, UnrollOptions, Unrolled};
use crate::stack::RecurrentStack;

/// How the states of the top layer become the fixed-size summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Pooling {
    /// `h(τ_b)`: each sequence's state at its own last valid step. With a reversed direction,
    /// that direction's part is its state after reading back to step 0 (as PyTorch's `h_n`).
    #[default]
    Last,
    /// `h̄ = (1/τ_b) Σ_{t ≤ τ_b} h(t)`: the mean of the states over each sequence's valid steps
    /// (padding excluded).
    Mean,
}

/// Configuration of a [`SequenceEncoder`] (and, with [`classifier`](Self::classifier), of a
/// [`SequenceClassifier`]).
#[derive(Config, Debug)]
pub struct SequenceEncoderConfig {
    /// Width of `x(t)`: the feature count for dense input, the vocabulary size for token ids.
    pub input_size: usize,
    /// Width of each layer's state `h(t)` (per direction).
    pub hidden_size: usize,
    /// Number of stacked recurrent layers; layer `k + 1` reads layer `k`'s states as dense
    /// input, with the same lengths. Default 1.
    #[config(default = 1)]
    pub num_layers: usize,
    /// Whether every layer also reads each sequence backwards (from its own last valid step to
    /// step 0) and concatenates the two directions' states. Default false.
    #[config(default = false)]
    pub bidirectional: bool,
    /// Dropout probability on the states each layer but the top one hands to the next
    /// (training only), in `[0, 1)`. Default 0.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// How the top layer's states become the summary. Default [`Pooling::Last`].
    #[config(default = "Pooling::Last")]
    pub pooling: Pooling,
    /// The Elman cells' nonlinearity (used by [`init`](Self::init) only; a custom cell from
    /// [`try_init_with`](Self::try_init_with) decides for itself). Default tanh.
    #[config(default = "Nonlinearity::Tanh")]
    pub nonlinearity: Nonlinearity,
    /// Whether the Elman cells (and a classifier's readout) have biases (as for
    /// `nonlinearity`). Default true.
    #[config(default = true)]
    pub bias: bool,
    /// Initialiser of the Elman cells' `U` and `W` and of a classifier's `V` (as for
    /// `nonlinearity`). Default: PyTorch's `U(-1/√fan_in, 1/√fan_in)`.
    #[config(default = "crate::init::default_initializer()")]
    pub initializer: Initializer,
}

/// Reads whole sequences into one fixed-size summary each: the recurrence part of a
/// sequence-to-one model.
///
/// `C` is the cell of every layer and direction (the Elman cell by default). The summary has
/// `state_size × directions` features (see [`summary_size`](Self::summary_size)).
#[derive(Module, Debug)]
pub struct SequenceEncoder<B: Backend, C: Module<B> = ElmanCell<B>> {
    /// The layers.
    pub stack: RecurrentStack<B, C>,
    /// How the summary is taken from the top layer's states.
    pub pooling: Pooling,
}

impl SequenceEncoderConfig {
    /// Number of directions: 2 when bidirectional, else 1.
    pub fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// Width of the summary for Elman cells: `hidden_size × directions`.
    pub fn summary_size(&self) -> usize {
        self.hidden_size * self.directions()
    }

    /// The configuration of a classifier: this encoder read out into `output_size` classes.
    pub fn classifier(self, output_size: usize) -> SequenceClassifierConfig {
        SequenceClassifierConfig::new(self, output_size)
    }

    /// The number of parameters of the Elman-based encoder (`u64::MAX` on overflow).
    pub fn parameter_count(&self) -> u64 {
        let bias = self.bias;
        memory::stack_parameters(
            self.input_size,
            self.hidden_size,
            self.num_layers,
            self.directions(),
            |input, hidden| elman_cell_parameters(input, hidden, bias),
        )
    }

    /// What one training step of the Elman-based encoder over `batch` sequences of `time`
    /// steps keeps at its peak, in f32 (see [`memory`]), without a head: the parameters with
    /// their gradients and Adam's moments, per layer and direction the drive, the states and
    /// both their gradients, the dropout masks, the token batch.
    pub fn training_memory(&self, batch: usize, time: usize) -> MemoryEstimate {
        let tokens = memory::mul(&[batch, time]);
        let (hidden, layers) = (self.hidden_size as u64, self.num_layers as u64);
        let dirs = self.directions() as u64;
        let dropout_masks = if self.dropout > 0.0 { layers } else { 0 };
        let activations = memory::sum_of_products(&[
            &[4, tokens, hidden, dirs, layers],
            &[tokens, hidden, dirs, dropout_masks],
            &[2, tokens],
        ]);
        MemoryEstimate::from_floats(self.parameter_count(), activations)
    }

    /// The sizes `try_init` checks the parameters' memory over, and the count for them.
    fn check_parameters(&self, extra: u64) -> Result<()> {
        let sizes = [
            ("hidden_size", self.hidden_size),
            ("input_size", self.input_size),
            ("num_layers", self.num_layers),
        ];
        memory::check_parameters(&sizes, |v| {
            SequenceEncoderConfig {
                hidden_size: v[0],
                input_size: v[1],
                num_layers: v[2],
                ..self.clone()
            }
            .parameter_count()
            .saturating_add(extra)
        })
    }

    /// Checks the sizes (and that the parameters fit in memory: an [`Error::TooLarge`]
    /// otherwise), then builds an Elman-based [`SequenceEncoder`] on `device`.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> Result<SequenceEncoder<B>> {
        check_initializer(&self.initializer)?;
        self.check_parameters(0)?;
        let cells = elman_cells(self.bias, self.nonlinearity, &self.initializer, device);
        self.try_init_with(cells)
    }

    /// [`try_init`](Self::try_init), panicking with its error message.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SequenceEncoder<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds an encoder of any cell: `make_cell(input_size, hidden_size)` is called once per
    /// layer and direction (see [`RecurrentStack::try_build`]).
    pub fn try_init_with<B: Backend, C: Recurrence<B> + Module<B>>(
        &self,
        make_cell: impl FnMut(usize, usize) -> C,
    ) -> Result<SequenceEncoder<B, C>> {
        let stack = RecurrentStack::try_build(
            self.input_size,
            self.hidden_size,
            self.num_layers,
            self.bidirectional,
            self.dropout,
            make_cell,
        )?;
        Ok(SequenceEncoder {
            stack,
            pooling: self.pooling,
        })
    }
}

impl<B: Backend, C: Recurrence<B> + Module<B>> SequenceEncoder<B, C> {
    /// An encoder from cells built by hand (see [`RecurrentStack::try_new`]).
    pub fn try_new(layers: Vec<C>, reversed_layers: Vec<C>, pooling: Pooling) -> Result<Self> {
        Ok(Self {
            stack: RecurrentStack::try_new(layers, reversed_layers)?,
            pooling,
        })
    }

    /// Reads `input` (dense `[batch, time, input_size]` or token ids `[batch, time]`) and
    /// returns the top layer's states, its final `h` (both directions), and every layer's
    /// final state ([`RecurrentStack::try_forward`]).
    ///
    /// `options.lengths` are the valid steps of each sequence (`1..=time`; all full when
    /// `None`): the padding after them changes neither the states before them nor the summary.
    /// Checks the input and the options and names the problem in the error.
    pub fn try_forward(
        &self,
        input: impl Into<SequenceInput<B>>,
        options: &UnrollOptions<B>,
    ) -> Result<Unrolled<B>> {
        options.refuse_forcing("SequenceEncoder")?;
        self.stack.try_forward(input, options)
    }

    /// [`try_forward`](Self::try_forward), panicking with its error message.
    pub fn forward(
        &self,
        input: impl Into<SequenceInput<B>>,
        options: &UnrollOptions<B>,
    ) -> Unrolled<B> {
        self.try_forward(input, options)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The fixed-size summary of each sequence, `[batch, summary_size]`: its final state or
    /// the mean of its states over its valid steps ([`Pooling`]).
    pub fn try_encode(
        &self,
        input: impl Into<SequenceInput<B>>,
        options: &UnrollOptions<B>,
    ) -> Result<Tensor<B, 2>> {
        let Unrolled { states, last, .. } = self.try_forward(input, options)?;
        Ok(match self.pooling {
            Pooling::Last => last,
            Pooling::Mean => mean_over_valid_steps(states, options.lengths.as_deref()),
        })
    }

    /// [`try_encode`](Self::try_encode), panicking with its error message.
    pub fn encode(
        &self,
        input: impl Into<SequenceInput<B>>,
        options: &UnrollOptions<B>,
    ) -> Tensor<B, 2> {
        self.try_encode(input, options)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Width of `x(t)` read by the bottom layer.
    pub fn input_size(&self) -> usize {
        self.stack.input_size()
    }

    /// Width of the summary: the top layer's state width, times 2 when bidirectional.
    pub fn summary_size(&self) -> usize {
        self.stack.output_size()
    }

    /// Number of stacked layers.
    pub fn num_layers(&self) -> usize {
        self.stack.num_layers()
    }

    /// Whether each layer also reads the sequences backwards.
    pub fn is_bidirectional(&self) -> bool {
        self.stack.is_bidirectional()
    }
}

/// `h̄_b = (1/τ_b) Σ_{t < τ_b} h_b(t)`: the mean of `states` `[batch, time, width]` over each
/// sequence's valid steps, `[batch, width]`.
fn mean_over_valid_steps<B: Backend>(
    states: Tensor<B, 3>,
    lengths: Option<&[usize]>,
) -> Tensor<B, 2> {
    let [batch, time, width] = states.dims();
    let Some(lengths) = lengths else {
        return states.mean_dim(1).reshape([batch, width]);
    };
    let device = states.device();
    let valid = valid_mask::<B>(lengths, time, &device)
        .float()
        .unsqueeze_dim::<3>(2);
    let counts: Vec<f32> = lengths.iter().map(|&len| len as f32).collect();
    let counts = Tensor::<B, 2>::from_data(TensorData::new(counts, [batch, 1]), &device);
    (states * valid).sum_dim(1).reshape([batch, width]) / counts
}

/// Configuration of a [`SequenceClassifier`]: an encoder and the number of outputs.
#[derive(Config, Debug)]
pub struct SequenceClassifierConfig {
    /// The recurrence part (its `bias` and `initializer` also configure the readout).
    pub encoder: SequenceEncoderConfig,
    /// Width of `o`: the number of classes (1 for a regression head).
    pub output_size: usize,
}

/// Sequence-to-one: a [`SequenceEncoder`] read out once, `o = c + V h(τ)`.
///
/// `o` holds class logits (train with [`classification_nll`]) or, with `output_size = 1`, a
/// regression output (train with [`mean_squared_error`]).
#[derive(Module, Debug)]
pub struct SequenceClassifier<B: Backend, C: Module<B> = ElmanCell<B>> {
    /// The recurrence part: `x(1..τ) → h(τ)`.
    pub encoder: SequenceEncoder<B, C>,
    /// The output layer `o = c + V h(τ)`.
    pub readout: Readout<B>,
}

impl SequenceClassifierConfig {
    /// The readout's parameters: `V`, `c`.
    fn readout_parameters(&self) -> u64 {
        let (summary, out) = (self.encoder.summary_size() as u64, self.output_size as u64);
        memory::sum_of_products(&[&[summary, out], &[out, self.encoder.bias as u64]])
    }

    /// The number of parameters of the Elman-based classifier (`u64::MAX` on overflow).
    pub fn parameter_count(&self) -> u64 {
        (self.encoder.parameter_count()).saturating_add(self.readout_parameters())
    }

    /// What one training step of the Elman-based classifier over `batch` sequences of `time`
    /// steps keeps at its peak (the encoder's, see
    /// [`SequenceEncoderConfig::training_memory`], and the readout's parameters).
    pub fn training_memory(&self, batch: usize, time: usize) -> MemoryEstimate {
        let encoder = self.encoder.training_memory(batch, time);
        let head = MemoryEstimate::from_floats(self.readout_parameters(), 0);
        MemoryEstimate {
            parameters: encoder.parameters.saturating_add(head.parameters),
            optimizer: encoder.optimizer.saturating_add(head.optimizer),
            activations: encoder.activations,
        }
    }

    /// Checks the sizes (and that the parameters fit in memory), then builds an Elman-based
    /// [`SequenceClassifier`] on `device`.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> Result<SequenceClassifier<B>> {
        check_sizes(&[("output_size", self.output_size)])?;
        self.encoder.check_parameters(self.readout_parameters())?;
        let encoder = self.encoder.try_init(device)?;
        self.with_encoder(encoder, device)
    }

    /// [`try_init`](Self::try_init), panicking with its error message.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SequenceClassifier<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds a classifier of any cell; `make_cell(input_size, hidden_size)` as in
    /// [`SequenceEncoderConfig::try_init_with`]. The readout reads the encoder's summary.
    pub fn try_init_with<B: Backend, C: Recurrence<B> + Module<B>>(
        &self,
        device: &B::Device,
        make_cell: impl FnMut(usize, usize) -> C,
    ) -> Result<SequenceClassifier<B, C>> {
        check_sizes(&[("output_size", self.output_size)])?;
        check_initializer(&self.encoder.initializer)?;
        let encoder = self.encoder.try_init_with(make_cell)?;
        self.with_encoder(encoder, device)
    }

    fn with_encoder<B: Backend, C: Recurrence<B> + Module<B>>(
        &self,
        encoder: SequenceEncoder<B, C>,
        device: &B::Device,
    ) -> Result<SequenceClassifier<B, C>> {
        let readout = ReadoutConfig::new(encoder.summary_size(), self.output_size)
            .with_bias(self.encoder.bias)
            .with_initializer(self.encoder.initializer.clone())
            .init(device);
        SequenceClassifier::try_new(encoder, readout)
    }
}

impl<B: Backend, C: Recurrence<B> + Module<B>> SequenceClassifier<B, C> {
    /// A classifier from its parts; checks that the readout reads the encoder's summary width.
    pub fn try_new(encoder: SequenceEncoder<B, C>, readout: Readout<B>) -> Result<Self> {
        if readout.hidden_size() != encoder.summary_size() {
            return Err(Error::config(
                "readout",
                format!("reading {} features", readout.hidden_size()),
                format!(
                    "must read the encoder's summary of {} features",
                    encoder.summary_size()
                ),
            ));
        }
        Ok(Self { encoder, readout })
    }

    /// `o = c + V h(τ)`, `[batch, output_size]`: one output per sequence, after its own last
    /// valid step (see [`SequenceEncoder::try_forward`] for `input` and `options`).
    pub fn try_forward(
        &self,
        input: impl Into<SequenceInput<B>>,
        options: &UnrollOptions<B>,
    ) -> Result<Tensor<B, 2>> {
        Ok(self.readout.forward(self.try_encode(input, options)?))
    }

    /// [`try_forward`](Self::try_forward), panicking with its error message.
    pub fn forward(
        &self,
        input: impl Into<SequenceInput<B>>,
        options: &UnrollOptions<B>,
    ) -> Tensor<B, 2> {
        self.try_forward(input, options)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The summary `h(τ)`, `[batch, summary_size]`, before the readout.
    pub fn try_encode(
        &self,
        input: impl Into<SequenceInput<B>>,
        options: &UnrollOptions<B>,
    ) -> Result<Tensor<B, 2>> {
        self.encoder.try_encode(input, options)
    }

    /// [`try_encode`](Self::try_encode), panicking with its error message.
    pub fn encode(
        &self,
        input: impl Into<SequenceInput<B>>,
        options: &UnrollOptions<B>,
    ) -> Tensor<B, 2> {
        self.encoder.encode(input, options)
    }

    /// Width of `x(t)`.
    pub fn input_size(&self) -> usize {
        self.encoder.input_size()
    }

    /// Width of the summary `h(τ)`.
    pub fn summary_size(&self) -> usize {
        self.encoder.summary_size()
    }

    /// Width of `o`.
    pub fn output_size(&self) -> usize {
        self.readout.output_size()
    }
}

/// Checks `[batch, classes]` logits against `[batch]` class labels.
fn check_labels<B: Backend>(logits: &Tensor<B, 2>, targets: &Tensor<B, 1, Int>) -> Result<()> {
    let [batch, classes] = logits.dims();
    if batch == 0 || classes == 0 {
        return Err(Error::Empty {
            arg: "logits",
            what: format!("shape {:?} has no rows or no classes", logits.dims()),
        });
    }
    if targets.dims() != [batch] {
        return Err(Error::shape(
            "targets",
            format!("[{batch}] (one class per row of the logits)"),
            &targets.dims(),
        ));
    }
    let low: i64 = targets.clone().min().into_scalar().elem();
    let high: i64 = targets.clone().max().into_scalar().elem();
    match [low, high]
        .into_iter()
        .find(|&c| c < 0 || c as usize >= classes)
    {
        Some(class) => Err(Error::ClassOutOfRange {
            arg: "targets",
            class,
            num_classes: classes,
        }),
        None => Ok(()),
    }
}

/// The end-of-sequence loss `L = -(1/N) Σ_b log softmax(o_b)[y_b]` (nats per sequence).
///
/// - `logits`: `o`, `[batch, classes]`.
/// - `targets`: `y`, `[batch]`, classes in `0..classes`.
///
/// Computed by burn-nn's `CrossEntropyLoss`, after checking the shapes and labels (which it
/// does not: an out-of-range label would be gathered silently or panic in a kernel).
pub fn try_classification_nll<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> Result<Tensor<B, 1>> {
    check_labels(&logits, &targets)?;
    Ok(CrossEntropyLoss::new(None, &logits.device()).forward(logits, targets))
}

/// [`try_classification_nll`], panicking with its error message.
pub fn classification_nll<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    try_classification_nll(logits, targets).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether each row's most likely class is its label, `[batch]`
/// (`argmax_k o_b[k] = y_b`; ties go to the lowest class).
pub fn try_correct<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> Result<Vec<bool>> {
    check_labels(&logits, &targets)?;
    let [batch, _] = logits.dims();
    let hits = logits.argmax(1).reshape([batch]).equal(targets);
    Ok(hits.into_data().iter::<bool>().collect())
}

/// The fraction of rows whose most likely class is their label (see [`try_correct`]).
pub fn try_accuracy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Result<f64> {
    let hits = try_correct(logits, targets)?;
    Ok(hits.iter().filter(|&&hit| hit).count() as f64 / hits.len() as f64)
}

/// [`try_accuracy`], panicking with its error message.
pub fn accuracy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> f64 {
    try_accuracy(logits, targets).unwrap_or_else(|e| panic!("{e}"))
}

/// The regression loss `L = (1/(N·K)) Σ_b Σ_k (o_b[k] - y_b[k])²`, for a readout with
/// `output_size = K` (usually 1).
///
/// Shapes must match exactly: burn-nn's `MseLoss`, which computes it, would broadcast a
/// `[batch, 1]` output against a `[1, batch]` target into a `[batch, batch]` loss without a word.
pub fn try_mean_squared_error<B: Backend>(
    predictions: Tensor<B, 2>,
    targets: Tensor<B, 2>,
) -> Result<Tensor<B, 1>> {
    let dims = predictions.dims();
    if dims.contains(&0) {
        return Err(Error::Empty {
            arg: "predictions",
            what: format!("shape {dims:?} has no values"),
        });
    }
    if targets.dims() != dims {
        return Err(Error::shape(
            "targets",
            format!("{dims:?} (the predictions' shape)"),
            &targets.dims(),
        ));
    }
    Ok(burn::nn::loss::MseLoss::new().forward(
        predictions,
        targets,
        burn::nn::loss::Reduction::Mean,
    ))
}

/// [`try_mean_squared_error`], panicking with its error message.
pub fn mean_squared_error<B: Backend>(
    predictions: Tensor<B, 2>,
    targets: Tensor<B, 2>,
) -> Tensor<B, 1> {
    try_mean_squared_error(predictions, targets).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elman::ElmanCellConfig;
    use crate::recurrence::unroll;
    use burn::module::{AutodiffModule, Param};
    use burn::tensor::{Distribution, Tolerance};

    type TestBackend = burn::backend::NdArray<f64>;
    type TestAutodiff = burn::backend::Autodiff<TestBackend>;
    type Device = burn::backend::ndarray::NdArrayDevice;

    const FEATURES: usize = 3;
    const HIDDEN: usize = 4;

    fn exact() -> Tolerance<f64> {
        Tolerance::absolute(1e-12)
    }

    /// Options with these valid lengths.
    fn valid<B: Backend>(lengths: &[usize]) -> UnrollOptions<B> {
        UnrollOptions::new().with_lengths(lengths)
    }

    fn full<B: Backend>() -> UnrollOptions<B> {
        UnrollOptions::new()
    }

    /// Large weights, so that every input visibly moves every later state.
    fn encoder_config(
        layers: usize,
        bidirectional: bool,
        pooling: Pooling,
    ) -> SequenceEncoderConfig {
        SequenceEncoderConfig::new(FEATURES, HIDDEN)
            .with_num_layers(layers)
            .with_bidirectional(bidirectional)
            .with_pooling(pooling)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.8,
            })
    }

    fn inputs(batch: usize, time: usize, device: &Device) -> Tensor<TestBackend, 3> {
        Tensor::random(
            [batch, time, FEATURES],
            Distribution::Normal(0.0, 1.0),
            device,
        )
    }

    fn row<const D: usize>(x: &Tensor<TestBackend, D>, b: usize) -> Tensor<TestBackend, D> {
        let mut ranges = x.dims().map(|n| 0..n);
        ranges[0] = b..b + 1;
        x.clone().slice(ranges)
    }

    /// Steps `0..len` of row `b` of `[batch, time, width]`.
    fn valid_part(x: &Tensor<TestBackend, 3>, b: usize, len: usize) -> Tensor<TestBackend, 3> {
        let [_, _, width] = x.dims();
        x.clone().slice([b..b + 1, 0..len, 0..width])
    }

    #[test]
    fn summary_is_the_same_alone_or_padded_in_a_batch_with_longer_sequences() {
        let device = Default::default();
        for bidirectional in [false, true] {
            for pooling in [Pooling::Last, Pooling::Mean] {
                let encoder =
                    encoder_config(2, bidirectional, pooling).init::<TestBackend>(&device);
                let lengths = [3, 7, 1, 5];
                // Garbage (large values) past each length: the lengths must keep it out.
                let batch = Tensor::random(
                    [4, 7, FEATURES],
                    Distribution::Uniform(-50.0, 50.0),
                    &device,
                );
                let batch = batch.slice_assign([0..1, 0..3, 0..FEATURES], inputs(1, 3, &device));
                let batch = batch.slice_assign([1..2, 0..7, 0..FEATURES], inputs(1, 7, &device));
                let batch = batch.slice_assign([2..3, 0..1, 0..FEATURES], inputs(1, 1, &device));
                let batch = batch.slice_assign([3..4, 0..5, 0..FEATURES], inputs(1, 5, &device));
                let together = encoder.encode(batch.clone(), &valid(&lengths));
                assert_eq!(together.dims(), [4, encoder.summary_size()]);
                for (b, &len) in lengths.iter().enumerate() {
                    let alone = encoder.encode(valid_part(&batch, b, len), &full());
                    row(&together, b)
                        .into_data()
                        .assert_approx_eq::<f64>(&alone.into_data(), exact());
                }
            }
        }
    }

    #[test]
    fn reversed_direction_of_a_padded_sequence_is_the_forward_read_of_its_flipped_valid_part() {
        let device = Default::default();
        let encoder = encoder_config(1, true, Pooling::Last).init::<TestBackend>(&device);
        let lengths = [2, 5, 4];
        let x = inputs(3, 5, &device);
        let summary = encoder.encode(x.clone(), &valid(&lengths));
        assert_eq!(summary.dims(), [3, 2 * HIDDEN]);
        for (b, &len) in lengths.iter().enumerate() {
            let valid = valid_part(&x, b, len);
            let forward = unroll(
                &encoder.stack.layers[0],
                valid.clone(),
                &UnrollOptions::new(),
            )
            .unwrap();
            let flipped = unroll(
                &encoder.stack.reversed_layers[0],
                valid.flip([1]),
                &UnrollOptions::new(),
            )
            .unwrap();
            let got = row(&summary, b);
            got.clone()
                .slice([0..1, 0..HIDDEN])
                .into_data()
                .assert_approx_eq::<f64>(&forward.last.into_data(), exact());
            got.slice([0..1, HIDDEN..2 * HIDDEN])
                .into_data()
                .assert_approx_eq::<f64>(&flipped.last.into_data(), exact());
        }
    }

    #[test]
    fn stacked_bidirectional_encoder_equals_chaining_layers_by_hand() {
        let device = Default::default();
        let encoder = encoder_config(3, true, Pooling::Last).init::<TestBackend>(&device);
        let lengths = vec![6, 2, 4];
        let x = inputs(3, 6, &device);
        let got = encoder.forward(x.clone(), &valid(&lengths));

        let forward = UnrollOptions::new().with_lengths(lengths.clone());
        let backward = UnrollOptions::new()
            .with_lengths(lengths.clone())
            .reversed();
        let mut layer_input = x;
        let mut last = None;
        for k in 0..3 {
            let f = unroll(&encoder.stack.layers[k], layer_input.clone(), &forward).unwrap();
            let r = unroll(&encoder.stack.reversed_layers[k], layer_input, &backward).unwrap();
            layer_input = Tensor::cat(vec![f.states, r.states], 2);
            last = Some(Tensor::cat(vec![f.last, r.last], 1));
        }
        assert_eq!(got.states.dims(), [3, 6, 2 * HIDDEN]);
        got.states
            .into_data()
            .assert_approx_eq::<f64>(&layer_input.into_data(), exact());
        got.last
            .into_data()
            .assert_approx_eq::<f64>(&last.unwrap().into_data(), exact());
    }

    #[test]
    fn mean_pool_is_the_mean_of_the_states_over_valid_steps_only() {
        let device = Default::default();
        for bidirectional in [false, true] {
            let encoder =
                encoder_config(1, bidirectional, Pooling::Mean).init::<TestBackend>(&device);
            let lengths = [4, 1, 3];
            let x = inputs(3, 4, &device);
            let got = encoder.encode(x.clone(), &valid(&lengths));
            let width = encoder.summary_size();
            for (b, &len) in lengths.iter().enumerate() {
                // The states of the valid part read alone, averaged on the host.
                let valid = valid_part(&x, b, len);
                let mut states = unroll(
                    &encoder.stack.layers[0],
                    valid.clone(),
                    &UnrollOptions::new(),
                )
                .unwrap()
                .states;
                if bidirectional {
                    let reversed = unroll(
                        &encoder.stack.reversed_layers[0],
                        valid,
                        &UnrollOptions::new().reversed(),
                    )
                    .unwrap()
                    .states;
                    states = Tensor::cat(vec![states, reversed], 2);
                }
                let values = states.into_data().to_vec::<f64>().unwrap();
                let mean: Vec<f64> = (0..width)
                    .map(|j| (0..len).map(|t| values[t * width + j]).sum::<f64>() / len as f64)
                    .collect();
                row(&got, b)
                    .into_data()
                    .assert_approx_eq::<f64>(&TensorData::new(mean, [1, width]), exact());
            }
        }
    }

    /// A model a user writes around the encoder: their own head and loss.
    #[derive(Module, Debug)]
    struct UserModel<B: Backend> {
        encoder: SequenceEncoder<B>,
        head: burn::nn::Linear<B>,
    }

    #[test]
    fn gradients_reach_u_and_w_through_a_downstream_user_module() {
        let device = Default::default();
        for bidirectional in [false, true] {
            let model = UserModel::<TestAutodiff> {
                encoder: encoder_config(2, bidirectional, Pooling::Last).init(&device),
                head: burn::nn::LinearConfig::new(HIDDEN * if bidirectional { 2 } else { 1 }, 2)
                    .init(&device),
            };
            let x = Tensor::<TestAutodiff, 3>::random(
                [3, 5, FEATURES],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let summary = model.encoder.encode(x, &valid(&[5, 2, 3]));
            let prediction = model.head.forward(summary);
            let target = Tensor::<TestAutodiff, 2>::ones([3, 2], &device);
            let loss = (prediction - target).powi_scalar(2).mean();
            let grads = loss.backward();
            let mut cells: Vec<&ElmanCell<TestAutodiff>> =
                model.encoder.stack.layers.iter().collect();
            cells.extend(model.encoder.stack.reversed_layers.iter());
            assert_eq!(cells.len(), if bidirectional { 4 } else { 2 });
            for cell in cells {
                for (name, param) in [("U", &cell.u), ("W", &cell.w)] {
                    let grad = param
                        .grad(&grads)
                        .unwrap_or_else(|| panic!("no gradient reached {name}"));
                    let size = grad.abs().max().into_scalar();
                    assert!(size > 1e-8, "gradient of {name} is {size}");
                }
            }
        }
    }

    /// A custom cell with a parameter: `h(t) = a ⊙ h(t-1) + x(t)` (a leaky sum).
    #[derive(Module, Debug)]
    struct Leaky<B: Backend> {
        a: Param<Tensor<B, 1>>,
    }

    impl<B: Backend> Recurrence<B> for Leaky<B> {
        fn input_size(&self) -> usize {
            self.a.dims()[0]
        }
        fn state_size(&self) -> usize {
            self.a.dims()[0]
        }
        fn step(&self, h: Tensor<B, 2>, drive: Tensor<B, 2>) -> Tensor<B, 2> {
            h * self.a.val().unsqueeze() + drive
        }
    }

    #[test]
    fn any_cell_runs_through_the_generic_classifier() {
        let device = Default::default();
        let config = SequenceEncoderConfig::new(FEATURES, FEATURES)
            .with_bidirectional(true)
            .classifier(2);
        let model = config
            .try_init_with::<TestAutodiff, _>(&device, |input, _| Leaky {
                a: Param::from_tensor(Tensor::full([input], 0.5, &device)),
            })
            .unwrap();
        assert_eq!(model.summary_size(), 2 * FEATURES);
        // The derived AutodiffModule strips autodiff from the generic cell too.
        let model: SequenceClassifier<TestBackend, Leaky<TestBackend>> = model.valid();
        // x = [1, 1, 1] at steps 0, 1 and padding after: forward h = 0.5·1 + 1 = 1.5, reversed
        // (step 1, then step 0) the same.
        let x = Tensor::<TestBackend, 3>::from_data(
            [[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [9.0, 9.0, 9.0]]],
            &device,
        );
        let summary = model.encode(x.clone(), &valid(&[2]));
        summary
            .into_data()
            .assert_approx_eq::<f64>(&TensorData::new(vec![1.5; 6], [1, 6]), exact());
        let logits = model.forward(x, &valid(&[2]));
        assert_eq!(logits.dims(), [1, 2]);
    }

    #[test]
    fn classification_nll_and_accuracy_match_hand_computed_values() {
        let device = Default::default();
        let logits = [[2.0, -1.0, 0.5], [0.0, 0.3, 0.1], [1.0, 1.0, -3.0]];
        let labels = [0usize, 2, 1];
        let nll: f64 = logits
            .iter()
            .zip(labels)
            .map(|(o, y)| o.iter().map(|v: &f64| v.exp()).sum::<f64>().ln() - o[y])
            .sum::<f64>()
            / 3.0;
        let logits = Tensor::<TestBackend, 2>::from_data(logits, &device);
        let targets = Tensor::<TestBackend, 1, Int>::from_data([0, 2, 1], &device);
        let got = classification_nll(logits.clone(), targets.clone()).into_scalar();
        assert!((got - nll).abs() < 1e-12, "{got} vs {nll}");
        // Row 0 right, row 1 wrong (argmax 1), row 2 a tie that goes to class 0: wrong.
        assert_eq!(
            try_correct(logits.clone(), targets.clone()).unwrap(),
            [true, false, false]
        );
        assert!((accuracy(logits, targets) - 1.0 / 3.0).abs() < 1e-12);
        let predictions = Tensor::<TestBackend, 2>::from_data([[0.5], [2.0]], &device);
        let targets = Tensor::<TestBackend, 2>::from_data([[1.0], [1.0]], &device);
        let mse = mean_squared_error(predictions, targets).into_scalar();
        assert!((mse - (0.25 + 1.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn bad_input_and_configs_are_named_errors() {
        let device = Default::default();
        let encoder = encoder_config(2, true, Pooling::Mean).init::<TestBackend>(&device);
        let x = inputs(2, 4, &device);
        let err = |input: SequenceInput<TestBackend>, options: &UnrollOptions<TestBackend>| {
            encoder.try_encode(input, options).unwrap_err().to_string()
        };
        let message = err(x.clone().into(), &valid(&[4]));
        assert!(
            message.contains("`lengths` has 1 entries, but the batch has 2"),
            "{message}"
        );
        let message = err(x.clone().into(), &valid(&[4, 0]));
        assert!(
            message.contains("[1] = 0") && message.contains("1..=4"),
            "{message}"
        );
        let message = err(x.clone().into(), &valid(&[5, 1]));
        assert!(message.contains("[0] = 5"), "{message}");
        let message = err(
            inputs(2, 4, &device).slice([0..2, 0..4, 0..2]).into(),
            &full(),
        );
        assert_eq!(
            message,
            "`input` has shape [2, 4, 2], expected [batch, time, 3]"
        );
        let message = err(
            Tensor::<TestBackend, 3>::zeros([2, 0, FEATURES], &device).into(),
            &full(),
        );
        assert!(message.contains("`input` is empty"), "{message}");
        let ids = Tensor::<TestBackend, 2, Int>::from_data([[0, 3]], &device);
        assert!(matches!(
            encoder.try_encode(ids, &full()),
            Err(Error::TokenOutOfRange {
                id: 3,
                vocab_size: 3,
                ..
            })
        ));

        let config_error = |config: SequenceClassifierConfig| {
            config
                .try_init::<TestBackend>(&device)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            config_error(
                SequenceEncoderConfig::new(3, 4)
                    .with_num_layers(0)
                    .classifier(2)
            ),
            "bad config: `num_layers` = 0: must be at least 1"
        );
        assert_eq!(
            config_error(SequenceEncoderConfig::new(3, 4).classifier(0)),
            "bad config: `output_size` = 0: must be at least 1"
        );
        assert_eq!(
            config_error(SequenceEncoderConfig::new(3, 0).classifier(2)),
            "bad config: `hidden_size` = 0: must be at least 1"
        );

        let cell = |input, hidden| ElmanCellConfig::new(input, hidden).init::<TestBackend>(&device);
        let unchained =
            SequenceEncoder::try_new(vec![cell(3, 4), cell(5, 4)], vec![], Pooling::Last);
        assert!(
            matches!(&unchained, Err(Error::Config { field: "layers", reason, .. }) if reason.contains("4 features layer 0")),
            "{unchained:?}"
        );
        let unchained_bi = SequenceEncoder::try_new(
            vec![cell(3, 4), cell(4, 4)],
            vec![cell(3, 4), cell(4, 4)],
            Pooling::Last,
        );
        assert!(matches!(
            unchained_bi,
            Err(Error::Config {
                field: "layers",
                ..
            })
        ));
        let one_reversed = SequenceEncoder::try_new(
            vec![cell(3, 4), cell(8, 4)],
            vec![cell(3, 4)],
            Pooling::Last,
        );
        assert!(matches!(
            one_reversed,
            Err(Error::Config {
                field: "reversed_layers",
                ..
            })
        ));
        let mismatched =
            SequenceEncoder::try_new(vec![cell(3, 4)], vec![cell(3, 5)], Pooling::Last);
        assert!(matches!(
            mismatched,
            Err(Error::Config {
                field: "reversed_layers",
                ..
            })
        ));
        let empty = SequenceEncoder::<TestBackend>::try_new(vec![], vec![], Pooling::Last);
        assert!(matches!(
            empty,
            Err(Error::Config {
                field: "num_layers",
                ..
            })
        ));
        let encoder = SequenceEncoder::try_new(vec![cell(3, 4)], vec![], Pooling::Last).unwrap();
        let readout = ReadoutConfig::new(8, 2).init(&device);
        let message = SequenceClassifier::try_new(encoder, readout)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "bad config: `readout` = reading 8 features: must read the encoder's summary of 4 features"
        );

        let logits = Tensor::<TestBackend, 2>::zeros([2, 3], &device);
        let labels = |l: [i64; 2]| Tensor::<TestBackend, 1, Int>::from_data(l, &device);
        let message = try_classification_nll(logits.clone(), labels([0, 3]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "`targets` holds class 3, but there are 3 classes (0..3)"
        );
        assert!(matches!(
            try_accuracy(logits.clone(), labels([-1, 0])),
            Err(Error::ClassOutOfRange { class: -1, .. })
        ));
        let three = Tensor::<TestBackend, 1, Int>::zeros([3], &device);
        assert!(matches!(
            try_classification_nll(logits, three),
            Err(Error::Shape { arg: "targets", .. })
        ));
        let predictions = Tensor::<TestBackend, 2>::zeros([4, 1], &device);
        let transposed = Tensor::<TestBackend, 2>::zeros([1, 4], &device);
        let message = try_mean_squared_error(predictions, transposed)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "`targets` has shape [1, 4], expected [4, 1] (the predictions' shape)"
        );
    }

    #[test]
    #[should_panic(expected = "`input` has shape [1, 2, 9], expected [batch, time, 3]")]
    fn forward_panics_with_the_same_clear_message() {
        let device = Default::default();
        SequenceEncoderConfig::new(FEATURES, HIDDEN)
            .classifier(2)
            .init::<TestBackend>(&device)
            .forward(Tensor::<TestBackend, 3>::zeros([1, 2, 9], &device), &full());
    }

    #[test]
    fn a_tiny_classifier_learns_whether_a_token_occurs_anywhere_in_sequences_of_any_length() {
        use burn::optim::{AdamConfig, GradientsParams, Optimizer};
        use rand::{rngs::StdRng, Rng, SeedableRng};

        // Tokens 0..4; the label is whether token 3 occurs (half the sequences), at any position.
        let device = Default::default();
        TestAutodiff::seed(&device, 7);
        let mut rng = StdRng::seed_from_u64(7);
        let batch = |rng: &mut StdRng| {
            let (size, time) = (32, 8);
            let mut ids = vec![0i64; size * time];
            let mut labels = vec![0i64; size];
            let mut lengths = vec![0usize; size];
            for b in 0..size {
                let len = rng.random_range(1..=time);
                for t in 0..len {
                    ids[b * time + t] = rng.random_range(0..3);
                }
                if rng.random_bool(0.5) {
                    ids[b * time + rng.random_range(0..len)] = 3;
                    labels[b] = 1;
                }
                lengths[b] = len;
            }
            let ids = Tensor::<TestAutodiff, 2, Int>::from_data(
                TensorData::new(ids, [size, time]),
                &device,
            );
            let labels =
                Tensor::<TestAutodiff, 1, Int>::from_data(TensorData::new(labels, [size]), &device);
            (ids, labels, lengths)
        };
        let mut model = SequenceEncoderConfig::new(4, 8)
            .classifier(2)
            .init::<TestAutodiff>(&device);
        let mut optimizer = AdamConfig::new().init();
        for _ in 0..150 {
            let (ids, labels, lengths) = batch(&mut rng);
            let loss = classification_nll(model.forward(ids, &valid(&lengths)), labels);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(0.03, model, grads);
        }
        let model = model.valid();
        let (mut loss, mut acc) = (0.0, 0.0);
        for _ in 0..4 {
            let (ids, labels, lengths) = batch(&mut rng);
            let (ids, labels) = (ids.inner(), labels.inner());
            let logits = model.forward(ids, &valid(&lengths));
            loss += classification_nll(logits.clone(), labels.clone()).into_scalar() / 4.0;
            acc += accuracy(logits, labels) / 4.0;
        }
        // Chance is ln 2 ≈ 0.69 nats and accuracy 0.5.
        assert!(loss < 0.15, "held-out loss {loss} nats");
        assert!(acc > 0.95, "held-out accuracy {acc}");
    }
}
