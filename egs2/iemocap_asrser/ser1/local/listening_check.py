#!/usr/bin/env python3
"""Usage: local/listening_check.py --asr_train_config exp/asr_x/config.yaml \
           --asr_model_file exp/asr_x/valid.acc.ave.pth --data dump/fbank/dev_clean \
           --out exp/asr_x/decode_y/listening.json [--seed 0] [--batch_size 16]

Does the A2W model listen? An attention decoder can reach a high
teacher-forced word accuracy from its language model alone, without using the audio (the
mini A2W models before issue 10 did). This script scores the teacher-forced word
accuracy (the ``acc`` that model selection reads, <eos> included) on a validation set
twice: with each utterance's own audio, and with the audio of another utterance of the
set (a seeded derangement, so no utterance keeps its own). A model that listens loses
most of its accuracy when the audio does not match the words; one that only models the
language loses little. Only validation data are read.

Writes ``{"valid_set", "n", "acc_own_audio", "acc_shuffled_audio", "seed", "note"}``.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import kaldiio
import numpy as np
import torch

import espnet_asrser.tasks  # noqa: F401  (registers the A2W components)
from espnet2.tasks.asr import ASRTask
from espnet2.text.token_id_converter import TokenIDConverter
from espnet_asrser.asr.decoder_states import teacher_forced_states
from espnet_asrser.utils.kaldi_table import read_table


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of range(n) without fixed points (n >= 2): a random order,
    each element sent to the next one in that order."""
    order = np.random.default_rng(seed).permutation(n)
    perm = np.empty(n, dtype=np.int64)
    perm[order] = np.roll(order, -1)
    return perm


@torch.no_grad()
def correct_and_total(
    model, feats: Sequence[np.ndarray], token_ids: Sequence[List[int]]
) -> np.ndarray:
    """Per utterance: (teacher-forced tokens predicted right, tokens), <eos> included."""
    xs = [torch.from_numpy(np.asarray(f, dtype=np.float32)) for f in feats]
    x = torch.nn.utils.rnn.pad_sequence(xs, batch_first=True)
    x_lens = torch.tensor([len(f) for f in xs])
    ys = [torch.tensor(t, dtype=torch.long) for t in token_ids]
    y = torch.nn.utils.rnn.pad_sequence(ys, batch_first=True, padding_value=model.ignore_id)
    y_lens = torch.tensor([len(t) for t in ys])
    encoder_out, encoder_lens = model.encode(x, x_lens)
    logits, ys_out, _, _ = teacher_forced_states(
        model.decoder, encoder_out, encoder_lens, y, y_lens,
        model.sos, model.eos, model.ignore_id,
    )
    valid = ys_out != model.ignore_id
    correct = ((logits.argmax(dim=-1) == ys_out) & valid).sum(dim=1)
    return torch.stack([correct, valid.sum(dim=1)], dim=1).numpy()


def listening_check(
    model, feats: Dict[str, np.ndarray], token_ids: Dict[str, List[int]], seed: int,
    batch_size: int,
) -> Dict[str, float]:
    keys = sorted(token_ids)
    missing = [k for k in keys if k not in feats]
    if missing:
        raise ValueError(f"{len(missing)} utterances have text but no features: {missing[:5]}")
    if len(keys) < 2:
        raise ValueError("the check needs at least 2 utterances")
    perm = derangement(len(keys), seed)
    counts = {"own": np.zeros(2, dtype=np.int64), "shuffled": np.zeros(2, dtype=np.int64)}
    for start in range(0, len(keys), batch_size):
        rows = range(start, min(start + batch_size, len(keys)))
        ids = [token_ids[keys[i]] for i in rows]
        counts["own"] += correct_and_total(model, [feats[keys[i]] for i in rows], ids).sum(0)
        counts["shuffled"] += correct_and_total(
            model, [feats[keys[perm[i]]] for i in rows], ids
        ).sum(0)
    return {
        "n": len(keys),
        "acc_own_audio": float(counts["own"][0] / counts["own"][1]),
        "acc_shuffled_audio": float(counts["shuffled"][0] / counts["shuffled"][1]),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--asr_train_config", required=True)
    parser.add_argument("--asr_model_file", required=True)
    parser.add_argument("--data", required=True, help="dumped set with feats.scp and text")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, _ = ASRTask.build_model_from_file(
        args.asr_train_config, args.asr_model_file, "cpu"
    )
    model.eval()
    converter = TokenIDConverter(model.token_list, unk_symbol="<unk>")
    data = Path(args.data)
    try:
        text = read_table(
            data / "text", allow_empty_value=True, check_sorted=False, check_final_newline=False
        )
        feats = dict(kaldiio.load_scp(str(data / "feats.scp")))
        token_ids = {k: converter.tokens2ids(v.split()) for k, v in text.items()}
        result = listening_check(model, feats, token_ids, args.seed, args.batch_size)
    except (OSError, ValueError) as e:
        print(f"{parser.prog}: error: {data}: {e}", file=sys.stderr)
        return 1
    result = {
        "valid_set": data.name,
        **result,
        "seed": args.seed,
        "note": "teacher-forced word accuracy (<eos> included) of "
        f"{args.asr_model_file} with each utterance's own audio and with another "
        "utterance's audio (seeded derangement)",
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(
        f"{data.name}: teacher-forced word accuracy {result['acc_own_audio']:.3f} with its "
        f"own audio, {result['acc_shuffled_audio']:.3f} with shuffled audio"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
