//! The teacher-forced loss of the output-to-hidden model is the maximum-likelihood
//! decomposition of the joint distribution of the outputs:
//!
//! ```text
//! log p(y(1), …, y(τ) | x) = Σ_t log p(y(t) | y(1), …, y(t-1), x)
//! ```
//!
//! Checked three ways against the model's teacher-forced per-step log-probabilities:
//! - a plain-Rust chain of the conditionals (no Burn), step by step from the parameters;
//! - enumeration: over every one of the `K^τ` output sequences the teacher-forced joint
//!   probabilities sum to 1 (a distribution), and summing out the later steps leaves the
//!   first step's softmax;
//! - ancestral sampling: running the model free with sampled feedback draws each sequence with
//!   the probability teacher forcing assigns it.

use burn::module::{Initializer, Param};
use burn::tensor::activation::softmax;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use unfold_nn::feedback::{Feedback, Forcing, JordanRnn, JordanRnnConfig};
use unfold_nn::loss::target_log_probs;
use unfold_nn::{sequence_nll, Reduction, SequenceModel, UnrollOptions};

type B = burn::backend::NdArray<f64>;

fn flat<const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().into_vec::<f64>().unwrap()
}

fn model(input: usize, hidden: usize, classes: usize) -> JordanRnn<B> {
    let device = Default::default();
    let mut model = JordanRnnConfig::new(input, hidden, classes)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: 1.0,
        })
        .init::<B>(&device);
    model.start = Some(Param::from_tensor(Tensor::random(
        [classes],
        Distribution::Normal(0.0, 1.0),
        &device,
    )));
    model.b = Some(Param::from_tensor(Tensor::random(
        [hidden],
        Distribution::Normal(0.0, 0.5),
        &device,
    )));
    model
}

/// Every sequence in `0..classes` of length `time`, in lexicographic order.
fn all_sequences(classes: usize, time: usize) -> Vec<Vec<i64>> {
    (0..classes.pow(time as u32))
        .map(|mut n| {
            let mut seq = vec![0; time];
            for slot in seq.iter_mut().rev() {
                *slot = (n % classes) as i64;
                n /= classes;
            }
            seq
        })
        .collect()
}

/// `log p(y | x)` by the chain rule, in plain Rust: `h(t) = tanh(b + x(t) U + r(t-1) W)`,
/// `o(t) = c + h(t) V`, `log p(y(t) | y(<t), x) = o(t)[y(t)] - log Σ_k e^{o(t)[k]}`, with
/// `r(0)` the start vector and `r(t-1)` the one-hot `y(t-1)` after it.
fn chained_log_likelihood(model: &JordanRnn<B>, x: &[Vec<f64>], y: &[i64]) -> f64 {
    let (f, h, k) = (model.input_size(), model.hidden_size(), model.output_size());
    let u = flat(model.u.val());
    let w = flat(model.w.val());
    let b = flat(model.b.as_ref().unwrap().val());
    let start = flat(model.start.as_ref().unwrap().val());
    let v = flat(model.readout.v.val());
    let c = flat(model.readout.c.as_ref().unwrap().val());
    let mut total = 0.0;
    for t in 0..y.len() {
        let r: Vec<f64> = if t == 0 {
            start.clone()
        } else {
            (0..k)
                .map(|j| if j as i64 == y[t - 1] { 1.0 } else { 0.0 })
                .collect()
        };
        let hidden: Vec<f64> = (0..h)
            .map(|j| {
                let a = b[j]
                    + (0..f).map(|i| x[t][i] * u[i * h + j]).sum::<f64>()
                    + (0..k).map(|i| r[i] * w[i * h + j]).sum::<f64>();
                a.tanh()
            })
            .collect();
        let o: Vec<f64> = (0..k)
            .map(|j| c[j] + (0..h).map(|i| hidden[i] * v[i * k + j]).sum::<f64>())
            .collect();
        let log_norm = o.iter().map(|l| l.exp()).sum::<f64>().ln();
        total += o[y[t] as usize] - log_norm;
    }
    total
}

/// The teacher-forced joint log-likelihood of each row of `targets`, all with input `x`.
fn teacher_forced_joint(model: &JordanRnn<B>, x: &Tensor<B, 3>, targets: &[Vec<i64>]) -> Vec<f64> {
    let device = Default::default();
    let (rows, time) = (targets.len(), targets[0].len());
    let data: Vec<i64> = targets.iter().flatten().copied().collect();
    let y = Tensor::<B, 2, Int>::from_data(TensorData::new(data, [rows, time]), &device);
    let [_, _, f] = x.dims();
    let x = x.clone().expand([rows, time, f]);
    let logits = model
        .forward(x, &UnrollOptions::new().teacher_forced(y.clone()))
        .logits;
    flat(target_log_probs(logits, y).sum_dim(1))
}

#[test]
fn teacher_forced_log_probs_sum_to_the_joint_log_likelihood() {
    let device = Default::default();
    let (classes, time) = (3, 4);
    let model = model(2, 5, classes);
    let x = Tensor::<B, 3>::random([1, time, 2], Distribution::Normal(0.0, 1.0), &device);
    let x_host: Vec<Vec<f64>> = flat(x.clone()).chunks(2).map(<[f64]>::to_vec).collect();
    let sequences = all_sequences(classes, time);
    let joint = teacher_forced_joint(&model, &x, &sequences);

    // The chain of conditionals, computed by hand.
    for (y, &got) in sequences.iter().zip(&joint) {
        let expected = chained_log_likelihood(&model, &x_host, y);
        assert!((got - expected).abs() < 1e-12, "{y:?}: {got} vs {expected}");
    }
    // A distribution over all K^τ sequences: the probabilities sum to one.
    let total: f64 = joint.iter().map(|l| l.exp()).sum();
    assert!((total - 1.0).abs() < 1e-12, "Σ_y p(y | x) = {total}");
    // Summing out y(2..τ) leaves p(y(1) | x), the first step's softmax.
    let first = model
        .forward(
            x.clone(),
            &UnrollOptions::new().teacher_forced(Tensor::zeros([1, time], &device)),
        )
        .logits
        .slice([0..1, 0..1, 0..classes])
        .reshape([1, classes]);
    let first = flat(softmax(first, 1));
    let per_first = sequences.len() / classes;
    for k in 0..classes {
        let marginal: f64 = joint[k * per_first..(k + 1) * per_first]
            .iter()
            .map(|l| l.exp())
            .sum();
        assert!(
            (marginal - first[k]).abs() < 1e-12,
            "p(y(1) = {k}): {marginal} vs {}",
            first[k]
        );
    }
    // The summed sequence loss is the negative joint log-likelihood of the batch.
    let rows = sequences.len();
    let data: Vec<i64> = sequences.iter().flatten().copied().collect();
    let y = Tensor::<B, 2, Int>::from_data(TensorData::new(data, [rows, time]), &device);
    let logits = model
        .forward(
            x.expand([rows, time, 2]),
            &UnrollOptions::new().teacher_forced(y.clone()),
        )
        .logits;
    let loss = sequence_nll(logits, y, None, Reduction::Sum).into_scalar();
    let expected = -joint.iter().sum::<f64>();
    assert!((loss - expected).abs() < 1e-9, "{loss} vs {expected}");
}

#[test]
fn free_running_samples_draw_each_sequence_with_its_teacher_forced_probability() {
    let device = Default::default();
    let (classes, time) = (2, 3);
    let model = model(2, 4, classes);
    let x = Tensor::<B, 3>::random([1, time + 1, 2], Distribution::Normal(0.0, 1.0), &device);
    // Ancestral sampling: run free for τ + 1 steps, feeding back a draw from each step's
    // softmax; the draws y(1..τ) are the fed-back vectors of steps 2..τ+1.
    let draws = 40_000;
    let fed = model
        .forward(
            x.clone().expand([draws, time + 1, 2]),
            &UnrollOptions::new().with_forcing(Forcing::FreeRunning {
                feedback: Feedback::Sample,
                seed: 7,
            }),
        )
        .fed_back
        .unwrap()
        .slice([0..draws, 1..time + 1, 0..classes])
        .argmax(2)
        .reshape([draws, time]);
    let drawn: Vec<i64> = fed.into_data().convert::<i64>().into_vec::<i64>().unwrap();
    let sequences = all_sequences(classes, time);
    let mut counts = vec![0usize; sequences.len()];
    for seq in drawn.chunks(time) {
        let index = seq.iter().fold(0, |n, &y| n * classes + y as usize);
        counts[index] += 1;
    }
    let x_first = x.slice([0..1, 0..time, 0..2]);
    let joint = teacher_forced_joint(&model, &x_first, &sequences);
    for ((seq, count), log_p) in sequences.iter().zip(&counts).zip(&joint) {
        let freq = *count as f64 / draws as f64;
        let p = log_p.exp();
        // 4 standard errors of a frequency from 40 000 draws.
        let tolerance = 4.0 * (p * (1.0 - p) / draws as f64).sqrt() + 1e-3;
        assert!(
            (freq - p).abs() < tolerance,
            "{seq:?}: drawn {freq}, p = {p}"
        );
    }
}
