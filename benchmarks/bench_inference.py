#!/usr/bin/env python3
"""Usage: python benchmarks/bench_inference.py [--n 16] [--batch_size 16] [--steps 20] [--threads 2]
    [--repeats 3]

Speech2Emotion (ASR features by the beam search across utterances, then SER) on a batch of
--n utterances (3-7.5 s) against ESPnet's Speech2Text decoding the same utterances one by
one, on the same paper-size ASR model with random weights, beam 4, CPU. Both decode a fixed
number of steps (--steps, an absolute maxlenratio) so that random weights give a fair ratio.

The timings are repeated --repeats times, interleaved, and each one's fastest run is kept:
on a machine shared with other jobs the fastest run is the one least disturbed. Prints both
transcripts of each utterance and whether they are identical, the time of each side, and
the ratios measured in this run: Speech2Text / Speech2Emotion (the target is >= 3) and, for
the ASR part alone, Speech2Text / (Speech2Emotion's encoder + batched search), since
Speech2Emotion also runs the SER branch, which Speech2Text does not.

It also prints Speech2Emotion's parts (encoder, search, SER branch) and a measured floor:
the encoder, the SER branch and the search's output projections alone (the one matrix
product per step over the vocabulary that no search can skip, at the batch's size) bound
the ratio that any search could reach on this machine, identical numerics kept.
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from espnet2.bin.asr_inference import Speech2Text
from espnet_asrser.bin.asrser_inference import Speech2Emotion
from paper_models import utterances, write_models


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # ESPnet warns at every utterance that the step limit was reached: here on purpose.
    logging.getLogger("espnet.nets.beam_search").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        asrser_config, asrser_model, asr_config, asr_model = write_models(Path(tmp))
        s2t = Speech2Text(asr_config, asr_model, beam_size=4, ctc_weight=0.0,
                          lm_weight=0.0, maxlenratio=-args.steps, nbest=1)
        s2e = Speech2Emotion(asrser_config, asrser_model, beam_size=4,
                             maxlenratio=-args.steps)
        waves = utterances(args.n)
        s2t(waves[0]), s2e(waves[:2])  # warm-up

        batches = [waves[i : i + args.batch_size] for i in range(0, len(waves), args.batch_size)]

        def padded(b):
            lengths = torch.tensor([len(w) for w in b])
            order = torch.argsort(lengths, descending=True)
            return (torch.nn.utils.rnn.pad_sequence([b[i] for i in order], batch_first=True),
                    lengths[order])

        inputs = [padded(b) for b in batches]
        model = s2e.model
        with torch.no_grad():
            encoded = [model.encode_asr(*x) for x in inputs]
            features = [s2e._asr_features(*x) for x in inputs]
        projection = model.asr.decoder.output_layer
        rows = [[len(b) * (1 if i == 0 else 4) for i in range(args.steps)]
                for b in batches]

        def encoder():
            for x in inputs:
                model.encode_asr(*x)

        def search():
            for enc, enc_lens in encoded:
                s2e.batch_beam_search(enc, enc_lens, -args.steps, 0.0)

        def ser():
            for x, (states, state_lens, _) in zip(inputs, features):
                model.ser_logits(*x, None, None, states, state_lens)

        def projections():  # (rows, hidden) @ (hidden, vocab) per step, log-softmax included
            for r in rows:
                for n in r:
                    torch.log_softmax(projection(torch.zeros(n, projection.in_features)), -1)

        parts = {"encoder": encoder, "search": search, "SER branch": ser,
                 "output projections": projections}
        t_s2t = t_s2e = float("inf")
        t_part = dict.fromkeys(parts, float("inf"))
        for _ in range(args.repeats):
            t, texts = timed(lambda: [s2t(w)[0][0] for w in waves])
            t_s2t = min(t_s2t, t)
            t, results = timed(lambda: [r for b in batches for r in s2e(b)])
            t_s2e = min(t_s2e, t)
            with torch.no_grad():
                for name, part in parts.items():
                    t_part[name] = min(t_part[name], timed(part)[0])

    same = 0
    for i, (t, r) in enumerate(zip(texts, results)):
        same += t == r.transcript
        print(f"{i:2d} Speech2Text   : {t}\n   Speech2Emotion: {r.transcript}")
    audio_s = sum(len(w) for w in waves) / 16000
    print(f"utterances: {args.n} ({audio_s:.1f} s of audio), beam 4, {args.steps} steps, "
          f"{args.threads} threads, Speech2Emotion batch {args.batch_size}, "
          f"fastest of {args.repeats}")
    print(f"identical transcripts: {same}/{args.n}")
    t_asr = t_part["encoder"] + t_part["search"]
    floor = t_part["encoder"] + t_part["SER branch"] + t_part["output projections"]
    print(f"Speech2Text one by one       : {t_s2t:.2f} s")
    print(f"Speech2Emotion               : {t_s2e:.2f} s")
    for name, t in t_part.items():
        print(f"  its {name + ' ':.<25}: {t:.2f} s")
    print(f"ratio Speech2Text / Speech2Emotion = {t_s2t / t_s2e:.2f}  (target >= 3)")
    print(f"ratio Speech2Text / ASR part of Speech2Emotion (encoder + search) = "
          f"{t_s2t / t_asr:.2f}")
    print(f"ceiling: Speech2Text / (encoder + SER branch + output projections) = "
          f"{t_s2t / floor:.2f}  (no search can make Speech2Emotion faster than that)")

if __name__ == "__main__":
    main()
