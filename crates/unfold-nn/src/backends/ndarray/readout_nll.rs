//! The fused readout loss on host memory, for the ndarray backend: one GEMM for the logits of
//! all rows, the log-softmax and `G = w ⊙ (softmax − onehot)` written in place over the logits
//! (one `[rows, classes]` buffer in all), and one GEMM each for `∂h` and `∂V`.

use burn::backend::ndarray::NdArrayTensor;

use super::{add_into, host_ids, parallel, read, take, tensor, transposed, HostFloat};
use crate::ops::NllRows;

/// The loss `[1]` and, with `with_grad`, `G` `[rows, classes]`.
pub(super) fn forward<F: HostFloat>(
    h: NdArrayTensor,
    v: NdArrayTensor,
    c: NdArrayTensor,
    targets: NdArrayTensor,
    rows: &NllRows,
    with_grad: bool,
) -> (NdArrayTensor, Option<NdArrayTensor>) {
    let (h, [batch, time, hidden]) = read::<F, 3>(h);
    let n = batch * time;
    let (v, [_, classes]) = read::<F, 2>(v);
    let (c, _) = read::<F, 1>(c);
    let targets = host_ids(targets);

    // Rows split across cores; each part writes its own rows of `o` and sums its own loss.
    let mut o = vec![F::default(); n * classes];
    let parts = parallel::parts(n, hidden * classes);
    let chunks = parallel::chunks_mut(&mut o, &parts, classes);
    let work: Vec<_> = parts.into_iter().zip(chunks).collect();
    let losses = parallel::run(work, |(part, o)| {
        let h = &h[part.start * hidden..part.end * hidden];
        let targets = &targets[part.clone()];
        softmax_nll(
            o,
            h,
            &v,
            &c,
            targets,
            |r| rows.weight(part.start + r),
            with_grad,
        )
    });
    let total: f64 = losses.into_iter().sum();
    let loss = tensor::<F, 1>(vec![F::from_elem(total)], [1]);
    let g = with_grad.then(|| tensor::<F, 2>(o, [n, classes]));
    (loss, g)
}

/// For a block of rows: `o = c + h V`, then each row's weighted `-log softmax(o)[y]`, summed
/// (in f64: thousands of rows), and with `with_grad` `o` overwritten by
/// `G = w ⊙ (softmax(o) − onehot(y))`.
fn softmax_nll<F: HostFloat>(
    o: &mut [F],
    h: &[F],
    v: &[F],
    c: &[F],
    targets: &[usize],
    weight: impl Fn(usize) -> f64,
    with_grad: bool,
) -> f64 {
    let (classes, rows) = (c.len(), targets.len());
    let hidden = v.len() / classes.max(1);
    for row in o.chunks_exact_mut(classes) {
        row.copy_from_slice(c);
    }
    F::gemm(
        rows,
        hidden,
        classes,
        h,
        hidden,
        1,
        v,
        classes,
        1,
        F::ONE,
        o,
        classes,
    );

    let mut total = 0.0f64;
    for (r, row) in o.chunks_exact_mut(classes).enumerate() {
        let w = weight(r);
        if w == 0.0 {
            row.fill(F::default()); // padding: no loss, no gradient
            continue;
        }
        let y = targets[r];
        let max = row
            .iter()
            .copied()
            .fold(row[0], |m, x| if x > m { x } else { m });
        let target = row[y] - max;
        row.iter_mut().for_each(|x| *x = *x - max);
        F::exp_in_place(row);
        let sum = row.iter().fold(F::default(), |sum, &x| sum + x);
        // -log softmax(o)[y] = log Σ e^{o - max} - (o_y - max)
        total += w * (sum.ln() - target).elem::<f64>();
        if with_grad {
            let scale = F::from_elem(w) / sum;
            row.iter_mut().for_each(|x| *x = *x * scale);
            row[y] = row[y] - F::from_elem(w);
        }
    }
    total
}

/// `[∂h, ∂V, ∂c]` from the outer gradient `grad` `[1]` and `G`.
pub(super) fn backward<F: HostFloat>(
    grad: NdArrayTensor,
    g: NdArrayTensor,
    h: NdArrayTensor,
    v: NdArrayTensor,
) -> [NdArrayTensor; 3] {
    let (outer, _) = read::<F, 1>(grad);
    let (mut g, [n, classes]) = take::<F, 2>(g);
    let (h, [batch, time, hidden]) = read::<F, 3>(h);
    let (v, _) = read::<F, 2>(v);
    let outer = outer[0];
    let v_t = transposed(&v, classes);

    // Rows split across cores: each part writes its rows of ∂h and sums its part of ∂V, ∂c.
    let mut d_h = vec![F::default(); n * hidden];
    let parts = parallel::parts(n, 2 * hidden * classes);
    let g_chunks = parallel::chunks_mut(&mut g, &parts, classes);
    let d_h_chunks = parallel::chunks_mut(&mut d_h, &parts, hidden);
    let work: Vec<_> = parts
        .into_iter()
        .zip(g_chunks.into_iter().zip(d_h_chunks))
        .collect();
    let sums = parallel::run(work, |(part, (g, d_h))| {
        if outer != F::ONE {
            g.iter_mut().for_each(|x| *x = *x * outer);
        }
        let h = &h[part.start * hidden..part.end * hidden];
        let rows = part.len();
        // ∂h = G Vᵀ
        F::gemm(
            rows,
            classes,
            hidden,
            g,
            classes,
            1,
            &v_t,
            hidden,
            1,
            F::default(),
            d_h,
            hidden,
        );
        // ∂V = hᵀ G, ∂c = Σ_rows G, over this part's rows.
        let mut d_v = vec![F::default(); hidden * classes];
        F::gemm(
            hidden,
            rows,
            classes,
            h,
            1,
            hidden,
            g,
            classes,
            1,
            F::default(),
            &mut d_v,
            classes,
        );
        let mut d_c = vec![F::default(); classes];
        for row in g.chunks_exact(classes) {
            add_into(&mut d_c, row);
        }
        (d_v, d_c)
    });
    let mut sums = sums.into_iter();
    let (mut d_v, mut d_c) = sums.next().expect("at least one part");
    for (part_d_v, part_d_c) in sums {
        add_into(&mut d_v, &part_d_v);
        add_into(&mut d_c, &part_d_c);
    }
    [
        tensor::<F, 3>(d_h, [batch, time, hidden]),
        tensor::<F, 2>(d_v, [hidden, classes]),
        tensor::<F, 1>(d_c, [classes]),
    ]
}
