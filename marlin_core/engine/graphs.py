"""The one-token decode step over static buffers, replayed from CUDA graphs (one per batch-size bucket).

Why: a Qwen3.5 step is a few hundred small kernels (24 layers x norms, projections, the gated-delta-net update,
attention, MLP); launched one by one from Python the GPU waits on the host (issue 23). A CUDA graph replays the
whole step in one launch. A graph needs fixed shapes and addresses, so this keeps one pool of buffers per loaded
model — full-attention keys/values ``(rows, kv heads, columns, head dim)``, the gated-delta-net states, the
attention mask, the input token, the position ids and the logits — and captures the step once per bucket of
:data:`BUCKETS` rows over the first rows of that pool. A request of ``b`` rows runs in the smallest bucket that
holds it; the spare rows decode padding, masked to one column. The pool grows (and the graphs are captured
again) only when a request needs more rows or columns than any before it.

Arithmetic: the static step attends over the pool's full width with a boolean mask (the column to write is
switched on inside the graph), where the eager loop (:class:`marlin_core.engine.decode.Stepper`) attends over
exactly the columns written; both are the same attention in exact arithmetic but SDPA adds the terms in another
grouping, so in bfloat16 a near tie can flip. Graph replays give the same tokens as this static step run
eagerly (``use_graphs=False``; tested on CUDA), and the static step gives the eager loop's tokens on the trained
checkpoint (tested on the CPU).

A failed warm-up or capture (an op that cannot be captured, out of memory) logs one line and turns the graphs
off for this model: the eager loop takes over. :meth:`StaticDecoder.describe` says which runs.
"""

from __future__ import annotations

import logging

import torch

from ..errors import error_summary
from .decode import FULL, LINEAR, LayerStates, StepCache
from .step import Stepper

__all__ = ["BUCKETS", "StaticDecoder"]

logger = logging.getLogger(__name__)

BUCKETS = (1, 2, 4, 8, 16)
# Pool columns are allocated in multiples of this many tokens, so prompts of similar length share one capture.
COLUMN_STEP = 4096
# Eager runs of the step before a capture: the first call compiles/autotunes Triton kernels (fla), which must
# not happen inside the capture.
WARMUP_STEPS = 2


class PoolCache(LayerStates):
    """A bucket's view of the pool, duck-typed as transformers' ``Cache`` for single-token steps (see
    :class:`marlin_core.engine.decode.StepCache`); writes go to the column in ``write_index`` (a device tensor)."""

    def __init__(self, keys: dict, values: dict, conv: dict, recurrent: dict, write_index: torch.Tensor):
        self.keys, self.values, self.conv, self.recurrent = keys, values, conv, recurrent
        self.write_index = write_index

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        self.keys[layer_idx].index_copy_(2, self.write_index, key_states)
        self.values[layer_idx].index_copy_(2, self.write_index, value_states)
        return self.keys[layer_idx], self.values[layer_idx]


class StaticDecoder:
    """Static buffers and (on CUDA, ``use_graphs``) CUDA graphs of the decode step for one loaded model."""

    def __init__(self, stepper: Stepper, pad_id: int, use_graphs: bool):
        self.stepper, self.pad_id, self.use_graphs = stepper, pad_id, use_graphs
        self.failure: str | None = None
        self.rows = self.columns = 0
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.views: dict[int, dict] = {}

    def describe(self) -> str:
        if self.failure:
            return f"eager loop (CUDA graphs off: {self.failure})"
        kind = "CUDA graphs" if self.use_graphs else "static step, eager"
        captured = ", ".join(str(b) for b in sorted(self.graphs or self.views)) or "none yet"
        return f"{kind} (buckets {', '.join(map(str, BUCKETS))}; captured: {captured})"

    # ------------------------------------------------------------------ per request

    @torch.inference_mode()
    def bind(self, state: StepCache, positions: torch.Tensor):
        """Load a prefilled request into the pool; return its ``step(tokens) -> logits``, or None (eager loop).

        ``state`` is consumed (its buffers are released once copied).
        """
        if self.failure is not None:
            return None
        rows = state.batch_size
        bucket = next((b for b in BUCKETS if b >= rows), None)
        if bucket is None:
            return None
        capacity = next(iter(state.keys.values())).shape[2] if state.keys else state.length + 1
        try:
            self._ensure(state, bucket, capacity)
        except Exception as error:  # noqa: BLE001 - any capture failure: eager decoding is still correct
            self.failure = error_summary(error)
            self.graphs, self.views, self.rows, self.columns = {}, {}, 0, 0
            self.keys, self.values, self.conv, self.recurrent = {}, {}, {}, {}  # release the pool
            logger.warning("CUDA graph capture failed, decoding eagerly: %s", self.failure)
            return None
        self._load(state, positions, rows, bucket)
        view = self.views[bucket]
        graph = self.graphs.get(bucket)

        def step(tokens: torch.Tensor) -> torch.Tensor:
            view["tokens"][:rows].copy_(tokens)
            if graph is not None:
                graph.replay()
            else:
                self._step(bucket)
            return view["out"][:rows]

        return step

    def _load(self, state: StepCache, positions: torch.Tensor, rows: int, bucket: int) -> None:
        length = state.length
        for index, keys in state.keys.items():
            self.keys[index][:rows, :, :length].copy_(keys[:, :, :length])
            self.values[index][:rows, :, :length].copy_(state.values[index][:, :, :length])
        for index, conv in state.conv.items():
            self.conv[index][:rows].copy_(conv)
            self.conv[index][rows:bucket].zero_()
            self.recurrent[index][:rows].copy_(state.recurrent[index])
            self.recurrent[index][rows:bucket].zero_()
        self.mask[:bucket].zero_()
        if state.mask is None:
            self.mask[:rows, ..., :length] = True
        else:
            self.mask[:rows, ..., :length].copy_(state.mask[..., :length])
        self.mask[rows:bucket, ..., 0] = True  # spare rows attend to one (zero) column: no all-masked softmax
        self.write_index.fill_(length)
        self.positions[:, :rows].copy_(positions)
        self.positions[:, rows:bucket].zero_()
        self.tokens[rows:bucket].fill_(self.pad_id)
        state.keys, state.values, state.conv, state.recurrent = {}, {}, {}, {}

    # ------------------------------------------------------------------ the pool and the graphs

    def _ensure(self, state: StepCache, bucket: int, capacity: int) -> None:
        if bucket <= self.rows and capacity <= self.columns and bucket in self.views:
            return
        rows = max(bucket, self.rows)
        columns = max(self.columns, -(-capacity // COLUMN_STEP) * COLUMN_STEP)
        if rows != self.rows or columns != self.columns:
            self._allocate(state, rows, columns)
        for b in sorted(b for b in BUCKETS if b <= rows and b not in self.views):
            self.views[b] = self._view(b)
            if self.use_graphs:
                self.graphs[b] = self._capture(b)

    def _allocate(self, state: StepCache, rows: int, columns: int) -> None:
        self.graphs, self.views = {}, {}
        some = next(iter(state.keys.values())) if state.keys else next(iter(state.conv.values()))
        device = some.device
        self.keys, self.values, self.conv, self.recurrent = {}, {}, {}, {}
        for index, kind in enumerate(self.stepper.layer_types):
            if kind == FULL:
                k, v = state.keys[index], state.values[index]
                self.keys[index] = k.new_zeros((rows, k.shape[1], columns, k.shape[3]))
                self.values[index] = v.new_zeros((rows, v.shape[1], columns, v.shape[3]))
            elif kind == LINEAR:
                self.conv[index] = state.conv[index].new_zeros((rows, *state.conv[index].shape[1:]))
                self.recurrent[index] = state.recurrent[index].new_zeros((rows, *state.recurrent[index].shape[1:]))
        self.mask = torch.zeros((rows, 1, 1, columns), dtype=torch.bool, device=device)
        self.write_index = torch.zeros(1, dtype=torch.long, device=device)
        self.positions = torch.zeros((4, rows, 1), dtype=torch.long, device=device)
        self.tokens = torch.full((rows, 1), self.pad_id, dtype=torch.long, device=device)
        vocab = self.stepper.head.out_features
        self.logits = torch.zeros((rows, vocab), dtype=torch.float32, device=device)
        self.mempool = torch.cuda.graph_pool_handle() if self.use_graphs else None
        self.rows, self.columns = rows, columns

    def _view(self, bucket: int) -> dict:
        rows = [{i: t[:bucket] for i, t in part.items()} for part in (self.keys, self.values, self.conv, self.recurrent)]
        cache = PoolCache(*rows, self.write_index)
        return {"cache": cache, "mask": self.mask[:bucket], "positions": self.positions[:, :bucket],
                "tokens": self.tokens[:bucket], "out": self.logits[:bucket]}

    def _step(self, bucket: int) -> None:
        """The captured step: switch on the column to write, run the model, advance the column and positions."""
        view = self.views[bucket]
        view["mask"].index_fill_(-1, self.write_index, True)
        positions = view["positions"]
        rotary = self.stepper.step_rotary(*self.stepper.rotary(positions[1:]))
        logits = self.stepper.logits(view["tokens"], rotary, view["cache"], view["mask"], positions[0])
        self.write_index.add_(1)
        view["positions"].add_(1)
        view["out"].copy_(logits)

    def _capture(self, bucket: int) -> torch.cuda.CUDAGraph:
        self.write_index.zero_()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_STEPS):
                self._step(bucket)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the prefetch thread may touch CUDA (pinned memory) while the main thread captures
        with torch.cuda.graph(graph, pool=self.mempool, capture_error_mode="thread_local"):
            self._step(bucket)
        torch.cuda.current_stream().synchronize()
        return graph
