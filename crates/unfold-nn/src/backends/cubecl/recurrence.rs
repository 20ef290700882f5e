//! The Elman recurrence `h(t) = act(drive(t) + h(t-1) W)` over all time steps in ONE kernel
//! launch per pass, for Burn's `CubeBackend<R, F, I, BT>` (wgpu, CUDA, ROCm, ...).
//!
//! # Layout (all tensors row-major contiguous)
//!
//! - `drive` `[batch, time, hidden]`: the hoisted `b + x U`.
//! - `w` `[hidden, hidden]`, stored `[from, to]`: `a_j = drive_j + Σ_k h_k W[k, j]`.
//! - `h0` `[batch, hidden]`.
//! - `states` `[batch, time, hidden]`: index `t` holds `h(t)`.
//!
//! Steps are visited `0..time`, or `time-1..=0` when `reverse`. With `lengths`, row `b` is valid
//! at `t < lengths[b]`; at an invalid step it HOLDS its previous state (reversed, a padded row
//! therefore holds `h0` until its own last valid step).
//!
//! # Kernel design
//!
//! Sequences are independent, so no grid-wide barrier is needed: a cube (workgroup) owns
//! `rows_per_cube` consecutive batch rows and walks every time step inside the kernel.
//! `h(t-1)` of its rows lives in shared memory; unit (thread) `x` computes the hidden units
//! `j = x + c·units` (`c < cols_per_unit`, then the next pass of `cols_per_unit · units`
//! columns, so any `hidden` works) of every row of the cube, with one accumulator per (row,
//! column) in registers: per `k` it loads `rows` states (a shared-memory broadcast) and `cols`
//! weights `W[k, j]` (consecutive units read consecutive addresses: coalesced) for
//! `rows · cols` FMAs. `W` is streamed from global memory / L2 at every step, or copied into
//! shared memory once per cube when it fits there (small `hidden`).
//!
//! The state buffer is double-buffered (step `s` reads buffer `s % 2` and writes `(s + 1) % 2`),
//! which needs ONE `sync_cube()` per step: a unit that races ahead to step `s + 1` writes the
//! other buffer, and cannot reach step `s + 2` (which overwrites the buffer step `s` reads)
//! before every unit has passed the barrier of step `s + 1`, i.e. finished reading step `s`.
//!
//! The backward pass is the same loop with `Wᵀ` (a transposed copy made once per call, so its
//! reads are coalesced like the forward's): per step, each unit forms `δh_j = grad_j + carry_j`,
//! `δa_j = act'(h_j) δh_j` (from the saved OUTPUT `h`), publishes `δa` in shared memory, and
//! after the barrier computes its own `carry_k = Σ_j δa_j Wᵀ[j, k]`. At a held (invalid) step
//! `δa = 0` and the carry passes through: `carry = δh`. `∂W` is NOT computed here: it is one
//! large product over all steps, done with Burn's own (tuned) matmul (see
//! [`crate::ops::recurrence`]).

use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::ops::permute;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::{ComputeClient, CubeCount, CubeDim};

use super::kernels::{elman_backward_kernel, elman_forward_kernel};

/// How the kernels are laid out on the device. [`LaunchConfig::auto`] picks it from the
/// problem size and the device's limits; tests override it to cover every code path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchConfig {
    /// Batch rows per cube: each unit keeps one accumulator per row in registers, so every
    /// element of `W` it loads serves this many FMAs. A comptime parameter (one kernel
    /// compilation per value).
    pub rows_per_cube: usize,
    /// Units (threads) per cube.
    pub units: usize,
    /// Hidden units each unit computes per pass over the row (comptime, in registers, like
    /// `rows_per_cube`): per `k` a unit loads `rows_per_cube` states and `cols_per_unit`
    /// weights for `rows_per_cube · cols_per_unit` FMAs. Units make
    /// `ceil(hidden / (units · cols_per_unit))` passes.
    pub cols_per_unit: usize,
    /// Whether `W` (or `Wᵀ`) is copied into shared memory once per cube, instead of being read
    /// from global memory / L2 at every step.
    pub w_in_shared: bool,
}

impl LaunchConfig {
    /// `hidden` rounded up to a warp of 32 units (at most 256), `W` in shared memory when it
    /// fits next to the state buffers, and up to 4 rows per cube as long as that still leaves
    /// a cube per streaming multiprocessor (32 assumed where the runtime does not say).
    pub fn auto<R: CubeRuntime>(
        client: &ComputeClient<R>,
        batch: usize,
        hidden: usize,
        elem_size: usize,
    ) -> Self {
        let hardware = &client.properties().hardware;
        let max_units = (hardware.max_cube_dim.0 as usize)
            .min(hardware.max_units_per_cube as usize)
            .min(256);
        let units = hidden.div_ceil(32).max(1).saturating_mul(32).min(max_units);
        let sms = hardware.num_streaming_multiprocessors.unwrap_or(32).max(1) as usize;
        let shared = hardware.max_shared_memory_size;
        let mut config = Self {
            rows_per_cube: 1,
            units,
            cols_per_unit: 1,
            w_in_shared: false,
        };
        for rows in [4, 2] {
            let candidate = Self {
                rows_per_cube: rows,
                ..config
            };
            if batch >= rows * sms && candidate.shared_bytes(hidden, elem_size) <= shared {
                config = candidate;
                break;
            }
        }
        let with_w = Self {
            w_in_shared: true,
            ..config
        };
        config.w_in_shared = with_w.shared_bytes(hidden, elem_size) <= shared;
        config
    }

    /// Shared memory the backward kernel (the larger of the two) needs, in bytes.
    pub fn shared_bytes(&self, hidden: usize, elem_size: usize) -> usize {
        let w = if self.w_in_shared { hidden * hidden } else { 1 };
        (3 * self.rows_per_cube * hidden + w) * elem_size
    }

    fn check<R: CubeRuntime>(&self, client: &ComputeClient<R>, hidden: usize, elem_size: usize) {
        let hardware = &client.properties().hardware;
        assert!(
            self.rows_per_cube >= 1 && self.units >= 1 && self.cols_per_unit >= 1,
            "empty launch config"
        );
        assert!(
            self.units <= hardware.max_units_per_cube as usize
                && self.units <= hardware.max_cube_dim.0 as usize,
            "a cube of {} units exceeds the device's limits",
            self.units
        );
        let bytes = self.shared_bytes(hidden, elem_size);
        assert!(
            bytes <= hardware.max_shared_memory_size,
            "the recurrence needs {bytes} bytes of shared memory, the device has {}",
            hardware.max_shared_memory_size
        );
    }

    fn geometry(&self, batch: usize) -> (CubeCount, CubeDim) {
        let cubes = batch.div_ceil(self.rows_per_cube).max(1) as u32;
        (
            CubeCount::Static(cubes, 1, 1),
            CubeDim::new_1d(self.units as u32),
        )
    }
}

/// The `[batch]` u32 lengths tensor on the device (`time` for every row when `None`).
fn lengths_tensor<R: CubeRuntime>(
    like: &CubeTensor<R>,
    batch: usize,
    time: usize,
    lengths: Option<&[usize]>,
) -> CubeTensor<R> {
    let values: Vec<u32> = match lengths {
        Some(lengths) => {
            assert_eq!(lengths.len(), batch, "one length per batch row");
            lengths
                .iter()
                .map(|&l| {
                    assert!(l <= time, "length {l} exceeds time {time}");
                    l as u32
                })
                .collect()
        }
        None => vec![time as u32; batch],
    };
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let handle = like.client.create_from_slice(&bytes);
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        Shape::new([batch]),
        handle,
        DType::U32,
    )
}

/// The kernels index with 32-bit integers (CubeCL's default address type): every flat index
/// must fit. (`#[cube(address_type = "dynamic")]` would lift this, at some cost.)
fn check_u32_indexing(batch: usize, time: usize, hidden: usize) {
    let elements = batch.checked_mul(time).and_then(|n| n.checked_mul(hidden));
    assert!(
        elements.is_some_and(|n| n <= u32::MAX as usize) && hidden * hidden <= u32::MAX as usize,
        "[{batch}, {time}, {hidden}] is too large for 32-bit indexing"
    );
}

/// `[batch, time, hidden]` of the checked inputs.
fn dims3<R: CubeRuntime>(x: &CubeTensor<R>, time: usize, what: &str) -> [usize; 3] {
    let shape = x.shape();
    assert_eq!(shape.num_dims(), 3, "{what} must be [batch, time, hidden]");
    let dims = [shape[0], shape[1], shape[2]];
    assert_eq!(dims[1], time, "{what}: time dimension is not `time`");
    dims
}

/// The shapes both passes require of `w` (`[hidden, hidden]`) and `h0` (`[batch, hidden]`).
fn check_w_and_h0<R: CubeRuntime>(
    w: &CubeTensor<R>,
    h0: &CubeTensor<R>,
    batch: usize,
    hidden: usize,
) {
    assert_eq!(
        w.shape().dims::<2>(),
        [hidden, hidden],
        "w must be [hidden, hidden]"
    );
    assert_eq!(
        h0.shape().dims::<2>(),
        [batch, hidden],
        "h0 must be [batch, hidden]"
    );
}

/// Every state `[batch, time, hidden]` of `h(t) = act(drive(t) + h(t-1) W)`, in one kernel
/// launch (plus, when `lengths` is given or not, one small upload of the `[batch]` lengths).
///
/// `relu` selects `relu` over `tanh`. All float inputs must share one float dtype (f32, f16,
/// bf16, f64 where the device has it): the kernel is compiled for the drive's dtype.
pub fn recurrence_forward<R: CubeRuntime>(
    drive: CubeTensor<R>,
    w: CubeTensor<R>,
    h0: CubeTensor<R>,
    time: usize,
    reverse: bool,
    lengths: Option<&[usize]>,
    relu: bool,
) -> CubeTensor<R> {
    let [batch, _, hidden] = dims3(&drive, time, "drive");
    let config = LaunchConfig::auto(&drive.client, batch, hidden, drive.dtype.size());
    recurrence_forward_with(drive, w, h0, time, reverse, lengths, relu, config)
}

/// [`recurrence_forward`] with an explicit [`LaunchConfig`].
#[allow(clippy::too_many_arguments)]
pub fn recurrence_forward_with<R: CubeRuntime>(
    drive: CubeTensor<R>,
    w: CubeTensor<R>,
    h0: CubeTensor<R>,
    time: usize,
    reverse: bool,
    lengths: Option<&[usize]>,
    relu: bool,
    config: LaunchConfig,
) -> CubeTensor<R> {
    let [batch, _, hidden] = dims3(&drive, time, "drive");
    check_w_and_h0(&w, &h0, batch, hidden);
    drive.assert_is_on_same_device(&w);
    drive.assert_is_on_same_device(&h0);
    let dtype = drive.dtype;
    assert!(
        w.dtype == dtype && h0.dtype == dtype,
        "one float dtype for all inputs"
    );

    let client = drive.client.clone();
    let states = empty_device_contiguous_dtype::<R>(
        client.clone(),
        drive.device.clone(),
        drive.shape(),
        dtype,
    );
    if batch == 0 || time == 0 || hidden == 0 {
        return states;
    }
    config.check(&client, hidden, dtype.size());
    check_u32_indexing(batch, time, hidden);
    let lengths = lengths_tensor(&drive, batch, time, lengths);
    // The kernel indexes flat row-major buffers: make the inputs so (no-op when they are).
    let (drive, w, h0) = (
        into_contiguous(drive),
        into_contiguous(w),
        into_contiguous(h0),
    );
    let (cube_count, cube_dim) = config.geometry(batch);
    // SAFETY: every index the kernel forms is < the sizes checked above (batch, time and
    // hidden come from the tensors' shapes; lengths are <= time), so unchecked is in bounds.
    unsafe {
        elman_forward_kernel::launch_unchecked::<R>(
            &client,
            cube_count,
            cube_dim,
            drive.into_tensor_arg(),
            w.into_tensor_arg(),
            h0.into_tensor_arg(),
            lengths.into_tensor_arg(),
            states.clone().into_tensor_arg(),
            batch as u32,
            time as u32,
            hidden,
            config.rows_per_cube,
            config.cols_per_unit,
            reverse,
            relu,
            config.w_in_shared,
            dtype.into(),
        );
    }
    states
}

/// BPTT through [`recurrence_forward`]: `(∂L/∂drive, ∂L/∂h0)` from `grad` `= ∂L/∂states`, the
/// forward's `states`, `w` and `h0` (the last only for its shape: `∂h0` does not depend on
/// its value). One transpose of `W` (Burn's own copy kernel) plus one kernel launch.
/// `∂L/∂W` is one Burn matmul outside (see [`super`]).
#[allow(clippy::too_many_arguments)]
pub fn recurrence_backward<R: CubeRuntime>(
    grad: CubeTensor<R>,
    states: CubeTensor<R>,
    w: CubeTensor<R>,
    h0: CubeTensor<R>,
    time: usize,
    reverse: bool,
    lengths: Option<&[usize]>,
    relu: bool,
) -> (CubeTensor<R>, CubeTensor<R>) {
    let [batch, _, hidden] = dims3(&grad, time, "grad");
    let config = LaunchConfig::auto(&grad.client, batch, hidden, grad.dtype.size());
    recurrence_backward_with(grad, states, w, h0, time, reverse, lengths, relu, config)
}

/// [`recurrence_backward`] with an explicit [`LaunchConfig`].
#[allow(clippy::too_many_arguments)]
pub fn recurrence_backward_with<R: CubeRuntime>(
    grad: CubeTensor<R>,
    states: CubeTensor<R>,
    w: CubeTensor<R>,
    h0: CubeTensor<R>,
    time: usize,
    reverse: bool,
    lengths: Option<&[usize]>,
    relu: bool,
    config: LaunchConfig,
) -> (CubeTensor<R>, CubeTensor<R>) {
    let [batch, _, hidden] = dims3(&grad, time, "grad");
    assert_eq!(dims3(&states, time, "states"), [batch, time, hidden]);
    check_w_and_h0(&w, &h0, batch, hidden);
    let dtype = grad.dtype;
    assert!(
        states.dtype == dtype && w.dtype == dtype && h0.dtype == dtype,
        "one float dtype for all inputs"
    );

    let client = grad.client.clone();
    let device = grad.device.clone();
    let d_drive =
        empty_device_contiguous_dtype::<R>(client.clone(), device.clone(), grad.shape(), dtype);
    let d_h0 = empty_device_contiguous_dtype::<R>(client.clone(), device, h0.shape(), dtype);
    if batch == 0 || hidden == 0 {
        return (d_drive, d_h0);
    }
    // With `time == 0` the launch still runs and writes ∂h0 = 0 (the carry's initial value).
    config.check(&client, hidden, dtype.size());
    check_u32_indexing(batch, time, hidden);
    let lengths = lengths_tensor(&grad, batch, time, lengths);
    let (grad, states) = (into_contiguous(grad), into_contiguous(states));
    // Wᵀ as a contiguous copy: a view with swapped strides, then Burn's copy kernel.
    let w_t = into_contiguous(permute(w, &[1, 0]));
    let (cube_count, cube_dim) = config.geometry(batch);
    // SAFETY: every index the kernel forms is < the sizes checked above (batch, time and
    // hidden come from the tensors' shapes; lengths are <= time), so unchecked is in bounds.
    unsafe {
        elman_backward_kernel::launch_unchecked::<R>(
            &client,
            cube_count,
            cube_dim,
            grad.into_tensor_arg(),
            states.into_tensor_arg(),
            w_t.into_tensor_arg(),
            lengths.into_tensor_arg(),
            d_drive.clone().into_tensor_arg(),
            d_h0.clone().into_tensor_arg(),
            batch as u32,
            time as u32,
            hidden,
            config.rows_per_cube,
            config.cols_per_unit,
            reverse,
            relu,
            config.w_in_shared,
            dtype.into(),
        );
    }
    (d_drive, d_h0)
}
