//! PyTorch `nn.RNN` (+ `nn.Linear`) weights, imported from safetensors files, give PyTorch's
//! outputs for the same inputs; bad weight files are named errors that leave the model as it
//! was.
//!
//! The files under tests/data/ (of this crate) were written by
//! tests/pytorch/make_rnn_safetensors.py (run it to regenerate; this test needs no Python):
//! `<case>.safetensors` holds the weights exactly as `safetensors.torch.save_file(
//! model.state_dict(), …)` writes them, `<case>.reference.safetensors` the inputs and
//! PyTorch's outputs. Both sides compute in f32; they differ in
//! summation order, in `tanh`, and in adding `bias_ih + bias_hh` before (unfold) or after
//! (PyTorch) the products, so outputs are compared within an absolute 1e-5 (values are O(1)).
#![cfg(feature = "pytorch")]

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use unfold_nn::classifier::{SequenceClassifier, SequenceEncoderConfig};
use unfold_nn::import::{LoadPytorch, PytorchNames, PytorchRnnShape, TorchModule};
use unfold_nn::{ElmanRnn, ElmanRnnConfig, Error, Nonlinearity, SequenceModel, UnrollOptions};

type B = burn::backend::NdArray<f32>;

/// |unfold − PyTorch| allowed on every output (see the module docs).
const TOLERANCE: f32 = 1e-5;

fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file)
}

/// A reference tensor as f32 values and its shape (f32 or i64 in the file).
fn reference(case: &str, name: &str) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(data(&format!("{case}.reference.safetensors"))).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let view = file.tensor(name).unwrap();
    let values = match view.dtype() {
        Dtype::F32 => view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        Dtype::I64 => view
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        other => panic!("unexpected dtype {other}"),
    };
    (values, view.shape().to_vec())
}

fn input(case: &str) -> Tensor<B, 3> {
    let (values, shape) = reference(case, "input");
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// Asserts `got` (at the positions where `keep` holds) is within [`TOLERANCE`] of PyTorch's
/// `name`; returns the largest difference.
fn assert_matches<const D: usize>(
    got: Tensor<B, D>,
    case: &str,
    name: &str,
    keep: impl Fn(&[usize]) -> bool,
) -> f32 {
    let (expected, shape) = reference(case, name);
    assert_eq!(got.dims().to_vec(), shape, "{case} {name}: shape");
    let got = got.into_data().to_vec::<f32>().unwrap();
    let mut worst = 0f32;
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        // Row-major index → coordinates.
        let mut coords = vec![0; shape.len()];
        let mut rest = i;
        for (d, size) in shape.iter().enumerate().rev() {
            coords[d] = rest % size;
            rest /= size;
        }
        if keep(&coords) {
            worst = worst.max((g - e).abs());
        }
    }
    assert!(
        worst <= TOLERANCE,
        "{case} {name}: max |unfold − PyTorch| = {worst:e} > {TOLERANCE:e}"
    );
    println!("{case} {name}: max |unfold − PyTorch| = {worst:e}");
    worst
}

fn all(_: &[usize]) -> bool {
    true
}

fn elman() -> ElmanRnn<B> {
    ElmanRnnConfig::new(4, 6, 3).init(&Default::default())
}

fn two_layers() -> SequenceClassifier<B> {
    SequenceEncoderConfig::new(4, 6)
        .with_num_layers(2)
        .classifier(3)
        .init(&Default::default())
}

fn bidirectional_names() -> PytorchNames {
    PytorchNames::new()
        .with_rnn("encoder.".into())
        .with_linear("head.".into())
}

#[test]
fn one_layer_rnn_and_linear_give_pytorchs_outputs_at_every_step() {
    let model = elman()
        .try_load_pytorch(data("rnn_1layer.safetensors"), &PytorchNames::new())
        .unwrap();
    let out = model.forward(input("rnn_1layer"), &UnrollOptions::new());
    assert_matches(out.states, "rnn_1layer", "states", all);
    assert_matches(out.logits, "rnn_1layer", "logits", all);
}

#[test]
fn two_layer_rnn_gives_pytorchs_top_states_and_last_step_logits() {
    let model = two_layers()
        .try_load_pytorch(data("rnn_2layer.safetensors"), &PytorchNames::new())
        .unwrap();
    let x = input("rnn_2layer");
    let states = model
        .encoder
        .forward(x.clone(), &UnrollOptions::new())
        .states;
    assert_matches(states, "rnn_2layer", "states", all);
    assert_matches(
        model.forward(x, &UnrollOptions::new()),
        "rnn_2layer",
        "logits",
        all,
    );
}

#[test]
fn bidirectional_rnn_over_padded_sequences_gives_pytorchs_packed_outputs() {
    let model: SequenceClassifier<B> = SequenceEncoderConfig::new(4, 5)
        .with_num_layers(2)
        .with_bidirectional(true)
        .classifier(3)
        .init(&Default::default());
    let model = model
        .try_load_pytorch(
            data("rnn_bidirectional.safetensors"),
            &bidirectional_names(),
        )
        .unwrap();
    let lengths: Vec<usize> = reference("rnn_bidirectional", "lengths")
        .0
        .iter()
        .map(|&l| l as usize)
        .collect();
    let x = input("rnn_bidirectional");
    let options = UnrollOptions::new().with_lengths(lengths.clone());
    let states = model.encoder.forward(x.clone(), &options).states;
    // PyTorch pads its output with zeros; unfold holds the forward state there. Compare the
    // valid steps only (the summary below covers each sequence's end).
    assert_matches(states, "rnn_bidirectional", "states", |c| {
        c[1] < lengths[c[0]]
    });
    assert_matches(
        model.forward(x, &options),
        "rnn_bidirectional",
        "logits",
        all,
    );
}

#[test]
fn shapes_read_from_the_file_build_the_matching_configs() {
    let shape = PytorchRnnShape::read(
        data("rnn_bidirectional.safetensors"),
        &bidirectional_names(),
    )
    .unwrap();
    assert_eq!(
        shape,
        PytorchRnnShape {
            module: TorchModule::Rnn,
            input_size: 4,
            hidden_size: 5,
            num_layers: 2,
            bidirectional: true,
            bias: true,
            output_size: Some(3),
            output_bias: true,
        }
    );
    let device = Default::default();
    let model: SequenceClassifier<B> = shape
        .classifier_config(Nonlinearity::Tanh)
        .unwrap()
        .init(&device);
    let model = model
        .try_load_pytorch(
            data("rnn_bidirectional.safetensors"),
            &bidirectional_names(),
        )
        .unwrap();
    assert_eq!(model.summary_size(), 10);

    let names = PytorchNames::new();
    let shape = PytorchRnnShape::read(data("rnn_1layer.safetensors"), &names).unwrap();
    let model: ElmanRnn<B> = shape
        .elman_config(Nonlinearity::Tanh)
        .unwrap()
        .init(&device);
    let model = model
        .try_load_pytorch(data("rnn_1layer.safetensors"), &names)
        .unwrap();
    let logits = model
        .forward(input("rnn_1layer"), &UnrollOptions::new())
        .logits;
    assert_matches(logits, "rnn_1layer", "logits", all);

    // Two layers build a two-layer ElmanRnn: its top layer's states are PyTorch's at every
    // step, and its last step's logits are the file's readout of h_n[-1] (the sequences are
    // full length, so the top layer's last state is h_n[-1]).
    let shape = PytorchRnnShape::read(data("rnn_2layer.safetensors"), &names).unwrap();
    let config = shape.elman_config(Nonlinearity::Tanh).unwrap();
    assert_eq!((config.num_layers, config.bidirectional), (2, false));
    let model: ElmanRnn<B> = config
        .init(&device)
        .try_load_pytorch(data("rnn_2layer.safetensors"), &names)
        .unwrap();
    let out = model.forward(input("rnn_2layer"), &UnrollOptions::new());
    assert_matches(out.states, "rnn_2layer", "states", all);
    let [batch, time, classes] = out.logits.dims();
    let last_step = out
        .logits
        .slice([0..batch, time - 1..time, 0..classes])
        .reshape([batch, classes]);
    assert_matches(last_step, "rnn_2layer", "logits", all);
    // The encoder alone loads from the same file.
    let encoder = shape
        .encoder_config(Nonlinearity::Tanh)
        .init::<B>(&device)
        .try_load_pytorch(data("rnn_2layer.safetensors"), &names)
        .unwrap();
    let states = encoder
        .forward(input("rnn_2layer"), &UnrollOptions::new())
        .states;
    assert_matches(states, "rnn_2layer", "states", all);
}

// ---------------------------------------------------------------------------------------------
// Bad weight files.

/// A scratch directory for this test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "unfold-pytorch-import-{}-{test}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tensors of a data file, owned: (name, dtype, shape, bytes).
type Owned = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

fn tensors_of(file: &str) -> Owned {
    let bytes = std::fs::read(data(file)).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, v)| (name, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect()
}

fn write(path: &Path, tensors: &Owned) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            let view = TensorView::new(*dtype, shape.clone(), bytes).unwrap();
            (name.clone(), view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// The 1-layer file with `edit` applied, written to `dir/name`.
fn edited(dir: &Path, name: &str, edit: impl FnOnce(&mut Owned)) -> PathBuf {
    let mut tensors = tensors_of("rnn_1layer.safetensors");
    edit(&mut tensors);
    let path = dir.join(name);
    write(&path, &tensors);
    path
}

fn params(model: &ElmanRnn<B>) -> Vec<Vec<f32>> {
    let values = |p: &Param<Tensor<B, 2>>| p.val().into_data().to_vec::<f32>().unwrap();
    let bias = |p: &Option<Param<Tensor<B, 1>>>| {
        p.as_ref()
            .unwrap()
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    };
    vec![
        values(&model.cell().u),
        values(&model.cell().w),
        bias(&model.cell().b),
        values(&model.readout.v),
        bias(&model.readout.c),
    ]
}

/// Loads `path` into a fresh Elman model, expects a `BadFile` error naming the file, checks
/// that the model is unchanged, and returns the message.
fn bad_file_message(path: &Path) -> String {
    let model = elman();
    let before = params(&model);
    let err = model
        .try_load_pytorch(path, &PytorchNames::new())
        .unwrap_err();
    assert!(
        matches!(&err, Error::BadFile { path: p, .. } if p == path),
        "{err:?}"
    );
    assert_eq!(params(&model), before, "a failed load changed the model");
    let message = err.to_string();
    assert!(
        message.starts_with(&path.display().to_string()),
        "{message}"
    );
    message
}

#[test]
fn a_file_that_is_not_safetensors_or_is_truncated_is_a_named_error() {
    let dir = scratch("corrupt");
    let text = dir.join("notes.safetensors");
    std::fs::write(&text, "these are not the weights you are looking for").unwrap();
    let message = bad_file_message(&text);
    assert!(
        message.contains("not a readable safetensors file"),
        "{message}"
    );

    let whole = std::fs::read(data("rnn_1layer.safetensors")).unwrap();
    for cut in [whole.len() - 7, whole.len() / 2, 12, 3] {
        let truncated = dir.join(format!("cut{cut}.safetensors"));
        std::fs::write(&truncated, &whole[..cut]).unwrap();
        let message = bad_file_message(&truncated);
        assert!(message.contains("corrupt or truncated"), "{cut}: {message}");
    }

    let absent = dir.join("absent.safetensors");
    let err = elman()
        .try_load_pytorch(&absent, &PytorchNames::new())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if path == &absent),
        "{err:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_tensors_are_all_listed() {
    let dir = scratch("missing");
    let path = edited(&dir, "missing.safetensors", |t| {
        t.retain(|(name, ..)| name != "rnn.bias_hh_l0" && name != "fc.bias")
    });
    let message = bad_file_message(&path);
    assert!(
        message.ends_with("missing tensors: rnn.bias_hh_l0, fc.bias"),
        "{message}"
    );

    // A wrong prefix: the message shows what the file does hold.
    let model = elman();
    let message = model
        .try_load_pytorch(data("rnn_bidirectional.safetensors"), &PytorchNames::new())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("missing tensors: rnn.weight_ih_l0")
            && message.contains("no nn.RNN tensors under the prefix \"rnn.\"")
            && message.contains("encoder.bias_hh_l0"),
        "{message}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn wrong_shapes_name_the_tensor_the_expected_and_the_given_shape() {
    let dir = scratch("shapes");
    // An input width of 5 where the model reads 4.
    let path = edited(&dir, "input5.safetensors", |t| {
        let ih = t
            .iter_mut()
            .find(|(n, ..)| n == "rnn.weight_ih_l0")
            .unwrap();
        ih.2 = vec![6, 5];
        ih.3 = vec![0; 6 * 5 * 4];
    });
    let message = bad_file_message(&path);
    assert!(
        message.contains("tensor rnn.weight_ih_l0 has shape [6, 5], expected [6, 4]"),
        "{message}"
    );
    // A readout with 2 outputs where the model has 3.
    let path = edited(&dir, "out2.safetensors", |t| {
        let fc = t.iter_mut().find(|(n, ..)| n == "fc.weight").unwrap();
        fc.2 = vec![2, 6];
        fc.3.truncate(2 * 6 * 4);
    });
    let message = bad_file_message(&path);
    assert!(
        message.contains("tensor fc.weight has shape [2, 6], expected [3, 6]"),
        "{message}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn layer_count_directions_hidden_size_and_bias_must_match_the_model() {
    let names = PytorchNames::new();
    let message = bad_file_message(&data("rnn_2layer.safetensors"));
    assert!(
        message.contains("the file holds a 2-layer nn.RNN")
            && message.contains("model has 1 layer"),
        "{message}"
    );

    let device = Default::default();
    let wider: ElmanRnn<B> = ElmanRnnConfig::new(4, 5, 3).init(&device);
    let message = wider
        .try_load_pytorch(data("rnn_1layer.safetensors"), &names)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("hidden size 6 in the file (rnn.weight_hh_l0 has shape [6, 6])")
            && message.contains("model's hidden size is 5"),
        "{message}"
    );

    // An nn.LSTM's weight_hh_l0 is [4H, H]: the message says so.
    let dir = scratch("lstm");
    let path = edited(&dir, "lstm.safetensors", |t| {
        let hh = t
            .iter_mut()
            .find(|(n, ..)| n == "rnn.weight_hh_l0")
            .unwrap();
        hh.2 = vec![24, 6];
        hh.3 = vec![0; 24 * 6 * 4];
    });
    let message = bad_file_message(&path);
    assert!(
        message.contains("hidden size 24") && message.contains("an nn.LSTM's"),
        "{message}"
    );
    std::fs::remove_dir_all(dir).unwrap();

    let one_way: SequenceClassifier<B> = SequenceEncoderConfig::new(4, 5)
        .with_num_layers(2)
        .classifier(3)
        .init(&device);
    let message = one_way
        .try_load_pytorch(
            data("rnn_bidirectional.safetensors"),
            &bidirectional_names(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("reads two directions") && message.contains("model reads one direction"),
        "{message}"
    );

    let three = SequenceEncoderConfig::new(4, 6)
        .with_num_layers(3)
        .init::<B>(&device);
    let message = three
        .try_load_pytorch(data("rnn_2layer.safetensors"), &names)
        .unwrap_err()
        .to_string();
    assert!(message.contains("model has 3 layers"), "{message}");

    let unbiased: ElmanRnn<B> = ElmanRnnConfig::new(4, 6, 3).with_bias(false).init(&device);
    let message = unbiased
        .try_load_pytorch(data("rnn_1layer.safetensors"), &names)
        .unwrap_err()
        .to_string();
    assert!(message.contains("built with bias = false"), "{message}");
}

#[test]
fn unsupported_dtypes_are_named_and_other_float_types_load() {
    let dir = scratch("dtypes");
    let path = edited(&dir, "int.safetensors", |t| {
        let ih = t
            .iter_mut()
            .find(|(n, ..)| n == "rnn.weight_ih_l0")
            .unwrap();
        ih.1 = Dtype::I32;
    });
    let message = bad_file_message(&path);
    assert!(
        message.contains("tensor rnn.weight_ih_l0 has dtype I32; supported: F32, F64"),
        "{message}"
    );

    // The same weights stored as F64 give the same outputs.
    let path = edited(&dir, "f64.safetensors", |t| {
        for (_, dtype, _, bytes) in t.iter_mut() {
            *dtype = Dtype::F64;
            *bytes = bytes
                .chunks_exact(4)
                .flat_map(|b| (f32::from_le_bytes(b.try_into().unwrap()) as f64).to_le_bytes())
                .collect();
        }
    });
    let model = elman()
        .try_load_pytorch(&path, &PytorchNames::new())
        .unwrap();
    let logits = model
        .forward(input("rnn_1layer"), &UnrollOptions::new())
        .logits;
    assert_matches(logits, "rnn_1layer", "logits", all);

    // BF16 is the upper half of an f32's bits: the loaded bias is exactly that rounding.
    let mut truncated_bias = Vec::new();
    let path = edited(&dir, "bf16.safetensors", |t| {
        for (name, dtype, _, bytes) in t.iter_mut() {
            *dtype = Dtype::BF16;
            *bytes = bytes.chunks_exact(4).flat_map(|b| [b[2], b[3]]).collect();
            if name == "fc.bias" {
                truncated_bias = bytes
                    .chunks_exact(2)
                    .map(|b| f32::from_le_bytes([0, 0, b[0], b[1]]))
                    .collect();
            }
        }
    });
    let model = elman()
        .try_load_pytorch(&path, &PytorchNames::new())
        .unwrap();
    let c = model.readout.c.as_ref().unwrap().val().into_data();
    assert_eq!(c.to_vec::<f32>().unwrap(), truncated_bias);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_loaded_model_keeps_its_parameter_ids_and_the_original_is_unchanged() {
    let model = elman();
    let before = params(&model);
    let loaded = model
        .try_load_pytorch(data("rnn_1layer.safetensors"), &PytorchNames::new())
        .unwrap();
    assert_eq!(params(&model), before);
    assert_ne!(params(&loaded), before);
    // Same ids: an optimiser's state keyed by parameter id still applies.
    assert_eq!(loaded.cell().u.id, model.cell().u.id);
    assert_eq!(loaded.readout.v.id, model.readout.v.id);
}
