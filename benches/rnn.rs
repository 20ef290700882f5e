//! Training and generation throughput of unfold's RNNs next to burn-nn's `Rnn` + `Linear`, on
//! the same backend and the same math, in one run.
//!
//! ```text
//! cargo bench --bench rnn                 # every workload
//! cargo bench --bench rnn -- --quick      # fewer steps (a smoke run)
//! cargo bench --bench rnn -- standard     # only workloads whose name contains "standard"
//! ```
//!
//! A harness of our own rather than criterion: each sample is a whole training step (tens of
//! milliseconds to seconds), we report tokens/s and peak memory (which criterion does not
//! measure), and the rows of one workload must be measured side by side in one process.
//! Peak memory is the peak of live heap bytes, counted by this binary's global allocator (on the
//! ndarray backend every tensor lives on the heap).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig, Rnn, RnnConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use unfold::backend::{self, TrainBackend};
use unfold::nn::kernel::tanh_recurrence_unfused;
use unfold::nn::sample::{generate, GenerateConfig, Sampling};
use unfold::nn::{
    sequence_nll, ElmanRnn, ElmanRnnConfig, Recurrence, Reduction, SequenceInput, StepPlan,
    UnrollOptions,
};

struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// A training shape.
#[derive(Clone, Copy, Debug)]
struct Shape {
    batch: usize,
    time: usize,
    hidden: usize,
    vocab: usize,
}

/// One measured row.
struct Row {
    workload: String,
    system: &'static str,
    ms_per_step: f64,
    tokens_per_s: f64,
    peak_mib: f64,
}

/// Runs `step` `warmup` times, then until `steps` steps and at least `min_time` have passed;
/// returns (ms per step, peak MiB above the memory live before the first measured step).
fn measure(warmup: usize, steps: usize, min_time: Duration, mut step: impl FnMut()) -> (f64, f64) {
    for _ in 0..warmup {
        step();
    }
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let started = Instant::now();
    let mut done = 0;
    while done < steps || started.elapsed() < min_time {
        step();
        done += 1;
    }
    let ms = started.elapsed().as_secs_f64() * 1e3 / done as f64;
    let peak = (PEAK.load(Ordering::Relaxed) - base) as f64 / (1024.0 * 1024.0);
    (ms, peak)
}

fn random_ids<B: Backend>(shape: Shape, device: &B::Device) -> Tensor<B, 2, Int> {
    Tensor::<B, 2>::random(
        [shape.batch, shape.time],
        burn::tensor::Distribution::Uniform(0.0, shape.vocab as f64),
        device,
    )
    .int()
}

/// unfold's hidden-to-hidden RNN: token lookup, fused recurrence, readout, sequence NLL, Adam.
fn unfold_step<B: AutodiffBackend>(shape: Shape, recorded: bool) -> impl FnMut() {
    let device = Default::default();
    let mut model: ElmanRnn<B> =
        ElmanRnnConfig::new(shape.vocab, shape.hidden, shape.vocab).init(&device);
    let mut optimizer = AdamConfig::new().init();
    let (inputs, targets) = (
        random_ids::<B>(shape, &device),
        random_ids::<B>(shape, &device),
    );
    move || {
        let logits = if recorded {
            // The same model with the recurrence recorded step by step by Burn's autodiff.
            let drive = model.cell.drive(SequenceInput::Tokens(inputs.clone()));
            let plan = StepPlan::new(shape.batch, shape.time, None, false, &device).unwrap();
            let h0 = Tensor::zeros([shape.batch, shape.hidden], &device);
            let states = tanh_recurrence_unfused(drive, model.cell.w.val(), h0, &plan).states;
            model.readout.forward(states)
        } else {
            model.forward(inputs.clone(), &UnrollOptions::new()).logits
        };
        let loss = sequence_nll(logits, targets.clone(), None, Reduction::MeanPerToken);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(2e-3, model.clone(), grads);
    }
}

/// The same math with burn-nn: one-hot inputs through `Rnn` (`x W_ih + b + h W_hh`, tanh),
/// `Linear` readout, cross-entropy, Adam.
#[derive(Module, Debug)]
struct BurnNnModel<B: Backend> {
    rnn: Rnn<B>,
    head: Linear<B>,
}

fn burn_nn_step<B: AutodiffBackend>(shape: Shape) -> impl FnMut() {
    let device = Default::default();
    let mut model = BurnNnModel::<B> {
        rnn: RnnConfig::new(shape.vocab, shape.hidden, true).init(&device),
        head: LinearConfig::new(shape.hidden, shape.vocab).init(&device),
    };
    let mut optimizer = AdamConfig::new().init();
    let (inputs, targets) = (
        random_ids::<B>(shape, &device),
        random_ids::<B>(shape, &device),
    );
    let one_hot: Tensor<B, 3> = inputs.one_hot::<3>(shape.vocab).float();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    move || {
        let (states, _) = model.rnn.forward(one_hot.clone(), None);
        let logits = model
            .head
            .forward(states)
            .reshape([shape.batch * shape.time, shape.vocab]);
        let loss = loss_fn.forward(logits, targets.clone().reshape([shape.batch * shape.time]));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(2e-3, model.clone(), grads);
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let quick = args.iter().any(|a| a == "--quick");
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let (steps, min_time) = if quick {
        (3, Duration::from_millis(300))
    } else {
        (20, Duration::from_secs(3))
    };
    eprintln!(
        "backend {}, {} steps and {:?} minimum per row",
        backend::NAME,
        steps,
        min_time
    );

    let mut rows = Vec::new();
    let shapes = [
        (
            "train standard (B32 T64 H256 V65)",
            Shape {
                batch: 32,
                time: 64,
                hidden: 256,
                vocab: 65,
            },
        ),
        (
            "train large (B64 T128 H1024 V65)",
            Shape {
                batch: 64,
                time: 128,
                hidden: 1024,
                vocab: 65,
            },
        ),
    ];
    for (name, shape) in shapes {
        if !wanted(name) {
            continue;
        }
        let large = shape.hidden > 512;
        let (steps, min_time) = if large {
            (steps.min(5), min_time / 3)
        } else {
            (steps, min_time)
        };
        let tokens = (shape.batch * shape.time) as f64;
        let systems: [(&'static str, Box<dyn FnMut()>); 3] = [
            (
                "unfold ElmanRnn (fused BPTT)",
                Box::new(unfold_step::<TrainBackend>(shape, false)),
            ),
            (
                "unfold ElmanRnn (recorded per-step autodiff)",
                Box::new(unfold_step::<TrainBackend>(shape, true)),
            ),
            (
                "burn-nn Rnn + Linear",
                Box::new(burn_nn_step::<TrainBackend>(shape)),
            ),
        ];
        for (system, mut step) in systems {
            let (ms, peak) = measure(2, steps, min_time, &mut step);
            eprintln!(
                "{name:<36} {system:<46} {ms:>9.1} ms/step {:>10.0} tokens/s {peak:>8.1} MiB",
                tokens / ms * 1e3
            );
            rows.push(Row {
                workload: name.to_string(),
                system,
                ms_per_step: ms,
                tokens_per_s: tokens / ms * 1e3,
                peak_mib: peak,
            });
        }
    }

    let name = "generate (32 streams x 256 tokens, H256 V65)";
    if wanted(name) {
        let device = Default::default();
        let model: ElmanRnn<backend::Backend> = ElmanRnnConfig::new(65, 256, 65).init(&device);
        let prompts: Vec<Vec<usize>> = (0..32).map(|i| vec![i % 65, (i * 7) % 65]).collect();
        let config = GenerateConfig::new(256).with_sampling(Sampling::Temperature(1.0));
        let (ms, peak) = measure(1, steps.min(5), min_time, || {
            generate(&model, &prompts, &config, &device).unwrap();
        });
        let tokens = (32 * 256) as f64;
        eprintln!(
            "{name:<36} {:<46} {ms:>9.1} ms/run  {:>10.0} tokens/s {peak:>8.1} MiB",
            "unfold generate (batched)",
            tokens / ms * 1e3
        );
        rows.push(Row {
            workload: name.to_string(),
            system: "unfold generate (batched)",
            ms_per_step: ms,
            tokens_per_s: tokens / ms * 1e3,
            peak_mib: peak,
        });
    }

    // The table, with each row's speed relative to burn-nn on the same workload.
    println!("| workload | system | ms/step | tokens/s | vs burn-nn | peak MiB |");
    println!("|---|---|---|---|---|---|");
    for row in &rows {
        let baseline = rows
            .iter()
            .find(|r| r.workload == row.workload && r.system.starts_with("burn-nn"));
        let ratio = baseline.map_or("—".to_string(), |b| {
            format!("{:.1}×", row.tokens_per_s / b.tokens_per_s)
        });
        println!(
            "| {} | {} | {:.1} | {:.0} | {} | {:.1} |",
            row.workload, row.system, row.ms_per_step, row.tokens_per_s, ratio, row.peak_mib
        );
    }
}
