//! The output layer shared by every topology: `o = c + V h`.

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::tensor::{backend::Backend, Tensor};

use crate::init;
use crate::layout::linear_rows;

/// Configuration of a [`Readout`].
#[derive(Config, Debug)]
pub struct ReadoutConfig {
    /// Width of the state `h` read from.
    pub hidden_size: usize,
    /// Width of the output `o` (number of classes for a softmax output).
    pub output_size: usize,
    /// Whether the output has a bias `c`.
    #[config(default = true)]
    pub bias: bool,
    /// Initialiser of `V`; `c` starts at zero. Default: PyTorch's `U(-1/√hidden, 1/√hidden)`.
    #[config(default = "crate::init::default_initializer()")]
    pub initializer: Initializer,
}

/// The output layer `o = c + V h`: unnormalised log-probabilities (logits) for `ŷ = softmax(o)`.
#[derive(Module, Debug)]
pub struct Readout<B: Backend> {
    /// `V`, stored `[hidden_size, output_size]` (so `o = h V + c` row-wise).
    pub v: Param<Tensor<B, 2>>,
    /// `c`, `[output_size]`.
    pub c: Option<Param<Tensor<B, 1>>>,
}

impl ReadoutConfig {
    /// Initialises a [`Readout`] on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Readout<B> {
        Readout {
            v: init::weight(
                &self.initializer,
                self.hidden_size,
                self.output_size,
                device,
            ),
            c: init::bias(self.bias, self.output_size, device),
        }
    }
}

impl<B: Backend> Readout<B> {
    /// `o = c + V h` for states of any rank `[..., hidden_size] → [..., output_size]`.
    pub fn forward<const D: usize>(&self, h: Tensor<B, D>) -> Tensor<B, D> {
        linear_rows(h, self.v.val(), self.c.as_ref().map(|c| c.val()))
    }

    /// Width of the output.
    pub fn output_size(&self) -> usize {
        self.v.dims()[1]
    }

    /// Width of the state read from.
    pub fn hidden_size(&self) -> usize {
        self.v.dims()[0]
    }
}
