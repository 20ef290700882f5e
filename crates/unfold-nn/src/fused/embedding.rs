//! The token input `b + U x(t)` as one fused operation over all `batch·time` tokens.
//!
//! ```text
//! drive(r) = U[id(r)] + b                       (a row lookup: the one-hot product, never formed)
//! ∂U[v]    = Σ_{r : id(r) = v} ∂drive(r)        (a scatter-add)
//! ∂b       = Σ_r ∂drive(r)
//! ```
//!
//! Burn records the same as an `embedding` (a `select`, whose backward allocates a zero `U`-sized
//! gradient and `select_add`s into it) and a broadcast bias add (whose backward sums over two
//! axes): four passes over the `[batch·time, hidden]` rows instead of one, on one core. Here the
//! ndarray kernel makes one pass each way with the rows split across cores.
//!
//! Same pattern as the other fused operations: a backend extension trait with defaults in Burn
//! tensor operations (any backend, wgpu included), an `Autodiff` node, a host kernel for
//! ndarray, and [`embedding_with_bias`] to find the implementation by backend type.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorPrimitive};

#[allow(unused_imports)] // used by `return_fused_runner!` when a backend feature is on
use super::same_type;

/// A backend with the fused token input (defaults: Burn's `select` and `select_add`).
///
/// The ids keep their `[batch, time]` shape and the drive is made `[batch, time, hidden]`
/// directly: a reshape on either side would copy the whole tensor on ndarray (Burn 0.21's
/// ndarray reshape copies), once forward and once for the gradient.
pub trait EmbeddingBackend: Backend {
    /// `U[ids] + b`: `u` `[vocab, hidden]`, `b` `[hidden]`, `ids` `[batch, time]` →
    /// `[batch, time, hidden]`.
    fn embedding_with_bias(
        u: FloatTensor<Self>,
        b: FloatTensor<Self>,
        ids: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        generic::forward::<Self>(u, b, ids)
    }

    /// `(∂U, ∂b)` from `grad` `[batch, time, hidden]`, for a vocabulary of `vocab` rows.
    fn embedding_with_bias_backward(
        grad: FloatTensor<Self>,
        ids: IntTensor<Self>,
        vocab: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        generic::backward::<Self>(grad, ids, vocab)
    }
}

/// The defaults in Burn tensor operations.
pub(super) mod generic {
    use super::*;

    fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
        Tensor::from_primitive(TensorPrimitive::Float(t))
    }

    pub fn forward<B: Backend>(
        u: FloatTensor<B>,
        b: FloatTensor<B>,
        ids: IntTensor<B>,
    ) -> FloatTensor<B> {
        let ids = Tensor::<B, 2, Int>::from_primitive(ids);
        let drive = burn::tensor::module::embedding(float::<B, 2>(u), ids);
        (drive + float::<B, 1>(b).unsqueeze())
            .into_primitive()
            .tensor()
    }

    pub fn backward<B: Backend>(
        grad: FloatTensor<B>,
        ids: IntTensor<B>,
        vocab: usize,
    ) -> (FloatTensor<B>, FloatTensor<B>) {
        let grad = float::<B, 3>(grad);
        let [batch, time, hidden] = grad.dims();
        let grad = grad.reshape([batch * time, hidden]);
        let ids = Tensor::<B, 2, Int>::from_primitive(ids).reshape([batch * time]);
        let zeros = Tensor::<B, 2>::zeros([vocab, hidden], (&grad.device(), grad.dtype()));
        let d_u = zeros.select_assign(0, ids, grad.clone(), IndexingUpdateOp::Add);
        let d_b = grad.sum_dim(0).reshape([hidden]);
        (d_u.into_primitive().tensor(), d_b.into_primitive().tensor())
    }
}

/// The backward step of the fused embedding node; its state is the ids and the vocabulary size.
#[derive(Debug)]
struct EmbeddingBackward;

impl<B: EmbeddingBackend> Backward<B, 2> for EmbeddingBackward {
    type State = (IntTensor<B>, usize);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [u_node, b_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (ids, vocab) = ops.state;
        let (d_u, d_b) = B::embedding_with_bias_backward(grad, ids, vocab);
        for (node, grad) in [(u_node, d_u), (b_node, d_b)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: EmbeddingBackend, C: CheckpointStrategy> EmbeddingBackend for Autodiff<B, C> {
    fn embedding_with_bias(
        u: FloatTensor<Self>,
        b: FloatTensor<Self>,
        ids: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let vocab = burn::tensor::TensorMetadata::shape(&u.primitive).dims::<2>()[0];
        match EmbeddingBackward
            .prepare::<C>([u.node.clone(), b.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let drive = B::embedding_with_bias(u.primitive, b.primitive, ids.clone());
                prep.finish((ids, vocab), drive)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::embedding_with_bias(u.primitive, b.primitive, ids))
            }
        }
    }
}

/// ndarray: the host kernel (f32 and f64; other float types take the defaults).
#[cfg(feature = "ndarray")]
impl<
        E: burn::backend::ndarray::FloatNdArrayElement,
        I: burn::backend::ndarray::IntNdArrayElement,
        Q: burn::backend::ndarray::QuantElement,
    > EmbeddingBackend for burn::backend::NdArray<E, I, Q>
where
    burn::backend::ndarray::NdArrayTensor:
        From<burn::backend::ndarray::SharedArray<E>> + From<burn::backend::ndarray::SharedArray<I>>,
{
    fn embedding_with_bias(
        u: FloatTensor<Self>,
        b: FloatTensor<Self>,
        ids: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        super::host::embedding_forward::<Self>(u, b, ids)
    }

    fn embedding_with_bias_backward(
        grad: FloatTensor<Self>,
        ids: IntTensor<Self>,
        vocab: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        super::host::embedding_backward::<Self>(grad, ids, vocab)
    }
}

#[cfg(feature = "wgpu")]
impl EmbeddingBackend for burn::backend::Wgpu {}

/// `U[ids] + b` for token ids `[batch, time]` → `[batch, time, hidden]`, through the fused
/// operation where backend `B` has one (found by type, as [`super::runner`] is), else Burn's
/// `embedding` and a broadcast add. Same values and gradients either way.
pub fn embedding_with_bias<B: Backend>(
    u: Tensor<B, 2>,
    b: Tensor<B, 1>,
    ids: Tensor<B, 2, Int>,
) -> Tensor<B, 3> {
    match runner::<B>() {
        Some(run) => run(u, b, ids),
        None => burn::tensor::module::embedding(u, ids) + b.unsqueeze(),
    }
}

type Runner<B> = fn(Tensor<B, 2>, Tensor<B, 1>, Tensor<B, 2, Int>) -> Tensor<B, 3>;

fn runner<B: Backend>() -> Option<Runner<B>> {
    return_fused_runner!(B, run_as);
    None
}

/// Runs the fused embedding of `R`, which is the same type as `B` (checked by [`runner`]).
#[cfg_attr(not(any(feature = "ndarray", feature = "wgpu")), allow(dead_code))]
fn run_as<B: Backend, R: EmbeddingBackend>(
    u: Tensor<B, 2>,
    b: Tensor<B, 1>,
    ids: Tensor<B, 2, Int>,
) -> Tensor<B, 3> {
    let u = same_type::<_, Tensor<R, 2>>(u).into_primitive().tensor();
    let b = same_type::<_, Tensor<R, 1>>(b).into_primitive().tensor();
    let ids = same_type::<_, Tensor<R, 2, Int>>(ids).into_primitive();
    let drive = R::embedding_with_bias(u, b, ids);
    same_type(Tensor::<R, 3>::from_primitive(TensorPrimitive::Float(
        drive,
    )))
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::{Element, TensorData, Tolerance};

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
        let host = B::embedding_with_bias(p(&u), b_p(), ids_p());
        let reference = generic::forward::<B>(p(&u), b_p(), ids_p());
        let host = data3(host);
        assert_eq!(host.shape.dims::<3>(), [2, 4, 3]);
        host.assert_approx_eq::<f64>(&data3(reference), tolerance);
        let (host_u, host_b) = B::embedding_with_bias_backward(p3(&g), ids_p(), 4);
        let (ref_u, ref_b) = generic::backward::<B>(p3(&g), ids_p(), 4);
        data(host_u).assert_approx_eq::<f64>(&data(ref_u), tolerance);
        data1(host_b).assert_approx_eq::<f64>(&data1(ref_b), tolerance);
    }
}
