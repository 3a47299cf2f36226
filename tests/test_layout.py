"""espnet_asrser.recipe: the run's names (layout), its systems and the step fingerprints.

The stage script evaluates ``python -m espnet_asrser.recipe.layout``'s output in bash; the
recipe's programs rebuild the same layout from ``run_opts``. Both are checked here on
the recipe's own conf/ directories, without torch.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from espnet_asrser.recipe.fingerprint import fingerprint, is_done, mark_done
from espnet_asrser.recipe.layout import LayoutError, config_tag, layout_from_args
from espnet_asrser.recipe.systems import TABLE_SYSTEMS, paper_table

RECIPE = Path(__file__).resolve().parents[1] / "egs2" / "iemocap_asrser" / "ser1"


@pytest.fixture
def in_recipe(monkeypatch):
    monkeypatch.chdir(RECIPE)


def shell_values(argv) -> dict:
    """The layout's assignments as bash sees them after eval."""
    names = subprocess.run(
        [sys.executable, "-m", "espnet_asrser.recipe.layout", *argv],
        cwd=RECIPE, check=True, capture_output=True, text=True,
    ).stdout
    script = names + (
        'printf "%s\\n" "${asr_exp}" "${results_dir}" "${ser_exp[asrser_uttnorm,3]}" '
        '"${#run_opts[@]}" "${trained_systems[*]}" "${ser_config[text]}"'
    )
    out = subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True)
    keys = ["asr_exp", "results_dir", "ablation_exp", "n_run_opts", "trained", "text_config"]
    return dict(zip(keys, out.stdout.splitlines()))


def test_config_tag():
    assert config_tag("conf/mini/train_a2w.yaml", "--max_epoch 3") == "mini_train_a2w_max_epoch3"
    assert config_tag("conf/train_text.yaml") == "train_text"


def test_default_mini_names(in_recipe):
    layout = layout_from_args(["--conf_dir", "conf/mini"])
    assert layout.iemocap == "iemocap" and layout.asr_key == "a2w"
    assert layout.asr_exp == "exp/asr_mini_train_a2w"
    assert layout.asr_pre_exp == "exp/asr_mini_pretrain_encoder_ctc"
    assert layout.asr_decode_dir == "exp/asr_mini_train_a2w/decode_mini_decode_asr_valid.acc.ave"
    assert layout.ser_exp("asrser", "1") == "exp/ser_fold1_mini_train_asrser"
    assert layout.ser_exp("asrser_uttnorm", "2") == "exp/ser_fold2_mini_ablation_train_asrser_uttnorm"
    assert layout.results_dir == "exp/results/all_speaker_independent_a2w"
    assert [s.key for s in layout.scored] == [s.key for s in TABLE_SYSTEMS] + ["asrser_uttnorm"]
    assert layout.ablations["asrser_uttnorm"].row.startswith("ASR-SER")


def test_settings_get_their_own_names(in_recipe):
    improvised = layout_from_args(["--subset", "improvised", "--conf_dir", "conf/mini"])
    assert improvised.iemocap == "iemocap_improvised"
    assert improvised.ser_exp("audio", "1") == "exp/ser_improvised_fold1_mini_train_audio"
    assert improvised.results_dir == "exp/results/improvised_speaker_independent_a2w"
    dependent = layout_from_args(["--protocol", "speaker_dependent", "--exc", "drop"])
    assert dependent.iemocap == "iemocap_speaker_dependent_excdrop"
    assert dependent.results_dir == "exp/results/all_speaker_dependent_excdrop_a2w"
    # Without the mini configs' pre-training config, none; "none" switches it off.
    assert dependent.asr_pre_exp == ""
    assert layout_from_args(["--conf_dir", "conf/mini", "--asr_pre_config", "none"]).asr_pre_exp == ""


def test_shell_output_and_run_opts_round_trip(in_recipe):
    values = shell_values(["--conf_dir", "conf/mini", "--asr_args", "--max_epoch 3"])
    assert values["asr_exp"] == "exp/asr_mini_train_a2w_max_epoch3"
    assert values["ablation_exp"] == "exp/ser_fold3_mini_ablation_train_asrser_uttnorm"
    assert values["trained"] == "audio text combined asrser asrser_uttnorm"
    assert values["text_config"] == "conf/mini/train_text.yaml"
    layout = layout_from_args(["--conf_dir", "conf/mini", "--asr_args", "--max_epoch 3"])
    assert len(layout.run_opts()) == int(values["n_run_opts"])
    again = layout_from_args(layout.run_opts())
    assert again.shell() == layout.shell()


def test_pretrained_names(in_recipe, tmp_path):
    config, model = tmp_path / "exp" / "zoo" / "config.yaml", tmp_path / "exp" / "zoo" / "m.pth"
    config.parent.mkdir(parents=True)
    config.write_text("{}\n")
    model.write_bytes(b"")
    layout = layout_from_args(["--pretrained_asr", f"{config},{model}"])
    assert layout.asr_key == "pretrained_zoo" and layout.asr_exp == "exp/asr_pretrained_zoo"
    assert layout.ser_exp("asrser", "1") == "exp/ser_fold1_train_asrser_pretrained_zoo"
    assert layout.ser_exp("audio", "1") == "exp/ser_fold1_train_audio"
    assert layout.pretrained.files == [str(config), str(model)]
    archive = tmp_path / "my model.v2.tar.gz"
    archive.write_bytes(b"")
    assert layout_from_args(["--pretrained_asr", str(archive)]).asr_key == "pretrained_my_model_v2"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--pretrained_asr", "pyf98/librispeech_conformer"], "Model-zoo names are not downloaded"),
        (["--asr_config", "conf/nope.yaml"], "config conf/nope.yaml does not exist"),
        (["--folds", "1 6"], "--folds takes fold numbers 1 to 5"),
        (["--asrser_ablations", "conf/train_asrser.yaml"], "the name must be train_asrser_<name>"),
    ],
)
def test_bad_options_are_named(in_recipe, argv, message):
    with pytest.raises(LayoutError, match=message):
        layout_from_args(argv)


def test_ablation_needs_its_label(in_recipe, tmp_path):
    config = tmp_path / "train_asrser_x.yaml"
    config.write_text("mode: asrser\n")
    with pytest.raises(LayoutError, match="first line must be '# ablation: <text>'"):
        layout_from_args(["--asrser_ablations", str(config)])


def test_paper_tables():
    assert paper_table("all", "speaker_independent").row("asrser") == (68.6, 69.7, 35.7)
    assert paper_table("improvised", "speaker_independent").row("audio") == (None, None, None)
    assert paper_table("all", "speaker_dependent").number == 5


def test_fingerprint_ignores_yaml_comments_and_marks_done(tmp_path):
    config = tmp_path / "a.yaml"
    config.write_text("# a comment\nx: 1\n")
    data = tmp_path / "feats.scp"
    data.write_text("u1 ark:1\n")
    words = ["--config", str(config), f"{data},speech,kaldi_ark", f"stats_file={data}"]
    first = fingerprint(words)
    assert first.count(str(data)) == 3  # the words, then its sum once
    config.write_text("x: 1\n\n# another\n")
    assert fingerprint(words) == first
    config.write_text("x: 2\n")
    assert fingerprint(words) != first
    mark_done(tmp_path / "step", first)
    assert not is_done(tmp_path / "step", fingerprint(words))
    mark_done(tmp_path / "step", fingerprint(words))
    assert is_done(tmp_path / "step", fingerprint(words))
    # The stage script's is_done compares $(cat .done) with $(fingerprint ...): the same.
    shell = subprocess.run(
        ["bash", "-c", 'a=$(cat "$1/.done"); b=$(python -m espnet_asrser.recipe.fingerprint '
         '"${@:2}"); [ "$a" = "$b" ]', "_", str(tmp_path / "step"), *words],
        env=dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"),
    )
    assert shell.returncode == 0
