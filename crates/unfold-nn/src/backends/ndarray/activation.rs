//! A nonlinearity elementwise on host memory, split across cores; its backward pass from the
//! saved output.

use burn::backend::ndarray::NdArrayTensor;

use super::{parallel, read_any, take_any, HostFloat};
use crate::nonlinearity::Nonlinearity;

/// Elements per part when an elementwise pass is split across cores.
const ELEMENTWISE_WORK: usize = 64;

/// `act(x)` for a tensor of any rank, in place over `x`'s buffer where it owns it.
pub(super) fn forward<F: HostFloat>(x: NdArrayTensor, act: Nonlinearity) -> NdArrayTensor {
    let (mut values, dims) = take_any::<F>(x);
    let parts = parallel::parts(values.len(), ELEMENTWISE_WORK);
    parallel::run(parallel::chunks_mut(&mut values, &parts, 1), |chunk| {
        F::activate(chunk, act)
    });
    F::into_ndarray(values, &dims)
}

/// `act'(y) ⊙ grad` for tensors of any rank (the same shape), in place over `grad`.
pub(super) fn backward<F: HostFloat>(
    y: NdArrayTensor,
    grad: NdArrayTensor,
    act: Nonlinearity,
) -> NdArrayTensor {
    let (mut grad, dims) = take_any::<F>(grad);
    let (y, _) = read_any::<F>(y);
    let parts = parallel::parts(grad.len(), ELEMENTWISE_WORK);
    let work: Vec<_> = parallel::chunks_mut(&mut grad, &parts, 1)
        .into_iter()
        .zip(&parts)
        .collect();
    parallel::run(work, |(grad, part)| {
        F::activation_grad(grad, &y[part.clone()], act)
    });
    F::into_ndarray(grad, &dims)
}
