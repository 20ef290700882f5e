//! What a training run leaves behind, written so that a crash loses nothing (feature
//! `checkpoint`).
//!
//! - [`RunDir`]: an output directory whose files are written atomically (temporary file,
//!   then rename), so a crash mid-write leaves the previous version whole; a training
//!   checkpoint (model, optimizer, loop state) replaced as one unit
//!   ([`RunDir::save_checkpoint`]) and read back ([`RunDir::load_checkpoint`]).
//! - [`load_model`]: a saved record into a model, refusing files of another model or
//!   config, truncated or corrupt ones, and non-finite parameters, with the file named.
//! - [`NonFiniteGuard`]: what a training loop does about a NaN or infinite loss, so that
//!   nothing non-finite is ever saved.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, NamedMpkFileRecorder, Record};
use burn::tensor::{backend::Backend, Bool, ElementConversion, Int, Tensor};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};

/// The recorder every example saves models with (MessagePack, full precision).
pub type Recorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// File name of the trained model record.
pub const MODEL_FILE: &str = "model.mpk";

/// Sub-directory holding the training checkpoint ([`RunDir::save_checkpoint`]).
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// Model record inside [`CHECKPOINT_DIR`].
pub const CHECKPOINT_MODEL_FILE: &str = "model.mpk";

/// Optimizer record (Adam's moments and step count, for instance) inside [`CHECKPOINT_DIR`].
pub const CHECKPOINT_OPTIMIZER_FILE: &str = "optimizer.mpk";

/// The training loop's own state (step, sampler position, history) inside [`CHECKPOINT_DIR`].
pub const CHECKPOINT_STATE_FILE: &str = "state.json";

/// Where a checkpoint is assembled before it replaces the current one.
const CHECKPOINT_PARTIAL: &str = ".checkpoint.partial";

/// Where the previous checkpoint waits while the new one is renamed into place.
const CHECKPOINT_PREVIOUS: &str = ".checkpoint.previous";

/// A checkpoint read back by [`RunDir::load_checkpoint`]: the model with its saved parameters,
/// the optimizer record to hand to `Optimizer::load_record`, and the loop's state.
#[derive(Debug)]
pub struct Checkpoint<M, R, S> {
    /// The model, with the checkpoint's parameters (and parameter ids, which the optimizer
    /// record is keyed by).
    pub model: M,
    /// The optimizer's record.
    pub optimizer: R,
    /// What the training loop saved beside them.
    pub state: S,
}

/// The shape of every parameter of a module, in visiting order.
struct Shapes(Vec<Vec<usize>>);

impl<B: Backend> ModuleVisitor<B> for Shapes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().dims().to_vec());
    }
    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
        self.0.push(param.val().dims().to_vec());
    }
    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, Bool>>) {
        self.0.push(param.val().dims().to_vec());
    }
}

fn shapes<B: Backend, M: Module<B>>(module: &M) -> Vec<Vec<usize>> {
    let mut shapes = Shapes(Vec::new());
    module.visit(&mut shapes);
    shapes.0
}

/// Loads the record at `path` (ending in `.mpk`) into a copy of `model`, checking that every
/// parameter keeps its shape. `model` itself is left as it is whatever happens.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read, [`Error::BadFile`] if it is corrupt, truncated, or
/// holds parameters of other shapes (another model's record).
pub fn load_model<B: Backend, M: Module<B>>(
    path: &Path,
    model: &M,
    device: &B::Device,
) -> Result<M> {
    let record = load_record::<B, M::Record>(path, device)?;
    // Burn drops what the module has no place for (an `Option` parameter that is `None` in
    // the model, such as a bias left out by the config) without a word: encode the record
    // before and after loading it, and refuse the file if anything was left behind.
    let bytes_recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
    let encode = |record: M::Record| {
        <NamedMpkBytesRecorder<FullPrecisionSettings> as burn::record::Recorder<B>>::record(
            &bytes_recorder,
            record,
            (),
        )
        .expect("a loaded record encodes again")
    };
    let in_file = encode(record);
    let record = <NamedMpkBytesRecorder<FullPrecisionSettings> as burn::record::Recorder<B>>::load(
        &bytes_recorder,
        in_file.clone(),
        device,
    )
    .expect("a record decodes from its own encoding");
    let loaded = model.clone().load_record(record);
    let (expected, got) = (shapes::<B, M>(model), shapes::<B, M>(&loaded));
    if expected != got {
        let (index, want, have) = expected
            .iter()
            .zip(&got)
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| (i, format!("{a:?}"), format!("{b:?}")))
            .unwrap_or((
                0,
                format!("{} parameters", expected.len()),
                format!("{}", got.len()),
            ));
        return Err(Error::BadFile {
            path: path.to_path_buf(),
            problem: format!(
                "parameter {index} has shape {have}, the model expects {want} (a record of \
                 another model or config?)"
            ),
        });
    }
    if !parameters_are_finite::<B, M>(&loaded) {
        return Err(Error::BadFile {
            path: path.to_path_buf(),
            problem: "holds NaN or infinite parameters (saved from a diverged run?)".into(),
        });
    }
    if encode(loaded.clone().into_record()) != in_file {
        return Err(Error::BadFile {
            path: path.to_path_buf(),
            problem: "holds parameters the model does not have (a record of another model or \
                      config, e.g. one with biases loaded into one without?)"
                .into(),
        });
    }
    Ok(loaded)
}

/// Reads one Burn record from `path` (ending in `.mpk`), naming the file in any error.
fn load_record<B: Backend, R: Record<B>>(path: &Path, device: &B::Device) -> Result<R> {
    if !path.is_file() {
        return Err(Error::Io {
            action: "reading",
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    // Burn's recorders may panic on some malformed input rather than return an error: catch
    // it, so that a bad file is an error naming it and not a crash.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        <Recorder as burn::record::Recorder<B>>::load::<R>(
            &Recorder::new(),
            path.to_path_buf(),
            device,
        )
    }));
    match result {
        Ok(Ok(record)) => Ok(record),
        Ok(Err(e)) => Err(Error::BadFile {
            path: path.to_path_buf(),
            problem: describe_record_error(e),
        }),
        Err(_) => Err(Error::BadFile {
            path: path.to_path_buf(),
            problem: "corrupt record (decoding it failed)".into(),
        }),
    }
}

/// Burn's decoding error in words: truncated, another model's, or corrupt. (Burn adds a note
/// about its pre-0.14 format to every decoding error, which misleads here: it is dropped.)
fn describe_record_error(error: burn::record::RecorderError) -> String {
    use burn::record::RecorderError::{DeserializeError, FileNotFound, Unknown};
    let (FileNotFound(text) | DeserializeError(text) | Unknown(text)) = error;
    let detail = text
        .lines()
        .map(str::trim)
        .find(|line| {
            !line.is_empty()
                && !line.starts_with("Unable to load record")
                && !line.starts_with("The internal data format")
        })
        .unwrap_or("")
        .trim_start_matches("Error: ")
        .trim_start_matches("Unknown(\"")
        .trim_end_matches("\")")
        .to_string();
    if detail.contains("UnexpectedEof") {
        format!("truncated: the record ends early ({detail})")
    } else if detail.contains("missing field") || detail.contains("unknown field") {
        format!("not a record of this model: {detail} (a record of another model?)")
    } else {
        format!("corrupt: not a readable record ({detail})")
    }
}

/// Reads a JSON file into `T`, naming the file in any error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|source| Error::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |problem| Error::BadFile {
        path: path.to_path_buf(),
        problem,
    };
    let mut json = serde_json::Deserializer::from_slice(&bytes);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        bad(match field.as_str() {
            // `.` is the document itself: a missing field, bad syntax, a truncated file.
            "." => format!("not the expected JSON ({inner})"),
            _ => format!("not the expected JSON: field `{field}`: {inner}"),
        })
    })?;
    json.end()
        .map_err(|e| bad(format!("not the expected JSON ({e})")))?;
    Ok(value)
}

/// Writes `bytes` to `path` and flushes them to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        action: "writing",
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::File::create(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// An output directory, created and checked for writability up front (so a run does not
/// train for ten minutes and then fail to save).
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates `path` (and parents) if needed and checks that files can be written there.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        fs::create_dir_all(&path).map_err(|source| Error::Io {
            action: "creating output directory",
            path: path.clone(),
            source,
        })?;
        let probe = path.join(".unfold-write-probe");
        fs::write(&probe, b"").map_err(|source| Error::Io {
            action: "writing to output directory",
            path: path.clone(),
            source,
        })?;
        let _ = fs::remove_file(probe);
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `value` as pretty JSON to `name`, atomically.
    pub fn write_json(&self, name: &str, value: &impl Serialize) -> Result<()> {
        let json = serde_json::to_vec_pretty(value).expect("run artefacts serialise to JSON");
        self.write_atomic(name, &json)
    }

    /// Writes `bytes` to `name` through a temporary file and a rename.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let target = self.path.join(name);
        let temporary = self.path.join(format!(".{name}.tmp"));
        let io = |source| Error::Io {
            action: "writing",
            path: target.clone(),
            source,
        };
        let mut file = fs::File::create(&temporary).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(&temporary, &target).map_err(io)
    }

    /// Saves `module`'s parameters to [`MODEL_FILE`], atomically.
    pub fn save_model<B: Backend, M: Module<B>>(&self, module: M) -> Result<()> {
        let target = self.path.join(MODEL_FILE);
        // The recorder sets the `.mpk` extension itself: this becomes `.model-saving.mpk`.
        let temporary = self.path.join(".model-saving");
        module
            .save_file(&temporary, &Recorder::new())
            .map_err(|e| Error::Io {
                action: "saving model to",
                path: target.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        fs::rename(temporary.with_extension("mpk"), &target).map_err(|source| Error::Io {
            action: "writing",
            path: target,
            source,
        })
    }
}

impl RunDir {
    /// Saves a training checkpoint: `model`'s record, `optimizer`'s record and `state` (any
    /// serde value: step, sampler position, history) in [`CHECKPOINT_DIR`].
    ///
    /// The three files replace the previous checkpoint together: they are written (and synced)
    /// into a fresh directory, which is then renamed into place. A crash at any point leaves
    /// either the previous checkpoint or the new one whole, never a mix.
    pub fn save_checkpoint<B: Backend, M: Module<B>, R: Record<B>>(
        &self,
        model: &M,
        optimizer: R,
        state: &impl Serialize,
    ) -> Result<()> {
        let partial = self.path.join(CHECKPOINT_PARTIAL);
        let current = self.path.join(CHECKPOINT_DIR);
        let previous = self.path.join(CHECKPOINT_PREVIOUS);
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        if partial.exists() {
            fs::remove_dir_all(&partial).map_err(io("removing", &partial))?;
        }
        fs::create_dir(&partial).map_err(io("creating", &partial))?;
        let recorder = Recorder::new();
        let record_error = |file: &str| {
            let path = current.join(file);
            move |e: burn::record::RecorderError| Error::Io {
                action: "saving",
                path,
                source: std::io::Error::other(e.to_string()),
            }
        };
        // The recorder adds the `.mpk` extension.
        <Recorder as burn::record::Recorder<B>>::record(
            &recorder,
            model.clone().into_record(),
            partial.join("model"),
        )
        .map_err(record_error(CHECKPOINT_MODEL_FILE))?;
        <Recorder as burn::record::Recorder<B>>::record(
            &recorder,
            optimizer,
            partial.join("optimizer"),
        )
        .map_err(record_error(CHECKPOINT_OPTIMIZER_FILE))?;
        let json = serde_json::to_vec_pretty(state).expect("checkpoint state serialises to JSON");
        write_synced(&partial.join(CHECKPOINT_STATE_FILE), &json)?;
        for file in [CHECKPOINT_MODEL_FILE, CHECKPOINT_OPTIMIZER_FILE] {
            let path = partial.join(file);
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io("syncing", &path))?;
        }
        if previous.exists() {
            fs::remove_dir_all(&previous).map_err(io("removing", &previous))?;
        }
        if current.exists() {
            fs::rename(&current, &previous).map_err(io("moving aside", &current))?;
        }
        fs::rename(&partial, &current).map_err(io("renaming into place", &current))?;
        if previous.exists() {
            fs::remove_dir_all(&previous).map_err(io("removing", &previous))?;
        }
        Ok(())
    }

    /// The checkpoint directory to resume from: [`CHECKPOINT_DIR`], or the previous checkpoint
    /// if a save was interrupted between its two renames. `None` when there is none.
    pub fn checkpoint_path(&self) -> Option<PathBuf> {
        [CHECKPOINT_DIR, CHECKPOINT_PREVIOUS]
            .into_iter()
            .map(|name| self.path.join(name))
            .find(|path| path.join(CHECKPOINT_STATE_FILE).is_file())
    }

    /// Reads the checkpoint back: `model`'s parameters from it (into a copy; `model` is left as
    /// it is), the optimizer record and the state.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the directory if there is no checkpoint; [`Error::BadFile`] naming
    /// the file if one is corrupt, truncated, or holds another model's parameters. Nothing on
    /// disk is changed.
    pub fn load_checkpoint<B: Backend, M: Module<B>, R: Record<B>, S: DeserializeOwned>(
        &self,
        model: &M,
        device: &B::Device,
    ) -> Result<Checkpoint<M, R, S>> {
        let dir = self.checkpoint_path().ok_or_else(|| Error::Io {
            action: "resuming from",
            path: self.path.join(CHECKPOINT_DIR),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no checkpoint here (run without --resume first)",
            ),
        })?;
        let state = read_json(&dir.join(CHECKPOINT_STATE_FILE))?;
        let model = load_model(&dir.join(CHECKPOINT_MODEL_FILE), model, device)?;
        let optimizer = load_record::<B, R>(&dir.join(CHECKPOINT_OPTIMIZER_FILE), device)?;
        Ok(Checkpoint {
            model,
            optimizer,
            state,
        })
    }
}

/// The loop state the examples save in a checkpoint (any serde type works with
/// [`RunDir::save_checkpoint`]; this one covers a seeded, replayable sampler).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopState<H> {
    /// Optimizer steps completed.
    pub step: usize,
    /// Batches drawn from the (seeded) sampler so far: replaying that many draws from a
    /// sampler made with the same seed puts it exactly where it was.
    pub batches_drawn: usize,
    /// The model's config, as JSON: a checkpoint of another model is refused.
    pub model_config: serde_json::Value,
    /// The history logged so far (e.g. the evaluations).
    pub history: H,
}

impl<H> LoopState<H> {
    /// Checks that this saved state belongs to a model of `config` (as JSON): resuming a
    /// checkpoint of another model would load parameters of other shapes, or train on.
    ///
    /// # Errors
    ///
    /// [`Error::BadFile`] naming the state file in `dir`'s checkpoint and both configs.
    pub fn check_config(&self, config: &serde_json::Value, dir: &Path) -> Result<()> {
        if &self.model_config == config {
            return Ok(());
        }
        Err(Error::BadFile {
            path: dir.join(CHECKPOINT_DIR).join(CHECKPOINT_STATE_FILE),
            problem: format!(
                "saved for model {}, but the flags give {} (resume with the same model \
                 settings and corpus)",
                self.model_config, config
            ),
        })
    }
}

/// Whether every parameter of `module` is finite (one device read per parameter tensor).
struct AllFinite(bool);

impl<B: Backend> ModuleVisitor<B> for AllFinite {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.0 {
            self.0 = param.val().is_finite().all().into_scalar().elem::<bool>();
        }
    }
}

/// Whether every float parameter of `module` is finite.
pub fn parameters_are_finite<B: Backend, M: Module<B>>(module: &M) -> bool {
    let mut finite = AllFinite(true);
    module.visit(&mut finite);
    finite.0
}

/// What a training loop does about a step whose loss is NaN or infinite: stop with an
/// [`Error::Diverged`] before the step is applied (the default), or, with `skip`, drop the step
/// and go on (`--skip-nonfinite`). Either way nothing non-finite reaches a checkpoint:
/// [`check_before_saving`](Self::check_before_saving) refuses to save parameters that are.
///
/// ```text
/// let loss_value = loss.clone().into_scalar() as f64;
/// if !guard.check_loss(step, loss_value)? { continue; }   // skipped
/// ... backward, optimizer step ...
/// guard.check_before_saving(step, &model)?;  out.save_checkpoint(...)?;  guard.saved(step);
/// ```
#[derive(Debug, Clone)]
pub struct NonFiniteGuard {
    skip: bool,
    /// Skipped steps in a row; too many means the parameters themselves are gone.
    consecutive: usize,
    skipped: Vec<usize>,
    last_saved: Option<usize>,
}

impl NonFiniteGuard {
    /// With `skip`, this many non-finite steps in a row still stop the run: the parameters are
    /// then most likely non-finite themselves, and no batch will ever give a finite loss.
    pub const MAX_CONSECUTIVE_SKIPS: usize = 10;

    /// A guard that stops at the first non-finite loss, or skips such steps when `skip`.
    pub fn new(skip: bool) -> Self {
        Self {
            skip,
            consecutive: 0,
            skipped: Vec::new(),
            last_saved: None,
        }
    }

    /// Records that a checkpoint of step `step` was saved (named in the error message).
    pub fn saved(&mut self, step: usize) {
        self.last_saved = Some(step);
    }

    /// The steps skipped so far.
    pub fn skipped(&self) -> &[usize] {
        &self.skipped
    }

    /// Checks step `step`'s training loss before its gradients are applied: `Ok(true)` to
    /// apply the step, `Ok(false)` to skip it (with `skip`, printing a note to stderr).
    ///
    /// # Errors
    ///
    /// [`Error::Diverged`] when `loss` is NaN or infinite and the guard does not skip (or has
    /// skipped [`MAX_CONSECUTIVE_SKIPS`](Self::MAX_CONSECUTIVE_SKIPS) steps in a row).
    pub fn check_loss(&mut self, step: usize, loss: f64) -> Result<bool> {
        if loss.is_finite() {
            self.consecutive = 0;
            return Ok(true);
        }
        if self.skip && self.consecutive + 1 < Self::MAX_CONSECUTIVE_SKIPS {
            self.consecutive += 1;
            self.skipped.push(step);
            eprintln!("training loss at step {step} is {loss}: step skipped (--skip-nonfinite)");
            return Ok(false);
        }
        let (stopped, advice) = if self.skip {
            (
                format!(
                    "stopped after {} non-finite steps in a row (the parameters themselves are \
                     probably not finite)",
                    Self::MAX_CONSECUTIVE_SKIPS
                ),
                "lower --lr",
            )
        } else {
            (
                "stopped before applying the step".to_string(),
                "lower --lr, or pass --skip-nonfinite to skip such steps",
            )
        };
        Err(Error::Diverged {
            what: "training loss",
            step,
            value: loss,
            action: format!("{stopped}; {}; {advice}", self.kept()),
        })
    }

    /// Checks that every parameter of `model` is finite before it is saved at step `step`.
    ///
    /// # Errors
    ///
    /// [`Error::Diverged`] (`what` = "a parameter") if one is not: the save must not happen.
    pub fn check_before_saving<B: Backend, M: Module<B>>(
        &self,
        step: usize,
        model: &M,
    ) -> Result<()> {
        if parameters_are_finite::<B, M>(model) {
            return Ok(());
        }
        Err(Error::Diverged {
            what: "a parameter",
            step,
            value: f64::NAN,
            action: format!(
                "not saved; {}; lower --lr (or clip the gradient)",
                self.kept()
            ),
        })
    }

    /// Checks an evaluation's loss (e.g. the validation loss) before the checkpoint of step
    /// `step` is saved: parameters finite but so large that the evaluation overflows are as
    /// lost as NaN ones.
    ///
    /// # Errors
    ///
    /// [`Error::Diverged`] (`what` = "validation loss") if `loss` is NaN or infinite.
    pub fn check_validation(&self, step: usize, loss: f64) -> Result<()> {
        if loss.is_finite() {
            return Ok(());
        }
        Err(Error::Diverged {
            what: "validation loss",
            step,
            value: loss,
            action: format!("not saved; {}; lower --lr", self.kept()),
        })
    }

    fn kept(&self) -> String {
        match self.last_saved {
            Some(step) => format!("the last checkpoint (step {step}) is kept"),
            None => "no checkpoint was saved in this run".to_string(),
        }
    }
}

/// Prints `metrics` as the run's last line, one JSON object, after writing it to
/// `metrics.json`.
pub fn finish(dir: &RunDir, metrics: &impl Serialize) -> Result<()> {
    dir.write_json("metrics.json", metrics)?;
    println!(
        "{}",
        serde_json::to_string(metrics).expect("metrics serialise to JSON")
    );
    Ok(())
}
