#!/usr/bin/env python3
"""PyTorch reference for `cargo bench --bench rnn`: the same workloads, the same math.

    python3 benches/pytorch_reference.py                  # every workload, markdown rows
    python3 benches/pytorch_reference.py --quick          # fewer steps
    python3 benches/pytorch_reference.py --only standard  # one workload (standard, large,
                                                          # jordan, generate, breakdown)
    python3 benches/pytorch_reference.py --json           # one JSON object per row (the bench
                                                          # reads these)

Hidden-to-hidden RNN language model: token ids -> nn.Embedding (the row lookup that unfold's
token input is) -> nn.RNN(tanh) -> nn.Linear -> cross-entropy, Adam(lr 2e-3). The
output-to-hidden (Jordan) model, teacher-forced: tanh(Embedding(x) + Embedding(y(t-1))) ->
Linear -> cross-entropy. `breakdown` times each part of a standard step alone and prints the
profiler's top operators for one whole step (to stderr). Peak memory: growth of the process's
peak resident set during the workload (a lower bound). Optional: without PyTorch installed it
says so and exits 0.
"""

import json
import math
import resource
import sys
import time

try:
    import torch
    import torch.nn as nn
except ImportError:
    print("PyTorch is not installed: skipping the reference "
          "(python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch)")
    sys.exit(0)

QUICK = "--quick" in sys.argv
JSON = "--json" in sys.argv
ONLY = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
# --device cuda: the GPU rows of benches/gpu.sh (nn.RNN then runs cuDNN's fused kernels).
DEVICE = torch.device(sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu")
STEPS, MIN_TIME = (3, 0.3) if QUICK else (20, 3.0)
SYSTEM = (f"PyTorch {torch.__version__.split('+')[0]} "
          + (f"(cuDNN, {torch.cuda.get_device_name(DEVICE)})" if DEVICE.type == "cuda"
             else f"({torch.get_num_threads()} threads)"))


def sync():
    """Waits for the GPU's queued work, so a step's time is the work's, not its launch's."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def emit(workload, system, ms, tokens, peak_mib=float("nan"), cpu_ms=float("nan")):
    if JSON:
        # JSON has no NaN: an unmeasured value is null.
        known = lambda x: None if math.isnan(x) else x
        print(json.dumps({"workload": workload, "system": system, "ms": ms,
                          "cpu_ms": known(cpu_ms), "tokens_per_s": tokens / ms * 1e3,
                          "peak_mib": known(peak_mib)}), flush=True)
    else:
        print(f"| {workload} | {system} | {ms:.1f} | {tokens / ms * 1e3:.0f} | {peak_mib:.1f} |",
              flush=True)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class CharRnn(nn.Module):
    """Embedding -> nn.RNN / nn.LSTM / nn.GRU (any layers, directions) -> Linear."""

    def __init__(self, vocab, hidden, kind="rnn", layers=1, bidirectional=False,
                 nonlinearity="tanh"):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)  # U x(t) as a lookup (W_ih folded in)
        common = dict(num_layers=layers, bidirectional=bidirectional, batch_first=True)
        if kind == "rnn":
            self.rnn = nn.RNN(hidden, hidden, nonlinearity=nonlinearity, **common)
        else:
            self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[kind](hidden, hidden, **common)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), vocab)
        self.label = {"rnn": f"nn.RNN({nonlinearity})", "lstm": "nn.LSTM", "gru": "nn.GRU"}[kind]
        if layers > 1 or bidirectional:
            self.label += f" x{layers}" + (" bidirectional" if bidirectional else "")

    def forward(self, ids):
        states, _ = self.rnn(self.embed(ids))
        return self.head(states)


class Jordan(nn.Module):
    """Teacher-forced output-to-hidden RNN: h(t) = tanh(U x(t) + W y(t-1) + b), o = V h + c."""

    def __init__(self, vocab, hidden):
        super().__init__()
        self.u = nn.Embedding(vocab, hidden)
        self.w = nn.Embedding(vocab + 1, hidden)  # row `vocab`: the start vector r(0)
        self.b = nn.Parameter(torch.zeros(hidden))
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids, targets):
        start = torch.full_like(targets[:, :1], self.head.out_features)
        previous = torch.cat([start, targets[:, :-1]], dim=1)
        return self.head(torch.tanh(self.u(ids) + self.w(previous) + self.b))


def measure(step, steps, min_time, warmup=2):
    """(wall ms, process CPU ms — all threads) per step."""
    for _ in range(warmup):
        step()
    sync()
    started, cpu, done = time.perf_counter(), time.process_time(), 0
    while done < steps or time.perf_counter() - started < min_time:
        step()
        sync()
        done += 1
    return ((time.perf_counter() - started) * 1e3 / done,
            (time.process_time() - cpu) * 1e3 / done)


def train_row(name, model, batch, seq, vocab, steps, min_time, jordan=False):
    torch.manual_seed(0)
    model = model.to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    ids = torch.randint(0, vocab, (batch, seq), device=DEVICE)
    targets = torch.randint(0, vocab, (batch, seq), device=DEVICE)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(ids, targets) if jordan else model(ids)
        loss = loss_fn(logits.reshape(-1, vocab), targets.reshape(-1))
        loss.backward()
        opt.step()

    before = peak_rss_mib()
    ms, cpu_ms = measure(step, steps, min_time)
    label = "nn.Embedding x2 + tanh + Linear" if jordan else f"{model.label} + Linear"
    emit(name, f"{SYSTEM} {label}", ms, batch * seq, peak_rss_mib() - before, cpu_ms)


def generate_row(steps, min_time):
    torch.manual_seed(0)
    model = CharRnn(65, 256).eval().to(DEVICE)

    @torch.no_grad()
    def run():
        ids = torch.randint(0, 65, (32, 2), device=DEVICE)
        _, h = model.rnn(model.embed(ids))
        for _ in range(256):
            out = model.head(h[-1])
            token = torch.multinomial(torch.softmax(out, dim=-1), 1)
            _, h = model.rnn(model.embed(token), h)

    before = peak_rss_mib()
    ms, cpu_ms = measure(run, min(steps, 5), min_time, warmup=1)
    emit("generate (32 streams x 256 tokens, H256 V65)", f"{SYSTEM} nn.RNN (batched)", ms,
         32 * 256, peak_rss_mib() - before, cpu_ms)


def breakdown(reps):
    """The standard and the teacher-forced Jordan steps phase by phase, each part of the standard
    step alone (forward + backward), then the profiler's view."""
    torch.manual_seed(0)
    batch, seq, hidden, vocab = 32, 64, 256, 65
    model = CharRnn(vocab, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    ids = torch.randint(0, vocab, (batch, seq))
    targets = torch.randint(0, vocab, (batch, seq))
    loss_fn = nn.CrossEntropyLoss()
    x = model.embed(ids).detach().requires_grad_()
    states = model.rnn(x)[0].detach().requires_grad_()

    def timed(name, f):
        for _ in range(2):
            f()
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(reps):
            f()
        emit("breakdown", name, (time.perf_counter() - started) * 1e3 / reps, batch * seq,
             cpu_ms=(time.process_time() - cpu) * 1e3 / reps)

    def phases(prefix, model, logits):
        """The whole step of `model` (forward `logits()`), phase by phase."""
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)

        def step():
            opt.zero_grad(set_to_none=True)
            t0, c0 = time.perf_counter(), time.process_time()
            loss = loss_fn(logits().reshape(-1, vocab), targets.reshape(-1))
            t1, c1 = time.perf_counter(), time.process_time()
            loss.backward()
            t2, c2 = time.perf_counter(), time.process_time()
            opt.step()
            t3, c3 = time.perf_counter(), time.process_time()
            return ((t1 - t0, c1 - c0), (t2 - t1, c2 - c1), (t3 - t2, c3 - c2))

        for _ in range(2):
            step()
        samples = [step() for _ in range(reps)]
        for phase, label in enumerate(["step: forward", "step: backward",
                                       "step: optimizer (Adam)"]):
            emit("breakdown", f"{prefix} {label}",
                 sum(s[phase][0] for s in samples) * 1e3 / reps, batch * seq,
                 cpu_ms=sum(s[phase][1] for s in samples) * 1e3 / reps)

    phases("standard", model, lambda: model(ids))
    jordan = Jordan(vocab, hidden)
    phases("Jordan teacher-forced", jordan, lambda: jordan(ids, targets))
    timed("input forward + backward (nn.Embedding)",
          lambda: model.embed(ids).backward(torch.ones(batch, seq, hidden)))
    timed("recurrence forward (nn.RNN)", lambda: model.rnn(x))
    g = torch.ones(batch, seq, hidden)
    timed("recurrence forward + backward (nn.RNN)", lambda: model.rnn(x)[0].backward(g))
    timed("head + loss forward (Linear + cross-entropy)",
          lambda: loss_fn(model.head(states).reshape(-1, vocab), targets.reshape(-1)))
    timed("head + loss forward + backward",
          lambda: loss_fn(model.head(states).reshape(-1, vocab), targets.reshape(-1)).backward())
    opt.zero_grad(set_to_none=False)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    timed("optimizer (Adam) alone", opt.step)

    # The profiler's view of one whole step, by operator (self CPU time), to stderr.
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(ids).reshape(-1, vocab), targets.reshape(-1)).backward()
            opt.step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18),
          file=sys.stderr)


def wanted(name):
    return ONLY is None or ONLY in name


if not JSON:
    print("| workload | system | ms/step | tokens/s | peak RSS growth MiB |")
    print("|---|---|---|---|---|")
if wanted("standard"):
    train_row("train standard (B32 T64 H256 V65)", CharRnn(65, 256), 32, 64, 65, STEPS, MIN_TIME)
if wanted("large"):
    train_row("train large (B64 T128 H1024 V65)", CharRnn(65, 1024), 64, 128, 65, min(STEPS, 3),
              MIN_TIME / 3)
if wanted("deepbench"):
    train_row("train deepbench (B16 T50 H1760 V65)", CharRnn(65, 1760), 16, 50, 65,
              min(STEPS, 3), MIN_TIME / 3)
if wanted("stacked"):
    train_row("train stacked (2 layers, B32 T64 H256 V65)", CharRnn(65, 256, layers=2), 32, 64,
              65, STEPS, MIN_TIME)
if wanted("bidirectional"):
    train_row("train bidirectional (B32 T64 H256 V65)", CharRnn(65, 256, bidirectional=True), 32,
              64, 65, STEPS, MIN_TIME)
if wanted("relu"):
    train_row("train relu (B32 T64 H256 V65)", CharRnn(65, 256, nonlinearity="relu"), 32, 64, 65,
              STEPS, MIN_TIME)
if wanted("lstm"):
    train_row("train lstm (B32 T64 H256 V65)", CharRnn(65, 256, kind="lstm"), 32, 64, 65, STEPS,
              MIN_TIME)
if wanted("gru"):
    train_row("train gru (B32 T64 H256 V65)", CharRnn(65, 256, kind="gru"), 32, 64, 65, STEPS,
              MIN_TIME)
if wanted("jordan"):
    train_row("train Jordan teacher-forced (B32 T64 H256 V65)", Jordan(65, 256), 32, 64, 65,
              STEPS, MIN_TIME, jordan=True)
if wanted("generate"):
    generate_row(STEPS, MIN_TIME)
if ONLY == "breakdown":
    breakdown(5 if QUICK else 30)
