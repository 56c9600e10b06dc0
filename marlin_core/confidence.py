"""Confidence of generated timestamps, from the model's own token probabilities.

Definition (the same for caption events and find spans): the geometric mean of the probabilities
the model gave, at generation time, to the tokens that spell the two numbers of a time range
(start and end, digits and decimal point). Probabilities come from the raw logits (softmax before
any sampling processor), so they do not depend on temperature or top-p. A value near 1 means the
model was sure of both boundaries; a value near 0 means another time was nearly as likely.
The description text does not count: it says *what*, the confidence is about *when*.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch

NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")


def token_logprobs(step_logits: Sequence[torch.Tensor], new_tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each generated token under the raw logits.

    Args:
        step_logits: one ``(batch, vocab)`` tensor per generation step (``generate(output_logits=True)``).
        new_tokens: ``(batch, steps)`` generated token ids.

    Returns:
        ``(batch, steps)`` float32 log-probabilities.
    """
    logits = torch.stack(list(step_logits), dim=1).float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return logprobs.gather(-1, new_tokens[:, : logits.shape[1], None].long()).squeeze(-1)


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
