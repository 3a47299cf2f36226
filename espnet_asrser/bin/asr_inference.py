#!/usr/bin/env python3
"""Usage: python -m espnet_asrser.bin.asr_inference --asr_train_config exp/asr/config.yaml \
    --asr_model_file exp/asr/valid.acc.ave.pth --beam_size 4 --ctc_weight 0 [--batch_size 16] \
    --data_path_and_name_and_type dump/fbank/test/feats.scp,speech,kaldi_ark --output_dir D

ESPnet's own ``asr_inference`` with this package's components registered, so models trained
with :mod:`espnet_asrser.bin.asr_train` decode unchanged. It takes ESPnet's options and
writes ESPnet's files (``D/{n}best_recog/{text,token,token_int,score}``, in key order).

``--batch_size 1`` (the default) runs ESPnet's ``Speech2Text``, one utterance at a time.
A larger ``--batch_size`` runs the beam search of that many utterances together
(:class:`~espnet_asrser.asr.batch_beam_search.UtteranceBatchBeamSearch`), with the same
hypotheses: each utterance is still encoded on its own, as ``Speech2Text`` encodes it, since
not every ESPnet encoder gives the same output for a padded input. Where the batched search
does not apply (CTC prefix scoring or a language model in the search, transducer, streaming,
multi-speaker, intermediate-CTC outputs, ...) the reason is logged and ESPnet's
per-utterance decoding runs instead.
"""

import inspect
import logging
import sys
from typing import List, Optional

import torch

from espnet.nets.beam_search import Hypothesis
from espnet.nets.pytorch_backend.transformer.subsampling import TooShortUttError
from espnet2.bin import asr_inference
from espnet2.fileio.datadir_writer import DatadirWriter
from espnet2.tasks.asr import ASRTask
from espnet2.torch_utils.device_funcs import to_device
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed
from espnet.utils.cli_utils import get_commandline_args

import espnet_asrser.tasks  # noqa: F401  (registers the A2W components)
from espnet_asrser.asr.batch_beam_search import UtteranceBatchBeamSearch

# Options whose ESPnet code paths the batched decoding does not reproduce: name -> the
# value that leaves the path off.
PER_UTTERANCE_OPTIONS = {
    "enh_s2t_task": False, "multi_asr": False, "streaming": False, "time_sync": False,
    "partial_ar": False, "hugging_face_decoder": False, "transducer_conf": None,
    "word_lm_train_config": None,
}


def espnet_inference(args, batch_size: int) -> None:
    kwargs = dict(vars(args), batch_size=batch_size)
    kwargs.pop("config", None)
    asr_inference.inference(**kwargs)


def batched_search(args, speech2text) -> Optional[str]:
    """Why ``speech2text`` cannot be decoded in batches here; None when it can."""
    for name, off in PER_UTTERANCE_OPTIONS.items():
        if getattr(args, name, off) not in (off, {}):
            return f"--{name} is set"
    if speech2text.beam_search is None:
        return "the model has no attention-decoder beam search (transducer or Hugging Face)"
    if getattr(speech2text.asr_model.encoder, "interctc_layer_idx", None):
        return "the encoder has intermediate CTC outputs"
    return UtteranceBatchBeamSearch(speech2text.beam_search).reason


def build_speech2text(args):
    names = inspect.signature(asr_inference.Speech2Text.__init__).parameters
    # batch_size 1: the search is configured exactly as ESPnet's per-utterance run has it.
    kwargs = {k: v for k, v in vars(args).items() if k in names and k != "batch_size"}
    kwargs["device"] = "cuda" if args.ngpu >= 1 else "cpu"
    return asr_inference.Speech2Text.from_pretrained(model_tag=args.model_tag, **kwargs)


def encode_each(speech2text, speech: torch.Tensor, lengths: torch.Tensor):
    """Encoder output of each utterance alone, as ``Speech2Text.__call__`` computes it, or
    the TooShortUttError that stopped it."""
    outputs = []
    for x, n in zip(speech, lengths.tolist()):
        x = x[:n].unsqueeze(0).to(getattr(torch, speech2text.dtype))
        batch = to_device({"speech": x, "speech_lengths": torch.tensor([n])},
                          device=speech2text.device)
        try:
            enc, _ = speech2text.asr_model.encode(**batch)
        except TooShortUttError as e:
            outputs.append(e)
            continue
        outputs.append(enc[0])
    return outputs


def nbest_results(speech2text, hyps: List[Hypothesis]):
    """``Speech2Text``'s (text, token, token_int, hyp) for each hypothesis."""
    results = []
    for hyp in hyps:
        token_int = [i for i in hyp.yseq[1:-1].tolist() if i != 0]
        token = speech2text.converter.ids2tokens(token_int)
        text = speech2text.tokenizer.tokens2text(token) if speech2text.tokenizer else None
        results.append((text, token, token_int, hyp))
    return results


def batched_inference(args, speech2text, search: UtteranceBatchBeamSearch) -> None:
    loader = ASRTask.build_streaming_iterator(
        args.data_path_and_name_and_type,
        dtype=args.dtype,
        batch_size=args.batch_size,
        key_file=args.key_file,
        num_workers=args.num_workers,
        preprocess_fn=ASRTask.build_preprocess_fn(speech2text.asr_train_args, False),
        collate_fn=ASRTask.build_collate_fn(speech2text.asr_train_args, False),
        allow_variable_data_keys=args.allow_variable_data_keys,
        inference=True,
    )
    with DatadirWriter(args.output_dir) as writer:
        for keys, batch in loader:
            encoded = encode_each(speech2text, batch["speech"], batch["speech_lengths"])
            good = [e for e in encoded if isinstance(e, torch.Tensor)]
            nbest = iter([])
            if good:
                lens = torch.tensor([e.size(0) for e in good], device=good[0].device)
                padded = torch.nn.utils.rnn.pad_sequence(good, batch_first=True)
                nbest = iter(search(padded, lens, speech2text.maxlenratio,
                                    speech2text.minlenratio, speech2text.nbest))
            for key, enc in zip(keys, encoded):
                if isinstance(enc, torch.Tensor):
                    results = nbest_results(speech2text, next(nbest))
                else:
                    # What ESPnet's inference writes for an utterance too short to encode.
                    logging.warning(f"Utterance {[key]} {enc}")
                    hyp = Hypothesis(score=0.0, scores={}, states={}, yseq=[])
                    results = [[" ", ["<space>"], [2], hyp]] * args.nbest
                for n, (text, token, token_int, hyp) in enumerate(results, 1):
                    ibest = writer[f"{n}best_recog"]
                    ibest["token"][key] = " ".join(token)
                    ibest["token_int"][key] = " ".join(map(str, token_int))
                    ibest["score"][key] = str(hyp.score)
                    if text is not None:
                        ibest["text"][key] = text


def main(cmd=None):
    print(get_commandline_args(), file=sys.stderr)
    args = asr_inference.get_parser().parse_args(cmd)
    if args.batch_size == 1:
        espnet_inference(args, 1)
        return
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    if args.ngpu > 1:
        raise NotImplementedError("only single GPU decoding is supported")
    set_all_random_seed(args.seed)
    speech2text = build_speech2text(args)
    reason = batched_search(args, speech2text)
    if reason is not None:
        logging.warning(f"--batch_size {args.batch_size}: decoding one utterance at a time, "
                        f"with ESPnet's Speech2Text, because {reason}")
        del speech2text
        espnet_inference(args, 1)
        return
    batched_inference(args, speech2text, UtteranceBatchBeamSearch(speech2text.beam_search))


if __name__ == "__main__":
    main()
