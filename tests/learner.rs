//! unfold models in burn-train's `Learner`, built as a user's pipeline builds it: data loaders
//! from burn-dataset datasets and unfold's batchers, Adam, Burn's metrics, a file checkpointer.
//! A few steps on ndarray with autodiff; then the checkpoint the Learner wrote is loaded into a
//! freshly initialised model, which must give the trained model's outputs exactly.
//!
//! The multi-device strategy (`ExecutionStrategy::MultiDevice`) is run with two ndarray CPU
//! devices — both the one `NdArrayDevice::Cpu`, so two worker threads on the same CPU, which is
//! what this machine allows (no GPU) — and its update is checked against the gradient of the
//! two batches' summed losses computed directly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::backend::{Autodiff, NdArray};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::transform::{SamplerDataset, SamplerDatasetOptions};
use burn::data::dataset::{Dataset, InMemDataset};
use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamConfig, GradientsParams, SgdConfig};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::Backend as _;
use burn::tensor::{Tensor, TensorData, Tolerance};
use burn::train::metric::{
    AccuracyMetric, LossMetric, MetricDefinition, MetricId, NumericEntry, PerplexityMetric,
};
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};
use burn::train::{
    ExecutionStrategy, InferenceStep, Learner, MultiDeviceOptim, SupervisedTraining,
};
use unfold::data::dataset::{
    ClassificationBatcher, LabelledSequence, SequenceBatcher, WindowDataset,
};
use unfold::data::Corpus;
use unfold::nn::train::{forward_sequence, ClassificationBatch, SequenceBatch};
use unfold::nn::{ElmanRnn, ElmanRnnConfig, SequenceClassifier, SequenceEncoderConfig};

type Inner = NdArray;
/// Full precision: burn's `CompactRecorder` stores f16, so a reload would round the weights.
type Recorder32 = NamedMpkFileRecorder<FullPrecisionSettings>;
type B = Autodiff<Inner>;

/// Burn's ndarray RNG is global and parameters are drawn lazily: seed and draw under a lock,
/// so the tests of this binary (run in parallel) cannot take each other's numbers.
fn seeded<M: Module<B>>(seed: u64, init: impl Fn() -> M) -> M {
    static INIT: Mutex<()> = Mutex::new(());
    let _guard = INIT.lock().unwrap();
    let device = Default::default();
    B::seed(&device, seed);
    let drawn = init().into_record();
    init().load_record(drawn)
}

fn scratch(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("unfold-learner-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

/// The numeric metric values the Learner reports, per split and metric name, one per batch.
#[derive(Default, Clone)]
struct Recorded {
    names: HashMap<MetricId, String>,
    train: HashMap<String, Vec<f64>>,
    valid: HashMap<String, Vec<f64>>,
}

/// A renderer that records instead of drawing (the test output stays quiet).
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Recorded>>);

impl Recorder {
    fn push(&self, state: MetricState, valid: bool) {
        if let MetricState::Numeric(
            entry,
            NumericEntry::Aggregated {
                aggregated_value, ..
            },
        ) = state
        {
            let mut rec = self.0.lock().unwrap();
            let name = rec.names[&entry.metric_id].clone();
            let split = if valid {
                &mut rec.valid
            } else {
                &mut rec.train
            };
            split.entry(name).or_default().push(aggregated_value);
        }
    }

    fn train(&self, metric: &str) -> Vec<f64> {
        self.0
            .lock()
            .unwrap()
            .train
            .get(metric)
            .cloned()
            .unwrap_or_default()
    }

    fn valid(&self, metric: &str) -> Vec<f64> {
        self.0
            .lock()
            .unwrap()
            .valid
            .get(metric)
            .cloned()
            .unwrap_or_default()
    }
}

impl MetricsRendererTraining for Recorder {
    fn update_train(&mut self, state: MetricState) {
        self.push(state, false);
    }
    fn update_valid(&mut self, state: MetricState) {
        self.push(state, true);
    }
    fn render_train(&mut self, _: TrainingProgress, _: Vec<ProgressType>) {}
    fn render_valid(&mut self, _: TrainingProgress, _: Vec<ProgressType>) {}
}

impl MetricsRendererEvaluation for Recorder {
    fn update_test(&mut self, _: EvaluationName, _: MetricState) {}
    fn render_test(&mut self, _: EvaluationProgress, _: Vec<ProgressType>) {}
}

impl MetricsRenderer for Recorder {
    fn manual_close(&mut self) {}
    fn register_metric(&mut self, definition: MetricDefinition) {
        let mut rec = self.0.lock().unwrap();
        rec.names.insert(definition.metric_id, definition.name);
    }
}

fn corpus() -> Corpus {
    Corpus::from_text(
        "learner",
        "Now is the winter of our discontent made glorious summer by this sun of York. ".repeat(20),
    )
    .unwrap()
}

fn logits_of(model: &ElmanRnn<Inner>, batch: SequenceBatch<Inner>) -> Tensor<Inner, 3> {
    InferenceStep::step(model, batch).logits
}

/// Asserts two tensors hold the same values, bit for bit.
fn assert_identical<const D: usize>(a: Tensor<Inner, D>, b: Tensor<Inner, D>) {
    let (a, b) = (a.into_data(), b.into_data());
    assert_eq!(a.shape, b.shape);
    let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    let differ = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(differ, 0, "{differ} of {} values differ", a.len());
}

fn checkpoint_file(dir: &Path, what: &str, epoch: usize) -> PathBuf {
    dir.join("checkpoint").join(format!("{what}-{epoch}"))
}

#[test]
fn language_model_trains_in_the_learner_and_its_checkpoint_reloads_to_identical_outputs() {
    const EPOCHS: usize = 3;
    let corpus = corpus();
    let (train_ids, valid_ids) = corpus.split(0.8).unwrap();
    let vocab = corpus.vocab().len();
    let config = ElmanRnnConfig::new(vocab, 32, vocab);
    let device = Default::default();
    let model: ElmanRnn<B> = seeded(11, || config.init(&device));

    // 12 random windows of 16 characters per epoch (3 batches of 4), drawn from every window.
    let train = SamplerDataset::new(
        WindowDataset::every_offset(train_ids, 16).unwrap(),
        SamplerDatasetOptions::default()
            .with_fixed_size(12)
            .with_seed(5),
    );
    let valid = WindowDataset::non_overlapping(valid_ids, 16).unwrap();
    let batcher = SequenceBatcher::new(0);
    let train_loader = DataLoaderBuilder::new(batcher)
        .batch_size(4)
        .shuffle(3)
        .build(train);
    let valid_loader = DataLoaderBuilder::new(batcher)
        .batch_size(4)
        .build(valid.clone());

    let dir = scratch("lm");
    let recorder = Recorder::default();
    let result = SupervisedTraining::new(&dir, train_loader, valid_loader)
        .metrics((
            LossMetric::new(),
            AccuracyMetric::new(),
            PerplexityMetric::new(),
        ))
        .with_file_checkpointer(Recorder32::new())
        .with_application_logger(None)
        .renderer(recorder.clone())
        .num_epochs(EPOCHS)
        .launch(Learner::new(model, AdamConfig::new().init(), 2e-2));
    let trained: ElmanRnn<Inner> = result.model;

    // Burn's metrics saw every batch: 3 training batches and the validation batches per epoch.
    let train_loss = recorder.train("Loss");
    assert_eq!(train_loss.len(), 3 * EPOCHS);
    assert_eq!(recorder.train("Accuracy").len(), 3 * EPOCHS);
    let batches_per_valid = valid.len().div_ceil(4);
    let valid_perplexity = recorder.valid("Perplexity");
    assert_eq!(valid_perplexity.len(), batches_per_valid * EPOCHS);
    let first_epoch: f64 = train_loss[..3].iter().sum();
    let last_epoch: f64 = train_loss[3 * (EPOCHS - 1)..].iter().sum();
    assert!(
        last_epoch < first_epoch,
        "training loss did not fall: {train_loss:?}"
    );
    // Burn's perplexity (over the epoch so far) is e^(unfold's loss per token, averaged over
    // the epoch's tokens): the metric and the loss agree.
    let windows: Vec<usize> = (0..valid.len())
        .step_by(4)
        .map(|s| (valid.len() - s).min(4))
        .collect();
    let valid_loss = recorder.valid("Loss");
    for epoch in 0..EPOCHS {
        let range = epoch * batches_per_valid..(epoch + 1) * batches_per_valid;
        let nats: f64 = valid_loss[range.clone()]
            .iter()
            .zip(&windows)
            .map(|(l, &n)| l * n as f64)
            .sum();
        let expected = (nats / valid.len() as f64).exp();
        let got = valid_perplexity[range.end - 1];
        assert!(
            (expected - got).abs() < 1e-4 * got,
            "epoch {epoch}: e^loss {expected} vs perplexity {got}"
        );
    }

    // The Learner's files: metric logs and model, optimiser and scheduler checkpoints.
    assert!(dir.join("train/epoch-1/Loss.log").is_file());
    assert!(dir.join("valid/epoch-1/Perplexity.log").is_file());
    for what in ["model", "optim", "scheduler"] {
        assert!(
            checkpoint_file(&dir, what, EPOCHS)
                .with_extension("mpk")
                .is_file(),
            "no {what} checkpoint"
        );
    }

    // A fresh model (other weights) loaded from the last checkpoint computes what the trained
    // model computes.
    let fresh: ElmanRnn<Inner> = seeded(99, || config.init::<B>(&device)).valid();
    let batch = |items| Batcher::<Inner, _, _>::batch(&batcher, items, &device);
    let items: Vec<_> = valid.iter().collect();
    assert!(
        !logits_of(&fresh, batch(items.clone()))
            .equal(logits_of(&trained, batch(items.clone())))
            .all()
            .into_scalar(),
        "the fresh model must start different"
    );
    let reloaded = fresh
        .load_file(
            checkpoint_file(&dir, "model", EPOCHS),
            &Recorder32::new(),
            &device,
        )
        .unwrap();
    assert_identical(
        logits_of(&reloaded, batch(items.clone())),
        logits_of(&trained, batch(items)),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sequences of 3-8 tokens over 6 symbols, labelled by whether symbol 5 occurs.
fn contains_five(n: usize, seed: u64) -> Vec<LabelledSequence> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = rng.random_range(3..=8);
            let ids: Vec<usize> = (0..len).map(|_| rng.random_range(1..6)).collect();
            let mut ids = ids;
            let label = rng.random_bool(0.5) as usize;
            if label == 1 {
                let at = rng.random_range(0..len);
                ids[at] = 5;
            } else {
                ids.iter_mut().filter(|id| **id == 5).for_each(|id| *id = 1);
            }
            LabelledSequence { ids, label }
        })
        .collect()
}

#[test]
fn classifier_trains_in_the_learner_and_its_checkpoint_reloads_to_identical_outputs() {
    const EPOCHS: usize = 4;
    let config = SequenceEncoderConfig::new(6, 16).classifier(2);
    let device = Default::default();
    let model: SequenceClassifier<B> = seeded(12, || config.init(&device));
    let batcher = ClassificationBatcher::new(0);
    let valid_items = contains_five(64, 2);
    let train_loader = DataLoaderBuilder::new(batcher)
        .batch_size(16)
        .shuffle(4)
        .build(InMemDataset::new(contains_five(128, 1)));
    let valid_loader = DataLoaderBuilder::new(batcher)
        .batch_size(32)
        .build(InMemDataset::new(valid_items.clone()));

    let dir = scratch("classifier");
    let recorder = Recorder::default();
    let result = SupervisedTraining::new(&dir, train_loader, valid_loader)
        .metrics((LossMetric::new(), AccuracyMetric::new()))
        .with_file_checkpointer(Recorder32::new())
        .with_application_logger(None)
        .renderer(recorder.clone())
        .num_epochs(EPOCHS)
        .launch(Learner::new(model, AdamConfig::new().init(), 2e-2));
    let trained: SequenceClassifier<Inner> = result.model;

    let valid_loss = recorder.valid("Loss");
    assert_eq!(valid_loss.len(), 2 * EPOCHS);
    let (first, last) = (
        valid_loss[0] + valid_loss[1],
        valid_loss[2 * EPOCHS - 2] + valid_loss[2 * EPOCHS - 1],
    );
    assert!(last < first, "validation loss did not fall: {valid_loss:?}");
    assert_eq!(recorder.valid("Accuracy").len(), 2 * EPOCHS);

    let batch: ClassificationBatch<Inner> = batcher.batch(valid_items, &device);
    assert!(batch.lengths.is_some(), "ragged sequences carry lengths");
    let fresh: SequenceClassifier<Inner> = seeded(98, || config.init::<B>(&device)).valid();
    let reloaded = fresh
        .load_file(
            checkpoint_file(&dir, "model", EPOCHS),
            &Recorder32::new(),
            &device,
        )
        .unwrap();
    let expected = InferenceStep::step(&trained, batch.clone());
    let got = InferenceStep::step(&reloaded, batch);
    assert_identical(got.output, expected.output);
    assert_identical(got.loss, expected.loss);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every parameter of a module as one flat vector.
fn flat_params<M: Module<Inner>>(module: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl burn::module::ModuleVisitor<Inner> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<Inner, D>>) {
            self.0
                .extend(param.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    collect.0
}

#[test]
fn two_device_learner_takes_the_step_of_both_batches_summed_gradients() {
    let corpus = corpus();
    let vocab = corpus.vocab().len();
    let config = ElmanRnnConfig::new(vocab, 24, vocab);
    let device = Default::default();
    let model: ElmanRnn<B> = seeded(13, || config.init(&device));
    let start = model.valid();

    // 8 windows: the multi-device strategy splits the data loader in two halves, one per
    // device, so one epoch is one step on two batches of 4 at once.
    let windows: Vec<_> = WindowDataset::non_overlapping(corpus.ids().to_vec(), 12)
        .unwrap()
        .iter()
        .take(8)
        .collect();
    let batcher = SequenceBatcher::new(0);
    let loader = |items: Vec<_>| {
        DataLoaderBuilder::new(batcher)
            .batch_size(4)
            .build(InMemDataset::new(items))
    };
    let valid_loader = DataLoaderBuilder::new(batcher)
        .batch_size(4)
        .build(InMemDataset::new(windows[..4].to_vec()));

    let dir = scratch("multi");
    let lr = 0.1;
    let devices = vec![burn::backend::ndarray::NdArrayDevice::Cpu; 2];
    let result = SupervisedTraining::new(&dir, loader(windows.clone()), valid_loader)
        .metrics((LossMetric::new(),))
        .with_application_logger(None)
        .renderer(Recorder::default())
        .with_training_strategy(
            ExecutionStrategy::multi(devices, MultiDeviceOptim::OptimMainDevice).into(),
        )
        .num_epochs(1)
        .launch(Learner::new(model.clone(), SgdConfig::new().init(), lr));

    // The reference: one SGD step on the gradient of L(batch 1) + L(batch 2), by autodiff.
    let half = |range: std::ops::Range<usize>| {
        Batcher::<B, _, SequenceBatch<B>>::batch(&batcher, windows[range].to_vec(), &device)
    };
    let joint =
        forward_sequence(&model, half(0..4)).loss + forward_sequence(&model, half(4..8)).loss;
    let grads = GradientsParams::from_grads(joint.backward(), &model);
    let expected = burn::optim::Optimizer::step(&mut SgdConfig::new().init(), lr, model, grads);

    let (got, want, before) = (
        flat_params(&result.model),
        flat_params(&expected.valid()),
        flat_params(&start),
    );
    assert_eq!(got.len(), want.len());
    let moved = got.iter().zip(&before).filter(|(a, b)| a != b).count();
    assert!(
        moved > got.len() / 2,
        "the step moved only {moved} parameters"
    );
    let got = TensorData::new(got, [want.len()]);
    got.assert_approx_eq::<f32>(
        &TensorData::new(want, [before.len()]),
        Tolerance::absolute(1e-5),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
