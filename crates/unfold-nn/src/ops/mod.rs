//! Fused operations: a computation over every step of a batch, recorded as one autodiff node
//! with a hand-written backward pass.
//!
//! | operation | forward | backward from | module |
//! |---|---|---|---|
//! | the recurrence | `h(t) = act(drive(t) + h(t-1) W)`, every step | the states | [`recurrence`] |
//! | the token input | `U[x] + b`, every token | the ids (a scatter-add) | [`embedding`] |
//! | a nonlinearity | `y = act(x)`, elementwise | the output `y` | [`activation`] |
//! | the readout loss | `o = c + h V`, log-softmax, masked NLL | `G = ∂L/∂o` | [`readout_nll`] |
//! | a sequence's steps | row `t` of `[batch, time, width]`, every `t` | one stack of the rows' gradients | [`steps`] |
//! | free-running generation | every token's step, readout and draw | (no gradient) | [`generation`] |
//!
//! Recorded op by op, Burn's autodiff keeps a node per tensor operation per step (ten or so
//! for one tanh step, with the per-step slices of a tracked tensor each getting a full-size
//! gradient); fused, a whole pass is one node whose backward is the textbook's.
//!
//! How the pieces fit:
//! - Each operation is one module: its default written in Burn tensor operations (what a
//!   backend without kernels of its own runs, on its inner backend: no graph nodes per step),
//!   its backward node, and the entry function the models call.
//! - [`Kernels`] is the one trait a backend implements to run them: a method (forward and
//!   backward) per operation, each defaulting to the Burn-op version. `Autodiff<B, C>`
//!   implements it once for every `B: Kernels` and every checkpoint strategy `C`, by recording
//!   the node and running `B`'s kernel. ndarray's host kernels are in `crate::backends::ndarray`.
//! - [`dispatch`] is the one place that decides which backend has kernels. The models are
//!   generic over any Burn `Backend` and Rust has no specialisation, so it compares types: `B`
//!   with each backend in its list, and `B`'s float tensors with those of `Autodiff` over each
//!   (which covers every checkpoint strategy: they share the tensor type). Any other backend
//!   takes the operation's unfused path, recorded op by op (same values and gradients).
//!
//! Adding a backend: an `impl Kernels` overriding what it can run faster, and a line in
//! [`dispatch`]. Adding a nonlinearity: a [`Nonlinearity`] variant, its formula in
//! `Nonlinearity`'s methods and in the host math.

// With no backend feature on, no backend has kernels: the framework is then unused.
#![cfg_attr(
    not(any(feature = "ndarray", feature = "wgpu")),
    allow(dead_code, unused_imports)
)]

pub(crate) mod activation;
pub(crate) mod embedding;
pub(crate) mod generation;
pub(crate) mod readout_nll;
pub(crate) mod recurrence;
pub(crate) mod steps;

use std::any::{Any, TypeId};
use std::marker::PhantomData;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Int, Tensor, TensorPrimitive};

pub use generation::{GenerationLayer, GenerationNet};
pub use readout_nll::{NllRows, ReadoutNllGrads};
pub use recurrence::RecurrenceGrads;

use crate::nonlinearity::Nonlinearity;
use crate::recurrence::Steps;

/// A backend that runs unfold's fused operations. Every method has a default in Burn tensor
/// operations, so `impl Kernels for MyBackend {}` is a valid implementation; a backend with
/// direct access to its buffers overrides what it can do faster.
pub trait Kernels: Backend {
    /// Every state `[batch, time, hidden]` of `h(t) = act(drive(t) + h(t-1) W)`, visiting the
    /// steps as `steps` says: `drive` `[batch, time, hidden]`, `w` `[hidden, hidden]` (stored
    /// `[from, to]`), `h0` `[batch, hidden]`. See [`recurrence`].
    fn fused_recurrence(
        drive: FloatTensor<Self>,
        w: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        steps: &Steps,
        act: Nonlinearity,
    ) -> FloatTensor<Self> {
        recurrence::default_forward::<Self>(drive, w, h0, steps, act)
    }

    /// BPTT through [`recurrence`](Kernels::recurrence): the gradients of its inputs from
    /// `grad` `= ∂L/∂states` and the forward pass's `states`.
    fn fused_recurrence_backward(
        grad: FloatTensor<Self>,
        states: FloatTensor<Self>,
        w: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        steps: &Steps,
        act: Nonlinearity,
    ) -> RecurrenceGrads<Self> {
        recurrence::default_backward::<Self>(grad, states, w, h0, steps, act)
    }

    /// `U[ids] + b`: `u` `[vocab, hidden]`, `b` `[hidden]`, `ids` `[batch, time]` →
    /// `[batch, time, hidden]`. See [`embedding`].
    fn fused_embedding(
        u: FloatTensor<Self>,
        b: FloatTensor<Self>,
        ids: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        embedding::default_forward::<Self>(u, b, ids)
    }

    /// `[∂U, ∂b]` of [`embedding`](Kernels::embedding) from `grad` `[batch, time, hidden]`,
    /// for a vocabulary of `vocab` rows.
    fn fused_embedding_backward(
        grad: FloatTensor<Self>,
        ids: IntTensor<Self>,
        vocab: usize,
    ) -> [FloatTensor<Self>; 2] {
        embedding::default_backward::<Self>(grad, ids, vocab)
    }

    /// `act(x)` for every element of a tensor of any rank. See [`activation`].
    fn fused_activation(x: FloatTensor<Self>, act: Nonlinearity) -> FloatTensor<Self> {
        activation::default_forward::<Self>(x, act)
    }

    /// `∂x = act'(y) ⊙ grad`, from the forward pass's output `y`.
    fn fused_activation_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        act: Nonlinearity,
    ) -> FloatTensor<Self> {
        activation::default_backward::<Self>(y, grad, act)
    }

    /// The loss `[1]` of `h` `[batch, time, hidden]` read out by `v` `[hidden, classes]` and
    /// `c` `[classes]` against `targets` `[batch, time]`, weighted by `rows`; with `with_grad`
    /// also `G = ∂L/∂o` `[batch·time, classes]`. See [`readout_nll`].
    fn fused_readout_nll(
        h: FloatTensor<Self>,
        v: FloatTensor<Self>,
        c: FloatTensor<Self>,
        targets: IntTensor<Self>,
        rows: &NllRows,
        with_grad: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        readout_nll::default_forward::<Self>(h, v, c, targets, rows, with_grad)
    }

    /// The gradients of [`readout_nll`](Kernels::readout_nll) from `grad` `= ∂(outer
    /// loss)/∂L` `[1]` and the forward pass's `G`.
    fn fused_readout_nll_backward(
        grad: FloatTensor<Self>,
        g: FloatTensor<Self>,
        h: FloatTensor<Self>,
        v: FloatTensor<Self>,
    ) -> ReadoutNllGrads<Self> {
        readout_nll::default_backward::<Self>(grad, g, h, v)
    }

    /// Row `t` of `drive` `[batch, time, width]` for every `t`, as `[batch, width]` tensors.
    /// See [`steps`].
    fn fused_split_steps(drive: FloatTensor<Self>) -> Vec<FloatTensor<Self>> {
        steps::default_split::<Self>(drive)
    }

    /// Free-running generation of `net` for `config.steps` tokens, every stream at once: the
    /// generated tokens, or `None` when the backend has no such kernel (the default: the
    /// caller runs the generic loop). See [`generation`].
    fn fused_generate(
        net: GenerationNet<Self>,
        config: &crate::sample::GenerateConfig,
    ) -> Option<crate::error::Result<Vec<Vec<usize>>>> {
        let _ = (net, config);
        None
    }
}

/// Autodiff: each forward records one node whose backward runs the inner backend's kernels.
/// (The backward methods are only ever called on the inner backend, by the nodes.)
impl<B: Kernels, C: CheckpointStrategy> Kernels for Autodiff<B, C> {
    fn fused_recurrence(
        drive: FloatTensor<Self>,
        w: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        steps: &Steps,
        act: Nonlinearity,
    ) -> FloatTensor<Self> {
        recurrence::record::<B, C>(drive, w, h0, steps, act)
    }

    fn fused_embedding(
        u: FloatTensor<Self>,
        b: FloatTensor<Self>,
        ids: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        embedding::record::<B, C>(u, b, ids)
    }

    fn fused_activation(x: FloatTensor<Self>, act: Nonlinearity) -> FloatTensor<Self> {
        activation::record::<B, C>(x, act)
    }

    fn fused_readout_nll(
        h: FloatTensor<Self>,
        v: FloatTensor<Self>,
        c: FloatTensor<Self>,
        targets: IntTensor<Self>,
        rows: &NllRows,
        _with_grad: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        (readout_nll::record::<B, C>(h, v, c, targets, rows), None)
    }

    fn fused_split_steps(drive: FloatTensor<Self>) -> Vec<FloatTensor<Self>> {
        steps::record::<B, C>(drive)
    }

    /// Generation records nothing: the inner backend's kernel on the inner tensors.
    fn fused_generate(
        net: GenerationNet<Self>,
        config: &crate::sample::GenerateConfig,
    ) -> Option<crate::error::Result<Vec<Vec<usize>>>> {
        B::fused_generate(net.inner(), config)
    }
}

/// A fused operation written once for every backend with kernels: [`dispatch`] calls
/// [`fused`](FusedOp::fused) with the backend `K` that runs it, or
/// [`unfused`](FusedOp::unfused) when there is none.
pub(crate) trait FusedOp<B: Backend> {
    /// What the operation returns.
    type Output;

    /// Runs on `K`, whose tensors are `B`'s ([`Retype`] moves them across).
    fn fused<K: Kernels>(self, retype: Retype<B, K>) -> Self::Output;

    /// Runs as ordinary Burn operations on `B` (recorded op by op under autodiff).
    fn unfused(self) -> Self::Output;
}

/// The one place that decides which backend has kernels (see the [module docs](self)).
///
/// `K` is `B` itself, or `Autodiff<X>` when `B` is `Autodiff<X, C>` for any checkpoint
/// strategy `C`: the operations record compute-bound nodes with their own saved state, which
/// no strategy checkpoints, so the strategy changes nothing for them.
///
/// ndarray is listed with its two integer types in common use (`i64`, Burn's default, and
/// `i32`); other instantiations run the unfused path.
pub(crate) fn dispatch<B: Backend, O: FusedOp<B>>(op: O) -> O::Output {
    #[allow(unused_macros)] // with no backend feature on, nothing has kernels
    macro_rules! run_on_kernels_of {
        ($($backend:ty),+ $(,)?) => {$(
            if TypeId::of::<B>() == TypeId::of::<$backend>() {
                return op.fused::<$backend>(Retype::new());
            }
            if TypeId::of::<FloatTensor<B>>() == TypeId::of::<FloatTensor<Autodiff<$backend>>>() {
                return op.fused::<Autodiff<$backend>>(Retype::new());
            }
        )+};
    }
    #[cfg(feature = "ndarray")]
    run_on_kernels_of!(
        burn::backend::NdArray<f32>,
        burn::backend::NdArray<f64>,
        burn::backend::NdArray<f32, i32>,
        burn::backend::NdArray<f64, i32>,
    );
    // `CubeBackend<WgpuRuntime | CudaRuntime, f32, i32, u32>`: CubeCL kernels
    // (`backends/cubecl`).
    #[cfg(feature = "wgpu")]
    run_on_kernels_of!(burn::backend::Wgpu);
    #[cfg(feature = "cuda")]
    run_on_kernels_of!(burn::backend::Cuda);
    op.unfused()
}

/// Whether backend `B` runs the fused operations ([`dispatch`] finds kernels for it).
pub fn has_kernels<B: Backend>() -> bool {
    struct Probe;
    impl<B: Backend> FusedOp<B> for Probe {
        type Output = bool;
        fn fused<K: Kernels>(self, _: Retype<B, K>) -> bool {
            true
        }
        fn unfused(self) -> bool {
            false
        }
    }
    dispatch::<B, _>(Probe)
}

/// Moves tensors between `B` and the backend `K` that runs a fused operation for it. Only
/// [`dispatch`] makes one, after checking that the two have the same tensor types.
pub(crate) struct Retype<B, K>(PhantomData<fn() -> (B, K)>);

impl<B: Backend, K: Backend> Retype<B, K> {
    fn new() -> Self {
        Self(PhantomData)
    }

    /// A float tensor of `B` as `K`'s primitive.
    pub(crate) fn float<const D: usize>(&self, tensor: Tensor<B, D>) -> FloatTensor<K> {
        same_type(tensor.into_primitive().tensor())
    }

    /// An integer tensor of `B` as `K`'s primitive.
    pub(crate) fn int<const D: usize>(&self, tensor: Tensor<B, D, Int>) -> IntTensor<K> {
        same_type(tensor.into_primitive())
    }

    /// `K`'s primitive back as a float tensor of `B`.
    pub(crate) fn tensor<const D: usize>(&self, primitive: FloatTensor<K>) -> Tensor<B, D> {
        Tensor::from_primitive(TensorPrimitive::Float(same_type(primitive)))
    }
}

/// Moves a value to the type it is known to have (checked by [`dispatch`]; no unsafe code).
fn same_type<From: 'static, To: 'static>(value: From) -> To {
    *(Box::new(value) as Box<dyn Any>)
        .downcast::<To>()
        .expect("dispatch matched the tensor types")
}

/// Records one operation as an autodiff node with `backward` as its backward step: runs
/// `forward` on the parents' inner tensors (moved, not copied, so a kernel may reuse their
/// buffers), and keeps the state it returns for the backward pass when a gradient is wanted
/// (`forward`'s flag says whether).
pub(crate) fn record_node<B, C, Op, const N: usize>(
    backward: Op,
    parents: [FloatTensor<Autodiff<B, C>>; N],
    forward: impl FnOnce([FloatTensor<B>; N], bool) -> (FloatTensor<B>, Option<Op::State>),
) -> FloatTensor<Autodiff<B, C>>
where
    B: Backend,
    C: CheckpointStrategy,
    Op: Backward<B, N>,
{
    let nodes = parents.each_ref().map(|parent| parent.node.clone());
    let inner = parents.map(|parent| parent.primitive);
    match backward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (output, state) = forward(inner, true);
            prep.finish(state.expect("a tracked forward returns its state"), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(inner, false).0),
    }
}

/// Hands each parent its gradient (parents that need none are `None` and skipped).
pub(crate) fn register_grads<B: Backend, const N: usize>(
    grads: &mut Gradients,
    parents: [Option<NodeId>; N],
    values: [FloatTensor<B>; N],
) {
    for (parent, grad) in parents.into_iter().zip(values) {
        if let Some(id) = parent {
            grads.register::<B>(id, grad);
        }
    }
}

/// A float primitive of `B` as a tensor.
pub(crate) fn tensor<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// A float tensor's primitive.
pub(crate) fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}
