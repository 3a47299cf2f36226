#!/usr/bin/env python3
"""Usage: python benchmarks/bench_train_step.py [--batch 20] [--repeats 3] [--threads 2]

One joint ASR-SER training step (mode asrser, lambda 0.2: forward, backward, Adam step) over
one ASR-only step of the same paper-size ASR model on the same batch, CPU. Prints the ratio
measured in this run; the target is <= 1.6.

The two steps alternate, --repeats times each after one warm-up step each, and each side's
fastest step is kept: on a machine shared with other jobs the fastest step is the one least
disturbed, and alternating exposes both sides to the same load.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--words", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
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
    joint, asr_only = fastest(
        [
            stepper(model, batch, lambda m, b: m(**b)[0]),
            stepper(model.asr, batch, lambda m, b: m(b["speech"], b["speech_lengths"],
                                                     b["text"], b["text_lengths"])[0]),
        ],
        args.repeats,
    )
    seconds = batch["speech_lengths"].sum().item() / 16000
    print(f"batch: {args.batch} utterances, {seconds:.1f} s of audio, {args.words} words each, "
          f"{args.threads} threads, fastest of {args.repeats}")
    print(f"ASR-only step : {asr_only:.2f} s")
    print(f"joint step    : {joint:.2f} s")
    print(f"ratio joint / ASR-only = {joint / asr_only:.2f}  (target <= 1.6)")


if __name__ == "__main__":
    main()
