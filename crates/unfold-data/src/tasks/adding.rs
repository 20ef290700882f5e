//! The adding problem (Hochreiter & Schmidhuber, 1997): a classic difficulty for vanilla RNNs.
//!
//! A sequence has `T` steps of two features `[value, marker]`: the values are uniform in
//! `[0, 1)`, and exactly two steps are marked (marker 1, every other step 0), one in the first
//! half (`0..T/2`) and one in the second (`T/2..T`). The target is the sum of the two marked
//! values. The marked steps are at least one and up to `T - 1` steps apart, so the network must
//! remember the first marked value across the gap.
//!
//! A prediction counts as correct when its absolute error is below [`TOLERANCE`]. Always
//! predicting 1 (the mean of the target) has a mean squared error of `1/6` in expectation (the
//! variance of a sum of two uniform values): the baseline to beat.
//!
//! ```
//! use rand::{rngs::StdRng, SeedableRng};
//! use unfold_data::tasks::adding::adding_problem;
//!
//! let mut rng = StdRng::seed_from_u64(7);
//! let set = adding_problem(4, 10, &mut rng)?;
//! assert_eq!((set.len(), set.time()), (4, 10));
//! let [first, second] = set.markers(0);
//! assert!(first < 5 && (5..10).contains(&second));
//! let steps = set.sequence(0);
//! assert_eq!(set.targets()[0], steps[2 * first] + steps[2 * second]);
//!
//! type B = burn::backend::NdArray;
//! let (x, y) = set.tensors::<B>(0..4, &Default::default())?;
//! assert_eq!((x.dims(), y.dims()), ([4, 10, 2], [4, 1]));
//! # Ok::<(), unfold_data::Error>(())
//! ```

use std::ops::Range;

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;

use crate::error::Result;

/// Features per step: the value and the marker.
pub const FEATURES: usize = 2;

/// The success criterion: a prediction is correct when its absolute error is below this.
pub const TOLERANCE: f64 = 0.04;

/// The fraction of `errors` (prediction minus target) whose magnitude is below [`TOLERANCE`];
/// NaN for no errors.
pub fn within_tolerance(errors: &[f64]) -> f64 {
    errors.iter().filter(|e| e.abs() < TOLERANCE).count() as f64 / errors.len() as f64
}

/// Adding-problem sequences, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct AddingSet {
    /// `[len, time, 2]`, row-major.
    inputs: Vec<f32>,
    /// `[len]`.
    targets: Vec<f32>,
    time: usize,
}

/// `count` adding-problem sequences of `time` steps, drawn from `rng`.
///
/// Each sequence draws its `time` values, then the marked step of the first half, then that of
/// the second, so `count` sequences are the same draws as `count` calls for one sequence each.
///
/// # Errors
///
/// [`unfold_nn::Error::Config`] (in [`Error::Nn`](crate::Error::Nn)) if `time < 2` (one marker
/// in each half needs two steps).
pub fn adding_problem(count: usize, time: usize, rng: &mut StdRng) -> Result<AddingSet> {
    if time < 2 {
        return Err(unfold_nn::Error::config(
            "time",
            time,
            "the adding problem needs at least 2 steps (one marker in each half)",
        )
        .into());
    }
    let mut x = vec![0f32; count * time * FEATURES];
    let mut y = vec![0f32; count];
    for b in 0..count {
        for t in 0..time {
            x[(b * time + t) * FEATURES] = rng.random::<f32>();
        }
        let half = time / 2;
        for at in [rng.random_range(0..half), rng.random_range(half..time)] {
            x[(b * time + at) * FEATURES + 1] = 1.0;
            y[b] += x[(b * time + at) * FEATURES];
        }
    }
    Ok(AddingSet {
        inputs: x,
        targets: y,
        time,
    })
}

impl AddingSet {
    /// The number of sequences.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether there are no sequences.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Steps per sequence, `T`.
    pub fn time(&self) -> usize {
        self.time
    }

    /// Every sequence's `[value, marker]` steps, `[len, time, 2]` row-major.
    pub fn inputs(&self) -> &[f32] {
        &self.inputs
    }

    /// Every sequence's target, the sum of its two marked values.
    pub fn targets(&self) -> &[f32] {
        &self.targets
    }

    /// Sequence `index`'s steps, `[time, 2]` row-major.
    ///
    /// # Panics
    ///
    /// If `index >= len()`.
    pub fn sequence(&self, index: usize) -> &[f32] {
        let size = self.time * FEATURES;
        &self.inputs[index * size..(index + 1) * size]
    }

    /// The two marked steps of sequence `index`, first-half one first.
    ///
    /// # Panics
    ///
    /// If `index >= len()`.
    pub fn markers(&self, index: usize) -> [usize; 2] {
        let marked: Vec<usize> = self
            .sequence(index)
            .chunks(FEATURES)
            .enumerate()
            .filter(|(_, step)| step[1] == 1.0)
            .map(|(t, _)| t)
            .collect();
        [marked[0], marked[1]]
    }

    /// Sequence `index` as an item, or `None` if `index >= len()`.
    pub fn item(&self, index: usize) -> Option<AddingItem> {
        (index < self.len()).then(|| AddingItem {
            inputs: self.sequence(index).to_vec(),
            target: self.targets[index],
        })
    }

    /// Every sequence as an item, in order.
    pub fn items(&self) -> Vec<AddingItem> {
        (0..self.len()).filter_map(|i| self.item(i)).collect()
    }

    /// The sequences at `range` on `device`: inputs `[n, time, 2]` and targets `[n, 1]`.
    ///
    /// # Errors
    ///
    /// [`unfold_nn::Error::Config`] (in [`Error::Nn`](crate::Error::Nn)) if `range` is empty
    /// or reaches past the last sequence.
    pub fn tensors<B: Backend>(
        &self,
        range: Range<usize>,
        device: &B::Device,
    ) -> Result<(Tensor<B, 3>, Tensor<B, 2>)> {
        if range.is_empty() || range.end > self.len() {
            return Err(unfold_nn::Error::config(
                "range",
                format!("{range:?}"),
                format!(
                    "must be a non-empty range inside 0..{} (the sequences)",
                    self.len()
                ),
            )
            .into());
        }
        let size = self.time * FEATURES;
        let x = self.inputs[range.start * size..range.end * size].to_vec();
        let y = self.targets[range.clone()].to_vec();
        let n = range.len();
        Ok((
            Tensor::from_data(TensorData::new(x, [n, self.time, FEATURES]), device),
            Tensor::from_data(TensorData::new(y, [n, 1]), device),
        ))
    }
}

/// One adding-problem sequence and its target.
#[derive(Debug, Clone, PartialEq)]
pub struct AddingItem {
    /// `[time, 2]` row-major: `[value, marker]` at each step.
    pub inputs: Vec<f32>,
    /// The sum of the two marked values.
    pub target: f32,
}

impl AddingItem {
    /// Steps in the sequence.
    pub fn time(&self) -> usize {
        self.inputs.len() / FEATURES
    }
}

#[cfg(feature = "train")]
pub use train::{AddingBatcher, AddingStream};

#[cfg(feature = "train")]
mod train {
    use std::sync::Mutex;

    use burn::data::dataloader::batcher::Batcher;
    use burn::data::dataset::Dataset;
    use burn::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use unfold_nn::train::RegressionBatch;

    use super::{adding_problem, AddingItem, FEATURES};
    use crate::error::Result;

    /// Fresh adding-problem sequences for training (feature `train`): a burn-dataset `Dataset`
    /// of `len` items that draws a new sequence from one seeded generator each time an item is
    /// asked for, so every batch is new data and the stream is the same on every run.
    ///
    /// The items come in the order they are asked for, whatever the index: the stream is
    /// reproducible with a data loader that reads in order (no shuffling, no workers); an
    /// [`AddingSet`](super::AddingSet) is the fixed alternative. Each epoch continues the stream.
    #[derive(Debug)]
    pub struct AddingStream {
        time: usize,
        len: usize,
        rng: Mutex<StdRng>,
    }

    impl AddingStream {
        /// `len` items per epoch of `time` steps each, drawn from a generator seeded with `seed`.
        ///
        /// # Errors
        ///
        /// As [`adding_problem`]: a config error if `time < 2`.
        pub fn new(time: usize, len: usize, seed: u64) -> Result<Self> {
            let mut rng = StdRng::seed_from_u64(seed);
            // Check `time` now rather than panic in the data loader; draws nothing.
            adding_problem(0, time, &mut rng)?;
            Ok(Self {
                time,
                len,
                rng: Mutex::new(rng),
            })
        }

        /// Steps per sequence.
        pub fn time(&self) -> usize {
            self.time
        }
    }

    impl Dataset<AddingItem> for AddingStream {
        fn get(&self, index: usize) -> Option<AddingItem> {
            (index < self.len).then(|| {
                let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                adding_problem(1, self.time, &mut rng)
                    .expect("`time` was checked")
                    .item(0)
                    .expect("one item")
            })
        }

        fn len(&self) -> usize {
            self.len
        }
    }

    /// Batches [`AddingItem`]s into a [`RegressionBatch`] (feature `train`): dense inputs
    /// `[batch, time, 2]`, targets `[batch, 1]`, no lengths.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct AddingBatcher;

    impl<B: Backend> Batcher<B, AddingItem, RegressionBatch<B>> for AddingBatcher {
        /// # Panics
        ///
        /// On an empty batch or items of different lengths (a data loader never builds the
        /// first; the other is bad data).
        fn batch(&self, items: Vec<AddingItem>, device: &B::Device) -> RegressionBatch<B> {
            assert!(
                !items.is_empty(),
                "`items` is empty: a batch needs a sequence"
            );
            let time = items[0].time();
            if let Some(i) = items.iter().position(|item| item.time() != time) {
                panic!(
                    "`items`[{i}] has {} steps, `items`[0] has {time}: an adding batch needs \
                     sequences of one length",
                    items[i].time()
                );
            }
            let x: Vec<f32> = items
                .iter()
                .flat_map(|item| item.inputs.iter().copied())
                .collect();
            let y: Vec<f32> = items.iter().map(|item| item.target).collect();
            let n = items.len();
            RegressionBatch {
                inputs: Tensor::<B, 3>::from_data(TensorData::new(x, [n, time, FEATURES]), device)
                    .into(),
                targets: Tensor::from_data(TensorData::new(y, [n, 1]), device),
                lengths: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use rand::SeedableRng;

    type TestBackend = burn::backend::NdArray;

    fn set(count: usize, time: usize, seed: u64) -> AddingSet {
        adding_problem(count, time, &mut StdRng::seed_from_u64(seed)).unwrap()
    }

    #[test]
    fn adding_problem_is_deterministic_under_the_seed() {
        assert_eq!(set(50, 12, 1), set(50, 12, 1));
        assert_ne!(set(50, 12, 1), set(50, 12, 2));
        // One call for n sequences draws what n calls for one each draw.
        let mut rng = StdRng::seed_from_u64(1);
        let one_by_one: Vec<AddingItem> = (0..50)
            .map(|_| adding_problem(1, 12, &mut rng).unwrap().item(0).unwrap())
            .collect();
        assert_eq!(one_by_one, set(50, 12, 1).items());
    }

    /// Pins the generator: the draws of the `classify` example's `adding_set` before the
    /// task moved here.
    #[test]
    fn seed_42_draws_what_the_classify_example_drew() {
        let set = set(2, 4, 42);
        assert_eq!(
            set.inputs(),
            [
                0.13340974,
                0.0,
                0.5265574,
                1.0,
                0.24873835,
                0.0,
                0.5427252,
                1.0,
                0.99008465,
                0.0,
                0.40590173,
                1.0,
                0.9690189,
                1.0,
                0.034342766,
                0.0
            ]
        );
        assert_eq!(set.targets(), [1.0692825, 1.3749206]);
    }

    #[test]
    fn the_target_is_the_sum_of_the_two_marked_values_one_in_each_half() {
        for time in [2, 3, 10, 51] {
            let set = set(300, time, time as u64);
            assert_eq!((set.len(), set.time()), (300, time));
            assert_eq!(set.inputs().len(), 300 * time * FEATURES);
            for b in 0..set.len() {
                let steps = set.sequence(b);
                let markers: Vec<usize> = (0..time).filter(|&t| steps[2 * t + 1] != 0.0).collect();
                assert_eq!(markers.len(), 2, "sequence {b}");
                assert!(markers.iter().all(|&t| steps[2 * t + 1] == 1.0));
                let [first, second] = set.markers(b);
                assert_eq!(markers, [first, second]);
                assert!(first < time / 2 && (time / 2..time).contains(&second));
                assert!((0..time).all(|t| (0.0..1.0).contains(&steps[2 * t])));
                assert_eq!(set.targets()[b], steps[2 * first] + steps[2 * second]);
            }
        }
    }

    #[test]
    fn fewer_than_two_steps_is_a_config_error() {
        for time in [0, 1] {
            assert!(matches!(
                adding_problem(3, time, &mut StdRng::seed_from_u64(0)),
                Err(Error::Nn(unfold_nn::Error::Config { field: "time", .. }))
            ));
        }
        assert!(adding_problem(0, 2, &mut StdRng::seed_from_u64(0))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn tensors_and_items_are_the_set() {
        let set = set(5, 4, 3);
        let device = Default::default();
        let (x, y) = set.tensors::<TestBackend>(1..3, &device).unwrap();
        assert_eq!(x.dims(), [2, 4, 2]);
        assert_eq!(y.dims(), [2, 1]);
        let x: Vec<f32> = x.into_data().iter::<f32>().collect();
        // Sequences 1 and 2: 4 steps of 2 features each.
        assert_eq!(x, set.inputs()[8..24]);
        let y: Vec<f32> = y.into_data().iter::<f32>().collect();
        assert_eq!(y, set.targets()[1..3]);
        let item = set.item(4).unwrap();
        assert_eq!((item.time(), item.target), (4, set.targets()[4]));
        assert_eq!(item.inputs, set.sequence(4));
        assert!(set.item(5).is_none());
        for bad in [0..6, 2..2] {
            assert!(matches!(
                set.tensors::<TestBackend>(bad, &device),
                Err(Error::Nn(unfold_nn::Error::Config { field: "range", .. }))
            ));
        }
    }

    #[test]
    fn within_tolerance_counts_errors_below_0_04() {
        assert_eq!(within_tolerance(&[0.0, 0.039, -0.039, 0.04, -0.5]), 0.6);
    }

    #[cfg(feature = "train")]
    #[test]
    fn the_stream_draws_a_set_in_order_and_the_batcher_stacks_it() {
        use burn::data::dataloader::batcher::Batcher;
        use burn::data::dataset::Dataset;
        let stream = AddingStream::new(6, 10, 77).unwrap();
        assert_eq!((stream.len(), stream.time()), (10, 6));
        let drawn: Vec<AddingItem> = (0..10).map(|i| stream.get(i).unwrap()).collect();
        assert_eq!(drawn, set(10, 6, 77).items());
        assert!(stream.get(10).is_none());
        assert!(AddingStream::new(1, 10, 0).is_err());

        let set = set(3, 6, 5);
        let batch: unfold_nn::train::RegressionBatch<TestBackend> =
            AddingBatcher.batch(set.items(), &Default::default());
        let (x, y) = set
            .tensors::<TestBackend>(0..3, &Default::default())
            .unwrap();
        let unfold_nn::SequenceInput::Dense(inputs) = batch.inputs else {
            panic!("dense inputs expected");
        };
        assert_eq!(inputs.into_data(), x.into_data());
        assert_eq!(batch.targets.into_data(), y.into_data());
        assert!(batch.lengths.is_none());
    }
}
