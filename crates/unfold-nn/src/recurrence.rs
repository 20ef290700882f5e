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
//! A state-only dynamical system `h(t) = f(h(t-1); θ)` (no inputs, no outputs) is a
//! [`Dynamics`], unrolled by [`unroll_dynamics`] through the same loop.

use burn::tensor::{backend::Backend, Bool, ElementConversion, Int, Tensor, TensorData};

use crate::error::{Error, Result};

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
                if !x.clone().is_finite().all().into_scalar().elem::<bool>() {
                    return Err(Error::NonFinite { arg });
                }
            }
            SequenceInput::Tokens(ids) => {
                let low: i64 = ids.clone().min().into_scalar().elem::<i64>();
                let high: i64 = ids.clone().max().into_scalar().elem::<i64>();
                for id in [low, high] {
                    if id < 0 || id as usize >= input_size {
                        return Err(Error::TokenOutOfRange {
                            arg,
                            id,
                            vocab_size: input_size,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// One step of a recurrence, `h(t) = f(h(t-1), x(t); θ)`, with the same `θ` at every step.
///
/// Implement [`step`](Recurrence::step) and the two sizes; the rest has defaults. The state is
/// one `[batch, state_size]` tensor (a cell with several state parts concatenates them).
pub trait Recurrence<B: Backend> {
    /// Width of `x(t)`: feature count for dense inputs, vocabulary size for token ids.
    fn input_size(&self) -> usize;

    /// Width of `h(t)`.
    fn state_size(&self) -> usize;

    /// The part of every step that depends on `x(t)` alone, computed for all steps at once
    /// (one large product instead of τ small ones): `[batch, time] → [batch, time, D]`.
    /// Row `t` is what [`step`](Recurrence::step) receives as `drive`.
    ///
    /// The default hands over the dense features (token ids as one-hot vectors).
    fn drive(&self, input: SequenceInput<B>) -> Tensor<B, 3> {
        input.into_dense(self.input_size())
    }

    /// `h(t) = f(h(t-1), x(t))`, given `h(t-1)` `[batch, state_size]` and row `t` of
    /// [`drive`](Recurrence::drive).
    fn step(&self, h: Tensor<B, 2>, drive: Tensor<B, 2>) -> Tensor<B, 2>;

    /// All steps of the sequence: returns every state `[batch, time, state_size]` (index `t`
    /// holds `h(t)`) and the last one. The default loops [`step`](Recurrence::step) through
    /// [`scan`]; a cell with a fused kernel overrides this, and nothing else changes.
    ///
    /// Cost of the default: each step reads its row of `drive` with a slice, and Burn 0.21's
    /// autodiff gives every slice of a tracked tensor a full-size `[batch, time, ·]` gradient
    /// in the backward pass, so when `drive` carries gradients (a learned `U`) the backward
    /// pass does `time²` work. Fine for the lengths of ordinary training; for thousands of
    /// steps, override `scan` with one fused operation as [`ElmanCell`](crate::ElmanCell)
    /// does, or compute the input projection inside `step` from an untracked `drive`.
    fn scan(&self, drive: Tensor<B, 3>, h0: Tensor<B, 2>, plan: &StepPlan<B>) -> Unrolled<B> {
        scan(h0, plan, |t, h| self.step(h, drive_at(&drive, t)))
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
    /// Every state, `[batch, time, state_size]`; index `t` holds `h(t)`. Past a sequence's
    /// end its state is held unchanged (so a reversed read holds the initial state there).
    pub states: Tensor<B, 3>,
    /// The final state of each sequence, `[batch, state_size]`: `h` at its own last valid step
    /// (at its first step when read in reverse).
    pub last: Tensor<B, 2>,
}

/// How to unroll: initial state, per-sequence lengths, direction. The default is a zero
/// initial state, every sequence full length, read forward.
#[derive(Debug, Clone)]
pub struct UnrollOptions<B: Backend> {
    /// `h(0)`, `[batch, state_size]`; zeros when `None`.
    pub initial_state: Option<Tensor<B, 2>>,
    /// Valid length of each sequence, `1..=time`; all full length when `None`.
    pub lengths: Option<Vec<usize>>,
    /// Read each sequence from its own last valid step back to its first.
    pub reverse: bool,
}

impl<B: Backend> Default for UnrollOptions<B> {
    fn default() -> Self {
        Self {
            initial_state: None,
            lengths: None,
            reverse: false,
        }
    }
}

impl<B: Backend> UnrollOptions<B> {
    /// Zero initial state, full lengths, forward.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from `h0` `[batch, state_size]` instead of zeros.
    pub fn with_initial_state(mut self, h0: Tensor<B, 2>) -> Self {
        self.initial_state = Some(h0);
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

    /// Validated initial state: the given one, or zeros.
    fn initial_state_for(
        &self,
        batch: usize,
        state_size: usize,
        device: &B::Device,
    ) -> Result<Tensor<B, 2>> {
        match &self.initial_state {
            None => Ok(Tensor::zeros([batch, state_size], device)),
            Some(h0) => {
                if h0.dims() != [batch, state_size] {
                    return Err(Error::shape(
                        "initial_state",
                        format!("[{batch}, {state_size}]"),
                        &h0.dims(),
                    ));
                }
                // A NaN state would poison every later step as surely as a NaN input.
                if !h0.clone().is_finite().all().into_scalar().elem::<bool>() {
                    return Err(Error::NonFinite {
                        arg: "initial_state",
                    });
                }
                Ok(h0.clone())
            }
        }
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
    pub fn from_steps(steps: Steps, device: &B::Device) -> Self {
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
    pub fn steps(&self) -> &Steps {
        &self.steps
    }

    /// Number of time steps.
    pub fn time(&self) -> usize {
        self.steps.time
    }

    /// Time indices in the order they are visited.
    pub fn order(&self) -> Vec<usize> {
        self.steps.order()
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
/// Visits the steps in `plan` order, computing `h ← step(t, h)`; a row past its sequence's
/// end keeps its state (`h(t) = h(t-1)`), so it gets neither a new state nor a gradient.
pub fn scan<B: Backend>(
    h0: Tensor<B, 2>,
    plan: &StepPlan<B>,
    mut step: impl FnMut(usize, Tensor<B, 2>) -> Tensor<B, 2>,
) -> Unrolled<B> {
    let mut h = h0;
    let mut states: Vec<Option<Tensor<B, 2>>> = vec![None; plan.time()];
    for t in plan.order() {
        let next = step(t, h.clone());
        h = match plan.finished_at(t) {
            Some(finished) => next.mask_where(finished.expand(h.dims()), h),
            None => next,
        };
        states[t] = Some(h.clone());
    }
    let states = states
        .into_iter()
        .map(|s| s.expect("every step visited"))
        .collect();
    Unrolled {
        states: Tensor::stack(states, 1),
        last: h,
    }
}

/// Unrolls `cell` over `input`: `h(t) = f(h(t-1), x(t))` for every step, same parameters.
///
/// Checks the input (non-empty, right width, ids in range, finite), the lengths and the
/// initial state first, and returns an [`Error`] naming the problem.
pub fn unroll<B: Backend, C: Recurrence<B> + ?Sized>(
    cell: &C,
    input: impl Into<SequenceInput<B>>,
    options: &UnrollOptions<B>,
) -> Result<Unrolled<B>> {
    let input = input.into();
    input.validate("input", cell.input_size())?;
    let [batch, time] = input.batch_and_time();
    let device = input.device();
    let plan = StepPlan::new(
        batch,
        time,
        options.lengths.as_deref(),
        options.reverse,
        &device,
    )?;
    let h0 = options.initial_state_for(batch, cell.state_size(), &device)?;
    Ok(cell.scan(cell.drive(input), h0, &plan))
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
    let plan = StepPlan::new(
        batch,
        steps,
        options.lengths.as_deref(),
        options.reverse,
        &h0.device(),
    )?;
    Ok(scan(h0, &plan, |_, h| system.step(h)))
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
