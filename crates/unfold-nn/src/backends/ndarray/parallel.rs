//! Splitting the host kernels' work across cores by batch rows.
//!
//! The rows of a batch are independent sequences: row `b`'s states depend only on row `b`'s
//! inputs. So the recurrence splits into contiguous groups of rows, each run start to finish on
//! its own core with no synchronisation per step (no barrier: a thread never waits for another
//! until the pass ends), and only the sums over rows (`∂W`, `∂V`) are added up at the end.
//!
//! The parts run on a small pool of persistent workers that spin for a while after each job
//! before they sleep, as OpenMP's workers (PyTorch's CPU threads) do. Written by hand rather than
//! taken from rayon (already in Burn's dependency tree), because waking a sleeping thread is what
//! costs here: measured on the 2-core VM, one fork-join of two 100 µs halves costs 60-80 µs over
//! the work with scoped threads (a spawn each time) and 50-67 µs with rayon once its workers
//! have gone to sleep (they sleep within microseconds) — against a training step of ~6 ms with
//! six parallel regions. A worker that is still spinning starts within a microsecond.
use std::ops::Range;
use std::sync::{Mutex, OnceLock};

/// Below this many multiply-adds a pass runs on one thread: splitting costs more than it saves
/// (one generated token of a `[32, 256]` state is 2 M; measured: generation is no faster at a
/// threshold of 2^20, where those tokens split).
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

/// Runs `work` on each item, the first on the calling thread and the others on the pool's
/// workers, and returns the results in order. Which thread runs an item never changes its
/// result. If the pool is busy (another thread is inside `run`, or `run` is called from inside
/// `work`), the items run one after another on the calling thread.
pub fn run<T: Send, R: Send>(items: Vec<T>, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 {
        return items.into_iter().map(work).collect();
    }
    let Some(pool) = pool::Pool::get() else {
        return items.into_iter().map(work).collect();
    };
    // One cell per item: the item going in, its result coming out (each locked once, by the
    // one thread that runs it).
    let cells: Vec<Mutex<(Option<T>, Option<R>)>> = items
        .into_iter()
        .map(|item| Mutex::new((Some(item), None)))
        .collect();
    let task = |i: usize| {
        let mut cell = cells[i].lock().unwrap_or_else(|e| e.into_inner());
        let item = cell.0.take().expect("each item runs once");
        cell.1 = Some(work(item));
    };
    pool.run(cells.len(), &task);
    cells
        .into_iter()
        .map(|cell| {
            let (_, result) = cell.into_inner().unwrap_or_else(|e| e.into_inner());
            result.expect("every item ran")
        })
        .collect()
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

/// The persistent workers behind [`run`].
mod pool {
    use std::any::Any;
    use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
    use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, TryLockError};
    use std::time::{Duration, Instant};

    /// How long an idle worker spins before it sleeps: longer than the gaps between the
    /// parallel regions of a training step (Adam's update, the autodiff bookkeeping: tenths of
    /// a millisecond), short enough that an idle process stops using the cores almost at once.
    const SPIN: Duration = Duration::from_millis(2);

    /// A job as a worker sees it: run `task(index)`. The borrow is lifetime-erased; see
    /// [`Pool::run`] for why it stays valid.
    type Job = (*const (dyn Fn(usize) + Sync + 'static), usize);

    const IDLE: u8 = 0;
    const POSTED: u8 = 1;
    const DONE: u8 = 2;

    /// One worker's mailbox.
    struct Slot {
        /// `IDLE` → `POSTED` (by the caller) → `DONE` (by the worker) → `IDLE` (by the caller).
        state: AtomicU8,
        job: Mutex<Option<Job>>,
        panic: Mutex<Option<Box<dyn Any + Send>>>,
        /// Set while the worker sleeps on `wake` (under `sleep_lock`), so that posting a job
        /// only makes a system call when someone is asleep.
        sleeping: AtomicBool,
        sleep_lock: Mutex<()>,
        wake: Condvar,
    }

    // SAFETY: the raw job pointer is only dereferenced while the caller of `Pool::run` is
    // blocked waiting for this slot to be `DONE`, and the closure behind it is `Sync`.
    unsafe impl Send for Slot {}
    unsafe impl Sync for Slot {}

    pub(super) struct Pool {
        slots: Vec<Arc<Slot>>,
    }

    fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex.lock().unwrap_or_else(|e| e.into_inner())
    }

    impl Pool {
        /// The pool (`threads() - 1` workers, started on first use), or `None` while another
        /// call holds it.
        pub(super) fn get() -> Option<MutexGuard<'static, Pool>> {
            static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
            let pool = POOL.get_or_init(|| Mutex::new(Pool::start(super::threads() - 1)));
            match pool.try_lock() {
                Ok(guard) => Some(guard),
                Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            }
        }

        fn start(workers: usize) -> Pool {
            let slots = (0..workers)
                .map(|i| {
                    let slot = Arc::new(Slot {
                        state: AtomicU8::new(IDLE),
                        job: Mutex::new(None),
                        panic: Mutex::new(None),
                        sleeping: AtomicBool::new(false),
                        sleep_lock: Mutex::new(()),
                        wake: Condvar::new(),
                    });
                    let mine = Arc::clone(&slot);
                    std::thread::Builder::new()
                        .name(format!("unfold-worker-{i}"))
                        .spawn(move || work_loop(&mine))
                        .expect("starting a worker thread");
                    slot
                })
                .collect();
            Pool { slots }
        }

        /// Runs `task(0)`, …, `task(count - 1)`: index 0 (and any beyond the workers) on this
        /// thread, the others on one worker each. Returns once all have finished; a panic in
        /// any of them is re-raised here after all have finished.
        pub(super) fn run(&self, count: usize, task: &(dyn Fn(usize) + Sync)) {
            // SAFETY: only the lifetime is erased. The workers use the pointer until they mark
            // their slot `DONE`, and `Wait` below does not let this function return or unwind
            // before every posted slot is `DONE`, so `task` outlives every use.
            let task: *const (dyn Fn(usize) + Sync + 'static) =
                unsafe { std::mem::transmute(task as *const (dyn Fn(usize) + Sync)) };
            let posted = &self.slots[..self.slots.len().min(count - 1)];
            for (i, slot) in posted.iter().enumerate() {
                *lock(&slot.job) = Some((task, i + 1));
                slot.state.store(POSTED, SeqCst);
                if slot.sleeping.load(SeqCst) {
                    let _asleep = lock(&slot.sleep_lock);
                    slot.wake.notify_one();
                }
            }
            let wait = Wait(posted);
            let mine = catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: `task` is the live borrow this function was given.
                let task = unsafe { &*task };
                task(0);
                (posted.len() + 1..count).for_each(task);
            }));
            drop(wait);
            if let Err(panic) = mine {
                resume_unwind(panic);
            }
            for slot in posted {
                if let Some(panic) = lock(&slot.panic).take() {
                    resume_unwind(panic);
                }
            }
        }
    }

    /// Waits (spinning, then yielding) until every slot it holds is `DONE`, and resets them,
    /// when dropped: also when the caller's own part panics.
    struct Wait<'a>(&'a [Arc<Slot>]);

    impl Drop for Wait<'_> {
        fn drop(&mut self) {
            for slot in self.0 {
                let mut spins = 0u32;
                while slot.state.load(SeqCst) != DONE {
                    spins += 1;
                    if spins < 1 << 16 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
                slot.state.store(IDLE, SeqCst);
            }
        }
    }

    fn work_loop(slot: &Slot) {
        loop {
            let idle_since = Instant::now();
            while slot.state.load(SeqCst) != POSTED {
                if idle_since.elapsed() < SPIN {
                    std::hint::spin_loop();
                    continue;
                }
                let mut asleep = lock(&slot.sleep_lock);
                slot.sleeping.store(true, SeqCst);
                while slot.state.load(SeqCst) != POSTED {
                    asleep = slot.wake.wait(asleep).unwrap_or_else(|e| e.into_inner());
                }
                slot.sleeping.store(false, SeqCst);
            }
            let (task, index) = lock(&slot.job).take().expect("a posted slot holds a job");
            // SAFETY: the poster waits for `DONE` before the borrow behind `task` ends.
            let result = catch_unwind(AssertUnwindSafe(|| unsafe { (*task)(index) }));
            if let Err(panic) = result {
                *lock(&slot.panic) = Some(panic);
            }
            slot.state.store(DONE, SeqCst);
        }
    }
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

    #[test]
    fn run_uses_the_items_borrowed_data_and_repeats() {
        let data: Vec<u64> = (0..1000).collect();
        for round in 0..200u64 {
            let parts = vec![0..250, 250..600, 600..1000];
            let sums = run(parts, |part| {
                data[part].iter().map(|x| x * round).sum::<u64>()
            });
            let expected: u64 = data.iter().map(|x| x * round).sum();
            assert_eq!(sums.iter().sum::<u64>(), expected);
        }
    }

    #[test]
    fn a_panicking_item_panics_in_the_caller_and_the_pool_keeps_working() {
        for panicking in [0, 1] {
            let caught = std::panic::catch_unwind(|| {
                run(vec![0, 1], |i: i32| {
                    if i == panicking {
                        panic!("item {i} failed");
                    }
                    i
                })
            });
            let message = caught.expect_err("the panic reaches the caller");
            let message = message
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default();
            assert_eq!(message, format!("item {panicking} failed"));
            assert_eq!(run(vec![3, 4], |i: i32| i + 1), vec![4, 5]);
        }
    }

    #[test]
    fn calls_from_several_threads_and_nested_calls_all_get_their_results() {
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                scope.spawn(move || {
                    for _ in 0..100 {
                        let got = run(vec![t, t + 1], |x| run(vec![x, 10 * x], |y| y + 1));
                        assert_eq!(got, vec![vec![t + 1, 10 * t + 1], vec![t + 2, 10 * t + 11]]);
                    }
                });
            }
        });
    }
}
