//! The token input `b + U x(t)` as one operation over all `batch·time` tokens.
//!
//! ```text
//! drive(r) = U[id(r)] + b                       (a row lookup: the one-hot product, never formed)
//! ∂U[v]    = Σ_{r : id(r) = v} ∂drive(r)        (a scatter-add)
//! ∂b       = Σ_r ∂drive(r)
//! ```
//!
//! Burn records the same as an `embedding` (a `select`, whose backward allocates a zero
//! `U`-sized gradient and `select_add`s into it) and a broadcast bias add (whose backward sums
//! over two axes): four passes over the `[batch·time, hidden]` rows instead of one.
//!
//! The ids keep their `[batch, time]` shape and the drive is made `[batch, time, hidden]`
//! directly: a reshape on either side would copy the whole tensor on ndarray (Burn 0.21's
//! ndarray reshape copies), once forward and once for the gradient.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorMetadata};

use super::{dispatch, primitive, record_node, register_grads, tensor, FusedOp, Kernels, Retype};

/// `U[ids] + b` for token ids `[batch, time]` → `[batch, time, hidden]`: one fused operation
/// where the backend has kernels, else Burn's `embedding` and a broadcast add (same values and
/// gradients).
pub fn embedding_with_bias<B: Backend>(
    u: Tensor<B, 2>,
    b: Tensor<B, 1>,
    ids: Tensor<B, 2, Int>,
) -> Tensor<B, 3> {
    struct Op<B: Backend> {
        u: Tensor<B, 2>,
        b: Tensor<B, 1>,
        ids: Tensor<B, 2, Int>,
    }

    impl<B: Backend> FusedOp<B> for Op<B> {
        type Output = Tensor<B, 3>;

        fn fused<K: Kernels>(self, to: Retype<B, K>) -> Tensor<B, 3> {
            to.tensor(K::fused_embedding(
                to.float(self.u),
                to.float(self.b),
                to.int(self.ids),
            ))
        }

        fn unfused(self) -> Tensor<B, 3> {
            burn::tensor::module::embedding(self.u, self.ids) + self.b.unsqueeze()
        }
    }

    dispatch(Op { u, b, ids })
}

/// The default kernel: Burn's `embedding` and a broadcast add.
pub(super) fn default_forward<B: Backend>(
    u: FloatTensor<B>,
    b: FloatTensor<B>,
    ids: IntTensor<B>,
) -> FloatTensor<B> {
    let ids = Tensor::<B, 2, Int>::from_primitive(ids);
    let drive = burn::tensor::module::embedding(tensor::<B, 2>(u), ids);
    primitive(drive + tensor::<B, 1>(b).unsqueeze())
}

/// The default backward: a `select_assign` (add) into zeros, and the column sums.
pub(super) fn default_backward<B: Backend>(
    grad: FloatTensor<B>,
    ids: IntTensor<B>,
    vocab: usize,
) -> [FloatTensor<B>; 2] {
    let grad = tensor::<B, 3>(grad);
    let [batch, time, hidden] = grad.dims();
    let grad = grad.reshape([batch * time, hidden]);
    let ids = Tensor::<B, 2, Int>::from_primitive(ids).reshape([batch * time]);
    let zeros = Tensor::<B, 2>::zeros([vocab, hidden], (&grad.device(), grad.dtype()));
    let d_u = zeros.select_assign(0, ids, grad.clone(), IndexingUpdateOp::Add);
    let d_b = grad.sum_dim(0).reshape([hidden]);
    [primitive(d_u), primitive(d_b)]
}

/// The backward step of the embedding node; its state is the ids and the vocabulary size.
#[derive(Debug)]
struct EmbeddingBackward;

impl<B: Kernels> Backward<B, 2> for EmbeddingBackward {
    type State = (IntTensor<B>, usize);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let (ids, vocab) = ops.state;
        let parents = ops.parents.map(|node| node.map(|node| node.id));
        register_grads::<B, 2>(
            grads,
            parents,
            B::fused_embedding_backward(grad, ids, vocab),
        );
    }
}

/// The token input on `Autodiff<B, C>`: one node.
pub(super) fn record<B: Kernels, C: CheckpointStrategy>(
    u: FloatTensor<Autodiff<B, C>>,
    b: FloatTensor<Autodiff<B, C>>,
    ids: IntTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    let vocab = u.primitive.shape().dims::<2>()[0];
    record_node::<B, C, _, 2>(EmbeddingBackward, [u, b], |[u, b], tracked| {
        let state = tracked.then(|| (ids.clone(), vocab));
        (B::fused_embedding(u, b, ids), state)
    })
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::{Element, TensorData, TensorPrimitive, Tolerance};

    /// Values made on the host in `B`'s float type (Burn's creation ops use the CPU device's
    /// default dtype, which whichever test runs first sets).
    fn values<B: Backend, const D: usize>(shape: [usize; D], seed: usize) -> Tensor<B, D> {
        let n = shape.iter().product();
        let data: Vec<f64> = (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 1009) as f64 / 1009.0 - 0.5)
            .collect();
        let data = TensorData::new(data, shape).convert::<B::FloatElem>();
        Tensor::from_data(data, (&Default::default(), B::FloatElem::dtype()))
    }

    /// Values and gradients of `Σ g ⊙ (U[ids] + b)` against Burn's `embedding` and add, with
    /// repeated ids (the scatter-add must sum them).
    fn check<B: burn::tensor::backend::AutodiffBackend>(tolerance: f64) {
        let device = Default::default();
        let (vocab, hidden, batch, time) = (6, 5, 3, 4);
        let (u, b) = (
            values::<B, 2>([vocab, hidden], 1),
            values::<B, 1>([hidden], 2),
        );
        let g = values::<B, 3>([batch, time, hidden], 3);
        let ids: Vec<i64> = (0..batch * time).map(|i| (i * i % 5) as i64).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, time]), &device);
        let run = |fused: bool| {
            let (u, b) = (u.clone().require_grad(), b.clone().require_grad());
            let drive = if fused {
                embedding_with_bias(u.clone(), b.clone(), ids.clone())
            } else {
                burn::tensor::module::embedding(u.clone(), ids.clone()) + b.clone().unsqueeze()
            };
            let grads = (drive.clone() * g.clone()).sum().backward();
            [
                drive.into_data(),
                u.grad(&grads).expect("∂U").into_data(),
                b.grad(&grads).expect("∂b").into_data(),
            ]
        };
        for (fused, reference) in run(true).iter().zip(run(false)) {
            fused.assert_approx_eq::<f64>(&reference, Tolerance::absolute(tolerance));
        }
    }

    #[test]
    fn fused_embedding_equals_burn_embedding_in_values_and_gradients() {
        check::<Autodiff<NdArray<f32>>>(1e-6);
        check::<Autodiff<NdArray<f64>>>(1e-12);
    }

    /// The generic defaults (what wgpu runs) agree with the host kernel.
    #[test]
    fn generic_default_equals_host_kernel() {
        type B = NdArray<f64>;
        let device = Default::default();
        let (u, b, g) = (
            values::<B, 2>([4, 3], 4),
            values::<B, 1>([3], 5),
            values::<B, 3>([2, 4, 3], 6),
        );
        let ids = Tensor::<B, 2, Int>::from_data([[3, 0, 3, 1], [1, 3, 2, 2]], &device);
        let p = |t: &Tensor<B, 2>| t.clone().into_primitive().tensor();
        let p3 = |t: &Tensor<B, 3>| t.clone().into_primitive().tensor();
        let data = |t: FloatTensor<B>| {
            Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(t)).into_data()
        };
        let data3 = |t: FloatTensor<B>| {
            Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(t)).into_data()
        };
        let data1 = |t: FloatTensor<B>| {
            Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(t)).into_data()
        };
        let b_p = || b.clone().into_primitive().tensor();
        let ids_p = || ids.clone().into_primitive();
        let tolerance = Tolerance::absolute(1e-12);
        let host = B::fused_embedding(p(&u), b_p(), ids_p());
        let reference = default_forward::<B>(p(&u), b_p(), ids_p());
        let host = data3(host);
        assert_eq!(host.shape.dims::<3>(), [2, 4, 3]);
        host.assert_approx_eq::<f64>(&data3(reference), tolerance);
        let [host_u, host_b] = B::fused_embedding_backward(p3(&g), ids_p(), 4);
        let [ref_u, ref_b] = default_backward::<B>(p3(&g), ids_p(), 4);
        data(host_u).assert_approx_eq::<f64>(&data(ref_u), tolerance);
        data1(host_b).assert_approx_eq::<f64>(&data1(ref_b), tolerance);
    }
}
