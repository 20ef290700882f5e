//! The seed's claim about the output-to-hidden model, on a small scale: its only memory is its
//! previous output, so it learns a task whose targets carry the whole state (the running
//! parity of a bit stream: `y(t) = y(t-1) XOR x(t)`) and cannot learn one whose targets do not
//! (Elman's temporal XOR: predicting `a XOR b` needs `a`, which neither `x(t) = b` nor the
//! fed-back `y(t-1) = b` carries), where it stays at chance.
//!
//! `cargo run --release -p unfold-lab --bin jordan -- --task xor` runs the full comparison with the hidden-to-hidden model.

use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use unfold_nn::feedback::{Feedback, Forcing, JordanRnn, JordanRnnConfig};
use unfold_nn::{sequence_nll, Reduction, SequenceModel, UnrollOptions};

type Inner = burn::backend::NdArray<f64>;
type B = burn::backend::Autodiff<Inner>;

const LEN: usize = 12;

/// Bit sequences and their targets.
type Task = fn(&mut StdRng) -> (Vec<i64>, Vec<i64>);

fn parity(rng: &mut StdRng) -> (Vec<i64>, Vec<i64>) {
    let x: Vec<i64> = (0..LEN).map(|_| rng.random_range(0..2)).collect();
    let y = x
        .iter()
        .scan(0, |p, &b| {
            *p ^= b;
            Some(*p)
        })
        .collect();
    (x, y)
}

fn temporal_xor(rng: &mut StdRng) -> (Vec<i64>, Vec<i64>) {
    let mut bits = Vec::new();
    while bits.len() <= LEN {
        let (a, b) = (rng.random_range(0..2), rng.random_range(0..2));
        bits.extend([a, b, a ^ b]);
    }
    (bits[..LEN].to_vec(), bits[1..=LEN].to_vec())
}

fn batch<Bk: burn::tensor::backend::Backend>(
    task: Task,
    rows: usize,
    rng: &mut StdRng,
) -> (Tensor<Bk, 2, Int>, Tensor<Bk, 2, Int>, Vec<i64>) {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..rows {
        let (x, y) = task(rng);
        xs.extend(x);
        ys.extend(y);
    }
    let device = Default::default();
    let x = Tensor::from_data(TensorData::new(xs, [rows, LEN]), &device);
    let y = Tensor::from_data(TensorData::new(ys.clone(), [rows, LEN]), &device);
    (x, y, ys)
}

/// Trains with teacher forcing; returns per-position accuracy of the argmax prediction on
/// held-out sequences, teacher-forced and free running.
fn train_and_score(task: Task) -> (Vec<f64>, Vec<f64>) {
    let device = Default::default();
    let mut rng = StdRng::seed_from_u64(1);
    let mut model: JordanRnn<B> = JordanRnnConfig::new(2, 8, 2).init(&device);
    let mut optimizer = AdamConfig::new().init();
    for _ in 0..200 {
        let (x, y, _) = batch::<B>(task, 32, &mut rng);
        let logits = model
            .forward(x, &UnrollOptions::new().teacher_forced(y.clone()))
            .logits;
        let loss = sequence_nll(logits, y, None, Reduction::MeanPerToken);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(0.05, model, grads);
    }
    let model = model.valid();
    let (x, y, truth) = batch::<Inner>(task, 400, &mut rng);
    let score = |forcing: Forcing, y: Option<Tensor<Inner, 2, Int>>| {
        let mut options = UnrollOptions::new().with_forcing(forcing);
        if let Some(y) = y {
            options = options.with_teacher(y);
        }
        let predicted: Vec<i64> = model
            .forward(x.clone(), &options)
            .logits
            .argmax(2)
            .into_data()
            .convert::<i64>()
            .into_vec()
            .unwrap();
        (0..LEN)
            .map(|t| {
                let right = (0..400)
                    .filter(|row| predicted[row * LEN + t] == truth[row * LEN + t])
                    .count();
                right as f64 / 400.0
            })
            .collect::<Vec<f64>>()
    };
    let free = Forcing::FreeRunning {
        feedback: Feedback::Argmax,
        seed: 0,
    };
    (score(Forcing::TeacherForced, Some(y)), score(free, None))
}

#[test]
fn output_to_hidden_model_learns_running_parity_even_running_free() {
    let (forced, free) = train_and_score(parity);
    assert!(
        forced.iter().all(|&a| a == 1.0),
        "teacher-forced {forced:?}"
    );
    assert!(free.iter().all(|&a| a == 1.0), "free running {free:?}");
}

#[test]
fn output_to_hidden_model_stays_at_chance_on_the_third_bit_of_temporal_xor() {
    let (forced, _) = train_and_score(temporal_xor);
    // Steps whose target is a XOR b: t ≡ 1 (mod 3). 400 sequences x 4 such steps each.
    let xor_steps: Vec<f64> = (1..LEN).step_by(3).map(|t| forced[t]).collect();
    let accuracy = xor_steps.iter().sum::<f64>() / xor_steps.len() as f64;
    assert!(
        (accuracy - 0.5).abs() < 0.06,
        "third-bit accuracy {accuracy} ({forced:?})"
    );
}
