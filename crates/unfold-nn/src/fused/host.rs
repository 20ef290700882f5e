//! The fused recurrence on host memory, for the ndarray backend: direct GEMM calls
//! (`matrixmultiply`, the GEMM burn-ndarray itself uses) on contiguous `[batch, time, hidden]`
//! buffers, written in place with strides, so a step allocates nothing.
//!
//! Hand-written rather than composed from ndarray operations because the step is a strided
//! `C ← A·B + C` into a slice of the state buffer, which ndarray's API would copy around.

use std::any::{Any, TypeId};
use std::ops::Range;

use burn::backend::ndarray::NdArrayTensor;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Element, Int, Tensor, TensorData, TensorPrimitive};

use super::{parallel, sgemm, RecurrenceGrads};
use crate::recurrence::Steps;

/// The float types the host kernel runs in.
pub trait HostFloat:
    Element
    + Copy
    + Default
    + std::ops::Add<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Div<Output = Self>
    + PartialOrd
{
    /// One.
    const ONE: Self;
    /// `C ← A·B + beta·C` for row-major strided matrices (`m×k` times `k×n`).
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
    /// `tanh`.
    fn tanh(self) -> Self;
    /// `x ← tanh(x)` for every element.
    fn tanh_in_place(x: &mut [Self]) {
        x.iter_mut().for_each(|v| *v = v.tanh());
    }
    /// `x ← e^x` for every element.
    fn exp_in_place(x: &mut [Self]) {
        x.iter_mut().for_each(|v| *v = v.exp());
    }
    /// `g ← (1 - y²) ⊙ g` for every element: tanh's backward step from its output `y`.
    fn tanh_grad(g: &mut [Self], y: &[Self]) {
        tanh_grad_scalar(g, y);
    }
    /// `δa ← (1 - h²) ⊙ (δa + carry)` for every element: tanh's backward step, with `δa`
    /// holding `∂L/∂h(t)` on entry.
    fn tanh_backward(da: &mut [Self], carry: &[Self], h: &[Self]) {
        tanh_backward_scalar(da, carry, h);
    }
    /// `e^x`.
    fn exp(self) -> Self;
    /// `ln x`.
    fn ln(self) -> Self;
    /// The array inside an ndarray tensor of this float type (shared, not copied), or the
    /// tensor back.
    fn ndarray_array(
        tensor: NdArrayTensor,
    ) -> Result<ndarray::ArcArray<Self, ndarray::IxDyn>, NdArrayTensor>;
    /// An ndarray tensor holding `values` (row-major) with `shape`.
    fn into_ndarray(values: Vec<Self>, shape: &[usize]) -> NdArrayTensor;
}

/// `array`'s elements in row-major order: the buffer itself when `array` owns it alone and
/// holds exactly those elements in order, else a copy.
fn into_vec<F: Copy>(array: ndarray::ArcArray<F, ndarray::IxDyn>) -> Vec<F> {
    if !array.is_standard_layout() {
        return array.iter().copied().collect();
    }
    let len = array.len();
    match array.try_into_owned_nocopy() {
        Ok(owned) => {
            let (mut values, offset) = owned.into_raw_vec_and_offset();
            let offset = offset.unwrap_or(0);
            if offset != 0 || values.len() != len {
                values.drain(..offset);
                values.truncate(len);
            }
            values
        }
        Err(shared) => shared.as_slice().expect("standard layout").to_vec(),
    }
}

fn tanh_grad_scalar<F: HostFloat>(g: &mut [F], y: &[F]) {
    for (g, &y) in g.iter_mut().zip(y) {
        *g = (F::ONE - y * y) * *g;
    }
}

fn tanh_backward_scalar<F: HostFloat>(da: &mut [F], carry: &[F], h: &[F]) {
    for ((d, &c), &h) in da.iter_mut().zip(carry).zip(h) {
        *d = (F::ONE - h * h) * (*d + c);
    }
}

/// Checks that a strided `rows×cols` matrix fits in `len` elements, so the unsafe GEMM call
/// below never reads or writes outside its slice.
fn fits(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * row_stride + (cols - 1) * col_stride < len
}

macro_rules! host_float {
    ($float:ty, $variant:ident, $gemm:path, $tanh:expr, $fast:ident) => {
        impl HostFloat for $float {
            const ONE: Self = 1.0;
            fn ndarray_array(
                tensor: NdArrayTensor,
            ) -> Result<ndarray::ArcArray<Self, ndarray::IxDyn>, NdArrayTensor> {
                match tensor {
                    NdArrayTensor::$variant(storage) => Ok(storage.into_owned()),
                    other => Err(other),
                }
            }
            fn into_ndarray(values: Vec<Self>, shape: &[usize]) -> NdArrayTensor {
                ndarray::ArcArray::from_shape_vec(ndarray::IxDyn(shape), values)
                    .expect("values match the shape")
                    .into()
            }
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
            ) {
                if $fast::gemm(m, k, n, a, rsa, csa, b, rsb, csb, beta, c, rsc) {
                    return;
                }
                assert!(
                    fits(a.len(), m, k, rsa, csa)
                        && fits(b.len(), k, n, rsb, csb)
                        && fits(c.len(), m, n, rsc, 1),
                    "GEMM operands out of bounds"
                );
                // SAFETY: the bounds of all three strided matrices were checked just above, and
                // `c` is borrowed mutably, so it does not alias `a` or `b`.
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
                        beta,
                        c.as_mut_ptr(),
                        rsc as isize,
                        1,
                    );
                }
            }
            fn tanh(self) -> Self {
                $tanh(self)
            }
            fn tanh_in_place(x: &mut [Self]) {
                $fast::tanh_in_place(x)
            }
            fn tanh_backward(da: &mut [Self], carry: &[Self], h: &[Self]) {
                $fast::tanh_backward(da, carry, h)
            }
            fn exp_in_place(x: &mut [Self]) {
                $fast::exp_in_place(x)
            }
            fn tanh_grad(g: &mut [Self], y: &[Self]) {
                $fast::tanh_grad(g, y)
            }
            fn exp(self) -> Self {
                <$float>::exp(self)
            }
            fn ln(self) -> Self {
                <$float>::ln(self)
            }
        }
    };
}

host_float!(f32, F32, matrixmultiply::sgemm, fast_tanh, avx512);
host_float!(f64, F64, matrixmultiply::dgemm, f64::tanh, portable);

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

/// The f32 kernels on AVX-512 (see [`sgemm`]) where the CPU has it, else the portable ones.
mod avx512 {
    use super::{fast_exp, fast_tanh, sgemm, tanh_backward_scalar, tanh_grad_scalar};

    /// [`sgemm::sgemm`] when it applies (AVX-512, `B` with unit column stride, `beta` 0 or 1);
    /// false when the caller must run the portable GEMM.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
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
    ) -> bool {
        let applies = sgemm::available() && (csb == 1 || n == 1) && (beta == 0.0 || beta == 1.0);
        if applies {
            sgemm::sgemm(m, k, n, a, rsa, csa, b, rsb, beta == 1.0, c, rsc);
        }
        applies
    }

    pub fn tanh_in_place(x: &mut [f32]) {
        if sgemm::available() {
            // SAFETY: the CPU has avx512f (checked just above).
            unsafe { tanh_in_place_avx512(x) }
        } else {
            x.iter_mut().for_each(|v| *v = fast_tanh(*v));
        }
    }

    pub fn tanh_backward(da: &mut [f32], carry: &[f32], h: &[f32]) {
        if sgemm::available() {
            // SAFETY: the CPU has avx512f (checked just above).
            unsafe { tanh_backward_avx512(da, carry, h) }
        } else {
            tanh_backward_scalar(da, carry, h);
        }
    }

    pub fn exp_in_place(x: &mut [f32]) {
        if sgemm::available() {
            // SAFETY: the CPU has avx512f (checked just above).
            unsafe { exp_in_place_avx512(x) }
        } else {
            x.iter_mut().for_each(|v| *v = fast_exp(*v));
        }
    }

    pub fn tanh_grad(g: &mut [f32], y: &[f32]) {
        if sgemm::available() {
            // SAFETY: the CPU has avx512f (checked just above).
            unsafe { tanh_grad_avx512(g, y) }
        } else {
            tanh_grad_scalar(g, y);
        }
    }

    // The same loops, compiled for AVX-512 so that they vectorise 16 wide (the crate itself is
    // built for baseline x86-64, SSE2).
    #[target_feature(enable = "avx512f")]
    unsafe fn tanh_in_place_avx512(x: &mut [f32]) {
        x.iter_mut().for_each(|v| *v = fast_tanh(*v));
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn tanh_grad_avx512(g: &mut [f32], y: &[f32]) {
        tanh_grad_scalar(g, y);
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn exp_in_place_avx512(x: &mut [f32]) {
        x.iter_mut().for_each(|v| *v = fast_exp(*v));
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn tanh_backward_avx512(da: &mut [f32], carry: &[f32], h: &[f32]) {
        tanh_backward_scalar(da, carry, h);
    }
}

/// The f64 kernels: no fast path (f64 serves the gradient checks, not training speed).
mod portable {
    use super::{tanh_backward_scalar, tanh_grad_scalar, HostFloat};

    #[allow(clippy::too_many_arguments)]
    pub fn gemm<F>(
        _: usize,
        _: usize,
        _: usize,
        _: &[F],
        _: usize,
        _: usize,
        _: &[F],
        _: usize,
        _: usize,
        _: F,
        _: &mut [F],
        _: usize,
    ) -> bool {
        false
    }

    pub fn tanh_in_place<F: HostFloat>(x: &mut [F]) {
        x.iter_mut().for_each(|v| *v = v.tanh());
    }

    pub fn tanh_backward<F: HostFloat>(da: &mut [F], carry: &[F], h: &[F]) {
        tanh_backward_scalar(da, carry, h);
    }

    pub fn exp_in_place<F: HostFloat>(x: &mut [F]) {
        x.iter_mut().for_each(|v| *v = v.exp());
    }

    pub fn tanh_grad<F: HostFloat>(g: &mut [F], y: &[F]) {
        tanh_grad_scalar(g, y);
    }
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

/// Moves a tensor's values to a host `Vec`.
///
/// For ndarray tensors this reads the buffer directly: no copy when the tensor is the buffer's
/// only owner, one `memcpy` when it is shared (a parameter, a saved state). Burn's `into_data`
/// would, for a shared buffer, collect it element by element through a dynamic-rank iterator,
/// which measured 68% of a training step's time.
pub(super) fn to_host<B: Backend, F: HostFloat, const D: usize>(
    primitive: FloatTensor<B>,
) -> (Vec<F>, [usize; D], B::Device) {
    let device = B::float_device(&primitive);
    let primitive = match ndarray_array::<B, F>(primitive) {
        Ok(array) => {
            let dims = array.shape().try_into().expect("the tensor's rank");
            return (into_vec(array), dims, device);
        }
        Err(primitive) => primitive,
    };
    let tensor = Tensor::<B, D>::from_primitive(TensorPrimitive::Float(primitive));
    let dims = tensor.dims();
    let values = tensor
        .into_data()
        .convert::<F>()
        .into_vec::<F>()
        .expect("converted to the host float type");
    (values, dims, device)
}

/// The ndarray array inside `primitive` when `B` is ndarray and the tensor holds `F`s (a shared
/// reference: nothing copied), else the tensor back.
fn ndarray_array<B: Backend, F: HostFloat>(
    primitive: FloatTensor<B>,
) -> Result<ndarray::ArcArray<F, ndarray::IxDyn>, FloatTensor<B>> {
    let back = |tensor: Box<dyn Any>| {
        *tensor
            .downcast::<FloatTensor<B>>()
            .expect("came from this type")
    };
    let boxed: Box<dyn Any> = Box::new(primitive);
    match boxed.downcast::<NdArrayTensor>() {
        Ok(tensor) => F::ndarray_array(*tensor).map_err(|tensor| back(Box::new(tensor))),
        Err(other) => Err(back(other)),
    }
}

/// A read-only host view of a tensor's values, row-major.
pub(super) enum HostRead<F> {
    /// The ndarray buffer itself (a shared reference to it: nothing copied).
    Shared(ndarray::ArcArray<F, ndarray::IxDyn>),
    /// A copy, for other backends and other layouts.
    Copied(Vec<F>),
}

impl<F> std::ops::Deref for HostRead<F> {
    type Target = [F];

    fn deref(&self) -> &[F] {
        match self {
            HostRead::Shared(array) => array.as_slice().expect("checked: standard layout"),
            HostRead::Copied(values) => values,
        }
    }
}

/// A tensor's values to read: for ndarray the buffer itself, without the copy [`to_host`] makes
/// of a buffer that is shared (a parameter, the states saved for the backward pass).
pub(super) fn read_host<B: Backend, F: HostFloat, const D: usize>(
    primitive: FloatTensor<B>,
) -> (HostRead<F>, [usize; D]) {
    let primitive = match ndarray_array::<B, F>(primitive) {
        Ok(array) => {
            let dims = array.shape().try_into().expect("the tensor's rank");
            if array.as_slice().is_some() {
                return (HostRead::Shared(array), dims);
            }
            return (HostRead::Copied(into_vec(array)), dims);
        }
        Err(primitive) => primitive,
    };
    let (values, dims, _) = to_host::<B, F, D>(primitive);
    (HostRead::Copied(values), dims)
}

/// `into += from`, elementwise: one core's partial sum (of `∂W`, `∂U`, …) added to the total.
pub(super) fn add_into<F: HostFloat>(into: &mut [F], from: &[F]) {
    into.iter_mut().zip(from).for_each(|(d, &x)| *d = *d + x);
}

/// The transpose `[cols, rows]` of the row-major `[rows, cols]` matrix `values`, made once per
/// pass so that the many products with `Wᵀ` (or `Vᵀ`) read contiguous rows.
pub(super) fn transposed<F: HostFloat>(values: &[F], cols: usize) -> Vec<F> {
    let rows = values.len().checked_div(cols).unwrap_or(0);
    let mut t = vec![F::default(); values.len()];
    for (i, row) in values.chunks_exact(cols.max(1)).enumerate() {
        for (j, &value) in row.iter().enumerate() {
            t[j * rows + i] = value;
        }
    }
    t
}

/// A host `Vec` as a tensor of backend `B`, in float type `F` (for ndarray without a copy).
pub(super) fn to_backend<B: Backend, F: HostFloat, const D: usize>(
    values: Vec<F>,
    dims: [usize; D],
    device: &B::Device,
) -> FloatTensor<B> {
    if TypeId::of::<FloatTensor<B>>() == TypeId::of::<NdArrayTensor>() {
        let tensor: Box<dyn Any> = Box::new(F::into_ndarray(values, &dims));
        return *tensor
            .downcast::<FloatTensor<B>>()
            .expect("checked the type");
    }
    // An explicit dtype: plain `from_data` would convert to the device's default float type.
    Tensor::<B, D>::from_data(TensorData::new(values, dims), (device, F::dtype()))
        .into_primitive()
        .tensor()
}

/// The forward pass in the tensors' float type (f32 or f64; others take the generic path).
pub fn forward<B: Backend>(
    drive: FloatTensor<B>,
    w: FloatTensor<B>,
    h0: FloatTensor<B>,
    steps: &Steps,
) -> FloatTensor<B> {
    match dtype::<B>(&drive) {
        DType::F32 => forward_in::<B, f32>(drive, w, h0, steps),
        DType::F64 => forward_in::<B, f64>(drive, w, h0, steps),
        _ => super::generic::forward::<B>(drive, w, h0, steps),
    }
}

/// The backward pass in the tensors' float type (f32 or f64; others take the generic path).
pub fn backward<B: Backend>(
    grad: FloatTensor<B>,
    states: FloatTensor<B>,
    w: FloatTensor<B>,
    h0: FloatTensor<B>,
    steps: &Steps,
) -> RecurrenceGrads<B> {
    match dtype::<B>(&states) {
        DType::F32 => backward_in::<B, f32>(grad, states, w, h0, steps),
        DType::F64 => backward_in::<B, f64>(grad, states, w, h0, steps),
        _ => super::generic::backward::<B>(grad, states, w, h0, steps),
    }
}

pub(super) fn dtype<B: Backend>(tensor: &FloatTensor<B>) -> DType {
    burn::tensor::TensorMetadata::dtype(tensor)
}

/// `U[ids] + b` for every token (see [`super::embedding`]), rows split across cores.
pub fn embedding_forward<B: Backend>(
    u: FloatTensor<B>,
    b: FloatTensor<B>,
    ids: IntTensor<B>,
) -> FloatTensor<B> {
    match dtype::<B>(&u) {
        DType::F32 => embedding_forward_in::<B, f32>(u, b, ids),
        DType::F64 => embedding_forward_in::<B, f64>(u, b, ids),
        _ => super::embedding::generic::forward::<B>(u, b, ids),
    }
}

/// `(∂U, ∂b)` of the token input, rows split across cores (each part scatter-adds into its
/// own `∂U`; the parts are summed).
pub fn embedding_backward<B: Backend>(
    grad: FloatTensor<B>,
    ids: IntTensor<B>,
    vocab: usize,
) -> (FloatTensor<B>, FloatTensor<B>) {
    match dtype::<B>(&grad) {
        DType::F32 => embedding_backward_in::<B, f32>(grad, ids, vocab),
        DType::F64 => embedding_backward_in::<B, f64>(grad, ids, vocab),
        _ => super::embedding::generic::backward::<B>(grad, ids, vocab),
    }
}

/// Token ids `[batch, time]` as host indices, row-major.
fn host_ids<B: Backend>(ids: IntTensor<B>) -> Vec<usize> {
    Tensor::<B, 2, Int>::from_primitive(ids)
        .into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .expect("converted to i64")
        .into_iter()
        .map(|id| usize::try_from(id).expect("token ids are checked before the kernel"))
        .collect()
}

fn embedding_forward_in<B: Backend, F: HostFloat>(
    u: FloatTensor<B>,
    b: FloatTensor<B>,
    ids: IntTensor<B>,
) -> FloatTensor<B> {
    let device = B::float_device(&u);
    let (u, [_, hidden]) = read_host::<B, F, 2>(u);
    let (b, _) = read_host::<B, F, 1>(b);
    let [batch, time] = burn::tensor::TensorMetadata::shape(&ids).dims::<2>();
    let ids = host_ids::<B>(ids);
    let mut drive = vec![F::default(); ids.len() * hidden];
    let parts = parallel::parts(ids.len(), hidden);
    let work: Vec<_> = parallel::chunks_mut(&mut drive, &parts, hidden)
        .into_iter()
        .zip(&parts)
        .collect();
    parallel::run(work, |(drive, part)| {
        for (row, &id) in drive.chunks_exact_mut(hidden).zip(&ids[part.clone()]) {
            let u_row = &u[id * hidden..(id + 1) * hidden];
            row.iter_mut()
                .zip(u_row.iter().zip(b.iter()))
                .for_each(|(d, (&u, &b))| *d = u + b);
        }
    });
    to_backend::<B, F, 3>(drive, [batch, time, hidden], &device)
}

fn embedding_backward_in<B: Backend, F: HostFloat>(
    grad: FloatTensor<B>,
    ids: IntTensor<B>,
    vocab: usize,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let device = B::float_device(&grad);
    let (grad, [_, _, hidden]) = read_host::<B, F, 3>(grad);
    let ids = host_ids::<B>(ids);
    let parts = parallel::parts(ids.len(), hidden);
    let sums = parallel::run(parts, |part| {
        let (mut d_u, mut d_b) = (
            vec![F::default(); vocab * hidden],
            vec![F::default(); hidden],
        );
        let rows = grad[part.start * hidden..part.end * hidden].chunks_exact(hidden);
        for (row, &id) in rows.zip(&ids[part]) {
            let d_u_row = &mut d_u[id * hidden..(id + 1) * hidden];
            for ((du, db), &g) in d_u_row.iter_mut().zip(d_b.iter_mut()).zip(row) {
                *du = *du + g;
                *db = *db + g;
            }
        }
        (d_u, d_b)
    });
    let mut sums = sums.into_iter();
    let (mut d_u, mut d_b) = sums.next().expect("at least one part");
    for (part_u, part_b) in sums {
        add_into(&mut d_u, &part_u);
        add_into(&mut d_b, &part_b);
    }
    (
        to_backend::<B, F, 2>(d_u, [vocab, hidden], &device),
        to_backend::<B, F, 1>(d_b, [hidden], &device),
    )
}

/// The elementwise `tanh` of a rank-1 tensor (see [`super::tanh`]), split across cores.
pub fn tanh_forward<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    match dtype::<B>(&x) {
        DType::F32 => tanh_forward_in::<B, f32>(x),
        DType::F64 => tanh_forward_in::<B, f64>(x),
        _ => B::float_tanh(x),
    }
}

/// `(1 − y²) ⊙ grad` for rank-1 tensors, split across cores.
pub fn tanh_backward<B: Backend>(y: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    match dtype::<B>(&y) {
        DType::F32 => tanh_backward_in::<B, f32>(y, grad),
        DType::F64 => tanh_backward_in::<B, f64>(y, grad),
        _ => super::tanh::generic_backward::<B>(y, grad),
    }
}

/// Elements per part when an elementwise pass is split across cores.
const ELEMENTWISE_WORK: usize = 64;

fn tanh_forward_in<B: Backend, F: HostFloat>(x: FloatTensor<B>) -> FloatTensor<B> {
    let (mut values, dims, device) = to_host::<B, F, 1>(x);
    let parts = parallel::parts(values.len(), ELEMENTWISE_WORK);
    parallel::run(
        parallel::chunks_mut(&mut values, &parts, 1),
        F::tanh_in_place,
    );
    to_backend::<B, F, 1>(values, dims, &device)
}

fn tanh_backward_in<B: Backend, F: HostFloat>(
    y: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let (mut grad, dims, device) = to_host::<B, F, 1>(grad);
    let (y, _) = read_host::<B, F, 1>(y);
    let parts = parallel::parts(grad.len(), ELEMENTWISE_WORK);
    let work: Vec<_> = parallel::chunks_mut(&mut grad, &parts, 1)
        .into_iter()
        .zip(&parts)
        .collect();
    parallel::run(work, |(grad, part)| F::tanh_grad(grad, &y[part.clone()]));
    to_backend::<B, F, 1>(grad, dims, &device)
}

/// The forward loop: `h(t) = tanh(drive(t) + h(t-1) W)`, one `[rows, hidden]` GEMM per step,
/// the batch's rows split across cores ([`parallel`]).
fn forward_in<B: Backend, F: HostFloat>(
    drive: FloatTensor<B>,
    w: FloatTensor<B>,
    h0: FloatTensor<B>,
    steps: &Steps,
) -> FloatTensor<B> {
    let (mut states, dims, device) = to_host::<B, F, 3>(drive); // the drive is overwritten in place
    let (w, _) = read_host::<B, F, 2>(w);
    let (h0, _) = read_host::<B, F, 2>(h0);
    let [batch, time, hidden] = dims;
    let parts = parallel::parts(batch, time * hidden * hidden);
    forward_parts(&mut states, &h0, &w, steps, &parts);
    to_backend::<B, F, 3>(states, dims, &device)
}

/// The forward loop, each of `parts` (ranges of batch rows) on its own thread.
fn forward_parts<F: HostFloat>(
    states: &mut [F],
    h0: &[F],
    w: &[F],
    steps: &Steps,
    parts: &[Range<usize>],
) {
    let hidden = w.len().isqrt();
    let chunks = parallel::chunks_mut(states, parts, steps.time * hidden);
    let rows: Vec<_> = parts.iter().cloned().zip(chunks).collect();
    parallel::run(rows, |(rows, states)| {
        let h0 = &h0[rows.start * hidden..rows.end * hidden];
        forward_rows(states, h0, w, rows.start, steps);
    });
}

/// The forward loop over rows `first_row..` of the batch: `states` is their `[rows, time,
/// hidden]` drive, overwritten with the states.
fn forward_rows<F: HostFloat>(
    states: &mut [F],
    h0: &[F],
    w: &[F],
    first_row: usize,
    steps: &Steps,
) {
    let hidden = w.len().isqrt(); // W is [hidden, hidden]
    let rows = h0.len().checked_div(hidden).unwrap_or(0);
    let row = steps.time * hidden; // stride between sequences in the [rows, time, hidden] buffer
    let mut prev = h0.to_vec(); // h(t-1), [rows, hidden]
    for t in steps.order() {
        let at = t * hidden;
        // h(t) ← drive(t) + h(t-1) W, in place over the drive.
        F::gemm(
            rows,
            hidden,
            hidden,
            &prev,
            hidden,
            1,
            w,
            hidden,
            1,
            F::ONE,
            &mut states[at..],
            row,
        );
        for (b, prev_b) in prev.chunks_exact_mut(hidden).enumerate() {
            let h_b = &mut states[b * row + at..b * row + at + hidden];
            if steps.is_valid(first_row + b, t) {
                F::tanh_in_place(h_b);
                prev_b.copy_from_slice(h_b);
            } else {
                h_b.copy_from_slice(prev_b); // past its end the row holds its state
            }
        }
    }
}

/// BPTT: `δa(t) = (1 - h(t)²) ⊙ (∂L/∂h(t) + δa(t+1) Wᵀ)`, then `∂W = Σ_t h(t-1)ᵀ δa(t)`; the
/// batch's rows split across cores, each group adding its own part of `∂W`.
fn backward_in<B: Backend, F: HostFloat>(
    grad: FloatTensor<B>,
    states: FloatTensor<B>,
    w: FloatTensor<B>,
    h0: FloatTensor<B>,
    steps: &Steps,
) -> RecurrenceGrads<B> {
    let (mut da, dims, device) = to_host::<B, F, 3>(grad); // ∂L/∂h is overwritten with δa in place
    let (states, _) = read_host::<B, F, 3>(states);
    let (w, _) = read_host::<B, F, 2>(w);
    let (h0, _) = read_host::<B, F, 2>(h0);
    let [batch, time, hidden] = dims;
    let parts = parallel::parts(batch, 2 * time * hidden * hidden);
    let (d_w, d_h0) = backward_parts(&mut da, &states, &h0, &w, steps, &parts);
    RecurrenceGrads {
        drive: to_backend::<B, F, 3>(da, dims, &device),
        w: to_backend::<B, F, 2>(d_w, [hidden, hidden], &device),
        h0: to_backend::<B, F, 2>(d_h0, [batch, hidden], &device),
    }
}

/// BPTT, each of `parts` (ranges of batch rows) on its own thread: overwrites `da` (`∂L/∂h` on
/// entry) with `δa` and returns `(∂W, ∂h(0))`.
fn backward_parts<F: HostFloat>(
    da: &mut [F],
    states: &[F],
    h0: &[F],
    w: &[F],
    steps: &Steps,
    parts: &[Range<usize>],
) -> (Vec<F>, Vec<F>) {
    let hidden = w.len().isqrt();
    let w_t = transposed(w, hidden);
    let row = steps.time * hidden;
    let chunks = parallel::chunks_mut(da, parts, row);
    let rows: Vec<_> = parts.iter().cloned().zip(chunks).collect();
    let results = parallel::run(rows, |(rows, da)| {
        let states = &states[rows.start * row..rows.end * row];
        let h0 = &h0[rows.start * hidden..rows.end * hidden];
        backward_rows(da, states, h0, &w_t, rows.start, steps)
    });

    let mut d_h0 = Vec::with_capacity(h0.len());
    let mut d_w = vec![F::default(); hidden * hidden];
    for (carry, part_d_w) in results {
        d_h0.extend_from_slice(&carry);
        add_into(&mut d_w, &part_d_w);
    }
    (d_w, d_h0)
}

/// BPTT over rows `first_row..` of the batch: `da` holds their `∂L/∂h` and is overwritten with
/// `δa`. Returns their `∂h(0)` and their part of `∂W`.
fn backward_rows<F: HostFloat>(
    da: &mut [F],
    states: &[F],
    h0: &[F],
    w_t: &[F],
    first_row: usize,
    steps: &Steps,
) -> (Vec<F>, Vec<F>) {
    let hidden = w_t.len().isqrt(); // Wᵀ is [hidden, hidden]
    let rows = h0.len().checked_div(hidden).unwrap_or(0);
    let row = steps.time * hidden;
    let order = steps.order();
    let mut carry = vec![F::default(); rows * hidden]; // δa(t+1) Wᵀ: the δh from later steps
    let mut next = vec![F::default(); rows * hidden];
    for &t in order.iter().rev() {
        let at = t * hidden;
        for (b, carry_b) in carry.chunks_exact_mut(hidden).enumerate() {
            let da_b = &mut da[b * row + at..b * row + at + hidden];
            if steps.is_valid(first_row + b, t) {
                F::tanh_backward(da_b, carry_b, &states[b * row + at..b * row + at + hidden]);
            } else {
                // A held row has no δa and passes δh on to h(t-1).
                carry_b.iter_mut().zip(da_b.iter_mut()).for_each(|(c, d)| {
                    *c = *c + *d;
                    *d = F::default();
                });
            }
        }
        // next ← δa(t) Wᵀ; held rows keep their δh.
        F::gemm(
            rows,
            hidden,
            hidden,
            &da[at..],
            row,
            1,
            w_t,
            hidden,
            1,
            F::default(),
            &mut next,
            hidden,
        );
        for b in (0..rows).filter(|&b| !steps.is_valid(first_row + b, t)) {
            next[b * hidden..(b + 1) * hidden]
                .copy_from_slice(&carry[b * hidden..(b + 1) * hidden]);
        }
        std::mem::swap(&mut carry, &mut next);
    }

    // ∂W = Σ_t h(t-1)ᵀ δa(t), h(t-1) being the state one step earlier in processing order.
    // In the [rows·time, hidden] buffers that is the row just before (just after, reversed),
    // except at each sequence's first step, where it is h(0). So: one product of δa with the
    // states shifted by a row, then a rank-`rows` correction that swaps in h(0) at the first
    // steps — rather than copying the states into a shifted buffer (a memset and a memcpy of
    // the whole [rows, time, hidden] block per pass).
    let tokens = rows * steps.time;
    let (first_step, states_from, da_from) = if steps.reverse {
        (steps.time - 1, 1, 0)
    } else {
        (0, 0, 1)
    };
    let mut d_w = vec![F::default(); hidden * hidden];
    if tokens > 1 {
        F::gemm(
            hidden,
            tokens - 1,
            hidden,
            &states[states_from * hidden..],
            1,
            hidden,
            &da[da_from * hidden..],
            hidden,
            1,
            F::default(),
            &mut d_w,
            hidden,
        );
    }
    // fix(b) = h(0)(b) − the row the shifted product paired with δa(b, first step) (none for
    // the first row forward, the last row reversed).
    let mut fix = h0.to_vec();
    for (b, fix_b) in fix.chunks_exact_mut(hidden).enumerate() {
        let paired = match steps.reverse {
            false => b
                .checked_sub(1)
                .map(|p| (p * row) + (steps.time - 1) * hidden),
            true => (b + 1 < rows).then(|| (b + 1) * row),
        };
        if let Some(at) = paired {
            let paired = &states[at..at + hidden];
            fix_b.iter_mut().zip(paired).for_each(|(f, &p)| *f = *f - p);
        }
    }
    F::gemm(
        hidden,
        rows,
        hidden,
        &fix,
        1,
        hidden,
        &da[first_step * hidden..],
        row,
        1,
        F::ONE,
        &mut d_w,
        hidden,
    );
    (carry, d_w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of 7 rows with lengths 1..=7 (some held past their end), `[7, 9, 16]`.
    fn problem(reverse: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Steps) {
        let (batch, time, hidden) = (7, 9, 16);
        let value = |i: usize, scale: f32| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * scale;
        let drive = (0..batch * time * hidden).map(|i| value(i, 2.0)).collect();
        let grad = (0..batch * time * hidden)
            .map(|i| value(i + 3, 1.0))
            .collect();
        let w = (0..hidden * hidden).map(|i| value(i + 1, 0.5)).collect();
        let h0 = (0..batch * hidden).map(|i| value(i + 2, 1.0)).collect();
        let lengths = Some((0..batch).map(|b| b % time + 1).collect());
        let steps = Steps {
            time,
            reverse,
            lengths,
        };
        (drive, grad, w, h0, steps)
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one part holding every row, on purpose
    fn rows_split_across_threads_give_the_single_thread_result() {
        for reverse in [false, true] {
            let (drive, grad, w, h0, steps) = problem(reverse);
            let (one, split) = ([0..7], [0..2, 2..3, 3..7]);

            let (mut states_one, mut states_split) = (drive.clone(), drive);
            forward_parts(&mut states_one, &h0, &w, &steps, &one);
            forward_parts(&mut states_split, &h0, &w, &steps, &split);
            assert_eq!(
                states_one, states_split,
                "rows are independent: identical states"
            );

            let (mut da_one, mut da_split) = (grad.clone(), grad);
            let (d_w_one, d_h0_one) =
                backward_parts(&mut da_one, &states_one, &h0, &w, &steps, &one);
            let (d_w_split, d_h0_split) =
                backward_parts(&mut da_split, &states_one, &h0, &w, &steps, &split);
            assert_eq!(da_one, da_split);
            assert_eq!(d_h0_one, d_h0_split);
            // ∂W adds the parts' sums: equal up to the order of the additions.
            for (a, b) in d_w_one.iter().zip(&d_w_split) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "∂W {a} vs {b}");
            }
        }
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
}
