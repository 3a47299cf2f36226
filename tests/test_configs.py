"""Every YAML of the recipe's conf/ (paper, mini, debug, zoo) builds the model it describes,
the way the recipe builds it, and the paper-size ones are the paper's architecture
(SPEC.md §2) down to the exact parameter count.

ASR configs build with ESPnet's own ``ASRTask`` (our components registered), as
``espnet_asrser.bin.asr_train`` trains them. An ASR-SER config is built with ``ASRSERTask``
and ``--pretrained_asr CONFIG,MODEL``, as the recipe trains it: with its directory's A2W
model (conf/zoo: a pretrained sub-word ASR). Decoding configs are parsed by ESPnet's
``asr_inference``, which refuses keys it does not know.
"""

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import torch
import yaml

from espnet2.bin import asr_inference
from espnet2.tasks.asr import ASRTask

import espnet_asrser.tasks  # noqa: F401  (registers our components in ESPnet's ASRTask)
from espnet_asrser.asr.a2w_decoder import A2WDecoder
from espnet_asrser.asr.blstm_encoder import BLSTMEncoder
from espnet_asrser.asr.frontend import LogMelFrontend
from espnet_asrser.asr.stack import StackPreEncoder
from espnet_asrser.espnet_model import ESPnetASRSERModel
from espnet_asrser.tasks.asrser import ASRSERTask
from test_pretrained_asr import ESPNET_ASR_CONFIG

RECIPE = Path(__file__).parents[1] / "egs2" / "iemocap_asrser" / "ser1"
CONF = RECIPE / "conf"
CONFIGS = sorted(CONF.rglob("*.yaml"))
PAPER_VOCAB = 47465  # the authors' LibriSpeech word list, <blank>, <unk>, <sos/eos> included
SMALL_VOCAB = 12


def kind(path: Path) -> str:
    """How the recipe uses a config: its name says it (asrser.sh passes each by role)."""
    if path.name.startswith("decode"):
        return "decode"
    if path.name == "train_a2w.yaml":
        return "asr"
    if path.name == "pretrain_encoder_ctc.yaml":
        return "encoder_pretraining"
    if path.name.startswith("train_"):
        return "ser"
    raise AssertionError(f"{path}: no test knows this config; add it to tests/test_configs.py")


def write_tokens(path: Path, words: List[str]) -> Path:
    """A token list in ESPnet's layout: <blank>, <unk>, ``words``, <sos/eos>."""
    path.write_text("\n".join(["<blank>", "<unk>", *words, "<sos/eos>"]) + "\n")
    return path


def made_up_words(vocab: int) -> List[str]:
    """Names for a word list of ``vocab`` tokens in all."""
    return [f"w{i}" for i in range(vocab - 3)]


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Dict[str, Path]:
    root = tmp_path_factory.mktemp("tokens")
    return {
        "small": write_tokens(root / "small.txt", made_up_words(SMALL_VOCAB)),
        "paper": write_tokens(root / "paper.txt", made_up_words(PAPER_VOCAB)),
    }


def build_asr(config: Path, token_list: Path) -> Tuple[torch.nn.Module, dict]:
    """The A2W model as the recipe trains it, and the config.yaml ESPnet writes beside it."""
    args = ASRTask.get_parser().parse_args(
        ["--config", str(config), "--token_type", "word", "--token_list", str(token_list)]
    )
    model = ASRTask.build_model(args)
    return model, yaml.safe_load(yaml.safe_dump(vars(args)))


def write_yaml(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


# A sub-word Transformer in the shape of the model zoo's LibriSpeech ones, tiny: the
# architecture keys of tests/test_pretrained_asr.py's.
ZOO_ASR = {
    key: ESPNET_ASR_CONFIG[key]
    for key in ("frontend", "frontend_conf", "encoder", "encoder_conf", "decoder",
                "decoder_conf", "model_conf")
}


@pytest.fixture(scope="module")
def zoo_asr(tmp_path_factory) -> str:
    """``CONFIG,MODEL`` of a pretrained sub-word ASR, as ``--pretrained_asr`` takes it."""
    root = tmp_path_factory.mktemp("zoo_asr")
    pieces = ["\u2581", "\u2581he", "llo", "\u2581ca", "lm"]
    token_list = write_tokens(root / "tokens.txt", pieces)
    args = ASRTask.get_parser().parse_args(
        ["--config", str(write_yaml(root / "asr.yaml", ZOO_ASR)), "--token_list", str(token_list)]
    )
    model = ASRTask.build_model(args)
    torch.save(model.state_dict(), root / "asr.pth")
    return f"{write_yaml(root / 'config.yaml', vars(args))},{root / 'asr.pth'}"


def recipe_conf_dir(config: Path) -> Path:
    """The conf directory a config belongs to: ablations (conf/X/ablation/) run with the
    models of conf/X."""
    return config.parent.parent if config.parent.name == "ablation" else config.parent


def save_asr(out: Path, model: torch.nn.Module, config: dict) -> str:
    """``CONFIG,MODEL`` of a trained ASR model as ESPnet leaves it (config.yaml, .pth)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "model.pth")
    return f"{write_yaml(out / 'config.yaml', config)},{out / 'model.pth'}"


def build_ser(config: Path, token_list: Path, out: Path, zoo_asr: str = "",
              a2w: Optional[Tuple[torch.nn.Module, dict]] = None
              ) -> Tuple[ESPnetASRSERModel, dict]:
    """The SER model of ``config`` as the recipe's SER training builds it (asrser.sh,
    train_ser): ASR-SER with ``--pretrained_asr``, the A2W model ``a2w`` (built from the
    directory's train_a2w.yaml when not given) or the pretrained ``zoo_asr``. Returns the
    model and the config it was built from."""
    ser = yaml.safe_load(config.read_text())
    extra = ["--token_type", "word", "--token_list", str(token_list)]
    if ser["mode"] == "asrser" and config.parent.name == "zoo":
        extra = ["--pretrained_asr", zoo_asr]
    elif ser["mode"] == "asrser":
        model, asr_config = a2w or build_asr(recipe_conf_dir(config) / "train_a2w.yaml", token_list)
        extra = ["--pretrained_asr", save_asr(out / "a2w", model, asr_config)]
    elif ser["mode"] == "audio":
        extra = []
    args = ASRSERTask.get_parser().parse_args(
        ["--config", str(config), "--mode", ser["mode"], *extra]
    )
    return ASRSERTask.build_model(args), ser


def test_every_config_has_a_role():
    assert len(CONFIGS) >= 19
    for path in CONFIGS:
        kind(path)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(CONF)))
def test_config_builds_its_model(path, tokens, zoo_asr, tmp_path):
    role = kind(path)
    if role == "decode":
        args = asr_inference.get_parser().parse_args(
            ["--config", str(path), "--output_dir", str(tmp_path),
             "--data_path_and_name_and_type", "wav.scp,speech,sound"]
        )
        assert args.beam_size == 4 and args.ctc_weight == 0.0 and args.lm_train_config is None
        assert args.maxlenratio < 0  # an absolute step limit
        return
    if role == "asr":
        model, config = build_asr(path, tokens["small"])
        assert isinstance(model.decoder, A2WDecoder)
        assert model.decoder.output_layer.out_features == SMALL_VOCAB
        if config.get("freeze_param"):
            # Frozen parameters must come from somewhere: the encoder pre-training.
            assert (path.parent / "pretrain_encoder_ctc.yaml").is_file()
        return
    if role == "encoder_pretraining":
        # A character-CTC model whose encoder initialises the A2W encoder of the same
        # directory (--init_param ...:encoder:encoder): it must fit tensor for tensor.
        model, _ = build_asr(path, tokens["small"])
        assert model.decoder is None and model.ctc_weight == 1.0
        a2w, _ = build_asr(path.parent / "train_a2w.yaml", tokens["small"])
        shapes = {k: v.shape for k, v in a2w.encoder.state_dict().items()}
        assert {k: v.shape for k, v in model.encoder.state_dict().items()} == shapes
        return
    model, config = build_ser(path, tokens["small"], tmp_path, zoo_asr)
    assert model.mode == config["mode"]
    for key, value in config["model_conf"].items():
        if hasattr(model, key):
            assert getattr(model, key) == value, key
    if model.mode == "asrser" and recipe_conf_dir(path).name != "zoo":
        # The ASR part is the A2W model of the same directory, tensor for tensor.
        a2w, _ = build_asr(recipe_conf_dir(path) / "train_a2w.yaml", tokens["small"])
        shapes = {k: v.shape for k, v in a2w.state_dict().items()}
        assert {k: v.shape for k, v in model.asr.state_dict().items()} == shapes
    if model.mode == "asrser" and path.parent.name != "ablation":
        assert model.asr_loss_normalization == "token"


# ---- the paper's sizes, counted by hand ------------------------------------------------


def lstm(input_size: int, hidden: int) -> int:
    """One direction of one PyTorch LSTM layer (or an LSTMCell): four gates with input and
    recurrent weights and two bias vectors (bias_ih, bias_hh)."""
    return 4 * hidden * (input_size + hidden) + 8 * hidden


def blstm(input_size: int, hidden: int, layers: int) -> int:
    """MaskedBLSTM: a forward and a backward LSTM per layer; each later layer reads both
    directions (2 x hidden). No projection between layers."""
    return sum(2 * lstm(input_size if i == 0 else 2 * hidden, hidden) for i in range(layers))


def linear(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def a2w_parameters(vocab: int) -> int:
    """The paper's A2W model: 40 log-mel x 3 stacked (no parameters), a 5-layer BiLSTM of
    320 per direction with nothing after it, the location-aware attention decoder."""
    encoder = blstm(40 * 3, 320, 5)
    h = 2 * 320  # encoder output, read by the attention as it is
    embed, state, attention_size, channels, kernel = 320, 320, 320, 10, 100
    attention = (
        linear(h, attention_size)                    # V h_t + b
        + linear(state, attention_size, bias=False)  # Z s_{l-1}
        + channels * kernel                          # F, a convolution without bias
        + linear(channels, attention_size, bias=False)  # U f_l
        + linear(attention_size, 1, bias=False)      # z
    )
    decoder = (
        vocab * embed
        + attention
        + lstm(embed + h, state)                     # one LSTMCell over [Embed(w); g]
        + linear(h + state, state)                   # tanh(W_g g + W_s s), the ASR feature
        + linear(state, vocab)                       # W_out
    )
    return encoder + decoder


def ser_branch_parameters(input_size: int) -> int:
    """2-layer BiLSTM 256 per direction, then attention: shared Linear(512, 512) and one
    bias-free Linear(512, 1) per head (8)."""
    return blstm(input_size, 256, 2) + linear(512, 512) + linear(512, 8, bias=False)


def classifier_parameters(branches: int) -> int:
    """concat(branches x 8 heads x 512) -> FC 2048 -> ReLU -> FC 4."""
    return linear(branches * 8 * 512, 2048) + linear(2048, 4)


def n_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_paper_a2w(asr: torch.nn.Module, vocab: int) -> None:
    assert isinstance(asr.frontend, LogMelFrontend) and asr.frontend.output_size() == 40
    assert isinstance(asr.preencoder, StackPreEncoder) and asr.preencoder.stack == 3
    assert asr.preencoder.output_size() == 120
    encoder = asr.encoder
    assert isinstance(encoder, BLSTMEncoder) and encoder.output_size() == 2 * 320
    for direction in (encoder.blstm.forward_lstms, encoder.blstm.backward_lstms):
        assert [(m.input_size, m.hidden_size, m.num_layers) for m in direction] == [
            (120, 320, 1)] + [(640, 320, 1)] * 4
        assert all(not m.bidirectional and m.proj_size == 0 for m in direction)
    assert encoder.blstm.dropout.p == encoder.dropout.p == 0.2
    assert not any(isinstance(m, torch.nn.Linear) for m in encoder.modules())
    assert asr.postencoder is None and asr.ctc is None
    decoder = asr.decoder
    assert isinstance(decoder, A2WDecoder)
    assert (decoder.lstm.input_size, decoder.lstm.hidden_size) == (320 + 640, 320)
    conv = decoder.attention.location_conv
    assert (conv.out_channels, conv.kernel_size) == (10, (100,))
    assert (decoder.pre_output.in_features, decoder.pre_output.out_features) == (960, 320)
    assert (decoder.output_layer.in_features, decoder.output_layer.out_features) == (320, vocab)
    assert n_parameters(asr) == a2w_parameters(vocab)


@pytest.fixture(scope="module")
def paper_a2w(tokens):
    return build_asr(CONF / "train_a2w.yaml", tokens["paper"])


def test_paper_a2w_is_the_papers_model(paper_a2w):
    model, config = paper_a2w
    check_paper_a2w(model, PAPER_VOCAB)
    assert n_parameters(model) == 43_667_985
    assert config["model_conf"]["ctc_weight"] == 0.0
    # Stacking is the only down-sampling: one encoder frame per 3 log-mel frames.
    with torch.no_grad():
        out, lengths = model.encode(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 8000]))
    assert out.shape[-1] == 640 and lengths.tolist() == [34, 17]


def check_ser_branch(branch: torch.nn.Module, input_size: int) -> None:
    blstm_module = branch.blstm
    sizes = [(m.input_size, m.hidden_size) for m in blstm_module.forward_lstms]
    assert sizes == [(input_size, 256), (512, 256)]
    assert blstm_module.dropout.p == 0.2
    attention = branch.attention
    assert (attention.w1.in_features, attention.w1.out_features, attention.heads) == (512, 512, 8)
    assert branch.output_size() == 4096


@pytest.mark.parametrize("mode", ["audio", "text", "combined", "asrser"])
def test_paper_ser_models_are_the_papers(mode, tokens, paper_a2w, tmp_path):
    # The text baselines embed the IEMOCAP word list; a small one stands in for it here.
    token_list = tokens["paper"] if mode == "asrser" else tokens["small"]
    model, _ = build_ser(CONF / f"train_{mode}.yaml", token_list, tmp_path, a2w=paper_a2w)
    use_audio, use_text, use_asr = model.uses
    branches = use_audio + use_text + use_asr
    expected = classifier_parameters(branches)
    layers = model.classifier.layers
    assert (layers[0].in_features, layers[0].out_features) == (4096 * branches, 2048)
    assert (layers[-1].in_features, layers[-1].out_features) == (2048, 4)
    if use_audio:
        assert isinstance(model.frontend, LogMelFrontend) and model.frontend.output_size() == 40
        assert model.max_audio_frames == 750
        check_ser_branch(model.audio_branch, 40)
        expected += ser_branch_parameters(40)
    if use_text:
        assert (model.embed.num_embeddings, model.embed.embedding_dim) == (SMALL_VOCAB, 300)
        check_ser_branch(model.text_branch, 300)
        expected += SMALL_VOCAB * 300 + ser_branch_parameters(300)
    if use_asr:
        check_paper_a2w(model.asr, PAPER_VOCAB)
        assert model.asr_state_size == 320
        check_ser_branch(model.asr_branch, 320)
        assert (model.asr_weight, model.asr_loss_normalization) == (0.2, "token")
        expected += a2w_parameters(PAPER_VOCAB) + ser_branch_parameters(320)
        assert expected == 65_936_917
    assert n_parameters(model) == expected


def test_zoo_asrser_has_the_papers_ser_part(tokens, zoo_asr, tmp_path):
    model, _ = build_ser(CONF / "zoo" / "train_asrser.yaml", tokens["small"], tmp_path, zoo_asr)
    assert model.asr_feature_pooling == "word" and model.asr_state_size == 16
    check_ser_branch(model.audio_branch, 40)
    check_ser_branch(model.asr_branch, 16)
    expected = (n_parameters(model.asr) + ser_branch_parameters(40)
                + ser_branch_parameters(16) + classifier_parameters(2))
    assert n_parameters(model) == expected


@pytest.mark.parametrize(
    "path", sorted(CONF.glob("*/ablation/*.yaml")), ids=lambda p: str(p.relative_to(CONF))
)
def test_ablation_differs_from_its_asrser_config_in_model_conf_only(path):
    """An ablation is compared with ASR-SER as a controlled experiment: its config is the
    ASR-SER config of its directory with some model_conf keys changed, nothing else. The
    first line labels it in RESULTS.md (asrser.sh reads it)."""
    assert path.read_text().startswith("# ablation: ")
    ablation = yaml.safe_load(path.read_text())
    base = yaml.safe_load((recipe_conf_dir(path) / "train_asrser.yaml").read_text())
    assert {k: v for k, v in ablation.items() if k != "model_conf"} == {
        k: v for k, v in base.items() if k != "model_conf"
    }
    changed = {k for k in base["model_conf"].keys() | ablation["model_conf"].keys()
               if base["model_conf"].get(k) != ablation["model_conf"].get(k)}
    assert changed, f"{path} changes nothing"
