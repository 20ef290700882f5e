//! Each backend's kernels for the fused operations of [`crate::ops`], one folder per backend.
//! Which backends have them is decided in one place, [`crate::ops::dispatch`].

#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub(crate) mod cubecl;
#[cfg(feature = "ndarray")]
pub(crate) mod ndarray;
