//! The tanh recurrence as one fused operation, with back-propagation through time by hand.
//!
//! Recording `h(t) = tanh(drive(t) + W h(t-1))` step by step costs Burn's autodiff about ten
//! graph nodes per step (and, for the slices of the hoisted drive, a full-size zero tensor per
//! step in the backward pass). Here the whole sequence is one node: the forward loop runs on the
//! inner backend, and the backward pass is the textbook BPTT:
//!
//! ```text
//! δh(t)  = ∂L/∂h(t) + Wᵀ δa(t+1)              (the carry through the recurrence)
//! δa(t)  = (1 - h(t)²) ⊙ δh(t)                 (tanh')
//! ∂drive(t) = δa(t)
//! ∂W     = Σ_t h(t-1)ᵀ δa(t)                   (one product over all steps)
//! ∂h(0)  = Wᵀ δa(1)
//! ```
//!
//! Past a sequence's end the state is held (`h(t) = h(t-1)`): there `δa(t) = 0` and the carry
//! passes through unchanged.
//!
//! This follows Burn's pattern for custom backward operations: a backend extension trait,
//! [`RecurrentBackend`], whose implementation for `Autodiff<B>` registers the node. The
//! library's models stay generic over any `Backend`: [`tanh_recurrence`](crate::kernel::tanh_recurrence) looks the backend up by
//! type and uses the fused operation where an implementation exists (ndarray, wgpu, and
//! autodiff over either), falling back to the recorded per-step loop elsewhere.

/// `return Some($run_as::<B, X>)` if `B` is one of the listed backends `X`.
#[allow(unused_macros)] // with no backend feature on, nothing has a fused implementation
macro_rules! return_if_backend_is {
    ($b:ident, $run_as:ident, $($backend:ty),+ $(,)?) => {$(
        if std::any::TypeId::of::<$b>() == std::any::TypeId::of::<$backend>() {
            return Some($run_as::<$b, $backend>);
        }
    )+};
}

/// The one list of backends with fused kernels (each enabled by its cargo feature), for every
/// fused operation's `runner`: returns `Some($run_as::<B, X>)` when `B` is one of them.
macro_rules! return_fused_runner {
    ($b:ident, $run_as:ident) => {
        #[cfg(feature = "ndarray")]
        return_if_backend_is!(
            $b,
            $run_as,
            burn::backend::NdArray<f32>,
            burn::backend::NdArray<f64>,
            burn::backend::Autodiff<burn::backend::NdArray<f32>>,
            burn::backend::Autodiff<burn::backend::NdArray<f64>>,
        );
        #[cfg(feature = "wgpu")]
        return_if_backend_is!(
            $b,
            $run_as,
            burn::backend::Wgpu,
            burn::backend::Autodiff<burn::backend::Wgpu>,
        );
    };
}

pub mod embedding;
mod generic;
pub mod head;
#[cfg(feature = "ndarray")]
mod host;
#[cfg(feature = "ndarray")]
mod host_head;
#[cfg(feature = "ndarray")]
mod parallel;
pub mod sgemm;
pub mod tanh;

pub use head::{NllRows, ReadoutLossBackend, ReadoutNllGrads};

use std::any::Any;

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

use crate::recurrence::Steps;

/// Gradients of the tanh recurrence with respect to its three inputs.
#[derive(Debug)]
pub struct RecurrenceGrads<B: Backend> {
    /// `∂L/∂drive`, `[batch, time, hidden]`.
    pub drive: FloatTensor<B>,
    /// `∂L/∂W`, `[hidden, hidden]`.
    pub w: FloatTensor<B>,
    /// `∂L/∂h(0)`, `[batch, hidden]`.
    pub h0: FloatTensor<B>,
}

/// A backend that runs the whole tanh recurrence as one operation.
///
/// The defaults are written in Burn tensor operations, so any backend can implement the trait
/// with an empty `impl`; a backend with direct access to its buffers overrides them (ndarray
/// does, with GEMM calls on contiguous memory).
pub trait RecurrentBackend: Backend {
    /// Every state `[batch, time, hidden]` of `h(t) = tanh(drive(t) + W h(t-1))`, visiting the
    /// steps as `steps` says. `drive` is `[batch, time, hidden]`, `w` `[hidden, hidden]`
    /// (stored `[from, to]`), `h0` `[batch, hidden]`.
    fn tanh_recurrence(
        drive: FloatTensor<Self>,
        w: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        steps: &Steps,
    ) -> FloatTensor<Self> {
        generic::forward::<Self>(drive, w, h0, steps)
    }

    /// BPTT: the gradients of the inputs from `grad` `= ∂L/∂states` and the forward's `states`.
    fn tanh_recurrence_backward(
        grad: FloatTensor<Self>,
        states: FloatTensor<Self>,
        w: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        steps: &Steps,
    ) -> RecurrenceGrads<Self> {
        generic::backward::<Self>(grad, states, w, h0, steps)
    }
}

/// The backward step of the fused recurrence node.
#[derive(Debug)]
struct TanhRecurrenceBackward;

impl<B: RecurrentBackend> Backward<B, 3> for TanhRecurrenceBackward {
    /// What BPTT needs from the forward pass: the states, `W`, `h(0)` and the step layout.
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, Steps);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [drive_node, w_node, h0_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (states, w, h0, steps) = ops.state;
        let g = B::tanh_recurrence_backward(grad, states, w, h0, &steps);
        for (node, grad) in [(drive_node, g.drive), (w_node, g.w), (h0_node, g.h0)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: RecurrentBackend, C: CheckpointStrategy> RecurrentBackend for Autodiff<B, C> {
    fn tanh_recurrence(
        drive: FloatTensor<Self>,
        w: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        steps: &Steps,
    ) -> FloatTensor<Self> {
        let parents = [drive.node.clone(), w.node.clone(), h0.node.clone()];
        match TanhRecurrenceBackward
            .prepare::<C>(parents)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let states = B::tanh_recurrence(
                    drive.primitive,
                    w.primitive.clone(),
                    h0.primitive.clone(),
                    steps,
                );
                prep.finish(
                    (states.clone(), w.primitive, h0.primitive, steps.clone()),
                    states,
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::tanh_recurrence(
                drive.primitive,
                w.primitive,
                h0.primitive,
                steps,
            )),
        }
    }
}

/// ndarray: the host kernel, in the tensors' own float type (the backend's element type is only
/// the default for new tensors; ndarray tensors carry their dtype at run time).
#[cfg(feature = "ndarray")]
impl<
        E: burn::backend::ndarray::FloatNdArrayElement,
        I: burn::backend::ndarray::IntNdArrayElement,
        Q: burn::backend::ndarray::QuantElement,
    > RecurrentBackend for burn::backend::NdArray<E, I, Q>
where
    burn::backend::ndarray::NdArrayTensor:
        From<burn::backend::ndarray::SharedArray<E>> + From<burn::backend::ndarray::SharedArray<I>>,
{
    fn tanh_recurrence(
        drive: FloatTensor<Self>,
        w: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        steps: &Steps,
    ) -> FloatTensor<Self> {
        host::forward::<Self>(drive, w, h0, steps)
    }

    fn tanh_recurrence_backward(
        grad: FloatTensor<Self>,
        states: FloatTensor<Self>,
        w: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        steps: &Steps,
    ) -> RecurrenceGrads<Self> {
        host::backward::<Self>(grad, states, w, h0, steps)
    }
}

#[cfg(feature = "wgpu")]
impl RecurrentBackend for burn::backend::Wgpu {}

/// A fused implementation for backend `B`: `(drive, w, h0, steps) → states`.
type Runner<B> = fn(Tensor<B, 3>, Tensor<B, 2>, Tensor<B, 2>, &Steps) -> Tensor<B, 3>;

/// The fused recurrence for backend `B`, if one is implemented; `None` means "record the
/// per-step loop instead".
///
/// Rust has no specialisation, so the models (generic over any `Backend`) find the
/// implementation by type: `B` is compared with each backend that implements
/// [`RecurrentBackend`], and the tensors are moved across with `Any` downcasts (no unsafe code).
pub fn runner<B: Backend>() -> Option<Runner<B>> {
    return_fused_runner!(B, run_as);
    None
}

/// Runs the fused recurrence of `R`, which is the same type as `B` (checked by [`runner`]).
#[cfg_attr(not(any(feature = "ndarray", feature = "wgpu")), allow(dead_code))]
fn run_as<B: Backend, R: RecurrentBackend>(
    drive: Tensor<B, 3>,
    w: Tensor<B, 2>,
    h0: Tensor<B, 2>,
    steps: &Steps,
) -> Tensor<B, 3> {
    let primitive = |x: Tensor<R, 3>| x.into_primitive().tensor();
    let drive = primitive(same_type::<_, Tensor<R, 3>>(drive));
    let w = same_type::<_, Tensor<R, 2>>(w).into_primitive().tensor();
    let h0 = same_type::<_, Tensor<R, 2>>(h0).into_primitive().tensor();
    let states = Tensor::<R, 3>::from_primitive(TensorPrimitive::Float(R::tanh_recurrence(
        drive, w, h0, steps,
    )));
    same_type(states)
}

/// Moves a value to the type it is known to have.
#[cfg_attr(not(any(feature = "ndarray", feature = "wgpu")), allow(dead_code))]
pub(crate) fn same_type<From: 'static, To: 'static>(value: From) -> To {
    *(Box::new(value) as Box<dyn Any>)
        .downcast::<To>()
        .expect("runner() matched the backend type")
}
