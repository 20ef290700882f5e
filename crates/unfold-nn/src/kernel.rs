//! The recurrence kernel: the one function that runs the serial part of the Elman RNN.
//!
//! Everything that can be done for all steps at once (`b + U x(t)`, the readout, the loss)
//! happens outside; what is left is the chain `h(t) = tanh(drive(t) + W h(t-1))`, which cannot
//! be batched over time. Keeping it behind this one function lets a fused implementation (one
//! autodiff node for the whole sequence, a hand-written BPTT backward) replace the body without
//! changing any public API.

use burn::tensor::{backend::Backend, Tensor};

use crate::recurrence::{drive_at, scan, StepPlan, Unrolled};

/// `h(t) = tanh(drive(t) + W h(t-1))` for every step of `plan`, starting from `h0`.
///
/// - `drive`: `[batch, time, hidden]`, the hoisted `b + U x(t)`.
/// - `w`: `[hidden, hidden]`, stored `[from, to]` (`h W`).
/// - `h0`: `[batch, hidden]`.
///
/// This version lets Burn's autodiff record every step (BPTT through the unrolled graph).
pub fn tanh_recurrence<B: Backend>(
    drive: Tensor<B, 3>,
    w: Tensor<B, 2>,
    h0: Tensor<B, 2>,
    plan: &StepPlan<B>,
) -> Unrolled<B> {
    scan(h0, plan, |t, h| tanh_step(h, drive_at(&drive, t), &w))
}

/// One step, `h(t) = tanh(drive(t) + W h(t-1))`, `[batch, hidden]`.
pub fn tanh_step<B: Backend>(
    h: Tensor<B, 2>,
    drive: Tensor<B, 2>,
    w: &Tensor<B, 2>,
) -> Tensor<B, 2> {
    (drive + h.matmul(w.clone())).tanh()
}
