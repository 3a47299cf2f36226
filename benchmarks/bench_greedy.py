#!/usr/bin/env python3
"""Usage: python benchmarks/bench_greedy.py [--repeats 3] [--threads 1] [--sizes mini paper]

Greedy decoding of a padded batch by the A2W decoder (the ``greedy`` ASR features of the
ASR-SER model), CPU: the O(L^2) reference, which re-runs teacher forcing on the growing
prefix (``greedy_tokens_reference``), over the O(L) path that ``greedy_tokens`` takes
(``A2WDecoder.greedy_search``), on the same random-weight decoder and inputs. Sizes:

* mini : the mini recipe's decoder (conf/mini/train_a2w.yaml; encoder output 2 x 128,
  332 tokens), batch 20, 100 encoder frames, up to 30 steps;
* paper: the paper's decoder (paper_models.py; encoder output 2 x 320, 47,465 tokens),
  batch 20, 200 encoder frames, 30 steps.

Encoder lengths are drawn between half and all of the frames; random weights hardly ever
emit <eos>, so both paths decode every step. Prints, per size, the median time of each path
(of --repeats, after a warm-up), whether the tokens are identical, and the ratio
reference / incremental measured in this run.
"""

import argparse
import statistics
import time
from pathlib import Path

import torch
import yaml

from espnet_asrser.asr.a2w_decoder import A2WDecoder
from espnet_asrser.asr.decoder_states import greedy_tokens, greedy_tokens_reference
from paper_models import ASR_CONFIG, VOCAB

RECIPE = Path(__file__).resolve().parents[1] / "egs2/iemocap_asrser/ser1"
MINI_CONFIG = RECIPE / "conf/mini/train_a2w.yaml"
MINI_VOCAB = 332  # the mini LibriSpeech's 329 words, <blank>, <unk>, <sos/eos>


def sizes():
    """name -> (A2W config, vocabulary, encoder output size, frames, max steps)."""
    mini = yaml.safe_load(MINI_CONFIG.read_text())
    return {
        "mini": (mini["decoder_conf"], MINI_VOCAB,
                 2 * mini["encoder_conf"]["hidden_size"], 100, 30),
        "paper": (ASR_CONFIG["decoder_conf"], VOCAB,
                  2 * ASR_CONFIG["encoder_conf"]["hidden_size"], 200, 30),
    }


def median_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", nargs="+", default=["mini", "paper"],
                        choices=["mini", "paper"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"batch {args.batch}, {args.threads} thread(s), median of {args.repeats}")
    differ = []
    for name in args.sizes:
        conf, vocab, enc_size, frames, steps = sizes()[name]
        torch.manual_seed(0)
        decoder = A2WDecoder(vocab, enc_size, **conf).eval()
        g = torch.Generator().manual_seed(1)
        lens = torch.randint(frames // 2, frames + 1, (args.batch,), generator=g)
        lens[0] = frames
        enc = torch.randn(args.batch, frames, enc_size, generator=g)
        sos = eos = vocab - 1
        inputs = (enc, lens, sos, eos, -1, steps)
        t_old, (old, old_lens) = median_time(
            lambda: greedy_tokens_reference(decoder, *inputs), args.repeats)
        t_new, (new, new_lens) = median_time(
            lambda: greedy_tokens(decoder, *inputs), args.repeats)
        same = torch.equal(old, new) and torch.equal(old_lens, new_lens)
        print(f"{name:5s}: vocab {vocab}, decoder {conf['hidden_size']}, encoder {enc_size} x "
              f"{frames} frames, {old.size(1)} steps (lengths {int(old_lens.min())}-"
              f"{int(old_lens.max())})")
        print(f"       reference O(L^2) {t_old:.3f} s, greedy_search O(L) {t_new:.3f} s, "
              f"identical tokens: {same}")
        print(f"       ratio reference / greedy_search = {t_old / t_new:.1f}")
        if not same:
            differ.append(name)
    if differ:
        raise SystemExit(f"greedy_search and the reference disagree at size(s) {differ}")


if __name__ == "__main__":
    main()
