//! Choosing the wgpu device (feature `wgpu`): the adapter is found and named, and a machine
//! without a Vulkan driver gets an error saying what to install, not wgpu's panic.
//!
//! `cargo test --release -p unfold-lab --features wgpu --test wgpu_device -- --nocapture`
//! (on a machine without a GPU, Mesa's llvmpipe is the adapter; `.ci/run` installs it).
#![cfg(all(feature = "wgpu", not(feature = "cuda")))]

use unfold_lab::backend;

#[test]
fn the_wgpu_adapter_is_found_and_named() {
    backend::try_device().unwrap_or_else(|e| panic!("{e}"));
    let described = backend::describe();
    // Printed unconditionally: CI's log says which adapter ran the suite (llvmpipe there).
    println!("the wgpu tests run on: {described}");
    assert!(described.starts_with("wgpu on "), "{described}");
}

/// Bad input: asking for wgpu where Vulkan has no driver gives an error that names what to
/// install, not wgpu's panic. Runs this test binary again with the Vulkan loader pointed at a
/// driver list that does not exist, which is what a machine without a driver looks like.
#[cfg(target_os = "linux")]
#[test]
fn a_machine_without_a_vulkan_driver_is_told_what_to_install() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["the_wgpu_adapter_is_found_and_named", "--exact"])
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env_remove("CUBECL_WGPU_DEFAULT_DEVICE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "no driver, yet a device:\n{text}");
    for expected in [
        "backend `wgpu` found no device: no Vulkan adapter",
        "apt-get install mesa-vulkan-drivers libvulkan1",
        "build without `--features wgpu`",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        !text.contains("Falling back"),
        "wgpu's own message leaked:\n{text}"
    );
}
