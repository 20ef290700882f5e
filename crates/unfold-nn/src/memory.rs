//! Refusing what cannot fit: how much memory a model needs, how much the process can have,
//! and a clear error (naming the field, the bytes needed and available, and the largest value
//! that fits) before anything is allocated.
//!
//! Rust aborts the process when an allocation fails (`memory allocation of … bytes failed`,
//! SIGABRT): no error handling runs, and a typo in a size (an extra zero on the hidden width)
//! kills a run with a stack trace. So every entry point that sizes memory from user input
//! estimates first:
//! - the model configs' `try_init` check their parameters ([`MemoryEstimate::parameters`]);
//! - a training run checks the whole step: parameters, their gradients and Adam's two moments,
//!   the activations BPTT keeps for `batch × time` steps, the batch itself
//!   ([`ElmanRnnConfig::training_memory`](crate::ElmanRnnConfig::training_memory) and the like,
//!   and [`check_training`]);
//! - batching and generation check their buffers ([`check_bytes`]).
//!
//! What the process can use is [`available_memory`]: the smaller of the cgroup's limit (less
//! what the cgroup already uses) and the kernel's estimate of available memory. The estimates
//! are upper bounds of what a step keeps alive at once, in f32 (an f64 model needs twice as
//! much), tested against the peak heap measured by [`Counting`] (`tests/memory_estimate.rs`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::error::{Error, Result};

/// Bytes of one parameter or activation value (f32).
pub const FLOAT_BYTES: u64 = 4;

/// What a training step of a model needs, in bytes, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryEstimate {
    /// The parameters, one float each.
    pub parameters: u64,
    /// Their gradients and the optimizer's state (Adam's two moments): three floats per
    /// parameter.
    pub optimizer: u64,
    /// What the forward pass keeps for the backward pass and what the backward pass makes
    /// (states, drives and their gradients, per layer and direction; the readout's gradient),
    /// and the batch itself.
    pub activations: u64,
}

impl MemoryEstimate {
    /// The whole step.
    pub fn total(&self) -> u64 {
        self.parameters
            .saturating_add(self.optimizer)
            .saturating_add(self.activations)
    }

    /// The estimate of a model with `parameters` floats whose step keeps `activations` floats.
    pub(crate) fn from_floats(parameters: u64, activations: u64) -> Self {
        Self {
            parameters: parameters.saturating_mul(FLOAT_BYTES),
            optimizer: parameters.saturating_mul(3 * FLOAT_BYTES),
            activations: activations.saturating_mul(FLOAT_BYTES),
        }
    }
}

/// `a · b` on sizes, `u64::MAX` (never fits) when it overflows.
pub(crate) fn mul(factors: &[usize]) -> u64 {
    factors
        .iter()
        .try_fold(1u64, |product, &f| product.checked_mul(f as u64))
        .unwrap_or(u64::MAX)
}

/// The parameter count of a stack of `layers` layers, each in `directions` directions, of
/// cells with `per_cell(input, hidden)` parameters: layer 0 reads `input` features, the others
/// `directions × hidden`. `u64::MAX` on overflow.
pub(crate) fn stack_parameters(
    input: usize,
    hidden: usize,
    layers: usize,
    directions: usize,
    per_cell: impl Fn(u64, u64) -> u64,
) -> u64 {
    let (hidden, directions) = (hidden as u64, directions as u64);
    let above = directions.saturating_mul(hidden);
    let first = per_cell(input as u64, hidden);
    let rest = per_cell(above, hidden).saturating_mul((layers as u64).saturating_sub(1));
    first.saturating_add(rest).saturating_mul(directions)
}

/// `a · b + …` on `u64` with saturation: a memory size that overflows never fits.
pub(crate) fn sum_of_products(terms: &[&[u64]]) -> u64 {
    terms.iter().fold(0u64, |total, factors| {
        let product = factors.iter().fold(1u64, |p, &f| p.saturating_mul(f));
        total.saturating_add(product)
    })
}

/// The bytes this process can still allocate, if the platform says: the smaller of the
/// cgroup's memory limit less its usage (cgroup v2 or v1) and the kernel's `MemAvailable`.
/// `None` where neither is known (no check is made then).
pub fn available_memory() -> Option<u64> {
    let limits = [cgroup_headroom(), mem_available()];
    limits.into_iter().flatten().min()
}

/// `/proc/meminfo`'s `MemAvailable`.
fn mem_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The cgroup's limit less its usage: v2's `memory.max − memory.current`, or v1's
/// `memory.limit_in_bytes − memory.usage_in_bytes` (v1 reports "no limit" as a huge number,
/// which `min` with `MemAvailable` then ignores).
fn cgroup_headroom() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let read =
        |path: String| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        // The mount may show the process's own cgroup at its root (inside a container) or
        // the whole hierarchy.
        let roots = |base: &str| [format!("{base}{path}"), base.to_string()];
        if controllers.is_empty() {
            for root in roots("/sys/fs/cgroup") {
                if let (Some(max), Some(current)) = (
                    read(format!("{root}/memory.max")),
                    read(format!("{root}/memory.current")),
                ) {
                    return Some(max.saturating_sub(current));
                }
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            for root in roots("/sys/fs/cgroup/memory") {
                if let (Some(limit), Some(usage)) = (
                    read(format!("{root}/memory.limit_in_bytes")),
                    read(format!("{root}/memory.usage_in_bytes")),
                ) {
                    return Some(limit.saturating_sub(usage));
                }
            }
        }
    }
    None
}

/// `bytes` in words: `1.5 GiB`, `12.0 MiB`, `512 B`; "more than 16 EiB" for an overflow.
pub fn describe_bytes(bytes: u64) -> String {
    if bytes == u64::MAX {
        return "more than 16 EiB (the size overflows)".to_string();
    }
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    if unit == "B" {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// Checks that `needed` bytes fit in `available` (when known). `field = value` is what the
/// error blames; `largest` the largest value of that field that fits, if the caller can tell.
pub(crate) fn check_fits(
    field: &'static str,
    value: usize,
    needed: u64,
    available: Option<u64>,
    largest: impl FnOnce(u64) -> Option<usize>,
) -> Result<()> {
    match available {
        Some(available) if needed > available => Err(Error::TooLarge {
            field,
            value: value.to_string(),
            needed: describe_bytes(needed),
            available: describe_bytes(available),
            largest: largest(available),
        }),
        _ => Ok(()),
    }
}

/// Checks that a buffer of `bytes` (e.g. the ids of a batch, the tokens to generate) fits,
/// blaming `field = value`; `per_unit` is the bytes one unit of `field` costs, which gives the
/// largest value that fits.
pub fn check_bytes(field: &'static str, value: usize, bytes: u64, per_unit: u64) -> Result<()> {
    check_fits(field, value, bytes, available_memory(), |available| {
        usize::try_from(available / per_unit.max(1)).ok()
    })
}

/// The largest `x` in `1..=current` with `fits(x)`, for a `fits` that holds for small `x` and
/// fails past some point (memory grows with every size); `None` if not even 1 fits.
pub(crate) fn largest_fitting(current: usize, fits: impl Fn(usize) -> bool) -> Option<usize> {
    if !fits(1) {
        return None;
    }
    let (mut low, mut high) = (1usize, current);
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if fits(mid) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    Some(low)
}

/// Checks a memory need computed from named sizes: `estimate(sizes)` must fit; when it does
/// not, the error blames the size that alone brings it closest under (the one to shrink, by the
/// largest factor) and gives its largest fitting value.
///
/// `sizes` are `(field, value)`; `estimate` is called with the values in the same order.
pub(crate) fn check_sizes_fit(
    sizes: &[(&'static str, usize)],
    available: Option<u64>,
    estimate: impl Fn(&[usize]) -> u64,
) -> Result<()> {
    let values: Vec<usize> = sizes.iter().map(|&(_, v)| v).collect();
    let needed = estimate(&values);
    let Some(available) = available.filter(|&a| needed > a) else {
        return Ok(());
    };
    // For each size: the largest value that fits with the others unchanged.
    let fixes: Vec<(usize, Option<usize>)> = (0..sizes.len())
        .map(|i| {
            let largest = largest_fitting(values[i], |x| {
                let mut trial = values.clone();
                trial[i] = x;
                estimate(&trial) <= available
            });
            (i, largest)
        })
        .collect();
    // Blame the size that has to shrink by the largest factor among those that can fix it
    // alone; else the largest one.
    let blamed = fixes
        .iter()
        .filter_map(|&(i, largest)| largest.map(|l| (i, Some(l), values[i] as f64 / l as f64)))
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(i, largest, _)| (i, largest))
        .unwrap_or_else(|| {
            let i = (0..sizes.len()).max_by_key(|&i| values[i]).unwrap_or(0);
            (i, None)
        });
    let (i, largest) = blamed;
    Err(Error::TooLarge {
        field: sizes[i].0,
        value: values[i].to_string(),
        needed: describe_bytes(needed),
        available: describe_bytes(available),
        largest,
    })
}

/// Checks a training step's memory against what the process can use, blaming one of `sizes`
/// (the flags or fields that size it, e.g. `--hidden`, `--batch`, `--seq-len`) when it does
/// not fit: `estimate(values)` is the step's need for those values, in the same order.
pub fn check_training(
    sizes: &[(&'static str, usize)],
    estimate: impl Fn(&[usize]) -> Result<MemoryEstimate>,
) -> Result<()> {
    check_sizes_fit(sizes, available_memory(), |values| {
        estimate(values).map_or(u64::MAX, |e| e.total())
    })
}

/// Checks that a model's parameters fit (what `try_init` allocates), blaming one of `sizes`:
/// `count(values)` is the parameter count for those values, in the same order.
pub(crate) fn check_parameters(
    sizes: &[(&'static str, usize)],
    count: impl Fn(&[usize]) -> u64,
) -> Result<()> {
    check_sizes_fit(sizes, available_memory(), |values| {
        count(values).saturating_mul(FLOAT_BYTES)
    })
}

/// A global allocator that counts: live heap bytes, a resettable high-water mark, and
/// allocations. The system allocator underneath, unchanged.
///
/// Hand-written because measuring one phase's peak needs a mark that can be reset, which
/// allocator-statistics crates (e.g. `stats_alloc`) do not offer; it is a few atomic adds. A
/// binary (or test) opts in with
/// `#[global_allocator] static ALLOCATOR: unfold_nn::memory::Counting = unfold_nn::memory::Counting;`
/// and reads [`live`], [`peak`], [`allocations`].
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counters only
// observe the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(live, Relaxed);
            ALLOCATIONS.fetch_add(1, Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            let live = if new_size >= layout.size() {
                LIVE.fetch_add(new_size - layout.size(), Relaxed) + (new_size - layout.size())
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed) - (layout.size() - new_size)
            };
            PEAK.fetch_max(live, Relaxed);
            ALLOCATIONS.fetch_add(1, Relaxed);
        }
        new
    }
}

/// Live heap bytes now (0 unless the binary installed [`Counting`]).
pub fn live() -> usize {
    LIVE.load(Relaxed)
}

/// The most live heap bytes since the last [`reset_peak`].
pub fn peak() -> usize {
    PEAK.load(Relaxed)
}

/// Starts a new high-water mark at the current live bytes.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Relaxed), Relaxed);
}

/// Allocations made so far.
pub fn allocations() -> usize {
    ALLOCATIONS.load(Relaxed)
}

/// `f`'s result and the peak heap bytes above what was live when it started.
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = live();
    reset_peak();
    let out = f();
    (out, peak().saturating_sub(before))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(describe_bytes(512), "512 B");
        assert_eq!(describe_bytes(3 << 29), "1.5 GiB");
        assert_eq!(
            describe_bytes(u64::MAX),
            "more than 16 EiB (the size overflows)"
        );
        assert_eq!(mul(&[usize::MAX, 2]), u64::MAX);
        assert_eq!(mul(&[3, 4, 5]), 60);
    }

    #[test]
    fn the_blamed_size_is_the_one_that_must_shrink_most_and_its_largest_value_fits() {
        // need = a·b² bytes with 1000 available: b = 100 must shrink most.
        let estimate = |v: &[usize]| mul(&[v[0], v[1], v[1]]);
        let err = check_sizes_fit(&[("a", 2), ("b", 100)], Some(1000), estimate).unwrap_err();
        match err {
            Error::TooLarge { field, largest, .. } => {
                assert_eq!(field, "b");
                assert_eq!(largest, Some(22)); // 2·22² = 968 ≤ 1000 < 2·23²
            }
            other => panic!("{other}"),
        }
        assert!(check_sizes_fit(&[("a", 2), ("b", 22)], Some(1000), estimate).is_ok());
        assert!(check_sizes_fit(&[("a", 2), ("b", 100)], None, estimate).is_ok());
        // Nothing fits even at 1: blame the largest, no suggestion.
        let err = check_sizes_fit(&[("a", 5), ("b", 9)], Some(0), estimate).unwrap_err();
        assert!(err.to_string().contains("`b` = 9"), "{err}");
    }

    #[test]
    fn this_machine_reports_some_available_memory() {
        if cfg!(target_os = "linux") {
            let available = available_memory().expect("Linux reports MemAvailable");
            assert!(available > 1 << 20, "{available} bytes available?");
        }
    }
}
