//! Text corpora, encoded with their own character vocabulary.

use std::path::Path;

use crate::error::{Error, Result};

use crate::Vocab;

/// The tiny-shakespeare text, built into the crate.
const TINY_SHAKESPEARE: &str = include_str!("../data/tinyshakespeare.txt");

/// A text, its character [`Vocab`] and the text encoded as token ids.
///
/// There is one token per character, so `ids().len()` is the number of characters of
/// `text()`, and every id is below `vocab().len()`.
#[derive(Clone, Debug, PartialEq)]
pub struct Corpus {
    name: String,
    text: String,
    vocab: Vocab,
    ids: Vec<usize>,
}

impl Corpus {
    /// The built-in corpus: tiny-shakespeare, from Andrej Karpathy's
    /// [char-rnn](https://github.com/karpathy/char-rnn) (about 40,000 lines of Shakespeare's
    /// plays, in the public domain): 1,115,394 ASCII characters, 65 of them distinct.
    ///
    /// It is named `"tiny-shakespeare"`.
    pub fn tiny_shakespeare() -> Self {
        Self::from_text("tiny-shakespeare", TINY_SHAKESPEARE)
            .expect("the built-in tiny-shakespeare corpus is valid")
    }

    /// Builds a corpus from `text`, with the vocabulary of `text`. `name` appears in errors.
    ///
    /// # Errors
    ///
    /// [`Error::Corpus`] if `text` is empty or has fewer than two distinct characters.
    pub fn from_text(name: impl Into<String>, text: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let text = text.into();
        let vocab = Vocab::from_named_text(&name, &text)?;
        let ids = vocab
            .encode(&text)
            .expect("a text's own vocabulary holds all its characters");
        Ok(Self {
            name,
            text,
            vocab,
            ids,
        })
    }

    /// Reads a UTF-8 text file as a corpus named after its path.
    ///
    /// # Errors
    ///
    /// - [`unfold_nn::Error::Io`] (action `"reading"`, wrapped in [`Error::Nn`]) if the file
    ///   cannot be read.
    /// - [`Error::Corpus`] if it is not valid UTF-8 (naming the byte offset of the first
    ///   invalid byte), is empty, or has fewer than two distinct characters.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| unfold_nn::Error::Io {
            action: "reading",
            path: path.to_path_buf(),
            source,
        })?;
        let name = path.display().to_string();
        let text = String::from_utf8(bytes).map_err(|err| Error::Corpus {
            name: name.clone(),
            problem: format!(
                "the file is not UTF-8 text: invalid byte at byte offset {}",
                err.utf8_error().valid_up_to()
            ),
        })?;
        Self::from_text(name, text)
    }

    /// The corpus's name: the file path, `"tiny-shakespeare"`, or the name given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The vocabulary: the distinct characters of the text.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The text as token ids, one per character.
    pub fn ids(&self) -> &[usize] {
        &self.ids
    }

    /// The number of tokens (characters) in the corpus; always at least 2.
    pub fn num_tokens(&self) -> usize {
        self.ids.len()
    }

    /// Splits the token ids into a training part and a validation part.
    ///
    /// The split is contiguous: the first `floor(train_fraction * num_tokens())` tokens are the
    /// training part, the rest the validation part (`0.9` gives the usual 90/10 split).
    /// Keeping each part contiguous means no validation window shares text with a training
    /// window.
    ///
    /// # Errors
    ///
    /// - [`unfold_nn::Error::Config`] (in [`Error::Nn`]) if `train_fraction` is not strictly
    ///   between 0 and 1.
    /// - [`Error::Corpus`] if either part would hold fewer than 2 tokens (one input and its
    ///   target).
    pub fn split(&self, train_fraction: f64) -> Result<(Vec<usize>, Vec<usize>)> {
        if !(train_fraction > 0.0 && train_fraction < 1.0) {
            return Err(unfold_nn::Error::config(
                "train_fraction",
                train_fraction,
                "must be strictly between 0 and 1",
            )
            .into());
        }
        let total = self.ids.len();
        let train = ((total as f64 * train_fraction).floor() as usize).min(total);
        let valid = total - train;
        if train < 2 || valid < 2 {
            return Err(Error::Corpus {
                name: self.name.clone(),
                problem: format!(
                    "splitting {total} tokens at train fraction {train_fraction} gives \
                     {train} training and {valid} validation tokens; each part needs at least 2"
                ),
            });
        }
        let (train_ids, valid_ids) = self.ids.split_at(train);
        Ok((train_ids.to_vec(), valid_ids.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A path in the temp directory that no other test (or test run) uses.
    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("unfold-data-{}-{tag}.txt", std::process::id()))
    }

    #[test]
    fn tiny_shakespeare_is_encoded_with_65_chars() {
        let corpus = Corpus::tiny_shakespeare();
        assert_eq!(corpus.name(), "tiny-shakespeare");
        assert_eq!(corpus.text().len(), 1_115_394);
        assert_eq!(corpus.num_tokens(), 1_115_394);
        assert_eq!(corpus.vocab().len(), 65);
        assert_eq!(
            corpus.vocab().decode(&corpus.ids()[..14]).unwrap(),
            "First Citizen:"
        );
    }

    #[test]
    fn from_text_encodes_with_its_own_vocab() {
        let corpus = Corpus::from_text("toy", "abca").unwrap();
        assert_eq!(corpus.name(), "toy");
        assert_eq!(corpus.text(), "abca");
        assert_eq!(corpus.vocab().chars(), &['a', 'b', 'c']);
        assert_eq!(corpus.ids(), &[0, 1, 2, 0]);
    }

    #[test]
    fn empty_or_single_char_corpus_is_a_corpus_error_naming_it() {
        match Corpus::from_text("blank", "") {
            Err(Error::Corpus { name, .. }) => assert_eq!(name, "blank"),
            other => panic!("expected Corpus error, got {other:?}"),
        }
        assert!(matches!(
            Corpus::from_text("a", "aaaa"),
            Err(Error::Corpus { .. })
        ));
    }

    #[test]
    fn from_file_reads_utf8_text() {
        let path = temp_path("utf8");
        std::fs::write(&path, "héllo\n").unwrap();
        let corpus = Corpus::from_file(&path);
        std::fs::remove_file(&path).unwrap();
        let corpus = corpus.unwrap();
        assert_eq!(corpus.name(), path.display().to_string());
        assert_eq!(corpus.text(), "héllo\n");
        assert_eq!(corpus.num_tokens(), 6);
    }

    #[test]
    fn non_utf8_file_is_a_corpus_error_with_byte_offset() {
        let path = temp_path("not-utf8");
        std::fs::write(&path, b"ab\xffcd").unwrap();
        let result = Corpus::from_file(&path);
        std::fs::remove_file(&path).unwrap();
        match result {
            Err(Error::Corpus { problem, .. }) => {
                assert!(problem.contains("not UTF-8"), "{problem}");
                assert!(problem.contains("byte offset 2"), "{problem}");
            }
            other => panic!("expected Corpus error, got {other:?}"),
        }
    }

    #[test]
    fn empty_file_is_a_corpus_error() {
        let path = temp_path("empty");
        std::fs::write(&path, b"").unwrap();
        let result = Corpus::from_file(&path);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(result, Err(Error::Corpus { .. })));
    }

    #[test]
    fn missing_file_is_an_io_error_while_reading() {
        let path = temp_path("does-not-exist");
        match Corpus::from_file(&path) {
            Err(Error::Nn(unfold_nn::Error::Io {
                action,
                path: got,
                source,
            })) => {
                assert_eq!(action, "reading");
                assert_eq!(got, path);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected Io error, got {other:?}"),
        }
    }

    #[test]
    fn split_is_contiguous_and_90_10() {
        let corpus = Corpus::tiny_shakespeare();
        let (train, valid) = corpus.split(0.9).unwrap();
        let total = corpus.num_tokens();
        assert_eq!(train.len(), total * 9 / 10);
        assert_eq!(train.len() + valid.len(), total);
        assert_eq!(&corpus.ids()[..train.len()], &train[..]);
        assert_eq!(&corpus.ids()[train.len()..], &valid[..]);
    }

    #[test]
    fn split_rejects_bad_fractions_and_tiny_parts() {
        let corpus = Corpus::from_text("toy", "abcdefghij").unwrap();
        for bad in [0.0, 1.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(
                    corpus.split(bad),
                    Err(Error::Nn(unfold_nn::Error::Config {
                        field: "train_fraction",
                        ..
                    }))
                ),
                "fraction {bad} accepted"
            );
        }
        // 10 tokens at 0.9: 9 train, 1 validation.
        assert!(matches!(corpus.split(0.9), Err(Error::Corpus { .. })));
        // 10 tokens at 0.1: 1 train.
        assert!(matches!(corpus.split(0.1), Err(Error::Corpus { .. })));
        let (train, valid) = corpus.split(0.8).unwrap();
        assert_eq!((train.len(), valid.len()), (8, 2));
    }
}
