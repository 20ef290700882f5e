//! Sequence classification with a single output at the end (Goodfellow et al., fig. 10.5).
//!
//! ```text
//! cargo run --release -p unfold-lab --bin classify                   # is there a year? (binary)
//! cargo run --release -p unfold-lab --bin classify -- --task decade --steps 6000  # which decade
//! cargo run --release -p unfold-lab --bin classify -- --task adding --seq-len 50 --steps 15000 --eval-every 1500
//! ```
//!
//! The textbook motivates parameter sharing with "I went to Nepal in 2009" and "In 2009, I went
//! to Nepal": a model that reads one word at a time with the same weights at every step can
//! find the year wherever it appears. This program generates such sentences from the word
//! lists of `unfold_data::tasks::year`, at random lengths, with the year (when there is one) at a random position, and
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
//! the trivial baseline of always predicting 1 (the mean of the target: MSE `1/6`). The data
//! comes from `unfold_data::tasks::adding`.
//!
//! Training goes through burn-train's `Learner` (unfold's `TrainStep` for `SequenceClassifier`,
//! and for the adding problem's `SequenceRegressor`): an epoch is `--eval-every` steps, then a
//! validation pass with Burn's loss and accuracy metrics; a progress bar on stderr (the compact
//! `MetricsRenderer` of `unfold_lab::learner`). The Learner's checkpoints and metric logs go to
//! `--out`/learner.
//!
//! Writes `config.json`, `model.mpk`, `vocab.json` (sentence tasks), `metrics.json`, and the
//! loss curves `loss.csv`/`loss.svg` (training loss of every step, validation loss of every
//! evaluation) to `--out` and ends with one JSON line.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::transform::{SamplerDataset, SamplerDatasetOptions};
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::AdamConfig;
use burn::tensor::backend::Backend as _;
use burn::tensor::Tensor;
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    AccuracyMetric, Adaptor, LossMetric, Metric, MetricMetadata, MetricName, Numeric, NumericEntry,
    SerializedEntry,
};
use burn::train::{Learner, RegressionOutput, SupervisedTraining};
use clap::{Parser, ValueEnum};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

use unfold_data::dataset::{ClassificationBatcher, LabelledSequence};
use unfold_data::tasks::adding::{
    self, adding_problem, within_tolerance, AddingBatcher, AddingItem, AddingSet, AddingStream,
};
use unfold_data::tasks::year::{
    labelled, sentence_batch, shortest_year_sentence, Labels, Sentence, SplitConfig, YearTask,
};
use unfold_lab::backend::{self, Backend, TrainBackend};
use unfold_lab::cli::{self, CommonArgs, Defaults};
use unfold_lab::learner::{self, Eval, LearnerProgress};
use unfold_lab::{exit_on_error, Result};
use unfold_nn::checkpoint::{self, RunDir};
use unfold_nn::train::SequenceRegressor;
use unfold_nn::{
    classification_nll, try_correct, Error, Pooling, SequenceClassifier, SequenceEncoderConfig,
    UnrollOptions,
};
use unfold_viz::{write_loss_curves, LossHistory};

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

impl Task {
    /// The labels of a sentence task.
    fn labels(self) -> Option<Labels> {
        match self {
            Task::Year => Some(Labels::Year),
            Task::Decade => Some(Labels::Decade),
            Task::Adding => None,
        }
    }
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
    exit_on_error(|| run(args));
}

/// Flags that clap accepts but training cannot use.
fn check_args(args: &Args) -> unfold_nn::Result<()> {
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
        task: YearTask,
        train: Vec<Sentence>,
        val: Vec<Sentence>,
        long: Vec<Sentence>,
    },
    Adding {
        val: AddingSet,
        long: AddingSet,
    },
}

fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    check_args(&args)?;
    let common = &args.common;
    let out = RunDir::create(&common.out)?;
    let device = backend::open()?;
    TrainBackend::seed(&device, common.seed);
    // Held out: sentences of every length up to twice the longest trained on; adding-problem
    // sequences of twice the trained T.
    let long_lengths = match args.task {
        Task::Adding => [2 * common.seq_len; 2],
        _ => [common.seq_len + 1, 2 * common.seq_len],
    };

    // Data: generated once from the seed (the adding problem draws fresh training batches).
    let mut examples = Vec::new();
    let (train_lengths, input_size, outputs, data) = match args.task.labels() {
        Some(labels) => {
            let task = YearTask::new(labels);
            // Training, validation (none of them a training sentence) and long sentences, in
            // that order from one generator seeded with --seed.
            let mut split = SplitConfig::new(
                args.train_size,
                args.val_size,
                args.min_len..=common.seq_len,
            );
            split.long_lengths = long_lengths[0]..=long_lengths[1];
            let splits = task.splits(common.seed, &split)?;
            for s in splits.val.iter().filter(|s| s.year_at.is_some()).take(2) {
                examples.push(format!(
                    "  e.g. label {}: {}",
                    s.label,
                    task.words().decode(&s.ids)?
                ));
            }
            (
                [args.min_len, common.seq_len],
                task.vocab_size(),
                task.num_classes(),
                Data::Sentences {
                    task,
                    train: splits.train,
                    val: splits.val,
                    long: splits.long,
                },
            )
        }
        None => {
            let time = common.seq_len;
            let mut rng = StdRng::seed_from_u64(common.seed);
            let val = adding_problem(args.val_size, time, &mut rng)?;
            let long = adding_problem(args.val_size, long_lengths[1], &mut rng)?;
            (
                [time, time],
                adding::FEATURES,
                1,
                Data::Adding { val, long },
            )
        }
    };

    let config = SequenceEncoderConfig::new(input_size, common.hidden)
        .with_num_layers(args.num_layers)
        .with_bidirectional(args.bidirectional)
        .with_pooling(match args.pooling {
            PoolingArg::Last => Pooling::Last,
            PoolingArg::Mean => Pooling::Mean,
        })
        .classifier(outputs);
    let model: Model<TrainBackend> = config.try_init(&device)?;
    out.write_json(
        "config.json",
        &serde_json::json!({ "model": config, "args": args }),
    )?;
    if let Data::Sentences { task, .. } = &data {
        out.write_json("vocab.json", task.words())?;
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
        // Both tasks run an accuracy metric (Burn's, or `WithinTolerance`).
        val_acc: last.val_acc.unwrap_or(f64::NAN),
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
        Data::Sentences {
            task, val, long, ..
        } => {
            report_sentences(&model, val, long, &mut metrics, &device)?;
            metrics.vocab_size = Some(task.vocab_size());
        }
        Data::Adding { val, long } => {
            report_adding(&model, val, long, common.seq_len, &mut metrics, &device)?;
        }
    }
    metrics.wall_s = started.elapsed().as_secs_f64();
    Ok(checkpoint::finish(&out, &metrics)?)
}

// ---------------------------------------------------------------------------------------------
// Training through burn-train's Learner
// ---------------------------------------------------------------------------------------------

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
        self.time()
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

/// The adding problem's accuracy: the fraction of predictions within [`TOLERANCE`](unfold_data::tasks::adding::TOLERANCE) of
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

/// The Learner set-up every task shares (`unfold_lab::learner::configure`): an epoch is
/// `--eval-every` steps, then a validation pass; checkpoints (model, optimiser, scheduler) and
/// Burn's metric logs go to `<out>/learner`.
fn configure<LC: burn::train::LearningComponentsTypes>(
    training: SupervisedTraining<LC>,
    args: &Args,
) -> (SupervisedTraining<LC>, LearnerProgress) {
    learner::configure(training, args.common.steps, args.eval_every)
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
    progress: LearnerProgress,
    tokens: &AtomicUsize,
    started: Instant,
) -> Result<Trained> {
    let elapsed = started.elapsed();
    let reported = progress.reported()?;
    Ok(Trained {
        model,
        train_loss: reported.history.last().expect("checked").train_loss,
        steps: reported.losses.len(),
        losses: reported.losses,
        history: reported.history,
        tokens: tokens.load(Ordering::Relaxed),
        train_wall: elapsed.saturating_sub(reported.eval_time),
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
    val: &AddingSet,
    dir: &Path,
) -> Result<Trained> {
    let common = &args.common;
    let tokens = Arc::new(AtomicUsize::new(0));
    // Fresh sequences for every batch, from one generator seeded with --seed ^ 0xadd.
    let epoch = AddingStream::new(
        common.seq_len,
        epoch_steps(args) * common.batch,
        common.seed ^ 0xadd,
    )?;
    let train_loader = DataLoaderBuilder::new(Counting {
        batcher: AddingBatcher,
        tokens: tokens.clone(),
    })
    .batch_size(common.batch)
    .build(epoch);
    let valid_loader = DataLoaderBuilder::new(AddingBatcher)
        .batch_size(256)
        .build(InMemDataset::new(val.items()));
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
fn write_curves(out: &RunDir, trained: &Trained) -> unfold_nn::Result<()> {
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

/// Mean loss over `set` and whether each sentence was classified correctly.
fn evaluate_sentences(
    model: &Model<Backend>,
    set: &[Sentence],
    device: &backend::Device,
) -> Result<(f64, Vec<bool>)> {
    let mut total = 0.0;
    let mut correct = Vec::with_capacity(set.len());
    for chunk in set.chunks(256) {
        let batch = sentence_batch::<Backend>(chunk, device)?;
        let labels = batch.labels;
        let logits =
            model.try_forward(batch.ids, &UnrollOptions::new().with_lengths(batch.lengths))?;
        total += classification_nll(logits.clone(), labels.clone()).into_scalar() as f64
            * chunk.len() as f64;
        correct.extend(try_correct(logits, labels)?);
    }
    Ok((total / set.len() as f64, correct))
}

/// MSE over the adding set and each prediction's error.
fn evaluate_adding(
    model: &Model<Backend>,
    set: &AddingSet,
    device: &backend::Device,
) -> Result<(f64, Vec<f64>)> {
    let n = set.len();
    let mut errors = Vec::with_capacity(n);
    for start in (0..n).step_by(256) {
        let range = start..(start + 256).min(n);
        let (x, y) = set.tensors::<Backend>(range, device)?;
        let prediction = model.try_forward(x, &UnrollOptions::new())?;
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
    val: &AddingSet,
    long: &AddingSet,
    time: usize,
    metrics: &mut Metrics,
    device: &backend::Device,
) -> Result<()> {
    let (long_mse, long_errors) = evaluate_adding(model, long, device)?;
    metrics.long_loss = long_mse;
    metrics.long_acc = within_tolerance(&long_errors);
    // The trivial baseline: always predict 1.
    let baseline_errors: Vec<f64> = val.targets().iter().map(|&y| 1.0 - y as f64).collect();
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
