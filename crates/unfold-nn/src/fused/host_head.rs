//! The fused readout loss on host memory, for the ndarray backend: one GEMM for the logits of
//! all rows, the log-softmax and `G = w ⊙ (softmax − onehot)` written in place over the logits
//! (one `[rows, classes]` buffer in all), and one GEMM each for `∂h` and `∂V`.

use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Int, Tensor};

use super::head::{generic, NllRows, ReadoutNllGrads};
use super::host::{dtype, to_backend, to_host, HostFloat};

/// The forward pass in the tensors' float type (f32 or f64; others take the generic path).
pub fn forward<B: Backend>(
    h: FloatTensor<B>,
    v: FloatTensor<B>,
    c: FloatTensor<B>,
    targets: IntTensor<B>,
    rows: &NllRows,
    with_grad: bool,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    match dtype::<B>(&h) {
        DType::F32 => forward_in::<B, f32>(h, v, c, targets, rows, with_grad),
        DType::F64 => forward_in::<B, f64>(h, v, c, targets, rows, with_grad),
        _ => generic::forward::<B>(h, v, c, targets, rows, with_grad),
    }
}

/// The backward pass in the tensors' float type (f32 or f64; others take the generic path).
pub fn backward<B: Backend>(
    grad: FloatTensor<B>,
    g: FloatTensor<B>,
    h: FloatTensor<B>,
    v: FloatTensor<B>,
) -> ReadoutNllGrads<B> {
    match dtype::<B>(&g) {
        DType::F32 => backward_in::<B, f32>(grad, g, h, v),
        DType::F64 => backward_in::<B, f64>(grad, g, h, v),
        _ => generic::backward::<B>(grad, g, h, v),
    }
}

fn forward_in<B: Backend, F: HostFloat>(
    h: FloatTensor<B>,
    v: FloatTensor<B>,
    c: FloatTensor<B>,
    targets: IntTensor<B>,
    rows: &NllRows,
    with_grad: bool,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    let (h, [n, hidden], device) = to_host::<B, F, 2>(h);
    let (v, [_, classes], _) = to_host::<B, F, 2>(v);
    let (c, _, _) = to_host::<B, F, 1>(c);
    let targets = Tensor::<B, 1, Int>::from_primitive(targets)
        .into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .expect("converted to i64");

    // o = c + h V for every row, in one product.
    let mut o = Vec::with_capacity(n * classes);
    for _ in 0..n {
        o.extend_from_slice(&c);
    }
    F::gemm(
        n,
        hidden,
        classes,
        &h,
        hidden,
        1,
        &v,
        classes,
        1,
        F::ONE,
        &mut o,
        classes,
    );

    let mut total = 0.0f64; // accumulated in f64: thousands of rows
    for (r, row) in o.chunks_exact_mut(classes).enumerate() {
        let w = rows.weight(r);
        if w == 0.0 {
            row.fill(F::default()); // padding: no loss, no gradient
            continue;
        }
        let y = targets[r] as usize;
        let max = row
            .iter()
            .copied()
            .fold(row[0], |m, x| if x > m { x } else { m });
        let target = row[y] - max;
        let mut sum = F::default();
        for x in row.iter_mut() {
            *x = (*x - max).exp();
            sum = sum + *x;
        }
        // -log softmax(o)[y] = log Σ e^{o - max} - (o_y - max)
        total += w * (sum.ln() - target).elem::<f64>();
        if with_grad {
            let scale = F::from_elem(w) / sum;
            row.iter_mut().for_each(|x| *x = *x * scale);
            row[y] = row[y] - F::from_elem(w);
        }
    }
    let loss = to_backend::<B, F, 1>(vec![F::from_elem(total)], [1], &device);
    let g = with_grad.then(|| to_backend::<B, F, 2>(o, [n, classes], &device));
    (loss, g)
}

fn backward_in<B: Backend, F: HostFloat>(
    grad: FloatTensor<B>,
    g: FloatTensor<B>,
    h: FloatTensor<B>,
    v: FloatTensor<B>,
) -> ReadoutNllGrads<B> {
    let (outer, _, _) = to_host::<B, F, 1>(grad);
    let (mut g, [n, classes], device) = to_host::<B, F, 2>(g);
    let (h, [_, hidden], _) = to_host::<B, F, 2>(h);
    let (v, _, _) = to_host::<B, F, 2>(v);
    let outer = outer[0];
    if outer != F::ONE {
        g.iter_mut().for_each(|x| *x = *x * outer);
    }
    // ∂h = G Vᵀ (Vᵀ: V read with swapped strides).
    let mut d_h = vec![F::default(); n * hidden];
    F::gemm(
        n,
        classes,
        hidden,
        &g,
        classes,
        1,
        &v,
        1,
        classes,
        F::default(),
        &mut d_h,
        hidden,
    );
    // ∂V = hᵀ G over all rows.
    let mut d_v = vec![F::default(); hidden * classes];
    F::gemm(
        hidden,
        n,
        classes,
        &h,
        1,
        hidden,
        &g,
        classes,
        1,
        F::default(),
        &mut d_v,
        classes,
    );
    let mut d_c = vec![F::default(); classes];
    for row in g.chunks_exact(classes) {
        d_c.iter_mut().zip(row).for_each(|(d, &x)| *d = *d + x);
    }
    ReadoutNllGrads {
        h: to_backend::<B, F, 2>(d_h, [n, hidden], &device),
        v: to_backend::<B, F, 2>(d_v, [hidden, classes], &device),
        c: to_backend::<B, F, 1>(d_c, [classes], &device),
    }
}
