"""The A2W components: frame stacking, the log-mel frontend, the A2W decoder's three code
paths (teacher forcing, score, batch_score) and ESPnet's beam search over them."""

import pytest
import torch

from espnet.nets.batch_beam_search import BatchBeamSearch
from espnet.nets.beam_search import BeamSearch
from espnet2.asr.decoder.rnn_decoder import RNNDecoder
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
from espnet2.tasks import asr as espnet_asr_task
from espnet_asrser.asr.a2w_decoder import A2WDecoder
from espnet_asrser.asr.blstm_encoder import BLSTMEncoder
from espnet_asrser.asr import decoder_states
from espnet_asrser.asr.decoder_states import (
    check_decoder_has_states,
    decoder_state_size,
    greedy_tokens,
    greedy_tokens_reference,
    teacher_forced_states,
)
from espnet_asrser.asr.frontend import LogMelFrontend
from espnet_asrser.asr.stack import StackPreEncoder
from espnet_asrser.tasks import register_asr_components


def test_components_are_registered_in_espnet_choices():
    register_asr_components()
    register_asr_components()  # idempotent
    assert espnet_asr_task.decoder_choices.get_class("a2w") is A2WDecoder
    assert espnet_asr_task.preencoder_choices.get_class("stack") is StackPreEncoder
    assert espnet_asr_task.encoder_choices.get_class("blstm") is BLSTMEncoder
    assert espnet_asr_task.frontend_choices.get_class("logmel") is LogMelFrontend


@pytest.mark.parametrize("length", range(1, 11))
def test_stack_lengths_and_content(length):
    stack = StackPreEncoder(input_size=2, stack=3)
    x = torch.arange(1, 2 * 10 + 1, dtype=torch.float).reshape(1, 10, 2)
    out, out_len = stack(x, torch.tensor([length]))
    assert out.shape[-1] == 6
    assert int(out_len) == -(-length // 3)
    flat = out[0, : int(out_len)].reshape(-1, 2)
    # Every frame of the utterance appears once, in order; what is past it is zero.
    assert torch.equal(flat[:length], x[0, :length])
    assert torch.count_nonzero(flat[length:]) == 0


def test_stack_is_independent_of_batch_partner():
    stack = StackPreEncoder(input_size=3, stack=3)
    short = torch.randn(1, 7, 3)
    batch = torch.randn(2, 12, 3)
    batch[1, :7] = short[0]
    alone, _ = stack(short, torch.tensor([7]))
    padded, lens = stack(batch, torch.tensor([12, 7]))
    assert torch.equal(padded[1, : lens[1]], alone[0])


def test_logmel_passes_dumped_features_and_is_batch_independent():
    frontend = LogMelFrontend()
    assert frontend.output_size() == 40
    waves = [torch.randn(4000), torch.randn(2500)]
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    feats, lens = frontend(batch, torch.tensor([4000, 2500]))
    alone, alone_len = frontend(waves[1][None], torch.tensor([2500]))
    assert int(lens[1]) == int(alone_len[0])
    assert torch.allclose(feats[1, : lens[1]], alone[0], atol=1e-5)
    same, same_lens = frontend(feats, lens)
    assert same is feats and same_lens is lens
    with pytest.raises(ValueError, match="dimension 80"):
        frontend(torch.randn(1, 5, 80), torch.tensor([5]))


def make_decoder(vocab=20, enc=16):
    torch.manual_seed(0)
    return A2WDecoder(
        vocab, enc, embed_size=8, hidden_size=12, attention_size=8,
        attention_conv_channels=2, attention_conv_kernel=10,
    ).eval()


def test_a2w_teacher_forcing_matches_step_by_step_scoring():
    decoder = make_decoder()
    enc = torch.randn(2, 25, 16)
    lens = torch.tensor([25, 13])
    ys = torch.randint(1, 19, (2, 5))
    (logits, hs), olens = decoder(enc, lens, ys, torch.tensor([5, 5]), return_hs=True)
    assert logits.shape == (2, 5, 20) and hs.shape == (2, 5, 12)
    assert torch.equal(olens, torch.tensor([5, 5]))
    for b in range(2):
        x = enc[b, : lens[b]]
        state = decoder.init_state(x)
        for step in range(5):
            logp, h, state = decoder.score(ys[b, : step + 1], state, x, return_hs=True)
            assert torch.allclose(h[0], hs[b, step], atol=1e-5)
            assert torch.allclose(logp, logits[b, step].log_softmax(-1), atol=1e-5)
    # Padding an utterance with more frames does not change its states.
    (_, hs_alone), _ = decoder(enc[1:, :13], lens[1:], ys[1:], torch.tensor([5]), return_hs=True)
    assert torch.allclose(hs_alone[0], hs[1], atol=1e-5)


def test_a2w_batch_score_matches_score():
    decoder = make_decoder()
    x = torch.randn(9, 16)
    states = [decoder.init_state(x) for _ in range(3)]
    ys = torch.tensor([[19, 3], [19, 4], [19, 5]])
    (logp, hs), new_states = decoder.batch_score(ys, states, x.expand(3, -1, -1), return_hs=True)
    for i in range(3):
        single, h, _ = decoder.score(ys[i], states[i], x, return_hs=True)
        assert torch.allclose(single, logp[i], atol=1e-6)
        assert torch.allclose(h[0], hs[i], atol=1e-6)
    assert len(new_states) == 3


@pytest.mark.parametrize("search_class", [BeamSearch, BatchBeamSearch])
def test_beam_search_returns_one_state_per_emitted_token(search_class):
    vocab = 20
    decoder = make_decoder(vocab)
    beam = BeamSearch(
        scorers={"decoder": decoder}, weights={"decoder": 1.0}, beam_size=4,
        vocab_size=vocab, sos=vocab - 1, eos=vocab - 1, return_hs=True,
    )
    beam.__class__ = search_class
    x = torch.randn(15, 16)
    hyps = beam(x=x, maxlenratio=-6, minlenratio=0.0)
    assert hyps
    for hyp in hyps:
        emitted = len(hyp.yseq) - 1  # after <sos>: the words and <eos>
        assert len(hyp.hs) in (emitted, emitted - 1)  # -1 only for a forced final <eos>
        # The states are those of teacher forcing on the hypothesis itself.
        ys_in = hyp.yseq[:-1][None]
        (_, hs), _ = decoder(x[None], torch.tensor([15]), ys_in, torch.tensor([ys_in.size(1)]), return_hs=True)
        assert torch.allclose(torch.stack(hyp.hs), hs[0, : len(hyp.hs)], atol=1e-5)


def test_decoder_state_interface_accepts_transformer_and_rejects_rnn_decoder():
    transformer = TransformerDecoder(vocab_size=20, encoder_output_size=16, attention_heads=2,
                                     linear_units=32, num_blocks=1)
    assert decoder_state_size(transformer) == 16
    assert decoder_state_size(make_decoder()) == 12
    with pytest.raises(TypeError, match="RNNDecoder cannot provide ASR features"):
        check_decoder_has_states(RNNDecoder(vocab_size=20, encoder_output_size=16))


def test_blstm_encoder_is_padding_invariant_and_zeroes_padding():
    torch.manual_seed(0)
    encoder = BLSTMEncoder(6, hidden_size=5, num_layers=2, dropout=0.0).eval()
    assert encoder.output_size() == 10
    xs = torch.randn(2, 11, 6)
    out, lens, _ = encoder(xs, torch.tensor([11, 7]))
    alone, _, _ = encoder(xs[1:, :7], torch.tensor([7]))
    assert torch.allclose(out[1, :7], alone[0], atol=1e-6)
    assert torch.count_nonzero(out[1, 7:]) == 0


# ---- greedy decoding: the O(L) paths against the O(L^2) reference ----------------------------

GREEDY_VOCAB, GREEDY_SOS, GREEDY_STEPS = 20, 19, 12
GREEDY_BATCHES = {"one": [25], "mixed": [25, 13, 7, 20]}


def random_greedy_case(kind, seed, lengths):
    """A random-weight decoder (eval mode) and a padded encoder output of ``lengths``."""
    torch.manual_seed(seed)
    if kind == "a2w":
        decoder = A2WDecoder(
            GREEDY_VOCAB, 16, embed_size=8, hidden_size=12, attention_size=8,
            attention_conv_channels=2, attention_conv_kernel=10,
        )
        scale = 1.0
    else:
        decoder = TransformerDecoder(vocab_size=GREEDY_VOCAB, encoder_output_size=16,
                                     attention_heads=2, linear_units=32, num_blocks=2)
        scale = 10.0  # else the random decoder emits the same tokens for every utterance
    lens = torch.tensor(lengths)
    enc = scale * torch.randn(len(lengths), max(lengths), 16)
    enc = enc.masked_fill(torch.arange(enc.size(1))[None, :, None] >= lens[:, None, None], 0.0)
    return decoder.eval(), enc, lens


class ForwardOnly(torch.nn.Module):
    """A decoder with teacher forcing and nothing else: greedy_tokens' generic path."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, *args, **kwargs):
        return self.decoder(*args, **kwargs)


@pytest.mark.parametrize("batch", sorted(GREEDY_BATCHES))
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["a2w", "transformer"])
def test_greedy_tokens_match_the_quadratic_reference(kind, seed, batch):
    decoder, enc, lens = random_greedy_case(kind, seed, GREEDY_BATCHES[batch])
    seen = set()
    # Every id as <eos>: ids the decoder never emits leave every utterance running to
    # max_steps; the others end utterances at the step they are first emitted.
    for eos in range(GREEDY_VOCAB):
        args = (enc, lens, GREEDY_SOS, eos, -1, GREEDY_STEPS)
        tokens, lengths = greedy_tokens(decoder, *args)
        ref_tokens, ref_lengths = greedy_tokens_reference(decoder, *args)
        assert torch.equal(tokens, ref_tokens) and torch.equal(lengths, ref_lengths), eos
        assert tokens.size(1) == int(lengths.max())
        assert bool((tokens != eos).all()) and bool((tokens >= -1).all())
        seen.add(tuple(sorted({int(n) == GREEDY_STEPS for n in lengths})))

        # The ASR features of the greedy hypothesis are the same either way.
        states = teacher_forced_states(decoder, *args[:2], tokens, lengths, *args[2:5])
        ref_states = teacher_forced_states(decoder, *args[:2], ref_tokens, ref_lengths,
                                           *args[2:5])
        assert all(torch.equal(a, b) for a, b in zip(states, ref_states))
        # ... and teacher forcing on it emits it again, then <eos> where it stopped.
        best = states[0].argmax(-1)
        for b, n in enumerate(lengths.tolist()):
            assert torch.equal(best[b, :n], tokens[b, :n])
            assert n == GREEDY_STEPS or int(best[b, n]) == eos
    # Some <eos> ended no utterance; another ended the one utterance (the loop stops
    # early) or some of the batch while others ran to max_steps.
    assert (True,) in seen
    assert ((False,) if len(GREEDY_BATCHES[batch]) == 1 else (False, True)) in seen


def test_greedy_tokens_dispatch_and_edge_cases(monkeypatch):
    calls = []
    reference = decoder_states.greedy_tokens_reference
    monkeypatch.setattr(decoder_states, "greedy_tokens_reference",
                        lambda *a: calls.append(type(a[0]).__name__) or reference(*a))
    for kind in ("a2w", "transformer"):
        decoder, enc, lens = random_greedy_case(kind, 0, GREEDY_BATCHES["mixed"])
        args = (enc, lens, GREEDY_SOS, 3, -1, GREEDY_STEPS)
        fast = greedy_tokens(decoder, *args)
        generic = greedy_tokens(ForwardOnly(decoder), *args)
        assert all(torch.equal(a, b) for a, b in zip(fast, generic))
        for steps in (0, 1):
            tokens, lengths = greedy_tokens(decoder, *args[:-1], steps)
            ref_tokens, ref_lengths = reference(decoder, *args[:-1], steps)
            assert torch.equal(tokens, ref_tokens) and torch.equal(lengths, ref_lengths)
            assert tokens.shape[1] <= steps
    # Only the decoder without an incremental path took the O(L^2) one.
    assert calls == ["ForwardOnly", "ForwardOnly"]
    assert hasattr(A2WDecoder, "greedy_search")
