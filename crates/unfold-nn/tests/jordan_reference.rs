//! Gradients of the teacher-forced loss against central finite differences of the loss itself,
//! for the output-to-hidden model (every step at once) and the model with both recurrences
//! (back-propagation through time along the hidden path): an independent check of the
//! autodiff graph, every parameter entry, the learned start vector `r(0)` included.

use burn::module::{AutodiffModule, Initializer, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use unfold_nn::feedback::{ElmanJordanRnn, ElmanJordanRnnConfig, JordanRnn, JordanRnnConfig};
use unfold_nn::{sequence_nll, Reduction, SequenceInput, SequenceModel, UnrollOptions};

type Inner = burn::backend::NdArray<f64>;
type Ad = burn::backend::Autodiff<Inner>;

fn flat<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().into_vec::<f64>().unwrap()
}

/// `t` with entry `i` (row-major) moved by `delta`.
fn nudge<const D: usize>(t: Tensor<Inner, D>, i: usize, delta: f64) -> Param<Tensor<Inner, D>> {
    let dims = t.dims();
    let mut values = flat(t);
    values[i] += delta;
    Param::from_tensor(Tensor::from_data(
        TensorData::new(values, dims),
        &Default::default(),
    ))
}

fn ids<B: Backend>(batch: usize, time: usize, classes: usize, seed: u64) -> Tensor<B, 2, Int> {
    let mut rng = StdRng::seed_from_u64(seed);
    let data: Vec<i64> = (0..batch * time)
        .map(|_| rng.random_range(0..classes as i64))
        .collect();
    Tensor::from_data(TensorData::new(data, [batch, time]), &Default::default())
}

fn init() -> Initializer {
    Initializer::Normal {
        mean: 0.0,
        std: 0.7,
    }
}

/// Central differences of `loss` along every entry of every parameter, against `analytic`.
fn check(names: &[&str], analytic: Vec<Vec<f64>>, loss_with: impl Fn(usize, usize, f64) -> f64) {
    let eps = 1e-5;
    for (p, name) in names.iter().enumerate() {
        assert!(
            analytic[p].iter().any(|g| g.abs() > 1e-6),
            "∂L/∂{name} is all zero"
        );
        for (i, &got) in analytic[p].iter().enumerate() {
            let numeric = (loss_with(p, i, eps) - loss_with(p, i, -eps)) / (2.0 * eps);
            assert!(
                (numeric - got).abs() < 1e-6 * (1.0 + got.abs()),
                "∂L/∂{name}[{i}]: autodiff {got}, finite differences {numeric}"
            );
        }
    }
}

#[test]
fn jordan_teacher_forced_gradients_match_finite_differences() {
    let device = Default::default();
    let mut model = JordanRnnConfig::new(3, 4, 3)
        .with_initializer(init())
        .init::<Ad>(&device);
    model.start = Some(Param::from_tensor(Tensor::random(
        [3],
        Distribution::Normal(0.0, 1.0),
        &device,
    )));
    let x = Tensor::<Ad, 3>::random([2, 5, 3], Distribution::Normal(0.0, 1.0), &device);
    let y = ids::<Ad>(2, 5, 3, 1);
    let loss = |m: &JordanRnn<Ad>| {
        let logits = m
            .forward(x.clone(), &UnrollOptions::new().teacher_forced(y.clone()))
            .logits;
        sequence_nll(logits, y.clone(), None, Reduction::Sum)
    };
    let grads = loss(&model).backward();
    let analytic = vec![
        flat(model.u.grad(&grads).unwrap()),
        flat(model.w.grad(&grads).unwrap()),
        flat(model.b.as_ref().unwrap().grad(&grads).unwrap()),
        flat(model.start.as_ref().unwrap().grad(&grads).unwrap()),
        flat(model.readout.v.grad(&grads).unwrap()),
        flat(model.readout.c.as_ref().unwrap().grad(&grads).unwrap()),
    ];
    let base: JordanRnn<Inner> = model.valid();
    let (x, y) = (x.inner(), y.inner());
    let loss_with = |p: usize, i: usize, delta: f64| {
        let mut m = base.clone();
        match p {
            0 => m.u = nudge(m.u.val(), i, delta),
            1 => m.w = nudge(m.w.val(), i, delta),
            2 => m.b = Some(nudge(m.b.as_ref().unwrap().val(), i, delta)),
            3 => m.start = Some(nudge(m.start.as_ref().unwrap().val(), i, delta)),
            4 => m.readout.v = nudge(m.readout.v.val(), i, delta),
            _ => m.readout.c = Some(nudge(m.readout.c.as_ref().unwrap().val(), i, delta)),
        }
        let logits = m
            .forward(x.clone(), &UnrollOptions::new().teacher_forced(y.clone()))
            .logits;
        sequence_nll(logits, y.clone(), None, Reduction::Sum).into_scalar()
    };
    check(&["U", "W", "b", "r(0)", "V", "c"], analytic, loss_with);
}

#[test]
fn both_recurrences_teacher_forced_bptt_matches_finite_differences() {
    let device = Default::default();
    let mut model = ElmanJordanRnnConfig::new(4, 4, 3)
        .with_initializer(init())
        .init::<Ad>(&device);
    model.start = Some(Param::from_tensor(Tensor::random(
        [3],
        Distribution::Normal(0.0, 1.0),
        &device,
    )));
    let x = ids::<Ad>(2, 6, 4, 2);
    let y = ids::<Ad>(2, 6, 3, 3);
    // Unequal lengths: steps past a sequence's end add no loss and no gradient.
    let lengths = [6, 4];
    let loss = |m: &ElmanJordanRnn<Ad>| {
        let o = UnrollOptions::new()
            .with_lengths(lengths)
            .teacher_forced(y.clone());
        let logits = m.forward(SequenceInput::Tokens(x.clone()), &o).logits;
        sequence_nll(logits, y.clone(), Some(&lengths), Reduction::Sum)
    };
    let grads = loss(&model).backward();
    let analytic = vec![
        flat(model.u.grad(&grads).unwrap()),
        flat(model.w_hh.as_ref().unwrap().grad(&grads).unwrap()),
        flat(model.b.as_ref().unwrap().grad(&grads).unwrap()),
        flat(model.w.grad(&grads).unwrap()),
        flat(model.start.as_ref().unwrap().grad(&grads).unwrap()),
        flat(model.readout.v.grad(&grads).unwrap()),
        flat(model.readout.c.as_ref().unwrap().grad(&grads).unwrap()),
    ];
    let base: ElmanJordanRnn<Inner> = model.valid();
    let (x, y) = (x.inner(), y.inner());
    let loss_with = |p: usize, i: usize, delta: f64| {
        let mut m = base.clone();
        match p {
            0 => m.u = nudge(m.u.val(), i, delta),
            1 => m.w_hh = Some(nudge(m.w_hh.as_ref().unwrap().val(), i, delta)),
            2 => m.b = Some(nudge(m.b.as_ref().unwrap().val(), i, delta)),
            3 => m.w = nudge(m.w.val(), i, delta),
            4 => m.start = Some(nudge(m.start.as_ref().unwrap().val(), i, delta)),
            5 => m.readout.v = nudge(m.readout.v.val(), i, delta),
            _ => m.readout.c = Some(nudge(m.readout.c.as_ref().unwrap().val(), i, delta)),
        }
        let o = UnrollOptions::new()
            .with_lengths(lengths)
            .teacher_forced(y.clone());
        let logits = m.forward(SequenceInput::Tokens(x.clone()), &o).logits;
        sequence_nll(logits, y.clone(), Some(&lengths), Reduction::Sum).into_scalar()
    };
    check(
        &["U", "W_hh", "b", "W", "r(0)", "V", "c"],
        analytic,
        loss_with,
    );
}
