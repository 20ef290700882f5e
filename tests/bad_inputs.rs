//! Every bad input a user can hand unfold gives an `Error` of the right kind whose message names
//! the argument (or file) and the value given — never a panic inside Burn, never garbage.
//! One test per row of the guide's "Errors" table (docs/guide.md §19); each prints its message
//! (`cargo test --release --test bad_inputs -- --nocapture` lists them all).

use std::path::PathBuf;

use burn::backend::NdArray;
use burn::module::Initializer;
use burn::tensor::{Int, Tensor, TensorData};
use unfold::data::{ChunkedCorpus, Corpus, Error as DataError, Vocab, WindowSampler};
use unfold::nn::checkpoint::{self, LoopState, NonFiniteGuard, RunDir, CHECKPOINT_DIR};
use unfold::nn::sample::{generate, GenerateConfig, Sampling};
use unfold::nn::{
    try_classification_nll, try_mean_squared_error, try_sequence_nll, ElmanRnn, ElmanRnnConfig,
    Error, Forcing, JordanRnn, JordanRnnConfig, Reduction, SequenceEncoderConfig, SequenceModel,
    TeacherSchedule, UnrollOptions,
};

type B = NdArray;

/// Checks that `$result` is an `Err` matching `$pattern` whose message contains every needle;
/// prints the message and returns it.
macro_rules! assert_error {
    ($result:expr, $pattern:pat, [$($needle:expr),* $(,)?]) => {{
        let error = match $result {
            Ok(_) => panic!("accepted; expected {}", stringify!($pattern)),
            Err(error) => error,
        };
        assert!(matches!(error, $pattern), "wrong kind of error: {error:?}");
        let message = error.to_string();
        $(assert!(
            message.contains($needle),
            "message {message:?} does not name {:?}",
            $needle
        );)*
        println!("{message}");
        message
    }};
}

fn device() -> burn::backend::ndarray::NdArrayDevice {
    Default::default()
}

/// A fresh directory under the temp dir, unique to this process and test.
fn scratch(tag: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("unfold-bad-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).unwrap();
    path
}

fn ids(rows: Vec<Vec<i64>>) -> Tensor<B, 2, Int> {
    let (batch, time) = (rows.len(), rows.first().map_or(0, Vec::len));
    let data: Vec<i64> = rows.into_iter().flatten().collect();
    Tensor::from_data(TensorData::new(data, [batch, time]), &device())
}

fn dense(values: Vec<f32>, shape: [usize; 3]) -> Tensor<B, 3> {
    Tensor::from_data(TensorData::new(values, shape), &device())
}

/// Elman language model over 3 tokens, hidden 4.
fn elman() -> ElmanRnn<B> {
    ElmanRnnConfig::new(3, 4, 3).init(&device())
}

fn jordan() -> JordanRnn<B> {
    JordanRnnConfig::new(3, 4, 3).init(&device())
}

// ---------------------------------------------------------------------------------------------
// Corpora, vocabularies, batching.
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_corpus_is_refused_naming_it() {
    assert_error!(
        Corpus::from_text("notes.txt", ""),
        DataError::Corpus { .. },
        ["notes.txt", "empty"]
    );
}

#[test]
fn one_character_corpus_is_refused_naming_the_character() {
    assert_error!(
        Corpus::from_text("aaa.txt", "aaaa"),
        DataError::Corpus { .. },
        ["aaa.txt", "1 distinct", "'a'"]
    );
}

#[test]
fn non_utf8_corpus_file_is_refused_with_the_byte_offset() {
    let path = scratch("utf8").join("latin1.txt");
    std::fs::write(&path, b"caf\xe9 au lait").unwrap();
    assert_error!(
        Corpus::from_file(&path),
        DataError::Corpus { .. },
        [&path.display().to_string(), "not UTF-8", "byte offset 3"]
    );
}

#[test]
fn missing_corpus_file_is_an_io_error_naming_it() {
    let path = scratch("missing").join("nowhere.txt");
    assert_error!(
        Corpus::from_file(&path),
        DataError::Nn(Error::Io {
            action: "reading",
            ..
        }),
        ["reading", &path.display().to_string()]
    );
}

#[test]
fn sequence_longer_than_the_corpus_is_refused() {
    let corpus = Corpus::from_text("short", "abcabcabca").unwrap();
    assert_error!(
        WindowSampler::new(corpus.ids().to_vec(), 2, 10, 0),
        DataError::Nn(Error::Config {
            field: "seq_len",
            ..
        }),
        ["`seq_len` = 10", "the data has 10"]
    );
}

#[test]
fn zero_batch_size_is_refused() {
    let corpus = Corpus::from_text("short", "abcabcabca").unwrap();
    assert_error!(
        WindowSampler::new(corpus.ids().to_vec(), 0, 4, 0),
        DataError::Nn(Error::Config {
            field: "batch_size",
            ..
        }),
        ["`batch_size` = 0"]
    );
}

#[test]
fn streams_shorter_than_a_chunk_are_refused() {
    let corpus = Corpus::from_text("short", "abcabcabca").unwrap();
    assert_error!(
        ChunkedCorpus::new(corpus.ids().to_vec(), 4, 8),
        DataError::Nn(Error::Config { .. }),
        ["8"]
    );
}

#[test]
fn train_fraction_outside_zero_one_is_refused() {
    let corpus = Corpus::from_text("toy", "abcdefghijabcdefghij").unwrap();
    assert_error!(
        corpus.split(1.5),
        DataError::Nn(Error::Config {
            field: "train_fraction",
            ..
        }),
        ["`train_fraction` = 1.5", "between 0 and 1"]
    );
}

#[test]
fn character_outside_the_vocabulary_is_named_with_its_position() {
    let vocab = Vocab::from_text("abc").unwrap();
    assert_error!(
        vocab.encode("abz"),
        DataError::UnknownChar {
            ch: 'z',
            position: 2
        },
        ["'z'", "position 2"]
    );
}

#[test]
fn token_id_outside_the_vocabulary_cannot_be_decoded() {
    let vocab = Vocab::from_text("abc").unwrap();
    assert_error!(
        vocab.decode(&[0, 7]),
        DataError::Nn(Error::TokenOutOfRange { id: 7, .. }),
        ["`ids`", "token id 7", "3 entries"]
    );
}

#[test]
fn vocab_json_with_unsorted_characters_is_refused_naming_the_file() {
    let path = scratch("vocab").join("vocab.json");
    std::fs::write(&path, r#"{"chars": ["b", "a"]}"#).unwrap();
    assert_error!(
        checkpoint::read_json::<Vocab>(&path),
        Error::BadFile { .. },
        ["vocab.json", "sorted", "'b'"]
    );
}

// ---------------------------------------------------------------------------------------------
// Model inputs.
// ---------------------------------------------------------------------------------------------

#[test]
fn zero_length_sequences_are_refused() {
    let input = Tensor::<B, 2, Int>::zeros([2, 0], &device());
    assert_error!(
        elman().try_forward(input, &UnrollOptions::new()),
        Error::Empty { arg: "input", .. },
        ["`input`", "zero length", "[2, 0]"]
    );
}

#[test]
fn empty_batch_is_refused() {
    let input = Tensor::<B, 2, Int>::zeros([0, 5], &device());
    assert_error!(
        elman().try_forward(input, &UnrollOptions::new()),
        Error::Empty { arg: "input", .. },
        ["`input`", "no sequences", "[0, 5]"]
    );
}

#[test]
fn lengths_of_the_wrong_count_are_refused() {
    let input = ids(vec![vec![0, 1, 2], vec![2, 1, 0]]);
    assert_error!(
        elman().try_forward(input, &UnrollOptions::new().with_lengths([3])),
        Error::Lengths { .. },
        ["`lengths`", "1 entries", "2 sequences"]
    );
}

#[test]
fn zero_or_too_long_lengths_are_refused() {
    let input = ids(vec![vec![0, 1, 2], vec![2, 1, 0]]);
    assert_error!(
        elman().try_forward(input.clone(), &UnrollOptions::new().with_lengths([3, 0])),
        Error::Lengths { .. },
        ["`lengths`", "[1] = 0", "1..=3"]
    );
    assert_error!(
        elman().try_forward(input, &UnrollOptions::new().with_lengths([5, 1])),
        Error::Lengths { .. },
        ["`lengths`", "[0] = 5", "1..=3"]
    );
}

#[test]
fn dense_input_of_the_wrong_width_is_refused() {
    let input = dense(vec![0.0; 2 * 4 * 7], [2, 4, 7]);
    assert_error!(
        elman().try_forward(input, &UnrollOptions::new()),
        Error::Shape { arg: "input", .. },
        ["`input`", "[2, 4, 7]", "[batch, time, 3]"]
    );
}

#[test]
fn token_id_outside_the_vocabulary_is_refused() {
    assert_error!(
        elman().try_forward(ids(vec![vec![0, 3, 1]]), &UnrollOptions::new()),
        Error::TokenOutOfRange {
            arg: "input",
            id: 3,
            vocab_size: 3
        },
        ["`input`", "token id 3", "3 entries"]
    );
}

#[test]
fn negative_token_id_is_refused() {
    assert_error!(
        elman().try_forward(ids(vec![vec![0, -1, 1]]), &UnrollOptions::new()),
        Error::TokenOutOfRange { id: -1, .. },
        ["`input`", "token id -1"]
    );
}

#[test]
fn nan_input_is_refused() {
    let mut values = vec![0.5f32; 2 * 3 * 3];
    values[7] = f32::NAN;
    assert_error!(
        elman().try_forward(dense(values, [2, 3, 3]), &UnrollOptions::new()),
        Error::NonFinite { arg: "input" },
        ["`input`", "NaN"]
    );
}

#[test]
fn infinite_input_is_refused() {
    let mut values = vec![0.5f32; 3];
    values[2] = f32::NEG_INFINITY;
    assert_error!(
        elman().try_forward(dense(values, [1, 1, 3]), &UnrollOptions::new()),
        Error::NonFinite { arg: "input" },
        ["`input`", "infinite"]
    );
}

#[test]
fn initial_state_of_the_wrong_shape_is_refused() {
    let h0 = Tensor::<B, 2>::zeros([2, 5], &device());
    assert_error!(
        elman().try_forward(
            ids(vec![vec![0, 1], vec![1, 2]]),
            &UnrollOptions::new().with_initial_state(h0)
        ),
        Error::Shape {
            arg: "initial_state",
            ..
        },
        ["`initial_state`", "[2, 5]", "[2, 4]"]
    );
}

#[test]
fn nan_initial_state_is_refused() {
    let h0 = Tensor::<B, 2>::from_data(
        TensorData::new(vec![0.0f32, f32::NAN, 0.0, 0.0], [1, 4]),
        &device(),
    );
    assert_error!(
        elman().try_forward(
            ids(vec![vec![0, 1]]),
            &UnrollOptions::new().with_initial_state(h0)
        ),
        Error::NonFinite {
            arg: "initial_state"
        },
        ["`initial_state`", "NaN"]
    );
}

#[test]
fn zero_hidden_size_is_refused_by_every_model() {
    assert_error!(
        ElmanRnnConfig::new(3, 0, 3).try_init::<B>(&device()),
        Error::Config {
            field: "hidden_size",
            ..
        },
        ["`hidden_size` = 0", "at least 1"]
    );
    assert_error!(
        JordanRnnConfig::new(3, 0, 3).try_init::<B>(&device()),
        Error::Config {
            field: "hidden_size",
            ..
        },
        ["`hidden_size` = 0"]
    );
    assert_error!(
        SequenceEncoderConfig::new(3, 0)
            .classifier(2)
            .try_init::<B>(&device()),
        Error::Config {
            field: "hidden_size",
            ..
        },
        ["`hidden_size` = 0"]
    );
}

#[test]
fn initializer_that_cannot_draw_is_refused_by_every_model() {
    let empty_range = Initializer::Uniform { min: 1.0, max: 0.0 };
    assert_error!(
        ElmanRnnConfig::new(3, 4, 3)
            .with_initializer(empty_range.clone())
            .try_init::<B>(&device()),
        Error::Config {
            field: "initializer",
            ..
        },
        [
            "`initializer` = Uniform { min: 1.0, max: 0.0 }",
            "min < max"
        ]
    );
    let negative_std = Initializer::Normal {
        mean: 0.0,
        std: -1.0,
    };
    assert_error!(
        JordanRnnConfig::new(3, 4, 3)
            .with_initializer(negative_std)
            .try_init::<B>(&device()),
        Error::Config {
            field: "initializer",
            ..
        },
        ["std: -1.0", "standard deviation"]
    );
    let zero_gain = Initializer::KaimingUniform {
        gain: 0.0,
        fan_out_only: false,
    };
    assert_error!(
        SequenceEncoderConfig::new(3, 4)
            .with_initializer(zero_gain)
            .classifier(2)
            .try_init::<B>(&device()),
        Error::Config {
            field: "initializer",
            ..
        },
        ["gain: 0.0", "gain must be"]
    );
}

#[test]
fn target_id_outside_the_output_size_is_refused_by_the_loss() {
    let logits = Tensor::<B, 3>::zeros([1, 3, 4], &device());
    assert_error!(
        try_sequence_nll(logits, ids(vec![vec![0, 4, 1]]), None, Reduction::Sum),
        Error::TokenOutOfRange {
            arg: "targets",
            id: 4,
            ..
        },
        ["`targets`", "token id 4", "4 entries"]
    );
}

#[test]
fn class_label_outside_the_classes_is_refused() {
    let logits = Tensor::<B, 2>::zeros([2, 3], &device());
    let labels = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![1i64, 5], [2]), &device());
    assert_error!(
        try_classification_nll(logits, labels),
        Error::ClassOutOfRange { class: 5, .. },
        ["`targets`", "class 5", "3 classes"]
    );
}

#[test]
fn regression_targets_of_another_shape_are_refused() {
    let predictions = Tensor::<B, 2>::zeros([4, 1], &device());
    let targets = Tensor::<B, 2>::zeros([1, 4], &device());
    assert_error!(
        try_mean_squared_error(predictions, targets),
        Error::Shape { arg: "targets", .. },
        ["`targets`", "[1, 4]", "[4, 1]"]
    );
}

#[test]
fn teacher_forcing_without_targets_is_refused() {
    assert_error!(
        jordan().try_forward(
            ids(vec![vec![0, 1, 2]]),
            &UnrollOptions::new().with_forcing(Forcing::TeacherForced)
        ),
        Error::Missing { arg: "targets", .. },
        ["`targets`", "TeacherForced", "FreeRunning"]
    );
}

#[test]
fn jordan_targets_of_the_wrong_shape_are_refused() {
    assert_error!(
        jordan().try_forward(
            ids(vec![vec![0, 1, 2]]),
            &UnrollOptions::new().teacher_forced(ids(vec![vec![0, 1]]))
        ),
        Error::Shape { arg: "targets", .. },
        ["`targets`", "[1, 2]", "[1, 3]"]
    );
}

#[test]
fn scheduled_sampling_probability_outside_zero_one_is_refused() {
    let forcing = Forcing::Scheduled {
        teacher_probability: 1.5,
        feedback: Default::default(),
        seed: 0,
    };
    let x = ids(vec![vec![0, 1, 2]]);
    assert_error!(
        jordan().try_forward(
            x.clone(),
            &UnrollOptions::new().with_forcing(forcing).with_teacher(x)
        ),
        Error::Config {
            field: "teacher_probability",
            ..
        },
        ["`teacher_probability` = 1.5", "[0, 1]"]
    );
    assert_error!(
        TeacherSchedule::Linear {
            start: 1.0,
            slope: 0.01,
            floor: -0.2
        }
        .validate(),
        Error::Config { field: "floor", .. },
        ["`floor` = -0.2", "[0, 1]"]
    );
    assert_error!(
        TeacherSchedule::Constant(f64::NAN).validate(),
        Error::Config { .. },
        ["NaN"]
    );
}

// ---------------------------------------------------------------------------------------------
// Generation.
// ---------------------------------------------------------------------------------------------

#[test]
fn temperature_zero_or_below_is_refused() {
    for temperature in [0.0, -1.0, f64::NAN] {
        let config = GenerateConfig::new(5).with_sampling(Sampling::Temperature(temperature));
        assert_error!(
            generate(&elman(), &[[0usize, 1]], &config, &device()),
            Error::Config {
                field: "temperature",
                ..
            },
            [&format!("`temperature` = {temperature}"), "positive"]
        );
    }
}

#[test]
fn top_k_of_zero_is_refused() {
    let config = GenerateConfig::new(5).with_sampling(Sampling::TopK {
        k: 0,
        temperature: 1.0,
    });
    assert_error!(
        generate(&elman(), &[[0usize, 1]], &config, &device()),
        Error::Config { field: "k", .. },
        ["`k` = 0", "at least 1"]
    );
}

#[test]
fn zero_generation_length_is_refused() {
    assert_error!(
        generate(&elman(), &[[0usize]], &GenerateConfig::new(0), &device()),
        Error::Config { field: "steps", .. },
        ["`steps` = 0"]
    );
}

#[test]
fn empty_prompt_is_refused() {
    let prompts: [&[usize]; 2] = [&[0, 1], &[]];
    assert_error!(
        generate(&elman(), &prompts, &GenerateConfig::new(3), &device()),
        Error::Empty { arg: "prompts", .. },
        ["`prompts`", "prompt 1 has no tokens"]
    );
}

#[test]
fn prompt_token_outside_the_vocabulary_is_refused() {
    assert_error!(
        generate(&elman(), &[[0usize, 9]], &GenerateConfig::new(3), &device()),
        Error::TokenOutOfRange {
            arg: "prompts",
            id: 9,
            ..
        },
        ["`prompts`", "token id 9"]
    );
}

#[test]
fn generating_from_a_model_whose_outputs_are_not_its_inputs_is_refused() {
    let model: ElmanRnn<B> = ElmanRnnConfig::new(3, 4, 5).init(&device());
    assert_error!(
        generate(&model, &[[0usize]], &GenerateConfig::new(3), &device()),
        Error::Config {
            field: "input_size",
            ..
        },
        ["`input_size` = 3", "output_size (5)"]
    );
}

// ---------------------------------------------------------------------------------------------
// Files: configs, checkpoints, output directories.
// ---------------------------------------------------------------------------------------------

#[test]
fn config_json_with_a_missing_field_is_refused_naming_file_and_field() {
    let path = scratch("config-missing").join("config.json");
    std::fs::write(&path, r#"{"input_size": 65, "output_size": 65}"#).unwrap();
    assert_error!(
        checkpoint::read_json::<ElmanRnnConfig>(&path),
        Error::BadFile { .. },
        ["config.json", "missing field `hidden_size`"]
    );
}

#[test]
fn config_json_with_a_mistyped_field_is_refused_naming_file_field_and_value() {
    let path = scratch("config-mistyped").join("config.json");
    std::fs::write(
        &path,
        r#"{"input_size": 65, "hidden_size": "big", "output_size": 65}"#,
    )
    .unwrap();
    assert_error!(
        checkpoint::read_json::<ElmanRnnConfig>(&path),
        Error::BadFile { .. },
        ["config.json", "field `hidden_size`", "\"big\""]
    );
}

#[test]
fn config_json_that_is_not_json_is_refused() {
    let path = scratch("config-binary").join("config.json");
    std::fs::write(&path, b"\x89PNG\r\n").unwrap();
    assert_error!(
        checkpoint::read_json::<ElmanRnnConfig>(&path),
        Error::BadFile { .. },
        ["config.json", "not the expected JSON"]
    );
}

type State = LoopState<Vec<f64>>;

/// A run directory holding a checkpoint of an Elman model of the given hidden size.
fn checkpointed(tag: &str, hidden: usize) -> RunDir {
    let dir = RunDir::create(scratch(tag)).unwrap();
    let config = ElmanRnnConfig::new(3, hidden, 3);
    let model: ElmanRnn<B> = config.init(&device());
    let state = State {
        step: 10,
        batches_drawn: 10,
        model_config: serde_json::to_value(&config).unwrap(),
        history: vec![1.0],
    };
    dir.save_checkpoint(&model, (), &state).unwrap();
    dir
}

fn load(dir: &RunDir, model: &ElmanRnn<B>) -> unfold::nn::Result<()> {
    dir.load_checkpoint::<B, _, (), State>(model, &device())
        .map(|_| ())
}

fn model_file(dir: &RunDir) -> PathBuf {
    dir.path()
        .join(CHECKPOINT_DIR)
        .join(checkpoint::CHECKPOINT_MODEL_FILE)
}

#[test]
fn corrupt_checkpoint_is_refused_naming_the_file() {
    let dir = checkpointed("corrupt", 4);
    let path = model_file(&dir);
    let mut bytes = std::fs::read(&path).unwrap();
    // Overwrite the structure with garbage: it no longer parses. (Not a fixed fraction of the
    // file: where that lands depends on the model's record layout, and garbage inside a
    // tensor's bytes is just other finite numbers. Right after the `item` key, the record's
    // own map begins.)
    let middle = bytes.windows(4).position(|w| w == b"item").unwrap() + 4;
    bytes[middle..middle + 40].fill(0xc1); // 0xc1 is never used in MessagePack
    std::fs::write(&path, bytes).unwrap();
    assert_error!(
        load(&dir, &elman()),
        Error::BadFile { .. },
        ["model.mpk", "corrupt"]
    );
}

#[test]
fn truncated_checkpoint_is_refused_naming_the_file() {
    let dir = checkpointed("truncated", 4);
    let path = model_file(&dir);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_error!(
        load(&dir, &elman()),
        Error::BadFile { .. },
        ["model.mpk", "truncated"]
    );
}

#[test]
fn checkpoint_of_another_hidden_size_is_refused_naming_both_shapes() {
    let dir = checkpointed("other-size", 8);
    assert_error!(
        load(&dir, &elman()),
        Error::BadFile { .. },
        ["model.mpk", "[3, 8]", "[3, 4]", "another model"]
    );
}

#[test]
fn checkpoint_of_another_model_is_refused() {
    let dir = RunDir::create(scratch("other-model")).unwrap();
    let state = State {
        step: 1,
        batches_drawn: 1,
        model_config: serde_json::Value::Null,
        history: vec![],
    };
    dir.save_checkpoint(&jordan(), (), &state).unwrap();
    assert_error!(
        load(&dir, &elman()),
        Error::BadFile { .. },
        ["model.mpk", "missing field `stack`", "another model"]
    );
}

#[test]
fn checkpoint_with_parameters_the_model_does_not_have_is_refused() {
    // Saved with biases, loaded into a model without: Burn would drop `b` and `c` silently.
    let dir = checkpointed("extra-bias", 4);
    let no_bias: ElmanRnn<B> = ElmanRnnConfig::new(3, 4, 3)
        .with_bias(false)
        .init(&device());
    assert_error!(load(&dir, &no_bias), Error::BadFile { .. }, ["model.mpk"]);
}

#[test]
fn checkpoint_with_nan_parameters_is_refused() {
    let dir = RunDir::create(scratch("nan-params")).unwrap();
    let mut model = elman();
    let nan = Tensor::<B, 1>::full([4], f32::NAN, &device());
    let cell = &mut model.stack.layers[0];
    cell.b = cell.b.take().map(|b| b.map(|_| nan));
    let state = State {
        step: 1,
        batches_drawn: 1,
        model_config: serde_json::Value::Null,
        history: vec![],
    };
    dir.save_checkpoint(&model, (), &state).unwrap();
    assert_error!(
        load(&dir, &elman()),
        Error::BadFile { .. },
        ["model.mpk", "NaN or infinite parameters"]
    );
}

#[test]
fn checkpoint_state_that_is_not_json_is_refused_naming_the_file() {
    let dir = checkpointed("state", 4);
    let path = dir
        .path()
        .join(CHECKPOINT_DIR)
        .join(checkpoint::CHECKPOINT_STATE_FILE);
    std::fs::write(&path, r#"{"step": 10, "batches_drawn": "#).unwrap();
    assert_error!(load(&dir, &elman()), Error::BadFile { .. }, ["state.json"]);
}

#[test]
fn resuming_without_a_checkpoint_is_an_io_error_naming_the_directory() {
    let dir = RunDir::create(scratch("no-checkpoint")).unwrap();
    assert_error!(
        load(&dir, &elman()),
        Error::Io {
            action: "resuming from",
            ..
        },
        ["resuming from", "checkpoint", "run without --resume first"]
    );
}

#[test]
fn output_directory_that_cannot_be_created_is_refused_before_training() {
    // A path under a regular file: no one, root included, can create a directory there.
    let file = scratch("out-file").join("a-file");
    std::fs::write(&file, b"").unwrap();
    let out = file.join("run");
    assert_error!(
        RunDir::create(&out),
        Error::Io { .. },
        ["output directory", &out.display().to_string()]
    );
}

#[test]
fn read_only_output_directory_is_refused_before_training() {
    use std::os::unix::fs::PermissionsExt;
    let out = scratch("out-read-only");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(out.join("probe"), b"").is_ok() {
        // Running as root: permissions do not stop writes, so there is nothing to test here
        // (the test above covers an output directory that cannot be written by anyone).
        eprintln!("skipped: running with privileges that ignore directory permissions");
        return;
    }
    assert_error!(
        RunDir::create(&out),
        Error::Io {
            action: "writing to output directory",
            ..
        },
        ["writing to output directory", &out.display().to_string()]
    );
}

// ---------------------------------------------------------------------------------------------
// Training that diverges.
// ---------------------------------------------------------------------------------------------

#[test]
fn non_finite_loss_stops_the_run_naming_the_step_and_the_kept_checkpoint() {
    let mut guard = NonFiniteGuard::new(false);
    assert!(guard.check_loss(1, 2.5).unwrap());
    guard.saved(1);
    assert_error!(
        guard.check_loss(2, f64::NAN),
        Error::Diverged {
            what: "training loss",
            step: 2,
            ..
        },
        [
            "training loss at step 2 is NaN",
            "stopped before applying the step",
            "last checkpoint (step 1) is kept",
            "--skip-nonfinite"
        ]
    );
}

#[test]
fn skip_nonfinite_skips_such_steps_but_stops_when_they_never_end() {
    let mut guard = NonFiniteGuard::new(true);
    assert!(!guard.check_loss(1, f64::INFINITY).unwrap());
    assert!(guard.check_loss(2, 1.0).unwrap());
    assert_eq!(guard.skipped(), &[1]);
    let limit = NonFiniteGuard::MAX_CONSECUTIVE_SKIPS;
    for step in 3..2 + limit {
        assert!(!guard.check_loss(step, f64::NAN).unwrap());
    }
    assert_error!(
        guard.check_loss(2 + limit, f64::NAN),
        Error::Diverged { .. },
        [&format!("step {}", 2 + limit), "in a row"]
    );
}

#[test]
fn non_finite_validation_loss_is_never_saved() {
    let mut guard = NonFiniteGuard::new(true);
    guard.saved(250);
    assert_error!(
        guard.check_validation(500, f64::INFINITY),
        Error::Diverged {
            what: "validation loss",
            step: 500,
            ..
        },
        [
            "validation loss at step 500 is inf",
            "not saved",
            "(step 250) is kept"
        ]
    );
}

#[test]
fn non_finite_parameters_are_never_saved() {
    let mut model = elman();
    let guard = NonFiniteGuard::new(false);
    guard.check_before_saving::<B, _>(3, &model).unwrap();
    let w = model.cell().w.val();
    let poisoned = w.clone() / Tensor::<B, 2>::zeros(w.dims(), &device()); // ±inf, NaN
    let cell = &mut model.stack.layers[0];
    cell.w = cell.w.clone().map(|_| poisoned);
    assert_error!(
        guard.check_before_saving::<B, _>(3, &model),
        Error::Diverged {
            what: "a parameter",
            ..
        },
        ["a parameter at step 3 is NaN", "not saved"]
    );
}
