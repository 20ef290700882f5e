//! The CubeCL kernels of the fused Elman recurrence (see [`super::recurrence`] for the design
//! and the host side that launches them).
//!
//! Kept apart from the host code because CubeCL's prelude names (`Tensor`, `Float`, ...) clash
//! with Burn's.
//!
//! A cube owns `rows` consecutive batch rows; unit `x` computes, per pass, the hidden units
//! `j = base + x + c·CUBE_DIM_X` (`c < cols`) of every row of the cube, with its `rows × cols`
//! accumulators in registers (`Array::new` of a comptime size, indexed only by `#[unroll]`ed
//! loop counters). Each element of `W` it loads serves `rows` FMAs and each state it reads from
//! shared memory (the same address for the whole cube: a broadcast) serves `cols`.

use cubecl::prelude::*;

/// Independent accumulators per row in the `k` loop, so that consecutive loads can be in flight
/// together (with one row per cube the sum is otherwise one dependent chain of FMAs).
const LANES: usize = 4;

/// `act(a)`: `tanh` or `relu` (chosen at compile time).
#[cube]
fn activate<F: Float>(a: F, #[comptime] relu: bool) -> F {
    if relu {
        F::max(a, F::new(0.0))
    } else {
        F::tanh(a)
    }
}

/// `act'(a) · g` from the activation's OUTPUT `h = act(a)`: `(1 - h²) g` for tanh,
/// `[h > 0] g` for relu.
#[cube]
fn activate_backward<F: Float>(h: F, g: F, #[comptime] relu: bool) -> F {
    if relu {
        select(h > F::new(0.0), g, F::new(0.0))
    } else {
        (F::new(1.0) - h * h) * g
    }
}

/// A `rows × cols` tile of the vector-matrix products `v_r · M`: `out[r·cols + c] =
/// Σ_k v[v_at + r·hidden + k] · m[k·hidden + j(c)]` with `j(c) = j0 + c·stride`, `M` row-major
/// `[hidden, hidden]` (global or shared memory). Consecutive units (consecutive `j0`) read
/// consecutive addresses of `M`. Per `k` the unit loads `rows` values of `v` (a broadcast: the
/// same address for the whole cube) and `cols` of `M`, for `rows · cols` FMAs. Columns past
/// `hidden` read column `hidden - 1` instead (in bounds) and are to be ignored by the caller.
#[cube]
#[allow(clippy::too_many_arguments)]
fn product_tile<F: Float, L: List<F>>(
    v: &SharedMemory<F>,
    v_at: usize,
    m: &L,
    j0: usize,
    stride: usize,
    #[comptime] hidden: usize,
    #[comptime] rows: usize,
    #[comptime] cols: usize,
) -> Array<F> {
    // With fewer than 4 independent sums, split each over `lanes` accumulators (by k mod
    // lanes) so that consecutive loads and FMAs can be in flight together.
    let lanes = comptime!(if rows * cols >= 4 { 1 } else { LANES });
    let tile = rows * cols;
    let mut acc = Array::<F>::new(lanes * tile);
    #[unroll]
    for i in 0..lanes * tile {
        acc[i] = F::new(0.0);
    }
    let mut col = Array::<usize>::new(cols);
    #[unroll]
    for c in 0..cols {
        let j = j0 + c * stride;
        col[c] = select(j < hidden, j, hidden - 1);
    }
    let steps = hidden / LANES;
    for q in 0..steps {
        #[unroll]
        for u in 0..LANES {
            let k = q * LANES + u;
            let lane = comptime!(u % lanes);
            #[unroll]
            for c in 0..cols {
                let w = m.read(k * hidden + col[c]);
                #[unroll]
                for r in 0..rows {
                    acc[lane * tile + r * cols + c] += v[v_at + r * hidden + k] * w;
                }
            }
        }
    }
    for k in steps * LANES..hidden {
        #[unroll]
        for c in 0..cols {
            let w = m.read(k * hidden + col[c]);
            #[unroll]
            for r in 0..rows {
                acc[r * cols + c] += v[v_at + r * hidden + k] * w;
            }
        }
    }
    let mut out = Array::<F>::new(tile);
    #[unroll]
    for i in 0..tile {
        let mut sum = acc[i];
        #[unroll]
        for lane in 1..lanes {
            sum += acc[lane * tile + i];
        }
        out[i] = sum;
    }
    out
}

/// Copies the `[hidden, hidden]` matrix `m` into shared memory `dst`, all units of the cube
/// together (strided by the cube's unit count: coalesced).
#[cube]
fn load_matrix<F: Float>(m: &Tensor<F>, dst: &mut SharedMemory<F>, #[comptime] hidden: usize) {
    let units = CUBE_DIM_X as usize;
    let mut i = UNIT_POS_X as usize;
    while i < hidden * hidden {
        dst[i] = m[i];
        i += units;
    }
}

/// The valid length of each of the cube's rows: 0 for the spare rows past the batch, which
/// then compute nothing but still reach every barrier (a cube must not return early).
#[cube]
fn row_lengths(
    lengths: &Tensor<u32>,
    b0: usize,
    batch: usize,
    #[comptime] rows: usize,
) -> Array<usize> {
    let mut lens = Array::<usize>::new(rows);
    #[unroll]
    for r in 0..rows {
        lens[r] = 0;
        if b0 + r < batch {
            lens[r] = u32::cast_from(lengths[b0 + r]) as usize;
        }
    }
    lens
}

/// The forward recurrence. Launch with `CubeCount(ceil(batch / rows), 1, 1)`,
/// `CubeDim(units, 1, 1)`.
#[cube(launch_unchecked)]
pub(crate) fn elman_forward_kernel<F: Float>(
    drive: &Tensor<F>,      // [batch, time, hidden]
    w: &Tensor<F>,          // [hidden, hidden], [from, to]
    h0: &Tensor<F>,         // [batch, hidden]
    lengths: &Tensor<u32>,  // [batch], each in 0..=time
    states: &mut Tensor<F>, // [batch, time, hidden], output
    batch: u32,
    time: u32,
    #[comptime] hidden: usize,
    #[comptime] rows: usize,
    #[comptime] cols: usize,
    #[comptime] reverse: bool,
    #[comptime] relu: bool,
    #[comptime] w_shared: bool,
    #[define(F)] _dtype: StorageType,
) {
    let batch = batch as usize;
    let time = time as usize;
    let units = CUBE_DIM_X as usize;
    let b0 = CUBE_POS_X as usize * rows; // the cube's first row
    let lens = row_lengths(lengths, b0, batch, rows);

    // Two state buffers of `rows × hidden`: h(t-1) in one, h(t) written to the other.
    let mut h = SharedMemory::<F>::new(2 * rows * hidden);
    let w_len = comptime!(if w_shared { hidden * hidden } else { 1 });
    let mut w_local = SharedMemory::<F>::new(w_len);
    if w_shared {
        load_matrix::<F>(w, &mut w_local, hidden);
    }
    let mut j = UNIT_POS_X as usize;
    while j < hidden {
        #[unroll]
        for r in 0..rows {
            let mut value = F::new(0.0);
            if b0 + r < batch {
                value = h0[(b0 + r) * hidden + j];
            }
            h[r * hidden + j] = value;
        }
        j += units;
    }
    sync_cube();

    let buffer = rows * hidden;
    let mut cur = 0usize; // offset of the buffer holding h(t-1)
    for s in 0..time {
        let t = if reverse { time - 1 - s } else { s };
        let next = buffer - cur;
        // Whether any row of the cube is inside its sequence (uniform across the cube).
        let mut any = false;
        #[unroll]
        for r in 0..rows {
            any = any || t < lens[r];
        }
        // The unit's columns: j = base + UNIT_POS_X + c·units for c < cols, base stepping by
        // cols·units (one pass when cols·units >= hidden).
        let mut base = 0usize;
        while base < hidden {
            let j0 = base + UNIT_POS_X as usize;
            if any {
                let product = if w_shared {
                    product_tile::<F, SharedMemory<F>>(
                        &h, cur, &w_local, j0, units, hidden, rows, cols,
                    )
                } else {
                    product_tile::<F, Tensor<F>>(&h, cur, w, j0, units, hidden, rows, cols)
                };
                #[unroll]
                for c in 0..cols {
                    let j = j0 + c * units;
                    if j < hidden {
                        #[unroll]
                        for r in 0..rows {
                            let mut value = h[cur + r * hidden + j]; // held when invalid
                            if t < lens[r] {
                                let at = ((b0 + r) * time + t) * hidden + j;
                                value = activate::<F>(drive[at] + product[r * cols + c], relu);
                            }
                            h[next + r * hidden + j] = value;
                        }
                    }
                }
            } else {
                #[unroll]
                for c in 0..cols {
                    let j = j0 + c * units;
                    if j < hidden {
                        #[unroll]
                        for r in 0..rows {
                            h[next + r * hidden + j] = h[cur + r * hidden + j];
                        }
                    }
                }
            }
            #[unroll]
            for c in 0..cols {
                let j = j0 + c * units;
                if j < hidden {
                    #[unroll]
                    for r in 0..rows {
                        if b0 + r < batch {
                            states[((b0 + r) * time + t) * hidden + j] = h[next + r * hidden + j];
                        }
                    }
                }
            }
            base += cols * units;
        }
        sync_cube();
        cur = next;
    }
}

/// BPTT through the recurrence. Same launch geometry as the forward kernel.
#[cube(launch_unchecked)]
pub(crate) fn elman_backward_kernel<F: Float>(
    grad: &Tensor<F>,        // [batch, time, hidden], ∂L/∂states
    states: &Tensor<F>,      // [batch, time, hidden], the forward's output
    w_t: &Tensor<F>,         // [hidden, hidden], Wᵀ ([to, from])
    lengths: &Tensor<u32>,   // [batch]
    d_drive: &mut Tensor<F>, // [batch, time, hidden], output: δa
    d_h0: &mut Tensor<F>,    // [batch, hidden], output: the final carry
    batch: u32,
    time: u32,
    #[comptime] hidden: usize,
    #[comptime] rows: usize,
    #[comptime] cols: usize,
    #[comptime] reverse: bool,
    #[comptime] relu: bool,
    #[comptime] w_shared: bool,
    #[define(F)] _dtype: StorageType,
) {
    let batch = batch as usize;
    let time = time as usize;
    let units = CUBE_DIM_X as usize;
    let b0 = CUBE_POS_X as usize * rows;
    let lens = row_lengths(lengths, b0, batch, rows);

    // δa(t), double-buffered like the forward's states; the carry `δa(t+1) Wᵀ` of hidden unit
    // j is written and read only by the unit that owns j, so it needs no barrier.
    let mut da = SharedMemory::<F>::new(2 * rows * hidden);
    let mut carry = SharedMemory::<F>::new(rows * hidden);
    let w_len = comptime!(if w_shared { hidden * hidden } else { 1 });
    let mut w_local = SharedMemory::<F>::new(w_len);
    if w_shared {
        load_matrix::<F>(w_t, &mut w_local, hidden);
    }
    let mut j = UNIT_POS_X as usize;
    while j < hidden {
        #[unroll]
        for r in 0..rows {
            carry[r * hidden + j] = F::new(0.0);
        }
        j += units;
    }
    if w_shared {
        sync_cube(); // W in shared memory before the first product
    }

    let buffer = rows * hidden;
    let mut cur = 0usize;
    // Processing order reversed: p = time-1 ..= 0, visiting step t(p).
    for s in 0..time {
        let p = time - 1 - s;
        let t = if reverse { time - 1 - p } else { p };
        let mut any = false;
        #[unroll]
        for r in 0..rows {
            any = any || t < lens[r];
        }
        // δh = grad + carry; δa = act'(h) δh, or, at a held step, δa = 0 and carry = δh.
        let mut j = UNIT_POS_X as usize;
        while j < hidden {
            #[unroll]
            for r in 0..rows {
                let mut value = F::new(0.0);
                if b0 + r < batch {
                    let at = ((b0 + r) * time + t) * hidden + j;
                    let dh = grad[at] + carry[r * hidden + j];
                    if t < lens[r] {
                        value = activate_backward::<F>(states[at], dh, relu);
                    } else {
                        carry[r * hidden + j] = dh;
                    }
                    d_drive[at] = value;
                }
                da[cur + r * hidden + j] = value;
            }
            j += units;
        }
        sync_cube();
        // carry_k = Σ_j δa_j Wᵀ[j, k] for the rows inside their sequence.
        if any {
            let mut base = 0usize;
            while base < hidden {
                let k0 = base + UNIT_POS_X as usize;
                let product = if w_shared {
                    product_tile::<F, SharedMemory<F>>(
                        &da, cur, &w_local, k0, units, hidden, rows, cols,
                    )
                } else {
                    product_tile::<F, Tensor<F>>(&da, cur, w_t, k0, units, hidden, rows, cols)
                };
                #[unroll]
                for c in 0..cols {
                    let k = k0 + c * units;
                    if k < hidden {
                        #[unroll]
                        for r in 0..rows {
                            if t < lens[r] {
                                carry[r * hidden + k] = product[r * cols + c];
                            }
                        }
                    }
                }
                base += cols * units;
            }
        }
        cur = buffer - cur;
    }

    let mut j = UNIT_POS_X as usize;
    while j < hidden {
        #[unroll]
        for r in 0..rows {
            if b0 + r < batch {
                d_h0[(b0 + r) * hidden + j] = carry[r * hidden + j];
            }
        }
        j += units;
    }
}
