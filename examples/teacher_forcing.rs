//! The output-to-hidden (Jordan) RNN: trained with teacher forcing, deployed free-running.
//!
//! ```text
//! cargo run --release --example teacher_forcing
//! cargo run --release --example teacher_forcing -- --steps 3000 --long-len 1000
//! ```
//!
//! The model is `h(t) = tanh(b + W r(t-1) + U x(t))`, `o(t) = c + V h(t)`: its only memory is
//! what it fed back, `r(t-1)`. The task is the running sum of a digit stream modulo 10,
//! `y(t) = y(t-1) + x(t) mod 10`, a target that carries all the state the model needs.
//!
//! - **Training** feeds the true previous target (`r(t-1) = y(t-1)`): no step then depends on
//!   another, so every step of the batch is computed at once, with no loop over time.
//! - **Deployment** feeds back the model's own argmax, one step after the other, on held-out
//!   sequences of the training length and far longer ones.
//!
//! Prints the teacher-forced validation loss and the free-running accuracy by position, and
//! ends with one JSON line.
#![cfg_attr(rustfmt, rustfmt::skip)] // kept compact: an example is read on one screen

use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend as _;
use burn::tensor::{Int, Tensor};
use clap::Parser;
use rand::{rngs::StdRng, SeedableRng};

use unfold::data::tasks::sums::{accuracy_by_position, running_sums, Sequences};
use unfold::nn::{Feedback, Forcing, JordanRnn, JordanRnnConfig, Reduction, SequenceModel};
use unfold::nn::UnrollOptions;
use unfold_lab::backend::{self, Backend, TrainBackend};
use unfold_lab::cli::{self, CommonArgs, Defaults};
use unfold_lab::{exit_on_error, progress::Progress, Result};

/// Train the output-to-hidden RNN on running sums with teacher forcing, then run it free.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Held-out sequences per evaluation set.
    #[arg(long, default_value_t = 500)]
    eval_sequences: usize,
    /// Length of the long held-out sequences (free running far past the training length).
    #[arg(long, default_value_t = 400)]
    long_len: usize,
}

const DEFAULTS: Defaults = Defaults {
    hidden: 64,
    seq_len: 20,
    batch: 32,
    steps: 1500,
    lr: 3e-3,
    out: "runs/teacher_forcing",
};

fn main() {
    let args: Args = cli::parse(&DEFAULTS);
    exit_on_error(|| run(&args));
}

fn run(args: &Args) -> Result<()> {
    let common = &args.common;
    common.validate(&[
        ("--eval-sequences", args.eval_sequences),
        ("--long-len", args.long_len),
    ])?;
    let device = backend::open()?;
    TrainBackend::seed(&device, common.seed);
    let mut rng = StdRng::seed_from_u64(common.seed);
    common.check_memory(|hidden, batch, time| {
        JordanRnnConfig::new(10, hidden, 10).training_memory(batch, time)
    })?;
    let mut model: JordanRnn<TrainBackend> =
        JordanRnnConfig::new(10, common.hidden, 10).try_init(&device)?;
    let mut optimizer = AdamConfig::new().init();

    let progress = Progress::new(common.steps, 0, "teacher forcing");
    for step in 1..=common.steps {
        let batch = running_sums(common.batch, common.seq_len, &mut rng);
        let (inputs, targets) = batch.tensors::<TrainBackend>(&device);
        // try_loss feeds the targets back as the teacher: r(t-1) = y(t-1), all steps at once.
        let loss = model
            .try_loss(inputs, targets, &UnrollOptions::new(), Reduction::MeanPerToken)?
            .loss;
        let value = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(common.lr, model, grads);
        progress.step(format!("loss {value:.4}"));
        if step % 250 == 0 {
            progress.say(format!("step {step:>5}  teacher-forced loss {value:.4}"));
        }
    }
    progress.finish();

    let model = model.valid();
    let held_out = running_sums(args.eval_sequences, common.seq_len, &mut rng);
    let long = running_sums(args.eval_sequences, args.long_len, &mut rng);
    let (inputs, targets) = held_out.tensors::<Backend>(&device);
    let val_loss = model
        .try_loss(inputs, targets, &UnrollOptions::new(), Reduction::MeanPerToken)?
        .loss
        .into_scalar() as f64;
    let short = free_running_accuracy(&model, &held_out, &device)?;
    let far = free_running_accuracy(&model, &long, &device)?;
    let mean = |acc: &[f64]| acc.iter().sum::<f64>() / acc.len() as f64;
    eprintln!("teacher-forced validation loss {val_loss:.4} nats per step");
    eprintln!(
        "free running, fed its own argmax: length {}: accuracy {:.3}; length {}: {:.3} (steps \
         1-{0}: {:.3}, beyond: {:.3})",
        common.seq_len,
        mean(&short),
        args.long_len,
        mean(&far),
        mean(&far[..common.seq_len]),
        mean(&far[common.seq_len..]),
    );
    let metrics = serde_json::json!({
        "val_loss": val_loss,
        "free_run_acc": mean(&short),
        "long_free_run_acc": mean(&far),
        "steps": common.steps,
        "backend": backend::NAME,
    });
    println!("{metrics}");
    Ok(())
}

/// Accuracy at each position when the model runs free on `set`'s inputs, fed back its own
/// argmax (no targets given: it must carry the sum itself).
fn free_running_accuracy(
    model: &JordanRnn<Backend>,
    set: &Sequences,
    device: &backend::Device,
) -> Result<Vec<f64>> {
    let (inputs, _) = set.tensors::<Backend>(device);
    let free = Forcing::FreeRunning {
        feedback: Feedback::Argmax,
        seed: 0,
    };
    let out = model.try_forward(inputs, &UnrollOptions::new().with_forcing(free))?;
    let [batch, time, _] = out.logits.dims();
    let predicted: Tensor<Backend, 2, Int> = out.logits.argmax(2).reshape([batch, time]);
    let rows: Vec<Vec<usize>> = predicted
        .into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .expect("ids")
        .chunks(time)
        .map(|row| row.iter().map(|&id| id as usize).collect())
        .collect();
    Ok(accuracy_by_position(&rows, &set.targets)?)
}
