//! The CubeCL recurrence kernels (`backends/cubecl`) against an f64 CPU loop written from the
//! semantics (`support/recurrence_reference.rs`): tanh and relu, forward and reversed, with
//! and without lengths (a zero length included), hidden sizes that are multiples of nothing
//! (5, 37, 300 > 256 units per cube), batch 1, time 1, several cubes, every launch layout,
//! non-contiguous inputs, f16.
//!
//! On wgpu (Mesa's llvmpipe without a GPU: the same shaders) and, with `--features cuda`, on
//! CUDA:
//!
//! ```text
//! cargo test --release -p unfold-nn --features wgpu,internals --test cubecl_recurrence
//! cargo test --release -p unfold-nn --features cuda,internals --test cubecl_recurrence
//! ```
#![cfg(all(feature = "internals", any(feature = "wgpu", feature = "cuda")))]

#[path = "support/recurrence_reference.rs"]
mod reference;

/// The tolerance the f32 kernels are held to: `|got - want| / max(1, |want|)`.
const TOLERANCE: f64 = 1e-4;

/// The problems every backend runs.
fn cases() -> Vec<reference::Problem> {
    use reference::Problem;
    let mut cases = Vec::new();
    let mut seed = 1;
    let mut add = |b, t, h, reverse, lengths: Option<Vec<usize>>, relu| {
        seed += 1;
        cases.push(Problem::new(b, t, h, reverse, lengths, relu, seed));
    };
    for relu in [false, true] {
        for reverse in [false, true] {
            // hidden not a multiple of 32 or of the cube size; several cubes.
            add(5, 7, 37, reverse, None, relu);
            // Lengths, one of them full and one zero (a row that only ever holds h0).
            add(6, 7, 37, reverse, Some(vec![7, 1, 3, 0, 5, 6]), relu);
            // hidden > 256 units: two hidden units per thread, the second partly idle.
            add(5, 4, 300, reverse, Some(vec![4, 2, 3, 1, 4]), relu);
        }
        // batch 1, time 1; time 1 with lengths.
        add(1, 1, 37, false, None, relu);
        add(1, 1, 8, true, None, relu);
        add(3, 1, 16, false, Some(vec![1, 0, 1]), relu);
        // Small hidden (fewer units than a warp), and a longer sequence.
        add(2, 33, 5, true, None, relu);
        add(7, 40, 64, false, Some(vec![40, 13, 1, 39, 20, 40, 2]), relu);
    }
    cases
}

/// Launch layouts that between them take every code path: `W` from global and from shared
/// memory, several rows per cube (with spare rows past the batch), several columns per unit
/// (with idle columns), fewer units than hidden units (several passes).
/// `(rows per cube, units, columns per unit, W in shared memory)`.
const LAYOUTS: [(usize, usize, usize, bool); 10] = [
    (1, 64, 1, false),
    (1, 64, 1, true),
    (3, 32, 1, false),
    (3, 32, 2, true),
    (2, 256, 1, false),
    (4, 7, 1, true),
    (4, 37, 1, false),
    (1, 8, 3, false), // 24 columns a pass: two passes, the second partly idle
    (2, 10, 4, true), // 40 columns a pass: one pass, 3 columns idle
    (3, 32, 4, false),
];

/// The same tests for each CubeCL backend.
macro_rules! kernel_tests {
    ($name:ident, $backend:ty, $device:expr) => {
        mod $name {
            use super::reference::{max_error, Problem};
            use super::{cases, LAYOUTS, TOLERANCE};
            use burn::tensor::backend::Backend;
            use burn::tensor::ops::FloatTensor;
            use burn::tensor::{DType, FloatDType, Tensor, TensorData, TensorPrimitive};
            use unfold_nn::internals::cubecl::{
                recurrence_backward, recurrence_backward_with, recurrence_forward,
                recurrence_forward_with, LaunchConfig,
            };
            use unfold_nn::internals::{Kernels, Steps};
            use unfold_nn::Nonlinearity;

            type B = $backend;

            fn device() -> burn::tensor::Device<B> {
                $device
            }

            fn tensor<const D: usize>(values: &[f32], shape: [usize; D]) -> Tensor<B, D> {
                Tensor::from_data(TensorData::new(values.to_vec(), shape), &device())
            }

            fn primitive<const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
                t.into_primitive().tensor()
            }

            fn wrap<const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
                Tensor::from_primitive(TensorPrimitive::Float(t))
            }

            fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
                t.cast(FloatDType::F32)
                    .into_data()
                    .into_vec::<f32>()
                    .expect("f32 data")
            }

            /// States, ∂drive and ∂h0 of `p` through the two kernels (with `layout`, or
            /// the automatic one), as max errors against the reference.
            fn kernel_errors(p: &Problem, layout: Option<LaunchConfig>) -> [f64; 3] {
                let (bs, ts, hs) = (p.batch, p.time, p.hidden);
                let want = p.reference();
                let lengths = p.lengths.as_deref();
                let (drive, w, h0) = (
                    tensor(&p.drive, [bs, ts, hs]),
                    tensor(&p.w, [hs, hs]),
                    tensor(&p.h0, [bs, hs]),
                );
                let (d, w_, h) = (
                    primitive(drive),
                    primitive(w.clone()),
                    primitive(h0.clone()),
                );
                let states = wrap::<3>(match layout {
                    Some(c) => recurrence_forward_with(d, w_, h, ts, p.reverse, lengths, p.relu, c),
                    None => recurrence_forward(d, w_, h, ts, p.reverse, lengths, p.relu),
                });
                let (g, s) = (
                    primitive(tensor(&p.grad, [bs, ts, hs])),
                    primitive(states.clone()),
                );
                let (w_, h) = (primitive(w), primitive(h0));
                let (d_drive, d_h0) = match layout {
                    Some(c) => {
                        recurrence_backward_with(g, s, w_, h, ts, p.reverse, lengths, p.relu, c)
                    }
                    None => recurrence_backward(g, s, w_, h, ts, p.reverse, lengths, p.relu),
                };
                [
                    max_error(&values(states), &want.states),
                    max_error(&values(wrap::<3>(d_drive)), &want.d_drive),
                    max_error(&values(wrap::<2>(d_h0)), &want.d_h0),
                ]
            }

            fn assert_within(errors: [f64; 3], tolerance: f64, what: &str) {
                println!(
                    "{what}: max error states {:.2e}, d_drive {:.2e}, d_h0 {:.2e}",
                    errors[0], errors[1], errors[2]
                );
                for (name, e) in ["states", "d_drive", "d_h0"].iter().zip(errors) {
                    assert!(
                        e <= tolerance,
                        "{name}: max error {e:.3e} > {tolerance:e} ({what})"
                    );
                }
            }

            fn describe(p: &Problem) -> String {
                format!(
                    "batch {} time {} hidden {} reverse {} relu {} lengths {:?}",
                    p.batch, p.time, p.hidden, p.reverse, p.relu, p.lengths
                )
            }

            #[test]
            fn kernels_match_the_f64_loop_with_the_automatic_layout() {
                for p in cases() {
                    assert_within(kernel_errors(&p, None), TOLERANCE, &describe(&p));
                }
            }

            #[test]
            fn every_launch_layout_matches_the_f64_loop() {
                for (rows_per_cube, units, cols_per_unit, w_in_shared) in LAYOUTS {
                    let layout = LaunchConfig {
                        rows_per_cube,
                        units,
                        cols_per_unit,
                        w_in_shared,
                    };
                    for (i, reverse) in [false, true].into_iter().enumerate() {
                        let lengths = Some(vec![6, 2, 0, 5, 1]);
                        let p = Problem::new(5, 6, 37, reverse, lengths, i == 1, 99 + i as u64);
                        let what = format!("{} layout {layout:?}", describe(&p));
                        assert_within(kernel_errors(&p, Some(layout)), TOLERANCE, &what);
                    }
                }
            }

            #[test]
            fn weight_gradient_through_the_kernels_interface_matches_the_f64_loop() {
                // The backend's `Kernels` impl: the two kernels plus ∂W as one matmul.
                for p in cases()
                    .into_iter()
                    .filter(|p| p.lengths.as_ref().is_none_or(|l| !l.contains(&0)))
                {
                    let (bs, ts, hs) = (p.batch, p.time, p.hidden);
                    let want = p.reference();
                    let steps = Steps {
                        time: ts,
                        reverse: p.reverse,
                        lengths: p.lengths.clone(),
                    };
                    let act = if p.relu {
                        Nonlinearity::Relu
                    } else {
                        Nonlinearity::Tanh
                    };
                    let w = primitive(tensor(&p.w, [hs, hs]));
                    let h0 = primitive(tensor(&p.h0, [bs, hs]));
                    let states = B::fused_recurrence(
                        primitive(tensor(&p.drive, [bs, ts, hs])),
                        w.clone(),
                        h0.clone(),
                        &steps,
                        act,
                    );
                    let grads = B::fused_recurrence_backward(
                        primitive(tensor(&p.grad, [bs, ts, hs])),
                        states,
                        w,
                        h0,
                        &steps,
                        act,
                    );
                    let e = max_error(&values(wrap::<2>(grads.w)), &want.d_w);
                    println!("{}: ∂W max error {e:.2e}", describe(&p));
                    assert!(e <= TOLERANCE, "∂W: max error {e:.3e} ({})", describe(&p));
                }
            }

            #[test]
            fn non_contiguous_inputs_are_read_by_their_strides() {
                // drive and grad as [batch, time, hidden] views of [time, batch, hidden]
                // buffers, W as the view of a transposed buffer.
                let p = Problem::new(4, 5, 37, false, Some(vec![5, 3, 1, 4]), false, 7);
                let (bs, ts, hs) = (p.batch, p.time, p.hidden);
                let want = p.reference();
                let time_major = |v: &[f32]| -> Vec<f32> {
                    let mut out = vec![0.0; v.len()];
                    for b in 0..bs {
                        for t in 0..ts {
                            for j in 0..hs {
                                out[(t * bs + b) * hs + j] = v[(b * ts + t) * hs + j];
                            }
                        }
                    }
                    out
                };
                let w_t: Vec<f32> = (0..hs * hs).map(|i| p.w[(i % hs) * hs + i / hs]).collect();
                let drive = tensor(&time_major(&p.drive), [ts, bs, hs]).swap_dims(0, 1);
                let grad = tensor(&time_major(&p.grad), [ts, bs, hs]).swap_dims(0, 1);
                let w = tensor(&w_t, [hs, hs]).transpose();
                let h0 = tensor(&p.h0, [bs, hs]);
                let lengths = p.lengths.as_deref();
                let states = wrap::<3>(recurrence_forward(
                    primitive(drive),
                    primitive(w.clone()),
                    primitive(h0.clone()),
                    ts,
                    false,
                    lengths,
                    false,
                ));
                let (d_drive, d_h0) = recurrence_backward(
                    primitive(grad),
                    primitive(states.clone()),
                    primitive(w),
                    primitive(h0),
                    ts,
                    false,
                    lengths,
                    false,
                );
                let errors = [
                    max_error(&values(states), &want.states),
                    max_error(&values(wrap::<3>(d_drive)), &want.d_drive),
                    max_error(&values(wrap::<2>(d_h0)), &want.d_h0),
                ];
                assert_within(errors, TOLERANCE, "non-contiguous inputs");
            }

            #[test]
            fn half_precision_runs_where_the_device_has_it() {
                // The kernels are compiled for the tensors' runtime dtype, so f16 needs no
                // other backend type. f16 has an 11-bit mantissa: tolerance 2e-2.
                if !B::supports_dtype(&device(), DType::F16) {
                    println!("f16: not supported by this device, skipped");
                    return;
                }
                let p = Problem::new(5, 6, 37, true, Some(vec![6, 2, 0, 5, 1]), false, 11);
                // The reference from the f16-rounded inputs: only the kernels' rounding counts.
                let round = |v: &[f32]| -> Vec<f32> {
                    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
                };
                let p = Problem {
                    drive: round(&p.drive),
                    w: round(&p.w),
                    h0: round(&p.h0),
                    grad: round(&p.grad),
                    ..p
                };
                let (bs, ts, hs) = (p.batch, p.time, p.hidden);
                let want = p.reference();
                let f16 = |v: &[f32], shape: [usize; 3]| tensor(v, shape).cast(FloatDType::F16);
                let w = tensor(&p.w, [hs, hs]).cast(FloatDType::F16);
                let h0 = tensor(&p.h0, [bs, hs]).cast(FloatDType::F16);
                let lengths = p.lengths.as_deref();
                let states = wrap::<3>(recurrence_forward(
                    primitive(f16(&p.drive, [bs, ts, hs])),
                    primitive(w.clone()),
                    primitive(h0.clone()),
                    ts,
                    true,
                    lengths,
                    false,
                ));
                assert_eq!(states.dtype(), DType::F16);
                let (d_drive, d_h0) = recurrence_backward(
                    primitive(f16(&p.grad, [bs, ts, hs])),
                    primitive(states.clone()),
                    primitive(w),
                    primitive(h0),
                    ts,
                    true,
                    lengths,
                    false,
                );
                let errors = [
                    max_error(&values(states), &want.states),
                    max_error(&values(wrap::<3>(d_drive)), &want.d_drive),
                    max_error(&values(wrap::<2>(d_h0)), &want.d_h0),
                ];
                assert_within(errors, 2e-2, "f16");
            }
        }
    };
}

#[cfg(feature = "wgpu")]
kernel_tests!(
    wgpu,
    burn::backend::Wgpu,
    burn::backend::wgpu::WgpuDevice::default()
);

#[cfg(feature = "cuda")]
kernel_tests!(
    cuda,
    burn::backend::Cuda,
    burn::backend::cuda::CudaDevice::default()
);
