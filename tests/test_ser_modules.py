"""SER modules: structured self-attention, the BiLSTM + attention branch, the classifier head."""

import pytest
import torch

from espnet_asrser.ser.attention import StructuredSelfAttention
from espnet_asrser.ser.branch import BLSTMAttentionBranch
from espnet_asrser.ser.classifier import EmotionClassifier

torch.set_num_threads(1)

D, HEADS = 6, 3


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _padded_pair(dim: int, short: int = 4, long: int = 9):
    """A short utterance alone, and the same utterance in a batch padded to a longer one.

    The padding is large random values rather than zeros so that any leak shows.
    """
    alone = torch.randn(1, short, dim)
    batch = 100 * torch.randn(2, long, dim)
    batch[0, :short] = alone[0]
    return alone, torch.tensor([short]), batch, torch.tensor([short, long])


# ----------------------------------------------------------------------------- attention


def test_attention_shapes_and_output_size():
    att = StructuredSelfAttention(D, attention_size=5, heads=HEADS)
    pooled, weights = att(torch.randn(2, 7, D), torch.tensor([7, 3]))
    assert pooled.shape == (2, HEADS * D) == (2, att.output_size())
    assert weights.shape == (2, HEADS, 7)


def test_attention_is_the_papers_formula():
    att = StructuredSelfAttention(D, attention_size=5, heads=HEADS)
    xs = torch.randn(1, 4, D)
    pooled, weights = att(xs, torch.tensor([4]))

    scores = torch.tanh(xs[0] @ att.w1.weight.T + att.w1.bias) @ att.w2.weight.T  # (T, heads)
    expected_weights = torch.softmax(scores, dim=0).T  # (heads, T)
    expected_heads = expected_weights @ xs[0]  # (heads, D)
    torch.testing.assert_close(weights[0], expected_weights)
    # Heads are concatenated head by head: [head_1 (D), head_2 (D), ...].
    torch.testing.assert_close(pooled[0], expected_heads.reshape(-1))


def test_attention_weights_sum_to_one_on_valid_frames_and_zero_on_padding():
    att = StructuredSelfAttention(D, attention_size=5, heads=HEADS)
    lengths = torch.tensor([7, 3, 1])
    _, weights = att(torch.randn(3, 7, D), lengths)
    for b, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(weights[b, :, :length].sum(-1), torch.ones(HEADS))
        assert torch.all(weights[b, :, length:] == 0)
        assert torch.all(weights[b, :, :length] > 0)


def test_attention_is_invariant_to_padding():
    att = StructuredSelfAttention(D, attention_size=5, heads=HEADS).eval()
    alone, alone_len, batch, batch_len = _padded_pair(D)
    pooled_alone, weights_alone = att(alone, alone_len)
    pooled_batch, weights_batch = att(batch, batch_len)
    torch.testing.assert_close(pooled_batch[0], pooled_alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(weights_batch[0, :, :4], weights_alone[0], atol=1e-5, rtol=0)


def test_attention_zero_length_gives_zero_vector_and_finite_gradients():
    att = StructuredSelfAttention(D, attention_size=5, heads=HEADS)
    xs = torch.randn(2, 5, D, requires_grad=True)
    pooled, weights = att(xs, torch.tensor([0, 5]))
    assert torch.all(pooled[0] == 0) and torch.all(weights[0] == 0)
    assert torch.isfinite(pooled).all() and pooled[1].abs().sum() > 0

    pooled.sum().backward()
    assert torch.isfinite(xs.grad).all()
    assert torch.all(xs.grad[0] == 0)
    assert torch.isfinite(att.w1.weight.grad).all() and att.w1.weight.grad.abs().sum() > 0


def test_attention_rejects_lengths_beyond_the_input():
    att = StructuredSelfAttention(D, attention_size=5, heads=HEADS)
    with pytest.raises(ValueError, match="lengths"):
        att(torch.randn(2, 5, D), torch.tensor([6, 2]))


# ----------------------------------------------------------------------------- branch


def _branch(dropout: float = 0.0) -> BLSTMAttentionBranch:
    return BLSTMAttentionBranch(
        D, hidden_size=4, num_layers=2, dropout=dropout, attention_size=5, heads=HEADS
    )


def test_branch_default_sizes_follow_the_paper():
    # 2 x 256 BiLSTM outputs x 8 heads = 4096 per branch, 8192 for the two branches.
    assert BLSTMAttentionBranch(40).output_size() == 4096


def test_branch_shapes():
    branch = _branch()
    pooled, weights = branch(torch.randn(3, 8, D), torch.tensor([8, 2, 5]))
    assert pooled.shape == (3, HEADS * 2 * 4) == (3, branch.output_size())
    assert weights.shape == (3, HEADS, 8)
    assert torch.all(weights[1, :, 2:] == 0)


def test_branch_is_invariant_to_padding():
    # Dropout set, but eval mode: the comparison must hold for a trained model at test time.
    branch = _branch(dropout=0.2).eval()
    alone, alone_len, batch, batch_len = _padded_pair(D)
    pooled_alone, _ = branch(alone, alone_len)
    pooled_batch, _ = branch(batch, batch_len)
    torch.testing.assert_close(pooled_batch[0], pooled_alone[0], atol=1e-5, rtol=0)


def test_branch_zero_length_sequences():
    branch = _branch()
    xs = torch.randn(3, 6, D, requires_grad=True)
    pooled, weights = branch(xs, torch.tensor([0, 6, 0]))
    assert torch.isfinite(pooled).all()
    assert torch.all(pooled[0] == 0) and torch.all(pooled[2] == 0)
    assert torch.all(weights[0] == 0) and pooled[1].abs().sum() > 0
    pooled.sum().backward()
    assert torch.isfinite(xs.grad).all() and torch.all(xs.grad[0] == 0)


def test_branch_batch_of_empty_sequences_with_no_frames():
    pooled, weights = _branch()(torch.zeros(2, 0, D), torch.tensor([0, 0]))
    assert pooled.shape == (2, HEADS * 2 * 4) and torch.all(pooled == 0)
    assert weights.shape == (2, HEADS, 0)


def test_branch_and_classifier_pass_gradients_to_every_parameter():
    branch = _branch(dropout=0.2)
    classifier = EmotionClassifier(branch.output_size(), num_classes=4, hidden_size=7)
    pooled, _ = branch(torch.randn(3, 5, D), torch.tensor([5, 3, 1]))
    logits = classifier(pooled)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2, 3])).backward()
    for name, param in [*branch.named_parameters(), *classifier.named_parameters()]:
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


# ----------------------------------------------------------------------------- classifier


def test_classifier_is_fc_relu_fc_returning_logits():
    clf = EmotionClassifier(10, num_classes=4, hidden_size=7).eval()
    xs = torch.randn(5, 10)
    logits = clf(xs)
    first, _, _, last = clf.layers
    torch.testing.assert_close(logits, last(torch.relu(first(xs))))
    assert logits.shape == (5, 4)


def test_classifier_dropout_is_active_only_in_training():
    clf = EmotionClassifier(10, num_classes=4, hidden_size=64, dropout=0.5)
    xs = torch.randn(5, 10)
    first, _, _, last = clf.layers
    without_dropout = last(torch.relu(first(xs)))
    torch.testing.assert_close(clf.eval()(xs), without_dropout)
    assert not torch.allclose(clf.train()(xs), without_dropout)


def test_masked_blstm_equals_packed_lstm_on_valid_frames():
    """The unpacked BiLSTM gives what a packed torch BiLSTM with the same weights gives."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from espnet_asrser.ser.masked_blstm import MaskedBLSTM

    torch.manual_seed(0)
    masked = MaskedBLSTM(5, 7, num_layers=2, dropout=0.0).eval()
    packed = torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True, batch_first=True).eval()
    with torch.no_grad():
        for layer in range(2):
            for suffix, lstm in (("", masked.forward_lstms[layer]), ("_reverse", masked.backward_lstms[layer])):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(packed, f"{name}_l{layer}{suffix}").copy_(getattr(lstm, f"{name}_l0"))
    xs = torch.randn(3, 9, 5)
    lengths = torch.tensor([9, 4, 6])
    expected, _ = pad_packed_sequence(
        packed(pack_padded_sequence(xs, lengths, batch_first=True, enforce_sorted=False))[0],
        batch_first=True,
    )
    got = masked(xs, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert torch.allclose(got[b, :n], expected[b, :n], atol=1e-6)
