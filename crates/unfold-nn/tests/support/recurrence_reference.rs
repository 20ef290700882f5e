//! A plain f64 CPU loop of the fused recurrence (forward and BPTT, `∂W` included): the reference
//! the GPU kernels are tested against (`tests/cubecl_recurrence.rs`). Written from the
//! semantics, not from the kernels.

/// One problem: row-major buffers and the step layout.
#[derive(Debug, Clone)]
pub struct Problem {
    pub batch: usize,
    pub time: usize,
    pub hidden: usize,
    pub reverse: bool,
    pub lengths: Option<Vec<usize>>,
    pub relu: bool,
    /// `[batch, time, hidden]`.
    pub drive: Vec<f32>,
    /// `[hidden, hidden]`, `[from, to]`.
    pub w: Vec<f32>,
    /// `[batch, hidden]`.
    pub h0: Vec<f32>,
    /// `∂L/∂states`, `[batch, time, hidden]`.
    pub grad: Vec<f32>,
}

/// The reference results.
#[derive(Debug, Clone)]
pub struct Reference {
    pub states: Vec<f64>,
    pub d_drive: Vec<f64>,
    pub d_h0: Vec<f64>,
    pub d_w: Vec<f64>,
}

impl Problem {
    /// Deterministic pseudo-random values (a small LCG) scaled so tanh is neither saturated
    /// nor linear, and relu keeps a mix of active and dead units.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        batch: usize,
        time: usize,
        hidden: usize,
        reverse: bool,
        lengths: Option<Vec<usize>>,
        relu: bool,
        seed: u64,
    ) -> Self {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32 // in [-0.5, 0.5)
        };
        let w_scale = 2.0 / (hidden as f32).sqrt(); // spectral radius around 0.6
        let drive = (0..batch * time * hidden).map(|_| 2.0 * next()).collect();
        let w = (0..hidden * hidden).map(|_| w_scale * next()).collect();
        let h0 = (0..batch * hidden).map(|_| next()).collect();
        let grad = (0..batch * time * hidden).map(|_| 2.0 * next()).collect();
        Self {
            batch,
            time,
            hidden,
            reverse,
            lengths,
            relu,
            drive,
            w,
            h0,
            grad,
        }
    }

    fn valid(&self, b: usize, t: usize) -> bool {
        self.lengths.as_ref().is_none_or(|l| t < l[b])
    }

    fn order(&self) -> Vec<usize> {
        if self.reverse {
            (0..self.time).rev().collect()
        } else {
            (0..self.time).collect()
        }
    }

    /// Forward and backward in f64.
    pub fn reference(&self) -> Reference {
        let (bs, ts, hs) = (self.batch, self.time, self.hidden);
        let w: Vec<f64> = self.w.iter().map(|&v| v as f64).collect();
        let at = |b: usize, t: usize| (b * ts + t) * hs;
        let mut states = vec![0.0f64; bs * ts * hs];
        let mut d_drive = vec![0.0f64; bs * ts * hs];
        let mut d_h0 = vec![0.0f64; bs * hs];
        let mut d_w = vec![0.0f64; hs * hs];
        let order = self.order();
        for b in 0..bs {
            // Forward, remembering h(t-1) of every step for ∂W.
            let mut h: Vec<f64> = self.h0[b * hs..(b + 1) * hs]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let mut prev_of = vec![vec![0.0f64; hs]; ts];
            for &t in &order {
                prev_of[t] = h.clone();
                if self.valid(b, t) {
                    let mut next = vec![0.0f64; hs];
                    for (j, out) in next.iter_mut().enumerate() {
                        let mut a = self.drive[at(b, t) + j] as f64;
                        for k in 0..hs {
                            a += h[k] * w[k * hs + j];
                        }
                        *out = if self.relu { a.max(0.0) } else { a.tanh() };
                    }
                    h = next;
                }
                states[at(b, t)..at(b, t) + hs].copy_from_slice(&h);
            }
            // Backward.
            let mut carry = vec![0.0f64; hs];
            for &t in order.iter().rev() {
                let dh: Vec<f64> = (0..hs)
                    .map(|j| self.grad[at(b, t) + j] as f64 + carry[j])
                    .collect();
                if !self.valid(b, t) {
                    carry = dh; // held: δa = 0, δh passes through
                    continue;
                }
                let da: Vec<f64> = (0..hs)
                    .map(|j| {
                        let h = states[at(b, t) + j];
                        let slope = if self.relu {
                            if h > 0.0 {
                                1.0
                            } else {
                                0.0
                            }
                        } else {
                            1.0 - h * h
                        };
                        slope * dh[j]
                    })
                    .collect();
                d_drive[at(b, t)..at(b, t) + hs].copy_from_slice(&da);
                for k in 0..hs {
                    carry[k] = (0..hs).map(|j| da[j] * w[k * hs + j]).sum();
                    for j in 0..hs {
                        d_w[k * hs + j] += prev_of[t][k] * da[j];
                    }
                }
            }
            d_h0[b * hs..(b + 1) * hs].copy_from_slice(&carry);
        }
        Reference {
            states,
            d_drive,
            d_h0,
            d_w,
        }
    }
}

/// The largest `|got - want| / max(1, |want|)`: relative error for values above one, absolute
/// below (states and gradients of order one here).
pub fn max_error(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs() / w.abs().max(1.0))
        .fold(0.0, f64::max)
}
