#!/usr/bin/env python3
"""Writes the PyTorch reference files that crates/unfold-nn/tests/pytorch_import.rs reads.

For each case it builds a small seeded PyTorch model (an `nn.RNN` with tanh, followed by an
`nn.Linear`), runs it on fixed inputs and writes two files under crates/unfold-nn/tests/data/:

- `<case>.safetensors`: the weights, exactly as a user exports them,
  `safetensors.torch.save_file(model.state_dict(), path)`;
- `<case>.reference.safetensors`: the inputs and PyTorch's outputs (`input`, `states`,
  `logits`, and `lengths` where the sequences are padded).

Cases:
- `rnn_1layer`:        rnn = nn.RNN(4, 6), fc = nn.Linear(6, 3) at every step (unfold's ElmanRnn).
- `rnn_2layer`:        rnn = nn.RNN(4, 6, num_layers=2), fc = nn.Linear(6, 3) on h_n[-1]
                       (unfold's SequenceClassifier, Pooling::Last).
- `rnn_bidirectional`: encoder = nn.RNN(4, 5, num_layers=2, bidirectional=True),
                       head = nn.Linear(10, 3) on [h_n[-2], h_n[-1]], with padded sequences
                       of lengths [6, 2, 4] read through pack_padded_sequence (other prefixes:
                       `encoder.` / `head.`).

Run it to regenerate (the Rust test needs only the files it writes):

    /path/to/venv/bin/python crates/unfold-nn/tests/pytorch/make_rnn_safetensors.py

Needs torch, safetensors and numpy (`pip install torch safetensors numpy`).
"""

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# crates/unfold-nn/tests/data, next to this script's folder.
DATA = Path(__file__).resolve().parent.parent / "data"


class PerStep(nn.Module):
    """Elman language-model shape: a readout at every step."""

    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        states, _ = self.rnn(x)
        return states, self.fc(states)


class LastStep(nn.Module):
    """Sequence-to-one: a readout of the top layer's final state."""

    def __init__(self, input_size, hidden_size, output_size, num_layers):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        states, h_n = self.rnn(x)
        return states, self.fc(h_n[-1])


class Bidirectional(nn.Module):
    """Sequence-to-one over padded sequences, both directions, other attribute names."""

    def __init__(self, input_size, hidden_size, output_size, num_layers):
        super().__init__()
        self.encoder = nn.RNN(
            input_size, hidden_size, num_layers=num_layers, bidirectional=True, batch_first=True
        )
        self.head = nn.Linear(2 * hidden_size, output_size)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        states, h_n = self.encoder(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=x.shape[1])
        # h_n[-2]: the top layer's forward state at each sequence's last step; h_n[-1]: its
        # reversed state after reading back to step 0.
        summary = torch.cat([h_n[-2], h_n[-1]], dim=1)
        return states, self.head(summary)


def write(case, model, reference):
    DATA.mkdir(parents=True, exist_ok=True)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, DATA / f"{case}.safetensors")
    reference = {k: v.detach().contiguous() for k, v in reference.items()}
    save_file(reference, DATA / f"{case}.reference.safetensors")
    sizes = [(DATA / f"{case}{s}.safetensors").stat().st_size for s in ("", ".reference")]
    print(f"{case}: {sorted(weights)} ({sizes[0]} + {sizes[1]} bytes)")


@torch.no_grad()
def main():
    torch.set_default_dtype(torch.float32)

    torch.manual_seed(1)
    model = PerStep(4, 6, 3).eval()
    x = torch.randn(2, 5, 4)
    states, logits = model(x)
    write("rnn_1layer", model, {"input": x, "states": states, "logits": logits})

    torch.manual_seed(2)
    model = LastStep(4, 6, 3, num_layers=2).eval()
    x = torch.randn(3, 5, 4)
    states, logits = model(x)
    write("rnn_2layer", model, {"input": x, "states": states, "logits": logits})

    torch.manual_seed(3)
    model = Bidirectional(4, 5, 3, num_layers=2).eval()
    lengths = torch.tensor([6, 2, 4], dtype=torch.int64)
    x = torch.randn(3, 6, 4)
    # Large values in the padding: a reader that does not honour the lengths would show it.
    for b, n in enumerate(lengths.tolist()):
        x[b, n:] = 50.0
    states, logits = model(x, lengths)
    write(
        "rnn_bidirectional",
        model,
        {"input": x, "lengths": lengths, "states": states, "logits": logits},
    )


if __name__ == "__main__":
    main()
