#!/usr/bin/env python3
"""Usage: python benchmarks/bench_inference.py [--n 16] [--steps 20] [--threads 2]

Cost of Speech2Emotion (beam-4 ASR features + SER, batched) over ESPnet's Speech2Text
decoding of the same paper-size ASR model, on the same utterances, CPU. Both decode a fixed
number of steps (--steps, absolute maxlenratio) so that random weights give a fair ratio.
Prints the ratio measured in this run; the target is <= 1.2.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from espnet2.bin.asr_inference import Speech2Text
from espnet_asrser.bin.asrser_inference import Speech2Emotion
from paper_models import utterances, write_models


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        asrser_config, asrser_model, asr_config, asr_model = write_models(Path(tmp))
        s2t = Speech2Text(asr_config, asr_model, beam_size=4, ctc_weight=0.0,
                          lm_weight=0.0, maxlenratio=-args.steps, nbest=1)
        s2e = Speech2Emotion(asrser_config, asrser_model, beam_size=4,
                             maxlenratio=-args.steps)
        waves = utterances(args.n)
        s2t(waves[0]), s2e(waves[:2])  # warm-up

        start = time.perf_counter()
        texts = [s2t(w)[0][0] for w in waves]
        t_s2t = time.perf_counter() - start

        start = time.perf_counter()
        results = []
        for i in range(0, len(waves), args.batch_size):
            results += s2e(waves[i : i + args.batch_size])
        t_s2e = time.perf_counter() - start

    same = sum(t == r.transcript for t, r in zip(texts, results))
    audio_s = sum(len(w) for w in waves) / 16000
    print(f"utterances: {args.n} ({audio_s:.1f} s of audio), beam 4, {args.steps} steps, "
          f"{args.threads} threads")
    print(f"Speech2Text   : {t_s2t:.2f} s  (RTF {t_s2t / audio_s:.3f})")
    print(f"Speech2Emotion: {t_s2e:.2f} s  (RTF {t_s2e / audio_s:.3f}, batch {args.batch_size})")
    print(f"identical transcripts: {same}/{args.n}")
    print(f"ratio Speech2Emotion / Speech2Text = {t_s2e / t_s2t:.2f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
