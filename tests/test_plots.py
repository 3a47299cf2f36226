"""Our A2W decoder's attention in ESPnet's attention plots (espnet_asrser.train.attention_plot).

ESPnet's ``calculate_all_attentions`` must see our location-aware attention while, and only
while, ESPnet's ``plot_attention`` runs, with the model's numbers and state dict unchanged;
A2W training through ``espnet_asrser.bin.asr_train`` writes its pictures to att_ws/ and a
checkpoint that ESPnet's own ``Speech2Text`` loads. (The ASR-SER side: test_task.py's
``test_one_epoch_writes_plots``.)
"""

from pathlib import Path

import pytest
import torch
from espnet2.bin.asr_inference import Speech2Text
from espnet2.main_funcs.calculate_all_attentions import calculate_all_attentions
from espnet2.tasks.asr import ASRTask as ESPnetASRTask
from espnet2.train.trainer import Trainer

from espnet_asrser.asr.location_attention import LocationAwareAttention
from espnet_asrser.bin import asr_train
from espnet_asrser.tasks.asr import ASRTask
from espnet_asrser.tasks.asrser import ASRSERTask
from espnet_asrser.train.attention_plot import PlottingTrainer, visible_attentions
from espnet_asrser.train.trainer import ASRSERTrainer, teacher_forced_features

RECIPE = Path(__file__).resolve().parents[1] / "egs2" / "iemocap_asrser" / "ser1"
A2W_CONFIG = RECIPE / "conf" / "debug" / "train_a2w.yaml"
TINY_ASRSER = Path(__file__).parent / "configs" / "tiny_asrser.yaml"


@pytest.fixture(scope="module")
def a2w(tiny_data):
    """A debug-size A2W model of ESPnet's ASR task, in eval mode, and a batch of two."""
    args = ASRTask.get_parser().parse_args(
        ["--config", str(A2W_CONFIG), "--token_type", "word",
         "--token_list", str(tiny_data["token_list"]), "--normalize", "none"]
    )
    torch.manual_seed(0)
    model = ASRTask.build_model(args).eval()
    batch = {
        "speech": torch.randn(2, 8000), "speech_lengths": torch.tensor([8000, 6000]),
        "text": torch.tensor([[2, 3, 4], [5, 2, -1]]), "text_lengths": torch.tensor([3, 2]),
    }
    return model, batch


def test_plotter_sees_our_attention_only_while_plotting(a2w):
    model, batch = a2w
    assert calculate_all_attentions(model, batch) == {}
    with torch.no_grad():
        before = model(**batch)[0]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with visible_attentions(model) as names:
        assert names == ["decoder.attention"]
        found = calculate_all_attentions(model, batch)
        with torch.no_grad():
            during = model(**batch)[0]
        assert list(model.state_dict()) == list(state)
    assert type(model.decoder.attention) is LocationAwareAttention
    assert torch.equal(before, during)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    # One (steps, frames) alignment per utterance: <sos> w_1 .. w_L, each row a
    # distribution over the encoder frames.
    weights = found["decoder.attention"]
    assert [w.shape[0] for w in weights] == [4, 3]
    for w in weights:
        assert torch.allclose(w.sum(dim=-1), torch.ones(w.shape[0]))


def test_attention_class_comes_back_after_an_error(a2w):
    model, _ = a2w
    with pytest.raises(RuntimeError, match="in the plot"):
        with visible_attentions(model):
            raise RuntimeError("in the plot")
    assert type(model.decoder.attention) is LocationAwareAttention


def test_asrser_plots_show_the_teacher_forced_pass(tiny_data):
    """In att_ws/, an ASR-SER model's decoder attends over the reference transcript once
    (one row per target), not over greedy search + its hypothesis + the reference."""
    args = ASRSERTask.get_parser().parse_args(
        ["--config", str(TINY_ASRSER), "--mode", "asrser",
         "--token_list", str(tiny_data["token_list"])]
    )
    torch.manual_seed(0)
    model = ASRSERTask.build_model(args).eval()
    assert model.valid_asr_feature_source == "greedy"
    batch = {
        "speech": torch.randn(2, 8000), "speech_lengths": torch.tensor([8000, 6000]),
        "emotion": torch.tensor([[0], [1]]), "emotion_lengths": torch.tensor([1, 1]),
        "text": torch.tensor([[2, 3, 4], [5, 2, -1]]), "text_lengths": torch.tensor([3, 2]),
    }
    with teacher_forced_features(model), visible_attentions(model):
        weights = calculate_all_attentions(model, batch)["asr.decoder.attention"]
    assert [w.shape[0] for w in weights] == [4, 3]
    assert model.valid_asr_feature_source == "greedy"
    with pytest.raises(RuntimeError):
        with teacher_forced_features(model):
            raise RuntimeError
    assert model.valid_asr_feature_source == "greedy"


def test_tasks_use_the_plotting_trainers():
    assert issubclass(ASRTask, ESPnetASRTask) and ASRTask.trainer is PlottingTrainer
    assert asr_train.get_parser().format_help() == ESPnetASRTask.get_parser().format_help()
    for trainer in (PlottingTrainer, ASRSERTrainer):
        assert issubclass(trainer, Trainer)
        assert trainer.plot_attention.__func__ is not Trainer.plot_attention.__func__


def test_a2w_training_writes_attention_plots(tiny_data, tmp_path, monkeypatch):
    """One epoch of asr_train with plots on: att_ws/ holds the A2W decoder's attention,
    images/ the curves, and ESPnet's Speech2Text decodes with the checkpoint."""
    data = [f"--{split}_data_path_and_name_and_type={tiny_data[name]},{key},{kind}"
            for split in ("train", "valid")
            for name, key, kind in (("wav.scp", "speech", "sound"), ("text", "text", "text"))]
    common = ["--config", str(A2W_CONFIG), "--token_type", "word",
              "--token_list", str(tiny_data["token_list"]), *data]
    stats, exp = tmp_path / "stats", tmp_path / "exp"
    monkeypatch.setattr("sys.argv", ["asr_train"])
    asr_train.main([*common, "--collect_stats", "true", "--normalize", "none",
                    "--output_dir", str(stats), "--train_shape_file", str(tiny_data["wav.scp"]),
                    "--valid_shape_file", str(tiny_data["wav.scp"])])
    asr_train.main([*common, "--output_dir", str(exp), "--max_epoch", "1",
                    "--num_att_plot", "2",
                    "--train_shape_file", f"{stats}/train/speech_shape",
                    "--valid_shape_file", f"{stats}/valid/speech_shape",
                    "--normalize", "none"])
    pictures = sorted((exp / "att_ws").glob("*/decoder.attention.1ep.png"))
    assert len(pictures) == 2
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in pictures)
    assert (exp / "images" / "acc.png").is_file()
    speech2text = Speech2Text(
        exp / "config.yaml", exp / "1epoch.pth", beam_size=2, ctc_weight=0.0, nbest=1
    )
    assert type(speech2text.asr_model.decoder.attention) is LocationAwareAttention
    text, *_ = speech2text(torch.randn(8000))[0]
    assert isinstance(text, str)
