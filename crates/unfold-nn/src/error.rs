//! The error type of unfold-nn (unfold-data has its own, which wraps this one).
//!
//! Every public entry point that takes user data, shapes, configs or files checks them first
//! and returns an [`Error`] naming the argument, what was expected and what was given, rather
//! than letting the input reach a Burn kernel that would panic (or, worse, compute garbage).
//! Modules follow Burn's convention of a panicking `forward`; each has a `try_forward` beside
//! it that returns this error instead, and `forward` panics with the same message.

use std::path::PathBuf;

/// Result alias used throughout unfold.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when unfold-nn is handed bad input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor argument has the wrong shape.
    #[error("`{arg}` has shape {got:?}, expected {expected}")]
    Shape {
        /// The argument's name.
        arg: &'static str,
        /// What was expected, in words (e.g. "[batch, time, 8]").
        expected: String,
        /// The shape that was given.
        got: Vec<usize>,
    },
    /// A state of several parts with the wrong shapes.
    #[error("`{arg}` has parts of shape {got}, expected {expected}")]
    StateShape {
        /// The argument's name.
        arg: &'static str,
        /// The expected shapes of the parts, in words (e.g. "[2, 4] + [2, 4]").
        expected: String,
        /// The shapes that were given, in words.
        got: String,
    },
    /// A cell whose step returned another state than it declares (checked at the first step).
    #[error("{cell} declares state widths {declared:?}, but its first step returned: {problem}")]
    CellOutput {
        /// The cell's type.
        cell: String,
        /// The widths the cell declares (`Recurrence::state_widths`).
        declared: Vec<usize>,
        /// What was wrong with the returned state, in words.
        problem: String,
    },
    /// A batch or sequence with nothing in it.
    #[error("`{arg}` is empty: {what}")]
    Empty {
        /// The argument's name.
        arg: &'static str,
        /// What is empty, in words.
        what: String,
    },
    /// Per-sequence lengths that do not fit the batch.
    #[error("`lengths` {problem}")]
    Lengths {
        /// What is wrong, in words.
        problem: String,
    },
    /// NaN or infinite values where finite numbers are needed.
    #[error("`{arg}` holds NaN or infinite values")]
    NonFinite {
        /// The argument's name.
        arg: &'static str,
    },
    /// A token id outside the vocabulary.
    #[error("`{arg}` holds token id {id}, but the vocabulary has {vocab_size} entries (ids 0..{vocab_size})")]
    TokenOutOfRange {
        /// The argument's name.
        arg: &'static str,
        /// The offending id.
        id: i64,
        /// Size of the vocabulary.
        vocab_size: usize,
    },
    /// A class label outside `0..num_classes`.
    #[error("`{arg}` holds class {class}, but there are {num_classes} classes (0..{num_classes})")]
    ClassOutOfRange {
        /// The argument's name.
        arg: &'static str,
        /// The offending class.
        class: i64,
        /// Number of classes (the width of the logits).
        num_classes: usize,
    },
    /// A configuration value that cannot work.
    #[error("bad config: `{field}` = {value}: {reason}")]
    Config {
        /// The config field's name.
        field: &'static str,
        /// The given value, formatted.
        value: String,
        /// Why it cannot work.
        reason: String,
    },
    /// A required argument that was not given (e.g. the targets that teacher forcing feeds
    /// back).
    #[error("`{arg}` is missing: {why}")]
    Missing {
        /// The argument's name.
        arg: &'static str,
        /// Why it is needed, and what to do instead, in words.
        why: String,
    },
    /// A file that cannot be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "writing", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Training diverged: a step's loss (or a model's parameters) became NaN or infinite.
    #[error("{what} at step {step} is {value}: {action}")]
    Diverged {
        /// What is not finite ("training loss", "parameters", ...).
        what: &'static str,
        /// The training step.
        step: usize,
        /// The value found (NaN or ±inf).
        value: f64,
        /// What was done about it and what to try, in words.
        action: String,
    },
    /// A size whose memory the process cannot have: refused before anything is allocated
    /// (an allocation that fails aborts the process).
    #[error(
        "`{field}` = {value} needs {needed} of memory, but {available} is available{}",
        match largest {
            Some(largest) => format!(" (the largest `{field}` that fits is {largest})"),
            None => String::new(),
        }
    )]
    TooLarge {
        /// The config field or flag to change.
        field: &'static str,
        /// Its value.
        value: String,
        /// The memory needed, in words.
        needed: String,
        /// The memory available, in words.
        available: String,
        /// The largest value of `field` that fits, the others unchanged (if one does).
        largest: Option<usize>,
    },
    /// A file that was read but cannot be used: corrupt, truncated, or written for another
    /// model (wrong names or shapes). Nothing was loaded from it.
    #[error("{path}: {problem}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, in words.
        problem: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Config`].
    pub fn config(
        field: &'static str,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Error::Config {
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::Shape`].
    pub fn shape(arg: &'static str, expected: impl Into<String>, got: &[usize]) -> Self {
        Error::Shape {
            arg,
            expected: expected.into(),
            got: got.to_vec(),
        }
    }
}

/// Checks that every named size is at least 1 (a zero-width layer cannot hold anything).
pub fn check_sizes(sizes: &[(&'static str, usize)]) -> Result<()> {
    match sizes.iter().find(|(_, size)| *size == 0) {
        Some((field, size)) => Err(Error::config(field, size, "must be at least 1")),
        None => Ok(()),
    }
}

/// Checks that `initializer` can draw: Burn hands its numbers to `rand`, which panics on an
/// empty or non-finite range or a negative standard deviation (e.g. from a `config.json`).
pub fn check_initializer(initializer: &burn::module::Initializer) -> Result<()> {
    use burn::module::Initializer::*;
    let bad = |reason: &str| {
        Err(Error::config(
            "initializer",
            format!("{initializer:?}"),
            reason,
        ))
    };
    match *initializer {
        Constant { value } if !value.is_finite() => bad("the constant must be finite"),
        Uniform { min, max } if !(min < max && (max - min).is_finite()) => {
            bad("needs finite bounds with min < max")
        }
        Normal { mean, std } if !(mean.is_finite() && std.is_finite() && std >= 0.0) => {
            bad("needs a finite mean and a finite standard deviation ≥ 0")
        }
        KaimingUniform { gain, .. }
        | KaimingNormal { gain, .. }
        | XavierUniform { gain }
        | XavierNormal { gain }
            if !(gain.is_finite() && gain > 0.0) =>
        {
            bad("the gain must be a positive, finite number")
        }
        _ => Ok(()),
    }
}
