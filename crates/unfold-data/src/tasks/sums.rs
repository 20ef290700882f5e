//! Per-step tasks with a known rule: running sums, Elman's temporal XOR, running parity.
//!
//! Each generator draws `count` sequences of `len` tokens from a seeded [`StdRng`] and gives
//! the target of every step, as [`Sequences`]:
//!
//! | task | inputs `x(t)` | target `y(t)` | tokens |
//! |---|---|---|---|
//! | [`running_sums`] | uniform digits | `Σ x(1..t) mod 10` | 10 |
//! | [`temporal_xor`] | triples `a, b, a XOR b` of uniform bits `a`, `b` | `x(t + 1)`: the next bit | 2 |
//! | [`running_parity`] | uniform bits | `x(1) XOR … XOR x(t)` | 2 |
//!
//! The running sum carries all the state a model needs in its own output
//! (`y(t) = y(t-1) + x(t) mod 10`), which suits a model that feeds its output back (Jordan);
//! in temporal XOR (Elman, 1990) only every third bit is predictable; the running parity needs
//! one bit of memory that every input flips or keeps.
//!
//! ```
//! use rand::{rngs::StdRng, SeedableRng};
//! use unfold_data::tasks::sums::running_sums;
//!
//! let mut rng = StdRng::seed_from_u64(1);
//! let set = running_sums(2, 5, &mut rng);
//! assert_eq!((set.len(), set.seq_len(), set.vocab_size), (2, 5, 10));
//! let x = &set.inputs[0];
//! assert_eq!(set.targets[0][4], x.iter().sum::<usize>() % 10);
//!
//! type B = burn::backend::NdArray;
//! let (inputs, targets) = set.tensors::<B>(&Default::default());
//! assert_eq!(inputs.dims(), [2, 5]);
//! ```

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;

use crate::error::Result;

/// Sequences of token ids and the target of every step, on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequences {
    /// `count` rows of `len` input ids.
    pub inputs: Vec<Vec<usize>>,
    /// `count` rows of `len` target ids: `targets[r][t]` is the answer after reading
    /// `inputs[r][..=t]`.
    pub targets: Vec<Vec<usize>>,
    /// Inputs and targets are in `0..vocab_size`.
    pub vocab_size: usize,
}

/// The signature every generator here shares: `(count, len, rng)`.
pub type Generator = fn(usize, usize, &mut StdRng) -> Sequences;

impl Sequences {
    /// The number of sequences.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// Whether there are no sequences.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Tokens per sequence (0 when there are no sequences).
    pub fn seq_len(&self) -> usize {
        self.inputs.first().map_or(0, Vec::len)
    }

    /// Inputs and targets as `[count, len]` token-id tensors on `device`.
    ///
    /// # Panics
    ///
    /// If the rows differ in length (a generator never makes such rows).
    pub fn tensors<B: Backend>(
        &self,
        device: &B::Device,
    ) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
        (
            ids_tensor(&self.inputs, self.seq_len(), device),
            ids_tensor(&self.targets, self.seq_len(), device),
        )
    }

    /// The sequences as burn-dataset items for
    /// [`SequenceBatcher`](crate::dataset::SequenceBatcher) (feature `train`).
    #[cfg(feature = "train")]
    pub fn items(&self) -> Vec<crate::dataset::SequenceItem> {
        self.inputs
            .iter()
            .zip(&self.targets)
            .map(|(inputs, targets)| crate::dataset::SequenceItem {
                inputs: inputs.clone(),
                targets: targets.clone(),
            })
            .collect()
    }
}

fn ids_tensor<B: Backend>(
    rows: &[Vec<usize>],
    time: usize,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let data: Vec<i64> = rows.iter().flatten().map(|&id| id as i64).collect();
    Tensor::from_data(TensorData::new(data, [rows.len(), time]), device)
}

/// Running sum mod 10 of uniform digits: `y(t) = (x(1) + … + x(t)) mod 10`.
pub fn running_sums(count: usize, len: usize, rng: &mut StdRng) -> Sequences {
    let inputs: Vec<Vec<usize>> = (0..count)
        .map(|_| (0..len).map(|_| rng.random_range(0..10)).collect())
        .collect();
    let targets = inputs
        .iter()
        .map(|x| {
            x.iter()
                .scan(0, |sum, &d| {
                    *sum = (*sum + d) % 10;
                    Some(*sum)
                })
                .collect()
        })
        .collect();
    Sequences {
        inputs,
        targets,
        vocab_size: 10,
    }
}

/// Elman's temporal XOR: a stream of triples `a, b, a XOR b` of uniform bits; the target is the
/// next bit of the stream. Every sequence starts at a triple's first bit.
pub fn temporal_xor(count: usize, len: usize, rng: &mut StdRng) -> Sequences {
    let mut inputs = Vec::with_capacity(count);
    let mut targets = Vec::with_capacity(count);
    for _ in 0..count {
        let mut bits = Vec::with_capacity(len + 3);
        while bits.len() < len + 1 {
            let (a, b) = (rng.random_range(0..2), rng.random_range(0..2));
            bits.extend([a, b, a ^ b]);
        }
        inputs.push(bits[..len].to_vec());
        targets.push(bits[1..len + 1].to_vec());
    }
    Sequences {
        inputs,
        targets,
        vocab_size: 2,
    }
}

/// Uniform bits; the target is the parity of all bits so far, `y(t) = x(1) XOR … XOR x(t)`.
pub fn running_parity(count: usize, len: usize, rng: &mut StdRng) -> Sequences {
    let inputs: Vec<Vec<usize>> = (0..count)
        .map(|_| (0..len).map(|_| rng.random_range(0..2)).collect())
        .collect();
    let targets = inputs
        .iter()
        .map(|x| {
            x.iter()
                .scan(0, |p, &b| {
                    *p ^= b;
                    Some(*p)
                })
                .collect()
        })
        .collect();
    Sequences {
        inputs,
        targets,
        vocab_size: 2,
    }
}

/// The accuracy at each position: entry `t` is the fraction of rows whose prediction at step
/// `t` equals the target (e.g. to see how a free-running model's accuracy decays along the
/// sequence).
///
/// # Errors
///
/// [`unfold_nn::Error::Empty`] if `targets` is empty; [`unfold_nn::Error::Shape`] (argument
/// `predicted`) if `predicted` does not have the rows and lengths of `targets`, or `targets`'
/// rows differ in length (argument `targets`); all in [`Error::Nn`](crate::Error::Nn).
pub fn accuracy_by_position(predicted: &[Vec<usize>], targets: &[Vec<usize>]) -> Result<Vec<f64>> {
    let Some(first) = targets.first() else {
        return Err(unfold_nn::Error::Empty {
            arg: "targets",
            what: "there is no sequence to score".into(),
        }
        .into());
    };
    let len = first.len();
    if let Some(row) = targets.iter().find(|row| row.len() != len) {
        return Err(unfold_nn::Error::shape(
            "targets",
            format!("rows of one length ({len}, as the first)"),
            &[targets.len(), row.len()],
        )
        .into());
    }
    let shape_ok = predicted.len() == targets.len() && predicted.iter().all(|row| row.len() == len);
    if !shape_ok {
        let got = predicted
            .iter()
            .find(|row| row.len() != len)
            .map_or(len, Vec::len);
        return Err(unfold_nn::Error::shape(
            "predicted",
            format!("{} rows of {len} (as the targets)", targets.len()),
            &[predicted.len(), got],
        )
        .into());
    }
    Ok((0..len)
        .map(|t| {
            let right = predicted
                .iter()
                .zip(targets)
                .filter(|(p, y)| p[t] == y[t])
                .count();
            right as f64 / targets.len() as f64
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use rand::SeedableRng;

    type TestBackend = burn::backend::NdArray;

    const GENERATORS: [(&str, Generator); 3] = [
        ("running sums", running_sums),
        ("temporal XOR", temporal_xor),
        ("running parity", running_parity),
    ];

    fn make(generator: Generator, count: usize, len: usize, seed: u64) -> Sequences {
        generator(count, len, &mut StdRng::seed_from_u64(seed))
    }

    #[test]
    fn generators_are_deterministic_under_the_seed_and_shaped() {
        for (name, generator) in GENERATORS {
            let a = make(generator, 20, 13, 4);
            assert_eq!(a, make(generator, 20, 13, 4), "{name}");
            assert_ne!(a, make(generator, 20, 13, 5), "{name}");
            assert_eq!((a.len(), a.seq_len()), (20, 13), "{name}");
            assert!(a.targets.iter().all(|row| row.len() == 13), "{name}");
            // Every id is in the vocabulary, and every one of them occurs.
            let ids: Vec<usize> = a
                .inputs
                .iter()
                .chain(&a.targets)
                .flatten()
                .copied()
                .collect();
            assert!(ids.iter().all(|&id| id < a.vocab_size), "{name}");
            assert_eq!(
                ids.iter().collect::<std::collections::HashSet<_>>().len(),
                a.vocab_size,
                "{name}"
            );
        }
        assert_eq!(make(running_sums, 1, 1, 0).vocab_size, 10);
        assert!(make(running_parity, 0, 5, 0).is_empty());
        assert_eq!(make(temporal_xor, 3, 0, 0).seq_len(), 0);
    }

    /// Pins the generators: the draws of the `jordan` example before they moved here.
    #[test]
    fn seed_42_draws_what_the_jordan_example_drew() {
        let sums = make(running_sums, 2, 6, 42);
        assert_eq!(sums.inputs, [[1, 5, 2, 5, 8, 6], [9, 4, 9, 0, 6, 4]]);
        assert_eq!(sums.targets, [[1, 6, 8, 3, 1, 7], [9, 3, 2, 2, 8, 2]]);
        let xor = make(temporal_xor, 2, 6, 42);
        assert_eq!(xor.inputs, [[0, 1, 1, 0, 1, 1], [1, 0, 1, 1, 0, 1]]);
        assert_eq!(xor.targets, [[1, 1, 0, 1, 1, 1], [0, 1, 1, 0, 1, 1]]);
        let parity = make(running_parity, 2, 6, 42);
        assert_eq!(parity.inputs, [[0, 1, 0, 1, 1, 1], [1, 0, 1, 0, 1, 0]]);
        assert_eq!(parity.targets, [[0, 1, 1, 0, 1, 0], [1, 1, 0, 0, 1, 1]]);
    }

    #[test]
    fn running_sums_are_the_prefix_sums_mod_10() {
        let set = make(running_sums, 50, 30, 1);
        for (x, y) in set.inputs.iter().zip(&set.targets) {
            for t in 0..x.len() {
                assert_eq!(y[t], x[..=t].iter().sum::<usize>() % 10);
            }
        }
    }

    #[test]
    fn temporal_xor_is_a_stream_of_triples_predicting_the_next_bit() {
        for len in [1, 2, 3, 4, 29] {
            let set = make(temporal_xor, 50, len, len as u64);
            for (x, y) in set.inputs.iter().zip(&set.targets) {
                // The stream: the inputs and then the last target.
                let mut stream = x.clone();
                stream.push(y[len - 1]);
                assert_eq!(stream[1..], y[..]);
                for triple in stream.chunks_exact(3) {
                    assert_eq!(triple[2], triple[0] ^ triple[1], "{stream:?}");
                }
            }
        }
    }

    #[test]
    fn running_parity_is_the_count_of_ones_so_far_mod_2() {
        let set = make(running_parity, 50, 30, 2);
        for (x, y) in set.inputs.iter().zip(&set.targets) {
            for t in 0..x.len() {
                assert_eq!(y[t], x[..=t].iter().filter(|&&b| b == 1).count() % 2);
            }
        }
    }

    #[test]
    fn tensors_are_the_rows() {
        let set = make(running_sums, 3, 4, 9);
        let (inputs, targets) = set.tensors::<TestBackend>(&Default::default());
        assert_eq!(inputs.dims(), [3, 4]);
        let flat = |rows: &[Vec<usize>]| -> Vec<i64> {
            rows.iter().flatten().map(|&id| id as i64).collect()
        };
        assert_eq!(
            inputs.into_data().iter::<i64>().collect::<Vec<_>>(),
            flat(&set.inputs)
        );
        assert_eq!(
            targets.into_data().iter::<i64>().collect::<Vec<_>>(),
            flat(&set.targets)
        );
    }

    #[cfg(feature = "train")]
    #[test]
    fn items_pair_each_row_with_its_targets() {
        let set = make(temporal_xor, 4, 6, 3);
        let items = set.items();
        assert_eq!(items.len(), 4);
        for (item, (x, y)) in items.iter().zip(set.inputs.iter().zip(&set.targets)) {
            assert_eq!((&item.inputs, &item.targets), (x, y));
        }
    }

    #[test]
    fn accuracy_by_position_scores_each_step() {
        let targets = vec![vec![1, 2, 3], vec![1, 2, 3], vec![0, 0, 0], vec![4, 5, 6]];
        let predicted = vec![vec![1, 2, 0], vec![1, 0, 0], vec![0, 0, 0], vec![0, 5, 6]];
        assert_eq!(
            accuracy_by_position(&predicted, &targets).unwrap(),
            vec![0.75, 0.75, 0.5]
        );
        assert!(matches!(
            accuracy_by_position(&[], &[]),
            Err(Error::Nn(unfold_nn::Error::Empty { arg: "targets", .. }))
        ));
        for bad in [
            &predicted[..3],
            &[vec![1, 2], vec![1, 2], vec![0, 0], vec![4, 5]][..],
        ] {
            assert!(matches!(
                accuracy_by_position(bad, &targets),
                Err(Error::Nn(unfold_nn::Error::Shape {
                    arg: "predicted",
                    ..
                }))
            ));
        }
        assert!(matches!(
            accuracy_by_position(&predicted, &[vec![1, 2, 3], vec![1]]),
            Err(Error::Nn(unfold_nn::Error::Shape { arg: "targets", .. }))
        ));
    }
}
