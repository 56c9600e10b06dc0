"""Decode only the frames the sampled ones depend on: a copy of the stream without the others.

Why this module exists: the reference (qwen-vl-utils -> torchcodec ``get_frames_at``) decodes every frame
from the keyframe before a sampled frame up to it, though it keeps about 2 per second; on 1080p that
decoding is half of the preprocessing time. A non-reference frame (H.264: every slice has
``nal_ref_idc == 0``; HEVC: a sub-layer non-reference picture in the stream's top temporal layer) is by
definition used by no other frame, so leaving it out changes no other frame's pixels.

So we copy the other packets, unchanged, into an in-memory MP4: per IDR segment holding a sampled frame, its
reference frames up to the last sampled one, plus the sampled frames (the reference skips the rest of each
segment too, by seeking). torchcodec decodes that copy with the same FFmpeg decoder and colour conversion as
the reference: the frames stay bit-identical, fewer are decoded (x264's default B-frames: ~40% fewer).
The caller checks the decoded timestamps against :attr:`SparseStream.pts_s` and falls back to the file on
any mismatch; anything this module does not fully understand (another codec, Annex-B start codes, in-band
parameter sets in a left-out packet, duplicate timestamps, a frame count that differs from torchcodec's)
makes :func:`sparse_stream` return None: "decode the file as it is". Each reason for that is logged at INFO
the first time it occurs (then at DEBUG), so a failure that turns the saving off for every file is visible.

Frame indices are 0-based decoder indices in presentation order (torchcodec's exact seek mode).

Length (~410 lines): the H.264 and HEVC bitstream readers, the segment choice and the MP4 rewrite form one
safety argument (which packets may be dropped); they are kept together so it can be checked in one read.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from ..errors import error_summary

__all__ = ["SparseStream", "sparse_stream"]

logger = logging.getLogger(__name__)

# What a NAL unit is, as far as leaving packets out is concerned.
IDR = "idr"  # a slice of an IDR picture: nothing decoded after it refers to anything before it
REFERENCE = "reference"  # a slice other frames may predict from
NON_REFERENCE = "non_reference"  # a slice of a picture no other picture (of its temporal layer or below) uses
PARAMETER_SET = "parameter_set"  # later slices may need it
NO_PICTURE = "no_picture"  # SEI, delimiters, filler: no pixels, no state later pictures depend on
UNKNOWN = "unknown"  # anything else: its packet is never left out


def h264_unit(header: memoryview) -> tuple[str, int]:
    """Kind and temporal layer of an H.264 NAL unit from its 1-byte header (ITU-T H.264 table 7-1)."""
    nal_type, ref_idc = header[0] & 0x1F, header[0] >> 5  # ref_idc includes the forbidden bit: 0 only if clear
    if nal_type in (1, 5):
        return (IDR if nal_type == 5 else REFERENCE if ref_idc else NON_REFERENCE), 0
    if nal_type in (7, 8):  # SPS, PPS
        return PARAMETER_SET, 0
    if nal_type in (6, 9, 10, 11, 12):  # SEI, access unit delimiter, end of sequence, end of stream, filler
        return NO_PICTURE, 0
    return UNKNOWN, 0


def hevc_unit(header: memoryview) -> tuple[str, int]:
    """Kind and temporal layer of an HEVC NAL unit from its 2-byte header (ITU-T H.265 table 7-1).

    Sub-layer non-reference types (TRAIL_N, TSA_N, STSA_N, RADL_N, RASL_N) are NON_REFERENCE: no picture of
    the same or a lower temporal layer uses them (:func:`scan` keeps those below the stream's top layer).
    """
    nal_type, layer_id = (header[0] >> 1) & 0x3F, ((header[0] & 1) << 5) | (header[1] >> 3)
    temporal_id = (header[1] & 0x07) - 1
    if header[0] & 0x80 or layer_id or temporal_id < 0:
        return UNKNOWN, 0
    if nal_type in (0, 2, 4, 6, 8):
        return NON_REFERENCE, temporal_id
    if nal_type in (1, 3, 5, 7, 9, 16, 17, 18, 21):  # reference pictures, BLA and CRA random access points
        return REFERENCE, temporal_id
    if nal_type in (19, 20):  # IDR_W_RADL, IDR_N_LP
        return IDR, temporal_id
    if nal_type in (32, 33, 34):  # VPS, SPS, PPS
        return PARAMETER_SET, temporal_id
    if nal_type in (35, 36, 37, 38, 39, 40):  # delimiter, end of sequence/bitstream, filler, SEI
        return NO_PICTURE, temporal_id
    return UNKNOWN, temporal_id


class NalSyntax(NamedTuple):
    """How one codec's packets are read: its NAL unit headers, and its avcC / hvcC configuration record."""

    read_unit: Callable[[memoryview], tuple[str, int]]  # NAL header -> (kind, temporal layer)
    header_size: int  # bytes of a NAL unit header
    length_size_at: int  # where the record keeps (NAL length prefix size - 1) in its low 2 bits
    min_record_size: int  # a shorter record is not one


# Codecs (FFmpeg names) whose packets can be thinned.
NAL_SYNTAX = {
    "h264": NalSyntax(h264_unit, header_size=1, length_size_at=4, min_record_size=7),
    "hevc": NalSyntax(hevc_unit, header_size=2, length_size_at=21, min_record_size=23),
}

# Fallback reasons already logged at INFO (see _log_fallback).
_logged_reasons: set[str] = set()
_logged_reasons_lock = threading.Lock()

# Below this share of the frames the reference decodes left out, copying the stream costs more than it saves
# (it also holds the copied packets in memory).
MIN_DROPPED_FRACTION = 0.1


@dataclass(frozen=True, slots=True)
class PacketInfo:
    """What deciding about one packet needs, read from its NAL unit headers.

    Attributes:
        pts: presentation timestamp in the stream's time base.
        dts: decoding timestamp (None when the container has none), used to seek to the packet.
        keyframe: the container marks it as a keyframe (a place decoders seek to).
        discard: the container's edit list hides its frame (decoded, as later frames may need it, but not
            shown; torchcodec does not count it as a frame).
        idr: holds an IDR slice, so no later packet refers to an earlier one.
        reference: some slice may be used to predict other frames (anything not plainly a non-reference slice).
        temporal_id: the highest temporal layer among its slices (always 0 in H.264).
        parameter_sets: the in-band parameter-set NAL units (VPS, SPS, PPS) it carries, as bytes.
    """

    pts: int
    dts: int | None
    keyframe: bool
    discard: bool
    idr: bool
    reference: bool
    temporal_id: int
    parameter_sets: frozenset[bytes]


@dataclass(frozen=True)
class StreamScan:
    """Every packet of the best video stream in decoding order, with its time base (``seconds = pts * time_base``)."""

    packets: tuple[PacketInfo, ...]
    time_base: float

    @functools.cached_property
    def presentation_order(self) -> list[int]:
        """Decoding positions of the shown frames sorted by pts: entry ``i`` is the packet of frame index ``i``."""
        shown = [position for position, packet in enumerate(self.packets) if not packet.discard]
        return sorted(shown, key=lambda position: self.packets[position].pts)


@dataclass(frozen=True)
class SparseStream:
    """The packets the wanted frames need, as an MP4 torchcodec can open, and where those frames are in it.

    Attributes:
        data: the MP4 file's bytes.
        indices: the wanted frames' indices in ``data``, in the order they were asked for.
        pts_s: their presentation times in seconds, as the original file gives them (to check the decode).
        kept: frames in ``data`` (shown ones, as torchcodec counts them).
        total: frames in the original stream.
    """

    data: bytes
    indices: list[int]
    pts_s: list[float]
    kept: int
    total: int


def packet_info(payload: memoryview, pts: int, dts: int | None, keyframe: bool, length_size: int,
                codec: str = "h264", discard: bool = False) -> PacketInfo:
    """Read the NAL unit headers of one length-prefixed (avcC / hvcC) packet of ``codec``.

    A packet whose content is not plainly understood (an unknown NAL type, a truncated length, no slice)
    counts as a reference frame, so it is never left out.
    """
    read_unit, header_size = NAL_SYNTAX[codec].read_unit, NAL_SYNTAX[codec].header_size
    idr = reference = False
    temporal_id = slices = offset = 0
    parameter_sets = set()
    while offset + length_size < len(payload):
        size = int.from_bytes(payload[offset : offset + length_size], "big")
        start, offset = offset + length_size, offset + length_size + size
        kind, unit_temporal_id = read_unit(payload[start : start + header_size]) if size >= header_size else (UNKNOWN, 0)
        if kind in (IDR, REFERENCE, NON_REFERENCE):
            slices += 1
            idr |= kind == IDR
            reference |= kind != NON_REFERENCE
            temporal_id = max(temporal_id, unit_temporal_id)
        elif kind == PARAMETER_SET:
            parameter_sets.add(bytes(payload[start:offset]))
        elif kind == UNKNOWN:
            reference = True
    if offset != len(payload) or slices == 0:
        reference = True
    return PacketInfo(pts=pts, dts=dts, keyframe=keyframe, discard=discard, idr=idr, reference=reference,
                      temporal_id=temporal_id, parameter_sets=frozenset(parameter_sets))


def _length_size(codec: str, extradata: bytes | None) -> int | None:
    """Bytes per NAL length prefix from an avcC / hvcC record; None for Annex-B streams (start codes)."""
    syntax = NAL_SYNTAX[codec]
    if not extradata or len(extradata) < syntax.min_record_size or extradata[0] != 1:
        return None
    return (extradata[syntax.length_size_at] & 0x03) + 1


def _open_best_video(path: Path):
    import av

    container = av.open(str(path))
    try:
        return container, container.streams.best("video")
    except Exception:
        container.close()
        raise


@functools.lru_cache(maxsize=8)
def _scan_cached(path: str, size: int, mtime_ns: int) -> StreamScan | str:
    """The :class:`StreamScan`, or why the stream cannot be thinned."""
    container, stream = _open_best_video(Path(path))
    with container:
        codec = stream.codec_context.name if stream is not None else None
        if codec not in NAL_SYNTAX:
            return f"its codec ({codec}) is not H.264 or HEVC"
        length_size = _length_size(codec, stream.codec_context.extradata)
        if length_size is None:
            return "the stream is Annex-B (start codes, no avcC/hvcC record)"
        time_base = float(stream.time_base)
        packets = []
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts is None:
                return "a packet has no presentation timestamp"
            packets.append(packet_info(memoryview(packet), packet.pts, packet.dts, packet.is_keyframe, length_size,
                                       codec, discard=packet.is_discard))
    # A sub-layer non-reference picture may still be used by pictures of higher temporal layers.
    top_layer = max((packet.temporal_id for packet in packets), default=0)
    packets = [packet if packet.reference or packet.temporal_id == top_layer else replace(packet, reference=True)
               for packet in packets]
    return StreamScan(packets=tuple(packets), time_base=time_base)


def _scan(path: str | Path) -> StreamScan | str:
    path = Path(path)
    stat = path.stat()
    return _scan_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def scan(path: str | Path) -> StreamScan | None:
    """Packets of ``path``'s best video stream; None when it is not length-prefixed H.264 or HEVC.

    Cached per file (path, size, modification time), so the windows of a long video scan it once.
    """
    result = _scan(path)
    return result if isinstance(result, StreamScan) else None


def wanted_spans(packets: Sequence[PacketInfo], wanted: set[int]) -> list[range]:
    """Per IDR segment holding a wanted frame, its decoding positions up to its last wanted frame.

    This is also what the reference decodes: torchcodec seeks to the keyframe before a frame when the
    frame lies in another segment than the last one decoded, so it skips the rest of every segment.

    In a stream with keyframes that are not IDRs (open GOPs), a span goes on up to the next keyframe after
    its last wanted frame: after seeking to such a keyframe, FFmpeg 5.1's H.264 decoder does not hand out
    the last frames of a copy that ends right after them (torchcodec: "no more frames left to decode").
    """
    open_gop = any(packet.keyframe and not packet.idr for packet in packets)
    starts = [position for position, packet in enumerate(packets) if position == 0 or packet.idr]
    spans = []
    for start, end in zip(starts, [*starts[1:], len(packets)]):
        last_wanted = max((position for position in range(start, end) if position in wanted), default=None)
        if last_wanted is None:
            continue
        stop = last_wanted + 1
        if open_gop:
            while stop < end and not packets[stop].keyframe:
                stop += 1
        spans.append(range(start, stop))
    return spans


def needed_positions(packets: Sequence[PacketInfo], wanted: set[int],
                     spans: list[range] | None = None) -> list[int] | None:
    """Decoding positions to keep so that the packets at ``wanted`` positions decode as in the full stream.

    In each of the :func:`wanted_spans` (pass them when already computed), the reference frames and the
    wanted frames. None when a left-out packet carries a parameter set that the next kept packet does not
    carry again byte for byte (later frames might depend on it).
    """
    spans = wanted_spans(packets, wanted) if spans is None else spans
    keep: list[int] = []
    dropped_parameter_sets: set[bytes] = set()
    span_index = 0
    for position, packet in enumerate(packets):
        while span_index < len(spans) and position > spans[span_index][-1]:
            span_index += 1
        in_span = span_index < len(spans) and position in spans[span_index]
        if not (in_span and (position in wanted or packet.reference)):
            dropped_parameter_sets |= packet.parameter_sets
            continue
        if not dropped_parameter_sets <= packet.parameter_sets:
            return None
        dropped_parameter_sets.clear()
        keep.append(position)
    return keep


def _copy_packets(path: Path, scan_result: StreamScan, keep: list[int]) -> bytes | None:
    """Copy the packets at decoding positions ``keep`` into an in-memory MP4; None if they cannot be found."""
    import av

    packets = scan_result.packets
    first, last = keep[0], keep[-1]
    kept = set(keep)
    output = io.BytesIO()
    container, stream = _open_best_video(path)
    with container, av.open(output, "w", format="mp4") as sink:
        out_stream = sink.add_stream_from_template(stream)
        if packets[first].dts is not None and first > 0:
            container.seek(packets[first].dts, stream=stream, backward=True, any_frame=False)
        position = None  # decoding position of the current packet, known once the first kept one is seen
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if position is None:
                if packet.pts != packets[first].pts:
                    continue
                position = first
            else:
                position += 1
                if packet.pts != packets[position].pts:
                    return None
            if position in kept:
                packet.stream = out_stream
                sink.mux(packet)
            if position == last:
                break
        if position != last:
            return None
    return output.getvalue()


def sparse_stream(path: str | Path, indices: Sequence[int], num_frames: int) -> SparseStream | None:
    """The frames at ``indices`` with only what they depend on, or None to decode ``path`` as it is.

    Args:
        path: the video file.
        indices: the frames to decode, 0-based presentation-order indices (torchcodec's).
        num_frames: the frame count torchcodec gives for the file; the scan must agree with it.

    Returns:
        The :class:`SparseStream`, or None when the stream is not length-prefixed H.264 or HEVC,
        when leaving frames out would gain too little, or when anything in the file is not as expected
        (the reason is logged, see :func:`_log_fallback`).
    """
    path = Path(path)
    try:
        result = _sparse_copy(path, indices, num_frames)
    except Exception as error:  # noqa: BLE001 - any surprise means: decode the original file instead
        _log_fallback(path, f"{type(error).__name__} while reading the stream", error_summary(error))
        return None
    if isinstance(result, str):
        _log_fallback(path, result)
        return None
    return result


def _sparse_copy(path: Path, indices: Sequence[int], num_frames: int) -> SparseStream | str:
    """:func:`sparse_stream`'s work: the :class:`SparseStream`, or why there is none."""
    scan_result = _scan(path)
    if isinstance(scan_result, str):
        return scan_result
    if len(scan_result.presentation_order) != num_frames:
        return "the packet scan counts other frames than torchcodec"
    if not indices:
        return "no frames were asked for"
    packets = scan_result.packets
    if len({packet.pts for packet in packets}) != len(packets):
        return "two packets share a presentation timestamp"
    order = scan_result.presentation_order
    wanted = {order[index] for index in indices}
    spans = wanted_spans(packets, wanted)
    keep = needed_positions(packets, wanted, spans)
    if keep is None:
        return "a packet to leave out carries parameter sets the next kept packet does not repeat"
    if len(keep) > sum(len(span) for span in spans) * (1 - MIN_DROPPED_FRACTION):
        return f"fewer than {MIN_DROPPED_FRACTION:.0%} of the frames the reference decodes could be left out"
    data = _copy_packets(path, scan_result, keep)
    if data is None:
        return "the packets to keep could not be found again when copying them"
    shown_pts = sorted(packets[position].pts for position in keep if not packets[position].discard)
    rank = {pts: index for index, pts in enumerate(shown_pts)}
    wanted_pts = [packets[order[index]].pts for index in indices]
    return SparseStream(
        data=data,
        indices=[rank[pts] for pts in wanted_pts],
        pts_s=[pts * scan_result.time_base for pts in wanted_pts],
        kept=len(shown_pts),
        total=num_frames,
    )


def _log_fallback(path: Path, reason: str, detail: str = "") -> None:
    """Say why ``path`` is decoded as it is: at INFO the first time ``reason`` occurs in this process, at DEBUG
    after that, so a cause that turns the saving off for every file shows once instead of being silent or
    repeated per file."""
    with _logged_reasons_lock:
        first = reason not in _logged_reasons
        _logged_reasons.add(reason)
    logger.log(logging.INFO if first else logging.DEBUG, "%s: decoding every frame up to the sampled ones, as the "
               "reference does: %s%s%s", path, reason, f" ({detail})" if detail else "",
               "; later files for this reason are logged at DEBUG" if first else "")
