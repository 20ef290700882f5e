//! A nonlinearity as one elementwise operation: `y = act(x)`, backward `∂x = act'(y) ⊙ ∂y`.
//!
//! For the states that are a nonlinearity of a hoisted drive with no recurrence (the
//! teacher-forced output-to-hidden RNN). Burn's ndarray backend computes `tanh` with one libm
//! call per element, which measured more than half of that model's training step; the ndarray
//! kernel is the vectorised one of the recurrence, split across cores, and the backward pass
//! reads the saved output instead of recomputing anything.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorMetadata};

use super::{dispatch, primitive, record_node, register_grads, tensor, FusedOp, Kernels, Retype};
use crate::nonlinearity::Nonlinearity;

/// `act(x)`, through the fused operation where backend `B` has one, else Burn's own (same
/// values and gradients either way).
pub fn activation<B: Backend, const D: usize>(x: Tensor<B, D>, act: Nonlinearity) -> Tensor<B, D> {
    struct Op<B: Backend, const D: usize> {
        x: Tensor<B, D>,
        act: Nonlinearity,
    }

    impl<B: Backend, const D: usize> FusedOp<B> for Op<B, D> {
        type Output = Tensor<B, D>;

        // The tensor goes to the kernel as it is: a reshape to one dimension and back would
        // copy it on ndarray (Burn 0.21's reshape copies), twice forward and twice backward.
        fn fused<K: Kernels>(self, to: Retype<B, K>) -> Tensor<B, D> {
            to.tensor(K::fused_activation(to.float(self.x), self.act))
        }

        fn unfused(self) -> Tensor<B, D> {
            self.act.apply(self.x)
        }
    }

    dispatch(Op { x, act })
}

/// The default kernel: Burn's own nonlinearity, on the elements of a tensor of any rank.
pub(super) fn default_forward<B: Backend>(x: FloatTensor<B>, act: Nonlinearity) -> FloatTensor<B> {
    let shape = x.shape();
    let y = act.apply(tensor::<B, 1>(flat::<B>(x)));
    B::float_reshape(primitive(y), shape)
}

/// The default backward, `act'(y) ⊙ grad`, in tensor operations.
pub(super) fn default_backward<B: Backend>(
    y: FloatTensor<B>,
    grad: FloatTensor<B>,
    act: Nonlinearity,
) -> FloatTensor<B> {
    let shape = grad.shape();
    let y = tensor::<B, 1>(flat::<B>(y));
    let dx = tensor::<B, 1>(flat::<B>(grad)) * act.derivative_from_output(y);
    B::float_reshape(primitive(dx), shape)
}

/// A tensor's elements as one dimension (the defaults are written for rank 1).
fn flat<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let elements = x.shape().num_elements();
    B::float_reshape(x, [elements].into())
}

/// The backward step of the activation node; its state is the output `y`.
#[derive(Debug)]
struct ActivationBackward;

impl<B: Kernels> Backward<B, 1> for ActivationBackward {
    type State = (FloatTensor<B>, Nonlinearity);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let (y, act) = ops.state;
        let parents = ops.parents.map(|node| node.map(|node| node.id));
        register_grads::<B, 1>(grads, parents, [B::fused_activation_backward(y, grad, act)]);
    }
}

/// The activation on `Autodiff<B, C>`: one node.
pub(super) fn record<B: Kernels, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    act: Nonlinearity,
) -> FloatTensor<Autodiff<B, C>> {
    record_node::<B, C, _, 1>(ActivationBackward, [x], |[x], tracked| {
        let y = B::fused_activation(x, act);
        let state = tracked.then(|| (y.clone(), act));
        (y, state)
    })
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::{Element, TensorData, TensorPrimitive, Tolerance};

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

    /// Values and the gradient of `Σ g ⊙ act(x)` against Burn's own `tanh` and `relu`.
    fn check<B: burn::tensor::backend::AutodiffBackend>(
        act: Nonlinearity,
        tolerance: Tolerance<f64>,
    ) {
        let (x, g) = (values::<B, 3>([3, 5, 7], 1), values::<B, 3>([3, 5, 7], 2));
        let run = |fused: bool| {
            let x = x.clone().require_grad();
            let y = match (fused, act) {
                (true, _) => activation(x.clone(), act),
                (false, Nonlinearity::Tanh) => x.clone().tanh(),
                (false, Nonlinearity::Relu) => burn::tensor::activation::relu(x.clone()),
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
    fn fused_activation_equals_burn_tanh_and_relu_in_values_and_gradients() {
        for act in [Nonlinearity::Tanh, Nonlinearity::Relu] {
            // f32: 1 − y² near |y| = 1 turns an ulp of y into ~1e-5 relative.
            check::<Autodiff<NdArray<f32>>>(act, Tolerance::rel_abs(1e-4, 1e-6));
            check::<Autodiff<NdArray<f64>>>(act, Tolerance::absolute(1e-12));
        }
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
        for act in [Nonlinearity::Tanh, Nonlinearity::Relu] {
            let (host_y, y) = (
                B::fused_activation(p(&x), act),
                default_forward::<B>(p(&x), act),
            );
            let host_dx = B::fused_activation_backward(host_y.clone(), p(&g), act);
            let dx = default_backward::<B>(y.clone(), p(&g), act);
            data(host_y).assert_approx_eq::<f64>(&data(y), Tolerance::absolute(1e-12));
            data(host_dx).assert_approx_eq::<f64>(&data(dx), Tolerance::absolute(1e-12));
        }
    }
}
