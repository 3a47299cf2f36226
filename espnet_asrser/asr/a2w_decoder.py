"""The paper's acoustic-to-word attention decoder, whose pre-output vectors are the ASR features.

At step l, with previous state s_{l-1}, previous word w_{l-1} and alignment a_{l-1}:

    g_l = Attend(h, s_{l-1}, a_{l-1})               location-aware attention
    s_l = LSTM([Embed(w_{l-1}); g_l], s_{l-1})      one LSTM layer
    o_l = tanh(W_g g_l + W_s s_l)                   the ASR feature (``hs``)
    y_l = W_out o_l                                 word logits

``o_l`` is what ``return_hs=True`` returns, in :meth:`forward` (teacher forcing, one vector
per input position) and in :meth:`score` / :meth:`batch_score` (ESPnet's
``BeamSearch(return_hs=True)`` stores one per emitted token in ``Hypothesis.hs``). The output
conventions are those of ESPnet's ``TransformerDecoder``, so either decoder can feed the SER
model. ESPnet's own ``RNNDecoder`` has no ``return_hs`` and its output layer is not
tanh(W[g; s]), which is why this decoder exists.

:meth:`greedy_search` decodes a padded batch greedily in one pass, carrying (s, c, a) from
step to step: the fast path of :func:`~espnet_asrser.asr.decoder_states.greedy_tokens`.
"""

from typing import Any, Dict, List, Tuple

import torch
from typeguard import typechecked

from espnet.nets.scorer_interface import BatchScorerInterface
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from espnet_asrser.asr.decoder_states import greedy_loop
from espnet_asrser.asr.location_attention import LocationAwareAttention

State = Dict[str, torch.Tensor]


class A2WDecoder(AbsDecoder, BatchScorerInterface):
    @typechecked
    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        embed_size: int = 320,
        hidden_size: int = 320,
        attention_size: int = 320,
        attention_conv_channels: int = 10,
        attention_conv_kernel: int = 100,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.embed = torch.nn.Embedding(vocab_size, embed_size)
        self.attention = LocationAwareAttention(
            encoder_output_size,
            hidden_size,
            attention_size,
            attention_conv_channels,
            attention_conv_kernel,
        )
        self.lstm = torch.nn.LSTMCell(embed_size + encoder_output_size, hidden_size)
        self.pre_output = torch.nn.Linear(encoder_output_size + hidden_size, hidden_size)
        self.dropout = torch.nn.Dropout(dropout)
        self.output_layer = torch.nn.Linear(hidden_size, vocab_size)

    def output_size(self) -> int:
        """Dimension of the ASR features (``hs``)."""
        return self.hidden_size

    def _step(
        self,
        prev_embed: torch.Tensor,
        state: Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        encoder_out: torch.Tensor,
        encoder_proj: torch.Tensor,
        mask: torch.Tensor,
    ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        h, c, att = state
        context, att = self.attention(encoder_out, encoder_proj, mask, h, att)
        h, c = self.lstm(torch.cat([prev_embed, context], dim=-1), (h, c))
        feature = torch.tanh(self.pre_output(torch.cat([context, h], dim=-1)))
        return feature, (h, c, att)

    def _start(self, hs_pad: torch.Tensor, hlens: torch.Tensor):
        """Encoder mask, projected encoder output and the state before the first step."""
        mask = torch.arange(hs_pad.size(1), device=hs_pad.device)[None, :] < hlens[:, None]
        encoder_proj = self.attention.project_encoder(hs_pad)
        zeros = hs_pad.new_zeros(hs_pad.size(0), self.hidden_size)
        state = (zeros, zeros, self.attention.initial_weights(mask).to(hs_pad.dtype))
        return mask, encoder_proj, state

    def forward(
        self,
        hs_pad: torch.Tensor,
        hlens: torch.Tensor,
        ys_in_pad: torch.Tensor,
        ys_in_lens: torch.Tensor,
        return_hs: bool = False,
    ):
        """Teacher-forced decoding.

        Args:
            hs_pad: (B, T, D) encoder output; hlens: (B,) its lengths.
            ys_in_pad: (B, L) input tokens (<sos> w_1 ... w_{L-1}); ys_in_lens: (B,).
            return_hs: also return the ASR features.

        Returns:
            ``(logits (B, L, V), ys_in_lens)``, or ``((logits, features (B, L, H)),
            ys_in_lens)`` with ``return_hs``; positions past ``ys_in_lens`` are padding.
        """
        mask, encoder_proj, state = self._start(hs_pad, hlens)
        # Padding ids may be -1 (ESPnet's ignore_id); any valid id works for padded steps.
        embeds = self.embed(ys_in_pad.clamp(min=0))
        features = []
        for step in range(ys_in_pad.size(1)):
            feature, state = self._step(embeds[:, step], state, hs_pad, encoder_proj, mask)
            features.append(feature)
        features = torch.stack(features, dim=1)
        logits = self.output_layer(self.dropout(features))
        if return_hs:
            return (logits, features), ys_in_lens
        return logits, ys_in_lens

    @torch.no_grad()
    def greedy_search(
        self,
        hs_pad: torch.Tensor,
        hlens: torch.Tensor,
        sos: int,
        eos: int,
        ignore_id: int,
        max_steps: int,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding of a padded batch in O(max_steps) decoder steps.

        The contract of :func:`~espnet_asrser.asr.decoder_states.greedy_tokens`: (B, L)
        tokens padded with ``ignore_id``, <sos>/<eos> excluded, and their lengths. Each step
        is the step :meth:`forward` takes on the same prefix (same ``hlens`` mask; in
        training mode a fresh dropout draw on the pre-output vector), so the tokens are
        those of teacher forcing on the growing prefix; finished utterances keep being fed
        <eos>, as there.
        """
        mask, encoder_proj, state = self._start(hs_pad, hlens)

        def next_logits(prefix: torch.Tensor) -> torch.Tensor:
            nonlocal state
            feature, state = self._step(
                self.embed(prefix[:, -1]), state, hs_pad, encoder_proj, mask
            )
            return self.output_layer(self.dropout(feature))

        return greedy_loop(next_logits, hs_pad, sos, eos, ignore_id, max_steps)

    # ---- ESPnet scorer interface (beam search) ---------------------------------------------

    def init_state(self, x: torch.Tensor) -> State:
        """State before the first step for one utterance's encoder output ``x`` (T, D)."""
        mask = torch.ones(1, x.size(0), dtype=torch.bool, device=x.device)
        zeros = x.new_zeros(self.hidden_size)
        return {
            "h": zeros,
            "c": zeros,
            "att": self.attention.initial_weights(mask)[0].to(x.dtype),
            # Shared, read-only, by every hypothesis of the utterance.
            "encoder_proj": self.attention.project_encoder(x),
        }

    def score(self, ys: torch.Tensor, state: State, x: torch.Tensor, return_hs: bool = False):
        (logp, hs), states = self.batch_score(ys.unsqueeze(0), [state], x.unsqueeze(0), True)
        if return_hs:
            return logp[0], hs, states[0]
        return logp[0], states[0]

    def batch_score(
        self,
        ys: torch.Tensor,
        states: List[Any],
        xs: torch.Tensor,
        return_hs: bool = False,
    ):
        """Score the next token for ``n`` hypotheses: ys (n, L) prefixes, xs (n, T, D)."""
        first = states[0]["encoder_proj"]
        if all(s["encoder_proj"] is first for s in states):
            encoder_proj = first.unsqueeze(0).expand(len(states), -1, -1)
        else:
            encoder_proj = torch.stack([s["encoder_proj"] for s in states])
        mask = torch.ones(xs.shape[:2], dtype=torch.bool, device=xs.device)
        state = tuple(torch.stack([s[k] for s in states]) for k in ("h", "c", "att"))
        feature, (h, c, att) = self._step(
            self.embed(ys[:, -1]), state, xs, encoder_proj, mask
        )
        logp = torch.log_softmax(self.output_layer(feature), dim=-1)
        new_states = [
            {"h": h[i], "c": c[i], "att": att[i], "encoder_proj": s["encoder_proj"]}
            for i, s in enumerate(states)
        ]
        if return_hs:
            return (logp, feature), new_states
        return logp, new_states
