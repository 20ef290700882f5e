//! The checkpoint reader on arbitrary bytes: `unfold::nn::checkpoint::load_model` (which
//! `RunDir::load_checkpoint` uses for `model.mpk` and `optimizer.mpk`) reading a file into a
//! small Elman model. Either an `Error` naming the file, or a model whose parameters are the
//! right shapes and finite and whose forward pass runs. Never a panic that escapes, never an
//! abort.
#![no_main]

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor};
use libfuzzer_sys::fuzz_target;
use unfold::nn::{ElmanRnn, ElmanRnnConfig, UnrollOptions};
use unfold::nn::checkpoint::{load_model, parameters_are_finite};

type B = NdArray;

fuzz_target!(|data: &[u8]| {
    // `load_model` catches a panic inside Burn's decoder and returns an error, as it does in a
    // training run: keep the default hook's message off the fuzzer's output. A panic that
    // escapes still reaches libfuzzer (the closure is run under its own catch).
    std::panic::set_hook(Box::new(|_| {}));
    let path = scratch("model.mpk");
    std::fs::write(&path, data).unwrap();
    let device = Default::default();
    let model: ElmanRnn<B> = ElmanRnnConfig::new(3, 4, 3).init(&device);
    if let Ok(loaded) = load_model(&path, &model, &device) {
        assert_eq!(loaded.cell.u.dims(), [3, 4]);
        assert_eq!(loaded.cell.w.dims(), [4, 4]);
        assert!(parameters_are_finite::<B, _>(&loaded));
        let ids = Tensor::<B, 2, Int>::zeros([2, 3], &device);
        loaded.try_forward(ids, &UnrollOptions::new()).unwrap();
    }
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
