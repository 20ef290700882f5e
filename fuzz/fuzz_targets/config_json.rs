//! The JSON readers (`config.json`, `vocab.json`, a checkpoint's `state.json`) on arbitrary
//! bytes, through `unfold::nn::checkpoint::read_json` as the examples use it. Either an `Error` naming
//! the file or a value that works: a model config that parses either refuses its sizes or
//! builds a model that runs. Never a panic.
#![no_main]

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor};
use libfuzzer_sys::fuzz_target;
use unfold::data::Vocab;
use unfold::nn::{
    ElmanRnnConfig, Forcing, JordanRnnConfig, SequenceClassifierConfig, UnrollOptions,
};
use unfold::nn::checkpoint::{read_json, LoopState};

type B = NdArray;

/// Sizes above this are not built: a config may legitimately ask for a model too large for
/// the fuzzer's memory limit.
const MAX_SIZE: usize = 32;

fuzz_target!(|data: &[u8]| {
    let path = scratch("config.json");
    std::fs::write(&path, data).unwrap();
    let device = Default::default();
    let ids = Tensor::<B, 2, Int>::zeros([2, 3], &device);
    let small = |sizes: &[usize]| sizes.iter().all(|&s| s <= MAX_SIZE);

    if let Ok(config) = read_json::<ElmanRnnConfig>(&path) {
        if small(&[config.input_size, config.hidden_size, config.output_size]) {
            if let Ok(model) = config.try_init::<B>(&device) {
                model
                    .try_forward(ids.clone(), &UnrollOptions::new())
                    .unwrap();
            }
        }
    }
    if let Ok(config) = read_json::<JordanRnnConfig>(&path) {
        if small(&[config.input_size, config.hidden_size, config.output_size]) {
            if let Ok(model) = config.try_init::<B>(&device) {
                let free = Forcing::FreeRunning {
                    feedback: Default::default(),
                    seed: 0,
                };
                model.try_forward(ids.clone(), None, &free).unwrap();
            }
        }
    }
    if let Ok(config) = read_json::<SequenceClassifierConfig>(&path) {
        let sizes = [
            config.input_size,
            config.hidden_size,
            config.output_size,
            config.num_layers,
        ];
        if small(&sizes) {
            if let Ok(model) = config.try_init::<B>(&device) {
                model.try_forward(ids.clone(), None).unwrap();
            }
        }
    }
    if let Ok(vocab) = read_json::<Vocab>(&path) {
        assert!(vocab.len() >= 2);
    }
    let _ = read_json::<LoopState<serde_json::Value>>(&path);
});

fn scratch(name: &str) -> std::path::PathBuf {
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
