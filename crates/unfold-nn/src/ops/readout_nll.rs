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
//! The states and targets keep their `[batch, time, …]` shape (rows are `batch·time`, row
//! `b·time + t`): flattening them first would copy the states on ndarray (Burn 0.21's ndarray
//! reshape copies), and their gradient again on the way back.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::Autodiff;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Int, Tensor, TensorData};

use super::{dispatch, primitive, record_node, register_grads, tensor, FusedOp, Kernels, Retype};

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

/// The loss of the readout `o = c + h V` of `h` `[batch, time, hidden]` against `targets`
/// `[batch, time]`, weighted by `rows`, as one fused operation; `None` when backend `B` has no
/// kernels (the caller then records the readout and the loss op by op).
pub(crate) fn readout_nll<B: Backend>(
    h: Tensor<B, 3>,
    v: Tensor<B, 2>,
    c: Tensor<B, 1>,
    targets: Tensor<B, 2, Int>,
    rows: &NllRows,
) -> Option<Tensor<B, 1>> {
    struct Op<'a, B: Backend> {
        h: Tensor<B, 3>,
        v: Tensor<B, 2>,
        c: Tensor<B, 1>,
        targets: Tensor<B, 2, Int>,
        rows: &'a NllRows,
    }

    impl<B: Backend> FusedOp<B> for Op<'_, B> {
        type Output = Option<Tensor<B, 1>>;

        fn fused<K: Kernels>(self, to: Retype<B, K>) -> Option<Tensor<B, 1>> {
            let (h, v, c) = (to.float(self.h), to.float(self.v), to.float(self.c));
            let (loss, _) = K::fused_readout_nll(h, v, c, to.int(self.targets), self.rows, false);
            Some(to.tensor(loss))
        }

        fn unfused(self) -> Option<Tensor<B, 1>> {
            None
        }
    }

    dispatch(Op {
        h,
        v,
        c,
        targets,
        rows,
    })
}

/// The loss and, with `with_grad`, `G = w ⊙ (softmax(o) − onehot(y))`.
pub(super) fn default_forward<B: Backend>(
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
pub(super) fn default_backward<B: Backend>(
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
/// The backward step of the readout-loss node.
#[derive(Debug)]
struct ReadoutNllBackward;

impl<B: Kernels> Backward<B, 3> for ReadoutNllBackward {
    /// `(G, h, V)`.
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let (g, h, v) = ops.state;
        let d = B::fused_readout_nll_backward(grad, g, h, v);
        let parents = ops.parents.map(|node| node.map(|node| node.id));
        register_grads::<B, 3>(grads, parents, [d.h, d.v, d.c]);
    }
}

/// The readout loss on `Autodiff<B, C>`: one node, which keeps `G` (written by the forward
/// pass) for its backward pass.
pub(super) fn record<B: Kernels, C: CheckpointStrategy>(
    h: FloatTensor<Autodiff<B, C>>,
    v: FloatTensor<Autodiff<B, C>>,
    c: FloatTensor<Autodiff<B, C>>,
    targets: IntTensor<B>,
    rows: &NllRows,
) -> FloatTensor<Autodiff<B, C>> {
    record_node::<B, C, _, 3>(ReadoutNllBackward, [h, v, c], |[h, v, c], tracked| {
        let kept = tracked.then(|| (h.clone(), v.clone()));
        let (loss, g) = B::fused_readout_nll(h, v, c, targets, rows, tracked);
        let state = kept.map(|(h, v)| (g.expect("asked for G"), h, v));
        (loss, state)
    })
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, TensorPrimitive, Tolerance};

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
                B::fused_readout_nll(args.0, args.1, args.2, args.3, &rows, true)
            } else {
                default_forward::<B>(args.0, args.1, args.2, args.3, &rows, true)
            };
            let grad = Tensor::<B, 1>::from_data([1.5], &device)
                .into_primitive()
                .tensor();
            let g = g.unwrap();
            let d = if host {
                B::fused_readout_nll_backward(grad, g, p3(h.clone()), p(v.clone()))
            } else {
                default_backward::<B>(grad, g, p3(h.clone()), p(v.clone()))
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
