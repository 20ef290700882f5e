//! The elementwise nonlinearity of a recurrence, `h(t) = act(a(t))`.

use burn::tensor::{activation, backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

/// The nonlinearity `act` of `h(t) = act(a(t))` (PyTorch's `nonlinearity` argument of `nn.RNN`).
///
/// Both have their derivative as a function of their output, which is what the fused backward
/// passes use (they keep `h(t)`, not `a(t)`): `tanh' = 1 − h²`, `relu' = [h > 0]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Nonlinearity {
    /// `tanh(a)`: the textbook's, and PyTorch's default.
    #[default]
    Tanh,
    /// `max(0, a)`.
    Relu,
}

impl Nonlinearity {
    /// `act(a)`, elementwise.
    pub fn apply<B: Backend, const D: usize>(self, a: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Nonlinearity::Tanh => a.tanh(),
            Nonlinearity::Relu => activation::relu(a),
        }
    }

    /// `act'(a)` from the output `y = act(a)`: `1 − y²` (tanh) or `[y > 0]` (ReLU).
    pub fn derivative_from_output<B: Backend, const D: usize>(
        self,
        y: Tensor<B, D>,
    ) -> Tensor<B, D> {
        match self {
            Nonlinearity::Tanh => (y.clone() * y).neg().add_scalar(1.0),
            Nonlinearity::Relu => {
                let dtype = y.dtype();
                y.greater_elem(0.0).float().cast(dtype)
            }
        }
    }

    /// PyTorch's name for it (`'tanh'`, `'relu'`).
    pub fn pytorch_name(self) -> &'static str {
        match self {
            Nonlinearity::Tanh => "tanh",
            Nonlinearity::Relu => "relu",
        }
    }
}

impl std::fmt::Display for Nonlinearity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.pytorch_name())
    }
}

impl std::str::FromStr for Nonlinearity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tanh" => Ok(Nonlinearity::Tanh),
            "relu" => Ok(Nonlinearity::Relu),
            other => Err(format!(
                "unknown nonlinearity {other:?}: expected tanh or relu"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tolerance;

    type B = burn::backend::NdArray<f64>;

    #[test]
    fn derivative_from_the_output_equals_the_derivative_of_the_input() {
        let device = Default::default();
        let a = Tensor::<B, 1>::from_data([-2.0, -0.3, 0.4, 1.7], &device);
        let eps = 1e-6;
        for act in [Nonlinearity::Tanh, Nonlinearity::Relu] {
            let numeric = (act.apply(a.clone().add_scalar(eps))
                - act.apply(a.clone().sub_scalar(eps)))
            .div_scalar(2.0 * eps);
            act.derivative_from_output(act.apply(a.clone()))
                .into_data()
                .assert_approx_eq::<f64>(&numeric.into_data(), Tolerance::absolute(1e-8));
        }
        assert_eq!("relu".parse::<Nonlinearity>(), Ok(Nonlinearity::Relu));
        assert!("sigmoid".parse::<Nonlinearity>().is_err());
    }
}
