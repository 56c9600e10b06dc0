"""Confidence of generated timestamps, from the model's own token probabilities.

Definition (the same for caption events and find spans): the geometric mean of the probabilities
the model gave, at generation time, to the tokens that spell the two numbers of a time range
(start and end, digits and decimal point). Probabilities come from the raw logits (softmax before
any sampling processor), recorded while generating (:class:`ChosenTokenLogprobs`), so they do not
depend on temperature or top-p. A value near 1 means the model was sure of both boundaries; a value
near 0 means another time was nearly as likely.
The description text does not count: it says *what*, the confidence is about *when*.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

__all__ = ["ChosenTokenLogprobs", "char_offsets", "number_confidences", "range_confidences"]

NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")


class ChosenTokenLogprobs(LogitsProcessor):
    """Records, step by step, the log-probability of the token ``generate`` chose, under the raw logits.

    Why a logits processor: ``generate(output_logits=True)`` keeps every step's full-vocabulary logits
    (``batch x vocab`` float32 per step: ~1 MiB per token per video at Marlin's 248,320-token vocabulary,
    ~2 GiB at the 2,048-token caption limit). This keeps only one step's log-softmax (``batch x vocab``)
    and one float per generated token, so memory does not grow with tokens x vocab. It returns the scores
    unchanged (the same tensor), so the chosen tokens are exactly those of a plain ``generate``.

    It must run before any processor that changes the distribution (temperature, top-k, top-p): the
    engine passes those after it (see ``GenerationSettings.logits_processors``). The token chosen at step
    ``t`` is known at call ``t + 1`` (it is the last column of ``input_ids``); :meth:`finish` reads the
    last step's from the returned sequences.
    """

    def __init__(self):
        self._previous: torch.Tensor | None = None  # (batch, vocab) log-probs of the last step seen
        self._chosen: list[torch.Tensor] = []  # one (batch,) tensor per finished step, on the model's device

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._previous is not None:
            self._chosen.append(self._previous.gather(-1, input_ids[:, -1:]).squeeze(-1))
        self._previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, new_tokens: torch.Tensor) -> torch.Tensor:
        """``(batch, steps)`` float32 log-probabilities of ``new_tokens`` (the generated ids), on the CPU.

        Steps recorded beyond ``new_tokens`` (``generate`` may run one extra step and undo it) are dropped.
        """
        steps = new_tokens.shape[1]
        chosen = self._chosen[:steps]
        if len(chosen) < steps and self._previous is not None:
            last = new_tokens[:, len(chosen)].to(self._previous.device)
            chosen.append(self._previous.gather(-1, last[:, None].long()).squeeze(-1))
        self._previous, self._chosen = None, []
        if not chosen:
            return torch.zeros((new_tokens.shape[0], 0), dtype=torch.float32)
        return torch.stack(chosen, dim=1).float().cpu()


def char_offsets(tokenizer, token_ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """Decode ``token_ids`` (special tokens skipped) and give each token's ``[start, end)`` characters.

    Decoding token by token is exact for whole-character tokens; when a character spans several
    byte-level tokens, the prefix decoding fallback assigns it to the token that completes it.
    """
    text = tokenizer.decode(token_ids, skip_special_tokens=True)
    pieces = [tokenizer.decode([t], skip_special_tokens=True) for t in token_ids]
    if "".join(pieces) != text:
        pieces, previous = [], ""
        for i in range(len(token_ids)):
            prefix = tokenizer.decode(token_ids[: i + 1], skip_special_tokens=True)
            pieces.append(prefix[len(previous):] if prefix.startswith(previous) else "")
            previous = prefix
    offsets, position = [], 0
    for piece in pieces:
        offsets.append((position, position + len(piece)))
        position += len(piece)
    return text, offsets


def number_confidences(text: str, offsets: Sequence[tuple[int, int]], logprobs: Sequence[float]):
    """Each number in ``text`` as ``(value, [logprob of each token that spells it])``, in text order."""
    numbers = []
    for match in NUMBER_RE.finditer(text):
        start, end = match.span()
        token_lps = [lp for (a, b), lp in zip(offsets, logprobs) if a < end and b > start]
        numbers.append((float(match.group()), token_lps))
    return numbers


def range_confidences(
    ranges: Sequence[tuple[float, float]], numbers: Sequence[tuple[float, list[float]]]
) -> list[float | None]:
    """Confidence of each ``(start_s, end_s)`` range, matching its two numbers in text order.

    Ranges are the parser's output in model order; each is matched to the next two consecutive
    numbers in the text with the same values. A range with no match gets ``None``.
    """
    confidences: list[float | None] = []
    cursor = 0
    for start_s, end_s in ranges:
        found = None
        for i in range(cursor, len(numbers) - 1):
            if numbers[i][0] == start_s and numbers[i + 1][0] == end_s:
                found = i
                break
        if found is None:
            confidences.append(None)
            continue
        token_lps = numbers[found][1] + numbers[found + 1][1]
        confidences.append(math.exp(sum(token_lps) / len(token_lps)) if token_lps else None)
        cursor = found + 2
    return confidences
