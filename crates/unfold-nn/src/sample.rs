//! Sampling tokens from a model's output distribution, and free-running generation.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use rand::Rng;

use crate::error::{Error, Result};
use crate::readout::Readout;
use crate::recurrence::{drive_at, Recurrence, SequenceInput};

/// Draws one class from `softmax(logits / temperature)`.
///
/// `temperature` < 1 sharpens the distribution (→ argmax as it approaches 0), > 1 flattens
/// it. Computed on the host in f64: generation reads one row of logits per step anyway.
pub fn sample_logits(logits: &[f32], temperature: f64, rng: &mut impl Rng) -> Result<usize> {
    check_temperature(temperature)?;
    if logits.is_empty() {
        return Err(Error::Empty {
            arg: "logits",
            what: "no classes to sample from".into(),
        });
    }
    if logits.iter().any(|l| !l.is_finite()) {
        return Err(Error::NonFinite { arg: "logits" });
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| ((l as f64 - max) / temperature).exp())
        .collect();
    let mut u = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (class, w) in weights.iter().enumerate() {
        u -= w;
        if u < 0.0 {
            return Ok(class);
        }
    }
    Ok(weights.len() - 1) // u landed on the total through rounding
}

/// A temperature must be a positive, finite number.
pub fn check_temperature(temperature: f64) -> Result<()> {
    if temperature > 0.0 && temperature.is_finite() {
        Ok(())
    } else {
        Err(Error::config(
            "temperature",
            temperature,
            "must be a positive, finite number",
        ))
    }
}

/// Free-running generation from a recurrence read out at every step.
///
/// Warms the state on `prompt` (one unroll), then `steps` times: samples `x(t+1)` from
/// `softmax(o(t) / temperature)` and feeds it back as the next input. Returns the generated ids
/// (without the prompt). Deterministic for a given `rng` state.
pub fn generate<B: Backend, C: Recurrence<B>>(
    cell: &C,
    readout: &Readout<B>,
    prompt: &[usize],
    steps: usize,
    temperature: f64,
    rng: &mut impl Rng,
    device: &B::Device,
) -> Result<Vec<usize>> {
    check_temperature(temperature)?;
    if prompt.is_empty() {
        return Err(Error::Empty {
            arg: "prompt",
            what: "generation needs at least one token to start from".into(),
        });
    }
    let prompt_ids = ids_tensor::<B>(prompt, device);
    let warm = crate::recurrence::unroll(cell, prompt_ids, &Default::default())?;
    let mut h = warm.last;
    let mut generated = Vec::with_capacity(steps);
    for _ in 0..steps {
        let logits = readout
            .forward(h.clone())
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32 logits");
        let next = sample_logits(&logits, temperature, rng)?;
        generated.push(next);
        let drive = cell.drive(SequenceInput::Tokens(ids_tensor::<B>(&[next], device)));
        h = cell.step(h, drive_at(&drive, 0));
    }
    Ok(generated)
}

/// A `[1, len]` tensor of token ids.
fn ids_tensor<B: Backend>(ids: &[usize], device: &B::Device) -> Tensor<B, 2, Int> {
    let data: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
    Tensor::from_data(TensorData::new(data, [1, ids.len()]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elman::ElmanRnnConfig;
    use rand::{rngs::StdRng, SeedableRng};

    type TestBackend = burn::backend::NdArray;

    #[test]
    fn sampling_follows_the_softmax_distribution() {
        let logits = [0.0f32, (3.0f32).ln(), f32::NEG_INFINITY.max(-1e9)];
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = [0usize; 3];
        for _ in 0..20_000 {
            counts[sample_logits(&logits, 1.0, &mut rng).unwrap()] += 1;
        }
        // p = [1/4, 3/4, ~0]
        let p1 = counts[1] as f64 / 20_000.0;
        assert!((p1 - 0.75).abs() < 0.02, "p1 = {p1}");
        assert_eq!(counts[2], 0);
    }

    #[test]
    fn low_temperature_approaches_argmax() {
        let mut rng = StdRng::seed_from_u64(2);
        let logits = [0.1f32, 0.3, 0.2];
        assert!((0..100).all(|_| sample_logits(&logits, 1e-3, &mut rng).unwrap() == 1));
    }

    #[test]
    fn bad_temperature_and_logits_are_named_errors() {
        let mut rng = StdRng::seed_from_u64(3);
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                sample_logits(&[0.0, 1.0], t, &mut rng),
                Err(Error::Config {
                    field: "temperature",
                    ..
                })
            ));
        }
        assert!(matches!(
            sample_logits(&[0.0, f32::NAN], 1.0, &mut rng),
            Err(Error::NonFinite { .. })
        ));
        assert!(matches!(
            sample_logits(&[], 1.0, &mut rng),
            Err(Error::Empty { .. })
        ));
    }

    #[test]
    fn generation_is_deterministic_under_a_seed_and_stays_in_vocabulary() {
        let device = Default::default();
        let model = ElmanRnnConfig::new(7, 8, 7).init::<TestBackend>(&device);
        let run = |seed| {
            generate(
                &model.cell,
                &model.readout,
                &[1, 2, 3],
                40,
                1.0,
                &mut StdRng::seed_from_u64(seed),
                &device,
            )
            .unwrap()
        };
        let a = run(5);
        assert_eq!(a.len(), 40);
        assert!(a.iter().all(|&id| id < 7));
        assert_eq!(a, run(5));
        assert_ne!(a, run(6));
        let err = generate(
            &model.cell,
            &model.readout,
            &[],
            5,
            1.0,
            &mut StdRng::seed_from_u64(0),
            &device,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Empty { arg: "prompt", .. }));
        let err = generate(
            &model.cell,
            &model.readout,
            &[9],
            5,
            1.0,
            &mut StdRng::seed_from_u64(0),
            &device,
        )
        .unwrap_err();
        assert!(matches!(err, Error::TokenOutOfRange { id: 9, .. }));
    }
}
