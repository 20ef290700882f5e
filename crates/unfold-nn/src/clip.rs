//! Gradient clipping by the global norm of all parameters.
//!
//! Back-propagation through many time steps multiplies by `W` (and `tanh'`) once per step, so a
//! recurrent network's gradient now and then explodes (Goodfellow et al., §10.11.1). Clipping
//! rescales the gradient when it is too long:
//!
//! ```text
//! ‖g‖ = sqrt(Σ_params Σ_entries g²)          (one norm over every parameter together)
//! g ← g · min(1, max_norm / (‖g‖ + ε))
//! ```
//!
//! which keeps the gradient's direction and bounds the step. Burn's
//! `GradientClippingConfig::Norm` clips each parameter tensor by its own norm, which changes the
//! direction (each tensor is shrunk by a different factor); [`clip_global_norm`] is the global
//! version PyTorch's `torch.nn.utils.clip_grad_norm_` computes, with the same `ε = 1e-6`.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{backend::AutodiffBackend, backend::Backend, ElementConversion, Tensor};

use crate::error::{Error, Result};

/// Added to the norm before dividing, as PyTorch's `clip_grad_norm_` does.
pub const EPSILON: f64 = 1e-6;

/// Sums the squares of every parameter's gradient, on the device.
struct SquaredNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let squares = grad.square().sum();
            self.total = Some(match self.total.take() {
                Some(total) => total + squares,
                None => squares,
            });
        }
    }
}

/// Collects the ids and ranks of the parameters that have a gradient.
struct Ids<'a> {
    grads: &'a GradientsParams,
    found: Vec<(ParamId, usize)>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Ids<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.grads.get::<B::InnerBackend, D>(param.id).is_some() {
            self.found.push((param.id, D));
        }
    }
}

/// The global L2 norm `sqrt(Σ g²)` over every gradient of `module`'s parameters in `grads`
/// (parameters without a gradient count as zero).
pub fn global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> f64 {
    let mut visitor = SquaredNorm::<B> { grads, total: None };
    module.visit(&mut visitor);
    match visitor.total {
        Some(total) => total.into_scalar().elem::<f64>().sqrt(),
        None => 0.0,
    }
}

/// Multiplies one registered gradient by `scale`, whatever its rank.
fn scale_grad<B: Backend, const D: usize>(grads: &mut GradientsParams, id: ParamId, scale: f64) {
    if let Some(grad) = grads.remove::<B, D>(id) {
        grads.register::<B, D>(id, grad.mul_scalar(scale));
    }
}

/// Scales every gradient of `module` in `grads` by `min(1, max_norm / (‖g‖ + 1e-6))`, where
/// `‖g‖` is the global norm over all of them, and returns the norm before clipping (worth
/// logging: a norm far above `max_norm` at every step means the learning rate is too high).
///
/// # Errors
///
/// - [`Error::Config`] if `max_norm` is not a positive finite number.
/// - [`Error::NonFinite`] if the gradient holds NaN or infinity (no rescaling can repair it;
///   the gradients are dropped with the error: skip the step).
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    mut grads: GradientsParams,
    max_norm: f64,
) -> Result<(GradientsParams, f64)> {
    if !(max_norm > 0.0 && max_norm.is_finite()) {
        return Err(Error::config(
            "max_norm",
            max_norm,
            "must be a positive, finite number",
        ));
    }
    let norm = global_norm::<B, M>(module, &grads);
    if !norm.is_finite() {
        return Err(Error::NonFinite { arg: "gradients" });
    }
    let scale = max_norm / (norm + EPSILON);
    if scale < 1.0 {
        let mut ids = Ids {
            grads: &grads,
            found: Vec::new(),
        };
        module.visit(&mut ids);
        for (id, rank) in ids.found {
            // `GradientsParams` is keyed by id with the rank in the type: dispatch on it.
            match rank {
                1 => scale_grad::<B::InnerBackend, 1>(&mut grads, id, scale),
                2 => scale_grad::<B::InnerBackend, 2>(&mut grads, id, scale),
                3 => scale_grad::<B::InnerBackend, 3>(&mut grads, id, scale),
                4 => scale_grad::<B::InnerBackend, 4>(&mut grads, id, scale),
                5 => scale_grad::<B::InnerBackend, 5>(&mut grads, id, scale),
                6 => scale_grad::<B::InnerBackend, 6>(&mut grads, id, scale),
                _ => unreachable!("parameters of rank above 6 are not used by unfold models"),
            }
        }
    }
    Ok((grads, norm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{sequence_nll, ElmanRnnConfig, Reduction, SequenceModel, UnrollOptions};
    use burn::module::Initializer;
    use burn::tensor::{Int, TensorData};

    type TestBackend = burn::backend::Autodiff<burn::backend::NdArray<f64>>;
    type Inner = burn::backend::NdArray<f64>;

    fn model_and_grads() -> (crate::ElmanRnn<TestBackend>, GradientsParams) {
        let device = Default::default();
        let model = ElmanRnnConfig::new(4, 6, 4)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 1.5,
            })
            .init::<TestBackend>(&device);
        let ids =
            Tensor::<TestBackend, 2, Int>::from_data([[0, 1, 2, 3, 2], [3, 3, 0, 1, 1]], &device);
        let targets =
            Tensor::<TestBackend, 2, Int>::from_data([[1, 2, 3, 2, 0], [3, 0, 1, 1, 2]], &device);
        let out = model.forward(ids, &UnrollOptions::new());
        let loss = sequence_nll(out.logits, targets, None, Reduction::Sum);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        (model, grads)
    }

    /// Every gradient of the model as host vectors, in a fixed order.
    fn host_grads(model: &crate::ElmanRnn<TestBackend>, grads: &GradientsParams) -> Vec<Vec<f64>> {
        let two = |id| {
            grads
                .get::<Inner, 2>(id)
                .unwrap()
                .into_data()
                .to_vec::<f64>()
                .unwrap()
        };
        let one = |id| {
            grads
                .get::<Inner, 1>(id)
                .unwrap()
                .into_data()
                .to_vec::<f64>()
                .unwrap()
        };
        vec![
            two(model.cell().u.id),
            two(model.cell().w.id),
            one(model.cell().b.as_ref().unwrap().id),
            two(model.readout.v.id),
            one(model.readout.c.as_ref().unwrap().id),
        ]
    }

    #[test]
    fn global_norm_is_the_norm_of_all_gradients_concatenated() {
        let (model, grads) = model_and_grads();
        let by_hand: f64 = host_grads(&model, &grads)
            .iter()
            .flatten()
            .map(|g| g * g)
            .sum::<f64>()
            .sqrt();
        assert!(by_hand > 0.0);
        assert!((global_norm::<TestBackend, _>(&model, &grads) - by_hand).abs() < 1e-12);
    }

    #[test]
    fn clipping_rescales_every_tensor_by_one_common_factor() {
        let (model, grads) = model_and_grads();
        let before = host_grads(&model, &grads);
        let norm: f64 = before.iter().flatten().map(|g| g * g).sum::<f64>().sqrt();
        let max_norm = norm / 4.0;
        let (clipped, reported) = clip_global_norm(&model, grads, max_norm).unwrap();
        assert!((reported - norm).abs() < 1e-12);
        let after = host_grads(&model, &clipped);
        let factor = max_norm / (norm + EPSILON);
        for (b, a) in before.iter().flatten().zip(after.iter().flatten()) {
            assert!((a - b * factor).abs() < 1e-12, "{a} vs {b} * {factor}");
        }
        let new_norm: f64 = after.iter().flatten().map(|g| g * g).sum::<f64>().sqrt();
        assert!((new_norm - max_norm).abs() < 1e-5 * max_norm);
        // Per-tensor clipping (Burn's `GradientClippingConfig::Norm`) would shrink each tensor
        // by its own factor; here the ratios of tensor norms are preserved.
        let tensor_norm = |g: &Vec<f64>| g.iter().map(|x| x * x).sum::<f64>().sqrt();
        let ratio_before = tensor_norm(&before[0]) / tensor_norm(&before[1]);
        let ratio_after = tensor_norm(&after[0]) / tensor_norm(&after[1]);
        assert!((ratio_before - ratio_after).abs() < 1e-12);
    }

    #[test]
    fn gradients_below_the_threshold_are_left_alone() {
        let (model, grads) = model_and_grads();
        let before = host_grads(&model, &grads);
        let norm: f64 = before.iter().flatten().map(|g| g * g).sum::<f64>().sqrt();
        let (kept, _) = clip_global_norm(&model, grads, norm * 2.0).unwrap();
        assert_eq!(host_grads(&model, &kept), before);
    }

    #[test]
    fn bad_threshold_and_non_finite_gradients_are_named_errors() {
        let (model, grads) = model_and_grads();
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = clip_global_norm(&model, GradientsParams::new(), bad).unwrap_err();
            assert!(err.to_string().contains("`max_norm`"), "{err}");
        }
        let mut poisoned = grads;
        let id = model.cell().w.id;
        let w = poisoned.remove::<Inner, 2>(id).unwrap();
        let nan = Tensor::<Inner, 2>::from_data(
            TensorData::new(vec![f64::NAN; w.shape().num_elements()], w.shape()),
            &w.device(),
        );
        poisoned.register::<Inner, 2>(id, nan);
        assert!(matches!(
            clip_global_norm(&model, poisoned, 1.0),
            Err(Error::NonFinite { arg: "gradients" })
        ));
    }
}
