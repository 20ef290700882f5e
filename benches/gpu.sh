#!/usr/bin/env bash
# The GPU benchmark, one prepared run (< 8 minutes on one recent NVIDIA GPU after the build):
#
#   benches/gpu.sh                          # standard, large, DeepBench, generation
#   benches/gpu.sh standard                 # one workload (names as in `cargo bench --bench rnn`)
#
# 1. The CubeCL kernel tests on CUDA (the recurrence against an f64 loop, every launch layout),
#    so a table is never printed for kernels that compute the wrong thing.
# 2. `cargo bench --bench rnn` on the cuda backend: unfold fused (CubeCL kernels), unfold's
#    generic per-step path (the custom-cell row: what an unfused cell gets), burn-nn's `Rnn`,
#    and PyTorch (cuDNN) in the same run, one table with the ratios.
# 3. The same unfold and burn-nn rows on wgpu (Vulkan), where the machine has a Vulkan driver.
#
# Every step waits for the device (`B::sync`, `torch.cuda.synchronize`), so a row is the work's
# time, not its launch's. Python: `$UNFOLD_BENCH_PYTHON` (see benches/rnn.rs); without a CUDA
# PyTorch its rows are skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."

workloads=("$@")
[ ${#workloads[@]} -eq 0 ] && workloads=(standard large deepbench generate)
common=train,checkpoint,pytorch
export UNFOLD_BENCH_TORCH_DEVICE=cuda

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

echo "== CubeCL kernels on cuda (tests/cubecl_recurrence.rs)"
timeout 300 cargo test --release -p unfold-nn --features ndarray,cuda,internals \
    --test cubecl_recurrence -- --test-threads 1

echo "== cuda: unfold, burn-nn, PyTorch (cuDNN)"
timeout 300 cargo bench --bench rnn --no-default-features --features "$common,cuda" -- "${workloads[@]}" --no-jax

echo "== wgpu: unfold, burn-nn"
if command -v vulkaninfo >/dev/null 2>&1 || [ -e /usr/share/vulkan/icd.d/nvidia_icd.json ]; then
    timeout 240 cargo bench --bench rnn --no-default-features --features "$common,wgpu" -- "${workloads[@]}" --no-pytorch
else
    echo "skipped: no Vulkan driver (install the NVIDIA Vulkan ICD or vulkan-tools)"
fi
