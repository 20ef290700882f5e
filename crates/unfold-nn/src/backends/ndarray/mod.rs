//! The host kernels of the fused operations, for Burn's ndarray backend: direct GEMM calls on
//! the tensors' own contiguous buffers, vectorised nonlinearities, the batch's rows split
//! across cores.
//!
//! - `recurrence`, `embedding`, `activation`, `readout_nll`, `generation`: one kernel module per
//!   operation of [`crate::ops`].
//! - `math`: the float types the kernels run in ([`HostFloat`]: GEMM, `tanh`, `exp`, the
//!   nonlinearities' forward and backward loops), with AVX-512 or AVX2 versions where the CPU
//!   has them.
//! - `sgemm`: the SIMD f32 GEMM (AVX-512 or AVX2); `parallel`: the worker pool that splits rows.
//!
//! Written by hand rather than composed from ndarray operations because each step is a
//! strided `C ← A·B + C` into a slice of the state buffer, which ndarray's API would copy
//! around, and because Burn's ndarray `tanh`/`exp` are one libm call per element.

mod activation;
mod embedding;
mod generation;
mod math;
pub(crate) mod parallel;
mod readout_nll;
mod recurrence;
pub mod sgemm;

use burn::backend::ndarray::{
    FloatNdArrayElement, IntNdArrayElement, NdArray, NdArrayTensor, QuantElement, SharedArray,
};
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, TensorMetadata};

pub(crate) use math::HostFloat;

use crate::nonlinearity::Nonlinearity;
use crate::ops::{GenerationNet, Kernels, NllRows, ReadoutNllGrads, RecurrenceGrads};
use crate::recurrence::Steps;

/// Runs `$body` with `$F` the float type of `$tensor`'s elements: ndarray's float tensors are
/// `f32` or `f64`, chosen at run time (the backend's element type is only the default for new
/// tensors). The one place the host kernels dispatch on the dtype.
macro_rules! with_float {
    ($tensor:expr, $float:ident => $body:expr) => {
        match TensorMetadata::dtype(&$tensor) {
            DType::F64 => {
                type $float = f64;
                $body
            }
            _ => {
                type $float = f32;
                $body
            }
        }
    };
}

impl<E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement> Kernels for NdArray<E, I, Q>
where
    NdArrayTensor: From<SharedArray<E>> + From<SharedArray<I>>,
{
    fn fused_recurrence(
        drive: FloatTensor<Self>,
        w: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        steps: &Steps,
        act: Nonlinearity,
    ) -> FloatTensor<Self> {
        with_float!(drive, F => recurrence::forward::<F>(drive, w, h0, steps, act))
    }

    fn fused_recurrence_backward(
        grad: FloatTensor<Self>,
        states: FloatTensor<Self>,
        w: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        steps: &Steps,
        act: Nonlinearity,
    ) -> RecurrenceGrads<Self> {
        let [drive, w, h0] =
            with_float!(states, F => recurrence::backward::<F>(grad, states, w, h0, steps, act));
        RecurrenceGrads { drive, w, h0 }
    }

    fn fused_embedding(
        u: FloatTensor<Self>,
        b: FloatTensor<Self>,
        ids: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        with_float!(u, F => embedding::forward::<F>(u, b, ids))
    }

    fn fused_embedding_backward(
        grad: FloatTensor<Self>,
        ids: IntTensor<Self>,
        vocab: usize,
    ) -> [FloatTensor<Self>; 2] {
        with_float!(grad, F => embedding::backward::<F>(grad, ids, vocab))
    }

    fn fused_activation(x: FloatTensor<Self>, act: Nonlinearity) -> FloatTensor<Self> {
        with_float!(x, F => activation::forward::<F>(x, act))
    }

    fn fused_activation_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        act: Nonlinearity,
    ) -> FloatTensor<Self> {
        with_float!(y, F => activation::backward::<F>(y, grad, act))
    }

    fn fused_readout_nll(
        h: FloatTensor<Self>,
        v: FloatTensor<Self>,
        c: FloatTensor<Self>,
        targets: IntTensor<Self>,
        rows: &NllRows,
        with_grad: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        with_float!(h, F => readout_nll::forward::<F>(h, v, c, targets, rows, with_grad))
    }

    fn fused_readout_nll_backward(
        grad: FloatTensor<Self>,
        g: FloatTensor<Self>,
        h: FloatTensor<Self>,
        v: FloatTensor<Self>,
    ) -> ReadoutNllGrads<Self> {
        let [h, v, c] = with_float!(g, F => readout_nll::backward::<F>(grad, g, h, v));
        ReadoutNllGrads { h, v, c }
    }

    fn fused_generate(
        net: GenerationNet<Self>,
        config: &crate::sample::GenerateConfig,
    ) -> Option<crate::error::Result<Vec<Vec<usize>>>> {
        let probe = net.v.clone().into_primitive().tensor();
        let primitive = |t: burn::tensor::Tensor<Self, 2>| t.into_primitive().tensor();
        Some(with_float!(probe, F => generation::generate::<F, Self>(net, config, primitive)))
    }
}

/// A tensor's values as an owned host `Vec`, to be overwritten: the buffer itself when the
/// tensor is its only owner and holds exactly its elements in order, else one copy.
///
/// Burn's `into_data` would, for a shared buffer, collect it element by element through a
/// dynamic-rank iterator, which measured 68% of a training step's time.
fn take<F: HostFloat, const D: usize>(tensor: NdArrayTensor) -> (Vec<F>, [usize; D]) {
    let (values, dims) = take_any(tensor);
    (values, dims.try_into().expect("the tensor's rank"))
}

/// [`take`] for a tensor of any rank (an elementwise kernel's): the values and the shape.
fn take_any<F: HostFloat>(tensor: NdArrayTensor) -> (Vec<F>, Vec<usize>) {
    let array = F::array(tensor);
    let dims = array.shape().to_vec();
    if !array.is_standard_layout() {
        return (array.iter().copied().collect(), dims);
    }
    let len = array.len();
    let values = match array.try_into_owned_nocopy() {
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
    };
    (values, dims)
}

/// A read-only host view of a tensor's values, row-major.
enum HostRead<F> {
    /// The ndarray buffer itself (a shared reference to it: nothing copied).
    Shared(SharedArray<F>),
    /// A copy, for other layouts.
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

/// A tensor's values to read: the buffer itself when it is contiguous, without the copy
/// [`take`] makes of a buffer that is shared (a parameter, the states saved for the backward
/// pass).
fn read<F: HostFloat, const D: usize>(tensor: NdArrayTensor) -> (HostRead<F>, [usize; D]) {
    let (values, dims) = read_any(tensor);
    (values, dims.try_into().expect("the tensor's rank"))
}

/// [`read`] for a tensor of any rank: the values and the shape.
fn read_any<F: HostFloat>(tensor: NdArrayTensor) -> (HostRead<F>, Vec<usize>) {
    let array = F::array(tensor);
    let dims = array.shape().to_vec();
    if array.as_slice().is_some() {
        (HostRead::Shared(array), dims)
    } else {
        (HostRead::Copied(array.iter().copied().collect()), dims)
    }
}

/// Row-major `values` of shape `dims` as an ndarray tensor (no copy).
fn tensor<F: HostFloat, const D: usize>(values: Vec<F>, dims: [usize; D]) -> NdArrayTensor {
    F::into_ndarray(values, &dims)
}

/// Token ids (or class labels) as host indices, row-major (the models check them first).
fn host_ids(ids: NdArrayTensor) -> Vec<usize> {
    macro_rules! indices {
        ($storage:expr) => {
            $storage
                .into_shared()
                .iter()
                .map(|&id| usize::try_from(id).expect("ids are checked before the kernel"))
                .collect()
        };
    }
    match ids {
        NdArrayTensor::I64(ids) => indices!(ids),
        NdArrayTensor::I32(ids) => indices!(ids),
        NdArrayTensor::I16(ids) => indices!(ids),
        NdArrayTensor::I8(ids) => indices!(ids),
        NdArrayTensor::U64(ids) => indices!(ids),
        NdArrayTensor::U32(ids) => indices!(ids),
        NdArrayTensor::U16(ids) => indices!(ids),
        NdArrayTensor::U8(ids) => indices!(ids),
        other => panic!("ids must be integers, not {:?}", other.dtype()),
    }
}

/// Whether a strided `rows×cols` matrix fits in `len` elements: checked before every unsafe
/// GEMM call, so none reads or writes outside its slice.
fn fits(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * row_stride + (cols - 1) * col_stride < len
}

/// `into += from`, elementwise: one core's partial sum (of `∂W`, `∂U`, …) added to the total.
fn add_into<F: HostFloat>(into: &mut [F], from: &[F]) {
    into.iter_mut().zip(from).for_each(|(d, &x)| *d = *d + x);
}

/// The transpose `[cols, rows]` of the row-major `[rows, cols]` matrix `values`, made once per
/// pass so that the many products with `Wᵀ` (or `Vᵀ`) read contiguous rows.
fn transposed<F: HostFloat>(values: &[F], cols: usize) -> Vec<F> {
    let rows = values.len().checked_div(cols).unwrap_or(0);
    let mut t = vec![F::default(); values.len()];
    for (i, row) in values.chunks_exact(cols.max(1)).enumerate() {
        for (j, &value) in row.iter().enumerate() {
            t[j * rows + i] = value;
        }
    }
    t
}
