//! Parameter initialisation shared by every module.

use burn::module::{Initializer, Param};
use burn::tensor::{backend::Backend, Tensor};

/// PyTorch's default for `nn.RNN` and `nn.Linear`: `U(-1/√fan_in, 1/√fan_in)`
/// (Kaiming-uniform with gain `1/√3`).
pub fn default_initializer() -> Initializer {
    Initializer::KaimingUniform {
        gain: 1.0 / 3f64.sqrt(),
        fan_out_only: false,
    }
}

/// A `[fan_in, fan_out]` weight, stored as burn-nn's `Linear` stores it (`y = x W`).
///
/// Uses `init_with` because fan-based initialisers (Kaiming, Xavier) need both fans.
pub fn weight<B: Backend>(
    init: &Initializer,
    fan_in: usize,
    fan_out: usize,
    device: &B::Device,
) -> Param<Tensor<B, 2>> {
    init.init_with([fan_in, fan_out], Some(fan_in), Some(fan_out), device)
}

/// A bias of `size` zeros (or nothing when `enabled` is false).
pub fn bias<B: Backend>(
    enabled: bool,
    size: usize,
    device: &B::Device,
) -> Option<Param<Tensor<B, 1>>> {
    enabled.then(|| Initializer::Zeros.init([size], device))
}
