"""marlin_core.video._sparse: leaving out frames no sampled frame depends on changes no decoded pixel.

The decoded frames are checked against torchcodec decoding the original file (``torch.equal``), and
``load_video`` against qwen-vl-utils itself, on real ffmpeg encodings chosen for their structure: B-frame
pyramids, short GOPs (many IDR segments), in-band parameter sets, several reference frames, interlacing,
three containers, HEVC with and without temporal layers, open GOPs, a clip cut with an edit list; plus the
encodings the module must leave alone (no B-frames, MPEG-4 part 2, Annex-B H.264).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from build_once import cached_file
from media import ffmpeg, make_clip
from test_video import assert_matches_reference
from torchcodec.decoders import VideoDecoder

from marlin_core.video import _sparse
from marlin_core.video import decode as decode_module
from marlin_core.video._sparse import (
    IDR,
    NO_PICTURE,
    NON_REFERENCE,
    PARAMETER_SET,
    REFERENCE,
    UNKNOWN,
    PacketInfo,
    hevc_unit,
    needed_positions,
    packet_info,
    scan,
    sparse_stream,
    wanted_spans,
)
from marlin_core.video import SamplingOptions, load_video, probe

SOURCE = "testsrc2=size=160x120:rate=25:duration=8"
X264 = ("-c:v", "libx264", "-pix_fmt", "yuv420p")
X265, X265_QUIET = ("-c:v", "libx265", "-pix_fmt", "yuv420p"), "log-level=none"

# name -> ffmpeg output options; every one of these has frames no sampled frame depends on.
SPARSE_ENCODINGS = {
    "b_pyramid.mp4": (*X264, "-preset", "veryfast"),
    "short_gop.mp4": (*X264, "-g", "12", "-bf", "3"),
    "no_pyramid.mp4": (*X264, "-x264-params", "b-pyramid=none"),
    "inband_headers.mp4": (*X264, "-x264-params", "repeat-headers=1:keyint=15"),
    "four_refs.mp4": (*X264, "-preset", "slow", "-g", "30"),
    "interlaced.mp4": (*X264, "-flags", "+ildct+ilme", "-x264-params", "interlaced=1"),
    "matroska.mkv": (*X264, "-g", "20"),
    "quicktime.mov": (*X264, "-g", "20"),
    "hevc.mp4": (*X265, "-x265-params", f"{X265_QUIET}:open-gop=0:keyint=50"),
    "hevc_temporal_layers.mp4": (*X265, "-x265-params", f"{X265_QUIET}:open-gop=0:temporal-layers=1:b-pyramid=0"),
    # Keyframes that are not IDRs (H.264 recovery points, HEVC CRA: x265's default), which the reference
    # seeks to.
    "open_gop.mp4": (*X264, "-x264-params", "open-gop=1:keyint=20:min-keyint=20"),
    "open_gop_odd.mp4": (*X264, "-x264-params", "open-gop=1:keyint=37"),
    "hevc_open_gop.mp4": (*X265, "-x265-params", f"{X265_QUIET}:open-gop=1:keyint=30"),
}
# name -> output options of encodings decoded as they are (nothing to leave out, another codec).
FULL_ENCODINGS = {
    "no_b_frames.mp4": (*X264, "-bf", "0"),
    "mpeg4.avi": ("-c:v", "mpeg4", "-bf", "2"),
}
# Annex-B H.264 (start codes, no avcC) is decoded as it is; torchcodec 0.17 fails on this MPEG-TS file in
# the reference path too, so only sparse_stream's answer is checked on it.
ANNEX_B = {"annex_b.ts": X264}
# A clip cut without re-encoding (ffmpeg -ss ... -c copy): its edit list hides the frames before the cut,
# which torchcodec does not count but the frames after need.
TRIMMED = "trimmed_edit_list.mp4"
WINDOWS = [{}, {"video_start": 2.3, "video_end": 5.9}, {"video_start": 0.9, "video_end": 4.1}, {"fps": 0.5}]


def encode(path: Path, *options: str) -> Path:
    ffmpeg("-f", "lavfi", "-i", SOURCE, *options, str(path))
    return path


def cut_with_edit_list(path: Path) -> Path:
    """``short_gop.mp4`` cut at 1.3 s without re-encoding."""
    uncut = encode(path.with_name(f"uncut-{path.name}"), *SPARSE_ENCODINGS["short_gop.mp4"])
    ffmpeg("-ss", "1.3", "-i", str(uncut), "-c", "copy", str(path))
    uncut.unlink()
    return path


@pytest.fixture(scope="module")
def encodings(tmp_path_factory) -> dict[str, Path]:
    """Encoded once per change of this file (``.cache/test-clips``, conftest's ``cached_file``), then copied."""
    root = tmp_path_factory.mktemp("encodings")
    made = {name: cached_file(root / name, encode, *options)
            for name, options in {**SPARSE_ENCODINGS, **FULL_ENCODINGS, **ANNEX_B}.items()}
    made[TRIMMED] = cached_file(root / TRIMMED, cut_with_edit_list)
    return made


def sampled_indices(path: Path, **options) -> list[int]:
    return list(SamplingOptions(**options).resolve(probe(path)).frame_indices)


@pytest.mark.parametrize("options", WINDOWS, ids=["whole", "window", "early_window", "sparse_fps"])
@pytest.mark.parametrize("name", sorted(SPARSE_ENCODINGS) + [TRIMMED])
def test_sparse_copy_decodes_to_the_same_frames(encodings, name, options):
    path = encodings[name]
    indices = sampled_indices(path, **options)
    original = VideoDecoder(str(path)).get_frames_at(indices=indices)
    stream = sparse_stream(path, indices, len(VideoDecoder(str(path))))
    assert stream is not None and stream.kept < stream.total == len(VideoDecoder(str(path)))
    copy = VideoDecoder(stream.data)
    assert len(copy) == stream.kept
    decoded = copy.get_frames_at(indices=stream.indices)
    assert torch.equal(decoded.data, original.data)
    assert torch.equal(decoded.pts_seconds, original.pts_seconds)
    assert decoded.pts_seconds.tolist() == pytest.approx(stream.pts_s, abs=1e-9)


@pytest.mark.parametrize("options", WINDOWS[:2], ids=["whole", "window"])
@pytest.mark.parametrize("name", sorted(SPARSE_ENCODINGS) + [TRIMMED] + sorted(FULL_ENCODINGS))
def test_load_video_still_equals_qwen_vl_utils(encodings, name, options):
    assert_matches_reference(load_video(encodings[name], SamplingOptions(**options)), encodings[name], **options)


@pytest.mark.parametrize("name", sorted(FULL_ENCODINGS))
def test_streams_it_does_not_understand_or_cannot_thin_are_left_alone(encodings, name):
    path = encodings[name]
    assert sparse_stream(path, sampled_indices(path), len(VideoDecoder(str(path)))) is None


def test_each_reason_to_decode_the_file_is_logged_once_at_info(encodings, caplog):
    # A cause that turns the saving off for every file must be visible without DEBUG logging, once.
    _sparse._logged_reasons.clear()
    b_frames, no_b_frames, mpeg4 = encodings["b_pyramid.mp4"], encodings["no_b_frames.mp4"], encodings["mpeg4.avi"]
    calls = [  # (file, frames asked for, torchcodec's frame count, the reason logged)
        (mpeg4, sampled_indices(mpeg4), 200, "its codec (mpeg4) is not H.264 or HEVC"),
        (encodings["annex_b.ts"], [0, 10], 200, "the stream is Annex-B"),
        (no_b_frames, sampled_indices(no_b_frames), 200, "fewer than 10% of the frames the reference decodes"),
        (b_frames, sampled_indices(b_frames), 199, "the packet scan counts other frames than torchcodec"),
    ]
    with caplog.at_level(logging.DEBUG, logger="marlin_core.video"):
        for path, indices, num_frames, _ in calls * 2:
            assert sparse_stream(path, indices, num_frames) is None
    for path, _, _, reason in calls:
        levels = [record.levelno for record in caplog.records if reason in record.getMessage()]
        assert levels == [logging.INFO, logging.DEBUG], reason
        assert f"{path}: decoding every frame" in caplog.text


def test_annex_b_streams_are_not_thinned(encodings):
    assert scan(encodings["annex_b.ts"]) is None


def test_without_non_reference_frames_a_window_is_decoded_as_it_is(encodings):
    # The reference skips the rest of each IDR segment too, so only non-reference frames make a copy worth it.
    path = encodings["no_b_frames.mp4"]
    assert sparse_stream(path, sampled_indices(path, video_start=2.3, video_end=5.9), 200) is None


def test_a_frame_count_other_than_torchcodecs_means_no_sparse_copy(encodings):
    path = encodings["b_pyramid.mp4"]
    assert sparse_stream(path, sampled_indices(path), 199) is None


def test_the_scan_is_done_once_per_file(encodings):
    path = encodings["short_gop.mp4"]
    assert scan(path) is scan(path)
    assert len(scan(path).packets) == 200


# ------------------------------------------------------------------------------- falling back to the file


def test_timestamps_that_differ_make_the_reader_decode_the_file(encodings, monkeypatch, caplog):
    def shifted(path, indices, num_frames):
        stream = sparse_stream(path, indices, num_frames)
        return replace(stream, pts_s=[t + 0.5 for t in stream.pts_s])

    monkeypatch.setattr(decode_module, "sparse_stream", shifted)
    path = encodings["b_pyramid.mp4"]
    with caplog.at_level(logging.WARNING, logger="marlin_core.video"):
        sampled = load_video(path)
    assert_matches_reference(sampled, path)
    assert f"{path}: decoding every frame" in caplog.text and "other timestamps" in caplog.text


def test_a_copy_that_cannot_be_opened_makes_the_reader_decode_the_file(encodings, monkeypatch, caplog):
    def corrupt(path, indices, num_frames):
        return replace(sparse_stream(path, indices, num_frames), data=b"not a video")

    monkeypatch.setattr(decode_module, "sparse_stream", corrupt)
    path = encodings["b_pyramid.mp4"]
    with caplog.at_level(logging.WARNING, logger="marlin_core.video"):
        sampled = load_video(path)
    assert_matches_reference(sampled, path)
    assert "cannot be opened" in caplog.text


def test_a_copy_that_lost_the_rotation_makes_the_reader_decode_the_file(tmp_path, monkeypatch, caplog):
    upright = make_clip(tmp_path / "upright.mp4", "160x120", 25, 4.0)
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-i", str(upright), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))

    def unrotated(path, indices, num_frames):
        return replace(sparse_stream(path, indices, num_frames), data=sparse_stream(upright, indices, num_frames).data)

    monkeypatch.setattr(decode_module, "sparse_stream", unrotated)
    with caplog.at_level(logging.WARNING, logger="marlin_core.video"):
        sampled = load_video(rotated)
    assert_matches_reference(sampled, rotated)
    assert "describes its frames differently (width, height, rotation)" in caplog.text


def test_sparse_decoding_can_be_switched_off(encodings, monkeypatch):
    path = encodings["b_pyramid.mp4"]
    sparse = load_video(path)
    monkeypatch.setattr(decode_module, "SPARSE_DECODE", False)
    assert torch.equal(load_video(path).frames, sparse.frames)


# --------------------------------------------------------------------------- NAL headers and the keep rule


def avcc(*units: bytes) -> memoryview:
    """A length-prefixed (4-byte) packet holding ``units``."""
    return memoryview(b"".join(len(unit).to_bytes(4, "big") + unit for unit in units))


SPS, PPS = b"\x67\x42\xc0\x1e\xda", b"\x68\xce\x3c\x80"


@pytest.mark.parametrize(
    ("units", "idr", "reference", "parameter_sets"),
    [
        ((b"\x01\x9e\x00",), False, False, set()),  # non-reference slice (nal_ref_idc 0)
        ((b"\x06\x05\x01", b"\x01\x9e\x00"), False, False, set()),  # SEI + non-reference slice
        ((b"\x21\x9a\x00",), False, True, set()),  # reference slice (nal_ref_idc 1)
        ((b"\x09\xf0", SPS, PPS, b"\x65\x88\x84"), True, True, {SPS, PPS}),  # AUD + SPS + PPS + IDR
        ((b"\x14\x00", b"\x01\x9e\x00"), False, True, set()),  # an SVC extension unit: not understood
        ((b"\x06\x05\x01",), False, True, set()),  # no slice at all
    ],
)
def test_packet_info_reads_the_nal_headers(units, idr, reference, parameter_sets):
    info = packet_info(avcc(*units), pts=3, dts=1, keyframe=idr, length_size=4)
    assert (info.idr, info.reference, set(info.parameter_sets)) == (idr, reference, parameter_sets)


@pytest.mark.parametrize(
    ("header", "kind", "temporal_id"),
    [
        (b"\x00\x01", NON_REFERENCE, 0),  # TRAIL_N
        (b"\x00\x03", NON_REFERENCE, 2),  # TRAIL_N in temporal layer 2
        (b"\x10\x01", NON_REFERENCE, 0),  # RASL_N
        (b"\x02\x01", REFERENCE, 0),  # TRAIL_R
        (b"\x2a\x01", REFERENCE, 0),  # CRA: a random access point, but not an IDR
        (b"\x26\x01", IDR, 0),  # IDR_W_RADL
        (b"\x42\x01", PARAMETER_SET, 0),  # SPS
        (b"\x4e\x01", NO_PICTURE, 0),  # prefix SEI
        (b"\x00\x09", UNKNOWN, 0),  # a slice of layer 1 (multi-layer HEVC)
        (b"\x00\x00", UNKNOWN, 0),  # temporal id plus one must not be 0
    ],
)
def test_hevc_unit_reads_the_two_byte_header(header, kind, temporal_id):
    assert hevc_unit(memoryview(header)) == (kind, temporal_id)


def test_an_hevc_packet_of_non_reference_slices_keeps_its_temporal_layer():
    info = packet_info(avcc(b"\x4e\x01\x05", b"\x00\x03\xaf"), pts=0, dts=0, keyframe=False, length_size=4, codec="hevc")
    assert (info.reference, info.temporal_id) == (False, 2)


def test_a_truncated_packet_counts_as_a_reference():
    packet = bytes(avcc(b"\x01\x9e\x00\x00"))[:-1]
    assert packet_info(memoryview(packet), pts=0, dts=0, keyframe=False, length_size=4).reference


def packets(kinds: str, parameter_sets: dict[int, frozenset[bytes]] | None = None) -> list[PacketInfo]:
    """Packets in decoding order from letters: I = IDR, K = keyframe that is not an IDR, P = reference,
    b = non-reference."""
    parameter_sets = parameter_sets or {}
    return [PacketInfo(pts=k, dts=k, keyframe=kind in "IK", discard=False, idr=kind == "I", reference=kind != "b",
                       temporal_id=0,
                       parameter_sets=parameter_sets.get(k, frozenset())) for k, kind in enumerate(kinds)]


@pytest.mark.parametrize(
    ("kinds", "wanted", "kept"),
    [
        ("IbbPbbP", {2}, [0, 2]),  # non-reference frames and everything after the last wanted one go
        ("IbbPbbP", {4}, [0, 3, 4]),
        ("IbbPIbbP", {6}, [4, 6]),  # an IDR segment without wanted frames goes entirely
        ("IbbPIbbP", {1, 7}, [0, 1, 4, 7]),
        ("PbPIbP", {2}, [0, 2]),  # a stream that does not start with an IDR keeps its first segment
    ],
)
def test_needed_positions_keeps_the_references_up_to_the_last_wanted_frame(kinds, wanted, kept):
    assert needed_positions(packets(kinds), wanted) == kept


def test_wanted_spans_are_what_the_reference_decodes():
    assert wanted_spans(packets("IbbPIbbPIbP"), {1, 9}) == [range(0, 2), range(8, 10)]
    assert wanted_spans(packets("IbbP"), set()) == []


def test_in_an_open_gop_stream_a_span_goes_on_to_the_next_keyframe():
    stream = packets("IbbPbbPKbbP")  # K: a keyframe that is not an IDR
    assert wanted_spans(stream, {1}) == [range(0, 7)]
    assert wanted_spans(stream, {8}) == [range(0, 11)]


def test_parameter_sets_may_only_be_left_out_when_the_next_kept_packet_repeats_them():
    repeated = {0: frozenset({SPS, PPS}), 3: frozenset({SPS, PPS})}
    assert needed_positions(packets("IbbIbb", repeated), {4}) == [3, 4]
    changed = {0: frozenset({SPS, PPS}), 3: frozenset({SPS})}
    assert needed_positions(packets("IbbIbb", changed), {4}) is None
    assert needed_positions(packets("IbbIbb", {4: frozenset({PPS})}), {5}) is None
