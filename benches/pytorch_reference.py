#!/usr/bin/env python3
"""PyTorch reference for `cargo bench --bench rnn`: the same workloads, the same math.

    python3 benches/pytorch_reference.py            # every workload
    python3 benches/pytorch_reference.py --quick    # fewer steps

Hidden-to-hidden RNN language model: token ids -> nn.Embedding (the row lookup that unfold's
token input is) -> nn.RNN(tanh) -> nn.Linear -> cross-entropy, Adam(lr 2e-3). Prints one
markdown row per workload. Optional: without PyTorch installed it says so and exits 0.
"""

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
STEPS, MIN_TIME = (3, 0.3) if QUICK else (20, 3.0)


class CharRnn(nn.Module):
    def __init__(self, vocab, hidden):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)  # U x(t) as a lookup (W_ih folded in)
        self.rnn = nn.RNN(hidden, hidden, batch_first=True, nonlinearity="tanh")
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids):
        states, _ = self.rnn(self.embed(ids))
        return self.head(states)


def measure(step, steps, min_time, warmup=2):
    for _ in range(warmup):
        step()
    started, done = time.perf_counter(), 0
    while done < steps or time.perf_counter() - started < min_time:
        step()
        done += 1
    return (time.perf_counter() - started) * 1e3 / done


def train_row(name, batch, seq, hidden, vocab, steps, min_time):
    torch.manual_seed(0)
    model = CharRnn(vocab, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    ids = torch.randint(0, vocab, (batch, seq))
    targets = torch.randint(0, vocab, (batch, seq))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(ids).reshape(-1, vocab), targets.reshape(-1))
        loss.backward()
        opt.step()

    ms = measure(step, steps, min_time)
    tokens = batch * seq
    print(f"| {name} | PyTorch {torch.__version__} nn.RNN + Linear ({torch.get_num_threads()} threads) "
          f"| {ms:.1f} | {tokens / ms * 1e3:.0f} |", flush=True)


def generate_row(steps, min_time):
    torch.manual_seed(0)
    model = CharRnn(65, 256).eval()

    @torch.no_grad()
    def run():
        ids = torch.randint(0, 65, (32, 2))
        _, h = model.rnn(model.embed(ids))
        token = ids[:, -1:]
        for _ in range(256):
            out, h = model.rnn(model.embed(token), h)
            probs = torch.softmax(model.head(out[:, -1]), dim=-1)
            token = torch.multinomial(probs, 1)

    ms = measure(run, min(steps, 5), min_time, warmup=1)
    print(f"| generate (32 streams x 256 tokens, H256 V65) | PyTorch nn.RNN (batched) | {ms:.1f} "
          f"| {32 * 256 / ms * 1e3:.0f} |", flush=True)


print("| workload | system | ms/step | tokens/s |")
print("|---|---|---|---|")
train_row("train standard (B32 T64 H256 V65)", 32, 64, 256, 65, STEPS, MIN_TIME)
train_row("train large (B64 T128 H1024 V65)", 64, 128, 1024, 65, min(STEPS, 5), MIN_TIME / 3)
generate_row(STEPS, MIN_TIME)
