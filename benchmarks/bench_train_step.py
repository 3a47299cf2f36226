#!/usr/bin/env python3
"""Usage: python benchmarks/bench_train_step.py [--batch 20] [--repeats 6] [--threads 2]

One joint ASR-SER training step (mode asrser, lambda 0.2: forward, backward, Adam step) over
one ASR-only step of the same paper-size ASR model on the same batch, CPU. Prints the ratio
measured in this run; the target is <= 1.6.

The two steps alternate, --repeats times each after one warm-up step each, and each side's
fastest step is kept: on a machine shared with other jobs the fastest step is the one least
disturbed, and alternating exposes both sides to the same load.

It also prints the floating-point operations of one forward pass of each side, counted on
these models and this batch (torch's FlopCounterMode for matrix products and convolutions,
plus the LSTM layers, which it does not see, from their sizes): their ratio is what the
step ratio would be if both sides ran at the same speed per operation, the bound that no
implementation of the same architecture beats by much.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.nn.utils.rnn import PackedSequence
from torch.utils.flop_counter import FlopCounterMode

from espnet_asrser.tasks.asrser import ASRSERTask
from paper_models import utterances, write_models


def stepper(model, batch, forward):
    """One training step of ``model`` (forward, backward, Adam step) as a function."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        optimizer.zero_grad()
        forward(model, batch).backward()
        optimizer.step()

    return step


def fastest(steps, repeats):
    """Each step's fastest time over ``repeats`` rounds, the steps alternating."""
    for step in steps:
        step()  # warm-up: allocators, Adam's state
    best = [float("inf")] * len(steps)
    for _ in range(repeats):
        for i, step in enumerate(steps):
            start = time.perf_counter()
            step()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def forward_flops(model, forward, batch) -> int:
    """Floating-point operations of one forward pass (2 per multiply-add)."""
    lstm_flops = 0

    def count_lstm(module, inputs, output):
        nonlocal lstm_flops
        x = inputs[0]
        steps = x.data.size(0) if isinstance(x, PackedSequence) else x.shape[:-1].numel()
        dirs = 2 if module.bidirectional else 1
        hidden = module.hidden_size
        sizes = [module.input_size] + [dirs * hidden] * (module.num_layers - 1)
        lstm_flops += sum(2 * steps * dirs * 4 * hidden * (size + hidden) for size in sizes)

    hooks = [m.register_forward_hook(count_lstm)
             for m in model.modules() if isinstance(m, torch.nn.LSTM)]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            forward(model, batch)
    finally:
        for hook in hooks:
            hook.remove()
    return counter.get_total_flops() + lstm_flops


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--words", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        config, model_file, _, _ = write_models(Path(tmp))
        model, _ = ASRSERTask.build_model_from_file(config, model_file)
    model.train()
    waves = sorted(utterances(args.batch, seed=1), key=len, reverse=True)
    g = torch.Generator().manual_seed(2)
    batch = dict(
        speech=torch.nn.utils.rnn.pad_sequence(waves, batch_first=True),
        speech_lengths=torch.tensor([len(w) for w in waves]),
        text=torch.randint(2, 1000, (args.batch, args.words), generator=g),
        text_lengths=torch.full((args.batch,), args.words),
        emotion=torch.randint(0, 4, (args.batch, 1), generator=g),
    )
    forwards = [
        (model, lambda m, b: m(**b)[0]),
        (model.asr, lambda m, b: m(b["speech"], b["speech_lengths"],
                                   b["text"], b["text_lengths"])[0]),
    ]
    flops = [forward_flops(m, forward, batch) for m, forward in forwards]
    joint, asr_only = fastest([stepper(m, batch, forward) for m, forward in forwards],
                              args.repeats)
    seconds = batch["speech_lengths"].sum().item() / 16000
    print(f"batch: {args.batch} utterances, {seconds:.1f} s of audio, {args.words} words each, "
          f"{args.threads} threads, fastest of {args.repeats}")
    print(f"ASR-only step : {asr_only:.2f} s")
    print(f"joint step    : {joint:.2f} s")
    print(f"ratio joint / ASR-only = {joint / asr_only:.2f}  (target <= 1.6)")
    print(f"forward pass: joint {flops[0] / 1e9:.1f} GFLOP, ASR-only {flops[1] / 1e9:.1f} GFLOP; "
          f"at equal speed per operation the ratio would be {flops[0] / flops[1]:.2f}")


if __name__ == "__main__":
    main()
