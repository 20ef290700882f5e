//! burn-dataset [`Dataset`]s and [`Batcher`]s that feed burn-train's `Learner` (feature `train`).
//!
//! - [`WindowDataset`]: the windows of a token sequence (a corpus split), every offset for
//!   training or non-overlapping for validation, as [`SequenceItem`]s.
//! - [`SequenceBatcher`]: [`SequenceItem`]s to an [`unfold_nn::train::SequenceBatch`] for the
//!   sequence models (`ElmanRnn`, `JordanRnn`, `ElmanJordanRnn`).
//! - [`ClassificationBatcher`]: [`LabelledSequence`]s to an
//!   [`unfold_nn::train::ClassificationBatch`] for the `SequenceClassifier`. Keep the sequences
//!   in burn-dataset's `InMemDataset` (or any `Dataset`).
//!
//! Both batchers pad to the longest sequence of the batch and pass the lengths on only when
//! they differ, so equal-length batches run the unmasked path.
//!
//! ```
//! use burn::data::dataloader::DataLoaderBuilder;
//! use unfold_data::dataset::{SequenceBatcher, WindowDataset};
//! use unfold_data::Corpus;
//!
//! type B = burn::backend::NdArray;
//!
//! let corpus = Corpus::from_text("toy", "to be or not to be, that is the question")?;
//! let (train, valid) = corpus.split(0.75)?;
//! let train = WindowDataset::every_offset(train, 8)?; // shuffle it in the data loader
//! let valid = WindowDataset::non_overlapping(valid, 4)?;
//! let loader = DataLoaderBuilder::<B, _, _>::new(SequenceBatcher::new(0))
//!     .batch_size(4)
//!     .shuffle(42)
//!     .build(train);
//! let batch = loader.iter().next().expect("a batch");
//! assert_eq!(batch.targets.dims(), [4, 8]);
//! # Ok::<(), unfold_data::Error>(())
//! ```

use crate::error::Result;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use unfold_nn::train::{ClassificationBatch, SequenceBatch};

/// One sequence and its per-step targets (for a language model, the inputs shifted by one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceItem {
    /// Input token ids `x(1..τ)`.
    pub inputs: Vec<usize>,
    /// Target ids `y(1..τ)`, as many as the inputs.
    pub targets: Vec<usize>,
}

/// One sequence and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledSequence {
    /// Token ids `x(1..τ)`.
    pub ids: Vec<usize>,
    /// The class `y`.
    pub label: usize,
}

/// The windows of a token sequence: item `k` has inputs `ids[k·stride..k·stride + seq_len]`
/// and targets one token further on.
///
/// [`every_offset`](Self::every_offset) (stride 1) gives every window the data holds, for
/// training with a shuffling data loader (or burn-dataset's `SamplerDataset`); it is the
/// population [`WindowSampler`](crate::WindowSampler) draws from.
/// [`non_overlapping`](Self::non_overlapping) (stride `seq_len`) gives the windows of
/// [`sequential_batches`](crate::sequential_batches), in the same order: every token after the
/// first predicted once, for validation.
#[derive(Debug, Clone)]
pub struct WindowDataset {
    ids: Vec<usize>,
    seq_len: usize,
    stride: usize,
}

impl WindowDataset {
    /// Windows of `seq_len` tokens starting every `stride` tokens.
    ///
    /// # Errors
    ///
    /// [`unfold_nn::Error::Config`] if `seq_len` or `stride` is 0 or `ids` has fewer than
    /// `seq_len + 1` tokens; [`unfold_nn::Error::Empty`] if `ids` is empty (both in
    /// [`Error::Nn`](crate::Error::Nn)).
    pub fn new(ids: Vec<usize>, seq_len: usize, stride: usize) -> Result<Self> {
        if ids.is_empty() {
            return Err(unfold_nn::Error::Empty {
                arg: "ids",
                what: "there are no tokens to cut into windows".to_string(),
            }
            .into());
        }
        if seq_len == 0 {
            return Err(unfold_nn::Error::config("seq_len", seq_len, "must be at least 1").into());
        }
        if stride == 0 {
            return Err(unfold_nn::Error::config("stride", stride, "must be at least 1").into());
        }
        if seq_len >= ids.len() {
            return Err(unfold_nn::Error::config(
                "seq_len",
                seq_len,
                format!(
                    "a window of {seq_len} tokens needs at least {} tokens (inputs and their \
                     shifted targets), the data has {}",
                    seq_len + 1,
                    ids.len()
                ),
            )
            .into());
        }
        Ok(Self {
            ids,
            seq_len,
            stride,
        })
    }

    /// Every window (stride 1): `ids.len() - seq_len` items.
    pub fn every_offset(ids: Vec<usize>, seq_len: usize) -> Result<Self> {
        Self::new(ids, seq_len, 1)
    }

    /// Consecutive, non-overlapping windows (stride `seq_len`): `(ids.len() - 1) / seq_len`
    /// items.
    pub fn non_overlapping(ids: Vec<usize>, seq_len: usize) -> Result<Self> {
        Self::new(ids, seq_len, seq_len)
    }

    /// Tokens per window.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }
}

impl Dataset<SequenceItem> for WindowDataset {
    fn get(&self, index: usize) -> Option<SequenceItem> {
        let start = index.checked_mul(self.stride)?;
        let window = self.ids.get(start..start.checked_add(self.seq_len + 1)?)?;
        Some(SequenceItem {
            inputs: window[..self.seq_len].to_vec(),
            targets: window[1..].to_vec(),
        })
    }

    fn len(&self) -> usize {
        (self.ids.len() - 1 - self.seq_len) / self.stride + 1
    }
}

/// Rows of ids padded with `pad` to the longest, flattened row-major: (ids, lengths, longest).
fn pad_rows<'a>(rows: impl Iterator<Item = &'a [usize]>, pad: usize) -> (Vec<i64>, Vec<usize>) {
    let rows: Vec<&[usize]> = rows.collect();
    let lengths: Vec<usize> = rows.iter().map(|row| row.len()).collect();
    let time = lengths.iter().copied().max().unwrap_or(0);
    let mut ids = vec![pad as i64; rows.len() * time];
    for (r, row) in rows.iter().enumerate() {
        for (t, &id) in row.iter().enumerate() {
            ids[r * time + t] = id as i64;
        }
    }
    (ids, lengths)
}

/// `Some(lengths)` when they differ (the model must mask), `None` when all are equal.
fn ragged(lengths: Vec<usize>) -> Option<Vec<usize>> {
    lengths
        .iter()
        .any(|&len| len != lengths[0])
        .then_some(lengths)
}

/// Batches [`SequenceItem`]s into a [`SequenceBatch`] of token ids `[batch, longest]`.
///
/// Inputs and targets past a sequence's length are `pad_id`; the batch's lengths mask them out
/// of the loss. Burn's accuracy and perplexity metrics read every position: give them
/// `with_pad_token(pad_id)` with a `pad_id` no real target uses when sequences differ in length.
#[derive(Debug, Clone, Copy, Default)]
pub struct SequenceBatcher {
    pad_id: usize,
}

impl SequenceBatcher {
    /// A batcher padding with `pad_id`.
    pub fn new(pad_id: usize) -> Self {
        Self { pad_id }
    }
}

impl<B: Backend> Batcher<B, SequenceItem, SequenceBatch<B>> for SequenceBatcher {
    /// # Panics
    ///
    /// On an empty batch, an empty sequence, or targets that do not match their inputs in
    /// length (a data loader never builds the first; the others are bad data).
    fn batch(&self, items: Vec<SequenceItem>, device: &B::Device) -> SequenceBatch<B> {
        assert!(
            !items.is_empty(),
            "`items` is empty: a batch needs a sequence"
        );
        for (i, item) in items.iter().enumerate() {
            assert!(
                !item.inputs.is_empty() && item.inputs.len() == item.targets.len(),
                "`items`[{i}] has {} inputs and {} targets, expected as many of each (at least 1)",
                item.inputs.len(),
                item.targets.len()
            );
        }
        let (inputs, lengths) = pad_rows(items.iter().map(|s| s.inputs.as_slice()), self.pad_id);
        let (targets, _) = pad_rows(items.iter().map(|s| s.targets.as_slice()), self.pad_id);
        let shape = [items.len(), inputs.len() / items.len()];
        SequenceBatch {
            inputs: Tensor::<B, 2, Int>::from_data(TensorData::new(inputs, shape), device).into(),
            targets: Tensor::from_data(TensorData::new(targets, shape), device),
            lengths: ragged(lengths),
        }
    }
}

/// Batches [`LabelledSequence`]s into a [`ClassificationBatch`] of token ids
/// `[batch, longest]` (padded with `pad_id`, masked by the lengths) and labels `[batch]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClassificationBatcher {
    pad_id: usize,
}

impl ClassificationBatcher {
    /// A batcher padding with `pad_id` (any id: the lengths keep padding out of the summary).
    pub fn new(pad_id: usize) -> Self {
        Self { pad_id }
    }
}

impl<B: Backend> Batcher<B, LabelledSequence, ClassificationBatch<B>> for ClassificationBatcher {
    /// # Panics
    ///
    /// On an empty batch or an empty sequence.
    fn batch(&self, items: Vec<LabelledSequence>, device: &B::Device) -> ClassificationBatch<B> {
        assert!(
            !items.is_empty(),
            "`items` is empty: a batch needs a sequence"
        );
        if let Some(i) = items.iter().position(|s| s.ids.is_empty()) {
            panic!("`items`[{i}] is an empty sequence: every sequence needs at least 1 token");
        }
        let (ids, lengths) = pad_rows(items.iter().map(|s| s.ids.as_slice()), self.pad_id);
        let shape = [items.len(), ids.len() / items.len()];
        let labels: Vec<i64> = items.iter().map(|s| s.label as i64).collect();
        ClassificationBatch {
            inputs: Tensor::<B, 2, Int>::from_data(TensorData::new(ids, shape), device).into(),
            targets: Tensor::from_data(TensorData::new(labels, [items.len()]), device),
            lengths: ragged(lengths),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{sequential_batches, Corpus};

    type TestBackend = burn::backend::NdArray;

    fn ids_of(tensor: Tensor<TestBackend, 2, Int>) -> Vec<i64> {
        tensor.into_data().convert::<i64>().to_vec().unwrap()
    }

    #[test]
    fn non_overlapping_windows_batch_like_sequential_batches() {
        let corpus = Corpus::from_text("toy", "to be or not to be, that is the question").unwrap();
        let ids = corpus.ids().to_vec();
        let device = Default::default();
        let dataset = WindowDataset::non_overlapping(ids.clone(), 5).unwrap();
        let reference = sequential_batches::<TestBackend>(&ids, 3, 5, &device).unwrap();
        assert_eq!(dataset.len(), (ids.len() - 1) / 5);
        let items: Vec<SequenceItem> = dataset.iter().collect();
        for (chunk, expected) in items.chunks(3).zip(reference) {
            let batch: SequenceBatch<TestBackend> =
                SequenceBatcher::new(0).batch(chunk.to_vec(), &device);
            assert!(batch.lengths.is_none(), "equal windows need no mask");
            let unfold_nn::SequenceInput::Tokens(inputs) = batch.inputs else {
                panic!("token batch expected");
            };
            assert_eq!(ids_of(inputs), ids_of(expected.inputs));
            assert_eq!(ids_of(batch.targets), ids_of(expected.targets));
        }
    }

    #[test]
    fn every_offset_covers_each_window_once_and_stops_at_the_end() {
        let ids: Vec<usize> = (0..10).collect();
        let dataset = WindowDataset::every_offset(ids, 4).unwrap();
        assert_eq!(dataset.len(), 6);
        let last = dataset.get(5).unwrap();
        assert_eq!(last.inputs, vec![5, 6, 7, 8]);
        assert_eq!(last.targets, vec![6, 7, 8, 9]);
        assert!(dataset.get(6).is_none());
    }

    #[test]
    fn windows_longer_than_the_data_are_a_config_error() {
        let err = WindowDataset::every_offset(vec![1, 2, 3], 3).unwrap_err();
        assert!(err.to_string().contains("seq_len"), "{err}");
        let err = WindowDataset::new(vec![1, 2, 3], 1, 0).unwrap_err();
        assert!(err.to_string().contains("stride"), "{err}");
    }

    #[test]
    fn ragged_sequences_are_padded_and_carry_their_lengths() {
        let items = vec![
            LabelledSequence {
                ids: vec![3, 4, 5],
                label: 1,
            },
            LabelledSequence {
                ids: vec![6],
                label: 0,
            },
        ];
        let batch: ClassificationBatch<TestBackend> =
            ClassificationBatcher::new(9).batch(items, &Default::default());
        assert_eq!(batch.lengths, Some(vec![3, 1]));
        let unfold_nn::SequenceInput::Tokens(inputs) = batch.inputs else {
            panic!("token batch expected");
        };
        assert_eq!(ids_of(inputs), vec![3, 4, 5, 6, 9, 9]);
        let labels: Vec<i64> = batch.targets.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(labels, vec![1, 0]);
    }
}
