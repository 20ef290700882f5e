//! Training and generation throughput of unfold's RNNs next to burn-nn's `Rnn` + `Linear` (same
//! backend, same math) and PyTorch (same workloads, `benches/pytorch_reference.py`), in one run.
//!
//! ```text
//! cargo bench --bench rnn                 # every workload
//! cargo bench --bench rnn -- --quick      # fewer steps (a smoke run)
//! cargo bench --bench rnn -- standard     # only workloads whose name contains "standard"
//! cargo bench --bench rnn -- breakdown    # where a standard training step's time goes
//! cargo bench --bench rnn -- scale        # time per step vs sequence length and batch size
//! cargo bench --bench rnn -- scale --scale-plot=docs/diagrams/scale.svg   # and plot it
//! cargo bench --bench rnn -- gemm         # the GEMM kernel against matrixmultiply
//! cargo bench --bench rnn -- standard --system=unfold --no-pytorch   # one system's rows (to profile)
//! cargo bench --bench rnn -- --no-jax     # PyTorch as the only Python peer
//! ```
//!
//! After each workload's Rust rows the PyTorch script and the JAX script
//! (`benches/{pytorch,jax}_reference.py`) run the same workload, so the rows are measured
//! minutes apart under the same load. The interpreter is `$UNFOLD_BENCH_PYTHON`, else
//! `.venv-peers/bin/python` (see `docs/guide.md`), else `/tmp/torchvenv/bin/python`, else
//! `python3`; a peer that is not installed is skipped with a message.
//!
//! A harness of our own rather than criterion: each sample is a whole training step (tens of
//! milliseconds to seconds), we report tokens/s, peak memory and allocations per step (which
//! criterion does not measure), and the rows of one workload must be measured side by side in
//! one process. Peak memory is the peak of live heap bytes, counted by this binary's global
//! allocator (on the ndarray backend every tensor lives on the heap).

use std::process::Command;
use std::time::{Duration, Instant};

use burn::module::{AutodiffModule, ModuleDisplay};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Gru, GruConfig, Linear, LinearConfig, Lstm, LstmConfig, Rnn, RnnConfig, RnnState};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use unfold::nn::internals::{Kernels, NllRows, Steps};
use unfold::nn::memory;
use unfold::nn::sample::{generate, generate_step_by_step, GenerateConfig, Sampling};
use unfold::nn::{
    sequence_nll, unroll, Autoregressive, ElmanRnn, ElmanRnnConfig, GruCellConfig, JordanRnn,
    JordanRnnConfig, LstmCellConfig, Nonlinearity, Recurrence, Reduction, SequenceInput,
    SequenceModel, UnrollOptions,
};
use unfold_lab::backend::{self, TrainBackend};

#[global_allocator]
static ALLOCATOR: memory::Counting = memory::Counting;

/// A training shape.
#[derive(Clone, Copy, Debug)]
struct Shape {
    batch: usize,
    time: usize,
    hidden: usize,
    vocab: usize,
}

const STANDARD: Shape = Shape {
    batch: 32,
    time: 64,
    hidden: 256,
    vocab: 65,
};

/// One measured row.
struct Row {
    workload: String,
    system: String,
    ms_per_step: f64,
    tokens_per_s: f64,
    peak_mib: f64,
    /// CPU time per step, all threads of the process.
    cpu_ms: f64,
}

/// Nanoseconds this process has spent on a CPU, all threads (finished ones included), from
/// Linux `/proc/self/stat` (`utime + stime`, in ticks of 1/100 s; 0 elsewhere). The tick is
/// coarse, but every measurement here runs for seconds. The machine these numbers come from may
/// be shared: wall time includes waiting for a core, CPU time does not.
fn process_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses and may contain spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) * 10_000_000 // utime, stime: fields 14 and 15 of the whole line
}

/// What [`measure`] found.
struct Measured {
    ms: f64,
    /// CPU time of the process per step (all threads).
    cpu_ms: f64,
    peak_mib: f64,
    allocs_per_step: f64,
}

/// Runs `step` `warmup` times, then until `steps` steps and at least `min_time` have passed;
/// returns ms per step, the peak MiB above the memory live before the first measured step, and
/// heap allocations per step.
fn measure(warmup: usize, steps: usize, min_time: Duration, mut step: impl FnMut()) -> Measured {
    for _ in 0..warmup {
        step();
    }
    let base = memory::live();
    memory::reset_peak();
    let allocs = memory::allocations();
    let cpu = process_cpu_ns();
    let started = Instant::now();
    let mut done = 0;
    while done < steps || started.elapsed() < min_time {
        step();
        done += 1;
    }
    Measured {
        ms: started.elapsed().as_secs_f64() * 1e3 / done as f64,
        cpu_ms: (process_cpu_ns() - cpu) as f64 * 1e-6 / done as f64,
        peak_mib: memory::peak().saturating_sub(base) as f64 / (1024.0 * 1024.0),
        allocs_per_step: (memory::allocations() - allocs) as f64 / done as f64,
    }
}

fn random_ids<B: Backend>(
    batch: usize,
    time: usize,
    vocab: usize,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    Tensor::<B, 2>::random(
        [batch, time],
        burn::tensor::Distribution::Uniform(0.0, vocab as f64),
        device,
    )
    .int()
    .clamp(0, vocab as i64 - 1)
}

/// How unfold's training step computes its loss.
#[derive(Clone, Copy)]
enum Head {
    /// `ElmanRnn::loss`: the readout, log-softmax and NLL as one fused operation.
    Fused,
    /// `forward` then `sequence_nll`: the readout and the loss recorded op by op.
    Unfused,
}

/// unfold's hidden-to-hidden RNN: token lookup, fused recurrence, readout + NLL, Adam.
fn unfold_step<B: AutodiffBackend>(shape: Shape, head: Head) -> impl FnMut() {
    lm_step::<B, _>(shape, head, move |device| {
        ElmanRnnConfig::new(shape.vocab, shape.hidden, shape.vocab).init(device)
    })
}

/// One training step of any unfold language model (`build` makes it): the loss, its
/// backward pass and Adam, then a wait for the device (a GPU queues its work otherwise).
fn lm_step<B: AutodiffBackend, M: SequenceModel<B> + AutodiffModule<B> + 'static>(
    shape: Shape,
    head: Head,
    build: impl FnOnce(&B::Device) -> M,
) -> impl FnMut() {
    let device = Default::default();
    let mut model = build(&device);
    let mut optimizer = AdamConfig::new().init();
    let inputs = random_ids::<B>(shape.batch, shape.time, shape.vocab, &device);
    let targets = random_ids::<B>(shape.batch, shape.time, shape.vocab, &device);
    move || {
        let options = UnrollOptions::new();
        let loss = match head {
            Head::Fused => {
                model
                    .loss(
                        inputs.clone(),
                        targets.clone(),
                        &options,
                        Reduction::MeanPerToken,
                    )
                    .loss
            }
            Head::Unfused => {
                let logits = model.forward(inputs.clone(), &options).logits;
                sequence_nll(logits, targets.clone(), None, Reduction::MeanPerToken)
            }
        };
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(2e-3, model.clone(), grads);
        B::sync(&device).expect("the device failed");
    }
}

/// A user-written cell, `h(t) = tanh(b + W h(t-1) + U x(t))` in Burn tensor ops, which unfold
/// cannot see into: it unrolls step by step through the generic path (what any custom cell
/// gets), against the same math fused (`ElmanRnn`).
#[derive(Module, Debug)]
struct CustomTanhCell<B: Backend> {
    u: burn::module::Param<Tensor<B, 2>>,
    w: burn::module::Param<Tensor<B, 2>>,
    b: burn::module::Param<Tensor<B, 1>>,
}

impl<B: Backend> Recurrence<B> for CustomTanhCell<B> {
    fn input_size(&self) -> usize {
        self.u.dims()[0]
    }
    fn state_size(&self) -> usize {
        self.w.dims()[0]
    }
    /// `b + x(t) U` for every step at once (a row lookup for token ids), as a custom cell
    /// should: only `W h(t-1)` is left to the step.
    fn drive(&self, input: SequenceInput<B>) -> Tensor<B, 3> {
        let ux = match input {
            SequenceInput::Tokens(ids) => burn::tensor::module::embedding(self.u.val(), ids),
            SequenceInput::Dense(x) => x.matmul(self.u.val().unsqueeze()),
        };
        ux + self.b.val().unsqueeze()
    }

    fn step(&self, h: Tensor<B, 2>, drive: Tensor<B, 2>) -> Tensor<B, 2> {
        (drive + h.matmul(self.w.val())).tanh()
    }
}

fn custom_cell<B: Backend>(input: usize, hidden: usize, device: &B::Device) -> CustomTanhCell<B> {
    let normal = |shape: [usize; 2]| {
        let scale = (1.0 / hidden as f64).sqrt();
        burn::module::Param::from_tensor(Tensor::random(
            shape,
            burn::tensor::Distribution::Uniform(-scale, scale),
            device,
        ))
    };
    CustomTanhCell {
        u: normal([input, hidden]),
        w: normal([hidden, hidden]),
        b: burn::module::Param::from_tensor(Tensor::zeros([hidden], device)),
    }
}

/// A forward and backward pass of `cell` unrolled over `[32, time, 64]` dense inputs (the loss:
/// the sum of every state), through the generic unroll every user-written cell takes.
fn cell_pass<C: Recurrence<TrainBackend>>(cell: &C, time: usize) -> impl FnMut() + '_ {
    let device = Default::default();
    let x = Tensor::<TrainBackend, 3>::random(
        [32, time, 64],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    move || {
        let out = unroll(cell, x.clone(), &UnrollOptions::new()).unwrap();
        drop(out.states.sum().backward());
        TrainBackend::sync(&device).expect("the device failed");
    }
}

/// The same math with burn-nn: one-hot inputs through `Rnn` (`x W_ih + b + h W_hh`, tanh),
/// `Linear` readout, cross-entropy, Adam.
#[derive(Module, Debug)]
struct BurnNnModel<B: Backend> {
    rnn: Rnn<B>,
    head: Linear<B>,
}

fn burn_nn_model<B: Backend>(shape: Shape, device: &B::Device) -> BurnNnModel<B> {
    BurnNnModel {
        rnn: RnnConfig::new(shape.vocab, shape.hidden, true).init(device),
        head: LinearConfig::new(shape.hidden, shape.vocab).init(device),
    }
}

fn burn_nn_step<B: AutodiffBackend>(shape: Shape) -> impl FnMut() {
    burn_nn_lm_step::<B, _>(
        shape,
        move |device| RnnConfig::new(shape.vocab, shape.hidden, true).init(device),
        |rnn: &Rnn<B>, x| rnn.forward(x, None).0,
    )
}

/// burn-nn's recurrent layers (`layers`, run by `run` on one-hot inputs) under a `Linear`
/// readout, trained like [`lm_step`]: cross-entropy, Adam.
#[derive(Module, Debug)]
struct BurnNnLm<B: Backend, L: Module<B>> {
    layers: L,
    head: Linear<B>,
}

fn burn_nn_lm_step<B: AutodiffBackend, L: AutodiffModule<B> + ModuleDisplay + 'static>(
    shape: Shape,
    layers: impl FnOnce(&B::Device) -> L,
    run: impl Fn(&L, Tensor<B, 3>) -> Tensor<B, 3> + 'static,
) -> impl FnMut()
where
    L::InnerModule: ModuleDisplay,
{
    let device = Default::default();
    let mut model = BurnNnLm {
        layers: layers(&device),
        head: LinearConfig::new(shape.hidden, shape.vocab).init(&device),
    };
    let mut optimizer = AdamConfig::new().init();
    let inputs = random_ids::<B>(shape.batch, shape.time, shape.vocab, &device);
    let targets = random_ids::<B>(shape.batch, shape.time, shape.vocab, &device);
    let one_hot: Tensor<B, 3> = inputs.one_hot::<3>(shape.vocab).float();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    move || {
        let states = run(&model.layers, one_hot.clone());
        let logits = model
            .head
            .forward(states)
            .reshape([shape.batch * shape.time, shape.vocab]);
        let loss = loss_fn.forward(logits, targets.clone().reshape([shape.batch * shape.time]));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(2e-3, model.clone(), grads);
        B::sync(&device).expect("the device failed");
    }
}

/// unfold's output-to-hidden RNN, teacher-forced (every step at once), fused readout loss.
fn jordan_step<B: AutodiffBackend>(shape: Shape) -> impl FnMut() {
    let device = Default::default();
    let mut model: JordanRnn<B> =
        JordanRnnConfig::new(shape.vocab, shape.hidden, shape.vocab).init(&device);
    let mut optimizer = AdamConfig::new().init();
    let inputs = random_ids::<B>(shape.batch, shape.time, shape.vocab, &device);
    let targets = random_ids::<B>(shape.batch, shape.time, shape.vocab, &device);
    move || {
        // Teacher forcing: the targets are fed back (the loss's default teacher).
        let loss = model
            .loss(
                inputs.clone(),
                targets.clone(),
                &UnrollOptions::new(),
                Reduction::MeanPerToken,
            )
            .loss;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(2e-3, model.clone(), grads);
        B::sync(&device).expect("the device failed");
    }
}

/// The same teacher-forced output-to-hidden math with burn-nn `Linear`s on one-hot vectors:
/// `h = tanh(x U + y(t-1) W + b)`, `o = h V + c`, cross-entropy, Adam.
#[derive(Module, Debug)]
struct BurnNnJordan<B: Backend> {
    input: Linear<B>,
    feedback: Linear<B>,
    head: Linear<B>,
}

fn burn_nn_jordan_step<B: AutodiffBackend>(shape: Shape) -> impl FnMut() {
    let device = Default::default();
    let mut model = BurnNnJordan::<B> {
        input: LinearConfig::new(shape.vocab, shape.hidden).init(&device),
        feedback: LinearConfig::new(shape.vocab, shape.hidden)
            .with_bias(false)
            .init(&device),
        head: LinearConfig::new(shape.hidden, shape.vocab).init(&device),
    };
    let mut optimizer = AdamConfig::new().init();
    let (batch, time, vocab) = (shape.batch, shape.time, shape.vocab);
    let inputs = random_ids::<B>(batch, time, vocab, &device)
        .one_hot::<3>(vocab)
        .float();
    let targets = random_ids::<B>(batch, time, vocab, &device);
    // y(t-1): zeros at t = 0, then the targets shifted by one step.
    let previous = Tensor::cat(
        vec![
            Tensor::<B, 3>::zeros([batch, 1, vocab], &device),
            targets
                .clone()
                .slice([0..batch, 0..time - 1])
                .one_hot::<3>(vocab)
                .float(),
        ],
        1,
    );
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    move || {
        let h =
            (model.input.forward(inputs.clone()) + model.feedback.forward(previous.clone())).tanh();
        let logits = model.head.forward(h).reshape([batch * time, vocab]);
        let loss = loss_fn.forward(logits, targets.clone().reshape([batch * time]));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(2e-3, model.clone(), grads);
        B::sync(&device).expect("the device failed");
    }
}

const GEN_STREAMS: usize = 32;
const GEN_TOKENS: usize = 256;

/// unfold's batched free-running generation (temperature 1 sampling) of `model`: through the
/// fused generation kernel where the backend has one, or (`fused` false) the step-by-step loop
/// the kernel replaced, for the before/after in one run.
fn unfold_generate<B: Backend, M: Autoregressive<B> + 'static>(
    model: M,
    fused: bool,
) -> impl FnMut() {
    let device = Default::default();
    let prompts: Vec<Vec<usize>> = (0..GEN_STREAMS)
        .map(|i| vec![i % 65, (i * 7) % 65])
        .collect();
    let config = GenerateConfig::new(GEN_TOKENS).with_sampling(Sampling::Temperature(1.0));
    move || {
        let tokens = if fused {
            generate(&model, &prompts, &config, &device)
        } else {
            generate_step_by_step(&model, &prompts, &config, &device)
        };
        tokens.unwrap();
    }
}

/// The same generation with burn-nn: `Rnn` one step at a time on one-hot tokens, `Linear`,
/// softmax, sampling by Burn's own `multinomial`-free route: the cumulative sum against a
/// uniform draw, all on the device.
fn burn_nn_generate<B: Backend>() -> impl FnMut() {
    let device: B::Device = Default::default();
    let shape = Shape {
        batch: GEN_STREAMS,
        ..STANDARD
    };
    let model = burn_nn_model::<B>(shape, &device);
    let vocab = shape.vocab;
    move || {
        let prompts = random_ids::<B>(GEN_STREAMS, 2, vocab, &device);
        let (_, mut state) = model.rnn.forward(prompts.one_hot::<3>(vocab).float(), None);
        for _ in 0..GEN_TOKENS {
            let logits = model.head.forward(state.hidden.clone());
            let probs = burn::tensor::activation::softmax(logits, 1);
            let draw = Tensor::<B, 2>::random(
                [GEN_STREAMS, 1],
                burn::tensor::Distribution::Uniform(0.0, 1.0),
                &device,
            );
            // token = number of classes whose cumulative probability is below the draw
            let token: Tensor<B, 2, Int> = probs
                .cumsum(1)
                .lower(draw.expand([GEN_STREAMS, vocab]))
                .int()
                .sum_dim(1)
                .clamp(0, vocab as i64 - 1);
            let x = token.one_hot::<3>(vocab).float(); // [streams, 1, vocab]
            let (_, next) = model
                .rnn
                .forward(x, Some(RnnState::new(state.hidden.clone())));
            state = next;
        }
        let _ = state.hidden.into_data();
    }
}

/// The mean per-token loss of `model` on token ids, with the default options.
fn mean_loss<B: Backend, M: SequenceModel<B>>(
    model: &M,
    inputs: &Tensor<B, 2, Int>,
    targets: &Tensor<B, 2, Int>,
) -> Tensor<B, 1> {
    let options = UnrollOptions::new();
    let reduction = Reduction::MeanPerToken;
    model
        .loss(inputs.clone(), targets.clone(), &options, reduction)
        .loss
}

/// One training step of `model` timed phase by phase (`reps` steps after two warm-up steps):
/// the forward pass ([`mean_loss`]), the backward pass, Adam. Returns the trained model and
/// each phase's (name, wall ms, CPU ms over all threads) per step.
fn step_phases<M: AutodiffModule<TrainBackend> + SequenceModel<TrainBackend>>(
    mut model: M,
    reps: usize,
    inputs: &Tensor<TrainBackend, 2, Int>,
    targets: &Tensor<TrainBackend, 2, Int>,
) -> (M, [(String, f64, f64); 3]) {
    let mut optimizer = AdamConfig::new().init();
    let mut phases = [0.0f64; 3];
    let mut cpu_phases = [0.0f64; 3];
    let origin = Instant::now();
    let now = || origin.elapsed().as_secs_f64();
    let cpu_now = || process_cpu_ns() as f64 * 1e-9;
    for rep in 0..reps + 2 {
        let (t0, c0) = (now(), cpu_now());
        let loss = mean_loss(&model, inputs, targets);
        let (t1, c1) = (now(), cpu_now());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let (t2, c2) = (now(), cpu_now());
        model = optimizer.step(2e-3, model.clone(), grads);
        let (t3, c3) = (now(), cpu_now());
        if rep >= 2 {
            for (i, (wall, cpu)) in [(t1 - t0, c1 - c0), (t2 - t1, c2 - c1), (t3 - t2, c3 - c2)]
                .into_iter()
                .enumerate()
            {
                phases[i] += wall;
                cpu_phases[i] += cpu;
            }
        }
    }
    let ms = |s: f64| s * 1e3 / reps as f64;
    let names = [
        "step: forward (model.loss)",
        "step: backward (loss.backward + from_grads)",
        "step: optimizer (Adam)",
    ];
    let phases = std::array::from_fn(|i| (names[i].to_string(), ms(phases[i]), ms(cpu_phases[i])));
    (model, phases)
}

/// Where a training step's time goes: the standard and the teacher-forced Jordan steps split
/// into forward, backward and optimizer by wall clock, the Jordan forward pass on the inner
/// backend, and each fused kernel of the standard step timed alone on the inner backend.
fn breakdown(quick: bool) -> Vec<(String, f64, f64)> {
    type Inner = backend::Backend;
    let shape = STANDARD;
    let device = Default::default();
    let mut out = Vec::new();
    let reps = if quick { 5 } else { 30 };

    // The whole step, phase by phase: the standard model, then the teacher-forced Jordan one
    // (the loss's default teacher: the targets are fed back).
    let inputs = random_ids::<TrainBackend>(shape.batch, shape.time, shape.vocab, &device);
    let targets = random_ids::<TrainBackend>(shape.batch, shape.time, shape.vocab, &device);
    let model: ElmanRnn<TrainBackend> =
        ElmanRnnConfig::new(shape.vocab, shape.hidden, shape.vocab).init(&device);
    let (model, phases) = step_phases(model, reps, &inputs, &targets);
    out.extend(phases.map(|(name, ms, cpu)| (format!("standard {name}"), ms, cpu)));
    let jordan: JordanRnn<TrainBackend> =
        JordanRnnConfig::new(shape.vocab, shape.hidden, shape.vocab).init(&device);
    let (jordan, phases) = step_phases(jordan, reps, &inputs, &targets);
    out.extend(phases.map(|(name, ms, cpu)| (format!("Jordan teacher-forced {name}"), ms, cpu)));
    // The same forward pass on the inner backend: no autodiff graph is recorded.
    let (jordan, inner_inputs, inner_targets) = (jordan.valid(), inputs.inner(), targets.inner());
    let (started, cpu) = (Instant::now(), process_cpu_ns());
    for _ in 0..reps {
        let _ = mean_loss(&jordan, &inner_inputs, &inner_targets);
    }
    out.push((
        "Jordan teacher-forced step: forward on the inner backend (no graph recorded)".into(),
        started.elapsed().as_secs_f64() * 1e3 / reps as f64,
        (process_cpu_ns() - cpu) as f64 * 1e-6 / reps as f64,
    ));

    // Each kernel alone, on the inner backend.
    let (b, t, h, v) = (shape.batch, shape.time, shape.hidden, shape.vocab);
    let rnn = model.valid();
    let ids = random_ids::<Inner>(b, t, v, &device);
    let y = random_ids::<Inner>(b, t, v, &device);
    let prim = |x: Tensor<Inner, 2>| x.into_primitive().tensor();
    let prim3 = |x: Tensor<Inner, 3>| x.into_primitive().tensor();
    let steps = Steps {
        time: t,
        reverse: false,
        lengths: None,
    };
    let rows = NllRows {
        time: t,
        lengths: None,
        scale: 1.0 / (b * t) as f64,
    };
    let mut time_it = |name: &str, f: &mut dyn FnMut()| {
        f();
        let (cpu, started) = (process_cpu_ns(), Instant::now());
        for _ in 0..reps {
            f();
        }
        out.push((
            name.to_string(),
            started.elapsed().as_secs_f64() * 1e3 / reps as f64,
            (process_cpu_ns() - cpu) as f64 * 1e-6 / reps as f64,
        ));
    };
    let drive = rnn.cell().drive(SequenceInput::Tokens(ids.clone()));
    time_it("input forward (fused: U[x] + b)", &mut || {
        let _ = rnn.cell().drive(SequenceInput::Tokens(ids.clone()));
    });
    time_it(
        "input backward (fused: ∂U scatter-add, ∂b column sums)",
        &mut || {
            let [d_u, d_b] = Inner::fused_embedding_backward(
                prim3(drive.clone()),
                ids.clone().into_primitive(),
                shape.vocab,
            );
            let _ = (d_u, d_b);
        },
    );
    let w = prim(rnn.cell().w.val());
    let h0 = prim(Tensor::<Inner, 2>::zeros([b, h], &device));
    let tanh = Nonlinearity::Tanh;
    let recurrence = |drive| Inner::fused_recurrence(drive, w.clone(), h0.clone(), &steps, tanh);
    let states = recurrence(prim3(drive.clone()));
    time_it("recurrence forward (fused)", &mut || {
        let _ = recurrence(prim3(drive.clone()));
    });
    time_it("recurrence backward (fused BPTT, incl. ∂W)", &mut || {
        let _ = Inner::fused_recurrence_backward(
            states.clone(),
            states.clone(),
            w.clone(),
            h0.clone(),
            &steps,
            tanh,
        );
    });
    let (vw, c) = (
        prim(rnn.readout.v.val()),
        rnn.readout
            .c
            .as_ref()
            .unwrap()
            .val()
            .into_primitive()
            .tensor(),
    );
    let (_, g) = Inner::fused_readout_nll(
        states.clone(),
        vw.clone(),
        c.clone(),
        y.clone().into_primitive(),
        &rows,
        true,
    );
    let g = g.unwrap();
    time_it("head + loss forward (fused, writes G)", &mut || {
        let _ = Inner::fused_readout_nll(
            states.clone(),
            vw.clone(),
            c.clone(),
            y.clone().into_primitive(),
            &rows,
            true,
        );
    });
    let one = Tensor::<Inner, 1>::ones([1], &device)
        .into_primitive()
        .tensor();
    time_it("head + loss backward (∂h, ∂V, ∂c)", &mut || {
        let _ =
            Inner::fused_readout_nll_backward(one.clone(), g.clone(), states.clone(), vw.clone());
    });
    out
}

/// The PyTorch rows for `workload` (a name fragment the script understands), or a note.
/// GFLOP/s of unfold's SIMD kernel (`B` read in place, and `B` packed once beforehand, as the
/// recurrence does with `W`) and of `matrixmultiply` (what burn-ndarray uses, with its AVX-512
/// kernel on) for `C[m×n] += A[m×k]·B[k×n]`, row-major, on this thread.
fn gemm_rates(m: usize, k: usize, n: usize, quick: bool) -> ((f64, f64), f64) {
    let (a, b) = (vec![0.5f32; m * k], vec![0.25f32; k * n]);
    let mut c = vec![0.0f32; m * n];
    let reps = ((if quick { 2e8 } else { 2e9 }) / (2 * m * k * n) as f64).ceil() as usize;
    // The best of three rounds: this VM's speed drifts within seconds.
    let mut rate = |run: &mut dyn FnMut(&mut [f32])| {
        run(&mut c); // warm-up
        let round = reps.div_ceil(3);
        (0..3)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..round {
                    run(&mut c);
                }
                2.0 * (m * k * n * round) as f64 / started.elapsed().as_secs_f64() / 1e9
            })
            .fold(0.0, f64::max)
    };
    // unfold's host GEMM exists with the CPU backend only (a GPU build reports NaN).
    #[cfg(feature = "ndarray")]
    let ours = {
        use unfold::nn::internals::sgemm;
        if sgemm::available() {
            let packed = sgemm::PackedB::new(k, n, &b, n, 1);
            (
                rate(&mut |c| sgemm::sgemm(m, k, n, &a, k, 1, &b, n, true, c, n)),
                rate(&mut |c| sgemm::sgemm_packed(m, &a, k, 1, &packed, true, c, n)),
            )
        } else {
            (f64::NAN, f64::NAN)
        }
    };
    #[cfg(not(feature = "ndarray"))]
    let ours = (f64::NAN, f64::NAN);
    let (a, b) = (a.as_ptr(), b.as_ptr());
    let theirs = rate(&mut |c| {
        // SAFETY: a, b and c hold m×k, k×n and m×n row-major floats.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a,
                k as isize,
                1,
                b,
                n as isize,
                1,
                1.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        }
    });
    (ours, theirs)
}

/// The interpreter of the Python peers: `$UNFOLD_BENCH_PYTHON`, else the venv that
/// `PERFORMANCE.md` sets up (`.venv-peers` in the repository), else `/tmp/torchvenv`, else
/// `python3`.
fn python() -> String {
    if let Ok(python) = std::env::var("UNFOLD_BENCH_PYTHON") {
        return python;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv-peers/bin/python");
    [venv, "/tmp/torchvenv/bin/python"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .unwrap_or("python3")
        .to_string()
}

/// The rows of a Python peer (`pytorch_reference.py`, `jax_reference.py`) for `workload` (a
/// name fragment the scripts understand). A peer that is not installed says so and gives none.
fn python_rows(script: &str, workload: &str, quick: bool) -> Vec<Row> {
    let script = format!("{}/benches/{script}", env!("CARGO_MANIFEST_DIR"));
    let python = python();
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .arg("--json")
        .arg("--only")
        .arg(workload);
    if quick {
        command.arg("--quick");
    }
    // benches/gpu.sh runs PyTorch on the GPU too (`--device cuda`).
    if let Ok(device) = std::env::var("UNFOLD_BENCH_TORCH_DEVICE") {
        command.arg("--device").arg(device);
    }
    let output = match command.output() {
        Ok(output) => output,
        Err(e) => {
            eprintln!("{script} skipped: cannot run {python}: {e}");
            return Vec::new();
        }
    };
    if workload == "breakdown" {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr)); // the profiler's table
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut rows = Vec::new();
    for line in stdout.lines() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v.get("workload").is_some() => rows.push(Row {
                workload: v["workload"].as_str().unwrap_or_default().to_string(),
                system: v["system"].as_str().unwrap_or_default().to_string(),
                ms_per_step: v["ms"].as_f64().unwrap_or(f64::NAN),
                tokens_per_s: v["tokens_per_s"].as_f64().unwrap_or(f64::NAN),
                peak_mib: v["peak_mib"].as_f64().unwrap_or(f64::NAN),
                cpu_ms: v["cpu_ms"].as_f64().unwrap_or(f64::NAN),
            }),
            _ => eprintln!("  {line}"),
        }
    }
    rows
}

/// PyTorch's rows, then JAX's (unless `--no-jax`), for `workload`.
fn peer_rows(workload: &str, quick: bool, jax: bool) -> Vec<Row> {
    let mut rows = python_rows("pytorch_reference.py", workload, quick);
    if jax && workload != "breakdown" {
        rows.extend(python_rows("jax_reference.py", workload, quick));
    }
    rows
}

fn report(rows: &mut Vec<Row>, workload: &str, system: &str, tokens: f64, m: &Measured) {
    eprintln!(
        "{workload:<44} {system:<48} {:>9.1} ms/step ({:>6.1} ms CPU, all threads) {:>10.0} tokens/s {:>8.1} MiB {:>8.0} allocs/step",
        m.ms,
        m.cpu_ms,
        tokens / m.ms * 1e3,
        m.peak_mib,
        m.allocs_per_step
    );
    rows.push(Row {
        workload: workload.to_string(),
        system: system.to_string(),
        ms_per_step: m.ms,
        tokens_per_s: tokens / m.ms * 1e3,
        peak_mib: m.peak_mib,
        cpu_ms: m.cpu_ms,
    });
}

type Step = Box<dyn FnMut()>;

/// (workload, the PyTorch script's name for it, shape, systems)
type Workload = (&'static str, &'static str, Shape, Vec<(&'static str, Step)>);

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let quick = args.iter().any(|a| a == "--quick");
    // --no-pytorch: no Python peer at all; --no-jax: PyTorch only.
    let no_python = args.iter().any(|a| a == "--no-pytorch");
    let jax = !args.iter().any(|a| a == "--no-jax");
    let system_prefix = args.iter().find_map(|a| a.strip_prefix("--system="));
    let system_wanted = |system: &str| system_prefix.is_none_or(|p| system.starts_with(p));
    let scale_plot = args
        .iter()
        .find_map(|a| a.strip_prefix("--scale-plot="))
        .map(std::path::PathBuf::from);
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
    let large = Shape {
        batch: 64,
        time: 128,
        hidden: 1024,
        vocab: 65,
    };
    // DeepBench's vanilla-RNN training shape (hidden 1760, batch 16, 50 steps): GPU rows.
    let deepbench = Shape {
        batch: 16,
        time: 50,
        hidden: 1760,
        vocab: 65,
    };
    let elman = |shape: Shape| ElmanRnnConfig::new(shape.vocab, shape.hidden, shape.vocab);
    let (v, h) = (STANDARD.vocab, STANDARD.hidden);
    let workloads: Vec<Workload> = vec![
        (
            "train standard (B32 T64 H256 V65)",
            "standard",
            STANDARD,
            vec![
                (
                    "unfold ElmanRnn (fused BPTT + fused head)",
                    Box::new(unfold_step::<TrainBackend>(STANDARD, Head::Fused)) as Step,
                ),
                (
                    "unfold ElmanRnn (fused BPTT, unfused head)",
                    Box::new(unfold_step::<TrainBackend>(STANDARD, Head::Unfused)),
                ),
                (
                    "unfold custom cell (generic unroll, fused head)",
                    Box::new(lm_step::<TrainBackend, _>(
                        STANDARD,
                        Head::Fused,
                        move |d| {
                            elman(STANDARD)
                                .try_init_with(d, |i, h| custom_cell(i, h, d))
                                .unwrap()
                        },
                    )),
                ),
                (
                    "burn-nn Rnn + Linear",
                    Box::new(burn_nn_step::<TrainBackend>(STANDARD)),
                ),
            ],
        ),
        (
            "train stacked (2 layers, B32 T64 H256 V65)",
            "stacked",
            STANDARD,
            vec![
                (
                    "unfold ElmanRnn x2 (fused BPTT + fused head)",
                    Box::new(lm_step::<TrainBackend, _>(
                        STANDARD,
                        Head::Fused,
                        move |d| elman(STANDARD).with_num_layers(2).init(d),
                    )) as Step,
                ),
                (
                    "burn-nn Rnn x2 + Linear",
                    Box::new(burn_nn_lm_step::<TrainBackend, _>(
                        STANDARD,
                        move |d| {
                            vec![
                                RnnConfig::new(v, h, true).init(d),
                                RnnConfig::new(h, h, true).init(d),
                            ]
                        },
                        |layers: &Vec<Rnn<TrainBackend>>, x| {
                            layers.iter().fold(x, |x, rnn| rnn.forward(x, None).0)
                        },
                    )),
                ),
            ],
        ),
        (
            "train bidirectional (B32 T64 H256 V65)",
            "bidirectional",
            STANDARD,
            vec![(
                "unfold ElmanRnn bidirectional (fused BPTT + fused head)",
                Box::new(lm_step::<TrainBackend, _>(
                    STANDARD,
                    Head::Fused,
                    move |d| elman(STANDARD).with_bidirectional(true).init(d),
                )) as Step,
            )],
        ),
        (
            "train relu (B32 T64 H256 V65)",
            "relu",
            STANDARD,
            vec![(
                "unfold ElmanRnn relu (fused BPTT + fused head)",
                Box::new(lm_step::<TrainBackend, _>(
                    STANDARD,
                    Head::Fused,
                    move |d| {
                        elman(STANDARD)
                            .with_nonlinearity(Nonlinearity::Relu)
                            .init(d)
                    },
                )) as Step,
            )],
        ),
        (
            "train lstm (B32 T64 H256 V65)",
            "lstm",
            STANDARD,
            vec![
                (
                    "unfold LstmCell (generic unroll, fused head)",
                    Box::new(lm_step::<TrainBackend, _>(
                        STANDARD,
                        Head::Fused,
                        move |d| {
                            elman(STANDARD)
                                .try_init_with(d, |i, h| LstmCellConfig::new(i, h).init(d))
                                .unwrap()
                        },
                    )) as Step,
                ),
                (
                    "burn-nn Lstm + Linear",
                    Box::new(burn_nn_lm_step::<TrainBackend, _>(
                        STANDARD,
                        move |d| LstmConfig::new(v, h, true).init(d),
                        |lstm: &Lstm<TrainBackend>, x| lstm.forward(x, None).0,
                    )),
                ),
            ],
        ),
        (
            "train gru (B32 T64 H256 V65)",
            "gru",
            STANDARD,
            vec![
                (
                    "unfold GruCell (generic unroll, fused head)",
                    Box::new(lm_step::<TrainBackend, _>(
                        STANDARD,
                        Head::Fused,
                        move |d| {
                            elman(STANDARD)
                                .try_init_with(d, |i, h| GruCellConfig::new(i, h).init(d))
                                .unwrap()
                        },
                    )) as Step,
                ),
                (
                    "burn-nn Gru + Linear",
                    Box::new(burn_nn_lm_step::<TrainBackend, _>(
                        STANDARD,
                        move |d| GruConfig::new(v, h, true).init(d),
                        |gru: &Gru<TrainBackend>, x| gru.forward(x, None),
                    )),
                ),
            ],
        ),
        (
            "train deepbench (B16 T50 H1760 V65)",
            "deepbench",
            deepbench,
            vec![
                (
                    "unfold ElmanRnn (fused BPTT + fused head)",
                    Box::new(unfold_step::<TrainBackend>(deepbench, Head::Fused)) as Step,
                ),
                (
                    "burn-nn Rnn + Linear",
                    Box::new(burn_nn_step::<TrainBackend>(deepbench)),
                ),
            ],
        ),
        (
            "train large (B64 T128 H1024 V65)",
            "large",
            large,
            vec![
                (
                    "unfold ElmanRnn (fused BPTT + fused head)",
                    Box::new(unfold_step::<TrainBackend>(large, Head::Fused)) as Step,
                ),
                (
                    "burn-nn Rnn + Linear",
                    Box::new(burn_nn_step::<TrainBackend>(large)),
                ),
            ],
        ),
        (
            "train Jordan teacher-forced (B32 T64 H256 V65)",
            "jordan",
            STANDARD,
            vec![
                (
                    "unfold JordanRnn (teacher forcing, fused head)",
                    Box::new(jordan_step::<TrainBackend>(STANDARD)) as Step,
                ),
                (
                    "burn-nn Linear x3 (same math)",
                    Box::new(burn_nn_jordan_step::<TrainBackend>(STANDARD)),
                ),
            ],
        ),
    ];
    for (name, py_name, shape, systems) in workloads {
        if !wanted(name) {
            continue;
        }
        let (steps, min_time) = if shape.hidden > 512 {
            (steps.min(3), min_time / 3)
        } else {
            (steps, min_time)
        };
        let tokens = (shape.batch * shape.time) as f64;
        for (system, mut step) in systems.into_iter().filter(|s| system_wanted(s.0)) {
            let m = measure(2, steps, min_time, &mut step);
            report(&mut rows, name, system, tokens, &m);
        }
        if !no_python {
            rows.extend(peer_rows(py_name, quick, jax));
        }
    }

    let name = "generate (32 streams x 256 tokens, H256 V65)";
    if wanted(name) {
        let tokens = (GEN_STREAMS * GEN_TOKENS) as f64;
        type B = backend::Backend;
        let device = Default::default();
        let elman = |layers| {
            ElmanRnnConfig::new(65, 256, 65)
                .with_num_layers(layers)
                .init::<B>(&device)
        };
        let jordan = || JordanRnnConfig::new(65, 256, 65).init::<B>(&device);
        let systems: Vec<(&str, Step)> = vec![
            (
                "unfold generate (batched)",
                Box::new(unfold_generate(elman(1), true)),
            ),
            (
                "unfold generate, step by step (the loop before the fused kernel)",
                Box::new(unfold_generate(elman(1), false)),
            ),
            (
                "unfold generate, 2 layers",
                Box::new(unfold_generate(elman(2), true)),
            ),
            (
                "unfold generate, 2 layers, step by step",
                Box::new(unfold_generate(elman(2), false)),
            ),
            (
                "unfold JordanRnn generate",
                Box::new(unfold_generate(jordan(), true)),
            ),
            (
                "unfold JordanRnn generate, step by step",
                Box::new(unfold_generate(jordan(), false)),
            ),
            (
                "burn-nn Rnn + Linear (step by step)",
                Box::new(burn_nn_generate::<backend::Backend>()),
            ),
        ];
        for (system, mut run) in systems.into_iter().filter(|s| system_wanted(s.0)) {
            let m = measure(1, steps.min(5), min_time, &mut run);
            report(&mut rows, name, system, tokens, &m);
        }
        if !no_python {
            rows.extend(peer_rows("generate", quick, jax));
        }
    }

    if wanted("cells") {
        // Linear-time BPTT for any cell: time per token should not grow with T.
        println!("\n| cells: forward + backward (B32, input 64, H256) | T | ms/step | µs/token |");
        println!("|---|---|---|---|");
        let device = Default::default();
        let tanh = custom_cell::<TrainBackend>(64, 256, &device);
        let gru = GruCellConfig::new(64, 256).init::<TrainBackend>(&device);
        let lengths: &[usize] = if quick { &[64, 256] } else { &[64, 256, 1024] };
        for &time in lengths {
            let tokens = (32 * time) as f64;
            let m = measure(1, 2, Duration::from_secs(1), cell_pass(&tanh, time));
            let row = |name: &str, m: &Measured| {
                println!(
                    "| {name} | {time} | {:.1} | {:.2} |",
                    m.ms,
                    m.ms * 1e3 / tokens
                )
            };
            row("custom tanh cell (bench's `CustomTanhCell`)", &m);
            let m = measure(1, 2, Duration::from_secs(1), cell_pass(&gru, time));
            row("`GruCell` (written on the public `Recurrence` trait)", &m);
        }
    }

    if wanted("breakdown") {
        println!(
            "\n| step parts (B32 T64 H256 V65) | wall ms | CPU ms (all threads) |\n|---|---|---|"
        );
        for (part, ms, cpu_ms) in breakdown(quick) {
            println!("| unfold: {part} | {ms:.2} | {cpu_ms:.2} |");
        }
        if !no_python {
            for row in python_rows("pytorch_reference.py", "breakdown", quick) {
                println!(
                    "| PyTorch: {} | {:.2} | {:.2} |",
                    row.system, row.ms_per_step, row.cpu_ms
                );
            }
        }
    }

    if wanted("gemm") {
        println!("\n| GEMM C += A·B, one thread | unfold sgemm GFLOP/s | unfold, B packed | matrixmultiply GFLOP/s |\n|---|---|---|---|");
        for (m, k, n, what) in [
            (32, 256, 256, "per-step recurrence product (B32 H256)"),
            (16, 256, 256, "the same, half the batch (one of two cores)"),
            (256, 1024, 256, "∂W over 16 rows × 64 steps"),
            (2048, 256, 65, "readout logits over B·T rows"),
            (64, 1024, 1024, "per-step product, large shape"),
            (
                32,
                1024,
                1024,
                "the same, half the batch (one of two cores)",
            ),
        ] {
            let ((ours, packed), theirs) = gemm_rates(m, k, n, quick);
            println!("| {m}×{k}×{n}: {what} | {ours:.0} | {packed:.0} | {theirs:.0} |");
        }
    }

    if wanted("scale") {
        println!("\n| scale (H256 V65, unfold fused) | ms/step | µs/token | tokens/s | peak MiB | allocs/step |");
        println!("|---|---|---|---|---|---|");
        let lengths: &[usize] = if quick {
            &[64, 256, 1024]
        } else {
            &[64, 256, 1024, 4096]
        };
        let shapes = lengths
            .iter()
            .map(|&time| Shape { time, ..STANDARD })
            .chain([8, 16, 64, 128].map(|batch| Shape { batch, ..STANDARD }));
        // (tokens per step, ms per step) along each axis, for the plot.
        let (mut by_length, mut by_batch) = (Vec::new(), Vec::new());
        for shape in shapes {
            let mut step = unfold_step::<TrainBackend>(shape, Head::Fused);
            // At least a second of steps after two warm-up steps (the first allocates Adam's
            // state and the allocator's pools), at least two steps for the longest sequence.
            let m = measure(2, 2, Duration::from_secs(1), &mut step);
            let tokens = (shape.batch * shape.time) as f64;
            println!(
                "| B{} T{} | {:.1} | {:.2} | {:.0} | {:.1} | {:.0} |",
                shape.batch,
                shape.time,
                m.ms,
                m.ms * 1e3 / tokens,
                tokens / m.ms * 1e3,
                m.peak_mib,
                m.allocs_per_step
            );
            let curve = if shape.batch == STANDARD.batch {
                &mut by_length
            } else {
                &mut by_batch
            };
            curve.push((tokens, m.ms));
        }
        // The batch curve passes through the standard shape too.
        by_batch.extend(by_length.first().copied());
        if let Some(path) = scale_plot {
            let series = [
                unfold_viz::ScalingSeries::new(
                    format!("length T = {lengths:?}, batch {}", STANDARD.batch),
                    by_length,
                ),
                unfold_viz::ScalingSeries::new(
                    format!("batch B = [8, 16, 32, 64, 128], length {}", STANDARD.time),
                    by_batch,
                ),
            ];
            let title = format!(
                "unfold ElmanRnn training step (H{} V{}, Adam), {}",
                STANDARD.hidden,
                STANDARD.vocab,
                backend::NAME
            );
            match unfold_viz::write_scaling_plot(&path, &title, &series) {
                Ok(()) => println!("\nscale plot: {}", path.display()),
                Err(e) => eprintln!("scale plot not written: {e}"),
            }
        }
    }

    if rows.is_empty() {
        return;
    }
    // The table, with each row's speed relative to burn-nn, PyTorch and JAX on the same
    // workload.
    println!(
        "\n| workload | system | ms/step | CPU ms/step | tokens/s | vs burn-nn | vs PyTorch | vs JAX | peak MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        let ratio = |prefix: &str| {
            rows.iter()
                .find(|r| r.workload == row.workload && r.system.starts_with(prefix))
                .map_or("—".to_string(), |b| {
                    format!("{:.2}×", row.tokens_per_s / b.tokens_per_s)
                })
        };
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.0} | {} | {} | {} | {:.1} |",
            row.workload,
            row.system,
            row.ms_per_step,
            row.cpu_ms,
            row.tokens_per_s,
            ratio("burn-nn"),
            ratio("PyTorch"),
            ratio("JAX"),
            row.peak_mib
        );
    }
}
