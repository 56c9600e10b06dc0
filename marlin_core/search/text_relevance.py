"""How well a query's words match caption text: tokens, BM25 over a library, idf-weighted coverage.

Lexical and weight-free on purpose: a library already captioned by Marlin can be searched without
loading any model. Two measures share one set of library statistics (a document = one video's scene
paragraph and event descriptions):

* :meth:`LibraryTerms.bm25` ranks videos for a query (Okapi BM25, Lucene's non-negative idf);
* :meth:`LibraryTerms.coverage` says, in ``[0, 1]``, how much of a query a piece of text covers,
  each query word weighted by its idf, so matching a word every caption uses ("screen") counts for
  little and a query word no caption in the library uses counts fully against the match.

Words are lower-cased, stop words dropped and common English suffixes stripped (a light stemmer:
"looks", "looked", "looking" -> "look"); synonyms ("bunny" / "rabbit") are not matched — configure an
embedding ranker (:mod:`marlin_core.search.ranking`) for that.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = ["BM25_B", "BM25_K1", "LibraryTerms", "STOP_WORDS", "stem", "tokenize"]

# Okapi BM25's usual constants (Robertson & Zaragoza 2009; Lucene's defaults are 1.2 / 0.75).
BM25_K1 = 1.2
BM25_B = 0.75

# Function words, and words every caption or query uses ("video", "scene", "shows") that say nothing about
# what happens.
STOP_WORDS = frozenset(
    """a an the and or but of in on at to with without is are was were be been being it its this that these
    those for from by as into onto while then than there their they them he she his her him we you i our your
    do does did not no so some any all each other such can will just also very video clip scene shows shown
    show where when which who what how""".split()
)

_WORD = re.compile(r"[a-z0-9]+")
_PLURAL_ES = ("ses", "xes", "zes", "ches", "shes")


def stem(word: str) -> str:
    """Strip one common suffix (``-ing``, ``-ed``, ``-ies``, ``-es``, ``-s``) keeping at least 3 letters."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(_PLURAL_ES) and len(word) > 4:
        return word[:-2]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("e" + suffix):
            root = word[: -len(suffix)]
            # running -> run, dimmed -> dim (but falling -> fall)
            return root[:-1] if root[-1] == root[-2] and root[-1] not in "lsz" else root
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """The content words of ``text``, lower-cased and stemmed, in order (repeats kept)."""
    return [stem(word) for word in _WORD.findall(text.lower()) if word not in STOP_WORDS]


class LibraryTerms:
    """Term statistics of a library of documents (one per video), for BM25 and idf-weighted coverage.

    Args:
        documents: the token lists of the documents (from :func:`tokenize`), in a fixed order.
    """

    def __init__(self, documents: Sequence[Sequence[str]]):
        self.documents = [Counter(tokens) for tokens in documents]
        self.lengths = [len(tokens) for tokens in documents]
        self.average_length = (sum(self.lengths) / len(self.lengths)) if self.lengths else 0.0
        self.document_frequency: Counter = Counter()
        for counts in self.documents:
            self.document_frequency.update(counts.keys())

    def __len__(self) -> int:
        return len(self.documents)

    def idf(self, term: str) -> float:
        """Lucene's BM25 idf, ``ln(1 + (N - n + 0.5) / (n + 0.5))``: positive, largest for unseen words."""
        n = self.document_frequency.get(term, 0)
        return math.log(1.0 + (len(self.documents) - n + 0.5) / (n + 0.5))

    def bm25(self, query_terms: Iterable[str]) -> list[float]:
        """BM25 score of every document for the query (each distinct query word counted once)."""
        terms = set(query_terms)
        scores = []
        for counts, length in zip(self.documents, self.lengths):
            norm = BM25_K1 * (1.0 - BM25_B + BM25_B * length / self.average_length) if self.average_length else 0.0
            score = 0.0
            for term in terms:
                tf = counts.get(term, 0)
                if tf:
                    score += self.idf(term) * tf * (BM25_K1 + 1.0) / (tf + norm)
            scores.append(score)
        return scores

    def coverage(self, query_terms: Iterable[str], text_terms: Iterable[str]) -> float:
        """Share of the query's idf mass whose words appear in the text, in ``[0, 1]`` (0 for an empty query)."""
        terms = set(query_terms)
        total = sum(self.idf(term) for term in terms)
        if total == 0.0:
            return 0.0
        present = set(text_terms)
        return sum(self.idf(term) for term in terms if term in present) / total
