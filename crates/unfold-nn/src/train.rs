//! burn-train integration: every model trains with Burn's `Learner` as a burn-nn module does.
//!
//! Feature `train`. Each model implements burn-train's [`TrainStep`] (forward, loss, backward,
//! on an `AutodiffBackend`) and [`InferenceStep`] (forward and loss, for validation), and
//! returns burn-train's output types so Burn's own metrics read them:
//!
//! | model | batch | output | metrics that work |
//! |---|---|---|---|
//! | [`ElmanRnn`] (hidden-to-hidden LM) | [`SequenceBatch`] | [`SequenceOutput`] | loss, accuracy, top-k accuracy, perplexity (CER/WER too) |
//! | [`JordanRnn`], [`ElmanJordanRnn`] (output-to-hidden, teacher forced) | [`SequenceBatch`] | [`SequenceOutput`] | the same |
//! | [`SequenceClassifier`] (one output at the end) | [`ClassificationBatch`] | [`ClassificationOutput`] | loss, accuracy, top-k accuracy, AUROC, precision, recall, F-beta, perplexity |
//! | [`SequenceRegressor`] (the classifier's regression head) | [`RegressionBatch`] | [`RegressionOutput`] | loss |
//!
//! The losses are unfold's own: the sequence models' loss is [`sequence_nll`] in nats per
//! valid token (padding past each sequence's `lengths` contributes nothing), the classifier's
//! [`classification_nll`], the regressor's [`mean_squared_error`]. Burn's accuracy and
//! perplexity metrics read the logits and targets of every position: for padded sequence
//! batches give the padding a target id of its own and set the metrics' `with_pad_token` to it
//! (the batchers in `unfold-data` take the padding id as an argument).
//!
//! Like `forward`, [`TrainStep::step`] cannot return an error: a bad batch panics with the
//! message of the corresponding `try_forward_*` method (which returns the [`Error`](crate::Error)).
//!
//! ```no_run
//! # use burn::backend::{Autodiff, NdArray};
//! use burn::data::dataloader::DataLoaderBuilder;
//! use burn::optim::AdamConfig;
//! use burn::train::metric::{AccuracyMetric, LossMetric, PerplexityMetric};
//! use burn::train::{Learner, SupervisedTraining};
//! # fn run<D, V>(train: D, valid: V, batcher: impl Clone + Send + Sync + 'static
//! #     + burn::data::dataloader::batcher::Batcher<Autodiff<NdArray>, (), unfold_nn::train::SequenceBatch<Autodiff<NdArray>>>
//! #     + burn::data::dataloader::batcher::Batcher<NdArray, (), unfold_nn::train::SequenceBatch<NdArray>>)
//! # where D: burn::data::dataset::Dataset<()> + 'static, V: burn::data::dataset::Dataset<()> + 'static {
//! # type B = Autodiff<NdArray>;
//! # let device = Default::default();
//! let model = unfold_nn::ElmanRnnConfig::new(65, 256, 65).init::<B>(&device);
//! let train = DataLoaderBuilder::new(batcher.clone()).batch_size(32).shuffle(42).build(train);
//! let valid = DataLoaderBuilder::new(batcher).batch_size(32).build(valid);
//! let result = SupervisedTraining::new("runs/lm", train, valid)
//!     .metrics((LossMetric::new(), AccuracyMetric::new(), PerplexityMetric::new()))
//!     .with_file_checkpointer(burn::record::CompactRecorder::new())
//!     .num_epochs(10)
//!     .launch(Learner::new(model, AdamConfig::new().init(), 2e-3));
//! let trained = result.model; // the inference model (no autodiff)
//! # }
//! ```

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{
    ClassificationOutput, InferenceStep, RegressionOutput, SequenceOutput, TrainOutput, TrainStep,
};

use crate::classifier::{try_classification_nll, try_mean_squared_error, SequenceClassifier};
use crate::elman::ElmanCell;
use crate::error::Result;
use crate::feedback::OutputFeedbackRnn;
use crate::loss::{try_sequence_nll, Reduction};
use crate::model::SequenceModel;
use crate::recurrence::{Recurrence, SequenceInput, UnrollOptions};
use crate::rnn::StackedRnn;

#[cfg(doc)]
use crate::{
    classifier::classification_nll, classifier::mean_squared_error, loss::sequence_nll, ElmanRnn,
};

/// A batch for the sequence models: inputs, next-step targets and optional lengths.
#[derive(Debug, Clone)]
pub struct SequenceBatch<B: Backend> {
    /// `x(t)`: token ids `[batch, time]` or dense features `[batch, time, input_size]`.
    pub inputs: SequenceInput<B>,
    /// `y(t)`: target ids `[batch, time]` in `0..output_size`.
    pub targets: Tensor<B, 2, Int>,
    /// Valid steps per sequence (`1..=time`); `None` when every sequence fills the batch.
    pub lengths: Option<Vec<usize>>,
}

/// A batch for [`SequenceClassifier`]: inputs, one class per sequence, optional lengths.
#[derive(Debug, Clone)]
pub struct ClassificationBatch<B: Backend> {
    /// `x(1..τ)`: token ids `[batch, time]` or dense features `[batch, time, input_size]`.
    pub inputs: SequenceInput<B>,
    /// `y`: the class of each sequence, `[batch]`, in `0..output_size`.
    pub targets: Tensor<B, 1, Int>,
    /// Valid steps per sequence (`1..=time`); `None` when every sequence fills the batch.
    pub lengths: Option<Vec<usize>>,
}

/// A batch for [`SequenceRegressor`]: inputs, one target vector per sequence, optional lengths.
#[derive(Debug, Clone)]
pub struct RegressionBatch<B: Backend> {
    /// `x(1..τ)`: token ids `[batch, time]` or dense features `[batch, time, input_size]`.
    pub inputs: SequenceInput<B>,
    /// `y`: the targets, `[batch, output_size]`.
    pub targets: Tensor<B, 2>,
    /// Valid steps per sequence (`1..=time`); `None` when every sequence fills the batch.
    pub lengths: Option<Vec<usize>>,
}

fn unwrap_or_panic<T>(result: Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

impl<B: Backend> SequenceBatch<B> {
    /// The options of this batch: its lengths, and its targets as the teacher of a model that
    /// feeds its outputs back (teacher forcing).
    fn options(&self) -> UnrollOptions<B> {
        let options = UnrollOptions::new().teacher_forced(self.targets.clone());
        match &self.lengths {
            Some(lengths) => options.with_lengths(lengths.clone()),
            None => options,
        }
    }

    fn options_without_teacher(lengths: &Option<Vec<usize>>) -> UnrollOptions<B> {
        match lengths {
            Some(lengths) => UnrollOptions::new().with_lengths(lengths.clone()),
            None => UnrollOptions::new(),
        }
    }
}

/// The forward pass and loss of any [`SequenceModel`] on one [`SequenceBatch`], as
/// burn-train's [`SequenceOutput`]: the masked NLL in nats per valid token, from a zero
/// `h(0)`, teacher-forced for a model that feeds its outputs back. Steps after a sequence's
/// length cannot reach the earlier ones (every model reads forward here), so the lengths only
/// mask the loss and hold the state.
pub fn try_forward_sequence<B: Backend, M: SequenceModel<B>>(
    model: &M,
    batch: SequenceBatch<B>,
) -> Result<SequenceOutput<B>> {
    let options = batch.options();
    let out = model.try_forward(batch.inputs, &options)?;
    let loss = try_sequence_nll(
        out.logits.clone(),
        batch.targets.clone(),
        batch.lengths.as_deref(),
        Reduction::MeanPerToken,
    )?;
    Ok(SequenceOutput::new(loss, out.logits, None, batch.targets))
}

/// [`try_forward_sequence`], panicking with its error message.
pub fn forward_sequence<B: Backend, M: SequenceModel<B>>(
    model: &M,
    batch: SequenceBatch<B>,
) -> SequenceOutput<B> {
    unwrap_or_panic(try_forward_sequence(model, batch))
}

impl<B: Backend, C: Recurrence<B> + Module<B>> SequenceClassifier<B, C> {
    /// The forward pass and loss ([`classification_nll`]) of one [`ClassificationBatch`], as
    /// burn-train's [`ClassificationOutput`] (logits `[batch, classes]`).
    pub fn try_forward_classification(
        &self,
        batch: ClassificationBatch<B>,
    ) -> Result<ClassificationOutput<B>> {
        let options = SequenceBatch::options_without_teacher(&batch.lengths);
        let logits = self.try_forward(batch.inputs, &options)?;
        let loss = try_classification_nll(logits.clone(), batch.targets.clone())?;
        Ok(ClassificationOutput::new(loss, logits, batch.targets))
    }

    /// [`try_forward_classification`](Self::try_forward_classification), panicking with its
    /// error message.
    pub fn forward_classification(&self, batch: ClassificationBatch<B>) -> ClassificationOutput<B> {
        unwrap_or_panic(self.try_forward_classification(batch))
    }
}

/// A [`SequenceClassifier`] trained as a regressor: the same encoder and readout
/// (`output_size` = the number of targets), with a mean-squared-error loss.
///
/// A separate type because a model has one [`TrainStep`] (and so one loss and output type);
/// its record is the classifier's under the field `model`, and [`into_inner`](Self::into_inner)
/// gives the classifier back.
#[derive(Module, Debug)]
pub struct SequenceRegressor<B: Backend, C: Module<B> = ElmanCell<B>> {
    /// The classifier whose readout gives the predictions.
    pub model: SequenceClassifier<B, C>,
}

impl<B: Backend, C: Recurrence<B> + Module<B>> SequenceRegressor<B, C> {
    /// Wraps `model`.
    pub fn new(model: SequenceClassifier<B, C>) -> Self {
        Self { model }
    }

    /// The wrapped classifier.
    pub fn into_inner(self) -> SequenceClassifier<B, C> {
        self.model
    }

    /// The forward pass and loss ([`mean_squared_error`]) of one [`RegressionBatch`], as
    /// burn-train's [`RegressionOutput`] (predictions `[batch, output_size]`).
    pub fn try_forward_regression(&self, batch: RegressionBatch<B>) -> Result<RegressionOutput<B>> {
        let options = SequenceBatch::options_without_teacher(&batch.lengths);
        let predictions = self.model.try_forward(batch.inputs, &options)?;
        let loss = try_mean_squared_error(predictions.clone(), batch.targets.clone())?;
        Ok(RegressionOutput::new(loss, predictions, batch.targets))
    }

    /// [`try_forward_regression`](Self::try_forward_regression), panicking with its error
    /// message.
    pub fn forward_regression(&self, batch: RegressionBatch<B>) -> RegressionOutput<B> {
        unwrap_or_panic(self.try_forward_regression(batch))
    }
}

/// `TrainStep` (forward, loss, BPTT through Burn's autodiff) and `InferenceStep` (forward and
/// loss) of a [`SequenceModel`], through [`forward_sequence`]. (One impl per model type: Rust
/// allows no blanket impl of burn-train's traits.)
macro_rules! sequence_steps {
    ($($model:ident),+) => {$(
        impl<B: AutodiffBackend> TrainStep for $model<B> {
            type Input = SequenceBatch<B>;
            type Output = SequenceOutput<B>;

            fn step(&self, batch: SequenceBatch<B>) -> TrainOutput<SequenceOutput<B>> {
                let item = forward_sequence(self, batch);
                TrainOutput::new(self, item.loss.backward(), item)
            }
        }

        impl<B: Backend> InferenceStep for $model<B> {
            type Input = SequenceBatch<B>;
            type Output = SequenceOutput<B>;

            fn step(&self, batch: SequenceBatch<B>) -> SequenceOutput<B> {
                forward_sequence(self, batch)
            }
        }
    )+};
}

sequence_steps!(OutputFeedbackRnn);

// The per-step stacked model is generic over the cell: any `Recurrence` trains.
impl<B, C> TrainStep for StackedRnn<B, C>
where
    B: AutodiffBackend,
    C: Recurrence<B> + Module<B>,
    Self: AutodiffModule<B>,
{
    type Input = SequenceBatch<B>;
    type Output = SequenceOutput<B>;

    fn step(&self, batch: SequenceBatch<B>) -> TrainOutput<SequenceOutput<B>> {
        let item = forward_sequence(self, batch);
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl<B: Backend, C: Recurrence<B> + Module<B>> InferenceStep for StackedRnn<B, C> {
    type Input = SequenceBatch<B>;
    type Output = SequenceOutput<B>;

    fn step(&self, batch: SequenceBatch<B>) -> SequenceOutput<B> {
        forward_sequence(self, batch)
    }
}

// The classifier and the regressor are generic over the cell: any `Recurrence` trains.
impl<B, C> TrainStep for SequenceClassifier<B, C>
where
    B: AutodiffBackend,
    C: Recurrence<B> + Module<B>,
    Self: AutodiffModule<B>,
{
    type Input = ClassificationBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: ClassificationBatch<B>) -> TrainOutput<ClassificationOutput<B>> {
        let item = self.forward_classification(batch);
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl<B: Backend, C: Recurrence<B> + Module<B>> InferenceStep for SequenceClassifier<B, C> {
    type Input = ClassificationBatch<B>;
    type Output = ClassificationOutput<B>;

    fn step(&self, batch: ClassificationBatch<B>) -> ClassificationOutput<B> {
        self.forward_classification(batch)
    }
}

impl<B, C> TrainStep for SequenceRegressor<B, C>
where
    B: AutodiffBackend,
    C: Recurrence<B> + Module<B>,
    Self: AutodiffModule<B>,
{
    type Input = RegressionBatch<B>;
    type Output = RegressionOutput<B>;

    fn step(&self, batch: RegressionBatch<B>) -> TrainOutput<RegressionOutput<B>> {
        let item = self.forward_regression(batch);
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl<B: Backend, C: Recurrence<B> + Module<B>> InferenceStep for SequenceRegressor<B, C> {
    type Input = RegressionBatch<B>;
    type Output = RegressionOutput<B>;

    fn step(&self, batch: RegressionBatch<B>) -> RegressionOutput<B> {
        self.forward_regression(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::classification_nll;
    use crate::classifier::SequenceEncoderConfig;
    use crate::elman::ElmanRnnConfig;
    use crate::feedback::JordanRnnConfig;
    use crate::loss::sequence_nll;
    use burn::backend::{Autodiff, NdArray};
    use burn::optim::GradientsParams;

    type B = Autodiff<NdArray>;

    fn ids(rows: &[[i64; 4]]) -> Tensor<B, 2, Int> {
        let flat: Vec<i64> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), 4]), &Default::default())
    }

    fn batch(lengths: Option<Vec<usize>>) -> SequenceBatch<B> {
        SequenceBatch {
            inputs: ids(&[[0, 1, 2, 3], [3, 2, 0, 0]]).into(),
            targets: ids(&[[1, 2, 3, 0], [2, 1, 0, 0]]),
            lengths,
        }
    }

    fn close(a: Tensor<B, 1>, b: Tensor<B, 1>) {
        let (a, b) = (a.into_scalar(), b.into_scalar());
        assert!((a - b).abs() <= 1e-6 * b.abs(), "{a} vs {b}");
    }

    #[test]
    fn lm_train_step_is_the_masked_nll_and_its_gradient() {
        let device = Default::default();
        let model = ElmanRnnConfig::new(4, 5, 4).init::<B>(&device);
        let lengths = vec![4, 2];
        let out = TrainStep::step(&model, batch(Some(lengths.clone())));
        let options = UnrollOptions::new().with_lengths(lengths.clone());
        let logits = model
            .forward(ids(&[[0, 1, 2, 3], [3, 2, 0, 0]]), &options)
            .logits;
        let loss = sequence_nll(
            logits,
            batch(None).targets,
            Some(&lengths),
            Reduction::MeanPerToken,
        );
        close(out.item.loss.clone(), loss.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let (got, want) = (
            out.grads.get::<NdArray, 2>(model.cell().w.id).unwrap(),
            grads.get::<NdArray, 2>(model.cell().w.id).unwrap(),
        );
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), burn::tensor::Tolerance::absolute(1e-6));
    }

    #[test]
    fn jordan_step_is_teacher_forced_and_lengths_only_mask_the_loss() {
        let device = Default::default();
        let model = JordanRnnConfig::new(4, 5, 4).init::<B>(&device);
        let lengths = vec![4, 2];
        let out = InferenceStep::step(&model, batch(Some(lengths.clone())));
        let forced = model.forward(
            ids(&[[0, 1, 2, 3], [3, 2, 0, 0]]),
            &UnrollOptions::new().teacher_forced(batch(None).targets),
        );
        let loss = sequence_nll(
            forced.logits,
            batch(None).targets,
            Some(&lengths),
            Reduction::MeanPerToken,
        );
        close(out.loss, loss);
    }

    #[test]
    fn classifier_step_is_the_classification_nll_and_bad_labels_are_errors() {
        let device = Default::default();
        let model = SequenceEncoderConfig::new(4, 5)
            .classifier(3)
            .init::<B>(&device);
        let labels = |l: [i64; 2]| Tensor::<B, 1, Int>::from_data(TensorData::from(l), &device);
        let batch = |targets| ClassificationBatch {
            inputs: ids(&[[0, 1, 2, 3], [3, 2, 0, 0]]).into(),
            targets,
            lengths: Some(vec![4, 2]),
        };
        let out = model.forward_classification(batch(labels([2, 0])));
        let options = UnrollOptions::new().with_lengths([4, 2]);
        let logits = model.forward(ids(&[[0, 1, 2, 3], [3, 2, 0, 0]]), &options);
        close(out.loss, classification_nll(logits, labels([2, 0])));
        let Err(err) = model.try_forward_classification(batch(labels([3, 0]))) else {
            panic!("class 3 of 3 must be refused");
        };
        assert!(err.to_string().contains("`targets` holds class 3"), "{err}");
    }
}
