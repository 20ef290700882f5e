//! Nothing saved is ever lost: a training run killed with SIGKILL at random moments — most of
//! them in the middle of writing a checkpoint, since the tiny model below saves after every
//! step — 20 times over, each time resumed from what it left behind. After every kill the
//! output directory holds a checkpoint that loads, no older than the one before, and the run
//! that was killed 20 times ends with exactly the parameters and losses of a run that never was.
//!
//! The training run is this test binary itself, started again as a child process that runs
//! only [`child_process_trains_and_checkpoints_until_killed`] (selected by name, and told where
//! to write by an environment variable), through the same `RunDir::save_checkpoint` /
//! `load_checkpoint` code the examples use.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use burn::backend::{Autodiff, NdArray};
use burn::module::Module;
use burn::optim::{adaptor::OptimizerAdaptor, Adam, AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend as _;
use rand::{Rng, SeedableRng};
use unfold::data::{Corpus, TokenBatch, WindowSampler};
use unfold::nn::checkpoint::{LoopState, NonFiniteGuard, RunDir};
use unfold::nn::{sequence_nll, ElmanRnn, ElmanRnnConfig, Reduction, SequenceModel, UnrollOptions};

type B = Autodiff<NdArray>;
type Model = ElmanRnn<B>;
type Adaptor = OptimizerAdaptor<Adam, Model, B>;
/// The loop's state: the loss of every step so far.
type State = LoopState<Vec<f32>>;

/// Where the child process trains; set only in the child.
const CHILD_DIR: &str = "UNFOLD_KILL_RESUME_DIR";
/// The child's name, to run it alone.
const CHILD: &str = "child_process_trains_and_checkpoints_until_killed";
const SEED: u64 = 11;
const KILLS: usize = 20;
/// More steps than a child gets through before it is killed.
const MAX_STEPS: usize = 100_000;

fn device() -> burn::backend::ndarray::NdArrayDevice {
    Default::default()
}

fn config() -> ElmanRnnConfig {
    let vocab = corpus().vocab().len();
    ElmanRnnConfig::new(vocab, 8, vocab)
}

fn corpus() -> Corpus {
    Corpus::from_text(
        "kill",
        "It is a tale told by an idiot, full of sound and fury, signifying nothing. ".repeat(8),
    )
    .unwrap()
}

/// A fresh run: seeded parameters, Adam, seeded sampler, step 0.
fn fresh() -> (Model, Adaptor, WindowSampler, State) {
    // NdArray's RNG is global and parameters are drawn lazily: draw them here, once.
    B::seed(&device(), SEED);
    let drawn = config().init::<B>(&device()).into_record();
    let model = config().init(&device()).load_record(drawn);
    let sampler = WindowSampler::new(corpus().ids().to_vec(), 2, 8, SEED).unwrap();
    let state = State {
        step: 0,
        batches_drawn: 0,
        model_config: serde_json::to_value(config()).unwrap(),
        history: Vec::new(),
    };
    (model, AdamConfig::new().init(), sampler, state)
}

/// The run in `dir`: resumed from its checkpoint if there is one, else fresh.
fn resume(dir: &RunDir) -> (Model, Adaptor, WindowSampler, State) {
    let (model, optimizer, mut sampler, state) = fresh();
    if dir.checkpoint_path().is_none() {
        return (model, optimizer, sampler, state);
    }
    let checkpoint = dir
        .load_checkpoint::<B, _, _, State>(&model, &device())
        .unwrap_or_else(|e| panic!("the checkpoint left behind does not load: {e}"));
    assert_eq!(checkpoint.state.model_config, state.model_config);
    // The sampler is seeded: replaying its draws puts it where the saved run left it.
    for _ in 0..checkpoint.state.batches_drawn {
        sampler.next_windows();
    }
    (
        checkpoint.model,
        optimizer.load_record(checkpoint.optimizer),
        sampler,
        checkpoint.state,
    )
}

/// Trains until `state.step == until`, saving a checkpoint after every step when `dir` is
/// given (as the examples do at every evaluation, with the same guard).
fn train(
    run: (Model, Adaptor, WindowSampler, State),
    until: usize,
    dir: Option<&RunDir>,
) -> (Model, State) {
    let (mut model, mut optimizer, mut sampler, mut state) = run;
    let mut guard = NonFiniteGuard::new(false);
    while state.step < until {
        let TokenBatch { inputs, targets } = sampler.next_batch::<B>(&device());
        let output = model.forward(inputs, &UnrollOptions::new());
        let loss = sequence_nll(output.logits, targets, None, Reduction::MeanPerToken);
        let value = loss.clone().into_scalar();
        state.step += 1;
        state.batches_drawn += 1;
        assert!(guard.check_loss(state.step, value as f64).unwrap());
        state.history.push(value);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-2, model, grads);
        if let Some(dir) = dir {
            guard.check_before_saving(state.step, &model).unwrap();
            dir.save_checkpoint(&model, optimizer.to_record(), &state)
                .unwrap();
            guard.saved(state.step);
        }
    }
    (model, state)
}

/// Runs only in the child process (the parent starts it with [`CHILD_DIR`] set): trains in
/// that directory, resuming what is there, until it is killed.
#[test]
fn child_process_trains_and_checkpoints_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return; // an ordinary test run: nothing to do
    };
    let dir = RunDir::create(PathBuf::from(dir)).unwrap();
    let run = resume(&dir);
    train(run, MAX_STEPS, Some(&dir));
}

fn scratch() -> PathBuf {
    let path = std::env::temp_dir().join(format!("unfold-kill-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

/// The step of the checkpoint in `dir`, loading all of it; `None` if there is none yet.
fn saved_step(dir: &Path) -> Option<usize> {
    let dir = RunDir::create(dir).unwrap();
    dir.checkpoint_path()?;
    let (model, ..) = fresh();
    let checkpoint = dir
        .load_checkpoint::<B, _, <Adaptor as Optimizer<Model, B>>::Record, State>(&model, &device())
        .unwrap_or_else(|e| panic!("after a kill the checkpoint does not load: {e}"));
    assert_eq!(checkpoint.state.history.len(), checkpoint.state.step);
    Some(checkpoint.state.step)
}

#[test]
fn twenty_kills_lose_nothing_and_the_resumed_run_equals_an_uninterrupted_one() {
    let path = scratch();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
    let mut last_step = 0;
    let mut mid_save = 0;
    let mut patience = 0;
    let started = Instant::now();
    for kill in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([CHILD, "--exact", "--test-threads=1"])
            .env(CHILD_DIR, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Long enough, on most rounds, to get past start-up and resuming into the saves; longer
        // after a round that made no progress (a slow, loaded machine).
        std::thread::sleep(Duration::from_millis(rng.random_range(20..250) + patience));
        let status = child.try_wait().unwrap();
        assert!(
            status.is_none(),
            "round {kill}: the child ended by itself ({status:?}): it failed to resume"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if path.join(".checkpoint.partial").exists() {
            mid_save += 1; // killed while a checkpoint was being written
        }
        let step = saved_step(&path).unwrap_or(0);
        if step == last_step {
            patience += 200;
        }
        assert!(
            step >= last_step,
            "round {kill}: the checkpoint went back from step {last_step} to {step}"
        );
        last_step = step;
    }
    eprintln!(
        "{KILLS} kills in {:.1} s, {mid_save} of them while a checkpoint was being written; \
         the run reached step {last_step}",
        started.elapsed().as_secs_f64()
    );
    assert!(last_step > 0, "no child ever saved a checkpoint");

    // Resume once more, in this process, for two steps: the run goes on from where it was.
    let dir = RunDir::create(&path).unwrap();
    let (resumed, state) = train(resume(&dir), last_step + 2, Some(&dir));
    assert_eq!(saved_step(&path), Some(last_step + 2));

    // And it is the run that was never interrupted, bit for bit.
    let (uninterrupted, reference) = train(fresh(), last_step + 2, None);
    assert_eq!(state.history, reference.history, "losses differ");
    assert_eq!(
        resumed.cell().w.val().into_data(),
        uninterrupted.cell().w.val().into_data()
    );
    assert_eq!(
        resumed.readout.v.val().into_data(),
        uninterrupted.readout.v.val().into_data()
    );
    std::fs::remove_dir_all(&path).unwrap();
}
