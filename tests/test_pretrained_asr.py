"""Starting ASR-SER from an ESPnet model-zoo ASR archive (``--pretrained_asr``).

A tiny BPE Transformer ASR is trained here with ESPnet's own ``asr_train`` (collect_stats,
then one epoch) and packed with ESPnet's own ``espnet2.bin.pack asr``, as the model zoo
serves its LibriSpeech models; ASR-SER is then trained on that archive, decoded with
Speech2Emotion, and packed and reopened. The error cases (token list in another order,
model-zoo name, decoder without states, weights that do not match) are checked on the same
archive, and word pooling of sub-word states on hand-made pieces.
"""

import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import sentencepiece
import soundfile
import torch
import yaml

from espnet2.bin import pack as espnet_pack
from espnet2.tasks.asr import ASRTask

from conftest import WORDS, write_tiny_data
from espnet_asrser.bin.asrser_inference import Speech2Emotion
from espnet_asrser.model_zoo import pack_asrser_model
from espnet_asrser.tasks.asrser import ASRSERTask

CONFIG = Path(__file__).parent / "configs" / "tiny_asrser.yaml"

# A tiny ESPnet ASR in the shape of the model zoo's LibriSpeech ones: ESPnet's default
# frontend, global MVN, Transformer encoder/decoder, BPE units, CTC.
ESPNET_ASR_CONFIG = {
    "frontend": "default",
    "frontend_conf": {"fs": "16k", "n_fft": 256, "hop_length": 128, "n_mels": 20},
    "encoder": "transformer",
    "encoder_conf": {"output_size": 16, "attention_heads": 2, "linear_units": 16,
                     "num_blocks": 1, "input_layer": "conv2d"},
    "decoder": "transformer",
    "decoder_conf": {"attention_heads": 2, "linear_units": 16, "num_blocks": 1},
    "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1},
    "batch_type": "sorted", "batch_size": 4, "max_epoch": 1,
    "optim": "adam", "optim_conf": {"lr": 0.001},
    "use_tensorboard": False, "use_matplotlib": False, "num_workers": 0,
    "best_model_criterion": [["valid", "acc", "max"]], "keep_nbest_models": 1,
}


def train_and_pack_asr(common, train_shape, valid_shape, options, outpath):
    """What an ESPnet ASR recipe does, from the current directory: statistics, training
    with global MVN, then ``espnet2.bin.pack asr`` with the statistics and ``options``."""
    ASRTask.main(cmd=[*common, "--collect_stats", "true", "--normalize", "none",
                      "--output_dir", "exp/asr_stats",
                      "--train_shape_file", train_shape, "--valid_shape_file", valid_shape])
    stats = "exp/asr_stats/train/feats_stats.npz"
    ASRTask.main(cmd=[*common, "--output_dir", "exp/asr", "--normalize", "global_mvn",
                      "--normalize_conf", f"stats_file={stats}",
                      "--train_shape_file", "exp/asr_stats/train/speech_shape",
                      "--valid_shape_file", "exp/asr_stats/valid/speech_shape"])
    packed = ["--option", stats]
    for option in options:
        packed += ["--option", option]
    espnet_pack.main(["asr", "--asr_train_config", "exp/asr/config.yaml",
                      "--asr_model_file", "exp/asr/valid.acc.best.pth", *packed,
                      "--outpath", outpath])


def data_args(d, split, emotion=True):
    args = [f"--{split}_data_path_and_name_and_type={d['wav.scp']},speech,sound",
            f"--{split}_data_path_and_name_and_type={d['text']},text,text"]
    if emotion:
        args.append(f"--{split}_data_path_and_name_and_type={d['emotion']},emotion,text")
    return args


def train_bpe(d) -> Path:
    """A ~30-piece BPE model on the transcripts and its ESPnet token list."""
    sentences = d["text"].parent / "bpe_train.txt"
    sentences.write_text("\n".join(" ".join(WORDS[i:] + WORDS[:i]) for i in range(10)))
    prefix = d["text"].parent / "bpe"
    sentencepiece.SentencePieceTrainer.train(
        input=str(sentences), model_prefix=str(prefix), vocab_size=30, model_type="bpe",
        character_coverage=1.0, minloglevel=2,
    )
    sp = sentencepiece.SentencePieceProcessor(model_file=f"{prefix}.model")
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
              if not (sp.is_unknown(i) or sp.is_control(i))]
    d["bpe_token_list"] = d["text"].parent / "bpe_tokens.txt"
    d["bpe_token_list"].write_text("\n".join(["<blank>", "<unk>", *pieces, "<sos/eos>"]) + "\n")
    return Path(f"{prefix}.model")


def train_zoo_asr(root: Path) -> dict:
    """In ``root``, the current directory (a recipe's): tiny data, a BPE model and an ESPnet
    Transformer ASR trained on them (exp/asr) and packed (packed/asr.zip); the data files.
    The caller sets sys.argv (ESPnet reads it)."""
    d = write_tiny_data(root / "data")  # wav.scp with absolute paths, as in a recipe
    # Files the ASR config names are relative to the recipe directory, so that
    # `espnet2.bin.pack` stores them under those names and unpacking rewrites them.
    bpemodel = train_bpe(d).relative_to(root)
    Path("asr.yaml").write_text(yaml.safe_dump(ESPNET_ASR_CONFIG))
    common = ["--config", "asr.yaml", "--token_type", "bpe", "--bpemodel", str(bpemodel),
              "--token_list", str(d["bpe_token_list"]),
              *data_args(d, "train", emotion=False), *data_args(d, "valid", emotion=False)]
    train_and_pack_asr(common, str(d["wav.scp"]), str(d["wav.scp"]), [str(bpemodel)],
                       "packed/asr.zip")
    return d


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Train and pack an ESPnet BPE ASR the way an ESPnet recipe does (relative paths
    from the recipe directory), then train ASR-SER on the archive for one epoch."""
    root = tmp_path_factory.mktemp("zoo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESPNET_ASRSER_CACHE", str(root / "cache"))
        mp.setattr(sys, "argv", ["asr_train"])
        mp.chdir(root)
        d = train_zoo_asr(root)
        archive = root / "packed" / "asr.zip"

        # ASR-SER on the archive: no --token_list, the archive's BPE tokenizer is used.
        mp.setattr(sys, "argv", ["asrser_train"])
        asrser = ["--config", str(CONFIG), "--mode", "asrser", "--pretrained_asr", str(archive),
                  *ASR_MODEL_CONF, *data_args(d, "train"), *data_args(d, "valid")]
        ASRSERTask.main(cmd=[*asrser, "--collect_stats", "true", "--normalize", "none",
                             "--output_dir", "exp/ser_stats",
                             "--train_shape_file", str(d["wav.scp"]),
                             "--valid_shape_file", str(d["wav.scp"])])
        ASRSERTask.main(cmd=[*asrser, "--output_dir", "exp/ser", "--normalize", "global_mvn",
                             "--normalize_conf", "stats_file=exp/ser_stats/train/feats_stats.npz",
                             "--train_shape_file", "exp/ser_stats/train/speech_shape",
                             "--valid_shape_file", "exp/ser_stats/valid/speech_shape"])
        yield {"root": root, "data": d,
               "archive": archive, "asr_exp": root / "exp" / "asr", "exp": root / "exp" / "ser"}


# asr_model_conf updates the archive's own model_conf. tiny_asrser.yaml's ctc_weight: 0
# (for the A2W models of the other tests) would drop the archive's CTC branch; keep it.
ASR_MODEL_CONF = ["--asr_model_conf", f"ctc_weight={ESPNET_ASR_CONFIG['model_conf']['ctc_weight']}"]


def parse(*extra):
    return ASRSERTask.get_parser().parse_args(
        ["--config", str(CONFIG), "--mode", "asrser", *ASR_MODEL_CONF, *extra]
    )


def waves(d, n=2):
    lines = Path(d["wav.scp"]).read_text().splitlines()[:n]
    return [soundfile.read(line.split()[1], dtype="float32")[0] for line in lines]


def test_asr_part_is_the_archive_model_with_its_tokenizer(zoo):
    args = parse("--pretrained_asr", str(zoo["archive"]))
    model = ASRSERTask.build_model(args)
    archived = torch.load(zoo["asr_exp"] / "valid.acc.best.pth", map_location="cpu")
    own = model.asr.state_dict()
    assert set(own) == set(archived)
    assert all(torch.equal(own[k], archived[k]) for k in own)
    # The SER branch is sized from the Transformer decoder's states.
    assert model.asr_state_size == 16 and type(model.asr.decoder).__name__ == "TransformerDecoder"
    tokens = zoo["data"]["bpe_token_list"].read_text().splitlines()
    assert args.token_list == tokens and args.token_type == "bpe"
    assert Path(args.bpemodel).name == "bpe.model" and Path(args.bpemodel).is_file()
    # The task's tokenizer now gives BPE ids for the IEMOCAP-side text.
    ids = ASRSERTask.build_preprocess_fn(args, False)("u", {"text": "hello calm"})["text"]
    assert [tokens[i] for i in ids][0].startswith("\u2581")


def test_unpacked_archive_directory(zoo, tmp_path):
    """An archive unzipped by hand: its config keeps archive-relative names, read from
    the directory."""
    with zipfile.ZipFile(zoo["archive"]) as archive:
        archive.extractall(tmp_path / "unpacked")
    args = parse("--pretrained_asr", str(tmp_path / "unpacked"))
    model = ASRSERTask.build_model(args)
    assert model.asr_state_size == 16
    stats = Path(args.asr_config["normalize_conf"]["stats_file"])
    assert stats == (tmp_path / "unpacked" / "exp/asr_stats/train/feats_stats.npz").absolute()
    assert Path(args.bpemodel).parent == tmp_path / "unpacked" / "data"


def test_saved_config_rebuilds_the_asr_part_without_the_archive(zoo):
    config = yaml.safe_load((zoo["exp"] / "config.yaml").read_text())
    asr_config = config["asr_config"]
    assert asr_config["decoder"] == "transformer" and asr_config["encoder"] == "transformer"
    assert asr_config["token_list"] == config["token_list"]
    assert config["token_type"] == asr_config["token_type"] == "bpe"
    assert Path(asr_config["normalize_conf"]["stats_file"]).is_absolute()
    assert Path(config["bpemodel"]).is_file()
    # Only what builds the model: the ASR's training data lists are not kept.
    assert not any(k.startswith("train_") for k in asr_config)
    # The acoustic SER branch keeps its own frontend and statistics.
    assert config["frontend"] == "logmel" and "ser_stats" in config["normalize_conf"]["stats_file"]


def test_speech2emotion_decodes_the_model_trained_on_the_archive(zoo):
    s2e = Speech2Emotion(zoo["exp"] / "config.yaml", zoo["exp"] / "valid.acc_ser.best.pth")
    for res in s2e(waves(zoo["data"]), fs=16000):
        assert isinstance(res.transcript, str)
        assert abs(sum(res.posteriors.values()) - 1.0) < 1e-5


def test_token_list_in_another_order_names_both(zoo, tmp_path):
    tokens = zoo["data"]["bpe_token_list"].read_text().splitlines()
    tokens[2], tokens[3] = tokens[3], tokens[2]  # same size, same tokens, other ids
    shuffled = tmp_path / "shuffled_tokens.txt"
    shuffled.write_text("\n".join(tokens) + "\n")
    args = parse("--pretrained_asr", str(zoo["archive"]), "--token_list", str(shuffled))
    with pytest.raises(ValueError, match="shuffled_tokens.txt") as error:
        ASRSERTask.build_model(args)
    assert str(zoo["archive"]) in str(error.value) and "differ at id 2" in str(error.value)
    # The same list as the archive's is accepted.
    args = parse("--pretrained_asr", str(zoo["archive"]),
                 "--token_list", str(zoo["data"]["bpe_token_list"]))
    ASRSERTask.build_model(args)


def test_model_zoo_name_says_to_pass_a_local_file():
    args = parse("--pretrained_asr", "pyf98/librispeech_conformer_hop_length160")
    with pytest.raises(FileNotFoundError, match="pass its local path"):
        ASRSERTask.build_model(args)


def test_decoder_without_states_is_refused_by_name(zoo, tmp_path):
    config = yaml.safe_load((zoo["asr_exp"] / "config.yaml").read_text())
    config.update(decoder="rnn", decoder_conf={"hidden_size": 16, "num_layers": 1})
    rnn = tmp_path / "rnn_config.yaml"
    rnn.write_text(yaml.safe_dump(config))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(zoo["root"])  # the config's relative paths are from its recipe directory
        spec = f"{rnn},{zoo['asr_exp'] / 'valid.acc.best.pth'}"
        with pytest.raises(TypeError, match="decoder 'rnn' \\(RNNDecoder\\)"):
            ASRSERTask.build_model(parse("--pretrained_asr", spec))


def test_weights_that_do_not_match_are_an_error(zoo, tmp_path):
    state = torch.load(zoo["asr_exp"] / "valid.acc.best.pth", map_location="cpu")
    config = zoo["asr_exp"] / "config.yaml"
    prefixed = tmp_path / "prefixed.pth"  # e.g. an ASR-SER checkpoint: keys under "asr."
    torch.save({f"asr.{k}": v for k, v in state.items()}, prefixed)
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("ctc.")}, partial)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(zoo["root"])
        with pytest.raises(RuntimeError, match="no tensor"):
            ASRSERTask.build_model(parse("--pretrained_asr", f"{config},{prefixed}"))
        with pytest.raises(RuntimeError, match="not in the checkpoint \\(2\\): ctc"):
            ASRSERTask.build_model(parse("--pretrained_asr", f"{config},{partial}"))


def test_asr_model_conf_updates_the_archive_model_conf(zoo, caplog):
    args = parse("--pretrained_asr", str(zoo["archive"]), "--asr_model_conf", "lsm_weight=0.25")
    model = ASRSERTask.build_model(args)
    archive_conf = yaml.safe_load((zoo["asr_exp"] / "config.yaml").read_text())["model_conf"]
    # What asr_model_conf gives replaces the archive's setting.
    assert archive_conf["lsm_weight"] != 0.25 and model.asr.criterion_att.smoothing == 0.25
    assert model.asr.ctc_weight == archive_conf["ctc_weight"]
    # ctc_weight 0 builds no CTC branch: the archive's CTC tensors are left out, said so.
    args = parse("--pretrained_asr", str(zoo["archive"]),
                 "--asr_model_conf", "{'ctc_weight': 0.0}")
    with caplog.at_level("INFO"):
        model = ASRSERTask.build_model(args)
    assert model.asr.ctc is None
    assert "its CTC branch (2 tensors) is not used" in caplog.text


def test_feature_mismatch_names_both_sides(zoo):
    args = parse("--pretrained_asr", str(zoo["archive"]), "--input_size", "40")
    with pytest.raises(ValueError, match="40-dim features.*waveforms at 16000 Hz"):
        ASRSERTask.build_model(args)


def test_word_pooling_of_sentencepiece_states(zoo):
    args = parse("--pretrained_asr", str(zoo["archive"]),
                 "--model_conf", "asr_feature_pooling=word")
    model = ASRSERTask.build_model(args)
    index = {t: i for i, t in enumerate(args.token_list)}
    # "▁ he l l o ▁ d ay" + <eos>: two words and <eos>; "▁ c al m" without <eos> (the
    # search hit its step limit); an empty hypothesis: <eos> alone.
    first = [index[p] for p in ["\u2581", "he", "l", "l", "o", "\u2581", "d", "ay"]]
    second = [index[p] for p in ["\u2581", "c", "al", "m"]]
    states = torch.randn(3, 9, 16)
    lengths = torch.tensor([9, 4, 1])
    pooled, pooled_lengths = model.pool_asr_states(states, lengths, [first, second, []])
    assert pooled_lengths.tolist() == [3, 1, 1]
    assert torch.allclose(pooled[0, 0], states[0, :5].mean(0))
    assert torch.allclose(pooled[0, 1], states[0, 5:8].mean(0))
    assert torch.equal(pooled[0, 2], states[0, 8])
    assert torch.allclose(pooled[1, 0], states[1, :4].mean(0))
    assert torch.equal(pooled[2, 0], states[2, 0])
    # Padded tensors (ESPnet's -1) pool the same as lists.
    padded = torch.full((3, 8), -1)
    padded[0], padded[1, :4] = torch.tensor(first), torch.tensor(second)
    assert torch.equal(model.pool_asr_states(states, lengths, padded)[0], pooled)
    # Teacher forcing in training uses the same pooling.
    text = torch.tensor([first, second + [-1] * 4])
    loss, stats, _ = model(speech=torch.randn(2, 8000) * 0.1, speech_lengths=torch.tensor([8000, 6000]),
                           emotion=torch.tensor([[0], [2]]), text=text, text_lengths=torch.tensor([8, 4]))
    assert torch.isfinite(loss) and stats["loss_asr"] is not None


def test_pack_and_from_pretrained_round_trip(zoo, tmp_path, monkeypatch):
    exp = zoo["exp"]
    archive = pack_asrser_model(exp / "config.yaml", exp / "valid.acc_ser.best.pth",
                                tmp_path / "asrser.zip")
    direct = Speech2Emotion(exp / "config.yaml", exp / "valid.acc_ser.best.pth")(waves(zoo["data"]))
    # Neither the ASR archive nor its extracted files are needed any more.
    hidden = zoo["root"] / "hidden"
    hidden.mkdir()
    for name in ("cache", "packed"):
        shutil.move(zoo["root"] / name, hidden / name)
    try:
        monkeypatch.setenv("ESPNET_ASRSER_CACHE", str(tmp_path / "cache"))
        s2e = Speech2Emotion.from_pretrained(str(archive))
        packed = s2e(waves(zoo["data"]))
        asr_config = s2e.args.asr_config
        assert str(tmp_path / "cache") in asr_config["normalize_conf"]["stats_file"]
        assert str(tmp_path / "cache") in s2e.args.bpemodel
    finally:
        for name in ("cache", "packed"):
            shutil.move(hidden / name, zoo["root"] / name)
    for a, b in zip(direct, packed):
        assert a.label == b.label and a.transcript == b.transcript
        assert np.allclose(list(a.posteriors.values()), list(b.posteriors.values()), atol=1e-6)
