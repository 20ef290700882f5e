//! The token input `U[ids] + b` on host memory: one pass over the rows each way, split across
//! cores.

use burn::backend::ndarray::NdArrayTensor;
use burn::tensor::TensorMetadata;

use super::{add_into, host_ids, parallel, read, tensor, HostFloat};

/// `U[ids] + b` for every token, rows split across cores.
pub(super) fn forward<F: HostFloat>(
    u: NdArrayTensor,
    b: NdArrayTensor,
    ids: NdArrayTensor,
) -> NdArrayTensor {
    let (u, [_, hidden]) = read::<F, 2>(u);
    let (b, _) = read::<F, 1>(b);
    let [batch, time] = ids.shape().dims::<2>();
    let ids = host_ids(ids);
    let mut drive = vec![F::default(); ids.len() * hidden];
    let parts = parallel::parts(ids.len(), hidden);
    let work: Vec<_> = parallel::chunks_mut(&mut drive, &parts, hidden)
        .into_iter()
        .zip(&parts)
        .collect();
    parallel::run(work, |(drive, part)| {
        for (row, &id) in drive.chunks_exact_mut(hidden).zip(&ids[part.clone()]) {
            let u_row = &u[id * hidden..(id + 1) * hidden];
            row.iter_mut()
                .zip(u_row.iter().zip(b.iter()))
                .for_each(|(d, (&u, &b))| *d = u + b);
        }
    });
    tensor::<F, 3>(drive, [batch, time, hidden])
}

/// `[∂U, ∂b]` of the token input, rows split across cores (each part scatter-adds into its
/// own `∂U`; the parts are summed).
pub(super) fn backward<F: HostFloat>(
    grad: NdArrayTensor,
    ids: NdArrayTensor,
    vocab: usize,
) -> [NdArrayTensor; 2] {
    let (grad, [_, _, hidden]) = read::<F, 3>(grad);
    let ids = host_ids(ids);
    let parts = parallel::parts(ids.len(), hidden);
    let sums = parallel::run(parts, |part| {
        let (mut d_u, mut d_b) = (
            vec![F::default(); vocab * hidden],
            vec![F::default(); hidden],
        );
        let rows = grad[part.start * hidden..part.end * hidden].chunks_exact(hidden);
        for (row, &id) in rows.zip(&ids[part]) {
            let d_u_row = &mut d_u[id * hidden..(id + 1) * hidden];
            for ((du, db), &g) in d_u_row.iter_mut().zip(d_b.iter_mut()).zip(row) {
                *du = *du + g;
                *db = *db + g;
            }
        }
        (d_u, d_b)
    });
    let mut sums = sums.into_iter();
    let (mut d_u, mut d_b) = sums.next().expect("at least one part");
    for (part_u, part_b) in sums {
        add_into(&mut d_u, &part_u);
        add_into(&mut d_b, &part_b);
    }
    [
        tensor::<F, 2>(d_u, [vocab, hidden]),
        tensor::<F, 1>(d_b, [hidden]),
    ]
}
