//! Gated cells: the LSTM and the GRU, with PyTorch's equations and gate order.
//!
//! They go beyond the textbook's vanilla recurrences, and they are written the way a user
//! writes a cell: on the public [`Recurrence`] trait, with the generic unroll (one loop for
//! every cell) doing lengths, reversal, initial and final states. The LSTM's state has two
//! parts (`h`, `c`: [`Recurrence::state_widths`] and [`Recurrence::step_state`]); the GRU's is
//! `h` alone. Both hoist their input projection `x U + b` for all steps into
//! [`Recurrence::drive`] (one large product), which the generic unroll splits into steps with a
//! linear-time backward pass.
//!
//! ```text
//! LSTM                                            GRU
//! [i f g o] = x U + b + h(t-1) W                   [r z]ₓ,nₓ = x U + b,   [r z]ₕ,nₕ = h(t-1) W
//! i, f, o = σ(·),  g = tanh(·)                     r, z = σ([r z]ₓ + [r z]ₕ)
//! c(t) = f ⊙ c(t-1) + i ⊙ g                        n = tanh(nₓ + r ⊙ (nₕ + b_hn))
//! h(t) = o ⊙ tanh(c(t))                            h(t) = (1 − z) ⊙ n + z ⊙ h(t-1)
//! ```
//!
//! Parameters are stored `[fan_in, fan_out]` as everywhere in unfold, the gates side by side
//! in PyTorch's order (LSTM `i, f, g, o`; GRU `r, z, n`): `U = weight_ihᵀ`, `W = weight_hhᵀ`.
//! The LSTM's `b` is PyTorch's `bias_ih + bias_hh`; the GRU's `b` is `bias_ih` plus `bias_hh`
//! for the `r` and `z` gates, and `b_hn` (PyTorch's `bias_hh` of `n`) stays apart because `r`
//! multiplies it.

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::tensor::{backend::Backend, Tensor};

use crate::init;
use crate::recurrence::{Recurrence, SequenceInput, State};

/// Configuration of an [`LstmCell`].
#[derive(Config, Debug)]
pub struct LstmCellConfig {
    /// Width of `x(t)`: the feature count for dense input, the vocabulary size for token ids.
    pub input_size: usize,
    /// Width of `h(t)` and `c(t)`.
    pub hidden_size: usize,
    /// Whether the gates have the bias `b`.
    #[config(default = true)]
    pub bias: bool,
    /// Initialiser of `U` and `W`; `b` starts at zero. Default: `U(-1/√fan_in, 1/√fan_in)`.
    #[config(default = "crate::init::default_initializer()")]
    pub initializer: Initializer,
}

/// The LSTM cell (Hochreiter & Schmidhuber 1997, with a forget gate; PyTorch's `nn.LSTM`).
/// Its state has two parts: `h(t)` (part 0, what it outputs) and the cell memory `c(t)`.
#[derive(Module, Debug)]
pub struct LstmCell<B: Backend> {
    /// Input weights of the four gates `[i f g o]`, `[input_size, 4 · hidden_size]`.
    pub u: Param<Tensor<B, 2>>,
    /// Recurrent weights of the four gates, `[hidden_size, 4 · hidden_size]`.
    pub w: Param<Tensor<B, 2>>,
    /// Bias of the four gates, `[4 · hidden_size]`.
    pub b: Option<Param<Tensor<B, 1>>>,
}

impl LstmCellConfig {
    /// Initialises an [`LstmCell`] on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> LstmCell<B> {
        let (input, hidden) = (self.input_size, self.hidden_size);
        LstmCell {
            u: gate_weight(&self.initializer, input, hidden, 4, device),
            w: gate_weight(&self.initializer, hidden, hidden, 4, device),
            b: init::bias(self.bias, 4 * hidden, device),
        }
    }
}

/// A `[fan_in, gates · hidden]` weight, initialised as `gates` weights of `hidden` outputs
/// each (the fans of one gate, as PyTorch's bound `1/√hidden` for the recurrent weight).
fn gate_weight<B: Backend>(
    initializer: &Initializer,
    fan_in: usize,
    hidden: usize,
    gates: usize,
    device: &B::Device,
) -> Param<Tensor<B, 2>> {
    initializer.init_with([fan_in, gates * hidden], Some(fan_in), Some(hidden), device)
}

/// `σ(x) = 1 / (1 + e^{-x})`, as `(1 + tanh(x / 2)) / 2`: Burn 0.21's own `sigmoid` computes
/// in f32 whatever the tensor's float type, which would cost an f64 model (gradient checks,
/// the PyTorch fixtures) eight digits.
fn sigmoid<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.mul_scalar(0.5).tanh().mul_scalar(0.5).add_scalar(0.5)
}

/// `b + x(t) U` for every step at once, as the Elman cell's input drive is.
fn gate_drive<B: Backend>(
    u: &Param<Tensor<B, 2>>,
    b: Option<Tensor<B, 1>>,
    input: SequenceInput<B>,
) -> Tensor<B, 3> {
    crate::elman::input_drive(u.val(), b, input)
}

/// The `k`-th of the `[batch, gates · hidden]` gate blocks.
fn gate<B: Backend>(z: &Tensor<B, 2>, k: usize, hidden: usize) -> Tensor<B, 2> {
    let [batch, _] = z.dims();
    z.clone().slice([0..batch, k * hidden..(k + 1) * hidden])
}

impl<B: Backend> Recurrence<B> for LstmCell<B> {
    fn input_size(&self) -> usize {
        self.u.dims()[0]
    }

    fn state_size(&self) -> usize {
        self.w.dims()[0]
    }

    /// `h(t)` and `c(t)`.
    fn state_widths(&self) -> Vec<usize> {
        vec![self.state_size(); 2]
    }

    /// `b + x(t) U` for every step, `[batch, time, 4 · hidden]`.
    fn drive(&self, input: SequenceInput<B>) -> Tensor<B, 3> {
        gate_drive(&self.u, self.b.as_ref().map(Param::val), input)
    }

    fn step_state(&self, state: State<B>, drive: Tensor<B, 2>) -> State<B> {
        let hidden = self.state_size();
        let mut parts = state.into_parts().into_iter();
        let (h, c) = (parts.next().expect("h"), parts.next().expect("c"));
        let z = drive + h.matmul(self.w.val());
        let i = sigmoid(gate(&z, 0, hidden));
        let f = sigmoid(gate(&z, 1, hidden));
        let g = gate(&z, 2, hidden).tanh();
        let o = sigmoid(gate(&z, 3, hidden));
        let c = f * c + i * g;
        let h = o * c.clone().tanh();
        State::from_parts(vec![h, c])
    }
}

/// Configuration of a [`GruCell`].
#[derive(Config, Debug)]
pub struct GruCellConfig {
    /// Width of `x(t)`: the feature count for dense input, the vocabulary size for token ids.
    pub input_size: usize,
    /// Width of `h(t)`.
    pub hidden_size: usize,
    /// Whether the gates have the biases `b` and `b_hn`.
    #[config(default = true)]
    pub bias: bool,
    /// Initialiser of `U` and `W`; the biases start at zero. Default:
    /// `U(-1/√fan_in, 1/√fan_in)`.
    #[config(default = "crate::init::default_initializer()")]
    pub initializer: Initializer,
}

/// The GRU cell (Cho et al. 2014; PyTorch's `nn.GRU`). Its state is `h(t)`.
#[derive(Module, Debug)]
pub struct GruCell<B: Backend> {
    /// Input weights of the gates `[r z n]`, `[input_size, 3 · hidden_size]`.
    pub u: Param<Tensor<B, 2>>,
    /// Recurrent weights of the gates, `[hidden_size, 3 · hidden_size]`.
    pub w: Param<Tensor<B, 2>>,
    /// Bias of the gates on the input side (with the `r`, `z` recurrent biases folded in),
    /// `[3 · hidden_size]`.
    pub b: Option<Param<Tensor<B, 1>>>,
    /// The recurrent bias of `n`, `[hidden_size]`: inside the reset gate's product.
    pub b_hn: Option<Param<Tensor<B, 1>>>,
}

impl GruCellConfig {
    /// Initialises a [`GruCell`] on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> GruCell<B> {
        let (input, hidden) = (self.input_size, self.hidden_size);
        GruCell {
            u: gate_weight(&self.initializer, input, hidden, 3, device),
            w: gate_weight(&self.initializer, hidden, hidden, 3, device),
            b: init::bias(self.bias, 3 * hidden, device),
            b_hn: init::bias(self.bias, hidden, device),
        }
    }
}

impl<B: Backend> Recurrence<B> for GruCell<B> {
    fn input_size(&self) -> usize {
        self.u.dims()[0]
    }

    fn state_size(&self) -> usize {
        self.w.dims()[0]
    }

    /// `b + x(t) U` for every step, `[batch, time, 3 · hidden]`, followed by `b_hn` (repeated
    /// at every step) when the cell has biases: `[batch, time, 4 · hidden]`.
    ///
    /// `b_hn` travels in the drive, rather than being broadcast inside `step`, because an
    /// operation in `step` whose only tracked input is a parameter starts a new autodiff graph
    /// at every step, which Burn 0.21 then merges into the sequence's graph at a cost that grows
    /// with the graph (measured: 1.7× the time per token at T = 1024 against T = 256).
    fn drive(&self, input: SequenceInput<B>) -> Tensor<B, 3> {
        let drive = gate_drive(&self.u, self.b.as_ref().map(Param::val), input);
        match &self.b_hn {
            Some(b_hn) => {
                let [batch, time, _] = drive.dims();
                let hidden = self.state_size();
                let b_hn = b_hn
                    .val()
                    .reshape([1, 1, hidden])
                    .expand([batch, time, hidden]);
                crate::layout::concat(vec![drive, b_hn], 2)
            }
            None => drive,
        }
    }

    fn step(&self, h: Tensor<B, 2>, drive: Tensor<B, 2>) -> Tensor<B, 2> {
        let hidden = self.state_size();
        let hw = h.clone().matmul(self.w.val());
        let r = sigmoid(gate(&drive, 0, hidden) + gate(&hw, 0, hidden));
        let z = sigmoid(gate(&drive, 1, hidden) + gate(&hw, 1, hidden));
        let mut n_h = gate(&hw, 2, hidden);
        if self.b_hn.is_some() {
            n_h = n_h + gate(&drive, 3, hidden); // b_hn
        }
        let n = (gate(&drive, 2, hidden) + r * n_h).tanh();
        n.clone() + z * (h - n) // (1 − z) ⊙ n + z ⊙ h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recurrence::{unroll, UnrollOptions};
    use burn::tensor::{Distribution, Tolerance};

    type B = burn::backend::NdArray<f64>;

    fn sigmoid_host(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// One LSTM step computed on the host from the gate equations, against the cell.
    #[test]
    fn lstm_step_follows_pytorchs_equations_in_gate_order_i_f_g_o() {
        let device = Default::default();
        let (input, hidden) = (2, 3);
        let cell = LstmCellConfig::new(input, hidden)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.7,
            })
            .init::<B>(&device);
        let x = Tensor::<B, 3>::random([1, 1, input], Distribution::Normal(0.0, 1.0), &device);
        let h0 = Tensor::<B, 2>::random([1, hidden], Distribution::Normal(0.0, 1.0), &device);
        let c0 = Tensor::<B, 2>::random([1, hidden], Distribution::Normal(0.0, 1.0), &device);
        let options = UnrollOptions::new()
            .with_initial_state(State::from_parts(vec![h0.clone(), c0.clone()]));
        let out = unroll(&cell, x.clone(), &options).unwrap();
        let host = |t: Tensor<B, 2>| t.into_data().to_vec::<f64>().unwrap();
        let z = host(x.reshape([1, input]).matmul(cell.u.val()) + h0.matmul(cell.w.val()));
        let c0 = host(c0);
        let (mut h, mut c) = (vec![0.0; hidden], vec![0.0; hidden]);
        for j in 0..hidden {
            let (i, f) = (sigmoid_host(z[j]), sigmoid_host(z[hidden + j]));
            let (g, o) = (z[2 * hidden + j].tanh(), sigmoid_host(z[3 * hidden + j]));
            c[j] = f * c0[j] + i * g;
            h[j] = o * c[j].tanh();
        }
        let data = |v: Vec<f64>| burn::tensor::TensorData::new(v, [1, hidden]);
        let tol = Tolerance::absolute(1e-12);
        out.last.into_data().assert_approx_eq::<f64>(&data(h), tol);
        let c_out = out.final_state.parts()[1].clone();
        c_out.into_data().assert_approx_eq::<f64>(&data(c), tol);
    }

    /// One GRU step on the host (gate order r, z, n; `b_hn` inside the reset product).
    #[test]
    fn gru_step_follows_pytorchs_equations_in_gate_order_r_z_n() {
        let device = Default::default();
        let (input, hidden) = (2, 3);
        let mut cell = GruCellConfig::new(input, hidden)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.7,
            })
            .init::<B>(&device);
        let random_bias =
            |n| Param::from_tensor(Tensor::random([n], Distribution::Normal(0.0, 1.0), &device));
        cell.b = Some(random_bias(3 * hidden));
        cell.b_hn = Some(random_bias(hidden));
        let x = Tensor::<B, 2>::random([1, input], Distribution::Normal(0.0, 1.0), &device);
        let h0 = Tensor::<B, 2>::random([1, hidden], Distribution::Normal(0.0, 1.0), &device);
        let drive = x.clone().matmul(cell.u.val()) + cell.b.as_ref().unwrap().val().unsqueeze();
        let cell_drive = cell.drive(SequenceInput::Dense(x.clone().unsqueeze_dim(1)));
        let got = cell.step(h0.clone(), cell_drive.reshape([1, 4 * hidden]));
        let host = |t: Tensor<B, 2>| t.into_data().to_vec::<f64>().unwrap();
        let (dx, hw) = (host(drive), host(h0.clone().matmul(cell.w.val())));
        let b_hn = cell
            .b_hn
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .to_vec::<f64>()
            .unwrap();
        let h0 = host(h0);
        let expected: Vec<f64> = (0..hidden)
            .map(|j| {
                let r = sigmoid_host(dx[j] + hw[j]);
                let z = sigmoid_host(dx[hidden + j] + hw[hidden + j]);
                let n = (dx[2 * hidden + j] + r * (hw[2 * hidden + j] + b_hn[j])).tanh();
                (1.0 - z) * n + z * h0[j]
            })
            .collect();
        got.into_data().assert_approx_eq::<f64>(
            &burn::tensor::TensorData::new(expected, [1, hidden]),
            Tolerance::absolute(1e-12),
        );
    }

    /// The two-part state holds past each sequence's end like a one-part one, and a padded
    /// sequence reads as if alone.
    #[test]
    fn lstm_state_holds_both_parts_past_each_length() {
        let device = Default::default();
        let cell = LstmCellConfig::new(2, 3).init::<B>(&device);
        let x = Tensor::<B, 3>::random([2, 5, 2], Distribution::Normal(0.0, 1.0), &device);
        let padded = unroll(&cell, x.clone(), &UnrollOptions::new().with_lengths([5, 2])).unwrap();
        let alone = unroll(&cell, x.slice([1..2, 0..2, 0..2]), &UnrollOptions::new()).unwrap();
        let tol = Tolerance::absolute(1e-12);
        for (part, alone) in padded
            .final_state
            .parts()
            .iter()
            .zip(alone.final_state.parts())
        {
            part.clone()
                .slice([1..2, 0..3])
                .into_data()
                .assert_approx_eq::<f64>(&alone.clone().into_data(), tol);
        }
    }
}
