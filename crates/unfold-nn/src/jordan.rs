//! The output-to-hidden (Jordan) RNN: teacher forcing in parallel, free-running generation,
//! scheduled sampling; and the RNN with both hidden-to-hidden and output-to-hidden recurrence.
//!
//! The only recurrence of [`JordanRnn`] goes through its output:
//!
//! ```text
//! a(t) = b + W r(t-1) + U x(t)
//! h(t) = tanh(a(t))
//! o(t) = c + V h(t)
//! ŷ(t) = softmax(o(t))
//! ```
//!
//! where `r(t-1)` is what is fed back ([`Forcing`]):
//! - **teacher forcing**: the true previous target, `r(t-1) = y(t-1)` as a one-hot vector, so
//!   `W r(t-1)` is row `y(t-1)` of `W`. Nothing then depends on an earlier step's computation,
//!   and every step is computed at once, with no loop over time.
//! - **free running** (deployment): the model's own previous output, as the softmax `ŷ(t-1)`,
//!   its argmax or a one-hot sample from it ([`Feedback`]); step `t` needs step `t-1`'s output,
//!   so this runs step by step through the generic [`scan`](crate::recurrence::scan).
//! - **scheduled sampling** (Bengio et al. 2015): at each step the true `y(t-1)` with
//!   probability `ε`, else the model's own output; `ε` decays over training by a
//!   [`TeacherSchedule`].
//!
//! `r(0)` is a learned start vector, or zeros ([`JordanRnnConfig::learn_start`]).
//!
//! Teacher forcing trains by maximum likelihood through the chain rule of probability,
//! `log p(y(1), …, y(τ) | x) = Σ_t log p(y(t) | y(1), …, y(t-1), x)`: with the true
//! `y(t-1)` fed back, the teacher-forced output at step `t` is exactly that conditional, so
//! [`sequence_nll`](crate::loss::sequence_nll) with [`Reduction::Sum`](crate::loss::Reduction)
//! on the teacher-forced logits is the negative joint log-likelihood.
//!
//! [`ElmanJordanRnn`] adds the hidden-to-hidden path, `a(t) = b + W h(t-1) + R r(t-1) + U x(t)`;
//! teacher forcing then hoists `R y(t-1)` into the per-step drive, and the hidden path is
//! unrolled (and back-propagated through time) by the generic [`unroll`].
//!
//! Parameters are stored `[fan_in, fan_out]` as everywhere in unfold, so row-wise the products
//! read `x U`, `r W`, `h V` (the textbook's `U x`, `W r`, `V h` on column vectors, transposed).
//!
//! # Example
//!
//! ```
//! use burn::backend::{Autodiff, NdArray};
//! use burn::tensor::{Int, Tensor};
//! use unfold_nn::jordan::{Feedback, Forcing, JordanRnnConfig, TeacherSchedule};
//! use unfold_nn::sample::{generate, GenerateConfig, Sampling};
//! use unfold_nn::{sequence_nll, Reduction};
//!
//! type B = Autodiff<NdArray>;
//! let device = Default::default();
//! let model = JordanRnnConfig::new(10, 32, 10).init::<B>(&device);
//! let x = Tensor::<B, 2, Int>::from_data([[3, 1, 4, 1, 5]], &device);
//! let y = Tensor::<B, 2, Int>::from_data([[3, 4, 8, 9, 4]], &device); // running sum mod 10
//!
//! // Teacher forcing: every step at once; the summed loss is -log p(y | x).
//! let out = model.try_forward(x.clone(), Some(y.clone()), &Forcing::TeacherForced)?;
//! let grads = sequence_nll(out.logits, y.clone(), None, Reduction::Sum).backward();
//!
//! // Scheduled sampling at training step 100: ε = k / (k + e^(100/k)).
//! let forcing = TeacherSchedule::InverseSigmoid { k: 200.0 }.forcing(100, Feedback::Sample, 7)?;
//! let out = model.try_forward(x.clone(), Some(y), &forcing)?;
//!
//! // Free running: its own argmax fed back, no targets.
//! let free = Forcing::FreeRunning { feedback: Feedback::Argmax, seed: 0 };
//! let out = model.try_forward(x, None, &free)?;
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

use crate::elman::{ElmanCell, ElmanCellConfig};
use crate::error::{check_sizes, Error, Result};
use crate::fused;
use crate::init;
use crate::readout::{Readout, ReadoutConfig};
use crate::recurrence::{
    unroll, validate_lengths, Recurrence, SequenceInput, StepPlan, UnrollOptions, Unrolled,
};
use crate::sample::{check_feeds_back, Autoregressive};

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
    /// inputs. `examples/jordan.rs` measures it: with [`Feedback::Sample`] the running-sum
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
// The machinery shared by both models.
// ---------------------------------------------------------------------------------------------

/// What a forward pass of a model that feeds its outputs back returns.
#[derive(Debug, Clone)]
pub struct JordanOutput<B: Backend> {
    /// `o(t)` for every step, `[batch, time, output_size]`.
    pub logits: Tensor<B, 3>,
    /// `h(t)` for every step, `[batch, time, hidden_size]`.
    pub states: Tensor<B, 3>,
    /// `r(t-1)`, what was fed back at every step, `[batch, time, output_size]`; `None` under
    /// teacher forcing (there it is `r(0)` then the targets shifted by one).
    pub fed_back: Option<Tensor<B, 3>>,
}

/// The tensors that feeding back involves, taken from a model for one forward pass.
struct Parts<'a, B: Backend> {
    /// Input-to-hidden weights `U`, `[input_size, hidden_size]`.
    u: Tensor<B, 2>,
    /// Hidden bias `b`, `[hidden_size]`.
    b: Option<Tensor<B, 1>>,
    /// Output-to-hidden weights, `[output_size, hidden_size]`.
    feedback: Tensor<B, 2>,
    /// `r(0)`, `[output_size]`; zeros when `None`.
    start: Option<Tensor<B, 1>>,
    /// Hidden-to-hidden weights `[hidden, hidden]`, for the model with both recurrences.
    recurrent: Option<Tensor<B, 2>>,
    readout: &'a Readout<B>,
    /// Whether to cut the readout off the graph (choosing feedback without gradients).
    detached: bool,
}

impl<B: Backend> Parts<'_, B> {
    /// The whole forward pass one step at a time, from a zero `h(0)` over full lengths: the
    /// `try_forward_sequential` of both models.
    fn forward_sequential(
        &self,
        input: SequenceInput<B>,
        targets: Option<Tensor<B, 2, Int>>,
        forcing: &Forcing,
        input_size: usize,
    ) -> Result<JordanOutput<B>> {
        let targets = check_forward(&input, targets, forcing, input_size, self.classes())?;
        let [batch, time] = input.batch_and_time();
        let device = input.device();
        let plan = StepPlan::new(batch, time, None, false, &device)?;
        let h0 = Tensor::zeros([batch, self.hidden()], &device);
        let (states, r) = self.sequential(input, targets.as_ref(), forcing, h0, &plan);
        Ok(JordanOutput {
            logits: self.readout(states.clone()),
            states,
            fed_back: (*forcing != Forcing::TeacherForced).then_some(r),
        })
    }

    fn classes(&self) -> usize {
        self.feedback.dims()[0]
    }

    fn hidden(&self) -> usize {
        self.feedback.dims()[1]
    }

    /// The same parts cut off the autodiff graph.
    fn detached(&self) -> Self {
        Parts {
            u: self.u.clone().detach(),
            b: self.b.clone().map(Tensor::detach),
            feedback: self.feedback.clone().detach(),
            start: self.start.clone().map(Tensor::detach),
            recurrent: self.recurrent.clone().map(Tensor::detach),
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

    /// `r(0)` for every row, `[batch, 1, classes]`.
    fn start_rows(&self, batch: usize, device: &B::Device) -> Tensor<B, 3> {
        let classes = self.classes();
        match &self.start {
            Some(start) => start
                .clone()
                .reshape([1, 1, classes])
                .expand([batch, 1, classes]),
            None => Tensor::zeros([batch, 1, classes], device),
        }
    }

    /// `W r(t-1)` for every step when the fed-back outputs are token ids: `W r(0)` at step 0,
    /// then row `prev[t-1]` of `W` (the one-hot product as a lookup). `prev`: `[batch, time-1]`
    /// (the ids fed back at steps `1..time`, i.e. the targets `y(0..time-1)`). `[batch, time, hidden]`.
    fn token_feedback_drive(
        &self,
        prev: Option<Tensor<B, 2, Int>>,
        batch: usize,
        device: &B::Device,
    ) -> Tensor<B, 3> {
        let hidden = self.hidden();
        let first = match &self.start {
            Some(start) => start
                .clone()
                .reshape([1, self.classes()])
                .matmul(self.feedback.clone())
                .reshape([1, 1, hidden])
                .expand([batch, 1, hidden]),
            None => Tensor::zeros([batch, 1, hidden], device),
        };
        match prev {
            None => first,
            Some(prev) => Tensor::cat(vec![first, embedding(self.feedback.clone(), prev)], 1),
        }
    }

    /// `W r(t-1)` for dense fed-back vectors `r` `[batch, time, classes]`.
    fn dense_feedback_drive(&self, r: Tensor<B, 3>) -> Tensor<B, 3> {
        r.matmul(self.feedback.clone().unsqueeze())
    }

    /// `r` with its step 0 replaced by `r(0)` from these (tracked) parts: the chosen feedback
    /// of a detached pass, re-attached to the learned start vector.
    fn with_start(&self, r: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, time, classes] = r.dims();
        let first = self.start_rows(batch, &r.device());
        if time == 1 {
            return first;
        }
        Tensor::cat(vec![first, r.slice([0..batch, 1..time, 0..classes])], 1)
    }

    /// `b + U x(t)` for every step at once ([`crate::kernel::input_drive`]).
    fn input_drive(&self, input: SequenceInput<B>) -> Tensor<B, 3> {
        crate::kernel::input_drive(self.u.clone(), self.b.clone(), input)
    }

    /// The step-by-step forward pass: at every step chooses `r(t-1)` (the true previous target
    /// or the own previous output, per `forcing`), then `h(t)`. Runs through the generic
    /// [`scan`](crate::recurrence::scan) with the [`FedBackCell`]. Returns `h(t)` and `r(t-1)`
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
        targets: Option<&Tensor<B, 2, Int>>,
        forcing: &Forcing,
        h0: Tensor<B, 2>,
        plan: &StepPlan<B>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let [batch, time] = input.batch_and_time();
        let classes = self.classes();
        let hidden = self.hidden();
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
        let teacher = match (targets, time) {
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
        let state0 = Tensor::cat(vec![h0, Tensor::zeros([batch, classes], &device)], 1);
        let Unrolled { states, .. } = cell.scan(Tensor::cat(columns, 2), state0, plan);
        let h = states.clone().slice([0..batch, 0..time, 0..hidden]);
        let r = states.slice([0..batch, 0..time, hidden..hidden + classes]);
        (h, r)
    }
}

/// One step of a model that feeds its outputs back, as a [`Recurrence`] for the generic scan.
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

impl<B: Backend> Recurrence<B> for FedBackCell<'_, '_, B> {
    fn input_size(&self) -> usize {
        self.parts.u.dims()[0]
    }

    fn state_size(&self) -> usize {
        self.parts.hidden() + self.parts.classes()
    }

    /// `r(t-1) = y(t-1)·coin(t) + r(0)·[t = 0] + (1 - coin(t))·feedback(c + V h(t-1))` (the own
    /// output detached: it is an input, as in Bengio et al.), then
    /// `h(t) = tanh(b + U x(t) + W r(t-1) [+ W_hh h(t-1)])`.
    fn step(&self, state: Tensor<B, 2>, drive: Tensor<B, 2>) -> Tensor<B, 2> {
        let [batch, _] = state.dims();
        let (hidden, classes) = (self.parts.hidden(), self.parts.classes());
        let inputs = self.input_size();
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
        let mut a = column(0, inputs).matmul(self.parts.u.clone())
            + r.clone().matmul(self.parts.feedback.clone());
        if let Some(b) = &self.parts.b {
            a = a + b.clone().unsqueeze();
        }
        if let Some(w) = &self.parts.recurrent {
            a = a + h_prev.matmul(w.clone());
        }
        Tensor::cat(vec![a.tanh(), r], 1)
    }
}

/// Checks a forward pass's input, forcing and targets; returns the targets.
fn check_forward<B: Backend>(
    input: &SequenceInput<B>,
    targets: Option<Tensor<B, 2, Int>>,
    forcing: &Forcing,
    input_size: usize,
    output_size: usize,
) -> Result<Option<Tensor<B, 2, Int>>> {
    input.validate("input", input_size)?;
    forcing.validate()?;
    let Some(targets) = targets else {
        if forcing.needs_targets() {
            return Err(Error::Missing {
                arg: "targets",
                why: format!(
                    "{forcing:?} feeds the true previous target y(t-1) back; pass the targets \
                     [batch, time], or use Forcing::FreeRunning"
                ),
            });
        }
        return Ok(None);
    };
    let [batch, time] = input.batch_and_time();
    if targets.dims() != [batch, time] {
        return Err(Error::shape(
            "targets",
            format!("[{batch}, {time}] (the input's batch and time)"),
            &targets.dims(),
        ));
    }
    SequenceInput::Tokens(targets.clone()).validate("targets", output_size)?;
    Ok(Some(targets))
}

/// The previous targets fed back at steps `1..time`: `targets[:, 0..time-1]`, or `None` for a
/// single step.
fn previous<B: Backend>(targets: Tensor<B, 2, Int>) -> Option<Tensor<B, 2, Int>> {
    let [batch, time] = targets.dims();
    (time > 1).then(|| targets.slice([0..batch, 0..time - 1]))
}

/// The input cut off the autodiff graph (a dense input may require gradients).
fn detached<B: Backend>(input: SequenceInput<B>) -> SequenceInput<B> {
    match input {
        SequenceInput::Dense(x) => SequenceInput::Dense(x.detach()),
        tokens => tokens,
    }
}

/// `h` at each row's last valid step: `states` `[batch, time, hidden]` → `[batch, hidden]`.
fn at_lengths<B: Backend>(states: Tensor<B, 3>, lengths: &[usize]) -> Tensor<B, 2> {
    let [batch, _, hidden] = states.dims();
    let index: Vec<i64> = lengths
        .iter()
        .flat_map(|&len| std::iter::repeat_n(len as i64 - 1, hidden))
        .collect();
    let index = Tensor::from_data(TensorData::new(index, [batch, 1, hidden]), &states.device());
    states.gather(1, index).reshape([batch, hidden])
}

/// Checks generation prompts: ids in the vocabulary and lengths that fit.
fn check_prompts<B: Backend>(
    prompts: &Tensor<B, 2, Int>,
    lengths: &[usize],
    vocab_size: usize,
) -> Result<()> {
    let input = SequenceInput::Tokens(prompts.clone());
    input.validate("prompts", vocab_size)?;
    let [batch, time] = input.batch_and_time();
    validate_lengths(lengths, batch, time)
}

// ---------------------------------------------------------------------------------------------
// The output-to-hidden model.
// ---------------------------------------------------------------------------------------------

/// Configuration of a [`JordanRnn`].
#[derive(Config, Debug)]
pub struct JordanRnnConfig {
    /// Width of `x(t)`: the feature count for dense input, the vocabulary size for token ids.
    pub input_size: usize,
    /// Width of `h(t)`.
    pub hidden_size: usize,
    /// Width of `o(t)` and of the fed-back `r(t-1)`: the number of classes.
    pub output_size: usize,
    /// Whether `a(t)` and `o(t)` have the biases `b` and `c`.
    #[config(default = true)]
    pub bias: bool,
    /// Whether `r(0)` is a learned start vector (starting at zero) rather than fixed zeros.
    #[config(default = true)]
    pub learn_start: bool,
    /// Initialiser of `U`, `W` and `V`; biases and `r(0)` start at zero. Default: PyTorch's,
    /// `U(-1/√fan_in, 1/√fan_in)`.
    #[config(default = "crate::init::default_initializer()")]
    pub initializer: Initializer,
}

/// The output-to-hidden RNN: `h(t) = tanh(b + W r(t-1) + U x(t))`, `o(t) = c + V h(t)`.
///
/// Train it with teacher forcing ([`Forcing::TeacherForced`]: every step at once) or scheduled
/// sampling, with [`sequence_nll`](crate::loss::sequence_nll) on [`JordanOutput::logits`]; run
/// it free with [`Forcing::FreeRunning`], or generate with [`generate`](crate::sample::generate).
#[derive(Module, Debug)]
pub struct JordanRnn<B: Backend> {
    /// Input-to-hidden weights `U`, `[input_size, hidden_size]`.
    pub u: Param<Tensor<B, 2>>,
    /// Output-to-hidden weights `W`, `[output_size, hidden_size]`.
    pub w: Param<Tensor<B, 2>>,
    /// Hidden bias `b`, `[hidden_size]`.
    pub b: Option<Param<Tensor<B, 1>>>,
    /// The learned start vector `r(0)`, `[output_size]`; zeros when `None`.
    pub start: Option<Param<Tensor<B, 1>>>,
    /// The output layer: `V`, `c`.
    pub readout: Readout<B>,
}

impl JordanRnnConfig {
    /// Checks the sizes, then initialises a [`JordanRnn`] on `device`.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> Result<JordanRnn<B>> {
        check_sizes(&[
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("output_size", self.output_size),
        ])?;
        crate::error::check_initializer(&self.initializer)?;
        let readout = ReadoutConfig::new(self.hidden_size, self.output_size)
            .with_bias(self.bias)
            .with_initializer(self.initializer.clone())
            .init(device);
        Ok(JordanRnn {
            u: init::weight(&self.initializer, self.input_size, self.hidden_size, device),
            w: init::weight(
                &self.initializer,
                self.output_size,
                self.hidden_size,
                device,
            ),
            b: init::bias(self.bias, self.hidden_size, device),
            start: init::bias(self.learn_start, self.output_size, device),
            readout,
        })
    }

    /// Initialises a [`JordanRnn`] on `device`; panics with a clear message on a zero size
    /// (see [`try_init`](Self::try_init)).
    pub fn init<B: Backend>(&self, device: &B::Device) -> JordanRnn<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl<B: Backend> JordanRnn<B> {
    fn parts(&self) -> Parts<'_, B> {
        Parts {
            u: self.u.val(),
            b: self.b.as_ref().map(|b| b.val()),
            feedback: self.w.val(),
            start: self.start.as_ref().map(|s| s.val()),
            recurrent: None,
            readout: &self.readout,
            detached: false,
        }
    }

    /// Runs the whole sequence with `forcing` deciding what is fed back.
    ///
    /// - `input`: dense `[batch, time, input_size]` or token ids `[batch, time]`.
    /// - `targets`: `y(t)`, ids `[batch, time]` in `0..output_size`; needed by
    ///   [`Forcing::TeacherForced`] and [`Forcing::Scheduled`], checked (and unused) otherwise.
    ///
    /// Teacher forcing computes every step at once:
    /// `h = tanh(b + U x + W [r(0), y(0), …, y(τ-2)])`, `o = c + V h`, with no loop over time.
    /// Free running loops over time (step `t` needs output `t-1`); scheduled sampling chooses the
    /// fed-back outputs step by step without gradients, then computes the loss pass at once.
    pub fn try_forward(
        &self,
        input: impl Into<SequenceInput<B>>,
        targets: Option<Tensor<B, 2, Int>>,
        forcing: &Forcing,
    ) -> Result<JordanOutput<B>> {
        let (states, fed_back) = self.try_states(input.into(), targets, forcing)?;
        Ok(JordanOutput {
            logits: self.parts().readout(states.clone()),
            states,
            fed_back,
        })
    }

    /// The training loss in one pass: the sequence negative log-likelihood of `targets`
    /// `[batch, time]` under `forcing`, equal (values and gradients) to
    /// `sequence_nll(forward(input, Some(targets), forcing).logits, targets, None, reduction)`,
    /// but with the readout, log-softmax and loss fused into one operation (see
    /// [`try_readout_nll`](crate::loss::try_readout_nll)): the logits are never materialised.
    pub fn try_loss(
        &self,
        input: impl Into<SequenceInput<B>>,
        targets: Tensor<B, 2, Int>,
        forcing: &Forcing,
        reduction: crate::loss::Reduction,
    ) -> Result<Tensor<B, 1>> {
        let (states, _) = self.try_states(input.into(), Some(targets.clone()), forcing)?;
        crate::loss::try_readout_nll(states, &self.readout, targets, None, reduction)
    }

    /// [`try_loss`](Self::try_loss), panicking with its error message.
    pub fn loss(
        &self,
        input: impl Into<SequenceInput<B>>,
        targets: Tensor<B, 2, Int>,
        forcing: &Forcing,
        reduction: crate::loss::Reduction,
    ) -> Tensor<B, 1> {
        self.try_loss(input, targets, forcing, reduction)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The states `h(t)` of every step under `forcing`, and what was fed back (see
    /// [`try_forward`](Self::try_forward)).
    #[allow(clippy::type_complexity)]
    fn try_states(
        &self,
        input: SequenceInput<B>,
        targets: Option<Tensor<B, 2, Int>>,
        forcing: &Forcing,
    ) -> Result<(Tensor<B, 3>, Option<Tensor<B, 3>>)> {
        let targets = check_forward(
            &input,
            targets,
            forcing,
            self.input_size(),
            self.output_size(),
        )?;
        let [batch, time] = input.batch_and_time();
        let device = input.device();
        let parts = self.parts();
        let (states, fed_back) = match forcing {
            Forcing::TeacherForced => {
                let prev = previous(targets.expect("checked"));
                let feedback = parts.token_feedback_drive(prev, batch, &device);
                (fused::tanh::tanh(parts.input_drive(input) + feedback), None)
            }
            Forcing::FreeRunning { .. } => {
                let plan = StepPlan::new(batch, time, None, false, &device)?;
                let h0 = Tensor::zeros([batch, self.hidden_size()], &device);
                let (states, r) = parts.sequential(input, targets.as_ref(), forcing, h0, &plan);
                (states, Some(r))
            }
            Forcing::Scheduled { .. } => {
                let plan = StepPlan::new(batch, time, None, false, &device)?;
                let h0 = Tensor::zeros([batch, self.hidden_size()], &device);
                let (_, chosen) = parts.detached().sequential(
                    detached(input.clone()),
                    targets.as_ref(),
                    forcing,
                    h0,
                    &plan,
                );
                let r = parts.with_start(chosen.clone());
                let drive = parts.input_drive(input) + parts.dense_feedback_drive(r);
                let states = fused::tanh::tanh(drive);
                (states, Some(chosen))
            }
        };
        Ok((states, fed_back))
    }

    /// [`try_forward`](Self::try_forward), panicking with its error message.
    pub fn forward(
        &self,
        input: impl Into<SequenceInput<B>>,
        targets: Option<Tensor<B, 2, Int>>,
        forcing: &Forcing,
    ) -> JordanOutput<B> {
        self.try_forward(input, targets, forcing)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The same forward pass, one step at a time for every forcing (teacher forcing
    /// included), through the generic scan, recording every step for autodiff. The reference
    /// that [`try_forward`](Self::try_forward)'s parallel passes are tested against, and the
    /// baseline of the teacher-forcing speed-up.
    pub fn try_forward_sequential(
        &self,
        input: impl Into<SequenceInput<B>>,
        targets: Option<Tensor<B, 2, Int>>,
        forcing: &Forcing,
    ) -> Result<JordanOutput<B>> {
        self.parts()
            .forward_sequential(input.into(), targets, forcing, self.input_size())
    }

    /// Width of `x(t)`.
    pub fn input_size(&self) -> usize {
        self.u.dims()[0]
    }

    /// Width of `h(t)`.
    pub fn hidden_size(&self) -> usize {
        self.u.dims()[1]
    }

    /// Width of `o(t)` (and of `r(t-1)`).
    pub fn output_size(&self) -> usize {
        self.readout.output_size()
    }
}

/// Generation from the output-to-hidden model, for models whose outputs are their next inputs
/// (`input_size == output_size`, a language model): the chosen token `ŷ(t)` is fed back both
/// as `r(t)` and as `x(t+1)`. The state is `h(t)`. On the prompt `p(1..n)` the fed-back
/// `r(t-1)` is `r(0)`, then `p(t)` (the previous output is the current input).
impl<B: Backend> Autoregressive<B> for JordanRnn<B> {
    fn vocab_size(&self) -> usize {
        self.output_size()
    }

    fn warm(&self, prompts: Tensor<B, 2, Int>, lengths: &[usize]) -> Result<Tensor<B, 2>> {
        check_feeds_back("JordanRnn", self.input_size(), self.output_size())?;
        check_prompts(&prompts, lengths, self.vocab_size())?;
        let [batch, time] = prompts.dims();
        let prev = (time > 1).then(|| prompts.clone().slice([0..batch, 1..time]));
        let feedback = self
            .parts()
            .token_feedback_drive(prev, batch, &prompts.device());
        let drive = self.parts().input_drive(SequenceInput::Tokens(prompts));
        Ok(at_lengths(fused::tanh::tanh(drive + feedback), lengths))
    }

    fn next_logits(&self, state: &Tensor<B, 2>) -> Tensor<B, 2> {
        self.readout.forward(state.clone())
    }

    /// `h(t+1) = tanh(b + W ŷ(t) + U ŷ(t))`: the state carries nothing else forward.
    fn feed(&self, _state: Tensor<B, 2>, tokens: Tensor<B, 1, Int>) -> Tensor<B, 2> {
        let ids = tokens.unsqueeze_dim::<2>(1);
        let [batch, _] = ids.dims();
        let drive = self.parts().input_drive(SequenceInput::Tokens(ids.clone()))
            + embedding(self.w.val(), ids);
        drive.reshape([batch, self.hidden_size()]).tanh()
    }
}

// ---------------------------------------------------------------------------------------------
// Both recurrences.
// ---------------------------------------------------------------------------------------------

/// Configuration of an [`ElmanJordanRnn`].
#[derive(Config, Debug)]
pub struct ElmanJordanRnnConfig {
    /// Width of `x(t)`: the feature count for dense input, the vocabulary size for token ids.
    pub input_size: usize,
    /// Width of `h(t)`.
    pub hidden_size: usize,
    /// Width of `o(t)` and of the fed-back `r(t-1)`: the number of classes.
    pub output_size: usize,
    /// Whether `a(t)` and `o(t)` have the biases `b` and `c`.
    #[config(default = true)]
    pub bias: bool,
    /// Whether `r(0)` is a learned start vector (starting at zero) rather than fixed zeros.
    #[config(default = true)]
    pub learn_start: bool,
    /// Initialiser of `U`, `W`, `R` and `V`; biases and `r(0)` start at zero. Default:
    /// PyTorch's, `U(-1/√fan_in, 1/√fan_in)`.
    #[config(default = "crate::init::default_initializer()")]
    pub initializer: Initializer,
}

/// The RNN with both recurrences: `h(t) = tanh(b + W h(t-1) + R r(t-1) + U x(t))`,
/// `o(t) = c + V h(t)`.
///
/// Teacher forcing feeds `r(t-1) = y(t-1)` and back-propagates through time along the hidden
/// path: `R y(t-1)` joins `b + U x(t)` in the hoisted drive, and the generic [`unroll`] runs
/// the [`ElmanCell`]'s recurrence (its kernel) over it.
#[derive(Module, Debug)]
pub struct ElmanJordanRnn<B: Backend> {
    /// The hidden-to-hidden recurrence: `U`, `W`, `b`.
    pub cell: ElmanCell<B>,
    /// Output-to-hidden weights `R`, `[output_size, hidden_size]`.
    pub feedback: Param<Tensor<B, 2>>,
    /// The learned start vector `r(0)`, `[output_size]`; zeros when `None`.
    pub start: Option<Param<Tensor<B, 1>>>,
    /// The output layer: `V`, `c`.
    pub readout: Readout<B>,
}

/// An [`ElmanCell`] whose drive also holds the fed-back `R r(t-1)` of every step.
struct FedDriveCell<'a, B: Backend> {
    cell: &'a ElmanCell<B>,
    /// `R r(t-1)`, `[batch, time, hidden]`.
    feedback: Tensor<B, 3>,
}

impl<B: Backend> Recurrence<B> for FedDriveCell<'_, B> {
    fn input_size(&self) -> usize {
        self.cell.input_size()
    }

    fn state_size(&self) -> usize {
        self.cell.state_size()
    }

    /// `b + U x(t) + R r(t-1)`.
    fn drive(&self, input: SequenceInput<B>) -> Tensor<B, 3> {
        self.cell.drive(input) + self.feedback.clone()
    }

    fn step(&self, h: Tensor<B, 2>, drive: Tensor<B, 2>) -> Tensor<B, 2> {
        self.cell.step(h, drive)
    }

    fn scan(&self, drive: Tensor<B, 3>, h0: Tensor<B, 2>, plan: &StepPlan<B>) -> Unrolled<B> {
        self.cell.scan(drive, h0, plan)
    }
}

impl ElmanJordanRnnConfig {
    /// Checks the sizes, then initialises an [`ElmanJordanRnn`] on `device`.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> Result<ElmanJordanRnn<B>> {
        check_sizes(&[
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
        Ok(ElmanJordanRnn {
            cell,
            feedback: init::weight(
                &self.initializer,
                self.output_size,
                self.hidden_size,
                device,
            ),
            start: init::bias(self.learn_start, self.output_size, device),
            readout,
        })
    }

    /// Initialises an [`ElmanJordanRnn`] on `device`; panics with a clear message on a zero
    /// size (see [`try_init`](Self::try_init)).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ElmanJordanRnn<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl<B: Backend> ElmanJordanRnn<B> {
    fn parts(&self) -> Parts<'_, B> {
        Parts {
            u: self.cell.u.val(),
            b: self.cell.b.as_ref().map(|b| b.val()),
            feedback: self.feedback.val(),
            start: self.start.as_ref().map(|s| s.val()),
            recurrent: Some(self.cell.w.val()),
            readout: &self.readout,
            detached: false,
        }
    }

    /// Runs the whole sequence with `forcing` deciding what is fed back.
    ///
    /// `input`, `targets` as for [`JordanRnn::try_forward`]; `options` gives `h(0)` and
    /// per-sequence lengths (a model that feeds outputs back reads forward: `reverse` is an
    /// error). Teacher forcing and the loss pass of scheduled sampling unroll the hidden path
    /// with the fed-back `R r(t-1)` hoisted into the drive; free running steps through the
    /// generic scan.
    pub fn try_forward(
        &self,
        input: impl Into<SequenceInput<B>>,
        targets: Option<Tensor<B, 2, Int>>,
        forcing: &Forcing,
        options: &UnrollOptions<B>,
    ) -> Result<JordanOutput<B>> {
        let input = input.into();
        let targets = check_forward(
            &input,
            targets,
            forcing,
            self.input_size(),
            self.output_size(),
        )?;
        if options.reverse {
            return Err(Error::config(
                "reverse",
                true,
                "a model that feeds its outputs back reads forward in time",
            ));
        }
        let [batch, time] = input.batch_and_time();
        let device = input.device();
        let parts = self.parts();
        let teacher_forced = |feedback: Tensor<B, 3>, input: SequenceInput<B>| {
            let cell = FedDriveCell {
                cell: &self.cell,
                feedback,
            };
            unroll(&cell, input, options).map(|unrolled| unrolled.states)
        };
        let (states, fed_back) = match forcing {
            Forcing::TeacherForced => {
                let prev = previous(targets.expect("checked"));
                let feedback = parts.token_feedback_drive(prev, batch, &device);
                (teacher_forced(feedback, input)?, None)
            }
            Forcing::FreeRunning { .. } | Forcing::Scheduled { .. } => {
                let plan = StepPlan::new(batch, time, options.lengths.as_deref(), false, &device)?;
                let h0 = match &options.initial_state {
                    Some(h0) if h0.dims() != [batch, self.hidden_size()] => {
                        return Err(Error::shape(
                            "initial_state",
                            format!("[{batch}, {}]", self.hidden_size()),
                            &h0.dims(),
                        ))
                    }
                    Some(h0) => h0.clone(),
                    None => Tensor::zeros([batch, self.hidden_size()], &device),
                };
                if let Forcing::FreeRunning { .. } = forcing {
                    let (states, r) = parts.sequential(input, targets.as_ref(), forcing, h0, &plan);
                    (states, Some(r))
                } else {
                    let (_, chosen) = parts.detached().sequential(
                        detached(input.clone()),
                        targets.as_ref(),
                        forcing,
                        h0.detach(),
                        &plan,
                    );
                    let r = parts.with_start(chosen.clone());
                    (
                        teacher_forced(parts.dense_feedback_drive(r), input)?,
                        Some(chosen),
                    )
                }
            }
        };
        Ok(JordanOutput {
            logits: parts.readout(states.clone()),
            states,
            fed_back,
        })
    }

    /// [`try_forward`](Self::try_forward), panicking with its error message.
    pub fn forward(
        &self,
        input: impl Into<SequenceInput<B>>,
        targets: Option<Tensor<B, 2, Int>>,
        forcing: &Forcing,
        options: &UnrollOptions<B>,
    ) -> JordanOutput<B> {
        self.try_forward(input, targets, forcing, options)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The same forward pass one step at a time for every forcing, through the generic scan
    /// (the reference the unrolled passes are tested against). Zero `h(0)`, full lengths.
    pub fn try_forward_sequential(
        &self,
        input: impl Into<SequenceInput<B>>,
        targets: Option<Tensor<B, 2, Int>>,
        forcing: &Forcing,
    ) -> Result<JordanOutput<B>> {
        self.parts()
            .forward_sequential(input.into(), targets, forcing, self.input_size())
    }

    /// Width of `x(t)`.
    pub fn input_size(&self) -> usize {
        self.cell.input_size()
    }

    /// Width of `h(t)`.
    pub fn hidden_size(&self) -> usize {
        self.cell.state_size()
    }

    /// Width of `o(t)` (and of `r(t-1)`).
    pub fn output_size(&self) -> usize {
        self.readout.output_size()
    }
}

/// Generation as for [`JordanRnn`] (the chosen token is both `r(t)` and `x(t+1)`), with the
/// state `h(t)` also carried by the hidden path.
impl<B: Backend> Autoregressive<B> for ElmanJordanRnn<B> {
    fn vocab_size(&self) -> usize {
        self.output_size()
    }

    fn warm(&self, prompts: Tensor<B, 2, Int>, lengths: &[usize]) -> Result<Tensor<B, 2>> {
        check_feeds_back("ElmanJordanRnn", self.input_size(), self.output_size())?;
        check_prompts(&prompts, lengths, self.vocab_size())?;
        let [batch, time] = prompts.dims();
        let prev = (time > 1).then(|| prompts.clone().slice([0..batch, 1..time]));
        let cell = FedDriveCell {
            cell: &self.cell,
            feedback: self
                .parts()
                .token_feedback_drive(prev, batch, &prompts.device()),
        };
        Ok(unroll(&cell, prompts, &UnrollOptions::new().with_lengths(lengths))?.last)
    }

    fn next_logits(&self, state: &Tensor<B, 2>) -> Tensor<B, 2> {
        self.readout.forward(state.clone())
    }

    /// `h(t+1) = tanh(b + W h(t) + R ŷ(t) + U ŷ(t))`.
    fn feed(&self, state: Tensor<B, 2>, tokens: Tensor<B, 1, Int>) -> Tensor<B, 2> {
        let ids = tokens.unsqueeze_dim::<2>(1);
        let [batch, _] = ids.dims();
        let drive = self.cell.drive(SequenceInput::Tokens(ids.clone()))
            + embedding(self.feedback.val(), ids);
        self.cell
            .step(state, drive.reshape([batch, self.hidden_size()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::{sequence_nll, Reduction};
    use crate::sample::{generate, GenerateConfig, Sampling};
    use burn::tensor::{Distribution, Tolerance};

    type TestBackend = burn::backend::NdArray<f64>;
    type Ad = burn::backend::Autodiff<TestBackend>;

    fn exact() -> Tolerance<f64> {
        Tolerance::absolute(1e-12)
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
            ("U", flat(model.cell.u.grad(&grads).unwrap())),
            ("W", flat(model.cell.w.grad(&grads).unwrap())),
            (
                "b",
                flat(model.cell.b.as_ref().unwrap().grad(&grads).unwrap()),
            ),
            ("R", flat(model.feedback.grad(&grads).unwrap())),
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

    fn nll(output: &JordanOutput<Ad>, targets: &Tensor<Ad, 2, Int>) -> Tensor<Ad, 1> {
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
            let parallel = model.forward(input.clone(), Some(targets.clone()), &f);
            let sequential = model
                .try_forward_sequential(input, Some(targets.clone()), &f)
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
        for forcing in [Forcing::TeacherForced, free] {
            let output = model.forward(tokens.clone(), Some(targets.clone()), &forcing);
            let reference = nll(&output, &targets);
            let fused = model.loss(tokens.clone(), targets.clone(), &forcing, Reduction::Sum);
            assert_close(&flat(fused.clone()), &flat(reference.clone()), "loss");
            assert_same_grads(
                jordan_grads(&model, fused),
                jordan_grads(&model, reference),
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
        let unrolled = model.forward(
            input.clone(),
            Some(targets.clone()),
            &f,
            &UnrollOptions::new(),
        );
        let sequential = model
            .try_forward_sequential(input, Some(targets.clone()), &f)
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
            let fast = jordan.forward(input.clone(), Some(targets.clone()), &f);
            let slow = jordan
                .try_forward_sequential(input.clone(), Some(targets.clone()), &f)
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
            let fast = both.forward(
                input.clone(),
                Some(targets.clone()),
                &f,
                &UnrollOptions::new(),
            );
            let slow = both
                .try_forward_sequential(input.clone(), Some(targets.clone()), &f)
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
                .forward(input.clone(), Some(targets.clone()), &f)
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
        let free = model.forward(input.clone(), None, &f);
        // Teacher forcing on the model's own argmax outputs is the same computation.
        let own = free.logits.clone().argmax(2).reshape([3, 10]);
        let forced = model.forward(input, Some(own.clone()), &Forcing::TeacherForced);
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
            model.forward(
                input.clone(),
                None,
                &Forcing::FreeRunning {
                    feedback: Feedback::Sample,
                    seed,
                },
            )
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
                .forward(input.clone(), Some(targets.clone()), &f)
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
                .forward(input.clone(), Some(targets.clone()), &f)
                .fed_back
                .unwrap();
            let reseeded = Forcing::Scheduled {
                teacher_probability: p,
                feedback: Feedback::Softmax,
                seed: 2,
            };
            let other = model
                .forward(input.clone(), Some(targets.clone()), &reseeded)
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
        let g = per_step_grad(jordan.forward(x.clone(), Some(targets.clone()), &f).logits);
        assert!(
            g[4] > 1e-6 && g.iter().enumerate().all(|(t, &v)| t == 4 || v == 0.0),
            "{g:?}"
        );
        // With a hidden-to-hidden path, back-propagation through time reaches earlier inputs.
        let g = per_step_grad(
            both.forward(x.clone(), Some(targets.clone()), &f, &UnrollOptions::new())
                .logits,
        );
        assert!(g[..5].iter().all(|&v| v > 1e-8) && g[5] == 0.0, "{g:?}");
        // A target moves the next step's output, and no other.
        let out = |y: &Tensor<Ad, 2, Int>| jordan.forward(x.clone(), Some(y.clone()), &f).logits;
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
        let out = model.forward(x.clone(), Some(targets), &Forcing::TeacherForced);
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
            model.try_forward(input.clone(), targets, &f).unwrap_err()
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
        assert!(model.try_forward(input.clone(), None, &free).is_ok());
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
            model.try_forward(wide, Some(targets.clone()), &Forcing::TeacherForced),
            Err(Error::Shape { arg: "input", .. })
        ));
        let reversed = UnrollOptions::new().reversed();
        assert!(matches!(
            both.try_forward(
                input.clone(),
                Some(targets.clone()),
                &Forcing::TeacherForced,
                &reversed
            ),
            Err(Error::Config {
                field: "reverse",
                ..
            })
        ));
        let h0 = UnrollOptions::new().with_initial_state(Tensor::zeros([2, 5], &device));
        for f in [Forcing::TeacherForced, free] {
            assert!(matches!(
                both.try_forward(input.clone(), Some(targets.clone()), &f, &h0),
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
            None,
            &Forcing::TeacherForced,
        );
    }

    #[test]
    fn padding_changes_nothing_at_valid_steps_of_the_unrolled_model() {
        let device = Default::default();
        let model = both::<TestBackend>(4, 5, &device);
        let input = random_ids::<TestBackend>(1, 3, 4, 17, &device);
        let targets = random_ids::<TestBackend>(1, 3, 5, 18, &device);
        let f = Forcing::TeacherForced;
        let alone = model.forward(
            input.clone(),
            Some(targets.clone()),
            &f,
            &UnrollOptions::new(),
        );
        let padded_input = Tensor::cat(vec![input, random_ids(1, 4, 4, 19, &device)], 1);
        let padded_targets = Tensor::cat(vec![targets, random_ids(1, 4, 5, 20, &device)], 1);
        let out = model.forward(
            padded_input,
            Some(padded_targets),
            &f,
            &UnrollOptions::new().with_lengths([3]),
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
            let reference =
                greedy_by_teacher_forcing(|x, y| jordan.forward(x, Some(y), &f).logits, prompt, 8);
            assert_eq!(from_jordan[i], reference, "Jordan, prompt {prompt:?}");
            let reference = greedy_by_teacher_forcing(
                |x, y| both.forward(x, Some(y), &f, &UnrollOptions::new()).logits,
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
