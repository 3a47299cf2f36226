"""ESPnetASRSERModel: built through ASRSERTask for every mode, padding invariance, loss
terms, and where gradients go in joint and frozen training."""

from pathlib import Path

import pytest
import torch
import yaml

from espnet_asrser.espnet_model import MODES
from espnet_asrser.tasks.asrser import ASRSERTask

CONFIG = Path(__file__).parent / "configs" / "tiny_asrser.yaml"


def build(mode, token_list, *extra):
    parser = ASRSERTask.get_parser()
    args = parser.parse_args(
        ["--config", str(CONFIG), "--mode", mode, "--token_list", str(token_list), *extra]
    )
    torch.manual_seed(0)
    return ASRSERTask.build_model(args)


def batch(n_tokens=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    speech = torch.randn(3, 9000, generator=g) * 0.1
    lengths = torch.tensor([9000, 6000, 4000])
    text = torch.randint(2, n_tokens - 1, (3, 4), generator=g)
    text_lengths = torch.tensor([4, 2, 3])
    text[1, 2:] = -1
    text[2, 3:] = -1
    emotion = torch.tensor([[0], [1], [3]])
    return dict(speech=speech, speech_lengths=lengths, emotion=emotion,
                emotion_lengths=torch.ones(3, dtype=torch.long),
                text=text, text_lengths=text_lengths)


@pytest.mark.parametrize("mode", MODES)
def test_build_and_forward_every_mode(mode, tiny_data):
    model = build(mode, tiny_data["token_list"])
    uses_audio, uses_text, uses_asr = model.uses
    assert (model.asr is not None) == uses_asr
    assert hasattr(model, "embed") == uses_text
    assert (model.frontend is not None) == uses_audio
    loss, stats, weight = model(**batch())
    assert torch.isfinite(loss) and int(weight) == 3
    assert {"loss", "loss_ser", "acc_ser"} <= set(stats)
    if uses_asr:
        assert stats["loss_asr"] is not None and stats["acc_asr"] is not None
        expected = 0.2 * stats["loss_asr"] + 0.8 * stats["loss_ser"]
        assert torch.allclose(stats["loss"], expected)
    else:
        assert torch.equal(stats["loss"], stats["loss_ser"])


def test_text_modes_need_a_token_list(tiny_data):
    parser = ASRSERTask.get_parser()
    args = parser.parse_args(["--config", str(CONFIG), "--mode", "combined"])
    with pytest.raises(ValueError, match="needs --token_list"):
        ASRSERTask.build_model(args)


@pytest.mark.parametrize("mode", ["audio", "combined", "asrser"])
def test_padding_does_not_change_an_utterance(mode, tiny_data):
    model = build(mode, tiny_data["token_list"]).eval()
    full = batch()
    one = {k: v[2:3] for k, v in full.items()}
    one["speech"] = one["speech"][:, :4000]
    one["text"] = one["text"][:, :3]
    with torch.no_grad():
        _, _, use_asr = model.uses
        def logits(b):
            states = lens = None
            if use_asr:
                states, lens, _ = model._asr_states_and_loss(
                    b["speech"], b["speech_lengths"], b["text"], b["text_lengths"])
            return model.ser_logits(b["speech"], b["speech_lengths"], b["text"],
                                    b["text_lengths"], states, lens)
        assert torch.allclose(logits(full)[2], logits(one)[0], atol=1e-5)


def grads(model, prefix):
    return [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]


@pytest.mark.parametrize("asr_weight", [0.2, 0.0])
def test_joint_training_reaches_asr_decoder_and_encoder(asr_weight, tiny_data):
    model = build("asrser", tiny_data["token_list"], "--model_conf", f"asr_weight={asr_weight}")
    loss, _, _ = model(**batch())
    loss.backward()
    # Even with asr_weight 0, L_SER fine-tunes the ASR through the decoder states.
    for prefix in ("asr.decoder.", "asr.encoder.", "asr_branch.", "audio_branch."):
        assert any(g is not None and g.abs().sum() > 0 for g in grads(model, prefix)), prefix


def test_frozen_asr_gets_no_gradient_and_stays_in_eval_mode(tiny_data):
    model = build("asrser", tiny_data["token_list"],
                  "--model_conf", "asr_weight=0.0", "--model_conf", "freeze_asr=true")
    model.train()
    assert not model.asr.training and model.asr_branch.training
    loss, stats, _ = model(**batch())
    loss.backward()
    assert all(g is None for g in grads(model, "asr."))
    assert any(g is not None for g in grads(model, "asr_branch."))


def test_empty_transcripts_are_left_out_of_the_asr_loss(tiny_data):
    model = build("asrser", tiny_data["token_list"]).eval()
    b = batch()
    with torch.no_grad():
        _, stats_full, _ = model(**b)
        # Utterance 1 with an empty transcript: L_ASR is the mean over the other two.
        b_empty = dict(b, text=b["text"].clone(), text_lengths=b["text_lengths"].clone())
        b_empty["text"][1] = -1
        b_empty["text_lengths"][1] = 0
        _, stats_empty, _ = model(**b_empty)
        b_two = {k: v[[0, 2]] for k, v in b.items()}
        _, stats_two, _ = model(**b_two)
    assert torch.isfinite(stats_empty["loss"])
    assert torch.allclose(stats_empty["loss_asr"], stats_two["loss_asr"], atol=1e-5)


def test_greedy_feature_source_trains(tiny_data):
    model = build("asrser", tiny_data["token_list"],
                  "--model_conf", "asr_feature_source=greedy",
                  "--model_conf", "greedy_max_steps=5")
    loss, stats, _ = model(**batch())
    loss.backward()
    assert torch.isfinite(loss)
    assert any(g is not None and g.abs().sum() > 0 for g in grads(model, "asr.decoder."))


def test_transformer_decoder_feeds_the_ser_branch(tiny_data, tmp_path):
    config = yaml.safe_load(CONFIG.read_text())
    config["decoder"] = "transformer"
    config["decoder_conf"] = {"attention_heads": 2, "linear_units": 16, "num_blocks": 1}
    (tmp_path / "transformer.yaml").write_text(yaml.safe_dump(config))
    model = build("asrser", tiny_data["token_list"], "--config", str(tmp_path / "transformer.yaml"))
    assert model.asr_state_size == model.asr.encoder.output_size()
    loss, stats, _ = model(**batch())
    loss.backward()
    assert torch.isfinite(loss)
    assert any(g is not None for g in grads(model, "asr.decoder."))


@pytest.mark.parametrize("valid_source", ["greedy", "teacher_forcing"])
def test_validation_scores_the_features_the_test_sees(valid_source, tiny_data):
    # In eval mode (ESPnet's validation) the SER head reads the model's own hypothesis by
    # default, so the reference words change L_ASR but not the emotion scores; with
    # teacher-forced validation features they would change both.
    model = build("asrser", tiny_data["token_list"],
                  "--model_conf", f"valid_asr_feature_source={valid_source}").eval()
    one, other = batch(seed=0), batch(seed=0)
    other["text"] = torch.where(one["text"] >= 0, (one["text"] + 3) % 9 + 2, one["text"])
    with torch.no_grad():
        _, stats_one, _ = model(**one)
        _, stats_other, _ = model(**other)
    assert not torch.equal(stats_one["loss_asr"], stats_other["loss_asr"])
    same_ser = torch.equal(stats_one["loss_ser"], stats_other["loss_ser"])
    assert same_ser == (valid_source == "greedy")
    model.train()  # training keeps the configured (teacher-forced) features
    torch.manual_seed(0)
    _, train_one, _ = model(**one)
    torch.manual_seed(0)
    _, train_other, _ = model(**other)
    assert not torch.equal(train_one["loss_ser"], train_other["loss_ser"])
