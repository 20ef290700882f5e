//! Memory and time of training on long sequences: full BPTT versus truncated BPTT.
//!
//! ```text
//! cargo run --release -p unfold-lab --bin long_sequences
//! cargo run --release -p unfold-lab --bin long_sequences -- --lengths 64,256,1024,4096 --seq-len 64
//! ```
//!
//! For every length `T`, trains the char-level Elman model on `T` consecutive characters per
//! row in two ways and measures peak heap memory (unfold-nn's counting global allocator,
//! `unfold_nn::memory::Counting`, installed in this binary) and wall time:
//! - **full**: one forward and backward pass over all `T` steps, one update;
//! - **truncated**: `T / k` chunks of `k = --seq-len` steps, each starting from the previous
//!   chunk's detached final state (`unfold_data::chunks`), one update per chunk.
//!
//! Prints a Markdown table on stderr; the last stdout line is the JSON of the measurements.

use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend as _;
use burn::tensor::Tensor;
use clap::Parser;
use serde::Serialize;

use unfold_data::chunks::{ChunkedCorpus, StatefulBatch};
use unfold_data::Corpus;
use unfold_lab::backend::{self, TrainBackend};
use unfold_lab::cli::{self, CommonArgs, Defaults};
use unfold_lab::{exit_on_error, Result};
use unfold_nn::checkpoint::{self, RunDir};
use unfold_nn::clip::clip_global_norm;
use unfold_nn::memory::{peak_during, Counting};
use unfold_nn::{sequence_nll, ElmanRnn, ElmanRnnConfig, Reduction, SequenceModel, UnrollOptions};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Measure peak memory and time per update of full and truncated BPTT.
#[derive(Parser, Debug, Serialize)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Sequence lengths T to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,256,1024,4096")]
    lengths: Vec<usize>,
    /// Global-norm gradient clipping (0: off).
    #[arg(long, default_value_t = 5.0)]
    clip: f64,
}

const DEFAULTS: Defaults = Defaults {
    hidden: 256,
    seq_len: 64, // the truncation length k
    batch: 32,
    steps: 2, // repeats per measurement (the fastest is reported)
    lr: 2e-3,
    out: "runs/long_sequences",
};

/// One row of the table.
#[derive(Debug, Serialize)]
struct Row {
    length: usize,
    full_peak_mib: f64,
    full_s: f64,
    truncated_peak_mib: f64,
    truncated_s: f64,
    truncated_updates: usize,
}

#[derive(Debug, Serialize)]
struct Metrics {
    hidden: usize,
    batch: usize,
    truncation: usize,
    backend: &'static str,
    rows: Vec<Row>,
    wall_s: f64,
}

fn main() {
    let args: Args = cli::parse(&DEFAULTS);
    exit_on_error(|| run(args));
}

/// Trains on `T` tokens per row in chunks of `k` (`k = T`: full BPTT). Returns the number of
/// updates.
fn train_over(
    model: ElmanRnn<TrainBackend>,
    ids: &[usize],
    batch: usize,
    length: usize,
    k: usize,
    args: &Args,
) -> Result<usize> {
    let device = backend::try_device()?;
    let mut optimizer = AdamConfig::new().init();
    let mut model = model;
    // Exactly `batch` streams of `length` tokens, read in chunks of `k`.
    let mut chunks = ChunkedCorpus::new(ids[..batch * length + 1].to_vec(), batch, k)?;
    let mut carried: Option<Tensor<TrainBackend, 2>> = None;
    let updates = length / k;
    for _ in 0..updates {
        let StatefulBatch { batch, reset } = chunks.next_batch::<TrainBackend>(&device);
        let options = match carried.take() {
            Some(h) if !reset => UnrollOptions::new().with_initial_state(h),
            _ => UnrollOptions::new(),
        };
        let out = model.try_forward(batch.inputs, &options)?;
        carried = Some(out.last.detach());
        let loss = sequence_nll(out.logits, batch.targets, None, Reduction::MeanPerToken);
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if args.clip > 0.0 {
            grads = clip_global_norm(&model, grads, args.clip)?.0;
        }
        model = optimizer.step(args.common.lr, model, grads);
    }
    Ok(updates)
}

fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let common = &args.common;
    let out = RunDir::create(&common.out)?;
    let corpus = match &common.corpus {
        Some(path) => Corpus::from_file(path)?,
        None => Corpus::tiny_shakespeare(),
    };
    let vocab = corpus.vocab().len();
    let device = backend::open()?;
    TrainBackend::seed(&device, common.seed);
    let config = ElmanRnnConfig::new(vocab, common.hidden, vocab);
    let model: ElmanRnn<TrainBackend> = config.try_init(&device)?;
    let k = common.seq_len;
    let mut rows = Vec::new();
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    for &length in &args.lengths {
        let best = |chunk: usize| -> Result<(f64, usize, usize)> {
            let mut fastest = f64::INFINITY;
            let mut peak = 0;
            let mut updates = 0;
            for _ in 0..common.steps.max(1) {
                let timer = Instant::now();
                let (result, bytes) = peak_during(|| {
                    train_over(
                        model.clone(),
                        corpus.ids(),
                        common.batch,
                        length,
                        chunk,
                        &args,
                    )
                });
                updates = result?;
                fastest = fastest.min(timer.elapsed().as_secs_f64());
                peak = peak.max(bytes);
            }
            Ok((fastest, peak, updates))
        };
        let (full_s, full_peak, _) = best(length)?;
        let (truncated_s, truncated_peak, truncated_updates) = best(k.min(length))?;
        rows.push(Row {
            length,
            full_peak_mib: mib(full_peak),
            full_s,
            truncated_peak_mib: mib(truncated_peak),
            truncated_s,
            truncated_updates,
        });
        eprintln!("T = {length}: done");
    }
    eprintln!(
        "| T | full BPTT: peak memory | full BPTT: time (1 update) | truncated k = {k}: peak \
         memory | truncated: time (T / k updates) |"
    );
    eprintln!("|---:|---:|---:|---:|---:|");
    for row in &rows {
        eprintln!(
            "| {} | {:.1} MiB | {:.2} s | {:.1} MiB | {:.2} s ({}) |",
            row.length,
            row.full_peak_mib,
            row.full_s,
            row.truncated_peak_mib,
            row.truncated_s,
            row.truncated_updates
        );
    }
    let metrics = Metrics {
        hidden: common.hidden,
        batch: common.batch,
        truncation: k,
        backend: backend::NAME,
        rows,
        wall_s: started.elapsed().as_secs_f64(),
    };
    Ok(checkpoint::finish(&out, &metrics)?)
}
