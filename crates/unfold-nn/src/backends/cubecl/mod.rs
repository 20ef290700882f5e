//! CubeCL kernels for Burn's `CubeBackend<R, F, I, BT>`: wgpu (Vulkan, Metal, DX12, WebGPU) and
//! CUDA from one source.
//!
//! The recurrence `h(t) = act(drive(t) + h(t-1) W)` runs as ONE kernel launch per pass
//! (forward, and BPTT backward), instead of about ten small launches per time step for the
//! per-step Burn operations: see [`recurrence`] for the kernel design. `∂W = Σ_t h(t-1)ᵀ δa(t)`
//! is one large product over all steps, left to the backend's own tuned matmul
//! ([`weight_gradient`]). The other fused operations (embedding, activation, readout + loss)
//! are already a handful of large Burn operations per pass, so the defaults serve.
//!
//! Burn's `fusion` feature wraps the backend in `Fusion<CubeBackend<…>>`, whose tensors are
//! not `CubeTensor`s: [`crate::ops::dispatch`] then finds no kernels and the models take the
//! per-step path (correct, slower). unfold turns `fusion` off.

pub(crate) mod kernels;
pub mod recurrence;

use burn::tensor::ops::FloatTensor;
use burn_cubecl::element::{BoolElement, FloatElement, IntElement};
use burn_cubecl::{CubeBackend, CubeRuntime};

use crate::nonlinearity::Nonlinearity;
use crate::ops::recurrence::weight_gradient;
use crate::ops::{primitive, tensor, Kernels, RecurrenceGrads};
use crate::recurrence::Steps;

impl<R, F, I, BT> Kernels for CubeBackend<R, F, I, BT>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    fn fused_recurrence(
        drive: FloatTensor<Self>,
        w: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        steps: &Steps,
        act: Nonlinearity,
    ) -> FloatTensor<Self> {
        recurrence::recurrence_forward(
            drive,
            w,
            h0,
            steps.time,
            steps.reverse,
            steps.lengths.as_deref(),
            act == Nonlinearity::Relu,
        )
    }

    fn fused_recurrence_backward(
        grad: FloatTensor<Self>,
        states: FloatTensor<Self>,
        w: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        steps: &Steps,
        act: Nonlinearity,
    ) -> RecurrenceGrads<Self> {
        let (d_drive, d_h0) = recurrence::recurrence_backward(
            grad,
            states.clone(),
            w,
            h0.clone(),
            steps.time,
            steps.reverse,
            steps.lengths.as_deref(),
            act == Nonlinearity::Relu,
        );
        let d_w = weight_gradient::<Self>(
            tensor(states),
            tensor(h0),
            tensor(d_drive.clone()),
            steps.reverse,
        );
        RecurrenceGrads {
            drive: d_drive,
            w: primitive(d_w),
            h0: d_h0,
        }
    }
}
