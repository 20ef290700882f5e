//! The error type of unfold-data.
//!
//! An error variant lives in the crate that produces it: the two problems only data can have
//! (a text that cannot be a corpus, a character outside the vocabulary) are variants here;
//! everything unfold-data reports with one of unfold-nn's general variants (a bad config
//! value, an empty input, a file that cannot be read, a token id out of range) is an
//! [`unfold_nn::Error`] wrapped in [`Error::Nn`], built as that error and converted with `?`
//! or `.into()`.
//!
//! ```
//! use unfold_data::{Error, Vocab};
//!
//! let vocab = Vocab::from_text("abc")?;
//! assert!(matches!(vocab.encode("abz"), Err(Error::UnknownChar { ch: 'z', position: 2 })));
//! assert!(matches!(
//!     vocab.decode(&[7]),
//!     Err(Error::Nn(unfold_nn::Error::TokenOutOfRange { id: 7, .. }))
//! ));
//! # Ok::<(), unfold_data::Error>(())
//! ```

/// Result alias of unfold-data.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when unfold-data is handed bad data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A corpus that cannot be trained on.
    #[error("corpus {name}: {problem}")]
    Corpus {
        /// The corpus's name (file path or built-in name).
        name: String,
        /// What is wrong, in words.
        problem: String,
    },
    /// A character that the vocabulary does not know.
    #[error("character {ch:?} at position {position} is not in the vocabulary")]
    UnknownChar {
        /// The character.
        ch: char,
        /// Its position (in characters) in the text.
        position: usize,
    },
    /// One of unfold-nn's general errors: [`Config`](unfold_nn::Error::Config),
    /// [`Empty`](unfold_nn::Error::Empty), [`Io`](unfold_nn::Error::Io),
    /// [`TokenOutOfRange`](unfold_nn::Error::TokenOutOfRange), [`Shape`](unfold_nn::Error::Shape),
    /// or whatever a model reports to a function of this crate. Displayed as the inner error.
    #[error(transparent)]
    Nn(#[from] unfold_nn::Error),
}
