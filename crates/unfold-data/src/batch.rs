//! Batches of token windows for next-character prediction.

use crate::error::Result;
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A batch of token windows and their next-character targets.
///
/// Row `r` holds one window of the data: if it starts at token `s`, `inputs[r]` is
/// `ids[s..s + seq_len]` and `targets[r]` is `ids[s + 1..s + seq_len + 1]`, the same window
/// shifted by one character, so `targets[r][t]` is the character that follows
/// `inputs[r][t]`.
#[derive(Clone, Debug)]
pub struct TokenBatch<B: Backend> {
    /// Input token ids, shape `[batch_size, seq_len]`.
    pub inputs: Tensor<B, 2, Int>,
    /// Target token ids (the inputs shifted by one), shape `[batch_size, seq_len]`.
    pub targets: Tensor<B, 2, Int>,
}

impl<B: Backend> TokenBatch<B> {
    /// The number of windows (rows) in the batch.
    pub fn batch_size(&self) -> usize {
        self.inputs.dims()[0]
    }

    /// The number of tokens per window (columns).
    pub fn seq_len(&self) -> usize {
        self.inputs.dims()[1]
    }

    /// Builds the batch whose windows start at `starts`, copying them to `device`.
    fn from_starts(ids: &[usize], starts: &[usize], seq_len: usize, device: &B::Device) -> Self {
        let (inputs, targets) = windows(ids, starts, seq_len);
        let shape = [starts.len(), seq_len];
        Self {
            inputs: Tensor::from_data(TensorData::new(inputs, shape), device),
            targets: Tensor::from_data(TensorData::new(targets, shape), device),
        }
    }
}

/// The input and target windows starting at `starts`, flattened row-major as `i64`.
fn windows(ids: &[usize], starts: &[usize], seq_len: usize) -> (Vec<i64>, Vec<i64>) {
    let mut inputs = Vec::with_capacity(starts.len() * seq_len);
    let mut targets = Vec::with_capacity(starts.len() * seq_len);
    for &start in starts {
        let window = &ids[start..start + seq_len + 1];
        inputs.extend(window[..seq_len].iter().map(|&id| id as i64));
        targets.extend(window[1..].iter().map(|&id| id as i64));
    }
    (inputs, targets)
}

/// Checks that `num_tokens` tokens can fill windows of `batch_size` x `seq_len`.
fn check_windows(num_tokens: usize, batch_size: usize, seq_len: usize) -> unfold_nn::Result<()> {
    if batch_size == 0 {
        return Err(unfold_nn::Error::config(
            "batch_size",
            batch_size,
            "must be at least 1",
        ));
    }
    if seq_len == 0 {
        return Err(unfold_nn::Error::config(
            "seq_len",
            seq_len,
            "must be at least 1",
        ));
    }
    if num_tokens == 0 {
        return Err(unfold_nn::Error::Empty {
            arg: "ids",
            what: "there are no tokens to batch".to_string(),
        });
    }
    if seq_len >= num_tokens {
        return Err(unfold_nn::Error::config(
            "seq_len",
            seq_len,
            format!(
                "sequence length {seq_len} needs at least {} tokens (inputs and their \
                 shifted targets), the data has {num_tokens}",
                seq_len + 1
            ),
        ));
    }
    Ok(())
}

/// Draws random training windows from a token sequence.
///
/// Each batch holds `batch_size` windows whose start offsets are drawn independently and
/// uniformly from every offset at which a whole window (`seq_len + 1` tokens, for the
/// inputs and their shifted targets) fits. The offsets come from a
/// [`StdRng`] seeded with the given seed, so the sequence of batches is the same on every
/// run with the same seed.
#[derive(Clone, Debug)]
pub struct WindowSampler {
    ids: Vec<usize>,
    batch_size: usize,
    seq_len: usize,
    rng: StdRng,
}

impl WindowSampler {
    /// Creates a sampler of `batch_size` windows of `seq_len` tokens from `ids`, seeded with
    /// `seed`.
    ///
    /// # Errors
    ///
    /// - [`unfold_nn::Error::Config`] (in [`Error::Nn`](crate::Error::Nn)) if `batch_size` or
    ///   `seq_len` is 0, or if `ids` has fewer than `seq_len + 1` tokens.
    /// - [`unfold_nn::Error::Empty`] (in [`Error::Nn`](crate::Error::Nn)) if `ids` is empty.
    pub fn new(ids: Vec<usize>, batch_size: usize, seq_len: usize, seed: u64) -> Result<Self> {
        check_windows(ids.len(), batch_size, seq_len)?;
        Ok(Self {
            ids,
            batch_size,
            seq_len,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// The number of windows per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The number of tokens per window.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// The token ids windows are drawn from.
    pub fn ids(&self) -> &[usize] {
        &self.ids
    }

    /// The number of distinct window start offsets, `ids().len() - seq_len()`.
    pub fn num_windows(&self) -> usize {
        self.ids.len() - self.seq_len
    }

    /// Draws the next batch's start offsets.
    fn next_starts(&mut self) -> Vec<usize> {
        let num_windows = self.num_windows();
        (0..self.batch_size)
            .map(|_| self.rng.random_range(0..num_windows))
            .collect()
    }

    /// Draws the next batch on the host: the input and target windows, each flattened
    /// row-major (`batch_size * seq_len` ids, row `r` at `r * seq_len..(r + 1) * seq_len`).
    ///
    /// This advances the sampler exactly as [`next_batch`](Self::next_batch) does.
    pub fn next_windows(&mut self) -> (Vec<i64>, Vec<i64>) {
        let starts = self.next_starts();
        windows(&self.ids, &starts, self.seq_len)
    }

    /// Draws the next batch of `batch_size` random windows onto `device`.
    pub fn next_batch<B: Backend>(&mut self, device: &B::Device) -> TokenBatch<B> {
        let starts = self.next_starts();
        TokenBatch::from_starts(&self.ids, &starts, self.seq_len, device)
    }
}

/// Cuts `ids` into consecutive, non-overlapping windows and batches them in order, for
/// validation.
///
/// Window `k` has inputs `ids[k * seq_len..(k + 1) * seq_len]` and targets shifted one
/// further, so the inputs of all windows tile the data without overlap and every token
/// after the first is predicted exactly once (while fewer than `seq_len` tokens are left
/// over). Batch `i` holds windows `i * batch_size..(i + 1) * batch_size` as its rows, in
/// order; the last batch may have fewer rows. A trailing partial window (fewer than
/// `seq_len + 1` tokens left) is dropped. The result is the same on every call.
///
/// # Errors
///
/// The same as [`WindowSampler::new`]: [`unfold_nn::Error::Config`] if `batch_size` or
/// `seq_len` is 0 or `ids` has fewer than `seq_len + 1` tokens, [`unfold_nn::Error::Empty`] if
/// `ids` is empty (both in [`Error::Nn`](crate::Error::Nn)).
pub fn sequential_batches<B: Backend>(
    ids: &[usize],
    batch_size: usize,
    seq_len: usize,
    device: &B::Device,
) -> Result<Vec<TokenBatch<B>>> {
    check_windows(ids.len(), batch_size, seq_len)?;
    let num_windows = (ids.len() - 1) / seq_len;
    let starts: Vec<usize> = (0..num_windows).map(|k| k * seq_len).collect();
    Ok(starts
        .chunks(batch_size)
        .map(|chunk| TokenBatch::from_starts(ids, chunk, seq_len, device))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Corpus, Error};

    type TestBackend = burn::backend::NdArray;

    fn host(tensor: &Tensor<TestBackend, 2, Int>) -> Vec<i64> {
        tensor.to_data().iter::<i64>().collect()
    }

    /// Finds where `window` starts in `ids`, if anywhere.
    fn find(ids: &[usize], window: &[i64]) -> Option<usize> {
        ids.windows(window.len())
            .position(|w| w.iter().zip(window).all(|(&a, &b)| a as i64 == b))
    }

    #[test]
    fn sampled_targets_are_inputs_shifted_by_one_in_the_data() {
        let corpus = Corpus::tiny_shakespeare();
        let ids = corpus.ids()[..20_000].to_vec();
        let device = Default::default();
        let mut sampler = WindowSampler::new(ids.clone(), 4, 16, 7).unwrap();
        let batch = sampler.next_batch::<TestBackend>(&device);
        assert_eq!((batch.batch_size(), batch.seq_len()), (4, 16));
        assert_eq!(batch.targets.dims(), [4, 16]);
        let (inputs, targets) = (host(&batch.inputs), host(&batch.targets));
        for row in 0..4 {
            let input = &inputs[row * 16..(row + 1) * 16];
            let target = &targets[row * 16..(row + 1) * 16];
            assert_eq!(input[1..], target[..15]);
            // The window with its last target must be a real stretch of the data.
            let mut full = input.to_vec();
            full.push(target[15]);
            let start = find(&ids, &full).expect("window not found in the data");
            assert_eq!(
                ids[start + 1..start + 17]
                    .iter()
                    .map(|&i| i as i64)
                    .collect::<Vec<_>>(),
                target
            );
        }
    }

    #[test]
    fn sampler_is_deterministic_under_a_seed_and_differs_across_seeds() {
        let ids: Vec<usize> = (0..1000).map(|i| i % 37).collect();
        let draws = |seed| {
            let mut sampler = WindowSampler::new(ids.clone(), 8, 10, seed).unwrap();
            (0..3).map(|_| sampler.next_windows()).collect::<Vec<_>>()
        };
        assert_eq!(draws(1), draws(1));
        assert_ne!(draws(1), draws(2));
        // Successive batches from one sampler differ too.
        let first = draws(1);
        assert_ne!(first[0], first[1]);
    }

    #[test]
    fn next_batch_and_next_windows_draw_the_same_windows() {
        let ids: Vec<usize> = (0..500).collect();
        let mut a = WindowSampler::new(ids.clone(), 3, 5, 42).unwrap();
        let mut b = WindowSampler::new(ids, 3, 5, 42).unwrap();
        let batch = a.next_batch::<TestBackend>(&Default::default());
        let (inputs, targets) = b.next_windows();
        assert_eq!(host(&batch.inputs), inputs);
        assert_eq!(host(&batch.targets), targets);
    }

    #[test]
    fn sampler_reaches_every_start_including_the_last() {
        // 4 tokens, seq_len 2: starts 0 and 1 are the only windows.
        let ids = vec![0, 1, 2, 3];
        let mut sampler = WindowSampler::new(ids, 64, 2, 3).unwrap();
        assert_eq!(sampler.num_windows(), 2);
        let (inputs, targets) = sampler.next_windows();
        let mut firsts: Vec<i64> = inputs.chunks(2).map(|row| row[0]).collect();
        firsts.sort_unstable();
        firsts.dedup();
        assert_eq!(firsts, vec![0, 1]);
        assert!(targets.iter().all(|&t| (1..=3).contains(&t)));
    }

    #[test]
    fn seq_len_longer_than_the_data_is_a_config_error() {
        let ids = vec![0, 1, 2, 3, 4];
        match WindowSampler::new(ids.clone(), 2, 5, 0) {
            Err(Error::Nn(unfold_nn::Error::Config { field, reason, .. })) => {
                assert_eq!(field, "seq_len");
                assert!(reason.contains("needs at least 6 tokens"), "{reason}");
                assert!(reason.contains("has 5"), "{reason}");
            }
            other => panic!("expected Config error, got {other:?}"),
        }
        // seq_len + 1 == len just fits.
        assert!(WindowSampler::new(ids.clone(), 2, 4, 0).is_ok());
        assert!(matches!(
            sequential_batches::<TestBackend>(&ids, 2, 5, &Default::default()),
            Err(Error::Nn(unfold_nn::Error::Config {
                field: "seq_len",
                ..
            }))
        ));
    }

    #[test]
    fn zero_batch_size_or_seq_len_and_empty_ids_are_errors() {
        let ids = vec![0, 1, 2, 3];
        let device = Default::default();
        assert!(matches!(
            WindowSampler::new(ids.clone(), 0, 2, 0),
            Err(Error::Nn(unfold_nn::Error::Config {
                field: "batch_size",
                ..
            }))
        ));
        assert!(matches!(
            WindowSampler::new(ids.clone(), 2, 0, 0),
            Err(Error::Nn(unfold_nn::Error::Config {
                field: "seq_len",
                ..
            }))
        ));
        assert!(matches!(
            WindowSampler::new(Vec::new(), 2, 2, 0),
            Err(Error::Nn(unfold_nn::Error::Empty { arg: "ids", .. }))
        ));
        assert!(matches!(
            sequential_batches::<TestBackend>(&ids, 0, 2, &device),
            Err(Error::Nn(unfold_nn::Error::Config {
                field: "batch_size",
                ..
            }))
        ));
        assert!(matches!(
            sequential_batches::<TestBackend>(&ids, 2, 0, &device),
            Err(Error::Nn(unfold_nn::Error::Config {
                field: "seq_len",
                ..
            }))
        ));
    }

    #[test]
    fn sequential_batches_cover_the_data_in_order_without_overlap() {
        // 23 tokens, seq_len 4: windows start at 0, 4, 8, 12, 16 (16..21 fits, 20..25 does
        // not), so 5 windows in batches of 2, 2, 1.
        let ids: Vec<usize> = (0..23).map(|i| (i * 7) % 23).collect();
        let batches = sequential_batches::<TestBackend>(&ids, 2, 4, &Default::default()).unwrap();
        assert_eq!(
            batches
                .iter()
                .map(TokenBatch::batch_size)
                .collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        let inputs: Vec<i64> = batches.iter().flat_map(|b| host(&b.inputs)).collect();
        let targets: Vec<i64> = batches.iter().flat_map(|b| host(&b.targets)).collect();
        let expected: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        // Inputs tile ids[0..20] in order; targets tile ids[1..21].
        assert_eq!(inputs, expected[..20]);
        assert_eq!(targets, expected[1..21]);
        assert!(batches.iter().all(|b| b.seq_len() == 4));
    }

    #[test]
    fn sequential_batches_use_the_last_token_when_it_fits_exactly() {
        // 9 tokens, seq_len 4: windows at 0 and 4, the second's last target is ids[8].
        let ids: Vec<usize> = (0..9).collect();
        let batches = sequential_batches::<TestBackend>(&ids, 8, 4, &Default::default()).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].batch_size(), 2);
        assert_eq!(host(&batches[0].targets), (1..9).collect::<Vec<i64>>());
    }
}
