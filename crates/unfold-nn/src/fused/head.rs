//! The readout and the loss as one fused operation: `o = c + h V`, log-softmax and the masked
//! negative log-likelihood over all `batch·time` rows at once.
//!
//! ```text
//! L      = Σ_r w(r) (log Σ_k e^{o(r,k)} − o(r, y(r)))     w(r): 0 on padding, else the reduction's scale
//! ∂L/∂o  = w(r) (softmax(o(r)) − onehot(y(r)))           (G, [rows, classes])
//! ∂V     = hᵀ G,   ∂c = Σ_r G(r),   ∂h = G Vᵀ            (one product each, over all rows)
//! ```
//!
//! Recorded by Burn's autodiff, the same loss is a product, a bias add, a log-softmax (max, sub,
//! exp, sum, log, sub), a gather, a mask and a sum: about ten nodes, each keeping its own
//! `[rows, classes]` tensor for the backward pass. Fused, the forward pass writes `G` once (only
//! when a gradient is wanted) and the backward pass is the three products above.
//!
//! Same pattern as the recurrence ([`super::RecurrentBackend`]): a backend extension trait with
//! defaults in Burn tensor operations (every backend, wgpu included), an `Autodiff` node, a host
//! kernel for ndarray, and [`runner`] to find the implementation by backend type.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive};

#[allow(unused_imports)] // used by `return_fused_runner!` when a backend feature is on
use super::same_type;

/// Which rows count in the loss, and by how much: row `r = b·time + t` weighs `scale` when
/// `t < lengths[b]` (every `t` when `lengths` is `None`), else nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct NllRows {
    /// Number of time steps per sequence (rows are `[batch, time]` flattened).
    pub time: usize,
    /// Valid length of each sequence; `None` when all are full length.
    pub lengths: Option<Vec<usize>>,
    /// The weight of a valid row: 1 for a sum, `1 / tokens` for a mean per token, ….
    pub scale: f64,
}

impl NllRows {
    /// The weight of row `row`.
    pub fn weight(&self, row: usize) -> f64 {
        let (b, t) = (row / self.time, row % self.time);
        match &self.lengths {
            Some(lengths) if t >= lengths[b] => 0.0,
            _ => self.scale,
        }
    }
}

/// Gradients of the fused readout loss with respect to its inputs.
#[derive(Debug)]
pub struct ReadoutNllGrads<B: Backend> {
    /// `∂L/∂h`, `[batch, time, hidden]`.
    pub h: FloatTensor<B>,
    /// `∂L/∂V`, `[hidden, classes]`.
    pub v: FloatTensor<B>,
    /// `∂L/∂c`, `[classes]`.
    pub c: FloatTensor<B>,
}

/// A backend that runs the readout `o = c + h V` and the softmax cross-entropy as one operation.
///
/// The defaults are Burn tensor operations, so any backend can implement it with an empty
/// `impl`; ndarray overrides them with GEMM calls on host memory.
///
/// The states and targets keep their `[batch, time, …]` shape (rows are `batch·time`, row
/// `b·time + t`): flattening them first would copy the states on ndarray (Burn 0.21's ndarray
/// reshape copies), and their gradient again on the way back.
pub trait ReadoutLossBackend: Backend {
    /// The loss `[1]` of `h` `[batch, time, hidden]` read out by `v` `[hidden, classes]` and `c`
    /// `[classes]` against `targets` `[batch, time]`, weighted by `rows`; with `with_grad`, also
    /// `G = ∂L/∂o` `[batch·time, classes]`, the one thing the backward pass needs besides `h`
    /// and `V`.
    fn readout_nll(
        h: FloatTensor<Self>,
        v: FloatTensor<Self>,
        c: FloatTensor<Self>,
        targets: IntTensor<Self>,
        rows: &NllRows,
        with_grad: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        generic::forward::<Self>(h, v, c, targets, rows, with_grad)
    }

    /// The gradients from `grad` `= ∂(outer loss)/∂L` `[1]` and the forward's `G`.
    fn readout_nll_backward(
        grad: FloatTensor<Self>,
        g: FloatTensor<Self>,
        h: FloatTensor<Self>,
        v: FloatTensor<Self>,
    ) -> ReadoutNllGrads<Self> {
        generic::backward::<Self>(grad, g, h, v)
    }
}

/// The backward step of the fused readout-loss node.
#[derive(Debug)]
struct ReadoutNllBackward;

impl<B: ReadoutLossBackend> Backward<B, 3> for ReadoutNllBackward {
    /// `(G, h, V)`.
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [h_node, v_node, c_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (g, h, v) = ops.state;
        let d = B::readout_nll_backward(grad, g, h, v);
        for (node, grad) in [(h_node, d.h), (v_node, d.v), (c_node, d.c)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: ReadoutLossBackend, C: CheckpointStrategy> ReadoutLossBackend for Autodiff<B, C> {
    fn readout_nll(
        h: FloatTensor<Self>,
        v: FloatTensor<Self>,
        c: FloatTensor<Self>,
        targets: IntTensor<Self>,
        rows: &NllRows,
        _with_grad: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        let parents = [h.node.clone(), v.node.clone(), c.node.clone()];
        let loss = match ReadoutNllBackward
            .prepare::<C>(parents)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (loss, g) = B::readout_nll(
                    h.primitive.clone(),
                    v.primitive.clone(),
                    c.primitive,
                    targets,
                    rows,
                    true,
                );
                let g = g.expect("asked for G");
                prep.finish((g, h.primitive, v.primitive), loss)
            }
            OpsKind::UnTracked(prep) => {
                let (loss, _) =
                    B::readout_nll(h.primitive, v.primitive, c.primitive, targets, rows, false);
                prep.finish(loss)
            }
        };
        (loss, None)
    }
}

/// ndarray: the host kernel (f32 and f64; other float types take the generic path).
#[cfg(feature = "ndarray")]
impl<
        E: burn::backend::ndarray::FloatNdArrayElement,
        I: burn::backend::ndarray::IntNdArrayElement,
        Q: burn::backend::ndarray::QuantElement,
    > ReadoutLossBackend for burn::backend::NdArray<E, I, Q>
where
    burn::backend::ndarray::NdArrayTensor:
        From<burn::backend::ndarray::SharedArray<E>> + From<burn::backend::ndarray::SharedArray<I>>,
{
    fn readout_nll(
        h: FloatTensor<Self>,
        v: FloatTensor<Self>,
        c: FloatTensor<Self>,
        targets: IntTensor<Self>,
        rows: &NllRows,
        with_grad: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        super::host_head::forward::<Self>(h, v, c, targets, rows, with_grad)
    }

    fn readout_nll_backward(
        grad: FloatTensor<Self>,
        g: FloatTensor<Self>,
        h: FloatTensor<Self>,
        v: FloatTensor<Self>,
    ) -> ReadoutNllGrads<Self> {
        super::host_head::backward::<Self>(grad, g, h, v)
    }
}

#[cfg(feature = "wgpu")]
impl ReadoutLossBackend for burn::backend::Wgpu {}

/// A fused implementation for backend `B`: `(h, v, c, targets, rows) → loss [1]`.
pub type Runner<B> =
    fn(Tensor<B, 3>, Tensor<B, 2>, Tensor<B, 1>, Tensor<B, 2, Int>, &NllRows) -> Tensor<B, 1>;

/// The fused readout loss for backend `B`, if one is implemented; `None` means "record the
/// readout and the loss op by op instead". Found by type, as [`super::runner`] is.
pub fn runner<B: Backend>() -> Option<Runner<B>> {
    return_fused_runner!(B, run_as);
    None
}

/// Runs the fused readout loss of `R`, which is the same type as `B` (checked by [`runner`]).
#[cfg_attr(not(any(feature = "ndarray", feature = "wgpu")), allow(dead_code))]
fn run_as<B: Backend, R: ReadoutLossBackend>(
    h: Tensor<B, 3>,
    v: Tensor<B, 2>,
    c: Tensor<B, 1>,
    targets: Tensor<B, 2, Int>,
    rows: &NllRows,
) -> Tensor<B, 1> {
    let h = same_type::<_, Tensor<R, 3>>(h).into_primitive().tensor();
    let v = same_type::<_, Tensor<R, 2>>(v).into_primitive().tensor();
    let c = same_type::<_, Tensor<R, 1>>(c).into_primitive().tensor();
    let targets = same_type::<_, Tensor<R, 2, Int>>(targets).into_primitive();
    let (loss, _) = R::readout_nll(h, v, c, targets, rows, false);
    same_type(Tensor::<R, 1>::from_primitive(TensorPrimitive::Float(loss)))
}

/// The defaults, in Burn tensor operations.
pub(super) mod generic {
    use super::*;

    fn tensor<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<B, D> {
        Tensor::from_primitive(TensorPrimitive::Float(primitive))
    }

    fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
        tensor.into_primitive().tensor()
    }

    /// The loss and, with `with_grad`, `G = w ⊙ (softmax(o) − onehot(y))`.
    pub fn forward<B: Backend>(
        h: FloatTensor<B>,
        v: FloatTensor<B>,
        c: FloatTensor<B>,
        targets: IntTensor<B>,
        rows: &NllRows,
        with_grad: bool,
    ) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
        let (h, v, c) = (tensor::<B, 3>(h), tensor::<B, 2>(v), tensor::<B, 1>(c));
        let [batch, time, hidden] = h.dims();
        let n = batch * time;
        let h = h.reshape([n, hidden]);
        let targets = Tensor::<B, 2, Int>::from_primitive(targets).reshape([n]);
        let classes = v.dims()[1];
        let device = h.device();
        let weights: Vec<f64> = (0..n).map(|r| rows.weight(r)).collect();
        let weights = Tensor::<B, 2>::from_data(
            TensorData::new(weights, [n, 1]).convert_dtype(h.dtype()),
            (&device, h.dtype()),
        );
        let log_p = log_softmax(h.matmul(v) + c.unsqueeze(), 1);
        let picked = log_p.clone().gather(1, targets.clone().unsqueeze_dim(1));
        let loss = (picked * weights.clone()).sum().neg();
        let g = with_grad.then(|| {
            let one_hot = targets.one_hot::<2>(classes).float().cast(log_p.dtype());
            primitive((log_p.exp() - one_hot) * weights)
        });
        (primitive(loss), g)
    }

    /// `∂h = G Vᵀ`, `∂V = hᵀ G`, `∂c = Σ_r G(r)`, each scaled by the outer gradient.
    pub fn backward<B: Backend>(
        grad: FloatTensor<B>,
        g: FloatTensor<B>,
        h: FloatTensor<B>,
        v: FloatTensor<B>,
    ) -> ReadoutNllGrads<B> {
        let g = tensor::<B, 2>(g) * tensor::<B, 1>(grad).unsqueeze::<2>();
        let (h, v) = (tensor::<B, 3>(h), tensor::<B, 2>(v));
        let [batch, time, hidden] = h.dims();
        let h = h.reshape([batch * time, hidden]);
        let classes = v.dims()[1];
        ReadoutNllGrads {
            h: primitive(
                g.clone()
                    .matmul(v.transpose())
                    .reshape([batch, time, hidden]),
            ),
            v: primitive(h.transpose().matmul(g.clone())),
            c: primitive(g.sum_dim(0).reshape([classes])),
        }
    }
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, Tolerance};

    type B = NdArray<f64>;

    /// The generic default (what wgpu runs) and the host kernel agree in values and gradients.
    #[test]
    fn generic_default_equals_host_kernel() {
        let device = Default::default();
        let (batch, time, hidden, classes) = (3, 4, 5, 7);
        let n = batch * time;
        let h = Tensor::<B, 3>::random(
            [batch, time, hidden],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let v = Tensor::<B, 2>::random([hidden, classes], Distribution::Normal(0.0, 1.0), &device);
        let c = Tensor::<B, 1>::random([classes], Distribution::Normal(0.0, 1.0), &device);
        let targets = Tensor::<B, 2, Int>::from_data(
            TensorData::new((0..n as i64).map(|i| (i * 5) % 7).collect(), [batch, time]),
            &device,
        );
        let rows = NllRows {
            time,
            lengths: Some(vec![4, 1, 3]),
            scale: 0.25,
        };
        let p = |t: Tensor<B, 2>| t.into_primitive().tensor();
        let p3 = |t: Tensor<B, 3>| t.into_primitive().tensor();
        let run = |host: bool| {
            let args = (
                p3(h.clone()),
                p(v.clone()),
                c.clone().into_primitive().tensor(),
                targets.clone().into_primitive(),
            );
            let (loss, g) = if host {
                B::readout_nll(args.0, args.1, args.2, args.3, &rows, true)
            } else {
                generic::forward::<B>(args.0, args.1, args.2, args.3, &rows, true)
            };
            let grad = Tensor::<B, 1>::from_data([1.5], &device)
                .into_primitive()
                .tensor();
            let g = g.unwrap();
            let d = if host {
                B::readout_nll_backward(grad, g, p3(h.clone()), p(v.clone()))
            } else {
                generic::backward::<B>(grad, g, p3(h.clone()), p(v.clone()))
            };
            let data = |t: FloatTensor<B>| TensorPrimitive::<B>::Float(t);
            [
                Tensor::<B, 1>::from_primitive(data(loss)).into_data(),
                Tensor::<B, 3>::from_primitive(data(d.h)).into_data(),
                Tensor::<B, 2>::from_primitive(data(d.v)).into_data(),
                Tensor::<B, 1>::from_primitive(data(d.c)).into_data(),
            ]
        };
        for (host, generic) in run(true).iter().zip(run(false)) {
            host.assert_approx_eq::<f64>(&generic, Tolerance::absolute(1e-12));
        }
    }
}
