"""``pixel_values_videos`` from uint8 frames, written in place: the processor's values without its copies.

Why: transformers' ``Qwen3VLVideoProcessor`` stacks the frames (a uint8 copy), converts them to float32 (4x the
frames), patchifies them with a ``reshape`` of a permuted view (another float32 copy) and concatenates the
videos (a third): about 3x the model-input tensor above the decoded frames, 6.7 GB for a 120 s 1080p window.
Here the output tensor is allocated once, in the model's dtype, and filled one strip at a time (one temporal
patch, ``merge_size`` patch rows): each strip's uint8 pixels are copied in patch order straight into their
output rows, then rescaled and normalised there (float32) or in a small float32 scratch strip that is
rounded into the output (bf16/fp16). The peak above the frames is the output plus one strip.

The arithmetic is the processor's, step by step (``video_processing_qwen3_vl.py``, transformers 5.24):

* rescale + normalise, fused (``_fuse_mean_std_and_rescale_factor``): ``mean = tensor(image_mean) / rescale_factor``
  and ``std`` likewise (float32), then ``(float32(x) - mean) / std`` per channel (``tvF.normalize``: ``sub_``
  then ``div_``), the same IEEE operations on the same values, so the float32 result is bit-identical and a
  bf16 result equals the processor's float32 output cast to bf16;
* temporal padding (``patchify``): a video with a frame count not divisible by ``temporal_patch_size`` repeats
  its last frame;
* patch order (``patchify``): rows ``(t, h // merge, w // merge, merge_h, merge_w)``, columns
  ``(channel, temporal, patch_h, patch_w)``.

``tests/test_inputs.py`` checks ``torch.equal`` against the processor on every test clip and on the recorded shapes.
"""

from __future__ import annotations

import torch

__all__ = ["SCRATCH_BYTES", "can_patchify", "video_patches"]

# Float32 scratch for a non-float32 output: strips, then whole temporal patches, are grouped up to this size and
# 1/16 of the output (fewer, larger calls), never split (a strip of a 1080p-window frame pair is ~1 MB); the peak
# above the output is the scratch.
SCRATCH_BYTES = 64 * 1024 * 1024


def can_patchify(video_processor) -> bool:
    """Whether :func:`video_patches` reproduces ``video_processor``: it rescales and normalises (Marlin's does)."""
    return bool(video_processor.do_rescale and video_processor.do_normalize)


def _mean_std(video_processor) -> tuple[torch.Tensor, torch.Tensor]:
    """The processor's fused float32 mean and std (rescale folded in), shaped to broadcast over (C, T, p, p)."""
    scale = 1.0 / video_processor.rescale_factor
    mean = torch.tensor(video_processor.image_mean) * scale
    std = torch.tensor(video_processor.image_std) * scale
    return mean.view(-1, 1, 1, 1), std.view(-1, 1, 1, 1)


def video_patches(video_processor, frames: torch.Tensor, dtype: torch.dtype = torch.float32, *,
                  scratch_bytes: int = SCRATCH_BYTES) -> tuple[torch.Tensor, list[int]]:
    """The processor's ``pixel_values_videos`` and ``video_grid_thw`` row for one video, in ``dtype``.

    Args:
        video_processor: the model's ``Qwen3VLVideoProcessor`` (patch, merge and temporal sizes, mean, std);
            :func:`can_patchify` must hold.
        frames: uint8 ``(T, C, H, W)``, already sized (H and W multiples of ``patch_size * merge_size``).
        dtype: the output's floating dtype: float32 (the processor's), or the model's (e.g. bfloat16: equal
            to the processor's float32 output cast to it).
        scratch_bytes: the most float32 scratch a non-float32 output is computed in (whole strips, at least one).

    Returns:
        ``(pixel_values, [grid_t, grid_h, grid_w])``; ``pixel_values`` is ``(grid_t * grid_h * grid_w,
        C * temporal_patch_size * patch_size ** 2)``.
    """
    if not can_patchify(video_processor):
        raise ValueError("video_patches reproduces a processor that rescales and normalises; this one does not")
    if frames.dtype != torch.uint8 or frames.ndim != 4:
        raise ValueError(f"video_patches: frames must be uint8 (T, C, H, W), got {frames.dtype} {tuple(frames.shape)}")
    patch, merge, temporal = (video_processor.patch_size, video_processor.merge_size,
                              video_processor.temporal_patch_size)
    count, channels, height, width = frames.shape
    side = patch * merge
    if height % side or width % side:
        raise ValueError(f"video_patches: frame size {height}x{width} is not a multiple of {side}")
    grid_t, grid_h, grid_w = -(-count // temporal), height // patch, width // patch
    strips, blocks_w = grid_h // merge, grid_w // merge
    strip_rows = blocks_w * merge * merge  # output rows of one strip: one temporal patch, `merge` patch rows
    columns = channels * temporal * patch * patch
    out = torch.empty(grid_t * grid_h * grid_w, columns, dtype=dtype)
    mean, std = _mean_std(video_processor)
    scratch, step = None, grid_t * strips  # float32: normalised in the output itself, all at once
    if dtype != torch.float32:  # at most scratch_bytes and 1/16 of the output (short clips), at least one strip
        step = max(1, min(scratch_bytes, out.nbytes // 16) // (strip_rows * columns * 4))
        scratch = torch.empty(min(step, grid_t * strips) * strip_rows, columns, dtype=torch.float32)
    full_t = count // temporal
    sources = [(frames, 0, full_t)]
    if full_t < grid_t:  # the temporal padding: the last frame repeated (a copy of under `temporal` uint8 frames)
        sources.append((frames[[min(i, count - 1) for i in range(full_t * temporal, grid_t * temporal)]], full_t, grid_t))
    for source, first_t, stop_t in sources:
        for t0, t1, s0, s1 in _blocks(first_t, stop_t, strips, step):
            pixels = source[(t0 - first_t) * temporal:(t1 - first_t) * temporal, :, s0 * side:s1 * side]
            pixels = pixels.view(t1 - t0, temporal, channels, s1 - s0, merge, patch, blocks_w, merge, patch)
            rows = out[(t0 * strips + s0) * strip_rows:((t1 - 1) * strips + s1) * strip_rows]
            target = rows if scratch is None else scratch[:len(rows)]
            patches = target.view(t1 - t0, s1 - s0, blocks_w, merge, merge, channels, temporal, patch, patch)
            patches.copy_(pixels.permute(0, 3, 6, 4, 7, 2, 1, 5, 8))
            patches.sub_(mean).div_(std)
            if scratch is not None:
                rows.copy_(target)
    return out, [grid_t, grid_h, grid_w]


def _blocks(first_t: int, stop_t: int, strips: int, step: int) -> list[tuple[int, int, int, int]]:
    """``(t0, t1, s0, s1)``: temporal patches ``t0:t1`` x strips ``s0:s1``, at most ``step`` strips each, whose
    output rows are contiguous: whole temporal patches when ``step`` holds one, else strips of one."""
    if step >= strips:
        per = step // strips
        return [(t, min(t + per, stop_t), 0, strips) for t in range(first_t, stop_t, per)]
    return [(t, t + 1, s, min(s + step, strips)) for t in range(first_t, stop_t) for s in range(0, strips, step)]
