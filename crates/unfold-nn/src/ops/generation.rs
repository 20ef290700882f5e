//! Free-running generation as one operation: every generated token's recurrence step (every
//! layer), readout, draw and feedback, for a whole batch of streams, in one call.
//!
//! ```text
//! repeat steps times:   o = c + h_top V                        (the logits of the next token)
//!                       ŷ ~ Sampling(o)                        (per stream, its own generator)
//!                       h_1 ← act(b_1 + E_1[ŷ] (+ h_1 W_1))    (the token fed back)
//!                       h_k ← act(b_k + h_(k-1) U_k + h_k W_k) (each layer above)
//! ```
//!
//! The generic loop in [`crate::sample::generate`] runs the same steps as Burn operations, a
//! handful per layer per token, each paying Burn's per-operation overhead on a `[streams,
//! hidden]` tensor and one device read per token. A backend with a kernel runs the loop on its
//! own buffers instead; the streams are independent, so the kernel may split them across cores
//! without synchronising per token. Models describe their step as plain matrices
//! ([`GenerationNet`]); a model that cannot (a custom cell, a bidirectional stack) keeps the
//! generic loop, as does a backend without a kernel.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use super::{dispatch, FusedOp, Kernels, Retype};
use crate::error::Result;
use crate::nonlinearity::Nonlinearity;
use crate::sample::GenerateConfig;

/// One layer of a generation step: `h ← act(bias + input(x) + h · recurrent)`, where `input(x)`
/// is row `x` of `input` for the bottom layer (the fed-back token) and `x · input` above it (the
/// layer below's new state). Made by unfold's own cells only.
#[derive(Debug, Clone)]
pub struct GenerationLayer<B: Backend> {
    /// `[input width, hidden]`: the token table of the bottom layer, `U` of the others.
    pub(crate) input: Tensor<B, 2>,
    /// `[1, hidden]`, if the layer has a bias.
    pub(crate) bias: Option<Tensor<B, 2>>,
    /// `W` `[hidden, hidden]`, if the layer has a hidden-to-hidden recurrence.
    pub(crate) recurrent: Option<Tensor<B, 2>>,
    /// The nonlinearity `act`.
    pub(crate) act: Nonlinearity,
}

impl<B: Backend> GenerationLayer<B> {
    /// A layer from its matrices (`bias` `[hidden]`).
    pub(crate) fn new(
        input: Tensor<B, 2>,
        bias: Option<Tensor<B, 1>>,
        recurrent: Option<Tensor<B, 2>>,
        act: Nonlinearity,
    ) -> Self {
        Self {
            input,
            bias: bias.map(|b| b.unsqueeze()),
            recurrent,
            act,
        }
    }

    fn map<K: Backend>(
        self,
        f: &mut impl FnMut(Tensor<B, 2>) -> Tensor<K, 2>,
    ) -> GenerationLayer<K> {
        GenerationLayer {
            input: f(self.input),
            bias: self.bias.map(&mut *f),
            recurrent: self.recurrent.map(&mut *f),
            act: self.act,
        }
    }
}

/// A model's generation step as plain matrices (see the [module docs](self)): its layers
/// bottom first, the readout `o = c + h V` of the top layer, and each layer's state after the
/// prompts `[streams, hidden]`. Made by unfold's own models
/// ([`Autoregressive::generation_net`](crate::Autoregressive::generation_net)).
#[derive(Debug, Clone)]
pub struct GenerationNet<B: Backend> {
    pub(crate) layers: Vec<GenerationLayer<B>>,
    /// `V` `[hidden, classes]`.
    pub(crate) v: Tensor<B, 2>,
    /// `c` `[1, classes]`, if the readout has a bias.
    pub(crate) c: Option<Tensor<B, 2>>,
    /// Each layer's `h` after the prompts, bottom first.
    pub(crate) state: Vec<Tensor<B, 2>>,
}

impl<B: Backend> GenerationNet<B> {
    /// A net from its layers, the readout (`c` `[classes]`) and the state after the prompts.
    pub(crate) fn new(
        layers: Vec<GenerationLayer<B>>,
        v: Tensor<B, 2>,
        c: Option<Tensor<B, 1>>,
        state: Vec<Tensor<B, 2>>,
    ) -> Self {
        debug_assert_eq!(layers.len(), state.len(), "one state per layer");
        Self {
            layers,
            v,
            c: c.map(|c| c.unsqueeze()),
            state,
        }
    }

    /// The same net with every tensor passed through `f` (to another backend's tensors).
    pub(crate) fn map<K: Backend>(
        self,
        mut f: impl FnMut(Tensor<B, 2>) -> Tensor<K, 2>,
    ) -> GenerationNet<K> {
        GenerationNet {
            layers: self.layers.into_iter().map(|l| l.map(&mut f)).collect(),
            v: f(self.v),
            c: self.c.map(&mut f),
            state: self.state.into_iter().map(&mut f).collect(),
        }
    }

    /// The net on an autodiff backend's inner backend (generation records no graph).
    pub(crate) fn inner(self) -> GenerationNet<B::InnerBackend>
    where
        B: AutodiffBackend,
    {
        self.map(|t| t.inner())
    }
}

/// Runs `config.steps` free-running steps of `net` where the backend has a generation kernel:
/// the tokens of every stream, drawn as [`crate::sample::generate`] draws them (stream `i` from
/// its own generator seeded `config.seed + i`). `None` where there is no kernel (the caller runs
/// the generic loop).
pub(crate) fn fused_generate<B: Backend>(
    net: GenerationNet<B>,
    config: &GenerateConfig,
) -> Option<Result<Vec<Vec<usize>>>> {
    struct Op<'a, B: Backend>(GenerationNet<B>, &'a GenerateConfig);

    impl<B: Backend> FusedOp<B> for Op<'_, B> {
        type Output = Option<Result<Vec<Vec<usize>>>>;

        fn fused<K: Kernels>(self, to: Retype<B, K>) -> Self::Output {
            K::fused_generate(self.0.map(|t| super::tensor(to.float(t))), self.1)
        }

        fn unfused(self) -> Self::Output {
            None
        }
    }

    dispatch(Op(net, config))
}
