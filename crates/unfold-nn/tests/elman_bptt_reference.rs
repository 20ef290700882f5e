//! The Elman RNN against an independent, hand-written reference of the textbook equations.
//!
//! The reference below is plain Rust on `Vec<f64>` (no Burn): the forward pass, the summed
//! negative log-likelihood, and back-propagation through time written out by hand. The Burn
//! model (autodiff through the unrolled graph) must agree with it on logits, states, loss and
//! every gradient to ~1e-10, and with central finite differences of its own loss to ~1e-6.
//!
//! Layout (as the library stores it, row-major): `U [input, hidden]`, `W [hidden, hidden]`,
//! `b [hidden]`, `V [hidden, output]`, `c [output]`, so per sequence row
//!
//! ```text
//! a(t) = b + x(t) U + h(t-1) W
//! h(t) = tanh(a(t))
//! o(t) = c + h(t) V
//! L    = Σ_b Σ_{t < len(b)} -log softmax(o(t))[y(t)]
//! ```
//!
//! and past a sequence's end its state is held, `h(t) = h(t-1)`, with no loss.

use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use unfold_nn::{
    try_sequence_nll, ElmanRnn, ElmanRnnConfig, Reduction, SequenceModel, UnrollOptions,
};

type B = burn::backend::Autodiff<burn::backend::NdArray<f64>>;
type Device = burn::backend::ndarray::NdArrayDevice;

// ---------------------------------------------------------------------------------------------
// The plain-Rust reference (min-char-rnn style).
// ---------------------------------------------------------------------------------------------

/// Parameters, row-major, in the library's layout.
#[derive(Clone, Debug)]
struct Params {
    f: usize,
    h: usize,
    o: usize,
    u: Vec<f64>, // [f, h]
    w: Vec<f64>, // [h, h]
    b: Vec<f64>, // [h]
    v: Vec<f64>, // [h, o]
    c: Vec<f64>, // [o]
}

/// A batch of sequences. `x` is always the dense input (for token ids: their one-hot vectors).
#[derive(Clone, Debug)]
struct Batch {
    batch: usize,
    time: usize,
    x: Vec<f64>,                 // [batch, time, f]
    ids: Option<Vec<usize>>,     // [batch, time]: feed Burn these ids instead of `x`
    y: Vec<usize>,               // [batch, time] targets
    lengths: Option<Vec<usize>>, // valid steps per sequence; all `time` when None
    h0: Option<Vec<f64>>,        // [batch, h]; zeros when None
}

impl Batch {
    fn len(&self, row: usize) -> usize {
        self.lengths.as_ref().map_or(self.time, |l| l[row])
    }
}

/// Gradients of the loss (`x` and `h0` only where they are inputs of the graph).
#[derive(Clone, Debug, Default)]
struct Grads {
    u: Vec<f64>,
    w: Vec<f64>,
    b: Vec<f64>,
    v: Vec<f64>,
    c: Vec<f64>,
    h0: Vec<f64>, // [batch, h]
    x: Vec<f64>,  // [batch, time, f]
}

/// What a run (reference or Burn) produced.
#[derive(Clone, Debug)]
struct Run {
    logits: Vec<f64>, // [batch, time, o]
    states: Vec<f64>, // [batch, time, h]
    last: Vec<f64>,   // [batch, h]
    loss: f64,
    grads: Grads,
}

/// `x M` for a row vector `x` and a row-major `M` with `cols` columns.
fn row_times(x: &[f64], m: &[f64], cols: usize) -> Vec<f64> {
    (0..cols)
        .map(|j| {
            x.iter()
                .enumerate()
                .map(|(i, xi)| xi * m[i * cols + j])
                .sum()
        })
        .collect()
}

/// `M d` for a row-major `M` with `cols` columns (the textbook `Mᵀ d` on column vectors).
fn times_col(m: &[f64], cols: usize, d: &[f64]) -> Vec<f64> {
    m.chunks(cols)
        .map(|row| row.iter().zip(d).map(|(mij, dj)| mij * dj).sum())
        .collect()
}

/// `acc += aᵀ d` (outer product), `acc` row-major `[a.len(), d.len()]`.
fn add_outer(acc: &mut [f64], a: &[f64], d: &[f64]) {
    for (i, ai) in a.iter().enumerate() {
        for (j, dj) in d.iter().enumerate() {
            acc[i * d.len() + j] += ai * dj;
        }
    }
}

fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

fn add_into(acc: &mut [f64], d: &[f64]) {
    acc.iter_mut().zip(d).for_each(|(a, x)| *a += x);
}

/// `log Σ_k e^{o_k}`, stably.
fn log_sum_exp(o: &[f64]) -> f64 {
    let m = o.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + o.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// Forward pass, loss and back-propagation through time, one sequence row at a time.
fn reference(p: &Params, d: &Batch) -> Run {
    let (f, h, o, time) = (p.f, p.h, p.o, d.time);
    let mut run = Run {
        logits: vec![0.0; d.batch * time * o],
        states: vec![0.0; d.batch * time * h],
        last: vec![0.0; d.batch * h],
        loss: 0.0,
        grads: Grads {
            u: vec![0.0; f * h],
            w: vec![0.0; h * h],
            b: vec![0.0; h],
            v: vec![0.0; h * o],
            c: vec![0.0; o],
            h0: vec![0.0; d.batch * h],
            x: vec![0.0; d.batch * time * f],
        },
    };
    let g = &mut run.grads;
    for row in 0..d.batch {
        let len = d.len(row);
        let x = |t: usize| &d.x[(row * time + t) * f..(row * time + t + 1) * f];
        let y = |t: usize| d.y[row * time + t];

        // Forward. hs[t] is the state entering step t (hs[0] = h0), hs[t + 1] the state after it.
        let mut hs = vec![d
            .h0
            .as_ref()
            .map_or(vec![0.0; h], |h0| h0[row * h..(row + 1) * h].to_vec())];
        let mut probs = Vec::new();
        for t in 0..time {
            let h_prev = &hs[t];
            let h_t: Vec<f64> = if t < len {
                // a(t) = b + x(t) U + h(t-1) W
                let a = add(
                    &add(&p.b, &row_times(x(t), &p.u, h)),
                    &row_times(h_prev, &p.w, h),
                );
                // h(t) = tanh(a(t))
                a.iter().map(|a| a.tanh()).collect()
            } else {
                // Past the end the state is held: h(t) = h(t-1).
                h_prev.clone()
            };
            // o(t) = c + h(t) V
            let o_t = add(&p.c, &row_times(&h_t, &p.v, o));
            // L(t) = -log softmax(o(t))[y(t)] = logΣexp(o(t)) - o(t)[y(t)], valid steps only
            let lse = log_sum_exp(&o_t);
            if t < len {
                run.loss += lse - o_t[y(t)];
            }
            // ŷ(t) = softmax(o(t))
            probs.push(o_t.iter().map(|v| (v - lse).exp()).collect::<Vec<f64>>());
            run.logits[(row * time + t) * o..][..o].copy_from_slice(&o_t);
            run.states[(row * time + t) * h..][..h].copy_from_slice(&h_t);
            hs.push(h_t);
        }
        run.last[row * h..][..h].copy_from_slice(&hs[time]);

        // Backward. `dh_next` is the gradient reaching h(t) from the steps after t:
        // W ∂L/∂a(t+1) (or, across a held step, the held state's gradient unchanged).
        let mut dh_next = vec![0.0; h];
        for t in (0..time).rev() {
            if t >= len {
                // h(t) = h(t-1), no loss: ∂L/∂h(t-1) = ∂L/∂h(t), passed through unchanged.
                continue;
            }
            let (h_prev, h_t) = (&hs[t], &hs[t + 1]);
            // ∂L/∂o(t) = softmax(o(t)) − onehot(y(t))
            let mut d_o = probs[t].clone();
            d_o[y(t)] -= 1.0;
            // ∂L/∂c += ∂L/∂o(t);   ∂L/∂V += h(t)ᵀ ∂L/∂o(t)
            add_into(&mut g.c, &d_o);
            add_outer(&mut g.v, h_t, &d_o);
            // ∂L/∂h(t) = V ∂L/∂o(t) + W ∂L/∂a(t+1)
            let d_h = add(&times_col(&p.v, o, &d_o), &dh_next);
            // ∂L/∂a(t) = (1 − h(t)²) ⊙ ∂L/∂h(t)
            let d_a: Vec<f64> = h_t
                .iter()
                .zip(&d_h)
                .map(|(ht, dh)| (1.0 - ht * ht) * dh)
                .collect();
            // ∂L/∂b += ∂L/∂a(t);   ∂L/∂U += x(t)ᵀ ∂L/∂a(t);   ∂L/∂W += h(t-1)ᵀ ∂L/∂a(t)
            add_into(&mut g.b, &d_a);
            add_outer(&mut g.u, x(t), &d_a);
            add_outer(&mut g.w, h_prev, &d_a);
            // ∂L/∂x(t) = U ∂L/∂a(t)
            g.x[(row * time + t) * f..][..f].copy_from_slice(&times_col(&p.u, h, &d_a));
            // W ∂L/∂a(t): the gradient step t sends back to h(t-1)
            dh_next = times_col(&p.w, h, &d_a);
        }
        // ∂L/∂h(0): whatever reached the initial state.
        g.h0[row * h..][..h].copy_from_slice(&dh_next);
    }
    run
}

// ---------------------------------------------------------------------------------------------
// The same through Burn.
// ---------------------------------------------------------------------------------------------

fn host<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f64> {
    t.into_data().to_vec::<f64>().expect("f64 tensor")
}

fn param<const D: usize>(
    values: &[f64],
    shape: [usize; D],
    device: &Device,
) -> Param<Tensor<B, D>> {
    Param::from_tensor(Tensor::from_data(
        TensorData::new(values.to_vec(), shape),
        device,
    ))
}

/// An `ElmanRnn` whose parameters are replaced by `p`.
fn model(p: &Params, device: &Device) -> ElmanRnn<B> {
    let mut model = ElmanRnnConfig::new(p.f, p.h, p.o).init::<B>(device);
    let cell = &mut model.stack.layers[0];
    cell.u = param(&p.u, [p.f, p.h], device);
    cell.w = param(&p.w, [p.h, p.h], device);
    cell.b = Some(param(&p.b, [p.h], device));
    model.readout.v = param(&p.v, [p.h, p.o], device);
    model.readout.c = Some(param(&p.c, [p.o], device));
    model
}

fn ids_tensor(ids: &[usize], shape: [usize; 2], device: &Device) -> Tensor<B, 2, Int> {
    Tensor::from_data(
        TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), shape),
        device,
    )
}

/// Runs the batch through the Burn model, `loss.backward()`, and reads every gradient.
fn burn_run(p: &Params, d: &Batch) -> Run {
    let device = Default::default();
    let model = model(p, &device);
    let h0 = d.h0.as_ref().map(|h0| {
        Tensor::<B, 2>::from_data(TensorData::new(h0.clone(), [d.batch, p.h]), &device)
            .require_grad()
    });
    let mut options = UnrollOptions::new();
    if let Some(h0) = &h0 {
        options = options.with_initial_state(h0.clone());
    }
    if let Some(lengths) = &d.lengths {
        options = options.with_lengths(lengths.clone());
    }
    let dense = Tensor::<B, 3>::from_data(
        TensorData::new(d.x.clone(), [d.batch, d.time, p.f]),
        &device,
    )
    .require_grad();
    let out = match &d.ids {
        Some(ids) => model.forward(ids_tensor(ids, [d.batch, d.time], &device), &options),
        None => model.forward(dense.clone(), &options),
    };
    let targets = ids_tensor(&d.y, [d.batch, d.time], &device);
    let loss = try_sequence_nll(
        out.logits.clone(),
        targets,
        d.lengths.as_deref(),
        Reduction::Sum,
    )
    .unwrap();
    let grads = loss.backward();
    let grad1 = |t: Tensor<B, 1>| host(t.grad(&grads).expect("gradient"));
    let grad2 = |t: Tensor<B, 2>| host(t.grad(&grads).expect("gradient"));
    Run {
        logits: host(out.logits),
        states: host(out.states),
        last: host(out.last),
        loss: loss.into_scalar(),
        grads: Grads {
            u: grad2(model.cell().u.val()),
            w: grad2(model.cell().w.val()),
            b: grad1(model.cell().b.as_ref().unwrap().val()),
            v: grad2(model.readout.v.val()),
            c: grad1(model.readout.c.as_ref().unwrap().val()),
            h0: h0.map_or(Vec::new(), grad2),
            x: if d.ids.is_none() {
                host(dense.grad(&grads).expect("input gradient"))
            } else {
                Vec::new()
            },
        },
    }
}

/// Only the loss, no backward: the function the finite differences probe.
fn burn_loss(p: &Params, d: &Batch) -> f64 {
    let device = Default::default();
    let model = model(p, &device);
    let mut options = UnrollOptions::new();
    if let Some(h0) = &d.h0 {
        options = options.with_initial_state(Tensor::from_data(
            TensorData::new(h0.clone(), [d.batch, p.h]),
            &device,
        ));
    }
    if let Some(lengths) = &d.lengths {
        options = options.with_lengths(lengths.clone());
    }
    let x = Tensor::<B, 3>::from_data(
        TensorData::new(d.x.clone(), [d.batch, d.time, p.f]),
        &device,
    );
    let logits = model.forward(x, &options).logits;
    let targets = ids_tensor(&d.y, [d.batch, d.time], &device);
    try_sequence_nll(logits, targets, d.lengths.as_deref(), Reduction::Sum)
        .unwrap()
        .into_scalar()
}

// ---------------------------------------------------------------------------------------------
// Data and comparisons.
// ---------------------------------------------------------------------------------------------

fn uniform(rng: &mut StdRng, n: usize, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|_| scale * (2.0 * rng.random::<f64>() - 1.0))
        .collect()
}

/// Random weights, large enough that tanh is visibly non-linear but not saturated.
fn random_params(rng: &mut StdRng, f: usize, h: usize, o: usize) -> Params {
    Params {
        f,
        h,
        o,
        u: uniform(rng, f * h, 0.8),
        w: uniform(rng, h * h, 0.6),
        b: uniform(rng, h, 0.3),
        v: uniform(rng, h * o, 0.9),
        c: uniform(rng, o, 0.3),
    }
}

fn random_batch(rng: &mut StdRng, p: &Params, batch: usize, time: usize) -> Batch {
    Batch {
        batch,
        time,
        x: uniform(rng, batch * time * p.f, 1.0),
        ids: None,
        y: (0..batch * time)
            .map(|_| rng.random_range(0..p.o))
            .collect(),
        lengths: None,
        h0: None,
    }
}

/// `|got − want| ≤ tol · max(1, |want|)` element-wise, naming the worst entry on failure.
#[track_caller]
fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} vs {}",
        got.len(),
        want.len()
    );
    let (mut worst, mut at) = (0.0f64, 0);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / w.abs().max(1.0);
        // A NaN error must become the worst, which `err > worst` would skip.
        if err > worst || err.is_nan() {
            (worst, at) = (err, i);
        }
    }
    assert!(
        worst <= tol,
        "{what}: entry {at} is {} but the reference says {} (scaled error {worst:e} > {tol:e})",
        got[at],
        want[at]
    );
}

const TOL: f64 = 1e-10;

/// Every output and gradient of the Burn run against the reference.
#[track_caller]
fn assert_matches_reference(got: &Run, want: &Run, check_x: bool) {
    assert_close("logits", &got.logits, &want.logits, TOL);
    assert_close("states", &got.states, &want.states, TOL);
    assert_close("last", &got.last, &want.last, TOL);
    assert_close("loss", &[got.loss], &[want.loss], TOL);
    assert_close("dL/dU", &got.grads.u, &want.grads.u, TOL);
    assert_close("dL/dW", &got.grads.w, &want.grads.w, TOL);
    assert_close("dL/db", &got.grads.b, &want.grads.b, TOL);
    assert_close("dL/dV", &got.grads.v, &want.grads.v, TOL);
    assert_close("dL/dc", &got.grads.c, &want.grads.c, TOL);
    if !got.grads.h0.is_empty() {
        assert_close("dL/dh0", &got.grads.h0, &want.grads.h0, TOL);
    }
    if check_x {
        assert_close("dL/dx", &got.grads.x, &want.grads.x, TOL);
    }
}

/// Guards against a vacuous comparison: every gradient has some entry far from zero.
fn assert_gradients_are_not_trivial(run: &Run) {
    for (name, g) in [
        ("U", &run.grads.u),
        ("W", &run.grads.w),
        ("b", &run.grads.b),
        ("V", &run.grads.v),
        ("c", &run.grads.c),
    ] {
        assert!(
            g.iter().any(|v| v.abs() > 1e-3),
            "dL/d{name} is (nearly) zero: {g:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn forward_and_gradients_match_plain_rust_bptt_reference() {
    let mut rng = StdRng::seed_from_u64(1);
    let p = random_params(&mut rng, 4, 6, 5);
    let d = random_batch(&mut rng, &p, 3, 5);
    let want = reference(&p, &d);
    let got = burn_run(&p, &d);
    assert_gradients_are_not_trivial(&want);
    assert_matches_reference(&got, &want, true);
}

#[test]
fn nonzero_initial_state_and_its_gradient_match_reference() {
    let mut rng = StdRng::seed_from_u64(2);
    let p = random_params(&mut rng, 4, 6, 5);
    let mut d = random_batch(&mut rng, &p, 3, 5);
    d.h0 = Some(uniform(&mut rng, 3 * 6, 0.9));
    let want = reference(&p, &d);
    let got = burn_run(&p, &d);
    assert!(
        want.grads.h0.iter().any(|v| v.abs() > 1e-3),
        "dL/dh0 is (nearly) zero"
    );
    assert_matches_reference(&got, &want, true);
    // The initial state really is used: the same batch from zeros gives a different loss.
    let from_zeros = reference(&p, &Batch { h0: None, ..d });
    assert!((from_zeros.loss - want.loss).abs() > 1e-6);
}

#[test]
fn masked_steps_match_reference_and_get_no_gradient() {
    let mut rng = StdRng::seed_from_u64(3);
    let (batch, time, f, h) = (3, 5, 4, 6);
    let p = random_params(&mut rng, f, h, 5);
    let mut d = random_batch(&mut rng, &p, batch, time);
    let lengths = vec![5, 2, 3];
    d.lengths = Some(lengths.clone());
    d.h0 = Some(uniform(&mut rng, batch * h, 0.9));
    let want = reference(&p, &d);
    let got = burn_run(&p, &d);
    assert_gradients_are_not_trivial(&want);
    assert_matches_reference(&got, &want, true);

    // Past each end: the state is held, and the inputs there get exactly zero gradient.
    for (row, &len) in lengths.iter().enumerate() {
        let state = |t: usize| &got.states[(row * time + t) * h..(row * time + t + 1) * h];
        for t in len..time {
            assert_eq!(
                state(t),
                state(len - 1),
                "row {row} step {t}: the state should be held"
            );
            let dx = &got.grads.x[(row * time + t) * f..(row * time + t + 1) * f];
            assert!(
                dx.iter().all(|&v| v == 0.0),
                "row {row} step {t}: padded input has gradient {dx:?}"
            );
        }
        assert_eq!(&got.last[row * h..(row + 1) * h], state(len - 1));
    }

    // Garbage inputs and other targets past each end change neither the loss nor any gradient.
    let mut padded = d.clone();
    for (row, &len) in lengths.iter().enumerate() {
        for t in len..time {
            for i in 0..f {
                padded.x[(row * time + t) * f + i] = 40.0 * (2.0 * rng.random::<f64>() - 1.0);
            }
            padded.y[row * time + t] = rng.random_range(0..p.o);
        }
    }
    assert_ne!(padded.x, d.x);
    let again = burn_run(&p, &padded);
    assert_eq!(again.loss, got.loss, "loss moved when only padding changed");
    for (name, a, b) in [
        ("U", &again.grads.u, &got.grads.u),
        ("W", &again.grads.w, &got.grads.w),
        ("b", &again.grads.b, &got.grads.b),
        ("V", &again.grads.v, &got.grads.v),
        ("c", &again.grads.c, &got.grads.c),
        ("h0", &again.grads.h0, &got.grads.h0),
        ("x", &again.grads.x, &got.grads.x),
    ] {
        assert_eq!(a, b, "dL/d{name} moved when only padding changed");
    }
}

#[test]
fn token_ids_equal_one_hot_dense_inputs() {
    let mut rng = StdRng::seed_from_u64(4);
    let (batch, time, vocab, h) = (3, 6, 5, 6);
    let p = random_params(&mut rng, vocab, h, vocab);
    let ids: Vec<usize> = (0..batch * time)
        .map(|_| rng.random_range(0..vocab))
        .collect();
    let one_hot: Vec<f64> = ids
        .iter()
        .flat_map(|&id| (0..vocab).map(move |k| if k == id { 1.0 } else { 0.0 }))
        .collect();
    let d = Batch {
        batch,
        time,
        x: one_hot,
        ids: Some(ids.clone()),
        // Next-token targets, as in a language model.
        y: (0..batch * time)
            .map(|i| {
                if (i + 1) % time == 0 {
                    rng.random_range(0..vocab)
                } else {
                    ids[i + 1]
                }
            })
            .collect(),
        lengths: Some(vec![6, 3, 4]),
        h0: Some(uniform(&mut rng, batch * h, 0.5)),
    };
    let want = reference(&p, &d);
    let by_ids = burn_run(&p, &d);
    assert_gradients_are_not_trivial(&want);
    assert_matches_reference(&by_ids, &want, false);

    // And the Burn model fed the one-hot vectors as dense input agrees with itself fed ids.
    let by_dense = burn_run(
        &p,
        &Batch {
            ids: None,
            ..d.clone()
        },
    );
    assert_matches_reference(&by_dense, &want, true);
    assert_matches_reference(&by_ids, &by_dense, false);
}

#[test]
fn finite_differences_agree_with_autodiff_for_every_parameter() {
    let mut rng = StdRng::seed_from_u64(5);
    let (batch, time, f, h, o) = (2, 4, 3, 4, 3);
    let p = random_params(&mut rng, f, h, o);
    let mut d = random_batch(&mut rng, &p, batch, time);
    d.lengths = Some(vec![4, 2]);
    d.h0 = Some(uniform(&mut rng, batch * h, 0.9));
    let autodiff = burn_run(&p, &d).grads;

    // Every entry of every parameter (and of h0): which vector of a (params, batch) copy it is.
    type Entries = for<'a> fn(&'a mut Params, &'a mut Batch) -> &'a mut Vec<f64>;
    let blocks: [(&str, &Vec<f64>, Entries); 6] = [
        ("U", &autodiff.u, |p, _| &mut p.u),
        ("W", &autodiff.w, |p, _| &mut p.w),
        ("b", &autodiff.b, |p, _| &mut p.b),
        ("V", &autodiff.v, |p, _| &mut p.v),
        ("c", &autodiff.c, |p, _| &mut p.c),
        ("h0", &autodiff.h0, |_, d| d.h0.as_mut().unwrap()),
    ];
    const EPS: f64 = 1e-6;
    let mut checked = 0;
    for (name, analytic, entries) in blocks {
        for (i, &analytic_i) in analytic.iter().enumerate() {
            // The Burn loss with entry i moved by e (on copies).
            let loss_at = |e: f64| {
                let (mut p, mut d) = (p.clone(), d.clone());
                entries(&mut p, &mut d)[i] += e;
                burn_loss(&p, &d)
            };
            // Central difference: (L(θ + ε) − L(θ − ε)) / 2ε, error O(ε²) plus rounding.
            let numeric = (loss_at(EPS) - loss_at(-EPS)) / (2.0 * EPS);
            let err = (numeric - analytic_i).abs() / analytic_i.abs().max(1.0);
            assert!(
                err < 1e-6,
                "{name}[{i}]: finite difference {numeric} vs autodiff {} (scaled error {err:e})",
                analytic_i
            );
            checked += 1;
        }
    }
    assert_eq!(checked, f * h + h * h + h + h * o + o + batch * h);
}
