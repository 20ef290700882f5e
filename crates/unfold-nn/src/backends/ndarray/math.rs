//! The float types the host kernels run in, and their elementwise loops.
//!
//! The loops are written once, generically ([`loops`]); for f32 they run compiled for AVX-512,
//! or AVX2 with FMA, where the CPU has it (the crate itself is built for baseline x86-64),
//! using the rational
//! `tanh` and polynomial `exp` below, which vectorise where libm's do not.

use burn::backend::ndarray::{NdArrayTensor, SharedArray};
use burn::tensor::{Element, ElementConversion, TensorMetadata};

use super::{fits, sgemm};
use crate::nonlinearity::Nonlinearity;

/// A float type the host kernels run in (f32 and f64).
pub(crate) trait HostFloat:
    Element
    + Copy
    + Default
    + Send
    + Sync
    + std::ops::Add<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Div<Output = Self>
    + PartialOrd
{
    /// One.
    const ONE: Self;

    /// `C ← A·B + beta·C` for row-major strided matrices (`m×k` times `k×n`, `C` with unit
    /// column stride).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: &[Self],
        rsa: usize,
        csa: usize,
        b: &[Self],
        rsb: usize,
        csb: usize,
        beta: Self,
        c: &mut [Self],
        rsc: usize,
    );

    /// A `k×n` right operand prepared once for many products with it ([`HostFloat::prepare`]).
    type Prepared: Prepared;

    /// Prepares the `k×n` matrix whose element `(p, j)` is `b[p·rsb + j·csb]` for
    /// [`HostFloat::gemm_prepared`]: a recurrence's `W` (or `Wᵀ`, from `W` with the strides
    /// swapped), read at every step of a pass.
    fn prepare(k: usize, n: usize, b: &[Self], rsb: usize, csb: usize) -> Self::Prepared;

    /// `C ← A·B + (C if accumulate)` for a prepared `B` (see [`HostFloat::gemm`]).
    #[allow(clippy::too_many_arguments)]
    fn gemm_prepared(
        m: usize,
        a: &[Self],
        rsa: usize,
        csa: usize,
        b: &Self::Prepared,
        accumulate: bool,
        c: &mut [Self],
        rsc: usize,
    );

    /// `tanh`, scalar (vectorisable for f32).
    fn tanh(self) -> Self;

    /// `e^x`, scalar (vectorisable for f32).
    fn exp(self) -> Self;

    /// `ln x`.
    fn ln(self) -> Self;

    /// `x ← act(x)` for every element.
    fn activate(x: &mut [Self], act: Nonlinearity) {
        loops::activate(x, act);
    }

    /// `g ← act'(y) ⊙ g`: the nonlinearity's backward step from its output `y`.
    fn activation_grad(g: &mut [Self], y: &[Self], act: Nonlinearity) {
        loops::activation_grad(g, y, act);
    }

    /// `δa ← act'(h) ⊙ (δa + carry)`: the recurrence's backward step, with `δa` holding
    /// `∂L/∂h(t)` on entry.
    fn activation_backward(da: &mut [Self], carry: &[Self], h: &[Self], act: Nonlinearity) {
        loops::activation_backward(da, carry, h, act);
    }

    /// `x ← e^x` for every element.
    fn exp_in_place(x: &mut [Self]) {
        loops::exp(x);
    }

    /// The array inside an ndarray tensor (shared, not copied), converted if the tensor holds
    /// the other float type.
    fn array(tensor: NdArrayTensor) -> SharedArray<Self>;

    /// An ndarray tensor holding `values` (row-major) with `shape`.
    fn into_ndarray(values: Vec<Self>, shape: &[usize]) -> NdArrayTensor;
}

/// A prepared right operand ([`HostFloat::prepare`]).
pub(crate) trait Prepared: Send + Sync {
    /// `(k, n)`: the matrix's rows and columns.
    fn dims(&self) -> (usize, usize);
}

/// A `k×n` matrix copied into row-major order: the prepared right operand where the SIMD
/// kernel's packed layout does not apply (f64, or a CPU without AVX2).
pub(crate) struct RowMajor<F> {
    k: usize,
    n: usize,
    values: Vec<F>,
}

impl<F: HostFloat> RowMajor<F> {
    fn new(k: usize, n: usize, b: &[F], rsb: usize, csb: usize) -> Self {
        let values = (0..k * n).map(|i| b[i / n * rsb + i % n * csb]).collect();
        Self { k, n, values }
    }

    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        m: usize,
        a: &[F],
        rsa: usize,
        csa: usize,
        accumulate: bool,
        c: &mut [F],
        rsc: usize,
    ) {
        let beta = if accumulate { F::ONE } else { F::default() };
        F::gemm(
            m,
            self.k,
            self.n,
            a,
            rsa,
            csa,
            &self.values,
            self.n,
            1,
            beta,
            c,
            rsc,
        );
    }
}

impl<F: HostFloat> Prepared for RowMajor<F> {
    fn dims(&self) -> (usize, usize) {
        (self.k, self.n)
    }
}

/// f32's prepared right operand: packed for the SIMD kernel where the CPU runs it.
pub(crate) enum F32Operand {
    Packed(sgemm::PackedB),
    RowMajor(RowMajor<f32>),
}

impl Prepared for F32Operand {
    fn dims(&self) -> (usize, usize) {
        match self {
            F32Operand::Packed(b) => b.dims(),
            F32Operand::RowMajor(b) => b.dims(),
        }
    }
}

/// The elementwise loops, once for every float type.
mod loops {
    use super::HostFloat;
    use crate::nonlinearity::Nonlinearity;

    #[inline]
    pub fn activate<F: HostFloat>(x: &mut [F], act: Nonlinearity) {
        match act {
            Nonlinearity::Tanh => x.iter_mut().for_each(|v| *v = v.tanh()),
            Nonlinearity::Relu => x.iter_mut().for_each(|v| *v = relu(*v)),
        }
    }

    #[inline]
    pub fn activation_grad<F: HostFloat>(g: &mut [F], y: &[F], act: Nonlinearity) {
        let zip = g.iter_mut().zip(y);
        match act {
            Nonlinearity::Tanh => zip.for_each(|(g, &y)| *g = (F::ONE - y * y) * *g),
            Nonlinearity::Relu => zip.for_each(|(g, &y)| *g = gate(y, *g)),
        }
    }

    #[inline]
    pub fn activation_backward<F: HostFloat>(
        da: &mut [F],
        carry: &[F],
        h: &[F],
        act: Nonlinearity,
    ) {
        let zip = da.iter_mut().zip(carry).zip(h);
        match act {
            Nonlinearity::Tanh => zip.for_each(|((d, &c), &h)| *d = (F::ONE - h * h) * (*d + c)),
            Nonlinearity::Relu => zip.for_each(|((d, &c), &h)| *d = gate(h, *d + c)),
        }
    }

    #[inline]
    pub fn exp<F: HostFloat>(x: &mut [F]) {
        x.iter_mut().for_each(|v| *v = v.exp());
    }

    /// `max(0, x)`.
    #[inline]
    fn relu<F: HostFloat>(x: F) -> F {
        if x > F::default() {
            x
        } else {
            F::default()
        }
    }

    /// `g` where `y > 0`, else 0: ReLU's derivative from its output.
    #[inline]
    fn gate<F: HostFloat>(y: F, g: F) -> F {
        if y > F::default() {
            g
        } else {
            F::default()
        }
    }
}

/// The f32 loops compiled for a wider instruction set, so that they vectorise: one module per
/// set, the same loops.
macro_rules! simd_loops {
    ($(#[$doc:meta])* $module:ident, $features:literal) => {
        $(#[$doc])*
        #[cfg(target_arch = "x86_64")]
        mod $module {
            use super::loops;
            use crate::nonlinearity::Nonlinearity;

            #[target_feature(enable = $features)]
            pub unsafe fn activate(x: &mut [f32], act: Nonlinearity) {
                loops::activate(x, act);
            }

            #[target_feature(enable = $features)]
            pub unsafe fn activation_grad(g: &mut [f32], y: &[f32], act: Nonlinearity) {
                loops::activation_grad(g, y, act);
            }

            #[target_feature(enable = $features)]
            pub unsafe fn activation_backward(
                da: &mut [f32],
                carry: &[f32],
                h: &[f32],
                act: Nonlinearity,
            ) {
                loops::activation_backward(da, carry, h, act);
            }

            #[target_feature(enable = $features)]
            pub unsafe fn exp(x: &mut [f32]) {
                loops::exp(x);
            }
        }
    };
}

simd_loops!(
    /// 16 lanes.
    avx512,
    "avx512f"
);
simd_loops!(
    /// 8 lanes, with fused multiply-add.
    avx2,
    "avx2,fma"
);

/// The loop `$name(args)` compiled for the widest instruction set the CPU has (the one the
/// GEMM kernel uses), else the portable one.
macro_rules! f32_loop {
    ($name:ident($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        match sgemm::isa() {
            // SAFETY: the CPU has these instruction sets (`isa` detected them).
            Some(sgemm::Isa::Avx512) => return unsafe { avx512::$name($($arg),*) },
            Some(sgemm::Isa::Avx2) => return unsafe { avx2::$name($($arg),*) },
            None => {}
        }
        loops::$name($($arg),*)
    }};
}

/// `matrixmultiply`'s GEMM (the one burn-ndarray uses) on checked slices.
macro_rules! matrixmultiply_gemm {
    ($gemm:path, $m:expr, $k:expr, $n:expr, $a:expr, $rsa:expr, $csa:expr, $b:expr, $rsb:expr,
     $csb:expr, $beta:expr, $c:expr, $rsc:expr) => {{
        let (m, k, n, a, b, c) = ($m, $k, $n, $a, $b, $c);
        let (rsa, csa, rsb, csb, rsc) = ($rsa, $csa, $rsb, $csb, $rsc);
        assert!(
            fits(a.len(), m, k, rsa, csa)
                && fits(b.len(), k, n, rsb, csb)
                && fits(c.len(), m, n, rsc, 1),
            "GEMM operands out of bounds"
        );
        // SAFETY: the bounds of all three strided matrices were checked just above, and `c`
        // is borrowed mutably, so it does not alias `a` or `b`.
        unsafe {
            $gemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                rsa as isize,
                csa as isize,
                b.as_ptr(),
                rsb as isize,
                csb as isize,
                $beta,
                c.as_mut_ptr(),
                rsc as isize,
                1,
            );
        }
    }};
}

impl HostFloat for f32 {
    const ONE: Self = 1.0;

    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        rsa: usize,
        csa: usize,
        b: &[f32],
        rsb: usize,
        csb: usize,
        beta: f32,
        c: &mut [f32],
        rsc: usize,
    ) {
        // The SIMD kernel reads `B` in place (no packing): where it applies and pays, use it.
        let in_place = (csb == 1 || n == 1) && (beta == 0.0 || beta == 1.0);
        if in_place && sgemm::prefers_in_place(m, k, n) {
            return sgemm::sgemm(m, k, n, a, rsa, csa, b, rsb, beta == 1.0, c, rsc);
        }
        matrixmultiply_gemm!(
            matrixmultiply::sgemm,
            m,
            k,
            n,
            a,
            rsa,
            csa,
            b,
            rsb,
            csb,
            beta,
            c,
            rsc
        );
    }

    type Prepared = F32Operand;

    fn prepare(k: usize, n: usize, b: &[f32], rsb: usize, csb: usize) -> F32Operand {
        match sgemm::isa() {
            Some(_) => F32Operand::Packed(sgemm::PackedB::new(k, n, b, rsb, csb)),
            None => F32Operand::RowMajor(RowMajor::new(k, n, b, rsb, csb)),
        }
    }

    fn gemm_prepared(
        m: usize,
        a: &[f32],
        rsa: usize,
        csa: usize,
        b: &F32Operand,
        accumulate: bool,
        c: &mut [f32],
        rsc: usize,
    ) {
        match b {
            F32Operand::Packed(b) => sgemm::sgemm_packed(m, a, rsa, csa, b, accumulate, c, rsc),
            F32Operand::RowMajor(b) => b.gemm(m, a, rsa, csa, accumulate, c, rsc),
        }
    }

    fn tanh(self) -> Self {
        fast_tanh(self)
    }

    fn exp(self) -> Self {
        fast_exp(self)
    }

    fn ln(self) -> Self {
        f32::ln(self)
    }

    fn activate(x: &mut [f32], act: Nonlinearity) {
        f32_loop!(activate(x, act))
    }

    fn activation_grad(g: &mut [f32], y: &[f32], act: Nonlinearity) {
        f32_loop!(activation_grad(g, y, act))
    }

    fn activation_backward(da: &mut [f32], carry: &[f32], h: &[f32], act: Nonlinearity) {
        f32_loop!(activation_backward(da, carry, h, act))
    }

    fn exp_in_place(x: &mut [f32]) {
        f32_loop!(exp(x))
    }

    fn array(tensor: NdArrayTensor) -> SharedArray<f32> {
        match tensor {
            NdArrayTensor::F32(storage) => storage.into_shared(),
            NdArrayTensor::F64(storage) => storage.into_shared().mapv(|x| x as f32).into_shared(),
            other => panic!(
                "the host kernels take float tensors, not {:?}",
                other.dtype()
            ),
        }
    }

    fn into_ndarray(values: Vec<f32>, shape: &[usize]) -> NdArrayTensor {
        ndarray::ArcArray::from_shape_vec(ndarray::IxDyn(shape), values)
            .expect("values match the shape")
            .into()
    }
}

/// f64 serves the gradient checks, not training speed: libm's `tanh` and `exp`, and
/// `matrixmultiply`'s GEMM.
impl HostFloat for f64 {
    const ONE: Self = 1.0;

    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: &[f64],
        rsa: usize,
        csa: usize,
        b: &[f64],
        rsb: usize,
        csb: usize,
        beta: f64,
        c: &mut [f64],
        rsc: usize,
    ) {
        matrixmultiply_gemm!(
            matrixmultiply::dgemm,
            m,
            k,
            n,
            a,
            rsa,
            csa,
            b,
            rsb,
            csb,
            beta,
            c,
            rsc
        );
    }

    type Prepared = RowMajor<f64>;

    fn prepare(k: usize, n: usize, b: &[f64], rsb: usize, csb: usize) -> RowMajor<f64> {
        RowMajor::new(k, n, b, rsb, csb)
    }

    fn gemm_prepared(
        m: usize,
        a: &[f64],
        rsa: usize,
        csa: usize,
        b: &RowMajor<f64>,
        accumulate: bool,
        c: &mut [f64],
        rsc: usize,
    ) {
        b.gemm(m, a, rsa, csa, accumulate, c, rsc)
    }

    fn tanh(self) -> Self {
        f64::tanh(self)
    }

    fn exp(self) -> Self {
        f64::exp(self)
    }

    fn ln(self) -> Self {
        f64::ln(self)
    }

    fn array(tensor: NdArrayTensor) -> SharedArray<f64> {
        match tensor {
            NdArrayTensor::F64(storage) => storage.into_shared(),
            NdArrayTensor::F32(storage) => storage.into_shared().mapv(|x| x.elem()).into_shared(),
            other => panic!(
                "the host kernels take float tensors, not {:?}",
                other.dtype()
            ),
        }
    }

    fn into_ndarray(values: Vec<f64>, shape: &[usize]) -> NdArrayTensor {
        ndarray::ArcArray::from_shape_vec(ndarray::IxDyn(shape), values)
            .expect("values match the shape")
            .into()
    }
}

/// `e^x` for f32 as `2^n · p(r)` with `x = n ln 2 + r` (the Cephes `expf` polynomial), accurate
/// to about an f32 ulp and, unlike `f32::exp`, vectorisable: the softmax of the readout takes
/// one per row and class.
#[allow(clippy::excessive_precision)] // the published coefficients, as printed
pub fn fast_exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        5.000_000_1e-1,
    ];
    let x = x.clamp(-87.3, 88.3); // e^x stays a normal f32
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = P[1..]
        .iter()
        .fold(P[0], |p, &coefficient| p * r + coefficient);
    let e_r = p * r * r + r + 1.0;
    e_r * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `tanh` for f32 as a rational function (the minimax approximation Eigen uses), accurate to a
/// few f32 ulps and, unlike `f32::tanh`, vectorisable: the states of a sequence are half a
/// million `tanh`s per forward pass.
#[allow(clippy::excessive_precision)] // the published coefficients, as printed
pub fn fast_tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_187_9e-13,
        -2.760_768_5e-16,
    ];
    const B: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347_1e-4, 1.198_258_4e-6];
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let p = x
        * (A[0] + x2 * (A[1] + x2 * (A[2] + x2 * (A[3] + x2 * (A[4] + x2 * (A[5] + x2 * A[6]))))));
    let q = B[0] + x2 * (B[1] + x2 * (B[2] + x2 * B[3]));
    if x.abs() < 4e-4 {
        x
    } else {
        p / q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gemm_prepared` with `B` and with `Bᵀ` prepared from `B` (strides swapped) equals
    /// `gemm` on the same operands, for f32 (packed where the CPU has the kernel) and f64.
    fn prepared_operand_equals_the_plain_product<F: HostFloat>(tolerance: f64) {
        let (m, k, n) = (7, 37, 21);
        let value = |i: usize| F::from_elem(((i * 7919 % 1013) as f64 / 1013.0) - 0.5);
        let a: Vec<F> = (0..m * k).map(value).collect();
        let b: Vec<F> = (0..k * n).map(|i| value(i + 5)).collect();
        let b_t: Vec<F> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        for accumulate in [false, true] {
            let start: Vec<F> = (0..m * n).map(|i| value(i + 9)).collect();
            let mut want = start.clone();
            let beta = if accumulate { F::ONE } else { F::default() };
            F::gemm(m, k, n, &a, k, 1, &b, n, 1, beta, &mut want, n);
            for prepared in [F::prepare(k, n, &b, n, 1), F::prepare(k, n, &b_t, 1, k)] {
                assert_eq!(prepared.dims(), (k, n));
                let mut got = start.clone();
                F::gemm_prepared(m, &a, k, 1, &prepared, accumulate, &mut got, n);
                for (g, w) in got.iter().zip(&want) {
                    let (g, w): (f64, f64) = (g.elem(), w.elem());
                    assert!((g - w).abs() <= tolerance, "{g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn prepared_operands_equal_the_plain_product() {
        prepared_operand_equals_the_plain_product::<f32>(1e-5);
        prepared_operand_equals_the_plain_product::<f64>(1e-12);
    }

    #[test]
    fn fast_exp_matches_std_exp_to_a_few_ulps() {
        let worst = (-87_000..=88_000)
            .map(|i| i as f32 * 1e-3)
            .chain([-1e-6, 0.0, 1e-6, -87.3, 88.3])
            .map(|x| ((fast_exp(x) - x.exp()) / x.exp()).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 5e-7, "max relative |fast_exp - exp| = {worst}");
        let mut values = vec![-3.0, -0.5, 0.0, 2.0];
        f32::exp_in_place(&mut values);
        let expected = [-3.0f32, -0.5, 0.0, 2.0].map(f32::exp);
        for (got, want) in values.iter().zip(expected) {
            assert!((got - want).abs() < 5e-7 * want, "{got} vs {want}");
        }
    }

    #[test]
    fn fast_tanh_matches_std_tanh_to_a_few_ulps() {
        let worst = (-100_000..=100_000)
            .map(|i| i as f32 * 1e-4)
            .chain([-30.0, -8.0, 8.0, 30.0, f32::MIN_POSITIVE, -1e-6])
            .map(|x| (fast_tanh(x) - x.tanh()).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 5e-7, "max |fast_tanh - tanh| = {worst}");
    }

    #[test]
    fn relu_loops_gate_by_the_sign_of_the_output() {
        let mut x = vec![-2.0f32, 0.0, 0.5, 3.0];
        f32::activate(&mut x, Nonlinearity::Relu);
        assert_eq!(x, [0.0, 0.0, 0.5, 3.0]);
        let mut g = vec![1.0f32; 4];
        f32::activation_grad(&mut g, &x, Nonlinearity::Relu);
        assert_eq!(g, [0.0, 0.0, 1.0, 1.0]);
        let mut da = vec![1.0f64, 2.0, 3.0, 4.0];
        let h = [0.0, -1.0, 0.2, 5.0];
        f64::activation_backward(&mut da, &[0.5; 4], &h, Nonlinearity::Relu);
        assert_eq!(da, [0.0, 0.0, 3.5, 4.5]);
    }
}
