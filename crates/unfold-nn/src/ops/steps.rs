//! A sequence `[batch, time, width]` split into its steps `[batch, width]`, with a backward
//! pass that costs one step's gradient per step.
//!
//! The generic unroll hands each step its row of the hoisted drive. Taken with Burn's `slice`,
//! every row is an autodiff node whose backward pass allocates a zero tensor the size of the
//! whole drive and writes its row into it: `time` full-size tensors, then summed, so BPTT over
//! a custom cell costs `O(time² · batch · width)`. Here the rows hang off one hub node: each
//! row's backward step only files its gradient with the hub, and the hub (which Burn runs after
//! all of them, being their common parent) stacks the filed gradients once and hands the drive
//! its gradient: `O(time · batch · width)` in all.

use std::sync::{Arc, Mutex};

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorMetadata};

use super::{dispatch, primitive, record_node, register_grads, tensor, FusedOp, Kernels, Retype};

/// Row `t` of `drive` `[batch, time, width]` for every `t`, as `[batch, width]` tensors, with
/// a linear-time backward pass where the backend has kernels (else Burn's slices).
pub fn split_steps<B: Backend>(drive: Tensor<B, 3>) -> Vec<Tensor<B, 2>> {
    struct Op<B: Backend>(Tensor<B, 3>);

    impl<B: Backend> FusedOp<B> for Op<B> {
        type Output = Vec<Tensor<B, 2>>;

        fn fused<K: Kernels>(self, to: Retype<B, K>) -> Vec<Tensor<B, 2>> {
            K::fused_split_steps(to.float(self.0))
                .into_iter()
                .map(|row| to.tensor(row))
                .collect()
        }

        fn unfused(self) -> Vec<Tensor<B, 2>> {
            slices(self.0)
        }
    }

    dispatch(Op(drive))
}

/// The rows as plain slices (what a backend without autodiff runs, and the fallback).
fn slices<B: Backend>(drive: Tensor<B, 3>) -> Vec<Tensor<B, 2>> {
    let [batch, time, width] = drive.dims();
    (0..time)
        .map(|t| {
            drive
                .clone()
                .slice([0..batch, t..t + 1, 0..width])
                .reshape([batch, width])
        })
        .collect()
}

/// The default kernel: the rows as slices.
pub(super) fn default_split<B: Backend>(drive: FloatTensor<B>) -> Vec<FloatTensor<B>> {
    slices(tensor::<B, 3>(drive))
        .into_iter()
        .map(primitive)
        .collect()
}

/// Where the rows file their gradients for the hub: one slot per step.
#[derive(Debug, Clone)]
struct Filed<B: Backend> {
    slots: Arc<Mutex<Vec<Option<FloatTensor<B>>>>>,
}

/// The backward step of one row: files its gradient in its slot (nothing is registered).
#[derive(Debug)]
struct RowBackward;

impl<B: Backend> Backward<B, 1> for RowBackward {
    type State = (Filed<B>, usize);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let (filed, t) = ops.state;
        filed.slots.lock().unwrap_or_else(|e| e.into_inner())[t] = Some(grad);
    }
}

/// The backward step of the hub: runs after every row (they are its children), stacks what
/// they filed (zeros for rows that got no gradient) and hands it to the drive.
#[derive(Debug)]
struct HubBackward;

impl<B: Backend> Backward<B, 1> for HubBackward {
    /// The slots, and `[batch, time, width]`.
    type State = (Filed<B>, [usize; 3]);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (filed, [batch, time, width]) = ops.state;
        let slots = std::mem::take(&mut *filed.slots.lock().unwrap_or_else(|e| e.into_inner()));
        let Some(like) = slots.iter().flatten().next() else {
            return; // no row reached the loss
        };
        let (device, dtype) = (B::float_device(like), like.dtype());
        let rows: Vec<Tensor<B, 3>> = slots
            .into_iter()
            .map(|slot| match slot {
                Some(g) => tensor::<B, 2>(g).reshape([batch, 1, width]),
                None => Tensor::zeros([batch, 1, width], (&device, dtype)),
            })
            .collect();
        debug_assert_eq!(rows.len(), time);
        let grad = primitive(crate::layout::concat(rows, 1));
        let parents = ops.parents.map(|node| node.map(|node| node.id));
        register_grads::<B, 1>(grads, parents, [grad]);
    }
}

/// The split on `Autodiff<B, C>`: a hub node over the drive, one row node per step under it.
pub(super) fn record<B: Kernels, C: CheckpointStrategy>(
    drive: FloatTensor<Autodiff<B, C>>,
) -> Vec<FloatTensor<Autodiff<B, C>>> {
    let [batch, time, width] = drive.primitive.shape().dims::<3>();
    let filed = Filed::<B> {
        slots: Arc::new(Mutex::new(vec![None; time])),
    };
    let hub = record_node::<B, C, _, 1>(HubBackward, [drive], |[drive], tracked| {
        (
            drive,
            tracked.then(|| (filed.clone(), [batch, time, width])),
        )
    });
    let rows = B::fused_split_steps(hub.primitive.clone());
    rows.into_iter()
        .enumerate()
        .map(|(t, row)| {
            let parent = hub.clone();
            record_node::<B, C, _, 1>(RowBackward, [parent], |_, tracked| {
                (row, tracked.then(|| (filed.clone(), t)))
            })
        })
        .collect()
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::{Distribution, Tolerance};

    type B = Autodiff<NdArray<f64>>;

    /// Values and gradients through the split equal those through Burn's slices, also when
    /// some rows reach the loss twice and some not at all.
    #[test]
    fn split_rows_have_the_values_and_gradients_of_slices() {
        let device = Default::default();
        let x = Tensor::<B, 3>::random([3, 5, 4], Distribution::Normal(0.0, 1.0), &device);
        let weights: Vec<f64> = vec![1.0, 0.0, -2.0, 0.5, 3.0];
        let run = |split: bool| {
            let x = x.clone().require_grad();
            let rows = if split {
                split_steps(x.clone())
            } else {
                slices(x.clone())
            };
            let mut loss = Tensor::<B, 1>::zeros([1], &device);
            for (t, row) in rows.iter().enumerate() {
                if weights[t] != 0.0 {
                    loss = loss + (row.clone() * row.clone()).sum() * weights[t];
                }
            }
            // Row 3 twice.
            loss = loss + rows[3].clone().sum();
            let grads = loss.backward();
            let values: Vec<_> = rows.into_iter().map(|r| r.into_data()).collect();
            (values, x.grad(&grads).expect("a gradient").into_data())
        };
        let ((rows, grad), (rows_ref, grad_ref)) = (run(true), run(false));
        for (row, reference) in rows.iter().zip(&rows_ref) {
            row.assert_approx_eq::<f64>(reference, Tolerance::absolute(1e-12));
        }
        grad.assert_approx_eq::<f64>(&grad_ref, Tolerance::absolute(1e-12));
    }
}
