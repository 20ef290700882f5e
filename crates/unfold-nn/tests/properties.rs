//! Properties every recurrent model here must have, checked over random shapes, lengths,
//! inputs and seeds (proptest; a failing case is shrunk to a small one):
//!
//! - causality: outputs at step t do not depend on inputs after t;
//! - batch independence: a row's outputs do not depend on the other rows;
//! - padding invariance: with `lengths`, what is written after a sequence's end changes
//!   neither its outputs, its final state, nor the masked loss;
//! - determinism: the same seed gives the same parameters and the same generated text;
//! - save → load gives a model with bit-identical outputs.
//!
//! Case counts are kept small (the whole file runs in a few seconds in release).
#![cfg(feature = "checkpoint")]

use std::sync::Mutex;

use burn::backend::NdArray;
use burn::module::{Initializer, Module};
use burn::tensor::backend::Backend as _;
use burn::tensor::{Int, Tensor, TensorData};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use unfold_nn::checkpoint::{load_model, RunDir, MODEL_FILE};
use unfold_nn::sample::{generate, GenerateConfig, Sampling};
use unfold_nn::{
    try_sequence_nll, ElmanRnn, ElmanRnnConfig, JordanRnnConfig, Pooling, Reduction,
    SequenceEncoderConfig, SequenceModel, UnrollOptions,
};

type B = NdArray;

/// Rounding differences between two computations of the same value (the input product runs
/// over the whole batch, whose blocking may change with its shape).
const TOLERANCE: f32 = 1e-5;

fn device() -> burn::backend::ndarray::NdArrayDevice {
    Default::default()
}

/// NdArray's RNG is global and `Param`s are drawn lazily, on first use: seed and draw under a
/// lock so that parallel tests cannot take numbers in between.
static RNG: Mutex<()> = Mutex::new(());

/// Large weights, so that every input visibly moves every later state.
fn initializer() -> Initializer {
    Initializer::Normal {
        mean: 0.0,
        std: 0.8,
    }
}

fn elman(input: usize, hidden: usize, output: usize, seed: u64) -> ElmanRnn<B> {
    let config = ElmanRnnConfig::new(input, hidden, output).with_initializer(initializer());
    let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    B::seed(&device(), seed);
    let drawn = config.init::<B>(&device()).into_record();
    config.init(&device()).load_record(drawn)
}

/// Shapes and a seed for one case.
#[derive(Debug, Clone)]
struct Case {
    batch: usize,
    time: usize,
    features: usize,
    hidden: usize,
    /// Token ids rather than dense features.
    tokens: bool,
    seed: u64,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        1usize..5,
        1usize..9,
        2usize..7,
        1usize..9,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(batch, time, features, hidden, tokens, seed)| Case {
            batch,
            time,
            features,
            hidden,
            tokens,
            seed,
        })
}

/// A random input for `case` (rows × steps), as host values: dense features or token ids.
#[derive(Debug, Clone)]
enum Input {
    Dense(Vec<f32>),
    Tokens(Vec<i64>),
}

impl Case {
    fn random_input(&self, rng: &mut StdRng) -> Input {
        let n = self.batch * self.time;
        if self.tokens {
            Input::Tokens(
                (0..n)
                    .map(|_| rng.random_range(0..self.features as i64))
                    .collect(),
            )
        } else {
            Input::Dense(
                (0..n * self.features)
                    .map(|_| rng.random_range(-2.0f32..2.0))
                    .collect(),
            )
        }
    }

    /// Width of one step of one row in the host vector.
    fn width(&self) -> usize {
        if self.tokens {
            1
        } else {
            self.features
        }
    }

    fn model(&self) -> ElmanRnn<B> {
        elman(self.features, self.hidden, self.features, self.seed)
    }
}

impl Input {
    /// Runs `model` on the rows `rows` of this input.
    fn run(
        &self,
        case: &Case,
        model: &ElmanRnn<B>,
        options: &UnrollOptions<B>,
    ) -> unfold_nn::RnnOutput<B> {
        let shape = [case.batch, case.time];
        match self {
            Input::Dense(values) => {
                let x = Tensor::<B, 3>::from_data(
                    TensorData::new(values.clone(), [case.batch, case.time, case.features]),
                    &device(),
                );
                model.forward(x, options)
            }
            Input::Tokens(ids) => {
                let x =
                    Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), shape), &device());
                model.forward(x, options)
            }
        }
    }

    /// Overwrites row `row`'s steps `from..` with fresh random values.
    fn scramble_after(&mut self, case: &Case, row: usize, from: usize, rng: &mut StdRng) {
        let width = case.width();
        let range = (row * case.time + from) * width..(row + 1) * case.time * width;
        match self {
            Input::Dense(values) => values[range]
                .iter_mut()
                .for_each(|v| *v = rng.random_range(-2.0f32..2.0)),
            Input::Tokens(ids) => ids[range]
                .iter_mut()
                .for_each(|id| *id = rng.random_range(0..case.features as i64)),
        }
    }

    /// Row `row` alone, as a batch of one.
    fn row(&self, case: &Case, row: usize) -> Input {
        let span = case.time * case.width();
        match self {
            Input::Dense(values) => Input::Dense(values[row * span..(row + 1) * span].to_vec()),
            Input::Tokens(ids) => Input::Tokens(ids[row * span..(row + 1) * span].to_vec()),
        }
    }
}

/// The host values of `rows` × `steps` of a `[batch, time, width]` tensor.
fn window(
    t: &Tensor<B, 3>,
    rows: std::ops::Range<usize>,
    steps: std::ops::Range<usize>,
) -> Vec<f32> {
    let width = t.dims()[2];
    t.clone()
        .slice([rows, steps, 0..width])
        .into_data()
        .to_vec::<f32>()
        .unwrap()
}

/// The host values of a `[batch, width]` tensor.
fn host(t: &Tensor<B, 2>) -> Vec<f32> {
    t.clone().into_data().to_vec::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Changing the inputs from step k on leaves the outputs and states before k untouched.
    #[test]
    fn elman_outputs_do_not_depend_on_later_inputs(case in cases(), cut in 0usize..9) {
        let cut = cut % case.time;
        let mut rng = StdRng::seed_from_u64(case.seed);
        let model = case.model();
        let input = case.random_input(&mut rng);
        let mut later = input.clone();
        for row in 0..case.batch {
            later.scramble_after(&case, row, cut, &mut rng);
        }
        let (a, b) = (
            input.run(&case, &model, &UnrollOptions::new()),
            later.run(&case, &model, &UnrollOptions::new()),
        );
        let all = 0..case.batch;
        prop_assert!(
            max_diff(&window(&a.logits, all.clone(), 0..cut), &window(&b.logits, all.clone(), 0..cut)) <= TOLERANCE
        );
        prop_assert!(
            max_diff(&window(&a.states, all.clone(), 0..cut), &window(&b.states, all, 0..cut)) <= TOLERANCE
        );
    }

    /// Each row of a batch gets the outputs it gets alone.
    #[test]
    fn elman_rows_do_not_depend_on_other_rows(case in cases()) {
        let mut rng = StdRng::seed_from_u64(case.seed);
        let model = case.model();
        let input = case.random_input(&mut rng);
        let batched = input.run(&case, &model, &UnrollOptions::new());
        let single = Case { batch: 1, ..case.clone() };
        for row in 0..case.batch {
            let alone = input.row(&case, row).run(&single, &model, &UnrollOptions::new());
            prop_assert!(
                max_diff(
                    &window(&batched.logits, row..row + 1, 0..case.time),
                    &window(&alone.logits, 0..1, 0..case.time)
                ) <= TOLERANCE
            );
        }
    }

    /// With `lengths`, the padding after each sequence changes neither its outputs, its final
    /// state, nor the masked loss.
    #[test]
    fn elman_ignores_what_is_written_after_each_length(
        case in cases(),
        length_draws in prop::collection::vec(1usize..9, 4),
    ) {
        let mut rng = StdRng::seed_from_u64(case.seed);
        let model = case.model();
        let lengths: Vec<usize> = (0..case.batch)
            .map(|row| 1 + (length_draws[row] - 1) % case.time)
            .collect();
        let input = case.random_input(&mut rng);
        let mut padded = input.clone();
        for (row, &len) in lengths.iter().enumerate() {
            padded.scramble_after(&case, row, len, &mut rng);
        }
        let options = UnrollOptions::new().with_lengths(lengths.clone());
        let (a, b) = (input.run(&case, &model, &options), padded.run(&case, &model, &options));
        for (row, &len) in lengths.iter().enumerate() {
            prop_assert!(
                max_diff(&window(&a.logits, row..row + 1, 0..len), &window(&b.logits, row..row + 1, 0..len)) <= TOLERANCE
            );
        }
        prop_assert!(max_diff(&host(&a.last), &host(&b.last)) <= TOLERANCE);

        // The loss, with targets that are garbage after each length too.
        let targets: Vec<i64> = (0..case.batch * case.time)
            .map(|_| rng.random_range(0..case.features as i64))
            .collect();
        let mut other_targets = targets.clone();
        for (row, &len) in lengths.iter().enumerate() {
            for t in len..case.time {
                other_targets[row * case.time + t] = rng.random_range(0..case.features as i64);
            }
        }
        let ids = |v: Vec<i64>| {
            Tensor::<B, 2, Int>::from_data(TensorData::new(v, [case.batch, case.time]), &device())
        };
        let loss = |out: unfold_nn::RnnOutput<B>, y| {
            try_sequence_nll(out.logits, ids(y), Some(&lengths), Reduction::Sum)
                .unwrap()
                .into_scalar()
        };
        let (la, lb) = (loss(a, targets), loss(b, other_targets));
        prop_assert!((la - lb).abs() <= TOLERANCE * la.abs().max(1.0), "{la} vs {lb}");
    }

    /// The same seed draws the same parameters and generates the same text.
    #[test]
    fn same_seed_same_model_and_same_generated_text(case in cases(), temperature in 0.2f64..2.0) {
        let (a, b) = (case.model(), case.model());
        let (pa, pb) = (a.cell().w.val().into_data(), b.cell().w.val().into_data());
        prop_assert_eq!(pa, pb);
        let config = GenerateConfig::new(case.time)
            .with_sampling(Sampling::Temperature(temperature))
            .with_seed(case.seed);
        let prompts = vec![vec![0usize]; case.batch];
        let ga = generate(&a, &prompts, &config, &device()).unwrap();
        let gb = generate(&b, &prompts, &config, &device()).unwrap();
        prop_assert_eq!(ga, gb);
    }

    /// A model saved and loaded again (into a model with other parameters) computes
    /// bit-identical outputs.
    #[test]
    fn saved_and_loaded_model_gives_identical_outputs(case in cases()) {
        let mut rng = StdRng::seed_from_u64(case.seed);
        let model = case.model();
        let dir = std::env::temp_dir().join(format!(
            "unfold-properties-{}-{}",
            std::process::id(),
            case.seed
        ));
        let out = RunDir::create(&dir).unwrap();
        out.save_model(model.clone()).unwrap();
        let blank = elman(case.features, case.hidden, case.features, case.seed.wrapping_add(1));
        let loaded = load_model(&dir.join(MODEL_FILE), &blank, &device()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let input = case.random_input(&mut rng);
        let (a, b) = (
            input.run(&case, &model, &UnrollOptions::new()),
            input.run(&case, &loaded, &UnrollOptions::new()),
        );
        prop_assert_eq!(a.logits.into_data(), b.logits.into_data());
        prop_assert_eq!(a.last.into_data(), b.last.into_data());
    }

    /// The output-to-hidden model under teacher forcing: outputs before step k depend neither
    /// on the inputs nor on the targets from k on (step t is fed y(t-1), never y(t)).
    #[test]
    fn jordan_outputs_do_not_depend_on_later_inputs_or_targets(case in cases(), cut in 0usize..9) {
        let cut = cut % case.time;
        let mut rng = StdRng::seed_from_u64(case.seed);
        let config = JordanRnnConfig::new(case.features, case.hidden, case.features)
            .with_initializer(initializer());
        let model = {
            let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
            B::seed(&device(), case.seed);
            let drawn = config.init::<B>(&device()).into_record();
            config.init::<B>(&device()).load_record(drawn)
        };
        let n = case.batch * case.time;
        let draw = |rng: &mut StdRng| -> Vec<i64> {
            (0..n).map(|_| rng.random_range(0..case.features as i64)).collect()
        };
        let (x, y) = (draw(&mut rng), draw(&mut rng));
        let (mut x2, mut y2) = (x.clone(), y.clone());
        for row in 0..case.batch {
            for t in cut..case.time {
                x2[row * case.time + t] = rng.random_range(0..case.features as i64);
                y2[row * case.time + t] = rng.random_range(0..case.features as i64);
            }
        }
        let ids = |v: Vec<i64>| {
            Tensor::<B, 2, Int>::from_data(TensorData::new(v, [case.batch, case.time]), &device())
        };
        let a = model.forward(ids(x), &UnrollOptions::new().teacher_forced(ids(y))).logits;
        let b = model.forward(ids(x2), &UnrollOptions::new().teacher_forced(ids(y2))).logits;
        prop_assert!(
            max_diff(&window(&a, 0..case.batch, 0..cut), &window(&b, 0..case.batch, 0..cut)) <= TOLERANCE
        );
    }

    /// The sequence classifier's summary (last state or mean, one or two directions) ignores
    /// the padding after each length.
    #[test]
    fn classifier_summary_ignores_padding(
        case in cases(),
        length_draws in prop::collection::vec(1usize..9, 4),
        bidirectional in any::<bool>(),
        mean in any::<bool>(),
    ) {
        let mut rng = StdRng::seed_from_u64(case.seed);
        let pooling = if mean { Pooling::Mean } else { Pooling::Last };
        let config = SequenceEncoderConfig::new(case.features, case.hidden)
            .with_bidirectional(bidirectional)
            .with_pooling(pooling)
            .classifier(3);
        let model = {
            let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
            B::seed(&device(), case.seed);
            let drawn = config.init::<B>(&device()).into_record();
            config.init::<B>(&device()).load_record(drawn)
        };
        let lengths: Vec<usize> = (0..case.batch)
            .map(|row| 1 + (length_draws[row] - 1) % case.time)
            .collect();
        let x: Vec<i64> = (0..case.batch * case.time)
            .map(|_| rng.random_range(0..case.features as i64))
            .collect();
        let mut padded = x.clone();
        for (row, &len) in lengths.iter().enumerate() {
            for t in len..case.time {
                padded[row * case.time + t] = rng.random_range(0..case.features as i64);
            }
        }
        let ids = |v: Vec<i64>| {
            Tensor::<B, 2, Int>::from_data(TensorData::new(v, [case.batch, case.time]), &device())
        };
        let options = UnrollOptions::new().with_lengths(lengths);
        let a = model.forward(ids(x), &options);
        let b = model.forward(ids(padded), &options);
        prop_assert!(
            max_diff(&host(&a), &host(&b)) <= TOLERANCE
        );
    }
}
