//! Sequence classification with a single output at the end (Goodfellow et al., fig. 10.5).
//!
//! ```text
//! cargo run --release --example classify                          # is there a year? (binary)
//! cargo run --release --example classify -- --task decade         # which decade, or none
//! cargo run --release --example classify -- --task adding --seq-len 50 --steps 4000
//! ```
//!
//! The textbook motivates parameter sharing with "I went to Nepal in 2009" and "In 2009, I went
//! to Nepal": a model that reads one word at a time with the same weights at every step can
//! find the year wherever it appears. This example generates such sentences from the word
//! lists below, at random lengths, with the year (when there is one) at a random position, and
//! trains `h(t) = tanh(b + W h(t-1) + U x(t))`, `o = c + V h(τ)`, `L = -log softmax(o)[y]` to
//! tell whether a year occurs (`--task year`) or which decade it is in (`--task decade`).
//! Accuracy is reported by the position of the year and by sentence length, including
//! sentences longer than any seen in training.
//!
//! Years are written as four digit tokens ("in 2 0 0 9"), not as one year token: a year token
//! would turn detection into a one-word lookup that needs no memory. As digits, a year is a
//! pattern in time — four digits in a row, the first 1 or 2 — and the same digit tokens also
//! make up the distractor numbers ("for 2 5 0 rupees", "at 8 8 4 8 metres"), so the recurrence
//! must count and remember, and the decade lives in the third digit.
//!
//! `--task adding` is the adding problem (Hochreiter & Schmidhuber, 1997), a classic difficulty
//! for vanilla RNNs: `T` steps of `[value, marker]`, values uniform in `[0, 1)`, two steps
//! marked (one in each half); the target is the sum of the two marked values. The head is the
//! same readout with one output and a mean-squared-error loss; the result is reported beside
//! the trivial baseline of always predicting 1 (the mean of the target: MSE `1/6`).
//!
//! Training goes through burn-train's `Learner` (unfold's `TrainStep` for `SequenceClassifier`,
//! and for the adding problem's `SequenceRegressor`): an epoch is `--eval-every` steps, then a
//! validation pass with Burn's loss and accuracy metrics; a progress bar on stderr (a small
//! `MetricsRenderer` below). The Learner's checkpoints and metric logs go to `--out`/learner.
//!
//! Writes `config.json`, `model.mpk`, `vocab.json` (sentence tasks), `metrics.json`, and the
//! loss curves `loss.csv`/`loss.svg` (training loss of every step, validation loss of every
//! evaluation) to `--out` and ends with one JSON line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::transform::{SamplerDataset, SamplerDatasetOptions};
use burn::data::dataset::{Dataset, InMemDataset};
use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::AdamConfig;
use burn::tensor::backend::Backend as _;
use burn::tensor::{Int, Tensor, TensorData};
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    AccuracyMetric, Adaptor, LossMetric, Metric, MetricDefinition, MetricId, MetricMetadata,
    MetricName, Numeric, NumericEntry, SerializedEntry,
};
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};
use burn::train::{
    Interrupter, Learner, LearnerSummary, LearningComponentsTypes, RegressionOutput,
    SupervisedTraining,
};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use unfold::backend::{self, Backend, TrainBackend};
use unfold::cli::{self, CommonArgs, Defaults};
use unfold::data::dataset::{ClassificationBatcher, LabelledSequence};
use unfold::nn::classifier::{
    classification_nll, try_correct, Pooling, SequenceClassifier, SequenceClassifierConfig,
};
use unfold::nn::train::{RegressionBatch, SequenceRegressor};
use unfold::nn::{Error, Result};
use unfold::output::{Recorder, RunDir};
use unfold::viz::{write_loss_curves, LossHistory};

/// Train a sequence-to-one RNN: find the year in a sentence, or solve the adding problem.
#[derive(Parser, Debug, Serialize)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// What to learn. For the sentence tasks `--seq-len` is the longest training sentence (in
    /// tokens); for the adding problem it is `T`.
    #[arg(long, value_enum, default_value_t = Task::Year)]
    task: Task,
    /// Shortest training and validation sentence, in tokens (sentence tasks).
    #[arg(long, default_value_t = 10)]
    min_len: usize,
    /// Stacked recurrent layers.
    #[arg(long, default_value_t = 1)]
    num_layers: usize,
    /// Also read every sentence backwards and concatenate both summaries.
    #[arg(long)]
    bidirectional: bool,
    /// Summary of the top layer's states fed to the output layer.
    #[arg(long, value_enum, default_value_t = PoolingArg::Last)]
    pooling: PoolingArg,
    /// Training sentences (generated once; the validation sentences are distinct from them).
    #[arg(long, default_value_t = 20_000)]
    train_size: usize,
    /// Validation sequences, and as many longer-than-training ones.
    #[arg(long, default_value_t = 2_000)]
    val_size: usize,
    /// Evaluate on the validation set every this many steps.
    #[arg(long, default_value_t = 250)]
    eval_every: usize,
    /// Clip each parameter's gradient to this L2 norm before the Adam step (textbook
    /// §10.11.1); 0 turns clipping off.
    #[arg(long, default_value_t = 1.0)]
    clip: f32,
}

/// The built-in tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Task {
    /// Does the sentence contain a year (1950-2029)? Two classes, balanced.
    Year,
    /// Which decade is the year in (1950s .. 2020s), or is there none? Nine classes.
    Decade,
    /// The adding problem: regress the sum of the two marked values of T steps.
    Adding,
}

/// `--pooling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum PoolingArg {
    /// The state at each sequence's own last step.
    Last,
    /// The mean of the states over the valid steps.
    Mean,
}

const DEFAULTS: Defaults = Defaults {
    hidden: 64,
    seq_len: 24,
    batch: 32,
    steps: 2000,
    lr: 2e-3,
    out: "runs/classify",
};

/// The adding problem's success criterion (Hochreiter & Schmidhuber, 1997): a prediction
/// counts as correct when its absolute error is below 0.04.
const ADDING_TOLERANCE: f64 = 0.04;

// ---------------------------------------------------------------------------------------------
// Sentences
// ---------------------------------------------------------------------------------------------

const SUBJECTS: &[&str] = &[
    "i",
    "we",
    "she",
    "he",
    "they",
    "my brother",
    "my sister",
    "our teacher",
    "the old man",
    "a friend of mine",
    "my parents",
    "the doctor",
];

const PREDICATES: &[&str] = &[
    "went to nepal",
    "climbed a mountain",
    "visited kathmandu",
    "saw the river",
    "learned to cook",
    "bought a small house",
    "met my wife",
    "walked to the market",
    "read a long book",
    "sold the red car",
    "moved to the city",
    "started a new job",
    "lost the keys",
    "painted the kitchen",
    "wrote a letter",
    "planted a tree",
    "found a dog",
    "built a boat",
    "taught at the school",
    "crossed the border",
];

/// Phrases without numbers; several share words with the year phrases ("in", "during",
/// "since", "back"), so those words alone do not give a year away.
const ADJUNCTS: &[&str] = &[
    "with my family",
    "in the rain",
    "after the long winter",
    "near the lake",
    "on foot",
    "every morning",
    "for the first time",
    "in the spring",
    "during the festival",
    "in a hurry",
    "without a map",
    "before the storm",
    "at night",
    "in the mountains",
    "with a heavy bag",
    "since the war",
    "back then",
    "in the old town",
    "by bus",
    "during the holidays",
];

/// Phrases with a number (`#`) that is never a year: 1 to 3 digits, or 4 digits from 3000.
const NUMBER_ADJUNCTS: &[&str] = &[
    "for # days",
    "with # friends",
    "at # metres",
    "for # rupees",
    "after # hours",
    "on day #",
    "in room #",
    "with # bags",
    "for # weeks",
    "at # kilometres",
];

/// Phrases with a year (`#`).
const YEAR_PHRASES: &[&str] = &[
    "in #",
    "during #",
    "back in #",
    "since #",
    "in the year #",
    "in early #",
    "#",
];

const CONNECTORS: &[&str] = &["and", "but", "then", "because", "so", "while"];

const FIRST_YEAR: u32 = 1950;
const LAST_YEAR: u32 = 2029;

/// A word vocabulary: the sorted distinct words of the lists above, and the ten digits.
#[derive(Debug, Serialize)]
struct Words {
    words: Vec<String>,
    #[serde(skip)]
    ids: BTreeMap<String, usize>,
}

impl Words {
    fn build() -> Self {
        let lists = [
            SUBJECTS,
            PREDICATES,
            ADJUNCTS,
            NUMBER_ADJUNCTS,
            YEAR_PHRASES,
            CONNECTORS,
        ];
        let mut words: Vec<String> = lists
            .iter()
            .flat_map(|list| list.iter())
            .flat_map(|phrase| phrase.split_whitespace())
            .filter(|&word| word != "#")
            .map(str::to_string)
            .chain((0..10).map(|d| d.to_string()))
            .collect();
        words.sort();
        words.dedup();
        let ids = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i))
            .collect();
        Self { words, ids }
    }

    fn len(&self) -> usize {
        self.words.len()
    }

    /// Token ids of a phrase, `#` replaced by the digits of `number`.
    fn phrase(&self, phrase: &str, number: u32) -> Vec<usize> {
        phrase
            .split_whitespace()
            .flat_map(|word| match word {
                "#" => number.to_string().chars().map(|d| d.to_string()).collect(),
                _ => vec![word.to_string()],
            })
            .map(|word| self.ids[&word])
            .collect()
    }

    fn decode(&self, ids: &[usize]) -> String {
        let words: Vec<&str> = ids.iter().map(|&i| self.words[i].as_str()).collect();
        words.join(" ")
    }
}

/// A generated sentence with its label.
#[derive(Debug, Clone)]
struct Sentence {
    ids: Vec<usize>,
    label: usize,
    /// Token index of the year's first digit, if there is a year.
    year_at: Option<usize>,
}

/// A number that is never a year: 1-99, 100-999 or 3000-9999.
fn distractor(rng: &mut StdRng) -> u32 {
    match rng.random_range(0..20) {
        0..=11 => rng.random_range(1..100),
        12..=16 => rng.random_range(100..1000),
        _ => rng.random_range(3000..10000),
    }
}

/// A sentence of exactly `len` tokens with `year` in it (if any), or `None` when this draw
/// missed the length.
///
/// Clauses ("my sister visited kathmandu"), connectors and adjuncts are added until the
/// sentence is long enough; the adjuncts and the year phrase then go to random places between
/// the other phrases, so the year can be anywhere.
fn try_sentence(
    rng: &mut StdRng,
    words: &Words,
    len: usize,
    year: Option<u32>,
    task: Task,
) -> Option<Sentence> {
    let year_phrase = year.map(|y| words.phrase(YEAR_PHRASES.choose(rng).unwrap(), y));
    let clause = |rng: &mut StdRng| {
        [
            words.phrase(SUBJECTS.choose(rng).unwrap(), 0),
            words.phrase(PREDICATES.choose(rng).unwrap(), 0),
        ]
    };
    let mut units: Vec<Vec<usize>> = clause(rng).to_vec();
    let mut adjuncts = Vec::new();
    let count = |units: &[Vec<usize>]| units.iter().map(Vec::len).sum::<usize>();
    let year_len = year_phrase.as_ref().map_or(0, Vec::len);
    while count(&units) + count(&adjuncts) + year_len < len {
        if rng.random_bool(0.3) {
            units.push(words.phrase(CONNECTORS.choose(rng).unwrap(), 0));
            units.extend(clause(rng));
        } else if rng.random_bool(0.4) {
            let number = distractor(rng);
            adjuncts.push(words.phrase(NUMBER_ADJUNCTS.choose(rng).unwrap(), number));
        } else {
            adjuncts.push(words.phrase(ADJUNCTS.choose(rng).unwrap(), 0));
        }
    }
    if count(&units) + count(&adjuncts) + year_len != len {
        return None;
    }
    for adjunct in adjuncts {
        let at = rng.random_range(0..=units.len());
        units.insert(at, adjunct);
    }
    let mut year_at = None;
    if let Some(phrase) = year_phrase {
        let at = rng.random_range(0..=units.len());
        let digits_from = phrase.len() - 4;
        year_at = Some(count(&units[..at]) + digits_from);
        units.insert(at, phrase);
    }
    let label = match (task, year) {
        (_, None) => 0,
        (Task::Year, Some(_)) => 1,
        (_, Some(y)) => 1 + ((y - FIRST_YEAR) / 10) as usize,
    };
    Some(Sentence {
        ids: units.concat(),
        label,
        year_at,
    })
}

/// `n` sentences with lengths uniform in `lengths`, none of whose token sequences is in
/// `exclude` (nor repeated).
///
/// The length and the label are drawn first, independently, and kept until a sentence fits
/// them: the length says nothing about the label.
fn sentences(
    rng: &mut StdRng,
    words: &Words,
    task: Task,
    n: usize,
    lengths: std::ops::RangeInclusive<usize>,
    exclude: &HashSet<Vec<usize>>,
) -> Vec<Sentence> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    let mut tries = 0usize;
    while out.len() < n {
        tries += 1;
        assert!(
            tries < 1000 * n + 100_000,
            "cannot generate {n} distinct sentences"
        );
        let len = rng.random_range(lengths.clone());
        let year = match task {
            Task::Year => rng.random_bool(0.5),
            _ => rng.random_bool(8.0 / 9.0),
        }
        .then(|| rng.random_range(FIRST_YEAR..=LAST_YEAR));
        for _ in 0..1000 {
            let Some(sentence) = try_sentence(rng, words, len, year, task) else {
                continue;
            };
            if !exclude.contains(&sentence.ids) && seen.insert(sentence.ids.clone()) {
                out.push(sentence);
                break;
            }
        }
    }
    out
}

/// The shortest sentence with a year that the lists can make.
fn shortest_year_sentence() -> usize {
    let words = |list: &[&str]| {
        list.iter()
            .map(|p| p.split_whitespace().count())
            .min()
            .unwrap()
    };
    words(SUBJECTS) + words(PREDICATES) + 3 + words(YEAR_PHRASES)
}

/// A padded batch of token ids `[batch, longest]`, the lengths and the labels `[batch]`.
fn sentence_batch<B: burn::tensor::backend::Backend>(
    batch: &[&Sentence],
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Vec<usize>, Tensor<B, 1, Int>) {
    let lengths: Vec<usize> = batch.iter().map(|s| s.ids.len()).collect();
    let time = *lengths.iter().max().expect("a non-empty batch");
    // Padding id 0: any id would do, the lengths keep it out of every summary.
    let mut ids = vec![0i64; batch.len() * time];
    for (b, sentence) in batch.iter().enumerate() {
        for (t, &id) in sentence.ids.iter().enumerate() {
            ids[b * time + t] = id as i64;
        }
    }
    let labels: Vec<i64> = batch.iter().map(|s| s.label as i64).collect();
    (
        Tensor::from_data(TensorData::new(ids, [batch.len(), time]), device),
        lengths,
        Tensor::from_data(TensorData::new(labels, [batch.len()]), device),
    )
}

// ---------------------------------------------------------------------------------------------
// The adding problem
// ---------------------------------------------------------------------------------------------

/// `n` adding-problem sequences of `time` steps: inputs `[n, time, 2]` and targets `[n, 1]`.
fn adding_set(rng: &mut StdRng, n: usize, time: usize) -> (Vec<f32>, Vec<f32>) {
    let mut x = vec![0f32; n * time * 2];
    let mut y = vec![0f32; n];
    for b in 0..n {
        for t in 0..time {
            x[(b * time + t) * 2] = rng.random::<f32>();
        }
        let half = time / 2;
        for at in [rng.random_range(0..half), rng.random_range(half..time)] {
            x[(b * time + at) * 2 + 1] = 1.0;
            y[b] += x[(b * time + at) * 2];
        }
    }
    (x, y)
}

fn adding_tensors<B: burn::tensor::backend::Backend>(
    (x, y): &(Vec<f32>, Vec<f32>),
    range: std::ops::Range<usize>,
    time: usize,
    device: &B::Device,
) -> (Tensor<B, 3>, Tensor<B, 2>) {
    let n = range.len();
    let x = x[range.start * time * 2..range.end * time * 2].to_vec();
    let y = y[range].to_vec();
    (
        Tensor::from_data(TensorData::new(x, [n, time, 2]), device),
        Tensor::from_data(TensorData::new(y, [n, 1]), device),
    )
}

// ---------------------------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------------------------

/// A validation measurement.
#[derive(Debug, Clone, Serialize)]
struct Eval {
    step: usize,
    train_loss: f64,
    val_loss: f64,
    val_acc: f64,
}

/// Accuracy of one group of held-out sequences, in the validation set (lengths as trained)
/// and in the longer set.
#[derive(Debug, Clone, Serialize)]
struct Group {
    /// The group, e.g. "year at 5-9" or "length 10-14".
    group: String,
    val_n: usize,
    val_acc: Option<f64>,
    long_n: usize,
    long_acc: Option<f64>,
}

/// `metrics.json`, also printed as the last line.
#[derive(Debug, Serialize)]
struct Metrics {
    train_loss: f64,
    val_loss: f64,
    val_acc: f64,
    long_loss: f64,
    long_acc: f64,
    tokens_per_s: f64,
    wall_s: f64,
    steps: usize,
    backend: &'static str,
    task: Task,
    outputs: usize,
    parameters: usize,
    /// Sequence lengths trained on, and those of the longer held-out set.
    train_lengths: [usize; 2],
    long_lengths: [usize; 2],
    /// Sentence tasks: accuracy of always answering the most frequent validation label.
    /// Adding: accuracy (|error| < 0.04) of always predicting 1.
    baseline_acc: f64,
    /// Adding only: the MSE of always predicting 1, measured on the validation set (exactly
    /// 1/6 in expectation: the variance of a sum of two uniform values).
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_mse: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vocab_size: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    by_position: Vec<Group>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    by_length: Vec<Group>,
    history: Vec<Eval>,
}

type Model<B> = SequenceClassifier<B>;

fn main() {
    let args: Args = cli::parse(&DEFAULTS);
    if let Err(e) = run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Flags that clap accepts but training cannot use.
fn check_args(args: &Args) -> Result<()> {
    let common = &args.common;
    if let Some(path) = &common.corpus {
        return Err(Error::config(
            "--corpus",
            path.display(),
            "classify generates its sequences from built-in word lists and takes no corpus",
        ));
    }
    common.validate(&[
        ("--num-layers", args.num_layers),
        ("--train-size", args.train_size),
        ("--val-size", args.val_size),
        ("--eval-every", args.eval_every),
    ])?;
    if !(args.clip >= 0.0 && args.clip.is_finite()) {
        return Err(Error::config(
            "--clip",
            args.clip,
            "must be a finite number, 0 or more",
        ));
    }
    if common.steps > args.eval_every && !common.steps.is_multiple_of(args.eval_every) {
        return Err(Error::config(
            "--steps",
            common.steps,
            format!(
                "must be a multiple of --eval-every ({}): the Learner validates after each \
                 epoch of --eval-every steps",
                args.eval_every
            ),
        ));
    }
    match args.task {
        Task::Adding if common.seq_len < 2 => Err(Error::config(
            "--seq-len",
            common.seq_len,
            "the adding problem needs at least 2 steps (one marker in each half)",
        )),
        Task::Adding => Ok(()),
        _ if args.min_len < shortest_year_sentence() => Err(Error::config(
            "--min-len",
            args.min_len,
            format!(
                "must be at least {}, the shortest sentence with a year",
                shortest_year_sentence()
            ),
        )),
        _ if args.min_len > common.seq_len => Err(Error::config(
            "--min-len",
            args.min_len,
            format!("must not exceed --seq-len ({})", common.seq_len),
        )),
        _ => Ok(()),
    }
}

/// Each task's data, generated once from the seed (the adding problem draws fresh training
/// sequences as it goes).
enum Data {
    Sentences {
        train: Vec<Sentence>,
        val: Vec<Sentence>,
        long: Vec<Sentence>,
    },
    Adding {
        val: (Vec<f32>, Vec<f32>),
        long: (Vec<f32>, Vec<f32>),
    },
}

fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    check_args(&args)?;
    let common = &args.common;
    let out = RunDir::create(&common.out)?;
    let device = backend::open()?;
    TrainBackend::seed(&device, common.seed);
    let mut rng = StdRng::seed_from_u64(common.seed);
    // Held out: sentences of every length up to twice the longest trained on; adding-problem
    // sequences of twice the trained T.
    let long_lengths = match args.task {
        Task::Adding => [2 * common.seq_len; 2],
        _ => [common.seq_len + 1, 2 * common.seq_len],
    };

    // Data: generated once from the seed (the adding problem draws fresh training batches).
    let words = Words::build();
    let mut examples = Vec::new();
    let (train_lengths, input_size, outputs, data) = match args.task {
        Task::Year | Task::Decade => {
            let lengths = args.min_len..=common.seq_len;
            let none = HashSet::new();
            let train = sentences(
                &mut rng,
                &words,
                args.task,
                args.train_size,
                lengths.clone(),
                &none,
            );
            let train_ids: HashSet<Vec<usize>> = train.iter().map(|s| s.ids.clone()).collect();
            let val = sentences(
                &mut rng,
                &words,
                args.task,
                args.val_size,
                lengths,
                &train_ids,
            );
            let long = sentences(
                &mut rng,
                &words,
                args.task,
                args.val_size,
                long_lengths[0]..=long_lengths[1],
                &none,
            );
            for s in val.iter().filter(|s| s.year_at.is_some()).take(2) {
                examples.push(format!(
                    "  e.g. label {}: {}",
                    s.label,
                    words.decode(&s.ids)
                ));
            }
            let classes = if args.task == Task::Year { 2 } else { 9 };
            (
                [args.min_len, common.seq_len],
                words.len(),
                classes,
                Data::Sentences { train, val, long },
            )
        }
        Task::Adding => {
            let time = common.seq_len;
            let val = adding_set(&mut rng, args.val_size, time);
            let long = adding_set(&mut rng, args.val_size, long_lengths[1]);
            ([time, time], 2, 1, Data::Adding { val, long })
        }
    };

    let config = SequenceClassifierConfig::new(input_size, common.hidden, outputs)
        .with_num_layers(args.num_layers)
        .with_bidirectional(args.bidirectional)
        .with_pooling(match args.pooling {
            PoolingArg::Last => Pooling::Last,
            PoolingArg::Mean => Pooling::Mean,
        });
    let model: Model<TrainBackend> = config.try_init(&device)?;
    out.write_json(
        "config.json",
        &serde_json::json!({ "model": config, "args": args }),
    )?;
    if args.task != Task::Adding {
        out.write_json("vocab.json", &words)?;
    }
    eprintln!(
        "classify: task {:?}, {} outputs, {} parameters, backend {}",
        args.task,
        outputs,
        model.num_params(),
        backend::NAME
    );
    for line in examples {
        eprintln!("{line}");
    }

    let learner_dir = out.path().join("learner");
    let trained = match &data {
        Data::Sentences { train, val, .. } => {
            train_sentences(&args, model, train, val, &learner_dir)?
        }
        Data::Adding { val, .. } => train_adding(&args, model, val, &learner_dir)?,
    };
    write_curves(&out, &trained)?;
    let model = trained.model.clone();
    out.save_model(model.clone())?;

    let last = trained
        .history
        .last()
        .expect("at least one evaluation")
        .clone();
    let mut metrics = Metrics {
        train_loss: trained.train_loss,
        val_loss: last.val_loss,
        val_acc: last.val_acc,
        long_loss: f64::NAN,
        long_acc: f64::NAN,
        tokens_per_s: trained.tokens as f64 / trained.train_wall.as_secs_f64(),
        wall_s: 0.0,
        steps: trained.steps,
        backend: backend::NAME,
        task: args.task,
        outputs,
        parameters: model.num_params(),
        train_lengths,
        long_lengths,
        baseline_acc: f64::NAN,
        baseline_mse: None,
        vocab_size: None,
        by_position: Vec::new(),
        by_length: Vec::new(),
        history: trained.history,
    };
    match &data {
        Data::Sentences { val, long, .. } => {
            report_sentences(&model, val, long, &mut metrics, &device)?;
            metrics.vocab_size = Some(words.len());
        }
        Data::Adding { val, long } => {
            report_adding(&model, val, long, common.seq_len, &mut metrics, &device)?;
        }
    }
    metrics.wall_s = started.elapsed().as_secs_f64();
    unfold::output::finish(&out, &metrics)
}

// ---------------------------------------------------------------------------------------------
// Training through burn-train's Learner
// ---------------------------------------------------------------------------------------------

/// One adding-problem sequence: `[value, marker]` at each of `time` steps, and its target.
#[derive(Debug, Clone)]
struct AddingItem {
    /// `[time, 2]`, row-major.
    x: Vec<f32>,
    y: f32,
}

fn adding_items((x, y): &(Vec<f32>, Vec<f32>)) -> Vec<AddingItem> {
    let time = x.len() / (2 * y.len());
    y.iter()
        .enumerate()
        .map(|(b, &y)| AddingItem {
            x: x[b * time * 2..(b + 1) * time * 2].to_vec(),
            y,
        })
        .collect()
}

/// Fresh adding-problem sequences, drawn in order from one seeded generator as the data loader
/// asks for them (it asks in order: no workers), `len` per epoch: every batch is new data, and
/// the stream is the one the loop before the Learner drew.
struct AddingStream {
    time: usize,
    len: usize,
    rng: Mutex<StdRng>,
}

impl Dataset<AddingItem> for AddingStream {
    fn get(&self, index: usize) -> Option<AddingItem> {
        (index < self.len).then(|| {
            let mut rng = self.rng.lock().unwrap();
            adding_items(&adding_set(&mut rng, 1, self.time)).remove(0)
        })
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// Dense `[batch, time, 2]` inputs and `[batch, 1]` targets.
#[derive(Clone, Copy)]
struct AddingBatcher;

impl<B: burn::tensor::backend::Backend> Batcher<B, AddingItem, RegressionBatch<B>>
    for AddingBatcher
{
    fn batch(&self, items: Vec<AddingItem>, device: &B::Device) -> RegressionBatch<B> {
        let time = items[0].x.len() / 2;
        let x = items
            .iter()
            .flat_map(|item| item.x.iter().copied())
            .collect();
        let y = items.iter().map(|item| item.y).collect();
        let (x, y) = adding_tensors::<B>(&(x, y), 0..items.len(), time, device);
        RegressionBatch {
            inputs: x.into(),
            targets: y,
            lengths: None,
        }
    }
}

/// Tokens in a training item, for the tokens/s figure.
trait Tokens {
    fn tokens(&self) -> usize;
}

impl Tokens for LabelledSequence {
    fn tokens(&self) -> usize {
        self.ids.len()
    }
}

impl Tokens for AddingItem {
    fn tokens(&self) -> usize {
        self.x.len() / 2
    }
}

/// A batcher that counts the tokens it batches.
#[derive(Clone)]
struct Counting<Bt> {
    batcher: Bt,
    tokens: Arc<AtomicUsize>,
}

impl<B, I, O, Bt> Batcher<B, I, O> for Counting<Bt>
where
    B: burn::tensor::backend::Backend,
    I: Tokens,
    Bt: Batcher<B, I, O>,
{
    fn batch(&self, items: Vec<I>, device: &B::Device) -> O {
        let tokens = items.iter().map(Tokens::tokens).sum();
        self.tokens.fetch_add(tokens, Ordering::Relaxed);
        self.batcher.batch(items, device)
    }
}

/// The adding problem's accuracy: the fraction of predictions within [`ADDING_TOLERANCE`] of
/// the target, as a burn-train metric (Burn's own metrics for `RegressionOutput` are the loss
/// only).
#[derive(Clone)]
struct WithinTolerance<B: burn::tensor::backend::Backend> {
    name: MetricName,
    state: NumericMetricState,
    _backend: std::marker::PhantomData<B>,
}

/// What [`WithinTolerance`] reads from a `RegressionOutput`.
struct ToleranceInput<B: burn::tensor::backend::Backend> {
    errors: Tensor<B, 2>,
}

impl<B: burn::tensor::backend::Backend> Adaptor<ToleranceInput<B>> for RegressionOutput<B> {
    fn adapt(&self) -> ToleranceInput<B> {
        ToleranceInput {
            errors: self.output.clone() - self.targets.clone(),
        }
    }
}

impl<B: burn::tensor::backend::Backend> WithinTolerance<B> {
    fn new() -> Self {
        Self {
            name: Arc::new("Accuracy".to_string()),
            state: NumericMetricState::default(),
            _backend: std::marker::PhantomData,
        }
    }
}

impl<B: burn::tensor::backend::Backend> Metric for WithinTolerance<B> {
    type Input = ToleranceInput<B>;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(&mut self, input: &ToleranceInput<B>, _: &MetricMetadata) -> SerializedEntry {
        let errors: Vec<f64> = input
            .errors
            .clone()
            .into_data()
            .convert::<f64>()
            .to_vec()
            .unwrap();
        // In percent, like Burn's `AccuracyMetric`.
        self.state.update(
            100.0 * within_tolerance(&errors),
            errors.len(),
            FormatOptions::new(self.name()).unit("%").precision(2),
        )
    }

    fn clear(&mut self) {
        self.state.reset()
    }
}

impl<B: burn::tensor::backend::Backend> Numeric for WithinTolerance<B> {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}

/// What the Learner reported, as [`Progress`] collected it.
#[derive(Default)]
struct Log {
    names: HashMap<MetricId, String>,
    /// The training loss of every step.
    train: Vec<f64>,
    /// Training losses since the last evaluation.
    recent: Vec<f64>,
    /// The validation pass under way: the last batch's loss and accuracy, then Σ loss·n,
    /// Σ accuracy·n and n over its batches (the Learner's loss metric counts batches, not
    /// sequences; weighting by n gives the mean over sequences, as before).
    batch: [f64; 2],
    sums: [f64; 3],
    history: Vec<Eval>,
    /// Time spent in validation passes, and when the current one began.
    eval_time: Duration,
    eval_started: Option<Instant>,
}

/// burn-train's renderer for this example: a progress bar (stderr) with the batch loss, one
/// line per evaluation, and the numbers `metrics.json` and the loss curves need. Stops
/// training through the Learner's interrupter when the loss stops being finite.
#[derive(Clone)]
struct Progress {
    bar: ProgressBar,
    log: Arc<Mutex<Log>>,
    interrupter: Interrupter,
}

impl Progress {
    fn new(steps: usize, interrupter: Interrupter) -> Self {
        let bar = ProgressBar::new(steps as u64).with_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
            )
            .expect("valid template"),
        );
        Self {
            bar,
            log: Arc::default(),
            interrupter,
        }
    }

    fn println(&self, line: String) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

/// The current value of a numeric metric update, with the metric's name.
fn numeric(log: &Log, state: MetricState) -> Option<(&str, f64)> {
    match state {
        MetricState::Numeric(entry, value) => {
            Some((log.names.get(&entry.metric_id)?.as_str(), value.current()))
        }
        MetricState::Generic(_) => None,
    }
}

impl MetricsRendererTraining for Progress {
    fn update_train(&mut self, state: MetricState) {
        let mut log = self.log.lock().unwrap();
        if let Some(("Loss", loss)) = numeric(&log, state) {
            log.train.push(loss);
            log.recent.push(loss);
            self.bar.set_message(format!("loss {loss:.4}"));
            self.bar.inc(1);
            if !loss.is_finite() {
                self.interrupter
                    .stop(Some("the training loss is not finite"));
            }
        }
    }

    fn update_valid(&mut self, state: MetricState) {
        let mut log = self.log.lock().unwrap();
        match numeric(&log, state) {
            Some(("Loss", loss)) => log.batch[0] = loss,
            // Burn's accuracy metrics report percent.
            Some(("Accuracy", acc)) => log.batch[1] = acc / 100.0,
            _ => {}
        }
    }

    fn render_train(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        // The epoch's last training batch: its validation pass starts now.
        // (The renderer runs on the Learner's event thread, a little behind the training: the
        // evaluation time is approximate.)
        if item
            .progress
            .is_some_and(|p| p.items_processed >= p.items_total)
        {
            self.log.lock().unwrap().eval_started = Some(Instant::now());
        }
    }

    fn render_valid(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        let Some(p) = item.progress else { return };
        let mut log = self.log.lock().unwrap();
        let n = (p.items_processed - log.sums[2] as usize) as f64;
        let [loss, acc] = log.batch;
        log.sums[0] += loss * n;
        log.sums[1] += acc * n;
        log.sums[2] += n;
        if p.items_processed < p.items_total {
            return;
        }
        let [loss_sum, acc_sum, n] = std::mem::take(&mut log.sums);
        let train_loss = log.recent.iter().sum::<f64>() / log.recent.len() as f64;
        log.recent.clear();
        let eval = Eval {
            step: log.train.len(),
            train_loss,
            val_loss: loss_sum / n,
            val_acc: acc_sum / n,
        };
        if let Some(started) = log.eval_started.take() {
            log.eval_time += started.elapsed();
        }
        self.println(format!(
            "step {:>6}  train {:.4}  val {:.4}  val acc {:.3}",
            eval.step, eval.train_loss, eval.val_loss, eval.val_acc
        ));
        log.history.push(eval);
    }

    fn on_train_end(
        &mut self,
        _summary: Option<LearnerSummary>,
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        self.bar.finish_and_clear();
        Ok(())
    }
}

impl MetricsRendererEvaluation for Progress {
    fn update_test(&mut self, _: EvaluationName, _: MetricState) {}
    fn render_test(&mut self, _: EvaluationProgress, _: Vec<ProgressType>) {}
}

impl MetricsRenderer for Progress {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        let mut log = self.log.lock().unwrap();
        log.names.insert(definition.metric_id, definition.name);
    }
}

/// What training hands back to `run`.
struct Trained {
    model: Model<Backend>,
    history: Vec<Eval>,
    /// The training loss of every step.
    losses: Vec<f64>,
    train_loss: f64,
    steps: usize,
    tokens: usize,
    /// Training time, evaluations excluded.
    train_wall: Duration,
}

/// The Learner set-up every task shares: an epoch is `--eval-every` steps, then a validation
/// pass; checkpoints (model, optimiser, scheduler) and Burn's metric logs go to
/// `<out>/learner`.
fn configure<LC: LearningComponentsTypes>(
    training: SupervisedTraining<LC>,
    args: &Args,
) -> (SupervisedTraining<LC>, Progress) {
    let progress = Progress::new(args.common.steps, training.interrupter());
    let training = training
        .with_file_checkpointer(Recorder::new())
        .renderer(progress.clone())
        .num_epochs(args.common.steps / epoch_steps(args));
    (training, progress)
}

/// Steps per Learner epoch: `--eval-every`, or all of them in a shorter run.
fn epoch_steps(args: &Args) -> usize {
    args.eval_every.min(args.common.steps)
}

fn optimizer(args: &Args) -> AdamConfig {
    let clipping = (args.clip > 0.0).then_some(GradientClippingConfig::Norm(args.clip));
    AdamConfig::new().with_grad_clipping(clipping)
}

/// Collects the run's numbers once the Learner is done; a non-finite loss is an error.
fn finish_training(
    model: Model<Backend>,
    progress: Progress,
    tokens: &AtomicUsize,
    started: Instant,
) -> Result<Trained> {
    let log = std::mem::take(&mut *progress.log.lock().unwrap());
    if log.train.iter().any(|loss| !loss.is_finite()) || log.history.is_empty() {
        return Err(Error::NonFinite {
            arg: "training loss (lower --lr?)",
        });
    }
    Ok(Trained {
        model,
        train_loss: log.history.last().expect("checked").train_loss,
        steps: log.train.len(),
        losses: log.train,
        history: log.history,
        tokens: tokens.load(Ordering::Relaxed),
        train_wall: started.elapsed().saturating_sub(log.eval_time),
    })
}

/// The sentence tasks: a `SequenceClassifier` with Burn's loss and accuracy metrics.
fn train_sentences(
    args: &Args,
    model: Model<TrainBackend>,
    train: &[Sentence],
    val: &[Sentence],
    dir: &Path,
) -> Result<Trained> {
    let common = &args.common;
    let labelled = |set: &[Sentence]| -> Vec<LabelledSequence> {
        set.iter()
            .map(|s| LabelledSequence {
                ids: s.ids.clone(),
                label: s.label,
            })
            .collect()
    };
    let tokens = Arc::new(AtomicUsize::new(0));
    let batcher = ClassificationBatcher::new(0);
    // An epoch: `--eval-every` batches drawn with replacement, as the loop before the Learner did.
    let epoch = SamplerDataset::new(
        InMemDataset::new(labelled(train)),
        SamplerDatasetOptions::default()
            .with_replacement()
            .with_fixed_size(epoch_steps(args) * common.batch)
            .with_seed(common.seed ^ 0x5eed),
    );
    let train_loader = DataLoaderBuilder::new(Counting {
        batcher,
        tokens: tokens.clone(),
    })
    .batch_size(common.batch)
    .build(epoch);
    let valid_loader = DataLoaderBuilder::new(batcher)
        .batch_size(256)
        .build(InMemDataset::new(labelled(val)));
    let (training, progress) = configure(
        SupervisedTraining::new(dir, train_loader, valid_loader)
            .metrics((LossMetric::new(), AccuracyMetric::new())),
        args,
    );
    let started = Instant::now();
    let result = training.launch(Learner::new(model, optimizer(args).init(), common.lr));
    finish_training(result.model, progress, &tokens, started)
}

/// The adding problem: the classifier's regression head (`SequenceRegressor`), MSE loss.
fn train_adding(
    args: &Args,
    model: Model<TrainBackend>,
    val: &(Vec<f32>, Vec<f32>),
    dir: &Path,
) -> Result<Trained> {
    let common = &args.common;
    let tokens = Arc::new(AtomicUsize::new(0));
    let epoch = AddingStream {
        time: common.seq_len,
        len: epoch_steps(args) * common.batch,
        rng: Mutex::new(StdRng::seed_from_u64(common.seed ^ 0xadd)),
    };
    let train_loader = DataLoaderBuilder::new(Counting {
        batcher: AddingBatcher,
        tokens: tokens.clone(),
    })
    .batch_size(common.batch)
    .build(epoch);
    let valid_loader = DataLoaderBuilder::new(AddingBatcher)
        .batch_size(256)
        .build(InMemDataset::new(adding_items(val)));
    let (training, progress) = configure(
        SupervisedTraining::new(dir, train_loader, valid_loader)
            .metrics((LossMetric::new(), WithinTolerance::new())),
        args,
    );
    let started = Instant::now();
    let result = training.launch(Learner::new(
        SequenceRegressor::new(model),
        optimizer(args).init(),
        common.lr,
    ));
    finish_training(result.model.into_inner(), progress, &tokens, started)
}

/// `loss.csv` and `loss.svg`: the training loss of every step and the validation loss of
/// every evaluation.
fn write_curves(out: &RunDir, trained: &Trained) -> Result<()> {
    let mut curves = LossHistory::new();
    for (step, &loss) in trained.losses.iter().enumerate() {
        curves.push_train(step + 1, loss);
    }
    for eval in &trained.history {
        curves.push_val(eval.step, eval.val_loss);
    }
    write_loss_curves(out.path(), &curves).map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// Evaluation and reports
// ---------------------------------------------------------------------------------------------

fn mean_of(hits: &[bool]) -> f64 {
    hits.iter().filter(|&&h| h).count() as f64 / hits.len() as f64
}

fn within_tolerance(errors: &[f64]) -> f64 {
    errors.iter().filter(|e| e.abs() < ADDING_TOLERANCE).count() as f64 / errors.len() as f64
}

/// Mean loss over `set` and whether each sentence was classified correctly.
fn evaluate_sentences(
    model: &Model<Backend>,
    set: &[Sentence],
    device: &backend::Device,
) -> Result<(f64, Vec<bool>)> {
    let mut total = 0.0;
    let mut correct = Vec::with_capacity(set.len());
    for chunk in set.chunks(256) {
        let refs: Vec<&Sentence> = chunk.iter().collect();
        let (ids, lengths, labels) = sentence_batch::<Backend>(&refs, device);
        let logits = model.try_forward(ids, Some(&lengths))?;
        total += classification_nll(logits.clone(), labels.clone()).into_scalar() as f64
            * chunk.len() as f64;
        correct.extend(try_correct(logits, labels)?);
    }
    Ok((total / set.len() as f64, correct))
}

/// MSE over the adding set and each prediction's error.
fn evaluate_adding(
    model: &Model<Backend>,
    set: &(Vec<f32>, Vec<f32>),
    time: usize,
    device: &backend::Device,
) -> Result<(f64, Vec<f64>)> {
    let n = set.1.len();
    let mut errors = Vec::with_capacity(n);
    for start in (0..n).step_by(256) {
        let range = start..(start + 256).min(n);
        let (x, y) = adding_tensors::<Backend>(set, range, time, device);
        let prediction = model.try_forward(x, None)?;
        let diff = (prediction - y).into_data().convert::<f64>();
        errors.extend(diff.iter::<f64>());
    }
    let mse = errors.iter().map(|e| e * e).sum::<f64>() / n as f64;
    Ok((mse, errors))
}

/// Accuracy per group, groups in key order; each item is (key, group name, is long, hit).
fn grouped(items: impl Iterator<Item = (usize, String, bool, bool)>) -> Vec<Group> {
    // Per group: name, then [n, hits] for validation and for long.
    let mut groups: BTreeMap<usize, (String, [[usize; 2]; 2])> = BTreeMap::new();
    for (key, name, long, hit) in items {
        let counts = &mut groups.entry(key).or_insert((name, [[0; 2]; 2])).1[long as usize];
        counts[0] += 1;
        counts[1] += hit as usize;
    }
    let acc = |[n, hits]: [usize; 2]| (n > 0).then(|| hits as f64 / n as f64);
    groups
        .into_values()
        .map(|(group, [val, long])| Group {
            group,
            val_n: val[0],
            val_acc: acc(val),
            long_n: long[0],
            long_acc: acc(long),
        })
        .collect()
}

/// The bucket of width `WIDTH` holding `value`: its sort key and its name.
fn bucket(value: usize, what: &str) -> (usize, String) {
    const WIDTH: usize = 5;
    let low = value / WIDTH * WIDTH;
    (low, format!("{what} {low}-{}", low + WIDTH - 1))
}

fn report_sentences(
    model: &Model<Backend>,
    val: &[Sentence],
    long: &[Sentence],
    metrics: &mut Metrics,
    device: &backend::Device,
) -> Result<()> {
    let (_, val_correct) = evaluate_sentences(model, val, device)?;
    let (long_loss, long_correct) = evaluate_sentences(model, long, device)?;
    metrics.long_loss = long_loss;
    metrics.long_acc = mean_of(&long_correct);
    let mut counts = BTreeMap::new();
    for s in val {
        *counts.entry(s.label).or_insert(0usize) += 1;
    }
    metrics.baseline_acc = *counts.values().max().unwrap() as f64 / val.len() as f64;

    // Every held-out sentence: (sentence, is long, classified correctly).
    let all = || {
        let val = val
            .iter()
            .zip(&val_correct)
            .map(|(s, &hit)| (s, false, hit));
        val.chain(
            long.iter()
                .zip(&long_correct)
                .map(|(s, &hit)| (s, true, hit)),
        )
    };
    metrics.by_position = grouped(all().map(|(s, long, hit)| {
        let (key, name) = match s.year_at {
            None => (usize::MAX, "no year".to_string()), // sorts last
            Some(at) => bucket(at, "year at"),
        };
        (key, name, long, hit)
    }));
    metrics.by_length = grouped(all().map(|(s, long, hit)| {
        let (key, name) = bucket(s.ids.len(), "length");
        (key, name, long, hit)
    }));
    eprintln!(
        "held-out accuracy: {:.4} on lengths {}-{} (as trained), {:.4} on lengths {}-{} (longer than any trained on); always the commonest label: {:.4}",
        metrics.val_acc,
        metrics.train_lengths[0],
        metrics.train_lengths[1],
        metrics.long_acc,
        metrics.long_lengths[0],
        metrics.long_lengths[1],
        metrics.baseline_acc
    );
    let cell = |acc: Option<f64>, n: usize| match acc {
        Some(acc) => format!("{acc:.4} (n = {n:>4})"),
        None => "-".to_string(),
    };
    for (title, groups) in [
        (
            "by position of the year (token index of its first digit)",
            &metrics.by_position,
        ),
        ("by sentence length (tokens)", &metrics.by_length),
    ] {
        eprintln!("accuracy {title}:");
        eprintln!(
            "  {:<16} {:>18}  {:>18}",
            "", "validation", "longer than train"
        );
        for g in groups {
            eprintln!(
                "  {:<16} {:>18}  {:>18}",
                g.group,
                cell(g.val_acc, g.val_n),
                cell(g.long_acc, g.long_n)
            );
        }
    }
    Ok(())
}

fn report_adding(
    model: &Model<Backend>,
    val: &(Vec<f32>, Vec<f32>),
    long: &(Vec<f32>, Vec<f32>),
    time: usize,
    metrics: &mut Metrics,
    device: &backend::Device,
) -> Result<()> {
    let (long_mse, long_errors) = evaluate_adding(model, long, 2 * time, device)?;
    metrics.long_loss = long_mse;
    metrics.long_acc = within_tolerance(&long_errors);
    // The trivial baseline: always predict 1.
    let baseline_errors: Vec<f64> = val.1.iter().map(|&y| 1.0 - y as f64).collect();
    let baseline_mse =
        baseline_errors.iter().map(|e| e * e).sum::<f64>() / baseline_errors.len() as f64;
    metrics.baseline_mse = Some(baseline_mse);
    metrics.baseline_acc = within_tolerance(&baseline_errors);
    eprintln!("adding problem, T = {time} (long: T = {}):", 2 * time);
    eprintln!("  {:<28} {:>10} {:>18}", "", "MSE", "|error| < 0.04");
    for (name, mse, acc) in [
        ("model, validation", metrics.val_loss, metrics.val_acc),
        ("model, T doubled", long_mse, metrics.long_acc),
        ("always 1 (baseline)", baseline_mse, metrics.baseline_acc),
    ] {
        eprintln!("  {name:<28} {mse:>10.4} {acc:>18.4}");
    }
    Ok(())
}
