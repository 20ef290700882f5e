//! The fused recurrence on host memory, for the ndarray backend: direct GEMM calls
//! (`matrixmultiply`, the GEMM burn-ndarray itself uses) on contiguous `[batch, time, hidden]`
//! buffers, written in place with strides, so a step allocates nothing.
//!
//! Hand-written rather than composed from ndarray operations because the step is a strided
//! `C ← A·B + C` into a slice of the state buffer, which ndarray's API would copy around.

use std::any::{Any, TypeId};

use burn::backend::ndarray::NdArrayTensor;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Element, Tensor, TensorData, TensorPrimitive};

use super::RecurrenceGrads;
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
    /// `e^x`.
    fn exp(self) -> Self;
    /// `ln x`.
    fn ln(self) -> Self;
    /// The values and shape of an ndarray tensor of this float type, or the tensor back.
    fn from_ndarray(tensor: NdArrayTensor) -> Result<(Vec<Self>, Vec<usize>), NdArrayTensor>;
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

/// Checks that a strided `rows×cols` matrix fits in `len` elements, so the unsafe GEMM call
/// below never reads or writes outside its slice.
fn fits(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * row_stride + (cols - 1) * col_stride < len
}

macro_rules! host_float {
    ($float:ty, $variant:ident, $gemm:path, $tanh:expr) => {
        impl HostFloat for $float {
            const ONE: Self = 1.0;
            fn from_ndarray(
                tensor: NdArrayTensor,
            ) -> Result<(Vec<Self>, Vec<usize>), NdArrayTensor> {
                match tensor {
                    NdArrayTensor::$variant(storage) => {
                        let array = storage.into_owned();
                        let shape = array.shape().to_vec();
                        Ok((into_vec(array), shape))
                    }
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
            fn exp(self) -> Self {
                <$float>::exp(self)
            }
            fn ln(self) -> Self {
                <$float>::ln(self)
            }
        }
    };
}

host_float!(f32, F32, matrixmultiply::sgemm, fast_tanh);
host_float!(f64, F64, matrixmultiply::dgemm, f64::tanh);

/// `tanh` for f32 as a rational function (the minimax approximation Eigen uses), accurate to a
/// few f32 ulps and, unlike `f32::tanh`, vectorisable: the states of a sequence are half a
/// million `tanh`s per forward pass.
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
    let boxed: Box<dyn Any> = Box::new(primitive);
    let primitive = match boxed.downcast::<NdArrayTensor>() {
        Ok(tensor) => match F::from_ndarray(*tensor) {
            Ok((values, shape)) => {
                let dims = shape.try_into().expect("the tensor's rank");
                return (values, dims, device);
            }
            Err(tensor) => *(Box::new(tensor) as Box<dyn Any>)
                .downcast::<FloatTensor<B>>()
                .expect("came from this type"),
        },
        Err(other) => *other
            .downcast::<FloatTensor<B>>()
            .expect("came from this type"),
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

/// The forward loop: `h(t) = tanh(drive(t) + h(t-1) W)`, one `[batch, hidden]` GEMM per step.
fn forward_in<B: Backend, F: HostFloat>(
    drive: FloatTensor<B>,
    w: FloatTensor<B>,
    h0: FloatTensor<B>,
    steps: &Steps,
) -> FloatTensor<B> {
    let (mut states, dims, device) = to_host::<B, F, 3>(drive); // the drive is overwritten in place
    let (w, _, _) = to_host::<B, F, 2>(w);
    let (mut prev, _, _) = to_host::<B, F, 2>(h0); // h(t-1), [batch, hidden]
    let [batch, time, hidden] = dims;
    let row = time * hidden; // stride between sequences in the [batch, time, hidden] buffer
    let mut h = vec![F::default(); batch * hidden];

    for t in steps.order() {
        for b in 0..batch {
            h[b * hidden..(b + 1) * hidden]
                .copy_from_slice(&states[b * row + t * hidden..b * row + (t + 1) * hidden]);
        }
        F::gemm(
            batch,
            hidden,
            hidden,
            &prev,
            hidden,
            1,
            &w,
            hidden,
            1,
            F::ONE,
            &mut h,
            hidden,
        );
        for b in 0..batch {
            let (h_b, prev_b) = (
                &mut h[b * hidden..(b + 1) * hidden],
                &prev[b * hidden..(b + 1) * hidden],
            );
            if steps.is_valid(b, t) {
                h_b.iter_mut().for_each(|v| *v = v.tanh());
            } else {
                h_b.copy_from_slice(prev_b); // past its end the row holds its state
            }
            states[b * row + t * hidden..b * row + (t + 1) * hidden].copy_from_slice(h_b);
        }
        std::mem::swap(&mut prev, &mut h);
    }
    to_backend::<B, F, 3>(states, dims, &device)
}

/// BPTT: `δa(t) = (1 - h(t)²) ⊙ (∂L/∂h(t) + δa(t+1) Wᵀ)`, then `∂W = Σ_t h(t-1)ᵀ δa(t)`.
fn backward_in<B: Backend, F: HostFloat>(
    grad: FloatTensor<B>,
    states: FloatTensor<B>,
    w: FloatTensor<B>,
    h0: FloatTensor<B>,
    steps: &Steps,
) -> RecurrenceGrads<B> {
    let (mut da, dims, device) = to_host::<B, F, 3>(grad); // ∂L/∂h is overwritten with δa in place
    let (states, _, _) = to_host::<B, F, 3>(states);
    let (w, _, _) = to_host::<B, F, 2>(w);
    let (h0, _, _) = to_host::<B, F, 2>(h0);
    let [batch, time, hidden] = dims;
    let row = time * hidden;

    let order = steps.order();
    let mut carry = vec![F::default(); batch * hidden]; // Wᵀ δa(t+1): the δh from later steps
    let mut next = vec![F::default(); batch * hidden];
    for &t in order.iter().rev() {
        for b in 0..batch {
            let (at, carried) = (b * row + t * hidden, b * hidden);
            let valid = steps.is_valid(b, t);
            for j in 0..hidden {
                let dh = da[at + j] + carry[carried + j]; // δh(t)
                if valid {
                    let h = states[at + j];
                    da[at + j] = (F::ONE - h * h) * dh; // δa(t)
                } else {
                    da[at + j] = F::default(); // a held row has no δa ...
                    carry[carried + j] = dh; // ... and passes δh on to h(t-1)
                }
            }
        }
        // next ← δa(t) Wᵀ (Wᵀ: W read with swapped strides); held rows keep their δh.
        F::gemm(
            batch,
            hidden,
            hidden,
            &da[t * hidden..],
            row,
            1,
            &w,
            1,
            hidden,
            F::default(),
            &mut next,
            hidden,
        );
        for b in (0..batch).filter(|&b| !steps.is_valid(b, t)) {
            next[b * hidden..(b + 1) * hidden]
                .copy_from_slice(&carry[b * hidden..(b + 1) * hidden]);
        }
        std::mem::swap(&mut carry, &mut next);
    }

    // ∂W = Σ_t h(t-1)ᵀ δa(t) as one [hidden, batch·time] × [batch·time, hidden] product.
    let mut h_prev = vec![F::default(); batch * row];
    for (i, &t) in order.iter().enumerate() {
        for b in 0..batch {
            let source = match i {
                0 => &h0[b * hidden..(b + 1) * hidden],
                _ => {
                    let p = order[i - 1];
                    &states[b * row + p * hidden..b * row + (p + 1) * hidden]
                }
            };
            h_prev[b * row + t * hidden..b * row + (t + 1) * hidden].copy_from_slice(source);
        }
    }
    let mut d_w = vec![F::default(); hidden * hidden];
    F::gemm(
        hidden,
        batch * time,
        hidden,
        &h_prev,
        1,
        hidden,
        &da,
        hidden,
        1,
        F::default(),
        &mut d_w,
        hidden,
    );

    RecurrenceGrads {
        drive: to_backend::<B, F, 3>(da, dims, &device),
        w: to_backend::<B, F, 2>(d_w, [hidden, hidden], &device),
        h0: to_backend::<B, F, 2>(carry, [batch, hidden], &device),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
