//! The corpus and vocabulary loaders on arbitrary bytes: `Corpus::from_file` (any file a user
//! points `--corpus` at) and `vocab.json`. Either an `Error` or a corpus whose invariants hold;
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unfold::data::{ChunkedCorpus, Corpus, Vocab, WindowSampler};

fuzz_target!(|data: &[u8]| {
    let path = unfold_fuzz_scratch("corpus.txt");
    std::fs::write(&path, data).unwrap();
    if let Ok(corpus) = Corpus::from_file(&path) {
        let vocab = corpus.vocab();
        assert!(vocab.len() >= 2);
        assert_eq!(corpus.num_tokens(), corpus.text().chars().count());
        assert!(corpus.ids().iter().all(|&id| id < vocab.len()));
        assert_eq!(vocab.decode(corpus.ids()).unwrap(), corpus.text());
        // The vocabulary survives its own JSON.
        let json = serde_json::to_vec(vocab).unwrap();
        assert_eq!(&serde_json::from_slice::<Vocab>(&json).unwrap(), vocab);
        // Splitting and batching either work or say why.
        if let Ok((train, _valid)) = corpus.split(0.9) {
            let seq_len = 1 + data.first().copied().unwrap_or(0) as usize % 16;
            if let Ok(mut sampler) = WindowSampler::new(train.clone(), 2, seq_len, 0) {
                let (inputs, targets) = sampler.next_windows();
                assert_eq!(inputs.len(), 2 * seq_len);
                assert_eq!(targets.len(), 2 * seq_len);
            }
            if let Ok(mut chunks) = ChunkedCorpus::new(train, 2, seq_len) {
                let _ = chunks.next_windows();
            }
        }
    }
    // The same bytes as a vocab.json.
    if let Ok(vocab) = serde_json::from_slice::<Vocab>(data) {
        assert!(vocab.len() >= 2);
        assert!(vocab.chars().windows(2).all(|pair| pair[0] < pair[1]));
    }
});

/// A file in a directory of this process's own (in memory where `/dev/shm` exists).
fn unfold_fuzz_scratch(name: &str) -> std::path::PathBuf {
    let base = std::path::Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("unfold-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}
