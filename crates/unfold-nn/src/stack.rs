//! Layers of recurrences: the one stack every multi-layer model is built on.
//!
//! ```text
//! h¹(t) = f¹(h¹(t-1), x(t))                 layer 1 reads the input
//! hᵏ(t) = fᵏ(hᵏ(t-1), dropout(hᵏ⁻¹(t)))     layer k reads the states of layer k-1
//! ```
//!
//! With two directions, each layer also has a cell that reads every sequence backwards, from
//! its own last valid step to its first, and the layer's states are the two directions'
//! concatenated, `[→hᵏ(t), ←hᵏ(t)]` (PyTorch's `bidirectional=True`). Dropout applies to what a
//! layer hands the next one, never to the top layer's states, and only while training (under
//! an autodiff backend, as Burn's `Dropout` does): one mask over the whole `[batch, time,
//! width]` tensor, no per-step loop.
//!
//! [`ElmanRnn`](crate::ElmanRnn) (a readout at every step) and
//! [`SequenceEncoder`](crate::SequenceEncoder) (one summary at the end) are both a
//! [`RecurrentStack`] plus their head.

use std::marker::PhantomData;

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{backend::Backend, Tensor};

use crate::error::{Error, Result};
use crate::layout::concat;
use crate::recurrence::{Recurrence, SequenceInput, State, StepPlan, UnrollOptions, Unrolled};

/// A stack of recurrent layers, optionally bidirectional, with dropout between layers.
///
/// `C` is the cell of every layer and direction. The state of the stack is every layer's
/// state, in PyTorch's order: for each layer from the bottom, the forward cell's parts, then
/// (bidirectional) the reversed cell's.
#[derive(Module, Debug)]
pub struct RecurrentStack<B: Backend, C: Module<B>> {
    /// The forward cells, bottom layer first.
    pub layers: Vec<C>,
    /// The reversed-direction cells, one per layer; empty when not bidirectional.
    pub reversed_layers: Vec<C>,
    /// Dropout on the states each layer but the top one hands to the next.
    pub dropout: Dropout,
    /// The backend the cells run on (`C` alone does not name it).
    backend: PhantomData<B>,
}

impl<B: Backend, C: Recurrence<B> + Module<B>> RecurrentStack<B, C> {
    /// A stack from cells built by hand: `layers` bottom first, `reversed_layers` empty or one
    /// per layer (bidirectional), no dropout.
    ///
    /// Checks that there is a layer, that each layer's input width is the previous layer's
    /// state width (both directions), and that the reversed cells match the forward ones.
    pub fn try_new(layers: Vec<C>, reversed_layers: Vec<C>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::config("num_layers", 0, "must be at least 1"));
        }
        if !reversed_layers.is_empty() && reversed_layers.len() != layers.len() {
            return Err(Error::config(
                "reversed_layers",
                format!("{} cells", reversed_layers.len()),
                format!("must be empty or one per layer ({} layers)", layers.len()),
            ));
        }
        for (k, backward) in reversed_layers.iter().enumerate() {
            let forward = &layers[k];
            let (got, want) = (
                [backward.input_size(), backward.state_size()],
                [forward.input_size(), forward.state_size()],
            );
            if got != want {
                return Err(Error::config(
                    "reversed_layers",
                    format!("[{k}] with input {} and state {}", got[0], got[1]),
                    format!(
                        "must match the forward layer {k} (input {}, state {})",
                        want[0], want[1]
                    ),
                ));
            }
        }
        let directions = if reversed_layers.is_empty() { 1 } else { 2 };
        for k in 1..layers.len() {
            let below = layers[k - 1].state_size() * directions;
            if layers[k].input_size() != below {
                return Err(Error::config(
                    "layers",
                    format!("[{k}] with input {}", layers[k].input_size()),
                    format!("must read the {below} features layer {} produces", k - 1),
                ));
            }
        }
        Ok(Self {
            layers,
            reversed_layers,
            dropout: DropoutConfig::new(0.0).init(),
            backend: PhantomData,
        })
    }

    /// Builds a stack of `num_layers` layers (two directions each when `bidirectional`) from
    /// `make_cell(input_size, hidden_size)`, called once per layer and direction, bottom layer
    /// first, forward before reversed. Layer 0 reads `input_size` features; layer `k + 1` reads
    /// layer `k`'s `state_size × directions`.
    ///
    /// Returns an error if a size is zero, `dropout` is not in `[0, 1)`, or the cells it
    /// returns do not chain (see [`try_new`](Self::try_new)).
    pub fn try_build(
        input_size: usize,
        hidden_size: usize,
        num_layers: usize,
        bidirectional: bool,
        dropout: f64,
        mut make_cell: impl FnMut(usize, usize) -> C,
    ) -> Result<Self> {
        crate::error::check_sizes(&[
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ])?;
        check_dropout(dropout)?;
        let mut layers: Vec<C> = Vec::with_capacity(num_layers);
        let mut reversed_layers = Vec::new();
        let mut input_size = input_size;
        for _ in 0..num_layers {
            let forward = make_cell(input_size, hidden_size);
            let mut width = forward.state_size();
            if bidirectional {
                let backward = make_cell(input_size, hidden_size);
                width += backward.state_size();
                reversed_layers.push(backward);
            }
            layers.push(forward);
            input_size = width;
        }
        Self::try_new(layers, reversed_layers)?.with_dropout(dropout)
    }

    /// The same stack with dropout probability `p` between layers (`0 ≤ p < 1`).
    pub fn with_dropout(mut self, p: f64) -> Result<Self> {
        check_dropout(p)?;
        self.dropout = DropoutConfig::new(p).init();
        Ok(self)
    }

    /// Width of `x(t)` read by the bottom layer.
    pub fn input_size(&self) -> usize {
        self.layers[0].input_size()
    }

    /// Width of the top layer's states: its state width, times 2 when bidirectional.
    pub fn output_size(&self) -> usize {
        let top = self.layers.len() - 1;
        self.layers[top].state_size()
            + self
                .reversed_layers
                .get(top)
                .map_or(0, |cell| cell.state_size())
    }

    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Whether each layer also reads the sequences backwards.
    pub fn is_bidirectional(&self) -> bool {
        !self.reversed_layers.is_empty()
    }

    /// The cells in the stack's state order: each layer's forward cell, then its reversed one.
    fn cells(&self) -> impl Iterator<Item = &C> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(k, cell)| std::iter::once(cell).chain(self.reversed_layers.get(k)))
    }

    /// Widths of every part of the stack's state, in its order (see the type's docs).
    pub fn state_widths(&self) -> Vec<usize> {
        self.cells().flat_map(|cell| cell.state_widths()).collect()
    }

    /// Reads `input` (dense `[batch, time, input_size]` or token ids `[batch, time]`) through
    /// every layer: returns the top layer's states, its final `h` (both directions
    /// concatenated: the forward one at each sequence's own last step, the reversed one at
    /// step 0, as PyTorch's `h_n`), and the whole final state of every layer.
    ///
    /// `options`: the initial state (every part, in the stack's order), the lengths (shared
    /// by every layer), and `reverse`, which swaps the two directions' reading order.
    pub fn try_forward(
        &self,
        input: impl Into<SequenceInput<B>>,
        options: &UnrollOptions<B>,
    ) -> Result<Unrolled<B>> {
        let input = input.into();
        input.validate("input", self.input_size())?;
        let [batch, time] = input.batch_and_time();
        let device = input.device();
        // One plan per direction serves every layer: the lengths are checked and the padding
        // mask built once.
        let forward_plan = options.plan(batch, time, &device)?;
        let reversed_plan = match self.is_bidirectional() {
            true => Some(StepPlan::new(
                batch,
                time,
                options.lengths.as_deref(),
                !options.reverse,
                &device,
            )?),
            false => None,
        };
        let initial = options.initial_state_for(batch, &self.state_widths(), &device)?;
        let mut initial = initial.into_parts().into_iter();
        let mut take_state = |cell: &C| {
            State::from_parts(initial.by_ref().take(cell.state_widths().len()).collect())
        };
        let mut final_parts = Vec::new();
        let mut input = input;
        let mut top = None;
        for (k, cell) in self.layers.iter().enumerate() {
            let forward = read(cell, input.clone(), take_state(cell), &forward_plan)?;
            final_parts.extend(forward.final_state.parts().iter().cloned());
            let out = match &reversed_plan {
                None => forward,
                Some(plan) => {
                    let reversed_cell = &self.reversed_layers[k];
                    let h0 = take_state(reversed_cell);
                    let backward = read(reversed_cell, input, h0, plan)?;
                    final_parts.extend(backward.final_state.parts().iter().cloned());
                    let last = concat(vec![forward.last, backward.last], 1);
                    Unrolled {
                        states: concat(vec![forward.states, backward.states], 2),
                        last: last.clone(),
                        final_state: State::new(last),
                    }
                }
            };
            // Layer k + 1 reads layer k's states as dense features, with the same lengths.
            input = match k + 1 < self.layers.len() {
                true => SequenceInput::Dense(self.dropout.forward(out.states.clone())),
                false => SequenceInput::Dense(out.states.clone()),
            };
            top = Some(out);
        }
        let top = top.expect("a stack has at least one layer");
        Ok(Unrolled {
            states: top.states,
            last: top.last,
            final_state: State::from_parts(final_parts),
        })
    }
}

impl<B: Backend, C: Recurrence<B> + Module<B>> RecurrentStack<B, C> {
    /// The top layer's forward `h` in a state of this stack (unidirectional: its last layer's
    /// part 0).
    pub(crate) fn top_output(&self, state: &State<B>) -> Tensor<B, 2> {
        let below: usize = self.layers[..self.layers.len() - 1]
            .iter()
            .map(|cell| cell.state_widths().len())
            .sum();
        state.parts()[below].clone()
    }

    /// One step of every layer from `state` (the stack's state, every part) on the input
    /// `drive` of the bottom layer for this step (row `t` of its
    /// [`drive`](Recurrence::drive)): what generation feeds a token through. Forward
    /// direction only; the caller refuses bidirectional stacks.
    pub(crate) fn step(&self, state: State<B>, drive: Tensor<B, 2>) -> State<B> {
        let mut parts = state.into_parts().into_iter();
        let mut next_parts = Vec::new();
        let mut drive = drive;
        for (k, cell) in self.layers.iter().enumerate() {
            let here = State::from_parts(parts.by_ref().take(cell.state_widths().len()).collect());
            let next = cell.step_state(here, drive.clone());
            let h = next.output().clone();
            next_parts.extend(next.into_parts());
            if let Some(above) = self.layers.get(k + 1) {
                let [batch, width] = h.dims();
                let h = self.dropout.forward(h).reshape([batch, 1, width]);
                drive = crate::recurrence::drive_at(&above.drive(SequenceInput::Dense(h)), 0);
            }
        }
        State::from_parts(next_parts)
    }
}

/// One direction of one layer over the whole batch, from `h0`.
fn read<B: Backend, C: Recurrence<B>>(
    cell: &C,
    input: SequenceInput<B>,
    h0: State<B>,
    plan: &StepPlan<B>,
) -> Result<Unrolled<B>> {
    cell.scan(cell.drive(input), h0, plan)
}

/// A dropout probability must be in `[0, 1)`.
pub(crate) fn check_dropout(p: f64) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::config(
            "dropout",
            p,
            "must be a probability in [0, 1) (0 turns dropout off)",
        ))
    }
}
