//! The error of the experiments and examples: the library crates' errors, and what choosing a
//! device can add.

/// Anything an experiment can fail with, each naming what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the models, losses, checkpoints and imports.
    #[error(transparent)]
    Nn(#[from] unfold_nn::Error),
    /// From the corpora, vocabularies, batching and tasks.
    #[error(transparent)]
    Data(#[from] unfold_data::Error),
    /// The chosen backend found no device to run on (e.g. wgpu on a machine without a GPU or
    /// Vulkan driver).
    #[error("backend `{backend}` found no device: {problem}. {fix}")]
    NoDevice {
        /// The backend's name (`wgpu`, ...).
        backend: &'static str,
        /// What the backend reported, in words.
        problem: String,
        /// What to install or change, in words.
        fix: String,
    },
}

/// Result alias of the experiments.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs `main` and, on an error, prints it (`error: …`) and exits with status 1: what every
/// binary's `main` does, so a bad flag or file is one line, not a panic.
pub fn exit_on_error(main: impl FnOnce() -> Result<()>) {
    if let Err(e) = main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
