//! Character-level language model: the hidden-to-hidden RNN trained on text.
//!
//! ```text
//! cargo run --release --example char_lm                      # built-in tiny-shakespeare
//! cargo run --release --example char_lm -- --corpus my.txt --steps 500 --out runs/mine
//! cargo run --release --example char_lm -- --steps 6000 --resume   # continue runs/char_lm
//! cargo run --release --example char_lm -- sample --from runs/char_lm --prompt "ROMEO:"
//! ```
//!
//! Gradients are clipped to a global norm of `--clip` (5 by default, 0 turns it off). A
//! checkpoint (model, Adam state, step, sampler position) is written atomically to
//! `OUT/checkpoint/` at every evaluation; `--resume` continues from it up to `--steps`.
//!
//! Trains `h(t) = tanh(b + W h(t-1) + U x(t))`, `o(t) = c + V h(t)` to predict each next
//! character (loss `Σ_t -log p(y(t) | x(1..t))`, by BPTT over `--seq-len` steps), reports the
//! validation loss in nats and bits per character, writes `config.json`, `model.mpk`,
//! `vocab.json` and `metrics.json` to `--out`, prints a sample, and ends with one JSON line.
//!
//! The loop is written out rather than run through burn-train's `Learner` so that it reads as
//! the textbook algorithm in one screen; the Learner integration is its own piece of work.

use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend as _;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use unfold::backend::{self, Backend, TrainBackend};
use unfold::cli::{self, CommonArgs, Defaults};
use unfold::data::{sequential_batches, Corpus, TokenBatch, Vocab, WindowSampler};
use unfold::nn::clip::clip_global_norm;
use unfold::nn::{
    bits_per_token, perplexity, sample, ElmanRnn, ElmanRnnConfig, Reduction, Result, UnrollOptions,
};
use unfold::output::{self, LoopState, RunDir};
use unfold::viz::{write_loss_curves, LossHistory};

/// Train a character-level hidden-to-hidden RNN language model.
#[derive(Parser, Debug, Serialize)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Evaluate on the validation split every this many steps.
    #[arg(long, default_value_t = 250)]
    eval_every: usize,
    /// Characters to generate at the end.
    #[arg(long, default_value_t = 400)]
    sample_len: usize,
    /// Sampling temperature (> 0; lower is more conservative).
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    /// Text to warm the state on before sampling (default: a newline, else the corpus's first character).
    #[arg(long)]
    prompt: Option<String>,
    /// Clip the gradient to this global norm over all parameters (0: no clipping).
    #[arg(long, default_value_t = 5.0)]
    clip: f64,
    /// Continue the run saved in --out (its checkpoint/) up to --steps.
    #[arg(long)]
    resume: bool,
    /// Skip a step whose loss is NaN or infinite instead of stopping (the default stops, keeping
    /// the last checkpoint).
    #[arg(long)]
    skip_nonfinite: bool,
    #[command(subcommand)]
    #[serde(skip)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Sample from a trained model without training: loads config.json, vocab.json and
    /// model.mpk from --from.
    Sample {
        /// The output directory of a finished run.
        #[arg(long, value_name = "DIR")]
        from: std::path::PathBuf,
        /// Text to warm the state on (default: a newline).
        #[arg(long)]
        prompt: Option<String>,
        /// Characters to generate.
        #[arg(long, default_value_t = 400)]
        len: usize,
        /// Sampling temperature (> 0).
        #[arg(long, default_value_t = 0.8)]
        temperature: f64,
        /// Sampling seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

const DEFAULTS: Defaults = Defaults {
    hidden: 256,
    seq_len: 64,
    batch: 32,
    steps: 5000,
    lr: 2e-3,
    out: "runs/char_lm",
};

/// A validation measurement.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct Eval {
    step: usize,
    train_loss: f64,
    val_loss: f64,
    val_bpc: f64,
}

/// `metrics.json`, also printed as the last line.
#[derive(Debug, Serialize)]
struct Metrics {
    train_loss: f64,
    val_loss: f64,
    val_bpc: f64,
    val_perplexity: f64,
    tokens_per_s: f64,
    wall_s: f64,
    steps: usize,
    backend: &'static str,
    corpus: String,
    vocab_size: usize,
    parameters: usize,
    history: Vec<Eval>,
}

fn main() {
    let args: Args = cli::parse(&DEFAULTS);
    let result = match &args.command {
        Some(Command::Sample {
            from,
            prompt,
            len,
            temperature,
            seed,
        }) => sample_saved(from, prompt.as_deref(), *len, *temperature, *seed),
        None => run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let common = &args.common;
    check_args(&args)?;
    let out = RunDir::create(&common.out)?;
    let corpus = match &common.corpus {
        Some(path) => Corpus::from_file(path)?,
        None => Corpus::tiny_shakespeare(),
    };
    let vocab = corpus.vocab().clone();
    let (train_ids, val_ids) = corpus.split(0.9)?;
    let device = backend::open()?;
    TrainBackend::seed(&device, common.seed);

    let config = ElmanRnnConfig::new(vocab.len(), common.hidden, vocab.len());
    let mut model: ElmanRnn<TrainBackend> = config.try_init(&device)?;
    let mut optimizer = AdamConfig::new().init();
    let mut sampler = WindowSampler::new(train_ids, common.batch, common.seq_len, common.seed)?;
    let model_config = serde_json::to_value(&config).expect("config serialises");
    let mut first_step = 1;
    let mut history = Vec::new();
    if args.resume {
        let checkpoint =
            out.load_checkpoint::<TrainBackend, _, _, LoopState<Vec<Eval>>>(&model, &device)?;
        let state = checkpoint.state;
        if state.model_config != model_config {
            return Err(unfold::nn::Error::BadFile {
                path: out.path().join(output::CHECKPOINT_DIR).join(output::CHECKPOINT_STATE_FILE),
                problem: format!(
                    "saved for model {}, but the flags give {} (resume with the same --hidden and corpus)",
                    state.model_config, model_config
                ),
            });
        }
        model = checkpoint.model;
        optimizer = optimizer.load_record(checkpoint.optimizer);
        // The sampler is seeded: replaying its draws puts it where the saved run left it.
        for _ in 0..state.batches_drawn {
            sampler.next_windows();
        }
        first_step = state.step + 1;
        history = state.history;
        eprintln!(
            "char_lm: resuming at step {first_step} from {}",
            out.path().display()
        );
    }
    let val_batches = sequential_batches::<Backend>(&val_ids, 256, common.seq_len, &device)?;
    out.write_json(
        "config.json",
        &serde_json::json!({ "model": config, "args": args }),
    )?;
    out.write_json("vocab.json", &vocab)?;
    eprintln!(
        "char_lm: {} ({} chars, vocabulary {}), {} parameters, backend {}",
        corpus.name(),
        corpus.num_tokens(),
        vocab.len(),
        model.num_params(),
        backend::NAME
    );

    let progress = ProgressBar::new(common.steps as u64).with_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    let mut recent = Vec::new(); // losses since the last evaluation
    let mut train_loss = f64::NAN;
    let mut eval_time = std::time::Duration::ZERO; // kept out of the training throughput
    let train_started = Instant::now();
    progress.set_position(first_step as u64 - 1);
    let mut guard = output::NonFiniteGuard::new(args.skip_nonfinite);
    if first_step > 1 {
        guard.saved(first_step - 1); // the checkpoint resumed from
    }
    for step in first_step..=common.steps {
        let TokenBatch { inputs, targets } = sampler.next_batch::<TrainBackend>(&device);
        // Readout, log-softmax and NLL as one fused operation (the logits never materialise).
        let loss = model
            .try_loss(
                inputs,
                targets,
                &UnrollOptions::new(),
                Reduction::MeanPerToken,
            )?
            .loss;
        let loss_value = loss.clone().into_scalar() as f64;
        // Stops before the step is applied (nothing saved after it), or skips it.
        if guard
            .check_loss(step, loss_value)
            .inspect_err(|_| progress.abandon())?
        {
            recent.push(loss_value);
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            if args.clip > 0.0 {
                grads = clip_global_norm(&model, grads, args.clip)?.0;
            }
            model = optimizer.step(common.lr, model, grads);
        }

        if step % args.eval_every == 0 || step == common.steps {
            train_loss = recent.iter().sum::<f64>() / recent.len() as f64;
            recent.clear();
            let eval_started = Instant::now();
            let val_loss = evaluate(&model.valid(), &val_batches)?;
            history.push(Eval {
                step,
                train_loss,
                val_loss,
                val_bpc: bits_per_token(val_loss),
            });
            let state = LoopState {
                step,
                batches_drawn: step,
                model_config: model_config.clone(),
                history: history.clone(),
            };
            guard.check_validation(step, val_loss)?;
            guard.check_before_saving(step, &model)?;
            out.save_checkpoint(&model, optimizer.to_record(), &state)?;
            guard.saved(step);
            write_curves(&out, &history)?;
            eval_time += eval_started.elapsed();
            let line = format!("step {step:>6}  train {train_loss:.3}  val {val_loss:.3} nats/char  {:.3} bits/char", bits_per_token(val_loss));
            // A hidden bar (output not a terminal) drops its printlns; say it on stderr then.
            if progress.is_hidden() {
                eprintln!("{line}");
            } else {
                progress.println(line);
            }
        }
        progress.set_message(format!("loss {loss_value:.3}"));
        progress.inc(1);
    }
    progress.finish_and_clear();
    let train_wall = (train_started.elapsed() - eval_time).as_secs_f64();

    let model = model.valid();
    out.save_model(model.clone())?;
    let prompt = args
        .prompt
        .clone()
        .unwrap_or_else(|| default_prompt(&vocab));
    let text = sample_text(
        &model,
        &vocab,
        &prompt,
        args.sample_len,
        args.temperature,
        common.seed,
        &device,
    )?;
    eprintln!(
        "--- sample (temperature {}) ---\n{prompt}{text}\n---",
        args.temperature
    );

    let last = history.last().expect("at least one evaluation").clone();
    let metrics = Metrics {
        train_loss,
        val_loss: last.val_loss,
        val_bpc: last.val_bpc,
        val_perplexity: perplexity(last.val_loss),
        tokens_per_s: ((common.steps + 1 - first_step) * common.batch * common.seq_len) as f64
            / train_wall,
        wall_s: started.elapsed().as_secs_f64(),
        steps: common.steps,
        backend: backend::NAME,
        corpus: corpus.name().to_string(),
        vocab_size: vocab.len(),
        parameters: model.num_params(),
        history,
    };
    unfold::output::finish(&out, &metrics)
}

/// Flags that clap accepts but training cannot use.
fn check_args(args: &Args) -> Result<()> {
    use unfold::nn::Error;
    let common = &args.common;
    common.validate(&[("--eval-every", args.eval_every)])?;
    if !(args.clip >= 0.0 && args.clip.is_finite()) {
        return Err(Error::config(
            "--clip",
            args.clip,
            "must be a finite number >= 0 (0 turns clipping off)",
        ));
    }
    sample::check_temperature(args.temperature)
}

/// `loss.csv` and `loss.svg` in the output directory: the training loss (averaged since the
/// previous evaluation) and the validation loss at every evaluation.
fn write_curves(out: &RunDir, history: &[Eval]) -> Result<()> {
    let mut curves = LossHistory::new();
    for eval in history {
        curves.push_train(eval.step, eval.train_loss);
        curves.push_val(eval.step, eval.val_loss);
    }
    write_loss_curves(out.path(), &curves).map(|_| ())
}

/// Mean validation loss in nats per character, over every validation window.
fn evaluate(model: &ElmanRnn<Backend>, batches: &[TokenBatch<Backend>]) -> Result<f64> {
    let mut total = 0.0;
    let mut tokens = 0;
    for batch in batches {
        let loss = model.try_loss(
            batch.inputs.clone(),
            batch.targets.clone(),
            &UnrollOptions::new(),
            Reduction::Sum,
        )?;
        total += loss.loss.into_scalar() as f64;
        tokens += batch.batch_size() * batch.seq_len();
    }
    Ok(total / tokens as f64)
}

/// `char_lm sample --from DIR`: the saved model, its vocabulary and config, no training.
fn sample_saved(
    from: &std::path::Path,
    prompt: Option<&str>,
    len: usize,
    temperature: f64,
    seed: u64,
) -> Result<()> {
    sample::check_temperature(temperature)?;
    #[derive(serde::Deserialize)]
    struct Saved {
        model: ElmanRnnConfig,
    }
    let Saved { model: config } = output::read_json(&from.join("config.json"))?;
    let vocab: Vocab = output::read_json(&from.join("vocab.json"))?;
    if config.input_size != vocab.len() || config.output_size != vocab.len() {
        return Err(unfold::nn::Error::BadFile {
            path: from.join("vocab.json"),
            problem: format!(
                "{} characters, but config.json's model has input {} and output {}",
                vocab.len(),
                config.input_size,
                config.output_size
            ),
        });
    }
    let device = backend::open()?;
    let blank: ElmanRnn<Backend> = config.try_init(&device)?;
    let model = output::load_model(&from.join(output::MODEL_FILE), &blank, &device)?;
    let prompt = prompt.map_or_else(|| default_prompt(&vocab), str::to_string);
    let text = sample_text(&model, &vocab, &prompt, len, temperature, seed, &device)?;
    println!("{prompt}{text}");
    Ok(())
}

fn default_prompt(vocab: &Vocab) -> String {
    match vocab.id('\n') {
        Some(_) => "\n".to_string(),
        None => vocab.chars()[0].to_string(),
    }
}

fn sample_text(
    model: &ElmanRnn<Backend>,
    vocab: &Vocab,
    prompt: &str,
    len: usize,
    temperature: f64,
    seed: u64,
    device: &backend::Device,
) -> Result<String> {
    let prompt_ids = vocab.encode(prompt)?;
    if len == 0 {
        return Ok(String::new()); // --sample-len 0: no sample
    }
    let config = sample::GenerateConfig::new(len)
        .with_sampling(sample::Sampling::Temperature(temperature))
        .with_seed(seed);
    let ids = sample::generate(model, &[prompt_ids], &config, device)?;
    vocab.decode(&ids[0])
}
