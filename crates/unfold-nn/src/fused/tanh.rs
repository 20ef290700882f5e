//! `tanh` as one fused elementwise operation: `y = tanh(x)`, backward `∂x = (1 − y²) ⊙ ∂y`.
//!
//! For the layers whose states are a `tanh` of a hoisted drive with no recurrence (the
//! teacher-forced output-to-hidden RNN). Burn's ndarray backend computes `tanh` with one libm
//! call per element, which measured more than half of that model's training step; here the
//! ndarray kernel is the vectorised rational `tanh` of the recurrence, split across cores, and
//! the backward pass reads the saved output instead of recomputing anything.
//!
//! Same pattern as the other fused operations: a backend extension trait with defaults in Burn
//! tensor operations (any backend, wgpu included), an `Autodiff` node, a host kernel for ndarray,
//! and [`tanh`] to find the implementation by backend type.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

#[allow(unused_imports)] // used by `return_fused_runner!` when a backend feature is on
use super::same_type;

/// A backend with a fused `tanh` (defaults: Burn's `tanh`, and `(1 − y²) ⊙ ∂y` in tensor ops).
pub trait TanhBackend: Backend {
    /// `tanh(x)` for every element of a rank-1 tensor.
    fn fused_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        generic::forward::<Self>(x)
    }

    /// `∂x = (1 − y²) ⊙ grad` from the forward's output `y`.
    fn fused_tanh_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        generic::backward::<Self>(y, grad)
    }
}

#[cfg(feature = "ndarray")]
pub(super) use generic::backward as generic_backward;

/// The defaults in Burn tensor operations.
mod generic {
    use super::*;

    pub fn forward<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
        B::float_tanh(x)
    }

    pub fn backward<B: Backend>(y: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
        let y = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(y));
        let grad = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(grad));
        (grad * (y.clone() * y).neg().add_scalar(1.0))
            .into_primitive()
            .tensor()
    }
}

/// The backward step of the fused `tanh` node; its state is the output `y`.
#[derive(Debug)]
struct TanhBackward;

impl<B: TanhBackend> Backward<B, 1> for TanhBackward {
    type State = FloatTensor<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [x_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = x_node {
            grads.register::<B>(node.id, B::fused_tanh_backward(ops.state, grad));
        }
    }
}

impl<B: TanhBackend, C: CheckpointStrategy> TanhBackend for Autodiff<B, C> {
    fn fused_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match TanhBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::fused_tanh(x.primitive);
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_tanh(x.primitive)),
        }
    }
}

/// ndarray: the host kernel (f32 and f64; other float types take the default).
#[cfg(feature = "ndarray")]
impl<
        E: burn::backend::ndarray::FloatNdArrayElement,
        I: burn::backend::ndarray::IntNdArrayElement,
        Q: burn::backend::ndarray::QuantElement,
    > TanhBackend for burn::backend::NdArray<E, I, Q>
where
    burn::backend::ndarray::NdArrayTensor:
        From<burn::backend::ndarray::SharedArray<E>> + From<burn::backend::ndarray::SharedArray<I>>,
{
    fn fused_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        super::host::tanh_forward::<Self>(x)
    }

    fn fused_tanh_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        super::host::tanh_backward::<Self>(y, grad)
    }
}

#[cfg(feature = "wgpu")]
impl TanhBackend for burn::backend::Wgpu {}

/// `tanh(x)`, through the fused operation where backend `B` has one (found by type, as
/// [`super::runner`] is), else Burn's own `tanh`. Same values and gradients either way.
pub fn tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    match runner::<B>() {
        Some(run) => {
            let shape = x.shape();
            run(x.reshape([shape.num_elements()])).reshape(shape)
        }
        None => x.tanh(),
    }
}

type Runner<B> = fn(Tensor<B, 1>) -> Tensor<B, 1>;

fn runner<B: Backend>() -> Option<Runner<B>> {
    return_fused_runner!(B, run_as);
    None
}

/// Runs the fused `tanh` of `R`, which is the same type as `B` (checked by [`runner`]).
#[cfg_attr(not(any(feature = "ndarray", feature = "wgpu")), allow(dead_code))]
fn run_as<B: Backend, R: TanhBackend>(x: Tensor<B, 1>) -> Tensor<B, 1> {
    let x = same_type::<_, Tensor<R, 1>>(x).into_primitive().tensor();
    let y = Tensor::<R, 1>::from_primitive(TensorPrimitive::Float(R::fused_tanh(x)));
    same_type(y)
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::{Element, TensorData, Tolerance};

    /// Values spread over tanh's range, made on the host in `B`'s float type: Burn's creation
    /// ops use the CPU device's default dtype, which whichever test runs first sets.
    fn values<B: Backend, const D: usize>(shape: [usize; D], seed: usize) -> Tensor<B, D> {
        let n = shape.iter().product();
        let data: Vec<f64> = (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 1009) as f64 / 1009.0 * 8.0 - 4.0)
            .collect();
        let data = TensorData::new(data, shape).convert::<B::FloatElem>();
        Tensor::from_data(data, (&Default::default(), B::FloatElem::dtype()))
    }

    /// Values and the gradient of `Σ g ⊙ tanh(x)` against Burn's own `tanh`.
    fn check<B: burn::tensor::backend::AutodiffBackend>(tolerance: Tolerance<f64>) {
        let (x, g) = (values::<B, 3>([3, 5, 7], 1), values::<B, 3>([3, 5, 7], 2));
        let run = |fused: bool| {
            let x = x.clone().require_grad();
            let y = if fused {
                tanh(x.clone())
            } else {
                x.clone().tanh()
            };
            let grads = (y.clone() * g.clone()).sum().backward();
            (
                y.into_data(),
                x.grad(&grads).expect("a gradient").into_data(),
            )
        };
        let ((y, dx), (y_ref, dx_ref)) = (run(true), run(false));
        y.assert_approx_eq::<f64>(&y_ref, tolerance);
        dx.assert_approx_eq::<f64>(&dx_ref, tolerance);
    }

    #[test]
    fn fused_tanh_equals_burn_tanh_in_values_and_gradients() {
        // f32: 1 − y² near |y| = 1 turns an ulp of y into ~1e-5 relative.
        check::<Autodiff<NdArray<f32>>>(Tolerance::rel_abs(1e-4, 1e-6));
        check::<Autodiff<NdArray<f64>>>(Tolerance::absolute(1e-12));
    }

    /// The generic defaults (what wgpu runs) agree with the host kernel.
    #[test]
    fn generic_default_equals_host_kernel() {
        type B = NdArray<f64>;
        let (x, g) = (values::<B, 1>([40], 3), values::<B, 1>([40], 4));
        let p = |t: &Tensor<B, 1>| t.clone().into_primitive().tensor();
        let data = |t: FloatTensor<B>| {
            Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(t)).into_data()
        };
        let (host_y, y) = (B::fused_tanh(p(&x)), generic::forward::<B>(p(&x)));
        let host_dx = B::fused_tanh_backward(host_y.clone(), p(&g));
        let dx = generic::backward::<B>(y.clone(), p(&g));
        data(host_y).assert_approx_eq::<f64>(&data(y), Tolerance::absolute(1e-12));
        data(host_dx).assert_approx_eq::<f64>(&data(dx), Tolerance::absolute(1e-12));
    }
}
