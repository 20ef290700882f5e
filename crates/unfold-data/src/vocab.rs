//! Character vocabularies.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Name used in [`Error::Corpus`] when a vocabulary is built from text that has no name.
const UNNAMED: &str = "<text>";

/// A character vocabulary: the sorted, distinct characters of a text.
///
/// Token id `i` stands for the `i`-th character in sorted (Unicode scalar value) order, so
/// the same text always gives the same ids. A vocabulary always holds at least two
/// characters: with fewer there is nothing for a model to predict.
///
/// It serializes as `{ "chars": [...] }`; deserializing checks again that the characters are
/// sorted, distinct and at least two.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "VocabRecord")]
pub struct Vocab {
    /// The characters, sorted and distinct; a token id is an index into this.
    chars: Vec<char>,
}

/// The serialized form of a [`Vocab`], checked on the way in.
#[derive(Deserialize)]
struct VocabRecord {
    chars: Vec<char>,
}

impl TryFrom<VocabRecord> for Vocab {
    type Error = Error;

    fn try_from(record: VocabRecord) -> Result<Self> {
        let chars = record.chars;
        if let Some(pair) = chars.windows(2).find(|pair| pair[0] >= pair[1]) {
            return Err(Error::Corpus {
                name: "<deserialized vocabulary>".to_string(),
                problem: format!(
                    "characters must be sorted and distinct, but {:?} comes before {:?}",
                    pair[0], pair[1]
                ),
            });
        }
        Self::check_size("<deserialized vocabulary>", &chars)?;
        Ok(Self { chars })
    }
}

impl Vocab {
    /// Builds the vocabulary of `text`: its distinct characters, sorted.
    ///
    /// # Errors
    ///
    /// [`Error::Corpus`] if `text` is empty or has fewer than two distinct characters.
    pub fn from_text(text: &str) -> Result<Self> {
        Self::from_named_text(UNNAMED, text)
    }

    /// [`Vocab::from_text`], naming the corpus in errors.
    pub(crate) fn from_named_text(name: &str, text: &str) -> Result<Self> {
        if text.is_empty() {
            return Err(Error::Corpus {
                name: name.to_string(),
                problem: "the text is empty".to_string(),
            });
        }
        // Most corpora are ASCII: mark those in a table, collect the rest and sort them.
        let mut ascii = [false; 128];
        let mut others = Vec::new();
        for ch in text.chars() {
            if ch.is_ascii() {
                ascii[ch as usize] = true;
            } else {
                others.push(ch);
            }
        }
        others.sort_unstable();
        others.dedup();
        let chars: Vec<char> = (0u8..128)
            .filter(|&b| ascii[b as usize])
            .map(char::from)
            .chain(others)
            .collect();
        Self::check_size(name, &chars)?;
        Ok(Self { chars })
    }

    fn check_size(name: &str, chars: &[char]) -> Result<()> {
        if chars.len() < 2 {
            return Err(Error::Corpus {
                name: name.to_string(),
                problem: format!(
                    "the text has {} distinct character(s) {chars:?}; at least 2 are needed, \
                     otherwise there is nothing to predict",
                    chars.len()
                ),
            });
        }
        Ok(())
    }

    /// The number of characters (token ids are `0..len()`).
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether the vocabulary is empty; never true for a vocabulary built by this crate.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The token id of `ch`, or `None` if it is not in the vocabulary.
    pub fn id(&self, ch: char) -> Option<usize> {
        self.chars.binary_search(&ch).ok()
    }

    /// The character of token `id`, or `None` if `id >= len()`.
    pub fn char(&self, id: usize) -> Option<char> {
        self.chars.get(id).copied()
    }

    /// The characters, in token-id order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// Encodes `text` as token ids, one per character.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownChar`] with the character and its position (in characters) for the
    /// first character of `text` that is not in the vocabulary.
    pub fn encode(&self, text: &str) -> Result<Vec<usize>> {
        // Direct table for ASCII characters, binary search for the rest.
        let mut ascii = [usize::MAX; 128];
        for (id, &ch) in self.chars.iter().enumerate() {
            if ch.is_ascii() {
                ascii[ch as usize] = id;
            }
        }
        text.chars()
            .enumerate()
            .map(|(position, ch)| {
                let id = if ch.is_ascii() {
                    Some(ascii[ch as usize]).filter(|&id| id != usize::MAX)
                } else {
                    self.id(ch)
                };
                id.ok_or(Error::UnknownChar { ch, position })
            })
            .collect()
    }

    /// Decodes token ids back to text.
    ///
    /// # Errors
    ///
    /// [`unfold_nn::Error::TokenOutOfRange`] (argument `ids`, wrapped in [`Error::Nn`]) for the
    /// first id that is `>= len()`.
    pub fn decode(&self, ids: &[usize]) -> Result<String> {
        ids.iter()
            .map(|&id| {
                self.char(id).ok_or_else(|| {
                    Error::Nn(unfold_nn::Error::TokenOutOfRange {
                        arg: "ids",
                        id: i64::try_from(id).unwrap_or(i64::MAX),
                        vocab_size: self.len(),
                    })
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAKESPEARE: &str = include_str!("../data/tinyshakespeare.txt");

    #[test]
    fn tiny_shakespeare_has_65_sorted_chars_and_round_trips() {
        let vocab = Vocab::from_text(SHAKESPEARE).unwrap();
        assert_eq!(vocab.len(), 65);
        assert!(!vocab.is_empty());
        assert!(vocab.chars().windows(2).all(|pair| pair[0] < pair[1]));
        let ids = vocab.encode(SHAKESPEARE).unwrap();
        assert_eq!(ids.len(), SHAKESPEARE.chars().count());
        assert!(ids.iter().all(|&id| id < vocab.len()));
        assert_eq!(vocab.decode(&ids).unwrap(), SHAKESPEARE);
    }

    #[test]
    fn ids_are_sorted_char_order_and_id_char_are_inverse() {
        let vocab = Vocab::from_text("cabbage é!").unwrap();
        assert_eq!(vocab.chars(), &[' ', '!', 'a', 'b', 'c', 'e', 'g', 'é']);
        for (id, &ch) in vocab.chars().iter().enumerate() {
            assert_eq!(vocab.id(ch), Some(id));
            assert_eq!(vocab.char(id), Some(ch));
        }
        assert_eq!(vocab.id('z'), None);
        assert_eq!(vocab.char(vocab.len()), None);
        assert_eq!(vocab.encode("é a").unwrap(), vec![7, 0, 2]);
    }

    #[test]
    fn unknown_char_reports_char_and_char_position() {
        let vocab = Vocab::from_text("abcé").unwrap();
        // 'é' is two bytes: the position must count characters, not bytes.
        match vocab.encode("aéb?c") {
            Err(Error::UnknownChar { ch, position }) => {
                assert_eq!(ch, '?');
                assert_eq!(position, 3);
            }
            other => panic!("expected UnknownChar, got {other:?}"),
        }
        assert!(matches!(
            vocab.encode("Z"),
            Err(Error::UnknownChar {
                ch: 'Z',
                position: 0
            })
        ));
    }

    #[test]
    fn out_of_range_id_is_token_out_of_range() {
        let vocab = Vocab::from_text("ab").unwrap();
        assert_eq!(vocab.decode(&[1, 0]).unwrap(), "ba");
        match vocab.decode(&[0, 1, 2]) {
            Err(Error::Nn(unfold_nn::Error::TokenOutOfRange {
                arg,
                id,
                vocab_size,
            })) => {
                assert_eq!(arg, "ids");
                assert_eq!(id, 2);
                assert_eq!(vocab_size, 2);
            }
            other => panic!("expected TokenOutOfRange, got {other:?}"),
        }
    }

    #[test]
    fn empty_or_single_char_text_is_a_corpus_error() {
        assert!(matches!(Vocab::from_text(""), Err(Error::Corpus { .. })));
        assert!(matches!(
            Vocab::from_text("aaaa"),
            Err(Error::Corpus { .. })
        ));
        assert!(matches!(Vocab::from_text("ééé"), Err(Error::Corpus { .. })));
    }

    #[test]
    fn serde_round_trips_and_deserializing_checks_order_and_size() {
        let vocab = Vocab::from_text("cabé").unwrap();
        let json = serde_json::to_string(&vocab).unwrap();
        assert_eq!(json, r#"{"chars":["a","b","c","é"]}"#);
        assert_eq!(serde_json::from_str::<Vocab>(&json).unwrap(), vocab);
        for bad in [
            r#"{"chars":["b","a"]}"#,
            r#"{"chars":["a","a"]}"#,
            r#"{"chars":["a"]}"#,
        ] {
            assert!(
                serde_json::from_str::<Vocab>(bad).is_err(),
                "{bad} was accepted"
            );
        }
    }
}
