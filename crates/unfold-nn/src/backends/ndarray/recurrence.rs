//! The recurrence on host memory: one `[rows, hidden]` GEMM per step on the contiguous
//! `[batch, time, hidden]` buffers, written in place with strides, so a step allocates
//! nothing; the batch's rows split across cores.

use std::ops::Range;

use burn::backend::ndarray::NdArrayTensor;

use super::math::Prepared as _;
use super::{add_into, parallel, read, take, tensor, HostFloat};
use crate::nonlinearity::Nonlinearity;
use crate::recurrence::Steps;

/// The forward loop: `h(t) = act(drive(t) + h(t-1) W)`, one `[rows, hidden]` GEMM per step,
/// the batch's rows split across cores ([`parallel`]).
pub(super) fn forward<F: HostFloat>(
    drive: NdArrayTensor,
    w: NdArrayTensor,
    h0: NdArrayTensor,
    steps: &Steps,
    act: Nonlinearity,
) -> NdArrayTensor {
    let (mut states, dims) = take::<F, 3>(drive); // the drive is overwritten in place
    let (w, _) = read::<F, 2>(w);
    let (h0, _) = read::<F, 2>(h0);
    let [batch, time, hidden] = dims;
    let parts = parallel::parts(batch, time * hidden * hidden);
    forward_parts(&mut states, &h0, &w, steps, act, &parts);
    tensor::<F, 3>(states, dims)
}

/// The forward loop, each of `parts` (ranges of batch rows) on its own thread.
fn forward_parts<F: HostFloat>(
    states: &mut [F],
    h0: &[F],
    w: &[F],
    steps: &Steps,
    act: Nonlinearity,
    parts: &[Range<usize>],
) {
    let hidden = w.len().isqrt();
    let w = F::prepare(hidden, hidden, w, hidden, 1); // once per pass, read at every step
    let chunks = parallel::chunks_mut(states, parts, steps.time * hidden);
    let rows: Vec<_> = parts.iter().cloned().zip(chunks).collect();
    parallel::run(rows, |(rows, states)| {
        let h0 = &h0[rows.start * hidden..rows.end * hidden];
        forward_rows(states, h0, &w, rows.start, steps, act);
    });
}

/// The forward loop over rows `first_row..` of the batch: `states` is their `[rows, time,
/// hidden]` drive, overwritten with the states.
fn forward_rows<F: HostFloat>(
    states: &mut [F],
    h0: &[F],
    w: &F::Prepared,
    first_row: usize,
    steps: &Steps,
    act: Nonlinearity,
) {
    let (hidden, _) = w.dims(); // W is [hidden, hidden]
    let rows = h0.len().checked_div(hidden).unwrap_or(0);
    let row = steps.time * hidden; // stride between sequences in the [rows, time, hidden] buffer
    let mut prev = h0.to_vec(); // h(t-1), [rows, hidden]
    for t in steps.order() {
        let at = t * hidden;
        // h(t) ← drive(t) + h(t-1) W, in place over the drive.
        F::gemm_prepared(rows, &prev, hidden, 1, w, true, &mut states[at..], row);
        for (b, prev_b) in prev.chunks_exact_mut(hidden).enumerate() {
            let h_b = &mut states[b * row + at..b * row + at + hidden];
            if steps.is_valid(first_row + b, t) {
                F::activate(h_b, act);
                prev_b.copy_from_slice(h_b);
            } else {
                h_b.copy_from_slice(prev_b); // past its end the row holds its state
            }
        }
    }
}

/// BPTT: `δa(t) = act'(h(t)) ⊙ (∂L/∂h(t) + δa(t+1) Wᵀ)`, then `∂W = Σ_t h(t-1)ᵀ δa(t)`; the
/// batch's rows split across cores, each group adding its own part of `∂W`.
/// Returns `[∂drive, ∂W, ∂h(0)]`.
pub(super) fn backward<F: HostFloat>(
    grad: NdArrayTensor,
    states: NdArrayTensor,
    w: NdArrayTensor,
    h0: NdArrayTensor,
    steps: &Steps,
    act: Nonlinearity,
) -> [NdArrayTensor; 3] {
    let (mut da, dims) = take::<F, 3>(grad); // ∂L/∂h is overwritten with δa in place
    let (states, _) = read::<F, 3>(states);
    let (w, _) = read::<F, 2>(w);
    let (h0, _) = read::<F, 2>(h0);
    let [batch, time, hidden] = dims;
    let parts = parallel::parts(batch, 2 * time * hidden * hidden);
    let (d_w, d_h0) = backward_parts(&mut da, &states, &h0, &w, steps, act, &parts);
    [
        tensor::<F, 3>(da, dims),
        tensor::<F, 2>(d_w, [hidden, hidden]),
        tensor::<F, 2>(d_h0, [batch, hidden]),
    ]
}

/// BPTT, each of `parts` (ranges of batch rows) on its own thread: overwrites `da` (`∂L/∂h` on
/// entry) with `δa` and returns `(∂W, ∂h(0))`.
fn backward_parts<F: HostFloat>(
    da: &mut [F],
    states: &[F],
    h0: &[F],
    w: &[F],
    steps: &Steps,
    act: Nonlinearity,
    parts: &[Range<usize>],
) -> (Vec<F>, Vec<F>) {
    let hidden = w.len().isqrt();
    let w_t = F::prepare(hidden, hidden, w, 1, hidden); // Wᵀ, once per pass
    let row = steps.time * hidden;
    let chunks = parallel::chunks_mut(da, parts, row);
    let rows: Vec<_> = parts.iter().cloned().zip(chunks).collect();
    let results = parallel::run(rows, |(rows, da)| {
        let states = &states[rows.start * row..rows.end * row];
        let h0 = &h0[rows.start * hidden..rows.end * hidden];
        backward_rows(da, states, h0, &w_t, rows.start, steps, act)
    });

    let mut d_h0 = Vec::with_capacity(h0.len());
    let mut d_w = vec![F::default(); hidden * hidden];
    for (carry, part_d_w) in results {
        d_h0.extend_from_slice(&carry);
        add_into(&mut d_w, &part_d_w);
    }
    (d_w, d_h0)
}

/// BPTT over rows `first_row..` of the batch: `da` holds their `∂L/∂h` and is overwritten with
/// `δa`. Returns their `∂h(0)` and their part of `∂W`.
fn backward_rows<F: HostFloat>(
    da: &mut [F],
    states: &[F],
    h0: &[F],
    w_t: &F::Prepared,
    first_row: usize,
    steps: &Steps,
    act: Nonlinearity,
) -> (Vec<F>, Vec<F>) {
    let (hidden, _) = w_t.dims(); // Wᵀ is [hidden, hidden]
    let rows = h0.len().checked_div(hidden).unwrap_or(0);
    let row = steps.time * hidden;
    let order = steps.order();
    let mut carry = vec![F::default(); rows * hidden]; // δa(t+1) Wᵀ: the δh from later steps
    let mut next = vec![F::default(); rows * hidden];
    for &t in order.iter().rev() {
        let at = t * hidden;
        for (b, carry_b) in carry.chunks_exact_mut(hidden).enumerate() {
            let da_b = &mut da[b * row + at..b * row + at + hidden];
            if steps.is_valid(first_row + b, t) {
                F::activation_backward(
                    da_b,
                    carry_b,
                    &states[b * row + at..b * row + at + hidden],
                    act,
                );
            } else {
                // A held row has no δa and passes δh on to h(t-1).
                carry_b.iter_mut().zip(da_b.iter_mut()).for_each(|(c, d)| {
                    *c = *c + *d;
                    *d = F::default();
                });
            }
        }
        // next ← δa(t) Wᵀ; held rows keep their δh.
        F::gemm_prepared(rows, &da[at..], row, 1, w_t, false, &mut next, hidden);
        for b in (0..rows).filter(|&b| !steps.is_valid(first_row + b, t)) {
            next[b * hidden..(b + 1) * hidden]
                .copy_from_slice(&carry[b * hidden..(b + 1) * hidden]);
        }
        std::mem::swap(&mut carry, &mut next);
    }

    // ∂W = Σ_t h(t-1)ᵀ δa(t), h(t-1) being the state one step earlier in processing order.
    // In the [rows·time, hidden] buffers that is the row just before (just after, reversed),
    // except at each sequence's first step, where it is h(0). So: one product of δa with the
    // states shifted by a row, then a rank-`rows` correction that swaps in h(0) at the first
    // steps — rather than copying the states into a shifted buffer (a memset and a memcpy of
    // the whole [rows, time, hidden] block per pass).
    let tokens = rows * steps.time;
    let (first_step, states_from, da_from) = if steps.reverse {
        (steps.time - 1, 1, 0)
    } else {
        (0, 0, 1)
    };
    let mut d_w = vec![F::default(); hidden * hidden];
    if tokens > 1 {
        F::gemm(
            hidden,
            tokens - 1,
            hidden,
            &states[states_from * hidden..],
            1,
            hidden,
            &da[da_from * hidden..],
            hidden,
            1,
            F::default(),
            &mut d_w,
            hidden,
        );
    }
    // fix(b) = h(0)(b) − the row the shifted product paired with δa(b, first step) (none for
    // the first row forward, the last row reversed).
    let mut fix = h0.to_vec();
    for (b, fix_b) in fix.chunks_exact_mut(hidden).enumerate() {
        let paired = match steps.reverse {
            false => b
                .checked_sub(1)
                .map(|p| (p * row) + (steps.time - 1) * hidden),
            true => (b + 1 < rows).then(|| (b + 1) * row),
        };
        if let Some(at) = paired {
            let paired = &states[at..at + hidden];
            fix_b.iter_mut().zip(paired).for_each(|(f, &p)| *f = *f - p);
        }
    }
    F::gemm(
        hidden,
        rows,
        hidden,
        &fix,
        1,
        hidden,
        &da[first_step * hidden..],
        row,
        1,
        F::ONE,
        &mut d_w,
        hidden,
    );
    (carry, d_w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of 7 rows with lengths 1..=7 (some held past their end), `[7, 9, 16]`.
    fn problem(reverse: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Steps) {
        let (batch, time, hidden) = (7, 9, 16);
        let value = |i: usize, scale: f32| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * scale;
        let drive = (0..batch * time * hidden).map(|i| value(i, 2.0)).collect();
        let grad = (0..batch * time * hidden)
            .map(|i| value(i + 3, 1.0))
            .collect();
        let w = (0..hidden * hidden).map(|i| value(i + 1, 0.5)).collect();
        let h0 = (0..batch * hidden).map(|i| value(i + 2, 1.0)).collect();
        let lengths = Some((0..batch).map(|b| b % time + 1).collect());
        let steps = Steps {
            time,
            reverse,
            lengths,
        };
        (drive, grad, w, h0, steps)
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one part holding every row, on purpose
    fn rows_split_across_threads_give_the_single_thread_result() {
        for (reverse, act) in [false, true]
            .into_iter()
            .flat_map(|r| [(r, Nonlinearity::Tanh), (r, Nonlinearity::Relu)])
        {
            let (drive, grad, w, h0, steps) = problem(reverse);
            let (one, split) = ([0..7], [0..2, 2..3, 3..7]);

            let (mut states_one, mut states_split) = (drive.clone(), drive);
            forward_parts(&mut states_one, &h0, &w, &steps, act, &one);
            forward_parts(&mut states_split, &h0, &w, &steps, act, &split);
            assert_eq!(
                states_one, states_split,
                "rows are independent: identical states"
            );

            let (mut da_one, mut da_split) = (grad.clone(), grad);
            let (d_w_one, d_h0_one) =
                backward_parts(&mut da_one, &states_one, &h0, &w, &steps, act, &one);
            let (d_w_split, d_h0_split) =
                backward_parts(&mut da_split, &states_one, &h0, &w, &steps, act, &split);
            assert_eq!(da_one, da_split);
            assert_eq!(d_h0_one, d_h0_split);
            // ∂W adds the parts' sums: equal up to the order of the additions.
            for (a, b) in d_w_one.iter().zip(&d_w_split) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "∂W {a} vs {b}");
            }
        }
    }
}
