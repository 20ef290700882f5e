//! Sequence classification with a single output at the end (Goodfellow et al., fig. 10.5): is
//! there a year in the sentence? Trained through burn-train's `Learner`.
//!
//! ```text
//! cargo run --release --example classify
//! cargo run --release --example classify -- --labels decade --steps 6000
//! ```
//!
//! The textbook motivates parameter sharing with "I went to Nepal in 2009" and "In 2009, I went
//! to Nepal": a model that reads one word at a time with the same weights at every step finds
//! the year wherever it appears. The sentences come from `unfold::data::tasks::year` (years as
//! four digit tokens, among other numbers that are not years); the model reads each sentence,
//! `h(t) = tanh(b + W h(t-1) + U x(t))`, and emits one output from its last state,
//! `o = c + V h(τ)`, trained by `L = -log softmax(o)[y]`. Accuracy is reported on held-out
//! sentences of the training lengths and on longer ones than any seen in training. The
//! experiment with every option and report is `cargo run --release -p unfold-lab --bin classify`.
#![cfg_attr(rustfmt, rustfmt::skip)] // kept compact: an example is read on one screen

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::InMemDataset;
use burn::optim::AdamConfig;
use burn::tensor::backend::Backend as _;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{Learner, SupervisedTraining};
use clap::Parser;

use unfold::data::dataset::ClassificationBatcher;
use unfold::data::tasks::year::{labelled, sentence_batch, Labels, Sentence, SplitConfig, YearTask};
use unfold::nn::{try_accuracy, SequenceClassifier, SequenceEncoderConfig, UnrollOptions};
use unfold_lab::backend::{self, Backend, TrainBackend};
use unfold_lab::cli::{self, CommonArgs, Defaults};
use unfold_lab::learner::configure;
use unfold_lab::{exit_on_error, Result};

/// Learn whether a sentence holds a year (or which decade), wherever it is.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// `year` (is there one: 2 classes) or `decade` (which one, or none: 9 classes).
    #[arg(long, default_value = "year", value_parser = ["year", "decade"])]
    labels: String,
    /// Training sentences (the validation ones are distinct from them).
    #[arg(long, default_value_t = 20_000)]
    train_size: usize,
    /// Validation sentences, and as many longer than any in training.
    #[arg(long, default_value_t = 2_000)]
    val_size: usize,
    /// Steps between evaluations (one Learner epoch).
    #[arg(long, default_value_t = 250)]
    eval_every: usize,
}

const DEFAULTS: Defaults = Defaults {
    hidden: 64,
    seq_len: 24,
    batch: 32,
    steps: 2000,
    lr: 2e-3,
    out: "runs/classify",
};

fn main() {
    let args: Args = cli::parse(&DEFAULTS);
    exit_on_error(|| run(&args));
}

fn run(args: &Args) -> Result<()> {
    let common = &args.common;
    common.validate(&[
        ("--train-size", args.train_size),
        ("--val-size", args.val_size),
        ("--eval-every", args.eval_every),
    ])?;
    let labels = match args.labels.as_str() {
        "decade" => Labels::Decade,
        _ => Labels::Year,
    };
    let task = YearTask::new(labels);
    let split = SplitConfig::new(args.train_size, args.val_size, 10..=common.seq_len);
    let sets = task.splits(common.seed, &split)?;
    let device = backend::open()?;
    TrainBackend::seed(&device, common.seed);
    common.check_memory(|hidden, batch, time| {
        SequenceEncoderConfig::new(task.vocab_size(), hidden)
            .classifier(task.num_classes())
            .training_memory(batch, time)
    })?;
    let model = SequenceEncoderConfig::new(task.vocab_size(), common.hidden)
        .classifier(task.num_classes())
        .try_init::<TrainBackend>(&device)?;

    // An epoch is `--eval-every` batches, then a validation pass.
    let batcher = ClassificationBatcher::new(0);
    let epoch = args.eval_every.min(common.steps) * common.batch;
    let train = InMemDataset::new(labelled(&sets.train).into_iter().cycle().take(epoch).collect());
    let train = DataLoaderBuilder::new(batcher)
        .batch_size(common.batch)
        .shuffle(common.seed)
        .build(train);
    let valid = DataLoaderBuilder::new(batcher)
        .batch_size(256)
        .build(InMemDataset::new(labelled(&sets.val)));
    let training = SupervisedTraining::new(&common.out, train, valid)
        .metrics((LossMetric::new(), AccuracyMetric::new()));
    let (training, progress) = configure(training, common.steps, args.eval_every);
    let result = training.launch(Learner::new(model, AdamConfig::new().init(), common.lr));
    let reported = progress.reported()?;

    let model = result.model;
    let (val_acc, long_acc) = (
        accuracy(&model, &sets.val, &device)?,
        accuracy(&model, &sets.long, &device)?,
    );
    let longest = common.seq_len;
    eprintln!(
        "{} classes: accuracy {val_acc:.3} on held-out sentences of 10-{longest} tokens, \
         {long_acc:.3} on sentences of {}-{} (longer than any seen in training)",
        task.num_classes(),
        longest + 1,
        2 * longest
    );
    let metrics = serde_json::json!({
        "val_acc": val_acc,
        "long_acc": long_acc,
        "train_loss": reported.history.last().map(|e| e.train_loss),
        "steps": reported.losses.len(),
        "backend": backend::NAME,
    });
    println!("{metrics}");
    Ok(())
}

/// The share of `sentences` whose most likely class is their label.
fn accuracy(
    model: &SequenceClassifier<Backend>,
    sentences: &[Sentence],
    device: &backend::Device,
) -> Result<f64> {
    let batch = sentence_batch::<Backend>(sentences, device)?;
    let options = UnrollOptions::new().with_lengths(batch.lengths);
    let logits = model.try_forward(batch.ids, &options)?;
    Ok(try_accuracy(logits, batch.labels)?)
}
