//! Command-line flags every example and experiment shares, with per-program defaults.

use std::path::PathBuf;

use clap::{Args, Parser};
use serde::{Deserialize, Serialize};

/// Flags shared by every example (same names, same meaning).
#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct CommonArgs {
    /// Train on this UTF-8 text file instead of the built-in corpus.
    #[arg(long, value_name = "FILE")]
    pub corpus: Option<PathBuf>,
    /// Width of the hidden state h(t).
    #[arg(long)]
    pub hidden: usize,
    /// Time steps per training sequence (the BPTT length).
    #[arg(long)]
    pub seq_len: usize,
    /// Sequences per training batch.
    #[arg(long)]
    pub batch: usize,
    /// Optimiser steps to train for.
    #[arg(long)]
    pub steps: usize,
    /// Adam learning rate.
    #[arg(long)]
    pub lr: f64,
    /// Seed for parameter initialisation, batching and sampling (runs are reproducible).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output directory: config, trained model, metrics.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

impl CommonArgs {
    /// Checks the shared flags, plus the example's own counts in `counts` (`(flag, value)`,
    /// each at least 1): clap accepts `--hidden 0` or `--lr nan`; training could not use them.
    pub fn validate(&self, counts: &[(&'static str, usize)]) -> unfold_nn::Result<()> {
        use unfold_nn::Error;
        let shared = [
            ("--hidden", self.hidden),
            ("--seq-len", self.seq_len),
            ("--batch", self.batch),
            ("--steps", self.steps),
        ];
        for &(field, value) in shared.iter().chain(counts) {
            if value == 0 {
                return Err(Error::config(field, value, "must be at least 1"));
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::config(
                "--lr",
                self.lr,
                "must be a positive, finite number",
            ));
        }
        Ok(())
    }

    /// Refuses a `--hidden`, `--batch`, `--seq-len` whose training step cannot fit in the
    /// memory this process can have, before anything is allocated: `estimate(hidden, batch,
    /// seq_len)` is the step's need (a config's `training_memory`). The error names the flag
    /// to shrink, the bytes needed and available, and the largest value that fits, where Rust
    /// would otherwise abort on the failed allocation.
    pub fn check_memory(
        &self,
        estimate: impl Fn(usize, usize, usize) -> unfold_nn::memory::MemoryEstimate,
    ) -> unfold_nn::Result<()> {
        unfold_nn::memory::check_training(
            &[
                ("--hidden", self.hidden),
                ("--batch", self.batch),
                ("--seq-len", self.seq_len),
            ],
            |v| Ok(estimate(v[0], v[1], v[2])),
        )
    }
}

/// One example's defaults for the [`CommonArgs`].
#[derive(Debug, Clone)]
pub struct Defaults {
    /// `--hidden`.
    pub hidden: usize,
    /// `--seq-len`.
    pub seq_len: usize,
    /// `--batch`.
    pub batch: usize,
    /// `--steps`.
    pub steps: usize,
    /// `--lr`.
    pub lr: f64,
    /// `--out`.
    pub out: &'static str,
}

/// Parses the process arguments into `A`, whose flattened [`CommonArgs`] take `defaults`
/// (shown in `--help`). Exits with clap's message on bad flags.
pub fn parse<A: Parser>(defaults: &Defaults) -> A {
    let command = A::command()
        .mut_arg("hidden", |a| {
            a.required(false).default_value(defaults.hidden.to_string())
        })
        .mut_arg("seq_len", |a| {
            a.required(false)
                .default_value(defaults.seq_len.to_string())
        })
        .mut_arg("batch", |a| {
            a.required(false).default_value(defaults.batch.to_string())
        })
        .mut_arg("steps", |a| {
            a.required(false).default_value(defaults.steps.to_string())
        })
        .mut_arg("lr", |a| {
            a.required(false).default_value(defaults.lr.to_string())
        })
        .mut_arg("out", |a| a.required(false).default_value(defaults.out));
    A::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
}
