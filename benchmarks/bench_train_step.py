#!/usr/bin/env python3
"""Usage: python benchmarks/bench_train_step.py [--batch 20] [--repeats 3] [--threads 2]

One joint ASR-SER training step (mode asrser, lambda 0.2: forward, backward, Adam step) over
one ASR-only step of the same paper-size ASR model on the same batch, CPU. Prints the ratio
measured in this run (median of --repeats); the target is <= 1.5.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from espnet_asrser.tasks.asrser import ASRSERTask
from paper_models import utterances, write_models


def step_time(model, batch, forward, repeats):
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = forward(model, batch)
        loss.backward()
        optimizer.step()
        if i:  # the first step warms up allocators
            times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    joint = step_time(model, batch, lambda m, b: m(**b)[0], args.repeats)
    asr_only = step_time(
        model.asr, batch,
        lambda m, b: m(b["speech"], b["speech_lengths"], b["text"], b["text_lengths"])[0],
        args.repeats,
    )
    seconds = batch["speech_lengths"].sum().item() / 16000
    print(f"batch: {args.batch} utterances, {seconds:.1f} s of audio, {args.words} words each, "
          f"{args.threads} threads")
    print(f"ASR-only step : {asr_only:.2f} s")
    print(f"joint step    : {joint:.2f} s")
    print(f"ratio joint / ASR-only = {joint / asr_only:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
