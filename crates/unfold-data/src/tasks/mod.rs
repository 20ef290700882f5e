//! Synthetic sequence tasks with known answers, generated from a seed.
//!
//! Each task says exactly what a network has to learn, so a trained model can be checked
//! against the rule that made the data (and reported by position or length):
//!
//! - [`year`]: the year in a sentence ("I went to Nepal in 2 0 0 9"), sequence-to-one: does a
//!   sentence of word tokens contain a year (four digit tokens in a row), or which decade is
//!   it in. Sentences of chosen lengths, held-out longer ones; as `dataset::LabelledSequence`s
//!   for burn-train (feature `train`).
//! - [`adding`]: the adding problem (Hochreiter & Schmidhuber, 1997), sequence-to-one
//!   regression over `[value, marker]` steps: the sum of the two marked values; a fixed set,
//!   or a fresh stream with its batcher for burn-train (feature `train`).
//! - [`sums`]: per-step targets: running sums mod 10, Elman's temporal XOR, running parity;
//!   and [`accuracy_by_position`](sums::accuracy_by_position).
//!
//! The generators work on plain `Vec`s with a seeded [`rand::rngs::StdRng`] and are
//! deterministic under their seed; small helpers turn their output into Burn tensors for any
//! `B: Backend`.

pub mod adding;
pub mod sums;
pub mod year;
