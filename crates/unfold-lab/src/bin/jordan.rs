//! The output-to-hidden (Jordan) RNN: teacher forcing, free running, scheduled sampling.
//!
//! ```text
//! cargo run --release -p unfold-lab --bin jordan     # running sum mod 10, then the corpus
//! cargo run --release -p unfold-lab --bin jordan -- --task xor --steps 3000 --out runs/jordan-xor
//! cargo run --release -p unfold-lab --bin jordan -- --task bench --out runs/jordan-bench
//! ```
//!
//! The model is `h(t) = tanh(b + W r(t-1) + U x(t))`, `o(t) = c + V h(t)`: its only memory
//! is its previous output `r(t-1)`.
//!
//! - `--task sum` (default): digits `x(t)`, targets the running sum `y(t) = Σ x(1..t) mod 10`,
//!   which carries all the state the model needs (`y(t) = y(t-1) + x(t) mod 10`). Trains with
//!   teacher forcing (every step at once), and again with scheduled sampling (feeding back its
//!   own argmax, then its own samples); runs each free (fed its own argmax) on held-out
//!   sequences of the training length and much longer, and reports teacher-forced loss,
//!   free-running per-step accuracy and how it decays along the sequence. Then trains the
//!   model on the corpus (`--corpus`, default tiny-shakespeare) next to the hidden-to-hidden
//!   model: with `y(t-1) = x(t)` it sees only the current
//!   character, so it can do no better than a bigram model.
//! - `--task xor`: Elman's temporal XOR (triples `a, b, a XOR b`, predict the next bit) and the
//!   running parity, for the hidden-to-hidden, output-to-hidden and both-recurrences models.
//! - `--task bench`: time of one teacher-forced forward + backward pass, all steps at once vs
//!   one step at a time, at `--bench-lens`.
//!
//! The tasks' data comes from `unfold_data::tasks::sums`. Every model is trained by one loop,
//! written against `unfold_nn::SequenceModel` (what is fed back is in the `UnrollOptions`).
//!
//! Writes `config.json`, `model.mpk` (the teacher-forced running-sum model for `sum`),
//! `metrics.json` and the loss curves of every training run (`curves/*/loss.{csv,svg}`) to
//! `--out`; the last line of stdout is the metrics JSON.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend as _;
use burn::tensor::{Int, Tensor};
use clap::{Parser, ValueEnum};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;

use unfold_data::tasks::sums::{
    accuracy_by_position, running_parity, running_sums, temporal_xor, Generator, Sequences,
};
use unfold_data::{sequential_batches, Corpus, TokenBatch, Vocab, WindowSampler};
use unfold_lab::backend::{self, Backend, TrainBackend};
use unfold_lab::cli::{self, CommonArgs, Defaults};
use unfold_lab::progress::Progress;
use unfold_lab::{exit_on_error, Result};
use unfold_nn::checkpoint::{self, NonFiniteGuard, RunDir};
use unfold_nn::sample::{generate, GenerateConfig, Sampling};
use unfold_nn::{
    sequence_nll, Autoregressive, ElmanJordanRnnConfig, ElmanRnnConfig, Error, Feedback, Forcing,
    JordanRnn, JordanRnnConfig, Reduction, SequenceModel, TeacherSchedule, UnrollOptions,
};
use unfold_viz::{write_loss_curves, LossHistory};

type Device = backend::Device;

/// Train the output-to-hidden RNN with teacher forcing and run it free.
#[derive(Parser, Debug, Clone, Serialize)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// What to run.
    #[arg(long, value_enum, default_value_t = Task::Sum)]
    task: Task,
    /// Evaluate every this many steps.
    #[arg(long, default_value_t = 100)]
    eval_every: usize,
    /// Skip a step whose loss is NaN or infinite instead of stopping the run.
    #[arg(long)]
    skip_nonfinite: bool,
    /// Held-out sequences per evaluation set.
    #[arg(long, default_value_t = 500)]
    eval_sequences: usize,
    /// Length of the long held-out sequences (free running far past the training length).
    #[arg(long, default_value_t = 400)]
    long_len: usize,
    /// Scheduled sampling's decay of the teacher-forcing probability ε over training.
    #[arg(long, value_enum, default_value_t = Schedule::InverseSigmoid)]
    schedule: Schedule,
    /// ε at the end of training (linear, exponential), or at its midpoint (inverse-sigmoid).
    #[arg(long, default_value_t = 0.25)]
    min_teacher: f64,
    /// Scheduled sampling runs: what each feeds back when it feeds the model's own output
    /// (one run per value).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [FeedbackArg::Argmax, FeedbackArg::Sample])]
    ss_feedback: Vec<FeedbackArg>,
    /// What free-running evaluation feeds back.
    #[arg(long, value_enum, default_value_t = FeedbackArg::Argmax)]
    free_feedback: FeedbackArg,
    /// Corpus comparison (task sum): optimiser steps per model (0 skips it).
    #[arg(long, default_value_t = 600)]
    corpus_steps: usize,
    /// Corpus comparison: hidden width of both models.
    #[arg(long, default_value_t = 128)]
    corpus_hidden: usize,
    /// Corpus comparison: BPTT length.
    #[arg(long, default_value_t = 64)]
    corpus_seq_len: usize,
    /// Task xor: runs, with seeds --seed, --seed + 1, ... (the table reports their mean).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Task bench: sequence lengths to time.
    #[arg(long, value_delimiter = ',', default_values_t = [64, 256, 1024])]
    bench_lens: Vec<usize>,
    /// Task bench: hidden width.
    #[arg(long, default_value_t = 256)]
    bench_hidden: usize,
    /// Task bench: timed repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    bench_reps: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Task {
    /// Running sum mod 10 (teacher forcing vs scheduled sampling), then the corpus.
    Sum,
    /// Temporal XOR and running parity, three topologies.
    Xor,
    /// Teacher forcing in parallel vs one step at a time.
    Bench,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Schedule {
    /// ε falls linearly from 1 to --min-teacher at the last step.
    Linear,
    /// ε = base^i, reaching --min-teacher at the last step.
    Exponential,
    /// ε = k / (k + exp(i / k)), with k chosen so that ε crosses --min-teacher halfway.
    InverseSigmoid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum FeedbackArg {
    /// The softmax vector itself.
    Softmax,
    /// The one-hot argmax.
    Argmax,
    /// A one-hot draw from the softmax.
    Sample,
}

impl From<FeedbackArg> for Feedback {
    fn from(f: FeedbackArg) -> Self {
        match f {
            FeedbackArg::Softmax => Feedback::Softmax,
            FeedbackArg::Argmax => Feedback::Argmax,
            FeedbackArg::Sample => Feedback::Sample,
        }
    }
}

const DEFAULTS: Defaults = Defaults {
    hidden: 64,
    seq_len: 20,
    batch: 32,
    steps: 1500,
    lr: 3e-3,
    out: "runs/jordan",
};

fn main() {
    let args: Args = cli::parse(&DEFAULTS);
    exit_on_error(|| run(args));
}

fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    check_args(&args)?;
    let out = RunDir::create(&args.common.out)?;
    let model = match args.task {
        Task::Sum => Some(JordanRnnConfig::new(10, args.common.hidden, 10)),
        Task::Xor | Task::Bench => None, // several models; their sizes follow from the args
    };
    out.write_json(
        "config.json",
        &serde_json::json!({ "model": model, "args": args }),
    )?;
    let device = backend::open()?;
    TrainBackend::seed(&device, args.common.seed);
    let metrics = match args.task {
        Task::Sum => task_sum(&args, &out, &device)?,
        Task::Xor => task_xor(&args, &out, &device)?,
        Task::Bench => task_bench(&args, &device)?,
    };
    let mut metrics = metrics;
    metrics["wall_s"] = started.elapsed().as_secs_f64().into();
    metrics["backend"] = backend::NAME.into();
    Ok(checkpoint::finish(&out, &metrics)?)
}

/// Flags that clap accepts but the run cannot use.
fn check_args(args: &Args) -> unfold_nn::Result<()> {
    let common = &args.common;
    common.validate(&[
        ("--eval-every", args.eval_every),
        ("--eval-sequences", args.eval_sequences),
        ("--long-len", args.long_len),
        ("--corpus-hidden", args.corpus_hidden),
        ("--corpus-seq-len", args.corpus_seq_len),
        ("--bench-hidden", args.bench_hidden),
        ("--bench-reps", args.bench_reps),
        ("--repeats", args.repeats),
    ])?;
    if !(args.min_teacher > 0.0 && args.min_teacher < 1.0) {
        return Err(Error::config(
            "--min-teacher",
            args.min_teacher,
            "must be a probability strictly between 0 and 1",
        ));
    }
    if args.bench_lens.contains(&0) {
        return Err(Error::config(
            "--bench-lens",
            0,
            "every length must be at least 1",
        ));
    }
    schedule(args).validate()
}

/// The scheduled-sampling decay the flags ask for, over `--steps` training steps.
fn schedule(args: &Args) -> TeacherSchedule {
    let steps = args.common.steps as f64;
    let floor = args.min_teacher;
    match args.schedule {
        Schedule::Linear => TeacherSchedule::Linear {
            start: 1.0,
            slope: (1.0 - floor) / steps,
            floor,
        },
        Schedule::Exponential => TeacherSchedule::Exponential {
            base: floor.powf(1.0 / steps),
        },
        Schedule::InverseSigmoid => {
            // ε(i) = k / (k + e^{i/k}) equals `floor` at i = k ln(k (1 - floor) / floor); pick
            // k (≥ 1) so that happens at the middle of training, by bisection (monotone in k).
            let crossing = |k: f64| k * (k * (1.0 - floor) / floor).ln();
            let (mut low, mut high) = (1.0, steps.max(2.0));
            for _ in 0..100 {
                let mid = 0.5 * (low + high);
                if crossing(mid) < steps / 2.0 {
                    low = mid;
                } else {
                    high = mid;
                }
            }
            TeacherSchedule::InverseSigmoid { k: low.max(1.0) }
        }
    }
}

fn to_rows(t: Tensor<Backend, 2, Int>) -> Vec<Vec<usize>> {
    let [_, time] = t.dims();
    let values: Vec<i64> = t.into_data().convert::<i64>().into_vec().expect("ids");
    values
        .chunks(time)
        .map(|row| row.iter().map(|&v| v as usize).collect())
        .collect()
}

/// Argmax of each step's logits, `[batch, time, classes]` → rows of class ids.
fn predictions(logits: Tensor<Backend, 3>) -> Vec<Vec<usize>> {
    let [batch, time, _] = logits.dims();
    to_rows(logits.argmax(2).reshape([batch, time]))
}

/// `<out>/curves/<label as a file name>/`: where one training run's loss curves go.
fn curves_dir(out: &Path, label: &str) -> PathBuf {
    let slug: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let slug = slug
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    out.join("curves").join(slug)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

// ---------------------------------------------------------------------------------------------
// Training the models that feed back (one loop for every task).
// ---------------------------------------------------------------------------------------------

/// The three topologies the tables compare. Each is a `SequenceModel` of its own (an
/// `ElmanRnn`, or an `OutputFeedbackRnn` with or without the hidden path); this says what the
/// tables call it and whether free running differs from teacher forcing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    /// `ElmanRnn`.
    HiddenToHidden,
    /// `JordanRnn`.
    OutputToHidden,
    /// `ElmanJordanRnn`.
    Both,
}

impl Topology {
    /// Its name in the tables.
    fn name(self) -> &'static str {
        match self {
            Topology::HiddenToHidden => "hidden-to-hidden",
            Topology::OutputToHidden => "output-to-hidden",
            Topology::Both => "both",
        }
    }

    /// Whether its outputs are fed back (so that free running differs from teacher forcing).
    fn feeds_back(self) -> bool {
        self != Topology::HiddenToHidden
    }
}

/// The options of a pass under `forcing`, `y` the true outputs a model that feeds its outputs
/// back receives where the forcing feeds them (a hidden-to-hidden model ignores them; it takes
/// teacher forcing only, the default).
fn forced(forcing: Forcing, y: Tensor<TrainBackend, 2, Int>) -> UnrollOptions<TrainBackend> {
    UnrollOptions::new().with_forcing(forcing).with_teacher(y)
}

/// Logits on held-out data, without gradients: teacher-forced (`free` = None) or, for a model
/// that feeds its outputs back, free running with that feedback (a hidden-to-hidden model has
/// nothing to feed back: free running is the same run).
fn eval_logits<M: SequenceModel<Backend>>(
    model: &M,
    topology: Topology,
    x: Tensor<Backend, 2, Int>,
    y: Tensor<Backend, 2, Int>,
    free: Option<Feedback>,
) -> Result<Tensor<Backend, 3>> {
    let options = match free {
        Some(feedback) if topology.feeds_back() => {
            UnrollOptions::new().with_forcing(Forcing::FreeRunning { feedback, seed: 0 })
        }
        _ => UnrollOptions::new().teacher_forced(y),
    };
    Ok(model.try_forward(x, &options)?.logits)
}

/// Trains `model` on fresh batches from `data(step)`, with teacher forcing, or with scheduled
/// sampling when `scheduled` is given. Calls `eval` every `--eval-every` steps and at the end;
/// it returns the validation loss, if it computes one. Every step's training loss and every
/// validation loss go to `curves` (`loss.csv` + `loss.svg`, rewritten at each evaluation)
/// when a directory is given.
/// Returns the model, the mean training loss since the last evaluation, and the training
/// throughput in tokens per second (evaluation time excluded).
#[allow(clippy::too_many_arguments)]
fn train<M>(
    mut model: M,
    args: &Args,
    label: &str,
    steps: usize,
    scheduled: Option<(TeacherSchedule, Feedback)>,
    curves: Option<&Path>,
    mut data: impl FnMut(usize) -> (Tensor<TrainBackend, 2, Int>, Tensor<TrainBackend, 2, Int>),
    mut eval: impl FnMut(usize, f64, &M, &Progress) -> Result<Option<f64>>,
) -> Result<(M, f64, f64)>
where
    M: SequenceModel<TrainBackend> + AutodiffModule<TrainBackend>,
{
    let mut optimizer = AdamConfig::new().init::<TrainBackend, M>();
    let mut history = LossHistory::new();
    let bar = Progress::new(steps, 0, &format!("{label:>14}"));
    let mut recent = Vec::new();
    let mut train_loss = f64::NAN;
    let mut tokens = 0usize;
    let mut eval_time = Duration::ZERO;
    let started = Instant::now();
    let mut guard = NonFiniteGuard::new(args.skip_nonfinite);
    for step in 1..=steps {
        let (x, y) = data(step);
        tokens += x.dims()[0] * x.dims()[1];
        let forcing = match scheduled {
            None => Forcing::TeacherForced,
            Some((schedule, feedback)) => schedule.forcing(
                step - 1,
                feedback,
                args.common
                    .seed
                    .wrapping_mul(1_000_003)
                    .wrapping_add(step as u64),
            )?,
        };
        let logits = model.try_forward(x, &forced(forcing, y.clone()))?.logits;
        let loss = sequence_nll(logits, y, None, Reduction::MeanPerToken);
        let value = loss.clone().into_scalar() as f64;
        // Stops before the step is applied, or skips it (--skip-nonfinite).
        if guard
            .check_loss(step, value)
            .inspect_err(|_| bar.finish())?
        {
            recent.push(value);
            history.push_train(step, value);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(args.common.lr, model, grads);
        }
        if step % args.eval_every == 0 || step == steps {
            train_loss = mean(&recent);
            recent.clear();
            let eval_started = Instant::now();
            if let Some(val_loss) =
                eval(step, train_loss, &model, &bar).inspect_err(|_| bar.finish())?
            {
                history.push_val(step, val_loss);
            }
            if let Some(dir) = curves {
                std::fs::create_dir_all(dir).map_err(|e| Error::Io {
                    action: "creating",
                    path: dir.to_path_buf(),
                    source: e,
                })?;
                write_loss_curves(dir, &history)?;
            }
            eval_time += eval_started.elapsed();
        }
        let epsilon = match &forcing {
            Forcing::Scheduled {
                teacher_probability,
                ..
            } => format!("  ε {teacher_probability:.2}"),
            _ => String::new(),
        };
        bar.step(format!("loss {value:.3}{epsilon}"));
    }
    bar.finish();
    let tokens_per_s = tokens as f64 / (started.elapsed() - eval_time).as_secs_f64();
    Ok((model, train_loss, tokens_per_s))
}

// ---------------------------------------------------------------------------------------------
// Task sum: running sum mod 10, teacher forcing vs scheduled sampling; then the corpus.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
struct SumEval {
    step: usize,
    train_loss: f64,
    /// Teacher-forced validation loss, nats per step.
    val_loss: f64,
    /// Teacher-forced per-step accuracy.
    val_acc: f64,
    /// Free-running per-step accuracy at the training length.
    free_run_acc: f64,
    /// Free-running per-step accuracy on the long sequences.
    free_run_acc_long: f64,
    /// The same, per stretch of positions.
    long_acc_by_position: Vec<(String, f64)>,
    /// Fraction of long sequences run free without a single error.
    long_all_correct: f64,
}

#[derive(Debug, Clone, Serialize)]
struct SumResult {
    training: String,
    /// The final evaluation.
    last: SumEval,
    tokens_per_s: f64,
    history: Vec<SumEval>,
}

struct SumEvalSets {
    val: Sequences,
    long: Sequences,
}

/// Mean accuracy over stretches of positions: the training length, twice it, five times it,
/// and the rest.
fn stretches(acc: &[f64], train_len: usize) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut start = 0;
    for end in [train_len, 2 * train_len, 5 * train_len, acc.len()] {
        let end = end.min(acc.len());
        if end > start {
            out.push((format!("{}..{}", start + 1, end), mean(&acc[start..end])));
            start = end;
        }
    }
    out
}

/// Teacher-forced loss and accuracy on the validation set, free-running accuracy on it and on
/// the long set.
fn evaluate_sum<M: SequenceModel<Backend>>(
    model: &M,
    sets: &SumEvalSets,
    free: Feedback,
    step: usize,
    train_loss: f64,
    device: &Device,
) -> Result<SumEval> {
    let topology = Topology::OutputToHidden;
    let (x, y) = sets.val.tensors::<Backend>(device);
    let logits = eval_logits(model, topology, x.clone(), y.clone(), None)?;
    let val_loss =
        sequence_nll(logits.clone(), y.clone(), None, Reduction::MeanPerToken).into_scalar() as f64;
    let val_acc = mean(&accuracy_by_position(
        &predictions(logits),
        &sets.val.targets,
    )?);
    let short = predictions(eval_logits(model, topology, x, y, Some(free))?);
    let (x, y) = sets.long.tensors::<Backend>(device);
    let long = predictions(eval_logits(model, topology, x, y, Some(free))?);
    let long_acc = accuracy_by_position(&long, &sets.long.targets)?;
    let all_correct = long
        .iter()
        .zip(&sets.long.targets)
        .filter(|(p, y)| p == y)
        .count();
    Ok(SumEval {
        step,
        train_loss,
        val_loss,
        val_acc,
        free_run_acc: mean(&accuracy_by_position(&short, &sets.val.targets)?),
        free_run_acc_long: mean(&long_acc),
        long_acc_by_position: stretches(&long_acc, sets.val.targets[0].len()),
        long_all_correct: all_correct as f64 / long.len() as f64,
    })
}

fn sum_line(training: &str, e: &SumEval) -> String {
    let along: Vec<String> = e
        .long_acc_by_position
        .iter()
        .map(|(_, acc)| format!("{acc:>9.4}"))
        .collect();
    format!(
        "{training:>30} | {:>5} | {:>8.5} | {:>6.4} | {:>6.4} | {} | {:>6.3}",
        e.step,
        e.val_loss,
        e.val_acc,
        e.free_run_acc,
        along.join(" "),
        e.long_all_correct
    )
}

fn sum_header(e: &SumEval) -> String {
    let ranges: Vec<String> = e
        .long_acc_by_position
        .iter()
        .map(|(range, _)| format!("{range:>9}"))
        .collect();
    format!(
        "{:>30} | {:>5} | {:>8} | {:>6} | {:>6} | {} | {:>6}",
        "training",
        "step",
        "val loss",
        "TF acc",
        "free",
        ranges.join(" "),
        "all ok"
    )
}

fn task_sum(args: &Args, out: &RunDir, device: &Device) -> Result<serde_json::Value> {
    let common = &args.common;
    let free: Feedback = args.free_feedback.into();
    let mut rng = StdRng::seed_from_u64(common.seed.wrapping_add(1));
    let sets = SumEvalSets {
        val: running_sums(args.eval_sequences, common.seq_len, &mut rng),
        long: running_sums(args.eval_sequences, args.long_len, &mut rng),
    };
    let config = JordanRnnConfig::new(10, common.hidden, 10);
    let schedule = schedule(args);
    eprintln!(
        "jordan: running sum mod 10 of digits; output-to-hidden model, hidden {}, {} parameters; \
         trained on length {}, run free ({free:?} fed back) on held-out lengths {} and {}; \
         scheduled sampling {schedule:?}; backend {}",
        common.hidden,
        config.init::<Backend>(device).num_params(),
        common.seq_len,
        common.seq_len,
        args.long_len,
        backend::NAME
    );
    eprintln!(
        "columns: teacher-forced loss and accuracy, free-running accuracy at the training length, \
         then on the long sequences by position, and the share of long sequences without an error"
    );
    let mut runs: Vec<(String, Option<(TeacherSchedule, Feedback)>)> =
        vec![("teacher forcing".into(), None)];
    for &feedback in &args.ss_feedback {
        let feedback: Feedback = feedback.into();
        runs.push((
            format!("scheduled sampling, {feedback:?}"),
            Some((schedule, feedback)),
        ));
    }
    let mut results = Vec::new();
    for (training, scheduled) in runs {
        // Same initial parameters and the same training sequences for every run.
        TrainBackend::seed(device, common.seed);
        let model: JordanRnn<TrainBackend> = config.init(device);
        let mut data_rng = StdRng::seed_from_u64(common.seed.wrapping_add(2));
        let mut history = Vec::new();
        let mut header_said = false;
        let (model, _, tokens_per_s) = train(
            model,
            args,
            &training,
            common.steps,
            scheduled,
            Some(&curves_dir(out.path(), &format!("sum {training}"))),
            |_| running_sums(common.batch, common.seq_len, &mut data_rng).tensors(device),
            |step, train_loss, model, bar| {
                let eval = evaluate_sum(&model.valid(), &sets, free, step, train_loss, device)?;
                if !header_said {
                    bar.say(sum_header(&eval));
                    header_said = true;
                }
                bar.say(sum_line(&training, &eval));
                let val_loss = eval.val_loss;
                history.push(eval);
                Ok(Some(val_loss))
            },
        )?;
        if results.is_empty() {
            out.save_model(model.valid())?; // the teacher-forced model
        }
        results.push(SumResult {
            training,
            last: history.last().expect("at least one evaluation").clone(),
            tokens_per_s,
            history,
        });
    }
    eprintln!("\nrunning sum mod 10, after {} steps:", common.steps);
    eprintln!("{}", sum_header(&results[0].last));
    for r in &results {
        eprintln!("{}", sum_line(&r.training, &r.last));
    }

    let corpus = if args.corpus_steps > 0 {
        Some(corpus_comparison(args, out, device)?)
    } else {
        None
    };
    let main = &results[0].last;
    Ok(serde_json::json!({
        "task": "sum",
        "train_loss": main.train_loss,
        "val_loss": main.val_loss,
        "val_acc": main.val_acc,
        "free_run_acc": main.free_run_acc,
        "free_run_acc_long": main.free_run_acc_long,
        "tokens_per_s": results[0].tokens_per_s,
        "steps": common.steps,
        "schedule": schedule,
        "results": results,
        "corpus": corpus,
    }))
}

/// The output-to-hidden and hidden-to-hidden models on the corpus, same size and steps.
fn corpus_comparison(args: &Args, out: &RunDir, device: &Device) -> Result<serde_json::Value> {
    let common = &args.common;
    let corpus = match &common.corpus {
        Some(path) => Corpus::from_file(path)?,
        None => Corpus::tiny_shakespeare(),
    };
    let vocab = corpus.vocab().clone();
    let (train_ids, val_ids) = corpus.split(0.9)?;
    let k = vocab.len();
    let val_batches = sequential_batches::<Backend>(&val_ids, 256, args.corpus_seq_len, device)?;
    // The best a model that sees only the current character can do: the bigram model, counted
    // on the training split (add-0.1 smoothing), scored on the validation split.
    let mut counts = vec![0.1f64; k * k];
    for pair in train_ids.windows(2) {
        counts[pair[0] * k + pair[1]] += 1.0;
    }
    let bigram: f64 = val_ids
        .windows(2)
        .map(|pair| {
            let row = &counts[pair[0] * k..(pair[0] + 1) * k];
            (row.iter().sum::<f64>() / row[pair[1]]).ln()
        })
        .sum::<f64>()
        / (val_ids.len() - 1) as f64;
    eprintln!(
        "\ncorpus {} ({} chars, vocabulary {k}): {} steps each, hidden {}, BPTT length {}",
        corpus.name(),
        corpus.num_tokens(),
        args.corpus_steps,
        args.corpus_hidden,
        args.corpus_seq_len
    );
    let prompt = vocab.encode(&vocab.chars()[0].to_string())?;
    let run = CorpusRun {
        args,
        train_ids: &train_ids,
        val_batches: &val_batches,
        vocab: &vocab,
        prompt: &prompt,
        out,
        device,
    };
    let rows = vec![
        run.train(
            JordanRnnConfig::new(k, args.corpus_hidden, k).try_init::<TrainBackend>(device)?,
            Topology::OutputToHidden,
        )?,
        run.train(
            ElmanRnnConfig::new(k, args.corpus_hidden, k).try_init::<TrainBackend>(device)?,
            Topology::HiddenToHidden,
        )?,
    ];
    eprintln!(
        "{:>18} | {:>14}\n{}",
        "model",
        "val nats/char",
        rows.iter()
            .map(|r| format!(
                "{:>18} | {:>14.3}",
                r["model"].as_str().unwrap_or(""),
                r["val_loss"].as_f64().unwrap_or(f64::NAN)
            ))
            .chain([format!("{:>18} | {bigram:>14.3}", "bigram counts")])
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(serde_json::json!({
        "corpus": corpus.name(),
        "steps": args.corpus_steps,
        "bigram_val_loss": bigram,
        "models": rows,
    }))
}

/// What the corpus comparison trains each model with.
struct CorpusRun<'a> {
    args: &'a Args,
    train_ids: &'a [usize],
    val_batches: &'a [TokenBatch<Backend>],
    vocab: &'a Vocab,
    prompt: &'a [usize],
    out: &'a RunDir,
    device: &'a Device,
}

impl CorpusRun<'_> {
    /// Trains `model` with teacher forcing on corpus windows, reports its validation loss and
    /// a sample from the shared `generate`.
    fn train<M>(&self, model: M, topology: Topology) -> Result<serde_json::Value>
    where
        M: SequenceModel<TrainBackend> + AutodiffModule<TrainBackend>,
        M::InnerModule: Autoregressive<Backend>,
    {
        let (args, device) = (self.args, self.device);
        let name = topology.name();
        let parameters = model.num_params();
        let mut sampler = WindowSampler::new(
            self.train_ids.to_vec(),
            args.common.batch,
            args.corpus_seq_len,
            args.common.seed,
        )?;
        let mut val_loss = f64::NAN;
        let inner_args = Args {
            eval_every: args.corpus_steps.div_ceil(2),
            ..args.clone()
        };
        let (model, train_loss, tokens_per_s) = train(
            model,
            &inner_args,
            name,
            args.corpus_steps,
            None,
            Some(&curves_dir(self.out.path(), &format!("corpus {name}"))),
            |_| {
                let TokenBatch { inputs, targets } = sampler.next_batch::<TrainBackend>(device);
                (inputs, targets)
            },
            |step, train_loss, model, bar| {
                let model = model.valid();
                let mut total = 0.0;
                let mut tokens = 0;
                for batch in self.val_batches {
                    let (x, y) = (batch.inputs.clone(), batch.targets.clone());
                    let logits = eval_logits(&model, topology, x, y, None)?;
                    total += sequence_nll(logits, batch.targets.clone(), None, Reduction::Sum)
                        .into_scalar() as f64;
                    tokens += batch.batch_size() * batch.seq_len();
                }
                val_loss = total / tokens as f64;
                bar.say(format!(
                    "{name:>18} step {step:>5}  train {train_loss:.3}  val {val_loss:.3} nats/char"
                ));
                Ok(Some(val_loss))
            },
        )?;
        let config = GenerateConfig::new(120)
            .with_sampling(Sampling::Temperature(0.8))
            .with_seed(args.common.seed);
        let sample = generate(&model.valid(), &[self.prompt], &config, device)?;
        let text = self.vocab.decode(&sample[0])?;
        eprintln!(
            "--- {name} sample (temperature 0.8) ---\n{}{text}\n---",
            self.vocab.decode(self.prompt)?
        );
        Ok(serde_json::json!({
            "model": name,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "tokens_per_s": tokens_per_s,
            "parameters": parameters,
            "sample": text,
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Task xor: the seed's claim.
// ---------------------------------------------------------------------------------------------

fn task_xor(args: &Args, out: &RunDir, device: &Device) -> Result<serde_json::Value> {
    let common = &args.common;
    // Whole triples, so that every sequence starts at a triple boundary.
    let len = common.seq_len.div_ceil(3) * 3;
    eprintln!(
        "jordan: temporal XOR and running parity, sequences of {len} bits, hidden {}, {} steps, \
         seeds {}..={}, backend {}",
        common.hidden,
        common.steps,
        common.seed,
        common.seed + args.repeats as u64 - 1,
        backend::NAME
    );
    let mut rows = Vec::new();
    for seed in (0..args.repeats as u64).map(|i| common.seed + i) {
        for (task, make) in [
            ("temporal XOR", temporal_xor as Generator),
            ("running parity", running_parity as Generator),
        ] {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1));
            let val = make(args.eval_sequences, len, &mut rng);
            let run = XorRun {
                args,
                seed,
                task,
                make,
                val: &val,
                len,
                out,
                device,
            };
            let h = common.hidden;
            TrainBackend::seed(device, seed);
            let model = ElmanRnnConfig::new(2, h, 2).try_init::<TrainBackend>(device)?;
            rows.push(run.train(model, Topology::HiddenToHidden)?);
            TrainBackend::seed(device, seed);
            let model = JordanRnnConfig::new(2, h, 2).try_init::<TrainBackend>(device)?;
            rows.push(run.train(model, Topology::OutputToHidden)?);
            TrainBackend::seed(device, seed);
            let model = ElmanJordanRnnConfig::new(2, h, 2).try_init::<TrainBackend>(device)?;
            rows.push(run.train(model, Topology::Both)?);
        }
    }
    // Mean over the seeds, and in how many runs the accuracy reached 0.99.
    let summary = |task: &str, model: &str, key: &str| {
        let values: Vec<f64> = rows
            .iter()
            .filter(|r| r["task"] == task && r["model"] == model)
            .filter_map(|r| r[key].as_f64())
            .collect();
        let learned = values.iter().filter(|&&a| a >= 0.99).count();
        (mean(&values), learned, values.len())
    };
    eprintln!(
        "\nmean accuracy over {} seeds (runs reaching 0.99):\n{:>17} | {:>20} | {:>20} | {:>20} | {:>20}",
        args.repeats,
        "model",
        "XOR 3rd bit (TF)",
        "XOR random bits",
        "parity (TF)",
        "parity, free running"
    );
    let mut table = Vec::new();
    for model in ["hidden-to-hidden", "output-to-hidden", "both"] {
        let cells = [
            summary("temporal XOR", model, "xor_bit_acc"),
            summary("temporal XOR", model, "random_bit_acc"),
            summary("running parity", model, "acc"),
            summary("running parity", model, "free_run_acc"),
        ];
        let text: Vec<String> = cells
            .iter()
            .map(|(m, learned, n)| format!("{:>20}", format!("{m:.3} ({learned}/{n})")))
            .collect();
        eprintln!("{model:>17} | {}", text.join(" | "));
        table.push(serde_json::json!({
            "model": model,
            "xor_bit_acc": cells[0].0,
            "random_bit_acc": cells[1].0,
            "parity_acc": cells[2].0,
            "parity_free_run_acc": cells[3].0,
            "xor_bit_learned": cells[0].1,
            "parity_learned": cells[2].1,
            "runs": cells[0].2,
        }));
    }
    let (parity_free, _, _) = summary("running parity", "output-to-hidden", "free_run_acc");
    let parity_loss = mean(
        &rows
            .iter()
            .filter(|r| r["task"] == "running parity" && r["model"] == "output-to-hidden")
            .filter_map(|r| r["val_loss"].as_f64())
            .collect::<Vec<_>>(),
    );
    Ok(serde_json::json!({
        "task": "xor",
        "val_loss": parity_loss,
        "free_run_acc": parity_free,
        "steps": common.steps,
        "sequence_len": len,
        "repeats": args.repeats,
        "table": table,
        "results": rows,
    }))
}

/// One model on one of the two bit tasks.
struct XorRun<'a> {
    args: &'a Args,
    seed: u64,
    task: &'static str,
    make: Generator,
    val: &'a Sequences,
    len: usize,
    out: &'a RunDir,
    device: &'a Device,
}

impl XorRun<'_> {
    fn train<M>(&self, model: M, topology: Topology) -> Result<serde_json::Value>
    where
        M: SequenceModel<TrainBackend> + AutodiffModule<TrainBackend>,
        M::InnerModule: SequenceModel<Backend>,
    {
        let (common, device, task) = (&self.args.common, self.device, self.task);
        let name = topology.name();
        let mut data_rng = StdRng::seed_from_u64(self.seed.wrapping_add(2));
        // Curves of the first seed's runs (the others differ only by seed).
        let curves = (self.seed == common.seed)
            .then(|| curves_dir(self.out.path(), &format!("{task} {name}")));
        let (model, train_loss, _) = train(
            model,
            self.args,
            name,
            common.steps,
            None,
            curves.as_deref(),
            |_| (self.make)(common.batch, self.len, &mut data_rng).tensors(device),
            |step, train_loss, _, bar| {
                bar.say(format!(
                    "{task:>15} {name:>17} seed {} step {step:>5}  train {train_loss:.4}",
                    self.seed
                ));
                Ok(None)
            },
        )?;
        let model = model.valid();
        let (x, y) = self.val.tensors::<Backend>(device);
        let logits = eval_logits(&model, topology, x.clone(), y.clone(), None)?;
        let val_loss = sequence_nll(logits.clone(), y.clone(), None, Reduction::MeanPerToken)
            .into_scalar() as f64;
        let by_position = accuracy_by_position(&predictions(logits), &self.val.targets)?;
        let free = if topology.feeds_back() {
            let logits = eval_logits(&model, topology, x, y, Some(Feedback::Argmax))?;
            accuracy_by_position(&predictions(logits), &self.val.targets)?
        } else {
            by_position.clone() // nothing is fed back: free running is the same run
        };
        // Steps whose target is the third bit of a triple (t ≡ 1 mod 3, 0-based), and the
        // others (random bits: chance is the best anyone can do there).
        let mean_where = |acc: &[f64], third: bool| {
            let picked: Vec<f64> = acc
                .iter()
                .enumerate()
                .filter(|(t, _)| (t % 3 == 1) == third)
                .map(|(_, &a)| a)
                .collect();
            mean(&picked)
        };
        Ok(if task == "temporal XOR" {
            serde_json::json!({
                "task": task, "model": name, "seed": self.seed,
                "train_loss": train_loss, "val_loss": val_loss,
                "xor_bit_acc": mean_where(&by_position, true),
                "random_bit_acc": mean_where(&by_position, false),
                "free_run_xor_bit_acc": mean_where(&free, true),
            })
        } else {
            serde_json::json!({
                "task": task, "model": name, "seed": self.seed,
                "train_loss": train_loss, "val_loss": val_loss,
                "acc": mean(&by_position), "free_run_acc": mean(&free),
            })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Task bench: teacher forcing all at once vs one step at a time.
// ---------------------------------------------------------------------------------------------

fn task_bench(args: &Args, device: &Device) -> Result<serde_json::Value> {
    let common = &args.common;
    let classes = 65; // the size of tiny-shakespeare's vocabulary
    let model: JordanRnn<TrainBackend> =
        JordanRnnConfig::new(classes, args.bench_hidden, classes).try_init(device)?;
    eprintln!(
        "jordan: one teacher-forced forward + backward pass, batch {}, hidden {}, {classes} classes, median of {} runs, backend {}",
        common.batch,
        args.bench_hidden,
        args.bench_reps,
        backend::NAME
    );
    let mut rng = StdRng::seed_from_u64(common.seed);
    let mut rows = Vec::new();
    eprintln!(
        "{:>6} | {:>13} | {:>15} | {:>8} | {:>13} | {:>14}",
        "T", "parallel ms", "step loop ms", "speed-up", "shared ms", "rest speed-up"
    );
    eprintln!("(shared: the readout and loss, forward and backward, which both passes run alike)");
    for &time in &args.bench_lens {
        let random = |rng: &mut StdRng| -> Vec<Vec<usize>> {
            (0..common.batch)
                .map(|_| (0..time).map(|_| rng.random_range(0..classes)).collect())
                .collect()
        };
        let (x, y) = Sequences {
            inputs: random(&mut rng),
            targets: random(&mut rng),
            vocab_size: classes,
        }
        .tensors::<TrainBackend>(device);
        let teacher_forced = UnrollOptions::new().teacher_forced(y.clone());
        // The work both passes share, timed alone: the readout and the loss, forward and
        // backward, from fixed states (what running in parallel cannot remove).
        let states = model
            .try_forward(x.clone(), &teacher_forced)?
            .states
            .detach()
            .require_grad();
        let shared = median_ms(args.bench_reps, || {
            let logits = model.readout.forward(states.clone());
            let loss = sequence_nll(logits, y.clone(), None, Reduction::MeanPerToken);
            let grads = loss.backward();
            let _ = states.grad(&grads).map(|g| g.sum().into_scalar());
            Ok(())
        })?;
        let time_it = |sequential: bool| -> Result<f64> {
            median_ms(args.bench_reps, || {
                let output = if sequential {
                    model.try_forward_sequential(x.clone(), &teacher_forced)?
                } else {
                    model.try_forward(x.clone(), &teacher_forced)?
                };
                let loss = sequence_nll(output.logits, y.clone(), None, Reduction::MeanPerToken);
                let grads = loss.backward();
                // Read one gradient back so that lazy backends finish the work.
                let _ = model.w.grad(&grads).map(|g| g.sum().into_scalar());
                Ok(())
            })
        };
        let parallel = time_it(false)?;
        let sequential = time_it(true)?;
        eprintln!(
            "{time:>6} | {parallel:>13.2} | {sequential:>15.2} | {:>7.1}x | {shared:>13.2} | {:>13.1}x",
            sequential / parallel,
            (sequential - shared) / (parallel - shared)
        );
        rows.push(serde_json::json!({
            "time": time,
            "parallel_ms": parallel,
            "sequential_ms": sequential,
            "speedup": sequential / parallel,
            "shared_ms": shared,
            "recurrent_part_speedup": (sequential - shared) / (parallel - shared),
            "parallel_tokens_per_s": (common.batch * time) as f64 / parallel * 1e3,
        }));
    }
    Ok(serde_json::json!({
        "task": "bench",
        "batch": common.batch,
        "hidden": args.bench_hidden,
        "classes": classes,
        "results": rows,
    }))
}

/// Median wall time of `reps` runs of `work`, in milliseconds, after one warm-up run.
fn median_ms(reps: usize, mut work: impl FnMut() -> Result<()>) -> Result<f64> {
    work()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let started = Instant::now();
        work()?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
