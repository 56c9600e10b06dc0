"""The chat request Marlin sends to an OpenAI-compatible (vLLM) server, and what comes back.

Fidelity first: the server must see what the in-process engine feeds the model. So the frames are
sampled and resized here, exactly as the reference does (:func:`marlin_core.video.load_video`:
2 fps, qwen-vl-utils' frame counts, smart_resize, antialiased bicubic), and sent losslessly as PNG
frames in one ``video_url`` data URL of media type ``video/jpeg`` (vLLM's "list of frames" form;
its frame loader opens any image format with PIL). The frames' true timing goes along in the
request's ``media_io_kwargs`` (``fps``, ``frames_indices``, ``total_num_frames``), from which vLLM's
Qwen3-VL processor writes the same ``<t seconds>`` timestamps as transformers' processor, and
``mm_processor_kwargs={"do_resize": False}`` keeps the server from resizing them again (the
reference path calls the processor with ``do_resize=False`` too). bench/serving_fidelity.py measures
what differs.

The answer keeps what the engine's ``Generation`` holds: text, per-token log-probs (vLLM's raw
log-probs, before temperature and top-p, the engine's definition) and whether it hit the cap.
"""

from __future__ import annotations

import base64
import codecs
import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from ..engine import confidence as conf
from ..errors import MarlinError
from ..contract import parse_caption, parse_find
from ..engine.inputs import TIMESTAMPS_VIDEO, video_metadata
from ..video import SampledVideo

__all__ = ["AnswerShapeError", "FRAME_FORMATS", "ServerAnswer", "VideoPart", "caption_result", "chat_body", "find_result",
           "parse_answer", "video_part"]

# Lossless (what the engine sees, bit for bit): WebP lossless at its fastest setting, PNG (zlib level 1)
# and PPM (uncompressed: no encoding cost, ~12x PNG's bytes); vLLM's frame loader opens each with PIL.
# JPEG (quality 95) is smaller and lossy. bench/serving_transport.py measures each one's client CPU
# time and size and checks the pixels that come back.
FRAME_FORMATS = {
    "webp": ("WEBP", {"lossless": True, "quality": 0, "method": 0}),
    "png": ("PNG", {"compress_level": 1}),
    "ppm": ("PPM", {}),
    "jpeg": ("JPEG", {"quality": 95}),
}


@dataclass(frozen=True)
class VideoPart:
    """One sampled video as request parts: the ``video_url`` content item and its ``media_io_kwargs``."""

    content: dict
    media_io_kwargs: dict


@dataclass(frozen=True)
class ServerAnswer:
    """One answer: text (special tokens skipped), its tokens' texts and log-probs, and whether it was cut off."""

    text: str
    token_texts: list[str]
    logprobs: list[float]
    truncated: bool


def _encode_frame(frame, frame_format: str) -> str:
    fmt, options = FRAME_FORMATS[frame_format]
    buffer = io.BytesIO()
    Image.fromarray(frame.permute(1, 2, 0).contiguous().numpy()).save(buffer, fmt, **options)
    return base64.b64encode(buffer.getvalue()).decode()


def video_part(sampled: SampledVideo, timestamps: str = TIMESTAMPS_VIDEO, frame_format: str = "png") -> VideoPart:
    """The frames of ``sampled`` and their timing as vLLM's frame-list video.

    Args:
        sampled: frames already sampled and resized the reference way.
        timestamps: ``"video"`` or ``"window"`` (see :func:`marlin_core.engine.inputs.video_metadata`).
        frame_format: ``"png"`` (lossless) or ``"jpeg"``.
    """
    if frame_format not in FRAME_FORMATS:
        raise ValueError(f"frame_format={frame_format!r}: use one of {sorted(FRAME_FORMATS)}")
    metadata = video_metadata(sampled, timestamps)
    frames = ",".join(_encode_frame(frame, frame_format) for frame in sampled.frames)
    content = {"type": "video_url", "video_url": {"url": f"data:video/jpeg;base64,{frames}"}}
    media_io_kwargs = {
        "num_frames": -1,  # vLLM keeps only the first 32 frames of a frame list by default
        "fps": float(metadata["fps"]),
        "frames_indices": [int(i) for i in metadata["frames_indices"]],
        "total_num_frames": max(int(metadata["total_num_frames"]), len(metadata["frames_indices"])),
    }
    return VideoPart(content=content, media_io_kwargs={"video": media_io_kwargs})


def chat_body(model: str, video: VideoPart, prompt: str, *, max_new_tokens: int, do_sample: bool = False,
              temperature: float = 1.0, top_p: float = 1.0) -> dict:
    """The ``/v1/chat/completions`` body: one user turn (the video, then the prompt), greedy unless sampling."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": [video.content, {"type": "text", "text": prompt}]}],
        "max_tokens": max_new_tokens,
        "temperature": temperature if do_sample else 0.0,
        "top_p": top_p if do_sample else 1.0,
        "logprobs": True,
        "media_io_kwargs": video.media_io_kwargs,
        "mm_processor_kwargs": {"do_resize": False},
    }
    return body


class AnswerShapeError(MarlinError, ValueError):
    """A chat completion of the wrong shape; the message says what was wrong (see :func:`parse_answer`)."""


def _token_texts(items: Sequence[dict]) -> list[str]:
    """Each token's text; a character split over byte-level tokens goes to the token that completes it."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    texts = []
    for item in items:
        raw = item.get("bytes")
        if raw is not None and not (isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw)):
            raise AnswerShapeError("a log-prob's 'bytes' is not a list of byte values")
        token = item.get("token", "")
        if raw is None and not isinstance(token, str):
            raise AnswerShapeError("a log-prob's 'token' is not text")
        texts.append(decoder.decode(bytes(raw)) if raw is not None else token)
    return texts


def _logprob(item: dict) -> float:
    value = item.get("logprob")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnswerShapeError(f"a log-prob is {type(value).__name__}, not a number")
    return float(value)


def parse_answer(response: dict) -> ServerAnswer:
    """The first choice of a chat completion as a :class:`ServerAnswer`.

    Raises:
        AnswerShapeError: not a chat completion (no choices, no message, text or log-probs of the wrong type).
    """
    if not isinstance(response, dict):
        raise AnswerShapeError(f"a JSON {type(response).__name__} instead of a chat completion object")
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        raise AnswerShapeError("no 'choices'" if not choices else "'choices' is not a list")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise AnswerShapeError("the first choice has no 'message' object")
    text = message.get("content")
    if text is not None and not isinstance(text, str):
        raise AnswerShapeError(f"the message's 'content' is {type(text).__name__}, not text")
    logprobs = choice.get("logprobs") or {}
    items = (logprobs.get("content") if isinstance(logprobs, dict) else None) or []
    if not isinstance(logprobs, dict) or not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise AnswerShapeError("'logprobs' is not a list of token objects")
    return ServerAnswer(
        text=text or "",
        token_texts=_token_texts(items),
        logprobs=[_logprob(item) for item in items],
        truncated=choice.get("finish_reason") == "length",
    )


def _numbers(answer: ServerAnswer):
    offsets, position = [], 0
    for piece in answer.token_texts:
        offsets.append((position, position + len(piece)))
        position += len(piece)
    return conf.number_confidences("".join(answer.token_texts), offsets, answer.logprobs)


def caption_result(answer: ServerAnswer) -> dict:
    """The caption dict the engine returns for the same text and log-probs."""
    result = parse_caption(answer.text, truncated=answer.truncated)
    ranges = [(event["start"], event["end"]) for event in result["events"]]
    for event, value in zip(result["events"], conf.range_confidences(ranges, _numbers(answer))):
        event["confidence"] = value
    return result


def find_result(answer: ServerAnswer, query: str) -> dict:
    """The find dict the engine returns for the same text and log-probs."""
    result = parse_find(answer.text)
    result["query"] = query
    result["truncated"] = answer.truncated
    span = result["span"]
    result["confidence"] = conf.range_confidences([span], _numbers(answer))[0] if span else None
    return result
