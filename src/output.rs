//! What a training run leaves behind: a directory with the config, the model record and
//! `metrics.json`, each file written atomically (temporary file, then rename) so that a crash
//! mid-write leaves the previous version whole.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::Backend;
use serde::Serialize;

use crate::nn::{Error, Result};

/// The recorder every example saves models with (MessagePack, full precision).
pub type Recorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// File name of the trained model record.
pub const MODEL_FILE: &str = "model.mpk";

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
