//! An AVX-512 f32 GEMM for the host kernels' products, `C ← A·B (+ C)`, with `B` read in place.
//!
//! Written by hand rather than taken from a crate because of the recurrence's shape: 64 small
//! products `[32, 256] × [256, 256]` per pass against the same `W`. `matrixmultiply` (the GEMM
//! burn-ndarray uses) copies ("packs") all of `W` into a scratch buffer on every call, 256 KiB
//! for 32 rows of work, and no Rust GEMM crate takes an operand packed once by the caller. Here
//! `B` is read directly: its rows are already contiguous (`W` row-major in the forward pass; a
//! transposed copy made once per pass in the backward pass), which is the layout a packed panel
//! would have, and it stays in L2 across the steps. Measured at the per-step shape on this
//! project's 2-core AVX-512 machine: see BENCHMARKS.md.
//!
//! Register blocking: a block of `ROWS` rows of `C` by `16·VECS` columns lives in `ROWS × VECS`
//! zmm accumulators; each step of the inner loop loads one row of `B` (`VECS` vectors), and
//! broadcasts one element of `A` per row into `VECS` fused multiply-adds. Column tails use
//! masked loads and stores, so any `n` works without padding.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Rows of `C` per register block.
const ROWS: usize = 6;
/// zmm vectors (16 floats each) per register block: 64 columns.
const VECS: usize = 4;
/// Rows of `B` per pass over `C`: a 64-column panel of 256 rows is 64 KiB, at home in L2.
const DEPTH: usize = 256;

/// Whether this CPU runs the AVX-512 kernel (checked once).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::env::var_os("UNFOLD_NO_AVX512").is_none()
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
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
    assert!(available(), "the AVX-512 kernel needs avx512f");
    let fits = |len: usize, rows: usize, cols: usize, rs: usize, cs: usize| {
        rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len
    };
    assert!(
        fits(a.len(), m, k, rsa, csa) && fits(b.len(), k, n, rsb, 1) && fits(c.len(), m, n, rsc, 1),
        "GEMM operands out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    // K in slices of `DEPTH`, each added to `C`: the slice of `B` one register block streams
    // stays in cache. Without it, the `∂W = Σ_t h(t-1)ᵀ δa(t)` product of a long sequence
    // (K = rows·time) re-read all of `B` from memory once per register block.
    for start in (0..k.max(1)).step_by(DEPTH) {
        let depth = DEPTH.min(k - start.min(k));
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx512f is present (asserted above); every access below stays inside the
        // bounds just checked (columns past `n` are masked off; rows `start..start + depth` of
        // `B` and columns of `A` are within `k`), and `c` is borrowed mutably, so it aliases
        // neither `a` nor `b`.
        unsafe {
            kernel(
                m,
                depth,
                n,
                a.as_ptr().add(start * csa),
                rsa,
                csa,
                b.as_ptr().add(start * rsb),
                rsb,
                accumulate || start > 0,
                c.as_mut_ptr(),
                rsc,
            );
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    rsb: usize,
    accumulate: bool,
    c: *mut f32,
    rsc: usize,
) {
    let mut j = 0;
    while j < n {
        let cols = (n - j).min(16 * VECS);
        let vecs = cols.div_ceil(16);
        let mut masks = [0 as __mmask16; VECS];
        for (v, mask) in masks.iter_mut().enumerate().take(vecs) {
            let here = (cols - 16 * v).min(16);
            *mask = if here == 16 {
                0xFFFF
            } else {
                (1u16 << here) - 1
            };
        }
        let mut i = 0;
        while i < m {
            let rows = (m - i).min(ROWS);
            let (a, c) = (a.add(i * rsa), c.add(i * rsc + j));
            let args = (k, a, rsa, csa, b.add(j), rsb, &masks, accumulate, c, rsc);
            match vecs {
                1 => by_rows::<1>(rows, args),
                2 => by_rows::<2>(rows, args),
                3 => by_rows::<3>(rows, args),
                _ => by_rows::<VECS>(rows, args),
            }
            i += rows;
        }
        j += cols;
    }
}

/// The arguments of one register block (see [`block`]).
#[cfg(target_arch = "x86_64")]
type BlockArgs<'m> = (
    usize,
    *const f32,
    usize,
    usize,
    *const f32,
    usize,
    &'m [__mmask16; VECS],
    bool,
    *mut f32,
    usize,
);

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn by_rows<const V: usize>(rows: usize, args: BlockArgs) {
    match rows {
        1 => block::<1, V>(args),
        2 => block::<2, V>(args),
        3 => block::<3, V>(args),
        4 => block::<4, V>(args),
        5 => block::<5, V>(args),
        _ => block::<ROWS, V>(args),
    }
}

/// One `R × 16V` block of `C`: `Σ_p A[r, p] · B[p, ..]` in registers, then one store.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::needless_range_loop)] // rows index `acc` and the strided `A`/`C` alike
unsafe fn block<const R: usize, const V: usize>(
    (k, a, rsa, csa, b, rsb, masks, accumulate, c, rsc): BlockArgs,
) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for p in 0..k {
        let b_row = b.add(p * rsb);
        let mut bv = [_mm512_setzero_ps(); V];
        for v in 0..V {
            bv[v] = _mm512_maskz_loadu_ps(masks[v], b_row.add(16 * v));
        }
        let a_col = a.add(p * csa);
        for r in 0..R {
            let av = _mm512_set1_ps(*a_col.add(r * rsa));
            for v in 0..V {
                acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
            }
        }
    }
    for r in 0..R {
        let c_row = c.add(r * rsc);
        for v in 0..V {
            let out = c_row.add(16 * v);
            let mut value = acc[r][v];
            if accumulate {
                value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(masks[v], out));
            }
            _mm512_mask_storeu_ps(out, masks[v], value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        if !available() {
            eprintln!("skipped: no avx512f on this CPU");
            return;
        }
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
                    sgemm(m, k, n, &a, rsa, csa, &b, rsb, accumulate, &mut c, rsc);
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
