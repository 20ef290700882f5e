//! The host kernels' f32 GEMM, `C ← A·B (+ C)`: AVX-512 where the CPU has it, else AVX2 with
//! FMA.
//!
//! Written by hand rather than taken from a crate because of the recurrence's shape: 64 or
//! 128 products per pass against the same `W`. `matrixmultiply` (the GEMM burn-ndarray uses)
//! copies ("packs") all of `W` into a scratch buffer on every call, 256 KiB for 32 rows of work
//! at `H = 256`, 4 MiB at `H = 1024`, and no Rust GEMM crate takes an operand packed once by
//! the caller. Here the caller packs `W` once per pass ([`PackedB`], [`sgemm_packed`]), or `B`
//! is read in place ([`sgemm`]) when its rows are contiguous and it is used once. Measured: see
//! BENCHMARKS.md (`cargo bench --bench rnn -- gemm`).
//!
//! A packed `B` is panels of contiguous rows, which at `n = 1024` more than doubled the
//! kernel's speed; `A` is always copied into row blocks ([`pack_a`]).
//!
//! Register blocking: a block of `ROWS` rows of `C` by `LANES·V` columns lives in `ROWS × V`
//! vector accumulators; each step of the inner loop loads one row of `B` (`V` vectors), and
//! broadcasts one element of `A` per row into `V` fused multiply-adds. Column tails use
//! masked loads and stores, so any `n` works without padding. The loop is written once
//! ([`block_of`]) over the instruction set ([`Simd`]): 6 × 64 columns in 24 of AVX-512's 32
//! registers, 6 × 16 in 12 of AVX2's 16.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::fits;

/// Rows of `C` per register block.
const ROWS: usize = 6;
/// Rows of `B` per pass over `C`: a 64-column panel of 256 rows is 64 KiB, at home in L2.
const DEPTH: usize = 256;
/// Rows of `A` packed at a time: 96 × `DEPTH` values are 96 KiB, at home in L2 while every
/// panel of `B` passes over them.
const PACKED_ROWS: usize = 96;

/// The vector instruction set the kernel runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// 16 f32 lanes, masked loads and stores.
    Avx512,
    /// 8 f32 lanes with fused multiply-add.
    Avx2,
}

/// The instruction set this CPU runs the kernel with (checked once), or `None`: then the
/// callers use `matrixmultiply`. `UNFOLD_NO_AVX512` set in the environment skips AVX-512 and
/// `UNFOLD_NO_SIMD_GEMM` skips both (for before/after measurements).
pub fn isa() -> Option<Isa> {
    static ISA: OnceLock<Option<Isa>> = OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let off = |var: &str| std::env::var_os(var).is_some();
            if off("UNFOLD_NO_SIMD_GEMM") {
                return None;
            }
            if std::arch::is_x86_feature_detected!("avx512f") && !off("UNFOLD_NO_AVX512") {
                return Some(Isa::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Some(Isa::Avx2);
            }
            None
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    })
}

/// Whether this CPU runs the kernel ([`isa`] is some). Read by the benchmark (`internals`).
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn available() -> bool {
    isa().is_some()
}

/// Whether the kernel beats `matrixmultiply` for an `m×k` by `k×n` product on this CPU.
///
/// With AVX-512, always (64-column panels; measured at every shape the host kernels run). With
/// AVX2's 16-column panels only when `B` is small enough to stay in cache (at most 64 K
/// elements, `[256, 256]`) and `A` is a few rows: then reading `B` in place saves
/// `matrixmultiply`'s packing of it on every call. Larger products stream `B` from memory once
/// per row block and re-read `A` once per panel, where packing pays (measured on a 2-core AVX2
/// EPYC: the per-step `[16|32, 256] × [256, 256]` products 50–81 against 44–59 GFLOP/s; `[64,
/// 1024] × [1024, 1024]` 37–41 against 50; `[256, 1024] × [1024, 256]` 41–55 against 61–67).
pub fn prefers_in_place(m: usize, k: usize, n: usize) -> bool {
    match isa() {
        Some(Isa::Avx512) => true,
        Some(Isa::Avx2) => m <= 64 && k.saturating_mul(n) <= 1 << 16,
        None => false,
    }
}

/// `C ← A·B + (C if accumulate)`, `A` `m×k` with strides `(rsa, csa)`, `B` `k×n` with row
/// stride `rsb` and unit column stride, `C` `m×n` with row stride `rsc` and unit column stride.
///
/// Panics if an operand does not fit its slice, or if [`available`] is false.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    rsa: usize,
    csa: usize,
    b: &[f32],
    rsb: usize,
    accumulate: bool,
    c: &mut [f32],
    rsc: usize,
) {
    let isa = isa().expect("the GEMM kernel needs AVX-512 or AVX2 with FMA");
    assert!(
        fits(a.len(), m, k, rsa, csa) && fits(b.len(), k, n, rsb, 1) && fits(c.len(), m, n, rsc, 1),
        "GEMM operands out of bounds"
    );
    let b = Operand {
        values: b.as_ptr(),
        rsb,
        panel_stride: panel_width(isa),
        padded: false,
    };
    let a = Left { a, rsa, csa };
    // SAFETY: the bounds of all three operands were checked just above (`B` read in place
    // with row stride `rsb`), and `c` is borrowed mutably, so it aliases neither `a` nor `b`.
    unsafe { by_depth(isa, (m, k, n), a, b, accumulate, c, rsc) }
}

/// A `k×n` right operand copied once into the kernel's panel layout, for many products with
/// it (a recurrence's `W` or `Wᵀ`, read at every step of a pass).
///
/// Each panel is 16 (AVX2) or 64 (AVX-512) columns of `B`, stored row after row and padded with
/// zeros, so a register block's inner loop reads one contiguous stream with unmasked loads.
/// `B` read in place instead strides by its full row: at `n = 1024` that is 4 KiB, the same L1
/// set for every row. Measured at `[32, 1024] × [1024, 1024]` (one of two cores' share of the
/// large shape's per-step product) on a 2-core AVX2 EPYC: 15–21 GFLOP/s in place, 36–39
/// packed, `matrixmultiply` 23–34 (`cargo bench --bench rnn -- gemm`; with `A` packed as well,
/// [`pack_a`], 61–77).
#[derive(Debug, Clone)]
pub struct PackedB {
    k: usize,
    n: usize,
    isa: Isa,
    values: Vec<f32>,
}

impl PackedB {
    /// Packs the `k×n` matrix whose element `(p, j)` is `b[p·rsb + j·csb]` (so `Wᵀ` packs from
    /// `W` itself with the strides swapped). Panics if it does not fit `b`, or if
    /// [`available`] is false.
    pub fn new(k: usize, n: usize, b: &[f32], rsb: usize, csb: usize) -> Self {
        let isa = isa().expect("the GEMM kernel needs AVX-512 or AVX2 with FMA");
        assert!(fits(b.len(), k, n, rsb, csb), "GEMM operand out of bounds");
        let width = panel_width(isa);
        let mut values = vec![0.0; n.div_ceil(width) * k * width];
        for (panel, packed) in values.chunks_exact_mut((k * width).max(1)).enumerate() {
            let columns = panel * width..n.min((panel + 1) * width);
            for (p, packed_row) in packed.chunks_exact_mut(width).enumerate() {
                for (out, j) in packed_row.iter_mut().zip(columns.clone()) {
                    *out = b[p * rsb + j * csb];
                }
            }
        }
        Self { k, n, isa, values }
    }

    /// `(k, n)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.k, self.n)
    }
}

/// `C ← A·B + (C if accumulate)` for a packed `B` (see [`sgemm`] for the other operands).
///
/// Panics if `A` or `C` does not fit its slice.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_packed(
    m: usize,
    a: &[f32],
    rsa: usize,
    csa: usize,
    b: &PackedB,
    accumulate: bool,
    c: &mut [f32],
    rsc: usize,
) {
    let (k, n) = b.dims();
    assert!(
        fits(a.len(), m, k, rsa, csa) && fits(c.len(), m, n, rsc, 1),
        "GEMM operands out of bounds"
    );
    let width = panel_width(b.isa);
    let operand = Operand {
        values: b.values.as_ptr(),
        rsb: width,
        panel_stride: k * width,
        padded: true,
    };
    let a = Left { a, rsa, csa };
    // SAFETY: `A` and `C` were checked just above, and `B` holds `⌈n / width⌉` panels of `k`
    // rows of `width` (its constructor); `c` is borrowed mutably, so it aliases neither.
    unsafe { by_depth(b.isa, (m, k, n), a, operand, accumulate, c, rsc) }
}

/// The left operand: element `(i, p)` of `A` at `a[i · rsa + p · csa]`.
struct Left<'a> {
    a: &'a [f32],
    rsa: usize,
    csa: usize,
}

/// The right operand as the kernel reads it: element `(p, j)` of `B` at `values + (j / width)
/// · panel_stride + p · rsb + j % width`.
#[derive(Clone, Copy)]
struct Operand {
    values: *const f32,
    rsb: usize,
    panel_stride: usize,
    /// The last panel is padded with zeros to the full width.
    padded: bool,
}

/// The product in slices of `DEPTH` rows of `B`, each added to `C`: the slice of `B` one
/// register block streams stays in cache. Without it, the `∂W = Σ_t h(t-1)ᵀ δa(t)` product of
/// a long sequence (K = rows·time) re-read all of `B` from memory once per register block.
///
/// # Safety
/// `isa` runs on this CPU, the three operands hold the elements the product reads and writes,
/// and `c` aliases neither `a` nor `b`.
unsafe fn by_depth(
    isa: Isa,
    (m, k, n): (usize, usize, usize),
    Left { a, rsa, csa }: Left<'_>,
    b: Operand,
    accumulate: bool,
    c: &mut [f32],
    rsc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    // The copy of `A`, one buffer per thread reused by every call: the per-step products
    // would otherwise allocate twice per step per core.
    thread_local! {
        static PACKED_A: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    PACKED_A.with_borrow_mut(|packed_a| {
        let needed = m.min(PACKED_ROWS).div_ceil(ROWS) * ROWS * DEPTH.min(k);
        if packed_a.len() < needed {
            packed_a.resize(needed, 0.0);
        }
        for start in (0..k.max(1)).step_by(DEPTH) {
            let depth = DEPTH.min(k - start.min(k));
            for first in (0..m).step_by(PACKED_ROWS) {
                let rows = first..m.min(first + PACKED_ROWS);
                pack_a(packed_a, rows.clone(), start..start + depth, a, rsa, csa);
                let args = Gemm {
                    m: rows.len(),
                    k: depth,
                    n,
                    a: packed_a.as_ptr(),
                    // `wrapping_add`: no pointer is formed past the slice's end when `k` is 0.
                    b: b.values.wrapping_add(start * b.rsb),
                    rsb: b.rsb,
                    panel_stride: b.panel_stride,
                    padded: b.padded,
                    accumulate: accumulate || start > 0,
                    c: c.as_mut_ptr().add(first * rsc),
                    rsc,
                };
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the caller's contract; columns past `n` are masked off, rows
                // `start..start + depth` of `B` are within `k`, and `A` is read from its
                // packed copy.
                unsafe {
                    match isa {
                        Isa::Avx512 => avx512_kernel(args),
                        Isa::Avx2 => avx2_kernel(args),
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (args, isa); // `isa()` is never some here
            }
        }
    })
}

/// Copies columns `depth` of the strided `m×k` matrix `A` into `packed` as row blocks of
/// `ROWS`, each stored column after column (`ROWS` values per column, the last block padded
/// with zeros): the register block then reads its `A` as one contiguous stream.
///
/// A's rows in place are a row stride apart, 4 KiB at `k = 1024`: the same L1 set for every
/// row, so the broadcasts missed L1. The copy is `m · depth` values for `2 · m · depth · n`
/// flops. Measured at `[32, 1024] × [1024, 1024]` on a 2-core AVX2 EPYC, alternating runs of
/// `cargo bench --bench rnn -- gemm`: 44–58 GFLOP/s before, 61–74 after (packed `B`).
fn pack_a(
    packed: &mut [f32],
    rows: std::ops::Range<usize>,
    depth: std::ops::Range<usize>,
    a: &[f32],
    rsa: usize,
    csa: usize,
) {
    let len = depth.len();
    let blocks = rows.len().div_ceil(ROWS);
    for (block, out) in packed
        .chunks_exact_mut(ROWS * len.max(1))
        .take(blocks)
        .enumerate()
    {
        let first = rows.start + block * ROWS;
        // Rows of the block past `rows.end` are zeros (filled below).
        let here = ROWS.min(rows.end - first);
        // Read along the smaller stride: a transposed `A` (`∂W = Hᵀ δ`) a column at a time,
        // a row-major one a row at a time; the other order would touch a new cache line per
        // value, all `rsa` (or `csa`) apart, which at 4 KiB falls in one L1 set.
        if csa <= rsa {
            for r in 0..here {
                let row = &a[(first + r) * rsa..];
                for (p, col) in depth.clone().enumerate() {
                    out[p * ROWS + r] = row[col * csa];
                }
            }
        } else {
            for (p, col) in depth.clone().enumerate() {
                let column = &a[col * csa..];
                for r in 0..here {
                    out[p * ROWS + r] = column[(first + r) * rsa];
                }
            }
        }
        if here < ROWS {
            for p in 0..len {
                out[p * ROWS + here..(p + 1) * ROWS].fill(0.0);
            }
        }
    }
}

/// Columns of `B` per register block: `LANES · VECS` of the instruction set.
fn panel_width(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 64,
        Isa::Avx2 => 16,
    }
}

/// One GEMM call's operands (see [`sgemm`]), as raw pointers for the kernels.
#[derive(Clone, Copy)]
struct Gemm {
    m: usize,
    k: usize,
    n: usize,
    /// `A` packed by [`pack_a`].
    a: *const f32,
    b: *const f32,
    rsb: usize,
    /// Elements from one 16- or 64-column panel of `B` to the next: the panel width for `B`
    /// read in place, `k ×` the width for a [`PackedB`].
    panel_stride: usize,
    /// Whether `B`'s last panel is padded to the full width (a [`PackedB`]).
    padded: bool,
    accumulate: bool,
    c: *mut f32,
    rsc: usize,
}

/// A vector instruction set: the few operations the kernel needs, each one instruction.
#[cfg(target_arch = "x86_64")]
trait Simd {
    /// A vector of f32 lanes.
    type V: Copy;
    /// Which lanes of a vector a load or store touches.
    type Mask: Copy;
    /// f32 lanes per vector.
    const LANES: usize;
    /// Vectors per row of a register block.
    const VECS: usize;
    /// The mask of the first `lanes` lanes (`1..=LANES`).
    unsafe fn mask(lanes: usize) -> Self::Mask;
    unsafe fn zero() -> Self::V;
    unsafe fn load(mask: Self::Mask, full: bool, p: *const f32) -> Self::V;
    unsafe fn splat(x: f32) -> Self::V;
    /// `a · b + c`.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn store(p: *mut f32, mask: Self::Mask, full: bool, v: Self::V);
}

#[cfg(target_arch = "x86_64")]
struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Simd for Avx512 {
    type V = __m512;
    type Mask = __mmask16;
    const LANES: usize = 16;
    const VECS: usize = 4;

    #[inline(always)]
    unsafe fn mask(lanes: usize) -> __mmask16 {
        if lanes >= 16 {
            0xFFFF
        } else {
            (1u16 << lanes) - 1
        }
    }
    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(mask: __mmask16, _full: bool, p: *const f32) -> __m512 {
        _mm512_maskz_loadu_ps(mask, p)
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        _mm512_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, mask: __mmask16, _full: bool, v: __m512) {
        _mm512_mask_storeu_ps(p, mask, v)
    }
}

#[cfg(target_arch = "x86_64")]
struct Avx2;

/// AVX2's masked moves are slow on some CPUs (AMD's `vmaskmovps` store is microcoded), so full
/// vectors use plain loads and stores and only a column tail is masked.
#[cfg(target_arch = "x86_64")]
impl Simd for Avx2 {
    type V = __m256;
    type Mask = __m256i;
    const LANES: usize = 8;
    const VECS: usize = 2;

    #[inline(always)]
    unsafe fn mask(lanes: usize) -> __m256i {
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes as i32), lane)
    }
    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(mask: __m256i, full: bool, p: *const f32) -> __m256 {
        if full {
            _mm256_loadu_ps(p)
        } else {
            _mm256_maskload_ps(p, mask)
        }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        _mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, mask: __m256i, full: bool, v: __m256) {
        if full {
            _mm256_storeu_ps(p, v)
        } else {
            _mm256_maskstore_ps(p, mask, v)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_kernel(args: Gemm) {
    kernel::<Avx512>(args)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_kernel(args: Gemm) {
    kernel::<Avx2>(args)
}

/// The most vectors per block row of any instruction set (AVX-512's 4).
const MAX_VECS: usize = 4;

/// Every register block of `C`, column panels outside, row blocks inside.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn kernel<S: Simd>(g: Gemm) {
    let panel = S::LANES * S::VECS;
    let mut j = 0;
    while j < g.n {
        let cols = (g.n - j).min(panel);
        let vecs = cols.div_ceil(S::LANES);
        let mut masks = [S::mask(S::LANES); MAX_VECS];
        let mut full = [true; MAX_VECS];
        for v in 0..vecs {
            let here = (cols - S::LANES * v).min(S::LANES);
            masks[v] = S::mask(here);
            full[v] = here == S::LANES;
        }
        let mut i = 0;
        while i < g.m {
            let rows = (g.m - i).min(ROWS);
            let block = Block {
                k: g.k,
                a: g.a.add(i * g.k), // row blocks of `ROWS × k` ([`pack_a`])
                b: g.b.add(j / panel * g.panel_stride),
                rsb: g.rsb,
                accumulate: g.accumulate,
                c: g.c.add(i * g.rsc + j),
                rsc: g.rsc,
            };
            // Whole vectors of `B` can be loaded without masks: a packed panel is padded
            // with zeros, and only the last panel of `B` read in place is narrower.
            match (vecs, g.padded || cols == panel) {
                (1, true) => by_rows::<S, 1, true>(rows, block, &masks, &full),
                (2, true) => by_rows::<S, 2, true>(rows, block, &masks, &full),
                (3, true) => by_rows::<S, 3, true>(rows, block, &masks, &full),
                (_, true) => by_rows::<S, MAX_VECS, true>(rows, block, &masks, &full),
                (1, false) => by_rows::<S, 1, false>(rows, block, &masks, &full),
                (2, false) => by_rows::<S, 2, false>(rows, block, &masks, &full),
                (3, false) => by_rows::<S, 3, false>(rows, block, &masks, &full),
                (_, false) => by_rows::<S, MAX_VECS, false>(rows, block, &masks, &full),
            }
            i += rows;
        }
        j += cols;
    }
}

/// One register block's operands (see [`block_of`]).
#[derive(Clone, Copy)]
struct Block {
    k: usize,
    /// This block's rows of `A`, packed: `(r, p)` at `p · ROWS + r`.
    a: *const f32,
    b: *const f32,
    rsb: usize,
    accumulate: bool,
    c: *mut f32,
    rsc: usize,
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn by_rows<S: Simd, const V: usize, const B_FULL: bool>(
    rows: usize,
    block: Block,
    masks: &[S::Mask; MAX_VECS],
    full: &[bool; MAX_VECS],
) {
    match rows {
        1 => block_of::<S, 1, V, B_FULL>(block, masks, full),
        2 => block_of::<S, 2, V, B_FULL>(block, masks, full),
        3 => block_of::<S, 3, V, B_FULL>(block, masks, full),
        4 => block_of::<S, 4, V, B_FULL>(block, masks, full),
        5 => block_of::<S, 5, V, B_FULL>(block, masks, full),
        _ => block_of::<S, ROWS, V, B_FULL>(block, masks, full),
    }
}

/// One `R × LANES·V` block of `C`: `Σ_p A[r, p] · B[p, ..]` in registers, then one store.
/// `B_FULL`: every vector of a row of `B` may be loaded whole (no masked loads in the loop).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)] // rows index `acc` and the strided `A`/`C` alike
unsafe fn block_of<S: Simd, const R: usize, const V: usize, const B_FULL: bool>(
    Block {
        k,
        a,
        b,
        rsb,
        accumulate,
        c,
        rsc,
    }: Block,
    masks: &[S::Mask; MAX_VECS],
    full: &[bool; MAX_VECS],
) {
    let mut acc = [[S::zero(); V]; R];
    for p in 0..k {
        let b_row = b.add(p * rsb);
        let mut bv = [S::zero(); V];
        for v in 0..V {
            bv[v] = S::load(masks[v], B_FULL || full[v], b_row.add(S::LANES * v));
        }
        let a_col = a.add(p * ROWS);
        for r in 0..R {
            let av = S::splat(*a_col.add(r));
            for v in 0..V {
                acc[r][v] = S::fma(av, bv[v], acc[r][v]);
            }
        }
    }
    for r in 0..R {
        let c_row = c.add(r * rsc);
        for v in 0..V {
            let out = c_row.add(S::LANES * v);
            let mut value = acc[r][v];
            if accumulate {
                value = S::add(value, S::load(masks[v], full[v], out));
            }
            S::store(out, masks[v], full[v], value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn panel_width_is_the_register_blocks_width() {
        assert_eq!(panel_width(Isa::Avx2), Avx2::LANES * Avx2::VECS);
        assert_eq!(panel_width(Isa::Avx512), Avx512::LANES * Avx512::VECS);
    }

    /// `C = A·B (+ C)` by the definition, in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        rsa: usize,
        csa: usize,
        b: &[f32],
        rsb: usize,
        c: &[f32],
        rsc: usize,
        accumulate: bool,
    ) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut sum = if accumulate {
                    c[i * rsc + j] as f64
                } else {
                    0.0
                };
                for p in 0..k {
                    sum += a[i * rsa + p * csa] as f64 * b[p * rsb + j] as f64;
                }
                out[i * n + j] = sum;
            }
        }
        out
    }

    #[test]
    fn kernel_equals_the_definition_for_every_tail_and_stride() {
        let Some(isa) = isa() else {
            eprintln!("skipped: neither AVX-512 nor AVX2 with FMA on this CPU");
            return;
        };
        eprintln!("testing the {isa:?} kernel");
        let value = |i: usize| ((i * 7919 % 1000) as f32 - 500.0) / 250.0;
        for &(m, k, n) in &[
            (1, 1, 1),
            (7, 13, 65),
            (32, 256, 256),
            (13, 5, 100),
            (6, 0, 17),
        ] {
            for transposed_a in [false, true] {
                for accumulate in [false, true] {
                    let (rsa, csa) = if transposed_a { (1, m) } else { (k + 3, 1) };
                    let (rsb, rsc) = (n + 5, n + 2);
                    let a: Vec<f32> = (0..m * (k + 3)).map(value).collect();
                    let b: Vec<f32> = (0..k.max(1) * rsb).map(|i| value(i + 11)).collect();
                    let mut c: Vec<f32> = (0..m * rsc).map(|i| value(i + 5)).collect();
                    let expected = reference(m, k, n, &a, rsa, csa, &b, rsb, &c, rsc, accumulate);
                    let untouched = c.clone();
                    let c_before = c.clone();
                    sgemm(m, k, n, &a, rsa, csa, &b, rsb, accumulate, &mut c, rsc);
                    // Packed from B, and from Bᵀ with the strides swapped: the same kernel
                    // over the same sums, so the same bits.
                    let b_t: Vec<f32> = (0..n * k).map(|i| b[(i % k) * rsb + i / k]).collect();
                    for packed in [
                        PackedB::new(k, n, &b, rsb, 1),
                        PackedB::new(k, n, &b_t, 1, k),
                    ] {
                        let mut c_here = c_before.clone();
                        sgemm_packed(m, &a, rsa, csa, &packed, accumulate, &mut c_here, rsc);
                        assert_eq!(c_here, c, "{m}x{k}x{n}: packed B vs B in place");
                    }
                    for i in 0..m {
                        for j in 0..rsc {
                            let got = c[i * rsc + j];
                            if j < n {
                                let want = expected[i * n + j];
                                let tolerance = 1e-5 * (1.0 + k as f64);
                                assert!(
                                    (got as f64 - want).abs() < tolerance,
                                    "{m}x{k}x{n} at ({i},{j}): {got} vs {want}"
                                );
                            } else {
                                assert_eq!(got, untouched[i * rsc + j], "wrote past column n");
                            }
                        }
                    }
                }
            }
        }
    }
}
