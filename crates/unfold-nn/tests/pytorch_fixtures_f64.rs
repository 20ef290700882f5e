//! unfold against PyTorch's `nn.RNN`, `nn.LSTM` and `nn.GRU` in f64 (see
//! `support/pytorch_fixtures.rs`), and the fixture grid itself.
#![cfg(all(feature = "ndarray", feature = "pytorch"))]

#[path = "support/pytorch_fixtures.rs"]
mod support;

use burn::backend::{Autodiff, NdArray};
use support::{cases, report_worst, run_case, Case, Reference};

#[test]
fn every_pytorch_fixture_matches_in_f64() {
    let cases = cases();
    assert_eq!(cases.len(), 42, "the fixture grid");
    for case in &cases {
        run_case::<Autodiff<NdArray<f64>>>(case, 1e-9);
    }
    report_worst("f64");
}

#[test]
fn fixtures_cover_the_grid_the_issue_asks_for() {
    let cases = cases();
    let count = |f: &dyn Fn(&Case) -> bool| cases.iter().filter(|c| f(c)).count();
    for kind in ["rnn", "lstm", "gru"] {
        assert!(
            count(&|c| c.kind == kind && c.has_lengths) > 0,
            "{kind} with lengths"
        );
        assert!(
            count(&|c| c.kind == kind && c.bidirectional) > 0,
            "{kind} bidirectional"
        );
        assert!(
            count(&|c| c.kind == kind && c.num_layers == 2) > 0,
            "{kind} stacked"
        );
    }
    for layers in 1..=3 {
        for nl in ["tanh", "relu"] {
            let n = count(&|c| {
                c.kind == "rnn"
                    && c.bias
                    && c.num_layers == layers
                    && c.nonlinearity.as_deref() == Some(nl)
            });
            assert_eq!(
                n, 4,
                "nn.RNN, {layers} layers, {nl}: uni/bi × lengths or not"
            );
        }
    }
    assert!(count(&|c| !c.bias) >= 2, "cases without biases");
    // The reference files name every tensor the test reads.
    for case in &cases {
        let reference = Reference::read(case);
        for name in [
            "input",
            "h0",
            "output",
            "h_n",
            "logits",
            "targets",
            "loss",
            "grad.input",
        ] {
            assert!(reference.has(name), "{}: {name}", case.name);
        }
    }
}
