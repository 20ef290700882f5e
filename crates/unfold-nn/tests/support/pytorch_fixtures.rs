#![allow(dead_code)] // each test binary uses part of it
//! unfold against PyTorch itself: `nn.RNN` (layers 1–3, one or two directions, tanh and ReLU,
//! with and without `pack_padded_sequence` lengths, with and without biases), `nn.LSTM` and
//! `nn.GRU` (layers 1–2, both directions, with and without lengths), each followed by an
//! `nn.Linear` at every step. For every case of `fixtures/pytorch/` (written by PyTorch 2.15
//! with `make_fixtures.py`; see its README for the format), the PyTorch weights are imported
//! into the matching unfold model and its per-step outputs, final states (`h_n`, `c_n`),
//! logits, loss and every gradient (each parameter, the input, the initial state) are compared
//! with PyTorch's, in f64 (to 1e-9 of the largest entry) and in f32 (to 1e-5 of the largest
//! entry). PyTorch is not needed to run this test: the fixtures are committed.
//!
//! Shared by `pytorch_fixtures_f64.rs` and `pytorch_fixtures_f32.rs`: one float type per test
//! binary, because Burn 0.21 fixes a device's default float type for the whole process at its
//! first use, and `NdArray<f32>` and `NdArray<f64>` share the CPU device.

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Element, Int, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use unfold_nn::import::{LoadPytorch, PytorchNames};
use unfold_nn::{
    sequence_nll, ElmanCellConfig, ElmanRnnConfig, GruCellConfig, LstmCellConfig, Nonlinearity,
    Recurrence, Reduction, SequenceModel, StackedRnn, State, UnrollOptions,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch")
}

/// One entry of `cases.json`.
#[derive(Debug, Deserialize)]
pub struct Case {
    pub name: String,
    pub kind: String,
    pub num_layers: usize,
    pub bidirectional: bool,
    pub nonlinearity: Option<String>,
    pub bias: bool,
    pub has_lengths: bool,
    pub input_size: usize,
    pub hidden_size: usize,
    pub output_size: usize,
    pub batch: usize,
    pub time: usize,
}

pub fn cases() -> Vec<Case> {
    let json = std::fs::read_to_string(fixtures().join("cases.json")).expect("cases.json");
    serde_json::from_str(&json).expect("cases.json parses")
}

/// The reference file of a case: named f64 / i64 tensors.
pub struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    pub fn read(case: &Case) -> Self {
        let path = fixtures().join(format!("{}.reference.safetensors", case.name));
        Self {
            bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("a safetensors file")
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensors().tensor(name).is_ok()
    }

    /// Tensor `name`'s values (f64 or i64 widened to f64) and shape.
    fn values(&self, name: &str) -> (Vec<f64>, Vec<usize>) {
        let tensors = self.tensors();
        let view = tensors
            .tensor(name)
            .unwrap_or_else(|_| panic!("the reference has no {name}"));
        let values = match view.dtype() {
            Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            Dtype::I64 => view
                .data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            other => panic!("{name}: unexpected dtype {other}"),
        };
        (values, view.shape().to_vec())
    }

    fn tensor<B: Backend, const D: usize>(&self, name: &str, device: &B::Device) -> Tensor<B, D> {
        let (values, shape) = self.values(name);
        let data = TensorData::new(values, shape).convert::<B::FloatElem>();
        Tensor::from_data(data, (device, B::FloatElem::dtype()))
    }

    fn lengths(&self) -> Vec<usize> {
        self.values("lengths")
            .0
            .iter()
            .map(|&l| l as usize)
            .collect()
    }

    /// `[L·D, B, H]` state `name` as one `[B, H]` tensor per layer and direction.
    fn per_layer<B: Backend>(&self, name: &str, device: &B::Device) -> Vec<Tensor<B, 2>> {
        let all: Tensor<B, 3> = self.tensor(name, device);
        let [count, batch, hidden] = all.dims();
        (0..count)
            .map(|i| {
                all.clone()
                    .slice([i..i + 1, 0..batch, 0..hidden])
                    .reshape([batch, hidden])
            })
            .collect()
    }
}

/// The largest `|unfold − PyTorch| / max |PyTorch|` seen so far in this test binary, and
/// where (printed by the tests: `-- --nocapture`).
static WORST: std::sync::Mutex<(f64, String)> = std::sync::Mutex::new((0.0, String::new()));

/// Prints the worst relative difference of the run.
pub fn report_worst(precision: &str) {
    let (worst, what) = WORST.lock().unwrap().clone();
    println!(
        "{precision}: the largest |unfold − PyTorch| is {worst:.2e} of the largest entry ({what})"
    );
}

/// `got` against PyTorch's `want`: every entry within `tolerance × max |want|`.
fn assert_close(got: &[f64], want: &[f64], tolerance: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: sizes");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0f64, f64::max);
    assert!(
        worst <= tolerance * scale,
        "{what}: max |unfold − PyTorch| = {worst:.3e}, {:.3e} of the largest entry {scale:.3e}",
        worst / scale
    );
    let mut record = WORST.lock().unwrap();
    if worst / scale > record.0 {
        *record = (worst / scale, what.to_string());
    }
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().into_vec::<f64>().unwrap()
}

/// The rows of `x` `[batch, time, width]` at valid steps only, flattened.
fn valid_steps(x: Vec<f64>, lengths: &[usize], time: usize, width: usize) -> Vec<f64> {
    x.chunks_exact(width)
        .enumerate()
        .filter(|(row, _)| row % time < lengths[row / time])
        .flat_map(|(_, values)| values.to_vec())
        .collect()
}

/// `W` `[in, out]` of unfold against PyTorch's `[out, in]` gradient.
fn transposed(values: &[f64], shape: &[usize]) -> Vec<f64> {
    let (rows, cols) = (shape[0], shape[1]);
    (0..rows * cols)
        .map(|i| values[(i % rows) * cols + i / rows])
        .collect()
}

/// Runs one case in the float type of `B` and checks everything against PyTorch.
fn check_case<B: AutodiffBackend, C>(case: &Case, model: StackedRnn<B, C>, tolerance: f64)
where
    C: Recurrence<B> + Module<B> + PytorchGrads<B>,
    StackedRnn<B, C>: LoadPytorch + AutodiffModule<B>,
{
    let device = Default::default();
    let weights = fixtures().join(format!("{}.safetensors", case.name));
    let model = model
        .try_load_pytorch(&weights, &PytorchNames::new())
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let reference = Reference::read(case);
    let (batch, time, hidden) = (case.batch, case.time, case.hidden_size);
    let directions = if case.bidirectional { 2 } else { 1 };
    let lengths = match case.has_lengths {
        true => reference.lengths(),
        false => vec![time; batch],
    };
    let lstm = case.kind == "lstm";

    let x = reference.tensor::<B, 3>("input", &device).require_grad();
    let h0: Vec<Tensor<B, 2>> = reference
        .per_layer::<B>("h0", &device)
        .into_iter()
        .map(Tensor::require_grad)
        .collect();
    let c0: Vec<Tensor<B, 2>> = match lstm {
        true => reference
            .per_layer::<B>("c0", &device)
            .into_iter()
            .map(Tensor::require_grad)
            .collect(),
        false => Vec::new(),
    };
    // unfold's state: each layer and direction's parts in turn (an LSTM cell's h, then c).
    let parts: Vec<Tensor<B, 2>> = (0..h0.len())
        .flat_map(|i| std::iter::once(h0[i].clone()).chain(c0.get(i).cloned()))
        .collect();
    let mut options = UnrollOptions::new().with_initial_state(State::from_parts(parts));
    if case.has_lengths {
        options = options.with_lengths(lengths.clone());
    }
    let out = model
        .try_forward(x.clone(), &options)
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let what = |part: &str| {
        format!(
            "{} (f{}): {part}",
            case.name,
            8 * std::mem::size_of::<B::FloatElem>()
        )
    };

    // Per-step outputs and logits at the valid steps (PyTorch zeroes the padded ones).
    let width = hidden * directions;
    let (want, _) = reference.values("output");
    let got = valid_steps(host(out.states.clone()), &lengths, time, width);
    assert_close(
        &got,
        &valid_steps(want, &lengths, time, width),
        tolerance,
        &what("output"),
    );
    let (want, _) = reference.values("logits");
    let classes = case.output_size;
    let got = valid_steps(host(out.logits.clone()), &lengths, time, classes);
    assert_close(
        &got,
        &valid_steps(want, &lengths, time, classes),
        tolerance,
        &what("logits"),
    );

    // Final states: unfold's parts in PyTorch's h_n (and c_n) order.
    let per_cell = if lstm { 2 } else { 1 };
    let finals = out.final_state.parts().to_vec();
    let h_n: Vec<Tensor<B, 2>> = finals.iter().step_by(per_cell).cloned().collect();
    let stacked = |states: &[Tensor<B, 2>]| Tensor::stack::<3>(states.to_vec(), 0);
    assert_close(
        &host(stacked(&h_n)),
        &reference.values("h_n").0,
        tolerance,
        &what("h_n"),
    );
    let c_n: Vec<Tensor<B, 2>> = finals.iter().skip(1).step_by(per_cell).cloned().collect();
    if lstm {
        let want = reference.values("c_n").0;
        assert_close(&host(stacked(&c_n)), &want, tolerance, &what("c_n"));
    }

    // The loss of the fixtures: cross-entropy summed over valid steps + Σ h_n ⊙ w (+ c_n).
    let targets: Tensor<B, 2, Int> = reference.tensor::<B, 2>("targets", &device).int();
    let mut loss = sequence_nll(out.logits, targets, Some(&lengths), Reduction::Sum);
    loss = loss + (stacked(&h_n) * reference.tensor::<B, 3>("hn_weight", &device)).sum();
    if lstm {
        loss = loss + (stacked(&c_n) * reference.tensor::<B, 3>("cn_weight", &device)).sum();
    }
    assert_close(
        &host(loss.clone()),
        &reference.values("loss").0,
        tolerance,
        &what("loss"),
    );

    // Every gradient.
    let grads = loss.backward();
    let grad = |name: &str| reference.values(&format!("grad.{name}"));
    let dx = host(x.grad(&grads).expect("∂input"));
    assert_close(&dx, &grad("input").0, tolerance, &what("∂input"));
    let dh0: Vec<Tensor<B::InnerBackend, 2>> =
        h0.iter().map(|h| h.grad(&grads).expect("∂h0")).collect();
    assert_close(
        &host(Tensor::stack::<3>(dh0, 0)),
        &grad("h0").0,
        tolerance,
        &what("∂h0"),
    );
    if lstm {
        let dc0: Vec<Tensor<B::InnerBackend, 2>> =
            c0.iter().map(|c| c.grad(&grads).expect("∂c0")).collect();
        assert_close(
            &host(Tensor::stack::<3>(dc0, 0)),
            &grad("c0").0,
            tolerance,
            &what("∂c0"),
        );
    }
    let stack = &model.stack;
    for k in 0..case.num_layers {
        for (cell, suffix) in std::iter::once((&stack.layers[k], ""))
            .chain(stack.reversed_layers.get(k).map(|cell| (cell, "_reverse")))
        {
            let name = |what: &str| {
                let what = what.split(' ').next().expect("a name");
                format!("rnn.{what}_l{k}{suffix}")
            };
            let pytorch = |what: &str| grad(&name(what));
            for (param, got, want) in cell.gradients(&grads, &pytorch, case.bias) {
                assert_close(
                    &got,
                    &want,
                    tolerance,
                    &what(&format!("∂{param}_l{k}{suffix}")),
                );
            }
        }
    }
    let (dv, v_shape) = grad("fc.weight");
    let got = host(model.readout.v.grad(&grads).expect("∂V"));
    assert_close(
        &got,
        &transposed(&dv, &v_shape),
        tolerance,
        &what("∂fc.weight"),
    );
    let got = host(model.readout.c.as_ref().unwrap().grad(&grads).expect("∂c"));
    assert_close(&got, &grad("fc.bias").0, tolerance, &what("∂fc.bias"));
}

/// A cell's gradients next to PyTorch's: `(PyTorch's name, unfold's values, PyTorch's)`.
trait PytorchGrads<B: AutodiffBackend> {
    fn gradients(
        &self,
        grads: &B::Gradients,
        pytorch: &dyn Fn(&str) -> (Vec<f64>, Vec<usize>),
        bias: bool,
    ) -> Vec<(&'static str, Vec<f64>, Vec<f64>)>;
}

/// `U`, `W` against `weight_ih`, `weight_hh` (transposed).
fn weights<B: AutodiffBackend>(
    u: &burn::module::Param<Tensor<B, 2>>,
    w: &burn::module::Param<Tensor<B, 2>>,
    grads: &B::Gradients,
    pytorch: &dyn Fn(&str) -> (Vec<f64>, Vec<usize>),
) -> Vec<(&'static str, Vec<f64>, Vec<f64>)> {
    [(u, "weight_ih"), (w, "weight_hh")]
        .into_iter()
        .map(|(param, name)| {
            let (values, shape) = pytorch(name);
            let got = host(param.grad(grads).expect(name));
            (name, got, transposed(&values, &shape))
        })
        .collect()
}

/// An Elman or LSTM cell: `b` is `bias_ih + bias_hh`, so its gradient is each of theirs.
macro_rules! summed_bias_cell {
    ($cell:ident) => {
        impl<B: AutodiffBackend> PytorchGrads<B> for unfold_nn::$cell<B> {
            fn gradients(
                &self,
                grads: &B::Gradients,
                pytorch: &dyn Fn(&str) -> (Vec<f64>, Vec<usize>),
                bias: bool,
            ) -> Vec<(&'static str, Vec<f64>, Vec<f64>)> {
                let mut pairs = weights(&self.u, &self.w, grads, pytorch);
                if bias {
                    let b = host(self.b.as_ref().expect("b").grad(grads).expect("∂b"));
                    pairs.push(("bias_ih", b.clone(), pytorch("bias_ih").0));
                    pairs.push(("bias_hh", b, pytorch("bias_hh").0));
                }
                pairs
            }
        }
    };
}

summed_bias_cell!(ElmanCell);
summed_bias_cell!(LstmCell);

/// A GRU cell: `b = b_ih + [b_hh of r, z; 0]`, `b_hn` = the `n` part of `b_hh`.
impl<B: AutodiffBackend> PytorchGrads<B> for unfold_nn::GruCell<B> {
    fn gradients(
        &self,
        grads: &B::Gradients,
        pytorch: &dyn Fn(&str) -> (Vec<f64>, Vec<usize>),
        bias: bool,
    ) -> Vec<(&'static str, Vec<f64>, Vec<f64>)> {
        let mut pairs = weights(&self.u, &self.w, grads, pytorch);
        if bias {
            let hidden = self.b_hn.as_ref().expect("b_hn").dims()[0];
            let b = host(self.b.as_ref().expect("b").grad(grads).expect("∂b"));
            let b_hn = host(self.b_hn.as_ref().unwrap().grad(grads).expect("∂b_hn"));
            let (ih, hh) = (pytorch("bias_ih").0, pytorch("bias_hh").0);
            pairs.push(("bias_ih", b.clone(), ih));
            pairs.push((
                "bias_hh (r, z)",
                b[..2 * hidden].to_vec(),
                hh[..2 * hidden].to_vec(),
            ));
            pairs.push(("bias_hh (n)", b_hn, hh[2 * hidden..].to_vec()));
        }
        pairs
    }
}

/// The model of a case on `B`: the right cell, layers, directions and biases (the readout
/// always has a bias, as the fixtures' `nn.Linear` does).
pub fn run_case<B: AutodiffBackend>(case: &Case, tolerance: f64) {
    let device = Default::default();
    let config = ElmanRnnConfig::new(case.input_size, case.hidden_size, case.output_size)
        .with_num_layers(case.num_layers)
        .with_bidirectional(case.bidirectional);
    let bias = case.bias;
    match case.kind.as_str() {
        "rnn" => {
            let nonlinearity: Nonlinearity = case
                .nonlinearity
                .as_deref()
                .expect("an nn.RNN case names its nonlinearity")
                .parse()
                .unwrap();
            let model = config
                .try_init_with(&device, |i, h| {
                    ElmanCellConfig::new(i, h)
                        .with_bias(bias)
                        .with_nonlinearity(nonlinearity)
                        .init::<B>(&device)
                })
                .unwrap();
            check_case(case, model, tolerance);
        }
        "lstm" => {
            let model = config
                .try_init_with(&device, |i, h| {
                    LstmCellConfig::new(i, h).with_bias(bias).init::<B>(&device)
                })
                .unwrap();
            check_case(case, model, tolerance);
        }
        "gru" => {
            let model = config
                .try_init_with(&device, |i, h| {
                    GruCellConfig::new(i, h).with_bias(bias).init::<B>(&device)
                })
                .unwrap();
            check_case(case, model, tolerance);
        }
        other => panic!("unknown kind {other}"),
    }
}
