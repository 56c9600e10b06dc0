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

# Float32 scratch for a non-float32 output: strips are grouped up to this size (fewer calls) and 1/16 of the
# output, never split (one strip of a 1080p-sized frame pair is ~1.5 MB); the peak above the output is the scratch.
SCRATCH_BYTES = 4 * 1024 * 1024


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
    # a non-float32 output's scratch: at most scratch_bytes and 1/16 of the output (short clips), at least a strip
    scratch_limit = min(scratch_bytes, out.nbytes // 16)
    per_step = max(1, scratch_limit // (strip_rows * columns * 4)) if dtype != torch.float32 else strips
    scratch = (torch.empty(min(per_step, strips) * strip_rows, columns, dtype=torch.float32)
               if dtype != torch.float32 else None)
    for t in range(grid_t):
        first = t * temporal
        # the temporal padding: the last frame repeated (a copy of at most `temporal` uint8 frames)
        pair = frames[first:first + temporal] if first + temporal <= count else \
            frames[[min(i, count - 1) for i in range(first, first + temporal)]]
        for strip in range(0, strips, per_step):
            stop = min(strip + per_step, strips)
            rows = (t * strips + strip) * strip_rows, (t * strips + stop) * strip_rows
            target = out[rows[0]:rows[1]] if scratch is None else scratch[:rows[1] - rows[0]]
            pixels = pair[:, :, strip * side:stop * side]  # (temporal, C, strips * side, W)
            source = pixels.view(temporal, channels, stop - strip, merge, patch, blocks_w, merge, patch)
            patches = target.view(stop - strip, blocks_w, merge, merge, channels, temporal, patch, patch)
            patches.copy_(source.permute(2, 5, 3, 6, 1, 0, 4, 7))
            patches.sub_(mean).div_(std)
            if scratch is not None:
                out[rows[0]:rows[1]].copy_(target)
    return out, [grid_t, grid_h, grid_w]
