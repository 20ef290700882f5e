#![warn(missing_docs)]

//! Corpora, vocabularies and batching for unfold's character-level models.
//!
//! - [`Vocab`]: the sorted distinct characters of a text, mapping characters to token ids
//!   and back.
//! - [`Corpus`]: a text with its vocabulary and its token ids, built from a string, a UTF-8
//!   file, or the built-in tiny-shakespeare corpus, and split contiguously into training and
//!   validation ids.
//! - [`WindowSampler`]: random, seeded training windows; [`sequential_batches`]: the
//!   deterministic, non-overlapping windows of a validation set. Both give [`TokenBatch`]es
//!   of `[batch, seq_len]` integer tensors whose targets are the inputs shifted by one
//!   character.
//! - [`dataset`] (feature `train`): burn-dataset `Dataset`s and `Batcher`s of windows and
//!   labelled sequences, for burn-train's `Learner`.
//!
//! - [`tasks`]: synthetic sequence tasks with known answers (the year in a sentence, the adding
//!   problem, running sums, temporal XOR, running parity), generated from a seed.
//!
//! Every fallible function returns an [`Error`] that names what was wrong: a [`Corpus`] or
//! [`Vocab`] problem of its own ([`Error::Corpus`], [`Error::UnknownChar`]), or one of
//! unfold-nn's general errors in [`Error::Nn`].
//!
//! # Example
//!
//! ```
//! use unfold_data::{sequential_batches, Corpus, WindowSampler};
//!
//! type B = burn::backend::NdArray;
//!
//! let corpus = Corpus::from_text("toy", "to be or not to be, that is the question")?;
//! let (train, valid) = corpus.split(0.75)?;
//!
//! let device = Default::default();
//! let mut sampler = WindowSampler::new(train, 4, 8, 42)?;
//! let batch = sampler.next_batch::<B>(&device);
//! assert_eq!(batch.inputs.dims(), [4, 8]);
//!
//! let batches = sequential_batches::<B>(&valid, 4, 4, &device)?;
//! assert_eq!(batches.len(), 1);
//! assert_eq!(corpus.vocab().decode(&corpus.ids()[..5])?, "to be");
//! # Ok::<(), unfold_data::Error>(())
//! ```

mod batch;
pub mod chunks;
mod corpus;
#[cfg(feature = "train")]
pub mod dataset;
pub mod error;
pub mod tasks;
mod vocab;

pub use batch::{sequential_batches, TokenBatch, WindowSampler};
pub use chunks::{ChunkPosition, ChunkedCorpus, StatefulBatch};
pub use corpus::Corpus;
pub use error::{Error, Result};
pub use vocab::Vocab;
