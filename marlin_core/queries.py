"""Queries are user text placed inside Marlin's chat prompt: text that spells a special token is refused.

``<|video_pad|>`` or ``<|im_end|>`` in a query would be tokenized as the control token itself, changing
the prompt's structure (a lone ``<|video_pad|>`` breaks the video token count; ``<|im_end|>`` ends the
user turn early). Escaping would change what the user asked, so such a query is rejected with a message
naming it, the same way whether it comes alone or among a hundred others.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from .errors import MarlinError

__all__ = ["QueryError", "check_queries", "parse_queries", "query_problem"]

# Qwen's control tokens all look like this; the tokenizer's own list (added tokens such as ``<think>``)
# is checked too when it is at hand.
SPECIAL_TOKEN_PATTERN = re.compile(r"<\|[^<>|]*\|>")


class QueryError(MarlinError, ValueError):
    """A query that cannot be asked (empty, or spelling a special token)."""


def parse_queries(value) -> list[str]:
    """Queries from a list (or text with one query per line); whitespace tidied, blanks and duplicates dropped.

    A plain string is text, never a sequence of one-letter queries.
    """
    items = value if isinstance(value, (list, tuple)) else str(value or "").splitlines()
    queries = []
    for item in items:
        query = " ".join(str(item).split())
        if query and query not in queries:
            queries.append(query)
    return queries


def query_problem(query: str, special_tokens: Iterable[str] = ()) -> str | None:
    """Why ``query`` cannot be asked, or None."""
    if not str(query).strip():
        return "empty query"
    found = SPECIAL_TOKEN_PATTERN.search(query)
    if found:
        return f"query {query!r} contains the special token text {found.group()!r}; remove it"
    for token in special_tokens:
        if len(token) > 1 and token in query:
            return f"query {query!r} contains the special token text {token!r}; remove it"
    return None


def check_queries(queries: Sequence[str], special_tokens: Iterable[str] = ()) -> list[str]:
    """Return ``queries`` when every one can be asked.

    Raises:
        QueryError: naming every bad query (none is asked when one is bad).
    """
    tokens = list(special_tokens)
    if not queries:
        raise QueryError("no query given")
    problems = [problem for query in queries if (problem := query_problem(query, tokens))]
    if problems:
        raise QueryError("; ".join(problems))
    return list(queries)
