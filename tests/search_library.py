"""A small video library for the search tests, and a counter of the model's real ``generate`` calls.

The trained tiny model knows a red and a blue clip (tests/tiny_model.py): it captions them
"A red screen." (events "Red light.", "Red fades.") and "A blue screen." ("Blue sky.", "Blue dims.")
and answers find with "From 1.0 to 2.0." / "From 0.5 to 2.5." whatever the query. The library holds
copies of both, plus clips of other colours whose captions were written by hand (as a user imports
them), about things the query set does not mention.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from tiny_model import make_color_video

COPIES = 4
# Captions of the other clips (scene, [(start_s, end_s, description)]): nothing red, blue, a light or a sky.
OTHER_CAPTIONS = {
    "green": ("A green lawn.", [(0.0, 3.0, "A dog jumps over a fence.")]),
    "yellow": ("A yellow wall.", [(0.0, 1.5, "A cat sleeps on a sofa."), (1.5, 3.0, "The cat wakes up.")]),
    "white": ("A white page.", [(0.0, 3.0, "Snow falls on a field.")]),
    "black": ("A dark room.", [(0.0, 3.0, "Nothing happens in the dark.")]),
}
PRESENT = {"red light": "red", "blue sky": "blue"}
# Shares "red" with the red clips' captions, so BM25 sends it to the model, but no red car is in them.
HARD_NEGATIVE = "a red car drives past"
ABSENT = "a person opens a door"


def make_library(root: Path, color_videos: dict[str, Path]) -> dict[str, list[Path]]:
    """``{colour: [paths]}``: COPIES red and blue clips (the trained ones) and one clip per other colour."""
    root.mkdir(parents=True, exist_ok=True)
    library: dict[str, list[Path]] = {}
    for color in ("red", "blue"):
        library[color] = []
        for copy in range(COPIES):
            path = root / f"{color}-{copy}.mp4"
            shutil.copy(color_videos[color], path)
            library[color].append(path)
    for color in OTHER_CAPTIONS:
        library[color] = [make_color_video(root / f"{color}.mp4", color)]
    return library


@contextlib.contextmanager
def counting_generate(model_class) -> Iterator[list[int]]:
    """Count generations: calls of ``model_class.generate`` and of the engine's decode loop (each still runs the
    real one; ``find_many``'s batch counts one per query, as when each query was its own ``generate``); yields
    ``[count]``."""
    from marlin_core.engine.loop import DecodeLoop

    real = model_class.generate
    own = "generate" in vars(model_class)
    real_loop, real_queries = DecodeLoop.generate, DecodeLoop.generate_queries
    count = [0]

    def generate(self, *args, **kwargs):
        count[0] += 1
        return real(self, *args, **kwargs)

    def loop_generate(self, *args, **kwargs):
        count[0] += 1
        return real_loop(self, *args, **kwargs)

    def loop_queries(self, prefix_cache, queries, *args, **kwargs):
        count[0] += len(queries)
        return real_queries(self, prefix_cache, queries, *args, **kwargs)

    model_class.generate = generate
    DecodeLoop.generate, DecodeLoop.generate_queries = loop_generate, loop_queries
    try:
        yield count
    finally:
        DecodeLoop.generate, DecodeLoop.generate_queries = real_loop, real_queries
        if own:
            model_class.generate = real
        else:
            del model_class.generate
