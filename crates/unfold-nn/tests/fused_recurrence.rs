//! The fused recurrence (one autodiff node, BPTT by hand) against the loop Burn's autodiff
//! records step by step: same states, same gradients, in f32 and f64, with variable lengths,
//! reversed reading and an initial state, for both nonlinearities (tanh and ReLU).
#![cfg(all(feature = "ndarray", feature = "internals"))]

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Element, Tensor, TensorData, Tolerance};
use rand::{rngs::StdRng, Rng, SeedableRng};
use unfold_nn::internals::{recurrence, recurrence_unfused};
use unfold_nn::{has_kernels, Nonlinearity, StepPlan};

/// Values and gradients of `Σ states ⊙ probe` through one recurrence implementation.
struct Outcome<B: AutodiffBackend> {
    states: Tensor<B::InnerBackend, 3>,
    d_drive: Tensor<B::InnerBackend, 3>,
    d_w: Tensor<B::InnerBackend, 2>,
    d_h0: Tensor<B::InnerBackend, 2>,
}

type Recurrence<B> = fn(
    Tensor<B, 3>,
    Tensor<B, 2>,
    Tensor<B, 2>,
    &StepPlan<B>,
    Nonlinearity,
) -> unfold_nn::Unrolled<B>;

/// Both nonlinearities of the recurrence.
const ACTIVATIONS: [Nonlinearity; 2] = [Nonlinearity::Tanh, Nonlinearity::Relu];

fn outcome<B: AutodiffBackend>(
    recurrence: Recurrence<B>,
    inputs: &(Tensor<B, 3>, Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 3>),
    lengths: Option<&[usize]>,
    reverse: bool,
    act: Nonlinearity,
) -> Outcome<B> {
    let (drive, w, h0, probe) = inputs;
    let (drive, w, h0) = (
        drive.clone().require_grad(),
        w.clone().require_grad(),
        h0.clone().require_grad(),
    );
    let [batch, time, _] = drive.dims();
    let plan = StepPlan::new(batch, time, lengths, reverse, &drive.device()).unwrap();
    let out = recurrence(drive.clone(), w.clone(), h0.clone(), &plan, act);
    // A loss that weighs every state and the last state differently, so both paths are used.
    let loss = (out.states.clone() * probe.clone()).sum() + out.last.clone().powf_scalar(2.0).sum();
    let grads = loss.backward();
    Outcome {
        states: out.states.inner(),
        d_drive: drive.grad(&grads).unwrap(),
        d_w: w.grad(&grads).unwrap(),
        d_h0: h0.grad(&grads).unwrap(),
    }
}

/// Random tensors in float type `E`, made on the host: Burn's creation ops use the device's
/// default dtype, which the first backend to touch the (shared) CPU device sets.
fn random<B: Backend, E: Element, const D: usize>(
    shape: [usize; D],
    std: f64,
    rng: &mut StdRng,
) -> Tensor<B, D> {
    let values: Vec<f64> = (0..shape.iter().product())
        .map(|_| std * (rng.random::<f64>() * 2.0 - 1.0) * 1.7)
        .collect();
    Tensor::from_data(
        TensorData::new(values, shape).convert::<E>(),
        (&Default::default(), E::dtype()),
    )
}

fn random_inputs<B: Backend, E: Element>(
    batch: usize,
    time: usize,
    hidden: usize,
    act: Nonlinearity,
) -> (Tensor<B, 3>, Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 3>) {
    let rng = &mut StdRng::seed_from_u64(7);
    // ReLU does not saturate: at tanh's scale of W its states grow to ~1e6 over 64 steps
    // (where the absolute tolerances below mean nothing), so its W is half as large.
    let w_scale = match act {
        Nonlinearity::Tanh => 1.0,
        Nonlinearity::Relu => 0.5,
    };
    (
        random::<B, E, 3>([batch, time, hidden], 1.0, rng),
        // Scaled with 1/√hidden (0.6 at the small tests' hidden 6) so that long sequences
        // neither saturate every state nor blow the gradients up.
        random::<B, E, 2>(
            [hidden, hidden],
            w_scale * 0.6 * (6.0 / hidden as f64).sqrt(),
            rng,
        ),
        random::<B, E, 2>([batch, hidden], 1.0, rng),
        random::<B, E, 3>([batch, time, hidden], 1.0, rng),
    )
}

fn assert_fused_equals_recorded<B: AutodiffBackend, E: Element>(tolerance: f64) {
    let cases = [
        (None, false),
        (None, true),
        (Some(vec![9, 3, 1, 6]), false),
        (Some(vec![2, 9, 5, 1]), true),
    ];
    assert_fused_equals_recorded_at::<B, E>([4, 9, 6], &cases, tolerance);
}

fn assert_fused_equals_recorded_at<B: AutodiffBackend, E: Element>(
    [batch, time, hidden]: [usize; 3],
    cases: &[(Option<Vec<usize>>, bool)],
    tolerance: f64,
) {
    assert!(
        has_kernels::<B>(),
        "the fused path must be taken for this backend"
    );
    for (lengths, reverse, act) in cases
        .iter()
        .flat_map(|(l, r)| ACTIVATIONS.map(|act| (l, r, act)))
    {
        let inputs = random_inputs::<B, E>(batch, time, hidden, act);
        let (lengths, reverse) = (lengths.as_deref(), *reverse);
        let fused = outcome::<B>(recurrence, &inputs, lengths, reverse, act);
        let recorded = outcome::<B>(recurrence_unfused, &inputs, lengths, reverse, act);
        assert_eq!(
            fused.states.dtype(),
            E::dtype(),
            "computed in the inputs' float type"
        );
        let tol = Tolerance::absolute(tolerance);
        let case = format!("{act}, lengths {lengths:?}, reverse {reverse}");
        fused
            .states
            .into_data()
            .assert_approx_eq::<f64>(&recorded.states.into_data(), tol);
        fused
            .d_drive
            .into_data()
            .assert_approx_eq::<f64>(&recorded.d_drive.into_data(), tol);
        fused
            .d_w
            .into_data()
            .assert_approx_eq::<f64>(&recorded.d_w.into_data(), tol);
        fused
            .d_h0
            .into_data()
            .assert_approx_eq::<f64>(&recorded.d_h0.into_data(), tol);
        eprintln!("{case}: equal");
    }
}

#[test]
fn fused_equals_recorded_unroll_in_f64() {
    assert_fused_equals_recorded::<Autodiff<NdArray<f64>>, f64>(1e-12);
}

#[test]
fn fused_equals_recorded_unroll_in_f32() {
    // f32 with the rational tanh: a few ulps per step, compounded over 9 steps.
    assert_fused_equals_recorded::<Autodiff<NdArray<f32>>, f32>(2e-5);
}

/// A batch large enough that the host kernel splits its rows across cores (on a machine with
/// more than one), with W small enough that the states do not all saturate.
#[test]
fn fused_split_across_cores_equals_recorded_unroll() {
    let lengths: Vec<usize> = (0..8).map(|b| 64 - 7 * b).collect();
    let cases = [
        (None, false),
        (Some(lengths.clone()), false),
        (Some(lengths), true),
    ];
    assert_fused_equals_recorded_at::<Autodiff<NdArray<f64>>, f64>([8, 64, 128], &cases, 1e-11);
    assert_fused_equals_recorded_at::<Autodiff<NdArray<f32>>, f32>([8, 64, 128], &cases, 1e-4);
}

#[test]
fn inference_backend_runs_the_fused_forward_without_autodiff() {
    type B = NdArray<f64>;
    assert!(has_kernels::<B>());
    let plan = StepPlan::new(3, 5, Some(&[5, 2, 4]), false, &Default::default()).unwrap();
    for act in ACTIVATIONS {
        let (drive, w, h0, _) = random_inputs::<B, f64>(3, 5, 4, act);
        let fused = recurrence(drive.clone(), w.clone(), h0.clone(), &plan, act);
        let recorded = recurrence_unfused(drive.clone(), w.clone(), h0.clone(), &plan, act);
        fused
            .states
            .into_data()
            .assert_approx_eq::<f64>(&recorded.states.into_data(), Tolerance::absolute(1e-12));
        fused
            .last
            .into_data()
            .assert_approx_eq::<f64>(&recorded.last.into_data(), Tolerance::absolute(1e-12));
    }
}
