//! Tensor layouts that Burn 0.21's ndarray backend handles slowly, and the equivalent forms
//! the models use instead. Every backend computes the same values either way.

use burn::tensor::{backend::Backend, Tensor};

/// `x W + b` for `x` of any rank `[..., n]` (`W` `[n, m]`), as one `[rows, n] × [n, m]`
/// product over every row of `x`.
///
/// Burn 0.21's `linear` (and `matmul`) of a `[batch, time, n]` tensor broadcasts `W` to
/// `[1, n, m]`: the forward pass runs `batch` separate `[time, n] × [n, m]` products, and `∂W`
/// is `batch` products into a `[batch, n, m]` tensor summed afterwards. With the leading
/// dimensions folded into rows, each of the three products (forward, `∂x`, `∂W`) is one large
/// GEMM. Used by every time-distributed layer: the readout, a dense input's `x U`, a dense
/// fed-back `r W`.
pub(crate) fn linear_rows<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    w: Tensor<B, 2>,
    b: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    if D <= 2 {
        return burn::tensor::module::linear(x, w, b);
    }
    let mut dims = x.dims();
    let rows = dims[..D - 1].iter().product();
    let x = x.reshape([rows, dims[D - 1]]);
    dims[D - 1] = w.dims()[1];
    burn::tensor::module::linear(x, w, b).reshape(dims)
}

/// `parts` joined along `dim` (every other dimension equal), as `Tensor::cat`.
///
/// burn-ndarray joins along an inner dimension by appending, which leaves that dimension the
/// outermost in memory, then copies the result into the standard layout element by element:
/// measured, the two joins of a bidirectional layer's states were a fifth of its training
/// step. Written instead as slices assigned into zeros (two contiguous copies). Under
/// autodiff the backward of each assignment after the first copies the whole gradient once,
/// so this is for a few parts, or for many off the graph (a backward pass's own tensors).
pub(crate) fn concat<B: Backend, const D: usize>(
    parts: Vec<Tensor<B, D>>,
    dim: usize,
) -> Tensor<B, D> {
    if dim == 0 || parts.len() < 2 {
        return Tensor::cat(parts, dim);
    }
    let mut dims = parts[0].dims();
    dims[dim] = parts.iter().map(|part| part.dims()[dim]).sum();
    let first = &parts[0];
    let mut joined = Tensor::zeros(dims, (&first.device(), first.dtype()));
    let mut start = 0;
    for part in parts {
        let width = part.dims()[dim];
        let ranges: [std::ops::Range<usize>; D] = std::array::from_fn(|d| match d == dim {
            true => start..start + width,
            false => 0..dims[d],
        });
        joined = joined.slice_assign(ranges, part);
        start += width;
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    type TestBackend = burn::backend::NdArray<f64>;
    type TestAutodiff = burn::backend::Autodiff<TestBackend>;

    fn random<const D: usize>(dims: [usize; D]) -> Tensor<TestAutodiff, D> {
        Tensor::random(dims, Distribution::Normal(0.0, 1.0), &Default::default()).require_grad()
    }

    fn assert_same<const D: usize>(got: Tensor<TestAutodiff, D>, want: Tensor<TestAutodiff, D>) {
        let (got, want): (TensorData, TensorData) = (got.into_data(), want.into_data());
        got.assert_approx_eq::<f64>(&want, Tolerance::absolute(1e-12));
    }

    #[test]
    fn concat_equals_burn_cat_in_values_and_gradients() {
        for dim in 0..3 {
            let mut widths = [4, 5, 6];
            let parts: Vec<_> = [2, 3, 1]
                .into_iter()
                .map(|width| {
                    widths[dim] = width;
                    random(widths)
                })
                .collect();
            let mut dims = [4, 5, 6];
            dims[dim] = 6;
            let weights = random(dims).detach();
            let ours = concat(parts.clone(), dim);
            let burns = Tensor::cat(parts.clone(), dim);
            assert_eq!(ours.dims(), burns.dims());
            assert_same(ours.clone(), burns.clone());
            // Gradients of a weighted sum reach every part the same way.
            let ours_grads = (ours * weights.clone()).sum().backward();
            let burns_grads = (burns * weights).sum().backward();
            for part in &parts {
                let (a, b) = (
                    part.grad(&ours_grads).unwrap(),
                    part.grad(&burns_grads).unwrap(),
                );
                a.into_data()
                    .assert_approx_eq::<f64>(&b.into_data(), Tolerance::absolute(1e-12));
            }
        }
    }

    #[test]
    fn linear_rows_equals_the_broadcast_linear_in_values_and_gradients() {
        let (x, w, b) = (random([3, 4, 5]), random([5, 2]), random([2]));
        let ours = linear_rows(x.clone(), w.clone(), Some(b.clone()));
        let burns = burn::tensor::module::linear(x.clone(), w.clone(), Some(b.clone()));
        assert_eq!(ours.dims(), [3, 4, 2]);
        assert_same(ours.clone(), burns.clone());
        let ours_grads = (ours.clone() * ours).sum().backward();
        let burns_grads = (burns.clone() * burns).sum().backward();
        let same = |a: TensorData, b: TensorData| {
            a.assert_approx_eq::<f64>(&b, Tolerance::absolute(1e-12))
        };
        let grad_data = |grads| {
            [
                x.grad(grads).unwrap().into_data(),
                w.grad(grads).unwrap().into_data(),
                b.grad(grads).unwrap().into_data(),
            ]
        };
        for (ours, burns) in grad_data(&ours_grads)
            .into_iter()
            .zip(grad_data(&burns_grads))
        {
            same(ours, burns);
        }
    }
}
