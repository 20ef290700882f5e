//! Your own recurrence: write one step, get the unroll, the layers, the readout, the loss,
//! generation and burn-train's `Learner` for free.
//! Run: `cargo run --release --example custom_cell` (flags: `-- --help`).
//!
//! The cell is a minimal gated unit: one gate `z` decides how much of the state to renew,
//!
//! ```text
//! z(t) = σ(b_z + x(t) U_z + h(t-1) W_z)
//! h(t) = (1 − z(t)) ⊙ h(t-1) + z(t) ⊙ tanh(b_h + x(t) U_h + h(t-1) W_h)
//! ```
//!
//! Its input projections `b + x U` are hoisted for all steps in `drive` (one product); the
//! generic unroll splits them into steps with a linear-time backward pass. Trained as a
//! character language model on tiny-shakespeare through the `Learner`; ends with a sample.
#![cfg_attr(rustfmt, rustfmt::skip)] // kept compact: an example is read on one screen

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::transform::{SamplerDataset, SamplerDatasetOptions};
use burn::module::Param;
use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::train::metric::LossMetric;
use burn::train::{Learner, SupervisedTraining};
use clap::Parser;

use unfold::data::dataset::{SequenceBatcher, WindowDataset};
use unfold::data::Corpus;
use unfold::nn::sample::{generate, GenerateConfig, Sampling};
use unfold::nn::{ElmanRnnConfig, Recurrence, SequenceInput};
use unfold_lab::backend::{self, TrainBackend};
use unfold_lab::cli::{self, CommonArgs, Defaults};
use unfold_lab::{exit_on_error, learner::configure, Result};

/// The minimal gated unit: `U` `[input, 2H]`, `W` `[H, 2H]`, `b` `[2H]`; gate first, then the
/// candidate.
#[derive(Module, Debug)]
struct GatedCell<B: Backend> {
    u: Param<Tensor<B, 2>>,
    w: Param<Tensor<B, 2>>,
    b: Param<Tensor<B, 1>>,
}

impl<B: Backend> GatedCell<B> {
    fn new(input: usize, hidden: usize, device: &B::Device) -> Self {
        let init = unfold::nn::default_initializer();
        Self {
            u: init.init_with([input, 2 * hidden], Some(input), Some(hidden), device),
            w: init.init_with([hidden, 2 * hidden], Some(hidden), Some(hidden), device),
            b: Param::from_tensor(Tensor::zeros([2 * hidden], device)),
        }
    }
}

impl<B: Backend> Recurrence<B> for GatedCell<B> {
    fn input_size(&self) -> usize {
        self.u.dims()[0]
    }

    fn state_size(&self) -> usize {
        self.w.dims()[0]
    }

    /// `b + x(t) U` for every step: a row lookup for token ids.
    fn drive(&self, input: SequenceInput<B>) -> Tensor<B, 3> {
        let ux = match input {
            SequenceInput::Tokens(ids) => burn::tensor::module::embedding(self.u.val(), ids),
            SequenceInput::Dense(x) => x.matmul(self.u.val().unsqueeze()),
        };
        ux + self.b.val().unsqueeze()
    }

    fn step(&self, h: Tensor<B, 2>, drive: Tensor<B, 2>) -> Tensor<B, 2> {
        let [batch, hidden] = h.dims();
        let a = drive + h.clone().matmul(self.w.val());
        let z = burn::tensor::activation::sigmoid(a.clone().slice([0..batch, 0..hidden]));
        let candidate = a.slice([0..batch, hidden..2 * hidden]).tanh();
        h.clone() + z * (candidate - h) // (1 − z) ⊙ h + z ⊙ candidate
    }
}

/// Train a character language model whose recurrence is a cell written here.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

const DEFAULTS: Defaults = Defaults {
    hidden: 128,
    seq_len: 32,
    batch: 32,
    steps: 400,
    lr: 3e-3,
    out: "runs/custom_cell",
};

fn main() {
    let args: Args = cli::parse(&DEFAULTS);
    exit_on_error(|| run(&args.common));
}

fn run(common: &CommonArgs) -> Result<()> {
    common.validate(&[])?;
    let corpus = match &common.corpus {
        Some(path) => Corpus::from_file(path)?,
        None => Corpus::tiny_shakespeare(),
    };
    let vocab = corpus.vocab().len();
    let (train_ids, valid_ids) = corpus.split(0.9)?;
    let device = backend::open()?;
    TrainBackend::seed(&device, common.seed);
    // Refuse sizes that cannot fit, before allocating: this cell needs at most an Elman of 2H.
    common.check_memory(|h, batch, time| ElmanRnnConfig::new(vocab, h.saturating_mul(2), vocab).training_memory(batch, time))?;
    // The same per-step model as the Elman language model, with this cell in every layer.
    let model = ElmanRnnConfig::new(vocab, common.hidden, vocab)
        .try_init_with(&device, |input, hidden| {
            GatedCell::<TrainBackend>::new(input, hidden, &device)
        })?;

    let batcher = SequenceBatcher::new(0);
    let train = WindowDataset::every_offset(train_ids, common.seq_len)?;
    let valid = WindowDataset::non_overlapping(valid_ids[..20_000].to_vec(), common.seq_len)?;
    // One epoch of `--steps` batches drawn from every window of the training text.
    let options = SamplerDatasetOptions::default()
        .with_replacement()
        .with_fixed_size(common.steps * common.batch)
        .with_seed(common.seed);
    let train = DataLoaderBuilder::new(batcher)
        .batch_size(common.batch)
        .build(SamplerDataset::new(train, options));
    let valid = DataLoaderBuilder::new(batcher).batch_size(256).build(valid);
    let training = SupervisedTraining::new(&common.out, train, valid).metrics((LossMetric::new(),));
    let (training, progress) = configure(training, common.steps, common.steps);
    let trained = training
        .launch(Learner::new(model, AdamConfig::new().init(), common.lr))
        .model;
    let reported = progress.reported()?;

    let prompt = corpus.vocab().encode("ROMEO:")?;
    let config = GenerateConfig::new(200)
        .with_sampling(Sampling::Temperature(0.8))
        .with_seed(common.seed);
    let text = corpus.vocab().decode(&generate(&trained, &[prompt], &config, &device)?[0])?;
    eprintln!("--- sample ---\nROMEO:{text}\n---");
    let last = reported.history.last().expect("an evaluation");
    let metrics = serde_json::json!({ "val_loss": last.val_loss, "steps": reported.losses.len() });
    println!("{metrics}");
    Ok(())
}
