//! The backend the examples and experiments run on, chosen by cargo feature.
//!
//! The library itself is generic over any Burn `Backend`; only binaries pick one:
//! - `ndarray` (default): CPU, `burn-ndarray`.
//! - `wgpu`: GPU through wgpu (Vulkan on Linux and Windows, Metal on macOS); wins over
//!   `ndarray`.
//! - `cuda`: NVIDIA GPU through CUDA (`burn-cuda`); wins over both.
//!
//! Binaries get their device from [`try_device`] (or [`device`]), which for wgpu finds the
//! adapter first: a machine without a GPU driver gets an [`Error::NoDevice`] naming what to
//! install, not a panic from deep inside wgpu. [`describe`] says what the device is, e.g.
//! `wgpu on llvmpipe (LLVM 15.0.6, 256 bits) [Vulkan, Cpu, Mesa 22.3.6 (LLVM 15.0.6)]`.
//!
//! The wgpu adapter is wgpu's default for the platform's graphics API (Burn's
//! `AutoGraphicsApi`: Vulkan except on macOS), preferring a high-performance GPU; set
//! `CUBECL_WGPU_DEFAULT_DEVICE` to `DiscreteGpu(N)`, `IntegratedGpu(N)`, `VirtualGpu(N)` or `Cpu`
//! to choose another.

#[cfg(any(feature = "wgpu", feature = "cuda"))]
use crate::error::Error;
use crate::error::Result;

#[cfg(feature = "cuda")]
mod chosen {
    /// The inference backend.
    pub type Backend = burn::backend::Cuda;
    /// Human-readable name, for logs and `metrics.json`.
    pub const NAME: &str = "cuda";
}

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
mod chosen {
    /// The inference backend.
    pub type Backend = burn::backend::Wgpu;
    /// Human-readable name, for logs and `metrics.json`.
    pub const NAME: &str = "wgpu";
}

#[cfg(all(feature = "ndarray", not(any(feature = "wgpu", feature = "cuda"))))]
mod chosen {
    /// The inference backend.
    pub type Backend = burn::backend::NdArray;
    /// Human-readable name, for logs and `metrics.json`.
    pub const NAME: &str = "ndarray";
}

#[cfg(not(any(feature = "ndarray", feature = "wgpu", feature = "cuda")))]
compile_error!("unfold-lab needs a backend: enable the `ndarray`, `wgpu` or `cuda` feature");

pub use chosen::{Backend, NAME};

/// The training backend: [`Backend`] with Burn's autodiff on top.
pub type TrainBackend = burn::backend::Autodiff<Backend>;

/// The device of the chosen backend (the default adapter for wgpu).
pub type Device = <Backend as burn::tensor::backend::BackendTypes>::Device;

/// The default device, checked: for wgpu, an adapter is looked for (once per process) and its
/// absence is an [`Error::NoDevice`] that says what to install.
///
/// Call it before anything else touches the device: wgpu's device is set up by whichever
/// comes first, and only this path can report a missing adapter as an error.
pub fn try_device() -> Result<Device> {
    #[cfg(feature = "cuda")]
    if let Err(problem) = cuda_probe::device() {
        return Err(Error::NoDevice {
            backend: NAME,
            problem: problem.clone(),
            fix: "Install the NVIDIA driver (libcuda) and check that `nvidia-smi` sees the GPU; \
                  or build without `--features cuda`"
                .into(),
        });
    }
    #[cfg(all(feature = "wgpu", not(feature = "cuda")))]
    if let Err(problem) = wgpu_probe::adapter() {
        return Err(Error::NoDevice {
            backend: NAME,
            problem: problem.clone(),
            fix: wgpu_probe::fix(),
        });
    }
    Ok(Default::default())
}

/// [`try_device`], after saying on stderr what the run uses (`device: ` and [`describe`]):
/// what every example calls first.
pub fn open() -> Result<Device> {
    let device = try_device()?;
    eprintln!("device: {}", describe());
    Ok(device)
}

/// [`try_device`], panicking with its error message.
pub fn device() -> Device {
    try_device().unwrap_or_else(|e| panic!("{e}"))
}

/// What the examples run on, in words: `ndarray (CPU)`, or `wgpu on <adapter> [<graphics
/// API>, <device type>, <driver>]`. Probes the wgpu adapter like [`try_device`].
pub fn describe() -> String {
    #[cfg(feature = "cuda")]
    {
        match cuda_probe::device() {
            Ok(()) => format!("{NAME} on device 0"),
            Err(problem) => format!("{NAME} without a device ({problem})"),
        }
    }
    #[cfg(all(feature = "wgpu", not(feature = "cuda")))]
    {
        match wgpu_probe::adapter() {
            Ok(adapter) => format!("{NAME} on {adapter}"),
            Err(problem) => format!("{NAME} without a device ({problem})"),
        }
    }
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    {
        format!("{NAME} (CPU)")
    }
}

#[cfg(feature = "cuda")]
mod cuda_probe {
    //! Finding the CUDA device without letting cubecl-cuda's panic through: like wgpu, Burn
    //! sets the device up lazily and panics when there is no driver or GPU, so the probe
    //! makes one tiny tensor and catches that panic.

    use std::panic;
    use std::sync::OnceLock;

    use burn::tensor::Tensor;

    static DEVICE: OnceLock<Result<(), String>> = OnceLock::new();

    /// `Ok` when the default CUDA device runs a kernel, else what went wrong. Probed once.
    pub fn device() -> &'static Result<(), String> {
        DEVICE.get_or_init(|| {
            let hook = panic::take_hook();
            panic::set_hook(Box::new(|_| {}));
            let run = panic::catch_unwind(|| {
                let device = Default::default();
                Tensor::<super::Backend, 1>::ones([1], &device).into_data()
            });
            panic::set_hook(hook);
            run.map(|_| ()).map_err(|payload| {
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "cubecl-cuda panicked while setting up the device".into())
            })
        })
    }
}

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
mod wgpu_probe {
    //! Finding the wgpu adapter without letting wgpu's panic through.
    //!
    //! Burn sets a wgpu device up lazily, on first use, and panics deep inside cubecl-wgpu
    //! ("No possible adapter available for backend...") when there is none. Neither Burn nor
    //! cubecl offers a fallible way to ask (they do not re-export wgpu's adapter enumeration),
    //! so the probe sets the default device up itself through Burn's public `init_setup` (the
    //! same setup the lazy path does, with the same default options) and catches that panic.

    use std::panic;
    use std::sync::OnceLock;

    use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};
    use burn::backend::wgpu::{init_setup, RuntimeOptions, WgpuDevice};

    /// cubecl-wgpu's override of the default device.
    const OVERRIDE: &str = "CUBECL_WGPU_DEFAULT_DEVICE";

    static ADAPTER: OnceLock<Result<String, String>> = OnceLock::new();

    /// The default adapter, described, or what went wrong looking for it. Probed once.
    pub fn adapter() -> &'static Result<String, String> {
        ADAPTER.get_or_init(probe)
    }

    fn probe() -> Result<String, String> {
        // wgpu's panic is the expected outcome on a machine without a driver: keep its message
        // (and its misleading "Falling back to first available") off stderr while probing.
        // The hook is process-wide, so a panic on another thread during these milliseconds
        // would also go unprinted; binaries probe at start-up, before spawning threads.
        let hook = panic::take_hook();
        panic::set_hook(Box::new(|_| {}));
        let setup = panic::catch_unwind(|| {
            init_setup::<AutoGraphicsApi>(&WgpuDevice::DefaultDevice, RuntimeOptions::default())
        });
        panic::set_hook(hook);
        match setup {
            Ok(setup) => {
                let info = setup.adapter.get_info();
                Ok(format!(
                    "{} [{:?}, {:?}, {}]",
                    info.name, info.backend, info.device_type, info.driver_info
                ))
            }
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "wgpu panicked while setting up the device".into());
                if message.contains("already registered") {
                    // Something used the device before this probe: it exists and works.
                    Ok("the default adapter (set up before unfold could look at it)".into())
                } else {
                    // cubecl's message for "none at all" claims a fallback that does not happen.
                    let message = message.replace(
                        "No possible adapter available for backend. Falling back to first \
                         available.: ",
                        "",
                    );
                    Err(format!(
                        "no {:?} adapter could be set up ({})",
                        AutoGraphicsApi::backend(),
                        message.lines().next().unwrap_or_default()
                    ))
                }
            }
        }
    }

    /// What to install, for this platform's graphics API.
    pub fn fix() -> String {
        let api = format!("{:?}", AutoGraphicsApi::backend());
        let install = if api == "Vulkan" {
            "Install a Vulkan driver: your GPU vendor's driver, or on a machine without a GPU \
             Mesa's software Vulkan (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers \
             libvulkan1`); `vulkaninfo --summary` (package vulkan-tools) lists what Vulkan sees"
        } else {
            "Check that the GPU driver for this graphics API is installed and working"
        };
        let chosen = match std::env::var(OVERRIDE) {
            Ok(value) => format!(
                ". {OVERRIDE}={value} picks the device: unset it, or name one that exists \
                 (DiscreteGpu(N), IntegratedGpu(N), VirtualGpu(N) or Cpu)"
            ),
            Err(_) => String::new(),
        };
        format!(
            "{install}{chosen}. Or build without `--features wgpu` to run on the CPU backend \
             (ndarray)"
        )
    }
}
