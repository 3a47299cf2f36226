"""Paper-size models with random weights for the benchmarks (no training needed: both
sides of every ratio run the same weights on the same inputs).

ASR: 40 log-mel, 3-frame stacking, 5-layer BiLSTM 320 (``encoder: blstm``), A2W decoder (LSTM 320, location-aware
attention 10x100) over a 47,465-word vocabulary (the authors' LibriSpeech list). SER: 2-layer
BiLSTM 256 + 8-head self-attention per branch, FC 2048.
"""

from pathlib import Path
from typing import Tuple

import torch
import yaml

from espnet_asrser.tasks.asrser import ASRSERTask

VOCAB = 47465
ASR_CONFIG = {
    "token_type": "word",
    "frontend": "logmel",
    "normalize": None,
    "preencoder": "stack",
    "preencoder_conf": {"input_size": 40, "stack": 3},
    "encoder": "blstm",
    "encoder_conf": {"num_layers": 5, "hidden_size": 320, "dropout": 0.2},
    "decoder": "a2w",
    "decoder_conf": {"embed_size": 320, "hidden_size": 320, "attention_size": 320,
                     "attention_conv_channels": 10, "attention_conv_kernel": 100},
}


def write_models(root: Path) -> Tuple[Path, Path, Path, Path]:
    """Write an ASR-SER model (mode asrser) and its ASR part as an ESPnet ASR model;
    return (asrser_config, asrser_model, asr_config, asr_model)."""
    root.mkdir(parents=True, exist_ok=True)
    tokens = root / "tokens.txt"
    tokens.write_text("\n".join(["<blank>", "<unk>", *(f"w{i}" for i in range(VOCAB - 3)),
                                 "<sos/eos>"]) + "\n")
    config = root / "asrser.yaml"
    config.write_text(yaml.safe_dump({**ASR_CONFIG, "mode": "asrser",
                                      "asr_model_conf": {"ctc_weight": 0.0}}))
    args = ASRSERTask.get_parser().parse_args(
        ["--config", str(config), "--token_list", str(tokens)])
    torch.manual_seed(0)
    model = ASRSERTask.build_model(args)
    asrser_config, asrser_model = root / "asrser_config.yaml", root / "asrser.pth"
    asrser_config.write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), asrser_model)

    asr_args = dict(vars(args), model="espnet", model_conf={"ctc_weight": 0.0})
    for key in ("mode", "emotion_classes", "asr_model_conf"):
        asr_args.pop(key)
    asr_config, asr_model = root / "asr_config.yaml", root / "asr.pth"
    asr_config.write_text(yaml.safe_dump(asr_args))
    torch.save(model.asr.state_dict(), asr_model)
    return asrser_config, asrser_model, asr_config, asr_model


def utterances(n: int, seed: int = 0, min_s: float = 3.0, max_s: float = 7.5):
    g = torch.Generator().manual_seed(seed)
    lengths = (torch.rand(n, generator=g) * (max_s - min_s) + min_s) * 16000
    return [0.1 * torch.randn(int(l), generator=g) for l in lengths]
