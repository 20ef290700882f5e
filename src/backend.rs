//! The backend the examples and integration tests run on, chosen by cargo feature.
//!
//! The library itself is generic over any Burn `Backend`; only binaries pick one:
//! - `ndarray` (default): CPU, `burn-ndarray`.
//! - `wgpu`: GPU through wgpu (Vulkan, Metal, DX12); wins when both features are on.

#[cfg(feature = "wgpu")]
mod chosen {
    /// The inference backend.
    pub type Backend = burn::backend::Wgpu;
    /// Human-readable name, for logs and `metrics.json`.
    pub const NAME: &str = "wgpu";
}

#[cfg(all(feature = "ndarray", not(feature = "wgpu")))]
mod chosen {
    /// The inference backend.
    pub type Backend = burn::backend::NdArray;
    /// Human-readable name, for logs and `metrics.json`.
    pub const NAME: &str = "ndarray";
}

#[cfg(not(any(feature = "ndarray", feature = "wgpu")))]
compile_error!("unfold needs a backend: enable the `ndarray` (default) or `wgpu` feature");

pub use chosen::{Backend, NAME};

/// The training backend: [`Backend`] with Burn's autodiff on top.
pub type TrainBackend = burn::backend::Autodiff<Backend>;

/// The device of the chosen backend (the default adapter for wgpu).
pub type Device = <Backend as burn::tensor::backend::BackendTypes>::Device;

/// The default device.
pub fn device() -> Device {
    Default::default()
}
