"""The beam search across utterances against ESPnet's per-utterance BatchBeamSearch.

For every utterance of a padded batch, :class:`UtteranceBatchBeamSearch` must return what
ESPnet's search returns for that utterance alone (``x = encoder_out[:length]``): the same
n-best token sequences, in the same order, and the same decoder states (``hs``) and scores.
States and scores are compared with a tolerance of 1e-6, not bitwise: ESPnet's own result
for a hypothesis changes in the last bits with the number of rows its step multiplies
(1 row at the first step, up to beam-size rows later), so no batching can be bitwise equal
to it; the largest difference measured is about 2.4e-7 (tokens always identical).

Covered: random A2W and Transformer decoders at small sizes (beam 1 and 4, maxlenratio 0,
negative and positive, minimum lengths, utterances of different lengths in one batch), an
utterance whose hypotheses never end by themselves, one where none may end at all (empty
result, and ESPnet's retry with a smaller minlenratio), one paper-size A2W case, the
one-epoch ASR-SER model through ``Speech2Emotion``, and the ``asr_inference`` CLI (batched
against ESPnet's ``Speech2Text`` files) on a tiny A2W model and on a BPE Transformer trained
the way the model zoo trains its models.
"""

import logging
import sys
from pathlib import Path

import pytest
import torch
import yaml

from espnet.nets.batch_beam_search import BatchBeamSearch
from espnet.nets.beam_search import BeamSearch
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder

from espnet_asrser.asr.a2w_decoder import A2WDecoder
from espnet_asrser.asr.batch_beam_search import UtteranceBatchBeamSearch, fallback_reason
from espnet_asrser.bin import asr_inference as cli
from espnet_asrser.bin.asrser_inference import Speech2Emotion
from espnet_asrser.tasks.asrser import ASRSERTask

TOL = dict(rtol=1e-6, atol=1e-6)
LENGTHS = [37, 50, 12, 29, 50, 8]


def a2w(vocab=20, enc=16, seed=0, **sizes):
    torch.manual_seed(seed)
    conf = dict(embed_size=32, hidden_size=48, attention_size=40,
                attention_conv_channels=4, attention_conv_kernel=11)
    return A2WDecoder(vocab, enc, **{**conf, **sizes}).eval()


def transformer(vocab=20, enc=16, seed=0):
    torch.manual_seed(seed)
    return TransformerDecoder(vocab, enc, attention_heads=2, linear_units=32,
                              num_blocks=2, dropout_rate=0.0).eval()


def espnet_search(decoder, vocab, beam, weight=1.0, **extra):
    search = BeamSearch(scorers={"decoder": decoder, **extra.pop("scorers", {})},
                        weights={"decoder": weight, **extra.pop("weights", {})},
                        beam_size=beam, vocab_size=vocab, sos=vocab - 1, eos=vocab - 1,
                        pre_beam_score_key="full", return_hs=True, **extra)
    search.__class__ = BatchBeamSearch
    return search.eval()


def assert_same_as_espnet(search, enc, lens, maxlenratio, minlenratio=0.0, nbest=3):
    """Each utterance's n-best from the batch equals ESPnet's on that utterance alone."""
    ours = UtteranceBatchBeamSearch(search)
    assert ours.reason is None
    got = ours(enc, lens, maxlenratio, minlenratio, nbest=nbest)
    for b, length in enumerate(lens.tolist()):
        ref = search(x=enc[b, :length], maxlenratio=maxlenratio, minlenratio=minlenratio)[:nbest]
        assert len(got[b]) == len(ref), b
        for g, r in zip(got[b], ref):
            assert torch.equal(g.yseq, r.yseq), (b, g.yseq, r.yseq)
            assert len(g.hs) == len(r.hs)
            torch.testing.assert_close(torch.stack(g.hs), torch.stack(r.hs), **TOL)
            torch.testing.assert_close(g.score, r.score, **TOL)
            torch.testing.assert_close(g.scores["decoder"], r.scores["decoder"], **TOL)
    return got


@pytest.mark.parametrize("kind", ["a2w", "transformer"])
@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("maxlenratio,minlenratio", [(0.0, 0.0), (-7, 0.0), (0.3, 0.0), (0.0, 0.1)])
def test_random_decoders_match_espnet(kind, beam, maxlenratio, minlenratio):
    decoder = a2w() if kind == "a2w" else transformer()
    enc = torch.randn(len(LENGTHS), max(LENGTHS), 16, generator=torch.Generator().manual_seed(1))
    got = assert_same_as_espnet(espnet_search(decoder, 20, beam), enc, torch.tensor(LENGTHS),
                                maxlenratio, minlenratio)
    assert all(got), "every utterance has an ended hypothesis here"


def test_padding_and_batch_partners_do_not_change_an_utterance():
    search = UtteranceBatchBeamSearch(espnet_search(a2w(), 20, 4))
    enc = torch.randn(3, 40, 16, generator=torch.Generator().manual_seed(2))
    lens = torch.tensor([40, 17, 25])
    batch = search(enc, lens, -6)
    for b, length in enumerate(lens.tolist()):
        alone = search(enc[b : b + 1, :length], lens[b : b + 1], -6)[0]
        assert torch.equal(alone[0].yseq, batch[b][0].yseq)
        torch.testing.assert_close(torch.stack(alone[0].hs), torch.stack(batch[b][0].hs), **TOL)


def test_hypotheses_that_never_end_get_eos_at_maxlen():
    decoder = a2w()
    with torch.no_grad():
        decoder.output_layer.bias[19] = -1e4  # <eos> is never chosen
    enc = torch.randn(3, 30, 16, generator=torch.Generator().manual_seed(3))
    lens = torch.tensor([30, 11, 20])
    for maxlenratio in (0.0, -5, 0.5):
        got = assert_same_as_espnet(espnet_search(decoder, 20, 4), enc, lens, maxlenratio)
        for hyps, length in zip(got, lens.tolist()):
            best = hyps[0]
            maxlen = {0.0: length, -5: 5, 0.5: int(0.5 * length)}[maxlenratio]
            # <sos>, maxlen words, the appended <eos>; one state per decoder step.
            assert len(best.yseq) == maxlen + 2 and len(best.hs) == maxlen
            assert int(best.yseq[-1]) == 19


def test_no_ended_hypothesis_gives_empty_or_retries_like_espnet():
    enc = torch.randn(2, 30, 16, generator=torch.Generator().manual_seed(4))
    lens = torch.tensor([30, 14])
    search = espnet_search(a2w(), 20, 4)
    # A constant minimum above the maximum: nothing may end, and ESPnet gives up.
    got = assert_same_as_espnet(search, enc, lens, maxlenratio=-4, minlenratio=-10)
    assert got == [[], []]
    # A minimum ratio >= 0.1 that nothing reaches: searched again with 0.1 less each time.
    got = assert_same_as_espnet(search, enc, lens, maxlenratio=-4, minlenratio=0.35)
    assert all(got)


def test_decoder_weight_and_normalize_length():
    enc = torch.randn(3, 25, 16, generator=torch.Generator().manual_seed(5))
    lens = torch.tensor([25, 9, 18])
    assert_same_as_espnet(espnet_search(a2w(), 20, 4, weight=0.7), enc, lens, 0.0)
    assert_same_as_espnet(espnet_search(a2w(), 20, 4, normalize_length=True), enc, lens, 0.0)


def test_paper_size_a2w():
    vocab, enc_size = 47465, 640
    decoder = a2w(vocab, enc_size, embed_size=320, hidden_size=320, attention_size=320,
                  attention_conv_channels=10, attention_conv_kernel=100)
    enc = torch.randn(3, 90, enc_size, generator=torch.Generator().manual_seed(6))
    assert_same_as_espnet(espnet_search(decoder, vocab, 4), enc, torch.tensor([90, 61, 75]),
                          maxlenratio=-6, nbest=1)


def test_other_scorers_fall_back_to_espnet_per_utterance(caplog):
    from espnet.nets.scorers.length_bonus import LengthBonus

    search = espnet_search(a2w(), 20, 4, scorers={"length_bonus": LengthBonus(20)},
                           weights={"length_bonus": 0.5})
    assert "length_bonus" in fallback_reason(search)
    enc = torch.randn(2, 20, 16, generator=torch.Generator().manual_seed(7))
    lens = torch.tensor([20, 13])
    with caplog.at_level(logging.WARNING):
        got = UtteranceBatchBeamSearch(search)(enc, lens, -5)
    assert "one utterance at a time" in caplog.text
    for b, length in enumerate(lens.tolist()):
        assert torch.equal(got[b][0].yseq, search(x=enc[b, :length], maxlenratio=-5)[0].yseq)


# ---- trained models, Speech2Emotion and the CLI ------------------------------------------

CONFIG = Path(__file__).parent / "configs" / "tiny_asrser.yaml"


@pytest.fixture(scope="module")
def asrser_model(tmp_path_factory, tiny_data):
    """The one-epoch ASR-SER model of test_task (A2W decoder, tiny sizes)."""
    from test_task import train

    root = tmp_path_factory.mktemp("asrser")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["asrser_train"])
        return train("asrser", tiny_data, root)


def test_speech2emotion_matches_espnet_per_utterance(asrser_model, tiny_data):
    from test_task import load_waves

    s2e = Speech2Emotion(asrser_model / "config.yaml", asrser_model / "valid.acc_ser.best.pth",
                         maxlenratio=-8)
    waves = [torch.as_tensor(w) for w in load_waves(tiny_data, n=6)]
    lengths = torch.tensor([len(w) for w in waves])
    speech = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    with torch.no_grad():
        enc, enc_lens = s2e.model.encode_asr(speech, lengths)
        states, state_lens, _ = s2e._asr_features(speech, lengths)
        for b, length in enumerate(enc_lens.tolist()):
            ref = s2e.beam_search(x=enc[b, :length], maxlenratio=-8)[0]
            assert int(state_lens[b]) == len(ref.hs)
            torch.testing.assert_close(states[b, : len(ref.hs)], torch.stack(ref.hs), **TOL)
    batch = s2e(waves)
    for w, res in zip(waves, batch):
        assert res.transcript == s2e(w)[0].transcript


def write_asr_model(root: Path, config: Path, token_list: Path):
    """The ASR part of a freshly built ASR-SER model as an ESPnet ASR model (config, weights),
    as benchmarks/paper_models.py writes one."""
    args = ASRSERTask.get_parser().parse_args(
        ["--config", str(config), "--mode", "asrser", "--token_list", str(token_list)])
    torch.manual_seed(0)
    model = ASRSERTask.build_model(args)
    asr_args = dict(vars(args), model="espnet", model_conf={"ctc_weight": 0.0})
    for key in ("mode", "emotion_classes", "asr_model_conf"):
        asr_args.pop(key)
    (root / "asr.yaml").write_text(yaml.safe_dump(asr_args))
    torch.save(model.asr.state_dict(), root / "asr.pth")
    return root / "asr.yaml", root / "asr.pth"


def decode_with_cli(out: Path, config, model, data, batch_size, *extra):
    cli.main(["--asr_train_config", str(config), "--asr_model_file", str(model),
              "--data_path_and_name_and_type", f"{data},speech,sound", "--beam_size", "4",
              "--ctc_weight", "0", "--lm_weight", "0", "--maxlenratio", "-6",
              "--batch_size", str(batch_size), "--output_dir", str(out), *extra])
    files = sorted(p for p in out.rglob("*") if p.is_file())
    return {p.relative_to(out).as_posix(): p.read_text().splitlines() for p in files}


def assert_same_files(ours, espnet):
    assert sorted(ours) == sorted(espnet)
    assert "1best_recog/text" in espnet and "1best_recog/token_int" in espnet
    for name, lines in espnet.items():
        if name.endswith("score"):
            # str(score tensor), 4 decimals: equal up to the rounding of the last digit.
            for a, b in zip(ours[name], lines):
                assert a.split()[0] == b.split()[0]
                assert abs(float(a.split("(")[1].rstrip(")")) -
                           float(b.split("(")[1].rstrip(")"))) <= 1e-4
        else:
            assert ours[name] == lines, name


def test_cli_batched_writes_the_files_of_speech2text(tmp_path, tiny_data, caplog):
    config, model = write_asr_model(tmp_path, CONFIG, tiny_data["token_list"])
    espnet = decode_with_cli(tmp_path / "espnet", config, model, tiny_data["wav.scp"], 1)
    with caplog.at_level(logging.WARNING):
        ours = decode_with_cli(tmp_path / "ours", config, model, tiny_data["wav.scp"], 5)
    assert "one utterance at a time" not in caplog.text
    assert len(espnet["1best_recog/text"]) == 12
    assert_same_files(ours, espnet)


@pytest.fixture(scope="module")
def zoo_asr(tmp_path_factory):
    """A BPE Transformer ASR trained by ESPnet's asr_train, as test_pretrained_asr trains
    (and packs) it, the model zoo's shape."""
    from test_pretrained_asr import train_zoo_asr

    root = tmp_path_factory.mktemp("zoo_asr")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["asr_train"])
        mp.chdir(root)
        d = train_zoo_asr(root)
    return {"root": root, "data": d, "config": root / "exp/asr/config.yaml",
            "model": root / "exp/asr/valid.acc.best.pth"}


def test_cli_batched_on_a_zoo_style_bpe_transformer(zoo_asr, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(zoo_asr["root"])  # the config names the BPE model relative to it
    args = (zoo_asr["config"], zoo_asr["model"], zoo_asr["data"]["wav.scp"])
    espnet = decode_with_cli(tmp_path / "espnet", *args, 1)
    with caplog.at_level(logging.WARNING):
        ours = decode_with_cli(tmp_path / "ours", *args, 4)
    assert "one utterance at a time" not in caplog.text
    assert_same_files(ours, espnet)
    assert any(line.split(maxsplit=1)[1:] for line in espnet["1best_recog/token"])
    caplog.clear()
    # The archive's CTC in the search: ESPnet's decoding, with the reason logged.
    with caplog.at_level(logging.WARNING):
        with_ctc = decode_with_cli(tmp_path / "ctc", *args, 4, "--ctc_weight", "0.3")
    assert "one utterance at a time" in caplog.text and "ctc" in caplog.text
    assert with_ctc == decode_with_cli(tmp_path / "ctc_espnet", *args, 1, "--ctc_weight", "0.3")
