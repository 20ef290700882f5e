//! The year in a sentence: does a sentence contain a year, and which decade is it in?
//!
//! Goodfellow et al. (§10.1) motivate parameter sharing across time with "I went to Nepal in
//! 2009" and "In 2009, I went to Nepal": a model that reads one word at a time with the same
//! weights at every step can find the year wherever it appears. This task generates such
//! sentences from built-in word lists ("the doctor climbed a mountain but she sold the red car
//! 1 9 5 6"), at chosen lengths, with the year (when there is one) at a random position.
//!
//! - **Years are four digit tokens** ("in 2 0 0 9"), from [`FIRST_YEAR`] to [`LAST_YEAR`], not
//!   one year token: a year token would make detection a one-word lookup that needs no
//!   memory. As digits a year is a pattern in time — four digits in a row, the first 1 or 2.
//! - **Distractor numbers** ("for 2 5 0 rupees", "at 8 8 4 8 metres", see [`distractor`]) use
//!   the same digit tokens but are never years (1-999, or four digits from 3000), so the
//!   network must count and remember.
//! - **Labels** ([`Labels`]): [`Labels::Year`] is binary (0 no year, 1 a year; balanced);
//!   [`Labels::Decade`] has nine classes (0 no year, `1 + (year - 1950) / 10` for the 1950s to
//!   the 2020s; a year in 8 of 9 sentences): the decade is in the third digit.
//! - **Lengths** are drawn uniformly from the range asked for, independently of the label, so
//!   the length says nothing about the label. [`SplitConfig`] also draws a held-out set of
//!   sentences longer than any trained on.
//!
//! Everything is drawn from a seeded [`StdRng`]: the same seed gives the same sentences.
//!
//! ```
//! use unfold_data::tasks::year::{Labels, SplitConfig, YearTask};
//!
//! let task = YearTask::new(Labels::Year);
//! let splits = task.splits(42, &SplitConfig::new(100, 20, 10..=24))?;
//! assert_eq!(splits.train.len(), 100);
//! assert!(splits.long.iter().all(|s| (25..=48).contains(&s.ids.len())));
//! let s = &splits.val[0];
//! assert_eq!(s.label, usize::from(s.year.is_some()));
//! println!("label {}: {}", s.label, task.words().decode(&s.ids)?);
//! # Ok::<(), unfold_data::Error>(())
//! ```

use std::collections::{BTreeMap, HashSet};
use std::ops::RangeInclusive;

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Subjects of the clauses.
pub const SUBJECTS: &[&str] = &[
    "i",
    "we",
    "she",
    "he",
    "they",
    "my brother",
    "my sister",
    "our teacher",
    "the old man",
    "a friend of mine",
    "my parents",
    "the doctor",
];

/// Predicates of the clauses.
pub const PREDICATES: &[&str] = &[
    "went to nepal",
    "climbed a mountain",
    "visited kathmandu",
    "saw the river",
    "learned to cook",
    "bought a small house",
    "met my wife",
    "walked to the market",
    "read a long book",
    "sold the red car",
    "moved to the city",
    "started a new job",
    "lost the keys",
    "painted the kitchen",
    "wrote a letter",
    "planted a tree",
    "found a dog",
    "built a boat",
    "taught at the school",
    "crossed the border",
];

/// Phrases without numbers; several share words with the year phrases ("in", "during",
/// "since", "back"), so those words alone do not give a year away.
pub const ADJUNCTS: &[&str] = &[
    "with my family",
    "in the rain",
    "after the long winter",
    "near the lake",
    "on foot",
    "every morning",
    "for the first time",
    "in the spring",
    "during the festival",
    "in a hurry",
    "without a map",
    "before the storm",
    "at night",
    "in the mountains",
    "with a heavy bag",
    "since the war",
    "back then",
    "in the old town",
    "by bus",
    "during the holidays",
];

/// Phrases with a number (`#`) that is never a year ([`distractor`]).
pub const NUMBER_ADJUNCTS: &[&str] = &[
    "for # days",
    "with # friends",
    "at # metres",
    "for # rupees",
    "after # hours",
    "on day #",
    "in room #",
    "with # bags",
    "for # weeks",
    "at # kilometres",
];

/// Phrases with a year (`#`); the year is always the phrase's last four tokens.
pub const YEAR_PHRASES: &[&str] = &[
    "in #",
    "during #",
    "back in #",
    "since #",
    "in the year #",
    "in early #",
    "#",
];

/// Words joining two clauses.
pub const CONNECTORS: &[&str] = &["and", "but", "then", "because", "so", "while"];

/// The earliest year a sentence can hold.
pub const FIRST_YEAR: u32 = 1950;
/// The latest year a sentence can hold.
pub const LAST_YEAR: u32 = 2029;

/// What the sentences are labelled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Labels {
    /// Does the sentence contain a year? Two classes (0 no, 1 yes), balanced.
    Year,
    /// Which decade is the year in, or is there none? Nine classes: 0 no year, then
    /// `1 + (year - 1950) / 10` (1 the 1950s, …, 8 the 2020s); a year in 8 of 9 sentences.
    Decade,
}

impl Labels {
    /// The number of classes: 2 or 9.
    pub fn num_classes(self) -> usize {
        match self {
            Labels::Year => 2,
            Labels::Decade => 9,
        }
    }

    /// The label of a sentence holding `year` (or none).
    ///
    /// # Panics
    ///
    /// If `year` is outside [`FIRST_YEAR`]`..=`[`LAST_YEAR`] (no sentence holds such a year).
    pub fn label(self, year: Option<u32>) -> usize {
        if let Some(y) = year {
            assert!(
                (FIRST_YEAR..=LAST_YEAR).contains(&y),
                "year {y} is outside {FIRST_YEAR}..={LAST_YEAR}"
            );
        }
        match (self, year) {
            (_, None) => 0,
            (Labels::Year, Some(_)) => 1,
            (Labels::Decade, Some(y)) => 1 + ((y - FIRST_YEAR) / 10) as usize,
        }
    }

    /// The probability that a sentence has a year: every class equally likely.
    fn year_probability(self) -> f64 {
        match self {
            Labels::Year => 0.5,
            Labels::Decade => 8.0 / 9.0,
        }
    }
}

/// The task's word vocabulary: the sorted distinct words of the word lists, and the ten digits
/// `"0"`..`"9"`. A token id is an index into [`words`](Self::words).
///
/// It serializes as `{ "words": [...] }` (the `vocab.json` of a trained model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Words {
    words: Vec<String>,
    #[serde(skip)]
    ids: BTreeMap<String, usize>,
}

impl Default for Words {
    fn default() -> Self {
        Self::new()
    }
}

impl Words {
    /// The vocabulary of the built-in word lists.
    pub fn new() -> Self {
        let lists = [
            SUBJECTS,
            PREDICATES,
            ADJUNCTS,
            NUMBER_ADJUNCTS,
            YEAR_PHRASES,
            CONNECTORS,
        ];
        let mut words: Vec<String> = lists
            .iter()
            .flat_map(|list| list.iter())
            .flat_map(|phrase| phrase.split_whitespace())
            .filter(|&word| word != "#")
            .map(str::to_string)
            .chain((0..10).map(|d| d.to_string()))
            .collect();
        words.sort();
        words.dedup();
        let ids = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i))
            .collect();
        Self { words, ids }
    }

    /// The number of words (token ids are `0..len()`).
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether there are no words; never true.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The words, in token-id order.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The token id of `word`, or `None` if it is not in the vocabulary.
    pub fn id(&self, word: &str) -> Option<usize> {
        self.ids.get(word).copied()
    }

    /// The word of token `id`, or `None` if `id >= len()`.
    pub fn word(&self, id: usize) -> Option<&str> {
        self.words.get(id).map(String::as_str)
    }

    /// The value of token `id` if it is a digit (`"0"`..`"9"`).
    pub fn digit(&self, id: usize) -> Option<u32> {
        let word = self.word(id)?;
        let mut chars = word.chars();
        match (chars.next(), chars.next()) {
            (Some(ch), None) => ch.to_digit(10),
            _ => None,
        }
    }

    /// Token ids of a phrase from the word lists, `#` replaced by the digits of `number`.
    fn phrase(&self, phrase: &str, number: u32) -> Vec<usize> {
        phrase
            .split_whitespace()
            .flat_map(|word| match word {
                "#" => number.to_string().chars().map(|d| d.to_string()).collect(),
                _ => vec![word.to_string()],
            })
            .map(|word| self.ids[&word])
            .collect()
    }

    /// The words of token ids, separated by spaces.
    ///
    /// # Errors
    ///
    /// [`unfold_nn::Error::TokenOutOfRange`] (argument `ids`, in [`Error::Nn`](crate::Error::Nn))
    /// for the first id that is `>= len()`.
    pub fn decode(&self, ids: &[usize]) -> Result<String> {
        let words = ids
            .iter()
            .map(|&id| {
                self.word(id).ok_or(unfold_nn::Error::TokenOutOfRange {
                    arg: "ids",
                    id: i64::try_from(id).unwrap_or(i64::MAX),
                    vocab_size: self.len(),
                })
            })
            .collect::<std::result::Result<Vec<&str>, _>>()?;
        Ok(words.join(" "))
    }
}

/// A generated sentence and its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    /// Token ids (of [`Words`]).
    pub ids: Vec<usize>,
    /// The class: see [`Labels`].
    pub label: usize,
    /// The year in the sentence, if there is one.
    pub year: Option<u32>,
    /// Token index of the year's first digit, if there is a year.
    pub year_at: Option<usize>,
}

/// A number that is never a year: 1-99 (12 draws in 20), 100-999 (5 in 20) or 3000-9999
/// (3 in 20).
pub fn distractor(rng: &mut StdRng) -> u32 {
    match rng.random_range(0..20) {
        0..=11 => rng.random_range(1..100),
        12..=16 => rng.random_range(100..1000),
        _ => rng.random_range(3000..10000),
    }
}

/// The number of tokens of the shortest sentence with a year that the word lists can make
/// (7: "i visited kathmandu 1 9 5 6"): the shortest length [`YearTask::sentences`] accepts.
pub fn shortest_year_sentence() -> usize {
    let words = |list: &[&str]| {
        list.iter()
            .map(|p| p.split_whitespace().count())
            .min()
            .expect("the word lists are not empty")
    };
    // The year's `#` is one word of the phrase and four tokens.
    words(SUBJECTS) + words(PREDICATES) + 3 + words(YEAR_PHRASES)
}

/// The year-in-a-sentence task: its vocabulary and its labels. See the
/// [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YearTask {
    words: Words,
    labels: Labels,
}

/// How [`YearTask::splits`] draws its three sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitConfig {
    /// Training sentences.
    pub train_size: usize,
    /// Validation sentences; none of them is also a training sentence.
    pub val_size: usize,
    /// Held-out sentences of `long_lengths`.
    pub long_size: usize,
    /// Lengths (in tokens) of the training and validation sentences.
    pub lengths: RangeInclusive<usize>,
    /// Lengths of the held-out long sentences.
    pub long_lengths: RangeInclusive<usize>,
}

impl SplitConfig {
    /// `train_size` training and `val_size` validation sentences of `lengths`, and `val_size`
    /// long ones of every length from one more than the longest trained on to twice it.
    pub fn new(train_size: usize, val_size: usize, lengths: RangeInclusive<usize>) -> Self {
        let longest = *lengths.end();
        Self {
            train_size,
            val_size,
            long_size: val_size,
            lengths,
            long_lengths: longest + 1..=2 * longest,
        }
    }
}

/// The three sets of [`YearTask::splits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YearSplits {
    /// Training sentences, distinct.
    pub train: Vec<Sentence>,
    /// Validation sentences of the training lengths, distinct and none in `train`.
    pub val: Vec<Sentence>,
    /// Held-out sentences longer than any in `train`, distinct.
    pub long: Vec<Sentence>,
}

impl YearTask {
    /// The task with the built-in word lists and `labels`.
    pub fn new(labels: Labels) -> Self {
        Self {
            words: Words::new(),
            labels,
        }
    }

    /// What the sentences are labelled with.
    pub fn labels(&self) -> Labels {
        self.labels
    }

    /// The vocabulary.
    pub fn words(&self) -> &Words {
        &self.words
    }

    /// The number of distinct tokens: the model's input size.
    pub fn vocab_size(&self) -> usize {
        self.words.len()
    }

    /// The number of classes: the model's output size.
    pub fn num_classes(&self) -> usize {
        self.labels.num_classes()
    }

    /// One draw of a sentence of exactly `len` tokens holding `year` (if any): `None` when
    /// this draw missed the length.
    ///
    /// Clauses ("my sister visited kathmandu"), connectors and adjuncts are added until the
    /// sentence is long enough; the adjuncts and the year phrase then go to random places
    /// between the other phrases, so the year can be anywhere.
    pub fn try_sentence(
        &self,
        rng: &mut StdRng,
        len: usize,
        year: Option<u32>,
    ) -> Option<Sentence> {
        let words = &self.words;
        let year_phrase = year.map(|y| words.phrase(YEAR_PHRASES.choose(rng).unwrap(), y));
        let clause = |rng: &mut StdRng| {
            [
                words.phrase(SUBJECTS.choose(rng).unwrap(), 0),
                words.phrase(PREDICATES.choose(rng).unwrap(), 0),
            ]
        };
        let mut units: Vec<Vec<usize>> = clause(rng).to_vec();
        let mut adjuncts = Vec::new();
        let count = |units: &[Vec<usize>]| units.iter().map(Vec::len).sum::<usize>();
        let year_len = year_phrase.as_ref().map_or(0, Vec::len);
        while count(&units) + count(&adjuncts) + year_len < len {
            if rng.random_bool(0.3) {
                units.push(words.phrase(CONNECTORS.choose(rng).unwrap(), 0));
                units.extend(clause(rng));
            } else if rng.random_bool(0.4) {
                let number = distractor(rng);
                adjuncts.push(words.phrase(NUMBER_ADJUNCTS.choose(rng).unwrap(), number));
            } else {
                adjuncts.push(words.phrase(ADJUNCTS.choose(rng).unwrap(), 0));
            }
        }
        if count(&units) + count(&adjuncts) + year_len != len {
            return None;
        }
        for adjunct in adjuncts {
            let at = rng.random_range(0..=units.len());
            units.insert(at, adjunct);
        }
        let mut year_at = None;
        if let Some(phrase) = year_phrase {
            let at = rng.random_range(0..=units.len());
            let digits_from = phrase.len() - 4;
            year_at = Some(count(&units[..at]) + digits_from);
            units.insert(at, phrase);
        }
        Some(Sentence {
            ids: units.concat(),
            label: self.labels.label(year),
            year,
            year_at,
        })
    }

    /// `count` distinct sentences with lengths uniform in `lengths`, none of whose token
    /// sequences is in `exclude`.
    ///
    /// For each sentence the length and whether there is a year (and which) are drawn first,
    /// independently, and kept for up to 1000 draws of [`try_sentence`](Self::try_sentence):
    /// the length says nothing about the label.
    ///
    /// # Errors
    ///
    /// [`unfold_nn::Error::Config`] (in [`Error::Nn`](crate::Error::Nn)) if `lengths` is empty
    /// or starts below [`shortest_year_sentence`], or if `count` distinct sentences are not
    /// found (the word lists cannot make that many of these lengths).
    pub fn sentences(
        &self,
        rng: &mut StdRng,
        count: usize,
        lengths: RangeInclusive<usize>,
        exclude: &HashSet<Vec<usize>>,
    ) -> Result<Vec<Sentence>> {
        check_lengths(&lengths)?;
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(count);
        let mut tries = 0usize;
        while out.len() < count {
            tries += 1;
            if tries >= 1000 * count + 100_000 {
                return Err(unfold_nn::Error::config(
                    "count",
                    count,
                    format!(
                        "only {} distinct sentences of lengths {lengths:?} were found in {tries} \
                         draws",
                        out.len()
                    ),
                )
                .into());
            }
            let len = rng.random_range(lengths.clone());
            let year = rng
                .random_bool(self.labels.year_probability())
                .then(|| rng.random_range(FIRST_YEAR..=LAST_YEAR));
            for _ in 0..1000 {
                let Some(sentence) = self.try_sentence(rng, len, year) else {
                    continue;
                };
                if !exclude.contains(&sentence.ids) && seen.insert(sentence.ids.clone()) {
                    out.push(sentence);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Training, validation and long held-out sentences from one generator seeded with
    /// `seed`, drawn in that order; the validation sentences exclude the training ones.
    ///
    /// # Errors
    ///
    /// As [`sentences`](Self::sentences), for either range of lengths.
    pub fn splits(&self, seed: u64, config: &SplitConfig) -> Result<YearSplits> {
        check_lengths(&config.lengths)?;
        check_lengths(&config.long_lengths)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let none = HashSet::new();
        let train = self.sentences(&mut rng, config.train_size, config.lengths.clone(), &none)?;
        let train_ids: HashSet<Vec<usize>> = train.iter().map(|s| s.ids.clone()).collect();
        let val = self.sentences(
            &mut rng,
            config.val_size,
            config.lengths.clone(),
            &train_ids,
        )?;
        let long = self.sentences(
            &mut rng,
            config.long_size,
            config.long_lengths.clone(),
            &none,
        )?;
        Ok(YearSplits { train, val, long })
    }
}

/// Checks that sentences of `lengths` can be drawn: not empty, none shorter than the shortest
/// sentence with a year (the label is drawn before the sentence, so each length must fit
/// both labels).
fn check_lengths(lengths: &RangeInclusive<usize>) -> Result<()> {
    let shortest = shortest_year_sentence();
    if lengths.is_empty() || *lengths.start() < shortest {
        return Err(unfold_nn::Error::config(
            "lengths",
            format!("{lengths:?}"),
            format!(
                "must be a non-empty range of lengths from {shortest} up, the shortest sentence \
                 with a year"
            ),
        )
        .into());
    }
    Ok(())
}

/// A padded batch of sentences for a classifier's own `forward`.
#[derive(Debug, Clone)]
pub struct SentenceBatch<B: Backend> {
    /// Token ids `[batch, longest]`, padded with id 0 (the lengths keep it out of every
    /// summary).
    pub ids: Tensor<B, 2, Int>,
    /// Each sentence's length.
    pub lengths: Vec<usize>,
    /// Each sentence's label, `[batch]`.
    pub labels: Tensor<B, 1, Int>,
}

/// Pads `sentences` into one batch on `device`.
///
/// # Errors
///
/// [`unfold_nn::Error::Empty`] (in [`Error::Nn`](crate::Error::Nn)) if `sentences` is empty.
pub fn sentence_batch<B: Backend>(
    sentences: &[Sentence],
    device: &B::Device,
) -> Result<SentenceBatch<B>> {
    let lengths: Vec<usize> = sentences.iter().map(|s| s.ids.len()).collect();
    let Some(&time) = lengths.iter().max() else {
        return Err(unfold_nn::Error::Empty {
            arg: "sentences",
            what: "a batch needs a sentence".into(),
        }
        .into());
    };
    let mut ids = vec![0i64; sentences.len() * time];
    for (b, sentence) in sentences.iter().enumerate() {
        for (t, &id) in sentence.ids.iter().enumerate() {
            ids[b * time + t] = id as i64;
        }
    }
    let labels: Vec<i64> = sentences.iter().map(|s| s.label as i64).collect();
    Ok(SentenceBatch {
        ids: Tensor::from_data(TensorData::new(ids, [sentences.len(), time]), device),
        lengths,
        labels: Tensor::from_data(TensorData::new(labels, [sentences.len()]), device),
    })
}

#[cfg(feature = "train")]
mod train {
    use super::Sentence;
    use crate::dataset::LabelledSequence;

    impl From<&Sentence> for LabelledSequence {
        fn from(sentence: &Sentence) -> Self {
            LabelledSequence {
                ids: sentence.ids.clone(),
                label: sentence.label,
            }
        }
    }

    impl From<Sentence> for LabelledSequence {
        fn from(sentence: Sentence) -> Self {
            LabelledSequence {
                ids: sentence.ids,
                label: sentence.label,
            }
        }
    }
}

/// The sentences as burn-dataset items for
/// [`ClassificationBatcher`](crate::dataset::ClassificationBatcher) (feature `train`): put them
/// in an `InMemDataset`.
#[cfg(feature = "train")]
pub fn labelled(sentences: &[Sentence]) -> Vec<crate::dataset::LabelledSequence> {
    sentences.iter().map(Into::into).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    type TestBackend = burn::backend::NdArray;

    fn draw(
        labels: Labels,
        seed: u64,
        count: usize,
        lengths: RangeInclusive<usize>,
    ) -> Vec<Sentence> {
        let mut rng = StdRng::seed_from_u64(seed);
        YearTask::new(labels)
            .sentences(&mut rng, count, lengths, &HashSet::new())
            .unwrap()
    }

    /// The maximal runs of digit tokens: (start, digits).
    fn digit_runs(words: &Words, ids: &[usize]) -> Vec<(usize, Vec<u32>)> {
        let mut runs: Vec<(usize, Vec<u32>)> = Vec::new();
        for (t, &id) in ids.iter().enumerate() {
            if let Some(d) = words.digit(id) {
                match runs.last_mut() {
                    Some((start, digits)) if *start + digits.len() == t => digits.push(d),
                    _ => runs.push((t, vec![d])),
                }
            }
        }
        runs
    }

    /// Where four digits in a row start with 1 or 2 (a year's shape), anywhere in a run.
    fn year_shaped(words: &Words, ids: &[usize]) -> Vec<usize> {
        digit_runs(words, ids)
            .into_iter()
            .flat_map(|(start, digits)| {
                (0..digits.len().saturating_sub(3))
                    .filter(move |&i| matches!(digits[i], 1 | 2))
                    .map(move |i| start + i)
            })
            .collect()
    }

    fn number(digits: &[u32]) -> u32 {
        digits.iter().fold(0, |n, &d| 10 * n + d)
    }

    /// Pins the generator: these are the draws of the `classify` example before the task
    /// moved here (checked against its code for several seeds, sizes and both labellings).
    #[test]
    fn seed_42_draws_what_the_classify_example_drew() {
        let config = SplitConfig::new(2, 1, 10..=24);
        let task = YearTask::new(Labels::Year);
        let splits = task.splits(42, &config).unwrap();
        let text = |s: &Sentence| task.words().decode(&s.ids).unwrap();
        assert_eq!(
            text(&splits.train[0]),
            "our teacher during the festival 1 9 9 3 crossed the border"
        );
        assert_eq!(
            (
                splits.train[0].label,
                splits.train[0].year,
                splits.train[0].year_at
            ),
            (1, Some(1993), Some(5))
        );
        assert_eq!(
            text(&splits.train[1]),
            "our teacher built a boat while the doctor taught at the school"
        );
        assert_eq!(splits.train[1].label, 0);
        assert_eq!(
            text(&splits.val[0]),
            "with 8 7 friends for 6 0 days since the war our teacher found a dog"
        );
        let decade = YearTask::new(Labels::Decade).splits(42, &config).unwrap();
        let labels: Vec<usize> = [&decade.train, &decade.val, &decade.long]
            .into_iter()
            .flatten()
            .map(|s| s.label)
            .collect();
        assert_eq!(labels, [5, 2, 2, 4]);
        assert_eq!(
            text(&decade.train[1]),
            "since 1 9 6 0 i found a dog in the spring"
        );
    }

    #[test]
    fn sentences_are_deterministic_under_the_seed() {
        let task = YearTask::new(Labels::Year);
        let config = SplitConfig::new(200, 50, 10..=24);
        let a = task.splits(3, &config).unwrap();
        assert_eq!(a, task.splits(3, &config).unwrap());
        assert_ne!(a.train, task.splits(4, &config).unwrap().train);
        // `splits` is `sentences` three times from one generator.
        let mut rng = StdRng::seed_from_u64(3);
        let train = task
            .sentences(&mut rng, 200, 10..=24, &HashSet::new())
            .unwrap();
        assert_eq!(train, a.train);
    }

    #[test]
    fn a_year_sentence_holds_its_year_and_a_no_year_sentence_no_year_shape() {
        let task = YearTask::new(Labels::Year);
        let words = task.words();
        let sentences = draw(Labels::Year, 11, 3000, 7..=40);
        let mut merged = 0;
        for s in &sentences {
            let text = words.decode(&s.ids).unwrap();
            assert_eq!(s.label, usize::from(s.year.is_some()), "{text}");
            assert_eq!(s.year_at.is_some(), s.year.is_some(), "{text}");
            let shaped = year_shaped(words, &s.ids);
            let (Some(year), Some(at)) = (s.year, s.year_at) else {
                // No year: no four digits in a row start with 1 or 2 (numbers of four digits
                // start at 3000, and two numbers never touch).
                assert!(shaped.is_empty(), "label 0 with a year shape: {text}");
                assert!(digit_runs(words, &s.ids).iter().all(|(_, d)| d.len() <= 4));
                continue;
            };
            assert!((FIRST_YEAR..=LAST_YEAR).contains(&year));
            let digits: Vec<u32> = s.ids[at..at + 4]
                .iter()
                .map(|&id| words.digit(id).expect("a digit"))
                .collect();
            assert_eq!(number(&digits), year, "{text}");
            assert!(matches!(digits[0], 1 | 2));
            // The year ends its run of digits.
            assert!(s
                .ids
                .get(at + 4)
                .is_none_or(|&id| words.digit(id).is_none()));
            let runs = digit_runs(words, &s.ids);
            let (start, run) = runs
                .iter()
                .find(|(start, d)| (*start..start + d.len()).contains(&at))
                .expect("the year's run");
            if *start == at {
                // The year is a run of its own, and the only year-shaped one.
                assert_eq!(run.len(), 4, "{text}");
                assert_eq!(shaped, vec![at], "{text}");
            } else {
                // A number phrase ending in digits ("on day 4", "in room 1 2") directly before
                // the bare year phrase: the year is the run's last four digits.
                merged += 1;
                assert!(run.len() <= 8, "{text}");
            }
            // Every other run is a number that is never a year.
            for (other, d) in &runs {
                if other != start {
                    assert!(d.len() <= 4 && (d.len() < 4 || d[0] >= 3), "{text}");
                }
            }
        }
        // A year touches a number before it in a few percent of year sentences only.
        let with_year = sentences.iter().filter(|s| s.year.is_some()).count();
        assert!(merged * 20 < with_year, "{merged} of {with_year}");
    }

    #[test]
    fn decade_labels_match_the_years_third_digit() {
        let task = YearTask::new(Labels::Decade);
        let words = task.words();
        let sentences = draw(Labels::Decade, 5, 2000, 10..=24);
        let mut seen = [0usize; 9];
        for s in &sentences {
            assert!(s.label < task.num_classes());
            seen[s.label] += 1;
            let Some(at) = s.year_at else {
                assert_eq!(s.label, 0);
                continue;
            };
            let digits: Vec<u32> = s.ids[at..at + 4]
                .iter()
                .map(|&id| words.digit(id).expect("a digit"))
                .collect();
            assert_eq!(Some(number(&digits)), s.year);
            // 1950s..1990s: 1..5; 2000s..2020s: 6..8.
            let expected = match (digits[0], digits[1]) {
                (1, 9) => digits[2] as usize - 4,
                (2, 0) => digits[2] as usize + 6,
                _ => panic!("not a year: {digits:?}"),
            };
            assert_eq!(s.label, expected, "{}", words.decode(&s.ids).unwrap());
        }
        // Every class occurs, each about a ninth of the time.
        assert!(seen.iter().all(|&n| n > 2000 / 9 / 2), "{seen:?}");
    }

    #[test]
    fn lengths_stay_in_range_and_ids_in_the_vocabulary() {
        let task = YearTask::new(Labels::Year);
        let splits = task.splits(9, &SplitConfig::new(500, 100, 7..=12)).unwrap();
        assert_eq!(splits.long.len(), 100);
        for (set, range) in [
            (&splits.train, 7..=12),
            (&splits.val, 7..=12),
            (&splits.long, 13..=24),
        ] {
            for s in set {
                assert!(range.contains(&s.ids.len()), "{}", s.ids.len());
                assert!(s.ids.iter().all(|&id| id < task.vocab_size()));
            }
            // Every length of the range occurs.
            let lengths: HashSet<usize> = set.iter().map(|s| s.ids.len()).collect();
            assert_eq!(lengths.len(), range.count());
        }
    }

    #[test]
    fn validation_sentences_are_distinct_and_not_in_training() {
        let task = YearTask::new(Labels::Year);
        let splits = task
            .splits(2, &SplitConfig::new(2000, 500, 7..=10))
            .unwrap();
        let train: HashSet<&Vec<usize>> = splits.train.iter().map(|s| &s.ids).collect();
        let val: HashSet<&Vec<usize>> = splits.val.iter().map(|s| &s.ids).collect();
        assert_eq!(train.len(), 2000);
        assert_eq!(val.len(), 500);
        assert!(train.is_disjoint(&val));
    }

    #[test]
    fn the_shortest_year_sentence_has_seven_tokens_and_can_be_drawn() {
        assert_eq!(shortest_year_sentence(), 7);
        for labels in [Labels::Year, Labels::Decade] {
            let sentences = draw(labels, 1, 20, 7..=7);
            assert!(sentences.iter().all(|s| s.ids.len() == 7));
            assert!(sentences.iter().any(|s| s.year.is_some()));
        }
    }

    #[test]
    fn bad_lengths_are_config_errors() {
        let task = YearTask::new(Labels::Year);
        let mut rng = StdRng::seed_from_u64(0);
        #[allow(clippy::reversed_empty_ranges)] // an empty range is the point
        let empty = 12..=10;
        for lengths in [3..=10, empty] {
            match task.sentences(&mut rng, 5, lengths, &HashSet::new()) {
                Err(Error::Nn(unfold_nn::Error::Config { field, .. })) => {
                    assert_eq!(field, "lengths")
                }
                other => panic!("expected a config error, got {other:?}"),
            }
        }
        let config = SplitConfig::new(5, 5, 6..=10);
        assert!(task.splits(0, &config).is_err());
    }

    #[test]
    fn labels_and_classes() {
        assert_eq!(Labels::Year.num_classes(), 2);
        assert_eq!(Labels::Decade.num_classes(), 9);
        assert_eq!(Labels::Year.label(Some(1987)), 1);
        assert_eq!(Labels::Decade.label(None), 0);
        assert_eq!(Labels::Decade.label(Some(1950)), 1);
        assert_eq!(Labels::Decade.label(Some(1999)), 5);
        assert_eq!(Labels::Decade.label(Some(2029)), 8);
    }

    #[test]
    fn words_hold_the_lists_and_the_digits_and_decode() {
        let words = Words::new();
        assert!(words.words().windows(2).all(|w| w[0] < w[1]));
        for d in 0..10u32 {
            let id = words.id(&d.to_string()).expect("every digit is a word");
            assert_eq!(words.digit(id), Some(d));
        }
        assert_eq!(words.digit(words.id("nepal").unwrap()), None);
        let ids = words.phrase("back in #", 1956);
        assert_eq!(words.decode(&ids).unwrap(), "back in 1 9 5 6");
        assert!(matches!(
            words.decode(&[words.len()]),
            Err(Error::Nn(unfold_nn::Error::TokenOutOfRange { .. }))
        ));
        let json = serde_json::to_value(&words).unwrap();
        assert_eq!(json["words"].as_array().unwrap().len(), words.len());
    }

    #[test]
    fn sentence_batch_pads_with_zero_and_keeps_lengths_and_labels() {
        let sentences = draw(Labels::Decade, 4, 3, 7..=12);
        let batch = sentence_batch::<TestBackend>(&sentences, &Default::default()).unwrap();
        let lengths: Vec<usize> = sentences.iter().map(|s| s.ids.len()).collect();
        let longest = *lengths.iter().max().unwrap();
        assert_eq!(batch.lengths, lengths);
        assert_eq!(batch.ids.dims(), [3, longest]);
        let ids: Vec<i64> = batch.ids.into_data().iter::<i64>().collect();
        for (b, s) in sentences.iter().enumerate() {
            let row = &ids[b * longest..(b + 1) * longest];
            let want: Vec<i64> = s.ids.iter().map(|&id| id as i64).collect();
            assert_eq!(row[..s.ids.len()], want[..]);
            assert!(row[s.ids.len()..].iter().all(|&id| id == 0));
        }
        let labels: Vec<i64> = batch.labels.into_data().iter::<i64>().collect();
        let want: Vec<i64> = sentences.iter().map(|s| s.label as i64).collect();
        assert_eq!(labels, want);
        assert!(matches!(
            sentence_batch::<TestBackend>(&[], &Default::default()),
            Err(Error::Nn(unfold_nn::Error::Empty { .. }))
        ));
    }

    #[cfg(feature = "train")]
    #[test]
    fn labelled_sequences_batch_like_the_sentences() {
        use crate::dataset::ClassificationBatcher;
        use burn::data::dataloader::batcher::Batcher;
        let sentences = draw(Labels::Year, 8, 4, 7..=12);
        let items = labelled(&sentences);
        for (item, s) in items.iter().zip(&sentences) {
            assert_eq!((&item.ids, item.label), (&s.ids, s.label));
        }
        let batch: unfold_nn::train::ClassificationBatch<TestBackend> =
            ClassificationBatcher::new(0).batch(items, &Default::default());
        let own = sentence_batch::<TestBackend>(&sentences, &Default::default()).unwrap();
        let unfold_nn::SequenceInput::Tokens(ids) = batch.inputs else {
            panic!("token batch expected");
        };
        assert_eq!(ids.into_data(), own.ids.into_data());
        assert_eq!(batch.targets.into_data(), own.labels.into_data());
    }
}
