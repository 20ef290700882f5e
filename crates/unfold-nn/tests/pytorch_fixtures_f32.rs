//! unfold against PyTorch's `nn.RNN`, `nn.LSTM` and `nn.GRU` in f32, to 1e-5 of the largest
//! entry (see `support/pytorch_fixtures.rs`).
#![cfg(all(feature = "ndarray", feature = "pytorch"))]

#[path = "support/pytorch_fixtures.rs"]
mod support;

use burn::backend::{Autodiff, NdArray};
use support::{cases, report_worst, run_case};

#[test]
fn every_pytorch_fixture_matches_in_f32_to_1e_5_of_the_largest_entry() {
    for case in &cases() {
        run_case::<Autodiff<NdArray<f32>>>(case, 1e-5);
    }
    report_worst("f32");
}
