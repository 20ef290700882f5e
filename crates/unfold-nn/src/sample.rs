//! Sampling tokens from a model's output distribution, and free-running generation.
//!
//! Every model that feeds its outputs back implements [`Autoregressive`](crate::Autoregressive) (read a prompt into a
//! state; the next token's logits from a state; feed a chosen token back to get the next
//! state), and one [`generate`] function runs any of them: it warms the state on each prompt,
//! then runs free for [`GenerateConfig::steps`] steps, choosing each token by [`Sampling`]
//! (greedy, temperature or top-k) and feeding it back:
//!
//! ```text
//! h ← warm(prompt)
//! repeat steps times:   ŷ ~ softmax(o(h) / temperature)   (or argmax, or within the top k)
//!                       h ← feed(h, ŷ)
//! ```
//!
//! Implemented by the hidden-to-hidden [`ElmanRnn`](crate::ElmanRnn) and by the output-to-hidden
//! [`JordanRnn`](crate::JordanRnn) and [`ElmanJordanRnn`](crate::ElmanJordanRnn).

use burn::config::Config;
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Autoregressive;
use crate::ops::generation::fused_generate;
#[doc(hidden)]
pub use crate::ops::generation::{GenerationLayer, GenerationNet};

/// Draws one class from `softmax(logits / temperature)`.
///
/// `temperature` < 1 sharpens the distribution (→ argmax as it approaches 0), > 1 flattens
/// it. Computed on the host in f64: generation reads one row of logits per step anyway.
pub fn sample_logits(logits: &[f32], temperature: f64, rng: &mut impl Rng) -> Result<usize> {
    check_temperature(temperature)?;
    check_logits(logits)?;
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

fn check_logits(logits: &[f32]) -> Result<()> {
    if logits.is_empty() {
        return Err(Error::Empty {
            arg: "logits",
            what: "no classes to sample from".into(),
        });
    }
    if logits.iter().any(|l| !l.is_finite()) {
        return Err(Error::NonFinite { arg: "logits" });
    }
    Ok(())
}

/// How [`generate`] chooses each token from the logits `o`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Sampling {
    /// `argmax o` (the first one on ties): deterministic, the mode of every conditional.
    Greedy,
    /// A draw from `softmax(o / temperature)`; `temperature` > 0.
    Temperature(f64),
    /// A draw from `softmax(o / temperature)` restricted to the `k` largest logits (ties
    /// broken towards the lower id); `k` ≥ 1, and `k` ≥ the vocabulary keeps every class.
    TopK {
        /// How many of the largest logits to keep.
        k: usize,
        /// The temperature applied to those.
        temperature: f64,
    },
}

impl Sampling {
    /// Checks the temperature (positive, finite) and `k` (at least 1).
    pub fn validate(&self) -> Result<()> {
        match *self {
            Sampling::Greedy => Ok(()),
            Sampling::Temperature(temperature) => check_temperature(temperature),
            Sampling::TopK { k, temperature } => {
                if k == 0 {
                    return Err(Error::config(
                        "k",
                        k,
                        "top-k sampling needs at least 1 candidate",
                    ));
                }
                check_temperature(temperature)
            }
        }
    }

    /// Chooses one class from one row of logits.
    pub fn choose(&self, logits: &[f32], rng: &mut impl Rng) -> Result<usize> {
        self.validate()?;
        check_logits(logits)?;
        match *self {
            Sampling::Greedy => Ok(argmax(logits)),
            Sampling::Temperature(temperature) => sample_logits(logits, temperature, rng),
            Sampling::TopK { k, temperature } => {
                let mut order: Vec<usize> = (0..logits.len()).collect();
                // Stable sort: equal logits keep the lower id first.
                order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
                order.truncate(k.min(logits.len()));
                let kept: Vec<f32> = order.iter().map(|&class| logits[class]).collect();
                Ok(order[sample_logits(&kept, temperature, rng)?])
            }
        }
    }
}

/// Index of the largest value, the first one on ties.
fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(best, max), (i, &v)| {
            if v > max {
                (i, v)
            } else {
                (best, max)
            }
        })
        .0
}

/// A model generates by feeding outputs back as inputs only when both have the same width.
pub(crate) fn check_feeds_back(model: &str, input_size: usize, output_size: usize) -> Result<()> {
    if input_size == output_size {
        return Ok(());
    }
    Err(Error::config(
        "input_size",
        input_size,
        format!(
            "{model} generates by feeding each output token back as the next input, so its \
             input_size must equal its output_size ({output_size})"
        ),
    ))
}

/// Configuration of [`generate`].
#[derive(Config, Debug)]
pub struct GenerateConfig {
    /// Tokens to generate after each prompt (at least 1).
    pub steps: usize,
    /// How each token is chosen. Default: `Temperature(1.0)`, a draw from the model's own
    /// distribution.
    #[config(default = "Sampling::Temperature(1.0)")]
    pub sampling: Sampling,
    /// Seed of the sampling. Stream `i` of a batch draws from its own generator seeded with
    /// `seed + i`, so its tokens do not depend on the other streams. Default: 0.
    #[config(default = 0)]
    pub seed: u64,
}

/// The generator stream `stream` draws from: seeded `seed + stream` (see
/// [`GenerateConfig::seed`]).
pub(crate) fn stream_rng(seed: u64, stream: usize) -> StdRng {
    StdRng::seed_from_u64(seed.wrapping_add(stream as u64))
}

/// Free-running generation, batched: warms the state on every prompt, then `config.steps`
/// times chooses a token per stream by `config.sampling` and feeds it back.
///
/// Returns the generated ids of each stream (without its prompt). Prompts may differ in length.
/// Reproducible: the same model, prompts and config give the same tokens. Errors on an empty
/// batch or prompt, ids outside the vocabulary, zero steps, a temperature ≤ 0 or `k` = 0.
///
/// Where the backend has a generation kernel (ndarray) and the model is one of unfold's own
/// recurrences (Elman, any number of layers; Jordan; Elman–Jordan), the free-running loop after
/// the prompts runs as one fused operation ([`Autoregressive::generation_net`]): the same steps
/// and the same draws from the same generators, without Burn's per-operation overhead per token.
/// Other models and backends run it step by step through `next_logits` and `feed`.
pub fn generate<B: Backend, M: Autoregressive<B> + ?Sized>(
    model: &M,
    prompts: &[impl AsRef<[usize]>],
    config: &GenerateConfig,
    device: &B::Device,
) -> Result<Vec<Vec<usize>>> {
    generate_with(model, prompts, config, device, true)
}

/// [`generate`] always through the step-by-step loop (`next_logits`, `feed`), never the fused
/// kernel: the reference the fused path is tested and benchmarked against.
#[doc(hidden)]
pub fn generate_step_by_step<B: Backend, M: Autoregressive<B> + ?Sized>(
    model: &M,
    prompts: &[impl AsRef<[usize]>],
    config: &GenerateConfig,
    device: &B::Device,
) -> Result<Vec<Vec<usize>>> {
    generate_with(model, prompts, config, device, false)
}

fn generate_with<B: Backend, M: Autoregressive<B> + ?Sized>(
    model: &M,
    prompts: &[impl AsRef<[usize]>],
    config: &GenerateConfig,
    device: &B::Device,
    allow_fused: bool,
) -> Result<Vec<Vec<usize>>> {
    config.sampling.validate()?;
    if config.steps == 0 {
        return Err(Error::config(
            "steps",
            config.steps,
            "must be at least 1 token to generate",
        ));
    }
    let (ids, lengths) = pad_prompts::<B>(prompts, model.output_size(), device)?;
    let batch = lengths.len();
    let mut state = model.warm(ids, &lengths)?;
    if allow_fused {
        if let Some(tokens) = model
            .generation_net(&state)
            .and_then(|net| fused_generate(net, config))
        {
            return tokens;
        }
    }
    let mut rngs: Vec<StdRng> = (0..batch).map(|s| stream_rng(config.seed, s)).collect();
    let mut generated = vec![Vec::with_capacity(config.steps); batch];
    for step in 0..config.steps {
        // One device read per step for the whole batch.
        let logits = model
            .next_logits(&state)
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32 logits");
        let width = logits.len() / batch;
        let mut chosen = Vec::with_capacity(batch);
        for (stream, rng) in rngs.iter_mut().enumerate() {
            let row = &logits[stream * width..(stream + 1) * width];
            let token = config.sampling.choose(row, rng)?;
            generated[stream].push(token);
            chosen.push(token as i64);
        }
        if step + 1 < config.steps {
            let tokens = Tensor::from_data(TensorData::new(chosen, [batch]), device);
            state = model.feed(state, tokens);
        }
    }
    Ok(generated)
}

/// The prompts as one `[batch, max_len]` tensor (padded with id 0) and their lengths, checked.
fn pad_prompts<B: Backend>(
    prompts: &[impl AsRef<[usize]>],
    vocab_size: usize,
    device: &B::Device,
) -> Result<(Tensor<B, 2, Int>, Vec<usize>)> {
    if prompts.is_empty() {
        return Err(Error::Empty {
            arg: "prompts",
            what: "no prompts to generate from".into(),
        });
    }
    let lengths: Vec<usize> = prompts.iter().map(|p| p.as_ref().len()).collect();
    if let Some(row) = lengths.iter().position(|&len| len == 0) {
        return Err(Error::Empty {
            arg: "prompts",
            what: format!(
                "prompt {row} has no tokens; generation needs at least one to start from"
            ),
        });
    }
    let width = *lengths.iter().max().expect("at least one prompt");
    let mut data = Vec::with_capacity(prompts.len() * width);
    for prompt in prompts {
        let prompt = prompt.as_ref();
        if let Some(&id) = prompt.iter().find(|&&id| id >= vocab_size) {
            return Err(Error::TokenOutOfRange {
                arg: "prompts",
                id: id as i64,
                vocab_size,
            });
        }
        data.extend(prompt.iter().map(|&id| id as i64));
        data.extend(std::iter::repeat_n(0, width - prompt.len()));
    }
    let ids = Tensor::from_data(TensorData::new(data, [prompts.len(), width]), device);
    Ok((ids, lengths))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elman::ElmanRnn;
    use crate::elman::ElmanRnnConfig;
    use crate::model::SequenceModel;
    use crate::recurrence::{State, UnrollOptions};
    use burn::module::{AutodiffModule, Initializer};

    type TestBackend = burn::backend::NdArray<f64>;
    type Device = burn::backend::ndarray::NdArrayDevice;

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
    fn top_k_draws_only_the_k_largest_in_their_renormalised_proportions() {
        // softmax restricted to {1, 3}: p(3) = e^2 / (e^1 + e^2).
        let logits = [0.0f32, 1.0, -3.0, 2.0, 0.5];
        let sampling = Sampling::TopK {
            k: 2,
            temperature: 1.0,
        };
        let mut rng = StdRng::seed_from_u64(4);
        let mut counts = [0usize; 5];
        for _ in 0..20_000 {
            counts[sampling.choose(&logits, &mut rng).unwrap()] += 1;
        }
        assert_eq!(counts[0] + counts[2] + counts[4], 0, "{counts:?}");
        let p3 = counts[3] as f64 / 20_000.0;
        let expected = 1.0 / (1.0 + (-1f64).exp());
        assert!(
            (p3 - expected).abs() < 0.02,
            "p3 = {p3}, expected {expected}"
        );
        // k = 1 is greedy; k past the vocabulary keeps every class (plain temperature).
        let one = Sampling::TopK {
            k: 1,
            temperature: 5.0,
        };
        assert!((0..50).all(|_| one.choose(&logits, &mut rng).unwrap() == 3));
        let all = Sampling::TopK {
            k: 99,
            temperature: 1.0,
        };
        let (mut a, mut b) = (StdRng::seed_from_u64(9), StdRng::seed_from_u64(9));
        for _ in 0..50 {
            assert_eq!(
                all.choose(&logits, &mut a).unwrap(),
                [3, 1, 4, 0, 2][sample_logits(&[2.0, 1.0, 0.5, 0.0, -3.0], 1.0, &mut b).unwrap()]
            );
        }
        assert_eq!(
            Sampling::Greedy.choose(&[1.0, 4.0, 4.0], &mut rng).unwrap(),
            1
        );
    }

    fn model(device: &Device) -> ElmanRnn<TestBackend> {
        // Large weights, so the generated tokens depend visibly on the prompt and each other.
        ElmanRnnConfig::new(6, 8, 6)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 1.0,
            })
            .init(device)
    }

    /// Greedy continuation computed another way: re-run the whole forward pass on the prompt
    /// plus everything generated so far, and take the argmax of the last step's logits.
    fn greedy_by_rerunning(
        model: &ElmanRnn<TestBackend>,
        prompt: &[usize],
        steps: usize,
    ) -> Vec<usize> {
        let device = Default::default();
        let mut seq = prompt.to_vec();
        for _ in 0..steps {
            let data: Vec<i64> = seq.iter().map(|&id| id as i64).collect();
            let ids = Tensor::<TestBackend, 2, Int>::from_data(
                TensorData::new(data, [1, seq.len()]),
                &device,
            );
            let logits = model.forward(ids, &UnrollOptions::new()).logits;
            let last = logits
                .slice([0..1, seq.len() - 1..seq.len(), 0..6])
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .unwrap();
            seq.push(argmax(&last));
        }
        seq[prompt.len()..].to_vec()
    }

    #[test]
    fn greedy_generation_is_the_argmax_of_the_model_rerun_on_its_own_output() {
        let device = Default::default();
        let model = model(&device);
        let prompts = [vec![1, 2, 3], vec![5], vec![0, 4, 4, 4, 2]];
        let config = GenerateConfig::new(12).with_sampling(Sampling::Greedy);
        let got = generate(&model, &prompts, &config, &device).unwrap();
        for (prompt, got) in prompts.iter().zip(&got) {
            assert_eq!(
                got,
                &greedy_by_rerunning(&model, prompt, 12),
                "prompt {prompt:?}"
            );
        }
        // The prompt matters (a generator that ignored it would pass the comparison above
        // only by accident for all three).
        assert!(got[0] != got[1] || got[1] != got[2]);
    }

    #[test]
    fn batched_generation_equals_each_stream_alone_and_is_reproducible() {
        let device = Default::default();
        let model = model(&device);
        let prompts = [vec![1, 2, 3], vec![5], vec![0, 4]];
        for sampling in [
            Sampling::Temperature(1.3),
            Sampling::TopK {
                k: 3,
                temperature: 0.9,
            },
        ] {
            let config = GenerateConfig::new(30).with_sampling(sampling).with_seed(7);
            let batched = generate(&model, &prompts, &config, &device).unwrap();
            assert_eq!(
                batched,
                generate(&model, &prompts, &config, &device).unwrap()
            );
            for (i, prompt) in prompts.iter().enumerate() {
                let alone = generate(
                    &model,
                    &[prompt],
                    &GenerateConfig::new(30)
                        .with_sampling(sampling)
                        .with_seed(7 + i as u64),
                    &device,
                )
                .unwrap();
                assert_eq!(alone[0], batched[i], "stream {i}, {sampling:?}");
                assert!(alone[0].iter().all(|&id| id < 6));
            }
            let reseeded =
                generate(&model, &prompts, &config.clone().with_seed(8), &device).unwrap();
            assert_ne!(batched, reseeded);
        }
    }

    /// Every sampling rule with a seed, on prompts of different lengths.
    fn samplings() -> [GenerateConfig; 3] {
        [
            GenerateConfig::new(25).with_sampling(Sampling::Greedy),
            GenerateConfig::new(25)
                .with_sampling(Sampling::Temperature(1.4))
                .with_seed(11),
            GenerateConfig::new(25)
                .with_sampling(Sampling::TopK {
                    k: 3,
                    temperature: 0.8,
                })
                .with_seed(12),
        ]
    }

    /// The fused generation against the step-by-step loop it replaces: the same tokens for
    /// every sampling rule, and (so that the comparison is not of the loop with itself) the
    /// fused kernel ran wherever the backend has one.
    fn fused_equals_step_by_step<B: Backend, M: Autoregressive<B>>(model: &M, device: &B::Device) {
        let prompts = [vec![1, 2, 3], vec![5], vec![0, 4, 4, 4, 2], vec![3, 3]];
        for config in samplings() {
            let fused = generate(model, &prompts, &config, device).unwrap();
            let reference = generate_step_by_step(model, &prompts, &config, device).unwrap();
            assert_eq!(fused, reference, "{:?}", config.sampling);
        }
        let (ids, lengths) = pad_prompts::<B>(&prompts, model.output_size(), device).unwrap();
        let state = model.warm(ids, &lengths).unwrap();
        let net = model
            .generation_net(&state)
            .expect("one of unfold's own models");
        let ran = fused_generate(net, &samplings()[0]).is_some();
        assert_eq!(ran, cfg!(feature = "ndarray") && crate::has_kernels::<B>());
    }

    fn stacked<B: Backend>(
        layers: usize,
        act: crate::Nonlinearity,
        bias: bool,
        device: &B::Device,
    ) -> ElmanRnn<B> {
        ElmanRnnConfig::new(6, 8, 6)
            .with_num_layers(layers)
            .with_nonlinearity(act)
            .with_bias(bias)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 1.0,
            })
            .init(device)
    }

    #[test]
    fn fused_generation_draws_the_tokens_of_the_step_by_step_loop() {
        use crate::feedback::{ElmanJordanRnnConfig, JordanRnnConfig};
        use crate::Nonlinearity::{Relu, Tanh};
        type F32 = burn::backend::NdArray<f32>;
        type Ad = burn::backend::Autodiff<TestBackend>;
        let device = Default::default();
        fused_equals_step_by_step(&model(&device), &device);
        fused_equals_step_by_step(&stacked::<TestBackend>(3, Relu, false, &device), &device);
        fused_equals_step_by_step(&stacked::<F32>(2, Tanh, true, &device), &device);
        // On an autodiff backend (the model being trained), with dropout off.
        fused_equals_step_by_step(&stacked::<Ad>(2, Tanh, true, &device), &device);
        let normal = Initializer::Normal {
            mean: 0.0,
            std: 1.0,
        };
        let jordan = JordanRnnConfig::new(6, 8, 6).with_initializer(normal.clone());
        fused_equals_step_by_step(&jordan.init::<TestBackend>(&device), &device);
        let both = ElmanJordanRnnConfig::new(6, 8, 6).with_initializer(normal);
        fused_equals_step_by_step(&both.init::<F32>(&device), &device);
    }

    #[test]
    fn fused_generation_split_across_cores_equals_each_stream_alone() {
        // Enough work per call that the kernel splits the streams across threads (when the
        // machine has two cores or more).
        let device = Default::default();
        let model = ElmanRnnConfig::new(6, 96, 6)
            .with_num_layers(2)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.3,
            })
            .init::<TestBackend>(&device);
        let prompts: Vec<Vec<usize>> = (0..8).map(|i| vec![i % 6, (i * 5) % 6]).collect();
        let config = GenerateConfig::new(300).with_seed(3);
        let batched = generate(&model, &prompts, &config, &device).unwrap();
        assert_eq!(
            batched,
            generate_step_by_step(&model, &prompts, &config, &device).unwrap()
        );
        for i in [0, 7] {
            let alone = config.clone().with_seed(3 + i as u64);
            assert_eq!(
                generate(&model, &[&prompts[i]], &alone, &device).unwrap()[0],
                batched[i]
            );
        }
    }

    #[test]
    fn generation_with_dropout_on_an_autodiff_backend_keeps_the_step_by_step_loop() {
        type Ad = burn::backend::Autodiff<TestBackend>;
        let device = Default::default();
        let model = ElmanRnnConfig::new(6, 8, 6)
            .with_num_layers(2)
            .with_dropout(0.5)
            .init::<Ad>(&device);
        let state = State::from_parts(vec![Tensor::zeros([1, 8], &device); 2]);
        assert!(model.generation_net(&state).is_none());
        assert!(model
            .valid()
            .generation_net(&State::from_parts(vec![Tensor::zeros([1, 8], &device); 2]))
            .is_some());
    }

    #[test]
    fn bad_generation_requests_are_named_errors() {
        let device = Default::default();
        let model = model(&device);
        let config = GenerateConfig::new(5);
        let err = |prompts: &[Vec<usize>], config: &GenerateConfig| {
            generate(&model, prompts, config, &device).unwrap_err()
        };
        assert!(matches!(
            err(&[vec![1]], &GenerateConfig::new(0)),
            Error::Config { field: "steps", .. }
        ));
        for t in [0.0, -0.5] {
            let hot = config.clone().with_sampling(Sampling::Temperature(t));
            assert!(matches!(
                err(&[vec![1]], &hot),
                Error::Config {
                    field: "temperature",
                    ..
                }
            ));
            let top = config.clone().with_sampling(Sampling::TopK {
                k: 2,
                temperature: t,
            });
            assert!(matches!(
                err(&[vec![1]], &top),
                Error::Config {
                    field: "temperature",
                    ..
                }
            ));
        }
        let zero_k = config.clone().with_sampling(Sampling::TopK {
            k: 0,
            temperature: 1.0,
        });
        assert!(matches!(
            err(&[vec![1]], &zero_k),
            Error::Config { field: "k", .. }
        ));
        assert!(matches!(
            err(&[], &config),
            Error::Empty { arg: "prompts", .. }
        ));
        let message = err(&[vec![1], vec![]], &config).to_string();
        assert!(message.contains("prompt 1 has no tokens"), "{message}");
        assert!(matches!(
            err(&[vec![1, 6]], &config),
            Error::TokenOutOfRange {
                arg: "prompts",
                id: 6,
                vocab_size: 6
            }
        ));
        // A model whose outputs are not its inputs cannot feed them back.
        let classifier = ElmanRnnConfig::new(3, 4, 6).init::<TestBackend>(&device);
        assert!(matches!(
            generate(&classifier, &[vec![1]], &config, &device).unwrap_err(),
            Error::Config {
                field: "input_size",
                ..
            }
        ));
    }
}
