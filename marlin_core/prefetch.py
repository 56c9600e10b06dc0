"""Load the next items in a background thread while the caller works on the current one.

Why: decoding and resizing a video takes seconds of CPU, the model's ``generate`` takes seconds of GPU;
run back to back, one waits for the other. :func:`prefetch` overlaps them with a bounded look-ahead, keeps
the input order, and hands over failures as values so one bad video never aborts a batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["DEFAULT_DEPTH", "prefetch"]

Item = TypeVar("Item")
Result = TypeVar("Result")

# One item ahead is enough to hide decoding behind generation; more only holds more frames in memory.
DEFAULT_DEPTH = 1


def prefetch(
    items: Iterable[Item],
    load_fn: Callable[[Item], Result],
    depth: int = DEFAULT_DEPTH,
) -> Iterator[tuple[Item, Result | Exception]]:
    """Yield ``(item, load_fn(item))`` in input order, loading up to ``depth`` items ahead in one thread.

    While the caller holds item ``i``, items ``i+1 .. i+depth`` are loaded (one at a time, in order), so besides
    the result the caller holds at most ``depth`` results are loaded or loading (memory stays bounded).
    ``items`` is consumed lazily, so it may be a generator.

    Args:
        items: what to load, e.g. video paths.
        load_fn: called once per item in the background thread (``depth == 0``: in the caller's thread).
        depth: items loaded ahead; 0 disables the thread.

    Yields:
        ``(item, result)``, or ``(item, exception)`` when ``load_fn`` raised an ``Exception`` (it is not re-raised;
        ``KeyboardInterrupt`` and other ``BaseException`` s still propagate).

    Raises:
        ValueError: ``depth`` < 0.
    """
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"prefetch: depth={depth!r} must be an integer >= 0 (items loaded ahead)")
    if depth == 0:
        for item in items:
            yield item, _call(load_fn, item)
        return

    source = iter(items)
    pending: deque[tuple[Item, Future]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="marlin-prefetch") as pool:

        def load_next() -> None:
            for item in source:
                pending.append((item, pool.submit(_call, load_fn, item)))
                return

        try:
            for _ in range(depth):
                load_next()
            while pending:
                item, future = pending.popleft()
                result = future.result()
                del future
                load_next()
                yield item, result
                del result
        finally:
            # The caller stopped early (break, exception, close): drop what was queued but not started.
            for _, future in pending:
                future.cancel()


def _call(load_fn: Callable[[Item], Result], item: Item) -> Result | Exception:
    try:
        return load_fn(item)
    except Exception as error:  # noqa: BLE001 - handed to the caller with its item, by design
        return error
