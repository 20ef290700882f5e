//! A trained sequence classifier survives a save and a load: the generic module (default cell
//! type, a stack of layers in both directions) records every parameter, and a model rebuilt
//! from the same config and loaded from the file gives the same outputs.
#![cfg(feature = "checkpoint")]

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData, Tolerance};
use unfold_nn::checkpoint::{Recorder, RunDir, MODEL_FILE};
use unfold_nn::classifier::{Pooling, SequenceClassifier, SequenceEncoderConfig};
use unfold_nn::UnrollOptions;

type B = burn::backend::NdArray<f64>;

#[test]
fn saved_and_loaded_classifier_gives_the_same_outputs() {
    let device = Default::default();
    let config = SequenceEncoderConfig::new(6, 5)
        .with_num_layers(2)
        .with_bidirectional(true)
        .with_pooling(Pooling::Mean)
        .classifier(3);
    let model: SequenceClassifier<B> = config.init(&device);
    let dir = std::env::temp_dir().join(format!("unfold-classifier-record-{}", std::process::id()));
    let run = RunDir::create(&dir).unwrap();
    run.save_model(model.clone()).unwrap();

    // A fresh model (other random weights) loaded from the file.
    let fresh: SequenceClassifier<B> = config.init(&device);
    let ids = Tensor::<B, 2, Int>::from_data(
        TensorData::new(vec![0i64, 5, 2, 3, 1, 4, 4, 0], [2, 4]),
        &device,
    );
    let options = UnrollOptions::new().with_lengths([4, 2]);
    let before = fresh.forward(ids.clone(), &options);
    let loaded = fresh
        .load_file(dir.join(MODEL_FILE), &Recorder::new(), &device)
        .unwrap();
    let expected = model.forward(ids.clone(), &options);
    let got = loaded.forward(ids, &options);
    // The recorder stores f32 ("full precision" in Burn's terms): equal to f32 rounding.
    got.clone()
        .into_data()
        .assert_approx_eq::<f64>(&expected.into_data(), Tolerance::absolute(1e-6));
    // The load did change the fresh model's weights.
    let moved = (got - before).abs().max().into_scalar();
    assert!(moved > 1e-6, "loading changed nothing ({moved})");
    assert_eq!(loaded.encoder.num_layers(), 2);
    assert!(loaded.encoder.is_bidirectional());
    std::fs::remove_dir_all(dir).unwrap();
}
