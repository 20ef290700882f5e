//! Unfolding a recurrence into a computational graph.
//!
//! A recurrent network is one transition applied again and again with the same parameters:
//!
//! ```text
//! h(t) = f(h(t-1), x(t); θ)        t = 1 .. τ
//! ```
//!
//! A cell only says one step ([`Recurrence::step`]). [`unroll`] applies it over a whole
//! `[batch, time, features]` sequence, and the graph Burn records while doing so is the
//! unfolded graph: back-propagation through time is ordinary autodiff through it. Every
//! cell shares the one loop in [`scan`], which is where initial states, per-sequence
//! lengths and reversed reading are handled, once.
//!
//! A state is one `[batch, width]` tensor for most cells; a cell whose state has several parts
//! (an LSTM's `h` and `c`) says so with [`Recurrence::state_widths`] and steps a [`State`].
//!
//! A state-only dynamical system `h(t) = f(h(t-1); θ)` (no inputs, no outputs) is a
//! [`Dynamics`], unrolled by [`unroll_dynamics`] through the same loop.

use burn::tensor::{backend::Backend, Bool, ElementConversion, Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::feedback::Forcing;

/// A sequence fed to a recurrence: dense features or token ids.
#[derive(Debug, Clone)]
pub enum SequenceInput<B: Backend> {
    /// Dense features, `[batch, time, input_size]`.
    Dense(Tensor<B, 3>),
    /// Token ids, `[batch, time]`, each in `0..input_size`. A token stands for the one-hot
    /// vector of its id.
    Tokens(Tensor<B, 2, Int>),
}

impl<B: Backend> From<Tensor<B, 3>> for SequenceInput<B> {
    fn from(x: Tensor<B, 3>) -> Self {
        SequenceInput::Dense(x)
    }
}

impl<B: Backend> From<Tensor<B, 2, Int>> for SequenceInput<B> {
    fn from(ids: Tensor<B, 2, Int>) -> Self {
        SequenceInput::Tokens(ids)
    }
}

impl<B: Backend> SequenceInput<B> {
    /// `[batch, time]`.
    pub fn batch_and_time(&self) -> [usize; 2] {
        match self {
            SequenceInput::Dense(x) => {
                let [b, t, _] = x.dims();
                [b, t]
            }
            SequenceInput::Tokens(ids) => ids.dims(),
        }
    }

    /// The device the sequence lives on.
    pub fn device(&self) -> B::Device {
        match self {
            SequenceInput::Dense(x) => x.device(),
            SequenceInput::Tokens(ids) => ids.device(),
        }
    }

    /// Dense features: token ids become one-hot vectors of width `input_size`.
    pub fn into_dense(self, input_size: usize) -> Tensor<B, 3> {
        match self {
            SequenceInput::Dense(x) => x,
            SequenceInput::Tokens(ids) => ids.one_hot::<3>(input_size).float(),
        }
    }

    /// The same sequence cut off the autodiff graph (dense features may require gradients).
    pub fn detach(self) -> Self {
        match self {
            SequenceInput::Dense(x) => SequenceInput::Dense(x.detach()),
            tokens => tokens,
        }
    }

    /// Checks the sequence against a cell's input size: non-empty batch and time, the right
    /// feature width, token ids inside the vocabulary, finite values.
    pub fn validate(&self, arg: &'static str, input_size: usize) -> Result<()> {
        let [batch, time] = self.batch_and_time();
        if batch == 0 {
            return Err(Error::Empty {
                arg,
                what: format!("the batch has no sequences ([batch, time] = [{batch}, {time}])"),
            });
        }
        if time == 0 {
            return Err(Error::Empty {
                arg,
                what: format!("the sequences have zero length ([batch, time] = [{batch}, {time}])"),
            });
        }
        match self {
            SequenceInput::Dense(x) => {
                let dims = x.dims();
                if dims[2] != input_size {
                    return Err(Error::shape(
                        arg,
                        format!("[batch, time, {input_size}]"),
                        &dims,
                    ));
                }
                // One device read: a NaN or infinite input poisons every later state.
                if !is_finite(x) {
                    return Err(Error::NonFinite { arg });
                }
            }
            SequenceInput::Tokens(ids) => check_ids(arg, ids, input_size)?,
        }
        Ok(())
    }
}

/// Whether every value of `x` is finite (one device read).
pub(crate) fn is_finite<B: Backend, const D: usize>(x: &Tensor<B, D>) -> bool {
    x.clone().is_finite().all().into_scalar().elem::<bool>()
}

/// Checks that every id of `ids` is in `0..vocab_size` (two device reads: the extremes).
pub(crate) fn check_ids<B: Backend, const D: usize>(
    arg: &'static str,
    ids: &Tensor<B, D, Int>,
    vocab_size: usize,
) -> Result<()> {
    let low: i64 = ids.clone().min().into_scalar().elem::<i64>();
    let high: i64 = ids.clone().max().into_scalar().elem::<i64>();
    match [low, high]
        .into_iter()
        .find(|&id| id < 0 || id as usize >= vocab_size)
    {
        Some(id) => Err(Error::TokenOutOfRange {
            arg,
            id,
            vocab_size,
        }),
        None => Ok(()),
    }
}

/// The state of a recurrence at one step: one `[batch, width]` tensor per part.
///
/// Part 0 is `h(t)`, what the cell outputs (the states an unroll returns, what the next layer
/// reads). Most cells have that part alone; an LSTM carries its cell memory `c(t)` as part 1;
/// a stack of layers carries one part (or two) per layer and direction, bottom layer first.
#[derive(Debug, Clone)]
pub struct State<B: Backend> {
    parts: Vec<Tensor<B, 2>>,
}

impl<B: Backend> From<Tensor<B, 2>> for State<B> {
    fn from(h: Tensor<B, 2>) -> Self {
        State::new(h)
    }
}

impl<B: Backend> State<B> {
    /// The state of a cell whose state is `h` alone.
    pub fn new(h: Tensor<B, 2>) -> Self {
        Self { parts: vec![h] }
    }

    /// A state of several parts, `h(t)` first. Panics if `parts` is empty.
    pub fn from_parts(parts: Vec<Tensor<B, 2>>) -> Self {
        assert!(!parts.is_empty(), "a state has at least one part, h(t)");
        Self { parts }
    }

    /// Zeros of the given part widths.
    pub fn zeros(batch: usize, widths: &[usize], device: &B::Device) -> Self {
        Self::from_parts(
            widths
                .iter()
                .map(|&width| Tensor::zeros([batch, width], device))
                .collect(),
        )
    }

    /// `h(t)`, part 0.
    pub fn output(&self) -> &Tensor<B, 2> {
        &self.parts[0]
    }

    /// `h(t)`, part 0, by value.
    pub fn into_output(self) -> Tensor<B, 2> {
        self.parts.into_iter().next().expect("a state has a part")
    }

    /// Every part, `h(t)` first.
    pub fn parts(&self) -> &[Tensor<B, 2>] {
        &self.parts
    }

    /// Every part by value, `h(t)` first.
    pub fn into_parts(self) -> Vec<Tensor<B, 2>> {
        self.parts
    }

    /// The widths of the parts.
    pub fn widths(&self) -> Vec<usize> {
        self.parts.iter().map(|part| part.dims()[1]).collect()
    }

    /// The number of sequences.
    pub fn batch_size(&self) -> usize {
        self.parts[0].dims()[0]
    }

    /// The same state cut off the autodiff graph.
    pub fn detach(self) -> Self {
        Self::from_parts(self.parts.into_iter().map(Tensor::detach).collect())
    }

    /// This state where `finished` (`[batch, 1]`) is false, `previous` where it is true: a row
    /// past its sequence's end holds its state.
    fn hold(self, previous: &Self, finished: Option<Tensor<B, 2, Bool>>) -> Self {
        let Some(finished) = finished else {
            return self;
        };
        let parts = self
            .parts
            .into_iter()
            .zip(&previous.parts)
            .map(|(next, previous)| {
                next.mask_where(finished.clone().expand(previous.dims()), previous.clone())
            })
            .collect();
        Self::from_parts(parts)
    }

    /// Checks this state against the part widths `expected` for `batch` sequences.
    pub(crate) fn check(&self, arg: &'static str, batch: usize, expected: &[usize]) -> Result<()> {
        let got: Vec<[usize; 2]> = self.parts.iter().map(|p| p.dims()).collect();
        let want: Vec<[usize; 2]> = expected.iter().map(|&w| [batch, w]).collect();
        match (got == want, got.as_slice()) {
            (true, _) => Ok(()),
            (false, [one]) if want.len() == 1 => {
                Err(Error::shape(arg, format!("{:?}", want[0]), one))
            }
            (false, _) => Err(Error::StateShape {
                arg,
                expected: describe_parts(&want),
                got: describe_parts(&got),
            }),
        }
    }
}

/// `[2, 4] + [2, 4]`: the shapes of a state's parts, in words.
fn describe_parts(shapes: &[[usize; 2]]) -> String {
    let shapes: Vec<String> = shapes.iter().map(|s| format!("{s:?}")).collect();
    shapes.join(" + ")
}

/// One step of a recurrence, `h(t) = f(h(t-1), x(t); θ)`, with the same `θ` at every step.
///
/// Implement [`step`](Recurrence::step) and the two sizes; the rest has defaults. A cell whose
/// state has several parts implements [`state_widths`](Recurrence::state_widths) and
/// [`step_state`](Recurrence::step_state) instead of `step`.
pub trait Recurrence<B: Backend> {
    /// Width of `x(t)`: feature count for dense inputs, vocabulary size for token ids.
    fn input_size(&self) -> usize;

    /// Width of `h(t)`, the state the cell outputs.
    fn state_size(&self) -> usize;

    /// Widths of every part of the state, `h(t)` first. Default: `[state_size]`, a state of
    /// one tensor.
    fn state_widths(&self) -> Vec<usize> {
        vec![self.state_size()]
    }

    /// The part of every step that depends on `x(t)` alone, computed for all steps at once
    /// (one large product instead of τ small ones): `[batch, time] → [batch, time, D]`.
    /// Row `t` is what [`step`](Recurrence::step) receives as `drive`.
    ///
    /// The default hands over the dense features (token ids as one-hot vectors).
    fn drive(&self, input: SequenceInput<B>) -> Tensor<B, 3> {
        input.into_dense(self.input_size())
    }

    /// `h(t) = f(h(t-1), x(t))`, given `h(t-1)` `[batch, state_size]` and row `t` of
    /// [`drive`](Recurrence::drive), for a cell whose state is `h` alone.
    ///
    /// A cell with several state parts implements [`step_state`](Recurrence::step_state)
    /// instead; this default is only reached by a cell that implements neither.
    ///
    /// Work on the parameters alone (a bias reshaped to `[1, hidden]`, a weight transposed)
    /// belongs in [`drive`](Recurrence::drive), not here: under Burn 0.21's autodiff an
    /// operation whose only tracked input is a parameter starts a new graph at every step, and
    /// merging it into the sequence's graph costs time that grows with the sequence (the
    /// built-in `GruCell` carries its `b_hn` in the drive for this reason).
    fn step(&self, h: Tensor<B, 2>, drive: Tensor<B, 2>) -> Tensor<B, 2> {
        let _ = (h, drive);
        panic!(
            "{} implements neither `Recurrence::step` nor `Recurrence::step_state`",
            std::any::type_name::<Self>()
        )
    }

    /// The step on the whole state (every part of [`state_widths`](Recurrence::state_widths)).
    /// The default runs [`step`](Recurrence::step) on the one part.
    fn step_state(&self, state: State<B>, drive: Tensor<B, 2>) -> State<B> {
        State::new(self.step(state.into_output(), drive))
    }

    /// This cell as one layer of plain matrices, `h ← act(b + x U + h W)`, for the fused
    /// generation kernel ([`crate::sample::generate`]); `None`, the default, for any cell that is
    /// not unfold's Elman cell.
    #[doc(hidden)]
    fn generation_layer(&self) -> Option<crate::sample::GenerationLayer<B>> {
        None
    }

    /// All steps of the sequence from `initial`: every `h(t)` and the state at each
    /// sequence's end. The default loops [`step_state`](Recurrence::step_state) through
    /// [`scan`], checking at the first step that the cell returns the widths it declares; a
    /// cell with a fused kernel overrides this, and nothing else changes.
    ///
    /// The rows of `drive` are split off once (one fused operation): where the
    /// backend has kernels, their backward pass stacks the rows' gradients once, so BPTT costs
    /// time linear in the number of steps even when `drive` carries gradients (a learned input
    /// projection hoisted into [`drive`](Recurrence::drive), the fast choice).
    fn scan(
        &self,
        drive: Tensor<B, 3>,
        initial: State<B>,
        plan: &StepPlan<B>,
    ) -> Result<Unrolled<B>> {
        let widths = self.state_widths();
        let batch = initial.batch_size();
        let rows = crate::ops::steps::split_steps(drive);
        let mut first = true;
        let mut problem = None;
        let out = scan(initial, plan, |t, state| {
            if problem.is_some() {
                return state; // the loop runs out doing nothing; the error is returned below
            }
            let next = self.step_state(state.clone(), rows[t].clone());
            if std::mem::take(&mut first) {
                if let Err(e) = next.check("the cell's step output", batch, &widths) {
                    problem = Some(Error::CellOutput {
                        cell: std::any::type_name::<Self>().to_string(),
                        problem: e.to_string(),
                        declared: widths.clone(),
                    });
                    return state;
                }
            }
            next
        });
        match problem {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// A state-only dynamical system `h(t) = f(h(t-1); θ)`: a recurrence with no input.
pub trait Dynamics<B: Backend> {
    /// Width of `h(t)`.
    fn state_size(&self) -> usize;

    /// `h(t) = f(h(t-1))`.
    fn step(&self, h: Tensor<B, 2>) -> Tensor<B, 2>;
}

/// The states an unroll produced.
#[derive(Debug, Clone)]
pub struct Unrolled<B: Backend> {
    /// Every output state, `[batch, time, state_size]`; index `t` holds `h(t)`. Past a
    /// sequence's end its state is held unchanged (so a reversed read holds the initial state
    /// there).
    pub states: Tensor<B, 3>,
    /// The final `h` of each sequence, `[batch, state_size]`: at its own last valid step (at
    /// its first step when read in reverse). The same as `final_state.output()`.
    pub last: Tensor<B, 2>,
    /// The whole final state of each sequence (every part), at the same step as `last`.
    pub final_state: State<B>,
}

impl<B: Backend> Unrolled<B> {
    fn from_final(states: Tensor<B, 3>, final_state: State<B>) -> Self {
        Self {
            states,
            last: final_state.output().clone(),
            final_state,
        }
    }
}

/// How to unroll or run a model: initial state, per-sequence lengths, direction, and (for the
/// models whose recurrence goes through their output) what is fed back. The default is a
/// zero initial state, every sequence full length, read forward, teacher-forced.
#[derive(Debug, Clone)]
pub struct UnrollOptions<B: Backend> {
    /// `h(0)`, every part `[batch, width]`; zeros when `None`. For a stack of layers, one
    /// part per layer and direction, bottom first (see the model's docs).
    pub initial_state: Option<State<B>>,
    /// Valid length of each sequence, `1..=time`; all full length when `None`.
    pub lengths: Option<Vec<usize>>,
    /// Read each sequence from its own last valid step back to its first.
    pub reverse: bool,
    /// What a model that feeds its outputs back receives as `r(t-1)`
    /// ([`JordanRnn`](crate::feedback::JordanRnn)); other models accept only the default,
    /// [`Forcing::TeacherForced`], and ignore it.
    pub forcing: Forcing,
    /// The true outputs `y(t)` `[batch, time]`, fed back by teacher forcing and scheduled
    /// sampling; read only by models that feed their outputs back.
    pub teacher: Option<Tensor<B, 2, Int>>,
}

impl<B: Backend> Default for UnrollOptions<B> {
    fn default() -> Self {
        Self {
            initial_state: None,
            lengths: None,
            reverse: false,
            forcing: Forcing::TeacherForced,
            teacher: None,
        }
    }
}

impl<B: Backend> UnrollOptions<B> {
    /// Zero initial state, full lengths, forward.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from `h0` (a `[batch, state_size]` tensor, or a [`State`] of several parts)
    /// instead of zeros.
    pub fn with_initial_state(mut self, h0: impl Into<State<B>>) -> Self {
        self.initial_state = Some(h0.into());
        self
    }

    /// Per-sequence valid lengths (padding after them is ignored).
    pub fn with_lengths(mut self, lengths: impl Into<Vec<usize>>) -> Self {
        self.lengths = Some(lengths.into());
        self
    }

    /// Reads every sequence backwards, from its own last valid step.
    pub fn reversed(mut self) -> Self {
        self.reverse = true;
        self
    }

    /// Teacher forcing: the true previous output `y(t-1)` is fed back (`targets` `[batch,
    /// time]`).
    pub fn teacher_forced(mut self, targets: Tensor<B, 2, Int>) -> Self {
        self.forcing = Forcing::TeacherForced;
        self.teacher = Some(targets);
        self
    }

    /// Feeds back as `forcing` says; `teacher` holds the true outputs where it feeds them.
    pub fn with_forcing(mut self, forcing: Forcing) -> Self {
        self.forcing = forcing;
        self
    }

    /// The true outputs `y(t)` `[batch, time]` to feed back where the forcing asks for them.
    pub fn with_teacher(mut self, targets: Tensor<B, 2, Int>) -> Self {
        self.teacher = Some(targets);
        self
    }

    /// An error unless the forcing is the default: for models whose recurrence does not go
    /// through their output, there is nothing to force.
    pub(crate) fn refuse_forcing(&self, model: &str) -> Result<()> {
        if self.forcing == Forcing::TeacherForced {
            return Ok(());
        }
        Err(Error::config(
            "forcing",
            format!("{:?}", self.forcing),
            format!(
                "{model} feeds back its hidden state, not its output: there is no output to \
                 force (forcing applies to JordanRnn and ElmanJordanRnn)"
            ),
        ))
    }

    /// The validated initial state for `batch` sequences of a cell with part `widths`: the
    /// given one, or zeros.
    pub(crate) fn initial_state_for(
        &self,
        batch: usize,
        widths: &[usize],
        device: &B::Device,
    ) -> Result<State<B>> {
        let Some(h0) = &self.initial_state else {
            return Ok(State::zeros(batch, widths, device));
        };
        h0.check("initial_state", batch, widths)?;
        // A NaN state would poison every later step as surely as a NaN input.
        if !h0.parts().iter().all(is_finite) {
            return Err(Error::NonFinite {
                arg: "initial_state",
            });
        }
        Ok(h0.clone())
    }

    /// The plan of steps for `batch` sequences of `time` steps, with these lengths and
    /// direction (lengths checked).
    pub(crate) fn plan(
        &self,
        batch: usize,
        time: usize,
        device: &B::Device,
    ) -> Result<StepPlan<B>> {
        StepPlan::new(batch, time, self.lengths.as_deref(), self.reverse, device)
    }
}

/// The host-side shape of an unroll: how many steps, which direction, each sequence's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steps {
    /// Number of time steps.
    pub time: usize,
    /// Whether each sequence is read from its own last valid step back to its first.
    pub reverse: bool,
    /// Valid length of each sequence (`1..=time`); `None` when all are full length.
    pub lengths: Option<Vec<usize>>,
}

impl Steps {
    /// Time indices in the order they are visited.
    pub fn order(&self) -> Vec<usize> {
        if self.reverse {
            (0..self.time).rev().collect()
        } else {
            (0..self.time).collect()
        }
    }

    /// Whether row `row` is inside its sequence at step `t`.
    pub fn is_valid(&self, row: usize, t: usize) -> bool {
        self.lengths.as_ref().is_none_or(|lengths| t < lengths[row])
    }
}

/// Which steps to run, in which order, and which rows hold still at each step.
///
/// Built once per unroll from the lengths; the loop in [`scan`] (and any fused kernel) only
/// reads it.
#[derive(Debug, Clone)]
pub struct StepPlan<B: Backend> {
    steps: Steps,
    /// `[batch, time]`, true where the step is inside its sequence; `None` when all are.
    valid: Option<Tensor<B, 2, Bool>>,
    /// Steps `t < full_until` are valid for every sequence and need no masking.
    full_until: usize,
}

impl<B: Backend> StepPlan<B> {
    /// A plan for `batch` sequences of `time` steps with optional valid `lengths`.
    pub fn new(
        batch: usize,
        time: usize,
        lengths: Option<&[usize]>,
        reverse: bool,
        device: &B::Device,
    ) -> Result<Self> {
        if let Some(lengths) = lengths {
            validate_lengths(lengths, batch, time)?;
        }
        Ok(Self::from_steps(
            Steps {
                time,
                reverse,
                lengths: lengths.map(<[usize]>::to_vec),
            },
            device,
        ))
    }

    /// A plan for already validated `steps`.
    pub(crate) fn from_steps(steps: Steps, device: &B::Device) -> Self {
        let full_until = steps
            .lengths
            .as_ref()
            .map_or(steps.time, |l| l.iter().copied().min().unwrap_or(0));
        let valid = steps
            .lengths
            .as_ref()
            .filter(|_| full_until < steps.time)
            .map(|l| valid_mask(l, steps.time, device));
        Self {
            steps,
            valid,
            full_until,
        }
    }

    /// The host-side description.
    pub(crate) fn steps(&self) -> &Steps {
        &self.steps
    }

    /// Number of time steps.
    pub fn time(&self) -> usize {
        self.steps.time
    }

    /// Whether the sequences are read backwards.
    pub fn is_reversed(&self) -> bool {
        self.steps.reverse
    }

    /// Valid length of each sequence; `None` when all are full length.
    pub fn lengths(&self) -> Option<&[usize]> {
        self.steps.lengths.as_deref()
    }

    /// Time indices in the order they are visited.
    pub fn order(&self) -> Vec<usize> {
        self.steps.order()
    }

    /// The step visited last: where every row's final state is (held rows keep theirs).
    pub fn last_step(&self) -> usize {
        if self.steps.reverse {
            0
        } else {
            self.steps.time - 1
        }
    }

    /// `[batch, 1]` mask of the rows that are past their end at step `t`, or `None` when every
    /// row is inside its sequence.
    pub fn finished_at(&self, t: usize) -> Option<Tensor<B, 2, Bool>> {
        if t < self.full_until {
            return None;
        }
        let valid = self.valid.as_ref()?;
        let [batch, _] = valid.dims();
        Some(valid.clone().slice([0..batch, t..t + 1]).bool_not())
    }
}

/// Checks per-sequence lengths against a `[batch, time]` tensor.
pub fn validate_lengths(lengths: &[usize], batch: usize, time: usize) -> Result<()> {
    if lengths.len() != batch {
        return Err(Error::Lengths {
            problem: format!(
                "has {} entries, but the batch has {batch} sequences",
                lengths.len()
            ),
        });
    }
    if let Some((row, &len)) = lengths
        .iter()
        .enumerate()
        .find(|(_, &l)| l == 0 || l > time)
    {
        return Err(Error::Lengths {
            problem: format!(
                "[{row}] = {len}, but every length must be in 1..={time} (the time dimension)"
            ),
        });
    }
    Ok(())
}

/// `[batch, time]` mask, true at `t < lengths[b]`.
pub fn valid_mask<B: Backend>(
    lengths: &[usize],
    time: usize,
    device: &B::Device,
) -> Tensor<B, 2, Bool> {
    let data: Vec<bool> = lengths
        .iter()
        .flat_map(|&len| (0..time).map(move |t| t < len))
        .collect();
    Tensor::from_data(TensorData::new(data, [lengths.len(), time]), device)
}

/// Row `t` of a `[batch, time, width]` tensor, as `[batch, width]`.
pub fn drive_at<B: Backend>(drive: &Tensor<B, 3>, t: usize) -> Tensor<B, 2> {
    let [batch, _, width] = drive.dims();
    drive
        .clone()
        .slice([0..batch, t..t + 1, 0..width])
        .reshape([batch, width])
}

/// The loop every unroll goes through.
///
/// Visits the steps in `plan` order, computing `state ← step(t, state)`; a row past its
/// sequence's end keeps its state (`h(t) = h(t-1)`), so it gets neither a new state nor a
/// gradient. Returns every `h(t)` (part 0 of the state) and the final state.
pub fn scan<B: Backend>(
    initial: State<B>,
    plan: &StepPlan<B>,
    mut step: impl FnMut(usize, State<B>) -> State<B>,
) -> Unrolled<B> {
    let mut state = initial;
    let mut outputs: Vec<Option<Tensor<B, 2>>> = vec![None; plan.time()];
    for t in plan.order() {
        state = step(t, state.clone()).hold(&state, plan.finished_at(t));
        outputs[t] = Some(state.output().clone());
    }
    let outputs = outputs
        .into_iter()
        .map(|h| h.expect("every step visited"))
        .collect();
    Unrolled::from_final(Tensor::stack(outputs, 1), state)
}

/// Unrolls `cell` over `input`: `h(t) = f(h(t-1), x(t))` for every step, same parameters.
///
/// Checks the input (non-empty, right width, ids in range, finite), the lengths and the
/// initial state first, and returns an [`Error`] naming the problem. `options.forcing` and
/// `options.teacher` are for models that feed their outputs back; a cell ignores them.
pub fn unroll<B: Backend, C: Recurrence<B> + ?Sized>(
    cell: &C,
    input: impl Into<SequenceInput<B>>,
    options: &UnrollOptions<B>,
) -> Result<Unrolled<B>> {
    let input = input.into();
    input.validate("input", cell.input_size())?;
    let [batch, time] = input.batch_and_time();
    let device = input.device();
    let plan = options.plan(batch, time, &device)?;
    let h0 = options.initial_state_for(batch, &cell.state_widths(), &device)?;
    cell.scan(cell.drive(input), h0, &plan)
}

/// Unrolls a state-only system for `steps` steps from `h0` `[batch, state_size]`.
///
/// `options.initial_state` is ignored (the system needs `h0`); lengths and reversal apply as
/// for [`unroll`].
pub fn unroll_dynamics<B: Backend, S: Dynamics<B> + ?Sized>(
    system: &S,
    h0: Tensor<B, 2>,
    steps: usize,
    options: &UnrollOptions<B>,
) -> Result<Unrolled<B>> {
    let [batch, width] = h0.dims();
    if width != system.state_size() {
        return Err(Error::shape(
            "h0",
            format!("[batch, {}]", system.state_size()),
            &h0.dims(),
        ));
    }
    if batch == 0 {
        return Err(Error::Empty {
            arg: "h0",
            what: "the batch has no states".into(),
        });
    }
    if steps == 0 {
        return Err(Error::Empty {
            arg: "steps",
            what: "zero steps to unroll".into(),
        });
    }
    let plan = options.plan(batch, steps, &h0.device())?;
    Ok(scan(State::new(h0), &plan, |_, h| {
        State::new(system.step(h.into_output()))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{Module, Param};
    use burn::tensor::{Distribution, Tolerance};

    type TestBackend = burn::backend::NdArray<f64>;

    /// `h(t) = h(t-1) R`: a rotation, whose τ-step unroll is `h(0) R^τ`.
    #[derive(Module, Debug)]
    struct Rotation<B: Backend> {
        r: Param<Tensor<B, 2>>,
    }

    impl<B: Backend> Dynamics<B> for Rotation<B> {
        fn state_size(&self) -> usize {
            2
        }
        fn step(&self, h: Tensor<B, 2>) -> Tensor<B, 2> {
            h.matmul(self.r.val())
        }
    }

    /// `h(t) = h(t-1) + x(t)`: a running sum, with the default (one-hot) token drive.
    struct RunningSum {
        width: usize,
    }

    impl<B: Backend> Recurrence<B> for RunningSum {
        fn input_size(&self) -> usize {
            self.width
        }
        fn state_size(&self) -> usize {
            self.width
        }
        fn step(&self, h: Tensor<B, 2>, drive: Tensor<B, 2>) -> Tensor<B, 2> {
            h + drive
        }
    }

    fn rotation(
        angle: f64,
        device: &burn::backend::ndarray::NdArrayDevice,
    ) -> Rotation<TestBackend> {
        let (s, c) = angle.sin_cos();
        let r = Tensor::from_data([[c, s], [-s, c]], device);
        Rotation {
            r: Param::from_tensor(r),
        }
    }

    #[test]
    fn state_only_system_unrolls_to_matrix_powers() {
        let device = Default::default();
        let angle = 0.3;
        let system = rotation(angle, &device);
        let h0 = Tensor::<TestBackend, 2>::from_data([[1.0, 0.0], [0.0, 2.0]], &device);
        let out = unroll_dynamics(&system, h0, 7, &UnrollOptions::new()).unwrap();
        assert_eq!(out.states.dims(), [2, 7, 2]);
        // h(t) = h(0) R^t: [1, 0] turns into [cos tθ, sin tθ].
        for t in 0..7 {
            let a = angle * (t + 1) as f64;
            let expected = Tensor::<TestBackend, 2>::from_data(
                [[a.cos(), a.sin()], [-2.0 * a.sin(), 2.0 * a.cos()]],
                &device,
            );
            drive_at(&out.states, t)
                .into_data()
                .assert_approx_eq::<f64>(&expected.into_data(), Tolerance::absolute(1e-12));
        }
        drive_at(&out.states, 6)
            .into_data()
            .assert_eq(&out.last.into_data(), true);
    }

    #[test]
    fn tokens_drive_a_generic_cell_as_one_hot_vectors() {
        let device = Default::default();
        let ids = Tensor::<TestBackend, 2, Int>::from_data([[0, 2, 2], [1, 1, 0]], &device);
        let out = unroll(&RunningSum { width: 3 }, ids, &UnrollOptions::new()).unwrap();
        let expected =
            Tensor::<TestBackend, 2>::from_data([[1.0, 0.0, 2.0], [1.0, 2.0, 0.0]], &device);
        out.last.into_data().assert_eq(&expected.into_data(), true);
    }

    #[test]
    fn finished_sequences_hold_their_state_and_last_is_each_own_last_step() {
        let device = Default::default();
        let x =
            Tensor::<TestBackend, 3>::random([3, 5, 2], Distribution::Normal(0.0, 1.0), &device);
        let cell = RunningSum { width: 2 };
        let lengths = [5, 2, 3];
        let out = unroll(
            &cell,
            x.clone(),
            &UnrollOptions::new().with_lengths(lengths),
        )
        .unwrap();
        for (row, &len) in lengths.iter().enumerate() {
            let alone = x.clone().slice([row..row + 1, 0..len, 0..2]);
            let expected = alone.sum_dim(1).reshape([1, 2]);
            let last = out.last.clone().slice([row..row + 1, 0..2]);
            last.into_data()
                .assert_approx_eq::<f64>(&expected.clone().into_data(), Tolerance::absolute(1e-12));
            for t in len..5 {
                let held = out
                    .states
                    .clone()
                    .slice([row..row + 1, t..t + 1, 0..2])
                    .reshape([1, 2]);
                held.into_data().assert_approx_eq::<f64>(
                    &expected.clone().into_data(),
                    Tolerance::absolute(1e-12),
                );
            }
        }
    }

    #[test]
    fn reversed_read_starts_at_each_sequences_own_last_step() {
        let device = Default::default();
        let system = rotation(0.7, &device);
        // A running sum cannot tell direction; use a non-commutative cell: h ← (h + x) R.
        struct Turn(Rotation<TestBackend>);
        impl Recurrence<TestBackend> for Turn {
            fn input_size(&self) -> usize {
                2
            }
            fn state_size(&self) -> usize {
                2
            }
            fn step(
                &self,
                h: Tensor<TestBackend, 2>,
                x: Tensor<TestBackend, 2>,
            ) -> Tensor<TestBackend, 2> {
                self.0.step(h + x)
            }
        }
        let cell = Turn(system);
        let x =
            Tensor::<TestBackend, 3>::random([2, 4, 2], Distribution::Normal(0.0, 1.0), &device);
        let lengths = [4, 2];
        let reversed = unroll(
            &cell,
            x.clone(),
            &UnrollOptions::new().with_lengths(lengths).reversed(),
        )
        .unwrap();
        for (row, &len) in lengths.iter().enumerate() {
            let valid = x.clone().slice([row..row + 1, 0..len, 0..2]);
            let flipped = valid.flip([1]);
            let forward = unroll(&cell, flipped, &UnrollOptions::new()).unwrap();
            let got = reversed.last.clone().slice([row..row + 1, 0..2]);
            got.into_data()
                .assert_approx_eq::<f64>(&forward.last.into_data(), Tolerance::absolute(1e-12));
        }
    }

    #[test]
    fn bad_lengths_and_initial_state_are_named_errors() {
        let device = Default::default();
        let x = Tensor::<TestBackend, 3>::zeros([2, 3, 2], &device);
        let cell = RunningSum { width: 2 };
        let err = |options: UnrollOptions<TestBackend>| {
            unroll(&cell, x.clone(), &options).unwrap_err().to_string()
        };
        assert!(err(UnrollOptions::new().with_lengths([3]))
            .contains("has 1 entries, but the batch has 2"));
        assert!(err(UnrollOptions::new().with_lengths([3, 4])).contains("[1] = 4"));
        assert!(err(UnrollOptions::new().with_lengths([0, 3])).contains("[0] = 0"));
        let h0 = Tensor::zeros([2, 5], &device);
        assert!(err(UnrollOptions::new().with_initial_state(h0))
            .contains("`initial_state` has shape [2, 5], expected [2, 2]"));
        let system = rotation(0.1, &device);
        let wrong = Tensor::<TestBackend, 2>::zeros([1, 3], &device);
        assert!(matches!(
            unroll_dynamics(&system, wrong, 3, &UnrollOptions::new()),
            Err(Error::Shape { arg: "h0", .. })
        ));
        let h0 = Tensor::<TestBackend, 2>::zeros([1, 2], &device);
        assert!(matches!(
            unroll_dynamics(&system, h0, 0, &UnrollOptions::new()),
            Err(Error::Empty { arg: "steps", .. })
        ));
    }
}
