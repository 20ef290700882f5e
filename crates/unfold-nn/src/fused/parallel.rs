//! Splitting the host kernels' work across cores by batch rows.
//!
//! The rows of a batch are independent sequences: row `b`'s states depend only on row `b`'s
//! inputs. So the recurrence splits into contiguous groups of rows, each run start to finish on
//! its own core with no synchronisation per step (no barrier: a thread never waits for another
//! until the pass ends), and only the sums over rows (`∂W`, `∂V`) are added up at the end.
//!
//! Scoped `std` threads rather than a pool crate (rayon): there are two or three parallel
//! regions per training step, each milliseconds long, so a spawn (≈ 20 µs) is noise, and
//! Burn's ndarray backend is built here without its rayon feature.

use std::ops::Range;
use std::sync::OnceLock;

/// Below this many multiply-adds a pass runs on one thread: spawning costs more than it saves
/// (one generated token of a `[32, 256]` state is 2 M).
const MIN_PARALLEL_WORK: usize = 1 << 23;

/// How many threads the host kernels use: `UNFOLD_NUM_THREADS` if set, else the number of
/// cores. Fixed for the process, so a run's results never depend on the machine's load.
pub fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("UNFOLD_NUM_THREADS")
            .ok()
            .and_then(|value| value.parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// Contiguous, balanced ranges of `0..rows`, one per thread, given the multiply-adds of one row.
pub fn parts(rows: usize, work_per_row: usize) -> Vec<Range<usize>> {
    let wanted = if rows.saturating_mul(work_per_row) < MIN_PARALLEL_WORK {
        1
    } else {
        threads()
    };
    let count = wanted.clamp(1, rows.max(1));
    (0..count)
        .map(|i| rows * i / count..rows * (i + 1) / count)
        .collect()
}

/// Runs `work` on each item, the first on the calling thread and the rest on their own threads,
/// and returns the results in order.
pub fn run<T: Send, R: Send>(items: Vec<T>, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    let mut items = items.into_iter();
    let Some(first) = items.next() else {
        return Vec::new();
    };
    std::thread::scope(|scope| {
        let work = &work;
        let others: Vec<_> = items.map(|item| scope.spawn(move || work(item))).collect();
        let mut results = vec![work(first)];
        results.extend(others.into_iter().map(|handle| {
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }));
        results
    })
}

/// Splits `values` (rows of `row_len` elements) into the mutable chunks of `parts`.
pub fn chunks_mut<'a, F>(
    mut values: &'a mut [F],
    parts: &[Range<usize>],
    row_len: usize,
) -> Vec<&'a mut [F]> {
    parts
        .iter()
        .map(|part| {
            let (chunk, rest) = std::mem::take(&mut values).split_at_mut(part.len() * row_len);
            values = rest;
            chunk
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_every_row_once_in_order() {
        for rows in [1, 2, 7, 32, 33] {
            let parts = parts(rows, usize::MAX / 64);
            assert_eq!(parts.first().unwrap().start, 0);
            assert_eq!(parts.last().unwrap().end, rows);
            assert!(parts.windows(2).all(|pair| pair[0].end == pair[1].start));
            assert!(parts.iter().all(|part| !part.is_empty()));
        }
        assert_eq!(parts(32, 1).len(), 1, "small work stays on one thread");
    }

    #[test]
    fn run_returns_results_in_item_order() {
        let results = run((0..5).collect(), |i: i32| i * 10);
        assert_eq!(results, vec![0, 10, 20, 30, 40]);
    }
}
