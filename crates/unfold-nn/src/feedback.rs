//! The output-to-hidden RNN: teacher forcing in parallel, free-running generation, scheduled
//! sampling; with or without a hidden-to-hidden path as well.
//!
//! One model, [`OutputFeedbackRnn`], in two presets: the only recurrence of a [`JordanRnn`]
//! goes through its output,
//!
//! ```text
//! a(t) = b + W r(t-1) + U x(t)
//! h(t) = tanh(a(t))
//! o(t) = c + V h(t)
//! ŷ(t) = softmax(o(t))
//! ```
//!
//! and an [`ElmanJordanRnn`] also has the hidden-to-hidden path, `a(t) = b + W r(t-1) +
//! W_hh h(t-1) + U x(t)` ([`OutputFeedbackRnnConfig::hidden_recurrence`]). `r(t-1)` is what is
//! fed back ([`Forcing`], chosen in [`UnrollOptions::forcing`]):
//! - **teacher forcing**: the true previous target, `r(t-1) = y(t-1)` as a one-hot vector, so
//!   `W r(t-1)` is row `y(t-1)` of `W`. Without the hidden path nothing then depends on an
//!   earlier step's computation, and every step is computed at once, with no loop over time;
//!   with it, `W y(t-1)` joins `b + U x(t)` in the hoisted drive of the fused recurrence.
//! - **free running** (deployment): the model's own previous output, as the softmax `ŷ(t-1)`,
//!   its argmax or a one-hot sample from it ([`Feedback`]); step `t` needs step `t-1`'s output,
//!   so this runs step by step through the generic [`scan`](crate::recurrence::scan).
//! - **scheduled sampling** (Bengio et al. 2015): at each step the true `y(t-1)` with
//!   probability `ε`, else the model's own output; `ε` decays over training by a
//!   [`TeacherSchedule`].
//!
//! `r(0)` is a learned start vector, or zeros ([`OutputFeedbackRnnConfig::learn_start`]).
//!
//! Teacher forcing trains by maximum likelihood through the chain rule of probability,
//! `log p(y(1), …, y(τ) | x) = Σ_t log p(y(t) | y(1), …, y(t-1), x)`: with the true
//! `y(t-1)` fed back, the teacher-forced output at step `t` is exactly that conditional, so
//! [`sequence_nll`](crate::loss::sequence_nll) with [`Reduction::Sum`](crate::loss::Reduction)
//! on the teacher-forced logits is the negative joint log-likelihood.
//!
//! Parameters are stored `[fan_in, fan_out]` as everywhere in unfold, so row-wise the products
//! read `x U`, `r W`, `h W_hh`, `h V` (the textbook's `U x`, `W r`, `V h` on column vectors,
//! transposed).
//!
//! # Example
//!
//! ```
//! use burn::backend::{Autodiff, NdArray};
//! use burn::tensor::{Int, Tensor};
//! use unfold_nn::feedback::{Feedback, Forcing, JordanRnnConfig, TeacherSchedule};
//! use unfold_nn::sample::{generate, GenerateConfig, Sampling};
//! use unfold_nn::{sequence_nll, Reduction, SequenceModel, UnrollOptions};
//!
//! type B = Autodiff<NdArray>;
//! let device = Default::default();
//! let model = JordanRnnConfig::new(10, 32, 10).init::<B>(&device);
//! let x = Tensor::<B, 2, Int>::from_data([[3, 1, 4, 1, 5]], &device);
//! let y = Tensor::<B, 2, Int>::from_data([[3, 4, 8, 9, 4]], &device); // running sum mod 10
//!
//! // Teacher forcing: every step at once; the summed loss is -log p(y | x).
//! let out = model.try_forward(x.clone(), &UnrollOptions::new().teacher_forced(y.clone()))?;
//! let grads = sequence_nll(out.logits, y.clone(), None, Reduction::Sum).backward();
//!
//! // Scheduled sampling at training step 100: ε = k / (k + e^(100/k)).
//! let forcing = TeacherSchedule::InverseSigmoid { k: 200.0 }.forcing(100, Feedback::Sample, 7)?;
//! let options = UnrollOptions::new().with_forcing(forcing).with_teacher(y);
//! let out = model.try_forward(x.clone(), &options)?;
//!
//! // Free running: its own argmax fed back, no targets.
//! let free = Forcing::FreeRunning { feedback: Feedback::Argmax, seed: 0 };
//! let out = model.try_forward(x, &UnrollOptions::new().with_forcing(free))?;
//! assert_eq!(out.logits.dims(), [1, 5, 10]);
//!
//! // Generation (outputs fed back as the next inputs): warm on each prompt, then 8 tokens.
//! let config = GenerateConfig::new(8)
//!     .with_sampling(Sampling::TopK { k: 3, temperature: 0.8 })
//!     .with_seed(1);
//! let tokens = generate(&model, &[vec![1, 2, 3], vec![7]], &config, &device)?;
//! assert_eq!(tokens[1].len(), 8);
//! # let _ = grads;
//! # Ok::<(), unfold_nn::Error>(())
//! ```

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::module::embedding;
use burn::tensor::{backend::Backend, IndexingUpdateOp, Int, Tensor, TensorData};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::elman::input_drive;
use crate::error::{check_initializer, check_sizes, Error, Result};
use crate::init;
use crate::layout::{concat, linear_rows};
use crate::loss::{try_readout_nll, Reduction};
use crate::memory::{self, MemoryEstimate};
use crate::model::{Autoregressive, RnnLoss, RnnOutput, SequenceModel};
use crate::nonlinearity::Nonlinearity;
use crate::ops::{activation::activation, embedding::embedding_with_bias, recurrence};
use crate::readout::{Readout, ReadoutConfig};
use crate::recurrence::{
    drive_at, scan, validate_lengths, SequenceInput, State, StepPlan, UnrollOptions, Unrolled,
};
use crate::sample::{check_feeds_back, GenerationLayer, GenerationNet};

// ---------------------------------------------------------------------------------------------
// What is fed back.
// ---------------------------------------------------------------------------------------------

/// What a model feeds back when it runs on its own outputs.
///
/// Training feeds the true `y(t-1)`, a one-hot vector drawn from the data. **`Sample`**
/// matches that best: a one-hot vector like every training input, drawn from `ŷ(t-1)`,
/// which for a well-fitted model is the distribution the true `y(t-1)` comes from, so the
/// free-running inputs follow the training inputs' distribution (and generated sequences are
/// samples of the model's joint distribution). **`Argmax`** is also one-hot, but always the
/// most likely class: the right choice for deterministic targets (the running sum of a digit
/// stream) and for accuracy, though for uncertain targets it feeds back a narrower set of
/// inputs than training saw. **`Softmax`** feeds the probability vector itself: smooth and
/// deterministic, but unlike any training input (a blend of one-hot vectors), so the model
/// runs off its training distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Feedback {
    /// `r(t-1) = ŷ(t-1) = softmax(o(t-1))`.
    Softmax,
    /// `r(t-1) = one_hot(argmax o(t-1))`.
    #[default]
    Argmax,
    /// `r(t-1) = one_hot(k)`, `k ~ softmax(o(t-1))`: drawn with the Gumbel-max trick,
    /// `k = argmax(o(t-1) + g)`, `g = -ln(-ln u)`, `u ~ U(0, 1)` from the forcing's seed.
    Sample,
}

impl Feedback {
    /// The fed-back vector for logits `o` `[batch, classes]` (`gumbel`: the noise for
    /// `Sample`, same shape).
    fn apply<B: Backend>(self, o: Tensor<B, 2>, gumbel: Option<Tensor<B, 2>>) -> Tensor<B, 2> {
        let classes = o.dims()[1];
        match self {
            Feedback::Softmax => softmax(o, 1),
            Feedback::Argmax => one_hot_rows(o.argmax(1), classes),
            Feedback::Sample => {
                let noisy = o + gumbel.expect("Sample feedback has its noise");
                one_hot_rows(noisy.argmax(1), classes)
            }
        }
    }
}

/// One-hot rows from class ids `[batch, 1]`, without a device read (Burn's `one_hot` checks
/// the ids on the host, once per call: once per step here).
fn one_hot_rows<B: Backend>(ids: Tensor<B, 2, Int>, classes: usize) -> Tensor<B, 2> {
    let [batch, _] = ids.dims();
    let device = ids.device();
    Tensor::zeros([batch, classes], &device).scatter(
        1,
        ids,
        Tensor::ones([batch, 1], &device),
        IndexingUpdateOp::Add,
    )
}

/// What is fed back as `r(t-1)` during a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Forcing {
    /// `r(t-1) = y(t-1)`, the true previous target (needs the targets). All steps at once.
    TeacherForced,
    /// `r(t-1)` = the model's own previous output (no targets needed). Step by step.
    FreeRunning {
        /// How the own output is fed back.
        feedback: Feedback,
        /// Seed of the `Sample` feedback's draws.
        seed: u64,
    },
    /// Scheduled sampling (Bengio et al. 2015): at each step `t ≥ 1` the true `y(t-1)` with
    /// probability `teacher_probability` (ε), else the model's own output, decided
    /// independently per sequence and step from `seed` (needs the targets).
    ///
    /// As in the paper, no gradient flows through the fed-back own outputs: they are inputs.
    /// Choosing them is sequential (one step at a time, through the generic scan, without
    /// recording gradients); the loss pass is then one teacher-forced pass with the chosen
    /// `r(t-1)` in place of `y(t-1)`, which gives the same values and gradients as recording
    /// the step-by-step loop (tested).
    ///
    /// Targets that depend on the true history (a running sum) do not follow from a wrong
    /// fed-back output: every later target of that sequence then contradicts the model's
    /// inputs. `cargo run --release -p unfold-lab --bin jordan` measures it: with [`Feedback::Sample`] the running-sum
    /// model, exact under teacher forcing, collapses once ε is small; with
    /// [`Feedback::Argmax`] (never wrong for an exact model) nothing changes.
    Scheduled {
        /// ε, the probability of feeding the true previous target, in `[0, 1]`.
        teacher_probability: f64,
        /// How the own output is fed back when it is.
        feedback: Feedback,
        /// Seed of the coin flips (and of the `Sample` feedback's draws).
        seed: u64,
    },
}

impl Forcing {
    /// Checks the scheduled-sampling probability (a number in `[0, 1]`).
    pub fn validate(&self) -> Result<()> {
        match *self {
            Forcing::Scheduled {
                teacher_probability,
                ..
            } => check_probability("teacher_probability", teacher_probability),
            _ => Ok(()),
        }
    }

    /// Whether this forcing feeds true targets back (and so needs them).
    pub fn needs_targets(&self) -> bool {
        !matches!(self, Forcing::FreeRunning { .. })
    }

    /// Probability of feeding the true `y(t-1)` at a step `t ≥ 1`.
    fn teacher_probability(&self) -> f64 {
        match *self {
            Forcing::TeacherForced => 1.0,
            Forcing::FreeRunning { .. } => 0.0,
            Forcing::Scheduled {
                teacher_probability,
                ..
            } => teacher_probability,
        }
    }

    /// The feedback used for own outputs, and the seed.
    fn own(&self) -> (Feedback, u64) {
        match *self {
            Forcing::TeacherForced => (Feedback::Argmax, 0),
            Forcing::FreeRunning { feedback, seed } | Forcing::Scheduled { feedback, seed, .. } => {
                (feedback, seed)
            }
        }
    }
}

fn check_probability(field: &'static str, p: f64) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::config(field, p, "must be a probability in [0, 1]"))
    }
}

/// How the teacher-forcing probability ε of scheduled sampling decays over training steps
/// `i = 0, 1, …` (Bengio et al. 2015, section 2.4).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum TeacherSchedule {
    /// `ε_i = p`.
    Constant(f64),
    /// `ε_i = max(floor, start - slope · i)`.
    Linear {
        /// ε at step 0, in `[0, 1]` (the paper's `k`).
        start: f64,
        /// Decrease per step, ≥ 0 (the paper's `c`).
        slope: f64,
        /// The smallest ε, in `[0, 1]` (the paper's `ε`).
        floor: f64,
    },
    /// `ε_i = base^i`, `base` in `[0, 1]` (the paper's `k < 1`).
    Exponential {
        /// The decay per step.
        base: f64,
    },
    /// `ε_i = k / (k + exp(i / k))`, `k` ≥ 1: near `k/(k+1)` for `i ≪ k ln k`, then falling
    /// like a sigmoid around `i = k ln k`.
    InverseSigmoid {
        /// The time scale.
        k: f64,
    },
}

impl TeacherSchedule {
    /// Checks that every ε the schedule yields is a probability.
    pub fn validate(&self) -> Result<()> {
        match *self {
            TeacherSchedule::Constant(p) => check_probability("teacher_probability", p),
            TeacherSchedule::Linear {
                start,
                slope,
                floor,
            } => {
                check_probability("start", start)?;
                check_probability("floor", floor)?;
                if slope >= 0.0 && slope.is_finite() {
                    Ok(())
                } else {
                    Err(Error::config(
                        "slope",
                        slope,
                        "must be a finite number ≥ 0 (ε decreases over training)",
                    ))
                }
            }
            TeacherSchedule::Exponential { base } => check_probability("base", base),
            TeacherSchedule::InverseSigmoid { k } => {
                if k >= 1.0 && k.is_finite() {
                    Ok(())
                } else {
                    Err(Error::config("k", k, "must be a finite number ≥ 1"))
                }
            }
        }
    }

    /// ε at training step `step`.
    pub fn probability(&self, step: usize) -> f64 {
        let i = step as f64;
        match *self {
            TeacherSchedule::Constant(p) => p,
            TeacherSchedule::Linear {
                start,
                slope,
                floor,
            } => (start - slope * i).max(floor),
            TeacherSchedule::Exponential { base } => base.powf(i),
            TeacherSchedule::InverseSigmoid { k } => k / (k + (i / k).exp()),
        }
    }

    /// The [`Forcing::Scheduled`] of training step `step`, after checking the schedule.
    pub fn forcing(&self, step: usize, feedback: Feedback, seed: u64) -> Result<Forcing> {
        self.validate()?;
        Ok(Forcing::Scheduled {
            teacher_probability: self.probability(step),
            feedback,
            seed,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The model.
// ---------------------------------------------------------------------------------------------

/// Configuration of an [`OutputFeedbackRnn`]: a [`JordanRnn`] by default, an
/// [`ElmanJordanRnn`] with [`hidden_recurrence`](Self::hidden_recurrence)
/// ([`OutputFeedbackRnnConfig::elman_jordan`]).
#[derive(Config, Debug)]
pub struct OutputFeedbackRnnConfig {
    /// Width of `x(t)`: the feature count for dense input, the vocabulary size for token ids.
    pub input_size: usize,
    /// Width of `h(t)`.
    pub hidden_size: usize,
    /// Width of `o(t)` and of the fed-back `r(t-1)`: the number of classes.
    pub output_size: usize,
    /// Whether `a(t)` also has the hidden-to-hidden term `W_hh h(t-1)` (an Elman–Jordan
    /// network). Default false: the only recurrence goes through the output (Jordan).
    #[config(default = false)]
    pub hidden_recurrence: bool,
    /// Whether `a(t)` and `o(t)` have the biases `b` and `c`.
    #[config(default = true)]
    pub bias: bool,
    /// Whether `r(0)` is a learned start vector (starting at zero) rather than fixed zeros.
    #[config(default = true)]
    pub learn_start: bool,
    /// Initialiser of `U`, `W`, `W_hh` and `V`; biases and `r(0)` start at zero. Default:
    /// PyTorch's, `U(-1/√fan_in, 1/√fan_in)`.
    #[config(default = "crate::init::default_initializer()")]
    pub initializer: Initializer,
}

/// The configuration of a [`JordanRnn`]: `JordanRnnConfig::new(input, hidden, output)`.
pub type JordanRnnConfig = OutputFeedbackRnnConfig;

/// The configuration preset of an [`ElmanJordanRnn`]: `ElmanJordanRnnConfig::new(input,
/// hidden, output)` is an [`OutputFeedbackRnnConfig`] with the hidden-to-hidden path.
#[derive(Debug, Clone, Copy)]
pub struct ElmanJordanRnnConfig;

impl ElmanJordanRnnConfig {
    /// [`OutputFeedbackRnnConfig::elman_jordan`].
    #[allow(clippy::new_ret_no_self)] // a preset of the one config
    pub fn new(
        input_size: usize,
        hidden_size: usize,
        output_size: usize,
    ) -> OutputFeedbackRnnConfig {
        OutputFeedbackRnnConfig::elman_jordan(input_size, hidden_size, output_size)
    }
}

/// The RNN whose recurrence goes through its output: `h(t) = tanh(b + W r(t-1) [+ W_hh h(t-1)]
/// + U x(t))`, `o(t) = c + V h(t)` (see the [module docs](self)).
///
/// A [`SequenceModel`]: train it with teacher forcing ([`UnrollOptions::teacher_forced`], or
/// simply [`SequenceModel::try_loss`], which feeds the targets) or scheduled sampling; run it
/// free with [`Forcing::FreeRunning`], or generate with [`generate`](crate::sample::generate).
#[derive(Module, Debug)]
pub struct OutputFeedbackRnn<B: Backend> {
    /// Input-to-hidden weights `U`, `[input_size, hidden_size]`.
    pub u: Param<Tensor<B, 2>>,
    /// Output-to-hidden weights `W`, `[output_size, hidden_size]`.
    pub w: Param<Tensor<B, 2>>,
    /// Hidden-to-hidden weights `W_hh`, `[hidden_size, hidden_size]`: only in an
    /// [`ElmanJordanRnn`].
    pub w_hh: Option<Param<Tensor<B, 2>>>,
    /// Hidden bias `b`, `[hidden_size]`.
    pub b: Option<Param<Tensor<B, 1>>>,
    /// The learned start vector `r(0)`, `[output_size]`; zeros when `None`.
    pub start: Option<Param<Tensor<B, 1>>>,
    /// The output layer: `V`, `c`.
    pub readout: Readout<B>,
}

/// The output-to-hidden (Jordan) RNN: an [`OutputFeedbackRnn`] without `W_hh`.
pub type JordanRnn<B> = OutputFeedbackRnn<B>;

/// The RNN with both recurrences: an [`OutputFeedbackRnn`] with `W_hh`.
pub type ElmanJordanRnn<B> = OutputFeedbackRnn<B>;

impl OutputFeedbackRnnConfig {
    /// The preset with both recurrences (an [`ElmanJordanRnn`]).
    pub fn elman_jordan(input_size: usize, hidden_size: usize, output_size: usize) -> Self {
        Self::new(input_size, hidden_size, output_size).with_hidden_recurrence(true)
    }

    /// The number of parameters: `U`, `W`, `W_hh` (if any), `b`, `r(0)`, `V`, `c`
    /// (`u64::MAX` if the count overflows).
    pub fn parameter_count(&self) -> u64 {
        let (i, h, o) = (
            self.input_size as u64,
            self.hidden_size as u64,
            self.output_size as u64,
        );
        let (bias, start) = (self.bias as u64, self.learn_start as u64);
        memory::sum_of_products(&[
            &[i, h],
            &[o, h],
            &[h, h, self.hidden_recurrence as u64],
            &[h, bias],
            &[o, start],
            &[h, o],
            &[o, bias],
        ])
    }

    /// What one teacher-forced training step of `batch` sequences of `time` steps keeps at
    /// its peak, in f32 (see [`memory`]): the parameters with their gradients and Adam's
    /// moments, six `[batch, time, hidden]` buffers (the pre-activations, states and both their
    /// gradients, and the kernels' temporaries: the measured peak is ≈ 5.5 of them,
    /// `tests/memory_estimate.rs`), the readout loss's `G`, the token batch.
    pub fn training_memory(&self, batch: usize, time: usize) -> MemoryEstimate {
        let tokens = memory::mul(&[batch, time]);
        let activations = memory::sum_of_products(&[
            &[6, tokens, self.hidden_size as u64],
            &[tokens, self.output_size as u64],
            &[4, tokens],
        ]);
        MemoryEstimate::from_floats(self.parameter_count(), activations)
    }

    /// Checks the sizes (and that the parameters fit in memory: an [`Error::TooLarge`]
    /// otherwise), then initialises the model on `device`.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> Result<OutputFeedbackRnn<B>> {
        check_sizes(&[
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("output_size", self.output_size),
        ])?;
        check_initializer(&self.initializer)?;
        let sizes = [
            ("hidden_size", self.hidden_size),
            ("input_size", self.input_size),
            ("output_size", self.output_size),
        ];
        memory::check_parameters(&sizes, |v| {
            OutputFeedbackRnnConfig {
                hidden_size: v[0],
                input_size: v[1],
                output_size: v[2],
                ..self.clone()
            }
            .parameter_count()
        })?;
        let weight = |fan_in, fan_out| init::weight(&self.initializer, fan_in, fan_out, device);
        Ok(OutputFeedbackRnn {
            u: weight(self.input_size, self.hidden_size),
            w: weight(self.output_size, self.hidden_size),
            w_hh: self
                .hidden_recurrence
                .then(|| weight(self.hidden_size, self.hidden_size)),
            b: init::bias(self.bias, self.hidden_size, device),
            start: init::bias(self.learn_start, self.output_size, device),
            readout: ReadoutConfig::new(self.hidden_size, self.output_size)
                .with_bias(self.bias)
                .with_initializer(self.initializer.clone())
                .init(device),
        })
    }

    /// Initialises the model on `device`; panics with a clear message on a zero size (see
    /// [`try_init`](Self::try_init)).
    pub fn init<B: Backend>(&self, device: &B::Device) -> OutputFeedbackRnn<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The tensors of one forward pass, taken from the model once.
struct Parts<'a, B: Backend> {
    /// `U`, `[input_size, hidden_size]`.
    u: Tensor<B, 2>,
    /// `b`, `[hidden_size]`.
    b: Option<Tensor<B, 1>>,
    /// `W`, `[output_size, hidden_size]`.
    w: Tensor<B, 2>,
    /// `W_hh`, `[hidden, hidden]`, with the hidden-to-hidden path.
    w_hh: Option<Tensor<B, 2>>,
    /// `r(0)`, `[output_size]`; zeros when `None`.
    start: Option<Tensor<B, 1>>,
    readout: &'a Readout<B>,
    /// Whether to cut the readout off the graph (choosing feedback without gradients).
    detached: bool,
}

impl<B: Backend> Parts<'_, B> {
    fn classes(&self) -> usize {
        self.w.dims()[0]
    }

    fn hidden(&self) -> usize {
        self.w.dims()[1]
    }

    /// The same parts cut off the autodiff graph.
    fn detached(&self) -> Self {
        Parts {
            u: self.u.clone().detach(),
            b: self.b.clone().map(Tensor::detach),
            w: self.w.clone().detach(),
            w_hh: self.w_hh.clone().map(Tensor::detach),
            start: self.start.clone().map(Tensor::detach),
            readout: self.readout,
            detached: true,
        }
    }

    /// `o = c + V h`.
    fn readout<const D: usize>(&self, h: Tensor<B, D>) -> Tensor<B, D> {
        let o = self.readout.forward(h);
        if self.detached {
            o.detach()
        } else {
            o
        }
    }

    /// `b + x(t) U` for every step at once.
    fn input_drive(&self, input: SequenceInput<B>) -> Tensor<B, 3> {
        input_drive(self.u.clone(), self.b.clone(), input)
    }

    /// `r(t-1) W` for every step when what is fed back are token ids: `r(0) W` at step 0, then
    /// row `prev[t-1]` of `W` (the one-hot product as a lookup). `prev`: `[batch, time-1]`, the
    /// ids fed back at steps `1..time` (`None` for a single step). `[batch, time, hidden]`.
    ///
    /// One lookup in `[W; r(0) W]`, whose extra last row is the start's product, read at step
    /// 0: the lookup is the fused token input's, and no `[batch, time, hidden]` tensor is
    /// joined along time (a slow copy on ndarray, see [`concat`]).
    fn token_feedback(
        &self,
        prev: Option<Tensor<B, 2, Int>>,
        batch: usize,
        device: &B::Device,
    ) -> Tensor<B, 3> {
        let (classes, hidden) = (self.classes(), self.hidden());
        // Zeros in `W`'s float type (a creation op alone would take the device's default).
        let zeros = |dims: [usize; 2]| Tensor::zeros(dims, (device, self.w.dtype()));
        let start_row = match &self.start {
            Some(start) => start.clone().reshape([1, classes]).matmul(self.w.clone()),
            None => zeros([1, hidden]),
        };
        let table = Tensor::cat(vec![self.w.clone(), start_row], 0);
        let start_ids = Tensor::<B, 2, Int>::full([batch, 1], classes as i64, device);
        let ids = match prev {
            None => start_ids,
            Some(prev) => Tensor::cat(vec![start_ids, prev], 1),
        };
        let no_bias = Tensor::zeros([hidden], (device, self.w.dtype()));
        embedding_with_bias(table, no_bias, ids)
    }

    /// `r(t-1) W` for dense fed-back vectors `r` `[batch, time, classes]`.
    fn dense_feedback(&self, r: Tensor<B, 3>) -> Tensor<B, 3> {
        linear_rows(r, self.w.clone(), None)
    }

    /// `r` with its step 0 replaced by `r(0)` from these (tracked) parts: the chosen feedback
    /// of a detached pass, re-attached to the learned start vector.
    fn with_start(&self, r: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, time, classes] = r.dims();
        let first = match &self.start {
            Some(start) => start
                .clone()
                .reshape([1, 1, classes])
                .expand([batch, 1, classes]),
            None => Tensor::zeros([batch, 1, classes], &r.device()),
        };
        if time == 1 {
            return first;
        }
        concat(vec![first, r.slice([0..batch, 1..time, 0..classes])], 1)
    }

    /// Every state from the pre-activations without the hidden path, `pre(t) = b + U x(t) +
    /// W r(t-1)` `[batch, time, hidden]`: the fused recurrence over `W_hh` from `h0` when
    /// there is a hidden path, else `tanh(pre)` at once (no recurrence left).
    fn states(&self, pre: Tensor<B, 3>, h0: Tensor<B, 2>, plan: &StepPlan<B>) -> Unrolled<B> {
        match &self.w_hh {
            Some(w_hh) => recurrence::recurrence(pre, w_hh.clone(), h0, plan, Nonlinearity::Tanh),
            None => hold_past_lengths(activation(pre, Nonlinearity::Tanh), plan),
        }
    }

    /// One step from its pre-activation without the hidden path: `h(t) = tanh(pre(t) [+
    /// h(t-1) W_hh])`.
    fn step(&self, h_prev: Tensor<B, 2>, pre: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.w_hh {
            Some(w_hh) => recurrence::step(h_prev, pre, w_hh, Nonlinearity::Tanh),
            None => pre.tanh(),
        }
    }

    /// The step-by-step forward pass: at every step chooses `r(t-1)` (the true previous target
    /// or the own previous output, per `forcing`), then `h(t)`. Runs through the generic
    /// [`scan`] with the [`FedBackCell`]. Returns `h(t)` (with each row's last) and `r(t-1)`
    /// for every step.
    ///
    /// Unlike the hoisted drive of the teacher-forced passes, the input projection `x(t) U` is
    /// computed inside each step here, and the per-step drive holds only data (inputs, true
    /// targets, coin flips, noise): Burn's autodiff turns every per-step slice of a *tracked*
    /// `[batch, time, ·]` tensor into a full-size gradient in the backward pass, which would make
    /// this loop's backward cost grow with `time²`.
    fn sequential(
        &self,
        input: SequenceInput<B>,
        teacher: Option<&Tensor<B, 2, Int>>,
        forcing: &Forcing,
        h0: Tensor<B, 2>,
        plan: &StepPlan<B>,
    ) -> (Unrolled<B>, Tensor<B, 3>) {
        let [batch, time] = input.batch_and_time();
        let (classes, hidden) = (self.classes(), self.hidden());
        let device = input.device();
        let x = match input {
            SequenceInput::Dense(x) => x,
            // One-hot rows of the identity: no host read (Burn's `one_hot` checks the ids).
            SequenceInput::Tokens(ids) => embedding(Tensor::eye(self.u.dims()[0], &device), ids),
        };
        let p = forcing.teacher_probability();
        let (feedback, seed) = forcing.own();
        let mut rng = StdRng::seed_from_u64(seed);
        // Coin flips, drawn on the host in a fixed order: 1 = feed the true y(t-1). Step 0
        // always takes r(0).
        let coins: Vec<f64> = (0..batch * time)
            .map(|i| {
                let t = i % time;
                let teacher = t == 0 || p >= 1.0 || (p > 0.0 && rng.random::<f64>() < p);
                if teacher {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let coins = Tensor::<B, 3>::from_data(TensorData::new(coins, [batch, time, 1]), &device);
        let first: Vec<f64> = (0..batch * time)
            .map(|i| if i % time == 0 { 1.0 } else { 0.0 })
            .collect();
        let first = Tensor::<B, 3>::from_data(TensorData::new(first, [batch, time, 1]), &device);
        let zero_row = Tensor::zeros([batch, 1, classes], &device);
        // The true y(t-1) where the coin says so (zero at step 0: r(0) is added in the step).
        let teacher = match (teacher, time) {
            (_, 1) => zero_row,
            (Some(targets), _) => {
                let prev = targets.clone().slice([0..batch, 0..time - 1]);
                let one_hot = embedding(Tensor::eye(classes, &device), prev);
                Tensor::cat(vec![zero_row, one_hot], 1) * coins.clone()
            }
            (None, _) => Tensor::zeros([batch, time, classes], &device),
        };
        let own = (p < 1.0).then_some(feedback);
        let mut columns = vec![x, teacher, first];
        if own.is_some() {
            columns.push(coins.neg() + 1.0);
        }
        if own == Some(Feedback::Sample) {
            let gumbel: Vec<f64> = (0..batch * time * classes)
                .map(|_| {
                    // u in (0, 1): both logarithms finite.
                    let u = rng
                        .random::<f64>()
                        .clamp(f64::MIN_POSITIVE, 1.0 - f64::EPSILON);
                    -(-u.ln()).ln()
                })
                .collect();
            columns.push(Tensor::from_data(
                TensorData::new(gumbel, [batch, time, classes]),
                &device,
            ));
        }
        let cell = FedBackCell { parts: self, own };
        let drive = Tensor::cat(columns, 2);
        let state0 = Tensor::cat(vec![h0, Tensor::zeros([batch, classes], &device)], 1);
        let Unrolled { states, last, .. } = scan(State::new(state0), plan, |t, state| {
            State::new(cell.step(state.into_output(), drive_at(&drive, t)))
        });
        let h = states.clone().slice([0..batch, 0..time, 0..hidden]);
        let r = states.slice([0..batch, 0..time, hidden..hidden + classes]);
        let last = last.slice([0..batch, 0..hidden]);
        let unrolled = Unrolled {
            states: h,
            last: last.clone(),
            final_state: State::new(last),
        };
        (unrolled, r)
    }
}

/// One step of the model fed its own outputs, for the step-by-step passes.
///
/// State: `[h(t), r(t-1)]` (width `hidden + classes`). Drive row `t` (data only):
/// `[x(t), the true y(t-1) where it is fed, 1 at step 0, the own output's weight, Gumbel
/// noise]`, the last two only when own outputs are fed back, the noise only for
/// [`Feedback::Sample`].
struct FedBackCell<'a, 'b, B: Backend> {
    parts: &'a Parts<'b, B>,
    /// How own outputs are fed back; `None` when only true targets are.
    own: Option<Feedback>,
}

impl<B: Backend> FedBackCell<'_, '_, B> {
    /// `r(t-1) = y(t-1)·coin(t) + r(0)·[t = 0] + (1 - coin(t))·feedback(c + V h(t-1))` (the own
    /// output detached: it is an input, as in Bengio et al.), then
    /// `h(t) = tanh(b + U x(t) + W r(t-1) [+ W_hh h(t-1)])`.
    fn step(&self, state: Tensor<B, 2>, drive: Tensor<B, 2>) -> Tensor<B, 2> {
        let [batch, _] = state.dims();
        let (hidden, classes) = (self.parts.hidden(), self.parts.classes());
        let inputs = self.parts.u.dims()[0];
        let column =
            |from: usize, width: usize| drive.clone().slice([0..batch, from..from + width]);
        let h_prev = state.slice([0..batch, 0..hidden]);
        let mut r = column(inputs, classes);
        let mut next = inputs + classes;
        if let Some(start) = &self.parts.start {
            r = r + column(next, 1) * start.clone().unsqueeze();
        }
        next += 1;
        if let Some(feedback) = self.own {
            let o = self.parts.readout(h_prev.clone()).detach();
            let weight = column(next, 1);
            let gumbel = (feedback == Feedback::Sample).then(|| column(next + 1, classes));
            r = r + feedback.apply(o, gumbel) * weight;
        }
        let mut pre =
            column(0, inputs).matmul(self.parts.u.clone()) + r.clone().matmul(self.parts.w.clone());
        if let Some(b) = &self.parts.b {
            pre = pre + b.clone().unsqueeze();
        }
        Tensor::cat(vec![self.parts.step(h_prev, pre), r], 1)
    }
}

/// `states` with each row's steps past its length replaced by its state at its last valid
/// step, as the recurrent paths hold them; and that state as `last`.
fn hold_past_lengths<B: Backend>(states: Tensor<B, 3>, plan: &StepPlan<B>) -> Unrolled<B> {
    let [batch, time, hidden] = states.dims();
    let Some(lengths) = plan.lengths() else {
        let last = drive_at(&states, time - 1);
        return Unrolled {
            states,
            last: last.clone(),
            final_state: State::new(last),
        };
    };
    let device = states.device();
    let index: Vec<i64> = lengths
        .iter()
        .flat_map(|&len| {
            (0..time).flat_map(move |t| std::iter::repeat_n(t.min(len - 1) as i64, hidden))
        })
        .collect();
    let index = Tensor::from_data(TensorData::new(index, [batch, time, hidden]), &device);
    let held = states.gather(1, index);
    let last = held
        .clone()
        .slice([0..batch, time - 1..time, 0..hidden])
        .reshape([batch, hidden]);
    Unrolled {
        states: held,
        last: last.clone(),
        final_state: State::new(last),
    }
}

/// The previous targets fed back at steps `1..time`: `targets[:, 0..time-1]`, or `None` for a
/// single step.
fn previous<B: Backend>(targets: Tensor<B, 2, Int>) -> Option<Tensor<B, 2, Int>> {
    let [batch, time] = targets.dims();
    (time > 1).then(|| targets.slice([0..batch, 0..time - 1]))
}

impl<B: Backend> OutputFeedbackRnn<B> {
    fn parts(&self) -> Parts<'_, B> {
        Parts {
            u: self.u.val(),
            b: self.b.as_ref().map(Param::val),
            w: self.w.val(),
            w_hh: self.w_hh.as_ref().map(Param::val),
            start: self.start.as_ref().map(Param::val),
            readout: &self.readout,
            detached: false,
        }
    }

    /// Whether this is an [`ElmanJordanRnn`] (with the hidden-to-hidden path).
    pub fn has_hidden_recurrence(&self) -> bool {
        self.w_hh.is_some()
    }

    fn name(&self) -> &'static str {
        if self.has_hidden_recurrence() {
            "ElmanJordanRnn"
        } else {
            "JordanRnn"
        }
    }

    /// Checks a forward pass's input and options; returns the step plan, `h(0)` and the
    /// teacher (the true outputs, where the forcing feeds them).
    #[allow(clippy::type_complexity)]
    fn check(
        &self,
        input: &SequenceInput<B>,
        options: &UnrollOptions<B>,
    ) -> Result<(StepPlan<B>, Tensor<B, 2>, Option<Tensor<B, 2, Int>>)> {
        input.validate("input", self.input_size())?;
        let forcing = &options.forcing;
        forcing.validate()?;
        if options.reverse {
            return Err(Error::config(
                "reverse",
                true,
                "a model that feeds its outputs back reads forward in time",
            ));
        }
        let [batch, time] = input.batch_and_time();
        let device = input.device();
        let plan = options.plan(batch, time, &device)?;
        let h0 = match (&options.initial_state, self.has_hidden_recurrence()) {
            (Some(_), false) => {
                return Err(Error::config(
                    "initial_state",
                    "given",
                    "a JordanRnn has no hidden-to-hidden state to start from (its start is \
                     the fed-back r(0)); use ElmanJordanRnn for an initial h(0)",
                ))
            }
            _ => options
                .initial_state_for(batch, &[self.hidden_size()], &device)?
                .into_output(),
        };
        let teacher = match &options.teacher {
            Some(targets) => {
                if targets.dims() != [batch, time] {
                    return Err(Error::shape(
                        "targets",
                        format!("[{batch}, {time}] (the input's batch and time)"),
                        &targets.dims(),
                    ));
                }
                SequenceInput::Tokens(targets.clone()).validate("targets", self.output_size())?;
                Some(targets.clone())
            }
            None if forcing.needs_targets() => {
                return Err(Error::Missing {
                    arg: "targets",
                    why: format!(
                        "{forcing:?} feeds the true previous target y(t-1) back; pass the \
                         targets [batch, time] (UnrollOptions::teacher_forced or with_teacher), \
                         or use Forcing::FreeRunning"
                    ),
                });
            }
            None => None,
        };
        Ok((plan, h0, teacher))
    }

    /// The states `h(t)` of every step under the options' forcing, and what was fed back when
    /// that was not the teacher.
    fn run(
        &self,
        input: SequenceInput<B>,
        options: &UnrollOptions<B>,
    ) -> Result<(Unrolled<B>, Option<Tensor<B, 3>>)> {
        let (plan, h0, teacher) = self.check(&input, options)?;
        let [batch, _] = input.batch_and_time();
        let device = input.device();
        let parts = self.parts();
        let forcing = &options.forcing;
        Ok(match forcing {
            Forcing::TeacherForced => {
                let prev = previous(teacher.expect("checked"));
                let pre = parts.input_drive(input) + parts.token_feedback(prev, batch, &device);
                (parts.states(pre, h0, &plan), None)
            }
            Forcing::FreeRunning { .. } => {
                let (states, r) = parts.sequential(input, teacher.as_ref(), forcing, h0, &plan);
                (states, Some(r))
            }
            // The own outputs are chosen step by step without gradients, then the loss pass is
            // one teacher-forced pass with them in place of y(t-1).
            Forcing::Scheduled { .. } => {
                let (_, chosen) = parts.detached().sequential(
                    input.clone().detach(),
                    teacher.as_ref(),
                    forcing,
                    h0.clone().detach(),
                    &plan,
                );
                let r = parts.with_start(chosen.clone());
                let pre = parts.input_drive(input) + parts.dense_feedback(r);
                (parts.states(pre, h0, &plan), Some(chosen))
            }
        })
    }

    /// The same forward pass one step at a time for every forcing (teacher forcing included),
    /// through the generic scan, recording every step for autodiff: the reference the
    /// parallel passes are tested against, and the baseline of the teacher-forcing speed-up.
    pub fn try_forward_sequential(
        &self,
        input: impl Into<SequenceInput<B>>,
        options: &UnrollOptions<B>,
    ) -> Result<RnnOutput<B>> {
        let input = input.into();
        let (plan, h0, teacher) = self.check(&input, options)?;
        let parts = self.parts();
        let (states, r) = parts.sequential(input, teacher.as_ref(), &options.forcing, h0, &plan);
        Ok(self.output(
            states,
            (options.forcing != Forcing::TeacherForced).then_some(r),
        ))
    }

    fn output(&self, unrolled: Unrolled<B>, fed_back: Option<Tensor<B, 3>>) -> RnnOutput<B> {
        let Unrolled {
            states,
            last,
            final_state,
        } = unrolled;
        RnnOutput {
            logits: self.readout.forward(states.clone()),
            states,
            last,
            final_state,
            fed_back,
        }
    }
}

impl<B: Backend> SequenceModel<B> for OutputFeedbackRnn<B> {
    fn input_size(&self) -> usize {
        self.u.dims()[0]
    }

    fn hidden_size(&self) -> usize {
        self.u.dims()[1]
    }

    fn output_size(&self) -> usize {
        self.readout.output_size()
    }

    /// Teacher forcing computes every step at once: `h = tanh(b + U x + W [r(0), y(0), …,
    /// y(τ-2)])` (with the hidden path, the fused recurrence over that drive); free running
    /// loops over time (step `t` needs output `t-1`); scheduled sampling chooses the fed-back
    /// outputs step by step without gradients, then computes the loss pass at once.
    ///
    /// Options: `reverse` is an error (the model feeds its outputs back, so it reads forward);
    /// an initial state is `h(0)` of the hidden path (an error for a [`JordanRnn`], which has
    /// none); lengths hold each sequence's state past its end, as the recurrent models do.
    fn try_forward(
        &self,
        input: impl Into<SequenceInput<B>>,
        options: &UnrollOptions<B>,
    ) -> Result<RnnOutput<B>> {
        let (states, fed_back) = self.run(input.into(), options)?;
        Ok(self.output(states, fed_back))
    }

    fn try_loss(
        &self,
        input: impl Into<SequenceInput<B>>,
        targets: Tensor<B, 2, Int>,
        options: &UnrollOptions<B>,
        reduction: Reduction,
    ) -> Result<RnnLoss<B>> {
        let options = match options.teacher {
            Some(_) => options.clone(),
            None => options.clone().with_teacher(targets.clone()),
        };
        let (unrolled, _) = self.run(input.into(), &options)?;
        let Unrolled {
            states,
            last,
            final_state,
        } = unrolled;
        let lengths = options.lengths.as_deref();
        let loss = try_readout_nll(states, &self.readout, targets, lengths, reduction)?;
        Ok(RnnLoss {
            loss,
            last,
            final_state,
        })
    }
}

/// Generation, for models whose outputs are their next inputs (`input_size == output_size`, a
/// language model): the chosen token `ŷ(t)` is fed back both as `r(t)` and as `x(t+1)`. The
/// state is `h(t)`. On the prompt `p(1..n)` the fed-back `r(t-1)` is `r(0)`, then `p(t)` (the
/// previous output is the current input).
impl<B: Backend> Autoregressive<B> for OutputFeedbackRnn<B> {
    fn warm(&self, prompts: Tensor<B, 2, Int>, lengths: &[usize]) -> Result<State<B>> {
        check_feeds_back(self.name(), self.input_size(), self.output_size())?;
        let input = SequenceInput::Tokens(prompts.clone());
        input.validate("prompts", self.output_size())?;
        let [batch, time] = prompts.dims();
        validate_lengths(lengths, batch, time)?;
        let device = prompts.device();
        let plan = StepPlan::new(batch, time, Some(lengths), false, &device)?;
        let parts = self.parts();
        let prev = (time > 1).then(|| prompts.slice([0..batch, 1..time]));
        let pre = parts.input_drive(input) + parts.token_feedback(prev, batch, &device);
        let h0 = Tensor::zeros([batch, self.hidden_size()], &device);
        Ok(parts.states(pre, h0, &plan).final_state)
    }

    fn next_logits(&self, state: &State<B>) -> Tensor<B, 2> {
        self.readout.forward(state.output().clone())
    }

    /// `h(t+1) = tanh(b + U ŷ(t) + W ŷ(t) [+ W_hh h(t)])`.
    fn feed(&self, state: State<B>, tokens: Tensor<B, 1, Int>) -> State<B> {
        let ids = tokens.unsqueeze_dim::<2>(1);
        let [batch, _] = ids.dims();
        let parts = self.parts();
        let pre =
            parts.input_drive(SequenceInput::Tokens(ids.clone())) + embedding(parts.w.clone(), ids);
        let pre = pre.reshape([batch, self.hidden_size()]);
        State::new(parts.step(state.into_output(), pre))
    }

    /// One tanh layer whose token table is `U + W` (the chosen token is both `x(t+1)` and
    /// `r(t)`), with `W_hh` as its recurrence when there is one.
    fn generation_net(&self, state: &State<B>) -> Option<GenerationNet<B>> {
        let parts = self.parts();
        let layer =
            GenerationLayer::new(parts.u + parts.w, parts.b, parts.w_hh, Nonlinearity::Tanh);
        Some(GenerationNet::new(
            vec![layer],
            self.readout.v.val(),
            self.readout.c.as_ref().map(|c| c.val()),
            vec![state.output().clone()],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::sequence_nll;
    use crate::sample::{generate, GenerateConfig, Sampling};
    use burn::module::AutodiffModule;
    use burn::tensor::{Distribution, Tolerance};

    type TestBackend = burn::backend::NdArray<f64>;
    type Ad = burn::backend::Autodiff<TestBackend>;

    fn exact() -> Tolerance<f64> {
        Tolerance::absolute(1e-12)
    }

    /// Options feeding back as `forcing` says, with `targets` as the teacher.
    fn feeding<B: Backend>(
        forcing: Forcing,
        targets: Option<Tensor<B, 2, Int>>,
    ) -> UnrollOptions<B> {
        let options = UnrollOptions::new().with_forcing(forcing);
        match targets {
            Some(targets) => options.with_teacher(targets),
            None => options,
        }
    }

    fn flat<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
        t.into_data().convert::<f64>().into_vec::<f64>().unwrap()
    }

    fn assert_close(a: &[f64], b: &[f64], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-10, "{what}: max |difference| = {worst}");
    }

    fn random_start<B: Backend>(size: usize, device: &B::Device) -> Option<Param<Tensor<B, 1>>> {
        Some(Param::from_tensor(Tensor::random(
            [size],
            Distribution::Normal(0.0, 1.0),
            device,
        )))
    }

    /// Large weights and a non-zero `r(0)`, so that every path visibly moves the outputs.
    fn jordan<B: Backend>(input: usize, output: usize, device: &B::Device) -> JordanRnn<B> {
        let mut model = JordanRnnConfig::new(input, 6, output)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.8,
            })
            .init(device);
        model.start = random_start(output, device);
        model
    }

    fn both<B: Backend>(input: usize, output: usize, device: &B::Device) -> ElmanJordanRnn<B> {
        let mut model = ElmanJordanRnnConfig::new(input, 6, output)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.6,
            })
            .init(device);
        model.start = random_start(output, device);
        model
    }

    fn ids<B: Backend>(rows: &[&[i64]], device: &B::Device) -> Tensor<B, 2, Int> {
        let time = rows[0].len();
        let data: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_data(TensorData::new(data, [rows.len(), time]), device)
    }

    fn random_ids<B: Backend>(
        batch: usize,
        time: usize,
        classes: usize,
        seed: u64,
        device: &B::Device,
    ) -> Tensor<B, 2, Int> {
        let mut rng = StdRng::seed_from_u64(seed);
        let data: Vec<i64> = (0..batch * time)
            .map(|_| rng.random_range(0..classes as i64))
            .collect();
        Tensor::from_data(TensorData::new(data, [batch, time]), device)
    }

    fn jordan_grads(model: &JordanRnn<Ad>, loss: Tensor<Ad, 1>) -> Vec<(&'static str, Vec<f64>)> {
        let grads = loss.backward();
        vec![
            ("U", flat(model.u.grad(&grads).unwrap())),
            ("W", flat(model.w.grad(&grads).unwrap())),
            ("b", flat(model.b.as_ref().unwrap().grad(&grads).unwrap())),
            (
                "r(0)",
                flat(model.start.as_ref().unwrap().grad(&grads).unwrap()),
            ),
            ("V", flat(model.readout.v.grad(&grads).unwrap())),
            (
                "c",
                flat(model.readout.c.as_ref().unwrap().grad(&grads).unwrap()),
            ),
        ]
    }

    fn both_grads(
        model: &ElmanJordanRnn<Ad>,
        loss: Tensor<Ad, 1>,
    ) -> Vec<(&'static str, Vec<f64>)> {
        let grads = loss.backward();
        vec![
            ("U", flat(model.u.grad(&grads).unwrap())),
            (
                "W_hh",
                flat(model.w_hh.as_ref().unwrap().grad(&grads).unwrap()),
            ),
            ("b", flat(model.b.as_ref().unwrap().grad(&grads).unwrap())),
            ("W", flat(model.w.grad(&grads).unwrap())),
            (
                "r(0)",
                flat(model.start.as_ref().unwrap().grad(&grads).unwrap()),
            ),
            ("V", flat(model.readout.v.grad(&grads).unwrap())),
            (
                "c",
                flat(model.readout.c.as_ref().unwrap().grad(&grads).unwrap()),
            ),
        ]
    }

    fn assert_same_grads(
        a: Vec<(&'static str, Vec<f64>)>,
        b: Vec<(&'static str, Vec<f64>)>,
        what: &str,
    ) {
        for ((name, ga), (_, gb)) in a.into_iter().zip(b) {
            assert!(
                ga.iter().any(|g| g.abs() > 1e-8),
                "{what}: ∂L/∂{name} is all zero"
            );
            assert_close(&ga, &gb, &format!("{what}: ∂L/∂{name}"));
        }
    }

    fn nll(output: &RnnOutput<Ad>, targets: &Tensor<Ad, 2, Int>) -> Tensor<Ad, 1> {
        sequence_nll(output.logits.clone(), targets.clone(), None, Reduction::Sum)
    }

    #[test]
    fn teacher_forced_parallel_equals_sequential() {
        let device = Default::default();
        let model = jordan::<Ad>(4, 5, &device);
        let targets = random_ids::<Ad>(3, 7, 5, 1, &device);
        let dense = Tensor::<Ad, 3>::random([3, 7, 4], Distribution::Normal(0.0, 1.0), &device);
        let tokens = random_ids::<Ad>(3, 7, 4, 2, &device);
        for input in [SequenceInput::Dense(dense), SequenceInput::Tokens(tokens)] {
            let f = Forcing::TeacherForced;
            let parallel = model.forward(input.clone(), &feeding(f, Some(targets.clone())));
            let sequential = model
                .try_forward_sequential(input, &feeding(f, Some(targets.clone())))
                .unwrap();
            assert_close(
                &flat(parallel.logits.clone()),
                &flat(sequential.logits.clone()),
                "logits",
            );
            assert_close(
                &flat(parallel.states.clone()),
                &flat(sequential.states.clone()),
                "states",
            );
            assert_same_grads(
                jordan_grads(&model, nll(&parallel, &targets)),
                jordan_grads(&model, nll(&sequential, &targets)),
                "Jordan teacher forcing",
            );
        }
    }

    #[test]
    fn fused_loss_equals_the_nll_of_the_forward_logits() {
        let device = Default::default();
        let model = jordan::<Ad>(4, 5, &device);
        let targets = random_ids::<Ad>(3, 7, 5, 4, &device);
        let tokens = random_ids::<Ad>(3, 7, 4, 5, &device);
        let free = Forcing::FreeRunning {
            feedback: Feedback::Softmax,
            seed: 0,
        };
        // Each pass on fresh leaves: under Burn 0.21, a parameter reused after one backward
        // pass can lose part of its gradient when another thread runs a backward pass at the
        // same time (tracel-ai/burn#5573), as the other tests do. Seen here once in ~20 runs.
        let fresh = || JordanRnn::<Ad>::from_inner(model.valid());
        for forcing in [Forcing::TeacherForced, free] {
            let fused_model = fresh();
            let fused = fused_model
                .loss(
                    tokens.clone(),
                    targets.clone(),
                    &feeding(forcing, None),
                    Reduction::Sum,
                )
                .loss;
            let fused_value = flat(fused.clone());
            let fused_grads = jordan_grads(&fused_model, fused);
            let reference_model = fresh();
            let output =
                reference_model.forward(tokens.clone(), &feeding(forcing, Some(targets.clone())));
            let reference = nll(&output, &targets);
            assert_close(&fused_value, &flat(reference.clone()), "loss");
            assert_same_grads(
                fused_grads,
                jordan_grads(&reference_model, reference),
                "fused Jordan loss",
            );
        }
    }

    #[test]
    fn both_recurrences_teacher_forced_unroll_equals_sequential() {
        let device = Default::default();
        let model = both::<Ad>(4, 5, &device);
        let targets = random_ids::<Ad>(3, 7, 5, 3, &device);
        let input = Tensor::<Ad, 3>::random([3, 7, 4], Distribution::Normal(0.0, 1.0), &device);
        let f = Forcing::TeacherForced;
        let unrolled = model.forward(input.clone(), &feeding(f, Some(targets.clone())));
        let sequential = model
            .try_forward_sequential(input, &feeding(f, Some(targets.clone())))
            .unwrap();
        assert_close(
            &flat(unrolled.logits.clone()),
            &flat(sequential.logits.clone()),
            "logits",
        );
        assert_same_grads(
            both_grads(&model, nll(&unrolled, &targets)),
            both_grads(&model, nll(&sequential, &targets)),
            "Elman-Jordan teacher forcing",
        );
    }

    #[test]
    fn scheduled_sampling_loss_pass_equals_the_recorded_step_loop() {
        let device = Default::default();
        let jordan = jordan::<Ad>(4, 5, &device);
        let both = both::<Ad>(4, 5, &device);
        let targets = random_ids::<Ad>(4, 9, 5, 4, &device);
        let input = random_ids::<Ad>(4, 9, 4, 5, &device);
        for feedback in [Feedback::Softmax, Feedback::Argmax, Feedback::Sample] {
            let f = Forcing::Scheduled {
                teacher_probability: 0.5,
                feedback,
                seed: 11,
            };
            let what = format!("{feedback:?}");
            let fast = jordan.forward(input.clone(), &feeding(f, Some(targets.clone())));
            let slow = jordan
                .try_forward_sequential(input.clone(), &feeding(f, Some(targets.clone())))
                .unwrap();
            assert_close(
                &flat(fast.logits.clone()),
                &flat(slow.logits.clone()),
                &what,
            );
            fast.fed_back
                .clone()
                .unwrap()
                .into_data()
                .assert_approx_eq::<f64>(&slow.fed_back.clone().unwrap().into_data(), exact());
            assert_same_grads(
                jordan_grads(&jordan, nll(&fast, &targets)),
                jordan_grads(&jordan, nll(&slow, &targets)),
                &format!("Jordan, {what}"),
            );
            let fast = both.forward(input.clone(), &feeding(f, Some(targets.clone())));
            let slow = both
                .try_forward_sequential(input.clone(), &feeding(f, Some(targets.clone())))
                .unwrap();
            assert_close(
                &flat(fast.logits.clone()),
                &flat(slow.logits.clone()),
                &what,
            );
            assert_same_grads(
                both_grads(&both, nll(&fast, &targets)),
                both_grads(&both, nll(&slow, &targets)),
                &format!("Elman-Jordan, {what}"),
            );
        }
    }

    #[test]
    fn teacher_probability_one_is_teacher_forcing_and_zero_is_free_running() {
        let device = Default::default();
        let model = jordan::<TestBackend>(4, 5, &device);
        let targets = random_ids::<TestBackend>(3, 8, 5, 6, &device);
        let input = random_ids::<TestBackend>(3, 8, 4, 7, &device);
        let run = |f: Forcing| {
            model
                .forward(input.clone(), &feeding(f, Some(targets.clone())))
                .logits
        };
        let scheduled = |p, feedback| Forcing::Scheduled {
            teacher_probability: p,
            feedback,
            seed: 3,
        };
        run(scheduled(1.0, Feedback::Sample))
            .into_data()
            .assert_approx_eq::<f64>(&run(Forcing::TeacherForced).into_data(), exact());
        for feedback in [Feedback::Softmax, Feedback::Argmax, Feedback::Sample] {
            let free = run(Forcing::FreeRunning { feedback, seed: 3 });
            run(scheduled(0.0, feedback))
                .into_data()
                .assert_approx_eq::<f64>(&free.clone().into_data(), exact());
            // And free running does not follow the targets.
            let moved = (free - run(Forcing::TeacherForced))
                .abs()
                .max()
                .into_scalar();
            assert!(
                moved > 1e-3,
                "{feedback:?}: free running equals teacher forcing"
            );
        }
    }

    #[test]
    fn free_running_feeds_back_its_own_argmax() {
        let device = Default::default();
        let model = jordan::<TestBackend>(4, 5, &device);
        let input = random_ids::<TestBackend>(3, 10, 4, 8, &device);
        let f = Forcing::FreeRunning {
            feedback: Feedback::Argmax,
            seed: 0,
        };
        let free = model.forward(input.clone(), &feeding(f, None));
        // Teacher forcing on the model's own argmax outputs is the same computation.
        let own = free.logits.clone().argmax(2).reshape([3, 10]);
        let forced = model.forward(input, &feeding(Forcing::TeacherForced, Some(own.clone())));
        forced
            .logits
            .into_data()
            .assert_approx_eq::<f64>(&free.logits.into_data(), exact());
        let fed = free.fed_back.unwrap();
        let expected = embedding(Tensor::eye(5, &device), own.slice([0..3, 0..9]));
        fed.slice([0..3, 1..10, 0..5])
            .into_data()
            .assert_approx_eq::<f64>(&expected.into_data(), exact());
    }

    #[test]
    fn sampled_feedback_follows_the_softmax_and_is_reproducible() {
        let device = Default::default();
        let model = jordan::<TestBackend>(4, 3, &device);
        // Every row the same input: r(1) is then a draw from the same softmax(o(0)).
        let batch = 4000;
        let input = Tensor::<TestBackend, 2, Int>::ones([batch, 2], &device);
        let run = |seed| {
            let free = Forcing::FreeRunning {
                feedback: Feedback::Sample,
                seed,
            };
            model.forward(input.clone(), &feeding(free, None))
        };
        let out = run(5);
        let p = softmax(
            out.logits.clone().slice([0..1, 0..1, 0..3]).reshape([1, 3]),
            1,
        );
        let p = flat(p);
        let drawn = flat(
            out.fed_back
                .clone()
                .unwrap()
                .slice([0..batch, 1..2, 0..3])
                .sum_dim(0),
        );
        for class in 0..3 {
            let freq = drawn[class] / batch as f64;
            assert!(
                (freq - p[class]).abs() < 0.03,
                "class {class}: {freq} vs {}",
                p[class]
            );
        }
        out.logits
            .clone()
            .into_data()
            .assert_eq(&run(5).logits.into_data(), true);
        let other = (out.logits - run(6).logits).abs().max().into_scalar();
        assert!(other > 0.0, "another seed draws other feedback");
    }

    #[test]
    fn scheduled_sampling_feeds_the_truth_with_probability_epsilon() {
        let device = Default::default();
        let model = jordan::<TestBackend>(4, 5, &device);
        let (batch, time) = (200, 20);
        let input = random_ids::<TestBackend>(batch, time, 4, 9, &device);
        let targets = random_ids::<TestBackend>(batch, time, 5, 10, &device);
        for p in [0.0, 0.3, 0.8] {
            // Softmax feedback is never exactly one-hot: a row with a 1 in it is a true target.
            let f = Forcing::Scheduled {
                teacher_probability: p,
                feedback: Feedback::Softmax,
                seed: 1,
            };
            let fed_all = model
                .forward(input.clone(), &feeding(f, Some(targets.clone())))
                .fed_back
                .unwrap();
            let fed = fed_all.clone().slice([0..batch, 1..time, 0..5]);
            let truth = embedding(
                Tensor::eye(5, &device),
                targets.clone().slice([0..batch, 0..time - 1]),
            );
            let is_truth = flat((fed - truth).abs().max_dim(2).lower_elem(1e-12).float());
            let share = is_truth.iter().sum::<f64>() / is_truth.len() as f64;
            assert!(
                (share - p).abs() < 0.03,
                "ε = {p}: fed the truth at {share} of the steps"
            );
            // Deterministic under the seed, and another seed flips other coins.
            let again = model
                .forward(input.clone(), &feeding(f, Some(targets.clone())))
                .fed_back
                .unwrap();
            let reseeded = Forcing::Scheduled {
                teacher_probability: p,
                feedback: Feedback::Softmax,
                seed: 2,
            };
            let other = model
                .forward(input.clone(), &feeding(reseeded, Some(targets.clone())))
                .fed_back
                .unwrap();
            let full = fed_all.clone();
            full.clone().into_data().assert_eq(&again.into_data(), true);
            let moved = (full - other).abs().max().into_scalar();
            assert_eq!(
                moved > 0.0,
                p > 0.0,
                "ε = {p}: another seed, difference {moved}"
            );
        }
    }

    #[test]
    fn jordan_output_depends_only_on_the_current_input_and_previous_target() {
        let device = Default::default();
        let jordan = jordan::<Ad>(4, 5, &device);
        let both = both::<Ad>(4, 5, &device);
        let targets = random_ids::<Ad>(2, 6, 5, 12, &device);
        let x = Tensor::<Ad, 3>::random([2, 6, 4], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let per_step_grad = |logits: Tensor<Ad, 3>| {
            let grads = logits.slice([0..2, 4..5, 0..5]).sum().backward();
            let g = x.grad(&grads).unwrap();
            (0..6)
                .map(|t| {
                    g.clone()
                        .slice([0..2, t..t + 1, 0..4])
                        .abs()
                        .max()
                        .into_scalar()
                })
                .collect::<Vec<f64>>()
        };
        let f = Forcing::TeacherForced;
        let g = per_step_grad(
            jordan
                .forward(x.clone(), &feeding(f, Some(targets.clone())))
                .logits,
        );
        assert!(
            g[4] > 1e-6 && g.iter().enumerate().all(|(t, &v)| t == 4 || v == 0.0),
            "{g:?}"
        );
        // With a hidden-to-hidden path, back-propagation through time reaches earlier inputs.
        let g = per_step_grad(
            both.forward(x.clone(), &feeding(f, Some(targets.clone())))
                .logits,
        );
        assert!(g[..5].iter().all(|&v| v > 1e-8) && g[5] == 0.0, "{g:?}");
        // A target moves the next step's output, and no other.
        let out = |y: &Tensor<Ad, 2, Int>| {
            jordan
                .forward(x.clone(), &feeding(f, Some(y.clone())))
                .logits
        };
        let changed = ids::<Ad>(&[&[0, 0, 0, 0, 0, 0], &[0, 0, 0, 0, 0, 0]], &device);
        let moved = ids::<Ad>(&[&[0, 0, 3, 0, 0, 0], &[0, 0, 3, 0, 0, 0]], &device);
        let diff = (out(&changed) - out(&moved)).abs().max_dim(2).max_dim(0);
        let diff = flat(diff.reshape([6]));
        assert!(
            diff[3] > 1e-6 && diff.iter().enumerate().all(|(t, &d)| t == 3 || d == 0.0),
            "{diff:?}"
        );
    }

    #[test]
    fn zero_start_feeds_nothing_at_the_first_step() {
        let device = Default::default();
        let model = JordanRnnConfig::new(4, 6, 5)
            .with_learn_start(false)
            .init::<TestBackend>(&device);
        assert!(model.start.is_none());
        let x =
            Tensor::<TestBackend, 3>::random([2, 3, 4], Distribution::Normal(0.0, 1.0), &device);
        let targets = random_ids::<TestBackend>(2, 3, 5, 13, &device);
        let out = model.forward(x.clone(), &feeding(Forcing::TeacherForced, Some(targets)));
        let x0 = x.slice([0..2, 0..1, 0..4]).reshape([2, 4]);
        let expected = model.readout.forward(
            (x0.matmul(model.u.val()) + model.b.as_ref().unwrap().val().unsqueeze()).tanh(),
        );
        out.logits
            .slice([0..2, 0..1, 0..5])
            .reshape([2, 5])
            .into_data()
            .assert_approx_eq::<f64>(&expected.into_data(), exact());
    }

    #[test]
    fn schedules_follow_bengio_et_al() {
        let linear = TeacherSchedule::Linear {
            start: 1.0,
            slope: 0.01,
            floor: 0.1,
        };
        let exponential = TeacherSchedule::Exponential { base: 0.99 };
        let sigmoid = TeacherSchedule::InverseSigmoid { k: 10.0 };
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        close(linear.probability(0), 1.0);
        close(linear.probability(50), 0.5);
        close(linear.probability(500), 0.1);
        close(exponential.probability(100), 0.99f64.powi(100));
        close(sigmoid.probability(0), 10.0 / 11.0);
        close(
            sigmoid.probability((10.0 * 10f64.ln()) as usize),
            10.0 / (10.0 + 2.3f64.exp()),
        );
        for schedule in [linear, exponential, sigmoid, TeacherSchedule::Constant(0.4)] {
            schedule.validate().unwrap();
            let values: Vec<f64> = (0..2000).map(|i| schedule.probability(i)).collect();
            assert!(
                values.windows(2).all(|w| w[1] <= w[0]),
                "{schedule:?} increases"
            );
            assert!(values.iter().all(|p| (0.0..=1.0).contains(p)));
            let f = schedule.forcing(7, Feedback::Sample, 1).unwrap();
            assert_eq!(
                f,
                Forcing::Scheduled {
                    teacher_probability: schedule.probability(7),
                    feedback: Feedback::Sample,
                    seed: 1
                }
            );
        }
        let field = |s: TeacherSchedule| match s.validate().unwrap_err() {
            Error::Config { field, .. } => field,
            other => panic!("{other}"),
        };
        assert_eq!(field(TeacherSchedule::Constant(1.5)), "teacher_probability");
        assert_eq!(
            field(TeacherSchedule::Constant(f64::NAN)),
            "teacher_probability"
        );
        assert_eq!(
            field(TeacherSchedule::Linear {
                start: 1.2,
                slope: 0.1,
                floor: 0.0
            }),
            "start"
        );
        assert_eq!(
            field(TeacherSchedule::Linear {
                start: 1.0,
                slope: 0.1,
                floor: -0.1
            }),
            "floor"
        );
        assert_eq!(
            field(TeacherSchedule::Linear {
                start: 1.0,
                slope: -0.1,
                floor: 0.0
            }),
            "slope"
        );
        assert_eq!(field(TeacherSchedule::Exponential { base: 1.01 }), "base");
        assert_eq!(field(TeacherSchedule::InverseSigmoid { k: 0.5 }), "k");
    }

    #[test]
    fn bad_input_is_a_named_error() {
        let device = Default::default();
        let model = jordan::<TestBackend>(4, 5, &device);
        let both = both::<TestBackend>(4, 5, &device);
        let input = random_ids::<TestBackend>(2, 3, 4, 14, &device);
        let targets = random_ids::<TestBackend>(2, 3, 5, 15, &device);
        let err = |targets: Option<Tensor<TestBackend, 2, Int>>, f: Forcing| {
            model
                .try_forward(input.clone(), &feeding(f, targets))
                .unwrap_err()
        };
        let scheduled = |p| Forcing::Scheduled {
            teacher_probability: p,
            feedback: Feedback::Sample,
            seed: 0,
        };
        for f in [Forcing::TeacherForced, scheduled(0.5)] {
            let e = err(None, f);
            assert!(matches!(e, Error::Missing { arg: "targets", .. }), "{e}");
            assert!(e.to_string().contains("FreeRunning"), "{e}");
        }
        let free = Forcing::FreeRunning {
            feedback: Feedback::Argmax,
            seed: 0,
        };
        assert!(model
            .try_forward(input.clone(), &feeding(free, None))
            .is_ok());
        for (bad, id) in [([[0, 1, 5], [0, 0, 0]], 5), ([[0, 1, 2], [-1, 0, 0]], -1)] {
            let bad = Tensor::<TestBackend, 2, Int>::from_data(bad, &device);
            for f in [Forcing::TeacherForced, scheduled(0.5), free] {
                assert!(
                    matches!(
                        err(Some(bad.clone()), f),
                        Error::TokenOutOfRange {
                            arg: "targets",
                            id: got,
                            vocab_size: 5
                        } if got == id
                    ),
                    "{f:?}"
                );
            }
        }
        let short = random_ids::<TestBackend>(2, 2, 5, 16, &device);
        assert!(matches!(
            err(Some(short), Forcing::TeacherForced),
            Error::Shape { arg: "targets", .. }
        ));
        for p in [1.5, -0.1, f64::NAN] {
            assert!(matches!(
                err(Some(targets.clone()), scheduled(p)),
                Error::Config {
                    field: "teacher_probability",
                    ..
                }
            ));
        }
        let wide = Tensor::<TestBackend, 3>::zeros([2, 3, 7], &device);
        assert!(matches!(
            model.try_forward(
                wide,
                &feeding(Forcing::TeacherForced, Some(targets.clone()))
            ),
            Err(Error::Shape { arg: "input", .. })
        ));
        let reversed = feeding(Forcing::TeacherForced, Some(targets.clone())).reversed();
        assert!(matches!(
            both.try_forward(input.clone(), &reversed),
            Err(Error::Config {
                field: "reverse",
                ..
            })
        ));
        let h0 = Tensor::<TestBackend, 2>::zeros([2, 5], &device);
        for f in [Forcing::TeacherForced, free] {
            let options = feeding(f, Some(targets.clone())).with_initial_state(h0.clone());
            assert!(matches!(
                both.try_forward(input.clone(), &options),
                Err(Error::Shape {
                    arg: "initial_state",
                    ..
                })
            ));
        }
        assert_eq!(
            JordanRnnConfig::new(4, 0, 5)
                .try_init::<TestBackend>(&device)
                .unwrap_err()
                .to_string(),
            "bad config: `hidden_size` = 0: must be at least 1"
        );
    }

    #[test]
    #[should_panic(expected = "`targets` is missing: TeacherForced feeds the true previous target")]
    fn forward_panics_with_the_same_clear_message() {
        let device = Default::default();
        let model = jordan::<TestBackend>(4, 5, &device);
        model.forward(
            random_ids::<TestBackend>(1, 3, 4, 0, &device),
            &UnrollOptions::new(),
        );
    }

    #[test]
    fn padding_changes_nothing_at_valid_steps_of_the_unrolled_model() {
        let device = Default::default();
        let model = both::<TestBackend>(4, 5, &device);
        let input = random_ids::<TestBackend>(1, 3, 4, 17, &device);
        let targets = random_ids::<TestBackend>(1, 3, 5, 18, &device);
        let f = Forcing::TeacherForced;
        let alone = model.forward(input.clone(), &feeding(f, Some(targets.clone())));
        let padded_input = Tensor::cat(vec![input, random_ids(1, 4, 4, 19, &device)], 1);
        let padded_targets = Tensor::cat(vec![targets, random_ids(1, 4, 5, 20, &device)], 1);
        let out = model.forward(
            padded_input,
            &feeding(f, Some(padded_targets)).with_lengths([3]),
        );
        out.logits
            .slice([0..1, 0..3, 0..5])
            .into_data()
            .assert_approx_eq::<f64>(&alone.logits.into_data(), exact());
    }

    /// Greedy continuation computed another way: teacher-force the model on the prompt plus
    /// everything generated so far (each token is the next step's input and fed-back output)
    /// and take the argmax of the last step.
    fn greedy_by_teacher_forcing(
        logits_of: impl Fn(
            Tensor<TestBackend, 2, Int>,
            Tensor<TestBackend, 2, Int>,
        ) -> Tensor<TestBackend, 3>,
        prompt: &[usize],
        steps: usize,
    ) -> Vec<usize> {
        let device = Default::default();
        let mut seq: Vec<i64> = prompt.iter().map(|&id| id as i64).collect();
        for _ in 0..steps {
            let n = seq.len();
            let input = Tensor::from_data(TensorData::new(seq.clone(), [1, n]), &device);
            // y(t) = x(t+1); the last target is never fed back (any id will do).
            let mut next = seq[1..].to_vec();
            next.push(0);
            let targets = Tensor::from_data(TensorData::new(next, [1, n]), &device);
            let last = logits_of(input, targets)
                .slice([0..1, n - 1..n, 0..5])
                .argmax(2);
            seq.push(last.into_scalar());
        }
        seq[prompt.len()..].iter().map(|&id| id as usize).collect()
    }

    #[test]
    fn greedy_generation_is_the_argmax_of_teacher_forcing_on_its_own_output() {
        let device = Default::default();
        let jordan = jordan::<TestBackend>(5, 5, &device);
        let both = both::<TestBackend>(5, 5, &device);
        let prompts = [vec![1, 2, 3], vec![4], vec![0, 2]];
        let config = GenerateConfig::new(8).with_sampling(Sampling::Greedy);
        let f = Forcing::TeacherForced;
        let from_jordan = generate(&jordan, &prompts, &config, &device).unwrap();
        let from_both = generate(&both, &prompts, &config, &device).unwrap();
        for (i, prompt) in prompts.iter().enumerate() {
            let reference = greedy_by_teacher_forcing(
                |x, y| jordan.forward(x, &feeding(f, Some(y))).logits,
                prompt,
                8,
            );
            assert_eq!(from_jordan[i], reference, "Jordan, prompt {prompt:?}");
            let reference = greedy_by_teacher_forcing(
                |x, y| both.forward(x, &feeding(f, Some(y))).logits,
                prompt,
                8,
            );
            assert_eq!(from_both[i], reference, "Elman-Jordan, prompt {prompt:?}");
        }
        // Sampled generation: batched equals alone, and a seed reproduces it.
        let config = GenerateConfig::new(20).with_seed(3);
        let batched = generate(&jordan, &prompts, &config, &device).unwrap();
        let alone = generate(
            &jordan,
            &prompts[1..2],
            &config.clone().with_seed(4),
            &device,
        )
        .unwrap();
        assert_eq!(batched[1], alone[0]);
        // Dense-input models cannot feed their outputs back as inputs.
        let dense = JordanRnnConfig::new(3, 4, 5).init::<TestBackend>(&device);
        assert!(matches!(
            generate(&dense, &prompts, &config, &device),
            Err(Error::Config {
                field: "input_size",
                ..
            })
        ));
    }
}
