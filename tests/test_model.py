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


def hand_asr_loss(model, b):
    """Per-target-token cross-entropies (B, L) of the teacher-forced reference, 0 on
    padding, computed outside the model (lsm_weight 0: plain cross-entropy)."""
    from espnet_asrser.asr.decoder_states import teacher_forced_states
    asr = model.asr
    enc, enc_lens = asr.encode(b["speech"], b["speech_lengths"])
    logits, ys_out, _, _ = teacher_forced_states(
        asr.decoder, enc, enc_lens, b["text"], b["text_lengths"], asr.sos, asr.eos, asr.ignore_id)
    ce = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), ys_out, ignore_index=asr.ignore_id, reduction="none")
    return ce, logits, ys_out


@pytest.mark.parametrize("length_normalized", ["true", "false"])
def test_token_normalised_asr_loss_is_the_mean_over_target_tokens(length_normalized, tiny_data):
    model = build("asrser", tiny_data["token_list"],
                  "--asr_model_conf", "lsm_weight=0.0",
                  "--asr_model_conf", f"length_normalized_loss={length_normalized}").eval()
    b = batch()
    with torch.no_grad():
        _, stats, _ = model(**b)
        ce, _, ys_out = hand_asr_loss(model, b)
    n_tokens = int((ys_out >= 0).sum())
    assert n_tokens == int(b["text_lengths"].sum()) + 3  # <eos> counts
    assert torch.allclose(stats["loss_asr"], ce.sum() / n_tokens, atol=1e-5)
    assert torch.allclose(stats["loss"], 0.2 * stats["loss_asr"] + 0.8 * stats["loss_ser"])


def test_token_normalised_label_smoothed_loss_matches_the_criterion(tiny_data):
    from espnet.nets.pytorch_backend.transformer.label_smoothing_loss import LabelSmoothingLoss
    model = build("asrser", tiny_data["token_list"]).eval()
    assert model.asr.criterion_att.smoothing == 0.1
    b = batch()
    with torch.no_grad():
        _, stats, _ = model(**b)
        _, logits, ys_out = hand_asr_loss(model, b)
        per_token = LabelSmoothingLoss(
            logits.size(-1), model.asr.ignore_id, 0.1, normalize_length=True)(logits, ys_out)
    assert torch.allclose(stats["loss_asr"], per_token, atol=1e-5)


@pytest.mark.parametrize("length_normalized", ["true", "false"])
def test_utterance_normalised_asr_loss_is_the_old_one(length_normalized, tiny_data):
    model = build("asrser", tiny_data["token_list"],
                  "--asr_model_conf", "lsm_weight=0.0",
                  "--asr_model_conf", f"length_normalized_loss={length_normalized}",
                  "--model_conf", "asr_loss_normalization=utterance").eval()
    b = batch()
    with torch.no_grad():
        _, stats, _ = model(**b)
        ce, logits, ys_out = hand_asr_loss(model, b)
    # Per-utterance token sums averaged over the batch: ESPnet's criterion with
    # length_normalized_loss false, the value this model reported before the option.
    assert torch.allclose(stats["loss_asr"], ce.sum(dim=1).mean(), atol=1e-5)
    from espnet.nets.pytorch_backend.transformer.label_smoothing_loss import LabelSmoothingLoss
    old = LabelSmoothingLoss(logits.size(-1), model.asr.ignore_id, 0.0, normalize_length=False)
    assert torch.allclose(stats["loss_asr"], old(logits, ys_out), atol=1e-5)


def with_empty_transcript(b):
    """``b`` with an utterance of an empty transcript inserted as its second one."""
    out = {k: torch.cat([v[:1], v[1:2], v[1:]]) for k, v in b.items()}
    out["text"][1] = -1
    out["text_lengths"][1] = 0
    return out


@pytest.mark.parametrize("normalization", ["token", "utterance"])
@pytest.mark.parametrize("length_normalized", ["true", "false"])
@pytest.mark.parametrize("ctc_weight", ["0.0", "0.3"])
def test_an_empty_transcript_changes_no_asr_loss(
    normalization, length_normalized, ctc_weight, tiny_data
):
    model = build("asrser", tiny_data["token_list"],
                  "--model_conf", f"asr_loss_normalization={normalization}",
                  "--asr_model_conf", f"length_normalized_loss={length_normalized}",
                  "--asr_model_conf", f"ctc_weight={ctc_weight}").eval()
    b = batch()
    with torch.no_grad():
        _, stats, _ = model(**b)
        _, stats_empty, _ = model(**with_empty_transcript(b))
    assert torch.allclose(stats_empty["loss_asr"], stats["loss_asr"], atol=1e-5)
    # Only the SER part sees the added utterance.
    expected = 0.2 * stats["loss_asr"] + 0.8 * stats_empty["loss_ser"]
    assert torch.allclose(stats_empty["loss"], expected, atol=1e-5)


@pytest.mark.parametrize("normalization", ["token", "utterance"])
def test_ctc_term_has_the_same_denominator(normalization, tiny_data):
    model = build("asrser", tiny_data["token_list"],
                  "--asr_model_conf", "lsm_weight=0.0", "--asr_model_conf", "ctc_weight=0.3",
                  "--model_conf", f"asr_loss_normalization={normalization}").eval()
    b = batch()
    asr = model.asr
    with torch.no_grad():
        _, stats, _ = model(**b)
        ce, _, ys_out = hand_asr_loss(model, b)
        enc, enc_lens = asr.encode(b["speech"], b["speech_lengths"])
        log_probs = asr.ctc.ctc_lo(enc).log_softmax(-1).transpose(0, 1)
        ctc_sum = torch.nn.functional.ctc_loss(
            log_probs, b["text"].clamp(min=0), enc_lens, b["text_lengths"],
            blank=asr.blank_id, reduction="sum", zero_infinity=True)
    denominator = int((ys_out >= 0).sum()) if normalization == "token" else len(ys_out)
    expected = (0.3 * ctc_sum + 0.7 * ce.sum()) / denominator
    assert torch.allclose(stats["loss_asr"], expected, atol=1e-5)


def test_unknown_asr_loss_normalization_is_an_error(tiny_data):
    with pytest.raises(ValueError, match="asr_loss_normalization must be one of"):
        build("asrser", tiny_data["token_list"], "--model_conf", "asr_loss_normalization=batch")
