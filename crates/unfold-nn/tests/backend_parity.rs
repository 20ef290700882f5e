//! Backend parity: every topology, its loss and its gradients give the same numbers on wgpu as
//! on ndarray, from the same weights (one record, written to bytes and loaded on each backend) and the
//! same inputs. Also the fused tanh recurrence on `Autodiff<Wgpu>` against the loop Burn's
//! autodiff records, and generation (the sampler reads logits back from the device).
//!
//! Runs only with `--features wgpu` (`cargo test --release -p unfold-nn --features
//! ndarray,wgpu,internals --test backend_parity`). Without a GPU, Mesa's software Vulkan driver
//! (llvmpipe; Debian packages `mesa-vulkan-drivers libvulkan1`) gives wgpu a CPU adapter;
//! `.ci/run` installs it. llvmpipe compiles every kernel on first use, so the shapes are tiny
//! and the tests few.
//!
//! ## Tolerance
//!
//! Both backends compute in f32, but not the same f32 operations: wgpu's matmul and reductions
//! (sums, softmax normalisers, the BPTT sum over `batch·time` rows for `∂W`) add in a
//! different order from ndarray's GEMM and loops, and `tanh`/`exp`/`log` are different
//! implementations (the shader builtins on wgpu, Rust's on ndarray). Each differs from the exact
//! result by a few f32 ulps per operation (`ε = 1.2e-7`), and the recurrence compounds them
//! over the steps. An element passes when
//!
//! ```text
//! |wgpu - ndarray| ≤ ABS + REL·|ndarray|,   ABS = 1e-5, REL = 1e-4
//! ```
//!
//! Measured on llvmpipe (Mesa 22.3.6, LLVM 15.0.6) against ndarray, with these shapes: values
//! and logits differ by at most 3.3e-7 (a few ulps of values of order 1), gradients by at most
//! 2.2e-6 (`∂W` of the fused recurrence, entries up to 3.9, summed over 15 rows), the summed
//! loss by 1.9e-6 at 26.9. The worst element uses 5.5% of its tolerance, a margin of 18×; a
//! real bug (a wrong sign, a missed step or mask, weights that did not load) moves values by
//! 1e-2 or more, 1000× the tolerance. The fused recurrence on wgpu gives exactly the states of
//! the recorded loop on wgpu. Run with `--nocapture` to see every tensor's largest difference
//! and the share of the tolerance it uses.
//!
//! The device is wgpu's default adapter (`WgpuDevice::default()`; `CUBECL_WGPU_DEFAULT_DEVICE`
//! chooses another).

#![cfg(feature = "wgpu")]

use burn::backend::ndarray::NdArrayDevice;
use burn::backend::wgpu::WgpuDevice;
use burn::backend::{Autodiff, NdArray, Wgpu};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Int, Tensor, TensorData};
use rand::{rngs::StdRng, Rng, SeedableRng};

use unfold_nn::classifier::{classification_nll, Pooling, SequenceEncoderConfig};
use unfold_nn::feedback::{ElmanJordanRnnConfig, Feedback, Forcing, JordanRnnConfig};
use unfold_nn::sample::{generate, GenerateConfig, Sampling};
use unfold_nn::{sequence_nll, ElmanRnnConfig, Reduction, SequenceModel, UnrollOptions};

/// The reference: the CPU backend in f32 (the precision wgpu computes in).
type Cpu = Autodiff<NdArray<f32>>;
/// The backend under test: Burn's default wgpu backend, with autodiff.
type Gpu = Autodiff<Wgpu>;

/// Absolute part of the tolerance (see the module docs).
const ABS: f64 = 1e-5;
/// Relative part of the tolerance (see the module docs).
const REL: f64 = 1e-4;

fn cpu_device() -> NdArrayDevice {
    NdArrayDevice::Cpu
}

/// wgpu's default device.
fn gpu_device() -> WgpuDevice {
    WgpuDevice::default()
}

// ---------------------------------------------------------------------------------------------
// Comparing.
// ---------------------------------------------------------------------------------------------

/// Named host copies of what one pass produced (values, loss, gradients), in a fixed order.
#[derive(Default)]
struct Pass(Vec<(String, TensorData)>);

impl Pass {
    fn push<B: Backend, const D: usize>(&mut self, name: impl Into<String>, t: Tensor<B, D>) {
        self.0.push((name.into(), t.into_data().convert::<f32>()));
    }
}

/// Asserts `tested ≈ reference` element-wise within `ABS + REL·|reference|`, and prints the
/// largest difference of every tensor and the largest fraction of the tolerance any of its
/// elements used (for the tolerance's documentation).
fn assert_close(what: &str, reference: &Pass, tested: &Pass) {
    assert_eq!(
        reference.0.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        tested.0.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "{what}: both sides produce the same tensors"
    );
    for ((name, r), (_, t)) in reference.0.iter().zip(&tested.0) {
        assert_eq!(r.shape, t.shape, "{what}/{name}: shapes");
        let r: Vec<f32> = r.to_vec().unwrap();
        let t: Vec<f32> = t.to_vec().unwrap();
        let (mut max_diff, mut used): (f64, f64) = (0.0, 0.0);
        for (i, (&r, &t)) in r.iter().zip(&t).enumerate() {
            let (r, t) = (r as f64, t as f64);
            let (diff, allowed) = ((t - r).abs(), ABS + REL * r.abs());
            assert!(
                diff <= allowed,
                "{what}/{name}[{i}]: {t} against the reference {r} (difference {diff:.3e})"
            );
            max_diff = max_diff.max(diff);
            used = used.max(diff / allowed);
        }
        // A comparison of zeros with zeros proves nothing: every compared tensor must carry
        // signal (a gradient that vanished on both sides would hide a broken path).
        let scale = r.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
        assert!(
            scale > 1e-3,
            "{what}/{name}: all (near) zero in the reference"
        );
        eprintln!(
            "{what:>30}  {name:<34} max difference {max_diff:.2e} (max |value| {scale:.3}), \
             {:.1}% of the tolerance",
            100.0 * used
        );
    }
}

/// The gradient of every parameter of `module`, named by its path, in visiting order.
fn param_grads<B: AutodiffBackend, M: Module<B>>(
    module: &M,
    grads: &B::Gradients,
    pass: &mut Pass,
) {
    struct Collect<'a, B: AutodiffBackend> {
        grads: &'a B::Gradients,
        path: Vec<String>,
        pass: &'a mut Pass,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let grad = param
                .grad(self.grads)
                .unwrap_or_else(|| panic!("no gradient for {}", self.path.join(".")));
            self.pass.push(format!("∂{}", self.path.join(".")), grad);
        }
    }
    module.visit(&mut Collect::<B> {
        grads,
        path: Vec::new(),
        pass,
    });
}

/// The same weights on both backends: `source`'s record, written to bytes once and loaded
/// into an empty module on each backend.
///
/// Not `source.clone()` and `source` itself: Burn 0.21 initialises parameters lazily, and a
/// clone of a parameter that was never read draws its own random values.
fn same_weights<MC: Module<Cpu>, MG: Module<Gpu>>(source: MC, cpu: MC, gpu: MG) -> (MC, MG) {
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let bytes = Recorder::<Cpu>::record(&recorder, source.into_record(), ()).unwrap();
    let cpu_record = Recorder::<Cpu>::load(&recorder, bytes.clone(), &cpu_device()).unwrap();
    let gpu_record = Recorder::<Gpu>::load(&recorder, bytes, &gpu_device()).unwrap();
    (cpu.load_record(cpu_record), gpu.load_record(gpu_record))
}

// ---------------------------------------------------------------------------------------------
// Inputs: made on the host once, uploaded to each backend.
// ---------------------------------------------------------------------------------------------

fn uniform(shape: &[usize], scale: f64, seed: u64) -> TensorData {
    let rng = &mut StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| (scale * (rng.random::<f64>() * 2.0 - 1.0)) as f32)
        .collect();
    TensorData::new(values, shape.to_vec())
}

fn ids(shape: [usize; 2], vocab: usize, seed: u64) -> TensorData {
    let rng = &mut StdRng::seed_from_u64(seed);
    let values: Vec<i64> = (0..shape[0] * shape[1])
        .map(|_| rng.random_range(0..vocab as i64))
        .collect();
    TensorData::new(values, shape.to_vec())
}

fn float<B: Backend, const D: usize>(data: &TensorData, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(data.clone(), (device, DType::F32))
}

fn int<B: Backend, const D: usize>(data: &TensorData, device: &B::Device) -> Tensor<B, D, Int> {
    Tensor::from_data(data.clone(), device)
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

const BATCH: usize = 3;
const TIME: usize = 5;
const VOCAB: usize = 6;
const HIDDEN: usize = 8;
const LENGTHS: [usize; BATCH] = [5, 2, 4];

/// The Elman RNN: token input with lengths (mean per-token loss), and dense input read in
/// reverse from an initial state (summed loss); values, loss and every parameter's gradient.
#[test]
fn elman_forward_loss_and_gradients_match_ndarray() {
    let config = ElmanRnnConfig::new(VOCAB, HIDDEN, VOCAB);
    let (cpu_model, gpu_model) = same_weights(
        config.init::<Cpu>(&cpu_device()),
        config.init::<Cpu>(&cpu_device()),
        config.init::<Gpu>(&gpu_device()),
    );
    let tokens = ids([BATCH, TIME], VOCAB, 1);
    let targets = ids([BATCH, TIME], VOCAB, 2);
    let dense = uniform(&[BATCH, TIME, VOCAB], 2.0, 3);
    let h0 = uniform(&[BATCH, HIDDEN], 0.9, 4);

    fn run<B: AutodiffBackend>(
        model: &unfold_nn::ElmanRnn<B>,
        device: &B::Device,
        data: [&TensorData; 4],
        dense_reversed: bool,
    ) -> Pass {
        let [tokens, targets, dense, h0] = data;
        let (out, reduction) = if dense_reversed {
            let options = UnrollOptions::new()
                .with_lengths(LENGTHS)
                .with_initial_state(float(h0, device))
                .reversed();
            (
                model.forward(float::<B, 3>(dense, device), &options),
                Reduction::Sum,
            )
        } else {
            let options = UnrollOptions::new().with_lengths(LENGTHS);
            (
                model.forward(int::<B, 2>(tokens, device), &options),
                Reduction::MeanPerToken,
            )
        };
        let loss = sequence_nll(
            out.logits.clone(),
            int(targets, device),
            Some(&LENGTHS),
            reduction,
        );
        let grads = loss.backward();
        let mut pass = Pass::default();
        pass.push("logits", out.logits.inner());
        pass.push("states", out.states.inner());
        pass.push("last", out.last.inner());
        pass.push("loss", loss.inner());
        param_grads(model, &grads, &mut pass);
        pass
    }

    let data = [&tokens, &targets, &dense, &h0];
    for (case, reversed) in [
        ("elman tokens+lengths", false),
        ("elman dense reversed h0", true),
    ] {
        let cpu = run(&cpu_model, &cpu_device(), data, reversed);
        let gpu = run(&gpu_model, &gpu_device(), data, reversed);
        assert_close(case, &cpu, &gpu);
    }
}

/// The fused recurrence (one autodiff node, BPTT by hand) is the path `Autodiff<Wgpu>` takes,
/// and equals both the recorded per-step loop on wgpu and the fused path on ndarray.
/// `ElmanRnn::loss` (readout + log-softmax + NLL as one operation: the host kernel on ndarray,
/// the generic tensor-op default on wgpu) gives the same loss and gradients on both backends.
#[test]
fn fused_loss_matches_ndarray() {
    let config = ElmanRnnConfig::new(VOCAB, HIDDEN, VOCAB);
    let (cpu_model, gpu_model) = same_weights(
        config.init::<Cpu>(&cpu_device()),
        config.init::<Cpu>(&cpu_device()),
        config.init::<Gpu>(&gpu_device()),
    );
    let tokens = ids([BATCH, TIME], VOCAB, 5);
    let targets = ids([BATCH, TIME], VOCAB, 6);

    fn run<B: AutodiffBackend>(
        model: &unfold_nn::ElmanRnn<B>,
        device: &B::Device,
        tokens: &TensorData,
        targets: &TensorData,
    ) -> Pass {
        let options = UnrollOptions::new().with_lengths(LENGTHS);
        let out = model.loss(
            int::<B, 2>(tokens, device),
            int(targets, device),
            &options,
            Reduction::MeanPerToken,
        );
        let grads = out.loss.backward();
        let mut pass = Pass::default();
        pass.push("loss", out.loss.inner());
        pass.push("last", out.last.inner());
        param_grads(model, &grads, &mut pass);
        pass
    }

    let cpu = run(&cpu_model, &cpu_device(), &tokens, &targets);
    let gpu = run(&gpu_model, &gpu_device(), &tokens, &targets);
    assert_close("elman fused loss", &cpu, &gpu);
}

/// For both nonlinearities (tanh and ReLU).
#[cfg(feature = "internals")]
#[test]
fn fused_recurrence_on_wgpu_matches_the_recorded_loop_and_ndarray() {
    use unfold_nn::internals::{recurrence, recurrence_unfused};
    use unfold_nn::{has_kernels, Nonlinearity, StepPlan};

    assert!(has_kernels::<Gpu>(), "Autodiff<Wgpu> takes the fused path");
    assert!(has_kernels::<Wgpu>(), "Wgpu takes the fused path");
    let drive = uniform(&[BATCH, TIME, HIDDEN], 1.5, 10);
    let w = uniform(&[HIDDEN, HIDDEN], 0.8, 11);
    let h0 = uniform(&[BATCH, HIDDEN], 1.0, 12);
    let probe = uniform(&[BATCH, TIME, HIDDEN], 1.0, 13);

    type Run<B> = fn(
        Tensor<B, 3>,
        Tensor<B, 2>,
        Tensor<B, 2>,
        &StepPlan<B>,
        Nonlinearity,
    ) -> unfold_nn::Unrolled<B>;
    fn run<B: AutodiffBackend>(
        recurrence: Run<B>,
        device: &B::Device,
        data: [&TensorData; 4],
        reverse: bool,
        act: Nonlinearity,
    ) -> Pass {
        let drive = float::<B, 3>(data[0], device).require_grad();
        let w = float::<B, 2>(data[1], device).require_grad();
        let h0 = float::<B, 2>(data[2], device).require_grad();
        let plan = StepPlan::new(BATCH, TIME, Some(&LENGTHS), reverse, device).unwrap();
        let out = recurrence(drive.clone(), w.clone(), h0.clone(), &plan, act);
        // Weighs every state and the last state differently, so both outputs carry gradient.
        let loss = (out.states.clone() * float::<B, 3>(data[3], device)).sum()
            + out.last.clone().powf_scalar(2.0).sum();
        let grads = loss.backward();
        let mut pass = Pass::default();
        pass.push("states", out.states.inner());
        pass.push("last", out.last.inner());
        pass.push("∂drive", drive.grad(&grads).unwrap());
        pass.push("∂w", w.grad(&grads).unwrap());
        pass.push("∂h0", h0.grad(&grads).unwrap());
        pass
    }

    let data = [&drive, &w, &h0, &probe];
    for act in [Nonlinearity::Tanh, Nonlinearity::Relu] {
        for reverse in [false, true] {
            let gpu_fused = run::<Gpu>(recurrence, &gpu_device(), data, reverse, act);
            let gpu_loop = run::<Gpu>(recurrence_unfused, &gpu_device(), data, reverse, act);
            let cpu_fused = run::<Cpu>(recurrence, &cpu_device(), data, reverse, act);
            assert_close(
                &format!("{act} fused vs loop, reverse {reverse}"),
                &gpu_loop,
                &gpu_fused,
            );
            assert_close(
                &format!("{act} fused wgpu vs nd, reverse {reverse}"),
                &cpu_fused,
                &gpu_fused,
            );
        }
    }
}

/// Sequence-to-one: two stacked bidirectional layers, mean pooling over valid steps, dense
/// input with lengths, the end-of-sequence cross-entropy.
#[test]
fn classifier_forward_loss_and_gradients_match_ndarray() {
    let classes = 3;
    let config = SequenceEncoderConfig::new(4, 6)
        .with_num_layers(2)
        .with_bidirectional(true)
        .with_pooling(Pooling::Mean)
        .classifier(classes);
    let (cpu_model, gpu_model) = same_weights(
        config.init::<Cpu>(&cpu_device()),
        config.init::<Cpu>(&cpu_device()),
        config.init::<Gpu>(&gpu_device()),
    );
    let inputs = uniform(&[BATCH, TIME, 4], 2.0, 20);
    let labels = TensorData::new(vec![2i64, 0, 1], [BATCH]);

    fn run<B: AutodiffBackend>(
        model: &unfold_nn::classifier::SequenceClassifier<B>,
        device: &B::Device,
        inputs: &TensorData,
        labels: &TensorData,
    ) -> Pass {
        let options = UnrollOptions::new().with_lengths(LENGTHS);
        let logits = model.forward(float::<B, 3>(inputs, device), &options);
        let loss = classification_nll(logits.clone(), Tensor::from_data(labels.clone(), device));
        let grads = loss.backward();
        let mut pass = Pass::default();
        pass.push("logits", logits.inner());
        pass.push("loss", loss.inner());
        param_grads(model, &grads, &mut pass);
        pass
    }

    let cpu = run(&cpu_model, &cpu_device(), &inputs, &labels);
    let gpu = run(&gpu_model, &gpu_device(), &inputs, &labels);
    assert_close("classifier", &cpu, &gpu);
}

/// Output-to-hidden recurrence: the Jordan RNN teacher-forced (all steps at once) and free
/// running on its softmax (step by step, differentiable), and the Elman–Jordan RNN
/// teacher-forced with lengths (the hidden path through the fused recurrence).
#[test]
fn jordan_forward_loss_and_gradients_match_ndarray() {
    let tokens = ids([BATCH, TIME], VOCAB, 30);
    let targets = ids([BATCH, TIME], VOCAB, 31);

    let config = JordanRnnConfig::new(VOCAB, HIDDEN, VOCAB);
    let (cpu_model, gpu_model) = same_weights(
        config.init::<Cpu>(&cpu_device()),
        config.init::<Cpu>(&cpu_device()),
        config.init::<Gpu>(&gpu_device()),
    );
    fn run_jordan<B: AutodiffBackend>(
        model: &unfold_nn::JordanRnn<B>,
        device: &B::Device,
        tokens: &TensorData,
        targets: &TensorData,
        forcing: &Forcing,
    ) -> Pass {
        let targets = int::<B, 2>(targets, device);
        let options = UnrollOptions::new()
            .with_forcing(*forcing)
            .with_teacher(targets.clone());
        let out = model.forward(int::<B, 2>(tokens, device), &options);
        let loss = sequence_nll(out.logits.clone(), targets, None, Reduction::Sum);
        let grads = loss.backward();
        let mut pass = Pass::default();
        pass.push("logits", out.logits.inner());
        pass.push("loss", loss.inner());
        param_grads(model, &grads, &mut pass);
        pass
    }
    let free = Forcing::FreeRunning {
        feedback: Feedback::Softmax,
        seed: 0,
    };
    for (case, forcing) in [
        ("jordan teacher-forced", Forcing::TeacherForced),
        ("jordan free-running", free),
    ] {
        let cpu = run_jordan(&cpu_model, &cpu_device(), &tokens, &targets, &forcing);
        let gpu = run_jordan(&gpu_model, &gpu_device(), &tokens, &targets, &forcing);
        assert_close(case, &cpu, &gpu);
    }

    let config = ElmanJordanRnnConfig::new(VOCAB, HIDDEN, VOCAB);
    let (cpu_model, gpu_model) = same_weights(
        config.init::<Cpu>(&cpu_device()),
        config.init::<Cpu>(&cpu_device()),
        config.init::<Gpu>(&gpu_device()),
    );
    fn run_both<B: AutodiffBackend>(
        model: &unfold_nn::ElmanJordanRnn<B>,
        device: &B::Device,
        tokens: &TensorData,
        targets: &TensorData,
    ) -> Pass {
        let targets = int::<B, 2>(targets, device);
        let options = UnrollOptions::new()
            .with_lengths(LENGTHS)
            .teacher_forced(targets.clone());
        let out = model.forward(int::<B, 2>(tokens, device), &options);
        let loss = sequence_nll(
            out.logits.clone(),
            targets,
            Some(&LENGTHS),
            Reduction::MeanPerToken,
        );
        let grads = loss.backward();
        let mut pass = Pass::default();
        pass.push("logits", out.logits.inner());
        pass.push("loss", loss.inner());
        param_grads(model, &grads, &mut pass);
        pass
    }
    let cpu = run_both(&cpu_model, &cpu_device(), &tokens, &targets);
    let gpu = run_both(&gpu_model, &gpu_device(), &tokens, &targets);
    assert_close("elman-jordan teacher-forced", &cpu, &gpu);
}

/// Generation reads the logits back from the device every step: the same model, prompts and
/// seed give the same tokens on both backends (greedy, and sampled at a temperature).
#[test]
fn generation_picks_the_same_tokens_as_on_ndarray() {
    let config = ElmanRnnConfig::new(VOCAB, HIDDEN, VOCAB).with_initializer(
        burn::module::Initializer::Normal {
            mean: 0.0,
            std: 0.7,
        },
    );
    let (cpu_model, gpu_model) = same_weights(
        config.init::<Cpu>(&cpu_device()),
        config.init::<Cpu>(&cpu_device()),
        config.init::<Gpu>(&gpu_device()),
    );
    let (cpu_model, gpu_model) = (cpu_model.valid(), gpu_model.valid());
    let prompts = [vec![0, 3, 1], vec![5]];
    for sampling in [Sampling::Greedy, Sampling::Temperature(0.9)] {
        let config = GenerateConfig::new(12).with_sampling(sampling).with_seed(7);
        let on_cpu = generate(&cpu_model, &prompts, &config, &cpu_device()).unwrap();
        let on_gpu = generate(&gpu_model, &prompts, &config, &gpu_device()).unwrap();
        assert_eq!(on_gpu, on_cpu, "{sampling:?}");
    }
}
