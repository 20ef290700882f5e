//! The recurrence `h(t) = act(drive(t) + h(t-1) W)` over every step as one operation, with
//! back-propagation through time by hand.
//!
//! Everything that can be computed for all steps at once (the input drive `b + x U`, the
//! readout, the loss) happens outside; what is left is this chain, which cannot be batched
//! over time. Its backward pass is the textbook BPTT:
//!
//! ```text
//! δh(t)  = ∂L/∂h(t) + δa(t+1) Wᵀ              (the carry through the recurrence)
//! δa(t)  = act'(h(t)) ⊙ δh(t)                  (tanh' = 1 − h², relu' = [h > 0])
//! ∂drive(t) = δa(t)
//! ∂W     = Σ_t h(t-1)ᵀ δa(t)                   (one product over all steps)
//! ∂h(0)  = δa(1) Wᵀ
//! ```
//!
//! Past a sequence's end the state is held (`h(t) = h(t-1)`): there `δa(t) = 0` and the carry
//! passes through unchanged.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::Tensor;

use super::{dispatch, primitive, record_node, register_grads, tensor, FusedOp, Kernels, Retype};
use crate::nonlinearity::Nonlinearity;
use crate::recurrence::{drive_at, scan, State, StepPlan, Steps, Unrolled};

/// Gradients of the recurrence with respect to its three inputs.
#[derive(Debug)]
pub struct RecurrenceGrads<B: Backend> {
    /// `∂L/∂drive`, `[batch, time, hidden]`.
    pub drive: FloatTensor<B>,
    /// `∂L/∂W`, `[hidden, hidden]`.
    pub w: FloatTensor<B>,
    /// `∂L/∂h(0)`, `[batch, hidden]`.
    pub h0: FloatTensor<B>,
}

/// `h(t) = act(drive(t) + h(t-1) W)` for every step of `plan`, starting from `h0`: one fused
/// operation where the backend has kernels, else the loop of [`recurrence_unfused`].
///
/// - `drive`: `[batch, time, hidden]`, the hoisted `b + x(t) U`.
/// - `w`: `[hidden, hidden]`, stored `[from, to]` (`h W`).
/// - `h0`: `[batch, hidden]`.
pub fn recurrence<B: Backend>(
    drive: Tensor<B, 3>,
    w: Tensor<B, 2>,
    h0: Tensor<B, 2>,
    plan: &StepPlan<B>,
    act: Nonlinearity,
) -> Unrolled<B> {
    struct Op<'a, B: Backend> {
        drive: Tensor<B, 3>,
        w: Tensor<B, 2>,
        h0: Tensor<B, 2>,
        plan: &'a StepPlan<B>,
        act: Nonlinearity,
    }

    impl<B: Backend> FusedOp<B> for Op<'_, B> {
        type Output = Unrolled<B>;

        fn fused<K: Kernels>(self, to: Retype<B, K>) -> Unrolled<B> {
            let states = K::fused_recurrence(
                to.float(self.drive),
                to.float(self.w),
                to.float(self.h0),
                self.plan.steps(),
                self.act,
            );
            let states: Tensor<B, 3> = to.tensor(states);
            // Held rows keep their last state, so the step visited last holds every "last".
            let last = drive_at(&states, self.plan.last_step());
            Unrolled {
                states,
                last: last.clone(),
                final_state: State::new(last),
            }
        }

        fn unfused(self) -> Unrolled<B> {
            recurrence_unfused(self.drive, self.w, self.h0, self.plan, self.act)
        }
    }

    dispatch(Op {
        drive,
        w,
        h0,
        plan,
        act,
    })
}

/// [`recurrence`] as a loop of Burn operations, recorded step by step by autodiff: the
/// reference the fused operation is tested against, and the path for backends without
/// kernels.
pub fn recurrence_unfused<B: Backend>(
    drive: Tensor<B, 3>,
    w: Tensor<B, 2>,
    h0: Tensor<B, 2>,
    plan: &StepPlan<B>,
    act: Nonlinearity,
) -> Unrolled<B> {
    let rows = super::steps::split_steps(drive);
    scan(State::new(h0), plan, |t, h| {
        State::new(step(h.into_output(), rows[t].clone(), &w, act))
    })
}

/// One step, `h(t) = act(drive(t) + h(t-1) W)`, `[batch, hidden]`.
pub fn step<B: Backend>(
    h: Tensor<B, 2>,
    drive: Tensor<B, 2>,
    w: &Tensor<B, 2>,
    act: Nonlinearity,
) -> Tensor<B, 2> {
    act.apply(drive + h.matmul(w.clone()))
}

/// The default kernel, in Burn tensor operations on the inner backend: the loop, with no
/// graph nodes.
pub(super) fn default_forward<B: Backend>(
    drive: FloatTensor<B>,
    w: FloatTensor<B>,
    h0: FloatTensor<B>,
    steps: &Steps,
    act: Nonlinearity,
) -> FloatTensor<B> {
    let (drive, w, h0) = (tensor::<B, 3>(drive), tensor::<B, 2>(w), tensor::<B, 2>(h0));
    let plan = StepPlan::from_steps(steps.clone(), &drive.device());
    primitive(recurrence_unfused(drive, w, h0, &plan, act).states)
}

/// BPTT in Burn tensor operations (see the module docs).
pub(super) fn default_backward<B: Backend>(
    grad: FloatTensor<B>,
    states: FloatTensor<B>,
    w: FloatTensor<B>,
    h0: FloatTensor<B>,
    steps: &Steps,
    act: Nonlinearity,
) -> RecurrenceGrads<B> {
    let (grad, states) = (tensor::<B, 3>(grad), tensor::<B, 3>(states));
    let (w, h0) = (tensor::<B, 2>(w), tensor::<B, 2>(h0));
    let [batch, time, hidden] = states.dims();
    let plan = StepPlan::from_steps(steps.clone(), &states.device());
    let w_t = w.transpose();

    let mut carry = h0.zeros_like(); // δh flowing back from later steps
    let mut deltas = vec![None; time];
    for t in plan.order().into_iter().rev() {
        let dh = drive_at(&grad, t) + carry; // δh(t) = ∂L/∂h(t) + δa(t+1) Wᵀ
        let mut da = act.derivative_from_output(drive_at(&states, t)) * dh.clone(); // δa(t)
        carry = da.clone().matmul(w_t.clone());
        if let Some(finished) = plan.finished_at(t) {
            // Held rows: no new state, so no δa, and the carry passes through unchanged.
            let finished = finished.expand([batch, hidden]);
            da = da.mask_fill(finished.clone(), 0.0);
            carry = carry.mask_where(finished, dh);
        }
        deltas[t] = Some(da);
    }
    let d_drive = Tensor::stack::<3>(
        deltas
            .into_iter()
            .map(|d| d.expect("every step visited"))
            .collect(),
        1,
    );

    let d_w = weight_gradient(states, h0, d_drive.clone(), steps.reverse);
    RecurrenceGrads {
        drive: primitive(d_drive),
        w: primitive(d_w),
        h0: primitive(carry),
    }
}

/// `∂W = Σ_t h(t-1)ᵀ δa(t)` as ONE `[hidden, batch·time] × [batch·time, hidden]` product, from
/// the forward's `states`, `h0` and `d_drive` `= δa` (zero at held steps, which therefore add
/// nothing). Shared by every backend whose kernel computes `δa` but leaves `∂W` to the
/// backend's own tuned matmul.
pub(crate) fn weight_gradient<B: Backend>(
    states: Tensor<B, 3>,
    h0: Tensor<B, 2>,
    d_drive: Tensor<B, 3>,
    reverse: bool,
) -> Tensor<B, 2> {
    let [batch, time, hidden] = states.dims();
    previous_states(states, h0, reverse)
        .reshape([batch * time, hidden])
        .transpose()
        .matmul(d_drive.reshape([batch * time, hidden]))
}

/// `h(t-1)` for every `t`, in visiting order: the states shifted by one step, `h(0)` first.
/// (A reversed padded row's first valid step `lengths[b] - 1` pairs with `states[b,
/// lengths[b]]`, which holds `h(0)` through the padding, so the plain shift is right there too.)
fn previous_states<B: Backend>(
    states: Tensor<B, 3>,
    h0: Tensor<B, 2>,
    reverse: bool,
) -> Tensor<B, 3> {
    let [batch, time, hidden] = states.dims();
    let h0 = h0.unsqueeze_dim(1);
    if time == 1 {
        h0
    } else if reverse {
        Tensor::cat(vec![states.slice([0..batch, 1..time, 0..hidden]), h0], 1)
    } else {
        Tensor::cat(
            vec![h0, states.slice([0..batch, 0..time - 1, 0..hidden])],
            1,
        )
    }
}

/// The backward step of the recurrence node.
#[derive(Debug)]
struct RecurrenceBackward;

impl<B: Kernels> Backward<B, 3> for RecurrenceBackward {
    /// What BPTT needs from the forward pass: the states, `W`, `h(0)`, the step layout and the
    /// nonlinearity.
    type State = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        Steps,
        Nonlinearity,
    );

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let (states, w, h0, steps, act) = ops.state;
        let g = B::fused_recurrence_backward(grad, states, w, h0, &steps, act);
        let parents = ops.parents.map(|node| node.map(|node| node.id));
        register_grads::<B, 3>(grads, parents, [g.drive, g.w, g.h0]);
    }
}

/// The recurrence on `Autodiff<B, C>`: one node, `B`'s kernel forward, BPTT backward.
pub(super) fn record<B: Kernels, C: CheckpointStrategy>(
    drive: FloatTensor<Autodiff<B, C>>,
    w: FloatTensor<Autodiff<B, C>>,
    h0: FloatTensor<Autodiff<B, C>>,
    steps: &Steps,
    act: Nonlinearity,
) -> FloatTensor<Autodiff<B, C>> {
    record_node::<B, C, _, 3>(
        RecurrenceBackward,
        [drive, w, h0],
        |[drive, w, h0], tracked| {
            let saved = tracked.then(|| (w.clone(), h0.clone()));
            let states = B::fused_recurrence(drive, w, h0, steps, act);
            let state = saved.map(|(w, h0)| (states.clone(), w, h0, steps.clone(), act));
            (states, state)
        },
    )
}
