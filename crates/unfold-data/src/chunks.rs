//! Consecutive chunks of a corpus, for truncated back-propagation through time (stateful
//! training).
//!
//! Full BPTT over a sequence of length `T` keeps every step's activations alive until the
//! backward pass: memory grows linearly in `T`, and one update costs a forward and a backward
//! pass over all of it. Truncated BPTT cuts the corpus into chunks of `k = seq_len` steps and
//! carries the final hidden state of one chunk into the next as its initial state,
//! **detached** from the graph:
//!
//! ```text
//! h(0) of chunk n+1  =  detach(h(k) of chunk n)
//! ```
//!
//! - **Forward pass: exact.** Chunk `n+1` starts from the state the network really is in after
//!   everything before it, so the states (and losses) are those of one unroll over the whole
//!   concatenated stream (test `carried_state_equals_running_the_concatenated_sequence`).
//! - **Gradient: truncated.** The loss of chunk `n+1` sends no gradient into chunk `n`, so no
//!   gradient ever spans more than `k` steps: dependencies longer than `k` can be *used* (the
//!   state carries them) but not *learnt* through the gradient. Memory and time per update are
//!   those of `k` steps, whatever the stream's length.
//!
//! [`ChunkedCorpus`] lays the corpus out for this: the token ids are split into `batch_size`
//! contiguous streams, one per batch row, and batch `n` holds chunk `n` of every stream, so
//! row `r` of batch `n + 1` continues row `r` of batch `n` exactly. When the streams are used
//! up it starts again from their beginnings and says so ([`StatefulBatch::reset`]): the state
//! carried across that seam belongs to another part of the text and must be dropped.
//!
//! On the model side, pass the detached state through
//! [`UnrollOptions::with_initial_state`](unfold_nn::UnrollOptions::with_initial_state):
//!
//! ```
//! use burn::backend::{Autodiff, NdArray};
//! use burn::tensor::Tensor;
//! use unfold_data::chunks::{ChunkedCorpus, StatefulBatch};
//! use unfold_data::Corpus;
//! use unfold_nn::{sequence_nll, ElmanRnnConfig, Reduction, SequenceModel, UnrollOptions};
//!
//! type B = Autodiff<NdArray>;
//! let corpus = Corpus::from_text("toy", &"to be or not to be, that is the question. ".repeat(20))?;
//! let device = Default::default();
//! let model = ElmanRnnConfig::new(corpus.vocab().len(), 16, corpus.vocab().len()).init::<B>(&device);
//! let mut chunks = ChunkedCorpus::new(corpus.ids().to_vec(), 4, 8)?;
//! let mut carried: Option<Tensor<B, 2>> = None;
//! for _ in 0..5 {
//!     let StatefulBatch { batch, reset } = chunks.next_batch::<B>(&device);
//!     let options = match carried.take() {
//!         Some(h) if !reset => UnrollOptions::new().with_initial_state(h),
//!         _ => UnrollOptions::new(),
//!     };
//!     let out = model.try_forward(batch.inputs, &options)?;
//!     carried = Some(out.last.detach()); // the truncation: no gradient into the last chunk
//!     let loss = sequence_nll(out.logits, batch.targets, None, Reduction::MeanPerToken);
//!     let _grads = loss.backward();
//! }
//! # Ok::<(), unfold_data::Error>(())
//! ```

use crate::error::Result;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::batch::TokenBatch;

/// One batch of consecutive chunks.
#[derive(Clone, Debug)]
pub struct StatefulBatch<B: Backend> {
    /// The chunk of every stream: row `r` continues row `r` of the previous batch, unless
    /// `reset` is set.
    pub batch: TokenBatch<B>,
    /// True when this batch starts the streams over (the first batch, and the first after each
    /// pass): start from a zero state instead of the carried one.
    pub reset: bool,
}

/// Where a [`ChunkedCorpus`] is: enough to resume it exactly (it has no randomness).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPosition {
    /// Completed passes over the streams.
    pub pass: usize,
    /// Index of the next chunk within the pass.
    pub chunk: usize,
}

/// A token sequence split into `batch_size` contiguous streams read `seq_len` tokens at a time,
/// for stateful (truncated-BPTT) training. See the [module documentation](self).
///
/// With `n` tokens, each stream has `L = (n - 1) / batch_size` input tokens: stream `r` reads
/// inputs `ids[r L .. (r + 1) L]` and targets shifted one further. A pass has `L / seq_len`
/// chunks; the last `L mod seq_len` tokens of each stream are not read.
#[derive(Clone, Debug)]
pub struct ChunkedCorpus {
    ids: Vec<usize>,
    batch_size: usize,
    seq_len: usize,
    stream_len: usize,
    position: ChunkPosition,
}

impl ChunkedCorpus {
    /// Splits `ids` into `batch_size` streams read in chunks of `seq_len`.
    ///
    /// # Errors
    ///
    /// [`unfold_nn::Error::Config`] (in [`Error::Nn`](crate::Error::Nn)) if `batch_size` or
    /// `seq_len` is 0 or the streams are shorter than one chunk (`ids` needs at least
    /// `batch_size * seq_len + 1` tokens).
    pub fn new(ids: Vec<usize>, batch_size: usize, seq_len: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(
                unfold_nn::Error::config("batch_size", batch_size, "must be at least 1").into(),
            );
        }
        if seq_len == 0 {
            return Err(unfold_nn::Error::config("seq_len", seq_len, "must be at least 1").into());
        }
        let stream_len = ids.len().saturating_sub(1) / batch_size;
        if stream_len < seq_len {
            return Err(unfold_nn::Error::config(
                "seq_len",
                seq_len,
                format!(
                    "{batch_size} streams of at least {seq_len} tokens (plus one target) need \
                     {} tokens, the data has {}",
                    batch_size * seq_len + 1,
                    ids.len()
                ),
            )
            .into());
        }
        Ok(Self {
            ids,
            batch_size,
            seq_len,
            stream_len,
            position: ChunkPosition { pass: 0, chunk: 0 },
        })
    }

    /// Rows per batch (number of streams).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Tokens per chunk: the truncation length `k`.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Input tokens per stream, `L`.
    pub fn stream_len(&self) -> usize {
        self.stream_len
    }

    /// Chunks per pass, `L / seq_len`.
    pub fn chunks_per_pass(&self) -> usize {
        self.stream_len / self.seq_len
    }

    /// Where the next batch comes from.
    pub fn position(&self) -> ChunkPosition {
        self.position
    }

    /// Continues from `position` (as saved from [`position`](Self::position)).
    ///
    /// # Errors
    ///
    /// [`unfold_nn::Error::Config`] (in [`Error::Nn`](crate::Error::Nn)) if the chunk index is
    /// past the end of a pass (a position saved with
    /// another corpus, batch size or sequence length).
    pub fn seek(&mut self, position: ChunkPosition) -> Result<()> {
        if position.chunk >= self.chunks_per_pass() {
            return Err(unfold_nn::Error::config(
                "position.chunk",
                position.chunk,
                format!(
                    "a pass has {} chunks (was the position saved with other data, batch size or \
                     sequence length?)",
                    self.chunks_per_pass()
                ),
            )
            .into());
        }
        self.position = position;
        Ok(())
    }

    /// The next chunk of every stream, as host vectors (inputs, targets, reset), row-major.
    /// Advances exactly as [`next_batch`](Self::next_batch) does.
    pub fn next_windows(&mut self) -> (Vec<i64>, Vec<i64>, bool) {
        let ChunkPosition { pass, chunk } = self.position;
        let reset = chunk == 0;
        let offset = chunk * self.seq_len;
        let mut inputs = Vec::with_capacity(self.batch_size * self.seq_len);
        let mut targets = Vec::with_capacity(self.batch_size * self.seq_len);
        for row in 0..self.batch_size {
            let start = row * self.stream_len + offset;
            let window = &self.ids[start..start + self.seq_len + 1];
            inputs.extend(window[..self.seq_len].iter().map(|&id| id as i64));
            targets.extend(window[1..].iter().map(|&id| id as i64));
        }
        self.position = if chunk + 1 == self.chunks_per_pass() {
            ChunkPosition {
                pass: pass + 1,
                chunk: 0,
            }
        } else {
            ChunkPosition {
                pass,
                chunk: chunk + 1,
            }
        };
        (inputs, targets, reset)
    }

    /// The next chunk of every stream on `device`.
    pub fn next_batch<B: Backend>(&mut self, device: &B::Device) -> StatefulBatch<B> {
        let (inputs, targets, reset) = self.next_windows();
        let shape = [self.batch_size, self.seq_len];
        StatefulBatch {
            batch: TokenBatch {
                inputs: Tensor::from_data(TensorData::new(inputs, shape), device),
                targets: Tensor::from_data(TensorData::new(targets, shape), device),
            },
            reset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use burn::tensor::Tolerance;
    use unfold_nn::{sequence_nll, ElmanRnnConfig, Reduction, SequenceModel, UnrollOptions};

    type TestBackend = burn::backend::NdArray<f64>;
    type AutodiffBackend = burn::backend::Autodiff<TestBackend>;

    fn host(tensor: &Tensor<TestBackend, 2, Int>) -> Vec<i64> {
        tensor.to_data().iter::<i64>().collect()
    }

    #[test]
    fn each_row_continues_where_it_stopped_and_passes_restart_with_a_reset() {
        // 3 streams of (31 - 1) / 3 = 10 tokens, chunks of 4: 2 chunks per pass.
        let ids: Vec<usize> = (0..31).collect();
        let mut chunks = ChunkedCorpus::new(ids, 3, 4).unwrap();
        assert_eq!((chunks.stream_len(), chunks.chunks_per_pass()), (10, 2));
        let device = Default::default();
        let first = chunks.next_batch::<TestBackend>(&device);
        let second = chunks.next_batch::<TestBackend>(&device);
        let third = chunks.next_batch::<TestBackend>(&device);
        assert_eq!(
            (first.reset, second.reset, third.reset),
            (true, false, true)
        );
        assert_eq!(
            host(&first.batch.inputs),
            [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23]
        );
        assert_eq!(
            host(&second.batch.inputs),
            [4, 5, 6, 7, 14, 15, 16, 17, 24, 25, 26, 27]
        );
        assert_eq!(
            host(&second.batch.targets),
            [5, 6, 7, 8, 15, 16, 17, 18, 25, 26, 27, 28]
        );
        assert_eq!(host(&third.batch.inputs), host(&first.batch.inputs));
        assert_eq!(chunks.position(), ChunkPosition { pass: 1, chunk: 1 });
    }

    #[test]
    fn seeking_to_a_saved_position_resumes_the_same_batches() {
        let ids: Vec<usize> = (0..200).map(|i| (i * 13) % 17).collect();
        let mut straight = ChunkedCorpus::new(ids.clone(), 4, 5).unwrap();
        for _ in 0..7 {
            straight.next_windows();
        }
        let saved = straight.position();
        let mut resumed = ChunkedCorpus::new(ids.clone(), 4, 5).unwrap();
        resumed.seek(saved).unwrap();
        for _ in 0..5 {
            assert_eq!(straight.next_windows(), resumed.next_windows());
        }
        let mut other = ChunkedCorpus::new(ids, 4, 40).unwrap();
        assert!(matches!(
            other.seek(saved),
            Err(Error::Nn(unfold_nn::Error::Config {
                field: "position.chunk",
                ..
            }))
        ));
    }

    #[test]
    fn too_little_data_and_zero_sizes_are_config_errors() {
        let ids: Vec<usize> = (0..12).collect();
        assert!(ChunkedCorpus::new(ids.clone(), 2, 5).is_ok()); // 2 * 5 + 1 = 11 tokens
        let err = ChunkedCorpus::new(ids.clone(), 2, 6)
            .unwrap_err()
            .to_string();
        assert!(err.contains("need 13 tokens, the data has 12"), "{err}");
        assert!(matches!(
            ChunkedCorpus::new(ids.clone(), 0, 5),
            Err(Error::Nn(unfold_nn::Error::Config {
                field: "batch_size",
                ..
            }))
        ));
        assert!(matches!(
            ChunkedCorpus::new(ids, 2, 0),
            Err(Error::Nn(unfold_nn::Error::Config {
                field: "seq_len",
                ..
            }))
        ));
    }

    #[test]
    fn carried_state_equals_running_the_concatenated_sequence() {
        let device = Default::default();
        let ids: Vec<usize> = (0..97).map(|i| (i * 7 + i / 5) % 9).collect();
        let model = ElmanRnnConfig::new(9, 12, 9).init::<TestBackend>(&device);
        // Two chunks of 6 per stream, then the same two as one chunk of 12.
        let mut short = ChunkedCorpus::new(ids.clone(), 3, 6).unwrap();
        let first = short.next_batch::<TestBackend>(&device).batch;
        let second = short.next_batch::<TestBackend>(&device).batch;
        let mut long = ChunkedCorpus::new(ids, 3, 12).unwrap();
        // Same streams only if the stream length is the same: (97 - 1) / 3 = 32 either way.
        assert_eq!(long.stream_len(), short.stream_len());
        let whole = long.next_batch::<TestBackend>(&device).batch;

        let out1 = model.forward(first.inputs, &UnrollOptions::new());
        let out2 = model.forward(
            second.inputs.clone(),
            &UnrollOptions::new().with_initial_state(out1.last.detach()),
        );
        let all = model.forward(whole.inputs, &UnrollOptions::new());
        let second_half = all.states.clone().slice([0..3, 6..12, 0..12]);
        out2.states
            .into_data()
            .assert_approx_eq::<f64>(&second_half.into_data(), Tolerance::absolute(1e-12));
        out2.last
            .into_data()
            .assert_approx_eq::<f64>(&all.last.into_data(), Tolerance::absolute(1e-12));
        // Starting chunk 2 from zeros instead would not match: the carried state matters.
        let cold = model.forward(second.inputs, &UnrollOptions::new());
        let moved = (cold.states - all.states.slice([0..3, 6..12, 0..12]))
            .abs()
            .max()
            .into_scalar();
        assert!(moved > 1e-3);
    }

    #[test]
    fn detaching_cuts_the_gradient_at_the_chunk_boundary() {
        let device = Default::default();
        let ids: Vec<usize> = (0..61).map(|i| (i * 5 + i / 3) % 7).collect();
        let model = ElmanRnnConfig::new(7, 8, 7).init::<AutodiffBackend>(&device);
        let mut chunks = ChunkedCorpus::new(ids, 2, 5).unwrap();
        let first = chunks.next_batch::<AutodiffBackend>(&device).batch;
        let second = chunks.next_batch::<AutodiffBackend>(&device).batch;
        let carried = model.forward(first.inputs, &UnrollOptions::new()).last;
        // The gradient of chunk 2's loss with respect to W, starting from `h0`.
        let grad_w = |h0: Tensor<AutodiffBackend, 2>| {
            let out = model.forward(
                second.inputs.clone(),
                &UnrollOptions::new().with_initial_state(h0),
            );
            let loss = sequence_nll(out.logits, second.targets.clone(), None, Reduction::Sum);
            let grads = loss.backward();
            model.cell().w.grad(&grads).unwrap().into_data()
        };
        // Detached: exactly the gradient from a constant initial state of the same value.
        let constant = Tensor::from_data(carried.to_data(), &device);
        let detached = grad_w(carried.clone().detach());
        detached.assert_approx_eq::<f64>(&grad_w(constant), Tolerance::absolute(1e-14));
        // Not detached: the gradient also flows back through chunk 1 (full BPTT).
        let full = grad_w(carried);
        let differs = detached
            .iter::<f64>()
            .zip(full.iter::<f64>())
            .any(|(a, b)| (a - b).abs() > 1e-9);
        assert!(
            differs,
            "without detach the gradient should span both chunks"
        );
    }
}
