//! burn-train's `Learner`, set up the way every example and experiment here uses it: an epoch
//! is `eval_every` steps then a validation pass, full-precision checkpoints, and a compact
//! display ([`LearnerProgress`]: a progress bar and one line per evaluation, instead of burn's
//! line of debug output per batch without its `tui` feature).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::train::metric::MetricId;
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};
use burn::train::{
    metric::MetricDefinition, Interrupter, LearnerSummary, LearningComponentsTypes,
    SupervisedTraining,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use unfold_nn::checkpoint::Recorder;

/// One validation pass, as the Learner reported it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Eval {
    /// Training steps done.
    pub step: usize,
    /// Mean training loss since the previous evaluation.
    pub train_loss: f64,
    /// Mean validation loss (over sequences).
    pub val_loss: f64,
    /// Validation accuracy (0..1), when the run has an accuracy metric.
    pub val_acc: Option<f64>,
}

/// What the Learner reported, as [`LearnerProgress`] collected it.
#[derive(Default)]
struct Log {
    names: HashMap<MetricId, String>,
    /// The training loss of every step.
    train: Vec<f64>,
    /// Training losses since the last evaluation.
    recent: Vec<f64>,
    /// The validation pass under way: the last batch's loss and accuracy, then Σ loss·n,
    /// Σ accuracy·n and n over its batches (the Learner's loss metric counts batches, not
    /// sequences; weighting by n gives the mean over sequences).
    batch: [Option<f64>; 2],
    sums: [f64; 3],
    history: Vec<Eval>,
    /// Time spent in validation passes, and when the current one began.
    eval_time: Duration,
    eval_started: Option<Instant>,
}

/// burn-train's renderer for these programs: a progress bar (stderr) with the batch loss, one
/// line per evaluation, and the numbers `metrics.json` and the loss curves need. Stops the
/// training through the Learner's interrupter when the loss stops being finite.
#[derive(Clone)]
pub struct LearnerProgress {
    bar: ProgressBar,
    log: Arc<Mutex<Log>>,
    interrupter: Interrupter,
}

/// What a training run reported, once the Learner is done.
#[derive(Debug, Clone)]
pub struct Reported {
    /// The training loss of every step.
    pub losses: Vec<f64>,
    /// Every evaluation.
    pub history: Vec<Eval>,
    /// Time spent in validation passes (approximate: the renderer runs a little behind).
    pub eval_time: Duration,
}

impl LearnerProgress {
    fn new(steps: usize, interrupter: Interrupter) -> Self {
        let template = "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]";
        let bar = ProgressBar::new(steps as u64)
            .with_style(ProgressStyle::with_template(template).expect("a valid template"));
        Self {
            bar,
            log: Arc::default(),
            interrupter,
        }
    }

    /// What was reported; an error when a training loss was not finite.
    pub fn reported(&self) -> crate::Result<Reported> {
        let log = std::mem::take(&mut *self.log.lock().unwrap_or_else(|e| e.into_inner()));
        if log.train.iter().any(|loss| !loss.is_finite()) || log.history.is_empty() {
            return Err(unfold_nn::Error::NonFinite {
                arg: "training loss (lower --lr?)",
            }
            .into());
        }
        Ok(Reported {
            losses: log.train,
            history: log.history,
            eval_time: log.eval_time,
        })
    }

    fn println(&self, line: String) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

/// The Learner set-up every program shares: `steps` training steps in epochs of `eval_every`,
/// each followed by a validation pass; checkpoints (model, optimizer, scheduler) in unfold's
/// full-precision recorder and Burn's metric logs in the training directory.
pub fn configure<LC: LearningComponentsTypes>(
    training: SupervisedTraining<LC>,
    steps: usize,
    eval_every: usize,
) -> (SupervisedTraining<LC>, LearnerProgress) {
    let progress = LearnerProgress::new(steps, training.interrupter());
    let training = training
        .with_file_checkpointer(Recorder::new())
        .renderer(progress.clone())
        .num_epochs(steps / eval_every.min(steps).max(1));
    (training, progress)
}

/// The current value of a numeric metric update, with the metric's name.
fn numeric(log: &Log, state: MetricState) -> Option<(&str, f64)> {
    match state {
        MetricState::Numeric(entry, value) => {
            Some((log.names.get(&entry.metric_id)?.as_str(), value.current()))
        }
        MetricState::Generic(_) => None,
    }
}

impl MetricsRendererTraining for LearnerProgress {
    fn update_train(&mut self, state: MetricState) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(("Loss", loss)) = numeric(&log, state) {
            log.train.push(loss);
            log.recent.push(loss);
            self.bar.set_message(format!("loss {loss:.4}"));
            self.bar.inc(1);
            if !loss.is_finite() {
                self.interrupter
                    .stop(Some("the training loss is not finite"));
            }
        }
    }

    fn update_valid(&mut self, state: MetricState) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        match numeric(&log, state) {
            Some(("Loss", loss)) => log.batch[0] = Some(loss),
            // Burn's accuracy metrics report percent.
            Some(("Accuracy", acc)) => log.batch[1] = Some(acc / 100.0),
            _ => {}
        }
    }

    fn render_train(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        // The epoch's last training batch: its validation pass starts now.
        if item
            .progress
            .is_some_and(|p| p.items_processed >= p.items_total)
        {
            self.log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .eval_started = Some(Instant::now());
        }
    }

    fn render_valid(&mut self, item: TrainingProgress, _: Vec<ProgressType>) {
        let Some(p) = item.progress else { return };
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let n = (p.items_processed - log.sums[2] as usize) as f64;
        let [loss, acc] = log.batch;
        log.sums[0] += loss.unwrap_or(f64::NAN) * n;
        log.sums[1] += acc.unwrap_or(0.0) * n;
        log.sums[2] += n;
        if p.items_processed < p.items_total {
            return;
        }
        let [loss_sum, acc_sum, n] = std::mem::take(&mut log.sums);
        let train_loss = log.recent.iter().sum::<f64>() / log.recent.len().max(1) as f64;
        log.recent.clear();
        let eval = Eval {
            step: log.train.len(),
            train_loss,
            val_loss: loss_sum / n,
            val_acc: acc.map(|_| acc_sum / n),
        };
        if let Some(started) = log.eval_started.take() {
            log.eval_time += started.elapsed();
        }
        let acc = eval
            .val_acc
            .map_or(String::new(), |a| format!("  val acc {a:.3}"));
        self.println(format!(
            "step {:>6}  train {:.4}  val {:.4}{acc}",
            eval.step, eval.train_loss, eval.val_loss
        ));
        log.history.push(eval);
    }

    fn on_train_end(
        &mut self,
        _summary: Option<LearnerSummary>,
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        self.bar.finish_and_clear();
        Ok(())
    }
}

impl MetricsRendererEvaluation for LearnerProgress {
    fn update_test(&mut self, _: EvaluationName, _: MetricState) {}
    fn render_test(&mut self, _: EvaluationProgress, _: Vec<ProgressType>) {}
}

impl MetricsRenderer for LearnerProgress {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.names.insert(definition.metric_id, definition.name);
    }
}
