//! Every example binary refuses a size that cannot fit in memory, or whose byte count
//! overflows, before allocating it: exit status 1 and one `error:` line naming the flag, the
//! bytes needed and available (where Rust would otherwise abort with SIGABRT on the failed
//! allocation). Nothing is allocated to prove it: the check runs before the model exists.
//!
//! `cargo test` builds the examples next to the test binaries (`target/<profile>/examples`),
//! which is where this test runs them from.

use std::path::PathBuf;
use std::process::Command;

const EXAMPLES: [&str; 4] = ["char_lm", "teacher_forcing", "classify", "custom_cell"];

/// `target/<profile>/examples/<name>`, beside this test's `target/<profile>/deps/`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Runs `name` with `args` (and a scratch `--out`); returns its exit code and stderr's
/// `error:` lines.
fn run(name: &str, args: &[&str]) -> (Option<i32>, Vec<String>) {
    let exe = example(name);
    assert!(
        exe.exists(),
        "{} is not built (cargo test builds the examples)",
        exe.display()
    );
    let out = std::env::temp_dir().join(format!("unfold-limits-{name}-{}", std::process::id()));
    let output = Command::new(&exe)
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("the example runs");
    let _ = std::fs::remove_dir_all(&out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors = stderr
        .lines()
        .filter(|line| line.starts_with("error:"))
        .map(str::to_string)
        .collect();
    (output.status.code(), errors)
}

#[test]
fn every_example_refuses_a_batch_too_large_for_any_machine_in_one_line() {
    for name in EXAMPLES {
        let (status, errors) = run(name, &["--batch", "100000000000"]);
        println!("{name}: {errors:?}");
        assert_eq!(status, Some(1), "{name} exits with status 1");
        assert_eq!(errors.len(), 1, "{name}: one error line, got {errors:?}");
        let error = &errors[0];
        assert!(
            error.contains("`--batch` = 100000000000 needs")
                && error.contains("is available")
                && error.contains("the largest `--batch` that fits is"),
            "{name}: {error}"
        );
    }
}

#[test]
fn every_example_refuses_a_hidden_width_whose_size_overflows_in_one_line() {
    let huge = usize::MAX.to_string();
    for name in EXAMPLES {
        let (status, errors) = run(name, &["--hidden", &huge]);
        println!("{name}: {errors:?}");
        assert_eq!(status, Some(1), "{name} exits with status 1");
        assert_eq!(errors.len(), 1, "{name}: one error line, got {errors:?}");
        assert!(
            errors[0].contains(&format!("`--hidden` = {huge} needs more than 16 EiB")),
            "{name}: {}",
            errors[0]
        );
    }
}
