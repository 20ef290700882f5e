//! Character-level language model: the hidden-to-hidden RNN trained on text.
//!
//! ```text
//! cargo run --release --example char_lm                      # built-in tiny-shakespeare
//! cargo run --release --example char_lm -- --corpus my.txt --steps 500 --out runs/mine
//! cargo run --release --example char_lm -- --layers 2 --dropout 0.1 --nonlinearity relu
//! cargo run --release --example char_lm -- --steps 6000 --resume   # continue runs/char_lm
//! cargo run --release --example char_lm -- sample --from runs/char_lm --prompt "ROMEO:"
//! ```
//!
//! Trains `h(t) = tanh(b + W h(t-1) + U x(t))`, `o(t) = c + V h(t)` to predict each next
//! character (loss `Σ_t -log p(y(t) | x(1..t))`, by BPTT over `--seq-len` steps, gradients
//! clipped to a global norm of `--clip`), reports the validation loss in nats and bits per
//! character, checkpoints atomically at every evaluation (`--resume` continues from it), writes
//! `config.json`, `vocab.json`, `model.mpk`, `metrics.json` and the loss curves to `--out`,
//! prints a sample, and ends with one JSON line.
#![cfg_attr(rustfmt, rustfmt::skip)] // kept compact: an example is read on one screen

use std::path::Path;
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend as _;
use clap::Parser;
use serde::{Deserialize, Serialize};

use unfold::data::{sequential_batches, Corpus, TokenBatch, Vocab, WindowSampler};
use unfold::nn::checkpoint::{self, LoopState, NonFiniteGuard, RunDir};
use unfold::nn::sample::{check_temperature, generate, GenerateConfig, Sampling};
use unfold::nn::{bits_per_token, clip_global_norm, perplexity, Error, Nonlinearity};
use unfold::nn::{ElmanRnn, ElmanRnnConfig, Reduction, SequenceModel, UnrollOptions};
use unfold_lab::backend::{self, Backend, TrainBackend};
use unfold_lab::cli::{self, CommonArgs, Defaults};
use unfold_lab::{exit_on_error, progress::Progress, Result};

/// Train a character-level hidden-to-hidden RNN language model.
#[derive(Parser, Debug, Serialize)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Stacked recurrent layers.
    #[arg(long, default_value_t = 1)]
    layers: usize,
    /// The recurrence's nonlinearity (tanh or relu).
    #[arg(long, default_value_t = Nonlinearity::Tanh)]
    nonlinearity: Nonlinearity,
    /// Dropout between stacked layers (training only).
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    /// Refused: a language model that reads each sequence backwards sees the future.
    #[arg(long)]
    bidirectional: bool,
    /// Evaluate on the validation split (and checkpoint) every this many steps.
    #[arg(long, default_value_t = 250)]
    eval_every: usize,
    /// Clip the gradient to this global norm over all parameters (0: no clipping).
    #[arg(long, default_value_t = 5.0)]
    clip: f64,
    /// Characters to sample at the end, at this temperature, after this prompt.
    #[arg(long, default_value_t = 400)]
    sample_len: usize,
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    /// (default: a newline, or the corpus's first character if it has none)
    #[arg(long)]
    prompt: Option<String>,
    /// Continue the run saved in --out (its checkpoint/) up to --steps.
    #[arg(long)]
    resume: bool,
    /// Skip a step whose loss is NaN or infinite instead of stopping (keeping the checkpoint).
    #[arg(long)]
    skip_nonfinite: bool,
    #[command(subcommand)]
    #[serde(skip)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Sample from a finished run (its config.json, vocab.json and model.mpk), no training.
    Sample {
        #[arg(long, value_name = "DIR")]
        from: std::path::PathBuf,
        #[arg(long, default_value = "\n")]
        prompt: String,
        #[arg(long, default_value_t = 400)]
        len: usize,
        #[arg(long, default_value_t = 0.8)]
        temperature: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

const DEFAULTS: Defaults = Defaults { hidden: 256, seq_len: 64, batch: 32, steps: 5000, lr: 2e-3, out: "runs/char_lm" };

/// One validation measurement (the loop's history, kept in the checkpoint).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Eval { step: usize, train_loss: f64, val_loss: f64, val_bpc: f64 }

fn main() {
    let args: Args = cli::parse(&DEFAULTS);
    exit_on_error(|| match &args.command {
        Some(Command::Sample { from, prompt, len, temperature, seed }) => {
            let (model, vocab) = load_run(from)?;
            let text = sample(&model, &vocab, prompt, *len, *temperature, *seed)?;
            println!("{prompt}{text}");
            Ok(())
        }
        None => train(&args),
    })
}

fn train(args: &Args) -> Result<()> {
    let (common, started) = (&args.common, Instant::now());
    common.validate(&[("--eval-every", args.eval_every), ("--layers", args.layers)])?;
    check_temperature(args.temperature)?;
    if args.bidirectional {
        let why = "a language model predicts each next character, and a reversed reader would see it";
        return Err(Error::config("--bidirectional", true, why).into());
    }
    let out = RunDir::create(&common.out)?;
    let corpus = match &common.corpus {
        Some(path) => Corpus::from_file(path)?,
        None => Corpus::tiny_shakespeare(),
    };
    let vocab = corpus.vocab().clone();
    let (train_ids, val_ids) = corpus.split(0.9)?;
    let device = backend::open()?;
    TrainBackend::seed(&device, common.seed);
    let config = ElmanRnnConfig::new(vocab.len(), common.hidden, vocab.len())
        .with_num_layers(args.layers)
        .with_nonlinearity(args.nonlinearity)
        .with_dropout(args.dropout);
    common.check_memory(|hidden_size, batch, time| {
        ElmanRnnConfig { hidden_size, ..config.clone() }.training_memory(batch, time)
    })?;
    let mut model: ElmanRnn<TrainBackend> = config.try_init(&device)?;
    let mut optimizer = AdamConfig::new().init();
    let mut sampler = WindowSampler::new(train_ids, common.batch, common.seq_len, common.seed)?;
    let model_config = serde_json::to_value(&config).expect("a config serialises");
    let mut state = LoopState { step: 0, batches_drawn: 0, model_config, history: Vec::<Eval>::new() };
    if args.resume {
        let saved = out.load_checkpoint::<TrainBackend, _, _, LoopState<Vec<Eval>>>(&model, &device)?;
        saved.state.check_config(&state.model_config, out.path())?;
        (model, optimizer, state) = (saved.model, optimizer.load_record(saved.optimizer), saved.state);
        // The sampler is seeded: replaying its draws puts it where the saved run left it.
        (0..state.batches_drawn).for_each(|_| drop(sampler.next_windows()));
        eprintln!("char_lm: resuming at step {} from {}", state.step + 1, out.path().display());
    }
    let val_batches = sequential_batches::<Backend>(&val_ids, 256, common.seq_len, &device)?;
    out.write_json("config.json", &serde_json::json!({ "model": config, "args": args }))?;
    out.write_json("vocab.json", &vocab)?;
    eprintln!("char_lm: {} ({} chars, vocabulary {}), {} parameters, backend {}",
        corpus.name(), corpus.num_tokens(), vocab.len(), model.num_params(), backend::NAME);

    let progress = Progress::new(common.steps, state.step, "train");
    let mut guard = NonFiniteGuard::new(args.skip_nonfinite);
    let (mut recent, train_started) = (Vec::new(), Instant::now());
    let mut eval_time = std::time::Duration::ZERO; // kept out of the training throughput
    let first_step = state.step + 1;
    for step in first_step..=common.steps {
        let TokenBatch { inputs, targets } = sampler.next_batch::<TrainBackend>(&device);
        let loss = model.try_loss(inputs, targets, &UnrollOptions::new(), Reduction::MeanPerToken)?.loss;
        let loss_value = loss.clone().into_scalar() as f64;
        // A NaN or infinite loss stops the run before the step is applied (or skips the step).
        if guard.check_loss(step, loss_value).inspect_err(|_| progress.finish())? {
            recent.push(loss_value);
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            if args.clip > 0.0 {
                grads = clip_global_norm(&model, grads, args.clip)?.0;
            }
            model = optimizer.step(common.lr, model, grads);
        }
        if step % args.eval_every == 0 || step == common.steps {
            let eval_started = Instant::now();
            let train_loss = recent.iter().sum::<f64>() / recent.len() as f64;
            recent.clear();
            let val_loss = evaluate(&model.valid(), &val_batches)?;
            let val_bpc = bits_per_token(val_loss);
            state.history.push(Eval { step, train_loss, val_loss, val_bpc });
            (state.step, state.batches_drawn) = (step, step);
            guard.check_validation(step, val_loss)?;
            guard.check_before_saving(step, &model)?;
            out.save_checkpoint(&model, optimizer.to_record(), &state)?;
            guard.saved(step);
            write_curves(out.path(), &state.history)?;
            progress.say(format!("step {step:>6}  train {train_loss:.3}  val {val_loss:.3} nats/char  {val_bpc:.3} bits/char"));
            eval_time += eval_started.elapsed();
        }
        progress.step(format!("loss {loss_value:.3}"));
    }
    progress.finish();
    let train_wall = (train_started.elapsed() - eval_time).as_secs_f64();
    let model = model.valid();
    out.save_model(model.clone())?;
    let prompt = args.prompt.clone().unwrap_or_else(|| default_prompt(&vocab));
    let text = sample(&model, &vocab, &prompt, args.sample_len, args.temperature, common.seed)?;
    eprintln!("--- sample (temperature {}) ---\n{prompt}{text}\n---", args.temperature);
    let last = state.history.last().expect("at least one evaluation");
    let tokens = (common.steps + 1 - first_step) * common.batch * common.seq_len;
    checkpoint::finish(&out, &serde_json::json!({
        "train_loss": last.train_loss, "val_loss": last.val_loss, "val_bpc": last.val_bpc,
        "val_perplexity": perplexity(last.val_loss), "tokens_per_s": tokens as f64 / train_wall,
        "wall_s": started.elapsed().as_secs_f64(), "steps": common.steps, "backend": backend::NAME,
        "corpus": corpus.name(), "vocab_size": vocab.len(), "parameters": model.num_params(),
        "history": state.history,
    }))?;
    Ok(())
}

/// Mean validation loss in nats per character, over every validation window.
fn evaluate(model: &ElmanRnn<Backend>, batches: &[TokenBatch<Backend>]) -> Result<f64> {
    let (mut total, mut tokens) = (0.0, 0);
    for batch in batches {
        let loss = model.try_loss(batch.inputs.clone(), batch.targets.clone(), &UnrollOptions::new(), Reduction::Sum)?;
        total += loss.loss.into_scalar() as f64;
        tokens += batch.batch_size() * batch.seq_len();
    }
    Ok(total / tokens as f64)
}

/// `loss.csv` and `loss.svg`: the training loss (averaged since the last evaluation) and the
/// validation loss at every evaluation.
fn write_curves(out: &Path, history: &[Eval]) -> Result<()> {
    let mut curves = unfold_viz::LossHistory::new();
    for eval in history {
        curves.push_train(eval.step, eval.train_loss);
        curves.push_val(eval.step, eval.val_loss);
    }
    unfold_viz::write_loss_curves(out, &curves)?;
    Ok(())
}

/// A finished run's model and vocabulary, checked against its config.
fn load_run(from: &Path) -> Result<(ElmanRnn<Backend>, Vocab)> {
    #[derive(Deserialize)]
    struct Saved { model: ElmanRnnConfig }
    let Saved { model: config } = checkpoint::read_json(&from.join("config.json"))?;
    let vocab: Vocab = checkpoint::read_json(&from.join("vocab.json"))?;
    if config.input_size != vocab.len() || config.output_size != vocab.len() {
        let problem = format!("{} characters, but config.json's model has input {} and output {}",
            vocab.len(), config.input_size, config.output_size);
        return Err(Error::BadFile { path: from.join("vocab.json"), problem }.into());
    }
    let device = backend::open()?;
    let blank: ElmanRnn<Backend> = config.try_init(&device)?;
    Ok((checkpoint::load_model(&from.join(checkpoint::MODEL_FILE), &blank, &device)?, vocab))
}

fn default_prompt(vocab: &Vocab) -> String {
    match vocab.id('\n') {
        Some(_) => "\n".to_string(),
        None => vocab.chars()[0].to_string(),
    }
}

/// `len` characters generated after `prompt` (the state warmed on it) at `temperature`.
fn sample(model: &ElmanRnn<Backend>, vocab: &Vocab, prompt: &str, len: usize, temperature: f64, seed: u64) -> Result<String> {
    check_temperature(temperature)?;
    if len == 0 {
        return Ok(String::new());
    }
    let config = GenerateConfig::new(len).with_sampling(Sampling::Temperature(temperature)).with_seed(seed);
    let ids = generate(model, &[vocab.encode(prompt)?], &config, &Default::default())?;
    Ok(vocab.decode(&ids[0])?)
}
