//! Sequence losses: the negative log-likelihood summed over time, with masking.
//!
//! ```text
//! L = Σ_t L(t) = -Σ_t log p_model(y(t) | x(1), …, x(t))
//! ```
//!
//! where `p_model(y(t) | …)` is entry `y(t)` of `ŷ(t) = softmax(o(t))`. Steps past a
//! sequence's length contribute nothing (and so no gradient).

use burn::tensor::activation::log_softmax;
use burn::tensor::{backend::Backend, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ops::{readout_nll, NllRows};
use crate::readout::Readout;
use crate::recurrence::{check_ids, valid_mask, validate_lengths};

/// How the per-step losses `L(t)` of a batch are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Reduction {
    /// `Σ_b Σ_t L(t)`: the textbook loss, summed over every valid step of every sequence.
    Sum,
    /// The sum divided by the number of valid steps (nats per token): what optimisers like,
    /// and what perplexity and bits-per-character are computed from.
    #[default]
    MeanPerToken,
    /// The sum divided by the number of sequences (nats per sequence).
    MeanPerSequence,
}

/// `log p(y(t) | x(1..t))` for every step, `[batch, time]`: the log-softmax of `logits`
/// `[batch, time, classes]` at the target ids `[batch, time]`. Unchecked; see [`try_sequence_nll`].
pub fn target_log_probs<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
) -> Tensor<B, 2> {
    log_softmax(logits, 2)
        .gather(2, targets.unsqueeze_dim(2))
        .squeeze_dim(2)
}

/// The sequence negative log-likelihood, reduced as asked.
///
/// - `logits`: `o(t)`, `[batch, time, classes]`.
/// - `targets`: `y(t)`, `[batch, time]`, ids in `0..classes`.
/// - `lengths`: valid steps per sequence (`1..=time`); steps after them are ignored.
pub fn try_sequence_nll<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    lengths: Option<&[usize]>,
    reduction: Reduction,
) -> Result<Tensor<B, 1>> {
    let [batch, time, classes] = logits.dims();
    let tokens = check_targets(&logits.dims(), &targets, classes, lengths)?;
    let device = logits.device();
    let log_p = target_log_probs(logits, targets);
    let total = match lengths {
        None => log_p.sum(),
        Some(lengths) => {
            let padding = valid_mask::<B>(lengths, time, &device).bool_not();
            log_p.mask_fill(padding, 0.0).sum()
        }
    };
    let nll = total.neg();
    Ok(match reduction {
        Reduction::Sum => nll,
        Reduction::MeanPerToken => nll / tokens as f64,
        Reduction::MeanPerSequence => nll / batch as f64,
    })
}

/// Checks the targets `[batch, time]` (ids in `0..classes`) and lengths against the shape
/// `logits_dims` of what they score (`[batch, time, …]`); returns the number of valid tokens.
fn check_targets<B: Backend>(
    logits_dims: &[usize; 3],
    targets: &Tensor<B, 2, Int>,
    classes: usize,
    lengths: Option<&[usize]>,
) -> Result<usize> {
    let [batch, time, _] = *logits_dims;
    if batch == 0 || time == 0 {
        return Err(Error::Empty {
            arg: "logits",
            what: format!("shape {logits_dims:?} has no steps"),
        });
    }
    if targets.dims() != [batch, time] {
        return Err(Error::shape(
            "targets",
            format!("[{batch}, {time}] (the logits' batch and time)"),
            &targets.dims(),
        ));
    }
    check_ids("targets", targets, classes)?;
    match lengths {
        None => Ok(batch * time),
        Some(lengths) => {
            validate_lengths(lengths, batch, time)?;
            Ok(lengths.iter().sum())
        }
    }
}

/// The sequence negative log-likelihood of the readout `o = c + V h` of `states`, as one fused
/// operation: the same value and gradients as
/// `try_sequence_nll(readout.forward(states), targets, lengths, reduction)`, without recording
/// the logits, the log-softmax and the mask as separate graph nodes (the fused readout loss of
/// [`crate::ops`]). Backends without kernels take exactly that unfused path.
///
/// - `states`: `h(t)`, `[batch, time, hidden]`.
/// - `targets`: `y(t)`, `[batch, time]`, ids in `0..readout.output_size()`.
/// - `lengths`: valid steps per sequence (`1..=time`); steps after them are ignored.
pub fn try_readout_nll<B: Backend>(
    states: Tensor<B, 3>,
    readout: &Readout<B>,
    targets: Tensor<B, 2, Int>,
    lengths: Option<&[usize]>,
    reduction: Reduction,
) -> Result<Tensor<B, 1>> {
    let [batch, time, hidden] = states.dims();
    if hidden != readout.hidden_size() {
        return Err(Error::shape(
            "states",
            format!("[batch, time, {}]", readout.hidden_size()),
            &states.dims(),
        ));
    }
    if !crate::ops::has_kernels::<B>() {
        return try_sequence_nll(readout.forward(states), targets, lengths, reduction);
    }
    let classes = readout.output_size();
    let tokens = check_targets(&states.dims(), &targets, classes, lengths)?;
    let scale = match reduction {
        Reduction::Sum => 1.0,
        Reduction::MeanPerToken => 1.0 / tokens as f64,
        Reduction::MeanPerSequence => 1.0 / batch as f64,
    };
    let rows = NllRows {
        time,
        lengths: lengths.map(<[usize]>::to_vec),
        scale,
    };
    let v = readout.v.val();
    // No bias: a constant zero `c` (untracked, so it gets no gradient).
    let c = match &readout.c {
        Some(c) => c.val(),
        None => Tensor::zeros([classes], (&v.device(), v.dtype())),
    };
    Ok(readout_nll::readout_nll(states, v, c, targets, &rows).expect("the backend has kernels"))
}

/// [`try_readout_nll`], panicking with its error message.
pub fn readout_nll<B: Backend>(
    states: Tensor<B, 3>,
    readout: &Readout<B>,
    targets: Tensor<B, 2, Int>,
    lengths: Option<&[usize]>,
    reduction: Reduction,
) -> Tensor<B, 1> {
    try_readout_nll(states, readout, targets, lengths, reduction).unwrap_or_else(|e| panic!("{e}"))
}

/// [`try_sequence_nll`], panicking with its error message.
pub fn sequence_nll<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    lengths: Option<&[usize]>,
    reduction: Reduction,
) -> Tensor<B, 1> {
    try_sequence_nll(logits, targets, lengths, reduction).unwrap_or_else(|e| panic!("{e}"))
}

/// Perplexity `e^L` of a mean loss `L` in nats per token.
pub fn perplexity(nats_per_token: f64) -> f64 {
    nats_per_token.exp()
}

/// Bits per token (bits per character for a character model): `L / ln 2`.
pub fn bits_per_token(nats_per_token: f64) -> f64 {
    nats_per_token / std::f64::consts::LN_2
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    type TestBackend = burn::backend::NdArray<f64>;

    /// `-log softmax(o)[y]` for one row, computed directly.
    fn nll_row(logits: &[f64], target: usize) -> f64 {
        let log_sum: f64 = logits.iter().map(|l| l.exp()).sum::<f64>().ln();
        log_sum - logits[target]
    }

    #[test]
    fn sum_is_the_total_of_per_step_negative_log_likelihoods() {
        let device = Default::default();
        let logits =
            Tensor::<TestBackend, 3>::random([2, 3, 4], Distribution::Normal(0.0, 2.0), &device);
        let targets_host = [[0usize, 3, 1], [2, 2, 0]];
        let targets = Tensor::<TestBackend, 2, Int>::from_data(
            TensorData::new(
                targets_host
                    .iter()
                    .flatten()
                    .map(|&y| y as i64)
                    .collect::<Vec<_>>(),
                [2, 3],
            ),
            &device,
        );
        let values = logits.to_data().to_vec::<f64>().unwrap();
        let per_step = |b: usize, t: usize| {
            nll_row(
                &values[(b * 3 + t) * 4..(b * 3 + t + 1) * 4],
                targets_host[b][t],
            )
        };
        let lengths = [3, 1];
        let expected_sum = per_step(0, 0) + per_step(0, 1) + per_step(0, 2) + per_step(1, 0);
        let loss = |reduction| {
            try_sequence_nll(logits.clone(), targets.clone(), Some(&lengths), reduction)
                .unwrap()
                .into_scalar()
        };
        assert!((loss(Reduction::Sum) - expected_sum).abs() < 1e-12);
        assert!((loss(Reduction::MeanPerToken) - expected_sum / 4.0).abs() < 1e-12);
        assert!((loss(Reduction::MeanPerSequence) - expected_sum / 2.0).abs() < 1e-12);
        let unmasked = try_sequence_nll(logits.clone(), targets.clone(), None, Reduction::Sum)
            .unwrap()
            .into_scalar();
        let all: f64 = (0..2)
            .flat_map(|b| (0..3).map(move |t| (b, t)))
            .map(|(b, t)| per_step(b, t))
            .sum();
        assert!((unmasked - all).abs() < 1e-12);
        let log_p = target_log_probs(logits, targets);
        log_p
            .slice([0..1, 1..2])
            .into_data()
            .assert_approx_eq::<f64>(
                &TensorData::new(vec![-per_step(0, 1)], [1, 1]),
                Tolerance::absolute(1e-12),
            );
    }

    #[test]
    fn uniform_prediction_costs_log_of_the_class_count() {
        let device = Default::default();
        let logits = Tensor::<TestBackend, 3>::zeros([2, 5, 65], &device);
        let targets = Tensor::<TestBackend, 2, Int>::ones([2, 5], &device);
        let nats = sequence_nll(logits, targets, None, Reduction::MeanPerToken).into_scalar();
        assert!((nats - 65f64.ln()).abs() < 1e-12);
        assert!((bits_per_token(nats) - 65f64.log2()).abs() < 1e-12);
        assert!((perplexity(nats) - 65.0).abs() < 1e-9);
    }

    #[test]
    fn bad_targets_are_named_errors() {
        let device = Default::default();
        let logits = Tensor::<TestBackend, 3>::zeros([2, 3, 4], &device);
        let wrong_shape = Tensor::<TestBackend, 2, Int>::zeros([2, 4], &device);
        let out_of_range =
            Tensor::<TestBackend, 2, Int>::from_data([[0, 1, 4], [0, 0, 0]], &device);
        let ok = Tensor::<TestBackend, 2, Int>::zeros([2, 3], &device);
        let nll = |targets, lengths: Option<&[usize]>| {
            try_sequence_nll(logits.clone(), targets, lengths, Reduction::Sum).unwrap_err()
        };
        assert!(matches!(
            nll(wrong_shape, None),
            Error::Shape { arg: "targets", .. }
        ));
        assert!(matches!(
            nll(out_of_range, None),
            Error::TokenOutOfRange {
                id: 4,
                vocab_size: 4,
                ..
            }
        ));
        assert!(matches!(nll(ok, Some(&[3, 4])), Error::Lengths { .. }));
    }
}
