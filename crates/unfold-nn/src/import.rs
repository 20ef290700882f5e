//! Importing PyTorch `nn.RNN`, `nn.LSTM` and `nn.GRU` weights from a safetensors file (feature
//! `pytorch`).
//!
//! A PyTorch model made of an `nn.RNN` (tanh or ReLU), `nn.LSTM` or `nn.GRU` (any number of
//! layers, one or two directions, with or without biases) followed by an `nn.Linear`, saved
//! with `safetensors.torch.save_file(model.state_dict(), "model.safetensors")`, loads into the
//! matching unfold model and gives the same outputs for the same inputs:
//!
//! | PyTorch model | unfold model |
//! |---|---|
//! | `nn.RNN(I, H, num_layers=L, bidirectional=…)` + `nn.Linear` on every step's output | [`ElmanRnn`] (`ElmanRnnConfig::new(I, H, O)` with the same layers and directions) |
//! | `nn.LSTM(…)` / `nn.GRU(…)` + `nn.Linear` on every step's output | [`StackedRnn`] of [`LstmCell`] / [`GruCell`] ([`ElmanRnnConfig::try_init_with`]) |
//! | any of them + `nn.Linear` on `h_n` of the top layer | [`SequenceClassifier`] (`Pooling::Last`) of that cell |
//! | any of them alone | [`SequenceEncoder`] of that cell |
//!
//! # Name mapping
//!
//! Names are PyTorch's, after a prefix for each part ([`PytorchNames`]: `rnn.` and `fc.` by
//! default, as in a module with attributes `self.rnn` and `self.fc`; `""` for a bare
//! `nn.RNN`'s own `state_dict()`). Layer `k` counts from the bottom; `_reverse` names the
//! reversed direction of a bidirectional layer (unfold's `reversed_layers[k]`).
//!
//! | tensor in the file | PyTorch shape | unfold parameter | unfold shape |
//! |---|---|---|---|
//! | `rnn.weight_ih_l{k}` | `[H, in_k]` | `layers[k].u` (`U`), transposed | `[in_k, H]` |
//! | `rnn.weight_hh_l{k}` | `[H, H]` | `layers[k].w` (`W`), transposed | `[H, H]` |
//! | `rnn.bias_ih_l{k}` + `rnn.bias_hh_l{k}` | `[H]` each | `layers[k].b` (`b`), their sum | `[H]` |
//! | `rnn.weight_ih_l{k}_reverse`, … | as above | `reversed_layers[k].u`, … | as above |
//! | `fc.weight` | `[O, S]` | `readout.v` (`V`), transposed | `[S, O]` |
//! | `fc.bias` | `[O]` | `readout.c` (`c`) | `[O]` |
//!
//! `in_0` is the input width `I`, `in_k` for `k ≥ 1` is `H × directions`, and `S` (what the
//! readout reads) is `H × directions`. `layers[k]` is `stack.layers[k]` of an [`ElmanRnn`] and
//! `encoder.stack.layers[k]` of a [`SequenceClassifier`].
//!
//! Why transposed and summed: PyTorch computes `h(t) = tanh(x W_ihᵀ + b_ih + h(t-1) W_hhᵀ +
//! b_hh)` with weights stored `[out, in]`, unfold `h(t) = tanh(x U + h(t-1) W + b)` with
//! weights stored `[in, out]` (as burn-nn's `Linear`) and one bias, so `U = W_ihᵀ`,
//! `W = W_hhᵀ`, `b = b_ih + b_hh` — the same function.
//!
//! `nn.LSTM` and `nn.GRU` use the same names with their gates stacked (`[4H, ·]` in the order
//! `i, f, g, o`; `[3H, ·]` in the order `r, z, n`), and unfold's gated cells keep the gates
//! side by side in the same order, transposed: [`LstmCell`]'s `U`, `W`, `b = b_ih + b_hh`;
//! [`GruCell`]'s `U`, `W`, `b = b_ih + [b_hh of r, z; 0]` and `b_hn` = the `n` part of `b_hh`
//! (it sits inside the reset gate's product, so it cannot be summed).
//!
//! # Using it
//!
//! Either build the model from the matching config and load into it
//! ([`LoadPytorch::try_load_pytorch`]: the model's sizes say what the file must hold), or let
//! the file say the sizes ([`PytorchRnnShape::read`], then its `*_config()`):
//!
//! ```no_run
//! use unfold_nn::import::{LoadPytorch, PytorchNames, PytorchRnnShape};
//! use unfold_nn::{Nonlinearity, SequenceClassifier};
//!
//! type B = burn::backend::NdArray;
//! let device = Default::default();
//! let names = PytorchNames::new(); // "rnn." and "fc."
//! let shape = PytorchRnnShape::read("model.safetensors", &names)?;
//! // The file cannot say tanh or ReLU: say which the nn.RNN was built with.
//! let model: SequenceClassifier<B> = shape.classifier_config(Nonlinearity::Tanh)?.init(&device);
//! let model = model.try_load_pytorch("model.safetensors", &names)?;
//! # Ok::<(), unfold_nn::Error>(())
//! ```
//!
//! **The nonlinearity is yours to give.** PyTorch's `state_dict` does not record whether the
//! `nn.RNN` was `nonlinearity='tanh'` (its default) or `'relu'`: the weights of either load into
//! either model. The model you load into decides (`ElmanRnnConfig::nonlinearity`, …), and
//! [`PytorchRnnShape`]'s configs take it as an argument; a wrong choice gives other outputs
//! (by 0.9 on a 3-layer fixture), and no check can see it.
//!
//! Loading returns a new model and leaves `self` as it was, also on error. Tensors in the file
//! under other names (an embedding, an optimiser's state) are ignored. Weights may be stored as
//! `F32`, `F64`, `F16` or `BF16`; they are converted to the model's float type.
//!
//! Inputs: PyTorch's `nn.RNN` reads dense features, so feed the imported model dense
//! `[batch, time, I]` input (`batch_first=True` order); with padded sequences, pass the
//! lengths that PyTorch's `pack_padded_sequence` was given. [`SequenceClassifier`] with
//! [`Pooling::Last`](crate::classifier::Pooling::Last) reads out `[h_n[-2], h_n[-1]]` (both
//! directions) or `h_n[-1]`, as a PyTorch classifier head usually does.
//!
//! # Errors
//!
//! Every problem is an [`Error::BadFile`] naming the file (or [`Error::Io`] when it cannot be
//! read): not a safetensors file or truncated; missing tensors (all of them listed); a tensor
//! of the wrong shape (its name, the expected and the given shape); a layer count, direction
//! count, hidden size or bias that does not match the model; an unsupported dtype.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::module::Param;
use burn::tensor::{backend::Backend, DType, Tensor, TensorCreationOptions, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::classifier::{
    SequenceClassifier, SequenceClassifierConfig, SequenceEncoder, SequenceEncoderConfig,
};
use crate::elman::{ElmanCell, ElmanRnnConfig};
use crate::error::{Error, Result};
use crate::gated::{GruCell, LstmCell};
use crate::nonlinearity::Nonlinearity;
use crate::readout::Readout;
use crate::recurrence::Recurrence;
use crate::rnn::StackedRnn;
use crate::stack::RecurrentStack;

#[cfg(doc)]
use crate::ElmanRnn;

/// Where the PyTorch modules' tensors sit in the file: the prefix of each part's names.
#[derive(Config, Debug)]
pub struct PytorchNames {
    /// Prefix of the `nn.RNN`'s tensors, dot included: `rnn.` for a module whose attribute is
    /// `self.rnn` (`rnn.weight_ih_l0`, …), `""` for a bare `nn.RNN`'s `state_dict()`.
    /// Default `"rnn."`.
    #[config(default = "\"rnn.\".to_string()")]
    pub rnn: String,
    /// Prefix of the following `nn.Linear`'s `weight` and `bias` (unfold's `V` and `c`).
    /// Default `"fc."`.
    #[config(default = "\"fc.\".to_string()")]
    pub linear: String,
}

/// A model whose parameters can be read from a PyTorch safetensors file (see the
/// [module docs](self) for the names and the mapping).
pub trait LoadPytorch: Sized {
    /// Returns a copy of `self` with every parameter read from the file at `path`, checked
    /// against `self`'s sizes. `self` is left as it was, also on error.
    fn try_load_pytorch(&self, path: impl AsRef<Path>, names: &PytorchNames) -> Result<Self>;
}

/// A cell whose parameters one layer (and direction) of a PyTorch recurrent module holds.
trait TorchCell<B: Backend>: Recurrence<B> + burn::module::Module<B> + Sized {
    /// The module that stores it: `nn.RNN`, `nn.LSTM` or `nn.GRU`.
    const MODULE: TorchModule;

    /// Whether the cell has biases.
    fn has_bias(&self) -> bool;

    /// A copy of `self` with layer `k`'s parameters (`reversed`: its reverse direction) read
    /// from `file`.
    fn read(&self, file: &File<'_>, k: usize, reversed: bool) -> Result<Self>;
}

/// A PyTorch recurrent module, told apart in a file by its gates stacked in `weight_hh_l0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchModule {
    /// `nn.RNN` (`weight_hh` `[H, H]`).
    Rnn,
    /// `nn.LSTM` (`[4H, H]`, gates `i, f, g, o`).
    Lstm,
    /// `nn.GRU` (`[3H, H]`, gates `r, z, n`).
    Gru,
}

impl TorchModule {
    /// Gate blocks stacked in each weight.
    pub fn gates(self) -> usize {
        match self {
            TorchModule::Rnn => 1,
            TorchModule::Lstm => 4,
            TorchModule::Gru => 3,
        }
    }

    /// PyTorch's name, `nn.RNN`, ….
    pub fn name(self) -> &'static str {
        match self {
            TorchModule::Rnn => "nn.RNN",
            TorchModule::Lstm => "nn.LSTM",
            TorchModule::Gru => "nn.GRU",
        }
    }

    /// unfold's cell for it.
    fn cell(self) -> &'static str {
        match self {
            TorchModule::Rnn => "ElmanCell",
            TorchModule::Lstm => "LstmCell",
            TorchModule::Gru => "GruCell",
        }
    }

    /// The module with `gates` stacked gates, if any.
    fn from_gates(gates: usize) -> Option<Self> {
        [TorchModule::Rnn, TorchModule::Lstm, TorchModule::Gru]
            .into_iter()
            .find(|m| m.gates() == gates)
    }
}

impl<B: Backend> TorchCell<B> for ElmanCell<B> {
    const MODULE: TorchModule = TorchModule::Rnn;

    fn has_bias(&self) -> bool {
        self.b.is_some()
    }

    fn read(&self, file: &File<'_>, k: usize, reversed: bool) -> Result<Self> {
        let (u, w, b) = file.gate_weights(&self.u, &self.w, self.b.as_ref(), k, reversed)?;
        Ok(ElmanCell {
            u,
            w,
            b,
            nonlinearity: self.nonlinearity,
        })
    }
}

impl<B: Backend> TorchCell<B> for LstmCell<B> {
    const MODULE: TorchModule = TorchModule::Lstm;

    fn has_bias(&self) -> bool {
        self.b.is_some()
    }

    fn read(&self, file: &File<'_>, k: usize, reversed: bool) -> Result<Self> {
        let (u, w, b) = file.gate_weights(&self.u, &self.w, self.b.as_ref(), k, reversed)?;
        Ok(LstmCell { u, w, b })
    }
}

impl<B: Backend> TorchCell<B> for GruCell<B> {
    const MODULE: TorchModule = TorchModule::Gru;

    fn has_bias(&self) -> bool {
        self.b.is_some()
    }

    /// `b = b_ih + [b_hh of r, z; 0]`, `b_hn` = the `n` part of `b_hh`.
    fn read(&self, file: &File<'_>, k: usize, reversed: bool) -> Result<Self> {
        let (u, w, _) = file.gate_weights(&self.u, &self.w, None, k, reversed)?;
        let name = |what| rnn_name(file.names, what, k, reversed);
        let (b, b_hn) = match (&self.b, &self.b_hn) {
            (Some(b), Some(b_hn)) => {
                let hidden = b_hn.dims()[0];
                let meaning = "[3 · hidden_size], gates r, z, n";
                let ih = file.values(&name("bias_ih"), &[3 * hidden], meaning)?;
                let hh = file.values(&name("bias_hh"), &[3 * hidden], meaning)?;
                let folded: Vec<f64> = (0..3 * hidden)
                    .map(|j| ih[j] + if j < 2 * hidden { hh[j] } else { 0.0 })
                    .collect();
                let b = replace(b, TensorData::new(folded, [3 * hidden]));
                let n = TensorData::new(hh[2 * hidden..].to_vec(), [hidden]);
                (Some(b), Some(replace(b_hn, n)))
            }
            _ => (None, None),
        };
        Ok(GruCell { u, w, b, b_hn })
    }
}

/// `LoadPytorch` for every model of every cell: the per-step model, the encoder and the
/// classifier, each of Elman, LSTM and GRU cells.
macro_rules! load_pytorch_for {
    ($($cell:ident),+) => {$(
        impl<B: Backend> LoadPytorch for StackedRnn<B, $cell<B>> {
            fn try_load_pytorch(&self, path: impl AsRef<Path>, names: &PytorchNames) -> Result<Self> {
                with_file(path.as_ref(), names, |file| {
                    let (stack, readout) = file.stack_and_readout(&self.stack, &self.readout)?;
                    StackedRnn::try_new(stack, readout)
                })
            }
        }

        impl<B: Backend> LoadPytorch for SequenceEncoder<B, $cell<B>> {
            fn try_load_pytorch(&self, path: impl AsRef<Path>, names: &PytorchNames) -> Result<Self> {
                with_file(path.as_ref(), names, |file| {
                    file.check_stack(&self.stack)?;
                    file.check_names(&stack_names(&self.stack, names))?;
                    Ok(SequenceEncoder {
                        stack: file.stack(&self.stack)?,
                        pooling: self.pooling,
                    })
                })
            }
        }

        impl<B: Backend> LoadPytorch for SequenceClassifier<B, $cell<B>> {
            fn try_load_pytorch(&self, path: impl AsRef<Path>, names: &PytorchNames) -> Result<Self> {
                with_file(path.as_ref(), names, |file| {
                    let (stack, readout) =
                        file.stack_and_readout(&self.encoder.stack, &self.readout)?;
                    let encoder = SequenceEncoder {
                        stack,
                        pooling: self.encoder.pooling,
                    };
                    SequenceClassifier::try_new(encoder, readout)
                })
            }
        }
    )+};
}

load_pytorch_for!(ElmanCell, LstmCell, GruCell);

/// The sizes of a PyTorch `nn.RNN`, `nn.LSTM` or `nn.GRU` (+ `nn.Linear`) in a safetensors
/// file, read from its tensors' names and shapes: build the matching unfold config from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PytorchRnnShape {
    /// Which module: told by the gates stacked in `weight_hh_l0` (`[G·H, H]`).
    pub module: TorchModule,
    /// Width of the input, `I` (the columns of `weight_ih_l0`).
    pub input_size: usize,
    /// Width of each layer's state, `H` (the columns of `weight_hh_l0`).
    pub hidden_size: usize,
    /// Number of layers (`…_l0`, `…_l1`, …).
    pub num_layers: usize,
    /// Whether the layers have `_reverse` tensors.
    pub bidirectional: bool,
    /// Whether the recurrence has biases (`bias_ih_l0`).
    pub bias: bool,
    /// Width of the readout's output, `O` (from the linear part's `weight`), if the file has
    /// one.
    pub output_size: Option<usize>,
    /// Whether the readout has a bias.
    pub output_bias: bool,
}

impl PytorchRnnShape {
    /// Reads the sizes from the file at `path`. Only the names and shapes are checked here;
    /// loading checks every tensor.
    pub fn read(path: impl AsRef<Path>, names: &PytorchNames) -> Result<Self> {
        with_file(path.as_ref(), names, |file| {
            let ih = rnn_name(names, "weight_ih", 0, false);
            let hh = rnn_name(names, "weight_hh", 0, false);
            file.check_names(&[ih.clone(), hh.clone()])?;
            let [_, input_size] = file.dims2(&ih)?;
            let [rows, hidden_size] = file.dims2(&hh)?;
            let module = TorchModule::from_gates(rows / hidden_size.max(1))
                .filter(|m| m.gates() * hidden_size == rows)
                .ok_or_else(|| {
                    file.bad(format!(
                        "{hh} has shape [{rows}, {hidden_size}]: not an nn.RNN's [H, H], an \
                         nn.LSTM's [4H, H] or an nn.GRU's [3H, H]"
                    ))
                })?;
            let readout = format!("{}weight", names.linear);
            let output_size = match file.tensors.tensor(&readout) {
                Ok(_) => Some(file.dims2(&readout)?[0]),
                Err(_) => None,
            };
            Ok(Self {
                module,
                input_size,
                hidden_size,
                num_layers: file.num_layers(),
                bidirectional: file.is_bidirectional(),
                bias: file.has(&format!("{}bias_ih_l0", names.rnn)),
                output_size,
                output_bias: file.has(&format!("{}bias", names.linear)),
            })
        })
    }

    /// The config of the [`SequenceEncoder`] with these sizes (`Pooling::Last`) and the
    /// given nonlinearity: the file cannot say whether the `nn.RNN` was `'tanh'` or `'relu'`
    /// (PyTorch keeps it in the module, not in the `state_dict`), so the caller must.
    pub fn encoder_config(&self, nonlinearity: Nonlinearity) -> SequenceEncoderConfig {
        SequenceEncoderConfig::new(self.input_size, self.hidden_size)
            .with_num_layers(self.num_layers)
            .with_bidirectional(self.bidirectional)
            .with_nonlinearity(nonlinearity)
            .with_bias(self.bias)
    }

    /// The config of the [`SequenceClassifier`] with these sizes (`Pooling::Last`) and the
    /// given nonlinearity (see [`encoder_config`](Self::encoder_config)); an error when the
    /// file has no readout or only one of the two parts has biases (unfold's config has one
    /// `bias` flag for both).
    pub fn classifier_config(
        &self,
        nonlinearity: Nonlinearity,
    ) -> Result<SequenceClassifierConfig> {
        let output_size = self.output_size()?;
        let bias = self.one_bias_flag()?;
        Ok(self
            .encoder_config(nonlinearity)
            .with_bias(bias)
            .classifier(output_size))
    }

    /// The config of the per-step model with these sizes (layers, directions) and the given
    /// nonlinearity (see [`encoder_config`](Self::encoder_config)): an [`ElmanRnn`] from its
    /// `init`, or a [`StackedRnn`] of the file's cell from
    /// [`try_init_with`](ElmanRnnConfig::try_init_with); an error when the file has no
    /// readout or biases in one part only.
    pub fn elman_config(&self, nonlinearity: Nonlinearity) -> Result<ElmanRnnConfig> {
        Ok(
            ElmanRnnConfig::new(self.input_size, self.hidden_size, self.output_size()?)
                .with_num_layers(self.num_layers)
                .with_bidirectional(self.bidirectional)
                .with_nonlinearity(nonlinearity)
                .with_bias(self.one_bias_flag()?),
        )
    }

    fn output_size(&self) -> Result<usize> {
        self.output_size.ok_or_else(|| Error::Missing {
            arg: "readout",
            why: "the file has no `nn.Linear` weight under the given prefix; load the \
                  recurrence alone into a SequenceEncoder"
                .into(),
        })
    }

    fn one_bias_flag(&self) -> Result<bool> {
        if self.bias != self.output_bias {
            return Err(Error::config(
                "bias",
                format!(
                    "{} in the recurrence, {} in the readout",
                    self.bias, self.output_bias
                ),
                "one `bias` flag covers both parts: build the model by hand and load into it",
            ));
        }
        Ok(self.bias)
    }
}

/// Reads and parses the file, then runs `body` on it. The whole file is read into memory:
/// RNN weight files are small, and a read buffer keeps the parser safe (no memory map of a
/// file that could change underneath).
fn with_file<T>(
    path: &Path,
    names: &PytorchNames,
    body: impl FnOnce(&File<'_>) -> Result<T>,
) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        problem: format!("not a readable safetensors file (corrupt or truncated): {e}"),
    })?;
    body(&File {
        path: path.to_path_buf(),
        names,
        tensors,
    })
}

/// A parsed safetensors file and the prefixes to read it with.
struct File<'a> {
    path: PathBuf,
    names: &'a PytorchNames,
    tensors: SafeTensors<'a>,
}

/// PyTorch's name of one of layer `k`'s tensors (`weight_ih`, …), with the prefix.
fn rnn_name(names: &PytorchNames, what: &str, k: usize, reversed: bool) -> String {
    let suffix = if reversed { "_reverse" } else { "" };
    format!("{}{what}_l{k}{suffix}", names.rnn)
}

fn cell_names(names: &PytorchNames, k: usize, reversed: bool, bias: bool) -> Vec<String> {
    let parts: &[&str] = match bias {
        true => &["weight_ih", "weight_hh", "bias_ih", "bias_hh"],
        false => &["weight_ih", "weight_hh"],
    };
    parts
        .iter()
        .map(|what| rnn_name(names, what, k, reversed))
        .collect()
}

fn stack_names<B: Backend, C: TorchCell<B>>(
    stack: &RecurrentStack<B, C>,
    names: &PytorchNames,
) -> Vec<String> {
    let mut expected = Vec::new();
    for (k, cell) in stack.layers.iter().enumerate() {
        expected.extend(cell_names(names, k, false, cell.has_bias()));
        if let Some(cell) = stack.reversed_layers.get(k) {
            expected.extend(cell_names(names, k, true, cell.has_bias()));
        }
    }
    expected
}

fn readout_names<B: Backend>(readout: &Readout<B>, names: &PytorchNames) -> Vec<String> {
    let mut expected = vec![format!("{}weight", names.linear)];
    if readout.c.is_some() {
        expected.push(format!("{}bias", names.linear));
    }
    expected
}

impl File<'_> {
    fn bad(&self, problem: impl Into<String>) -> Error {
        Error::BadFile {
            path: self.path.clone(),
            problem: problem.into(),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.tensors.tensor(name).is_ok()
    }

    /// The names under the `nn.RNN` prefix that look like PyTorch's RNN tensors.
    fn rnn_tensor_names(&self) -> Vec<&str> {
        let prefix = &self.names.rnn;
        self.tensors
            .names()
            .into_iter()
            .filter(|name| {
                name.strip_prefix(prefix.as_str()).is_some_and(|rest| {
                    ["weight_ih_l", "weight_hh_l", "bias_ih_l", "bias_hh_l"]
                        .iter()
                        .any(|p| rest.starts_with(p))
                })
            })
            .collect()
    }

    /// Layers in the file: one more than the highest `_l{k}` under the RNN prefix.
    fn num_layers(&self) -> usize {
        self.rnn_tensor_names()
            .iter()
            .filter_map(|name| {
                let rest = name.rsplit_once("_l")?.1;
                rest.trim_end_matches("_reverse").parse::<usize>().ok()
            })
            .map(|k| k + 1)
            .max()
            .unwrap_or(0)
    }

    fn is_bidirectional(&self) -> bool {
        self.rnn_tensor_names()
            .iter()
            .any(|name| name.ends_with("_reverse"))
    }

    /// Layer count, directions, hidden size and biases against the model's, each with its
    /// own message (a plain "missing tensor" or "wrong shape" would hide the real mismatch).
    fn check_layout(
        &self,
        module: TorchModule,
        num_layers: usize,
        bidirectional: bool,
        hidden_size: usize,
        bias: bool,
    ) -> Result<()> {
        let rnn = &self.names.rnn;
        let kind = module.name();
        let found = self.num_layers();
        if found == 0 {
            // Nothing under the prefix: most likely the wrong prefix; the missing-names check
            // lists what is there.
            return Ok(());
        }
        if found != num_layers {
            return Err(self.bad(format!(
                "the file holds a {found}-layer {kind} ({rnn}…_l0 to …_l{}), but the model has \
                 {num_layers} layer{}",
                found - 1,
                if num_layers == 1 { "" } else { "s" }
            )));
        }
        let directions = |b: bool| if b { "two directions" } else { "one direction" };
        if self.is_bidirectional() != bidirectional {
            return Err(self.bad(format!(
                "the file's {kind} reads {} ({rnn}…_reverse tensors {}), but the model reads {}",
                directions(self.is_bidirectional()),
                if self.is_bidirectional() {
                    "present"
                } else {
                    "absent"
                },
                directions(bidirectional)
            )));
        }
        let hh = rnn_name(self.names, "weight_hh", 0, false);
        if let Ok(view) = self.tensors.tensor(&hh) {
            if let &[rows, cols, ..] = view.shape() {
                if rows != module.gates() * hidden_size {
                    // The three modules use the same names with 1, 4 and 3 gates stacked.
                    let gates = match TorchModule::from_gates(rows / cols.max(1)) {
                        Some(other) if other != module && other.gates() * cols == rows => {
                            format!(
                                "; [{}H, H] is an {}'s: load it into a model of {}s, not {}s",
                                other.gates(),
                                other.name(),
                                other.cell(),
                                module.cell()
                            )
                        }
                        _ => String::new(),
                    };
                    let stacked = match module.gates() {
                        1 => String::new(),
                        g => format!(" ({g} gates of it stacked: {} rows)", g * hidden_size),
                    };
                    return Err(self.bad(format!(
                        "hidden size {rows} in the file ({hh} has shape {:?}), but the model's \
                         hidden size is {hidden_size}{stacked}{gates}",
                        view.shape(),
                    )));
                }
            }
        }
        let bias_name = rnn_name(self.names, "bias_ih", 0, false);
        if !bias && self.has(&bias_name) {
            return Err(self.bad(format!(
                "the file's {kind} has biases ({bias_name}), but the model was built with \
                 bias = false"
            )));
        }
        Ok(())
    }

    fn check_stack<B: Backend, C: TorchCell<B>>(&self, stack: &RecurrentStack<B, C>) -> Result<()> {
        let bottom = &stack.layers[0];
        self.check_layout(
            C::MODULE,
            stack.num_layers(),
            stack.is_bidirectional(),
            bottom.state_size(),
            bottom.has_bias(),
        )
    }

    /// A stack and the readout after it, checked and read (the per-step model and the
    /// classifier).
    fn stack_and_readout<B: Backend, C: TorchCell<B>>(
        &self,
        stack: &RecurrentStack<B, C>,
        readout: &Readout<B>,
    ) -> Result<(RecurrentStack<B, C>, Readout<B>)> {
        self.check_stack(stack)?;
        self.check_readout_bias(readout)?;
        let mut expected = stack_names(stack, self.names);
        expected.extend(readout_names(readout, self.names));
        self.check_names(&expected)?;
        Ok((self.stack(stack)?, self.readout(readout)?))
    }

    fn check_readout_bias<B: Backend>(&self, readout: &Readout<B>) -> Result<()> {
        let name = format!("{}bias", self.names.linear);
        if readout.c.is_none() && self.has(&name) {
            return Err(self.bad(format!(
                "the file's nn.Linear has a bias ({name}), but the model's readout was built \
                 with bias = false"
            )));
        }
        Ok(())
    }

    /// Every expected name is in the file; lists all that are not (and, when nothing under
    /// the RNN prefix was found, the names the file does hold, to show the right prefix).
    fn check_names(&self, expected: &[String]) -> Result<()> {
        let missing: Vec<&str> = expected
            .iter()
            .filter(|name| !self.has(name))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut problem = format!("missing tensors: {}", missing.join(", "));
        if self.rnn_tensor_names().is_empty() {
            let held: BTreeSet<&str> = self.tensors.names().into_iter().collect();
            let held: Vec<&str> = held.into_iter().take(12).collect();
            problem += &format!(
                " (no nn.RNN tensors under the prefix {:?}; the file holds: {}{})",
                self.names.rnn,
                held.join(", "),
                if self.tensors.len() > held.len() {
                    ", …"
                } else {
                    ""
                }
            );
        }
        Err(self.bad(problem))
    }

    /// The shape of a 2-d tensor (any dtype), or an error naming it.
    fn dims2(&self, name: &str) -> Result<[usize; 2]> {
        let view = self.view(name)?;
        match view.shape() {
            &[rows, cols] => Ok([rows, cols]),
            other => Err(self.bad(format!(
                "tensor {name} has shape {other:?}, expected a matrix [rows, columns]"
            ))),
        }
    }

    fn view(&self, name: &str) -> Result<safetensors::tensor::TensorView<'_>> {
        self.tensors
            .tensor(name)
            .map_err(|_| self.bad(format!("missing tensors: {name}")))
    }

    /// The values of tensor `name`, checked to have `shape` (PyTorch's), as `f64`.
    fn values(&self, name: &str, shape: &[usize], meaning: &str) -> Result<Vec<f64>> {
        let view = self.view(name)?;
        if view.shape() != shape {
            return Err(self.bad(format!(
                "tensor {name} has shape {:?}, expected {shape:?} ({meaning})",
                view.shape()
            )));
        }
        let data = view.data();
        // Safetensors stores little-endian values and the crate hands out raw bytes: decode
        // them here (`half` for the 16-bit floats).
        let values = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8-byte chunk")))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f64())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f64())
                .collect(),
            other => {
                return Err(self.bad(format!(
                    "tensor {name} has dtype {other}; supported: F32, F64, F16, BF16"
                )))
            }
        };
        Ok(values)
    }

    /// A PyTorch `[out, in]` weight as unfold's `[in, out]` parameter, replacing `param`.
    fn weight<B: Backend>(
        &self,
        name: &str,
        param: &Param<Tensor<B, 2>>,
        meaning: &str,
    ) -> Result<Param<Tensor<B, 2>>> {
        let [fan_in, fan_out] = param.dims();
        let values = self.values(name, &[fan_out, fan_in], meaning)?;
        // Transposed on the host, so the parameter is a plain contiguous tensor.
        let transposed: Vec<f64> = (0..fan_in * fan_out)
            .map(|i| values[(i % fan_out) * fan_in + i / fan_out])
            .collect();
        Ok(replace(
            param,
            TensorData::new(transposed, [fan_in, fan_out]),
        ))
    }

    fn bias<B: Backend>(
        &self,
        names: &[String],
        param: &Param<Tensor<B, 1>>,
        meaning: &str,
    ) -> Result<Param<Tensor<B, 1>>> {
        let [size] = param.dims();
        let mut sum = vec![0.0; size];
        for name in names {
            for (total, v) in sum.iter_mut().zip(self.values(name, &[size], meaning)?) {
                *total += v;
            }
        }
        Ok(replace(param, TensorData::new(sum, [size])))
    }

    /// Layer `k`'s (`reversed`: its reverse direction's) `weight_ih`, `weight_hh` and, with
    /// `b`, `bias_ih + bias_hh`, read into copies of `u`, `w` and `b` (gates stacked as the
    /// module stacks them).
    #[allow(clippy::type_complexity)]
    fn gate_weights<B: Backend>(
        &self,
        u: &Param<Tensor<B, 2>>,
        w: &Param<Tensor<B, 2>>,
        b: Option<&Param<Tensor<B, 1>>>,
        k: usize,
        reversed: bool,
    ) -> Result<(
        Param<Tensor<B, 2>>,
        Param<Tensor<B, 2>>,
        Option<Param<Tensor<B, 1>>>,
    )> {
        let name = |what| rnn_name(self.names, what, k, reversed);
        let b = match b {
            Some(b) => Some(self.bias(
                &[name("bias_ih"), name("bias_hh")],
                b,
                "[gates · hidden_size]; unfold's b is bias_ih + bias_hh",
            )?),
            None => None,
        };
        Ok((
            self.weight(&name("weight_ih"), u, "[gates · hidden_size, input_size]")?,
            self.weight(&name("weight_hh"), w, "[gates · hidden_size, hidden_size]")?,
            b,
        ))
    }

    /// Every layer and direction of `stack`, read into a copy of it.
    fn stack<B: Backend, C: TorchCell<B>>(
        &self,
        stack: &RecurrentStack<B, C>,
    ) -> Result<RecurrentStack<B, C>> {
        let layers = (stack.layers.iter().enumerate())
            .map(|(k, cell)| cell.read(self, k, false))
            .collect::<Result<Vec<_>>>()?;
        let reversed = (stack.reversed_layers.iter().enumerate())
            .map(|(k, cell)| cell.read(self, k, true))
            .collect::<Result<Vec<_>>>()?;
        let mut loaded = RecurrentStack::try_new(layers, reversed)?;
        loaded.dropout = stack.dropout.clone();
        Ok(loaded)
    }

    fn readout<B: Backend>(&self, readout: &Readout<B>) -> Result<Readout<B>> {
        let linear = &self.names.linear;
        let c = match &readout.c {
            Some(c) => Some(self.bias(&[format!("{linear}bias")], c, "[output_size]")?),
            None => None,
        };
        Ok(Readout {
            v: self.weight(
                &format!("{linear}weight"),
                &readout.v,
                "[output_size, the summary's width]",
            )?,
            c,
        })
    }
}

/// A copy of `param` holding `data`: same id, device, float type and gradient setting, as a
/// record load would leave it.
fn replace<B: Backend, const D: usize>(
    param: &Param<Tensor<B, D>>,
    data: TensorData,
) -> Param<Tensor<B, D>> {
    let like = param.val();
    let dtype: DType = like.dtype();
    let options = TensorCreationOptions::new(like.device()).with_dtype(dtype);
    let tensor = Tensor::from_data(data.convert_dtype(dtype), options);
    param.clone().transform_for_load(tensor, param.id)
}
