#!/usr/bin/env python3
"""JAX reference for `cargo bench --bench rnn`: the workloads of `benches/pytorch_reference.py`,
written the way a JAX user writes them.

    python3 benches/jax_reference.py                  # every workload, markdown rows
    python3 benches/jax_reference.py --quick          # fewer steps
    python3 benches/jax_reference.py --only standard  # one workload (standard, large, jordan,
                                                      # generate)
    python3 benches/jax_reference.py --json           # one JSON object per row (the keys of
                                                      # pytorch_reference.py's rows)

Hidden-to-hidden RNN language model: h(t) = tanh(U[x(t)] + h(t-1) W + b) (token input as a row
lookup, not a one-hot product), `jax.lax.scan` over time, logits = h V + c at every step,
cross-entropy (`optax.softmax_cross_entropy_with_integer_labels`, mean over tokens), optax
Adam (lr 2e-3); the whole training step (forward, backward, update) is one `jax.jit`. The
output-to-hidden (Jordan) model, teacher-forced: h = tanh(U[x] + W[y(t-1)] + b) at every step at
once (no scan; row `vocab` of W is the start vector), then the same readout and loss.
`generate`: 32 streams, a 2-token random prompt read by the recurrence, then 256 tokens sampled
at temperature 1 (`jax.random.categorical`), the whole loop one jitted `lax.scan`.

Measured like the PyTorch script: the warm-up steps (which include the JIT compile) are not
timed, every timed step ends in `block_until_ready`; wall ms and process CPU ms (all threads)
per step, and the growth of the process's peak resident set (a lower bound). Optional: without
JAX (and optax) installed it says so and exits 0.
"""

import json
import os
import resource
import sys
import time

try:
    import jax
    import jax.numpy as jnp
    import optax
except ImportError as e:
    print(f"JAX is not installed ({e}): skipping the JAX reference "
          "(python3 -m venv /tmp/jaxvenv && /tmp/jaxvenv/bin/pip install jax optax)")
    sys.exit(0)

QUICK = "--quick" in sys.argv
JSON = "--json" in sys.argv
ONLY = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
STEPS, MIN_TIME = (3, 0.3) if QUICK else (20, 3.0)
SYSTEM = f"JAX {jax.__version__} (XLA {jax.default_backend().upper()})"


def emit(workload, system, ms, tokens, peak_mib=float("nan"), cpu_ms=float("nan")):
    if JSON:
        print(json.dumps({"workload": workload, "system": system, "ms": ms, "cpu_ms": cpu_ms,
                          "tokens_per_s": tokens / ms * 1e3, "peak_mib": peak_mib}), flush=True)
    else:
        print(f"| {workload} | {system} | {ms:.1f} | {tokens / ms * 1e3:.0f} | {peak_mib:.1f} |",
              flush=True)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(step, steps, min_time, warmup=2):
    """(wall ms, process CPU ms — all threads) per step; `step` must block until done."""
    for _ in range(warmup):  # the first one compiles
        step()
    started, cpu, done = time.perf_counter(), time.process_time(), 0
    while done < steps or time.perf_counter() - started < min_time:
        step()
        done += 1
    return ((time.perf_counter() - started) * 1e3 / done,
            (time.process_time() - cpu) * 1e3 / done)


def uniform(key, shape, bound):
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def elman_params(key, vocab, hidden):
    """PyTorch-like initialisation: U ~ N(0, 1) (an embedding), the rest ~ U(±1/sqrt(H))."""
    k = jax.random.split(key, 5)
    s = 1.0 / hidden ** 0.5
    return {
        "U": jax.random.normal(k[0], (vocab, hidden), jnp.float32),
        "W": uniform(k[1], (hidden, hidden), s),
        "b": uniform(k[2], (hidden,), s),
        "V": uniform(k[3], (hidden, vocab), s),
        "c": uniform(k[4], (vocab,), s),
    }


def elman_states(params, ids, h0):
    """[B, T] ids -> [T, B, H] states; h(t) = tanh(U[x(t)] + h(t-1) W + b) by lax.scan."""
    xs = params["U"][ids.T] + params["b"]  # [T, B, H]: the row lookup, bias folded in

    def cell(h, x):
        h = jnp.tanh(x + h @ params["W"])
        return h, h

    h_last, states = jax.lax.scan(cell, h0, xs)
    return h_last, states


def elman_loss(params, ids, targets):
    h0 = jnp.zeros((ids.shape[0], params["W"].shape[0]), jnp.float32)
    _, states = elman_states(params, ids, h0)
    logits = states @ params["V"] + params["c"]  # [T, B, V]
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets.T).mean()


def jordan_params(key, vocab, hidden):
    k = jax.random.split(key, 4)
    s = 1.0 / hidden ** 0.5
    return {
        "U": jax.random.normal(k[0], (vocab, hidden), jnp.float32),
        "W": jax.random.normal(k[1], (vocab + 1, hidden), jnp.float32),  # row vocab: r(0)
        "b": jnp.zeros((hidden,), jnp.float32),
        "V": uniform(k[2], (hidden, vocab), s),
        "c": uniform(k[3], (vocab,), s),
    }


def jordan_loss(params, ids, targets):
    """Teacher-forced: every step at once, h = tanh(U[x] + W[y(t-1)] + b)."""
    vocab = params["V"].shape[1]
    start = jnp.full_like(targets[:, :1], vocab)
    previous = jnp.concatenate([start, targets[:, :-1]], axis=1)
    h = jnp.tanh(params["U"][ids] + params["W"][previous] + params["b"])
    logits = h @ params["V"] + params["c"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def train_row(name, loss_fn, params, batch, seq, vocab, steps, min_time, label):
    k_ids, k_targets = jax.random.split(jax.random.PRNGKey(1))
    ids = jax.random.randint(k_ids, (batch, seq), 0, vocab)
    targets = jax.random.randint(k_targets, (batch, seq), 0, vocab)
    opt = optax.adam(2e-3)

    @jax.jit
    def train_step(params, opt_state, ids, targets):
        loss, grads = jax.value_and_grad(loss_fn)(params, ids, targets)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state = [params, opt.init(params)]

    def step():
        params, opt_state, loss = train_step(state[0], state[1], ids, targets)
        loss.block_until_ready()
        state[0], state[1] = params, opt_state

    before = peak_rss_mib()
    ms, cpu_ms = measure(step, steps, min_time)
    emit(name, f"{SYSTEM} {label}", ms, batch * seq, peak_rss_mib() - before, cpu_ms)


def generate_row(steps, min_time, streams=32, tokens=256, vocab=65, hidden=256):
    params = elman_params(jax.random.PRNGKey(0), vocab, hidden)

    @jax.jit
    def generate(params, key):
        k_prompt, k_sample = jax.random.split(key)
        prompts = jax.random.randint(k_prompt, (streams, 2), 0, vocab)
        h0 = jnp.zeros((streams, hidden), jnp.float32)
        h, _ = elman_states(params, prompts, h0)

        def one(h, key):
            logits = h @ params["V"] + params["c"]
            token = jax.random.categorical(key, logits, axis=-1)  # temperature 1
            h = jnp.tanh(params["U"][token] + params["b"] + h @ params["W"])
            return h, token

        _, out = jax.lax.scan(one, h, jax.random.split(k_sample, tokens))
        return out.T  # [streams, tokens]

    key = [jax.random.PRNGKey(2)]

    def run():
        key[0], sub = jax.random.split(key[0])
        generate(params, sub).block_until_ready()

    before = peak_rss_mib()
    ms, cpu_ms = measure(run, min(steps, 5), min_time, warmup=1)
    emit(f"generate ({streams} streams x {tokens} tokens, H{hidden} V{vocab})",
         f"{SYSTEM} lax.scan sampling (batched)", ms, streams * tokens,
         peak_rss_mib() - before, cpu_ms)


def wanted(name):
    return ONLY is None or ONLY in name


if not JSON:
    print("| workload | system | ms/step | tokens/s | peak RSS growth MiB |")
    print("|---|---|---|---|---|")
key = jax.random.PRNGKey(0)
if wanted("standard"):
    train_row("train standard (B32 T64 H256 V65)", elman_loss, elman_params(key, 65, 256),
              32, 64, 65, STEPS, MIN_TIME, "jit(lax.scan RNN + dense)")
if wanted("large"):
    train_row("train large (B64 T128 H1024 V65)", elman_loss, elman_params(key, 65, 1024),
              64, 128, 65, min(STEPS, 3), MIN_TIME / 3, "jit(lax.scan RNN + dense)")
if wanted("jordan"):
    train_row("train Jordan teacher-forced (B32 T64 H256 V65)", jordan_loss,
              jordan_params(key, 65, 256), 32, 64, 65, STEPS, MIN_TIME,
              "jit(lookup x2 + tanh + dense)")
if wanted("generate"):
    generate_row(STEPS, MIN_TIME)
if ONLY == "breakdown":
    print("jax_reference.py has no breakdown (see pytorch_reference.py --only breakdown)",
          file=sys.stderr)
