//! A run interrupted, checkpointed and resumed continues from exactly the state it saved
//! (parameters, Adam moments and step count, sampler position, all bit for bit) and so
//! computes the losses of the run that was never interrupted; bad checkpoints are refused with
//! the file named.
//!
//! The losses are compared bit for bit. (unfold builds burn-ndarray without its `simd` kernels,
//! whose reductions take alignment-dependent paths: with them, two uninterrupted runs already
//! differ in the last bit after a few steps.)

use burn::backend::{Autodiff, NdArray};
use burn::module::Module;
use burn::optim::{adaptor::OptimizerAdaptor, Adam, AdamConfig, GradientsParams, Optimizer};
use unfold::data::{Corpus, TokenBatch, WindowSampler};
use unfold::nn::checkpoint::{LoopState, RunDir, CHECKPOINT_DIR, CHECKPOINT_MODEL_FILE};
use unfold::nn::clip::clip_global_norm;
use unfold::nn::{
    sequence_nll, ElmanRnn, ElmanRnnConfig, Error, Reduction, SequenceModel, UnrollOptions,
};

type B = Autodiff<NdArray>;
type Model = ElmanRnn<B>;
type Adaptor = OptimizerAdaptor<Adam, Model, B>;

const SEED: u64 = 7;
const STEPS: usize = 16;

fn corpus() -> Corpus {
    Corpus::from_text(
        "resume",
        "Now is the winter of our discontent made glorious summer. ".repeat(30),
    )
    .unwrap()
}

fn fresh(hidden: usize) -> (Model, Adaptor, WindowSampler, ElmanRnnConfig) {
    let corpus = corpus();
    let vocab = corpus.vocab().len();
    let config = ElmanRnnConfig::new(vocab, hidden, vocab);
    let device = Default::default();
    // Burn's ndarray RNG is global and parameters are drawn lazily, on first use: seed and draw
    // under a lock, so the other test of this binary cannot take numbers in between.
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let model = {
        let _guard = INIT.lock().unwrap();
        <B as burn::tensor::backend::Backend>::seed(&device, SEED);
        let drawn = config.init::<B>(&device).into_record();
        config.init(&device).load_record(drawn)
    };
    let sampler = WindowSampler::new(corpus.ids().to_vec(), 4, 12, SEED).unwrap();
    (model, AdamConfig::new().init(), sampler, config)
}

/// `steps` optimiser steps with global-norm clipping; returns the losses.
fn train(
    mut model: Model,
    optimizer: &mut Adaptor,
    sampler: &mut WindowSampler,
    steps: usize,
) -> (Model, Vec<f32>) {
    let device = Default::default();
    let mut losses = Vec::new();
    for _ in 0..steps {
        let TokenBatch { inputs, targets } = sampler.next_batch::<B>(&device);
        let out = model.forward(inputs, &UnrollOptions::new());
        let loss = sequence_nll(out.logits, targets, None, Reduction::MeanPerToken);
        losses.push(loss.clone().into_scalar());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let (grads, _) = clip_global_norm(&model, grads, 1.0).unwrap();
        model = optimizer.step(3e-2, model, grads);
    }
    (model, losses)
}

fn scratch(name: &str) -> RunDir {
    let path = std::env::temp_dir().join(format!("unfold-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    RunDir::create(path).unwrap()
}

#[test]
fn resumed_run_restores_the_exact_state_and_reproduces_the_losses() {
    let (model, mut optimizer, mut sampler, _) = fresh(24);
    let (_, straight) = train(model, &mut optimizer, &mut sampler, STEPS);

    let dir = scratch("exact");
    let (model, mut optimizer, mut sampler, config) = fresh(24);
    let (model, mut first) = train(model, &mut optimizer, &mut sampler, STEPS / 2);
    let state = LoopState {
        step: STEPS / 2,
        batches_drawn: STEPS / 2,
        model_config: serde_json::to_value(&config).unwrap(),
        history: first.clone(),
    };
    dir.save_checkpoint(&model, optimizer.to_record(), &state)
        .unwrap();
    let next_batch = sampler.clone().next_windows();
    let saved_model = model.clone();
    drop((model, optimizer, sampler));

    // A new process: fresh (differently initialised) objects, then the checkpoint.
    let (blank, optimizer, _, _) = fresh(24);
    let device = Default::default();
    let checkpoint = dir
        .load_checkpoint::<B, Model, _, LoopState<Vec<f32>>>(&blank, &device)
        .unwrap();
    assert_eq!(checkpoint.state, state);
    let bits = |m: &Model| {
        [m.cell().u.val(), m.cell().w.val(), m.readout.v.val()]
            .map(|t| t.into_data().to_vec::<f32>().unwrap())
    };
    assert_eq!(bits(&checkpoint.model), bits(&saved_model));
    assert_ne!(bits(&blank), bits(&saved_model));
    let mut optimizer = optimizer.load_record(checkpoint.optimizer);
    // Saved again, the loaded state writes the very same model and state bytes. The optimizer
    // record is a hash map keyed by parameter id, serialised in hash order, so its bytes are
    // compared as sorted multisets (same entries, any order).
    let again = scratch("again");
    again
        .save_checkpoint(&checkpoint.model, optimizer.to_record(), &checkpoint.state)
        .unwrap();
    let bytes = |dir: &RunDir, file: &str| {
        std::fs::read(dir.path().join(CHECKPOINT_DIR).join(file)).unwrap()
    };
    for file in ["model.mpk", "state.json"] {
        assert!(
            bytes(&again, file) == bytes(&dir, file),
            "{file} differs after a load and save"
        );
    }
    let sorted = |mut v: Vec<u8>| {
        v.sort_unstable();
        v
    };
    assert!(
        sorted(bytes(&again, "optimizer.mpk")) == sorted(bytes(&dir, "optimizer.mpk")),
        "optimizer.mpk differs after a load and save"
    );
    let _ = std::fs::remove_dir_all(again.path());
    let mut sampler = WindowSampler::new(corpus().ids().to_vec(), 4, 12, SEED).unwrap();
    for _ in 0..checkpoint.state.batches_drawn {
        sampler.next_windows();
    }
    assert_eq!(sampler.clone().next_windows(), next_batch);
    let (_, second) = train(checkpoint.model, &mut optimizer, &mut sampler, STEPS / 2);
    first.extend(second);
    for (step, (resumed, uninterrupted)) in first.iter().zip(&straight).enumerate() {
        assert!(
            resumed.to_bits() == uninterrupted.to_bits(),
            "step {step}: resumed {resumed} vs uninterrupted {uninterrupted}"
        );
    }
    // The losses moved: the comparison is not between constants.
    assert!(straight[STEPS - 1] < straight[0] - 0.5, "{straight:?}");
    let _ = std::fs::remove_dir_all(dir.path());
}

#[test]
fn bad_checkpoints_are_named_errors_and_leave_the_files_alone() {
    let dir = scratch("bad");
    let (model, optimizer, _, config) = fresh(8);
    let state = LoopState {
        step: 0,
        batches_drawn: 0,
        model_config: serde_json::to_value(&config).unwrap(),
        history: (),
    };
    dir.save_checkpoint(&model, optimizer.to_record(), &state)
        .unwrap();
    let device = Default::default();
    let model_file = dir.path().join(CHECKPOINT_DIR).join(CHECKPOINT_MODEL_FILE);
    let load = |model: &Model| {
        dir.load_checkpoint::<B, Model, <Adaptor as Optimizer<Model, B>>::Record, LoopState<()>>(
            model, &device,
        )
        .map(|_| ()) // the optimizer record has no `Debug`
    };
    assert!(load(&model).is_ok());

    // Another model's checkpoint: same names, other shapes.
    let (bigger, _, _, _) = fresh(9);
    match load(&bigger) {
        Err(Error::BadFile { path, problem }) => {
            assert_eq!(path, model_file);
            assert!(problem.contains("shape"), "{problem}");
        }
        other => panic!("expected BadFile, got {other:?}"),
    }

    // Truncated model record.
    let whole = std::fs::read(&model_file).unwrap();
    std::fs::write(&model_file, &whole[..whole.len() / 2]).unwrap();
    let snapshot = std::fs::read(&model_file).unwrap();
    let err = load(&model).unwrap_err();
    assert!(
        matches!(&err, Error::BadFile { path, .. } if *path == model_file),
        "{err}"
    );
    assert!(err.to_string().contains("model.mpk"), "{err}");
    assert_eq!(std::fs::read(&model_file).unwrap(), snapshot);

    // Garbage state file.
    std::fs::write(&model_file, &whole).unwrap();
    let state_file = dir.path().join(CHECKPOINT_DIR).join("state.json");
    std::fs::write(&state_file, b"{\"step\": ").unwrap();
    let err = load(&model).unwrap_err().to_string();
    assert!(err.contains("state.json"), "{err}");

    // No checkpoint at all.
    let empty = scratch("empty");
    let err = empty
        .load_checkpoint::<B, Model, <Adaptor as Optimizer<Model, B>>::Record, LoopState<()>>(
            &model, &device,
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no checkpoint"), "{err}");
    let _ = std::fs::remove_dir_all(dir.path());
    let _ = std::fs::remove_dir_all(empty.path());
}
