//! The fused recurrence in Burn tensor operations: the default for any backend.
//!
//! Runs on the inner backend (no autodiff), so each step costs a few kernel calls and no graph
//! nodes; the forward pass is the library's one loop, [`scan`].

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

use super::RecurrenceGrads;
use crate::kernel::tanh_step;
use crate::recurrence::{drive_at, scan, StepPlan, Steps};

fn tensor<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}

/// `h(t) = tanh(drive(t) + W h(t-1))` for every step.
pub fn forward<B: Backend>(
    drive: FloatTensor<B>,
    w: FloatTensor<B>,
    h0: FloatTensor<B>,
    steps: &Steps,
) -> FloatTensor<B> {
    let (drive, w, h0) = (tensor::<B, 3>(drive), tensor::<B, 2>(w), tensor::<B, 2>(h0));
    let plan = StepPlan::from_steps(steps.clone(), &drive.device());
    primitive(scan(h0, &plan, |t, h| tanh_step(h, drive_at(&drive, t), &w)).states)
}

/// BPTT through the states of [`forward`].
pub fn backward<B: Backend>(
    grad: FloatTensor<B>,
    states: FloatTensor<B>,
    w: FloatTensor<B>,
    h0: FloatTensor<B>,
    steps: &Steps,
) -> RecurrenceGrads<B> {
    let (grad, states) = (tensor::<B, 3>(grad), tensor::<B, 3>(states));
    let (w, h0) = (tensor::<B, 2>(w), tensor::<B, 2>(h0));
    let [batch, time, hidden] = states.dims();
    let plan = StepPlan::from_steps(steps.clone(), &states.device());
    let w_t = w.transpose();

    let mut carry = h0.zeros_like(); // δh flowing back from later steps
    let mut deltas = vec![None; time];
    for t in plan.order().into_iter().rev() {
        let dh = drive_at(&grad, t) + carry; // δh(t) = ∂L/∂h(t) + Wᵀ δa(t+1)
        let h = drive_at(&states, t);
        let mut da = dh.clone() - dh.clone() * h.clone() * h; // δa(t) = (1 - h(t)²) ⊙ δh(t)
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

    // ∂W = Σ_t h(t-1)ᵀ δa(t): one product over all batch·time rows.
    let h_prev = previous_states(states, h0, steps.reverse);
    let d_w = h_prev
        .reshape([batch * time, hidden])
        .transpose()
        .matmul(d_drive.clone().reshape([batch * time, hidden]));
    RecurrenceGrads {
        drive: primitive(d_drive),
        w: primitive(d_w),
        h0: primitive(carry),
    }
}

/// `h(t-1)` for every `t`, in visiting order: the states shifted by one step, `h(0)` first.
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
