//! The recurrence kernel: the one function that runs the serial part of the Elman RNN, and the
//! input drive `b + U x(t)` that feeds it.
//!
//! Everything that can be done for all steps at once (the input drive, the readout, the loss)
//! happens outside the loop; what is left is the chain `h(t) = tanh(drive(t) + W h(t-1))`, which cannot
//! be batched over time. It runs as one fused operation with a hand-written BPTT backward
//! ([`crate::fused`]) on the backends that have one, and as a loop recorded step by step by
//! Burn's autodiff on the others; both give the same values and gradients.

use burn::tensor::{backend::Backend, Tensor};

use crate::fused;
use crate::recurrence::{drive_at, scan, SequenceInput, StepPlan, Unrolled};

/// `b + U x(t)` for every step at once, `[batch, time, hidden]`, from `u` `[input, hidden]` and
/// the bias `b` `[hidden]` if any. For token ids `U x(t)` is row `x(t)` of `U` (the one-hot
/// product without multiplying by zeros), and with a bias the lookup and the add are one fused
/// pass ([`fused::embedding`]). Shared by every cell with an input-to-hidden layer.
pub fn input_drive<B: Backend>(
    u: Tensor<B, 2>,
    b: Option<Tensor<B, 1>>,
    input: SequenceInput<B>,
) -> Tensor<B, 3> {
    let ux = match (input, &b) {
        (SequenceInput::Tokens(ids), Some(b)) => {
            return fused::embedding::embedding_with_bias(u, b.clone(), ids);
        }
        (SequenceInput::Tokens(ids), None) => burn::tensor::module::embedding(u, ids),
        (SequenceInput::Dense(x), _) => x.matmul(u.unsqueeze()),
    };
    match b {
        Some(b) => ux + b.unsqueeze(),
        None => ux,
    }
}

/// `h(t) = tanh(drive(t) + W h(t-1))` for every step of `plan`, starting from `h0`.
///
/// - `drive`: `[batch, time, hidden]`, the hoisted `b + U x(t)`.
/// - `w`: `[hidden, hidden]`, stored `[from, to]` (`h W`).
/// - `h0`: `[batch, hidden]`.
pub fn tanh_recurrence<B: Backend>(
    drive: Tensor<B, 3>,
    w: Tensor<B, 2>,
    h0: Tensor<B, 2>,
    plan: &StepPlan<B>,
) -> Unrolled<B> {
    match fused::runner::<B>() {
        Some(run) => {
            let states = run(drive, w, h0, plan.steps());
            // Held rows keep their last state, so the final visited step holds every "last".
            let last_step = *plan.order().last().expect("at least one step");
            Unrolled {
                last: drive_at(&states, last_step),
                states,
            }
        }
        None => tanh_recurrence_unfused(drive, w, h0, plan),
    }
}

/// [`tanh_recurrence`] as a loop of Burn operations, recorded step by step by autodiff: the
/// reference the fused operation is tested against, and the path for other backends.
pub fn tanh_recurrence_unfused<B: Backend>(
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
