//! The fused readout + loss (one autodiff node: logits, log-softmax, masked NLL, and
//! `softmax − onehot` straight into `∂V`, `∂c`, `∂h`) against the unfused Burn graph
//! (`Readout::forward` then `sequence_nll`): same loss, same gradients, in f32 and f64, with and
//! without lengths, for every reduction; and `ElmanRnn::try_loss` against `forward` +
//! `sequence_nll` for every parameter.
#![cfg(feature = "ndarray")]

use std::sync::Mutex;

use burn::backend::{Autodiff, NdArray};
use burn::module::Param;
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Element, Int, Tensor, TensorData, Tolerance};
use rand::{rngs::StdRng, Rng, SeedableRng};
use unfold_nn::{
    has_kernels, sequence_nll, try_readout_nll, ElmanCell, ElmanRnn, Error, Nonlinearity, Readout,
    RecurrentStack, Reduction, SequenceModel, UnrollOptions,
};

/// Random tensors in float type `E`, made on the host (Burn's creation ops would use the
/// process-wide default dtype of the shared CPU device).
fn random<B: Backend, E: Element, const D: usize>(
    shape: [usize; D],
    rng: &mut StdRng,
) -> Tensor<B, D> {
    let values: Vec<f64> = (0..shape.iter().product())
        .map(|_| rng.random::<f64>() * 4.0 - 2.0)
        .collect();
    Tensor::from_data(
        TensorData::new(values, shape).convert::<E>(),
        (&Default::default(), E::dtype()),
    )
}

fn ids<B: Backend>(
    batch: usize,
    time: usize,
    classes: usize,
    rng: &mut StdRng,
) -> Tensor<B, 2, Int> {
    let values: Vec<i64> = (0..batch * time)
        .map(|_| rng.random_range(0..classes as i64))
        .collect();
    Tensor::from_data(TensorData::new(values, [batch, time]), &Default::default())
}

/// The unfused reference: `sequence_nll` with the `Sum` reduction, scaled by a `[1]` tensor.
/// Not `sequence_nll` with a mean reduction itself: its `/ tokens` is a scalar division, and
/// Burn 0.21's `div_scalar` backward rounds `1 / tokens` through f32 (burn-autodiff
/// `ops/tensor.rs`, `ops.state.elem::<f32>()`), which would put a 5e-8 relative error into the
/// f64 reference's gradients.
fn unfused_nll<B: Backend>(
    logits: Tensor<B, 3>,
    targets: &Tensor<B, 2, Int>,
    lengths: Option<&[usize]>,
    reduction: Reduction,
) -> Tensor<B, 1> {
    let [batch, time, _] = logits.dims();
    let dtype = logits.dtype();
    let scale = match (reduction, lengths) {
        (Reduction::Sum, _) => 1.0,
        (Reduction::MeanPerSequence, _) => 1.0 / batch as f64,
        (Reduction::MeanPerToken, None) => 1.0 / (batch * time) as f64,
        (Reduction::MeanPerToken, Some(l)) => 1.0 / l.iter().sum::<usize>() as f64,
    };
    let scale = Tensor::<B, 1>::from_data(
        TensorData::new(vec![scale], [1]).convert_dtype(dtype),
        (&logits.device(), dtype),
    );
    sequence_nll(logits, targets.clone(), lengths, Reduction::Sum) * scale
}

/// Loss, ∂states, ∂V and ∂c of one way of computing the readout loss.
fn loss_and_grads<B: AutodiffBackend>(
    fused: bool,
    states: &Tensor<B, 3>,
    readout: &Readout<B>,
    targets: &Tensor<B, 2, Int>,
    lengths: Option<&[usize]>,
    reduction: Reduction,
) -> Vec<TensorData> {
    let states = states.clone().require_grad();
    let loss = if fused {
        try_readout_nll(states.clone(), readout, targets.clone(), lengths, reduction).unwrap()
    } else {
        unfused_nll(readout.forward(states.clone()), targets, lengths, reduction)
    };
    // An outer factor, so the backward pass must scale by the incoming gradient.
    let grads = (loss.clone() * 1.7).backward();
    let d_states = states.grad(&grads).unwrap();
    let params = GradientsParams::from_grads(grads, readout);
    let mut out = vec![
        loss.inner().into_data(),
        d_states.into_data(),
        params
            .get::<B::InnerBackend, 2>(readout.v.id)
            .unwrap()
            .into_data(),
    ];
    if let Some(c) = &readout.c {
        out.push(params.get::<B::InnerBackend, 1>(c.id).unwrap().into_data());
    }
    out
}

fn assert_fused_equals_unfused<B: AutodiffBackend, E: Element>(tolerance: Tolerance<f64>) {
    assert!(
        has_kernels::<B>(),
        "the fused path must be taken for this backend"
    );
    let rng = &mut StdRng::seed_from_u64(3);
    let (batch, time, hidden, classes) = (3, 5, 4, 7);
    let states = random::<B, E, 3>([batch, time, hidden], rng);
    let targets = ids::<B>(batch, time, classes, rng);
    for bias in [true, false] {
        let readout = Readout {
            v: Param::from_tensor(random::<B, E, 2>([hidden, classes], rng)),
            c: bias.then(|| Param::from_tensor(random::<B, E, 1>([classes], rng))),
        };
        for lengths in [None, Some(&[5, 2, 4][..]), Some(&[1, 5, 3][..])] {
            for reduction in [
                Reduction::Sum,
                Reduction::MeanPerToken,
                Reduction::MeanPerSequence,
            ] {
                let fused = loss_and_grads(true, &states, &readout, &targets, lengths, reduction);
                let unfused =
                    loss_and_grads(false, &states, &readout, &targets, lengths, reduction);
                assert_eq!(
                    fused[0].dtype,
                    E::dtype(),
                    "computed in the inputs' float type"
                );
                for (f, u) in fused.iter().zip(&unfused) {
                    f.assert_approx_eq::<f64>(u, tolerance);
                }
            }
        }
    }
}

/// Serialises this file's tests: one of them failed about once in 30 parallel runs inside
/// burn-autodiff 0.21 ("Node should have a step registered") while the others ran backward on
/// other threads (not seen with one test thread). Holding this lock keeps the assertions and
/// removes the overlap (the five tests take milliseconds).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn fused_readout_loss_equals_unfused_graph_in_f64() {
    let _serial = one_at_a_time();
    assert_fused_equals_unfused::<Autodiff<NdArray<f64>>, f64>(Tolerance::absolute(1e-12));
}

#[test]
fn fused_readout_loss_equals_unfused_graph_in_f32() {
    let _serial = one_at_a_time();
    // f32: the fused loss sums in f64, Burn's graph in f32 (one ulp of a sum of 15 terms).
    assert_fused_equals_unfused::<Autodiff<NdArray<f32>>, f32>(Tolerance::rel_abs(1e-6, 1e-6));
}

#[test]
fn fused_readout_loss_without_autodiff_equals_unfused() {
    let _serial = one_at_a_time();
    type B = NdArray<f64>;
    let rng = &mut StdRng::seed_from_u64(5);
    let states = random::<B, f64, 3>([2, 6, 3], rng);
    let readout = Readout {
        v: Param::from_tensor(random::<B, f64, 2>([3, 4], rng)),
        c: Some(Param::from_tensor(random::<B, f64, 1>([4], rng))),
    };
    let targets = ids::<B>(2, 6, 4, rng);
    let lengths = Some(&[6, 3][..]);
    let fused = try_readout_nll(
        states.clone(),
        &readout,
        targets.clone(),
        lengths,
        Reduction::MeanPerToken,
    )
    .unwrap();
    let unfused = unfused_nll(
        readout.forward(states),
        &targets,
        lengths,
        Reduction::MeanPerToken,
    );
    fused
        .into_data()
        .assert_approx_eq::<f64>(&unfused.into_data(), Tolerance::absolute(1e-12));
}

/// `try_loss` (fused head) and `forward` + `sequence_nll` give every parameter the same
/// gradient: U, W, b of the cell and V, c of the readout, through token input with lengths.
#[test]
fn model_loss_equals_forward_then_sequence_nll_for_every_parameter() {
    let _serial = one_at_a_time();
    type B = Autodiff<NdArray<f64>>;
    let rng = &mut StdRng::seed_from_u64(11);
    let (vocab, hidden, classes, batch, time) = (6, 5, 6, 3, 7);
    let cell = ElmanCell {
        u: Param::from_tensor(random::<B, f64, 2>([vocab, hidden], rng) * 0.5),
        w: Param::from_tensor(random::<B, f64, 2>([hidden, hidden], rng) * 0.4),
        b: Some(Param::from_tensor(random::<B, f64, 1>([hidden], rng))),
        nonlinearity: Nonlinearity::Tanh,
    };
    let model = ElmanRnn::<B> {
        stack: RecurrentStack::try_new(vec![cell], vec![]).unwrap(),
        readout: Readout {
            v: Param::from_tensor(random::<B, f64, 2>([hidden, classes], rng)),
            c: Some(Param::from_tensor(random::<B, f64, 1>([classes], rng))),
        },
    };
    let inputs = ids::<B>(batch, time, vocab, rng);
    let targets = ids::<B>(batch, time, classes, rng);
    let options = UnrollOptions::new().with_lengths([7, 4, 1]);
    let fused = model
        .try_loss(
            inputs.clone(),
            targets.clone(),
            &options,
            Reduction::MeanPerToken,
        )
        .unwrap();
    let out = model.forward(inputs, &options);
    let unfused = unfused_nll(
        out.logits,
        &targets,
        options.lengths.as_deref(),
        Reduction::MeanPerToken,
    );
    let tol = Tolerance::absolute(1e-12);
    fused
        .last
        .clone()
        .into_data()
        .assert_approx_eq::<f64>(&out.last.into_data(), tol);
    fused
        .loss
        .clone()
        .into_data()
        .assert_approx_eq::<f64>(&unfused.clone().into_data(), tol);
    let fused_grads = GradientsParams::from_grads(fused.loss.backward(), &model);
    let unfused_grads = GradientsParams::from_grads(unfused.backward(), &model);
    let mut compared = 0;
    let cell = model.cell();
    let two_d = [cell.u.id, cell.w.id, model.readout.v.id];
    for id in two_d {
        let f = fused_grads.get::<NdArray<f64>, 2>(id).unwrap();
        let u = unfused_grads.get::<NdArray<f64>, 2>(id).unwrap();
        f.into_data().assert_approx_eq::<f64>(&u.into_data(), tol);
        compared += 1;
    }
    for id in [
        cell.b.as_ref().unwrap().id,
        model.readout.c.as_ref().unwrap().id,
    ] {
        let f = fused_grads.get::<NdArray<f64>, 1>(id).unwrap();
        let u = unfused_grads.get::<NdArray<f64>, 1>(id).unwrap();
        f.into_data().assert_approx_eq::<f64>(&u.into_data(), tol);
        compared += 1;
    }
    assert_eq!(compared, 5);
}

#[test]
fn bad_targets_and_states_are_named_errors() {
    let _serial = one_at_a_time();
    type B = NdArray<f64>;
    let rng = &mut StdRng::seed_from_u64(2);
    let readout = Readout {
        v: Param::from_tensor(random::<B, f64, 2>([3, 4], rng)),
        c: None,
    };
    let states = random::<B, f64, 3>([2, 3, 3], rng);
    let out_of_range = Tensor::<B, 2, Int>::from_data([[0, 1, 4], [0, 0, 0]], &Default::default());
    let err = try_readout_nll(states.clone(), &readout, out_of_range, None, Reduction::Sum);
    assert!(matches!(
        err,
        Err(Error::TokenOutOfRange {
            id: 4,
            vocab_size: 4,
            ..
        })
    ));
    let wrong_width = random::<B, f64, 3>([2, 3, 5], rng);
    let ok = Tensor::<B, 2, Int>::zeros([2, 3], &Default::default());
    assert!(matches!(
        try_readout_nll(wrong_width, &readout, ok.clone(), None, Reduction::Sum),
        Err(Error::Shape { arg: "states", .. })
    ));
    assert!(matches!(
        try_readout_nll(states, &readout, ok, Some(&[3, 4]), Reduction::Sum),
        Err(Error::Lengths { .. })
    ));
}
